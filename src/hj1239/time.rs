//! The protocol's 6-byte time: YY MM DD hh mm ss (year − 2000), terminal local time, Beijing (UTC+8,
//! no daylight saving). Invalid dates are typed errors, never panics.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};

/// Beijing's fixed UTC offset: terminals report local time.
pub const BEIJING_UTC_OFFSET_SECS: i64 = 8 * 3600;
/// Year of `YY = 0`.
const YEAR_BASE: i32 = 2000;
/// Last year one byte can express.
const YEAR_MAX: i32 = YEAR_BASE + 255;

/// Why 6 time bytes or a date cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a calendar date/time (month 13, 31 February, hour 24, second 60 …).
    #[error("invalid terminal time {} (YY MM DD hh mm ss)", hex::encode_upper(.bytes))]
    InvalidDate {
        /// The bytes as received.
        bytes: [u8; 6],
    },
    /// A date outside 2000..=2255 cannot be written in one year byte.
    #[error("time {0} is outside the representable years 2000..=2255")]
    OutOfRange(NaiveDateTime),
}

/// A validated protocol time (Beijing local, whole seconds, years 2000..=2255).
///
/// Holding a validated value (not raw bytes) means decode rejects bad dates up front and
/// `from_bytes(b)?.to_bytes() == b` holds for every accepted `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TerminalTime(NaiveDateTime);

impl TerminalTime {
    /// Wire length.
    pub const WIRE_LEN: usize = 6;

    /// Decodes the 6 wire bytes.
    pub fn from_bytes(bytes: [u8; 6]) -> Result<Self, TimeError> {
        let [yy, mo, dd, hh, mi, ss] = bytes;
        NaiveDate::from_ymd_opt(YEAR_BASE + i32::from(yy), u32::from(mo), u32::from(dd))
            .and_then(|d| d.and_hms_opt(u32::from(hh), u32::from(mi), u32::from(ss)))
            .map(TerminalTime)
            .ok_or(TimeError::InvalidDate { bytes })
    }

    /// The 6 wire bytes.
    pub fn to_bytes(&self) -> [u8; 6] {
        use chrono::Datelike;
        let d = self.0;
        // Constructors guarantee 2000..=2255, so the year fits one byte.
        let yy = u8::try_from(d.year() - YEAR_BASE).unwrap_or(u8::MAX);
        // chrono guarantees month/day/hour/minute/second < 60, so the casts cannot truncate.
        [yy, d.month() as u8, d.day() as u8, d.hour() as u8, d.minute() as u8, d.second() as u8]
    }

    /// From a Beijing local time. Sub-second parts are dropped (the wire has whole seconds).
    pub fn from_beijing_local(local: NaiveDateTime) -> Result<Self, TimeError> {
        use chrono::Datelike;
        if !(YEAR_BASE..=YEAR_MAX).contains(&local.year()) {
            return Err(TimeError::OutOfRange(local));
        }
        let whole = local.with_nanosecond(0).unwrap_or(local);
        Ok(TerminalTime(whole))
    }

    /// From a UTC instant (e.g. the server clock for a time-calibration answer).
    pub fn from_utc(t: DateTime<Utc>) -> Result<Self, TimeError> {
        let local = t
            .naive_utc()
            .checked_add_signed(TimeDelta::seconds(BEIJING_UTC_OFFSET_SECS))
            .ok_or(TimeError::OutOfRange(t.naive_utc()))?;
        Self::from_beijing_local(local)
    }

    /// The server clock now, as terminal time.
    pub fn now() -> Result<Self, TimeError> {
        Self::from_utc(Utc::now())
    }

    /// The wall-clock time the terminal reported (Beijing local).
    pub fn beijing_local(&self) -> NaiveDateTime {
        self.0
    }

    /// The instant in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        // Years 2000..=2255 are far from chrono's limits: the subtraction cannot overflow.
        (self.0 - TimeDelta::seconds(BEIJING_UTC_OFFSET_SECS)).and_utc()
    }

    /// Milliseconds since the Unix epoch, UTC (what storage and the pipeline key on).
    pub fn epoch_millis_utc(&self) -> i64 {
        self.0.and_utc().timestamp_millis() - BEIJING_UTC_OFFSET_SECS * 1000
    }
}

/// Decodes 6 time bytes to Beijing local time.
pub fn decode_time_local(bytes: [u8; 6]) -> Result<NaiveDateTime, TimeError> {
    TerminalTime::from_bytes(bytes).map(|t| t.beijing_local())
}

/// Decodes 6 time bytes to epoch milliseconds (UTC).
pub fn decode_time_epoch_millis(bytes: [u8; 6]) -> Result<i64, TimeError> {
    TerminalTime::from_bytes(bytes).map(|t| t.epoch_millis_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_time() {
        // 2020-05-29 13:52:30 Beijing = 05:52:30 UTC.
        let b = [0x14, 0x05, 0x1D, 0x0D, 0x34, 0x1E];
        let t = TerminalTime::from_bytes(b).unwrap();
        assert_eq!(t.beijing_local().to_string(), "2020-05-29 13:52:30");
        assert_eq!(t.to_utc().to_rfc3339(), "2020-05-29T05:52:30+00:00");
        assert_eq!(t.epoch_millis_utc(), 1_590_731_550_000);
        assert_eq!(decode_time_epoch_millis(b), Ok(1_590_731_550_000));
        assert_eq!(t.to_bytes(), b);
    }

    #[test]
    fn invalid_dates_are_errors() {
        for b in [
            [20, 13, 1, 0, 0, 0],
            [20, 2, 30, 0, 0, 0],
            [20, 1, 1, 24, 0, 0],
            [20, 1, 1, 0, 60, 0],
            [20, 1, 1, 0, 0, 60],
            [20, 0, 1, 0, 0, 0],
            [0xFF; 6],
        ] {
            assert_eq!(TerminalTime::from_bytes(b), Err(TimeError::InvalidDate { bytes: b }));
        }
    }

    #[test]
    fn utc_round_trip_and_range() {
        let t = TerminalTime::from_bytes([25, 12, 31, 23, 59, 59]).unwrap();
        assert_eq!(TerminalTime::from_utc(t.to_utc()), Ok(t));
        let early = NaiveDate::from_ymd_opt(1999, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap();
        assert!(matches!(TerminalTime::from_beijing_local(early), Err(TimeError::OutOfRange(_))));
        assert!(TerminalTime::now().is_ok());
    }
}
