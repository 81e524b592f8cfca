//! Live alerts: new live violations matching a filter, resumable from a cursor.
//!
//! The cursor is the store's alert sequence number (assigned in the commit that first wrote the
//! violation as live). A watcher subscribes to the pipeline's broadcast *before* reading the
//! backlog from the store, then delivers strictly increasing sequence numbers only: whatever the
//! broadcast repeats is skipped, and whatever it misses (lagging, or commits made by another
//! process) is read from the store, on a gap or on the poll timer. So a client that reconnects
//! with its last cursor gets everything after it, once.
use super::{ViolationDesk, ViolationFilter};
use crate::auth::{ApiError, Caller, Principal};
use crate::model::Violation;
use crate::store::{Alert, ViolationQuery};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

const BACKLOG_PAGE: usize = 500;

/// One message of a watch. The first message of every watch carries no violation: it is the
/// position the watch starts from, so a client has a cursor to resume from even before any alert.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub cursor: u64,
    pub violation: Option<Violation>,
}

pub type WatchStream = ReceiverStream<Result<WatchEvent, ApiError>>;

struct Watcher {
    desk: ViolationDesk,
    caller: Caller,
    query: ViolationQuery,
    last: u64,
    tx: mpsc::Sender<Result<WatchEvent, ApiError>>,
}

impl ViolationDesk {
    /// Starts a watch after `cursor` (a previous event's cursor), or from now when none is given.
    /// It ends with an `Unauthenticated` error when `who`'s token is revoked.
    pub async fn watch(
        &self,
        who: &Principal,
        filter: &ViolationFilter,
        cursor: Option<&str>,
    ) -> Result<WatchStream, ApiError> {
        let caller = &who.caller;
        let query = self.scoped_query(caller, filter)?;
        // Subscribe first: an alert committed while the backlog is read is then in both, and
        // deduplicated by sequence, instead of in neither.
        let rx = self.pipeline.subscribe();
        let newest = self.store.last_alert_seq().await?;
        let last = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            None => newest,
            Some(c) => {
                let c = c.parse::<u64>().map_err(|_| ApiError::invalid("invalid cursor"))?;
                if c > newest {
                    return Err(ApiError::invalid("cursor is ahead of the alert log"));
                }
                c
            }
        };
        let (tx, out) = mpsc::channel(64);
        let w = Watcher { desk: self.clone(), caller: caller.clone(), query, last, tx };
        let lapsed: futures::future::BoxFuture<'static, ApiError> = match &self.auth {
            Some(auth) => Box::pin(auth.clone().lapsed(who.clone())),
            None => Box::pin(futures::future::pending()),
        };
        tokio::spawn(w.run(rx, lapsed));
        Ok(ReceiverStream::new(out))
    }
}

impl Watcher {
    fn wanted(&self, v: &Violation) -> bool {
        self.query.matches(v)
            && self.query.matches_review(None)
            && self.caller.may_see_violation(v, &self.desk.registry)
    }

    /// Delivers one alert in sequence; false when the client has gone.
    async fn deliver(&mut self, a: Alert) -> bool {
        self.last = a.seq;
        if !self.wanted(&a.violation) {
            return true;
        }
        self.tx.send(Ok(WatchEvent { cursor: a.seq, violation: Some(a.violation) })).await.is_ok()
    }

    /// Reads everything after `last` from the store.
    async fn catch_up(&mut self) -> Result<bool, ApiError> {
        loop {
            let page = self.desk.store.alerts_after(self.last, BACKLOG_PAGE).await?;
            let full = page.len() == BACKLOG_PAGE;
            for a in page {
                if !self.deliver(a).await {
                    return Ok(false);
                }
            }
            if !full {
                return Ok(true);
            }
        }
    }

    async fn run(
        mut self,
        mut rx: broadcast::Receiver<Alert>,
        lapsed: futures::future::BoxFuture<'static, ApiError>,
    ) {
        let mut lapsed = lapsed;
        if self.tx.send(Ok(WatchEvent { cursor: self.last, violation: None })).await.is_err() {
            return;
        }
        let mut shutdown = self.desk.shutdown.clone();
        let mut behind = true;
        let mut poll = tokio::time::interval(self.desk.watch_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if behind {
                match self.catch_up().await {
                    Ok(true) => behind = false,
                    Ok(false) => return,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(a) if a.seq <= self.last => {}
                    Ok(a) if a.seq == self.last + 1 => {
                        if !self.deliver(a).await {
                            return;
                        }
                    }
                    // A gap (another process committed, or this receiver lagged): the store has it.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => behind = true,
                    // The pipeline stopped: the server is shutting down.
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = poll.tick() => behind = true,
                _ = self.tx.closed() => return,
                _ = shutdown.changed() => return,
                e = &mut lapsed => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}
