//! The live zone set, replaceable while ingest runs.
//!
//! Readers call [`ZoneRegistry::load`] once per record or batch: a lock-free `ArcSwap` load, never
//! blocked by an edit. Edits build a complete new [`ZoneSet`] off to the side (re-using unchanged
//! zones) and publish it with one atomic pointer swap; a reader holding the old snapshot finishes
//! its batch on it. Writers are serialised by a mutex so two concurrent edits cannot lose one
//! another (a compare-and-swap loop would rebuild the index on every retry).
use super::exemption::ExemptionBook;
use super::index::{ZoneSet, ZoneSetError};
use super::zone::Zone;
use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;
use std::sync::Arc;

pub struct ZoneRegistry {
    current: ArcSwap<ZoneSet>,
    write: Mutex<()>,
}

impl Default for ZoneRegistry {
    fn default() -> Self {
        ZoneRegistry::new(ZoneSet::empty())
    }
}

impl ZoneRegistry {
    pub fn new(set: ZoneSet) -> Self {
        ZoneRegistry { current: ArcSwap::from_pointee(set), write: Mutex::new(()) }
    }

    /// The current snapshot, for one record or batch (cheap, lock-free).
    pub fn load(&self) -> Guard<Arc<ZoneSet>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, to keep across an await point.
    pub fn load_full(&self) -> Arc<ZoneSet> {
        self.current.load_full()
    }

    /// Replaces everything (e.g. after re-importing the zone file). Returns the new version.
    pub fn replace(&self, set: ZoneSet) -> u64 {
        let _w = self.write.lock();
        let v = set.version().max(self.current.load().version() + 1);
        let set = ZoneSet::with_version(set, v);
        self.current.store(Arc::new(set));
        v
    }

    /// Adds zones, or replaces zones with the same id. All or nothing.
    pub fn upsert(&self, zones: Vec<Zone>) -> Result<u64, ZoneSetError> {
        let _w = self.write.lock();
        let next = self.current.load().with_upserted(zones)?;
        let v = next.version();
        self.current.store(Arc::new(next));
        Ok(v)
    }

    /// Removes zones by id (unknown ids are ignored).
    pub fn remove(&self, ids: &[&str]) -> u64 {
        let _w = self.write.lock();
        let next = self.current.load().without(ids);
        let v = next.version();
        self.current.store(Arc::new(next));
        v
    }

    /// Replaces the exemption book; zones and index are shared, not rebuilt.
    pub fn set_exemptions(&self, book: ExemptionBook) -> u64 {
        let _w = self.write.lock();
        let next = self.current.load().with_exemptions(book);
        let v = next.version();
        self.current.store(Arc::new(next));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::zone::tests::{date, r1_zone, square};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn readers_see_whole_snapshots_while_zones_change() {
        let reg = Arc::new(ZoneRegistry::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (reg, stop) = (reg.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let set = reg.load();
                    buf.clear();
                    set.zones_at(120.16, 30.27, &mut buf);
                    // Every snapshot is internally consistent: its index matches its zones.
                    assert_eq!(buf.len(), set.zones_at_brute_force(120.16, 30.27).len());
                    seen = seen.max(set.version());
                }
                seen
            })
        };
        for i in 0..50 {
            let mut z = r1_zone(&format!("z{i}"), date(2024, 12, 31));
            z.geometry = square(120.16, 30.27, 0.01 + f64::from(i) * 0.001);
            reg.upsert(vec![z]).unwrap();
            if i % 10 == 9 {
                reg.remove(&["z0"]);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let seen = reader.join().unwrap();
        assert!(seen <= reg.load().version());
        assert_eq!(reg.load().len(), 49);
        let v = reg.set_exemptions(ExemptionBook::default());
        assert_eq!(reg.load().version(), v);
        assert_eq!(reg.load().len(), 49);
    }
}
