//! TLS on both listeners with a self-signed certificate generated at test time.
mod common;

use common::*;
use smogwatch::model::Role;
use smogwatch::proto::{self, violations_client::ViolationsClient};
use std::sync::Arc;
use tokio_rustls::rustls;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_serve_tls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let s = server_with(&data, |c| {
        c.tls.cert_path = Some(cert_path.clone());
        c.tls.key_path = Some(key_path.clone());
    })
    .await;
    let secret = token(&s, Role::Admin).await;

    // gRPC over TLS, verifying the server against the generated certificate.
    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert_pem)).domain_name("localhost");
    let ch = Channel::from_shared(format!("https://localhost:{}", s.grpc_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    let list = ViolationsClient::new(authed(ch, &secret)).list(proto::ListViolationsRequest::default()).await;
    assert!(list.unwrap().into_inner().violations.is_empty());
    // Plaintext gRPC is not served.
    let plain = connect_with(s.grpc_addr, Some(&secret)).await;
    assert!(ViolationsClient::new(plain).list(proto::ListViolationsRequest::default()).await.is_err());

    // HTTPS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.http_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/v1/violations")
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    s.shutdown().await;

    // Half a TLS configuration is refused rather than served as plaintext.
    let mut cfg = config(&data);
    cfg.tls.cert_path = Some(cert_path);
    let r = smogwatch::server::start(cfg, smogwatch::server::Options { sample_data: false }).await;
    assert!(matches!(r, Err(smogwatch::server::ServerError::Tls(_))));
}
