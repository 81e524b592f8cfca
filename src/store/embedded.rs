//! The embedded default store on redb: one file, ACID transactions, copy-on-write B-trees with
//! checksummed commits, so a `kill -9` leaves the last committed transaction intact. Telemetry
//! records live beside it in an LSM-tree ([`super::telemetry`], directory `telemetry/`), written
//! and synced before the redb transaction of the same group commit.
//!
//! Every call runs on the blocking pool: both engines are synchronous and a commit waits for
//! `fsync`.
use super::codec::*;
use super::telemetry::Telemetry;
use super::{
    Alert, CommitBatch, CommitOutcome, Store, StoreError, ViolationCursor, ViolationPage, ViolationQuery,
    ViolationWrite,
};
use crate::clean::{CleanProfile, GatePassage, NonRoadVolume, MAX_VOLUME_SPAN_MS};
use crate::config::EmbeddedConfig;
use crate::model::{
    violation_city, ApiToken, AuditEntry, Enterprise, TelemetryRecord, TimestampMs, Vehicle, Vin, Violation,
    ViolationId, ViolationReview,
};
use async_trait::async_trait;
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Telemetry of stores written before schema version 3 (now in [`Telemetry`]); emptied on open.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const STATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vehicle_states");
const VEHICLES: TableDefinition<&str, &[u8]> = TableDefinition::new("vehicles");
const ENTERPRISES: TableDefinition<&str, &[u8]> = TableDefinition::new("enterprises");
const VIOLATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("violations");
const VIOLATIONS_BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("violations_by_time");
const VIOLATIONS_BY_VIN: TableDefinition<&[u8], ()> = TableDefinition::new("violations_by_vin");
const CLEAN_PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("clean_profiles");
/// Key: enterprise prefix + time + passage id (`passage_key`).
const PASSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("park_passages");
/// Key: enterprise prefix + report start + report id.
const VOLUMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("non_road_volumes");

/// Length-prefixed enterprise id: no id is a prefix of another's key range, whatever bytes ids
/// hold (zone files carry free-text enterprise ids).
fn enterprise_prefix(enterprise_id: &str) -> Vec<u8> {
    let b = enterprise_id.as_bytes();
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + b.len() + 8 + 32);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&b[..usize::from(len)]);
    k
}

fn timed_key(enterprise_id: &str, t: TimestampMs, id: &str) -> Vec<u8> {
    let mut k = enterprise_prefix(enterprise_id);
    k.extend_from_slice(&time_key(t));
    k.extend_from_slice(id.as_bytes());
    k
}

fn put_passage(t: &mut redb::Table<&[u8], &[u8]>, p: &GatePassage) -> Result<(), StoreError> {
    t.insert(timed_key(&p.enterprise_id, p.time_ms, &p.id).as_slice(), to_json(p).as_slice())?;
    Ok(())
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Engine(e.into().to_string())
    }
}

/// Runs a synchronous engine call on tokio's blocking pool.
async fn on_blocking_pool<E, T, F>(engine: Arc<E>, f: F) -> Result<T, StoreError>
where
    E: Send + Sync + 'static,
    T: Send + 'static,
    F: FnOnce(&E) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&engine)).await.map_err(|e| StoreError::Task(e.to_string()))?
}

/// Stores written before schema version 3 kept records in redb's `records` table: they move to
/// the telemetry engine (synced) before the table is emptied, so a crash mid-way repeats the move.
fn move_records_to_telemetry(db: &Database, telemetry: &Telemetry) -> Result<(), StoreError> {
    const CHUNK: usize = 50_000;
    let tx = db.begin_read()?;
    let table = tx.open_table(RECORDS)?;
    if table.is_empty()? {
        return Ok(());
    }
    let mut moved = 0u64;
    let mut rows = Vec::with_capacity(CHUNK);
    for e in table.iter()? {
        let (k, v) = e?;
        rows.push((k.value().to_vec(), v.value().to_vec()));
        if rows.len() >= CHUNK {
            moved += rows.len() as u64;
            telemetry.put_raw(std::mem::take(&mut rows))?;
        }
    }
    moved += rows.len() as u64;
    telemetry.put_raw(rows)?;
    drop(table);
    drop(tx);
    let tx = db.begin_write()?;
    tx.open_table(RECORDS)?.retain(|_, _| false)?;
    tx.commit()?;
    tracing::info!(records = moved, "moved telemetry records from redb to the telemetry engine");
    Ok(())
}

/// Where the violation happened: police's main access path. Key: area code + start + id.
const VIOLATIONS_BY_CITY: TableDefinition<&[u8], ()> = TableDefinition::new("violations_by_city");
const VIOLATIONS_BY_COUNTY: TableDefinition<&[u8], ()> = TableDefinition::new("violations_by_county");
/// Latest review decision per violation id (history is in the audit log).
const REVIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("violation_reviews");
/// Live alert sequence → violation id, and the reverse (each live violation alerts once).
const ALERTS: TableDefinition<u64, &str> = TableDefinition::new("alerts");
const ALERTED: TableDefinition<&str, u64> = TableDefinition::new("alerted_violations");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// API credentials by id; the value holds the secret's hash, never the secret.
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Version 2 added the city and county violation indexes (back-filled on open).
const SCHEMA_VERSION: u64 = 3;
/// Index entries one listing call may examine before it returns a short page with a cursor.
const SCAN_BUDGET: usize = 10_000;
/// Up to this many vehicles, a fleet query merges per-vehicle index ranges instead of scanning
/// the time index.
const MAX_MERGED_VINS: usize = 64;
/// Key: kind ‖ 0x00 ‖ id.
const DOCUMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("documents");

fn document_key(kind: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + id.len() + 1);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

#[derive(Clone)]
pub struct EmbeddedStore {
    engines: Arc<Engines>,
}

/// The two engines and what is needed to reopen them; shared with the blocking task that does.
struct Engines {
    dir: PathBuf,
    cfg: EmbeddedConfig,
    /// `None` only for the moment an engine is being reopened after a failed write.
    db: RwLock<Option<Arc<Database>>>,
    telemetry: RwLock<Option<Arc<Telemetry>>>,
    /// A write failed: after an I/O error (ENOSPC) redb refuses every later operation and fjall
    /// every later write until they are reopened, which `recover_writes` does.
    write_failed: AtomicBool,
}

fn mib(m: u64) -> u64 {
    m.saturating_mul(1 << 20)
}

fn unavailable(engine: &str) -> StoreError {
    StoreError::Engine(format!("{engine} is being reopened after a write failure"))
}

/// Size of the file written to learn whether the data directory takes writes again.
const PROBE_BYTES: usize = 1 << 20;
/// How long a reopen waits for in-flight calls to let go of the old engine.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

impl EmbeddedStore {
    /// Opens (or creates) `dir/smogwatch.redb` and `dir/telemetry/` with default cache sizes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, &EmbeddedConfig::default())
    }

    pub fn open_with(dir: &Path, cfg: &EmbeddedConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Engine(format!("{}: {e}", dir.display())))?;
        let db = Self::open_db(dir, cfg)?;
        let telemetry = Telemetry::open(&dir.join("telemetry"), mib(cfg.telemetry_cache_mb))?;
        move_records_to_telemetry(&db, &telemetry)?;
        Ok(EmbeddedStore {
            engines: Arc::new(Engines {
                dir: dir.to_path_buf(),
                cfg: cfg.clone(),
                db: RwLock::new(Some(Arc::new(db))),
                telemetry: RwLock::new(Some(Arc::new(telemetry))),
                write_failed: AtomicBool::new(false),
            }),
        })
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.engines.db()
    }

    fn telemetry(&self) -> Result<Arc<Telemetry>, StoreError> {
        self.engines.telemetry()
    }

    fn open_db(dir: &Path, cfg: &EmbeddedConfig) -> Result<Database, StoreError> {
        open_db(dir, cfg)
    }
}

fn open_db(dir: &Path, cfg: &EmbeddedConfig) -> Result<Database, StoreError> {
    let db = redb::Builder::new()
        .set_cache_size(usize::try_from(mib(cfg.cache_mb)).unwrap_or(usize::MAX))
        .create(dir.join("smogwatch.redb"))?;
    let tx = db.begin_write()?;
    {
        tx.open_table(RECORDS)?;
        tx.open_table(STATES)?;
        tx.open_table(VEHICLES)?;
        tx.open_table(ENTERPRISES)?;
        tx.open_table(VIOLATIONS)?;
        tx.open_table(VIOLATIONS_BY_TIME)?;
        tx.open_table(VIOLATIONS_BY_VIN)?;
        tx.open_table(DOCUMENTS)?;
        tx.open_table(REVIEWS)?;
        tx.open_table(ALERTS)?;
        tx.open_table(ALERTED)?;
        tx.open_table(AUDIT)?;
        tx.open_table(TOKENS)?;
        tx.open_table(CLEAN_PROFILES)?;
        tx.open_table(PASSAGES)?;
        tx.open_table(VOLUMES)?;
        let mut meta = tx.open_table(META)?;
        let version = meta.get("schema_version")?.map(|g| g.value()).unwrap_or(1);
        if version < 2 {
            let violations = tx.open_table(VIOLATIONS)?;
            let mut idx = ViolationIndexes::open(&tx)?;
            for e in violations.iter()? {
                let (_, raw) = e?;
                let v: Violation = from_json("violation", raw.value())?;
                idx.insert(&v)?;
            }
        }
        meta.insert("schema_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(db)
}

impl Engines {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().clone().ok_or_else(|| unavailable("redb"))
    }

    fn telemetry(&self) -> Result<Arc<Telemetry>, StoreError> {
        self.telemetry.read().clone().ok_or_else(|| unavailable("the telemetry engine"))
    }

    /// Writes, syncs and removes a probe file: the data directory takes writes again.
    fn probe_dir(&self) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.dir.join(".write-probe");
        let result = (|| {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        result.map_err(|e| {
            StoreError::Engine(format!("data directory {} not writable: {e}", self.dir.display()))
        })
    }

    /// Replaces the engine in `slot` by a freshly opened one, once in-flight calls have let go
    /// of the old one (both engines hold a lock file: the old must be closed first).
    fn reopen<T>(
        slot: &RwLock<Option<Arc<T>>>,
        open: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<(), StoreError> {
        let mut guard = slot.write();
        if let Some(old) = guard.as_ref() {
            let deadline = Instant::now() + REOPEN_WAIT;
            while Arc::strong_count(old) > 1 {
                if Instant::now() > deadline {
                    return Err(StoreError::Engine("engine still in use; reopen retried later".into()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        drop(guard.take());
        *guard = Some(Arc::new(open()?));
        Ok(())
    }

    fn recover_blocking(&self) -> Result<(), StoreError> {
        self.probe_dir()?;
        if !self.write_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        tracing::warn!(dir = %self.dir.display(), "data directory writable again; reopening the storage engines");
        Self::reopen(&self.telemetry, || {
            Telemetry::open(&self.dir.join("telemetry"), mib(self.cfg.telemetry_cache_mb))
        })?;
        Self::reopen(&self.db, || open_db(&self.dir, &self.cfg))?;
        self.write_failed.store(false, Ordering::Release);
        tracing::info!("storage engines reopened; writes resume");
        Ok(())
    }
}

impl EmbeddedStore {
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        on_blocking_pool(self.db()?, f).await
    }

    async fn blocking_telemetry<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Telemetry) -> Result<T, StoreError> + Send + 'static,
    {
        on_blocking_pool(self.telemetry()?, f).await
    }

    /// Records first (synced), then one redb transaction with everything else: see
    /// [`super::telemetry`] for why a crash between the two is harmless.
    fn commit_blocking(
        db: &Database,
        telemetry: &Telemetry,
        batch: CommitBatch,
    ) -> Result<CommitOutcome, StoreError> {
        telemetry.put(batch.records.iter())?;
        let tx = db.begin_write()?;
        let mut outcome = CommitOutcome::default();
        {
            let mut states = tx.open_table(STATES)?;
            for (vin, s) in &batch.states {
                states.insert(&vin.as_bytes()[..], s.as_slice())?;
            }
            let mut violations = tx.open_table(VIOLATIONS)?;
            let mut idx = ViolationIndexes::open(&tx)?;
            let mut alerts = tx.open_table(ALERTS)?;
            let mut alerted = tx.open_table(ALERTED)?;
            let mut next_seq = alerts.last()?.map_or(1, |(k, _)| k.value() + 1);
            for w in batch.violations {
                let (v, only_if_absent) = match w {
                    ViolationWrite::Upsert(v) => (v, false),
                    ViolationWrite::InsertIfAbsent(v) => (v, true),
                };
                let old = violations.get(v.id.as_str())?.map(|g| g.value().to_vec());
                if only_if_absent && old.is_some() {
                    continue;
                }
                // A new snapshot may place the episode elsewhere (zone exit): drop the old keys.
                match old.as_deref().map(|b| from_json::<Violation>("violation", b)) {
                    Some(Ok(old)) => idx.remove(&old)?,
                    Some(Err(e)) => {
                        tracing::warn!(id = v.id.as_str(), error = %e, "replacing unreadable violation")
                    }
                    None => {}
                }
                violations.insert(v.id.as_str(), to_json(&v).as_slice())?;
                idx.insert(&v)?;
                // A live violation raises one alert, when it is first written as live.
                if !v.late && alerted.get(v.id.as_str())?.is_none() {
                    alerts.insert(next_seq, v.id.as_str())?;
                    alerted.insert(v.id.as_str(), next_seq)?;
                    outcome.alerts.push(Alert { seq: next_seq, violation: v.clone() });
                    next_seq += 1;
                }
                outcome.written_violations.push(v);
            }
            let mut passages = tx.open_table(PASSAGES)?;
            for p in &batch.passages {
                put_passage(&mut passages, &GatePassage::from_park_passage(p))?;
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    fn append_audit_in(tx: &redb::WriteTransaction, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        let mut audit = tx.open_table(AUDIT)?;
        entry.seq = audit.last()?.map_or(1, |(k, _)| k.value() + 1);
        audit.insert(entry.seq, to_json(&entry).as_slice())?;
        Ok(entry)
    }
}

/// The secondary indexes of the violations table, kept in step inside one write transaction.
struct ViolationIndexes<'t> {
    by_time: redb::Table<'t, &'static [u8], ()>,
    by_vin: redb::Table<'t, &'static [u8], ()>,
    by_city: redb::Table<'t, &'static [u8], ()>,
    by_county: redb::Table<'t, &'static [u8], ()>,
}

impl<'t> ViolationIndexes<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(ViolationIndexes {
            by_time: tx.open_table(VIOLATIONS_BY_TIME)?,
            by_vin: tx.open_table(VIOLATIONS_BY_VIN)?,
            by_city: tx.open_table(VIOLATIONS_BY_CITY)?,
            by_county: tx.open_table(VIOLATIONS_BY_COUNTY)?,
        })
    }

    fn insert(&mut self, v: &Violation) -> Result<(), StoreError> {
        self.by_time.insert(violation_time_key(v).as_slice(), ())?;
        self.by_vin.insert(violation_vin_key(v).as_slice(), ())?;
        if let Some(city) = violation_city(v) {
            self.by_city.insert(violation_area_key(&city, v).as_slice(), ())?;
        }
        if let Some(county) = v.county_code.as_deref().filter(|c| !c.is_empty()) {
            self.by_county.insert(violation_area_key(county, v).as_slice(), ())?;
        }
        Ok(())
    }

    fn remove(&mut self, v: &Violation) -> Result<(), StoreError> {
        self.by_time.remove(violation_time_key(v).as_slice())?;
        self.by_vin.remove(violation_vin_key(v).as_slice())?;
        if let Some(city) = violation_city(v) {
            self.by_city.remove(violation_area_key(&city, v).as_slice())?;
        }
        if let Some(county) = v.county_code.as_deref().filter(|c| !c.is_empty()) {
            self.by_county.remove(violation_area_key(county, v).as_slice())?;
        }
        Ok(())
    }
}

type IndexEntry<'a> =
    Result<(redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, ()>), redb::StorageError>;

/// Reads a violation listing from an index range (keys end with start + id), newest first.
/// Stops at `limit` matches or after `budget` index entries, whichever comes first.
fn scan_violations<'a>(
    index: impl DoubleEndedIterator<Item = IndexEntry<'a>>,
    violations: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    reviews: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    query: &ViolationQuery,
    limit: usize,
    budget: usize,
) -> Result<ViolationPage, StoreError> {
    let mut page = ViolationPage::default();
    if limit == 0 {
        return Ok(page);
    }
    let mut entries = index.rev();
    let mut examined = 0usize;
    while let Some(entry) = entries.next() {
        let (k, _) = entry?;
        let key = k.value();
        let Some((started_ms, id)) = violation_key_position(key) else {
            return Err(StoreError::Corrupt { what: "violation index", detail: hex::encode(key) });
        };
        examined += 1;
        if let Some(raw) = violations.get(id)? {
            let v: Violation = from_json("violation", raw.value())?;
            if query.matches(&v)
                && (query.review.is_none() || query.matches_review(review_of(reviews, id)?.as_ref()))
            {
                page.violations.push(v);
                if page.violations.len() >= limit {
                    // Only hand out a cursor when the range holds more: no empty last page.
                    if entries.next().is_some() {
                        page.next = Some(ViolationCursor { started_ms, id: ViolationId(id.to_string()) });
                    }
                    return Ok(page);
                }
            }
        }
        if examined >= budget {
            page.next = Some(ViolationCursor { started_ms, id: ViolationId(id.to_string()) });
            return Ok(page);
        }
    }
    Ok(page)
}

fn review_of(
    reviews: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<ViolationReview>, StoreError> {
    reviews.get(id)?.map(|g| from_json("violation review", g.value())).transpose()
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn commit(&self, batch: CommitBatch) -> Result<CommitOutcome, StoreError> {
        let telemetry = self.telemetry()?;
        let result = self.blocking(move |db| Self::commit_blocking(db, &telemetry, batch)).await;
        if let Err(StoreError::Engine(_)) = &result {
            self.engines.write_failed.store(true, Ordering::Release);
        }
        result
    }

    async fn recover_writes(&self) -> Result<(), StoreError> {
        let engines = self.engines.clone();
        tokio::task::spawn_blocking(move || engines.recover_blocking())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn records(
        &self,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        self.blocking_telemetry(move |t| t.range(&vin, from_ms, to_ms, limit)).await
    }

    async fn vehicle_state(&self, vin: Vin) -> Result<Option<Vec<u8>>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(STATES)?;
            Ok(t.get(&vin.as_bytes()[..])?.map(|g| g.value().to_vec()))
        })
        .await
    }

    async fn upsert_vehicle(&self, vehicle: Vehicle) -> Result<(), StoreError> {
        let Some(vin) = vehicle.vin else {
            return Err(StoreError::Engine("vehicle without VIN".into()));
        };
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(VEHICLES)?.insert(vin.as_str(), to_json(&vehicle).as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn vehicles(&self, after: Option<Vin>, limit: usize) -> Result<Vec<Vehicle>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(VEHICLES)?;
            let mut out = Vec::new();
            let start = after.map(|v| v.as_str().to_string()).unwrap_or_default();
            for e in t.range(start.as_str()..)? {
                let (k, v) = e?;
                if after.is_some() && k.value() == start {
                    continue;
                }
                out.push(from_json("vehicle", v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_documents(&self, kind: &str, docs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let kind = kind.to_string();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(DOCUMENTS)?;
                for (id, body) in &docs {
                    t.insert(document_key(&kind, id).as_slice(), body.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_documents(&self, kind: &str, ids: Vec<String>) -> Result<(), StoreError> {
        let kind = kind.to_string();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(DOCUMENTS)?;
                for id in &ids {
                    t.remove(document_key(&kind, id).as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn documents(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let kind = kind.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(DOCUMENTS)?;
            let lo = document_key(&kind, "");
            let mut hi = kind.as_bytes().to_vec();
            hi.push(1);
            let mut out = Vec::new();
            for e in t.range(lo.as_slice()..hi.as_slice())? {
                let (k, v) = e?;
                let id = k
                    .value()
                    .get(lo.len()..)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                out.push((id, v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn upsert_enterprise(&self, enterprise: Enterprise) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(ENTERPRISES)?.insert(enterprise.id.as_str(), to_json(&enterprise).as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn enterprise(&self, id: &str) -> Result<Option<Enterprise>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ENTERPRISES)?;
            t.get(id.as_str())?.map(|g| from_json("enterprise", g.value())).transpose()
        })
        .await
    }

    async fn enterprises(&self, after: Option<String>, limit: usize) -> Result<Vec<Enterprise>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(ENTERPRISES)?;
            let start = after.clone().unwrap_or_default();
            let mut out = Vec::new();
            for e in t.range(start.as_str()..)? {
                let (k, v) = e?;
                if after.is_some() && k.value() == start {
                    continue;
                }
                out.push(from_json("enterprise", v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn violation(&self, id: &ViolationId) -> Result<Option<Violation>, StoreError> {
        let id = id.clone();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(VIOLATIONS)?;
            t.get(id.as_str())?.map(|g| from_json("violation", g.value())).transpose()
        })
        .await
    }

    async fn violations(
        &self,
        query: &ViolationQuery,
        cursor: Option<ViolationCursor>,
        limit: usize,
    ) -> Result<ViolationPage, StoreError> {
        let query = query.clone();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let violations = tx.open_table(VIOLATIONS)?;
            let reviews = tx.open_table(REVIEWS)?;
            // Upper bound (exclusive): the cursor position, else the query's `to`, else everything.
            let upper_time = |prefix: &[u8]| -> Vec<u8> {
                let mut k = prefix.to_vec();
                match (&cursor, query.to_ms) {
                    (Some(c), _) => {
                        k.extend_from_slice(&time_key(c.started_ms));
                        k.extend_from_slice(c.id.as_str().as_bytes());
                    }
                    (None, Some(t)) => k.extend_from_slice(&time_key(t)),
                    (None, None) => k.extend_from_slice(&[0xff; 9]),
                }
                k
            };
            let lower_time = |prefix: &[u8]| -> Vec<u8> {
                let mut k = prefix.to_vec();
                k.extend_from_slice(&time_key(query.from_ms.unwrap_or(i64::MIN)));
                k
            };
            let scan = |index: &redb::ReadOnlyTable<&'static [u8], ()>, prefix: &[u8], limit, budget| {
                let (lo, hi) = (lower_time(prefix), upper_time(prefix));
                scan_violations(
                    index.range(lo.as_slice()..hi.as_slice())?,
                    &violations,
                    &reviews,
                    &query,
                    limit,
                    budget,
                )
            };
            // The most selective index the query allows; other filters are checked while scanning.
            if let Some(vin) = query.vin {
                scan(&tx.open_table(VIOLATIONS_BY_VIN)?, vin.as_bytes(), limit, SCAN_BUDGET)
            } else if let Some(fleet) = query.vins.as_ref().filter(|s| s.len() <= MAX_MERGED_VINS) {
                // Each vehicle's newest `limit` matches, merged: exact, however rare they are.
                let index = tx.open_table(VIOLATIONS_BY_VIN)?;
                let mut merged = Vec::new();
                let mut more = false;
                for vin in fleet.iter() {
                    let page = scan(&index, vin.as_bytes(), limit, usize::MAX)?;
                    more |= page.next.is_some();
                    merged.extend(page.violations);
                }
                merged.sort_by(|a, b| (b.started_ms, &b.id).cmp(&(a.started_ms, &a.id)));
                more |= merged.len() > limit;
                merged.truncate(limit);
                let next = match merged.last() {
                    Some(v) if more => Some(ViolationCursor { started_ms: v.started_ms, id: v.id.clone() }),
                    _ => None,
                };
                Ok(ViolationPage { violations: merged, next })
            } else if let Some(county) = &query.county_code {
                scan(&tx.open_table(VIOLATIONS_BY_COUNTY)?, county.as_bytes(), limit, SCAN_BUDGET)
            } else if let Some(city) = &query.city_code {
                scan(&tx.open_table(VIOLATIONS_BY_CITY)?, city.as_bytes(), limit, SCAN_BUDGET)
            } else {
                scan(&tx.open_table(VIOLATIONS_BY_TIME)?, &[], limit, SCAN_BUDGET)
            }
        })
        .await
    }

    async fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let alerts = tx.open_table(ALERTS)?;
            let violations = tx.open_table(VIOLATIONS)?;
            let mut out = Vec::new();
            let Some(from) = after.checked_add(1) else { return Ok(out) };
            for e in alerts.range(from..)?.take(limit) {
                let (seq, id) = e?;
                if let Some(raw) = violations.get(id.value())? {
                    out.push(Alert { seq: seq.value(), violation: from_json("violation", raw.value())? });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn last_alert_seq(&self) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let last = tx.open_table(ALERTS)?.last()?.map_or(0, |(k, _)| k.value());
            Ok(last)
        })
        .await
    }

    async fn review_violation(
        &self,
        review: ViolationReview,
        audit: AuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let entry = {
                let id = review.violation_id.as_str();
                if tx.open_table(VIOLATIONS)?.get(id)?.is_none() {
                    return Err(StoreError::NotFound(format!("violation {id}")));
                }
                tx.open_table(REVIEWS)?.insert(id, to_json(&review).as_slice())?;
                Self::append_audit_in(&tx, audit)?
            };
            tx.commit()?;
            Ok(entry)
        })
        .await
    }

    async fn violation_reviews(
        &self,
        ids: &[ViolationId],
    ) -> Result<Vec<Option<ViolationReview>>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let reviews = tx.open_table(REVIEWS)?;
            ids.iter().map(|id| review_of(&reviews, id.as_str())).collect()
        })
        .await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let entry = Self::append_audit_in(&tx, entry)?;
            tx.commit()?;
            Ok(entry)
        })
        .await
    }

    async fn audit_log(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let audit = tx.open_table(AUDIT)?;
            let mut out = Vec::new();
            for e in audit.range(..before.unwrap_or(u64::MAX))?.rev().take(limit) {
                let (_, raw) = e?;
                out.push(from_json("audit entry", raw.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_token(&self, token: ApiToken) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(TOKENS)?.insert(token.id.as_str(), to_json(&token).as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TOKENS)?;
            t.get(id.as_str())?.map(|g| from_json("api token", g.value())).transpose()
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TOKENS)?;
            let mut out = Vec::with_capacity(t.len()? as usize);
            for e in t.iter()? {
                let (_, raw) = e?;
                out.push(from_json("api token", raw.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_clean_profile(&self, profile: CleanProfile) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(CLEAN_PROFILES)?
                .insert(profile.enterprise_id.as_str(), to_json(&profile).as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn clean_profile(&self, enterprise_id: &str) -> Result<Option<CleanProfile>, StoreError> {
        let id = enterprise_id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(CLEAN_PROFILES)?;
            t.get(id.as_str())?.map(|g| from_json("clean profile", g.value())).transpose()
        })
        .await
    }

    async fn put_gate_passages(&self, passages: Vec<GatePassage>) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(PASSAGES)?;
                for p in &passages {
                    put_passage(&mut t, p)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn gate_passages(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<GatePassage>, StoreError> {
        let id = enterprise_id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(PASSAGES)?;
            let (lo, hi) = (timed_key(&id, from_ms, ""), timed_key(&id, to_ms, ""));
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            for e in t.range(lo.as_slice()..hi.as_slice())?.take(limit) {
                let (_, v) = e?;
                out.push(from_json("park passage", v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_non_road_volume(&self, volume: NonRoadVolume) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(VOLUMES)?.insert(
                timed_key(&volume.enterprise_id, volume.from_ms, &volume.id).as_slice(),
                to_json(&volume).as_slice(),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn non_road_volumes(
        &self,
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<Vec<NonRoadVolume>, StoreError> {
        let id = enterprise_id.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(VOLUMES)?;
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            // A report starts at most MAX_VOLUME_SPAN_MS before the end of anything it overlaps.
            let lo = timed_key(&id, from_ms.saturating_sub(MAX_VOLUME_SPAN_MS), "");
            let hi = timed_key(&id, to_ms, "");
            for e in t.range(lo.as_slice()..hi.as_slice())? {
                let (_, v) = e?;
                let vol: NonRoadVolume = from_json("non-road volume", v.value())?;
                if vol.to_ms > from_ms && vol.from_ms < to_ms {
                    out.push(vol);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn expire_records(&self, before_ms: TimestampMs) -> Result<u64, StoreError> {
        self.blocking_telemetry(move |t| t.expire(before_ms)).await
    }

    async fn prepare_days(&self, days: &[i64]) -> Result<(), StoreError> {
        // The common case (every day already open) costs a read lock, not a blocking task.
        if self.telemetry()?.has_days(days) {
            return Ok(());
        }
        let days = days.to_vec();
        self.blocking_telemetry(move |t| t.prepare_days(&days)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditAction, ReviewDecision, ReviewState, Role, ViolationStatus};
    use std::collections::BTreeSet;

    #[tokio::test]
    async fn records_of_a_version_2_store_move_to_the_telemetry_engine() {
        let dir = tempfile::tempdir().unwrap();
        let vin = Vin::parse("LZZ5BLSJ3DA000201").unwrap();
        {
            // A version 2 store: records in redb.
            let db = Database::create(dir.path().join("smogwatch.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(RECORDS).unwrap();
                for i in 0..120 {
                    let r = TelemetryRecord {
                        opacity_k: Some(0.1),
                        ..TelemetryRecord::bare(vin, 1_761_926_400_000 + i * 1000)
                    };
                    t.insert(&record_key(&vin, r.time_ms)[..], encode_record(&r).as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.records(vin, 0, i64::MAX, 1000).await.unwrap().len(), 120);
        let tx = store.db().unwrap().begin_read().unwrap();
        assert!(tx.open_table(RECORDS).unwrap().is_empty().unwrap(), "moved, not copied");
        drop(tx);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.records(vin, 0, i64::MAX, 1000).await.unwrap().len(), 120, "still there, once");
    }

    fn violation(vin: &str, started_ms: i64, city: &str, county: Option<&str>, late: bool) -> Violation {
        let vin = Vin::parse(vin).unwrap();
        Violation {
            id: ViolationId::derive(&vin, "R3", "", started_ms),
            rule: "R3".into(),
            vin,
            plate: "浙A12345".into(),
            status: ViolationStatus::Open,
            late,
            started_ms,
            ended_ms: None,
            position: None,
            zone_id: None,
            city_code: Some(city.into()),
            county_code: county.map(Into::into),
            summary: String::new(),
            thresholds: serde_json::Value::Null,
            measured: None,
            evidence: serde_json::Value::Null,
        }
    }

    async fn commit(s: &EmbeddedStore, vs: Vec<Violation>) -> CommitOutcome {
        let violations = vs.into_iter().map(ViolationWrite::Upsert).collect();
        s.commit(CommitBatch { violations, ..Default::default() }).await.unwrap()
    }

    async fn all_pages(s: &EmbeddedStore, q: &ViolationQuery, limit: usize) -> Vec<i64> {
        let (mut out, mut cursor) = (Vec::new(), None);
        loop {
            let page = s.violations(q, cursor, limit).await.unwrap();
            out.extend(page.violations.iter().map(|v| v.started_ms));
            match page.next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    const A: &str = "LZZ5BLSJ3DA000001";
    const B: &str = "LZZ5BLSJ3DA000002";

    #[tokio::test]
    async fn area_and_fleet_filters_page_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let mut vs = Vec::new();
        for i in 0..10 {
            vs.push(violation(A, 1000 + i, "330100", Some("330106"), false));
            vs.push(violation(B, 2000 + i, "330200", None, i % 2 == 0));
        }
        commit(&s, vs).await;
        let q = ViolationQuery { city_code: Some("330100".into()), ..Default::default() };
        assert_eq!(all_pages(&s, &q, 3).await, (1000..1010).rev().collect::<Vec<_>>());
        let q =
            ViolationQuery { county_code: Some("330106".into()), to_ms: Some(1005), ..Default::default() };
        assert_eq!(all_pages(&s, &q, 2).await, vec![1004, 1003, 1002, 1001, 1000]);
        let q = ViolationQuery { late: Some(false), city_code: Some("330200".into()), ..Default::default() };
        assert_eq!(all_pages(&s, &q, 4).await, vec![2009, 2007, 2005, 2003, 2001]);
        let fleet: BTreeSet<Vin> = [Vin::parse(A).unwrap(), Vin::parse(B).unwrap()].into();
        let q = ViolationQuery { vins: Some(Arc::new(fleet)), from_ms: Some(1008), ..Default::default() };
        let got = all_pages(&s, &q, 5).await;
        assert_eq!(got.len(), 12);
        assert!(got.windows(2).all(|w| w[0] > w[1]), "{got:?}");
        // An empty fleet matches nothing, rather than everything.
        let q = ViolationQuery { vins: Some(Arc::new(BTreeSet::new())), ..Default::default() };
        assert!(all_pages(&s, &q, 5).await.is_empty());
        // A full last page has no cursor: no empty page after it.
        let q = ViolationQuery { vin: Some(Vin::parse(A).unwrap()), ..Default::default() };
        let page = s.violations(&q, None, 10).await.unwrap();
        assert_eq!((page.violations.len(), page.next.is_none()), (10, true));
    }

    #[tokio::test]
    async fn live_violations_alert_once_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let out =
            commit(&s, vec![violation(A, 1, "330100", None, false), violation(A, 2, "330100", None, true)])
                .await;
        assert_eq!(
            out.alerts.iter().map(|a| (a.seq, a.violation.started_ms)).collect::<Vec<_>>(),
            vec![(1, 1)]
        );
        // The closing snapshot of the same episode is no new alert; a new episode is.
        let mut closed = violation(A, 1, "330100", None, false);
        closed.status = ViolationStatus::Closed;
        let out = commit(&s, vec![closed, violation(A, 3, "330100", None, false)]).await;
        assert_eq!(out.alerts.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![2]);
        let backlog = s.alerts_after(0, 10).await.unwrap();
        assert_eq!(backlog.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(backlog[0].violation.status, ViolationStatus::Closed, "current snapshot");
        assert!(s.alerts_after(2, 10).await.unwrap().is_empty());
        assert_eq!(s.last_alert_seq().await.unwrap(), 2);
        assert!(s.alerts_after(u64::MAX, 10).await.unwrap().is_empty());
        drop(s);
        // Sequence numbers continue after a restart.
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let out = commit(&s, vec![violation(B, 4, "330100", None, false)]).await;
        assert_eq!(out.alerts[0].seq, 3);
    }

    #[tokio::test]
    async fn moving_a_violation_moves_its_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        commit(&s, vec![violation(A, 1, "330100", None, false)]).await;
        commit(&s, vec![violation(A, 1, "330200", None, false)]).await;
        let q = |c: &str| ViolationQuery { city_code: Some(c.into()), ..Default::default() };
        assert!(s.violations(&q("330100"), None, 10).await.unwrap().violations.is_empty());
        assert_eq!(s.violations(&q("330200"), None, 10).await.unwrap().violations.len(), 1);
    }

    #[tokio::test]
    async fn reviews_are_filterable_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let (v1, v2) = (violation(A, 1, "330100", None, false), violation(A, 2, "330100", None, false));
        commit(&s, vec![v1.clone(), v2.clone()]).await;
        let review = ViolationReview {
            violation_id: v1.id.clone(),
            decision: ReviewDecision::Dismissed,
            reason: "sensor fault".into(),
            reviewer: "abc (desk 3)".into(),
            at_ms: 5,
        };
        let audit = AuditEntry {
            seq: 0,
            at_ms: 5,
            actor: "abc (desk 3)".into(),
            action: AuditAction::Review,
            target: v1.id.0.clone(),
            detail: serde_json::json!({"decision": "dismissed"}),
        };
        assert_eq!(s.review_violation(review.clone(), audit.clone()).await.unwrap().seq, 1);
        let q = |r| ViolationQuery { review: Some(r), ..Default::default() };
        let ids = |p: ViolationPage| p.violations.into_iter().map(|v| v.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.violations(&q(ReviewState::Dismissed), None, 10).await.unwrap()),
            vec![v1.id.clone()]
        );
        assert_eq!(
            ids(s.violations(&q(ReviewState::Unreviewed), None, 10).await.unwrap()),
            vec![v2.id.clone()]
        );
        assert_eq!(
            s.violation_reviews(&[v2.id.clone(), v1.id.clone()]).await.unwrap(),
            vec![None, Some(review)]
        );
        // Detection rewriting the snapshot keeps the decision.
        commit(&s, vec![v1.clone()]).await;
        assert!(s.violation_reviews(std::slice::from_ref(&v1.id)).await.unwrap()[0].is_some());
        let missing = ViolationReview { violation_id: ViolationId("0".repeat(32)), ..s_review(&v1) };
        assert!(matches!(s.review_violation(missing, audit.clone()).await, Err(StoreError::NotFound(_))));
        s.append_audit(AuditEntry { action: AuditAction::Export, ..audit }).await.unwrap();
        let log = s.audit_log(None, 10).await.unwrap();
        assert_eq!(
            log.iter().map(|e| (e.seq, e.action)).collect::<Vec<_>>(),
            vec![(2, AuditAction::Export), (1, AuditAction::Review)]
        );
        assert_eq!(s.audit_log(Some(2), 10).await.unwrap().len(), 1);
    }

    fn s_review(v: &Violation) -> ViolationReview {
        ViolationReview {
            violation_id: v.id.clone(),
            decision: ReviewDecision::Confirmed,
            reason: String::new(),
            reviewer: String::new(),
            at_ms: 0,
        }
    }

    #[tokio::test]
    async fn tokens_round_trip_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let (mut t, _secret) = ApiToken::generate(Role::Admin, "ops".into(), 1).unwrap();
        s.put_token(t.clone()).await.unwrap();
        assert_eq!(s.token(&t.id).await.unwrap(), Some(t.clone()));
        t.revoked_ms = Some(2);
        s.put_token(t.clone()).await.unwrap();
        assert_eq!(s.tokens().await.unwrap(), vec![t]);
        assert_eq!(s.token("nope").await.unwrap(), None);
    }
}
