//! One telemetry record: what a terminal reports for one instant (normally 1 Hz).
use super::{TimeBounds, TimeError, TimestampMs, Vin, VinError};
use serde::{Deserialize, Serialize};

/// A GNSS fix in WGS-84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub lon: f64,
    pub lat: f64,
    /// Positioning status bit0 = 0. An invalid fix is kept (it is evidence) but never geofenced.
    pub valid: bool,
}

impl Fix {
    pub fn in_range(&self) -> bool {
        self.lon.is_finite()
            && self.lat.is_finite()
            && (-180.0..=180.0).contains(&self.lon)
            && (-90.0..=90.0).contains(&self.lat)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EngineStreamKind {
    #[default]
    Unknown,
    Diesel,
    Gas,
}

/// Engine data stream (GB 17691 Annex Q info type 0x02) in engineering units. `None` means the
/// terminal sent a sentinel (abnormal / invalid), a value out of range, or no value at all: an
/// absent value never opens or closes a violation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineData {
    pub vehicle_speed_kmh: Option<f64>,
    pub atmospheric_pressure_kpa: Option<f64>,
    pub engine_torque_pct: Option<f64>,
    pub friction_torque_pct: Option<f64>,
    pub engine_speed_rpm: Option<f64>,
    pub fuel_flow_lph: Option<f64>,
    pub scr_upstream_nox_ppm: Option<f64>,
    pub scr_downstream_nox_ppm: Option<f64>,
    pub reagent_remaining_pct: Option<f64>,
    pub intake_air_flow_kgph: Option<f64>,
    pub scr_inlet_temp_c: Option<f64>,
    pub scr_outlet_temp_c: Option<f64>,
    pub dpf_pressure_diff_kpa: Option<f64>,
    pub coolant_temp_c: Option<f64>,
    pub fuel_level_pct: Option<f64>,
    pub odometer_km: Option<f64>,
}

/// Valid ranges from the engine data stream table (hj1239.md); a value outside is "abnormal".
const ENGINE_RANGES: [(&str, f64, f64); 16] = [
    ("vehicle_speed_kmh", 0.0, 250.996),
    ("atmospheric_pressure_kpa", 0.0, 125.0),
    ("engine_torque_pct", -125.0, 125.0),
    ("friction_torque_pct", -125.0, 125.0),
    ("engine_speed_rpm", 0.0, 8031.875),
    ("fuel_flow_lph", 0.0, 3212.75),
    ("scr_upstream_nox_ppm", -200.0, 3212.75),
    ("scr_downstream_nox_ppm", -200.0, 3212.75),
    ("reagent_remaining_pct", 0.0, 100.0),
    ("intake_air_flow_kgph", 0.0, 3212.75),
    ("scr_inlet_temp_c", -273.0, 1734.97),
    ("scr_outlet_temp_c", -273.0, 1734.97),
    ("dpf_pressure_diff_kpa", 0.0, 6425.5),
    ("coolant_temp_c", -40.0, 210.0),
    ("fuel_level_pct", 0.0, 100.0),
    ("odometer_km", 0.0, 429_496_729.5),
];

impl EngineData {
    fn fields(&self) -> [Option<f64>; 16] {
        [
            self.vehicle_speed_kmh,
            self.atmospheric_pressure_kpa,
            self.engine_torque_pct,
            self.friction_torque_pct,
            self.engine_speed_rpm,
            self.fuel_flow_lph,
            self.scr_upstream_nox_ppm,
            self.scr_downstream_nox_ppm,
            self.reagent_remaining_pct,
            self.intake_air_flow_kgph,
            self.scr_inlet_temp_c,
            self.scr_outlet_temp_c,
            self.dpf_pressure_diff_kpa,
            self.coolant_temp_c,
            self.fuel_level_pct,
            self.odometer_km,
        ]
    }

    /// The first field outside its valid range, if any. A gRPC client sending a number outside the
    /// protocol's range has a bug; the record is rejected with the field named.
    pub fn out_of_range(&self) -> Option<(&'static str, f64)> {
        self.fields().iter().zip(ENGINE_RANGES.iter()).find_map(|(v, (name, lo, hi))| match v {
            Some(x) if !(x.is_finite() && *x >= *lo - 1e-9 && *x <= *hi + 1e-9) => Some((*name, *x)),
            _ => None,
        })
    }

    /// Engine running: speed reported and above idle-stall. Absent speed is "unknown", not "off".
    pub fn engine_running(&self) -> Option<bool> {
        self.engine_speed_rpm.map(|r| r > 0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ObdProtocol {
    #[default]
    Unknown,
    Iso15765,
    Iso27145,
    SaeJ1939,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MilStatus {
    #[default]
    Unknown,
    Off,
    On,
    Invalid,
}

/// OBD information body (info type 0x01).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ObdInfo {
    pub protocol: ObdProtocol,
    pub mil: MilStatus,
    pub diag_support_status: Option<u16>,
    pub diag_readiness_status: Option<u16>,
    /// VIN read from the ECU, as sent (may be blank or garbage on tampered vehicles: not validated).
    pub ecu_vin: String,
    pub software_calibration_id: String,
    pub cvn: String,
    pub iupr: Vec<u16>,
    /// `None` when the terminal reported the fault count as invalid.
    pub fault_codes: Option<Vec<u32>>,
}

/// Field sizes of the OBD information body (GB 17691 Annex Q / HJ 1239, hj1239.md): strings are
/// fixed-width ASCII fields, IUPR is 18 counters, the fault count is at most 253.
pub const OBD_ECU_VIN_MAX: usize = 17;
pub const OBD_CALIBRATION_ID_MAX: usize = 18;
pub const OBD_CVN_MAX: usize = 18;
pub const OBD_IUPR_MAX: usize = 18;
pub const OBD_FAULT_CODES_MAX: usize = 253;

impl ObdInfo {
    /// The first field longer than its slot in the protocol (field, length, limit), if any. The
    /// binary protocol cannot carry more; a gRPC client sending more has a bug or is hostile.
    /// Strings count characters: the gateway decodes non-ASCII bytes of a tampered ECU as one
    /// replacement character each, and those records are evidence (R4).
    pub fn oversize(&self) -> Option<(&'static str, usize, usize)> {
        let chars = |s: &str| s.chars().count();
        [
            ("obd.ecu_vin", chars(&self.ecu_vin), OBD_ECU_VIN_MAX),
            ("obd.software_calibration_id", chars(&self.software_calibration_id), OBD_CALIBRATION_ID_MAX),
            ("obd.cvn", chars(&self.cvn), OBD_CVN_MAX),
            ("obd.iupr", self.iupr.len(), OBD_IUPR_MAX),
            ("obd.fault_codes", self.fault_codes.as_ref().map_or(0, Vec::len), OBD_FAULT_CODES_MAX),
        ]
        .into_iter()
        .find(|(_, len, max)| len > max)
    }

    /// The fault codes read by the OBD protocol (ISO 15765 / ISO 27145: `P2047-1C status 0x08`;
    /// J1939: `SPN 3226 FMI 2 OC 1`; unknown protocol: the raw hex). Derived from the stored raw
    /// codes and protocol, so a corrected reading applies to old records too.
    pub fn fault_codes_readable(&self) -> Option<Vec<String>> {
        let protocol = match self.protocol {
            ObdProtocol::Iso15765 => Some(0),
            ObdProtocol::Iso27145 => Some(1),
            ObdProtocol::SaeJ1939 => Some(2),
            ObdProtocol::Unknown | ObdProtocol::Invalid => None,
        };
        let codes = self.fault_codes.as_ref()?;
        Some(
            codes
                .iter()
                .map(|&raw| match protocol {
                    Some(p) => crate::hj1239::Dtc(raw.to_be_bytes()).read(p).to_string(),
                    None => format!("{raw:08X}"),
                })
                .collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryRecord {
    pub vin: Vin,
    /// Collection time, epoch ms UTC.
    pub time_ms: TimestampMs,
    pub fix: Option<Fix>,
    pub engine: Option<EngineData>,
    pub obd: Option<ObdInfo>,
    /// Smoke opacity, light absorption coefficient k (m⁻¹).
    pub opacity_k: Option<f64>,
    pub stream_kind: EngineStreamKind,
}

/// Why a record was refused at the edge. Each variant maps to an ack rejection reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid VIN: {0}")]
    Vin(#[from] VinError),
    #[error("VIN {0} is not registered")]
    UnknownVin(Vin),
    #[error("VIN {0} is outside this credential's scope")]
    ForbiddenVin(Vin),
    #[error("position out of range: lon {lon}, lat {lat}")]
    Position { lon: f64, lat: f64 },
    #[error("invalid time: {0}")]
    Time(#[from] TimeError),
    #[error("{field} = {value} is outside the protocol range")]
    Value { field: &'static str, value: f64 },
    #[error("{field} has {len} characters or items, the protocol allows at most {max}")]
    Oversize { field: &'static str, len: usize, max: usize },
    #[error("VIN {vin} fails the GB 16735 check digit (position 9 is {found:?}, expected {expected:?})")]
    CheckDigit { vin: Vin, found: char, expected: char },
    #[error("the batch already spans {max_days} Beijing days; send records of other days in another batch")]
    BatchSpan { max_days: usize },
}

impl TelemetryRecord {
    /// A record of `vin` at `time_ms` with no values (all absent): the start for a report that
    /// carries only some of them.
    pub fn bare(vin: Vin, time_ms: TimestampMs) -> Self {
        TelemetryRecord {
            vin,
            time_ms,
            fix: None,
            engine: None,
            obd: None,
            opacity_k: None,
            stream_kind: EngineStreamKind::Unknown,
        }
    }

    /// Edge validation with the default time bounds (no retention, 24 h ahead).
    pub fn validate(&self, now_ms: TimestampMs) -> Result<(), RecordError> {
        self.validate_within(now_ms, &TimeBounds::default())
    }

    /// Edge validation shared by every transport (`pipeline::Admission` adds the server's bounds).
    pub fn validate_within(&self, now_ms: TimestampMs, bounds: &TimeBounds) -> Result<(), RecordError> {
        bounds.check(self.time_ms, now_ms)?;
        if let Some(f) = &self.fix {
            if !f.in_range() {
                return Err(RecordError::Position { lon: f.lon, lat: f.lat });
            }
        }
        if let Some(e) = &self.engine {
            if let Some((field, value)) = e.out_of_range() {
                return Err(RecordError::Value { field, value });
            }
        }
        if let Some(k) = self.opacity_k {
            if !(k.is_finite() && (0.0..=100.0).contains(&k)) {
                return Err(RecordError::Value { field: "opacity_k", value: k });
            }
        }
        if let Some((field, len, max)) = self.obd.as_ref().and_then(ObdInfo::oversize) {
            return Err(RecordError::Oversize { field, len, max });
        }
        Ok(())
    }

    /// A fix usable for geofencing (present, valid, in range).
    pub fn valid_fix(&self) -> Option<Fix> {
        self.fix.filter(|f| f.valid && f.in_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec() -> TelemetryRecord {
        TelemetryRecord {
            vin: Vin::parse("LGBH52E07HY000001").unwrap(),
            time_ms: 1_761_926_400_000,
            fix: Some(Fix { lon: 120.15, lat: 30.28, valid: true }),
            engine: Some(EngineData { engine_speed_rpm: Some(1200.0), ..Default::default() }),
            obd: None,
            opacity_k: None,
            stream_kind: EngineStreamKind::Diesel,
        }
    }

    #[test]
    fn validation_names_the_cause() {
        let now = 1_761_926_400_000;
        assert!(rec().validate(now).is_ok());
        let mut r = rec();
        r.fix = Some(Fix { lon: 200.0, lat: 30.0, valid: true });
        assert!(matches!(r.validate(now), Err(RecordError::Position { .. })));
        let mut r = rec();
        r.fix = Some(Fix { lon: f64::NAN, lat: 30.0, valid: true });
        assert!(matches!(r.validate(now), Err(RecordError::Position { .. })));
        let mut r = rec();
        r.time_ms = 5;
        assert!(matches!(r.validate(now), Err(RecordError::Time(_))));
        let mut r = rec();
        r.engine = Some(EngineData { engine_speed_rpm: Some(9000.0), ..Default::default() });
        assert_eq!(r.validate(now), Err(RecordError::Value { field: "engine_speed_rpm", value: 9000.0 }));
    }

    #[test]
    fn obd_fields_are_limited_to_their_protocol_slots() {
        let now = 1_761_926_400_000;
        let full = ObdInfo {
            ecu_vin: "L".repeat(OBD_ECU_VIN_MAX),
            software_calibration_id: "C".repeat(OBD_CALIBRATION_ID_MAX),
            cvn: "V".repeat(OBD_CVN_MAX),
            iupr: vec![1; OBD_IUPR_MAX],
            fault_codes: Some(vec![7; OBD_FAULT_CODES_MAX]),
            ..Default::default()
        };
        let mut r = rec();
        r.obd = Some(full.clone());
        assert!(r.validate(now).is_ok(), "every field at its limit is fine");
        type Grow = fn(&mut ObdInfo);
        let cases: [(&str, Grow); 5] = [
            ("obd.ecu_vin", |o| o.ecu_vin = "L".repeat(1 << 20)),
            ("obd.software_calibration_id", |o| o.software_calibration_id.push('x')),
            ("obd.cvn", |o| o.cvn.push('x')),
            ("obd.iupr", |o| o.iupr.push(1)),
            ("obd.fault_codes", |o| o.fault_codes.get_or_insert_with(Vec::new).push(1)),
        ];
        for (name, grow) in cases {
            let mut o = full.clone();
            grow(&mut o);
            r.obd = Some(o);
            match r.validate(now) {
                Err(RecordError::Oversize { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_fix_is_not_usable() {
        let mut r = rec();
        r.fix = Some(Fix { lon: 120.0, lat: 30.0, valid: false });
        assert!(r.valid_fix().is_none());
        assert!(rec().valid_fix().is_some());
    }
}
