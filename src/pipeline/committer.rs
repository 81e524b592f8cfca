//! Group commit: gathers worker outputs into one store transaction, then resolves every batch it
//! contained. One fsync serves many batches, which is what makes durable acks affordable.
use super::{Done, Outcome, PipelineError};
use crate::model::Vin;
use crate::store::health::WriteHealth;
use crate::store::{Alert, CommitBatch, Store};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};

pub(super) struct CommitItem {
    pub batch: CommitBatch,
    pub shard: usize,
    /// Vehicles whose in-memory state this item advanced (reloaded from the store if it fails).
    pub vins: Vec<Vin>,
    pub outcome: Outcome,
    pub done: Option<Done>,
    /// The records' share of the pipeline's queue budget; dropped (released) after the commit.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The worker's sequence number of this item; `committed[shard]` reaches it once the
    /// commit holding it has returned (either way), so the worker stops treating its records
    /// as in flight.
    pub ticket: u64,
}

pub(super) async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<CommitItem>,
    alerts: broadcast::Sender<Alert>,
    invalidations: Arc<Vec<Mutex<Vec<Vin>>>>,
    max_records: usize,
    health: Arc<WriteHealth>,
    committed: Arc<Vec<std::sync::atomic::AtomicU64>>,
) {
    let mark = |it: &CommitItem| {
        if let Some(c) = committed.get(it.shard) {
            c.fetch_max(it.ticket, std::sync::atomic::Ordering::Release);
        }
    };
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        let mut n: usize = items.iter().map(|i| i.batch.records.len()).sum();
        while n < max_records {
            match rx.try_recv() {
                Ok(it) => {
                    n += it.batch.records.len();
                    items.push(it);
                }
                Err(_) => break,
            }
        }
        let mut batch = CommitBatch::default();
        for it in &mut items {
            batch.append(std::mem::take(&mut it.batch));
        }
        let records = batch.records.len();
        let started = Instant::now();
        let result = store.commit(batch).await;
        metrics::histogram!("smogwatch_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("smogwatch_store_commit_records").record(records as f64);
        match result {
            Ok(outcome) => {
                health.succeeded();
                metrics::counter!("smogwatch_records_stored_total").increment(records as u64);
                for v in outcome.written_violations {
                    metrics::counter!("smogwatch_violations_written_total", "rule" => v.rule.clone(), "late" => v.late.to_string())
                        .increment(1);
                }
                // The store picked these (new, live) and numbered them in the commit. No
                // subscriber is fine: the broadcast only makes alerts prompt, the store's alert
                // sequence is the record watchers resume from.
                for a in outcome.alerts {
                    let _ = alerts.send(a);
                }
                for it in items {
                    mark(&it);
                    // The records left the queue: their budget goes to waiting submitters.
                    drop(it.permit);
                    if let Some(done) = it.done {
                        let _ = done.send(Ok(it.outcome));
                    }
                }
            }
            Err(e) => {
                health.failed(&e);
                metrics::counter!("smogwatch_store_commit_failures_total").increment(1);
                tracing::error!(error = %e, records, "group commit failed; batches not acknowledged");
                for it in items {
                    mark(&it);
                    if let Some(q) = invalidations.get(it.shard) {
                        q.lock().extend(it.vins);
                    }
                    drop(it.permit);
                    if let Some(done) = it.done {
                        let _ = done.send(Err(PipelineError::Store(e.to_string())));
                    }
                }
            }
        }
    }
}
