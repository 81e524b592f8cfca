//! Detectors: each rule is a small, pure state machine run per record over per-vehicle state.
//!
//! A detector never does I/O. It reads one [`Observation`] (the record, the registered vehicle,
//! whether this is late data), updates its own slice of [`VehicleState`] and pushes violation
//! snapshots (open, then closed) to `out`. The pipeline persists the state together with the records
//! and the violations in one commit, so a restart resumes every window where it was.
pub mod episode;
pub mod nox;
pub mod offline;
pub mod smoke;
pub mod tamper;
pub mod window;

use crate::model::{TelemetryRecord, TimestampMs, Vehicle, Violation};
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
}

/// Format version of the persisted [`VehicleState`]; bump when its layout changes.
const STATE_VERSION: u8 = 2;

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
}

impl DetectorSet {
    pub fn new(cfg: &RulesConfig) -> Self {
        DetectorSet {
            nox: nox::NoxDetector::new(cfg.nox.clone()),
            smoke: smoke::SmokeDetector::new(cfg.smoke.clone()),
            tamper: tamper::TamperDetector::new(cfg.tamper.clone()),
            offline: offline::OfflineDetector::new(cfg.offline.clone()),
        }
    }

    /// Runs every detector on one record. Records must come in time order per vehicle.
    pub fn observe(&self, state: &mut VehicleState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        self.nox.update(&mut state.nox, obs, out);
        self.smoke.update(&mut state.smoke, obs, out);
        self.tamper.update(&mut state.tamper, obs, out);
        self.offline.update(&mut state.offline, obs, out);
        state.last_time_ms = Some(obs.record.time_ms.max(state.last_time_ms.unwrap_or(i64::MIN)));
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
}
