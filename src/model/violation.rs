//! A violation: one continuous episode of one rule for one vehicle.
use super::{Fix, TimestampMs, Vin};
use serde::{Deserialize, Serialize};

/// Deterministic id: a hash of VIN, rule, scope (zone id, sub-rule) and episode start, so that
/// re-sending the same data (reissue, client retry, restart) never creates a second violation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViolationId(pub String);

impl ViolationId {
    pub fn derive(vin: &Vin, rule: &str, scope: &str, started_ms: TimestampMs) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(vin.as_bytes());
        h.update(&[0]);
        h.update(rule.as_bytes());
        h.update(&[0]);
        h.update(scope.as_bytes());
        h.update(&[0]);
        h.update(&started_ms.to_be_bytes());
        let digest = h.finalize();
        ViolationId(hex::encode(&digest.as_bytes()[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationStatus {
    Open,
    Closed,
}

/// Statistics of the measured quantity over the window that proved the violation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Number of valid samples; `seconds` of qualifying time they covered.
    pub samples: u32,
    pub seconds: f64,
}

impl Measured {
    pub fn of(values: impl IntoIterator<Item = f64>, seconds: f64) -> Option<Measured> {
        let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0u32);
        for v in values {
            min = min.min(v);
            max = max.max(v);
            sum += v;
            n += 1;
        }
        (n > 0).then(|| Measured { min, max, mean: sum / f64::from(n), samples: n, seconds })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub id: ViolationId,
    /// Rule id, e.g. "R1" or "R4.reagent_empty" (see rules.md).
    pub rule: String,
    pub vin: Vin,
    pub plate: String,
    pub status: ViolationStatus,
    /// Found in reissue / out-of-order data: stored and queryable, never a live alert.
    pub late: bool,
    pub started_ms: TimestampMs,
    pub ended_ms: Option<TimestampMs>,
    /// Where it was seen (entry fix for zone rules, last valid fix otherwise).
    pub position: Option<Fix>,
    pub zone_id: Option<String>,
    pub city_code: Option<String>,
    pub county_code: Option<String>,
    pub summary: String,
    /// Thresholds in force, each marked as a standard limit or a policy default.
    pub thresholds: serde_json::Value,
    pub measured: Option<Measured>,
    /// Rule-specific evidence: entry/exit fixes, track reference, sample values, raw frame refs.
    pub evidence: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let v = Vin::parse("LGBH52E07HY000001").unwrap();
        let a = ViolationId::derive(&v, "R3", "", 1000);
        assert_eq!(a, ViolationId::derive(&v, "R3", "", 1000));
        assert_ne!(a, ViolationId::derive(&v, "R3", "", 1001));
        assert_ne!(a, ViolationId::derive(&v, "R1", "", 1000));
        assert_ne!(a, ViolationId::derive(&v, "R1", "z1", 1000));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn measured_stats() {
        let m = Measured::of([1.0, 3.0, 2.0], 3.0).unwrap();
        assert_eq!((m.min, m.max, m.mean, m.samples), (1.0, 3.0, 2.0, 3));
        assert!(Measured::of([], 0.0).is_none());
    }
}
