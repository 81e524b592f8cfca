//! Wires the service together and runs it until shut down. Used by the binary and by the
//! end-to-end tests, which start the real server on 127.0.0.1 with port 0.
use crate::auth::Authenticator;
use crate::config::Config;
use crate::detect::DetectorSet;
use crate::grpc::auth::AuthLayer;
use crate::grpc::{
    ingest::IngestService,
    registry_svc::RegistryService,
    violations_svc::{AdminService, ViolationsService},
};
use crate::pipeline::Pipeline;
use crate::proto;
use crate::query::ViolationDesk;
use crate::registry::Registry;
use crate::store::{embedded::EmbeddedStore, Store, StoreError};
use crate::tls::{TlsListener, TlsMaterial};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("sample data: {0}")]
    Sample(#[from] crate::registry::RegistryError),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("gRPC TLS: {0}")]
    GrpcTls(String),
}

/// A started server. Drop does not stop it; call `shutdown`.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

pub struct Options {
    pub sample_data: bool,
}

pub async fn start(cfg: Config, opts: Options) -> Result<RunningServer, ServerError> {
    crate::http::prometheus();
    let tls = TlsMaterial::load(&cfg.tls)?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&cfg.data_dir)?);
    let registry = Registry::load(store.clone()).await?;
    if opts.sample_data {
        crate::sample::load(&registry, &*store).await?;
    }
    tracing::info!(vehicles = registry.len(), data_dir = %cfg.data_dir.display(), "registry loaded");
    let detectors = Arc::new(DetectorSet::new(&cfg.rules));
    let pipeline = Pipeline::start(store.clone(), registry.clone(), detectors, &cfg.pipeline);

    let grpc_listener = TcpListener::bind(cfg.grpc_addr)
        .await
        .map_err(|source| ServerError::Bind { addr: cfg.grpc_addr, source })?;
    let http_listener = TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|source| ServerError::Bind { addr: cfg.http_addr, source })?;
    let grpc_addr =
        grpc_listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.grpc_addr, source })?;
    let http_addr =
        http_listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.http_addr, source })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::telemetry_ingest_server::TelemetryIngestServer<IngestService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let auth = Arc::new(Authenticator::new(store.clone(), &cfg.auth));
    let desk = ViolationDesk::new(
        store.clone(),
        registry.clone(),
        pipeline.clone(),
        Duration::from_millis(cfg.watch_poll_ms),
        shutdown_rx.clone(),
    );
    if !auth.enabled() {
        tracing::warn!("authentication is disabled: every caller is an administrator");
    }
    let ingest = IngestService::new(pipeline.clone(), registry.clone(), cfg.max_in_flight_batches);
    let mut grpc = tonic::transport::Server::builder();
    if let Some(m) = &tls {
        grpc = grpc.tls_config(m.grpc()).map_err(|e| ServerError::GrpcTls(e.to_string()))?;
    }
    let grpc = grpc
        .layer(AuthLayer::new(auth.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::telemetry_ingest_server::TelemetryIngestServer::new(ingest))
        .add_service(proto::registry_server::RegistryServer::new(RegistryService::new(
            registry.clone(),
            store.clone(),
        )))
        .add_service(proto::violations_server::ViolationsServer::new(ViolationsService::new(desk.clone())))
        .add_service(proto::admin_server::AdminServer::new(AdminService::new(desk.clone())));

    let http_state = crate::http::HttpState { desk, auth };
    let mut tasks = Vec::new();
    let mut rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let signal = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = grpc.serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), signal).await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }));
    let router = crate::http::router(http_state);
    let signal = {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tasks.push(match &tls {
        Some(m) => {
            let listener = TlsListener::new(http_listener, m.http_acceptor()?)
                .map_err(|source| ServerError::Bind { addr: http_addr, source })?;
            tokio::spawn(serve_http(listener, router, signal))
        }
        None => tokio::spawn(serve_http(http_listener, router, signal)),
    });
    if cfg.retention_days > 0 {
        tasks.push(tokio::spawn(retention(store.clone(), cfg.retention_days, shutdown_rx.clone())));
    }
    tracing::info!(%grpc_addr, %http_addr, tls = tls.is_some(), "smogwatch serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        store,
        pipeline,
        shutdown_tx,
        tasks,
        grace: Duration::from_secs(cfg.shutdown_grace_s),
    })
}

async fn serve_http<L>(listener: L, router: axum::Router, signal: impl Future<Output = ()> + Send + 'static)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(signal).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Deletes expired telemetry once an hour.
async fn retention(store: Arc<dyn Store>, days: u32, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let cutoff = crate::model::now_ms() - i64::from(days) * 86_400_000;
        match store.expire_records(cutoff).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired old telemetry"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "telemetry retention failed"),
        }
    }
}

impl RunningServer {
    /// Stops accepting, lets clients finish (up to the grace period), then drains the pipeline
    /// so that everything acknowledged — and everything queued — is committed.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(self.grace, t).await.is_err() {
                tracing::warn!("clients still connected after the grace period; closing them");
                abort.abort();
            }
        }
        self.pipeline.shutdown().await;
        tracing::info!("smogwatch stopped");
    }
}
