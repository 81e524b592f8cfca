//! Ground truth of the zone rules (R1, R6.banned_stage) from what each simulated vehicle really
//! did: its TRUE path (before any GNSS error is added) against the zone polygons the server
//! runs with, their effective dates and weekly schedules (Beijing time), the vehicle's
//! applicability and exemptions. Never from what the planter intended: a delivery loop that
//! leaves the zone and comes back, or a Ningbo zone outside its peak-hour window, is judged as
//! it happened.
//!
//! Each stay (consecutive seconds truly inside an active, applicable zone; exits shorter than
//! the 60 s `min_outside`, counting only seconds with a good fix, do not end it: an exit made
//! during a GNSS outage is invisible to any detector) is classified:
//! - **violation (clear)**: at least [`CLEAR_STREAK_S`] consecutive seconds at least
//!   [`CLEAR_DEPTH_M`] inside with the GNSS reporting: the detector must find it;
//! - **borderline, violation side**: inside for ≥ 60 s but never that deep for that long (a
//!   border road inside the zone, or a stay hidden in a GPS outage): truly a violation, but
//!   within the safeguards' margin; found or not, both are accepted and reported;
//! - **borderline, compliant side**: inside for 45–59 s: truly no violation, but close;
//! - otherwise nothing: any violation found there is a false alarm.
use crate::plant::{Borderline, Expected};
use smogwatch::geofence::{
    import_exemptions, import_zones, ExemptionBook, ImportMode, ImportOptions, ZoneIdx, ZoneSet,
};
use smogwatch::model::{TimestampMs, Vehicle};
use std::sync::Arc;

/// Depth that no plausible GNSS error undoes: the detector's 20 m entry margin plus 30 m (six
/// standard deviations of the simulated correlated error).
pub const CLEAR_DEPTH_M: f64 = 50.0;
/// Consecutive deep seconds that make a clear violation: the 60 s dwell, 30 s of settling after a
/// GPS outage, and 30 s for the error process to leave the margin band.
pub const CLEAR_STREAK_S: u32 = 120;
const MIN_INSIDE_S: u32 = 60;
const MIN_OUTSIDE_S: u32 = 60;
const BORDERLINE_COMPLIANT_S: u32 = 45;

/// The zones the server under test runs with (`--sample-data`).
pub struct ZoneWorld {
    pub zones: ZoneSet,
}

impl ZoneWorld {
    pub fn sample() -> anyhow::Result<Arc<ZoneWorld>> {
        Ok(Arc::new(ZoneWorld { zones: Self::sample_set()? }))
    }

    /// The sample zones and exemptions, as the server loads them with `--sample-data`.
    pub fn sample_set() -> anyhow::Result<ZoneSet> {
        let opts = ImportOptions { mode: ImportMode::Strict, ..Default::default() };
        let zones = import_zones(smogwatch::zones::SAMPLE_ZONES, &opts)?.zones;
        let ex = import_exemptions(smogwatch::zones::SAMPLE_EXEMPTIONS, ImportMode::Strict)?.exemptions;
        Ok(ZoneSet::build(zones, ExemptionBook::new(ex))?)
    }
}

#[derive(Debug, Clone)]
struct Stay {
    zone_id: String,
    rule: &'static str,
    start_s: u32,
    last_in_s: u32,
    in_s: u32,
    streak: u32,
    best_streak: u32,
    /// Second at which the deep streak first reached `CLEAR_STREAK_S`.
    clear_at_s: Option<u32>,
    /// Seconds outside since the last inside one, counted only with a good fix: an exit the
    /// terminal could not report (GNSS outage) does not end a stay, for no detector can see it.
    out_seen_s: u32,
}

/// One vehicle's zone truth, fed its true position every simulated second.
pub struct ZoneTruthLog {
    world: Arc<ZoneWorld>,
    vehicle: Vehicle,
    vin: String,
    t0_ms: TimestampMs,
    open: Vec<Stay>,
    done: Vec<Stay>,
    hits: Vec<ZoneIdx>,
}

impl ZoneTruthLog {
    pub fn new(world: Arc<ZoneWorld>, vehicle: Vehicle, t0_ms: TimestampMs) -> Self {
        let vin = vehicle.vin.map(|v| v.to_string()).unwrap_or_default();
        ZoneTruthLog { world, vehicle, vin, t0_ms, open: Vec::new(), done: Vec::new(), hits: Vec::new() }
    }

    /// Second `s`: the vehicle truly is at `pos`; `gnss_ok`: its terminal reports a good fix.
    pub fn observe(&mut self, s: u32, pos: (f64, f64), gnss_ok: bool) {
        let t = self.t0_ms + i64::from(s) * 1000;
        let zs = &self.world.zones;
        self.hits.clear();
        zs.zones_at(pos.0, pos.1, &mut self.hits);
        let mut inside: Vec<(ZoneIdx, &'static str)> = Vec::new();
        for &idx in &self.hits {
            let Some(z) = zs.zone(idx) else { continue };
            let Some(rule) = z.kind.rule() else { continue };
            if z.is_active(t) && z.applies_to(&self.vehicle) && zs.exemption(z, &self.vehicle, t).is_none() {
                inside.push((idx, rule));
            }
        }
        // Close stays left for longer than min_outside (seen with a good fix).
        let mut i = 0;
        while i < self.open.len() {
            let still =
                inside.iter().any(|&(idx, _)| zs.zone(idx).is_some_and(|z| z.id == self.open[i].zone_id));
            if !still && gnss_ok {
                self.open[i].out_seen_s += 1;
            }
            if !still && self.open[i].out_seen_s > MIN_OUTSIDE_S {
                self.done.push(self.open.swap_remove(i));
            } else {
                i += 1;
            }
        }
        for (idx, rule) in inside {
            let Some(z) = zs.zone(idx) else { continue };
            let deep = !smogwatch::geofence::depth::boundary_within(&z.geometry, pos.0, pos.1, CLEAR_DEPTH_M);
            let pos_in_open = self.open.iter().position(|st| st.zone_id == z.id);
            let st = match pos_in_open {
                Some(p) => &mut self.open[p],
                None => {
                    self.open.push(Stay {
                        zone_id: z.id.clone(),
                        rule,
                        start_s: s,
                        last_in_s: s,
                        in_s: 0,
                        streak: 0,
                        best_streak: 0,
                        clear_at_s: None,
                        out_seen_s: 0,
                    });
                    let n = self.open.len() - 1;
                    &mut self.open[n]
                }
            };
            // A second away from the zone breaks the streak (the detector drops an unproven stay).
            if st.last_in_s + 1 < s {
                st.streak = 0;
            }
            st.last_in_s = s;
            st.out_seen_s = 0;
            st.in_s += 1;
            st.streak = if deep && gnss_ok { st.streak + 1 } else { 0 };
            st.best_streak = st.best_streak.max(st.streak);
            if st.streak >= CLEAR_STREAK_S && st.clear_at_s.is_none() {
                st.clear_at_s = Some(s);
            }
        }
    }

    /// The expected violations and the borderline stays, once the simulation is over.
    pub fn finish(mut self) -> (Vec<Expected>, Vec<Borderline>) {
        self.done.append(&mut self.open);
        let at = |s: u32| self.t0_ms + i64::from(s) * 1000;
        let (mut exp, mut border) = (Vec::new(), Vec::new());
        for st in &self.done {
            let from = at(st.start_s) - 30_000;
            let to = at(st.last_in_s);
            if let Some(c) = st.clear_at_s {
                exp.push(Expected {
                    rule: st.rule.to_string(),
                    vin: self.vin.clone(),
                    start_from_ms: from,
                    start_to_ms: to,
                    due_ms: at(c) + 10_000,
                    late: false,
                });
            } else if st.in_s >= BORDERLINE_COMPLIANT_S {
                let violation = st.in_s >= MIN_INSIDE_S;
                border.push(Borderline {
                    rule: st.rule.to_string(),
                    vin: self.vin.clone(),
                    from_ms: from,
                    to_ms: to,
                    side: if violation { "violation" } else { "compliant" }.into(),
                    reason: format!(
                        "zone {}: truly inside {} s, longest stretch ≥ {CLEAR_DEPTH_M} m deep with a good fix {} s (clear needs {CLEAR_STREAK_S} s)",
                        st.zone_id, st.in_s, st.best_streak
                    ),
                });
            }
        }
        (exp, border)
    }
}
