//! Per-vehicle zone tracking: R1 / R6 violations with dwell, and park gate passages.
//!
//! [`ZoneTracker::update`] is pure, like a [`Detector`](crate::detect::Detector): it reads one
//! record, updates the vehicle's [`ZoneTrackState`] and pushes outputs. Semantics (rules.md,
//! Common ground; numbers are policy defaults, see [`TrackerConfig`]):
//!
//! - Only records newer than every record seen before are used (strict time order; the lead runs
//!   late data through a fresh tracker in time order, see [`ZoneTracker::for_late_data`]).
//! - Records without a valid fix are ignored; so is a fix implying more than 200 km/h from the
//!   previous accepted fix (and more than 100 m away, the GNSS noise floor). Three consecutive
//!   fixes that agree with each other but not with the anchor re-anchor the track, so one bad
//!   anchor cannot blind the tracker.
//! - A zone *qualifies* at a fix when the fix is inside it, the zone is active (effective date and
//!   schedule), it applies to the vehicle, and no exemption covers the vehicle. For parks only
//!   "inside, active, applies" counts.
//! - Evidence (R1 / R6 zones): a qualifying fix is evidence of presence only when it lies at
//!   least `min_depth_m` inside the zone (no boundary within that distance: GNSS error drifts
//!   slowly, so fixes near a border prove nothing either way) and the tracker is not settling
//!   after a GPS gap (`reacquire_settle_s` after more than `max_dwell_step_s` without an
//!   accepted fix: the first fixes after reacquisition can be hundreds of metres off). Parks
//!   take any qualifying fix outside the settling period.
//! - Dwell: an episode starts at an evidence fix and is proven once `min_inside` of dwell is
//!   CREDITED: only steps between consecutive evidence fixes no longer than `max_dwell_step_s`
//!   count, so time in a GPS gap never does. Shallow or settling fixes neither credit nor
//!   discard; any non-qualifying fix before the proof discards the candidate, so GPS jitter
//!   across a boundary never proves anything. A gap longer than `max_fix_gap` drops an unproven
//!   candidate. Once proven, the violation (or the park "In" passage) is emitted with the ENTRY
//!   time (first evidence fix) as episode start, so replays derive the same id.
//! - Hysteresis: a proven episode continues on any inside fix, however shallow; fixes while
//!   settling after a gap neither continue nor end it.
//! - A proven episode ends after `min_outside` of continuous non-qualification; the end time and
//!   exit fix are those of the first non-qualifying fix. Re-qualifying during that grace period
//!   continues the same episode (one episode = one violation). Leaving the area, the schedule
//!   window ending, the zone's end date passing, or an exemption starting all count as
//!   non-qualification; the evidence says which (`end_reason`). A data gap neither opens nor
//!   closes anything. If a zone disappears from the zone set, its open episode closes at once
//!   (`zone_removed`); an unproven candidate is dropped.
//!
//! State stays small: an entry exists only for zones the vehicle is in (or just left, during the
//! grace period), with at most `max_track_samples` thinned points (≈ 8 bytes each in postcard).
use super::index::{ZoneIdx, ZoneSet};
use super::zone::{Zone, ZoneKind, RULE_R1, RULE_R6_BANNED_STAGE};
use crate::model::{
    Fix, TelemetryRecord, TimestampMs, Vehicle, Vin, Violation, ViolationId, ViolationStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Tracker thresholds. All are policy defaults (rules.md), not limits from a standard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackerConfig {
    pub min_inside_s: u32,
    pub min_outside_s: u32,
    /// A fix implying a higher speed from the previous accepted fix is ignored.
    pub max_implied_speed_kmh: f64,
    /// Jumps shorter than this are never "implausible" (GNSS noise between close timestamps).
    pub jump_noise_floor_m: f64,
    /// A gap between accepted fixes longer than this restarts an unproven dwell.
    pub max_fix_gap_s: u32,
    /// R1 / R6 entry margin: a fix is evidence of presence for an unproven episode only when no
    /// zone boundary lies within this many metres of it (GNSS error drifts; see docs/rules.md).
    pub min_depth_m: f64,
    /// Longest step between two evidence fixes credited to the dwell; a longer one is a GPS gap,
    /// and time in a gap is never credited.
    pub max_dwell_step_s: u32,
    /// After a GPS gap (no accepted fix for more than `max_dwell_step_s`), fixes during this long
    /// are not evidence: the first fixes after reacquisition can be hundreds of metres off.
    pub reacquire_settle_s: u32,
    /// Bound on the track sample kept per episode (evenly thinned).
    pub max_track_samples: u16,
    pub park_min_inside_s: u32,
    pub park_min_outside_s: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_inside_s: 60,
            min_outside_s: 60,
            max_implied_speed_kmh: 200.0,
            jump_noise_floor_m: 100.0,
            max_fix_gap_s: 300,
            min_depth_m: 20.0,
            max_dwell_step_s: 10,
            reacquire_settle_s: 30,
            max_track_samples: 20,
            park_min_inside_s: 60,
            park_min_outside_s: 60,
        }
    }
}

/// Consecutive mutually consistent "implausible" fixes that re-anchor the track.
const REANCHOR_RUN: u8 = 3;

/// A fix as stored in state: time and 1e-7° integer coordinates (≈ 1 cm; compact in postcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackPoint {
    pub t: TimestampMs,
    pub lon_e7: i32,
    pub lat_e7: i32,
}

impl TrackPoint {
    fn new(t: TimestampMs, f: Fix) -> Self {
        // Fixes are range-checked (|lon| ≤ 180), so ×1e7 fits in i32; `as` saturates regardless.
        TrackPoint { t, lon_e7: (f.lon * 1e7).round() as i32, lat_e7: (f.lat * 1e7).round() as i32 }
    }

    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e7) / 1e7
    }

    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e7) / 1e7
    }

    pub fn fix(&self) -> Fix {
        Fix { lon: self.lon(), lat: self.lat(), valid: true }
    }

    fn json(&self) -> Value {
        json!({ "time_ms": self.t, "lon": self.lon(), "lat": self.lat() })
    }

    /// Great-circle distance in metres (haversine, mean Earth radius).
    fn distance_m(&self, o: &TrackPoint) -> f64 {
        let (la1, la2) = (self.lat().to_radians(), o.lat().to_radians());
        let dla = la2 - la1;
        let dlo = (o.lon() - self.lon()).to_radians();
        let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6_371_008.8 * h.sqrt().min(1.0).asin()
    }
}

/// Why a proven episode stopped qualifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    LeftZone,
    /// Schedule window ended or the effective period is over.
    ZoneInactive,
    Exempt,
    /// The vehicle's registry data changed (e.g. stage upgraded).
    NotApplicable,
    ZoneRemoved,
}

/// A sample point relative to the episode entry (keeps postcard encoding to a few bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Sample {
    dt_s: u32,
    dlon_e7: i32,
    dlat_e7: i32,
}

/// What a tracked zone produces, kept in state so an episode can be closed even if its zone is
/// removed or redefined meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Role {
    R1,
    R6BannedStage,
    Park(String),
}

impl Role {
    fn of(kind: &ZoneKind) -> Role {
        match kind {
            ZoneKind::RestrictionZone => Role::R1,
            ZoneKind::MachineryLowEmissionZone => Role::R6BannedStage,
            ZoneKind::Park { enterprise_id } => Role::Park(enterprise_id.clone()),
        }
    }

    fn rule(&self) -> Option<&'static str> {
        match self {
            Role::R1 => Some(RULE_R1),
            Role::R6BannedStage => Some(RULE_R6_BANNED_STAGE),
            Role::Park(_) => None,
        }
    }
}

/// One (vehicle, zone) episode, proven or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ZoneTrack {
    zone_id: String,
    role: Role,
    city_code: String,
    county_code: Option<String>,
    entry: TrackPoint,
    last_inside: TrackPoint,
    /// First non-qualifying fix since `last_inside`, and why.
    left: Option<(TrackPoint, EndReason)>,
    /// Dwell proven: the Open violation / In passage has been emitted.
    proven: bool,
    inside_fixes: u32,
    stride: u32,
    samples: Vec<Sample>,
    /// Dwell credited so far: steps between consecutive evidence fixes, none longer than
    /// `max_dwell_step_s` (ms). Decides the proof, not the elapsed time since entry.
    credited_ms: i64,
    /// Previous evidence fix of an unproven episode; `None` after a shallow or settling fix, so
    /// the step across them is not credited.
    last_evidence_t: Option<TimestampMs>,
}

impl ZoneTrack {
    fn new(zone: &Zone, p: TrackPoint) -> Self {
        let mut t = ZoneTrack {
            zone_id: zone.id.clone(),
            role: Role::of(&zone.kind),
            city_code: zone.city_code.clone(),
            county_code: zone.county_code.clone(),
            entry: p,
            last_inside: p,
            left: None,
            proven: false,
            inside_fixes: 0,
            stride: 1,
            samples: Vec::new(),
            credited_ms: 0,
            last_evidence_t: Some(p.t),
        };
        t.sample(p, usize::MAX);
        t
    }

    /// Keeps every `stride`-th inside fix; when full, drops every other sample and doubles the
    /// stride, so the sample stays evenly spread over the whole stay.
    fn sample(&mut self, p: TrackPoint, cap: usize) {
        if self.inside_fixes.is_multiple_of(self.stride) {
            self.samples.push(Sample {
                dt_s: u32::try_from((p.t - self.entry.t) / 1000).unwrap_or(u32::MAX),
                dlon_e7: p.lon_e7.saturating_sub(self.entry.lon_e7),
                dlat_e7: p.lat_e7.saturating_sub(self.entry.lat_e7),
            });
            if self.samples.len() >= cap.max(2) {
                let mut i = 0;
                self.samples.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = self.stride.saturating_mul(2);
            }
        }
        self.inside_fixes = self.inside_fixes.saturating_add(1);
    }
}

/// Per-vehicle state of the zone tracker. Serialisable (postcard) and persisted with each
/// commit, so a restart neither loses nor duplicates an episode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZoneTrackState {
    /// Newest record time used: older or equal records are ignored.
    last_ms: Option<TimestampMs>,
    /// Last accepted fix (the anchor of the jump check).
    last_fix: Option<TrackPoint>,
    /// Run of consecutive implausible-but-self-consistent fixes, for re-anchoring.
    suspect: Option<(TrackPoint, u8)>,
    /// Fixes before this time follow a GPS gap and are not evidence (reacquisition settling).
    settle_until: Option<TimestampMs>,
    tracks: Vec<ZoneTrack>,
}

impl ZoneTrackState {
    /// Number of zones with a live episode or candidate (0 for a vehicle outside every zone).
    pub fn tracked_zones(&self) -> usize {
        self.tracks.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassageDirection {
    In,
    Out,
}

/// A registered truck entering or leaving an enterprise park (clean-transport counting).
/// Deterministic: a replay of the same records yields the same passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkPassage {
    pub zone_id: String,
    pub enterprise_id: String,
    pub vin: Vin,
    pub direction: PassageDirection,
    /// In: first fix inside (entry); Out: first fix outside.
    pub time_ms: TimestampMs,
    pub fix: Fix,
}

pub struct ZoneTracker {
    cfg: TrackerConfig,
    late: bool,
}

/// How a zone relates to the vehicle at one fix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Qualifies,
    Not(EndReason),
}

impl ZoneTracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        ZoneTracker { cfg, late: false }
    }

    /// A tracker for re-evaluating late data (reissue, out-of-order): violations are marked
    /// `late` (stored and queryable, never a live alert).
    pub fn for_late_data(cfg: TrackerConfig) -> Self {
        ZoneTracker { cfg, late: true }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    fn status(
        &self,
        zones: &ZoneSet,
        idx: ZoneIdx,
        geo_hits: &[ZoneIdx],
        v: &Vehicle,
        t: TimestampMs,
    ) -> Status {
        let Some(zone) = zones.zone(idx) else { return Status::Not(EndReason::ZoneRemoved) };
        if !geo_hits.contains(&idx) {
            Status::Not(EndReason::LeftZone)
        } else if !zone.is_active(t) {
            Status::Not(EndReason::ZoneInactive)
        } else if !zone.applies_to(v) {
            Status::Not(EndReason::NotApplicable)
        } else if zone.kind.rule().is_some() && zones.exemption(zone, v, t).is_some() {
            Status::Not(EndReason::Exempt)
        } else {
            Status::Qualifies
        }
    }

    /// Feeds one record. Records must be in time order per vehicle; older ones are ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        state: &mut ZoneTrackState,
        vehicle: &Vehicle,
        record: &TelemetryRecord,
        zones: &ZoneSet,
        out: &mut Vec<Violation>,
        passages: &mut Vec<ParkPassage>,
    ) {
        let t = record.time_ms;
        if state.last_ms.is_some_and(|l| t <= l) {
            return;
        }
        state.last_ms = Some(t);
        let Some(fix) = record.valid_fix() else { return };
        let p = TrackPoint::new(t, fix);
        if !self.accept_jump(state, p) {
            return;
        }
        let gap_ms = state.last_fix.map(|f| t - f.t);
        state.last_fix = Some(p);
        let long_gap = gap_ms.is_some_and(|g| g > i64::from(self.cfg.max_fix_gap_s) * 1000);
        if gap_ms.is_some_and(|g| g > i64::from(self.cfg.max_dwell_step_s) * 1000) {
            state.settle_until = Some(t + i64::from(self.cfg.reacquire_settle_s) * 1000);
        }
        let settling = state.settle_until.is_some_and(|u| t < u);
        if !settling {
            state.settle_until = None;
        }

        let mut hits = Vec::new();
        zones.zones_at(fix.lon, fix.lat, &mut hits);
        let ctx = Ctx { tracker: self, vehicle, vin: record.vin, zones, p, settling };

        let mut tracks = std::mem::take(&mut state.tracks);
        tracks.retain_mut(|tr| {
            let idx = zones.index_of(&tr.zone_id);
            let status = match idx {
                Some(i) => self.status(zones, i, &hits, vehicle, t),
                None => Status::Not(EndReason::ZoneRemoved),
            };
            ctx.step(tr, idx, status, long_gap, out, passages)
        });
        for &idx in &hits {
            let Some(zone) = zones.zone(idx) else { continue };
            if tracks.iter().any(|tr| tr.zone_id == zone.id) {
                continue;
            }
            if self.status(zones, idx, &hits, vehicle, t) == Status::Qualifies && ctx.is_evidence(zone) {
                let mut tr = ZoneTrack::new(zone, p);
                // A zero dwell threshold proves the episode on its first fix.
                if ctx.step(&mut tr, Some(idx), Status::Qualifies, false, out, passages) {
                    tracks.push(tr);
                }
            }
        }
        state.tracks = tracks;
    }

    /// Jump filter with re-anchoring. Returns whether `p` is accepted.
    fn accept_jump(&self, state: &mut ZoneTrackState, p: TrackPoint) -> bool {
        let Some(prev) = state.last_fix else { return true };
        if self.plausible(&prev, &p) {
            state.suspect = None;
            return true;
        }
        let run = match state.suspect {
            Some((s, n)) if self.plausible(&s, &p) => n.saturating_add(1),
            _ => 1,
        };
        if run >= REANCHOR_RUN {
            state.suspect = None;
            return true;
        }
        state.suspect = Some((p, run));
        false
    }

    fn plausible(&self, a: &TrackPoint, b: &TrackPoint) -> bool {
        let d = a.distance_m(b);
        let dt_h = (b.t - a.t).max(1) as f64 / 3_600_000.0;
        d <= self.cfg.jump_noise_floor_m || d / 1000.0 / dt_h <= self.cfg.max_implied_speed_kmh
    }
}

/// Everything one record's processing needs, to keep `step` readable.
struct Ctx<'a> {
    tracker: &'a ZoneTracker,
    vehicle: &'a Vehicle,
    vin: Vin,
    zones: &'a ZoneSet,
    p: TrackPoint,
    /// The fix follows a GPS gap by less than `reacquire_settle_s`.
    settling: bool,
}

impl Ctx<'_> {
    /// Whether the current (qualifying) fix is evidence of presence for an unproven episode:
    /// not settling after a gap and, for rule zones, at least `min_depth_m` inside. Parks count
    /// gate passages of every truck, not violations, so they take any inside fix.
    fn is_evidence(&self, zone: &Zone) -> bool {
        if self.settling {
            return false;
        }
        zone.kind.rule().is_none()
            || !super::depth::boundary_within(
                &zone.geometry,
                self.p.lon(),
                self.p.lat(),
                self.tracker.cfg.min_depth_m,
            )
    }

    /// Advances one track by the current fix; returns whether the track is kept.
    fn step(
        &self,
        tr: &mut ZoneTrack,
        idx: Option<ZoneIdx>,
        status: Status,
        long_gap: bool,
        out: &mut Vec<Violation>,
        passages: &mut Vec<ParkPassage>,
    ) -> bool {
        let cfg = &self.tracker.cfg;
        let p = self.p;
        let zone = idx.and_then(|i| self.zones.zone(i));
        let is_park = matches!(tr.role, Role::Park(_));
        let (min_in, min_out) = if is_park {
            (cfg.park_min_inside_s, cfg.park_min_outside_s)
        } else {
            (cfg.min_inside_s, cfg.min_outside_s)
        };
        // A proven episode ignores fixes while reacquisition settles: they neither continue
        // nor end it (the first fixes after a gap can be far off either way).
        if tr.proven && self.settling {
            return true;
        }
        match status {
            Status::Qualifies => {
                if !tr.proven {
                    let evidence = zone.is_some_and(|z| self.is_evidence(z));
                    if long_gap {
                        match zone {
                            Some(z) if evidence => *tr = ZoneTrack::new(z, p),
                            _ => return false,
                        }
                    } else if evidence {
                        // Credit the step from the previous evidence fix unless it spans a gap.
                        if let Some(prev) = tr.last_evidence_t {
                            let step = p.t - prev;
                            if step <= i64::from(cfg.max_dwell_step_s) * 1000 {
                                tr.credited_ms = tr.credited_ms.saturating_add(step.max(0));
                            }
                        }
                        tr.last_evidence_t = Some(p.t);
                    } else {
                        tr.last_evidence_t = None;
                    }
                }
                if tr.last_inside != p {
                    tr.left = None;
                    tr.last_inside = p;
                    tr.sample(p, usize::from(cfg.max_track_samples));
                }
                if !tr.proven && tr.credited_ms >= i64::from(min_in) * 1000 {
                    tr.proven = true;
                    self.emit(tr, zone, ViolationStatus::Open, out, passages);
                }
                true
            }
            Status::Not(reason) => {
                if !tr.proven {
                    return false; // never proven: jitter or a short visit, leaves no trace
                }
                let (first_out, _) = *tr.left.get_or_insert((p, reason));
                let closing =
                    reason == EndReason::ZoneRemoved || p.t - first_out.t >= i64::from(min_out) * 1000;
                if closing {
                    self.emit(tr, zone, ViolationStatus::Closed, out, passages);
                    return false;
                }
                true
            }
        }
    }

    fn emit(
        &self,
        tr: &ZoneTrack,
        zone: Option<&Zone>,
        status: ViolationStatus,
        out: &mut Vec<Violation>,
        passages: &mut Vec<ParkPassage>,
    ) {
        let open = status == ViolationStatus::Open;
        match &tr.role {
            Role::Park(enterprise_id) => {
                let at = if open { tr.entry } else { tr.left.map_or(self.p, |l| l.0) };
                passages.push(ParkPassage {
                    zone_id: tr.zone_id.clone(),
                    enterprise_id: enterprise_id.clone(),
                    vin: self.vin,
                    direction: if open { PassageDirection::In } else { PassageDirection::Out },
                    time_ms: at.t,
                    fix: at.fix(),
                });
            }
            role => {
                if let Some(rule) = role.rule() {
                    out.push(self.violation(tr, rule, zone, status));
                }
            }
        }
    }

    fn violation(
        &self,
        tr: &ZoneTrack,
        rule: &'static str,
        zone: Option<&Zone>,
        status: ViolationStatus,
    ) -> Violation {
        let cfg = &self.tracker.cfg;
        let v = self.vehicle;
        let closed = status == ViolationStatus::Closed;
        let exit = tr.left.filter(|_| closed);
        let ended_ms = exit.map(|(p, _)| p.t).or(closed.then_some(tr.last_inside.t));
        let to_ms = ended_ms.unwrap_or(tr.last_inside.t);
        let dwell_s = (tr.last_inside.t - tr.entry.t) as f64 / 1000.0;
        let zone_json = match zone {
            Some(z) => json!({
                "id": z.id, "name": z.name, "kind": z.kind.label(), "schedule": z.schedule,
                "effective_from": z.effective_from, "effective_until": z.effective_until,
                "city_code": z.city_code, "county_code": z.county_code,
            }),
            None => json!({ "id": tr.zone_id, "removed": true }),
        };
        let name = zone.map_or(tr.zone_id.as_str(), |z| z.name.as_str());
        let who = if v.plate.is_empty() { self.vin.to_string() } else { v.plate.clone() };
        let summary = match rule {
            RULE_R1 => format!(
                "{who} ({:?} {:?} truck) inside restriction zone {name} for ≥ {} s while it was in force",
                v.fuel, v.emission_stage, cfg.min_inside_s
            ),
            _ => format!(
                "{who} ({} {:?}) working inside machinery low-emission zone {name} for ≥ {} s",
                if v.machine_type.is_empty() { "machine" } else { v.machine_type.as_str() },
                v.emission_stage,
                cfg.min_inside_s
            ),
        };
        let samples: Vec<Value> = tr
            .samples
            .iter()
            .map(|s| {
                let pt = TrackPoint {
                    t: tr.entry.t + i64::from(s.dt_s) * 1000,
                    lon_e7: tr.entry.lon_e7.saturating_add(s.dlon_e7),
                    lat_e7: tr.entry.lat_e7.saturating_add(s.dlat_e7),
                };
                json!([pt.t, pt.lon(), pt.lat()])
            })
            .collect();
        let mut evidence = json!({
            "zone": zone_json,
            "entry_fix": tr.entry.json(),
            "last_inside_fix": tr.last_inside.json(),
            "dwell_s": dwell_s,
            "credited_dwell_s": tr.credited_ms as f64 / 1000.0,
            "inside_fixes": tr.inside_fixes,
            "vehicle": {
                "kind": v.kind, "fuel": v.fuel, "emission_stage": v.emission_stage,
                "machine_type": v.machine_type,
            },
            "track": { "vin": self.vin.as_str(), "from_ms": tr.entry.t, "to_ms": to_ms },
            "track_sample": {
                "points": samples,
                "format": "[time_ms, lon, lat], WGS-84",
                "every_nth_inside_fix": tr.stride,
                "max_points": cfg.max_track_samples,
            },
        });
        if let (Some((p, reason)), Some(obj)) = (exit, evidence.as_object_mut()) {
            obj.insert("exit_fix".into(), p.json());
            obj.insert("end_reason".into(), json!(reason));
        }
        Violation {
            id: ViolationId::derive(&self.vin, rule, &tr.zone_id, tr.entry.t),
            rule: rule.into(),
            vin: self.vin,
            plate: v.plate.clone(),
            status,
            late: self.tracker.late,
            started_ms: tr.entry.t,
            ended_ms,
            position: Some(tr.entry.fix()),
            zone_id: Some(tr.zone_id.clone()),
            city_code: Some(tr.city_code.clone()).filter(|c| !c.is_empty()),
            county_code: tr.county_code.clone(),
            summary,
            thresholds: json!({
                "source": "policy default (rules.md, Common ground: dwell, implausible jumps)",
                "min_inside_s": cfg.min_inside_s,
                "min_outside_s": cfg.min_outside_s,
                "max_implied_speed_kmh": cfg.max_implied_speed_kmh,
                "max_fix_gap_s": cfg.max_fix_gap_s,
                "min_depth_m": cfg.min_depth_m,
                "max_dwell_step_s": cfg.max_dwell_step_s,
                "reacquire_settle_s": cfg.reacquire_settle_s,
            }),
            measured: None,
            evidence,
        }
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
