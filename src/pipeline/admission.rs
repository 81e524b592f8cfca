//! Admission: what a record and a batch must satisfy before they reach a worker, whatever the
//! transport (gRPC, HJ 1239). It bounds the work one request can cause: times outside
//! [retention cutoff, now + `max_ahead_s`] are refused (a record the retention sweep would delete
//! must not be acknowledged), one batch may touch only a few storage days, a batch has a
//! maximum size, and OBD strings and lists fit their protocol slots.
//!
//! It also decides which records are *clock faults*: more than `clock_tolerance_s` ahead of the
//! receive time. Those are stored (they are evidence, R5.time_jump) but never advance the
//! vehicle's live clock, so one bad timestamp cannot turn every later real record into late data.
use crate::model::{beijing_day, RecordError, TelemetryRecord, TimeBounds, TimestampMs};
use serde::{Deserialize, Serialize};

/// What to do with a VIN whose GB 16735 check digit (position 9) is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VinCheckMode {
    /// Refuse the record (reason `INVALID_VIN`).
    Reject,
    /// Accept it, count it (`smogwatch_vin_check_digit_failures_total`) and log it. Default:
    /// imported and some non-road machine codes do not follow GB 16735.
    #[default]
    Flag,
}

/// `[ingest]`: limits every transport applies at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// A record more than this far ahead of the server clock is a clock fault: stored and
    /// flagged (R5.time_jump), never evaluated live. rules.md's time-jump threshold (10 min).
    pub clock_tolerance_s: u64,
    /// A record more than this far ahead is refused outright.
    pub max_ahead_s: u64,
    /// Records per gRPC batch; a larger batch ends the stream with INVALID_ARGUMENT.
    pub max_batch_records: usize,
    /// Beijing days one batch may write; records of further days are refused
    /// (`BATCH_SPAN`) and belong in another batch.
    pub max_batch_days: usize,
    /// Largest gRPC message decoded or sent, bytes (tonic's default is 4 MiB).
    pub max_message_bytes: usize,
    pub vin_check_digit: VinCheckMode,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            clock_tolerance_s: 600,
            max_ahead_s: 86_400,
            max_batch_records: 10_000,
            max_batch_days: 3,
            max_message_bytes: 4 << 20,
            vin_check_digit: VinCheckMode::Flag,
        }
    }
}

/// The edge checks, built from `[ingest]` and `retention_days`.
#[derive(Debug, Clone)]
pub struct Admission {
    bounds: TimeBounds,
    clock_tolerance_ms: i64,
    max_batch_records: usize,
    max_batch_days: usize,
    vin_check: VinCheckMode,
}

impl Default for Admission {
    /// No retention, everything else at the `[ingest]` defaults.
    fn default() -> Self {
        Admission::new(&IngestConfig::default(), 0)
    }
}

fn ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Admission {
    pub fn new(cfg: &IngestConfig, retention_days: u32) -> Self {
        Admission {
            bounds: TimeBounds { retention_days, max_ahead_ms: ms(cfg.max_ahead_s) },
            clock_tolerance_ms: ms(cfg.clock_tolerance_s),
            max_batch_records: cfg.max_batch_records.max(1),
            max_batch_days: cfg.max_batch_days.max(1),
            vin_check: cfg.vin_check_digit,
        }
    }

    /// One record's checks (time window, position, value ranges, OBD sizes, VIN check digit).
    pub fn check(&self, r: &TelemetryRecord, now: TimestampMs) -> Result<(), RecordError> {
        r.validate_within(now, &self.bounds)?;
        if !r.vin.check_digit_ok() {
            let mode = match self.vin_check {
                VinCheckMode::Reject => "reject",
                VinCheckMode::Flag => "flag",
            };
            metrics::counter!("smogwatch_vin_check_digit_failures_total", "mode" => mode).increment(1);
            let (found, expected) =
                (char::from(r.vin.as_bytes()[8]), char::from(r.vin.expected_check_digit()));
            tracing::debug!(vin = %r.vin, %found, %expected, mode, "VIN check digit mismatch");
            if self.vin_check == VinCheckMode::Reject {
                return Err(RecordError::CheckDigit { vin: r.vin, found, expected });
            }
        }
        Ok(())
    }

    /// A fresh per-batch day counter.
    pub fn day_span(&self) -> DaySpan {
        DaySpan { days: Vec::new(), max: self.max_batch_days }
    }

    pub fn max_batch_records(&self) -> usize {
        self.max_batch_records
    }

    /// A record this far ahead of its receive time comes from a wrong clock.
    pub fn is_clock_fault(&self, time_ms: TimestampMs, received_ms: TimestampMs) -> bool {
        time_ms > received_ms.saturating_add(self.clock_tolerance_ms)
    }
}

/// The distinct Beijing days of one batch's accepted records (each a storage partition).
#[derive(Debug, Clone)]
pub struct DaySpan {
    days: Vec<i64>,
    max: usize,
}

impl DaySpan {
    /// Counts the record's day; refuses it when it would be one day too many.
    pub fn admit(&mut self, time_ms: TimestampMs) -> Result<(), RecordError> {
        let day = beijing_day(time_ms);
        if self.days.contains(&day) {
            return Ok(());
        }
        if self.days.len() >= self.max {
            return Err(RecordError::BatchSpan { max_days: self.max });
        }
        self.days.push(day);
        Ok(())
    }

    pub fn days(&self) -> &[i64] {
        &self.days
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TimeError, Vin};

    const NOW: i64 = 1_780_000_000_000;
    const DAY: i64 = 86_400_000;

    fn rec(vin: &str, t: i64) -> TelemetryRecord {
        TelemetryRecord::bare(Vin::parse(vin).unwrap(), t)
    }

    #[test]
    fn retention_and_future_bounds() {
        let a = Admission::new(&IngestConfig { max_ahead_s: 3600, ..Default::default() }, 30);
        let good = "LSVAM4187C2184847";
        assert!(a.check(&rec(good, NOW - 29 * DAY), NOW).is_ok());
        assert!(matches!(
            a.check(&rec(good, NOW - 31 * DAY), NOW),
            Err(RecordError::Time(TimeError::BeyondRetention { retention_days: 30, .. }))
        ));
        assert!(a.check(&rec(good, NOW + 3_599_000), NOW).is_ok());
        assert!(matches!(a.check(&rec(good, NOW + 3_601_000), NOW), Err(RecordError::Time(_))));
    }

    #[test]
    fn clock_faults_are_beyond_the_tolerance_only() {
        let a = Admission::new(&IngestConfig { clock_tolerance_s: 300, ..Default::default() }, 0);
        assert!(!a.is_clock_fault(NOW + 300_000, NOW));
        assert!(a.is_clock_fault(NOW + 300_001, NOW));
        assert!(!a.is_clock_fault(NOW - DAY, NOW), "old data is late, not a clock fault");
    }

    #[test]
    fn vin_check_digit_reject_or_flag() {
        let bad = "LSVAM4180C2184847"; // position 9 should be 7
        let flag = Admission::new(&IngestConfig::default(), 0);
        assert!(flag.check(&rec(bad, NOW), NOW).is_ok(), "flag mode accepts");
        let reject =
            Admission::new(&IngestConfig { vin_check_digit: VinCheckMode::Reject, ..Default::default() }, 0);
        match reject.check(&rec(bad, NOW), NOW) {
            Err(RecordError::CheckDigit { found: '0', expected: '7', .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(reject.check(&rec("LSVAM4187C2184847", NOW), NOW).is_ok());
    }

    #[test]
    fn a_batch_spans_at_most_max_days() {
        let a = Admission::new(&IngestConfig { max_batch_days: 2, ..Default::default() }, 0);
        let mut span = a.day_span();
        assert!(span.admit(NOW).is_ok());
        assert!(span.admit(NOW + 1).is_ok(), "same day again");
        assert!(span.admit(NOW - DAY).is_ok());
        assert_eq!(span.admit(NOW - 2 * DAY), Err(RecordError::BatchSpan { max_days: 2 }));
        assert!(span.admit(NOW + 2).is_ok(), "a known day is still fine");
        assert_eq!(span.days().len(), 2);
    }
}
