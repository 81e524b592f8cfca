//! The ingest pipeline: records → per-VIN worker shard → detectors → group commit → ack.
//!
//! * Ordering: every record of a VIN goes to the same worker (hash of the VIN), and a transport
//!   submits its batches in arrival order, so a vehicle's records are evaluated in order.
//! * Backpressure: worker and commit queues are bounded; a slow store fills them and `submit`
//!   waits, which slows the transport's acks instead of growing memory.
//! * Durability: a batch's completion resolves only after the commit that holds its records,
//!   the violations they produced and the detector state after them is durable.
mod committer;
mod late;
mod worker;

use crate::detect::DetectorSet;
use crate::model::{TelemetryRecord, TimestampMs, Vin};
use crate::registry::Registry;
use crate::store::{Alert, Store};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};
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
    Records { records: Vec<TelemetryRecord>, late: bool, received_ms: TimestampMs, done: Done },
    Session { vin: Vin, event: SessionEvent, received_ms: TimestampMs, done: Done },
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
}

impl Pipeline {
    pub fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        detectors: Arc<DetectorSet>,
        cfg: &PipelineConfig,
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
            );
            tasks.push(tokio::spawn(w.run(rx)));
        }
        drop(commit_tx);
        tasks.push(tokio::spawn(committer::run(
            store,
            commit_rx,
            alerts.clone(),
            invalidations,
            cfg.max_commit_records.max(1),
        )));
        Arc::new(Pipeline {
            shards: parking_lot::RwLock::new(shards),
            n_shards: n,
            alerts,
            tasks: Mutex::new(tasks),
        })
    }

    fn shard_of(&self, vin: &Vin) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        vin.hash(&mut h);
        (h.finish() % self.n_shards.max(1) as u64) as usize
    }

    /// Queues validated records. Waits while the queues are full (backpressure). `late` marks
    /// reissued data: stored and evaluated, never a live alert.
    pub async fn submit(
        &self,
        records: Vec<TelemetryRecord>,
        late: bool,
        received_ms: TimestampMs,
    ) -> Result<Completion, PipelineError> {
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
            tx.send(WorkItem::Records { records, late, received_ms, done })
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
    }
}
