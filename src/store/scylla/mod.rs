//! ScyllaDB backend: several stateless smogwatch nodes share one cluster.
//!
//! How the `Store` contract maps onto a wide-column store without multi-partition transactions:
//! - **Idempotent commit.** Every write is an upsert keyed by natural ids (VIN + time, VIN,
//!   violation id), so a commit that fails half-way is simply retried whole: nothing duplicates.
//!   Writes carry client-side monotonic timestamps, so of two commits of this node the later one
//!   wins even when they reach different coordinators.
//! - **Batches only within a partition.** Records of one (VIN, day) partition go in unlogged
//!   batches (one replica set, one mutation); nothing else is batched on the hot path. The only
//!   logged batches are registry upserts (rare) whose lookup rows must change together.
//! - **Late violations use an LWT** (`INSERT ... IF NOT EXISTS`, Paxos: ~4 round trips and a
//!   serial read) so they never overwrite a live one; index rows follow only when it applied.
//!   Late detections are rare, which is what makes that cost acceptable. Live upserts are plain
//!   writes; mixing them with the LWT on the same row is linearizable only against the LWT's own
//!   read, which is fine here: a live snapshot is always the one that should win. (An LWT write
//!   takes its timestamp from the Paxos ballot, not from the client generator; it only ever
//!   writes an absent row, so there is no older client-timestamped value for it to lose to.)
//!   ScyllaDB does not support LWT in tablet keyspaces: the keyspace is created with tablets
//!   disabled by default (`store.scylla.tablets`).
//! - **Consistency** is configurable (default `LOCAL_QUORUM`, serial `LOCAL_SERIAL`): with RF 3
//!   an acknowledged commit survives the loss of any one replica. Scylla's commitlog syncs
//!   periodically (10 s by default), so "durable" here means "on a quorum of replicas", not
//!   "fsynced"; set `commitlog_sync: batch` on the cluster if fsync-per-write is required.
//! - **Retention is a TTL**, not a sweep: records are written with `TTL = retention - age`, and
//!   TimeWindowCompactionStrategy drops whole expired SSTables. `expire_records` is a no-op.
//! - **Listings** read bucketed partitions and merge them (`merge.rs`); no query scans a table.
//!   A violation listing picks the most selective index (VIN → `violations_by_vin_month`; a
//!   fleet of up to 64 VINs → each VIN's index, merged; county or city →
//!   `violations_by_city_day` of the city, the county filtered on the body; else
//!   `violations_by_day`), filters VIN / rule on the index rows and everything else on the body
//!   (and the review row), and stops after `SCAN_BUDGET` index entries with a short page and a
//!   `next` cursor. Index rows are never deleted: when a later snapshot moves an episode (another
//!   city), the stale row is filtered out because the body no longer matches.
//! - **Alerts** are numbered by a counter row advanced with a compare-and-set LWT, one block per
//!   commit (two LWT round trips per commit that raises alerts, plus one LWT per new live
//!   violation to claim it in `alerted_violations`, so that it alerts once even across retries
//!   and nodes). Alert rows live in `alerts`, `ALERT_BUCKET` numbers per partition. Numbers
//!   increase with allocation order, but commits on different nodes (or the concurrent writes of
//!   one commit) may write `n + 1` before `n`; `alerts_after` therefore stops at the first missing
//!   number unless the row after it was allocated more than `ALERT_GRACE_MS` ago, in which case
//!   the missing one is a hole (a commit that failed after allocating, or a CAS that timed out
//!   but applied) and is skipped. Limits: a commit slower than the grace period (or a node clock
//!   more than that far off) can have its alert skipped by a reader that is already past it; a
//!   hole delays the alerts after it by up to the grace period. `last_alert_seq` is the last
//!   allocated number, so a new watcher may skip alerts whose commit was in flight as it started.
//! - **Audit** entries get their `seq` from the same kind of counter ("audit") and live in
//!   `audit_by_seq`, newest first; a review and its audit entry go in one logged batch. A
//!   failed append leaves a gap in the numbers, which is harmless to the log.
//! - **Tokens** are few and live in one partition of `api_tokens_by_id`, keyed by token id.
pub mod dialect;
mod keys;
mod merge;
pub mod schema;
pub mod statements;

use crate::clean::{CleanProfile, GatePassage, NonRoadVolume, MAX_VOLUME_SPAN_MS};
use crate::config::{ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel};
use crate::model::{
    city_of_county, now_ms, ApiToken, AuditEntry, Enterprise, TelemetryRecord, TimestampMs, Vehicle, Vin,
    Violation, ViolationId, ViolationReview, MAX_FUTURE_MS, MIN_VALID_MS,
};
use crate::store::codec::{decode_record, from_json, to_json};
use crate::store::{
    Alert, CommitBatch, CommitOutcome, LeaseClaim, Store, StoreError, ViolationCursor, ViolationPage,
    ViolationQuery, ViolationWrite,
};
use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::errors::{
    ExecutionError, IntoRowsResultError, MaybeFirstRowError, NewSessionError, NextRowError,
    PagerExecutionError, PrepareError, RowsError, SchemaAgreementError, TypeCheckError,
};
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use keys::{
    day_bucket, day_start_ms, month_bucket, month_start_ms, seq_bucket, ALERT_BUCKET, AUDIT_BUCKET,
    DAY_SHARDS, ENTERPRISE_BUCKETS, VEHICLE_BUCKETS,
};
use statements::{IndexRow, Prepared};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
/// Rows per unlogged batch (one partition): ~100 records of a few hundred bytes stay well under
/// Scylla's batch size warning (128 KiB).
const MAX_BATCH_ROWS: usize = 100;

/// Everything that can go wrong talking to the cluster. Mapped into `StoreError::Engine` at the
/// trait boundary, with the driver's message kept.
#[derive(Debug, thiserror::Error)]
pub enum ScyllaError {
    #[error("scylla configuration: {0}")]
    Config(String),
    #[error("connecting to scylla: {0}")]
    Connect(#[source] Box<NewSessionError>),
    #[error("preparing a statement: {0}")]
    Prepare(#[source] Box<PrepareError>),
    #[error("executing a statement: {0}")]
    Execute(#[source] Box<ExecutionError>),
    #[error("starting a paged read: {0}")]
    Pager(#[source] Box<PagerExecutionError>),
    #[error("reading a page: {0}")]
    NextRow(#[source] Box<NextRowError>),
    #[error("result has unexpected column types: {0}")]
    TypeCheck(#[source] Box<TypeCheckError>),
    #[error("result is not rows: {0}")]
    IntoRows(#[source] Box<IntoRowsResultError>),
    #[error("decoding rows: {0}")]
    Rows(#[source] Box<RowsError>),
    #[error("decoding a row: {0}")]
    FirstRow(#[source] Box<MaybeFirstRowError>),
    #[error("waiting for schema agreement: {0}")]
    SchemaAgreement(#[source] Box<SchemaAgreementError>),
    #[error("schema migration {version}: {detail}")]
    Migration { version: i32, detail: String },
    #[error("unexpected lightweight-transaction result: {0}")]
    Lwt(String),
}

/// The driver's errors are large (hundreds of bytes); boxed so that every `Result` stays small.
macro_rules! boxed_from {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for ScyllaError {
            fn from(e: $ty) -> Self {
                ScyllaError::$variant(Box::new(e))
            }
        })*
    };
}
boxed_from!(
    NewSessionError => Connect,
    PrepareError => Prepare,
    ExecutionError => Execute,
    PagerExecutionError => Pager,
    NextRowError => NextRow,
    TypeCheckError => TypeCheck,
    IntoRowsResultError => IntoRows,
    RowsError => Rows,
    MaybeFirstRowError => FirstRow,
    SchemaAgreementError => SchemaAgreement,
);

impl From<ScyllaError> for StoreError {
    fn from(e: ScyllaError) -> Self {
        StoreError::Engine(e.to_string())
    }
}

fn consistency(c: ConsistencyLevel) -> Consistency {
    match c {
        ConsistencyLevel::One => Consistency::One,
        ConsistencyLevel::Two => Consistency::Two,
        ConsistencyLevel::Three => Consistency::Three,
        ConsistencyLevel::Quorum => Consistency::Quorum,
        ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
        ConsistencyLevel::EachQuorum => Consistency::EachQuorum,
        ConsistencyLevel::All => Consistency::All,
        ConsistencyLevel::LocalOne => Consistency::LocalOne,
    }
}

fn serial_consistency(c: SerialConsistencyLevel) -> SerialConsistency {
    match c {
        SerialConsistencyLevel::Serial => SerialConsistency::Serial,
        SerialConsistencyLevel::LocalSerial => SerialConsistency::LocalSerial,
    }
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ScyllaError>> + Send + 'a>>;

/// One row of a violation index: what the listing needs to order and filter.
#[derive(Debug, Clone)]
struct IndexEntry {
    started_ms: i64,
    id: String,
    vin: String,
    rule: String,
}

/// The order of a newest-first listing as an ascending key: (start, id) descending.
type NewestFirst = Reverse<(i64, String)>;

/// Index entries (plus partition reads, see `PARTITION_COST`) one `violations` call examines
/// before it returns a page with `next`, however few matches it found: a selective filter over a
/// long range costs several requests, never one unbounded one.
const SCAN_BUDGET: usize = 2_000;
/// Floor of a budget (a fleet's per-vehicle share).
const MIN_SCAN_BUDGET: usize = 64;
/// What reading a partition costs in budget units, so that a range of empty days is bounded too.
const PARTITION_COST: usize = 4;
/// Fleets up to this size are read per vehicle (their VIN index) and merged; larger ones scan the
/// day index with the VIN filter applied to the index rows.
const MAX_MERGED_VINS: usize = 64;
/// Vehicles of a fleet scanned at once (each scan reads bodies with `max_concurrency`).
const FLEET_CONCURRENCY: usize = 4;
/// The smallest id: a cursor at (t, ZERO_ID) continues with everything that started before t.
const ZERO_ID: &str = "00000000000000000000000000000000";

/// How long a reader waits for an alert sequence number that was allocated but is not written
/// yet before it treats it as a hole left by a failed commit (see `alerts_after_inner`). Must
/// exceed the time between allocating and writing (a commit's alert writes, including driver
/// retries: a few request timeouts) plus the clock skew between nodes.
pub const ALERT_GRACE_MS: i64 = 30_000;
/// Attempts of a contended counter allocation before the commit fails (and is retried whole).
const MAX_SEQUENCE_ATTEMPTS: u32 = 50;
const ALERT_SEQUENCE: &str = "alerts";
const AUDIT_SEQUENCE: &str = "audit";
/// The single partition of `api_tokens_by_id`.
const TOKEN_SHARD: i32 = 0;

/// Index access path of a listing.
#[derive(Clone, Copy)]
enum Access<'a> {
    /// `violations_by_day`: every shard of each day, merged.
    Time,
    /// `violations_by_vin_month`.
    Vin(&'a Vin),
    /// `violations_by_city_day`.
    City(&'a str),
}

/// A time slice of an access path: its partitions cover it completely.
#[derive(Clone, Copy)]
enum Group {
    Day(i32),
    Month(i32),
}

/// One index partition.
#[derive(Clone, Copy)]
enum Part<'a> {
    DayShard(i32, i32),
    VinMonth(&'a Vin, i32),
    CityDay(&'a str, i32),
}

/// The outcome of a lightweight transaction: applied, and the current row when it was not.
struct LwtResult {
    applied: bool,
    columns: HashMap<String, CqlValue>,
}

impl LwtResult {
    fn bigint(&self, column: &str) -> Option<i64> {
        match self.columns.get(column) {
            Some(CqlValue::BigInt(v)) => Some(*v),
            _ => None,
        }
    }

    fn text(&self, column: &str) -> Option<&str> {
        match self.columns.get(column) {
            Some(CqlValue::Text(v)) | Some(CqlValue::Ascii(v)) => Some(v),
            _ => None,
        }
    }
}

/// A commit reduced to what must be written: duplicates within the batch collapsed the way the
/// embedded store would apply them in sequence (last write of a key wins; an `InsertIfAbsent`
/// after a write of the same id in the same batch is a no-op). Writes then run concurrently,
/// which would otherwise make the order of two writes of one key arbitrary.
#[derive(Debug, Default)]
pub struct CommitPlan {
    /// Records by partition (VIN, day), ordered by time within each.
    pub partitions: BTreeMap<(Vin, i32), Vec<TelemetryRecord>>,
    pub states: Vec<(Vin, Vec<u8>)>,
    pub violations: Vec<ViolationWrite>,
    /// Telemetry park passages in their stored form (upserts by id: order does not matter).
    pub passages: Vec<GatePassage>,
}

pub fn plan_commit(batch: CommitBatch) -> CommitPlan {
    let mut plan = CommitPlan::default();
    let mut records: BTreeMap<(Vin, TimestampMs), TelemetryRecord> = BTreeMap::new();
    for r in batch.records {
        records.insert((r.vin, r.time_ms), r);
    }
    for ((vin, t), r) in records {
        plan.partitions.entry((vin, day_bucket(t))).or_default().push(r);
    }
    let mut states: HashMap<Vin, usize> = HashMap::new();
    for (vin, s) in batch.states {
        match states.get(&vin) {
            Some(&i) => plan.states[i].1 = s,
            None => {
                states.insert(vin, plan.states.len());
                plan.states.push((vin, s));
            }
        }
    }
    plan.passages = batch.passages.iter().map(GatePassage::from_park_passage).collect();
    let mut by_id: HashMap<ViolationId, usize> = HashMap::new();
    for w in batch.violations {
        let id = w.violation().id.clone();
        match (by_id.get(&id), &w) {
            (Some(&i), ViolationWrite::Upsert(_)) => plan.violations[i] = w,
            (Some(_), ViolationWrite::InsertIfAbsent(_)) => {}
            (None, _) => {
                by_id.insert(id, plan.violations.len());
                plan.violations.push(w);
            }
        }
    }
    plan
}

/// Bucket directory entries remembered as written (bounded: cleared when full, which only
/// costs a repeated idempotent write).
const MAX_KNOWN_BUCKETS: usize = 100_000;
/// Directory entries one listing reads (one partition of ints: ~27 years of days).
const MAX_BUCKETS_PER_SCAN: usize = 10_000;

struct Inner {
    session: Session,
    known_buckets: parking_lot::Mutex<std::collections::HashSet<(&'static str, String, i32)>>,
    st: Prepared,
    keyspace: String,
    telemetry_ttl_s: i64,
    concurrency: usize,
}

/// The ScyllaDB store. Cheap to clone.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

impl ScyllaStore {
    /// Connects, creates the keyspace if needed, applies pending migrations and prepares every
    /// statement. `retention_days` is the service-wide retention, the TTL default.
    pub async fn connect(cfg: &ScyllaConfig, retention_days: u32) -> Result<Self, StoreError> {
        Ok(Self::connect_inner(cfg, retention_days).await?)
    }

    async fn connect_inner(cfg: &ScyllaConfig, retention_days: u32) -> Result<Self, ScyllaError> {
        schema::validate_keyspace(&cfg.keyspace)?;
        if cfg.uris.is_empty() {
            return Err(ScyllaError::Config("store.scylla.uris is empty".into()));
        }
        // Token-aware (requests go to a replica of the partition, and to the owning shard on
        // Scylla), local-DC replicas only unless a DC is lost and an operator changes `local_dc`.
        let mut lb = DefaultPolicy::builder().token_aware(true).permit_dc_failover(false);
        if let Some(dc) = &cfg.local_dc {
            lb = lb.prefer_datacenter(dc.clone());
        }
        let profile = ExecutionProfile::builder()
            .consistency(consistency(cfg.consistency))
            .serial_consistency(Some(serial_consistency(cfg.serial_consistency)))
            .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms.max(1))))
            .load_balancing_policy(lb.build())
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&cfg.uris)
            .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
            .default_execution_profile_handle(profile.into_handle())
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .build()
            .await?;
        let ttl = cfg.telemetry_ttl_s(retention_days);
        let server = dialect::detect(&session).await?;
        tracing::info!(server = server.dialect.name(), version = %server.release_version, "CQL server identified");
        schema::apply(&session, cfg, server.dialect, ttl).await?;
        let st = Prepared::prepare(&session, &cfg.keyspace).await?;
        tracing::info!(keyspace = %cfg.keyspace, nodes = ?cfg.uris, telemetry_ttl_s = ttl, "CQL store ready");
        Ok(ScyllaStore {
            inner: Arc::new(Inner {
                session,
                known_buckets: Default::default(),
                st,
                keyspace: cfg.keyspace.clone(),
                telemetry_ttl_s: ttl,
                concurrency: cfg.max_concurrency.max(1),
            }),
        })
    }

    /// Drops the whole keyspace. For test harnesses and tooling that create throw-away keyspaces.
    pub async fn drop_keyspace(&self) -> Result<(), StoreError> {
        let cql = format!("DROP KEYSPACE IF EXISTS {}", self.inner.keyspace);
        self.inner.session.query_unpaged(cql, ()).await.map_err(ScyllaError::from)?;
        Ok(())
    }

    fn st(&self) -> &Prepared {
        &self.inner.st
    }

    async fn exec(&self, stmt: &PreparedStatement, values: impl SerializeRow) -> Result<(), ScyllaError> {
        self.inner.session.execute_unpaged(stmt, values).await?;
        Ok(())
    }

    /// At most one row of a keyed point read.
    async fn read_one<R>(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, ScyllaError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let rows = self.inner.session.execute_unpaged(stmt, values).await?.into_rows_result()?;
        Ok(rows.maybe_first_row::<R>()?)
    }

    /// Up to `max` rows of a single-partition read, fetched page by page.
    async fn read_rows<R>(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
        max: usize,
    ) -> Result<Vec<R>, ScyllaError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self.inner.session.execute_iter(stmt.clone(), values).await?;
        let rows = pager.rows_stream::<R>()?;
        Ok(rows.take(max).try_collect().await?)
    }

    /// Runs a lightweight transaction and reads `[applied]` and the current row's columns.
    async fn lwt(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<LwtResult, ScyllaError> {
        let result = self.inner.session.execute_unpaged(stmt, values).await?.into_rows_result()?;
        let specs: Vec<String> = result.column_specs().iter().map(|c| c.name().to_string()).collect();
        let row: Row = result.first_row().map_err(|e| ScyllaError::Lwt(e.to_string()))?;
        let columns: HashMap<String, CqlValue> =
            specs.into_iter().zip(row.columns).filter_map(|(name, value)| value.map(|v| (name, v))).collect();
        let applied = match columns.get("[applied]") {
            Some(CqlValue::Boolean(b)) => *b,
            other => return Err(ScyllaError::Lwt(format!("[applied] = {other:?}"))),
        };
        Ok(LwtResult { applied, columns })
    }

    /// The next unallocated number of a counter (1 when it was never used).
    async fn sequence_next(&self, name: &str) -> Result<u64, ScyllaError> {
        let row: Option<(Option<i64>,)> = self.read_one(&self.st().select_sequence, (name,)).await?;
        Ok(row.and_then(|r| r.0).map_or(1, |n| n.max(1) as u64))
    }

    /// Allocates `n` consecutive numbers of counter `name` (starting at 1) with a compare-and-set
    /// on its single row; returns the first. Contention (another node allocating at the same
    /// time) is retried from the value the failed CAS returned, with a short randomised backoff.
    /// A CAS whose outcome is unknown (timeout) is an error: the commit is retried whole, and the
    /// block it may have taken becomes a hole that readers skip (see `alerts_after_inner`).
    async fn allocate(&self, name: &str, n: usize) -> Result<u64, ScyllaError> {
        let st = self.st();
        let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
        let row: Option<(Option<i64>,)> = self.read_one(&st.select_sequence, (name,)).await?;
        let mut current = row.and_then(|r| r.0);
        for attempt in 0..MAX_SEQUENCE_ATTEMPTS {
            let result = match current {
                None => {
                    let r = self.lwt(&st.insert_sequence_if_absent, (name, 1 + n)).await?;
                    if r.applied {
                        return Ok(1);
                    }
                    r
                }
                Some(cur) => {
                    let r = self.lwt(&st.advance_sequence, (cur.saturating_add(n), name, cur)).await?;
                    if r.applied {
                        return Ok(cur.max(1) as u64);
                    }
                    r
                }
            };
            current = result.bigint("next_seq");
            let jitter = u64::from(now_ms().rem_euclid(7) as u32);
            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 2 + jitter)).await;
        }
        Err(ScyllaError::Lwt(format!(
            "counter {name}: still contended after {MAX_SEQUENCE_ATTEMPTS} compare-and-set attempts"
        )))
    }

    /// Raises the alerts of a commit's written violations: each live one that never alerted gets
    /// the next sequence number. One block is allocated for the commit; each violation then
    /// claims its number in `alerted_violations` (LWT, first claim wins) and the number's row in
    /// `alerts` is written: the violation's id, or a void when the claim lost (an earlier attempt
    /// of this commit alerted it already; its row is re-asserted). Returns the alerts raised, in
    /// increasing order.
    async fn raise_alerts(&self, written: &[Violation]) -> Result<Vec<Alert>, ScyllaError> {
        let st = self.st();
        let concurrency = self.inner.concurrency;
        let live: Vec<&Violation> = written.iter().filter(|v| !v.late).collect();
        if live.is_empty() {
            return Ok(Vec::new());
        }
        // Owned items: borrowed stream items trip the `Send` check of the async-trait future.
        let claimed = futures::stream::iter(live.iter().map(|v| v.id.clone()).collect::<Vec<_>>())
            .map(|id| async move {
                let row: Option<(Option<i64>,)> = self.read_one(&st.select_alerted, (id.as_str(),)).await?;
                Ok::<_, ScyllaError>(row.and_then(|r| r.0))
            })
            .buffered(concurrency)
            .try_collect::<Vec<Option<i64>>>()
            .await?;
        let mut fresh: Vec<&Violation> = Vec::new();
        let mut reassert: Vec<(i64, String)> = Vec::new();
        for (v, seq) in live.iter().zip(claimed) {
            match seq {
                // Alerted before. Re-asserting its row (idempotent) repairs a commit that failed
                // between the claim and the alert row.
                Some(seq) => reassert.push((seq, v.id.as_str().to_string())),
                None => fresh.push(*v),
            }
        }
        futures::stream::iter(reassert)
            .map(|(seq, id)| async move {
                self.exec(&st.reassert_alert, (seq_bucket(seq as u64, ALERT_BUCKET), seq, id)).await
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.allocate(ALERT_SEQUENCE, fresh.len()).await?;
        let allocated_ms = now_ms();
        let fresh: Vec<Violation> = fresh.into_iter().cloned().collect();
        let raised = futures::stream::iter(fresh.into_iter().enumerate())
            .map(|(i, v)| async move {
                let seq = first + i as u64;
                let (bucket, seq_i) = (seq_bucket(seq, ALERT_BUCKET), seq as i64);
                let claim = self.lwt(&st.claim_alert, (v.id.as_str(), seq_i)).await?;
                if claim.applied {
                    self.exec(&st.insert_alert, (bucket, seq_i, v.id.as_str(), allocated_ms)).await?;
                    return Ok::<_, ScyllaError>(Some(Alert { seq, violation: v }));
                }
                self.exec(&st.insert_alert, (bucket, seq_i, "", allocated_ms)).await?;
                if let Some(theirs) = claim.bigint("seq") {
                    let values = (seq_bucket(theirs as u64, ALERT_BUCKET), theirs, v.id.as_str());
                    self.exec(&st.reassert_alert, values).await?;
                }
                Ok(None)
            })
            .buffered(concurrency)
            .try_collect::<Vec<Option<Alert>>>()
            .await?;
        Ok(raised.into_iter().flatten().collect())
    }

    /// Alerts after `after`, oldest first. Sequence numbers are allocated before their rows are
    /// written, and commits on different nodes write concurrently, so a reader can find `n + 1`
    /// while `n` is still in flight. It then stops before `n` (and returns it on a later call),
    /// unless row `n + 1` was allocated more than `ALERT_GRACE_MS` ago: `n` was allocated no later
    /// than `n + 1`, so it is a hole left by a commit that failed, and is skipped.
    async fn alerts_after_inner(&self, after: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let st = self.st();
        let mut found: Vec<(u64, String)> = Vec::new();
        if limit == 0 || after >= i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut expected = after + 1;
        'scan: while found.len() < limit {
            let want = limit - found.len() + 16;
            let read = |bucket: i64, after: u64| {
                let values = (bucket, after as i64, statements::limit_i32(want));
                self.read_rows::<(i64, Option<String>, Option<i64>)>(&st.select_alerts, values, want)
            };
            let bucket = seq_bucket(expected, ALERT_BUCKET);
            let mut rows = read(bucket, expected - 1).await?;
            if rows.is_empty() {
                // The rest of this bucket is empty; the next may go on after a hole at its end.
                rows = read(bucket + 1, expected - 1).await?;
                if rows.is_empty() {
                    break;
                }
            }
            let stop;
            (expected, stop) = walk_alerts(expected, rows, now, limit, &mut found);
            if stop {
                break 'scan;
            }
        }
        let alerts = futures::stream::iter(found)
            .map(|(seq, id)| async move {
                let row: Option<(Option<String>,)> =
                    self.read_one(&st.select_violation, (id.as_str(),)).await?;
                let v = row
                    .and_then(|r| r.0)
                    .map(|b| from_json::<Violation>("violation", b.as_bytes()))
                    .transpose()?;
                if v.is_none() {
                    tracing::warn!(seq, id = %id, "alert without a violation; skipped");
                }
                Ok::<_, StoreError>(v.map(|violation| Alert { seq, violation }))
            })
            .buffered(self.inner.concurrency)
            .try_collect::<Vec<Option<Alert>>>()
            .await?;
        Ok(alerts.into_iter().flatten().collect())
    }

    /// Allocates the entry's `seq` and returns the entry with it and the write of its row.
    async fn audit_row(
        &self,
        mut entry: AuditEntry,
    ) -> Result<(AuditEntry, (i64, i64, String)), ScyllaError> {
        entry.seq = self.allocate(AUDIT_SEQUENCE, 1).await?;
        let body = String::from_utf8_lossy(&to_json(&entry)).into_owned();
        let row = (seq_bucket(entry.seq, AUDIT_BUCKET), entry.seq as i64, body);
        Ok((entry, row))
    }

    async fn audit_log_inner(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let start = match before {
            Some(b) => b.min(i64::MAX as u64),
            None => self.sequence_next(AUDIT_SEQUENCE).await?,
        };
        if limit == 0 || start <= 1 {
            return Ok(out);
        }
        let mut bucket = seq_bucket(start - 1, AUDIT_BUCKET);
        while out.len() < limit && bucket >= 0 {
            let want = limit - out.len();
            let values = (bucket, start as i64, statements::limit_i32(want));
            let rows: Vec<(i64, String)> =
                self.read_rows(&self.st().select_audit_entries, values, want).await?;
            for (_, body) in rows {
                out.push(from_json("audit entry", body.as_bytes())?);
            }
            bucket -= 1;
        }
        Ok(out)
    }

    async fn write_records(&self, rows: Vec<statements::RecordRow>) -> Result<(), ScyllaError> {
        if let [row] = rows.as_slice() {
            return self.exec(&self.st().insert_record, row).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in &rows {
            batch.append_statement(self.st().insert_record.clone());
        }
        batch.set_is_idempotent(true);
        self.inner.session.batch(&batch, rows).await?;
        Ok(())
    }

    async fn write_index_row(&self, row: IndexRow) -> Result<(), ScyllaError> {
        let st = self.st();
        // The directory entry first, so a listing that can find the row's partition exists
        // before the row does. Each (kind, key, bucket) is written once per process.
        if let Some(entry) = row.bucket() {
            if !self.inner.known_buckets.lock().contains(&entry) {
                self.exec(&st.insert_index_bucket, (entry.0, entry.1.as_str(), entry.2)).await?;
                let mut known = self.inner.known_buckets.lock();
                if known.len() >= MAX_KNOWN_BUCKETS {
                    known.clear();
                }
                known.insert(entry);
            }
        }
        match row {
            IndexRow::ByDay { day, shard, started_ms, id, vin, rule } => {
                self.exec(&st.insert_violation_by_day, (day, shard, started_ms, id, vin, rule)).await
            }
            IndexRow::ByVinMonth { vin, month, started_ms, id, rule } => {
                self.exec(&st.insert_violation_by_vin_month, (vin, month, started_ms, id, rule)).await
            }
            IndexRow::ByCityDay { city_code, day, started_ms, id, vin, rule } => {
                self.exec(&st.insert_violation_by_city_day, (city_code, day, started_ms, id, vin, rule)).await
            }
            IndexRow::ByEnterpriseDay { enterprise_id, day, started_ms, id, vin, rule } => {
                self.exec(
                    &st.insert_violation_by_enterprise_day,
                    (enterprise_id, day, started_ms, id, vin, rule),
                )
                .await
            }
        }
    }

    async fn write_index_rows(&self, v: &Violation, enterprise: Option<&str>) -> Result<(), ScyllaError> {
        let rows = statements::violation_index_rows(v, enterprise);
        futures::future::try_join_all(rows.into_iter().map(|r| self.write_index_row(r))).await?;
        Ok(())
    }

    /// The owner enterprise of a vehicle, for the by-enterprise violation index.
    async fn enterprise_of(&self, vin: Vin) -> Result<Option<String>, ScyllaError> {
        let row: Option<(Option<String>, Option<String>, Option<String>)> =
            self.read_one(&self.st().select_vehicle, (vin.as_str(),)).await?;
        Ok(row.and_then(|r| r.1).filter(|e| !e.is_empty()))
    }

    /// Writes one violation; returns it when it was written (an LWT that did not apply is not).
    async fn write_violation(
        &self,
        w: ViolationWrite,
        enterprises: &HashMap<Vin, Option<String>>,
    ) -> Result<Option<Violation>, ScyllaError> {
        let enterprise = |v: &Violation| enterprises.get(&v.vin).cloned().flatten();
        match w {
            ViolationWrite::Upsert(v) => {
                // Main row first: an index row never points at a missing violation.
                self.exec(&self.st().insert_violation, statements::violation_row(&v)).await?;
                self.write_index_rows(&v, enterprise(&v).as_deref()).await?;
                Ok(Some(v))
            }
            ViolationWrite::InsertIfAbsent(v) => {
                let result =
                    self.lwt(&self.st().insert_violation_if_absent, statements::violation_row(&v)).await?;
                if result.applied {
                    self.write_index_rows(&v, enterprise(&v).as_deref()).await?;
                    return Ok(Some(v));
                }
                // Not applied: the row exists, maybe from this very write on an earlier attempt
                // that failed before its index rows were written. Re-assert the index rows of
                // what is stored (idempotent), so that no violation is ever missing from listings.
                if let Some(CqlValue::Text(body)) = result.columns.get("body") {
                    match from_json::<Violation>("violation", body.as_bytes()) {
                        Ok(existing) => {
                            self.write_index_rows(&existing, enterprise(&existing).as_deref()).await?
                        }
                        Err(e) => {
                            tracing::warn!(id = %v.id.as_str(), error = %e, "stored violation unreadable")
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    async fn commit_inner(&self, batch: CommitBatch) -> Result<CommitOutcome, ScyllaError> {
        let plan = plan_commit(batch);
        let now = now_ms();
        let ttl = self.inner.telemetry_ttl_s;
        let mut writes: Vec<WriteFuture<'_>> = Vec::new();
        for recs in plan.partitions.into_values() {
            for chunk in recs.chunks(MAX_BATCH_ROWS) {
                let rows = chunk.iter().map(|r| statements::record_row(r, ttl, now)).collect();
                writes.push(Box::pin(self.write_records(rows)));
            }
        }
        for (vin, state) in &plan.states {
            writes.push(Box::pin(self.exec(&self.st().insert_state, statements::state_row(vin, state))));
        }
        for p in &plan.passages {
            writes.push(Box::pin(self.exec(&self.st().insert_park_passage, statements::park_passage_row(p))));
        }
        let concurrency = self.inner.concurrency;
        let records_and_states =
            futures::stream::iter(writes).buffer_unordered(concurrency).try_collect::<Vec<()>>();

        let violations = async {
            let mut vins: Vec<Vin> = plan.violations.iter().map(|w| w.violation().vin).collect();
            vins.sort();
            vins.dedup();
            let found = futures::stream::iter(vins)
                .map(|vin| async move { Ok::<_, ScyllaError>((vin, self.enterprise_of(vin).await?)) })
                .buffer_unordered(concurrency)
                .try_collect::<HashMap<Vin, Option<String>>>()
                .await?;
            let found = &found;
            let written: Vec<Violation> = futures::stream::iter(plan.violations)
                .map(|w| self.write_violation(w, found))
                .buffered(concurrency)
                .try_collect::<Vec<Option<Violation>>>()
                .await?
                .into_iter()
                .flatten()
                .collect();
            // After the violation rows: an alert never points at a missing violation.
            let alerts = self.raise_alerts(&written).await?;
            Ok::<_, ScyllaError>((written, alerts))
        };
        let (records, violations) = futures::join!(records_and_states, violations);
        records?;
        let (written_violations, alerts) = violations?;
        Ok(CommitOutcome { written_violations, alerts })
    }

    async fn records_inner(
        &self,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        // Day partitions to visit: records before 2000 are rejected at the edge, records more than
        // a day ahead too, and with a TTL nothing older than the retention (plus a day of slack)
        // is still stored. That bounds an open-ended range to the days that can hold data.
        let now = now_ms();
        let mut lo = from_ms.max(MIN_VALID_MS);
        if self.inner.telemetry_ttl_s > 0 {
            lo = lo.max(
                now.saturating_sub(self.inner.telemetry_ttl_s.saturating_mul(1000)).saturating_sub(DAY_MS),
            );
        }
        let hi = to_ms.min(now.saturating_add(MAX_FUTURE_MS).saturating_add(DAY_MS));
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        for day in day_bucket(lo)..=day_bucket(hi - 1) {
            let remaining = limit - out.len();
            let values = statements::records_query(&vin, day, from_ms, to_ms, remaining);
            let rows: Vec<(Vec<u8>,)> = self.read_rows(&self.st().select_records, values, remaining).await?;
            for (body,) in rows {
                out.push(decode_record(&body)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// One page of `vehicles_by_bucket` / `enterprises_by_bucket` after `after`.
    async fn bucket_page(
        &self,
        stmt: &PreparedStatement,
        bucket: usize,
        after: Option<String>,
        n: usize,
    ) -> Result<Vec<(String, String)>, ScyllaError> {
        let values = (bucket as i32, after.unwrap_or_default(), statements::limit_i32(n));
        self.read_rows(stmt, values, n).await
    }

    /// One newest-first page of a violation index partition: entries strictly before `before`,
    /// starting at or after `from_ms`.
    async fn index_page(
        &self,
        part: Part<'_>,
        before: (i64, String),
        from_ms: i64,
        n: usize,
    ) -> Result<Vec<(NewestFirst, IndexEntry)>, ScyllaError> {
        let st = self.st();
        let (t, id, lim) = (before.0, before.1, statements::limit_i32(n));
        let rows: Vec<(i64, String, String, String)> = match part {
            Part::DayShard(day, shard) => {
                self.read_rows(&st.select_violations_by_day, (day, shard, t, id, from_ms, lim), n).await?
            }
            Part::VinMonth(vin, month) => {
                let values = (vin.as_str(), month, t, id, from_ms, lim);
                self.read_rows(&st.select_violations_by_vin_month, values, n).await?
            }
            Part::CityDay(city, day) => {
                self.read_rows(&st.select_violations_by_city_day, (city, day, t, id, from_ms, lim), n).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(started_ms, id, vin, rule)| {
                (Reverse((started_ms, id.clone())), IndexEntry { started_ms, id, vin, rule })
            })
            .collect())
    }

    /// The violation an index entry points at, when it passes every filter of the query
    /// (the index row may be stale: a later snapshot moved the episode to another city).
    async fn matching_body(
        &self,
        e: &IndexEntry,
        query: &ViolationQuery,
    ) -> Result<Option<Violation>, StoreError> {
        let row: Option<(Option<String>,)> =
            self.read_one(&self.st().select_violation, (e.id.as_str(),)).await?;
        let Some(body) = row.and_then(|r| r.0) else {
            tracing::warn!(id = %e.id, "violation index row without a violation; skipped");
            return Ok(None);
        };
        let v: Violation = from_json("violation", body.as_bytes())?;
        if !query.matches(&v) {
            return Ok(None);
        }
        if query.review.is_some() {
            let review = self.review_of(&v.id).await?;
            if !query.matches_review(review.as_ref()) {
                return Ok(None);
            }
        }
        Ok(Some(v))
    }

    async fn review_of(&self, id: &ViolationId) -> Result<Option<ViolationReview>, StoreError> {
        let row: Option<(Option<String>,)> = self.read_one(&self.st().select_review, (id.as_str(),)).await?;
        row.and_then(|r| r.0).map(|b| from_json("violation review", b.as_bytes())).transpose()
    }

    /// Scans one index access path newest first, strictly below `upper` and not below `lower`,
    /// fetching and filtering bodies as it goes. Stops at `limit` matches (`next` = the last one)
    /// or when `budget` is spent (`next` = how far it got, so the page may be short or empty).
    async fn scan(
        &self,
        access: Access<'_>,
        query: &ViolationQuery,
        upper: (i64, String),
        lower: i64,
        limit: usize,
        budget: usize,
    ) -> Result<ViolationPage, StoreError> {
        let mut page = ViolationPage::default();
        if limit == 0 || !(lower < upper.0 || (lower == upper.0 && !upper.1.is_empty())) {
            return Ok(page);
        }
        // The newest instant the range can hold (an empty id makes the bound exclusive of its time).
        let top = if upper.1.is_empty() { upper.0 - 1 } else { upper.0 };
        // Only the buckets that hold rows (the directory), newest first.
        let (kind, key, first, last) = match access {
            Access::Vin(vin) => {
                (statements::BUCKETS_BY_VIN, vin.as_str(), month_bucket(lower), month_bucket(top))
            }
            Access::City(city) => (statements::BUCKETS_BY_CITY, city, day_bucket(lower), day_bucket(top)),
            Access::Time => (statements::BUCKETS_BY_DAY, "", day_bucket(lower), day_bucket(top)),
        };
        let buckets: Vec<(i32,)> = self
            .read_rows(&self.st().select_index_buckets, (kind, key, first, last), MAX_BUCKETS_PER_SCAN)
            .await?;
        let groups: Vec<Group> = buckets
            .into_iter()
            .map(|(b,)| if matches!(access, Access::Vin(_)) { Group::Month(b) } else { Group::Day(b) })
            .collect();
        let keep = |e: &IndexEntry| {
            e.started_ms >= lower
                && query.vin.is_none_or(|v| v.as_str() == e.vin)
                && query.vins.as_ref().is_none_or(|s| Vin::parse(&e.vin).is_ok_and(|v| s.contains(&v)))
                && query.matches_rule(&e.rule)
        };
        let chunk = (limit + limit / 2).clamp(50, 1000);
        let budget = budget.max(MIN_SCAN_BUDGET);
        let mut pos = upper;
        let mut spent = 0usize;
        let cursor = |p: &(i64, String)| ViolationCursor { started_ms: p.0, id: ViolationId(p.1.clone()) };
        for group in groups {
            if spent >= budget {
                page.next = Some(cursor(&pos));
                return Ok(page);
            }
            let (sources, group_start) = match group {
                Group::Day(day) => {
                    (if matches!(access, Access::Time) { DAY_SHARDS as usize } else { 1 }, day_start_ms(day))
                }
                Group::Month(month) => (1, month_start_ms(month)),
            };
            let bucket = match group {
                Group::Day(day) => day,
                Group::Month(month) => month,
            };
            let part = |source: usize| match access {
                Access::Vin(vin) => Part::VinMonth(vin, bucket),
                Access::City(city) => Part::CityDay(city, bucket),
                Access::Time => Part::DayShard(bucket, source as i32),
            };
            loop {
                let want = chunk.min(budget.saturating_sub(spent)).max(1);
                let start = pos.clone();
                let fetch = |source: usize, after: Option<NewestFirst>, n: usize| {
                    let before = after.map(|r| r.0).unwrap_or_else(|| start.clone());
                    self.index_page(part(source), before, lower, n)
                };
                let entries =
                    merge::merge_sorted(sources, Some(Reverse(pos.clone())), want, want, fetch, |_| true)
                        .await?;
                spent += entries.len() + PARTITION_COST * sources;
                let exhausted = entries.len() < want;
                let entries: Vec<IndexEntry> = entries.into_iter().map(|(_, e)| e).collect();
                let bodies = futures::stream::iter(entries.clone())
                    .map(|e| async move {
                        if keep(&e) {
                            self.matching_body(&e, query).await
                        } else {
                            Ok(None)
                        }
                    })
                    .buffered(self.inner.concurrency)
                    .try_collect::<Vec<Option<Violation>>>()
                    .await?;
                for (e, v) in entries.iter().zip(bodies) {
                    pos = (e.started_ms, e.id.clone());
                    if let Some(v) = v {
                        page.violations.push(v);
                        if page.violations.len() >= limit {
                            page.next = Some(cursor(&pos));
                            return Ok(page);
                        }
                    }
                }
                if exhausted {
                    break;
                }
                if spent >= budget {
                    page.next = Some(cursor(&pos));
                    return Ok(page);
                }
            }
            // The whole partition is done: continue strictly before its first instant.
            pos = pos.min((group_start, ZERO_ID.to_string()));
        }
        Ok(page)
    }

    async fn violations_inner(
        &self,
        query: &ViolationQuery,
        cursor: Option<ViolationCursor>,
        limit: usize,
    ) -> Result<ViolationPage, StoreError> {
        if limit == 0 || query.vins.as_ref().is_some_and(|s| s.is_empty()) {
            return Ok(ViolationPage::default());
        }
        let now = now_ms();
        // Exclusive upper bound in newest-first order: the cursor or `to`, whichever is lower;
        // without either, the newest start that can exist (records may be up to a day ahead).
        let upper: (i64, String) = match (&cursor, query.to_ms) {
            (Some(c), Some(to)) if to <= c.started_ms => (to, String::new()),
            (Some(c), _) => (c.started_ms, c.id.as_str().to_string()),
            (None, Some(to)) => (to, String::new()),
            (None, None) => (now.saturating_add(MAX_FUTURE_MS).saturating_add(DAY_MS), String::new()),
        };
        // Lower bound: the query's `from`, else everything (the bucket directory lists only the
        // buckets that exist, so an unbounded listing costs no empty-partition reads).
        let lower = query.from_ms.unwrap_or(MIN_VALID_MS).max(MIN_VALID_MS);
        // The most selective index the query allows; the other filters are checked while scanning.
        if let Some(vin) = &query.vin {
            return self.scan(Access::Vin(vin), query, upper, lower, limit, SCAN_BUDGET).await;
        }
        if let Some(fleet) = query.vins.as_ref().filter(|s| s.len() <= MAX_MERGED_VINS) {
            return self.fleet_page(fleet, query, upper, lower, limit).await;
        }
        let city = query.county_code.as_deref().and_then(city_of_county).or_else(|| query.city_code.clone());
        match city {
            Some(city) => self.scan(Access::City(&city), query, upper, lower, limit, SCAN_BUDGET).await,
            // A large fleet or no selective filter: the day index, VIN and rule filtered on the
            // index rows before any body is read.
            None => self.scan(Access::Time, query, upper, lower, limit, SCAN_BUDGET).await,
        }
    }

    /// A small fleet: each vehicle's index scanned on its own, merged. Exact: when a vehicle's scan
    /// ran out of budget at position B, only what is at or above B is returned (the rest of the
    /// fleet below B waits for the next page, whose cursor is B).
    async fn fleet_page(
        &self,
        fleet: &BTreeSet<Vin>,
        query: &ViolationQuery,
        upper: (i64, String),
        lower: i64,
        limit: usize,
    ) -> Result<ViolationPage, StoreError> {
        let per_vin = (SCAN_BUDGET / fleet.len().max(1)).max(MIN_SCAN_BUDGET);
        let pages = futures::stream::iter(fleet.iter().copied().collect::<Vec<Vin>>())
            .map(|vin| {
                let upper = upper.clone();
                async move { self.scan(Access::Vin(&vin), query, upper, lower, limit, per_vin).await }
            })
            .buffered(FLEET_CONCURRENCY)
            .try_collect::<Vec<ViolationPage>>()
            .await?;
        Ok(merge_fleet(pages, limit))
    }
}

/// One alert row: seq, violation id (empty for a void), when its number was allocated.
type AlertRow = (i64, Option<String>, Option<i64>);

/// Walks alert rows (ascending) from `expected`, the first number not yet consumed: pushes real
/// alerts onto `found` and returns the next expected number and whether to stop (`limit`
/// reached, or a gap that may still be in flight: see `alerts_after_inner`).
fn walk_alerts(
    mut expected: u64,
    rows: Vec<AlertRow>,
    now: TimestampMs,
    limit: usize,
    found: &mut Vec<(u64, String)>,
) -> (u64, bool) {
    for (seq, id, allocated_ms) in rows {
        let seq = seq.max(0) as u64;
        if seq < expected {
            continue;
        }
        if seq > expected {
            // `None`: a re-asserted row of an old claim, allocated long ago.
            let settled = allocated_ms.is_none_or(|a| a < now.saturating_sub(ALERT_GRACE_MS));
            if !settled {
                return (expected, true);
            }
            tracing::warn!(from = expected, to = seq - 1, "alert sequence numbers never written; skipped");
        }
        expected = seq + 1;
        if let Some(id) = id.filter(|i| !i.is_empty()) {
            found.push((seq, id));
            if found.len() >= limit {
                return (expected, true);
            }
        }
    }
    (expected, false)
}

/// Merges the per-vehicle pages of a fleet listing. When a vehicle's page has a `next` (limit or
/// budget reached at position B), what lies below B is unknown for that vehicle, so nothing below
/// the highest such B is returned and the page continues from there.
fn merge_fleet(pages: Vec<ViolationPage>, limit: usize) -> ViolationPage {
    let bound: Option<(i64, String)> =
        pages.iter().filter_map(|p| p.next.as_ref().map(|c| (c.started_ms, c.id.as_str().to_string()))).max();
    let mut merged: Vec<Violation> = pages
        .into_iter()
        .flat_map(|p| p.violations)
        .filter(|v| bound.as_ref().is_none_or(|b| (v.started_ms, v.id.as_str()) >= (b.0, b.1.as_str())))
        .collect();
    merged.sort_by(|a, b| (b.started_ms, &b.id.0).cmp(&(a.started_ms, &a.id.0)));
    let next = if merged.len() > limit {
        merged.truncate(limit);
        merged.last().map(|v| ViolationCursor { started_ms: v.started_ms, id: v.id.clone() })
    } else {
        bound.map(|(started_ms, id)| ViolationCursor { started_ms, id: ViolationId(id) })
    };
    ViolationPage { violations: merged, next }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn commit(&self, batch: CommitBatch) -> Result<CommitOutcome, StoreError> {
        Ok(self.commit_inner(batch).await?)
    }

    async fn records(
        &self,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        self.records_inner(vin, from_ms, to_ms, limit).await
    }

    async fn vehicle_state(&self, vin: Vin) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> = self.read_one(&self.st().select_state, (vin.as_str(),)).await?;
        Ok(row.and_then(|r| r.0))
    }

    /// Writes the vehicle and its lookup rows in one logged batch (atomic across partitions:
    /// registry changes are rare, and a plate lookup must not point at a stale vehicle). The
    /// previous version is read first to remove lookup rows whose plate or owner changed.
    async fn upsert_vehicle(&self, vehicle: Vehicle) -> Result<(), StoreError> {
        let Some(vin) = vehicle.vin else {
            return Err(StoreError::Engine("vehicle without VIN".into()));
        };
        let st = self.st();
        let old: Option<(Option<String>, Option<String>, Option<String>)> =
            self.read_one(&st.select_vehicle, (vin.as_str(),)).await?;
        let (old_plate, old_owner) =
            old.map(|o| (o.0.unwrap_or_default(), o.1.unwrap_or_default())).unwrap_or_default();
        let text = |s: &str| CqlValue::Text(s.to_string());
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        let row = statements::vehicle_row(&vin, &vehicle);
        batch.append_statement(st.insert_vehicle.clone());
        values.push(vec![text(&row.0), text(&row.1), text(&row.2), text(&row.3), text(&row.4)]);
        let (bucket, bvin, body) = statements::vehicle_bucket_row(&vin, &vehicle);
        batch.append_statement(st.insert_vehicle_by_bucket.clone());
        values.push(vec![CqlValue::Int(bucket), text(&bvin), text(&body)]);
        if !old_plate.is_empty() && old_plate != vehicle.plate {
            batch.append_statement(st.delete_vehicle_by_plate.clone());
            values.push(vec![text(&old_plate), text(vin.as_str())]);
        }
        if !vehicle.plate.is_empty() {
            batch.append_statement(st.insert_vehicle_by_plate.clone());
            values.push(vec![text(&vehicle.plate), text(vin.as_str())]);
        }
        if !old_owner.is_empty() && old_owner != vehicle.owner_enterprise_id {
            batch.append_statement(st.delete_vehicle_by_enterprise.clone());
            values.push(vec![text(&old_owner), text(vin.as_str())]);
        }
        if !vehicle.owner_enterprise_id.is_empty() {
            batch.append_statement(st.insert_vehicle_by_enterprise.clone());
            values.push(vec![text(&vehicle.owner_enterprise_id), text(vin.as_str())]);
        }
        batch.set_is_idempotent(true);
        self.inner.session.batch(&batch, values).await.map_err(ScyllaError::from)?;
        Ok(())
    }

    async fn vehicles(&self, after: Option<Vin>, limit: usize) -> Result<Vec<Vehicle>, StoreError> {
        let stmt = &self.st().select_vehicles_page;
        let chunk = (limit / VEHICLE_BUCKETS as usize * 2).clamp(32, 5000);
        let fetch = |b: usize, after: Option<String>, n: usize| self.bucket_page(stmt, b, after, n);
        let start = after.map(|v| v.as_str().to_string());
        let rows =
            merge::merge_sorted(VEHICLE_BUCKETS as usize, start, chunk, limit, fetch, |_| true).await?;
        rows.iter().map(|(_, body)| from_json("vehicle", body.as_bytes())).collect()
    }

    async fn upsert_enterprise(&self, enterprise: Enterprise) -> Result<(), StoreError> {
        let st = self.st();
        let (id, body) = statements::enterprise_row(&enterprise);
        let (bucket, _, _) = statements::enterprise_bucket_row(&enterprise);
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(st.insert_enterprise.clone());
        batch.append_statement(st.insert_enterprise_by_bucket.clone());
        batch.set_is_idempotent(true);
        let values = (
            vec![CqlValue::Text(id.clone()), CqlValue::Text(body.clone())],
            vec![CqlValue::Int(bucket), CqlValue::Text(id), CqlValue::Text(body)],
        );
        self.inner.session.batch(&batch, values).await.map_err(ScyllaError::from)?;
        Ok(())
    }

    async fn put_documents(&self, kind: &str, docs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        for (id, body) in docs {
            self.exec(&self.st().insert_document, (kind, id, body)).await?;
        }
        Ok(())
    }

    async fn delete_documents(&self, kind: &str, ids: Vec<String>) -> Result<(), StoreError> {
        for id in ids {
            self.exec(&self.st().delete_document, (kind, id)).await?;
        }
        Ok(())
    }

    async fn documents(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows: Vec<(String, Vec<u8>)> =
            self.read_rows(&self.st().select_documents, (kind.to_string(),), usize::MAX).await?;
        Ok(rows)
    }

    async fn enterprise(&self, id: &str) -> Result<Option<Enterprise>, StoreError> {
        let row: Option<(Option<String>,)> = self.read_one(&self.st().select_enterprise, (id,)).await?;
        row.and_then(|r| r.0).map(|b| from_json("enterprise", b.as_bytes())).transpose()
    }

    async fn enterprises(&self, after: Option<String>, limit: usize) -> Result<Vec<Enterprise>, StoreError> {
        let stmt = &self.st().select_enterprises_page;
        let chunk = (limit / ENTERPRISE_BUCKETS as usize * 2).clamp(32, 5000);
        let fetch = |b: usize, after: Option<String>, n: usize| self.bucket_page(stmt, b, after, n);
        let rows =
            merge::merge_sorted(ENTERPRISE_BUCKETS as usize, after, chunk, limit, fetch, |_| true).await?;
        rows.iter().map(|(_, body)| from_json("enterprise", body.as_bytes())).collect()
    }

    async fn violation(&self, id: &ViolationId) -> Result<Option<Violation>, StoreError> {
        let row: Option<(Option<String>,)> =
            self.read_one(&self.st().select_violation, (id.as_str(),)).await?;
        row.and_then(|r| r.0).map(|b| from_json("violation", b.as_bytes())).transpose()
    }

    async fn violations(
        &self,
        query: &ViolationQuery,
        cursor: Option<ViolationCursor>,
        limit: usize,
    ) -> Result<ViolationPage, StoreError> {
        self.violations_inner(query, cursor, limit).await
    }

    async fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alerts_after_inner(after, limit).await
    }

    /// The newest allocated alert number. Its row (and those just before it) may still be in
    /// flight; a watcher starting here misses nothing committed after it started.
    async fn last_alert_seq(&self) -> Result<u64, StoreError> {
        Ok(self.sequence_next(ALERT_SEQUENCE).await?.saturating_sub(1))
    }

    /// The review row and its audit entry go in one logged batch (both or neither, eventually:
    /// Scylla's batchlog replays a batch whose coordinator failed). Not isolated: a reader may
    /// briefly see the audit entry before the review or the other way round.
    async fn review_violation(
        &self,
        review: ViolationReview,
        audit: AuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        let st = self.st();
        let id = review.violation_id.as_str();
        let exists: Option<(Option<String>,)> = self.read_one(&st.select_violation, (id,)).await?;
        if exists.and_then(|r| r.0).is_none() {
            return Err(StoreError::NotFound(format!("violation {id}")));
        }
        let (entry, audit_row) = self.audit_row(audit).await?;
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(st.insert_review.clone());
        batch.append_statement(st.insert_audit_entry.clone());
        batch.set_is_idempotent(true);
        let review_row = (id.to_string(), String::from_utf8_lossy(&to_json(&review)).into_owned());
        self.inner.session.batch(&batch, (review_row, audit_row)).await.map_err(ScyllaError::from)?;
        Ok(entry)
    }

    async fn violation_reviews(
        &self,
        ids: &[ViolationId],
    ) -> Result<Vec<Option<ViolationReview>>, StoreError> {
        futures::stream::iter(ids.to_vec())
            .map(|id| async move { self.review_of(&id).await })
            .buffered(self.inner.concurrency)
            .try_collect()
            .await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        let (entry, row) = self.audit_row(entry).await?;
        self.exec(&self.st().insert_audit_entry, row).await?;
        Ok(entry)
    }

    async fn audit_log(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_log_inner(before, limit).await
    }

    async fn put_token(&self, token: ApiToken) -> Result<(), StoreError> {
        let body = String::from_utf8_lossy(&to_json(&token)).into_owned();
        self.exec(&self.st().insert_token, (TOKEN_SHARD, token.id.as_str(), body)).await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<(Option<String>,)> =
            self.read_one(&self.st().select_token, (TOKEN_SHARD, id)).await?;
        row.and_then(|r| r.0).map(|b| from_json("api token", b.as_bytes())).transpose()
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<(Option<String>,)> =
            self.read_rows(&self.st().select_tokens, (TOKEN_SHARD,), usize::MAX).await?;
        rows.into_iter().filter_map(|r| r.0).map(|b| from_json("api token", b.as_bytes())).collect()
    }

    async fn put_clean_profile(&self, profile: CleanProfile) -> Result<(), StoreError> {
        Ok(self.exec(&self.st().insert_clean_profile, statements::clean_profile_row(&profile)).await?)
    }

    async fn clean_profile(&self, enterprise_id: &str) -> Result<Option<CleanProfile>, StoreError> {
        let row: Option<(Option<String>,)> =
            self.read_one(&self.st().select_clean_profile, (enterprise_id,)).await?;
        row.and_then(|r| r.0).map(|b| from_json("clean profile", b.as_bytes())).transpose()
    }

    async fn put_gate_passages(&self, passages: Vec<GatePassage>) -> Result<(), StoreError> {
        let rows: Vec<_> = passages.iter().map(statements::park_passage_row).collect();
        let writes: Vec<WriteFuture<'_>> = rows
            .into_iter()
            .map(|r| -> WriteFuture<'_> { Box::pin(self.exec(&self.st().insert_park_passage, r)) })
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(self.inner.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Day partitions in order, each read with the time bounds clipped to the range.
    async fn gate_passages(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<GatePassage>, StoreError> {
        let (lo, hi) =
            (from_ms.max(MIN_VALID_MS), to_ms.min(now_ms().saturating_add(MAX_FUTURE_MS + DAY_MS)));
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        for day in day_bucket(lo)..=day_bucket(hi - 1) {
            let remaining = limit - out.len();
            let values = (enterprise_id, day, lo, hi, statements::limit_i32(remaining));
            let rows: Vec<(String,)> =
                self.read_rows(&self.st().select_park_passages, values, remaining).await?;
            for (body,) in rows {
                out.push(from_json("park passage", body.as_bytes())?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn put_non_road_volume(&self, volume: NonRoadVolume) -> Result<(), StoreError> {
        Ok(self.exec(&self.st().insert_non_road_volume, statements::non_road_volume_row(&volume)).await?)
    }

    /// Reads the year partitions that can hold an overlapping report (reports span ≤ 366 days).
    async fn non_road_volumes(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<NonRoadVolume>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        let first = statements::volume_year(from_ms.saturating_sub(MAX_VOLUME_SPAN_MS).max(MIN_VALID_MS));
        let last = statements::volume_year(to_ms.saturating_sub(1).max(MIN_VALID_MS));
        for year in first..=last {
            let rows: Vec<(String,)> = self
                .read_rows(&self.st().select_non_road_volumes, (enterprise_id, year, to_ms), usize::MAX)
                .await?;
            for (body,) in rows {
                let v: NonRoadVolume = from_json("non-road volume", body.as_bytes())?;
                if v.to_ms > from_ms {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| (a.from_ms, &a.id).cmp(&(b.from_ms, &b.id)));
        Ok(out)
    }

    /// Nothing to do: telemetry carries a TTL (`retention - age` at write time) and expires on its
    /// own; TimeWindowCompactionStrategy then drops whole SSTables. Always returns 0.
    async fn claim_vehicle(&self, vin: Vin, owner: &str, lease_s: u32) -> Result<LeaseClaim, StoreError> {
        let st = self.st();
        let ttl = i32::try_from(lease_s.max(1)).unwrap_or(i32::MAX);
        let claim = self.lwt(&st.claim_vehicle, (vin.as_str(), owner, ttl)).await?;
        if claim.applied {
            return Ok(LeaseClaim::Taken);
        }
        match claim.text("owner") {
            Some(current) if current == owner => {
                let renew = self.lwt(&st.renew_vehicle, (ttl, owner, vin.as_str(), owner)).await?;
                if renew.applied {
                    return Ok(LeaseClaim::Renewed);
                }
                match renew.text("owner") {
                    Some(other) => Ok(LeaseClaim::HeldBy(other.to_string())),
                    // It lapsed between the two statements and nobody took it: take it again
                    // (as new: another node may have held it for a moment in between).
                    None => {
                        let again = self.lwt(&st.claim_vehicle, (vin.as_str(), owner, ttl)).await?;
                        match (again.applied, again.text("owner")) {
                            (true, _) => Ok(LeaseClaim::Taken),
                            (false, Some(o)) if o == owner => Ok(LeaseClaim::Renewed),
                            (false, Some(o)) => Ok(LeaseClaim::HeldBy(o.to_string())),
                            (false, None) => Ok(LeaseClaim::HeldBy("(lease changing hands)".into())),
                        }
                    }
                }
            }
            Some(other) => Ok(LeaseClaim::HeldBy(other.to_string())),
            // Expired between the read and the write of the CAS: the next claim takes it.
            None => Ok(LeaseClaim::HeldBy("(lease expiring)".to_string())),
        }
    }

    async fn release_vehicle(&self, vin: Vin, owner: &str) -> Result<(), StoreError> {
        self.lwt(&self.st().release_vehicle, (vin.as_str(), owner)).await?;
        Ok(())
    }

    async fn expire_records(&self, _before_ms: TimestampMs) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ViolationStatus;

    fn vin(n: u32) -> Vin {
        Vin::parse(&format!("LGBH52E07HY{n:06}")).unwrap()
    }

    fn rec(v: Vin, t: i64, k: f64) -> TelemetryRecord {
        TelemetryRecord {
            vin: v,
            time_ms: t,
            fix: None,
            engine: None,
            obd: None,
            opacity_k: Some(k),
            stream_kind: Default::default(),
        }
    }

    fn violation(v: Vin, started_ms: i64, status: ViolationStatus) -> Violation {
        Violation {
            id: ViolationId::derive(&v, "R3", "", started_ms),
            rule: "R3".into(),
            vin: v,
            plate: String::new(),
            status,
            late: false,
            started_ms,
            ended_ms: None,
            position: None,
            zone_id: None,
            city_code: None,
            county_code: None,
            summary: String::new(),
            thresholds: serde_json::Value::Null,
            measured: None,
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn plan_collapses_duplicates_like_sequential_application() {
        let t = 1_761_926_400_000;
        let (a, b) = (vin(1), vin(2));
        let open = violation(a, t, ViolationStatus::Open);
        let closed = violation(a, t, ViolationStatus::Closed);
        let late = violation(b, t, ViolationStatus::Closed);
        let batch = CommitBatch {
            records: vec![rec(a, t, 1.0), rec(a, t - 1, 1.0), rec(a, t, 2.0), rec(b, t + DAY_MS, 1.0)],
            violations: vec![
                ViolationWrite::Upsert(open),
                ViolationWrite::InsertIfAbsent(late.clone()),
                ViolationWrite::Upsert(closed.clone()),
                ViolationWrite::InsertIfAbsent(closed.clone()),
                ViolationWrite::InsertIfAbsent(late),
            ],
            states: vec![(a, vec![1]), (b, vec![2]), (a, vec![3])],
            passages: Vec::new(),
        };
        let plan = plan_commit(batch);
        // The record at t-1 is on the previous Beijing day (t is midnight).
        assert_eq!(plan.partitions.len(), 3);
        let day_t = &plan.partitions[&(a, day_bucket(t))];
        assert_eq!(day_t.len(), 1);
        assert_eq!(day_t[0].opacity_k, Some(2.0), "last write of a key wins");
        assert_eq!(plan.states, vec![(a, vec![3]), (b, vec![2])]);
        assert_eq!(plan.violations.len(), 2);
        assert!(
            matches!(&plan.violations[0], ViolationWrite::Upsert(v) if v.status == ViolationStatus::Closed)
        );
        assert!(matches!(&plan.violations[1], ViolationWrite::InsertIfAbsent(v) if v.vin == b));
    }

    #[test]
    fn alert_walk_waits_for_young_gaps_and_skips_old_ones() {
        let now = 1_780_000_000_000;
        let (young, old) = (Some(now - 1_000), Some(now - ALERT_GRACE_MS - 1));
        let row = |seq: i64, id: &str, at: Option<i64>| (seq, Some(id.to_string()), at);
        // In order, with a void (a claim that lost) in between.
        let mut found = Vec::new();
        let rows = vec![row(5, "a", young), row(6, "", young), row(7, "b", young)];
        assert_eq!(walk_alerts(5, rows, now, 10, &mut found), (8, false));
        assert_eq!(found, vec![(5, "a".to_string()), (7, "b".to_string())]);
        // 9 is missing and 10 is young: 9 may be in flight, so stop before it.
        let mut found = Vec::new();
        let rows = vec![row(8, "c", young), row(10, "d", young)];
        assert_eq!(walk_alerts(8, rows, now, 10, &mut found), (9, true));
        assert_eq!(found, vec![(8, "c".to_string())]);
        // 10 was allocated long ago: 9 is a hole of a failed commit and is skipped.
        let mut found = Vec::new();
        assert_eq!(walk_alerts(9, vec![row(10, "d", old)], now, 10, &mut found), (11, false));
        assert_eq!(found, vec![(10, "d".to_string())]);
        // A re-asserted row without allocation time counts as old; the limit stops the walk.
        let mut found = Vec::new();
        let rows = vec![row(12, "e", None), row(13, "f", young)];
        assert_eq!(walk_alerts(11, rows, now, 1, &mut found), (13, true));
        assert_eq!(found, vec![(12, "e".to_string())]);
    }

    #[test]
    fn fleet_merge_never_skips_what_a_vehicle_did_not_scan() {
        let t = 1_761_926_400_000;
        let (a, b) = (vin(1), vin(2));
        let v = |vin: Vin, k: i64| violation(vin, t + k * 1000, ViolationStatus::Open);
        let cursor = |x: &Violation| Some(ViolationCursor { started_ms: x.started_ms, id: x.id.clone() });
        // A stopped (budget) at its 8; B is complete and has older ones.
        let pa = ViolationPage { violations: vec![v(a, 9), v(a, 8)], next: cursor(&v(a, 8)) };
        let pb = ViolationPage { violations: vec![v(b, 10), v(b, 7), v(b, 3)], next: None };
        let page = merge_fleet(vec![pa.clone(), pb.clone()], 10);
        let starts: Vec<i64> = page.violations.iter().map(|x| (x.started_ms - t) / 1000).collect();
        assert_eq!(starts, [10, 9, 8], "nothing below A's position");
        assert_eq!(page.next, cursor(&v(a, 8)));
        // The limit cuts first: the cursor is the last returned.
        let page = merge_fleet(vec![pa, pb.clone()], 2);
        assert_eq!(page.violations.len(), 2);
        assert_eq!(page.next, cursor(&v(a, 9)));
        // Every vehicle complete: everything, and the end.
        let page = merge_fleet(vec![pb], 10);
        assert_eq!((page.violations.len(), page.next), (3, None));
    }

    #[test]
    fn errors_keep_the_driver_message() {
        let e: StoreError = ScyllaError::Migration { version: 2, detail: "boom".into() }.into();
        assert_eq!(e.to_string(), "storage engine error: schema migration 2: boom");
    }
}
