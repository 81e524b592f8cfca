//! R4: suspected SCR / DPF / OBD tampering (rules.md). Six sub-rules, each with its own rule id
//! and its own episodes.
//!
//! ## Duration rules (`R4.scr_ineffective`, `R4.reagent_empty`, `R4.dpf_bypass`)
//! "For ≥ N s of (warmed-up / engine) operation" is measured as **accumulated qualifying time
//! where the condition held**, with a [`Sustain`] accumulator, not as continuous time and not in a
//! sliding window:
//! - A *qualifying* sample is one where the rule can judge: diesel stream, the operating
//!   precondition met (warm-up as R3 for SCR; engine speed > 0 for reagent; intake air flow
//!   ≥ 500 kg/h for DPF) and every value it needs present. Non-qualifying samples (engine off,
//!   cold SCR, low load, upstream NOx < 200 ppm, absent values) **pause** the count: they neither
//!   add time nor reset it. This is what "N s of warmed-up operation" says: a tampered SCR that is
//!   proven over 600 s of warm running, interrupted by idling at lights, is still one episode.
//! - The count **resets** (and an open episode closes) when the condition is clearly not met:
//!   `clear_s` (60 s, our policy default) of qualifying samples where it does not hold. One good
//!   sample is not enough, because conversion efficiency and Δp flicker around their limits.
//! - A pause longer than `max_pause_s` (30 min, our policy default) ends the episode: the next
//!   qualifying sample starts a new count. One driving session = at most one violation per rule.
//!   Tampering is persistent, so a window would only delay the proof without adding certainty;
//!   an accumulator is also 30 bytes of state against R3's 120-byte window.
//! - The time one sample stands for is capped at `max_sample_gap_s` (10 s), as in R3.
//!
//! SCR and reagent apply to diesel streams only (stream kind `Diesel`, or `Unknown` on a vehicle
//! registered as diesel). Reagent empty and DPF bypass additionally apply only to the emission
//! stages listed in the config (vehicles that carry an SCR tank / a DPF): a China V truck without
//! a DPF reporting Δp = 0 is not tampering.
//!
//! ## OBD rules
//! - `R4.mil_on`: opens on the first OBD body reporting MIL on; one violation per continuous
//!   MIL-on episode; closes on the first OBD body reporting MIL off (unknown / invalid MIL never
//!   opens nor closes). `ended_ms` is the last MIL-on report; the off report time is in evidence.
//! - `R4.ecu_vin_mismatch`: the ECU VIN, trimmed of padding (NUL, spaces, 0xFF) and upper-cased,
//!   differs from the frame VIN. A blank ECU VIN (empty, all '0', all 'F') is absent: many ECUs do
//!   not report one. Closes when an OBD body reports the matching VIN.
//! - `R4.cvn_changed`: the first valid CVN seen is the baseline; each later report with a
//!   different valid CVN is one violation (emitted open and closed at once: it is an instant,
//!   started = ended = the report) with old and new CVN in evidence, and becomes the new baseline.
//!   Blank or invalid CVNs (not printable ASCII) are absent.
use super::episode::{skeleton, th, track, Judgement, Sustain, SustainEpisode, SustainSpec, POLICY_DEFAULT};
use super::plausibility::{NoxPlausibility, NoxSensorWatch};
use super::{Detector, Observation};
use crate::model::{
    EmissionStage, EngineData, EngineStreamKind, Fuel, MilStatus, Violation, ViolationStatus,
};
use crate::model::{ObdInfo, TimestampMs};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const RULE: &str = "R4";
pub const RULE_SCR: &str = "R4.scr_ineffective";
pub const RULE_REAGENT: &str = "R4.reagent_empty";
pub const RULE_DPF: &str = "R4.dpf_bypass";
pub const RULE_MIL: &str = "R4.mil_on";
pub const RULE_ECU_VIN: &str = "R4.ecu_vin_mismatch";
pub const RULE_CVN: &str = "R4.cvn_changed";
/// The terminal itself reported being removed or tampered with (truck 0x06, machinery 0x05).
pub const RULE_REMOVAL_ALARM: &str = "R4.removal_alarm";

/// Longest OBD text kept in state (ECU VIN 17, CVN 18 characters by the protocol).
const MAX_OBD_TEXT: usize = 18;
/// Tolerance of "below the limit" comparisons on derived quantities.
const LIMIT_EPS: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TamperConfig {
    /// SCR warm-up, as R3.
    pub min_engine_rpm: f64,
    pub min_scr_inlet_c: f64,
    pub min_coolant_c: f64,
    pub scr_min_conversion_pct: f64,
    pub scr_min_upstream_ppm: f64,
    pub scr_min_s: u32,
    /// Reagent level at or below which the tank is empty.
    pub reagent_empty_pct: f64,
    pub reagent_min_s: u32,
    /// Stages that carry an SCR reagent tank (the reagent rule applies only to them).
    pub reagent_stages: Vec<EmissionStage>,
    pub dpf_max_dp_kpa: f64,
    pub dpf_min_air_kgph: f64,
    pub dpf_min_s: u32,
    /// Stages fitted with a DPF (the DPF rule applies only to them).
    pub dpf_stages: Vec<EmissionStage>,
    /// Qualifying time with the condition clearly not met that resets a count / closes an episode.
    pub clear_s: u32,
    /// Longest pause between qualifying samples inside one episode.
    pub max_pause_s: u32,
    /// Longest time one sample may stand for.
    pub max_sample_gap_s: u32,
    /// Clear time each second of holding pays back (see [`SustainSpec::clear_payback`]).
    pub clear_payback: f64,
    /// Upstream / downstream NOx plausibility for `R4.scr_ineffective`.
    pub plausibility: NoxPlausibility,
}

impl Default for TamperConfig {
    fn default() -> Self {
        use EmissionStage::*;
        TamperConfig {
            min_engine_rpm: 500.0,
            min_scr_inlet_c: 250.0,
            min_coolant_c: 70.0,
            scr_min_conversion_pct: 20.0,
            scr_min_upstream_ppm: 200.0,
            scr_min_s: 600,
            reagent_empty_pct: 0.0,
            reagent_min_s: 300,
            reagent_stages: vec![ChinaIV, ChinaV, ChinaVI, NonRoadIV],
            dpf_max_dp_kpa: 0.2,
            dpf_min_air_kgph: 500.0,
            dpf_min_s: 300,
            dpf_stages: vec![ChinaVI, NonRoadIV],
            clear_s: 60,
            max_pause_s: 1800,
            max_sample_gap_s: 10,
            clear_payback: 1.0,
            plausibility: NoxPlausibility::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TamperState {
    scr: Sustain,
    reagent: Sustain,
    dpf: Sustain,
    mil: Option<ObdEpisode>,
    ecu_vin: Option<ObdEpisode>,
    /// Baseline CVN: the last valid one reported.
    cvn: Option<String>,
    sensor: NoxSensorWatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ObdEpisode {
    started_ms: TimestampMs,
    last_ms: TimestampMs,
    reports: u32,
    /// The mismatching ECU VIN (ECU VIN episodes only).
    value: String,
}

/// The three duration sub-rules, so their wiring is one table rather than three copies.
#[derive(Clone, Copy)]
enum Sub {
    Scr,
    Reagent,
    Dpf,
}

const SUBS: [Sub; 3] = [Sub::Scr, Sub::Reagent, Sub::Dpf];

pub struct TamperDetector {
    cfg: TamperConfig,
}

impl TamperDetector {
    pub fn new(cfg: TamperConfig) -> Self {
        TamperDetector { cfg }
    }

    fn spec(&self, sub: Sub) -> SustainSpec {
        let min_s = match sub {
            Sub::Scr => self.cfg.scr_min_s,
            Sub::Reagent => self.cfg.reagent_min_s,
            Sub::Dpf => self.cfg.dpf_min_s,
        };
        SustainSpec {
            min_hold_ms: i64::from(min_s) * 1000,
            clear_ms: i64::from(self.cfg.clear_s) * 1000,
            max_pause_ms: i64::from(self.cfg.max_pause_s) * 1000,
            max_sample_gap_ms: i64::from(self.cfg.max_sample_gap_s) * 1000,
            clear_payback: self.cfg.clear_payback,
        }
    }

    fn warm(&self, e: &EngineData) -> Option<bool> {
        Some(
            e.engine_speed_rpm? > self.cfg.min_engine_rpm
                && e.scr_inlet_temp_c? >= self.cfg.min_scr_inlet_c
                && e.coolant_temp_c? >= self.cfg.min_coolant_c,
        )
    }

    fn judge(&self, sub: Sub, e: &EngineData, stage: EmissionStage) -> Judgement {
        let j = match sub {
            Sub::Scr => self.judge_scr(e),
            Sub::Reagent => self.judge_reagent(e, stage),
            Sub::Dpf => self.judge_dpf(e, stage),
        };
        j.unwrap_or(Judgement::Skip)
    }

    fn judge_scr(&self, e: &EngineData) -> Option<Judgement> {
        let (up, down) = (e.scr_upstream_nox_ppm?, e.scr_downstream_nox_ppm?);
        if !self.warm(e)? || up < self.cfg.scr_min_upstream_ppm || up <= 0.0 {
            return None;
        }
        let conversion_pct = (1.0 - down / up) * 100.0;
        // Exactly at the limit is not below it, whatever the float rounding of down/up.
        Some(if conversion_pct < self.cfg.scr_min_conversion_pct - LIMIT_EPS {
            Judgement::Holds(conversion_pct)
        } else {
            Judgement::Clear
        })
    }

    fn judge_reagent(&self, e: &EngineData, stage: EmissionStage) -> Option<Judgement> {
        if !self.cfg.reagent_stages.contains(&stage) || e.engine_speed_rpm? <= 0.0 {
            return None;
        }
        let pct = e.reagent_remaining_pct?;
        Some(if pct <= self.cfg.reagent_empty_pct { Judgement::Holds(pct) } else { Judgement::Clear })
    }

    fn judge_dpf(&self, e: &EngineData, stage: EmissionStage) -> Option<Judgement> {
        if !self.cfg.dpf_stages.contains(&stage) || e.intake_air_flow_kgph? < self.cfg.dpf_min_air_kgph {
            return None;
        }
        let dp = e.dpf_pressure_diff_kpa?;
        Some(if dp <= self.cfg.dpf_max_dp_kpa { Judgement::Holds(dp) } else { Judgement::Clear })
    }

    fn sustain_violation(
        &self,
        sub: Sub,
        ep: &SustainEpisode,
        obs: &Observation<'_>,
        status: ViolationStatus,
    ) -> Violation {
        let c = &self.cfg;
        let (rule, quantity, summary, thresholds) = match sub {
            Sub::Scr => (
                RULE_SCR,
                "scr_conversion_pct",
                format!("SCR NOx conversion below {} % over warmed-up operation", c.scr_min_conversion_pct),
                json!({
                    "min_conversion_pct": th(c.scr_min_conversion_pct, POLICY_DEFAULT),
                    "min_upstream_nox_ppm": th(c.scr_min_upstream_ppm, POLICY_DEFAULT),
                    "min_duration_s": th(f64::from(c.scr_min_s), POLICY_DEFAULT),
                    "warm_up": {
                        "min_engine_rpm": th(c.min_engine_rpm, POLICY_DEFAULT),
                        "min_scr_inlet_c": th(c.min_scr_inlet_c, POLICY_DEFAULT),
                        "min_coolant_c": th(c.min_coolant_c, POLICY_DEFAULT),
                    },
                }),
            ),
            Sub::Reagent => (
                RULE_REAGENT,
                "reagent_remaining_pct",
                format!("reagent tank at {} % with the engine running", c.reagent_empty_pct),
                json!({
                    "empty_pct": th(c.reagent_empty_pct, POLICY_DEFAULT),
                    "min_duration_s": th(f64::from(c.reagent_min_s), POLICY_DEFAULT),
                }),
            ),
            Sub::Dpf => (
                RULE_DPF,
                "dpf_pressure_diff_kpa",
                format!(
                    "DPF differential pressure at most {} kPa with intake air ≥ {} kg/h (DPF missing or bypassed)",
                    c.dpf_max_dp_kpa, c.dpf_min_air_kgph
                ),
                json!({
                    "max_dp_kpa": th(c.dpf_max_dp_kpa, POLICY_DEFAULT),
                    "min_intake_air_kgph": th(c.dpf_min_air_kgph, POLICY_DEFAULT),
                    "min_duration_s": th(f64::from(c.dpf_min_s), POLICY_DEFAULT),
                }),
            ),
        };
        let mut thresholds = thresholds;
        if let Some(o) = thresholds.as_object_mut() {
            o.insert("clear_s".into(), th(f64::from(c.clear_s), POLICY_DEFAULT));
            o.insert("max_pause_s".into(), th(f64::from(c.max_pause_s), POLICY_DEFAULT));
            o.insert("clear_payback".into(), th(c.clear_payback, POLICY_DEFAULT));
            if matches!(sub, Sub::Scr) {
                o.insert(
                    "plausibility".into(),
                    json!({
                        "max_down_over_up": th(c.plausibility.max_down_over_up, POLICY_DEFAULT),
                        "tolerance_ppm": th(c.plausibility.tolerance_ppm, POLICY_DEFAULT),
                        "stuck_s": th(f64::from(c.plausibility.stuck_s), POLICY_DEFAULT),
                    }),
                );
            }
        }
        let vin = obs.record.vin;
        let mut v = skeleton(rule, "", vin, obs.vehicle, ep.started_ms, status);
        let measured = ep.stats.measured();
        v.ended_ms = (status == ViolationStatus::Closed).then_some(ep.last_hold_ms);
        v.position = obs.record.valid_fix();
        v.summary =
            format!("{summary} for {:.0} s (suspected tampering)", measured.map_or(0.0, |m| m.seconds));
        v.thresholds = thresholds;
        v.measured = measured;
        v.evidence = json!({
            "quantity": quantity,
            "accumulation": "qualifying time where the condition held; paused by non-qualifying samples",
            "window_start_ms": ep.started_ms,
            "window_end_ms": ep.last_hold_ms,
            "track": track(&vin, ep.started_ms, ep.last_hold_ms),
        });
        v
    }

    fn obd_violation(
        &self,
        rule: &str,
        ep: &ObdEpisode,
        obs: &Observation<'_>,
        status: ViolationStatus,
        summary: String,
        evidence: Value,
    ) -> Violation {
        let vin = obs.record.vin;
        let mut v = skeleton(rule, "", vin, obs.vehicle, ep.started_ms, status);
        v.ended_ms = (status == ViolationStatus::Closed).then_some(ep.last_ms);
        v.position = obs.record.valid_fix();
        v.summary = summary;
        v.thresholds = json!({ "condition": rule, "source": "rules.md R4 (OBD)" });
        let mut evidence = evidence;
        if let Some(o) = evidence.as_object_mut() {
            o.insert("first_report_ms".into(), json!(ep.started_ms));
            o.insert("last_report_ms".into(), json!(ep.last_ms));
            o.insert("reports".into(), json!(ep.reports));
            o.insert("window_start_ms".into(), json!(ep.started_ms));
            o.insert("window_end_ms".into(), json!(ep.last_ms));
            o.insert("track".into(), track(&vin, ep.started_ms, ep.last_ms));
        }
        v.evidence = evidence;
        v
    }

    fn update_obd(
        &self,
        st: &mut TamperState,
        obd: &ObdInfo,
        obs: &Observation<'_>,
        out: &mut Vec<Violation>,
    ) {
        let t = obs.record.time_ms;
        let codes = || {
            json!(obd.fault_codes.as_ref().map(|c| c.iter().map(|x| format!("{x:08X}")).collect::<Vec<_>>()))
        };

        match obd.mil {
            MilStatus::On => {
                let new = st.mil.is_none();
                let ep = st.mil.get_or_insert(ObdEpisode {
                    started_ms: t,
                    last_ms: t,
                    reports: 0,
                    value: String::new(),
                });
                ep.last_ms = ep.last_ms.max(t);
                ep.reports = ep.reports.saturating_add(1);
                if new {
                    let ev = json!({ "mil": "on", "fault_codes": codes() });
                    out.push(self.obd_violation(
                        RULE_MIL,
                        ep,
                        obs,
                        ViolationStatus::Open,
                        "malfunction indicator lamp on".into(),
                        ev,
                    ));
                }
            }
            MilStatus::Off => {
                if let Some(ep) = st.mil.take() {
                    let ev = json!({ "mil": "off", "off_reported_ms": t, "fault_codes": codes() });
                    out.push(self.obd_violation(
                        RULE_MIL,
                        &ep,
                        obs,
                        ViolationStatus::Closed,
                        "malfunction indicator lamp on (now off)".into(),
                        ev,
                    ));
                }
            }
            MilStatus::Unknown | MilStatus::Invalid => {}
        }

        if let Some(ecu) = obd_text(&obd.ecu_vin).filter(|s| !is_blank(s)) {
            let ecu = ecu.to_ascii_uppercase();
            let frame = obs.record.vin;
            if ecu != frame.as_str() {
                let new = st.ecu_vin.is_none();
                let ep = st.ecu_vin.get_or_insert(ObdEpisode {
                    started_ms: t,
                    last_ms: t,
                    reports: 0,
                    value: ecu.clone(),
                });
                ep.last_ms = ep.last_ms.max(t);
                ep.reports = ep.reports.saturating_add(1);
                if new {
                    let ev = json!({ "frame_vin": frame.as_str(), "ecu_vin": ecu });
                    let summary = format!("ECU VIN {ecu} differs from the terminal's VIN {frame}");
                    out.push(self.obd_violation(RULE_ECU_VIN, ep, obs, ViolationStatus::Open, summary, ev));
                }
            } else if let Some(ep) = st.ecu_vin.take() {
                let ev = json!({ "frame_vin": frame.as_str(), "ecu_vin": ep.value, "matching_report_ms": t });
                let summary = format!("ECU VIN {} differed from the terminal's VIN {frame}", ep.value);
                out.push(self.obd_violation(RULE_ECU_VIN, &ep, obs, ViolationStatus::Closed, summary, ev));
            }
        }

        if let Some(cvn) =
            obd_text(&obd.cvn).filter(|s| !is_blank(s) && s.bytes().all(|b| b.is_ascii_graphic()))
        {
            match st.cvn.as_deref() {
                None => st.cvn = Some(cvn),
                Some(old) if old != cvn => {
                    let ep = ObdEpisode { started_ms: t, last_ms: t, reports: 1, value: String::new() };
                    let summary = format!(
                        "calibration verification number changed from {old} to {cvn} (ECU re-flashed)"
                    );
                    let ev = json!({ "old_cvn": old, "new_cvn": cvn, "calibration_id": obd_text(&obd.software_calibration_id) });
                    for status in [ViolationStatus::Open, ViolationStatus::Closed] {
                        out.push(self.obd_violation(RULE_CVN, &ep, obs, status, summary.clone(), ev.clone()));
                    }
                    st.cvn = Some(cvn);
                }
                Some(_) => {}
            }
        }
    }
}

/// An OBD text field without its padding (NUL, spaces, 0xFF as it decodes), bounded in length;
/// `None` when nothing is left.
fn obd_text(raw: &str) -> Option<String> {
    let s = raw.trim_matches(|c: char| c == '\0' || c.is_whitespace() || c == '\u{FF}' || c == '\u{FFFD}');
    (!s.is_empty()).then(|| s.chars().take(MAX_OBD_TEXT).collect())
}

/// Fields the terminal fills with one repeated filler when it has no value (sample frame 1 sends
/// an all-'0' calibration ID and CVN).
fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c == '0') || s.chars().all(|c| c.eq_ignore_ascii_case(&'F'))
}

/// Diesel aftertreatment rules apply to diesel streams; an unknown stream kind defers to the
/// registry's fuel.
fn is_diesel(obs: &Observation<'_>) -> bool {
    match obs.record.stream_kind {
        EngineStreamKind::Diesel => true,
        EngineStreamKind::Gas => false,
        EngineStreamKind::Unknown => obs.vehicle.fuel == Fuel::Diesel,
    }
}

impl Detector for TamperDetector {
    type State = TamperState;

    fn rule(&self) -> &'static str {
        RULE
    }

    fn update(&self, st: &mut TamperState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        if let (Some(e), true) = (obs.record.engine.as_ref(), is_diesel(obs)) {
            let t = obs.record.time_ms;
            let nox_plausible = e.scr_downstream_nox_ppm.is_none_or(|down| {
                let up = e.scr_upstream_nox_ppm;
                let counts = up.is_some_and(|u| down > u * (1.0 - self.cfg.scr_min_conversion_pct / 100.0));
                st.sensor.plausible(&self.cfg.plausibility, t, up, down, counts)
            });
            for sub in SUBS {
                let j = match sub {
                    Sub::Scr if !nox_plausible => Judgement::Skip,
                    _ => self.judge(sub, e, obs.vehicle.emission_stage),
                };
                let spec = self.spec(sub);
                let acc = match sub {
                    Sub::Scr => &mut st.scr,
                    Sub::Reagent => &mut st.reagent,
                    Sub::Dpf => &mut st.dpf,
                };
                let ev = acc.step(spec, t, j);
                if let Some(ep) = ev.closed {
                    out.push(self.sustain_violation(sub, &ep, obs, ViolationStatus::Closed));
                }
                if let (true, Some(ep)) = (ev.opened, acc.episode()) {
                    out.push(self.sustain_violation(sub, ep, obs, ViolationStatus::Open));
                }
            }
        }
        if let Some(obd) = obs.record.obd.as_ref() {
            self.update_obd(st, obd, obs, out);
        }
    }
}

/// A tamper/removal alarm sent by the terminal (truck command 0x06, machinery 0x05): tamper
/// evidence in its own right, raised beside R4 as an instant violation (open and closed at the
/// alarm time, as `R4.cvn_changed`) with the alarm's position. The id derives from the alarm time,
/// so a resent alarm lands on the same violation.
pub fn removal_alarm_violations(
    vin: crate::model::Vin,
    vehicle: &crate::model::Vehicle,
    alarm: &crate::pipeline::TamperAlarmEvent,
    received_ms: TimestampMs,
) -> Vec<Violation> {
    let t = alarm.at_ms;
    let summary = format!(
        "terminal reported a removal/tamper alarm (command 0x{:02X}, status 0x{:02X})",
        alarm.command, alarm.status
    );
    let evidence = json!({
        "command": alarm.command,
        "status": alarm.status,
        "serial": alarm.serial,
        "alarm_ms": t,
        "received_ms": received_ms,
        "position": alarm.fix.map(|f| json!({ "lon": f.lon, "lat": f.lat })),
    });
    [ViolationStatus::Open, ViolationStatus::Closed]
        .into_iter()
        .map(|status| {
            let mut v = skeleton(RULE_REMOVAL_ALARM, "", vin, vehicle, t, status);
            v.ended_ms = (status == ViolationStatus::Closed).then_some(t);
            v.position = alarm.fix.filter(|f| f.valid && f.in_range());
            v.summary = summary.clone();
            v.thresholds = json!({ "condition": RULE_REMOVAL_ALARM, "source": "hj1239.md field notes: 0x06 truck / 0x05 machinery alarm" });
            v.evidence = evidence.clone();
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::detect::VehicleState;
    use crate::model::{TelemetryRecord, Vehicle};

    fn det() -> TamperDetector {
        TamperDetector::new(TamperConfig::default())
    }

    fn run_on(v: &Vehicle, trace: impl IntoIterator<Item = TelemetryRecord>) -> Vec<Violation> {
        let d = det();
        let mut st = TamperState::default();
        let mut out = Vec::new();
        for r in trace {
            d.update(&mut st, &Observation { vehicle: v, record: &r, received_ms: r.time_ms }, &mut out);
        }
        out
    }

    fn run(trace: impl IntoIterator<Item = TelemetryRecord>) -> Vec<Violation> {
        run_on(&truck(EmissionStage::ChinaVI), trace)
    }

    fn secs(from: i64, to: i64, e: EngineData) -> impl Iterator<Item = TelemetryRecord> {
        (from..to).map(move |s| record(T0 + s * 1000, e))
    }

    fn obd_at(s: i64, obd: ObdInfo) -> TelemetryRecord {
        let mut r = record(T0 + s * 1000, EngineData::default());
        r.obd = Some(obd);
        r
    }

    fn mil(m: MilStatus) -> ObdInfo {
        ObdInfo { mil: m, fault_codes: Some(vec![0x0012_3404]), ..Default::default() }
    }

    fn rules(out: &[Violation]) -> Vec<(&str, ViolationStatus)> {
        out.iter().map(|v| (v.rule.as_str(), v.status)).collect()
    }

    /// Warm, loaded, SCR converting only 11 %.
    fn bad_scr() -> EngineData {
        warm(900.0, 800.0)
    }

    #[test]
    fn scr_ineffective_fires_once_and_closes() {
        let out = run(secs(0, 700, bad_scr()).chain(secs(700, 900, warm(900.0, 100.0))));
        assert_eq!(rules(&out), [(RULE_SCR, ViolationStatus::Open), (RULE_SCR, ViolationStatus::Closed)]);
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[0].started_ms, T0);
        assert_eq!(out[1].ended_ms, Some(T0 + 699_000));
        let m = out[1].measured.unwrap_or_else(|| panic!("measured"));
        assert!((m.mean - 11.111).abs() < 0.01, "{m:?}");
        assert_eq!(m.samples, 700);
        assert_eq!(out[0].thresholds["min_conversion_pct"]["source"], POLICY_DEFAULT);
        assert_eq!(out[0].evidence["track"]["from_ms"], T0);
        // Proven at exactly 600 s of warmed-up operation.
        let open = run(secs(0, 600, bad_scr()));
        assert_eq!(open.len(), 1);
        assert!(run(secs(0, 599, bad_scr())).is_empty());
    }

    #[test]
    fn scr_borderline_cold_and_low_nox_do_not_fire() {
        // Conversion exactly 20 % is not below 20 %.
        assert!(run(secs(0, 2000, warm(1000.0, 800.0))).is_empty());
        // Upstream below 200 ppm: not enough NOx to judge.
        assert!(run(secs(0, 2000, warm(199.0, 190.0))).is_empty());
        let mut cold = bad_scr();
        cold.scr_inlet_temp_c = Some(240.0);
        let mut idle = bad_scr();
        idle.engine_speed_rpm = Some(500.0);
        let mut off = bad_scr();
        off.engine_speed_rpm = Some(0.0);
        assert!(
            run(secs(0, 1000, cold).chain(secs(1000, 2000, idle)).chain(secs(2000, 3000, off))).is_empty()
        );
        // Cold / idle periods pause the count without resetting it: 400 s + 200 s warm = 600 s.
        let out =
            run(secs(0, 400, bad_scr()).chain(secs(400, 1000, cold)).chain(secs(1000, 1200, bad_scr())));
        assert_eq!(rules(&out), [(RULE_SCR, ViolationStatus::Open)]);
        // A gas stream is never judged.
        let gas = secs(0, 1000, bad_scr()).map(|mut r| {
            r.stream_kind = EngineStreamKind::Gas;
            r
        });
        assert!(run(gas).is_empty());
    }

    #[test]
    fn scr_single_good_sample_does_not_reset_but_a_minute_does() {
        // 500 s bad, 30 s good, 100 s bad: one episode of 600 s bad.
        let out = run(secs(0, 500, bad_scr()).chain(secs(500, 530, warm(900.0, 100.0))).chain(secs(
            530,
            630,
            bad_scr(),
        )));
        assert_eq!(rules(&out), [(RULE_SCR, ViolationStatus::Open)]);
        // 500 s bad, 60 s good, 500 s bad: reset, nothing proven.
        let out = run(secs(0, 500, bad_scr()).chain(secs(500, 560, warm(900.0, 100.0))).chain(secs(
            560,
            1060,
            bad_scr(),
        )));
        assert!(out.is_empty(), "{out:#?}");
    }

    /// Failure mode (c): NOx spikes of 1–3 s every 30–60 s on an SCR otherwise converting 95 %
    /// never add up to 600 s: holding time pays the clear count back instead of wiping it, so
    /// each glitch is forgotten after a minute of good conversion. A tampered SCR with a
    /// plausible share of good-looking samples (one in ten) is still caught.
    #[test]
    fn brief_nox_spikes_never_accumulate() {
        let mut next_spike = 0i64;
        let mut spike_left = 0i64;
        let trace = (0..4 * 3600i64).map(|s| {
            if s == next_spike {
                spike_left = 1 + s % 3;
                next_spike = s + 30 + (s * 7919) % 31;
            }
            let e = if spike_left > 0 { warm(900.0, 850.0) } else { warm(900.0, 45.0) };
            spike_left -= 1;
            record(T0 + s * 1000, e)
        });
        let out = run(trace);
        assert!(out.is_empty(), "{out:#?}");
        let tampered = (0..900i64).map(|s| {
            record(T0 + s * 1000, if s % 10 == 3 { warm(900.0, 400.0) } else { warm(900.0, 820.0) })
        });
        assert_eq!(rules(&run(tampered)), [(RULE_SCR, ViolationStatus::Open)]);
    }

    /// Failure mode (d): downstream above upstream (NH₃ slip, faulty sensor) is not tampering;
    /// a removed SCR (downstream ≈ upstream) still is.
    #[test]
    fn downstream_above_upstream_is_not_tampering() {
        assert!(run(secs(0, 3000, warm(300.0, 450.0))).is_empty());
        assert!(
            run((0..3000).map(|s| record(T0 + s * 1000, warm(850.0 + (s % 40) as f64, 800.0)))).is_empty()
        );
        let removed =
            (0..700).map(|s| record(T0 + s * 1000, warm(800.0 + (s % 9) as f64, 820.0 + (s % 4) as f64)));
        assert_eq!(rules(&run(removed)), [(RULE_SCR, ViolationStatus::Open)]);
    }

    #[test]
    fn absent_values_never_fire_or_close() {
        let mut absent = bad_scr();
        absent.scr_downstream_nox_ppm = None;
        absent.reagent_remaining_pct = None;
        absent.dpf_pressure_diff_kpa = None;
        assert!(run(secs(0, 3000, absent)).is_empty());
        let mut no_coolant = bad_scr();
        no_coolant.coolant_temp_c = None;
        assert!(run(secs(0, 3000, no_coolant)).is_empty());
        // Open, then an hour of absent values (records every second): stays open.
        let out = run(secs(0, 650, bad_scr()).chain(secs(650, 4250, absent)));
        assert_eq!(rules(&out), [(RULE_SCR, ViolationStatus::Open)]);
    }

    #[test]
    fn long_pause_ends_the_episode() {
        // 700 s bad, 2 h without qualifying data, 700 s bad: two violations.
        let mut off = bad_scr();
        off.engine_speed_rpm = Some(0.0);
        let out = run(secs(0, 700, bad_scr()).chain(secs(700, 7900, off)).chain(secs(7900, 8600, bad_scr())));
        assert_eq!(
            rules(&out),
            [
                (RULE_SCR, ViolationStatus::Open),
                (RULE_SCR, ViolationStatus::Closed),
                (RULE_SCR, ViolationStatus::Open)
            ]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_ne!(out[1].id, out[2].id);
        assert_eq!(out[1].ended_ms, Some(T0 + 699_000));
    }

    #[test]
    fn reagent_empty_counts_engine_operation_only() {
        let mut empty = warm(900.0, 100.0);
        empty.reagent_remaining_pct = Some(0.0);
        let mut parked = empty;
        parked.engine_speed_rpm = Some(0.0);
        let mut refilled = empty;
        refilled.reagent_remaining_pct = Some(80.0);
        let out = run(secs(0, 200, empty)
            .chain(secs(200, 1000, parked))
            .chain(secs(1000, 1100, empty))
            .chain(secs(1100, 1200, refilled)));
        assert_eq!(
            rules(&out),
            [(RULE_REAGENT, ViolationStatus::Open), (RULE_REAGENT, ViolationStatus::Closed)]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[0].started_ms, T0);
        // Borderline: 299 s of engine operation; 0.4 % (one step above empty) never counts.
        assert!(run(secs(0, 299, empty).chain(secs(299, 900, parked))).is_empty());
        let mut low = empty;
        low.reagent_remaining_pct = Some(0.4);
        assert!(run(secs(0, 1000, low)).is_empty());
        // A Stage III machine is not in the reagent stages.
        let m = machine("ZJ-001");
        assert!(run_on(&m, secs(0, 1000, empty)).is_empty());
    }

    #[test]
    fn dpf_bypass_needs_flow_and_a_dpf() {
        let mut flat = warm(900.0, 100.0);
        flat.dpf_pressure_diff_kpa = Some(0.1);
        let mut low_flow = flat;
        low_flow.intake_air_flow_kgph = Some(400.0);
        let ok = warm(900.0, 100.0);
        let out = run(secs(0, 150, flat)
            .chain(secs(150, 500, low_flow))
            .chain(secs(500, 650, flat))
            .chain(secs(650, 800, ok)));
        assert_eq!(rules(&out), [(RULE_DPF, ViolationStatus::Open), (RULE_DPF, ViolationStatus::Closed)]);
        assert_eq!(out[0].id, out[1].id);
        // Δp exactly 0.2 kPa is a bypass (≤); 0.3 is not.
        let mut edge = flat;
        edge.dpf_pressure_diff_kpa = Some(0.2);
        assert_eq!(run(secs(0, 300, edge)).len(), 1);
        let mut above = flat;
        above.dpf_pressure_diff_kpa = Some(0.3);
        assert!(run(secs(0, 1000, above)).is_empty());
        assert!(run(secs(0, 1000, low_flow)).is_empty());
        // A China V truck has no DPF to bypass.
        assert!(run_on(&truck(EmissionStage::ChinaV), secs(0, 1000, flat)).is_empty());
    }

    #[test]
    fn mil_on_one_violation_per_episode() {
        let trace = [
            obd_at(0, mil(MilStatus::Off)),
            obd_at(30, mil(MilStatus::On)),
            obd_at(60, mil(MilStatus::Invalid)),
            obd_at(90, mil(MilStatus::On)),
            obd_at(120, mil(MilStatus::Unknown)),
            obd_at(150, mil(MilStatus::Off)),
            obd_at(180, mil(MilStatus::On)),
        ];
        let out = run(trace);
        assert_eq!(
            rules(&out),
            [
                (RULE_MIL, ViolationStatus::Open),
                (RULE_MIL, ViolationStatus::Closed),
                (RULE_MIL, ViolationStatus::Open)
            ]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_ne!(out[1].id, out[2].id);
        assert_eq!(out[1].started_ms, T0 + 30_000);
        assert_eq!(out[1].ended_ms, Some(T0 + 90_000));
        assert_eq!(out[1].evidence["off_reported_ms"], T0 + 150_000);
        assert_eq!(out[0].evidence["fault_codes"][0], "00123404");
        // Invalid / unknown never open.
        assert!(run([obd_at(0, mil(MilStatus::Invalid)), obd_at(30, mil(MilStatus::Unknown))]).is_empty());
    }

    #[test]
    fn ecu_vin_mismatch_trims_padding_and_ignores_blank() {
        let ecu = |s: &str| ObdInfo { ecu_vin: s.into(), ..Default::default() };
        let out = run([
            obd_at(0, ecu("LGBH52E07HY000001\0")),
            obd_at(30, ecu("LGBH52E07HY999999")),
            obd_at(60, ecu("")),
            obd_at(90, ecu("00000000000000000")),
            obd_at(120, ecu("LGBH52E07HY999999")),
            obd_at(150, ecu(" lgbh52e07hy000001 ")),
        ]);
        assert_eq!(
            rules(&out),
            [(RULE_ECU_VIN, ViolationStatus::Open), (RULE_ECU_VIN, ViolationStatus::Closed)]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[1].evidence["ecu_vin"], "LGBH52E07HY999999");
        assert_eq!(out[1].evidence["reports"], 2);
        assert!(run([obd_at(0, ecu("\0\0\0")), obd_at(30, ecu("FFFFFFFFFFFFFFFFF"))]).is_empty());
    }

    #[test]
    fn cvn_change_is_one_violation_per_change() {
        let cvn = |s: &str| ObdInfo { cvn: s.into(), ..Default::default() };
        let out = run([
            obd_at(0, cvn("000000000000000000")),
            obd_at(30, cvn("1A2B3C4D")),
            obd_at(60, cvn("1A2B3C4D          ")),
            obd_at(90, cvn("")),
            obd_at(120, cvn("\u{1}\u{2}garbage")),
            obd_at(150, cvn("DEADBEEF")),
            obd_at(180, cvn("DEADBEEF")),
            obd_at(210, cvn("1A2B3C4D")),
        ]);
        assert_eq!(
            rules(&out),
            [
                (RULE_CVN, ViolationStatus::Open),
                (RULE_CVN, ViolationStatus::Closed),
                (RULE_CVN, ViolationStatus::Open),
                (RULE_CVN, ViolationStatus::Closed)
            ]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_ne!(out[1].id, out[2].id);
        assert_eq!(out[1].evidence["old_cvn"], "1A2B3C4D");
        assert_eq!(out[1].evidence["new_cvn"], "DEADBEEF");
        assert_eq!((out[1].started_ms, out[1].ended_ms), (T0 + 150_000, Some(T0 + 150_000)));
        assert_eq!(out[3].evidence["new_cvn"], "1A2B3C4D");
        // The first valid CVN is only a baseline.
        assert!(run([obd_at(0, cvn("1A2B3C4D"))]).is_empty());
    }

    #[test]
    fn restored_state_continues_to_one_violation() {
        let d = det();
        let v = truck(EmissionStage::ChinaVI);
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        let trace = secs(0, 700, bad_scr())
            .chain([obd_at(700, mil(MilStatus::On))])
            .chain(secs(701, 900, warm(900.0, 100.0)))
            .chain([obd_at(900, mil(MilStatus::Off))]);
        for (i, r) in trace.enumerate() {
            if i % 97 == 5 {
                st = VehicleState::decode(&st.encode()).unwrap_or_else(|e| panic!("{e}"));
            }
            d.update(
                &mut st.tamper,
                &Observation { vehicle: &v, record: &r, received_ms: r.time_ms },
                &mut out,
            );
        }
        assert_eq!(
            rules(&out),
            [
                (RULE_SCR, ViolationStatus::Open),
                (RULE_MIL, ViolationStatus::Open),
                (RULE_SCR, ViolationStatus::Closed),
                (RULE_MIL, ViolationStatus::Closed)
            ]
        );
        assert_eq!(out[0].id, out[2].id);
        assert_eq!(out[1].id, out[3].id);
    }
}
