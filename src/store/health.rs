//! Whether the store takes writes. The group commit reports each outcome; while commits fail
//! (a full disk, a lost cluster) the service says NOT_SERVING on gRPC health and 503 on
//! `/healthz` so that load balancers and terminals go elsewhere, reads keep being served, and
//! `supervise` asks the store to recover until a write can succeed again.
use super::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a failing store is asked whether it can take writes again.
const RECOVERY_PERIOD: Duration = Duration::from_secs(1);

pub struct WriteHealth {
    ok: watch::Sender<bool>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        WriteHealth { ok: watch::Sender::new(true) }
    }
}

impl WriteHealth {
    pub fn is_ok(&self) -> bool {
        *self.ok.borrow()
    }

    /// Changes of the state (true = writes succeed).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.ok.subscribe()
    }

    /// A write failed: counted every time, logged when the state changes.
    pub fn failed(&self, e: &StoreError) {
        metrics::counter!("smogwatch_store_write_errors_total").increment(1);
        if self.ok.send_replace(false) {
            metrics::gauge!("smogwatch_store_writable").set(0.0);
            tracing::error!(error = %e, "store writes failing: health is NOT_SERVING until they recover");
        }
    }

    /// A write succeeded (or the store says it can take writes again).
    pub fn succeeded(&self) {
        if !self.ok.send_replace(true) {
            metrics::gauge!("smogwatch_store_writable").set(1.0);
            tracing::info!("store writes succeed again: health is SERVING");
        }
    }

    /// Runs until `shutdown`: whenever writes fail, asks the store to recover every second.
    pub async fn supervise(self: Arc<Self>, store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
        let mut state = self.subscribe();
        loop {
            tokio::select! {
                r = state.wait_for(|ok| !*ok) => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            while !self.is_ok() {
                tokio::select! {
                    _ = tokio::time::sleep(RECOVERY_PERIOD) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                match store.recover_writes().await {
                    Ok(()) => self.succeeded(),
                    Err(e) => tracing::debug!(error = %e, "store not writable yet"),
                }
            }
        }
    }
}
