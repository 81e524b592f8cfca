//! Service configuration: defaults, then a TOML file, then `SMOGWATCH_*` environment variables
//! (nested keys with `__`, e.g. `SMOGWATCH_PIPELINE__WORKERS=4`).
use crate::auth::AuthConfig;
use crate::detect::RulesConfig;
use crate::pipeline::PipelineConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// Telemetry older than this is deleted (violations and audit are kept); 0 = keep forever.
    pub retention_days: u32,
    /// Batches of one gRPC stream being made durable at once.
    pub max_in_flight_batches: usize,
    /// Seconds to let clients finish at shutdown before their streams are cut.
    pub shutdown_grace_s: u64,
    /// How often a live-alert watcher re-reads the alert sequence from the store, in case an
    /// alert was committed by another node or missed by the in-process broadcast.
    pub watch_poll_ms: u64,
    pub pipeline: PipelineConfig,
    pub rules: RulesConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
}

/// TLS for both listeners (gRPC and HTTP); off unless both paths are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            retention_days: 180,
            max_in_flight_batches: 32,
            shutdown_grace_s: 10,
            watch_poll_ms: 2000,
            pipeline: PipelineConfig::default(),
            rules: RulesConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Defaults, overridden by `file` (if given) and by the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        }
        f.merge(Env::prefixed("SMOGWATCH_").split("__")).extract().map_err(|e| ConfigError(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "grpc_addr = \"127.0.0.1:6000\"\n[rules.nox]\nlimit_ppm = 400.0\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.grpc_addr.port(), 6000);
        assert_eq!(c.rules.nox.limit_ppm, 400.0);
        assert_eq!(c.rules.nox.window_s, 600);
        std::fs::write(&p, "grpc_addr = 12").unwrap();
        assert!(Config::load(Some(&p)).is_err());
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
