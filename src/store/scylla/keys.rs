//! Partition-key arithmetic: day and month buckets, hash shards. Pure functions shared by the
//! writers and the readers; changing any of them orphans existing rows, so each is fixed forever
//! once a cluster holds data (a new layout needs a new table and a migration).
use crate::model::{beijing_offset, TimestampMs, Vin};
use chrono::{DateTime, Datelike};

const DAY_MS: i64 = 86_400_000;
const BEIJING_OFFSET_MS: i64 = 8 * 3_600_000;

/// Buckets of `vehicles_by_bucket`: the registry listing is a k-way merge over them, so it
/// returns VINs in order like the embedded store while no partition holds the whole fleet.
pub const VEHICLE_BUCKETS: i32 = 16;
/// Buckets of `enterprises_by_bucket` (thousands of rows in total: a few partitions suffice).
pub const ENTERPRISE_BUCKETS: i32 = 4;
/// Shards of one day in `violations_by_day` (and `audit_log`). Why not one partition per day:
/// zone-entry rules can produce on the order of a million episodes on a bad day; four shards keep
/// a partition well under ~50 MB / 300k rows and spread that day's index writes over four replica
/// sets. Why not more: an unfiltered listing reads every shard of every day it crosses.
pub const DAY_SHARDS: i32 = 4;

/// Beijing-calendar day number since 1970-01-01 (UTC+8, exact: no DST in China since 1991).
/// Operators ask for "the violations of 1 November", which is a Beijing day.
pub fn day_bucket(t: TimestampMs) -> i32 {
    let d = t.saturating_add(BEIJING_OFFSET_MS).div_euclid(DAY_MS);
    d.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Consecutive alert sequence numbers per `alerts` partition (a few hundred KiB each).
pub const ALERT_BUCKET: i64 = 10_000;
/// Consecutive audit entries per `audit_by_seq` partition.
pub const AUDIT_BUCKET: i64 = 10_000;

/// Partition of a sequence number in a table bucketed by `size` consecutive numbers.
pub fn seq_bucket(seq: u64, size: i64) -> i64 {
    (seq / size.unsigned_abs().max(1)).min(i64::MAX as u64) as i64
}

/// First instant (epoch ms) of a Beijing day bucket.
pub fn day_start_ms(day: i32) -> TimestampMs {
    i64::from(day) * DAY_MS - BEIJING_OFFSET_MS
}

/// Beijing calendar month as `yyyymm` (202611). Human-readable in cqlsh, ordered like time.
pub fn month_bucket(t: TimestampMs) -> i32 {
    match DateTime::from_timestamp_millis(t) {
        Some(dt) => {
            let local = dt.with_timezone(&beijing_offset());
            local.year() * 100 + local.month() as i32
        }
        // Outside chrono's range (±262,000 years): never a real record, but never a panic either.
        None if t < 0 => 0,
        None => i32::MAX,
    }
}

/// First instant (epoch ms) of a Beijing month `yyyymm` (clamped to the valid range).
pub fn month_start_ms(yyyymm: i32) -> TimestampMs {
    let (y, m) = (yyyymm.div_euclid(100), yyyymm.rem_euclid(100).clamp(1, 12) as u32);
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis() - BEIJING_OFFSET_MS)
        .unwrap_or(if yyyymm <= 0 { i64::MIN } else { i64::MAX })
}

fn hash_bucket(bytes: &[u8], n: i32) -> i32 {
    let h = blake3::hash(bytes);
    let b = h.as_bytes();
    (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % n.unsigned_abs().max(1)) as i32
}

pub fn vehicle_bucket(vin: &Vin) -> i32 {
    hash_bucket(vin.as_bytes(), VEHICLE_BUCKETS)
}

pub fn enterprise_bucket(id: &str) -> i32 {
    hash_bucket(id.as_bytes(), ENTERPRISE_BUCKETS)
}

/// Shard of a violation within its day: by id, so every snapshot of an episode lands on the
/// same index row (an upsert overwrites instead of duplicating).
pub fn violation_shard(id: &str) -> i32 {
    hash_bucket(id.as_bytes(), DAY_SHARDS)
}

/// TTL to write a record with, so that it expires at `record time + ttl` like the embedded
/// store's retention (which is by record time, not by arrival). Records already past their
/// retention get one hour, mirroring the embedded store's hourly sweep. 0 = no TTL.
pub fn record_ttl_s(ttl_s: i64, record_ms: TimestampMs, now_ms: TimestampMs) -> i32 {
    /// CQL's maximum TTL (20 years).
    const MAX_TTL_S: i64 = 630_720_000;
    if ttl_s <= 0 {
        return 0;
    }
    let ttl_s = ttl_s.min(MAX_TTL_S);
    let age_s = now_ms.saturating_sub(record_ms).max(0) / 1000;
    ttl_s.saturating_sub(age_s).clamp(3600.min(ttl_s), ttl_s) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_beijing_days() {
        // 2025-11-01T00:00:00+08:00 and one ms before.
        let t = 1_761_926_400_000;
        assert_eq!(day_bucket(t), day_bucket(t - 1) + 1);
        assert_eq!(day_start_ms(day_bucket(t)), t);
        assert_eq!(day_bucket(t + DAY_MS - 1), day_bucket(t));
        assert!(day_bucket(i64::MIN) < 0 && day_bucket(i64::MAX) > 0, "saturates, never panics");
    }

    #[test]
    fn months_are_beijing_months() {
        let t = 1_761_926_400_000; // 2025-11-01T00:00+08:00 = 2025-10-31T16:00Z
        assert_eq!(month_bucket(t), 202511);
        assert_eq!(month_bucket(t - 1), 202510);
        assert_eq!(month_bucket(i64::MIN), 0);
        assert_eq!(month_start_ms(202511), t);
        assert_eq!(month_bucket(month_start_ms(202601)), 202601);
        assert_eq!(month_bucket(month_start_ms(202601) - 1), 202512);
        assert_eq!(seq_bucket(9_999, ALERT_BUCKET), 0);
        assert_eq!(seq_bucket(10_000, ALERT_BUCKET), 1);
        assert_eq!(seq_bucket(u64::MAX, 1), i64::MAX);
    }

    #[test]
    fn buckets_are_stable_and_in_range() {
        let vin = Vin::parse("LGBH52E07HY000001").unwrap();
        let b = vehicle_bucket(&vin);
        assert!((0..VEHICLE_BUCKETS).contains(&b));
        assert_eq!(b, vehicle_bucket(&vin));
        // Pinned: a change here would orphan every stored row.
        assert_eq!(violation_shard("00000000000000000000000000000000"), {
            let h = blake3::hash(b"00000000000000000000000000000000");
            let x = h.as_bytes();
            (u32::from_le_bytes([x[0], x[1], x[2], x[3]]) % 4) as i32
        });
        assert!((0..ENTERPRISE_BUCKETS).contains(&enterprise_bucket("ENT-1")));
    }

    #[test]
    fn ttl_follows_record_time() {
        let now = 1_780_000_000_000;
        assert_eq!(record_ttl_s(0, now, now), 0);
        assert_eq!(record_ttl_s(86_400, now, now), 86_400);
        assert_eq!(record_ttl_s(86_400, now - 3_600_000 * 2, now), 86_400 - 7200);
        assert_eq!(record_ttl_s(86_400, now - 10 * 86_400_000, now), 3600);
        assert_eq!(record_ttl_s(600, now - 10 * 86_400_000, now), 600);
        assert_eq!(record_ttl_s(86_400, now + 3_600_000, now), 86_400);
        assert_eq!(record_ttl_s(i64::MAX, now, now), 630_720_000);
    }
}
