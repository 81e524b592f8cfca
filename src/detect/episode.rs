//! Pieces every detector shares: the threshold annotation vocabulary, running statistics of a
//! measured quantity, the "sustained condition" accumulator of the R4 rules and the violation
//! skeleton. Kept here so each rule module holds only its rule.
use super::window::sample_duration_ms;
use crate::model::{Measured, TimestampMs, Vehicle, Vin, Violation, ViolationId, ViolationStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Provenance labels for every number in a violation's `thresholds` (rules.md: each threshold is
/// marked as a standard limit, a policy default, or unverified).
pub const STANDARD_GB3847: &str = "standard (GB 3847-2018)";
pub const STANDARD_GB36886: &str = "standard (GB 36886-2018)";
pub const POLICY_DEFAULT: &str = "policy default";
pub const UNVERIFIED: &str = "UNVERIFIED";

/// One annotated threshold: `{"value": 0.7, "source": "standard (GB 3847-2018)"}`.
pub fn th(value: f64, source: &str) -> Value {
    json!({ "value": value, "source": source })
}

/// The track reference every violation carries: the lead's store serves the track of `vin`
/// between the two instants.
pub fn track(vin: &Vin, from_ms: TimestampMs, to_ms: TimestampMs) -> Value {
    json!({ "vin": vin.as_str(), "from_ms": from_ms, "to_ms": to_ms })
}

/// A violation with its identity filled in and everything rule-specific empty. The id is the
/// deterministic `ViolationId::derive(vin, rule, scope, started_ms)`, so every snapshot of one
/// episode (open, closed, withdrawn) lands on the same row.
pub fn skeleton(
    rule: &str,
    scope: &str,
    vin: Vin,
    vehicle: &Vehicle,
    started_ms: TimestampMs,
    status: ViolationStatus,
) -> Violation {
    Violation {
        id: ViolationId::derive(&vin, rule, scope, started_ms),
        rule: rule.into(),
        vin,
        plate: vehicle.plate.clone(),
        status,
        late: false,
        started_ms,
        ended_ms: None,
        position: None,
        zone_id: None,
        city_code: Some(vehicle.city_code.clone()).filter(|c| !c.is_empty()),
        county_code: None,
        summary: String::new(),
        thresholds: Value::Null,
        measured: None,
        evidence: Value::Null,
    }
}

/// Running min/max/mean of a quantity and the time it covered. `f32` on purpose: ppm, %, m⁻¹ and
/// rpm need no more than 7 digits, and every byte counts towards the 1 KiB per-vehicle budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    min: f32,
    max: f32,
    sum: f32,
    n: u32,
    ms: i64,
}

impl Stats {
    pub fn add(&mut self, v: f64, dt_ms: i64) {
        let v = v as f32;
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.n = self.n.saturating_add(1);
        self.ms = self.ms.saturating_add(dt_ms.max(0));
    }

    /// Time the samples stood for, in milliseconds.
    pub fn ms(&self) -> i64 {
        self.ms
    }

    pub fn measured(&self) -> Option<Measured> {
        (self.n > 0).then(|| Measured {
            min: f64::from(self.min),
            max: f64::from(self.max),
            mean: f64::from(self.sum) / f64::from(self.n),
            samples: self.n,
            seconds: self.ms as f64 / 1000.0,
        })
    }
}

/// How one sample bears on a sustained condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// Preconditions met and the condition holds; the value goes into the statistics.
    Holds(f64),
    /// Preconditions met and the condition clearly does not hold.
    Clear,
    /// Preconditions not met (engine off, cold SCR, absent value): the sample neither counts nor
    /// clears, and the time it stands for is not counted either.
    Skip,
}

/// Parameters of a [`Sustain`] accumulator, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct SustainSpec {
    /// Accumulated holding time that proves the condition.
    pub min_hold_ms: i64,
    /// Accumulated clear time that ends an episode (hysteresis against a single good sample).
    pub clear_ms: i64,
    /// A pause longer than this between qualifying samples ends the episode: the next qualifying
    /// sample starts afresh (one continuous episode = one violation).
    pub max_pause_ms: i64,
    /// Longest time one sample may stand for (a gap in the data is never counted).
    pub max_sample_gap_ms: i64,
    /// Clear time paid back per unit of holding time. Holding pays the clear count back rather
    /// than wiping it, so a glitch (a 1–3 s NOx spike) cannot keep an unproven count alive
    /// forever, nor a proven episode open: the count resets once clear time outweighs holding
    /// time by `clear_ms`. 1.0 = one for one; a huge value = the old wipe-on-every-sample.
    pub clear_payback: f64,
}

/// "Condition held for ≥ N s of qualifying operation": accumulated holding time, paused (not
/// reset) by non-qualifying samples, reset when the condition is clearly not met for
/// `clear_ms` of clear time net of what holding paid back (`clear_payback`), or after a pause
/// longer than `max_pause_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sustain {
    /// Previous sample seen (any judgement): the sample duration is measured from it.
    prev_ms: Option<TimestampMs>,
    /// Previous qualifying sample (holds or clear): measures pauses.
    last_qual_ms: Option<TimestampMs>,
    clear_ms: i64,
    episode: Option<SustainEpisode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SustainEpisode {
    pub started_ms: TimestampMs,
    pub last_hold_ms: TimestampMs,
    pub opened: bool,
    pub stats: Stats,
}

/// What one [`Sustain::step`] produced. A pause can close an old episode in the same step.
#[derive(Debug, Default)]
pub struct SustainEvents {
    pub closed: Option<SustainEpisode>,
    pub opened: bool,
}

impl Sustain {
    pub fn episode(&self) -> Option<&SustainEpisode> {
        self.episode.as_ref()
    }

    pub fn step(&mut self, spec: SustainSpec, t: TimestampMs, j: Judgement) -> SustainEvents {
        let dt = sample_duration_ms(self.prev_ms, t, spec.max_sample_gap_ms);
        self.prev_ms = Some(t.max(self.prev_ms.unwrap_or(i64::MIN)));
        let mut ev = SustainEvents::default();
        if j == Judgement::Skip {
            return ev;
        }
        if let Some(last) = self.last_qual_ms {
            if t.saturating_sub(last) > spec.max_pause_ms {
                ev.closed = self.reset();
            }
        }
        self.last_qual_ms = Some(t.max(self.last_qual_ms.unwrap_or(i64::MIN)));
        match j {
            Judgement::Holds(v) => {
                let payback = (dt as f64 * spec.clear_payback.max(0.0)).min(i64::MAX as f64) as i64;
                self.clear_ms = self.clear_ms.saturating_sub(payback).max(0);
                let ep = self.episode.get_or_insert(SustainEpisode {
                    started_ms: t,
                    last_hold_ms: t,
                    opened: false,
                    stats: Stats::default(),
                });
                ep.last_hold_ms = t;
                ep.stats.add(v, dt);
                if !ep.opened && ep.stats.ms() >= spec.min_hold_ms {
                    ep.opened = true;
                    ev.opened = true;
                }
            }
            Judgement::Clear => {
                self.clear_ms = self.clear_ms.saturating_add(dt);
                if self.clear_ms >= spec.clear_ms {
                    if let Some(ep) = self.reset() {
                        ev.closed = Some(ep);
                    }
                }
            }
            Judgement::Skip => {}
        }
        ev
    }

    /// Drops the accumulation; returns the episode if it had been reported (opened).
    fn reset(&mut self) -> Option<SustainEpisode> {
        self.clear_ms = 0;
        self.episode.take().filter(|e| e.opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SustainSpec = SustainSpec {
        min_hold_ms: 10_000,
        clear_ms: 3_000,
        max_pause_ms: 60_000,
        max_sample_gap_ms: 2_000,
        clear_payback: 1.0,
    };

    #[test]
    fn stats_track_min_max_mean() {
        let mut s = Stats::default();
        assert!(s.measured().is_none());
        s.add(2.0, 1000);
        s.add(4.0, 1000);
        let m = s.measured().unwrap_or_else(|| panic!("measured"));
        assert_eq!((m.min, m.max, m.mean, m.samples, m.seconds), (2.0, 4.0, 3.0, 2, 2.0));
    }

    #[test]
    fn sustain_pauses_on_skip_and_resets_on_clear() {
        let mut s = Sustain::default();
        let mut opened = 0;
        // 6 s holding, 20 s skipped, 5 s holding: 11 s of holding time in total.
        for i in 0..6 {
            opened += usize::from(s.step(SPEC, i * 1000, Judgement::Holds(1.0)).opened);
        }
        for i in 6..26 {
            assert!(!s.step(SPEC, i * 1000, Judgement::Skip).opened);
        }
        for i in 26..31 {
            opened += usize::from(s.step(SPEC, i * 1000, Judgement::Holds(1.0)).opened);
        }
        assert_eq!(opened, 1);
        // Two clear seconds do not end it, three do.
        assert!(s.step(SPEC, 31_000, Judgement::Clear).closed.is_none());
        assert!(s.step(SPEC, 32_000, Judgement::Clear).closed.is_none());
        assert!(s.step(SPEC, 33_000, Judgement::Clear).closed.is_some());
        assert!(s.episode().is_none());
    }

    #[test]
    fn sustain_long_pause_ends_episode() {
        let mut s = Sustain::default();
        for i in 0..12 {
            s.step(SPEC, i * 1000, Judgement::Holds(1.0));
        }
        let ev = s.step(SPEC, 200_000, Judgement::Holds(1.0));
        assert!(ev.closed.is_some());
        assert!(!ev.opened);
        assert_eq!(s.episode().map(|e| e.started_ms), Some(200_000));
    }
}
