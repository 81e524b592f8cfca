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
