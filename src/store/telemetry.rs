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
use super::codec::{decode_record, encode_record, record_key, time_key};
use super::StoreError;
use crate::model::{TelemetryRecord, TimestampMs, Vin};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

/// Key bytes 17..25 hold the record time (see `record_key`).
const TIME_BYTES: std::ops::Range<usize> = 17..25;

/// Deletions per batch while expiring (bounds memory, lets writers interleave).
const EXPIRE_BATCH: usize = 10_000;

fn engine(e: fjall::Error) -> StoreError {
    StoreError::Engine(format!("telemetry (fjall): {e}"))
}

pub struct Telemetry {
    db: Database,
    records: Keyspace,
}

impl Telemetry {
    /// Opens (or creates) the telemetry database in `dir`, replaying its journal; its block
    /// cache holds at most `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::builder(dir).cache_size(cache_bytes).open().map_err(engine)?;
        let records = db.keyspace("records", KeyspaceCreateOptions::default).map_err(engine)?;
        Ok(Telemetry { db, records })
    }

    /// Writes `records` (an existing (VIN, time) is overwritten) and returns once they are
    /// durable. Nothing to write costs nothing: no journal sync.
    pub fn put<'a>(
        &self,
        records: impl ExactSizeIterator<Item = &'a TelemetryRecord>,
    ) -> Result<(), StoreError> {
        if records.len() == 0 {
            return Ok(());
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for r in records {
            batch.insert(&self.records, record_key(&r.vin, r.time_ms), encode_record(r));
        }
        batch.commit().map_err(engine)
    }

    /// Raw puts of already encoded (key, value) pairs, durable on return (store migration).
    pub(super) fn put_raw(&self, rows: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, v) in rows {
            batch.insert(&self.records, k, v);
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
        let (lo, hi) = (record_key(vin, from_ms), record_key(vin, to_ms));
        let mut out = Vec::new();
        if lo >= hi {
            return Ok(out);
        }
        for item in self.records.range(lo..hi).take(limit) {
            let (_, v) = item.into_inner().map_err(engine)?;
            out.push(decode_record(&v)?);
        }
        Ok(out)
    }

    /// Deletes every record older than `before_ms`; returns how many. A full scan: run it
    /// rarely (the retention task runs hourly).
    pub fn expire(&self, before_ms: TimestampMs) -> Result<u64, StoreError> {
        let cutoff = time_key(before_ms);
        let mut removed = 0u64;
        let mut doomed = Vec::new();
        let flush = |doomed: &mut Vec<fjall::UserKey>| -> Result<(), StoreError> {
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
            for k in doomed.drain(..) {
                batch.remove(&self.records, k);
            }
            batch.commit().map_err(engine)
        };
        for item in self.records.iter() {
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
}
