//! The embedded default store on redb: one file, ACID transactions, copy-on-write B-trees with
//! checksummed commits, so a `kill -9` leaves the last committed transaction intact.
//!
//! Every call runs on the blocking pool: redb is synchronous and a commit waits for `fsync`.
use super::codec::*;
use super::{CommitBatch, CommitOutcome, Store, StoreError, ViolationCursor, ViolationQuery, ViolationWrite};
use crate::clean::{CleanProfile, GatePassage, NonRoadVolume, MAX_VOLUME_SPAN_MS};
use crate::model::{Enterprise, TelemetryRecord, TimestampMs, Vehicle, Vin, Violation, ViolationId};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

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

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/smogwatch.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Engine(format!("{}: {e}", dir.display())))?;
        let db = Database::create(dir.join("smogwatch.redb"))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(RECORDS)?;
            tx.open_table(STATES)?;
            tx.open_table(VEHICLES)?;
            tx.open_table(ENTERPRISES)?;
            tx.open_table(VIOLATIONS)?;
            tx.open_table(VIOLATIONS_BY_TIME)?;
            tx.open_table(VIOLATIONS_BY_VIN)?;
            tx.open_table(CLEAN_PROFILES)?;
            tx.open_table(PASSAGES)?;
            tx.open_table(VOLUMES)?;
        }
        tx.commit()?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn commit_blocking(db: &Database, batch: CommitBatch) -> Result<CommitOutcome, StoreError> {
        let tx = db.begin_write()?;
        let mut outcome = CommitOutcome::default();
        {
            let mut records = tx.open_table(RECORDS)?;
            for r in &batch.records {
                records.insert(&record_key(&r.vin, r.time_ms)[..], encode_record(r).as_slice())?;
            }
            let mut states = tx.open_table(STATES)?;
            for (vin, s) in &batch.states {
                states.insert(&vin.as_bytes()[..], s.as_slice())?;
            }
            let mut violations = tx.open_table(VIOLATIONS)?;
            let mut by_time = tx.open_table(VIOLATIONS_BY_TIME)?;
            let mut by_vin = tx.open_table(VIOLATIONS_BY_VIN)?;
            for w in batch.violations {
                let (v, only_if_absent) = match w {
                    ViolationWrite::Upsert(v) => (v, false),
                    ViolationWrite::InsertIfAbsent(v) => (v, true),
                };
                if only_if_absent && violations.get(v.id.as_str())?.is_some() {
                    continue;
                }
                violations.insert(v.id.as_str(), to_json(&v).as_slice())?;
                by_time.insert(violation_time_key(&v).as_slice(), ())?;
                by_vin.insert(violation_vin_key(&v).as_slice(), ())?;
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
}

/// Collects violations newest first from an index range whose keys end with the violation id.
fn scan_violations<'a>(
    index: impl DoubleEndedIterator<
        Item = Result<(redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, ()>), redb::StorageError>,
    >,
    violations: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    query: &ViolationQuery,
    limit: usize,
) -> Result<Vec<Violation>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for entry in index.rev() {
        let (k, _) = entry?;
        let key = k.value();
        let id =
            key.len().checked_sub(32).and_then(|i| key.get(i..)).and_then(|b| std::str::from_utf8(b).ok());
        let Some(id) = id else {
            return Err(StoreError::Corrupt { what: "violation index", detail: hex::encode(key) });
        };
        let Some(raw) = violations.get(id)? else { continue };
        let v: Violation = from_json("violation", raw.value())?;
        if query.matches(&v) {
            out.push(v);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn commit(&self, batch: CommitBatch) -> Result<CommitOutcome, StoreError> {
        self.blocking(move |db| Self::commit_blocking(db, batch)).await
    }

    async fn records(
        &self,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(RECORDS)?;
            let (lo, hi) = (record_key(&vin, from_ms), record_key(&vin, to_ms));
            let mut out = Vec::new();
            for e in t.range(&lo[..]..&hi[..])?.take(limit) {
                let (_, v) = e?;
                out.push(decode_record(v.value())?);
            }
            Ok(out)
        })
        .await
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
    ) -> Result<Vec<Violation>, StoreError> {
        let query = query.clone();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let violations = tx.open_table(VIOLATIONS)?;
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
            if let Some(vin) = query.vin {
                let index = tx.open_table(VIOLATIONS_BY_VIN)?;
                let (lo, hi) = (lower_time(vin.as_bytes()), upper_time(vin.as_bytes()));
                scan_violations(index.range(lo.as_slice()..hi.as_slice())?, &violations, &query, limit)
            } else {
                let index = tx.open_table(VIOLATIONS_BY_TIME)?;
                let (lo, hi) = (lower_time(&[]), upper_time(&[]));
                scan_violations(index.range(lo.as_slice()..hi.as_slice())?, &violations, &query, limit)
            }
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
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let mut removed = 0u64;
            {
                let mut t = tx.open_table(RECORDS)?;
                let cutoff = time_key(before_ms);
                t.retain(|k, _| {
                    let old = k.get(17..25).is_some_and(|tk| tk < &cutoff[..]);
                    removed += u64::from(old);
                    !old
                })?;
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }
}
