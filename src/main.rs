//! The `smogwatch` binary: command line, logging, signals. Errors become `anyhow` only here.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "smogwatch", version, about = "Heavy-vehicle remote emissions telematics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum GateRecordsCommand {
    /// Import a gate-system CSV export (columns: gate_id, plate, vin, time, direction,
    /// emission_stage, fuel, cargo, tonnage; see src/clean/csv.rs). Prints one line per rejected
    /// row (file line number and reason); re-importing a file stores nothing twice.
    Import {
        file: PathBuf,
        /// gRPC address of the server, e.g. http://127.0.0.1:50051.
        #[arg(long)]
        server: String,
        /// The enterprise whose gates the records come from.
        #[arg(long)]
        enterprise: String,
        /// API token (admin, or the enterprise's own).
        #[arg(long, env = "SMOGWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// TOML configuration file (environment variables SMOGWATCH_* override it).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Register the demo vehicles and enterprises on start (idempotent).
        #[arg(long)]
        sample_data: bool,
    },
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Config {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Clean-transport gate records: talks to a running server over gRPC (the embedded store
    /// file is locked by the server).
    GateRecords {
        #[command(subcommand)]
        command: GateRecordsCommand,
    },
    /// Manage API tokens: through a running server with `--server` (admin token required), or
    /// on the store directly while the server is stopped (the embedded store admits one process).
    Token {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// gRPC address of a running server, e.g. http://127.0.0.1:50051.
        #[arg(long, global = true)]
        server: Option<String>,
        /// Admin token for `--server` (or SMOGWATCH_TOKEN).
        #[arg(long, global = true, env = "SMOGWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Zones (restriction zones, machinery low-emission zones, parks): check a GeoJSON file
    /// offline, or import it into a running server (zones apply at once, no restart).
    Zones {
        #[command(subcommand)]
        command: ZonesCommand,
    },
}

#[derive(Subcommand)]
enum ZonesCommand {
    /// Validate a GeoJSON FeatureCollection; lists every bad feature with its id and reason.
    Check {
        file: PathBuf,
        #[arg(long)]
        gcj02: bool,
        #[arg(long)]
        fix_winding: bool,
    },
    /// Import a GeoJSON FeatureCollection into a running server.
    Import {
        file: PathBuf,
        /// Coordinates are GCJ-02 (AMap / Tencent): converted to WGS-84.
        #[arg(long)]
        gcj02: bool,
        /// Import the valid features and report the rest (default: a bad feature rejects the file).
        #[arg(long)]
        lenient: bool,
        /// Reverse rings with the wrong winding instead of rejecting them.
        #[arg(long)]
        fix_winding: bool,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Admin token (or SMOGWATCH_TOKEN).
        #[arg(long, env = "SMOGWATCH_TOKEN", hide_env_values = true)]
        token: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once on stdout (only its hash is stored).
    Create {
        /// admin, police, enterprise or terminal.
        #[arg(long)]
        role: String,
        /// Police jurisdiction: a city code (GB/T 2260), e.g. 330100.
        #[arg(long)]
        city: Option<String>,
        /// Police jurisdiction: a county or district code, e.g. 330106.
        #[arg(long)]
        county: Option<String>,
        /// Enterprise id (Vehicle.owner_enterprise_id) for an enterprise token.
        #[arg(long)]
        enterprise: Option<String>,
        /// VIN a terminal token may send telemetry for (repeat for several).
        #[arg(long = "vin")]
        vins: Vec<String>,
        /// Who holds it, for listings and the audit log.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (ids, roles, scopes; never secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries what commands print (a new token's secret).
    // The storage engines' own info lines (journal recovery, flushes) are noise at info level.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, sample_data } => {
            let cfg = smogwatch::config::Config::load(config.as_deref())?;
            let server = smogwatch::server::start(cfg, smogwatch::server::Options { sample_data })
                .await
                .context("starting smogwatch")?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
        }
        Command::Config { config } => {
            let cfg = smogwatch::config::Config::load(config.as_deref())?;
            println!("{}", toml::to_string_pretty(&cfg)?);
        }
        Command::GateRecords { command: GateRecordsCommand::Import { file, server, enterprise, token } } => {
            import_gate_records(&file, &server, &enterprise, token.as_deref()).await?;
        }
        Command::Token { config, server: Some(server), token, command } => {
            if config.is_some() {
                anyhow::bail!("--config and --server exclude each other: the server has its own store");
            }
            let token = token.context("--server needs an admin token (--token or SMOGWATCH_TOKEN)")?;
            token_command_remote(&server, &token, command).await?;
        }
        Command::Token { config, server: None, command, .. } => {
            let cfg = smogwatch::config::Config::load(config.as_deref())?;
            token_command(&cfg, command).await?;
        }
        Command::Zones { command } => zones_command(command).await?,
    }
    Ok(())
}

async fn zones_command(command: ZonesCommand) -> anyhow::Result<()> {
    use smogwatch::geofence::{import_zones, CoordinateSystem, ImportMode, ImportOptions, WindingPolicy};
    match command {
        ZonesCommand::Check { file, gcj02, fix_winding } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let opts = ImportOptions {
                mode: ImportMode::Lenient,
                coordinates: if gcj02 { CoordinateSystem::Gcj02 } else { CoordinateSystem::Wgs84 },
                winding: if fix_winding { WindingPolicy::Fix } else { WindingPolicy::Reject },
            };
            let result = import_zones(&text, &opts)?;
            for e in &result.rejected {
                eprintln!("rejected: {e}");
            }
            println!("{} valid zone(s), {} rejected feature(s)", result.zones.len(), result.rejected.len());
            if !result.rejected.is_empty() {
                anyhow::bail!("{} feature(s) rejected", result.rejected.len());
            }
        }
        ZonesCommand::Import { file, gcj02, lenient, fix_winding, server, token } => {
            let geojson =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let (channel, bearer) = connect(&server, Some(&token)).await?;
            let mut client = smogwatch::proto::zones_client::ZonesClient::with_interceptor(channel, bearer);
            let resp = client
                .import(smogwatch::proto::ImportZonesRequest { geojson, gcj02, lenient, fix_winding })
                .await?
                .into_inner();
            for r in &resp.rejected {
                eprintln!("rejected: feature #{} {:?}: {}", r.index, r.feature_id, r.reason);
            }
            println!(
                "imported {} zone(s), {} rejected; zone set version {}",
                resp.imported,
                resp.rejected.len(),
                resp.zone_set_version
            );
        }
    }
    Ok(())
}

/// The audit log names command-line actions after the operating-system user.
fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli ({user})")
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.0 {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    }
}

/// A channel to a running server's gRPC address and the token to send with every call.
async fn connect(server: &str, token: Option<&str>) -> anyhow::Result<(tonic::transport::Channel, Bearer)> {
    let channel = tonic::transport::Channel::from_shared(server.to_string())
        .context("server address")?
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let bearer = match token {
        Some(t) => Some(format!("Bearer {t}").parse().context("the token is not a valid header value")?),
        None => None,
    };
    Ok((channel, Bearer(bearer)))
}

async fn token_command(cfg: &smogwatch::config::Config, command: TokenCommand) -> anyhow::Result<()> {
    use smogwatch::auth::{self, TokenInfo};
    // The configured store: the embedded one admits one process (stop the server, or use
    // --server); a CQL cluster is shared, so this works beside running nodes.
    let store = smogwatch::server::open_store(cfg).await.with_context(|| match cfg.store.kind {
        smogwatch::config::StoreKind::Embedded => format!(
            "opening the store in {} (a running server holds it: stop it, or use --server)",
            cfg.data_dir.display()
        ),
        smogwatch::config::StoreKind::Scylla => "connecting to the CQL store".to_string(),
    })?;
    let store = &*store;
    match command {
        TokenCommand::Create { role, city, county, enterprise, vins, label } => {
            let role = auth::role_from_parts(
                &role,
                city.as_deref(),
                county.as_deref(),
                enterprise.as_deref(),
                &vins,
            )?;
            let (token, secret) = auth::create_token(store, role, label, &cli_actor()).await?;
            print_created(&TokenInfo::from(&token), &secret);
        }
        TokenCommand::List => {
            let mut tokens = store.tokens().await?;
            tokens.sort_by_key(|t| t.created_ms);
            print_tokens(tokens.iter().map(TokenInfo::from));
        }
        TokenCommand::Revoke { id } => {
            let t = auth::revoke_token(store, &id, &cli_actor()).await?;
            eprintln!("revoked token {} ({})", t.id, t.label);
        }
    }
    Ok(())
}

/// The same commands through a running server's `Admin` service.
async fn token_command_remote(server: &str, token: &str, command: TokenCommand) -> anyhow::Result<()> {
    use smogwatch::proto;
    let (channel, bearer) = connect(server, Some(token)).await?;
    let mut admin = proto::admin_client::AdminClient::with_interceptor(channel, bearer);
    let info = |t: Option<proto::ApiTokenInfo>| {
        let t = t.unwrap_or_default();
        smogwatch::auth::TokenInfo {
            id: t.id,
            role: t.role,
            scope: t.scope,
            label: t.label,
            created_ms: t.created_ms,
            revoked_ms: (t.revoked_ms != 0).then_some(t.revoked_ms),
        }
    };
    match command {
        TokenCommand::Create { role, city, county, enterprise, vins, label } => {
            let r = admin
                .create_token(proto::CreateTokenRequest {
                    role,
                    city: city.unwrap_or_default(),
                    county: county.unwrap_or_default(),
                    enterprise: enterprise.unwrap_or_default(),
                    vins,
                    label,
                })
                .await?
                .into_inner();
            print_created(&info(r.token), &r.secret);
        }
        TokenCommand::List => {
            let r = admin.list_tokens(proto::ListTokensRequest {}).await?.into_inner();
            print_tokens(r.tokens.into_iter().map(|t| info(Some(t))));
        }
        TokenCommand::Revoke { id } => {
            let t = info(admin.revoke_token(proto::RevokeTokenRequest { id }).await?.into_inner().token);
            eprintln!("revoked token {} ({})", t.id, t.label);
        }
    }
    Ok(())
}

fn print_created(t: &smogwatch::auth::TokenInfo, secret: &str) {
    eprintln!("created token {} ({}, {}); it is shown once:", t.id, t.role, t.scope);
    println!("{secret}");
}

fn print_tokens(tokens: impl Iterator<Item = smogwatch::auth::TokenInfo>) {
    use smogwatch::model::format_ms;
    println!("{:<16}  {:<10}  {:<28}  {:<25}  {:<25}  label", "id", "role", "scope", "created", "revoked");
    for t in tokens {
        println!(
            "{:<16}  {:<10}  {:<28}  {:<25}  {:<25}  {}",
            t.id,
            t.role,
            t.scope,
            format_ms(t.created_ms),
            t.revoked_ms.map(format_ms).unwrap_or_else(|| "-".into()),
            t.label
        );
    }
}

/// Parses the CSV locally (line-numbered errors), sends it in batches, prints every rejected row.
async fn import_gate_records(
    file: &std::path::Path,
    server: &str,
    enterprise: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    use smogwatch::proto::clean_transport_client::CleanTransportClient;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (records, mut errors) = smogwatch::clean::csv::parse(&text).context("reading the CSV header")?;
    let (channel, bearer) = connect(server, token).await?;
    let mut client = CleanTransportClient::with_interceptor(channel, bearer);
    let mut stored = 0u64;
    for chunk in records.chunks(smogwatch::clean::gate_records::MAX_BATCH) {
        let req = smogwatch::proto::SubmitGateRecordsRequest {
            enterprise_id: enterprise.to_string(),
            records: chunk.iter().map(smogwatch::grpc::clean_svc::gate_record_to_proto).collect(),
        };
        let resp = client.submit_gate_records(req).await.context("submitting gate records")?.into_inner();
        stored += u64::from(resp.stored);
        errors.extend(
            resp.errors
                .into_iter()
                .map(|e| smogwatch::clean::gate_records::RowError { row: e.row, reason: e.reason }),
        );
    }
    errors.sort_by_key(|e| e.row);
    for e in &errors {
        println!("line {}: {}", e.row, e.reason);
    }
    println!("{stored} stored, {} rejected", errors.len());
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
