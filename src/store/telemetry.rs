//! Telemetry records of the embedded store, on fjall (an LSM-tree with a journal).
//!
//! Why not redb with the rest: records are ~90 % of what a group commit writes, keyed
//! (VIN, time) so that a vehicle's range is one scan. In a B-tree every vehicle in a commit
//! dirties (and copies) its own leaf page, so a commit of 50,000 records from 5,000 vehicles
//! rewrote thousands of pages; the load test measured the server at 120 k records/s with the
//! records table and 570 k/s without it. An LSM-tree appends the batch to its journal and
//! sorts in the background (`BENCHMARKS.md`).
//!
//! Durability: [`Telemetry::put`] returns after the journal is fsynced. The group commit writes
//! records here first and the redb transaction (violations, state) second; a crash between the
//! two leaves records without the state that followed them, which is safe: the batch was not
//! acknowledged, the terminal resends it, the records are upserted again (same keys) and
//! evaluated from the older state.
//!
//! Layout: one keyspace per Beijing calendar day (`records-<days since 1970-01-01>`), key
//! VIN‖time. A vehicle's range reads the days it overlaps in order; retention drops whole days
//! (a keyspace deletion, not a scan of every key) and scans only the day the cutoff falls in.
use super::codec::{decode_record, encode_record, record_key, time_from_key, time_key};
use super::StoreError;
use crate::model::{TelemetryRecord, TimestampMs, Vin};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::Path;

/// Key bytes 17..25 hold the record time (see `record_key`).
const TIME_BYTES: std::ops::Range<usize> = 17..25;
const DAY_PREFIX: &str = "records-";
/// The single keyspace of the first layout (2026-12-03, before day partitions); moved on open.
const UNPARTITIONED: &str = "records";

/// Deletions per batch while expiring (bounds memory, lets writers interleave).
const EXPIRE_BATCH: usize = 10_000;

fn engine(e: fjall::Error) -> StoreError {
    StoreError::Engine(format!("telemetry (fjall): {e}"))
}

/// Beijing calendar day of a time, as days since 1970-01-01 (UTC+8).
fn day_of(t_ms: TimestampMs) -> i64 {
    crate::model::beijing_day(t_ms)
}

fn day_name(day: i64) -> String {
    format!("{DAY_PREFIX}{day}")
}

pub struct Telemetry {
    db: Database,
    /// Day → its keyspace, for every day holding records.
    days: RwLock<BTreeMap<i64, Keyspace>>,
}

impl Telemetry {
    /// Opens (or creates) the telemetry database in `dir`, replaying its journal; its block
    /// cache holds at most `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::builder(dir).cache_size(cache_bytes).open().map_err(engine)?;
        let mut days = BTreeMap::new();
        for name in db.list_keyspace_names() {
            let Some(day) = name.strip_prefix(DAY_PREFIX).and_then(|d| d.parse::<i64>().ok()) else {
                continue;
            };
            days.insert(day, db.keyspace(&name, KeyspaceCreateOptions::default).map_err(engine)?);
        }
        let t = Telemetry { db, days: RwLock::new(days) };
        t.partition_first_layout()?;
        Ok(t)
    }

    /// Moves the records of the unpartitioned keyspace (if any) into day keyspaces, durably,
    /// then drops it; a crash mid-way repeats the move (same keys).
    fn partition_first_layout(&self) -> Result<(), StoreError> {
        if !self.db.keyspace_exists(UNPARTITIONED) {
            return Ok(());
        }
        let old = self.db.keyspace(UNPARTITIONED, KeyspaceCreateOptions::default).map_err(engine)?;
        let mut rows = Vec::new();
        for item in old.iter() {
            let (k, v) = item.into_inner().map_err(engine)?;
            rows.push((k.to_vec(), v.to_vec()));
            if rows.len() >= EXPIRE_BATCH {
                self.put_raw(std::mem::take(&mut rows))?;
            }
        }
        self.put_raw(rows)?;
        self.db.delete_keyspace(old).map_err(engine)
    }

    /// The keyspace of `day`, created on first use.
    fn day(&self, day: i64) -> Result<Keyspace, StoreError> {
        if let Some(k) = self.days.read().get(&day) {
            return Ok(k.clone());
        }
        let mut days = self.days.write();
        if let Some(k) = days.get(&day) {
            return Ok(k.clone());
        }
        let k = self.db.keyspace(&day_name(day), KeyspaceCreateOptions::default).map_err(engine)?;
        days.insert(day, k.clone());
        Ok(k)
    }

    /// Every one of `days` has its keyspace open.
    pub fn has_days(&self, days: &[i64]) -> bool {
        let open = self.days.read();
        days.iter().all(|d| open.contains_key(d))
    }

    /// Creates the keyspaces of `days` that do not exist yet (outside any commit).
    pub fn prepare_days(&self, days: &[i64]) -> Result<(), StoreError> {
        for &d in days {
            self.day(d)?;
        }
        Ok(())
    }

    /// Writes `records` (an existing (VIN, time) is overwritten) and returns once they are
    /// durable. Nothing to write costs nothing: no journal sync.
    pub fn put<'a>(
        &self,
        records: impl ExactSizeIterator<Item = &'a TelemetryRecord>,
    ) -> Result<(), StoreError> {
        self.put_raw(records.map(|r| (record_key(&r.vin, r.time_ms), encode_record(r))))
    }

    /// Durable puts of encoded (key, value) pairs; the day comes from the key's time.
    pub(super) fn put_raw<K>(&self, rows: impl IntoIterator<Item = (K, Vec<u8>)>) -> Result<(), StoreError>
    where
        K: AsRef<[u8]> + Into<fjall::UserKey>,
    {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        // A batch's records are nearly always of one day: look its keyspace up once.
        let mut current: Option<(i64, Keyspace)> = None;
        for (k, v) in rows {
            let Some(t) = k.as_ref().get(TIME_BYTES).and_then(time_from_key) else {
                return Err(StoreError::Corrupt { what: "telemetry key", detail: hex::encode(k.as_ref()) });
            };
            let day = day_of(t);
            let ks = match &current {
                Some((d, ks)) if *d == day => ks.clone(),
                _ => {
                    let ks = self.day(day)?;
                    current = Some((day, ks.clone()));
                    ks
                }
            };
            batch.insert(&ks, k, v);
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(engine)
    }

    /// The vehicle's records with `from_ms <= time < to_ms`, oldest first, at most `limit`.
    pub fn range(
        &self,
        vin: &Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms || limit == 0 {
            return Ok(out);
        }
        let (lo, hi) = (record_key(vin, from_ms), record_key(vin, to_ms));
        let days: Vec<Keyspace> =
            self.days.read().range(day_of(from_ms)..=day_of(to_ms - 1)).map(|(_, k)| k.clone()).collect();
        for ks in days {
            for item in ks.range(lo..hi) {
                let (_, v) = item.into_inner().map_err(engine)?;
                out.push(decode_record(&v)?);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Deletes every record older than `before_ms` and returns how many (approximate for whole
    /// days, which are dropped without counting key by key). Only the day the cutoff falls in is
    /// scanned. A record older than the cutoff written meanwhile is kept until the next run.
    pub fn expire(&self, before_ms: TimestampMs) -> Result<u64, StoreError> {
        let cutoff_day = day_of(before_ms);
        let whole: Vec<(i64, Keyspace)> = {
            let mut days = self.days.write();
            let keep = days.split_off(&cutoff_day);
            std::mem::replace(&mut *days, keep).into_iter().collect()
        };
        let mut removed = 0u64;
        for (_, ks) in whole {
            removed += ks.approximate_len() as u64;
            self.db.delete_keyspace(ks).map_err(engine)?;
        }
        let Some(ks) = self.days.read().get(&cutoff_day).cloned() else {
            return Ok(removed);
        };
        let cutoff = time_key(before_ms);
        let mut doomed = Vec::new();
        let flush = |doomed: &mut Vec<fjall::UserKey>| -> Result<(), StoreError> {
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
            for k in doomed.drain(..) {
                batch.remove(&ks, k);
            }
            batch.commit().map_err(engine)
        };
        for item in ks.iter() {
            let (k, _) = item.into_inner().map_err(engine)?;
            if k.get(TIME_BYTES).is_some_and(|t| t < &cutoff[..]) {
                doomed.push(k);
                removed += 1;
                if doomed.len() >= EXPIRE_BATCH {
                    flush(&mut doomed)?;
                }
            }
        }
        flush(&mut doomed)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(vin: &Vin, t: TimestampMs) -> TelemetryRecord {
        TelemetryRecord::bare(*vin, t)
    }

    #[test]
    fn put_range_overwrite_expire_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Vin::parse("LZZ5BLSJ3DA000201").unwrap(), Vin::parse("LZZ5BLSJ3DA000202").unwrap());
        {
            let t = Telemetry::open(dir.path(), 1 << 20).unwrap();
            let rs: Vec<_> =
                (0..100).map(|i| rec(&a, 1_000 * i)).chain((0..10).map(|i| rec(&b, i))).collect();
            t.put(rs.iter()).unwrap();
            t.put(std::iter::empty()).unwrap();
            let got = t.range(&a, 10_000, 20_000, 1000).unwrap();
            assert_eq!(
                got.iter().map(|r| r.time_ms).collect::<Vec<_>>(),
                (10..20).map(|i| i * 1000).collect::<Vec<_>>()
            );
            assert_eq!(t.range(&a, 0, i64::MAX, 5).unwrap().len(), 5, "limit");
            assert!(t.range(&a, 5, 5, 10).unwrap().is_empty());
            assert_eq!(t.range(&b, 0, 100, 100).unwrap().len(), 10, "no bleeding between VINs");
            let mut changed = rec(&a, 0);
            changed.opacity_k = Some(0.42);
            t.put([changed.clone()].iter()).unwrap();
            assert_eq!(t.range(&a, 0, 1, 10).unwrap(), vec![changed], "same key overwritten");
            assert_eq!(t.expire(50_000).unwrap(), 50 + 10);
        }
        // Reopened (journal replay): what was written and kept is there.
        let t = Telemetry::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(t.range(&a, 0, i64::MAX, 1000).unwrap().len(), 50);
        assert!(t.range(&b, 0, i64::MAX, 1000).unwrap().is_empty());
    }

    #[test]
    fn days_are_partitions_read_in_order_and_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let a = Vin::parse("LZZ5BLSJ3DA000201").unwrap();
        // 2025-11-01 00:00 Beijing, then every 6 hours for 3 days: 12 records over 3 day keyspaces.
        let t0 = 1_761_926_400_000i64;
        let times: Vec<i64> = (0..12).map(|i| t0 + i * 6 * 3_600_000).collect();
        {
            let t = Telemetry::open(dir.path(), 1 << 20).unwrap();
            let rs: Vec<_> = times.iter().rev().map(|&ms| rec(&a, ms)).collect();
            t.put(rs.iter()).unwrap();
            assert_eq!(t.days.read().len(), 3, "one keyspace per Beijing day");
            let got: Vec<i64> = t.range(&a, 0, i64::MAX, 100).unwrap().iter().map(|r| r.time_ms).collect();
            assert_eq!(got, times, "oldest first across days");
            let got = t.range(&a, t0 + 20 * 3_600_000, t0 + 50 * 3_600_000, 100).unwrap();
            assert_eq!(got.iter().map(|r| r.time_ms).collect::<Vec<_>>(), times[4..9].to_vec());
            assert_eq!(t.range(&a, 0, i64::MAX, 5).unwrap().len(), 5, "limit across days");
            // Cutoff at day 2, 12:00: day 1 is dropped whole, day 2 scanned.
            let removed = t.expire(t0 + 36 * 3_600_000).unwrap();
            assert!(removed >= 6, "{removed}");
            assert_eq!(t.days.read().len(), 2);
        }
        let t = Telemetry::open(dir.path(), 1 << 20).unwrap();
        let got: Vec<i64> = t.range(&a, 0, i64::MAX, 100).unwrap().iter().map(|r| r.time_ms).collect();
        assert_eq!(got, times[6..].to_vec(), "after reopening: exactly the records at or after the cutoff");
    }

    #[test]
    fn the_unpartitioned_first_layout_is_moved_into_days() {
        let dir = tempfile::tempdir().unwrap();
        let a = Vin::parse("LZZ5BLSJ3DA000201").unwrap();
        let t0 = 1_761_926_400_000i64;
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let old = db.keyspace(UNPARTITIONED, KeyspaceCreateOptions::default).unwrap();
            for i in 0..48 {
                let r = rec(&a, t0 + i * 3_600_000);
                old.insert(record_key(&a, r.time_ms), encode_record(&r)).unwrap();
            }
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let t = Telemetry::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(t.range(&a, 0, i64::MAX, 100).unwrap().len(), 48);
        assert_eq!(t.days.read().len(), 2);
        assert!(!t.db.keyspace_exists(UNPARTITIONED));
    }
}
