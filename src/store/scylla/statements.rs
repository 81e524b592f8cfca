//! Every CQL statement the store runs, as a named catalogue entry (template text, table, the
//! partition key it addresses), prepared once at start into [`Prepared`]; and the pure functions
//! that turn domain values into each statement's bind values. Both are testable without a
//! server: the tests hold every read to "names its full partition key with `=` / `IN`" and the
//! declared keys to the schema's.
use super::keys::{
    day_bucket, enterprise_bucket, month_bucket, record_ttl_s, vehicle_bucket, violation_shard,
};
use super::schema::render;
use super::ScyllaError;
use crate::clean::{CleanProfile, GatePassage, NonRoadVolume};
use crate::model::{violation_city, Enterprise, TelemetryRecord, TimestampMs, Vehicle, Vin, Violation};
use crate::store::codec::{encode_record, to_json};
use ::scylla::client::session::Session;
use ::scylla::statement::prepared::PreparedStatement;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    /// Lightweight transaction (Paxos): about four round trips instead of one; used only where
    /// "write unless present" or compare-and-set is the semantics (late violations, claiming a
    /// violation's alert, allocating alert / audit sequence numbers).
    Lwt,
}

#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub table: &'static str,
    pub partition_key: &'static [&'static str],
    /// CQL with a `{ks}` placeholder for the keyspace.
    pub cql: &'static str,
}

/// Page size of paged reads (rows per round trip).
pub const PAGE_SIZE: i32 = 1000;

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident $table:literal [$($pk:literal),*] $cql:literal; )*) => {
        pub const CATALOGUE: &[Spec] = &[
            $( Spec { name: stringify!($name), kind: Kind::$kind, table: $table, partition_key: &[$($pk),*], cql: $cql }, )*
        ];

        /// The catalogue, prepared on a session.
        pub struct Prepared {
            $( $(#[$doc])* pub $name: PreparedStatement, )*
        }

        impl Prepared {
            pub async fn prepare(session: &Session, ks: &str) -> Result<Self, ScyllaError> {
                Ok(Prepared {
                    $( $name: prepare_one(session, ks, Kind::$kind, $cql).await?, )*
                })
            }
        }
    };
}

async fn prepare_one(
    session: &Session,
    ks: &str,
    kind: Kind,
    cql: &str,
) -> Result<PreparedStatement, ScyllaError> {
    let mut p = session.prepare(render(cql, ks)).await?;
    // Plain upserts keyed by natural ids may be retried and sent speculatively; an LWT retried
    // after a timeout could report "not applied" for its own write (handled, but not blindly).
    p.set_is_idempotent(kind != Kind::Lwt);
    p.set_page_size(PAGE_SIZE);
    Ok(p)
}

catalogue! {
    /// One telemetry record (upsert by (vin, time): a resent record overwrites itself).
    insert_record: Write "telemetry" ["vin", "day"]
        "INSERT INTO {ks}.telemetry (vin, day, time_ms, body) VALUES (?, ?, ?, ?) USING TTL ?";
    select_records: Read "telemetry" ["vin", "day"]
        "SELECT body FROM {ks}.telemetry WHERE vin = ? AND day = ? AND time_ms >= ? AND time_ms < ? LIMIT ?";

    insert_state: Write "vehicle_state" ["vin"]
        "INSERT INTO {ks}.vehicle_state (vin, state) VALUES (?, ?)";
    select_state: Read "vehicle_state" ["vin"]
        "SELECT state FROM {ks}.vehicle_state WHERE vin = ?";

    insert_vehicle: Write "vehicles" ["vin"]
        "INSERT INTO {ks}.vehicles (vin, plate, owner_enterprise_id, city_code, body) VALUES (?, ?, ?, ?, ?)";
    select_vehicle: Read "vehicles" ["vin"]
        "SELECT plate, owner_enterprise_id, body FROM {ks}.vehicles WHERE vin = ?";
    insert_vehicle_by_bucket: Write "vehicles_by_bucket" ["bucket"]
        "INSERT INTO {ks}.vehicles_by_bucket (bucket, vin, body) VALUES (?, ?, ?)";
    select_vehicles_page: Read "vehicles_by_bucket" ["bucket"]
        "SELECT vin, body FROM {ks}.vehicles_by_bucket WHERE bucket = ? AND vin > ? LIMIT ?";
    insert_vehicle_by_plate: Write "vehicles_by_plate" ["plate"]
        "INSERT INTO {ks}.vehicles_by_plate (plate, vin) VALUES (?, ?)";
    delete_vehicle_by_plate: Write "vehicles_by_plate" ["plate"]
        "DELETE FROM {ks}.vehicles_by_plate WHERE plate = ? AND vin = ?";
    /// Plate lookup (registry search by plate).
    select_vehicles_by_plate: Read "vehicles_by_plate" ["plate"]
        "SELECT vin FROM {ks}.vehicles_by_plate WHERE plate = ?";
    insert_vehicle_by_enterprise: Write "vehicles_by_enterprise" ["owner_enterprise_id"]
        "INSERT INTO {ks}.vehicles_by_enterprise (owner_enterprise_id, vin) VALUES (?, ?)";
    delete_vehicle_by_enterprise: Write "vehicles_by_enterprise" ["owner_enterprise_id"]
        "DELETE FROM {ks}.vehicles_by_enterprise WHERE owner_enterprise_id = ? AND vin = ?";
    /// An enterprise's fleet.
    select_vehicles_by_enterprise: Read "vehicles_by_enterprise" ["owner_enterprise_id"]
        "SELECT vin FROM {ks}.vehicles_by_enterprise WHERE owner_enterprise_id = ? AND vin > ? LIMIT ?";

    insert_enterprise: Write "enterprises" ["id"]
        "INSERT INTO {ks}.enterprises (id, body) VALUES (?, ?)";
    select_enterprise: Read "enterprises" ["id"]
        "SELECT body FROM {ks}.enterprises WHERE id = ?";

    insert_document: Write "documents" ["kind"]
        "INSERT INTO {ks}.documents (kind, id, body) VALUES (?, ?, ?)";
    delete_document: Write "documents" ["kind"]
        "DELETE FROM {ks}.documents WHERE kind = ? AND id = ?";
    select_documents: Read "documents" ["kind"]
        "SELECT id, body FROM {ks}.documents WHERE kind = ?";
    insert_enterprise_by_bucket: Write "enterprises_by_bucket" ["bucket"]
        "INSERT INTO {ks}.enterprises_by_bucket (bucket, id, body) VALUES (?, ?, ?)";
    select_enterprises_page: Read "enterprises_by_bucket" ["bucket"]
        "SELECT id, body FROM {ks}.enterprises_by_bucket WHERE bucket = ? AND id > ? LIMIT ?";

    /// Live detection: the newest snapshot replaces the older one.
    insert_violation: Write "violations" ["id"]
        "INSERT INTO {ks}.violations (id, vin, rule, started_ms, city_code, body) VALUES (?, ?, ?, ?, ?, ?)";
    /// Late detection: never overwrites what live detection recorded under the same id.
    insert_violation_if_absent: Lwt "violations" ["id"]
        "INSERT INTO {ks}.violations (id, vin, rule, started_ms, city_code, body) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    select_violation: Read "violations" ["id"]
        "SELECT body FROM {ks}.violations WHERE id = ?";
    insert_violation_by_day: Write "violations_by_day" ["day", "shard"]
        "INSERT INTO {ks}.violations_by_day (day, shard, started_ms, id, vin, rule) VALUES (?, ?, ?, ?, ?, ?)";
    /// Newest first strictly before (started_ms, id), not before a lower start bound.
    select_violations_by_day: Read "violations_by_day" ["day", "shard"]
        "SELECT started_ms, id, vin, rule FROM {ks}.violations_by_day WHERE day = ? AND shard = ? AND (started_ms, id) < (?, ?) AND (started_ms) >= (?) LIMIT ?";
    insert_violation_by_vin_month: Write "violations_by_vin_month" ["vin", "month"]
        "INSERT INTO {ks}.violations_by_vin_month (vin, month, started_ms, id, rule) VALUES (?, ?, ?, ?, ?)";
    select_violations_by_vin_month: Read "violations_by_vin_month" ["vin", "month"]
        "SELECT started_ms, id, vin, rule FROM {ks}.violations_by_vin_month WHERE vin = ? AND month = ? AND (started_ms, id) < (?, ?) AND (started_ms) >= (?) LIMIT ?";
    insert_violation_by_city_day: Write "violations_by_city_day" ["city_code", "day"]
        "INSERT INTO {ks}.violations_by_city_day (city_code, day, started_ms, id, vin, rule) VALUES (?, ?, ?, ?, ?, ?)";
    /// Jurisdiction listing (a city's enforcement desk).
    select_violations_by_city_day: Read "violations_by_city_day" ["city_code", "day"]
        "SELECT started_ms, id, vin, rule FROM {ks}.violations_by_city_day WHERE city_code = ? AND day = ? AND (started_ms, id) < (?, ?) AND (started_ms) >= (?) LIMIT ?";
    /// A vehicle's lease: taken when nobody holds it, renewed by its holder, given back.
    claim_vehicle: Lwt "vehicle_owners" ["vin"]
        "INSERT INTO {ks}.vehicle_owners (vin, owner) VALUES (?, ?) IF NOT EXISTS USING TTL ?";
    renew_vehicle: Lwt "vehicle_owners" ["vin"]
        "UPDATE {ks}.vehicle_owners USING TTL ? SET owner = ? WHERE vin = ? IF owner = ?";
    release_vehicle: Lwt "vehicle_owners" ["vin"]
        "DELETE FROM {ks}.vehicle_owners WHERE vin = ? IF owner = ?";
    insert_index_bucket: Write "violation_index_buckets" ["kind", "key"]
        "INSERT INTO {ks}.violation_index_buckets (kind, key, bucket) VALUES (?, ?, ?)";
    /// The buckets of one index key that hold rows, newest first, within [from, to].
    select_index_buckets: Read "violation_index_buckets" ["kind", "key"]
        "SELECT bucket FROM {ks}.violation_index_buckets WHERE kind = ? AND key = ? AND bucket >= ? AND bucket <= ?";
    insert_violation_by_enterprise_day: Write "violations_by_enterprise_day" ["enterprise_id", "day"]
        "INSERT INTO {ks}.violations_by_enterprise_day (enterprise_id, day, started_ms, id, vin, rule) VALUES (?, ?, ?, ?, ?, ?)";
    /// An enterprise's own violations (enterprise portal).
    select_violations_by_enterprise_day: Read "violations_by_enterprise_day" ["enterprise_id", "day"]
        "SELECT started_ms, id, vin, rule FROM {ks}.violations_by_enterprise_day WHERE enterprise_id = ? AND day = ? AND (started_ms, id) < (?, ?) AND (started_ms) >= (?) LIMIT ?";

    /// [gate-passage feature] one passage through an enterprise gate.
    insert_gate_passage: Write "gate_passages" ["enterprise_id", "day"]
        "INSERT INTO {ks}.gate_passages (enterprise_id, day, passed_ms, gate_id, vin, direction, body) VALUES (?, ?, ?, ?, ?, ?, ?)";
    /// [gate-passage feature]
    select_gate_passages: Read "gate_passages" ["enterprise_id", "day"]
        "SELECT passed_ms, gate_id, vin, direction, body FROM {ks}.gate_passages WHERE enterprise_id = ? AND day = ? AND passed_ms < ? LIMIT ?";
    /// [audit-log feature]
    insert_audit: Write "audit_log" ["day", "shard"]
        "INSERT INTO {ks}.audit_log (day, shard, at_ms, id, actor, action, body) VALUES (?, ?, ?, ?, ?, ?, ?)";
    /// [audit-log feature]
    select_audit: Read "audit_log" ["day", "shard"]
        "SELECT at_ms, id, actor, action, body FROM {ks}.audit_log WHERE day = ? AND shard IN ? AND at_ms < ? LIMIT ?";
    /// [API-token feature]
    insert_api_token: Write "api_tokens" ["token_hash"]
        "INSERT INTO {ks}.api_tokens (token_hash, name, scopes, created_ms, revoked) VALUES (?, ?, ?, ?, ?)";
    /// Clean transport: one park passage (either source), upsert by deterministic id.
    insert_park_passage: Write "park_passages" ["enterprise_id", "day"]
        "INSERT INTO {ks}.park_passages (enterprise_id, day, time_ms, id, body) VALUES (?, ?, ?, ?, ?)";
    /// An enterprise's passages of one day within [from, to), oldest first.
    select_park_passages: Read "park_passages" ["enterprise_id", "day"]
        "SELECT body FROM {ks}.park_passages WHERE enterprise_id = ? AND day = ? AND time_ms >= ? AND time_ms < ? LIMIT ?";
    insert_non_road_volume: Write "non_road_volumes" ["enterprise_id", "year"]
        "INSERT INTO {ks}.non_road_volumes (enterprise_id, year, from_ms, id, body) VALUES (?, ?, ?, ?, ?)";
    /// An enterprise's non-road reports filed under one year that start before `to`.
    select_non_road_volumes: Read "non_road_volumes" ["enterprise_id", "year"]
        "SELECT body FROM {ks}.non_road_volumes WHERE enterprise_id = ? AND year = ? AND from_ms < ?";
    insert_clean_profile: Write "clean_profiles" ["enterprise_id"]
        "INSERT INTO {ks}.clean_profiles (enterprise_id, body) VALUES (?, ?)";
    select_clean_profile: Read "clean_profiles" ["enterprise_id"]
        "SELECT body FROM {ks}.clean_profiles WHERE enterprise_id = ?";
    /// [API-token feature]
    select_api_token: Read "api_tokens" ["token_hash"]
        "SELECT name, scopes, created_ms, revoked FROM {ks}.api_tokens WHERE token_hash = ?";

    /// Current value of a named counter (the next unallocated number).
    select_sequence: Read "sequences" ["id"]
        "SELECT next_seq FROM {ks}.sequences WHERE id = ?";
    /// First allocation of a counter.
    insert_sequence_if_absent: Lwt "sequences" ["id"]
        "INSERT INTO {ks}.sequences (id, next_seq) VALUES (?, ?) IF NOT EXISTS";
    /// Allocates the block [expected, new) when nobody else advanced the counter meanwhile;
    /// otherwise returns the current value (retry from it).
    advance_sequence: Lwt "sequences" ["id"]
        "UPDATE {ks}.sequences SET next_seq = ? WHERE id = ? IF next_seq = ?";

    /// One live alert (or a void: empty id) under its sequence number.
    insert_alert: Write "alerts" ["bucket"]
        "INSERT INTO {ks}.alerts (bucket, seq, id, allocated_ms) VALUES (?, ?, ?, ?)";
    /// Re-asserts the alert row of an earlier claim (a commit retried after a failure between
    /// claim and alert row); leaves `allocated_ms` as it was (null when the row was missing).
    reassert_alert: Write "alerts" ["bucket"]
        "INSERT INTO {ks}.alerts (bucket, seq, id) VALUES (?, ?, ?)";
    select_alerts: Read "alerts" ["bucket"]
        "SELECT seq, id, allocated_ms FROM {ks}.alerts WHERE bucket = ? AND seq > ? LIMIT ?";
    /// A violation alerts once: the first claim wins.
    claim_alert: Lwt "alerted_violations" ["id"]
        "INSERT INTO {ks}.alerted_violations (id, seq) VALUES (?, ?) IF NOT EXISTS";
    select_alerted: Read "alerted_violations" ["id"]
        "SELECT seq FROM {ks}.alerted_violations WHERE id = ?";

    insert_review: Write "violation_reviews" ["violation_id"]
        "INSERT INTO {ks}.violation_reviews (violation_id, body) VALUES (?, ?)";
    select_review: Read "violation_reviews" ["violation_id"]
        "SELECT body FROM {ks}.violation_reviews WHERE violation_id = ?";

    insert_audit_entry: Write "audit_by_seq" ["bucket"]
        "INSERT INTO {ks}.audit_by_seq (bucket, seq, body) VALUES (?, ?, ?)";
    /// Newest first strictly before a seq.
    select_audit_entries: Read "audit_by_seq" ["bucket"]
        "SELECT seq, body FROM {ks}.audit_by_seq WHERE bucket = ? AND seq < ? LIMIT ?";

    insert_token: Write "api_tokens_by_id" ["shard"]
        "INSERT INTO {ks}.api_tokens_by_id (shard, id, body) VALUES (?, ?, ?)";
    select_token: Read "api_tokens_by_id" ["shard"]
        "SELECT body FROM {ks}.api_tokens_by_id WHERE shard = ? AND id = ?";
    select_tokens: Read "api_tokens_by_id" ["shard"]
        "SELECT body FROM {ks}.api_tokens_by_id WHERE shard = ?";
}

/// Which statements serve each `Store` read (the queries the API and the pipeline make). The
/// catalogue tests check that each named statement exists, is a read, and names its full
/// partition key.
pub const STORE_READS: &[(&str, &[&str])] = &[
    ("records", &["select_records"]),
    ("vehicle_state", &["select_state"]),
    ("vehicles", &["select_vehicles_page"]),
    ("enterprise", &["select_enterprise"]),
    ("enterprises", &["select_enterprises_page"]),
    ("documents", &["select_documents"]),
    ("violation", &["select_violation"]),
    (
        "violations",
        &[
            "select_violations_by_day",
            "select_violations_by_vin_month",
            "select_violations_by_city_day",
            "select_index_buckets",
            "select_violation",
            "select_review",
        ],
    ),
    ("alerts_after", &["select_alerts", "select_sequence", "select_violation"]),
    ("last_alert_seq", &["select_sequence"]),
    ("commit (alert once)", &["select_alerted", "select_sequence"]),
    ("review_violation", &["select_violation", "select_sequence"]),
    ("violation_reviews", &["select_review"]),
    ("append_audit", &["select_sequence"]),
    ("audit_log", &["select_sequence", "select_audit_entries"]),
    ("token", &["select_token"]),
    ("tokens", &["select_tokens"]),
    ("upsert_vehicle (index maintenance)", &["select_vehicle"]),
    ("commit (enterprise of a violation)", &["select_vehicle"]),
    ("clean_profile", &["select_clean_profile"]),
    ("gate_passages", &["select_park_passages"]),
    ("non_road_volumes", &["select_non_road_volumes"]),
];

// ---- bind values -----------------------------------------------------------------------------

pub type RecordRow = (String, i32, i64, Vec<u8>, i32);

pub fn record_row(r: &TelemetryRecord, ttl_s: i64, now_ms: TimestampMs) -> RecordRow {
    (
        r.vin.as_str().to_string(),
        day_bucket(r.time_ms),
        r.time_ms,
        encode_record(r),
        record_ttl_s(ttl_s, r.time_ms, now_ms),
    )
}

/// `select_records` for one day partition, clipped to `[from, to)`.
pub fn records_query(
    vin: &Vin,
    day: i32,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    limit: usize,
) -> (String, i32, i64, i64, i32) {
    (vin.as_str().to_string(), day, from_ms, to_ms, limit_i32(limit))
}

/// Values of `insert_park_passage`: partition by the Beijing day of the passage.
pub fn park_passage_row(p: &GatePassage) -> (String, i32, i64, String, String) {
    (
        p.enterprise_id.clone(),
        day_bucket(p.time_ms),
        p.time_ms,
        p.id.clone(),
        String::from_utf8_lossy(&to_json(p)).into_owned(),
    )
}

/// Partition of a non-road report: the Beijing year it starts in.
pub fn volume_year(from_ms: TimestampMs) -> i32 {
    month_bucket(from_ms) / 100
}

pub fn non_road_volume_row(v: &NonRoadVolume) -> (String, i32, i64, String, String) {
    (
        v.enterprise_id.clone(),
        volume_year(v.from_ms),
        v.from_ms,
        v.id.clone(),
        String::from_utf8_lossy(&to_json(v)).into_owned(),
    )
}

pub fn clean_profile_row(p: &CleanProfile) -> (String, String) {
    (p.enterprise_id.clone(), String::from_utf8_lossy(&to_json(p)).into_owned())
}

pub fn limit_i32(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

pub fn state_row(vin: &Vin, state: &[u8]) -> (String, Vec<u8>) {
    (vin.as_str().to_string(), state.to_vec())
}

pub type VehicleRow = (String, String, String, String, String);

pub fn vehicle_row(vin: &Vin, v: &Vehicle) -> VehicleRow {
    (
        vin.as_str().to_string(),
        v.plate.clone(),
        v.owner_enterprise_id.clone(),
        v.city_code.clone(),
        String::from_utf8_lossy(&to_json(v)).into_owned(),
    )
}

pub fn vehicle_bucket_row(vin: &Vin, v: &Vehicle) -> (i32, String, String) {
    (vehicle_bucket(vin), vin.as_str().to_string(), String::from_utf8_lossy(&to_json(v)).into_owned())
}

pub fn enterprise_row(e: &Enterprise) -> (String, String) {
    (e.id.clone(), String::from_utf8_lossy(&to_json(e)).into_owned())
}

pub fn enterprise_bucket_row(e: &Enterprise) -> (i32, String, String) {
    (enterprise_bucket(&e.id), e.id.clone(), String::from_utf8_lossy(&to_json(e)).into_owned())
}

pub type ViolationRow = (String, String, String, i64, String, String);

/// Values of `insert_violation` and `insert_violation_if_absent`.
pub fn violation_row(v: &Violation) -> ViolationRow {
    (
        v.id.as_str().to_string(),
        v.vin.as_str().to_string(),
        v.rule.clone(),
        v.started_ms,
        v.city_code.clone().unwrap_or_default(),
        String::from_utf8_lossy(&to_json(v)).into_owned(),
    )
}

/// One index row of a violation: which statement, and its values.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexRow {
    ByDay {
        day: i32,
        shard: i32,
        started_ms: i64,
        id: String,
        vin: String,
        rule: String,
    },
    ByVinMonth {
        vin: String,
        month: i32,
        started_ms: i64,
        id: String,
        rule: String,
    },
    ByCityDay {
        city_code: String,
        day: i32,
        started_ms: i64,
        id: String,
        vin: String,
        rule: String,
    },
    ByEnterpriseDay {
        enterprise_id: String,
        day: i32,
        started_ms: i64,
        id: String,
        vin: String,
        rule: String,
    },
}

/// Index kinds in `violation_index_buckets`, named by what the bucket is keyed on.
pub const BUCKETS_BY_DAY: &str = "day";
pub const BUCKETS_BY_VIN: &str = "vin";
pub const BUCKETS_BY_CITY: &str = "city";

impl IndexRow {
    /// The directory entry (kind, key, bucket) that lets a listing find this row's partition;
    /// `None` for indexes no listing walks by bucket.
    pub fn bucket(&self) -> Option<(&'static str, String, i32)> {
        match self {
            IndexRow::ByDay { day, .. } => Some((BUCKETS_BY_DAY, String::new(), *day)),
            IndexRow::ByVinMonth { vin, month, .. } => Some((BUCKETS_BY_VIN, vin.clone(), *month)),
            IndexRow::ByCityDay { city_code, day, .. } => Some((BUCKETS_BY_CITY, city_code.clone(), *day)),
            IndexRow::ByEnterpriseDay { .. } => None,
        }
    }
}

/// The index rows of a violation. Their keys use only what never changes between snapshots of
/// one episode (start, id, VIN, rule; city and enterprise as of the episode), so an open → closed
/// upsert overwrites the same rows. No city / no enterprise: no row in that index.
pub fn violation_index_rows(v: &Violation, enterprise_id: Option<&str>) -> Vec<IndexRow> {
    let (day, id, vin, rule) =
        (day_bucket(v.started_ms), v.id.as_str().to_string(), v.vin.as_str().to_string(), v.rule.clone());
    let mut rows = vec![
        IndexRow::ByDay {
            day,
            shard: violation_shard(&id),
            started_ms: v.started_ms,
            id: id.clone(),
            vin: vin.clone(),
            rule: rule.clone(),
        },
        IndexRow::ByVinMonth {
            vin: vin.clone(),
            month: month_bucket(v.started_ms),
            started_ms: v.started_ms,
            id: id.clone(),
            rule: rule.clone(),
        },
    ];
    // The city as the filter sees it (a county-only violation counts for the county's city).
    if let Some(city) = violation_city(v) {
        rows.push(IndexRow::ByCityDay {
            city_code: city,
            day,
            started_ms: v.started_ms,
            id: id.clone(),
            vin: vin.clone(),
            rule: rule.clone(),
        });
    }
    if let Some(ent) = enterprise_id.filter(|e| !e.is_empty()) {
        rows.push(IndexRow::ByEnterpriseDay {
            enterprise_id: ent.to_string(),
            day,
            started_ms: v.started_ms,
            id,
            vin,
            rule,
        });
    }
    rows
}

/// Bind values of a newest-first index page: partition key, then the exclusive upper
/// `(started_ms, id)` bound, the inclusive lower start bound and the limit.
pub fn index_page_values<P>(
    partition: P,
    before: (i64, String),
    from_ms: i64,
    limit: usize,
) -> (P, i64, String, i64, i32)
where
    P: Sized,
{
    (partition, before.0, before.1, from_ms, limit_i32(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ViolationId, ViolationStatus};
    use crate::store::codec::decode_record;
    use std::collections::{BTreeMap, HashSet};

    fn schema_keys() -> BTreeMap<String, Vec<String>> {
        super::super::schema::MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter())
            .filter_map(|s| super::super::schema::partition_key_of(s))
            .collect()
    }

    /// Conditions of the WHERE clause, split on AND.
    fn conditions(cql: &str) -> Vec<String> {
        let Some(w) = cql.split(" WHERE ").nth(1) else { return Vec::new() };
        let w = w.split(" LIMIT ").next().unwrap_or(w);
        let w = w.split(" IF ").next().unwrap_or(w);
        w.split(" AND ").map(|c| c.trim().to_string()).collect()
    }

    #[test]
    fn every_statement_names_its_full_partition_key() {
        let keys = schema_keys();
        let mut names = HashSet::new();
        for s in CATALOGUE {
            assert!(names.insert(s.name), "duplicate statement {}", s.name);
            let cql = render(s.cql, "ks");
            assert!(!cql.to_uppercase().contains("ALLOW FILTERING"), "{}: ALLOW FILTERING", s.name);
            let schema_pk = keys.get(s.table).unwrap_or_else(|| panic!("{}: no table {}", s.name, s.table));
            assert_eq!(s.partition_key, schema_pk.as_slice(), "{}: declared key differs from schema", s.name);
            let target = format!("ks.{} ", s.table);
            assert!(cql.contains(&target), "{}: must address {}", s.name, s.table);
            let upper = cql.to_uppercase();
            if upper.starts_with("INSERT") {
                let cols = cql.split('(').nth(1).and_then(|c| c.split(')').next()).unwrap();
                let cols: Vec<&str> = cols.split(',').map(str::trim).collect();
                for pk in s.partition_key {
                    assert!(cols.contains(pk), "{}: insert without partition key column {pk}", s.name);
                }
                assert_eq!(cols.len(), cql.matches('?').count() - usize::from(cql.contains("USING TTL ?")));
                assert_eq!(s.kind == Kind::Lwt, upper.contains(" IF NOT EXISTS"), "{}", s.name);
            } else if upper.starts_with("UPDATE") {
                // Only conditional (LWT) updates of one row: the partition key is bound with `=`
                // and never assigned.
                assert_eq!(s.kind, Kind::Lwt, "{}: plain updates are written as inserts", s.name);
                assert!(upper.contains(" IF "), "{}: an LWT update needs a condition", s.name);
                let set = cql.split(" SET ").nth(1).and_then(|c| c.split(" WHERE ").next()).unwrap();
                let conds = conditions(&cql);
                for pk in s.partition_key {
                    assert!(conds.iter().any(|c| *c == format!("{pk} = ?")), "{}: {pk} not bound", s.name);
                    assert!(!set.contains(&format!("{pk} =")), "{}: assigns key column {pk}", s.name);
                }
            } else {
                assert!(upper.starts_with("SELECT") || upper.starts_with("DELETE"), "{}", s.name);
                let conds = conditions(&cql);
                for pk in s.partition_key {
                    let eq = format!("{pk} = ?");
                    let inn = format!("{pk} IN ?");
                    assert!(
                        conds.iter().any(|c| *c == eq || *c == inn),
                        "{}: partition key column {pk} not bound with = or IN in {conds:?}",
                        s.name
                    );
                }
                assert_eq!(s.kind == Kind::Read, upper.starts_with("SELECT"), "{}", s.name);
                assert!(!upper.contains("TOKEN("), "{}: token scans are not allowed", s.name);
            }
        }
    }

    #[test]
    fn every_store_read_maps_to_a_keyed_read_statement() {
        for (method, stmts) in STORE_READS {
            for name in *stmts {
                let spec = CATALOGUE.iter().find(|s| s.name == *name);
                let spec = spec.unwrap_or_else(|| panic!("{method}: no statement {name}"));
                assert_eq!(spec.kind, Kind::Read, "{method}: {name}");
                assert!(!spec.partition_key.is_empty());
            }
        }
        // Every read in the catalogue is either used by the store or marked for a coming feature.
        let used: HashSet<&str> = STORE_READS.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let planned = [
            "select_vehicles_by_plate",
            "select_vehicles_by_enterprise",
            "select_violations_by_enterprise_day",
            "select_gate_passages",
            // Superseded by audit_by_seq / api_tokens_by_id (migration 6); kept for the tables
            // that shipped.
            "select_audit",
            "select_api_token",
        ];
        for s in CATALOGUE.iter().filter(|s| s.kind == Kind::Read) {
            assert!(used.contains(s.name) || planned.contains(&s.name), "{} is unaccounted for", s.name);
        }
    }

    fn violation(started_ms: i64, city: Option<&str>) -> Violation {
        let vin = Vin::parse("LGBH52E07HY000001").unwrap();
        Violation {
            id: ViolationId::derive(&vin, "R4.reagent_empty", "", started_ms),
            rule: "R4.reagent_empty".into(),
            vin,
            plate: "浙A00001".into(),
            status: ViolationStatus::Open,
            late: false,
            started_ms,
            ended_ms: None,
            position: None,
            zone_id: None,
            city_code: city.map(String::from),
            county_code: None,
            summary: String::new(),
            thresholds: serde_json::Value::Null,
            measured: None,
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn bind_values_follow_the_key_layout() {
        let t = 1_761_926_400_000; // 2025-11-01T00:00+08:00
        let v = violation(t, Some("330100"));
        let rows = violation_index_rows(&v, Some("ENT-1"));
        assert_eq!(rows.len(), 4);
        assert!(matches!(&rows[0], IndexRow::ByDay { day, .. } if *day == day_bucket(t)));
        assert!(matches!(&rows[1], IndexRow::ByVinMonth { month: 202511, .. }));
        assert!(matches!(&rows[2], IndexRow::ByCityDay { city_code, .. } if city_code == "330100"));
        assert!(
            matches!(&rows[3], IndexRow::ByEnterpriseDay { enterprise_id, .. } if enterprise_id == "ENT-1")
        );
        // Closing the episode changes no index key.
        let mut closed = v.clone();
        closed.status = ViolationStatus::Closed;
        closed.ended_ms = Some(t + 60_000);
        assert_eq!(violation_index_rows(&closed, Some("ENT-1")), rows);
        assert_eq!(violation_index_rows(&violation(t, Some("")), Some("")).len(), 2);
        let mut county_only = violation(t, None);
        county_only.county_code = Some("330106".into());
        assert!(violation_index_rows(&county_only, None)
            .iter()
            .any(|r| matches!(r, IndexRow::ByCityDay { city_code, .. } if city_code == "330100")));

        let row = violation_row(&v);
        assert_eq!(row.0, v.id.as_str());
        assert_eq!(serde_json::from_str::<Violation>(&row.5).unwrap(), v);

        let rec = TelemetryRecord::bare(v.vin, t);
        let (vin, day, time, body, ttl) = record_row(&rec, 86_400, t);
        assert_eq!((vin.as_str(), day, time, ttl), (v.vin.as_str(), day_bucket(t), t, 86_400));
        assert_eq!(decode_record(&body).unwrap(), rec);
        assert_eq!(records_query(&v.vin, 7, 1, 2, usize::MAX).4, i32::MAX);
        assert_eq!(index_page_values((3, 1), (t, "ab".into()), 0, 0), ((3, 1), t, "ab".into(), 0, 1));
    }
}
