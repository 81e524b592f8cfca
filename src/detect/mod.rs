//! Detectors: each rule is a small, pure state machine run per record over per-vehicle state.
//!
//! A detector never does I/O. It reads one [`Observation`] (the record, the registered vehicle,
//! whether this is late data), updates its own slice of [`VehicleState`] and pushes violation
//! snapshots (open, then closed) to `out`. The pipeline persists the state together with the records
//! and the violations in one commit, so a restart resumes every window where it was.
//!
//! | module | rules | driven by |
//! |---|---|---|
//! | [`smoke`] | R2.opacity, R2.roadside ([`smoke::evaluate_roadside`]) | records; roadside submissions |
//! | [`nox`] | R3 | records |
//! | [`tamper`] | R4.scr_ineffective, R4.reagent_empty, R4.dpf_bypass, R4.mil_on, R4.ecu_vin_mismatch, R4.cvn_changed | records |
//! | [`offline`] | R5.offline, R5.time_jump | records, [`DetectorSet::tick`], login / logout / reissue hooks |
//! | [`machinery`] | R6.unregistered | records, [`DetectorSet::tick`] |
//!
//! R1 and R6 banned-stage-in-zone live in the geofence engine. Every violation is emitted as
//! snapshots of one episode sharing a deterministic id (`Open` when proven, `Closed` at the end;
//! instantaneous events such as a CVN change emit both at once; a roadside violation is emitted
//! `Closed` only). The pipeline upserts snapshots by id. Thresholds in each violation say which
//! numbers are standard limits, policy defaults or UNVERIFIED (see docs/rules.md).
pub mod episode;
pub mod machinery;
pub mod nox;
pub mod offline;
pub mod plausibility;
pub mod smoke;
pub mod tamper;
pub mod window;

use crate::model::{RoadsideRecord, TelemetryRecord, TimestampMs, Vehicle, Violation};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// What a detector sees for one record.
pub struct Observation<'a> {
    pub vehicle: &'a Vehicle,
    pub record: &'a TelemetryRecord,
    /// Server clock when the record was received (R5 time jumps).
    pub received_ms: TimestampMs,
}

pub trait Detector: Send + Sync {
    type State: Default + Clone + Serialize + DeserializeOwned + Send;

    /// Rule id as in rules.md ("R1" … "R6", sub-rules "R4.reagent_empty").
    fn rule(&self) -> &'static str;

    /// Feeds one record, in time order for this vehicle.
    fn update(&self, state: &mut Self::State, obs: &Observation<'_>, out: &mut Vec<Violation>);
}

/// Every detector's configuration, from the `[rules]` section of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    pub nox: nox::NoxConfig,
    pub smoke: smoke::SmokeConfig,
    pub tamper: tamper::TamperConfig,
    pub offline: offline::OfflineConfig,
    pub machinery: machinery::MachineryConfig,
    /// R1 / R6 zone dwell and filtering (geofence tracker).
    pub zones: crate::geofence::TrackerConfig,
}

/// Per-vehicle state of every detector, persisted with each commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VehicleState {
    /// Newest record time evaluated live: anything at or before it is late data.
    pub last_time_ms: Option<TimestampMs>,
    pub nox: <nox::NoxDetector as Detector>::State,
    pub smoke: <smoke::SmokeDetector as Detector>::State,
    pub tamper: <tamper::TamperDetector as Detector>::State,
    pub offline: <offline::OfflineDetector as Detector>::State,
    pub machinery: <machinery::MachineryDetector as Detector>::State,
    /// R1 / R6 zone episodes and park presence.
    pub zones: crate::geofence::ZoneTrackState,
}

/// Format version of the persisted [`VehicleState`]; bump when its layout changes.
const STATE_VERSION: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("vehicle state has version {0}, expected {STATE_VERSION}")]
    Version(u8),
    #[error("vehicle state is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
}

impl VehicleState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        // Serialising plain data into a Vec cannot fail; an empty state is the safe fallback.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, StateError> {
        match b.split_first() {
            Some((&STATE_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&v, _)) => Err(StateError::Version(v)),
            None => Err(StateError::Version(0)),
        }
    }
}

/// The set of detectors a worker runs, with their configuration.
pub struct DetectorSet {
    nox: nox::NoxDetector,
    smoke: smoke::SmokeDetector,
    tamper: tamper::TamperDetector,
    offline: offline::OfflineDetector,
    machinery: machinery::MachineryDetector,
    smoke_cfg: smoke::SmokeConfig,
    tracker: crate::geofence::ZoneTracker,
    zones: std::sync::Arc<crate::geofence::ZoneRegistry>,
}

impl DetectorSet {
    /// Detectors without zones (R1/R6 zone rules see an empty zone set).
    pub fn new(cfg: &RulesConfig) -> Self {
        Self::with_zones(cfg, std::sync::Arc::new(crate::geofence::ZoneRegistry::default()))
    }

    /// Detectors over a live zone registry: zone changes apply to the next record, no restart.
    pub fn with_zones(cfg: &RulesConfig, zones: std::sync::Arc<crate::geofence::ZoneRegistry>) -> Self {
        DetectorSet {
            tracker: crate::geofence::ZoneTracker::new(cfg.zones.clone()),
            zones,
            nox: nox::NoxDetector::new(cfg.nox.clone()),
            smoke: smoke::SmokeDetector::new(cfg.smoke.clone()),
            tamper: tamper::TamperDetector::new(cfg.tamper.clone()),
            offline: offline::OfflineDetector::new(cfg.offline.clone()),
            machinery: machinery::MachineryDetector::new(cfg.machinery.clone()),
            smoke_cfg: cfg.smoke.clone(),
        }
    }

    /// Runs every detector on one record. Records must come in time order per vehicle.
    pub fn observe(&self, state: &mut VehicleState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        let mut passages = Vec::new();
        self.observe_with_passages(state, obs, out, &mut passages);
    }

    /// As `observe`, also reporting park gate passages derived from the track (clean transport).
    pub fn observe_with_passages(
        &self,
        state: &mut VehicleState,
        obs: &Observation<'_>,
        out: &mut Vec<Violation>,
        passages: &mut Vec<crate::geofence::ParkPassage>,
    ) {
        let zones = self.zones.load();
        self.tracker.update(&mut state.zones, obs.vehicle, obs.record, &zones, out, passages);
        self.nox.update(&mut state.nox, obs, out);
        self.smoke.update(&mut state.smoke, obs, out);
        self.tamper.update(&mut state.tamper, obs, out);
        self.offline.update(&mut state.offline, obs, out);
        self.machinery.update(&mut state.machinery, obs, out);
        state.last_time_ms = Some(obs.record.time_ms.max(state.last_time_ms.unwrap_or(i64::MIN)));
    }

    /// The zone registry the detectors geofence against (also the outlines that place a
    /// violation in a city / county, `geofence::jurisdiction`).
    pub fn zone_registry(&self) -> &std::sync::Arc<crate::geofence::ZoneRegistry> {
        &self.zones
    }

    /// A record far ahead of the server clock (a clock fault, `pipeline::admission`): only
    /// R5.time_jump sees it, and the vehicle's live clock (`last_time_ms`) does not move.
    pub fn observe_clock_fault(
        &self,
        state: &mut VehicleState,
        obs: &Observation<'_>,
        out: &mut Vec<Violation>,
    ) {
        self.offline.update(&mut state.offline, obs, out);
    }

    /// Time-driven rules (R5 offline, the end of an R6 working session when the terminal went
    /// quiet). Call periodically (every minute is plenty) for every vehicle with state, with the
    /// server clock; it is cheap when nothing is pending.
    pub fn tick(
        &self,
        state: &mut VehicleState,
        vehicle: &Vehicle,
        now_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        self.offline.tick(&mut state.offline, vehicle, now_ms, out);
        self.machinery.tick(&mut state.machinery, vehicle, now_ms, out);
    }

    /// A login frame was accepted (server receive time). See [`offline`].
    pub fn on_login(&self, state: &mut VehicleState, received_ms: TimestampMs) {
        self.offline.on_login(&mut state.offline, received_ms);
    }

    /// A logout frame was accepted (server receive time). May close a reported offline gap.
    pub fn on_logout(
        &self,
        state: &mut VehicleState,
        vehicle: &Vehicle,
        received_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        self.offline.on_logout(&mut state.offline, vehicle, received_ms, out);
    }

    /// Reissued (0x03) records spanning `[from_ms, to_ms]` (their own collection times) were
    /// stored. Call once per reissue frame or batch, in addition to `observe` on its records.
    /// May emit a withdrawn `Closed` snapshot of a reported offline gap.
    pub fn on_reissue_covering(
        &self,
        state: &mut VehicleState,
        vehicle: &Vehicle,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        self.offline.on_reissue_covering(&mut state.offline, vehicle, from_ms, to_ms, out);
    }

    /// R2 for one roadside record, with the configured limits. See [`smoke::evaluate_roadside`].
    pub fn evaluate_roadside(
        &self,
        rec: &RoadsideRecord,
        vehicle: Option<&Vehicle>,
    ) -> smoke::RoadsideOutcome {
        smoke::evaluate_roadside(rec, vehicle, &self.smoke_cfg)
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Synthetic traces for detector tests.
    use crate::model::*;

    pub const T0: i64 = 1_761_926_400_000; // 2025-11-01T00:00:00+08:00

    pub fn vin() -> Vin {
        Vin::parse("LGBH52E07HY000001").unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn truck(stage: EmissionStage) -> Vehicle {
        Vehicle {
            plate: "浙A12345".into(),
            kind: VehicleKind::Truck,
            fuel: Fuel::Diesel,
            emission_stage: stage,
            city_code: "330100".into(),
            ..Vehicle::new(vin())
        }
    }

    pub fn record(t_ms: i64, engine: EngineData) -> TelemetryRecord {
        TelemetryRecord {
            vin: vin(),
            time_ms: t_ms,
            fix: Some(Fix { lon: 120.15, lat: 30.28, valid: true }),
            engine: Some(engine),
            obd: None,
            opacity_k: None,
            stream_kind: EngineStreamKind::Diesel,
        }
    }

    /// A diesel non-road machine (Stage III, 75 kW) with the given registration code.
    pub fn machine(registration_code: &str) -> Vehicle {
        Vehicle {
            plate: String::new(),
            kind: VehicleKind::NonRoadMachine,
            machine_type: "excavator".into(),
            fuel: Fuel::Diesel,
            emission_stage: EmissionStage::NonRoadIII,
            rated_power_kw: Some(75.0),
            registration_code: registration_code.into(),
            city_code: "330500".into(),
            ..Vehicle::new(vin())
        }
    }

    /// A warmed-up diesel engine under load with the given SCR NOx values.
    pub fn warm(up_ppm: f64, down_ppm: f64) -> EngineData {
        EngineData {
            engine_speed_rpm: Some(1400.0),
            scr_inlet_temp_c: Some(320.0),
            coolant_temp_c: Some(85.0),
            scr_upstream_nox_ppm: Some(up_ppm),
            scr_downstream_nox_ppm: Some(down_ppm),
            intake_air_flow_kgph: Some(800.0),
            dpf_pressure_diff_kpa: Some(3.0),
            reagent_remaining_pct: Some(60.0),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let mut s = VehicleState { last_time_ms: Some(42), ..Default::default() };
        s.nox.prev_ms = Some(41);
        let b = s.encode();
        let d = VehicleState::decode(&b).unwrap();
        assert_eq!(d.last_time_ms, Some(42));
        assert!(matches!(VehicleState::decode(&[99, 1, 2]), Err(StateError::Version(99))));
        assert!(VehicleState::decode(&[]).is_err());
        assert!(VehicleState::decode(&[STATE_VERSION, 0xff, 0xff, 0xff]).is_err());
    }

    use crate::model::{EmissionStage, MilStatus, ObdInfo, ViolationStatus};
    use testkit::*;

    /// Per-vehicle budget across all detectors (persisted with every commit).
    const BUDGET: usize = 1024;

    #[test]
    fn idle_state_is_tiny() {
        let n = VehicleState::default().encode().len();
        assert!(n <= 48, "default state is {n} bytes");
        // A compliant vehicle after an hour of clean data keeps every vector empty.
        let set = DetectorSet::new(&RulesConfig::default());
        let v = truck(EmissionStage::ChinaVI);
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        for s in 0..3600 {
            let mut r = record(T0 + s * 1000, warm(900.0, 100.0));
            r.opacity_k = Some(0.2);
            set.observe(&mut st, &Observation { vehicle: &v, record: &r, received_ms: r.time_ms }, &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        let n = st.encode().len();
        eprintln!("clean state after an hour: {n} bytes");
        assert!(n <= 160, "clean state is {n} bytes");
    }

    /// Everything at once: smoke and NOx windows full, all three R4 counts running, MIL and ECU
    /// VIN episodes open, a CVN baseline, a time jump, an offline gap with fragmented reissue
    /// coverage and a machinery episode.
    #[test]
    fn busy_state_stays_well_under_budget() {
        let set = DetectorSet::new(&RulesConfig::default());
        let mut v = machine("");
        v.emission_stage = EmissionStage::NonRoadIV;
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        let mut bad = warm(900.0, 800.0);
        bad.reagent_remaining_pct = Some(0.0);
        bad.dpf_pressure_diff_kpa = Some(0.0);
        let feed = |st: &mut VehicleState, out: &mut Vec<Violation>, s: i64, rx: i64, mil: MilStatus| {
            let mut r = record(T0 + s * 1000, bad);
            r.opacity_k = Some(if s % 2 == 0 { 3.0 } else { 0.1 });
            r.obd = (s % 30 == 0).then(|| ObdInfo {
                mil,
                ecu_vin: "LGBH52E07HY999999".into(),
                cvn: format!("CVN{:015}", s / 300),
                ..Default::default()
            });
            set.observe(st, &Observation { vehicle: &v, record: &r, received_ms: T0 + rx * 1000 }, out);
        };
        for s in 0..1200 {
            feed(&mut st, &mut out, s, s, MilStatus::On);
        }
        set.tick(&mut st, &v, T0 + 3_600_000, &mut out);
        for i in 0..12 {
            let a = T0 + 1_200_000 + i * 2_000_000;
            set.on_reissue_covering(&mut st, &v, a, a + 1000, &mut out);
        }
        // Back, with a clock 15 min fast, still smoking.
        for s in 3600..4200 {
            feed(&mut st, &mut out, s + 900, s, MilStatus::On);
        }
        let rules: std::collections::BTreeSet<&str> =
            out.iter().filter(|o| o.status == ViolationStatus::Open).map(|o| o.rule.as_str()).collect();
        for r in ["R2.opacity", "R4.scr_ineffective", "R4.reagent_empty", "R4.dpf_bypass", "R4.mil_on"] {
            assert!(rules.contains(r), "{r} not open: {rules:?}");
        }
        for r in ["R4.ecu_vin_mismatch", "R4.cvn_changed", "R5.time_jump", "R6.unregistered"] {
            assert!(rules.contains(r), "{r} not open: {rules:?}");
        }
        assert!(st.tamper.clone() != Default::default());
        assert!(!st.offline.clone().eq(&Default::default()));
        let n = st.encode().len();
        // 13/16: the NOx sensor plausibility watches (R3, R4) hold ~16 bytes each while a
        // reading counts; still a fifth of the budget spare.
        assert!(n <= BUDGET * 13 / 16, "busy state is {n} bytes");
        let size = |b: Result<Vec<u8>, postcard::Error>| b.map(|v| v.len()).unwrap_or(0);
        eprintln!(
            "busy state: {n} bytes (nox {}, smoke {}, tamper {}, offline {}, machinery {})",
            size(postcard::to_allocvec(&st.nox)),
            size(postcard::to_allocvec(&st.smoke)),
            size(postcard::to_allocvec(&st.tamper)),
            size(postcard::to_allocvec(&st.offline)),
            size(postcard::to_allocvec(&st.machinery)),
        );
        assert_eq!(VehicleState::decode(&st.encode()).map(|d| d.encode().len()).ok(), Some(n));
    }

    #[test]
    fn detector_set_runs_every_rule_and_ticks() {
        let set = DetectorSet::new(&RulesConfig::default());
        let v = machine("");
        let mut st = VehicleState::default();
        let mut out = Vec::new();
        for s in 0..60 {
            let r = record(T0 + s * 1000, warm(900.0, 100.0));
            set.observe(&mut st, &Observation { vehicle: &v, record: &r, received_ms: r.time_ms }, &mut out);
        }
        assert_eq!(out.len(), 1);
        set.tick(&mut st, &v, T0 + 59_000 + 600_000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].status, ViolationStatus::Closed);
        set.on_logout(&mut st, &v, T0 + 700_000, &mut out);
        set.tick(&mut st, &v, T0 + 36_000_000, &mut out);
        assert_eq!(out.len(), 2);
        set.on_login(&mut st, T0 + 36_000_000);
        let rr = crate::model::RoadsideRecord {
            plate: "X".into(),
            plate_colour: Default::default(),
            time_ms: T0,
            lon: 120.0,
            lat: 30.0,
            ringelmann: Some(1),
            k_per_m: None,
            device_id: "d".into(),
            source: Default::default(),
            evidence_ref: None,
        };
        assert_eq!(set.evaluate_roadside(&rr, Some(&v)), smoke::RoadsideOutcome::Compliant);
    }
}
