//! Wires the service together and runs it until shut down. Used by the binary and by the
//! end-to-end tests, which start the real server on 127.0.0.1 with port 0.
use crate::auth::{Authenticator, TokenDesk};
use crate::config::{Config, StoreKind};
use crate::detect::DetectorSet;
use crate::grpc::auth::AuthLayer;
use crate::grpc::{
    ingest::IngestService,
    registry_svc::RegistryService,
    violations_svc::{AdminService, ViolationsService},
};
use crate::pipeline::ownership::VehicleOwnership;
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
    #[error("demo token: {0}")]
    DemoToken(String),
    #[error("zones: {0}")]
    Zones(#[from] crate::zones::ZoneCatalogError),
    #[error("zone file {path}: {reason}")]
    ZoneFile { path: String, reason: String },
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("gRPC TLS: {0}")]
    GrpcTls(String),
    #[error(
        "store.kind = \"scylla\" but this binary was built without ScyllaDB support; \
         rebuild with `cargo build --release --features scylla` or set store.kind = \"embedded\""
    )]
    ScyllaNotBuilt,
}

/// Opens the configured backend.
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, ServerError> {
    match cfg.store.kind {
        StoreKind::Embedded => {
            tracing::info!(data_dir = %cfg.data_dir.display(), "opening embedded store");
            Ok(Arc::new(EmbeddedStore::open_with(&cfg.data_dir, &cfg.store.embedded)?))
        }
        #[cfg(feature = "scylla")]
        StoreKind::Scylla => {
            let s = crate::store::scylla::ScyllaStore::connect(&cfg.store.scylla, cfg.retention_days).await?;
            Ok(Arc::new(s))
        }
        #[cfg(not(feature = "scylla"))]
        StoreKind::Scylla => Err(ServerError::ScyllaNotBuilt),
    }
}

/// A started server. Drop does not stop it; call `shutdown`.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// HJ 1239 gateway address, when enabled.
    pub hj1239_addr: Option<SocketAddr>,
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
    let store = open_store(&cfg).await?;
    let registry = Registry::load(store.clone()).await?;
    if opts.sample_data {
        crate::sample::load(&registry, &*store).await?;
    }
    tracing::info!(vehicles = registry.len(), store = ?cfg.store.kind, "registry loaded");
    let zones = Arc::new(crate::zones::ZoneCatalog::load(store.clone()).await?);
    if opts.sample_data {
        demo_token(&*store).await?;
        zones.import(crate::zones::SAMPLE_ZONES, Default::default()).await?;
        zones.set_exemptions(crate::zones::SAMPLE_EXEMPTIONS, false).await?;
    }
    for file in &cfg.zones.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ServerError::ZoneFile { path: file.display().to_string(), reason: e.to_string() })?;
        let req = crate::zones::ImportRequest { gcj02: cfg.zones.gcj02, ..Default::default() };
        zones.import(&text, req).await?;
    }
    let detectors = Arc::new(DetectorSet::with_zones(&cfg.rules, zones.registry()));
    let ownership = match cfg.store.kind {
        StoreKind::Scylla => VehicleOwnership::shared(store.clone(), cfg.store.scylla.vehicle_lease_s),
        StoreKind::Embedded => VehicleOwnership::single_node(),
    };
    let admission = crate::pipeline::Admission::new(&cfg.ingest, cfg.retention_days);
    let pipeline = Pipeline::start_with(
        store.clone(),
        registry.clone(),
        detectors.clone(),
        &cfg.pipeline,
        admission,
        ownership,
    );

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

    let hj1239_listener = match cfg.hj1239.addr {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?)
        }
        None => None,
    };
    let hj1239_addr = hj1239_listener.as_ref().and_then(|l| l.local_addr().ok());

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
    )
    .with_authenticator(auth.clone());
    if !auth.enabled() {
        tracing::warn!("authentication is disabled: every caller is an administrator");
    }
    let tokens = TokenDesk::new(store.clone(), auth.clone());
    let ingest = IngestService::new(pipeline.clone(), registry.clone(), cfg.max_in_flight_batches)
        .with_authenticator(auth.clone());
    let mut grpc = tonic::transport::Server::builder();
    if let Some(m) = &tls {
        grpc = grpc.tls_config(m.grpc()).map_err(|e| ServerError::GrpcTls(e.to_string()))?;
    }
    let grpc = grpc
        .layer(AuthLayer::new(auth.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            proto::telemetry_ingest_server::TelemetryIngestServer::new(ingest)
                .max_decoding_message_size(cfg.ingest.max_message_bytes)
                .max_encoding_message_size(cfg.ingest.max_message_bytes),
        )
        .add_service(proto::registry_server::RegistryServer::new(RegistryService::new(
            registry.clone(),
            store.clone(),
        )))
        .add_service(proto::violations_server::ViolationsServer::new(ViolationsService::new(desk.clone())))
        .add_service(proto::admin_server::AdminServer::new(AdminService::new(desk.clone(), tokens.clone())))
        .add_service(proto::clean_transport_server::CleanTransportServer::new(
            crate::grpc::clean_svc::CleanTransportService::new(
                store.clone(),
                registry.clone(),
                zones.registry(),
            ),
        ))
        .add_service(proto::zones_server::ZonesServer::new(crate::grpc::zones_svc::ZonesService::new(
            zones.clone(),
        )))
        .add_service(proto::roadside_server::RoadsideServer::new(
            crate::grpc::roadside_svc::RoadsideService::new(
                registry.clone(),
                detectors.clone(),
                store.clone(),
            ),
        ));

    let http_state =
        crate::http::HttpState { desk, auth, tokens, store: store.clone(), registry: registry.clone() };
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
    if let Some(listener) = hj1239_listener {
        let gw = crate::gateway::serve(
            listener,
            cfg.hj1239.clone(),
            registry.clone(),
            pipeline.clone(),
            shutdown_rx.clone(),
        );
        tasks.push(tokio::spawn(gw));
    }
    // Health follows the store's writes: NOT_SERVING while commits fail, and a supervisor asks
    // the store to recover (a full disk that got space back) until they succeed again.
    let health = pipeline.write_health().clone();
    tasks.push(tokio::spawn(health.clone().supervise(store.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(report_write_health(health, health_reporter, shutdown_rx.clone())));
    // ScyllaDB expires telemetry by TTL (set from the same retention); only the embedded store
    // needs the hourly sweep.
    if cfg.retention_days > 0 && cfg.store.kind == StoreKind::Embedded {
        tasks.push(tokio::spawn(retention(store.clone(), cfg.retention_days, shutdown_rx.clone())));
    }
    // A shared store: other nodes register vehicles too.
    if cfg.store.kind == StoreKind::Scylla && cfg.store.scylla.registry_refresh_s > 0 {
        let every = Duration::from_secs(cfg.store.scylla.registry_refresh_s);
        tasks.push(tokio::spawn(refresh_registry(registry.clone(), every, shutdown_rx.clone())));
    }
    tracing::info!(%grpc_addr, %http_addr, ?hj1239_addr, tls = tls.is_some(), "smogwatch serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        hj1239_addr,
        store,
        pipeline,
        shutdown_tx,
        tasks,
        grace: Duration::from_secs(cfg.shutdown_grace_s),
    })
}

/// Re-reads the vehicle registry every `every` until shutdown. A failed read keeps the current
/// registry (counted and logged); the next tick tries again.
async fn refresh_registry(registry: Arc<Registry>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match registry.refresh().await {
            Ok(n) => tracing::debug!(vehicles = n, "registry refreshed"),
            Err(e) => {
                metrics::counter!("smogwatch_registry_refresh_errors_total").increment(1);
                tracing::warn!(error = %e, "registry refresh failed; keeping the current registry");
            }
        }
    }
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

/// With the demo data and no credentials yet, creates one admin token so a newcomer can call the
/// API at once; the secret is printed once on stderr (only its hash is stored).
async fn demo_token(store: &dyn Store) -> Result<(), ServerError> {
    if !store.tokens().await?.is_empty() {
        return Ok(());
    }
    let (token, secret) = crate::auth::create_token(
        store,
        crate::model::Role::Admin,
        "demo admin (serve --sample-data)".into(),
        "serve --sample-data",
    )
    .await
    .map_err(|e| ServerError::DemoToken(e.to_string()))?;
    eprintln!(
        "\n  demo admin token {} (shown once; `smogwatch token revoke {}` to remove):\n  {secret}\n",
        token.id, token.id
    );
    Ok(())
}

/// Mirrors the store's write health into gRPC health: the whole server ("") and ingest.
async fn report_write_health(
    health: Arc<crate::store::health::WriteHealth>,
    reporter: tonic_health::server::HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus;
    let mut state = health.subscribe();
    loop {
        let status =
            if *state.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
        reporter.set_service_status("", status).await;
        reporter
            .set_service_status(
                <proto::telemetry_ingest_server::TelemetryIngestServer<IngestService> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        tokio::select! {
            r = state.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
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
    /// Stops accepting, lets clients finish and commits what is queued, all within one grace
    /// period (`shutdown_grace_s`). Whatever is still queued at the deadline was never
    /// acknowledged: it is left to the clients' resend, as after a crash (invariant 1).
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!("clients still connected after the grace period; closing them");
                abort.abort();
            }
        }
        if tokio::time::timeout_at(deadline, self.pipeline.shutdown()).await.is_err() {
            metrics::counter!("smogwatch_shutdown_drain_cut_total").increment(1);
            tracing::warn!(
                grace_s = self.grace.as_secs(),
                "queued batches not committed within the grace period; they were not acknowledged and will be resent"
            );
        }
        tracing::info!("smogwatch stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "scylla"))]
    #[tokio::test]
    async fn scylla_kind_without_the_feature_is_a_clear_startup_error() {
        let mut cfg = Config::default();
        cfg.store.kind = StoreKind::Scylla;
        match open_store(&cfg).await {
            Err(e @ ServerError::ScyllaNotBuilt) => assert!(e.to_string().contains("--features scylla")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a build without the scylla feature must refuse store.kind = scylla"),
        }
    }

    #[cfg(feature = "scylla")]
    #[tokio::test]
    async fn scylla_kind_with_an_unreachable_cluster_fails_start() {
        let mut cfg = Config::default();
        cfg.store.kind = StoreKind::Scylla;
        cfg.store.scylla.uris = vec!["127.0.0.1:1".into()];
        cfg.store.scylla.connect_timeout_ms = 500;
        match open_store(&cfg).await {
            Err(ServerError::Store(StoreError::Engine(msg))) => assert!(msg.contains("connecting"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("nothing listens on 127.0.0.1:1"),
        }
    }
}
