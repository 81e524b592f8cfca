//! R2: black smoke (冒黑烟), from two sources (rules.md).
//!
//! **Terminal opacity** (`TelemetryRecord::opacity_k`, rule id `R2.opacity`): a violation when k
//! exceeds the vehicle's limit for ≥ 10 s of accumulated time within a trailing 60 s window (policy
//! default), counted like R3 with a [`WindowCounter`]. An episode closes when the window has held no
//! exceedance for a whole window length (60 s of samples with k present and within the limit).
//! Absent k neither counts, nor lets time pass, nor closes. One sample stands for at most
//! `max_sample_gap_s` (2 s) so that a single reading after a gap can never prove 10 s.
//!
//! **Roadside records** (rule id `R2.roadside`): [`evaluate_roadside`] judges one remote-sensing or
//! black-smoke-camera record on its own: Ringelmann > level 1, or k above the matched vehicle's
//! limit. A roadside record is a single past observation, so its violation is emitted once,
//! already `Closed` (started = ended = observation time), with an id derived from the record's
//! plate, device and time: resubmitting the record yields the same id.
//!
//! **Limits** ([`k_limit`]): on-road diesel GB 3847-2018 limit b 0.7 m⁻¹ (Zhejiang key regions,
//! default) or limit a 1.2 m⁻¹; non-road machinery per GB 36886-2018 class (from the non-road
//! emission stage) and rated power, from the UNVERIFIED table [`NON_ROAD_K_LIMITS`]. Vehicles
//! whose fuel is gas, petrol, electric or hydrogen have no k limit (opacity is a diesel test);
//! Ringelmann applies to every vehicle, since visible black smoke is a violation whatever the fuel.
use super::episode::{
    skeleton, th, track, Stats, POLICY_DEFAULT, STANDARD_GB36886, STANDARD_GB3847, UNVERIFIED,
};
use super::window::{sample_duration_ms, WindowCounter, WindowSpec};
use super::{Detector, Observation};
use crate::model::{
    EmissionStage, Fix, Fuel, Measured, RoadsideRecord, TimestampMs, Vehicle, VehicleKind, Violation,
    ViolationStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const RULE_OPACITY: &str = "R2.opacity";
pub const RULE_ROADSIDE: &str = "R2.roadside";

/// Which GB 3847-2018 free-acceleration limit applies to on-road diesel vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRoadLimit {
    /// Limit a: k ≤ 1.2 m⁻¹.
    A,
    /// Limit b (key regions, Zhejiang): k ≤ 0.7 m⁻¹.
    #[default]
    B,
}

/// GB 36886-2018 light-absorption limits for non-road diesel machinery, in m⁻¹, by class and rated
/// power column (`< power_breaks_kw[0]`, between, `≥ power_breaks_kw[1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonRoadKTable {
    pub power_breaks_kw: [f64; 2],
    /// Class I: Stage I–II (and, by our choice, machinery before Stage I or of unknown stage).
    pub class_i: [f64; 3],
    /// Class II: Stage III.
    pub class_ii: [f64; 3],
    /// Class III: Stage IV.
    pub class_iii: [f64; 3],
}

/// UNVERIFIED (rules.md R2): to be confirmed against the text of GB 36886-2018. The one place to
/// correct them; the config file can override it.
pub const NON_ROAD_K_LIMITS: NonRoadKTable = NonRoadKTable {
    power_breaks_kw: [19.0, 37.0],
    class_i: [3.00, 2.00, 1.61],
    class_ii: [2.00, 1.00, 0.80],
    class_iii: [0.50, 0.50, 0.50],
};

impl Default for NonRoadKTable {
    fn default() -> Self {
        NON_ROAD_K_LIMITS
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmokeConfig {
    pub on_road_limit: OnRoadLimit,
    pub limit_a_k: f64,
    pub limit_b_k: f64,
    pub non_road: NonRoadKTable,
    /// Highest Ringelmann level that is not a violation (both standards: > level 1 violates).
    pub max_ringelmann: u8,
    pub min_exceed_s: u32,
    pub window_s: u32,
    pub max_sample_gap_s: u32,
    /// Warm-up gate: terminal opacity counts only once the coolant is at least this warm
    /// (condensing water vapour after a cold start reads as smoke).
    pub warm_up_min_coolant_c: f64,
    /// Without a coolant value, the engine must have run this long without a stop instead.
    pub warm_up_min_running_s: u32,
}

impl Default for SmokeConfig {
    fn default() -> Self {
        SmokeConfig {
            on_road_limit: OnRoadLimit::B,
            limit_a_k: 1.2,
            limit_b_k: 0.7,
            non_road: NON_ROAD_K_LIMITS,
            max_ringelmann: 1,
            min_exceed_s: 10,
            window_s: 60,
            max_sample_gap_s: 2,
            warm_up_min_coolant_c: 70.0,
            warm_up_min_running_s: 600,
        }
    }
}

/// The k limit in force for one vehicle, with where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct KLimit {
    pub k: f64,
    pub source: &'static str,
    /// Human-readable basis, e.g. "on-road limit b" or "non-road class II, 19–37 kW".
    pub basis: String,
}

/// The vehicle's opacity limit; `None` when no k limit applies (not a diesel engine).
pub fn k_limit(vehicle: &Vehicle, cfg: &SmokeConfig) -> Option<KLimit> {
    if matches!(vehicle.fuel, Fuel::Gas | Fuel::Petrol | Fuel::Electric | Fuel::Hydrogen) {
        return None;
    }
    match vehicle.kind {
        VehicleKind::Truck => Some(on_road_limit(cfg)),
        VehicleKind::NonRoadMachine => Some(non_road_limit(vehicle, &cfg.non_road)),
    }
}

fn on_road_limit(cfg: &SmokeConfig) -> KLimit {
    let (k, basis) = match cfg.on_road_limit {
        OnRoadLimit::A => (cfg.limit_a_k, "on-road limit a"),
        OnRoadLimit::B => (cfg.limit_b_k, "on-road limit b"),
    };
    KLimit { k, source: STANDARD_GB3847, basis: basis.into() }
}

fn non_road_limit(vehicle: &Vehicle, t: &NonRoadKTable) -> KLimit {
    let (row, class) = match vehicle.emission_stage {
        EmissionStage::NonRoadIV => (&t.class_iii, "III"),
        EmissionStage::NonRoadIII => (&t.class_ii, "II"),
        _ => (&t.class_i, "I"),
    };
    let [lo_kw, hi_kw] = t.power_breaks_kw;
    let [small, medium, large] = *row;
    // Unknown rated power: the most lenient column, so a registry gap never creates a violation.
    let (k, band) = match vehicle.rated_power_kw {
        Some(p) if p >= hi_kw => (large, format!("≥ {hi_kw} kW")),
        Some(p) if p >= lo_kw => (medium, format!("{lo_kw}–{hi_kw} kW")),
        Some(_) => (small, format!("< {lo_kw} kW")),
        None => (small, "rated power unknown, most lenient column".into()),
    };
    KLimit { k, source: UNVERIFIED, basis: format!("non-road GB 36886-2018 class {class}, {band}") }
}

fn ringelmann_source(kind: VehicleKind) -> &'static str {
    match kind {
        VehicleKind::Truck => STANDARD_GB3847,
        VehicleKind::NonRoadMachine => STANDARD_GB36886,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeState {
    /// Time of the previous sample that carried a k value.
    prev_ms: Option<TimestampMs>,
    window: WindowCounter,
    episode: Option<Episode>,
    /// Engine running since / last seen running, tracked only while no coolant value comes
    /// (the warm-up gate's fallback); `None` otherwise, so a normal vehicle keeps one byte.
    running: Option<(TimestampMs, TimestampMs)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Episode {
    started_ms: TimestampMs,
    last_exceed_ms: TimestampMs,
    opened: bool,
    stats: Stats,
}

pub struct SmokeDetector {
    cfg: SmokeConfig,
    spec: WindowSpec,
}

impl SmokeDetector {
    pub fn new(cfg: SmokeConfig) -> Self {
        let spec = WindowSpec::seconds(cfg.window_s);
        SmokeDetector { cfg, spec }
    }

    fn violation(
        &self,
        ep: &Episode,
        obs: &Observation<'_>,
        lim: &KLimit,
        status: ViolationStatus,
    ) -> Violation {
        let vin = obs.record.vin;
        let mut v = skeleton(RULE_OPACITY, "", vin, obs.vehicle, ep.started_ms, status);
        let measured = ep.stats.measured();
        v.ended_ms = (status == ViolationStatus::Closed).then_some(ep.last_exceed_ms);
        v.position = obs.record.valid_fix();
        v.summary = format!(
            "smoke opacity above k = {} m⁻¹ ({}) for {:.0} s within {} s (terminal opacity meter)",
            lim.k,
            lim.basis,
            measured.map_or(0.0, |m| m.seconds),
            self.cfg.window_s
        );
        v.thresholds = json!({
            "k_limit_per_m": th(lim.k, lim.source),
            "k_limit_basis": lim.basis,
            "min_exceed_s": th(f64::from(self.cfg.min_exceed_s), POLICY_DEFAULT),
            "window_s": th(f64::from(self.cfg.window_s), POLICY_DEFAULT),
            "warm_up": {
                "min_coolant_c": th(self.cfg.warm_up_min_coolant_c, POLICY_DEFAULT),
                "min_running_s_without_coolant": th(f64::from(self.cfg.warm_up_min_running_s), POLICY_DEFAULT),
            },
        });
        v.measured = measured;
        v.evidence = json!({
            "quantity": "opacity_k_per_m",
            "window_start_ms": ep.started_ms,
            "window_end_ms": ep.last_exceed_ms,
            "first_exceedance_ms": ep.started_ms,
            "last_exceedance_ms": ep.last_exceed_ms,
            "track": track(&vin, ep.started_ms, ep.last_exceed_ms),
        });
        v
    }
}

impl SmokeDetector {
    /// The warm-up gate, updating the engine-running memory: warm when the coolant is at least
    /// `warm_up_min_coolant_c`, or, with no coolant value, when the engine has run for
    /// `warm_up_min_running_s` counted from the first record without one (a stop, or no running
    /// record for 60 s, restarts it). No engine data at all: warm-up unknown, not warm.
    fn warm_up(&self, st: &mut SmokeState, obs: &Observation<'_>) -> bool {
        let t = obs.record.time_ms;
        let Some(e) = obs.record.engine.as_ref() else { return false };
        if let Some(c) = e.coolant_temp_c {
            st.running = None;
            return c >= self.cfg.warm_up_min_coolant_c;
        }
        match e.engine_speed_rpm {
            Some(rpm) if rpm > 0.0 => {
                let since = match st.running {
                    Some((since, last)) if t >= last && t - last <= 60_000 => since,
                    _ => t,
                };
                st.running = Some((since, t.max(st.running.map_or(t, |r| r.1))));
            }
            Some(_) => st.running = None,
            None => {}
        }
        st.running.is_some_and(|(since, last)| {
            last == t && t - since >= i64::from(self.cfg.warm_up_min_running_s) * 1000
        })
    }
}

impl Detector for SmokeDetector {
    type State = SmokeState;

    fn rule(&self) -> &'static str {
        RULE_OPACITY
    }

    fn update(&self, st: &mut SmokeState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        let t = obs.record.time_ms;
        let warm = self.warm_up(st, obs);
        let Some(k) = obs.record.opacity_k else { return };
        let Some(lim) = k_limit(obs.vehicle, &self.cfg) else { return };
        // A cold engine's reading is absent for the rule: it neither counts, nor clears, nor
        // lets time pass.
        if !warm {
            return;
        }
        let dt = sample_duration_ms(st.prev_ms, t, i64::from(self.cfg.max_sample_gap_s) * 1000);
        st.prev_ms = Some(t.max(st.prev_ms.unwrap_or(i64::MIN)));

        st.window.advance(self.spec, t);
        if k > lim.k {
            st.window.add(self.spec, t, dt);
            let ep = st.episode.get_or_insert(Episode {
                started_ms: t,
                last_exceed_ms: t,
                opened: false,
                stats: Stats::default(),
            });
            ep.last_exceed_ms = t;
            ep.stats.add(k, dt);
        }

        let total = i64::try_from(st.window.total_ms()).unwrap_or(i64::MAX);
        if let Some(ep) = st.episode.as_mut() {
            if !ep.opened && total >= i64::from(self.cfg.min_exceed_s) * 1000 {
                ep.opened = true;
                // The episode starts at the oldest exceedance of the window that proves it, not
                // at a glitch that merely kept the window from emptying long before.
                if let Some(oldest) = st.window.oldest_counted_ms(self.spec) {
                    ep.started_ms = ep.started_ms.max(oldest);
                }
                out.push(self.violation(ep, obs, &lim, ViolationStatus::Open));
            }
        }
        if total == 0 {
            if let Some(ep) = st.episode.take() {
                if ep.opened {
                    out.push(self.violation(&ep, obs, &lim, ViolationStatus::Closed));
                }
            }
        }
    }
}

/// What a roadside record amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum RoadsideOutcome {
    /// Matched vehicle over its limit: store this (already `Closed`) violation.
    Violation(Box<Violation>),
    /// Within the limits that apply: nothing to store beyond the record itself.
    Compliant,
    /// Over the limit, but no violation can be made: no registered vehicle for the plate, or the
    /// registered vehicle has no VIN. Stored by the caller in its own list, keyed by `key`.
    Unmatched(UnmatchedRoadside),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmatchedRoadside {
    /// [`RoadsideRecord::key`]: stable across resubmission.
    pub key: String,
    /// Normalised plate.
    pub plate: String,
    pub time_ms: TimestampMs,
    pub device_id: String,
    /// "no registered vehicle" or "registered vehicle has no VIN".
    pub reason: String,
    pub summary: String,
    pub thresholds: Value,
    pub evidence: Value,
}

/// Judges one roadside record (assumed validated with [`RoadsideRecord::validate`]) against the
/// matched vehicle's limits. Without a vehicle, the on-road diesel limit is assumed (roadside
/// devices watch roads) and an over-limit record comes back as [`RoadsideOutcome::Unmatched`].
pub fn evaluate_roadside(
    rec: &RoadsideRecord,
    vehicle: Option<&Vehicle>,
    cfg: &SmokeConfig,
) -> RoadsideOutcome {
    let (limit, ringel_src) = match vehicle {
        Some(v) => (k_limit(v, cfg), ringelmann_source(v.kind)),
        None => (Some(on_road_limit(cfg)), STANDARD_GB3847),
    };
    let ringel_over = rec.ringelmann.filter(|&r| r > cfg.max_ringelmann);
    let k_over = match (rec.k_per_m, &limit) {
        (Some(k), Some(l)) if k > l.k => Some(k),
        _ => None,
    };
    if ringel_over.is_none() && k_over.is_none() {
        return RoadsideOutcome::Compliant;
    }

    let key = rec.key();
    let mut findings = Vec::new();
    if let Some(r) = ringel_over {
        findings.push(format!("Ringelmann level {r} > {}", cfg.max_ringelmann));
    }
    if let (Some(k), Some(l)) = (k_over, &limit) {
        findings.push(format!("k = {k} m⁻¹ > {} m⁻¹ ({})", l.k, l.basis));
    }
    let summary =
        format!("black smoke seen by roadside device {}: {}", rec.device_id.trim(), findings.join("; "));
    let mut thresholds = json!({ "max_ringelmann": th(f64::from(cfg.max_ringelmann), ringel_src) });
    if let (Some(l), Some(obj)) = (&limit, thresholds.as_object_mut()) {
        obj.insert("k_limit_per_m".into(), th(l.k, l.source));
        obj.insert("k_limit_basis".into(), Value::String(l.basis.clone()));
    }
    let evidence = json!({
        "roadside_key": key,
        "device_id": rec.device_id.trim(),
        "source": rec.source,
        "plate_as_read": rec.plate,
        "plate_colour": rec.plate_colour,
        "time_ms": rec.time_ms,
        "lon": rec.lon,
        "lat": rec.lat,
        "ringelmann": rec.ringelmann,
        "k_per_m": rec.k_per_m,
        "evidence_ref": rec.evidence_ref,
        "window_start_ms": rec.time_ms,
        "window_end_ms": rec.time_ms,
    });

    let matched = vehicle.and_then(|v| v.vin.map(|vin| (v, vin)));
    let Some((v, vin)) = matched else {
        let reason =
            if vehicle.is_some() { "registered vehicle has no VIN" } else { "no registered vehicle" };
        return RoadsideOutcome::Unmatched(UnmatchedRoadside {
            key,
            plate: crate::model::normalize_plate(&rec.plate),
            time_ms: rec.time_ms,
            device_id: rec.device_id.trim().to_string(),
            reason: reason.into(),
            summary,
            thresholds,
            evidence,
        });
    };
    let mut out = skeleton(RULE_ROADSIDE, &key, vin, v, rec.time_ms, ViolationStatus::Closed);
    out.ended_ms = Some(rec.time_ms);
    out.position = Some(Fix { lon: rec.lon, lat: rec.lat, valid: true }).filter(Fix::in_range);
    out.summary = summary;
    out.thresholds = thresholds;
    out.measured = rec.k_per_m.map(|k| Measured { min: k, max: k, mean: k, samples: 1, seconds: 0.0 });
    let mut evidence = evidence;
    if let Some(obj) = evidence.as_object_mut() {
        obj.insert("track".into(), track(&vin, rec.time_ms, rec.time_ms));
    }
    out.evidence = evidence;
    RoadsideOutcome::Violation(Box::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::detect::VehicleState;
    use crate::model::{EngineData, PlateColour, RoadsideSource, TelemetryRecord};

    fn opacity(t: i64, k: Option<f64>) -> TelemetryRecord {
        let mut r = record(t, warm(900.0, 100.0));
        r.opacity_k = k;
        r
    }

    fn run_on(v: &Vehicle, trace: impl IntoIterator<Item = (i64, Option<f64>)>) -> Vec<Violation> {
        let d = SmokeDetector::new(SmokeConfig::default());
        let mut st = SmokeState::default();
        let mut out = Vec::new();
        for (t, k) in trace {
            let r = opacity(t, k);
            d.update(&mut st, &Observation { vehicle: v, record: &r, received_ms: t }, &mut out);
        }
        out
    }

    fn run(trace: impl IntoIterator<Item = (i64, Option<f64>)>) -> Vec<Violation> {
        run_on(&truck(EmissionStage::ChinaV), trace)
    }

    fn secs(from: i64, to: i64, k: Option<f64>) -> impl Iterator<Item = (i64, Option<f64>)> {
        (from..to).map(move |s| (T0 + s * 1000, k))
    }

    #[test]
    fn clear_smoke_fires_once_and_closes() {
        let out = run(secs(0, 30, Some(1.5)).chain(secs(30, 200, Some(0.3))));
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0].status, ViolationStatus::Open);
        assert_eq!(out[0].rule, RULE_OPACITY);
        assert_eq!(out[0].started_ms, T0);
        assert_eq!(out[1].status, ViolationStatus::Closed);
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[1].ended_ms, Some(T0 + 29_000));
        let m = out[1].measured.unwrap_or_else(|| panic!("measured"));
        assert_eq!((m.min, m.max, m.samples), (1.5, 1.5, 30));
        assert_eq!(out[0].thresholds["k_limit_per_m"]["value"], 0.7);
        assert_eq!(out[0].thresholds["k_limit_per_m"]["source"], STANDARD_GB3847);
        assert_eq!(out[0].thresholds["min_exceed_s"]["source"], POLICY_DEFAULT);
        assert_eq!(out[0].evidence["track"]["from_ms"], T0);
    }

    #[test]
    fn borderline_does_not_fire() {
        // 9 s above the limit, then exactly at the limit (not above) for a long time.
        assert!(run(secs(0, 9, Some(1.5)).chain(secs(9, 300, Some(0.7)))).is_empty());
        // 9 s in each of two windows more than 60 s apart never adds up to 10 s.
        assert!(run(secs(0, 9, Some(1.5)).chain(secs(9, 80, Some(0.1))).chain(secs(80, 89, Some(1.5))))
            .is_empty());
    }

    #[test]
    fn intermittent_smoke_within_window_fires() {
        // 1 s in 3 above the limit: 10 s accumulate within 30 s.
        let trace = (0..60).map(|s| (T0 + s * 1000, Some(if s % 3 == 0 { 2.0 } else { 0.2 })));
        let out = run(trace);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, ViolationStatus::Open);
    }

    #[test]
    fn absent_values_never_fire_or_close() {
        assert!(run(secs(0, 600, None)).is_empty());
        // Sparse readings: one every 30 s never proves 10 s (each stands for ≤ 2 s).
        assert!(run((0..100).map(|i| (T0 + i * 30_000, Some(3.0)))).is_empty());
        let out = run(secs(0, 20, Some(1.5)).chain(secs(20, 2000, None)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, ViolationStatus::Open);
    }

    #[test]
    fn limits_follow_the_vehicle() {
        // 1.0 m⁻¹ passes limit a and fails limit b.
        let cfg_a = SmokeConfig { on_road_limit: OnRoadLimit::A, ..Default::default() };
        let v = truck(EmissionStage::ChinaV);
        assert_eq!(k_limit(&v, &cfg_a).map(|l| l.k), Some(1.2));
        assert_eq!(k_limit(&v, &SmokeConfig::default()).map(|l| l.k), Some(0.7));
        let gas = Vehicle { fuel: Fuel::Gas, ..truck(EmissionStage::ChinaVI) };
        assert!(k_limit(&gas, &SmokeConfig::default()).is_none());
        assert!(run_on(&gas, secs(0, 100, Some(5.0))).is_empty());

        let cfg = SmokeConfig::default();
        let m = |stage, kw| {
            let v = Vehicle { emission_stage: stage, rated_power_kw: kw, ..machine("") };
            k_limit(&v, &cfg).map(|l| (l.k, l.source))
        };
        assert_eq!(m(EmissionStage::NonRoadII, Some(10.0)), Some((3.00, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadI, Some(19.0)), Some((2.00, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadI, Some(37.0)), Some((1.61, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadIII, Some(30.0)), Some((1.00, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadIII, Some(75.0)), Some((0.80, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadIV, Some(75.0)), Some((0.50, UNVERIFIED)));
        assert_eq!(m(EmissionStage::NonRoadIII, None), Some((2.00, UNVERIFIED)));
        assert_eq!(m(EmissionStage::Unknown, None), Some((3.00, UNVERIFIED)));
        // A Stage III 75 kW excavator at 1.0 m⁻¹ is over its 0.80 limit; a truck at limit a is not.
        let exc =
            Vehicle { emission_stage: EmissionStage::NonRoadIII, rated_power_kw: Some(75.0), ..machine("") };
        assert_eq!(run_on(&exc, secs(0, 20, Some(1.0))).len(), 1);
    }

    #[test]
    fn restored_state_continues_to_one_violation() {
        let d = SmokeDetector::new(SmokeConfig::default());
        let v = truck(EmissionStage::ChinaV);
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        for (i, (t, k)) in secs(0, 30, Some(1.5)).chain(secs(30, 200, Some(0.3))).enumerate() {
            if i % 7 == 3 {
                st = VehicleState::decode(&st.encode()).unwrap_or_else(|e| panic!("{e}"));
            }
            let r = opacity(t, k);
            d.update(&mut st.smoke, &Observation { vehicle: &v, record: &r, received_ms: t }, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].id, out[1].id);
    }

    fn roadside(ringelmann: Option<u8>, k: Option<f64>) -> RoadsideRecord {
        RoadsideRecord {
            plate: "浙A·12345".into(),
            plate_colour: PlateColour::Yellow,
            time_ms: T0,
            lon: 120.15,
            lat: 30.28,
            ringelmann,
            k_per_m: k,
            device_id: "HZ-RS-007".into(),
            source: RoadsideSource::RemoteSensing,
            evidence_ref: Some("photo/2025/11/01/0001.jpg".into()),
        }
    }

    #[test]
    fn roadside_matched_vehicle_violation_is_idempotent() {
        let v = truck(EmissionStage::ChinaV);
        let cfg = SmokeConfig::default();
        let RoadsideOutcome::Violation(a) = evaluate_roadside(&roadside(Some(2), None), Some(&v), &cfg)
        else {
            panic!("expected a violation")
        };
        assert_eq!(a.rule, RULE_ROADSIDE);
        assert_eq!(a.status, ViolationStatus::Closed);
        assert_eq!((a.started_ms, a.ended_ms), (T0, Some(T0)));
        assert_eq!(a.thresholds["max_ringelmann"]["source"], STANDARD_GB3847);
        assert_eq!(a.evidence["device_id"], "HZ-RS-007");
        // Resubmission (even with the plate spelled differently) gives the same id.
        let mut again = roadside(Some(2), None);
        again.plate = "浙a12345".into();
        let RoadsideOutcome::Violation(b) = evaluate_roadside(&again, Some(&v), &cfg) else {
            panic!("expected a violation")
        };
        assert_eq!(a.id, b.id);
        // k over limit b, Ringelmann fine.
        let RoadsideOutcome::Violation(c) = evaluate_roadside(&roadside(Some(0), Some(0.9)), Some(&v), &cfg)
        else {
            panic!("expected a violation")
        };
        assert_eq!(c.measured.map(|m| m.max), Some(0.9));
        // Same plate, device and time: the same observation, the same id.
        assert_eq!(c.id, a.id);
        let mut later = roadside(Some(2), None);
        later.time_ms += 1000;
        let RoadsideOutcome::Violation(d) = evaluate_roadside(&later, Some(&v), &cfg) else {
            panic!("expected a violation")
        };
        assert_ne!(d.id, a.id);
    }

    #[test]
    fn roadside_ringelmann_one_and_low_k_do_not_fire() {
        let v = truck(EmissionStage::ChinaV);
        let cfg = SmokeConfig::default();
        assert_eq!(evaluate_roadside(&roadside(Some(1), None), Some(&v), &cfg), RoadsideOutcome::Compliant);
        assert_eq!(
            evaluate_roadside(&roadside(Some(1), Some(0.7)), Some(&v), &cfg),
            RoadsideOutcome::Compliant
        );
        assert_eq!(evaluate_roadside(&roadside(Some(1), Some(0.7)), None, &cfg), RoadsideOutcome::Compliant);
        // A gas truck has no k limit, but Ringelmann still applies.
        let gas = Vehicle { fuel: Fuel::Gas, ..truck(EmissionStage::ChinaVI) };
        assert_eq!(
            evaluate_roadside(&roadside(None, Some(5.0)), Some(&gas), &cfg),
            RoadsideOutcome::Compliant
        );
        assert!(matches!(
            evaluate_roadside(&roadside(Some(3), None), Some(&gas), &cfg),
            RoadsideOutcome::Violation(_)
        ));
    }

    #[test]
    fn roadside_unmatched_plate() {
        let cfg = SmokeConfig::default();
        let RoadsideOutcome::Unmatched(u) = evaluate_roadside(&roadside(Some(3), Some(1.0)), None, &cfg)
        else {
            panic!("expected unmatched")
        };
        assert_eq!(u.plate, "浙A12345");
        assert_eq!(u.reason, "no registered vehicle");
        assert_eq!(u.key, roadside(None, None).key());
        assert_eq!(u.thresholds["k_limit_per_m"]["value"], 0.7);
        let no_vin = Vehicle { vin: None, ..truck(EmissionStage::ChinaV) };
        let RoadsideOutcome::Unmatched(u) = evaluate_roadside(&roadside(Some(3), None), Some(&no_vin), &cfg)
        else {
            panic!("expected unmatched")
        };
        assert_eq!(u.reason, "registered vehicle has no VIN");
    }

    fn run_engine(trace: impl IntoIterator<Item = (i64, Option<EngineData>, f64)>) -> Vec<Violation> {
        let d = SmokeDetector::new(SmokeConfig::default());
        let v = truck(EmissionStage::ChinaV);
        let mut st = SmokeState::default();
        let mut out = Vec::new();
        for (s, e, k) in trace {
            let mut r = record(T0 + s * 1000, e.unwrap_or_default());
            r.engine = e;
            r.opacity_k = Some(k);
            d.update(&mut st, &Observation { vehicle: &v, record: &r, received_ms: r.time_ms }, &mut out);
        }
        out
    }

    /// Acceleration puffs (2 s above the limit every 40 s) never prove smoke, and when real smoke
    /// follows, the violation starts within the window that proved it, not at the first puff.
    #[test]
    fn puffs_do_not_fire_nor_stretch_the_episode_start() {
        let puffs = (0..600).map(|s| (T0 + s * 1000, Some(if s % 40 < 2 { 0.9 } else { 0.2 })));
        assert!(run(puffs.clone()).is_empty());
        let out = run(puffs.chain(secs(600, 630, Some(2.0))));
        assert_eq!(out.len(), 1);
        assert!(out[0].started_ms >= T0 + 540_000, "{}", out[0].started_ms - T0);
    }

    /// Failure mode (e): cold-start steam (k 1.5 for 30 s at 20 °C coolant) is not black smoke.
    /// The same reading from a warm engine is.
    #[test]
    fn cold_start_steam_is_not_smoke() {
        let at = |coolant: Option<f64>| EngineData { coolant_temp_c: coolant, ..warm(900.0, 100.0) };
        let steam = (0..30).map(|s| (s, Some(at(Some(20.0))), 1.5));
        let warming = (30..900).map(|s| (s, Some(at(Some(20.0 + s as f64 / 15.0))), 0.3));
        assert!(run_engine(steam.chain(warming)).is_empty());
        assert_eq!(run_engine((0..30).map(|s| (s, Some(at(Some(85.0))), 1.5))).len(), 1);
        // No coolant value: the engine must have run 600 s since it started.
        let no_coolant = at(None);
        assert!(run_engine((0..30).map(|s| (s, Some(no_coolant), 1.5))).is_empty());
        let out = run_engine((0..620).map(|s| (s, Some(no_coolant), if s < 590 { 0.3 } else { 1.5 })));
        assert_eq!(out.len(), 1);
        // A stop restarts the count.
        let stopped = EngineData { engine_speed_rpm: Some(0.0), ..no_coolant };
        let trace = (0..620).map(|s| (s, Some(if s == 300 { stopped } else { no_coolant }), 1.5));
        assert!(run_engine(trace).is_empty());
        // No engine data at all: warm-up unknown, not judged.
        assert!(run_engine((0..60).map(|s| (s, None, 1.5))).is_empty());
        assert!(run_engine((0..60).map(|s| (s, Some(EngineData::default()), 1.5))).is_empty());
    }
}
