//! Keyspace and tables: versioned CQL migrations recorded in `schema_migrations`.
//!
//! Each migration is a fixed list of idempotent DDL statements (`IF NOT EXISTS`) written against a
//! `{ks}` placeholder. At start every node applies, in version order, those whose version is not
//! yet recorded, then records it with a checksum of the template. Two nodes starting together may
//! both run a pending migration; that is harmless because every statement is idempotent. A
//! recorded checksum that differs from the code's means someone edited a shipped migration: start
//! fails rather than run on a schema the code does not describe. Settings that come from the
//! configuration (replication, telemetry TTL) are not in migrations, whose text must not depend
//! on config: the keyspace is created from the config, and the TTL is reconciled on every start.
//!
//! Layout rules: every read names its full partition key (checked by the statement catalogue
//! tests), no `ALLOW FILTERING`, no partition grows without bound (time-bucketed by day or month,
//! or hash-bucketed).
use super::dialect::Dialect;
use super::ScyllaError;
use crate::config::{Replication, ScyllaConfig, Tablets};

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// Telemetry compaction: TimeWindowCompactionStrategy with one-day windows, so that a whole
/// SSTable drops when its TTL passes (no tombstone compaction of old data). `gc_grace_seconds` is
/// low because telemetry is never deleted explicitly, only expired by TTL; the default TTL is
/// reconciled from the config at start (see `telemetry_ttl_statement`).
const TELEMETRY: &str = "CREATE TABLE IF NOT EXISTS {ks}.telemetry (
    vin text,
    day int,
    time_ms bigint,
    body blob,
    PRIMARY KEY ((vin, day), time_ms)
) WITH CLUSTERING ORDER BY (time_ms ASC)
    AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}
    AND default_time_to_live = 0
    AND gc_grace_seconds = 10800";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core: telemetry, detector state, registry, violations and their indexes",
        statements: &[
            TELEMETRY,
            // Detector state per vehicle: written with every commit that advanced it, read when a
            // worker first sees a VIN (after a restart or a reconnect to another node).
            "CREATE TABLE IF NOT EXISTS {ks}.vehicle_state (
    vin text,
    state blob,
    PRIMARY KEY ((vin))
)",
            "CREATE TABLE IF NOT EXISTS {ks}.vehicles (
    vin text,
    plate text,
    owner_enterprise_id text,
    city_code text,
    body text,
    PRIMARY KEY ((vin))
)",
            // Ordered registry listing: a merge over VEHICLE_BUCKETS partitions.
            "CREATE TABLE IF NOT EXISTS {ks}.vehicles_by_bucket (
    bucket int,
    vin text,
    body text,
    PRIMARY KEY ((bucket), vin)
) WITH CLUSTERING ORDER BY (vin ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.vehicles_by_plate (
    plate text,
    vin text,
    PRIMARY KEY ((plate), vin)
)",
            "CREATE TABLE IF NOT EXISTS {ks}.vehicles_by_enterprise (
    owner_enterprise_id text,
    vin text,
    PRIMARY KEY ((owner_enterprise_id), vin)
)",
            "CREATE TABLE IF NOT EXISTS {ks}.enterprises (
    id text,
    body text,
    PRIMARY KEY ((id))
)",
            "CREATE TABLE IF NOT EXISTS {ks}.enterprises_by_bucket (
    bucket int,
    id text,
    body text,
    PRIMARY KEY ((bucket), id)
) WITH CLUSTERING ORDER BY (id ASC)",
            // Source of truth for a violation; the LWT of late detection runs on this row.
            "CREATE TABLE IF NOT EXISTS {ks}.violations (
    id text,
    vin text,
    rule text,
    started_ms bigint,
    city_code text,
    body text,
    PRIMARY KEY ((id))
)",
            // Index rows carry what the listing filters on (vin, rule) so that filtering happens
            // before any body is fetched; bodies stay in `violations` (one copy to update).
            "CREATE TABLE IF NOT EXISTS {ks}.violations_by_day (
    day int,
    shard int,
    started_ms bigint,
    id text,
    vin text,
    rule text,
    PRIMARY KEY ((day, shard), started_ms, id)
) WITH CLUSTERING ORDER BY (started_ms DESC, id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.violations_by_vin_month (
    vin text,
    month int,
    started_ms bigint,
    id text,
    rule text,
    PRIMARY KEY ((vin, month), started_ms, id)
) WITH CLUSTERING ORDER BY (started_ms DESC, id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.violations_by_city_day (
    city_code text,
    day int,
    started_ms bigint,
    id text,
    vin text,
    rule text,
    PRIMARY KEY ((city_code, day), started_ms, id)
) WITH CLUSTERING ORDER BY (started_ms DESC, id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.violations_by_enterprise_day (
    enterprise_id text,
    day int,
    started_ms bigint,
    id text,
    vin text,
    rule text,
    PRIMARY KEY ((enterprise_id, day), started_ms, id)
) WITH CLUSTERING ORDER BY (started_ms DESC, id DESC)",
        ],
    },
    Migration {
        version: 2,
        // Used by the enterprise gate-passage feature (factory gate cameras / RFID): "which trucks
        // entered enterprise E on day D", newest first.
        name: "gate_passages by (enterprise, day) [gate-passage feature]",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.gate_passages (
    enterprise_id text,
    day int,
    passed_ms bigint,
    gate_id text,
    vin text,
    direction text,
    body text,
    PRIMARY KEY ((enterprise_id, day), passed_ms, gate_id, vin)
) WITH CLUSTERING ORDER BY (passed_ms DESC, gate_id ASC, vin ASC)"],
    },
    Migration {
        version: 3,
        // Used by the audit-log feature: who changed the registry / exported data, listed by day.
        name: "audit_log by (day, shard) [audit-log feature]",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.audit_log (
    day int,
    shard int,
    at_ms bigint,
    id text,
    actor text,
    action text,
    body text,
    PRIMARY KEY ((day, shard), at_ms, id)
) WITH CLUSTERING ORDER BY (at_ms DESC, id ASC)"],
    },
    Migration {
        version: 4,
        // Used by the API-token feature: bearer tokens are looked up by their hash, never stored.
        name: "api_tokens by hash [API-token feature]",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.api_tokens (
    token_hash text,
    name text,
    scopes text,
    created_ms bigint,
    revoked boolean,
    PRIMARY KEY ((token_hash))
)"],
    },
    Migration {
        version: 5,
        // Configuration documents managed through the API (zones as GeoJSON features, the
        // exemption book): small, read whole at start, one partition per kind.
        name: "documents by kind [zones, exemptions]",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.documents (
    kind text,
    id text,
    body blob,
    PRIMARY KEY ((kind), id)
)"],
    },
    Migration {
        version: 6,
        // Police desk and access control: alert sequence, reviews, a seq-ordered audit log and
        // tokens by id. The v3 `audit_log` (ordered by time, not by seq) and the v4 `api_tokens`
        // (keyed by hash, without the role) do not fit the trait and stay unused.
        name: "sequences, alerts, alerted_violations, violation_reviews, audit_by_seq, api_tokens_by_id",
        statements: &[
            // Named counters advanced only by LWT (`IF next_seq = ?`): "alerts", "audit". A
            // counter is the next unallocated number; a commit allocates a block at once.
            "CREATE TABLE IF NOT EXISTS {ks}.sequences (
    id text,
    next_seq bigint,
    PRIMARY KEY ((id))
)",
            // Live alerts in sequence order, ALERT_BUCKET consecutive numbers per partition.
            // `id` is empty for a number that was allocated but not used (a void: the violation
            // had already alerted); `allocated_ms` lets a reader tell a hole left by a failed
            // commit (old) from a write still in flight (young).
            "CREATE TABLE IF NOT EXISTS {ks}.alerts (
    bucket bigint,
    seq bigint,
    id text,
    allocated_ms bigint,
    PRIMARY KEY ((bucket), seq)
) WITH CLUSTERING ORDER BY (seq ASC)",
            // A violation alerts once: the first claim (LWT, IF NOT EXISTS) wins.
            "CREATE TABLE IF NOT EXISTS {ks}.alerted_violations (
    id text,
    seq bigint,
    PRIMARY KEY ((id))
)",
            // The latest review decision, apart from the violation row that detection rewrites.
            "CREATE TABLE IF NOT EXISTS {ks}.violation_reviews (
    violation_id text,
    body text,
    PRIMARY KEY ((violation_id))
)",
            // Audit log by LWT-allocated seq, AUDIT_BUCKET consecutive entries per partition,
            // newest first.
            "CREATE TABLE IF NOT EXISTS {ks}.audit_by_seq (
    bucket bigint,
    seq bigint,
    body text,
    PRIMARY KEY ((bucket), seq)
) WITH CLUSTERING ORDER BY (seq DESC)",
            // API credentials by id (first 16 hex of the hash). Few rows (people and platforms):
            // one partition (`shard` = 0), so that `tokens()` is a single-partition read.
            "CREATE TABLE IF NOT EXISTS {ks}.api_tokens_by_id (
    shard int,
    id text,
    body text,
    PRIMARY KEY ((shard), id)
)",
        ],
    },
    Migration {
        version: 7,
        // Clean transport (issue 6). Passages of both sources (telemetry and gate-system records)
        // keyed by their deterministic id within (enterprise, Beijing day): the v2 table's
        // clustering key (time, gate, vin) cannot hold a gate record without a VIN, nor two
        // directions at one instant. Non-road reports are filed under the Beijing year they
        // start in (a report spans at most 366 days, so a period reads at most its years and
        // the one before). Profiles (targets and gates) are one small row per enterprise.
        name: "clean transport: park_passages, non_road_volumes, clean_profiles",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {ks}.park_passages (
    enterprise_id text,
    day int,
    time_ms bigint,
    id text,
    body text,
    PRIMARY KEY ((enterprise_id, day), time_ms, id)
) WITH CLUSTERING ORDER BY (time_ms ASC, id ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.non_road_volumes (
    enterprise_id text,
    year int,
    from_ms bigint,
    id text,
    body text,
    PRIMARY KEY ((enterprise_id, year), from_ms, id)
) WITH CLUSTERING ORDER BY (from_ms ASC, id ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.clean_profiles (
    enterprise_id text,
    body text,
    PRIMARY KEY ((enterprise_id))
)",
        ],
    },
    Migration {
        version: 8,
        // Which buckets of each violation index hold rows ('day' → days of violations_by_day,
        // 'vin' → months of a VIN, 'city' → days of a city), newest first. A listing walks only
        // these instead of every day back to a look-back horizon: exact for any age (the first
        // run on Cassandra found violations older than the 366-day horizon unlistable) and one
        // read instead of ~1,500 empty partitions for an unbounded listing.
        name: "violation index bucket directory",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.violation_index_buckets (
    kind text,
    key text,
    bucket int,
    PRIMARY KEY ((kind, key), bucket)
) WITH CLUSTERING ORDER BY (bucket DESC)"],
    },
    Migration {
        version: 9,
        // Per-vehicle leases between smogwatch nodes (pipeline::ownership): claimed and renewed
        // with compare-and-set, expired by TTL.
        name: "vehicle ownership leases",
        statements: &["CREATE TABLE IF NOT EXISTS {ks}.vehicle_owners (
    vin text,
    owner text,
    PRIMARY KEY ((vin))
)"],
    },
];

/// The bookkeeping table itself (created before any migration runs).
pub const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
    version int,
    name text,
    checksum text,
    applied_ms bigint,
    PRIMARY KEY ((version))
)";
pub const SELECT_MIGRATION: &str = "SELECT checksum FROM {ks}.schema_migrations WHERE version = ?";
pub const INSERT_MIGRATION: &str =
    "INSERT INTO {ks}.schema_migrations (version, name, checksum, applied_ms) VALUES (?, ?, ?, ?)";
const SELECT_TABLE_TTL: &str =
    "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?";

/// A keyspace name is spliced into CQL text, so it must be a plain unquoted identifier.
pub fn validate_keyspace(ks: &str) -> Result<(), ScyllaError> {
    let ok = (1..=48).contains(&ks.len())
        && ks.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && ks.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ScyllaError::Config(format!(
            "keyspace {ks:?} must be 1-48 characters of a-z, 0-9 and _, starting with a letter"
        )))
    }
}

pub fn render(template: &str, ks: &str) -> String {
    template.replace("{ks}", ks)
}

/// Checksum of a migration's template text (not of the rendered text: the keyspace name may
/// legitimately differ between clusters).
pub fn checksum(m: &Migration) -> String {
    let mut h = blake3::Hasher::new();
    for s in m.statements {
        h.update(s.as_bytes());
        h.update(&[0]);
    }
    hex::encode(&h.finalize().as_bytes()[..16])
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `CREATE KEYSPACE IF NOT EXISTS` from the configured replication. An existing keyspace is left
/// as it is: changing replication needs `ALTER KEYSPACE` and a repair, an operator's decision.
/// The `tablets` option exists only on ScyllaDB: Cassandra gets the keyspace without it.
pub fn keyspace_cql(cfg: &ScyllaConfig, dialect: Dialect) -> Result<String, ScyllaError> {
    validate_keyspace(&cfg.keyspace)?;
    let replication = match &cfg.replication {
        Replication::Simple { factor } if *factor > 0 => {
            format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
        }
        Replication::NetworkTopology { factors }
            if !factors.is_empty() && factors.values().all(|f| *f > 0) =>
        {
            let dcs: Vec<String> = factors.iter().map(|(dc, f)| format!("{}: {f}", quote(dc))).collect();
            format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
        }
        other => {
            return Err(ScyllaError::Config(format!("invalid replication {other:?}: factors must be > 0")))
        }
    };
    let tablets = match cfg.tablets {
        _ if dialect == Dialect::Cassandra => "",
        Tablets::Default => "",
        Tablets::Enabled => " AND tablets = {'enabled': true}",
        Tablets::Disabled => " AND tablets = {'enabled': false}",
    };
    Ok(format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {replication} AND durable_writes = true{tablets}",
        cfg.keyspace
    ))
}

/// Sets the telemetry table's default TTL (seconds, 0 = none). Rows are also written with an
/// explicit per-record TTL (see `keys::record_ttl_s`); the default covers writes by other tools.
pub fn telemetry_ttl_statement(ks: &str, ttl_s: i64) -> String {
    format!("ALTER TABLE {ks}.telemetry WITH default_time_to_live = {}", ttl_s.clamp(0, 630_720_000))
}

/// Creates the keyspace, applies pending migrations in order, reconciles the telemetry TTL.
pub async fn apply(
    session: &::scylla::client::session::Session,
    cfg: &ScyllaConfig,
    dialect: Dialect,
    telemetry_ttl_s: i64,
) -> Result<(), ScyllaError> {
    let ks = cfg.keyspace.as_str();
    session.query_unpaged(keyspace_cql(cfg, dialect)?, ()).await?;
    session.await_schema_agreement().await?;
    session.query_unpaged(render(SCHEMA_MIGRATIONS, ks), ()).await?;
    session.await_schema_agreement().await?;
    let select = session.prepare(render(SELECT_MIGRATION, ks)).await?;
    let insert = session.prepare(render(INSERT_MIGRATION, ks)).await?;
    for m in MIGRATIONS {
        let sum = checksum(m);
        let rows = session.execute_unpaged(&select, (m.version,)).await?.into_rows_result()?;
        match rows.maybe_first_row::<(Option<String>,)>()? {
            Some((Some(recorded),)) if recorded == sum => continue,
            Some((recorded,)) => {
                return Err(ScyllaError::Migration {
                    version: m.version,
                    detail: format!(
                        "recorded checksum {recorded:?} differs from this build's {sum}: a shipped \
                         migration was edited; add a new migration instead"
                    ),
                })
            }
            None => {}
        }
        tracing::info!(version = m.version, name = m.name, "applying schema migration");
        for stmt in m.statements {
            session
                .query_unpaged(render(stmt, ks), ())
                .await
                .map_err(|e| ScyllaError::Migration { version: m.version, detail: e.to_string() })?;
        }
        session.await_schema_agreement().await?;
        session.execute_unpaged(&insert, (m.version, m.name, sum, crate::model::now_ms())).await?;
    }
    let rows = session.query_unpaged(SELECT_TABLE_TTL, (ks, "telemetry")).await?.into_rows_result()?;
    let current = rows.maybe_first_row::<(Option<i32>,)>()?.and_then(|r| r.0).unwrap_or(0);
    if i64::from(current) != telemetry_ttl_s.clamp(0, 630_720_000) {
        tracing::info!(from = current, to = telemetry_ttl_s, "setting telemetry default TTL");
        session.query_unpaged(telemetry_ttl_statement(ks, telemetry_ttl_s), ()).await?;
        session.await_schema_agreement().await?;
    }
    Ok(())
}

/// Partition key columns of a `CREATE TABLE` written in this module's style
/// (`PRIMARY KEY ((a, b), c)`). Used by the tests to hold the statement catalogue to the schema.
pub fn partition_key_of(create: &str) -> Option<(String, Vec<String>)> {
    let rest = create.split("TABLE IF NOT EXISTS {ks}.").nth(1)?;
    let table = rest.split(|c: char| c.is_whitespace() || c == '(').next()?.to_string();
    let pk = create.split("PRIMARY KEY ((").nth(1)?.split(')').next()?;
    Some((table, pk.split(',').map(|c| c.trim().to_string()).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(replication: Replication) -> ScyllaConfig {
        ScyllaConfig {
            replication,
            keyspace: "smogwatch".into(),
            tablets: Tablets::Default,
            ..Default::default()
        }
    }

    #[test]
    fn keyspace_options_render() {
        let simple = keyspace_cql(&cfg(Replication::Simple { factor: 3 }), Dialect::Scylla).unwrap();
        assert_eq!(
            simple,
            "CREATE KEYSPACE IF NOT EXISTS smogwatch WITH replication = {'class': 'SimpleStrategy', \
             'replication_factor': 3} AND durable_writes = true"
        );
        let factors = BTreeMap::from([("hangzhou".to_string(), 3), ("ning'bo".to_string(), 2)]);
        let mut c = cfg(Replication::NetworkTopology { factors });
        c.tablets = Tablets::Disabled;
        let nts = keyspace_cql(&c, Dialect::Scylla).unwrap();
        assert!(nts.contains("{'class': 'NetworkTopologyStrategy', 'hangzhou': 3, 'ning''bo': 2}"), "{nts}");
        assert!(nts.ends_with("AND tablets = {'enabled': false}"));
        assert!(keyspace_cql(&cfg(Replication::Simple { factor: 0 }), Dialect::Scylla).is_err());
        assert!(keyspace_cql(
            &cfg(Replication::NetworkTopology { factors: BTreeMap::new() }),
            Dialect::Scylla
        )
        .is_err());
        // The shipped default: vnodes, because late violations use LWT.
        let default = keyspace_cql(&ScyllaConfig::default(), Dialect::Scylla).unwrap();
        assert!(default.ends_with("AND durable_writes = true AND tablets = {'enabled': false}"), "{default}");
        let mut bad = cfg(Replication::Simple { factor: 1 });
        bad.keyspace = "x; DROP KEYSPACE y".into();
        assert!(keyspace_cql(&bad, Dialect::Scylla).is_err());
    }

    #[test]
    fn cassandra_never_gets_scylla_only_clauses() {
        for tablets in [Tablets::Default, Tablets::Enabled, Tablets::Disabled] {
            let mut c = cfg(Replication::Simple { factor: 3 });
            c.tablets = tablets;
            let cql = keyspace_cql(&c, Dialect::Cassandra).unwrap();
            assert!(!cql.contains("tablets"), "{cql}");
            assert!(cql.ends_with("AND durable_writes = true"), "{cql}");
        }
        for m in MIGRATIONS {
            for s in m.statements {
                for clause in ["USING TIMEOUT", "BYPASS CACHE", "per_partition_rate_limit", "tablets"] {
                    assert!(!s.contains(clause), "migration {} uses Scylla-only {clause}", m.version);
                }
            }
        }
    }

    #[test]
    fn migrations_are_ordered_idempotent_and_without_filtering() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i32).collect::<Vec<_>>());
        for m in MIGRATIONS {
            assert_eq!(checksum(m).len(), 32);
            for s in m.statements {
                let r = render(s, "ks1");
                assert!(r.starts_with("CREATE TABLE IF NOT EXISTS ks1."), "{r}");
                assert!(!r.contains("{ks}"));
                assert!(!r.to_uppercase().contains("ALLOW FILTERING"));
                assert!(partition_key_of(s).is_some(), "explicit ((partition key)) in {s}");
                assert_eq!(r.matches('(').count(), r.matches(')').count(), "{r}");
            }
        }
        let sums: std::collections::HashSet<_> = MIGRATIONS.iter().map(checksum).collect();
        assert_eq!(sums.len(), MIGRATIONS.len());
    }

    #[test]
    fn telemetry_uses_daily_twcs_and_ttl() {
        let t = render(TELEMETRY, "sw");
        assert!(t.contains("PRIMARY KEY ((vin, day), time_ms)"));
        assert!(t.contains("'class': 'TimeWindowCompactionStrategy'"));
        assert!(t.contains("'compaction_window_unit': 'DAYS', 'compaction_window_size': 1"));
        assert!(t.contains("default_time_to_live"));
        assert_eq!(
            telemetry_ttl_statement("sw", 180 * 86_400),
            "ALTER TABLE sw.telemetry WITH default_time_to_live = 15552000"
        );
        assert_eq!(
            telemetry_ttl_statement("sw", -1),
            "ALTER TABLE sw.telemetry WITH default_time_to_live = 0"
        );
    }

    #[test]
    fn later_migrations_hold_the_planned_tables() {
        let keys: BTreeMap<String, Vec<String>> =
            MIGRATIONS.iter().flat_map(|m| m.statements.iter()).filter_map(|s| partition_key_of(s)).collect();
        assert_eq!(keys["gate_passages"], ["enterprise_id", "day"]);
        assert_eq!(keys["audit_log"], ["day", "shard"]);
        assert_eq!(keys["api_tokens"], ["token_hash"]);
        assert_eq!(keys["park_passages"], ["enterprise_id", "day"]);
        assert_eq!(keys["non_road_volumes"], ["enterprise_id", "year"]);
        assert_eq!(keys["clean_profiles"], ["enterprise_id"]);
        assert_eq!(keys["violations_by_day"], ["day", "shard"]);
        assert_eq!(keys["telemetry"], ["vin", "day"]);
        assert_eq!(keys["sequences"], ["id"]);
        assert_eq!(keys["alerts"], ["bucket"]);
        assert_eq!(keys["alerted_violations"], ["id"]);
        assert_eq!(keys["violation_reviews"], ["violation_id"]);
        assert_eq!(keys["audit_by_seq"], ["bucket"]);
        assert_eq!(keys["api_tokens_by_id"], ["shard"]);
        assert_eq!(partition_key_of(SCHEMA_MIGRATIONS).unwrap().1, ["version"]);
    }
}
