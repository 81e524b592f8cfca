//! Time handling. Internally every instant is Unix epoch milliseconds (UTC). Terminals report
//! Beijing local time and schedules are in Asia/Shanghai; China has had no daylight saving since
//! 1991, so a fixed UTC+8 offset is exact for every date this service can see.
use chrono::{DateTime, FixedOffset, Utc};

pub type TimestampMs = i64;

/// Records before 2000-01-01T00:00:00Z are not sane: terminal clocks reset to zero land there.
pub const MIN_VALID_MS: TimestampMs = 946_684_800_000;
/// How far ahead of the server clock a record may be before it is rejected outright. Records
/// between 10 min and this far ahead are accepted and flagged by R5 (time jump).
pub const MAX_FUTURE_MS: TimestampMs = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time {0} ms is before 2000-01-01")]
    TooOld(TimestampMs),
    #[error("time {0} ms is more than 24 h ahead of the server clock")]
    TooFarAhead(TimestampMs),
}

/// UTC+8, evaluated at compile time (an out-of-range offset would fail the build, not a request).
const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("UTC+8 is a valid offset"),
};

pub fn beijing_offset() -> FixedOffset {
    BEIJING
}

pub fn now_ms() -> TimestampMs {
    Utc::now().timestamp_millis()
}

/// Checks that a record time is plausible relative to the server clock `now`.
pub fn validate_time(t: TimestampMs, now: TimestampMs) -> Result<(), TimeError> {
    if t < MIN_VALID_MS {
        return Err(TimeError::TooOld(t));
    }
    if t > now.saturating_add(MAX_FUTURE_MS) {
        return Err(TimeError::TooFarAhead(t));
    }
    Ok(())
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
        assert!(matches!(validate_time(now + MAX_FUTURE_MS + 1, now), Err(TimeError::TooFarAhead(_))));
    }

    #[test]
    fn formats_in_beijing_time() {
        // 2025-11-01T00:00:00+08:00
        assert_eq!(format_ms(1_761_926_400_000), "2025-11-01T00:00:00+08:00");
    }
}
