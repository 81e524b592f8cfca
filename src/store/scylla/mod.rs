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
mod keys;
mod merge;
pub mod schema;
pub mod statements;

use crate::clean::{CleanProfile, GatePassage, NonRoadVolume, MAX_VOLUME_SPAN_MS};
use crate::config::{ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel};
use crate::model::{
    now_ms, Enterprise, TelemetryRecord, TimestampMs, Vehicle, Vin, Violation, ViolationId, MAX_FUTURE_MS,
    MIN_VALID_MS,
};
use crate::store::codec::{decode_record, from_json};
use crate::store::{
    CommitBatch, CommitOutcome, Store, StoreError, ViolationCursor, ViolationQuery, ViolationWrite,
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
use keys::{day_bucket, month_bucket, prev_month, DAY_SHARDS, ENTERPRISE_BUCKETS, VEHICLE_BUCKETS};
use statements::{IndexRow, Prepared};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
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

struct Inner {
    session: Session,
    st: Prepared,
    keyspace: String,
    telemetry_ttl_s: i64,
    concurrency: usize,
    lookback_days: u32,
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
        schema::apply(&session, cfg, ttl).await?;
        let st = Prepared::prepare(&session, &cfg.keyspace).await?;
        tracing::info!(keyspace = %cfg.keyspace, nodes = ?cfg.uris, telemetry_ttl_s = ttl, "scylla store ready");
        Ok(ScyllaStore {
            inner: Arc::new(Inner {
                session,
                st,
                keyspace: cfg.keyspace.clone(),
                telemetry_ttl_s: ttl,
                concurrency: cfg.max_concurrency.max(1),
                lookback_days: cfg.violations_lookback_days.max(1),
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
                let result = self
                    .inner
                    .session
                    .execute_unpaged(&self.st().insert_violation_if_absent, statements::violation_row(&v))
                    .await?
                    .into_rows_result()?;
                let specs: Vec<String> = result.column_specs().iter().map(|c| c.name().to_string()).collect();
                let row: Row = result.first_row().map_err(|e| ScyllaError::Lwt(e.to_string()))?;
                let col = |name: &str| {
                    specs.iter().position(|n| n == name).and_then(|i| row.columns.get(i)).cloned().flatten()
                };
                let applied = match col("[applied]") {
                    Some(CqlValue::Boolean(b)) => b,
                    other => return Err(ScyllaError::Lwt(format!("[applied] = {other:?}"))),
                };
                if applied {
                    self.write_index_rows(&v, enterprise(&v).as_deref()).await?;
                    return Ok(Some(v));
                }
                // Not applied: the row exists, maybe from this very write on an earlier attempt
                // that failed before its index rows were written. Re-assert the index rows of
                // what is stored (idempotent), so that no violation is ever missing from listings.
                if let Some(CqlValue::Text(body)) = col("body") {
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
            futures::stream::iter(plan.violations)
                .map(|w| self.write_violation(w, found))
                .buffered(concurrency)
                .try_collect::<Vec<Option<Violation>>>()
                .await
        };
        let (written, violations) = futures::join!(records_and_states, violations);
        written?;
        Ok(CommitOutcome { written_violations: violations?.into_iter().flatten().collect() })
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

    /// One newest-first page of a violation index partition.
    async fn index_page(
        &self,
        by_vin: Option<(&Vin, i32)>,
        day_shard: (i32, i32),
        before: (i64, String),
        from_ms: i64,
        n: usize,
    ) -> Result<Vec<(NewestFirst, IndexEntry)>, ScyllaError> {
        let rows: Vec<(i64, String, String, String)> = match by_vin {
            Some((vin, month)) => {
                let v = statements::index_page_values((vin.as_str().to_string(), month), before, from_ms, n);
                self.read_rows(
                    &self.st().select_violations_by_vin_month,
                    (v.0 .0, v.0 .1, v.1, v.2, v.3, v.4),
                    n,
                )
                .await?
            }
            None => {
                let v = statements::index_page_values(day_shard, before, from_ms, n);
                self.read_rows(&self.st().select_violations_by_day, (v.0 .0, v.0 .1, v.1, v.2, v.3, v.4), n)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(started_ms, id, vin, rule)| {
                (Reverse((started_ms, id.clone())), IndexEntry { started_ms, id, vin, rule })
            })
            .collect())
    }

    async fn violations_inner(
        &self,
        query: &ViolationQuery,
        cursor: Option<ViolationCursor>,
        limit: usize,
    ) -> Result<Vec<Violation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
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
        // Lower bound: the query's `from`, else a capped look-back (anchored on now so that every
        // page of one listing agrees): an unbounded listing covers the last `lookback_days`.
        let lower = query
            .from_ms
            .unwrap_or_else(|| now.saturating_sub(i64::from(self.inner.lookback_days) * DAY_MS))
            .max(MIN_VALID_MS);
        let mut entries: Vec<IndexEntry> = Vec::new();
        if lower < upper.0 || (lower == upper.0 && !upper.1.is_empty()) {
            let keep = |e: &IndexEntry| {
                query.vin.is_none_or(|v| v.as_str() == e.vin)
                    && query.matches_rule(&e.rule)
                    && e.started_ms >= lower
            };
            let chunk = limit.clamp(50, 1000);
            match query.vin {
                Some(vin) => {
                    let (first, last) = (month_bucket(lower), month_bucket(upper.0));
                    let mut month = last;
                    while month >= first && entries.len() < limit {
                        let fetch = |_: usize, after: Option<NewestFirst>, n: usize| {
                            let before = after.map(|r| r.0).unwrap_or_else(|| upper.clone());
                            self.index_page(Some((&vin, month)), (0, 0), before, lower, n)
                        };
                        let page = merge::merge_sorted(
                            1,
                            Some(Reverse(upper.clone())),
                            chunk,
                            limit - entries.len(),
                            fetch,
                            keep,
                        )
                        .await?;
                        entries.extend(page.into_iter().map(|(_, e)| e));
                        month = prev_month(month);
                    }
                }
                None => {
                    let (first, last) = (day_bucket(lower), day_bucket(upper.0));
                    let mut day = last;
                    while day >= first && entries.len() < limit {
                        let fetch = |shard: usize, after: Option<NewestFirst>, n: usize| {
                            let before = after.map(|r| r.0).unwrap_or_else(|| upper.clone());
                            self.index_page(None, (day, shard as i32), before, lower, n)
                        };
                        let page = merge::merge_sorted(
                            DAY_SHARDS as usize,
                            Some(Reverse(upper.clone())),
                            chunk,
                            limit - entries.len(),
                            fetch,
                            keep,
                        )
                        .await?;
                        entries.extend(page.into_iter().map(|(_, e)| e));
                        day -= 1;
                    }
                }
            }
        }
        let bodies = futures::stream::iter(entries)
            .map(|e| async move {
                let row: Option<(Option<String>,)> =
                    self.read_one(&self.st().select_violation, (e.id.as_str(),)).await?;
                Ok::<_, ScyllaError>((e, row.and_then(|r| r.0)))
            })
            .buffered(self.inner.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        let mut out = Vec::with_capacity(bodies.len());
        for (e, body) in bodies {
            let Some(body) = body else {
                tracing::warn!(id = %e.id, "violation index row without a violation; skipped");
                continue;
            };
            let v: Violation = from_json("violation", body.as_bytes())?;
            if query.matches(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }
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
    ) -> Result<Vec<Violation>, StoreError> {
        self.violations_inner(query, cursor, limit).await
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
    fn errors_keep_the_driver_message() {
        let e: StoreError = ScyllaError::Migration { version: 2, detail: "boom".into() }.into();
        assert_eq!(e.to_string(), "storage engine error: schema migration 2: boom");
    }
}
