//! Storage: the `Store` trait every backend implements, and the embedded default.
//!
//! The trait is shaped for a wide-column backend (ScyllaDB): telemetry is addressed by
//! (VIN, time) and read per vehicle and time range; violations by id, by time and by VIN;
//! one `commit` carries everything a batch changes so that a backend can make it atomic
//! (embedded) or idempotent (ScyllaDB: every write is an upsert keyed by natural ids).
pub mod codec;
pub mod embedded;
pub mod health;
#[cfg(feature = "scylla")]
pub mod scylla;
pub mod telemetry;

use crate::clean::{CleanProfile, GatePassage, NonRoadVolume};
use crate::model::{
    violation_city, ApiToken, AuditEntry, Enterprise, ReviewState, TelemetryRecord, TimestampMs, Vehicle,
    Vin, Violation, ViolationId, ViolationReview, ViolationStatus,
};
use crate::registry::normalise_plate;
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt {what} in store: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("invalid page token")]
    BadCursor,
    #[error("{0} not found")]
    NotFound(String),
}

/// How a violation snapshot is written.
#[derive(Debug, Clone)]
pub enum ViolationWrite {
    /// Live detection: the newest snapshot (open → closed) replaces the older one.
    Upsert(Violation),
    /// Late detection: never overwrites what live detection already recorded under the same id.
    InsertIfAbsent(Violation),
}

impl ViolationWrite {
    pub fn violation(&self) -> &Violation {
        match self {
            ViolationWrite::Upsert(v) | ViolationWrite::InsertIfAbsent(v) => v,
        }
    }
}

/// Everything one group commit writes. Records are keyed by (VIN, time): writing the same record
/// twice leaves one copy.
#[derive(Debug, Default)]
pub struct CommitBatch {
    pub records: Vec<TelemetryRecord>,
    pub violations: Vec<ViolationWrite>,
    /// Encoded per-vehicle detector state (`detect::VehicleState::encode`).
    pub states: Vec<(Vin, Vec<u8>)>,
    /// Park entries/exits derived from the track (clean-transport gate passages), stored as
    /// [`GatePassage`]s of source telemetry under deterministic ids (a replay stores one copy).
    pub passages: Vec<crate::geofence::ParkPassage>,
}

impl CommitBatch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.violations.is_empty()
            && self.states.is_empty()
            && self.passages.is_empty()
    }

    pub fn append(&mut self, other: CommitBatch) {
        self.records.extend(other.records);
        self.violations.extend(other.violations);
        self.states.extend(other.states);
        self.passages.extend(other.passages);
    }
}

/// Violations that a commit created or changed (for metrics), and the live alerts it raised.
#[derive(Debug, Default)]
pub struct CommitOutcome {
    pub written_violations: Vec<Violation>,
    /// Live violations written for the first time, each with the alert sequence number the
    /// commit assigned to it (in the same transaction), in increasing order.
    pub alerts: Vec<Alert>,
}

/// The outcome of claiming a vehicle's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// Nobody held it: the claimant holds it now, and anything it remembers of the vehicle may
    /// be stale (another node may have had it meanwhile).
    Taken,
    /// The claimant held it without interruption and still does.
    Renewed,
    /// Another owner holds it.
    HeldBy(String),
}

/// A live violation in the order it was first committed. `seq` is what a watching client keeps
/// as its cursor: sequence numbers increase with commit order and a reader never sees `n + 1`
/// without `n`, so "everything after my cursor" has no gaps and no repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub seq: u64,
    pub violation: Violation,
}

/// Filters of a violation query. All present filters must match.
#[derive(Debug, Clone, Default)]
pub struct ViolationQuery {
    /// Inclusive lower bound of the violation start.
    pub from_ms: Option<TimestampMs>,
    /// Exclusive upper bound of the violation start.
    pub to_ms: Option<TimestampMs>,
    pub vin: Option<Vin>,
    /// Any of these vehicles (an enterprise's fleet). An empty set matches nothing.
    pub vins: Option<Arc<BTreeSet<Vin>>>,
    /// Exact rule id ("R3") or a rule family prefix ("R4" matches "R4.reagent_empty").
    pub rule: Option<String>,
    /// City where it happened (GB/T 2260); a violation with only a county code counts for the
    /// county's city (see `model::violation_city`).
    pub city_code: Option<String>,
    pub county_code: Option<String>,
    pub zone_id: Option<String>,
    /// Plate as recorded on the violation, compared normalised (`registry::normalise_plate`).
    pub plate: Option<String>,
    /// Episode status (open / closed).
    pub status: Option<ViolationStatus>,
    /// `Some(true)`: only late violations; `Some(false)`: only live ones.
    pub late: Option<bool>,
    /// Review state; needs the review table, so it is checked by the store, not by `matches`.
    pub review: Option<ReviewState>,
}

impl ViolationQuery {
    /// Every filter except `review`.
    pub fn matches(&self, v: &Violation) -> bool {
        self.from_ms.is_none_or(|f| v.started_ms >= f)
            && self.to_ms.is_none_or(|t| v.started_ms < t)
            && self.vin.is_none_or(|vin| v.vin == vin)
            && self.vins.as_ref().is_none_or(|set| set.contains(&v.vin))
            && self.matches_rule(&v.rule)
            && self.city_code.as_deref().is_none_or(|c| violation_city(v).as_deref() == Some(c))
            && self.county_code.as_deref().is_none_or(|c| v.county_code.as_deref() == Some(c))
            && self.zone_id.as_deref().is_none_or(|z| v.zone_id.as_deref() == Some(z))
            && self.plate.as_deref().is_none_or(|p| normalise_plate(&v.plate) == normalise_plate(p))
            && self.status.is_none_or(|s| v.status == s)
            && self.late.is_none_or(|l| v.late == l)
    }

    /// The rule filter alone: exact id, or a family prefix followed by `.` ("R4" ⊃ "R4.x").
    /// Separate so that an index that stores the rule can filter before fetching bodies.
    pub fn matches_rule(&self, rule: &str) -> bool {
        self.rule
            .as_deref()
            .is_none_or(|r| rule == r || (rule.starts_with(r) && rule.as_bytes().get(r.len()) == Some(&b'.')))
    }

    pub fn matches_review(&self, review: Option<&ViolationReview>) -> bool {
        self.review.is_none_or(|r| ReviewState::of(review) == r)
    }
}

/// One page of a violation listing. `next` is where the following page starts; `None` when
/// nothing is left. A page may hold fewer than `limit` violations (even none) and still have a
/// `next`: a selective filter stops scanning after a bounded number of index entries so that
/// one request never reads the whole table.
#[derive(Debug, Clone, Default)]
pub struct ViolationPage {
    pub violations: Vec<Violation>,
    pub next: Option<ViolationCursor>,
}

/// Position in a newest-first violation listing: the last (started, id) returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationCursor {
    pub started_ms: TimestampMs,
    pub id: ViolationId,
}

impl ViolationCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.started_ms, self.id.as_str())
    }

    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let (t, id) = s.split_once('.').ok_or(StoreError::BadCursor)?;
        let started_ms = t.parse().map_err(|_| StoreError::BadCursor)?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadCursor);
        }
        Ok(ViolationCursor { started_ms, id: ViolationId(id.to_string()) })
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes a batch atomically (embedded) or idempotently (distributed); durable on return.
    async fn commit(&self, batch: CommitBatch) -> Result<CommitOutcome, StoreError>;

    /// A vehicle's records with `from_ms <= time < to_ms`, oldest first, at most `limit`.
    async fn records(
        &self,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError>;

    async fn vehicle_state(&self, vin: Vin) -> Result<Option<Vec<u8>>, StoreError>;

    async fn upsert_vehicle(&self, vehicle: Vehicle) -> Result<(), StoreError>;
    async fn vehicles(&self, after: Option<Vin>, limit: usize) -> Result<Vec<Vehicle>, StoreError>;

    /// Small configuration documents managed through the API, by kind ("zone", "exemptions"):
    /// written whole, read whole at start.
    async fn put_documents(&self, kind: &str, docs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError>;
    async fn delete_documents(&self, kind: &str, ids: Vec<String>) -> Result<(), StoreError>;
    async fn documents(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    async fn upsert_enterprise(&self, enterprise: Enterprise) -> Result<(), StoreError>;
    async fn enterprise(&self, id: &str) -> Result<Option<Enterprise>, StoreError>;
    async fn enterprises(&self, after: Option<String>, limit: usize) -> Result<Vec<Enterprise>, StoreError>;

    async fn violation(&self, id: &ViolationId) -> Result<Option<Violation>, StoreError>;
    /// Newest first (by start time, then id), strictly after `cursor`, at most `limit`.
    async fn violations(
        &self,
        query: &ViolationQuery,
        cursor: Option<ViolationCursor>,
        limit: usize,
    ) -> Result<ViolationPage, StoreError>;

    /// Live alerts with `seq > after`, oldest first, at most `limit`, each with the violation's
    /// current snapshot.
    async fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<Alert>, StoreError>;
    /// The newest alert sequence number (0 when there is none): where a new watcher starts.
    async fn last_alert_seq(&self) -> Result<u64, StoreError>;

    /// Records a review decision and its audit entry in one transaction. `NotFound` when the
    /// violation does not exist. Returns the audit entry as appended (with its `seq`).
    async fn review_violation(
        &self,
        review: ViolationReview,
        audit: AuditEntry,
    ) -> Result<AuditEntry, StoreError>;
    /// The latest decision for each id (same order; `None` = unreviewed).
    async fn violation_reviews(
        &self,
        ids: &[ViolationId],
    ) -> Result<Vec<Option<ViolationReview>>, StoreError>;

    /// Appends to the audit log; returns the entry with its assigned `seq`.
    async fn append_audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError>;
    /// Newest first, strictly before `before` (a `seq`), at most `limit`.
    async fn audit_log(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores a credential under its id (replacing one with the same id).
    async fn put_token(&self, token: ApiToken) -> Result<(), StoreError>;
    async fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Every credential, revoked ones included (there are few: people and platforms, not vehicles).
    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

    /// Clean-transport targets and gates of an enterprise (replaces the stored profile).
    async fn put_clean_profile(&self, profile: CleanProfile) -> Result<(), StoreError>;
    async fn clean_profile(&self, enterprise_id: &str) -> Result<Option<CleanProfile>, StoreError>;

    /// Upserts park passages by id (gate-system records; telemetry passages arrive by `commit`).
    async fn put_gate_passages(&self, passages: Vec<GatePassage>) -> Result<(), StoreError>;
    /// An enterprise's passages (both sources) with `from_ms <= time < to_ms`, oldest first
    /// (then by id), at most `limit`.
    async fn gate_passages(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<GatePassage>, StoreError>;

    /// Upserts a non-road volume report by id.
    async fn put_non_road_volume(&self, volume: NonRoadVolume) -> Result<(), StoreError>;
    /// An enterprise's non-road reports overlapping `[from_ms, to_ms)`, by start then id.
    async fn non_road_volumes(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<NonRoadVolume>, StoreError>;

    /// Deletes telemetry older than `before_ms`; violations, states and registry are kept.
    /// Returns the number of records removed.
    async fn expire_records(&self, before_ms: TimestampMs) -> Result<u64, StoreError>;

    /// Claims, or renews, the lease of vehicle `vin` for `owner` for `lease_s` seconds
    /// (`pipeline::ownership`). A store that admits one process grants every claim as a renewal.
    async fn claim_vehicle(&self, vin: Vin, owner: &str, lease_s: u32) -> Result<LeaseClaim, StoreError> {
        let _ = (vin, owner, lease_s);
        Ok(LeaseClaim::Renewed)
    }

    /// Gives back `owner`'s lease of `vin` (no-op when another owner holds it).
    async fn release_vehicle(&self, vin: Vin, owner: &str) -> Result<(), StoreError> {
        let _ = (vin, owner);
        Ok(())
    }

    /// Makes ready the storage partitions of these Beijing days (`model::beijing_day`) before
    /// records of them are committed. Called by the submitting transport, so that creating a
    /// partition (a directory and files on the embedded store) never happens inside the group
    /// commit every client waits on. Backends without such partitions do nothing.
    async fn prepare_days(&self, days: &[i64]) -> Result<(), StoreError> {
        let _ = days;
        Ok(())
    }

    /// Called while commits fail (every second or so): Ok once writes can succeed again. The
    /// embedded store checks that its directory takes writes (a full disk got space back) and
    /// reopens its engines, which refuse every write after an I/O error until reopened.
    /// Backends that recover by themselves (a cluster) just say yes; the next commit decides.
    async fn recover_writes(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
