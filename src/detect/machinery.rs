//! R6 (part): non-road machinery without a registration code (编码登记) seen working (rules.md).
//! The banned-stage-in-zone part of R6 belongs to the geofence engine.
//!
//! - Applies to vehicles registered as `NonRoadMachine` whose `registration_code` is blank.
//! - **Working** = a record with engine speed > 0. The first one opens the episode and the
//!   violation at once: the fact is binary (it works, it is not registered) and a reported engine
//!   speed is not a noisy sensor, so no minimum duration is required.
//! - **Episode end** = engine off for ≥ `engine_off_end_s` (10 min, policy default): closed by the
//!   first record (engine off or running again) at least that long after the last running record,
//!   or by [`MachineryDetector::tick`] when nothing at all has been received for that long (a
//!   machine's terminal usually powers down with the engine). A restart within 10 min (lunch
//!   break of a minute, repositioning) stays the same episode: one working session, one violation.
//! - The episode also closes when the registry gains a registration code (or the vehicle stops
//!   being machinery): the next record evaluated sees it.
//! - Absent engine speed neither opens nor closes.
use super::episode::{skeleton, th, track, Stats, POLICY_DEFAULT};
use super::window::sample_duration_ms;
use super::{Detector, Observation};
use crate::model::{Fix, TimestampMs, Vehicle, VehicleKind, Vin, Violation, ViolationStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const RULE: &str = "R6.unregistered";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineryConfig {
    /// Engine off (or silent) this long ends a working episode.
    pub engine_off_end_s: u32,
    /// Longest time one running sample may stand for.
    pub max_sample_gap_s: u32,
}

impl Default for MachineryConfig {
    fn default() -> Self {
        MachineryConfig { engine_off_end_s: 600, max_sample_gap_s: 10 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineryState {
    episode: Option<Episode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Episode {
    started_ms: TimestampMs,
    last_running_ms: TimestampMs,
    /// Server time of the last running record (for [`MachineryDetector::tick`]).
    last_running_rx_ms: TimestampMs,
    /// Previous record with an engine speed (running or not): a sample's duration runs from it.
    prev_ms: TimestampMs,
    /// Engine speed while working.
    rpm: Stats,
}

/// Registry says: machinery, and no registration code.
pub fn is_unregistered_machine(v: &Vehicle) -> bool {
    v.kind == VehicleKind::NonRoadMachine && v.registration_code.trim().is_empty()
}

pub struct MachineryDetector {
    cfg: MachineryConfig,
}

impl MachineryDetector {
    pub fn new(cfg: MachineryConfig) -> Self {
        MachineryDetector { cfg }
    }

    fn end_ms(&self) -> i64 {
        i64::from(self.cfg.engine_off_end_s) * 1000
    }

    fn violation(
        &self,
        ep: &Episode,
        vin: Vin,
        vehicle: &Vehicle,
        position: Option<Fix>,
        status: ViolationStatus,
        end_reason: Option<&str>,
    ) -> Violation {
        let mut v = skeleton(RULE, "", vin, vehicle, ep.started_ms, status);
        let measured = ep.rpm.measured();
        v.ended_ms = (status == ViolationStatus::Closed).then_some(ep.last_running_ms);
        v.position = position;
        let machine =
            if vehicle.machine_type.is_empty() { "non-road machine" } else { vehicle.machine_type.as_str() };
        v.summary = format!("{machine} without a registration code seen working (engine running)");
        v.thresholds = json!({
            "min_engine_rpm_exclusive": th(0.0, POLICY_DEFAULT),
            "engine_off_end_s": th(f64::from(self.cfg.engine_off_end_s), POLICY_DEFAULT),
        });
        v.measured = measured;
        v.evidence = json!({
            "quantity": "engine_speed_rpm",
            "machine_type": vehicle.machine_type,
            "emission_stage": vehicle.emission_stage,
            "rated_power_kw": vehicle.rated_power_kw,
            "registration_code": vehicle.registration_code,
            "first_running_ms": ep.started_ms,
            "last_running_ms": ep.last_running_ms,
            "window_start_ms": ep.started_ms,
            "window_end_ms": ep.last_running_ms,
            "ended_because": end_reason,
            "track": track(&vin, ep.started_ms, ep.last_running_ms),
        });
        v
    }

    /// Time-driven end of an episode: nothing received for `engine_off_end_s` since the last
    /// running record (server clock).
    pub fn tick(
        &self,
        st: &mut MachineryState,
        vehicle: &Vehicle,
        now_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        let Some(vin) = vehicle.vin else { return };
        let expired = st
            .episode
            .as_ref()
            .is_some_and(|ep| now_ms.saturating_sub(ep.last_running_rx_ms) >= self.end_ms());
        if let Some(ep) = st.episode.take_if(|_| expired) {
            let reason = format!("no running record for {} s", self.cfg.engine_off_end_s);
            out.push(self.violation(&ep, vin, vehicle, None, ViolationStatus::Closed, Some(&reason)));
        }
    }
}

impl Detector for MachineryDetector {
    type State = MachineryState;

    fn rule(&self) -> &'static str {
        RULE
    }

    fn update(&self, st: &mut MachineryState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        let (t, vin, fix) = (obs.record.time_ms, obs.record.vin, obs.record.valid_fix());
        if !is_unregistered_machine(obs.vehicle) {
            if let Some(ep) = st.episode.take() {
                let reason = "registration code recorded";
                out.push(self.violation(&ep, vin, obs.vehicle, fix, ViolationStatus::Closed, Some(reason)));
            }
            return;
        }
        let Some(rpm) = obs.record.engine.as_ref().and_then(|e| e.engine_speed_rpm) else { return };
        let expired =
            st.episode.as_ref().is_some_and(|ep| t.saturating_sub(ep.last_running_ms) >= self.end_ms());
        if let Some(ep) = st.episode.take_if(|_| expired) {
            let reason = format!("engine off for {} s", self.cfg.engine_off_end_s);
            out.push(self.violation(&ep, vin, obs.vehicle, fix, ViolationStatus::Closed, Some(&reason)));
        }
        if rpm <= 0.0 {
            if let Some(ep) = st.episode.as_mut() {
                ep.prev_ms = ep.prev_ms.max(t);
            }
            return;
        }
        let new = st.episode.is_none();
        let ep = st.episode.get_or_insert(Episode {
            started_ms: t,
            last_running_ms: t,
            last_running_rx_ms: obs.received_ms,
            prev_ms: t,
            rpm: Stats::default(),
        });
        let prev = (!new).then_some(ep.prev_ms);
        ep.rpm.add(rpm, sample_duration_ms(prev, t, i64::from(self.cfg.max_sample_gap_s) * 1000));
        ep.prev_ms = ep.prev_ms.max(t);
        ep.last_running_ms = ep.last_running_ms.max(t);
        ep.last_running_rx_ms = ep.last_running_rx_ms.max(obs.received_ms);
        if new {
            out.push(self.violation(ep, vin, obs.vehicle, fix, ViolationStatus::Open, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::detect::VehicleState;
    use crate::model::{EmissionStage, EngineData};

    fn rpm(r: Option<f64>) -> EngineData {
        EngineData { engine_speed_rpm: r, ..Default::default() }
    }

    fn secs(from: i64, to: i64, r: Option<f64>) -> impl Iterator<Item = (i64, Option<f64>)> {
        (from..to).map(move |s| (s, r))
    }

    fn run_on(
        v: &Vehicle,
        trace: impl IntoIterator<Item = (i64, Option<f64>)>,
        roundtrip: bool,
    ) -> Vec<Violation> {
        let d = MachineryDetector::new(MachineryConfig::default());
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        for (s, r) in trace {
            if roundtrip {
                st = VehicleState::decode(&st.encode()).unwrap_or_else(|e| panic!("{e}"));
            }
            let rec = record(T0 + s * 1000, rpm(r));
            d.update(
                &mut st.machinery,
                &Observation { vehicle: v, record: &rec, received_ms: rec.time_ms },
                &mut out,
            );
        }
        out
    }

    fn statuses(out: &[Violation]) -> Vec<ViolationStatus> {
        out.iter().map(|v| v.status).collect()
    }

    #[test]
    fn working_unregistered_machine_fires_once_per_session() {
        for roundtrip in [false, true] {
            // Works 5 min, off 5 min (same session), works 5 min, off 11 min.
            let trace = secs(0, 300, Some(1800.0))
                .chain(secs(300, 600, Some(0.0)))
                .chain(secs(600, 900, Some(1600.0)))
                .chain(secs(900, 1560, Some(0.0)));
            let out = run_on(&machine(""), trace, roundtrip);
            assert_eq!(statuses(&out), [ViolationStatus::Open, ViolationStatus::Closed]);
            assert_eq!(out[0].id, out[1].id);
            assert_eq!(out[0].rule, RULE);
            assert_eq!(out[1].started_ms, T0);
            assert_eq!(out[1].ended_ms, Some(T0 + 899_000));
            let m = out[1].measured.unwrap_or_else(|| panic!("measured"));
            assert_eq!((m.min, m.max, m.samples, m.seconds), (1600.0, 1800.0, 600, 600.0));
            assert_eq!(out[1].thresholds["engine_off_end_s"]["source"], POLICY_DEFAULT);
        }
    }

    #[test]
    fn registered_machines_and_trucks_never_fire() {
        assert!(run_on(&machine("ZJ330500-000123"), secs(0, 900, Some(1800.0)), false).is_empty());
        assert!(run_on(&machine("   "), secs(0, 10, Some(1800.0)), false).len() == 1);
        let t = Vehicle { registration_code: String::new(), ..truck(EmissionStage::ChinaIII) };
        assert!(run_on(&t, secs(0, 900, Some(1800.0)), false).is_empty());
    }

    #[test]
    fn engine_off_and_absent_speed_do_not_fire_or_close() {
        assert!(run_on(&machine(""), secs(0, 3600, Some(0.0)), false).is_empty());
        assert!(run_on(&machine(""), secs(0, 3600, None), false).is_empty());
        // Open, then two hours of absent engine speed: stays open.
        let out = run_on(&machine(""), secs(0, 10, Some(900.0)).chain(secs(10, 7200, None)), false);
        assert_eq!(statuses(&out), [ViolationStatus::Open]);
        // Off for 599 s (last running at 9 s, running again at 608 s) is the same episode.
        let trace =
            secs(0, 10, Some(900.0)).chain(secs(10, 608, Some(0.0))).chain(secs(608, 620, Some(900.0)));
        assert_eq!(statuses(&run_on(&machine(""), trace, false)), [ViolationStatus::Open]);
    }

    #[test]
    fn silence_is_closed_by_tick() {
        let d = MachineryDetector::new(MachineryConfig::default());
        let v = machine("");
        let mut st = MachineryState::default();
        let mut out = Vec::new();
        for s in 0..60 {
            let rec = record(T0 + s * 1000, rpm(Some(1500.0)));
            d.update(&mut st, &Observation { vehicle: &v, record: &rec, received_ms: rec.time_ms }, &mut out);
        }
        d.tick(&mut st, &v, T0 + 59_000 + 599_000, &mut out);
        assert_eq!(statuses(&out), [ViolationStatus::Open]);
        d.tick(&mut st, &v, T0 + 59_000 + 600_000, &mut out);
        assert_eq!(statuses(&out), [ViolationStatus::Open, ViolationStatus::Closed]);
        assert_eq!(out[0].id, out[1].id);
        d.tick(&mut st, &v, T0 + 10_000_000, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn registration_closes_the_episode() {
        let d = MachineryDetector::new(MachineryConfig::default());
        let mut st = MachineryState::default();
        let mut out = Vec::new();
        let unreg = machine("");
        let reg = machine("ZJ330500-000123");
        for (s, v) in [(0, &unreg), (1, &unreg), (2, &reg), (3, &reg)] {
            let rec = record(T0 + s * 1000, rpm(Some(1500.0)));
            d.update(&mut st, &Observation { vehicle: v, record: &rec, received_ms: rec.time_ms }, &mut out);
        }
        assert_eq!(statuses(&out), [ViolationStatus::Open, ViolationStatus::Closed]);
        assert_eq!(out[1].evidence["ended_because"], "registration code recorded");
    }
}
