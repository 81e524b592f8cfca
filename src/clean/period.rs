//! Reporting periods in Beijing time: a day ("2025-11-01"), a month ("2025-11"), a year
//! ("2025"), or any `[from, to)` range in epoch milliseconds.
use crate::model::{beijing_offset, TimestampMs, MIN_VALID_MS};
use chrono::{Datelike, NaiveDate, TimeZone};

/// Longest period a ratio is computed over (a few years; the computation reads day by day).
pub const MAX_PERIOD_MS: i64 = 3 * 366 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// "2025-11-01", "2025-11", "2025", or the RFC 3339 bounds of a range.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("period {0:?} is not YYYY, YYYY-MM or YYYY-MM-DD")]
    Format(String),
    #[error("give either a period or a from/to range, not both")]
    Both,
    #[error("range must have from < to, both after 2000-01-01")]
    Range,
    #[error("period longer than three years")]
    TooLong,
}

fn midnight(d: NaiveDate) -> Option<TimestampMs> {
    let dt = d.and_hms_opt(0, 0, 0)?;
    beijing_offset().from_local_datetime(&dt).single().map(|t| t.timestamp_millis())
}

impl Period {
    /// `period` when non-empty, else the range.
    pub fn parse(period: &str, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Period, PeriodError> {
        let p = period.trim();
        if p.is_empty() {
            return Period::range(from_ms, to_ms);
        }
        if from_ms != 0 || to_ms != 0 {
            return Err(PeriodError::Both);
        }
        let bad = || PeriodError::Format(p.to_string());
        let parts: Vec<&str> = p.split('-').collect();
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let (start, end) = match parts.as_slice() {
            [y] if y.len() == 4 => {
                let y = num(y)? as i32;
                (NaiveDate::from_ymd_opt(y, 1, 1), NaiveDate::from_ymd_opt(y + 1, 1, 1))
            }
            [y, m] if y.len() == 4 && m.len() == 2 => {
                let (y, m) = (num(y)? as i32, num(m)?);
                let next = if m == 12 {
                    NaiveDate::from_ymd_opt(y + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(y, m + 1, 1)
                };
                (NaiveDate::from_ymd_opt(y, m, 1), next)
            }
            [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
                let start = NaiveDate::from_ymd_opt(num(y)? as i32, num(m)?, num(d)?);
                (start, start.and_then(|s| s.succ_opt()))
            }
            _ => return Err(bad()),
        };
        let (from_ms, to_ms) = match (start.and_then(midnight), end.and_then(midnight)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(bad()),
        };
        if from_ms < MIN_VALID_MS {
            return Err(PeriodError::Range);
        }
        Ok(Period { from_ms, to_ms, label: p.to_string() })
    }

    pub fn range(from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Period, PeriodError> {
        if from_ms < MIN_VALID_MS || to_ms <= from_ms {
            return Err(PeriodError::Range);
        }
        if to_ms - from_ms > MAX_PERIOD_MS {
            return Err(PeriodError::TooLong);
        }
        let label = format!("{} – {}", crate::model::format_ms(from_ms), crate::model::format_ms(to_ms));
        Ok(Period { from_ms, to_ms, label })
    }

    /// The year whose targets apply: the (Beijing) year the period starts in.
    pub fn year(&self) -> i32 {
        chrono::DateTime::from_timestamp_millis(self.from_ms)
            .map(|t| t.with_timezone(&beijing_offset()).year())
            .unwrap_or(2000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NOV1: i64 = 1_761_926_400_000; // 2025-11-01T00:00+08:00
    const DAY: i64 = 86_400_000;

    #[test]
    fn named_periods_are_beijing_days_months_years() {
        let d = Period::parse("2025-11-01", 0, 0).unwrap();
        assert_eq!((d.from_ms, d.to_ms), (NOV1, NOV1 + DAY));
        let m = Period::parse("2025-11", 0, 0).unwrap();
        assert_eq!((m.from_ms, m.to_ms), (NOV1, NOV1 + 30 * DAY));
        let dec = Period::parse("2025-12", 0, 0).unwrap();
        assert_eq!(dec.to_ms - dec.from_ms, 31 * DAY);
        let y = Period::parse("2025", 0, 0).unwrap();
        assert_eq!(y.to_ms - y.from_ms, 365 * DAY);
        assert_eq!(y.year(), 2025);
        assert_eq!(Period::parse("", NOV1, NOV1 + 5).unwrap().year(), 2025);
    }

    #[test]
    fn bad_periods_are_refused() {
        for p in ["2025-13", "2025-02-30", "25", "2025-1", "x", "2025-11-01-02"] {
            assert!(Period::parse(p, 0, 0).is_err(), "{p}");
        }
        assert_eq!(Period::parse("2025", 1, 2), Err(PeriodError::Both));
        assert_eq!(Period::parse("", NOV1, NOV1), Err(PeriodError::Range));
        assert_eq!(Period::parse("", 0, 0), Err(PeriodError::Range));
        assert_eq!(Period::parse("", NOV1, NOV1 + 4 * 366 * DAY), Err(PeriodError::TooLong));
    }
}
