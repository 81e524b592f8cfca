//! The ingest pipeline: records → per-VIN worker shard → detectors → group commit → ack.
//!
//! * Ordering: every record of a VIN goes to the same worker (hash of the VIN), and a transport
//!   submits its batches in arrival order, so a vehicle's records are evaluated in order.
//! * Backpressure: worker and commit queues are bounded; a slow store fills them and `submit`
//!   waits, which slows the transport's acks instead of growing memory.
//! * Durability: a batch's completion resolves only after the commit that holds its records,
//!   the violations they produced and the detector state after them is durable.
pub mod admission;
mod committer;
mod late;
pub mod ownership;
mod worker;

pub use admission::{Admission, DaySpan, IngestConfig, VinCheckMode};

use crate::detect::DetectorSet;
use crate::model::{beijing_day, TelemetryRecord, TimestampMs, Vin};
use crate::registry::Registry;
use crate::store::health::WriteHealth;
use crate::store::{Alert, Store};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Worker shards; 0 = one per CPU core.
    pub workers: usize,
    /// Work items (batches or batch parts) queued per worker.
    pub worker_queue: usize,
    /// Worker outputs queued for the committer.
    pub commit_queue: usize,
    /// Records per group commit before the committer stops gathering more.
    pub max_commit_records: usize,
    /// Records submitted and not yet committed, over every transport; `submit` waits beyond it.
    /// This, not the number of queued batches, is what bounds the pipeline's memory.
    pub max_queued_records: usize,
    /// Context read before and after late data when re-evaluating it (seconds).
    pub late_context_s: u32,
    /// How often workers run the time-driven rules (R5 offline, R6 end of work), seconds.
    pub tick_interval_s: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 0,
            worker_queue: 256,
            commit_queue: 256,
            max_commit_records: 50_000,
            max_queued_records: 200_000,
            late_context_s: 3600,
            tick_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline is shut down")]
    Closed,
    #[error("store failed, batch not acknowledged: {0}")]
    Store(String),
}

/// What happened to a submitted batch once it is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records stored (new).
    pub stored: u32,
    /// Records that repeated data already stored (same VIN, time and values).
    pub duplicates: u32,
    /// Records whose VIN and time were already held by a record with different values: the
    /// first is kept, these are acknowledged but not stored (a terminal clock fault).
    pub conflicts: u32,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
    }
}

/// Document kind of the per-vehicle data-quality flags (`Store::documents`), keyed by VIN.
pub const DATA_QUALITY_DOC: &str = "data_quality";

type Done = oneshot::Sender<Result<Outcome, PipelineError>>;

enum WorkItem {
    Records {
        records: Vec<TelemetryRecord>,
        late: bool,
        received_ms: TimestampMs,
        done: Done,
        /// This part's share of `max_queued_records`, released once it is committed.
        permit: OwnedSemaphorePermit,
    },
    Session {
        vin: Vin,
        event: SessionEvent,
        received_ms: TimestampMs,
        done: Done,
    },
}

/// Terminal session events that rules care about (R5: a logged-out terminal is not "offline";
/// R4: a terminal's own tamper/removal alarm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionEvent {
    Login,
    Logout,
    TamperAlarm(TamperAlarmEvent),
}

/// A tamper/removal alarm frame (HJ 1239 truck 0x06, machinery 0x05), as the gateway decoded it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TamperAlarmEvent {
    /// Alarm time (terminal clock), epoch ms UTC.
    pub at_ms: TimestampMs,
    /// Where, when the terminal had a fix (an invalid fix is kept but never used as position).
    pub fix: Option<crate::model::Fix>,
    /// Status byte as sent.
    pub status: u8,
    /// Command byte it came with.
    pub command: u8,
    /// Alarm serial.
    pub serial: u16,
}

/// Resolves when every part of a submitted batch is durable.
#[must_use]
pub struct Completion(Vec<oneshot::Receiver<Result<Outcome, PipelineError>>>);

impl Completion {
    pub async fn wait(self) -> Result<Outcome, PipelineError> {
        let mut total = Outcome::default();
        for rx in self.0 {
            total.add(rx.await.map_err(|_| PipelineError::Closed)??);
        }
        Ok(total)
    }
}

pub struct Pipeline {
    /// Emptied by `shutdown`: dropping the senders is what lets the workers drain and stop.
    shards: parking_lot::RwLock<Vec<mpsc::Sender<WorkItem>>>,
    n_shards: usize,
    alerts: broadcast::Sender<Alert>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Which vehicles this node may take records of (always all of them on one node).
    ownership: ownership::VehicleOwnership,
    /// Per shard: vehicles whose in-memory state the worker must drop before its next item.
    invalidations: Arc<Vec<Mutex<Vec<Vin>>>>,
    store: Arc<dyn Store>,
    admission: Admission,
    queued: Arc<Semaphore>,
    queue_capacity: usize,
    health: Arc<WriteHealth>,
}

impl Pipeline {
    /// A pipeline with the default admission (no retention bound).
    pub fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        detectors: Arc<DetectorSet>,
        cfg: &PipelineConfig,
    ) -> Arc<Pipeline> {
        Self::start_with(
            store,
            registry,
            detectors,
            cfg,
            Admission::default(),
            ownership::VehicleOwnership::single_node(),
        )
    }

    /// `start` with the edge checks of the transports (`admission`) and, for a node that shares
    /// its store with other nodes, the vehicle leases the transports ask before they submit.
    pub fn start_with(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        detectors: Arc<DetectorSet>,
        cfg: &PipelineConfig,
        admission: Admission,
        ownership: ownership::VehicleOwnership,
    ) -> Arc<Pipeline> {
        let n = if cfg.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            cfg.workers
        };
        let (alerts, _) = broadcast::channel(4096);
        let (commit_tx, commit_rx) = mpsc::channel(cfg.commit_queue.max(1));
        let invalidations: Arc<Vec<Mutex<Vec<Vin>>>> =
            Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());
        let health = Arc::new(WriteHealth::default());
        let committed: Arc<Vec<std::sync::atomic::AtomicU64>> =
            Arc::new((0..n).map(|_| std::sync::atomic::AtomicU64::new(0)).collect());
        let mut tasks = Vec::with_capacity(n + 1);
        let mut shards = Vec::with_capacity(n);
        for shard in 0..n {
            let (tx, rx) = mpsc::channel(cfg.worker_queue.max(1));
            shards.push(tx);
            let w = worker::Worker::new(
                shard,
                store.clone(),
                registry.clone(),
                detectors.clone(),
                commit_tx.clone(),
                invalidations.clone(),
                cfg,
            )
            .with_admission(admission.clone())
            .with_commit_marks(committed.clone());
            tasks.push(tokio::spawn(w.run(rx)));
        }
        drop(commit_tx);
        tasks.push(tokio::spawn(committer::run(
            store.clone(),
            commit_rx,
            alerts.clone(),
            invalidations.clone(),
            cfg.max_commit_records.max(1),
            health.clone(),
            committed,
        )));
        Arc::new(Pipeline {
            shards: parking_lot::RwLock::new(shards),
            n_shards: n,
            alerts,
            tasks: Mutex::new(tasks),
            store,
            admission,
            queued: Arc::new(Semaphore::new(cfg.max_queued_records.max(1))),
            queue_capacity: cfg.max_queued_records.max(1),
            health,
            ownership,
            invalidations,
        })
    }

    /// Whether group commits currently succeed (health checks, recovery supervision).
    pub fn write_health(&self) -> &Arc<WriteHealth> {
        &self.health
    }

    /// The edge checks every transport applies before `submit`.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn ownership(&self) -> &ownership::VehicleOwnership {
        &self.ownership
    }

    /// Whether this node may take `vin`'s records now (`ownership`). A lease just taken means
    /// another node may have evaluated the vehicle since this one last did: its in-memory state
    /// is dropped, and the worker reloads the state that node committed.
    pub async fn check_vehicle(&self, vin: Vin) -> Result<(), ownership::Refusal> {
        if self.ownership.check(vin).await? == ownership::Held::Fresh {
            if let Some(q) = self.invalidations.get(self.shard_of(&vin)) {
                q.lock().push(vin);
            }
        }
        Ok(())
    }

    /// `check_vehicle` for the distinct VINs of a batch; returns the refused ones.
    pub async fn check_vehicles(&self, vins: &[Vin]) -> HashMap<Vin, ownership::Refusal> {
        let mut refused = HashMap::new();
        if !self.ownership.is_shared() {
            return refused;
        }
        let mut seen = std::collections::HashSet::new();
        for &vin in vins {
            if seen.insert(vin) {
                if let Err(r) = self.check_vehicle(vin).await {
                    refused.insert(vin, r);
                }
            }
        }
        refused
    }

    fn shard_of(&self, vin: &Vin) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        vin.hash(&mut h);
        (h.finish() % self.n_shards.max(1) as u64) as usize
    }

    /// Queues validated records. Waits while the queues are full (backpressure). `late` marks
    /// reissued data: stored and evaluated, never a live alert. The storage partitions of the
    /// records' days are made ready here, in the caller's task, not in the shared group commit.
    pub async fn submit(
        &self,
        records: Vec<TelemetryRecord>,
        late: bool,
        received_ms: TimestampMs,
    ) -> Result<Completion, PipelineError> {
        let mut days: Vec<i64> = Vec::new();
        for r in &records {
            let d = beijing_day(r.time_ms);
            if !days.contains(&d) {
                days.push(d);
            }
        }
        if !days.is_empty() {
            self.store.prepare_days(&days).await.map_err(|e| PipelineError::Store(e.to_string()))?;
        }
        let n = self.n_shards;
        let mut parts: Vec<Vec<TelemetryRecord>> = (0..n).map(|_| Vec::new()).collect();
        if let (1, Some(only)) = (n, parts.first_mut()) {
            *only = records;
        } else {
            for r in records {
                let s = self.shard_of(&r.vin);
                if let Some(p) = parts.get_mut(s) {
                    p.push(r);
                }
            }
        }
        let mut waits = Vec::new();
        for (shard, records) in parts.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let (done, rx) = oneshot::channel();
            let tx = self.shards.read().get(shard).cloned().ok_or(PipelineError::Closed)?;
            // A part larger than the whole budget takes all of it (and waits for an empty queue).
            let want = u32::try_from(records.len().min(self.queue_capacity)).unwrap_or(u32::MAX);
            let permit =
                self.queued.clone().acquire_many_owned(want).await.map_err(|_| PipelineError::Closed)?;
            tx.send(WorkItem::Records { records, late, received_ms, done, permit })
                .await
                .map_err(|_| PipelineError::Closed)?;
            waits.push(rx);
        }
        Ok(Completion(waits))
    }

    /// Reports a terminal login or logout, in order with that vehicle's records.
    pub async fn session_event(
        &self,
        vin: Vin,
        event: SessionEvent,
        received_ms: TimestampMs,
    ) -> Result<Completion, PipelineError> {
        let (done, rx) = oneshot::channel();
        let tx = self.shards.read().get(self.shard_of(&vin)).cloned().ok_or(PipelineError::Closed)?;
        tx.send(WorkItem::Session { vin, event, received_ms, done })
            .await
            .map_err(|_| PipelineError::Closed)?;
        Ok(Completion(vec![rx]))
    }

    /// Live violations (never late ones) after they are durable, once each, with their alert
    /// sequence number, in sequence order.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.alerts.subscribe()
    }

    /// Stops taking work and waits until everything queued is committed.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        // Closing the worker queues lets the workers drain what is queued and exit, which closes
        // the commit queue and lets the committer finish the last group commit.
        self.shards.write().clear();
        for t in tasks {
            let _ = t.await;
        }
        // Everything accepted is committed: other nodes may take these vehicles now.
        self.ownership.release_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::RulesConfig;
    use crate::model::{Vehicle, VehicleKind};
    use crate::store::embedded::EmbeddedStore;
    use std::time::Duration;

    /// Memory is bounded by queued records, not batches: a submit waits while the record budget
    /// is taken, and committing gives the budget back.
    #[tokio::test]
    async fn submit_waits_for_the_record_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let registry = Registry::load(store.clone()).await.unwrap();
        let vin = Vin::parse("LZZ5BLSJ3DA001408").unwrap();
        registry.upsert(Vehicle { kind: VehicleKind::Truck, ..Vehicle::new(vin) }).await.unwrap();
        let cfg = PipelineConfig { workers: 1, max_queued_records: 10, ..Default::default() };
        let p = Pipeline::start(store, registry, Arc::new(DetectorSet::new(&RulesConfig::default())), &cfg);
        let t0 = 1_761_926_400_000;
        let recs = |from: i64| (from..from + 5).map(|i| TelemetryRecord::bare(vin, t0 + i * 1000)).collect();

        let held = p.queued.clone().acquire_many_owned(8).await.unwrap();
        let submit = p.submit(recs(0), false, t0);
        tokio::pin!(submit);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut submit).await.is_err(),
            "5 records do not fit in the 2 left of the budget"
        );
        drop(held);
        let done = tokio::time::timeout(Duration::from_secs(10), submit).await.unwrap().unwrap();
        assert_eq!(done.wait().await.unwrap().stored, 5);
        // A part larger than the whole budget still goes through, alone.
        let big: Vec<_> = (10..30).map(|i| TelemetryRecord::bare(vin, t0 + i * 1000)).collect();
        assert_eq!(p.submit(big, false, t0).await.unwrap().wait().await.unwrap().stored, 20);
        assert_eq!(p.queued.available_permits(), 10, "committed records give their budget back");
        p.shutdown().await;
    }
}
