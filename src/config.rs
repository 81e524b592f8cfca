//! Service configuration: defaults, then a TOML file, then `SMOGWATCH_*` environment variables
//! (nested keys with `__`, e.g. `SMOGWATCH_PIPELINE__WORKERS=4`).
use crate::auth::AuthConfig;
use crate::detect::RulesConfig;
use crate::gateway::GatewayConfig;
use crate::pipeline::{IngestConfig, PipelineConfig};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Embedded store directory (only used when `store.kind = "embedded"`).
    pub data_dir: PathBuf,
    /// Telemetry older than this is deleted (violations and audit are kept); 0 = keep forever.
    /// The embedded store sweeps hourly; ScyllaDB expires rows by TTL (see `store.scylla`).
    pub retention_days: u32,
    /// Batches of one gRPC stream being made durable at once.
    pub max_in_flight_batches: usize,
    /// Seconds to let clients finish at shutdown before their streams are cut.
    pub shutdown_grace_s: u64,
    /// How often a live-alert watcher re-reads the alert sequence from the store, in case an
    /// alert was committed by another node or missed by the in-process broadcast.
    pub watch_poll_ms: u64,
    /// Edge limits of every transport: clock tolerance, batch size and span, message size.
    pub ingest: IngestConfig,
    pub pipeline: PipelineConfig,
    pub rules: RulesConfig,
    /// HJ 1239 / GB 17691 terminal gateway (TCP).
    pub hj1239: GatewayConfig,
    pub zones: ZonesConfig,
    pub store: StoreConfig,
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
            ingest: IngestConfig::default(),
            pipeline: PipelineConfig::default(),
            rules: RulesConfig::default(),
            hj1239: GatewayConfig::default(),
            zones: ZonesConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Which storage backend the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// One redb file under `data_dir`: a single node, no external dependency.
    #[default]
    Embedded,
    /// A ScyllaDB cluster (needs a binary built with `--features scylla`): several stateless
    /// smogwatch nodes share it. Apache Cassandra 4/5 speaks the same CQL (`cql` and
    /// `cassandra` are accepted as names for the same backend).
    #[serde(alias = "cql", alias = "cassandra")]
    Scylla,
}

/// `[store]`: backend selection and the ScyllaDB settings. The ScyllaDB part is parsed even in a
/// build without the `scylla` feature so that such a build can say clearly why it will not start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub embedded: EmbeddedConfig,
    pub scylla: ScyllaConfig,
}

/// `[store.embedded]`: memory the embedded engines may use for caching. Both caches fill on
/// demand up to these sizes; they are the bulk of the server's resident memory under load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddedConfig {
    /// redb page cache (vehicle states, violations, registry, documents), MiB.
    pub cache_mb: u64,
    /// fjall block cache of the telemetry records, MiB.
    pub telemetry_cache_mb: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig { cache_mb: 256, telemetry_cache_mb: 64 }
    }
}

/// Keyspace replication. Rendered into `CREATE KEYSPACE ... WITH replication = {...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Replication {
    /// One data centre, e.g. development or a single-DC test cluster.
    Simple { factor: u32 },
    /// Production: a replication factor per data centre (`{ dc1 = 3, dc2 = 3 }`).
    NetworkTopology { factors: BTreeMap<String, u32> },
}

impl Default for Replication {
    fn default() -> Self {
        Replication::Simple { factor: 3 }
    }
}

/// CQL consistency levels this service accepts for regular reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyLevel {
    One,
    Two,
    Three,
    Quorum,
    #[default]
    LocalQuorum,
    EachQuorum,
    All,
    LocalOne,
}

/// Serial consistency for the lightweight transactions (late violations, `IF NOT EXISTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialConsistencyLevel {
    Serial,
    #[default]
    LocalSerial,
}

/// Tablets (ScyllaDB 6+) for the keyspace. Disabled by default because ScyllaDB (through 2025.3
/// at least) does not support LWT in tablet keyspaces, and late violations are written with an
/// LWT. `default` omits the clause (needed on ScyllaDB < 6.0, which does not know it); `enabled`
/// only once the cluster supports LWT on tablets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tablets {
    Default,
    Enabled,
    #[default]
    Disabled,
}

/// `[store.scylla]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScyllaConfig {
    /// Contact points `host:port`. A TOML list, or one comma-separated string (handy in
    /// `SMOGWATCH_STORE__SCYLLA__URIS=scylla-1:9042,scylla-2:9042`). (No `uri` alias: figment
    /// layers the defaults' `uris` under the file, and an alias would make that a duplicate.)
    #[serde(deserialize_with = "string_or_list")]
    pub uris: Vec<String>,
    pub keyspace: String,
    pub replication: Replication,
    pub tablets: Tablets,
    /// Data centre whose replicas are preferred (and, without failover, the only ones used).
    /// Unset: every node counts as local, which is right for a single-DC cluster.
    pub local_dc: Option<String>,
    pub consistency: ConsistencyLevel,
    pub serial_consistency: SerialConsistencyLevel,
    /// Telemetry time-to-live in days; unset = `retention_days`. 0 = keep forever.
    pub telemetry_ttl_days: Option<u32>,
    /// Per-request client timeout.
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Concurrent requests one commit or read keeps in flight.
    pub max_concurrency: usize,
    /// How often (seconds) a node re-reads the vehicle registry, to learn of vehicles registered
    /// through other nodes (0 = never). Zone edits still reach other nodes only at their restart.
    pub registry_refresh_s: u64,
    /// Per-vehicle lease between nodes, seconds (`pipeline::ownership`): a node takes a vehicle's
    /// records only while it holds its lease, so two nodes never evaluate one vehicle at once.
    /// 0 = off (then a vehicle sent to two nodes at once may have an episode missed or split).
    pub vehicle_lease_s: u32,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            uris: vec!["127.0.0.1:9042".into()],
            keyspace: "smogwatch".into(),
            replication: Replication::default(),
            tablets: Tablets::Disabled,
            local_dc: None,
            consistency: ConsistencyLevel::LocalQuorum,
            serial_consistency: SerialConsistencyLevel::LocalSerial,
            telemetry_ttl_days: None,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            max_concurrency: 64,
            registry_refresh_s: 10,
            vehicle_lease_s: 30,
        }
    }
}

impl ScyllaConfig {
    /// The effective telemetry TTL in seconds (0 = none), given the service-wide retention.
    pub fn telemetry_ttl_s(&self, retention_days: u32) -> i64 {
        i64::from(self.telemetry_ttl_days.unwrap_or(retention_days)) * 86_400
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => {
            s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        OneOrMany::Many(v) => v,
    })
}

/// Zone files imported (and persisted) at every start, in addition to zones imported through
/// the API. Same-id zones are replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ZonesConfig {
    pub files: Vec<PathBuf>,
    /// The files' coordinates are GCJ-02 (AMap / Tencent); converted to WGS-84.
    pub gcj02: bool,
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

    /// The example file claims to show the defaults: it must load, and say the same thing as
    /// `Config::default()` (compared as serialised TOML values, so every key counts).
    #[test]
    fn example_config_shows_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/smogwatch.toml");
        let loaded = Config::load(Some(&example)).expect("config/smogwatch.toml loads");
        let as_value = |c: &Config| toml::Value::try_from(c).expect("config serialises");
        assert_eq!(as_value(&loaded), as_value(&Config::default()));
    }

    /// Every detector threshold and safeguard is written out in the example file (not left to
    /// the defaults), with the default value: `[rules]` in the file is exactly the default.
    #[test]
    fn example_config_documents_every_rule_key() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/smogwatch.toml");
        let text = std::fs::read_to_string(&example).expect("config/smogwatch.toml reads");
        let file: toml::Value = toml::from_str(&text).expect("config/smogwatch.toml parses");
        let defaults = toml::Value::try_from(crate::detect::RulesConfig::default()).expect("serialises");
        if std::env::var_os("SMOGWATCH_PRINT_RULES").is_some() {
            eprintln!("{}", toml::to_string_pretty(&defaults).unwrap_or_default());
        }
        assert_eq!(file.get("rules"), Some(&defaults));
    }

    #[test]
    fn store_section_parses_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let c = Config::load(None).unwrap();
        assert_eq!(c.store.kind, StoreKind::Embedded);
        std::fs::write(
            &p,
            r#"
[store]
kind = "scylla"
[store.scylla]
uris = "scylla-1:9042, scylla-2:9042"
keyspace = "sw"
consistency = "quorum"
telemetry_ttl_days = 30
replication = { strategy = "network_topology", factors = { hz = 3, nb = 2 } }
"#,
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.store.kind, StoreKind::Scylla);
        assert_eq!(c.store.scylla.uris, ["scylla-1:9042", "scylla-2:9042"]);
        assert_eq!(c.store.scylla.consistency, ConsistencyLevel::Quorum);
        assert_eq!(c.store.scylla.serial_consistency, SerialConsistencyLevel::LocalSerial);
        assert_eq!(c.store.scylla.telemetry_ttl_s(180), 30 * 86_400);
        assert_eq!(
            c.store.scylla.replication,
            Replication::NetworkTopology { factors: [("hz".into(), 3), ("nb".into(), 2)].into() }
        );
        std::fs::write(
            &p,
            "[store.scylla]\nuris = \"a:1\"\nreplication = { strategy = \"simple\", factor = 1 }\n",
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.store.scylla.uris, ["a:1"]);
        assert_eq!(c.store.scylla.telemetry_ttl_s(180), 180 * 86_400);
        for alias in ["cassandra", "cql"] {
            std::fs::write(&p, format!("[store]\nkind = \"{alias}\"\n")).unwrap();
            assert_eq!(Config::load(Some(&p)).unwrap().store.kind, StoreKind::Scylla, "{alias}");
        }
        std::fs::write(&p, "[store]\nkind = \"mongodb\"\n").unwrap();
        assert!(Config::load(Some(&p)).is_err());
    }
}
