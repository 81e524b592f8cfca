//! Time accumulated by a condition within a trailing window ("≥ 300 s within 600 s").
//!
//! Kept in fixed buckets rather than per-sample so a vehicle's state stays small (the target is
//! ≤ 1 KiB per tracked vehicle). The bucket vector is empty while nothing is counted, which is the
//! normal state for a compliant vehicle.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub window_ms: i64,
    pub bucket_ms: i64,
}

impl WindowSpec {
    /// A window of `window_s` seconds in 60 buckets (at least 1 s each).
    pub fn seconds(window_s: u32) -> Self {
        let window_ms = i64::from(window_s.max(1)) * 1000;
        WindowSpec { window_ms, bucket_ms: (window_ms / 60).max(1000) }
    }

    fn buckets(&self) -> usize {
        usize::try_from((self.window_ms + self.bucket_ms - 1) / self.bucket_ms).unwrap_or(60).max(1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowCounter {
    /// Index (time / bucket_ms) of the newest bucket.
    head: i64,
    /// Milliseconds counted per bucket; `ring[i % n]` holds bucket index i. Empty when all zero.
    ring: Vec<u32>,
}

impl WindowCounter {
    /// Moves the window's end to `t_ms`, dropping buckets that fell out of it.
    pub fn advance(&mut self, spec: WindowSpec, t_ms: i64) {
        if self.ring.is_empty() {
            return;
        }
        let idx = t_ms.div_euclid(spec.bucket_ms);
        if idx <= self.head {
            return;
        }
        let n = self.ring.len() as i64;
        if idx - self.head >= n {
            self.ring.clear();
            return;
        }
        for i in (self.head + 1)..=idx {
            if let Some(slot) = self.ring.get_mut(i.rem_euclid(n) as usize) {
                *slot = 0;
            }
        }
        self.head = idx;
        if self.ring.iter().all(|&b| b == 0) {
            self.ring.clear();
        }
    }

    /// Counts `dur_ms` of the condition ending at `t_ms` (in the bucket of `t_ms`).
    pub fn add(&mut self, spec: WindowSpec, t_ms: i64, dur_ms: i64) {
        if dur_ms <= 0 {
            return;
        }
        let idx = t_ms.div_euclid(spec.bucket_ms);
        if self.ring.is_empty() {
            self.ring = vec![0; spec.buckets()];
            self.head = idx;
        } else {
            self.advance(spec, t_ms);
            if self.ring.is_empty() {
                self.ring = vec![0; spec.buckets()];
                self.head = idx;
            }
        }
        if idx < self.head {
            return; // older than the window's end: live data is in order, so this is noise
        }
        let n = self.ring.len() as i64;
        if let Some(slot) = self.ring.get_mut(idx.rem_euclid(n) as usize) {
            *slot = slot.saturating_add(u32::try_from(dur_ms).unwrap_or(u32::MAX));
        }
    }

    /// Start time of the oldest bucket in the window that holds counted time.
    pub fn oldest_counted_ms(&self, spec: WindowSpec) -> Option<i64> {
        let n = self.ring.len() as i64;
        (self.head - n + 1..=self.head)
            .find(|&i| self.ring.get(i.rem_euclid(n.max(1)) as usize).is_some_and(|&b| b > 0))
            .map(|i| i * spec.bucket_ms)
    }

    pub fn total_ms(&self) -> u64 {
        self.ring.iter().map(|&b| u64::from(b)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// Duration a sample stands for: the time since the previous sample, capped so a gap (terminal
/// offline, engine off without records) is never counted as time in a condition.
pub fn sample_duration_ms(prev_ms: Option<i64>, t_ms: i64, cap_ms: i64) -> i64 {
    match prev_ms {
        Some(p) if t_ms > p => (t_ms - p).min(cap_ms),
        Some(_) => 0,
        None => 1000.min(cap_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_and_slides() {
        let spec = WindowSpec::seconds(600);
        let mut w = WindowCounter::default();
        for s in 0..300 {
            w.add(spec, s * 1000, 1000);
        }
        assert_eq!(w.total_ms(), 300_000);
        assert_eq!(w.oldest_counted_ms(spec), Some(0));
        w.advance(spec, 600_000);
        assert_eq!(w.oldest_counted_ms(spec), Some(10_000), "bucket 0 left the window");
        // 10 minutes later the first 300 s have left the window.
        w.advance(spec, 900_000);
        assert!(w.total_ms() < 300_000);
        w.advance(spec, 2_000_000);
        assert_eq!(w.total_ms(), 0);
        assert_eq!(w.oldest_counted_ms(spec), None);
        assert!(w.is_empty());
    }

    #[test]
    fn gaps_are_capped() {
        assert_eq!(sample_duration_ms(Some(0), 1000, 10_000), 1000);
        assert_eq!(sample_duration_ms(Some(0), 3_600_000, 10_000), 10_000);
        assert_eq!(sample_duration_ms(Some(5000), 1000, 10_000), 0);
        assert_eq!(sample_duration_ms(None, 1000, 10_000), 1000);
    }
}
