//! Per-vehicle ownership when several smogwatch nodes share one CQL store.
//!
//! Detection state is per vehicle and lives in the worker of the node that receives the vehicle
//! (ARCHITECTURE.md invariant 2). Two nodes receiving the same VIN at once (a terminal
//! double-connected, a gateway fanning out) would each evaluate part of the stream from their own
//! state and overwrite each other's state row: an episode missed or split. So a node accepts a
//! vehicle's records only while it holds that vehicle's **lease**: a row in the store claimed
//! with a compare-and-set (LWT) and kept with a TTL. Records of a vehicle leased by another node
//! are refused with a retryable reason; the terminal sends them to that node, or again once the
//! lease has expired (the owner died) or was released (the owner shut down).
//!
//! Cost: one LWT per active vehicle per `renew_after` (two thirds of the lease), not per commit.
//! Safety margin: this node stops using a lease a third of its length before the store expires
//! it, which covers the time a batch accepted under the lease waits in the queues before its
//! commit. A node paused for longer than that (a stop-the-world stall) could still commit after
//! another node took over; the lease bounds the overlap, it does not fence it.
use crate::model::Vin;
use crate::store::{LeaseClaim, Store, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why this node may not take a vehicle's records now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("vehicle {vin} is being received by another smogwatch node ({owner}); send there, or retry after its lease expires")]
    Elsewhere { vin: Vin, owner: String },
    #[error("vehicle {vin}: ownership could not be confirmed ({reason}); retry")]
    Unconfirmed { vin: Vin, reason: String },
}

/// How this node holds a vehicle it may take records of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Since before (or always, on a single node): what it remembers of the vehicle is current.
    Continuously,
    /// Just taken: what it remembers may be stale.
    Fresh,
}

pub struct VehicleOwnership {
    /// `None`: this node is the only one (embedded store, or leases switched off).
    store: Option<Arc<dyn Store>>,
    owner: String,
    lease_s: u32,
    renew_after: Duration,
    /// Vehicles this node holds, with when it last claimed each.
    held: Mutex<HashMap<Vin, Instant>>,
    /// One claim in flight per stripe of vehicles: concurrent batches of one vehicle wait for
    /// its claim instead of racing their own compare-and-sets (Paxos contention on one row
    /// times out on a loaded cluster; measured on the 3-node Cassandra).
    claiming: Vec<tokio::sync::Mutex<()>>,
}

const CLAIM_STRIPES: usize = 256;

fn stripes() -> Vec<tokio::sync::Mutex<()>> {
    (0..CLAIM_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect()
}

impl VehicleOwnership {
    /// Everything is this node's: one process, or leases switched off.
    pub fn single_node() -> Self {
        VehicleOwnership {
            store: None,
            owner: String::new(),
            lease_s: 0,
            renew_after: Duration::ZERO,
            held: Mutex::default(),
            claiming: Vec::new(),
        }
    }

    /// Leases of `lease_s` seconds in `store`, under a fresh owner id for this process (a
    /// restarted node is a new owner: it waits for its predecessor's leases like any other node).
    pub fn shared(store: Arc<dyn Store>, lease_s: u32) -> Self {
        if lease_s == 0 {
            return Self::single_node();
        }
        let mut id = [0u8; 8];
        // A collision of two random 64-bit ids is not a practical concern; a failing OS RNG
        // leaves the time-based fallback, unique enough per process start.
        if getrandom::fill(&mut id).is_err() {
            id = (crate::model::now_ms() as u64 ^ u64::from(std::process::id())).to_be_bytes();
        }
        let owner = format!("node-{}", hex::encode(id));
        tracing::info!(%owner, lease_s, "vehicle leases on: this node accepts a vehicle only while it holds its lease");
        VehicleOwnership {
            store: Some(store),
            owner,
            lease_s,
            renew_after: Duration::from_millis(u64::from(lease_s) * 2000 / 3),
            held: Mutex::default(),
            claiming: stripes(),
        }
    }

    /// This node's owner id (empty for a single node).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the records of `vin` may be taken now; claims or renews the lease when needed.
    /// `Ok(Held::Fresh)`: the lease was just taken, so whatever this node remembers of the
    /// vehicle may be stale (another node may have had it meanwhile): drop it and reload.
    pub async fn check(&self, vin: Vin) -> Result<Held, Refusal> {
        let Some(store) = &self.store else { return Ok(Held::Continuously) };
        if self.held_recently(vin) {
            return Ok(Held::Continuously);
        }
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            vin.hash(&mut h);
            (h.finish() % CLAIM_STRIPES as u64) as usize
        };
        let _claiming = self.claiming[stripe].lock().await;
        // Another batch of this vehicle may have claimed it while this one waited.
        if self.held_recently(vin) {
            return Ok(Held::Continuously);
        }
        let now = Instant::now();
        let outcome = store.claim_vehicle(vin, &self.owner, self.lease_s).await;
        match outcome {
            Ok(LeaseClaim::Taken) => {
                metrics::counter!("smogwatch_vehicle_lease_claims_total", "outcome" => "taken").increment(1);
                self.held.lock().insert(vin, now);
                Ok(Held::Fresh)
            }
            Ok(LeaseClaim::Renewed) => {
                metrics::counter!("smogwatch_vehicle_lease_claims_total", "outcome" => "renewed")
                    .increment(1);
                self.held.lock().insert(vin, now);
                Ok(Held::Continuously)
            }
            Ok(LeaseClaim::HeldBy(owner)) => {
                metrics::counter!("smogwatch_vehicle_lease_claims_total", "outcome" => "elsewhere")
                    .increment(1);
                self.held.lock().remove(&vin);
                tracing::info!(%vin, %owner, "vehicle leased by another node; its records are refused here");
                Err(Refusal::Elsewhere { vin, owner })
            }
            Err(e) => {
                metrics::counter!("smogwatch_vehicle_lease_claims_total", "outcome" => "error").increment(1);
                self.held.lock().remove(&vin);
                tracing::warn!(%vin, error = %e, "vehicle lease could not be claimed");
                Err(Refusal::Unconfirmed { vin, reason: e.to_string() })
            }
        }
    }

    fn held_recently(&self, vin: Vin) -> bool {
        self.held.lock().get(&vin).is_some_and(|at| at.elapsed() < self.renew_after)
    }

    /// Whether vehicles are shared with other nodes at all (false: every check passes).
    pub fn is_shared(&self) -> bool {
        self.store.is_some()
    }

    /// Gives back every lease this node holds (clean shutdown), so that other nodes can take its
    /// vehicles at once instead of after the lease expires.
    pub async fn release_all(&self) {
        let Some(store) = &self.store else { return };
        let vins: Vec<Vin> = self.held.lock().drain().map(|(v, _)| v).collect();
        let n = vins.len();
        for vin in vins {
            if let Err(e) = store.release_vehicle(vin, &self.owner).await {
                let e: StoreError = e;
                tracing::warn!(%vin, error = %e, "vehicle lease not released; it expires by itself");
            }
        }
        if n > 0 {
            tracing::info!(released = n, "vehicle leases released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn vin() -> Vin {
        Vin::parse("LGBH52E07HY000001").unwrap()
    }

    #[tokio::test]
    async fn a_single_node_owns_everything_without_touching_the_store() {
        let o = VehicleOwnership::single_node();
        assert_eq!(o.check(vin()).await, Ok(Held::Continuously));
        assert!(!o.is_shared());
        o.release_all().await;
    }

    #[tokio::test]
    async fn a_zero_lease_switches_leases_off() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let o = VehicleOwnership::shared(store, 0);
        assert!(o.owner().is_empty());
        assert_eq!(o.check(vin()).await, Ok(Held::Continuously));
    }

    #[tokio::test]
    async fn the_embedded_store_grants_every_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (a, b) = (VehicleOwnership::shared(store.clone(), 30), VehicleOwnership::shared(store, 30));
        assert_ne!(a.owner(), b.owner());
        assert_eq!(a.check(vin()).await, Ok(Held::Continuously));
        assert_eq!(b.check(vin()).await, Ok(Held::Continuously), "one process: nothing to share");
    }
}
