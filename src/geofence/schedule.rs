//! When a zone is in force: effective dates and weekly time windows, both in Asia/Shanghai local
//! time (rules.md, Common ground). China has no daylight saving, so local time is UTC+8 by integer
//! arithmetic: no calendar library on the per-record path.
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const DAY_MS: i64 = 86_400_000;
const DAY_S: u32 = 86_400;
const BEIJING_OFFSET_MS: i64 = 8 * 3_600_000;
/// `NaiveDate::num_days_from_ce()` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// An instant seen on a Beijing wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInstant {
    /// Local calendar day, counted from 1970-01-01 (local).
    pub day: i64,
    pub weekday: Day,
    pub second_of_day: u32,
}

impl LocalInstant {
    pub fn of(at_ms: i64) -> Self {
        let local = at_ms.saturating_add(BEIJING_OFFSET_MS);
        let day = local.div_euclid(DAY_MS);
        // rem_euclid of a positive divisor is in 0..DAY_MS, so the seconds fit in u32.
        let second_of_day = u32::try_from(local.rem_euclid(DAY_MS) / 1000).unwrap_or(0);
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = Day::from_index((day + 3).rem_euclid(7));
        LocalInstant { day, weekday, second_of_day }
    }
}

/// Local calendar day number of a date (days since 1970-01-01).
pub fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE
}

/// Epoch ms of local midnight (00:00 Beijing time) starting `date`.
pub fn local_midnight_ms(date: NaiveDate) -> i64 {
    day_number(date) * DAY_MS - BEIJING_OFFSET_MS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub const ALL: [Day; 7] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat, Day::Sun];

    fn from_index(i: i64) -> Day {
        match i {
            0 => Day::Mon,
            1 => Day::Tue,
            2 => Day::Wed,
            3 => Day::Thu,
            4 => Day::Fri,
            5 => Day::Sat,
            _ => Day::Sun,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn previous(self) -> Day {
        Day::from_index((self as i64 + 6) % 7)
    }
}

/// A set of weekdays, serialised as a list of day names (`["mon", "tue"]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Day>", into = "Vec<Day>")]
pub struct DaySet(u8);

impl DaySet {
    pub const EVERY_DAY: DaySet = DaySet(0x7f);
    pub const WEEKDAYS: DaySet = DaySet(0x1f);

    pub fn contains(self, d: Day) -> bool {
        self.0 & d.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Day> for DaySet {
    fn from_iter<I: IntoIterator<Item = Day>>(iter: I) -> Self {
        DaySet(iter.into_iter().fold(0, |acc, d| acc | d.bit()))
    }
}

impl From<Vec<Day>> for DaySet {
    fn from(v: Vec<Day>) -> Self {
        v.into_iter().collect()
    }
}

impl From<DaySet> for Vec<Day> {
    fn from(s: DaySet) -> Self {
        Day::ALL.into_iter().filter(|d| s.contains(*d)).collect()
    }
}

impl fmt::Debug for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(Vec::<Day>::from(*self)).finish()
    }
}

/// A local wall-clock time, seconds after midnight, serialised as "HH:MM" or "HH:MM:SS".
/// "24:00" is accepted so that a window can end at midnight.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("time {0:?} is not HH:MM or HH:MM:SS between 00:00 and 24:00")]
    BadTime(String),
    #[error("weekly window has no days")]
    NoDays,
    #[error("weekly window starts and ends at the same time ({0})")]
    EmptyWindow(String),
    #[error("weekly window cannot start at 24:00")]
    StartsAtMidnightEnd,
    #[error("weekly schedule has no windows (use \"all_day\" for an always-on zone)")]
    NoWindows,
}

impl ClockTime {
    pub const MIDNIGHT: ClockTime = ClockTime(0);
    pub const END_OF_DAY: ClockTime = ClockTime(DAY_S);

    pub fn hm(h: u32, m: u32) -> Result<ClockTime, ScheduleError> {
        let s = h * 3600 + m * 60;
        if m < 60 && s <= DAY_S {
            Ok(ClockTime(s))
        } else {
            Err(ScheduleError::BadTime(format!("{h:02}:{m:02}")))
        }
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for ClockTime {
    type Error = ScheduleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for ClockTime {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ScheduleError::BadTime(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| -> Result<u32, ScheduleError> {
            if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (h, m, sec) = match parts.as_slice() {
            [h, m] => (num(h)?, num(m)?, 0),
            [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
            _ => return Err(bad()),
        };
        let total = h * 3600 + m * 60 + sec;
        if m >= 60 || sec >= 60 || total > DAY_S {
            return Err(bad());
        }
        Ok(ClockTime(total))
    }
}

impl From<ClockTime> for String {
    fn from(t: ClockTime) -> Self {
        t.to_string()
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if s == 0 {
            write!(f, "{h:02}:{m:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

impl fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClockTime({self})")
    }
}

/// A weekly window `[start, end)` in local time, starting on each of `days`. When `end < start`
/// the window crosses midnight and ends on the following day (a "Fri 22:00–06:00" window is in
/// force until Saturday 06:00; `days` names the day the window STARTS on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawWindow")]
pub struct WeeklyWindow {
    pub days: DaySet,
    pub start: ClockTime,
    pub end: ClockTime,
}

#[derive(Deserialize)]
struct RawWindow {
    days: DaySet,
    start: ClockTime,
    end: ClockTime,
}

impl TryFrom<RawWindow> for WeeklyWindow {
    type Error = ScheduleError;
    fn try_from(r: RawWindow) -> Result<Self, Self::Error> {
        WeeklyWindow::new(r.days, r.start, r.end)
    }
}

impl WeeklyWindow {
    pub fn new(days: DaySet, start: ClockTime, end: ClockTime) -> Result<Self, ScheduleError> {
        if days.is_empty() {
            return Err(ScheduleError::NoDays);
        }
        if start == ClockTime::END_OF_DAY {
            return Err(ScheduleError::StartsAtMidnightEnd);
        }
        if start == end {
            return Err(ScheduleError::EmptyWindow(start.to_string()));
        }
        Ok(WeeklyWindow { days, start, end })
    }

    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    pub fn contains(&self, t: LocalInstant) -> bool {
        let s = t.second_of_day;
        if self.crosses_midnight() {
            (self.days.contains(t.weekday) && s >= self.start.0)
                || (self.days.contains(t.weekday.previous()) && s < self.end.0)
        } else {
            self.days.contains(t.weekday) && s >= self.start.0 && s < self.end.0
        }
    }
}

/// When, within its effective period, a zone is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Around the clock, every day (the usual case for China III restrictions).
    #[default]
    AllDay,
    /// Only inside any of these windows.
    Weekly(Vec<WeeklyWindow>),
}

impl Schedule {
    pub fn contains(&self, t: LocalInstant) -> bool {
        match self {
            Schedule::AllDay => true,
            Schedule::Weekly(ws) => ws.iter().any(|w| w.contains(t)),
        }
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        match self {
            Schedule::Weekly(ws) if ws.is_empty() => Err(ScheduleError::NoWindows),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
        local_midnight_ms(date) + i64::from(h * 3600 + mi * 60 + s) * 1000
    }

    #[test]
    fn local_instant_is_beijing_time() {
        // 2025-11-01T00:00:00+08:00 = 2025-10-31T16:00:00Z, a Saturday.
        let t = LocalInstant::of(1_761_926_400_000);
        assert_eq!(t.second_of_day, 0);
        assert_eq!(t.weekday, Day::Sat);
        assert_eq!(t.day, day_number(NaiveDate::from_ymd_opt(2025, 11, 1).unwrap()));
        assert_eq!(at(2025, 11, 1, 0, 0, 0), 1_761_926_400_000);
        // 16:00 UTC on Friday is already Saturday in Beijing.
        assert_eq!(LocalInstant::of(1_761_926_400_000 - 1).weekday, Day::Fri);
    }

    #[test]
    fn clock_times_parse_and_print() {
        assert_eq!("07:30".parse::<ClockTime>().unwrap().seconds(), 27_000);
        assert_eq!("24:00".parse::<ClockTime>().unwrap(), ClockTime::END_OF_DAY);
        assert!("24:01".parse::<ClockTime>().is_err());
        assert!("7:30".parse::<ClockTime>().is_err());
        assert!("07:60".parse::<ClockTime>().is_err());
        assert!("ab:cd".parse::<ClockTime>().is_err());
        assert_eq!(ClockTime::hm(6, 5).unwrap().to_string(), "06:05");
    }

    #[test]
    fn window_boundaries_are_half_open() {
        let w =
            WeeklyWindow::new(DaySet::WEEKDAYS, ClockTime::hm(7, 0).unwrap(), ClockTime::hm(9, 0).unwrap())
                .unwrap();
        // 2025-11-03 is a Monday.
        assert!(!w.contains(LocalInstant::of(at(2025, 11, 3, 6, 59, 59))));
        assert!(w.contains(LocalInstant::of(at(2025, 11, 3, 7, 0, 0))));
        assert!(w.contains(LocalInstant::of(at(2025, 11, 3, 8, 59, 59))));
        assert!(!w.contains(LocalInstant::of(at(2025, 11, 3, 9, 0, 0))));
        // Saturday is not in the set.
        assert!(!w.contains(LocalInstant::of(at(2025, 11, 1, 8, 0, 0))));
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let fri: DaySet = [Day::Fri].into_iter().collect();
        let w = WeeklyWindow::new(fri, ClockTime::hm(22, 0).unwrap(), ClockTime::hm(6, 0).unwrap()).unwrap();
        // 2025-10-31 is a Friday.
        assert!(!w.contains(LocalInstant::of(at(2025, 10, 31, 21, 59, 59))));
        assert!(w.contains(LocalInstant::of(at(2025, 10, 31, 22, 0, 0))));
        assert!(w.contains(LocalInstant::of(at(2025, 11, 1, 0, 0, 0))));
        assert!(w.contains(LocalInstant::of(at(2025, 11, 1, 5, 59, 59))));
        assert!(!w.contains(LocalInstant::of(at(2025, 11, 1, 6, 0, 0))));
        // Thursday night is not in force: Thursday is not a start day.
        assert!(!w.contains(LocalInstant::of(at(2025, 10, 30, 23, 0, 0))));
        assert!(!w.contains(LocalInstant::of(at(2025, 10, 31, 1, 0, 0))));
    }

    #[test]
    fn schedule_uses_beijing_not_utc() {
        let w =
            WeeklyWindow::new(DaySet::EVERY_DAY, ClockTime::hm(7, 0).unwrap(), ClockTime::hm(9, 0).unwrap())
                .unwrap();
        let s = Schedule::Weekly(vec![w]);
        // 07:30 UTC is 15:30 in Beijing: outside.
        let utc_0730 = at(2025, 11, 3, 15, 30, 0);
        assert!(!s.contains(LocalInstant::of(utc_0730)));
        // 23:30 UTC the day before is 07:30 in Beijing: inside.
        assert!(s.contains(LocalInstant::of(at(2025, 11, 3, 7, 30, 0))));
    }

    #[test]
    fn bad_windows_are_rejected() {
        let t = ClockTime::hm(7, 0).unwrap();
        assert_eq!(WeeklyWindow::new(DaySet::default(), t, ClockTime::MIDNIGHT), Err(ScheduleError::NoDays));
        assert!(matches!(WeeklyWindow::new(DaySet::EVERY_DAY, t, t), Err(ScheduleError::EmptyWindow(_))));
        assert!(Schedule::Weekly(vec![]).validate().is_err());
        let j = r#"{"weekly":[{"days":["mon","sun"],"start":"22:00","end":"06:00"}]}"#;
        let s: Schedule = serde_json::from_str(j).unwrap();
        assert!(matches!(&s, Schedule::Weekly(w) if w[0].crosses_midnight()));
        assert_eq!(serde_json::to_string(&s).unwrap(), j);
        assert!(serde_json::from_str::<Schedule>(r#"{"weekly":[{"days":[],"start":"1:00","end":"06:00"}]}"#)
            .is_err());
        assert_eq!(serde_json::from_str::<Schedule>("\"all_day\"").unwrap(), Schedule::AllDay);
    }
}
