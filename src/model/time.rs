//! Time handling. Internally every instant is Unix epoch milliseconds (UTC). Terminals report
//! Beijing local time and schedules are in Asia/Shanghai; China has had no daylight saving since
//! 1991, so a fixed UTC+8 offset is exact for every date this service can see.
use chrono::{DateTime, FixedOffset, Utc};

pub type TimestampMs = i64;

/// Records before 2000-01-01T00:00:00Z are not sane: terminal clocks reset to zero land there.
pub const MIN_VALID_MS: TimestampMs = 946_684_800_000;
/// Default for how far ahead of the server clock a record may be before it is rejected outright
/// (`ingest.max_ahead_s`). Records ahead by more than the clock tolerance but less than this are
/// stored as clock faults (see `pipeline::admission`), never evaluated live.
pub const MAX_FUTURE_MS: TimestampMs = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time {0} ms is before 2000-01-01")]
    TooOld(TimestampMs),
    #[error("time {time} ms is more than {max_ahead_s} s ahead of the server clock")]
    TooFarAhead { time: TimestampMs, max_ahead_s: i64 },
    #[error(
        "time {time} ms is older than the {retention_days}-day retention: it would be deleted at the next sweep"
    )]
    BeyondRetention { time: TimestampMs, retention_days: u32 },
}

/// The window of record times a server accepts, relative to its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Telemetry retention in days; 0 = kept forever (only the 2000-01-01 floor applies).
    pub retention_days: u32,
    pub max_ahead_ms: TimestampMs,
}

impl Default for TimeBounds {
    fn default() -> Self {
        TimeBounds { retention_days: 0, max_ahead_ms: MAX_FUTURE_MS }
    }
}

impl TimeBounds {
    /// Checks that a record time is plausible relative to the server clock `now` and young
    /// enough to survive the retention sweep (acknowledging it and then deleting it would lie).
    pub fn check(&self, t: TimestampMs, now: TimestampMs) -> Result<(), TimeError> {
        if t < MIN_VALID_MS {
            return Err(TimeError::TooOld(t));
        }
        if self.retention_days > 0 && t < now.saturating_sub(i64::from(self.retention_days) * 86_400_000) {
            return Err(TimeError::BeyondRetention { time: t, retention_days: self.retention_days });
        }
        if t > now.saturating_add(self.max_ahead_ms) {
            return Err(TimeError::TooFarAhead { time: t, max_ahead_s: self.max_ahead_ms / 1000 });
        }
        Ok(())
    }
}

/// UTC+8, evaluated at compile time (an out-of-range offset would fail the build, not a request).
const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("UTC+8 is a valid offset"),
};

pub fn beijing_offset() -> FixedOffset {
    BEIJING
}

/// Beijing calendar day of a time, as days since 1970-01-01 (UTC+8): the storage partition of
/// telemetry.
pub fn beijing_day(t_ms: TimestampMs) -> i64 {
    t_ms.saturating_add(8 * 3_600_000).div_euclid(86_400_000)
}

pub fn now_ms() -> TimestampMs {
    Utc::now().timestamp_millis()
}

/// Checks that a time is plausible relative to the server clock `now` (default bounds: no
/// retention, 24 h ahead).
pub fn validate_time(t: TimestampMs, now: TimestampMs) -> Result<(), TimeError> {
    TimeBounds::default().check(t, now)
}

/// RFC 3339 in Beijing time, for logs, summaries and exports.
pub fn format_ms(t: TimestampMs) -> String {
    match DateTime::<Utc>::from_timestamp_millis(t) {
        Some(dt) => dt.with_timezone(&beijing_offset()).to_rfc3339(),
        None => format!("{t}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_range() {
        let now = 1_780_000_000_000;
        assert!(validate_time(now, now).is_ok());
        assert!(validate_time(now + 3_600_000, now).is_ok());
        assert_eq!(validate_time(0, now), Err(TimeError::TooOld(0)));
        assert!(matches!(validate_time(now + MAX_FUTURE_MS + 1, now), Err(TimeError::TooFarAhead { .. })));
    }

    #[test]
    fn records_older_than_retention_are_refused() {
        let now = 1_780_000_000_000;
        let b = TimeBounds { retention_days: 30, max_ahead_ms: 600_000 };
        let day = 86_400_000;
        assert!(b.check(now - 30 * day + 1, now).is_ok());
        let e = b.check(now - 30 * day - 1, now).unwrap_err();
        assert!(matches!(e, TimeError::BeyondRetention { retention_days: 30, .. }));
        assert!(e.to_string().contains("retention"), "{e}");
        assert!(b.check(now + 600_000, now).is_ok());
        assert!(matches!(b.check(now + 600_001, now), Err(TimeError::TooFarAhead { max_ahead_s: 600, .. })));
        // Retention 0 keeps everything after the floor.
        let forever = TimeBounds { retention_days: 0, ..b };
        assert!(forever.check(MIN_VALID_MS, now).is_ok());
    }

    #[test]
    fn formats_in_beijing_time() {
        // 2025-11-01T00:00:00+08:00
        assert_eq!(format_ms(1_761_926_400_000), "2025-11-01T00:00:00+08:00");
    }
}
