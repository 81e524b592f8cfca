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
    /// Manage API tokens. Works on the store directly, so run it while the server is stopped
    /// (the embedded store admits one process at a time).
    Token {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: TokenCommand,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
        Command::Token { config, command } => {
            let cfg = smogwatch::config::Config::load(config.as_deref())?;
            token_command(&cfg, command).await?;
        }
    }
    Ok(())
}

/// The audit log names command-line actions after the operating-system user.
fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli ({user})")
}

async fn token_command(cfg: &smogwatch::config::Config, command: TokenCommand) -> anyhow::Result<()> {
    use smogwatch::auth;
    use smogwatch::store::embedded::EmbeddedStore;
    let store = EmbeddedStore::open(&cfg.data_dir).with_context(|| {
        format!("opening the store in {} (stop the server first: it holds the store)", cfg.data_dir.display())
    })?;
    match command {
        TokenCommand::Create { role, city, county, enterprise, vins, label } => {
            let role = auth::role_from_parts(
                &role,
                city.as_deref(),
                county.as_deref(),
                enterprise.as_deref(),
                &vins,
            )?;
            let (token, secret) = auth::create_token(&store, role, label, &cli_actor()).await?;
            eprintln!(
                "created token {} ({}, {}); it is shown once:",
                token.id,
                token.role.name(),
                token.role.scope()
            );
            println!("{secret}");
        }
        TokenCommand::List => {
            use smogwatch::store::Store;
            let mut tokens = store.tokens().await?;
            tokens.sort_by_key(|t| t.created_ms);
            println!(
                "{:<16}  {:<10}  {:<28}  {:<25}  {:<25}  label",
                "id", "role", "scope", "created", "revoked"
            );
            for t in tokens {
                println!(
                    "{:<16}  {:<10}  {:<28}  {:<25}  {:<25}  {}",
                    t.id,
                    t.role.name(),
                    t.role.scope(),
                    smogwatch::model::format_ms(t.created_ms),
                    t.revoked_ms.map(smogwatch::model::format_ms).unwrap_or_else(|| "-".into()),
                    t.label
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let t = auth::revoke_token(&store, &id, &cli_actor()).await?;
            eprintln!("revoked token {} ({})", t.id, t.label);
        }
    }
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
