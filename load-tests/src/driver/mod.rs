//! Load drivers: how simulated batches reach the server. A driver runs one connection: it takes
//! messages from its [`Source`] and sends them, within a bounded in-flight window, at a fixed
//! rate or as fast as acknowledgements allow, until the source is exhausted or the run's limits
//! (`RunControl`) say stop; then it waits for the outstanding acks.
//!
//! Adding a transport (HJ 1239 over TCP) means implementing [`Driver`] for it; everything else
//! (fleet, pacing, limits, latency, the report) is shared.
pub mod grpc;
pub mod hj1239;
pub mod hj1239_frames;

use crate::source::Source;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Limits shared by every connection of a run.
pub struct RunControl {
    pub started: Instant,
    pub deadline: Instant,
    pub max_records: u64,
    /// Target records/s for the whole run; `None` = as fast as acks allow.
    pub rate: Option<f64>,
    pub connections: usize,
    /// Messages sent and not yet acknowledged, per connection.
    pub window: usize,
    /// How long to wait for outstanding acks after sending stopped.
    pub drain_timeout: Duration,
    sent: AtomicU64,
    stop: AtomicBool,
}

impl RunControl {
    pub fn new(
        duration: Duration,
        max_records: u64,
        rate: Option<f64>,
        connections: usize,
        window: usize,
    ) -> Self {
        let started = Instant::now();
        RunControl {
            started,
            deadline: started + duration,
            max_records,
            rate: rate.filter(|r| *r > 0.0),
            connections: connections.max(1),
            window: window.max(1),
            drain_timeout: Duration::from_secs(60),
            sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether another message may be sent. The record budget may be exceeded by at most one
    /// message per connection.
    pub fn keep_going(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && self.sent.load(Ordering::Relaxed) < self.max_records
    }

    pub fn count_sent(&self, records: u64) {
        self.sent.fetch_add(records, Ordering::Relaxed);
    }

    pub fn records_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Per-connection share of the target rate, records/s.
    pub fn rate_per_connection(&self) -> Option<f64> {
        self.rate.map(|r| r / self.connections as f64)
    }
}

/// What one connection measured.
pub struct ConnStats {
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub records_sent: u64,
    pub records_acked: u64,
    pub duplicates: u64,
    pub rejections: BTreeMap<String, u64>,
    /// Send (or, at a fixed rate, scheduled send) to ack, microseconds.
    pub latency_us: Histogram<u64>,
    /// Records acknowledged in each wall-clock second since the run started.
    pub acked_per_second: Vec<u64>,
    pub errors: Vec<String>,
    /// When the last ack arrived, relative to the run start.
    pub last_ack: Duration,
}

impl ConnStats {
    pub fn new() -> Self {
        ConnStats {
            messages_sent: 0,
            messages_acked: 0,
            records_sent: 0,
            records_acked: 0,
            duplicates: 0,
            rejections: BTreeMap::new(),
            latency_us: new_histogram(),
            acked_per_second: Vec::new(),
            errors: Vec::new(),
            last_ack: Duration::ZERO,
        }
    }

    pub fn record_ack(&mut self, ctl: &RunControl, records: u64, latency: Duration) {
        self.messages_acked += 1;
        self.records_acked += records;
        let _ = self.latency_us.record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
        self.add_acked_records(ctl, records);
    }

    /// Counts records delivered now in the per-second throughput series (without a latency).
    pub fn add_acked_records(&mut self, ctl: &RunControl, records: u64) {
        let now = ctl.started.elapsed();
        self.last_ack = now;
        let sec = now.as_secs() as usize;
        if self.acked_per_second.len() <= sec {
            self.acked_per_second.resize(sec + 1, 0);
        }
        self.acked_per_second[sec] += records;
    }

    pub fn merge(&mut self, o: ConnStats) {
        self.messages_sent += o.messages_sent;
        self.messages_acked += o.messages_acked;
        self.records_sent += o.records_sent;
        self.records_acked += o.records_acked;
        self.duplicates += o.duplicates;
        for (k, v) in o.rejections {
            *self.rejections.entry(k).or_default() += v;
        }
        let _ = self.latency_us.add(&o.latency_us);
        if self.acked_per_second.len() < o.acked_per_second.len() {
            self.acked_per_second.resize(o.acked_per_second.len(), 0);
        }
        for (a, b) in self.acked_per_second.iter_mut().zip(o.acked_per_second) {
            *a += b;
        }
        self.errors.extend(o.errors);
        self.last_ack = self.last_ack.max(o.last_ack);
    }
}

impl Default for ConnStats {
    fn default() -> Self {
        Self::new()
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; these bounds are valid constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// Paces sends at a fixed per-connection rate. Latency is measured from the *scheduled* send
/// time, so a server that falls behind shows it in the latency (no coordinated omission).
pub struct Pacer {
    start: Instant,
    rate: Option<f64>,
    records: f64,
}

impl Pacer {
    pub fn new(rate: Option<f64>) -> Self {
        Pacer { start: Instant::now(), rate, records: 0.0 }
    }

    /// Waits until `records` more may be sent; returns the time they were due.
    pub async fn wait(&mut self, records: usize) -> Instant {
        let Some(rate) = self.rate else { return Instant::now() };
        let due = self.start + Duration::from_secs_f64(self.records / rate);
        self.records += records as f64;
        tokio::time::sleep_until(due.into()).await;
        due
    }
}

/// A transport. `run` drives one connection to completion and hands the source back, so the
/// caller can tell how far each vehicle got (which planted violations were due).
pub trait Driver: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn run(
        &self,
        connection: usize,
        source: Source,
        ctl: std::sync::Arc<RunControl>,
    ) -> BoxFuture<'static, (ConnStats, Source)>;
}
