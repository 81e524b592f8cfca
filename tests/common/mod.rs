//! Helpers for end-to-end tests: a real server on 127.0.0.1 (ephemeral ports) over a temp store.
#![allow(dead_code)]
pub mod terminal;
use smogwatch::config::Config;
use smogwatch::model::Role;
use smogwatch::proto;
use smogwatch::server::{start, Options, RunningServer};
use std::path::Path;
use std::task::{Context, Poll};
use tonic::transport::Channel;

pub const T0: i64 = 1_761_926_400_000; // 2025-11-01T00:00:00+08:00

/// The store the end-to-end tests run on: the embedded one, or, with `SMOGWATCH_TEST_STORE=cql`,
/// the CQL backend on the Cassandra/ScyllaDB node(s) of `SMOGWATCH_SCYLLA_URI` (CI starts one with
/// `deploy/cassandra/cassandra.sh`). A CQL run without a reachable server fails; it never passes
/// silently on the embedded store.
pub fn cql_uris() -> Option<String> {
    match std::env::var("SMOGWATCH_TEST_STORE").as_deref() {
        // SMOGWATCH_TEST_CQL_URIS (read at run time) names a cluster without rebuilding:
        // SMOGWATCH_SCYLLA_URI is also a build-time switch (build.rs), and changing it recompiles.
        Ok("cql") => Some(
            std::env::var("SMOGWATCH_TEST_CQL_URIS")
                .or_else(|_| std::env::var("SMOGWATCH_SCYLLA_URI"))
                .unwrap_or_else(|_| "127.0.0.1:9042".into()),
        ),
        Ok("embedded") | Ok("") | Err(_) => None,
        Ok(other) => panic!("SMOGWATCH_TEST_STORE={other}: expected `cql` or `embedded`"),
    }
}

/// One keyspace per test store directory, so that a restart on the same `dir` finds its data and
/// tests running side by side never see each other's.
pub fn keyspace_for(dir: &Path) -> String {
    let h = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("e2e_{}", &h.as_str()[..24])
}

/// The replication factor of the test keyspaces (`SMOGWATCH_TEST_RF`, default 1: one node).
pub fn test_rf() -> u32 {
    std::env::var("SMOGWATCH_TEST_RF").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

pub fn config(dir: &Path) -> Config {
    let mut cfg = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        retention_days: 0,
        ..Default::default()
    };
    cfg.pipeline.workers = 2;
    cfg.hj1239.addr = Some("127.0.0.1:0".parse().unwrap());
    if let Some(uris) = cql_uris() {
        cfg.store.kind = smogwatch::config::StoreKind::Scylla;
        cfg.store.scylla.uris = uris.split(',').map(|u| u.trim().to_string()).collect();
        cfg.store.scylla.keyspace = keyspace_for(dir);
        cfg.store.scylla.replication = smogwatch::config::Replication::Simple { factor: test_rf() };
    }
    cfg
}

/// The same store selection as `config`, as environment variables for the real binary.
pub fn store_env(dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![("SMOGWATCH_DATA_DIR".to_string(), dir.display().to_string())];
    if let Some(uris) = cql_uris() {
        env.push(("SMOGWATCH_STORE__KIND".into(), "scylla".into()));
        env.push(("SMOGWATCH_STORE__SCYLLA__URIS".into(), uris));
        env.push(("SMOGWATCH_STORE__SCYLLA__KEYSPACE".into(), keyspace_for(dir)));
        env.push(("SMOGWATCH_STORE__SCYLLA__REPLICATION__STRATEGY".into(), "simple".into()));
        env.push(("SMOGWATCH_STORE__SCYLLA__REPLICATION__FACTOR".into(), test_rf().to_string()));
        // Nodes sharing the store learn of each other's registrations within a second.
        env.push(("SMOGWATCH_STORE__SCYLLA__REGISTRY_REFRESH_S".into(), "1".into()));
        // Short vehicle leases, so that failover tests wait seconds, not half a minute
        // (SMOGWATCH_TEST_LEASE_S=0 switches them off, to see what they prevent).
        let lease = std::env::var("SMOGWATCH_TEST_LEASE_S").unwrap_or_else(|_| "5".into());
        env.push(("SMOGWATCH_STORE__SCYLLA__VEHICLE_LEASE_S".into(), lease));
    }
    env
}

/// Opens the store of `dir` directly (the server is stopped or dead), on whichever backend
/// `config` chose.
pub async fn open_store(dir: &Path) -> std::sync::Arc<dyn smogwatch::store::Store> {
    smogwatch::server::open_store(&config(dir)).await.expect("store opens")
}

pub async fn server(dir: &Path) -> RunningServer {
    start(config(dir), Options { sample_data: false }).await.expect("server starts")
}

/// A server with an adjusted configuration.
pub async fn server_with(dir: &Path, adjust: impl FnOnce(&mut Config)) -> RunningServer {
    let mut cfg = config(dir);
    adjust(&mut cfg);
    start(cfg, Options { sample_data: false }).await.expect("server starts")
}

/// A plain HTTP/1.1 request to the server's HTTP listener; returns status, headers and the
/// whole body (chunked bodies are reassembled).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path).header(http::header::HOST, "127.0.0.1");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default()))).unwrap();
    let resp = sender.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

/// A gRPC channel that sends `authorization: Bearer <token>` with every call.
#[derive(Clone)]
pub struct Authed {
    inner: Channel,
    bearer: Option<http::HeaderValue>,
}

impl tower::Service<http::Request<tonic::body::Body>> for Authed {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(b) = &self.bearer {
            req.headers_mut().insert(http::header::AUTHORIZATION, b.clone());
        }
        self.inner.call(req)
    }
}

/// Creates a token through the running server's store (tokens are read per request, so no
/// restart is needed) and returns its secret.
pub async fn token(s: &RunningServer, role: Role) -> String {
    smogwatch::auth::create_token(&*s.store, role, "e2e".into(), "test").await.expect("token").1
}

/// Wraps an already connected channel (e.g. a TLS one).
pub fn authed(inner: Channel, secret: &str) -> Authed {
    Authed { inner, bearer: Some(format!("Bearer {secret}").parse().unwrap()) }
}

pub async fn connect_with(addr: std::net::SocketAddr, secret: Option<&str>) -> Authed {
    let inner = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
    Authed { inner, bearer: secret.map(|t| format!("Bearer {t}").parse().unwrap()) }
}

/// An administrator's channel.
pub async fn channel(s: &RunningServer) -> Authed {
    let secret = token(s, Role::Admin).await;
    connect_with(s.grpc_addr, Some(&secret)).await
}

/// A channel acting with the given role.
pub async fn channel_as(s: &RunningServer, role: Role) -> Authed {
    let secret = token(s, role).await;
    connect_with(s.grpc_addr, Some(&secret)).await
}

pub fn truck(vin: &str, stage: proto::EmissionStage) -> proto::Vehicle {
    proto::Vehicle {
        vin: vin.into(),
        plate: format!("浙A{}", &vin[12..]),
        plate_colour: proto::PlateColour::Yellow as i32,
        kind: proto::VehicleKind::Truck as i32,
        fuel: proto::Fuel::Diesel as i32,
        emission_stage: stage as i32,
        owner_enterprise_id: "ENT-1".into(),
        city_code: "330100".into(),
        ..Default::default()
    }
}

/// A 1 Hz record of a warmed-up diesel engine at (lon, lat) with the given downstream NOx.
pub fn record(vin: &str, t_ms: i64, lon: f64, lat: f64, down_nox: f64) -> proto::TelemetryRecord {
    proto::TelemetryRecord {
        vin: vin.into(),
        time_ms: t_ms,
        position: Some(proto::Position { longitude: lon, latitude: lat, valid: true }),
        engine: Some(proto::EngineData {
            vehicle_speed_kmh: Some(40.0),
            engine_speed_rpm: Some(1400.0),
            scr_inlet_temp_c: Some(320.0),
            coolant_temp_c: Some(85.0),
            scr_upstream_nox_ppm: Some(900.0),
            scr_downstream_nox_ppm: Some(down_nox),
            reagent_remaining_pct: Some(60.0),
            intake_air_flow_kgph: Some(800.0),
            dpf_pressure_diff_kpa: Some(3.0),
            ..Default::default()
        }),
        obd: None,
        opacity_k: None,
        stream_kind: proto::EngineStreamKind::Diesel as i32,
    }
}

/// Streams `batches` over one ingest stream and returns the acks in order.
pub async fn stream_batches(ch: Authed, batches: Vec<proto::TelemetryBatch>) -> Vec<proto::BatchAck> {
    let mut client = proto::telemetry_ingest_client::TelemetryIngestClient::new(ch);
    let n = batches.len();
    let resp = client.stream(tokio_stream::iter(batches)).await.expect("stream opens");
    let mut acks = resp.into_inner();
    let mut out = Vec::with_capacity(n);
    while let Some(ack) = acks.message().await.expect("ack") {
        out.push(ack);
        if out.len() == n {
            break;
        }
    }
    out
}

/// Splits records into batches of 10 with sequence numbers from `first_seq`.
pub fn batches(
    records: Vec<proto::TelemetryRecord>,
    first_seq: u64,
    reissue: bool,
) -> Vec<proto::TelemetryBatch> {
    records
        .chunks(10)
        .enumerate()
        .map(|(i, c)| proto::TelemetryBatch { sequence: first_seq + i as u64, records: c.to_vec(), reissue })
        .collect()
}

// --- the real binary (for kill -9 and command-line tests) ---

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Creates an admin token with the CLI on the store (server stopped), as an operator would
/// before the first start.
pub fn admin_token(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smogwatch"))
        .args(["token", "create", "--role", "admin", "--label", "e2e operator"])
        .envs(store_env(dir))
        .output()
        .expect("token create runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The spawned binary, SIGKILLed when dropped, so that a failing test leaves no server behind.
pub struct Spawned(std::process::Child);

impl Spawned {
    /// SIGKILL (no shutdown path runs) and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the real binary on 127.0.0.1 with its store in `dir`.
pub fn spawn(dir: &std::path::Path, grpc: u16) -> Spawned {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_smogwatch"))
        .arg("serve")
        .env("SMOGWATCH_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("SMOGWATCH_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        // Not the default 9000: tests run side by side, and a developer's server may hold it.
        .env("SMOGWATCH_HJ1239__ADDR", format!("127.0.0.1:{}", free_port()))
        .envs(store_env(dir))
        .env("SMOGWATCH_RETENTION_DAYS", "0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("binary starts");
    Spawned(child)
}

/// Waits for the spawned binary's gRPC port, then connects with `token`.
pub async fn connect(grpc: u16, token: &str) -> Authed {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return connect_with(addr, Some(token)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("server did not come up on port {grpc}");
}
