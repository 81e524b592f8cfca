//! Conversions between the protobuf API (`proto`) and the domain model. Validation happens here,
//! at the edge: what comes out is a valid domain value or a typed reason.
use crate::model::*;
use crate::proto;

/// The engine data stream has the same fields, in the same units, in the API and the domain:
/// one list keeps the two conversions from drifting apart.
macro_rules! copy_engine {
    ($e:ident => $($ty:tt)+) => {
        $($ty)+ {
            vehicle_speed_kmh: $e.vehicle_speed_kmh,
            atmospheric_pressure_kpa: $e.atmospheric_pressure_kpa,
            engine_torque_pct: $e.engine_torque_pct,
            friction_torque_pct: $e.friction_torque_pct,
            engine_speed_rpm: $e.engine_speed_rpm,
            fuel_flow_lph: $e.fuel_flow_lph,
            scr_upstream_nox_ppm: $e.scr_upstream_nox_ppm,
            scr_downstream_nox_ppm: $e.scr_downstream_nox_ppm,
            reagent_remaining_pct: $e.reagent_remaining_pct,
            intake_air_flow_kgph: $e.intake_air_flow_kgph,
            scr_inlet_temp_c: $e.scr_inlet_temp_c,
            scr_outlet_temp_c: $e.scr_outlet_temp_c,
            dpf_pressure_diff_kpa: $e.dpf_pressure_diff_kpa,
            coolant_temp_c: $e.coolant_temp_c,
            fuel_level_pct: $e.fuel_level_pct,
            odometer_km: $e.odometer_km,
        }
    };
}

pub fn record_from_proto(p: proto::TelemetryRecord) -> Result<TelemetryRecord, RecordError> {
    let vin = Vin::parse(&p.vin)?;
    let fix = p.position.map(|pos| Fix { lon: pos.longitude, lat: pos.latitude, valid: pos.valid });
    let engine = p.engine.map(|e| copy_engine!(e => EngineData));
    let obd = p.obd.map(obd_from_proto);
    let stream_kind = match proto::EngineStreamKind::try_from(p.stream_kind) {
        Ok(proto::EngineStreamKind::Diesel) => EngineStreamKind::Diesel,
        Ok(proto::EngineStreamKind::Gas) => EngineStreamKind::Gas,
        _ => EngineStreamKind::Unknown,
    };
    Ok(TelemetryRecord { vin, time_ms: p.time_ms, fix, engine, obd, opacity_k: p.opacity_k, stream_kind })
}

fn obd_from_proto(o: proto::ObdInfo) -> ObdInfo {
    let protocol = match proto::ObdProtocol::try_from(o.protocol) {
        Ok(proto::ObdProtocol::Iso15765) => ObdProtocol::Iso15765,
        Ok(proto::ObdProtocol::Iso27145) => ObdProtocol::Iso27145,
        Ok(proto::ObdProtocol::Saej1939) => ObdProtocol::SaeJ1939,
        Ok(proto::ObdProtocol::Invalid) => ObdProtocol::Invalid,
        _ => ObdProtocol::Unknown,
    };
    let mil = match proto::MilStatus::try_from(o.mil) {
        Ok(proto::MilStatus::Off) => MilStatus::Off,
        Ok(proto::MilStatus::On) => MilStatus::On,
        Ok(proto::MilStatus::Invalid) => MilStatus::Invalid,
        _ => MilStatus::Unknown,
    };
    ObdInfo {
        protocol,
        mil,
        diag_support_status: o.diag_support_status.and_then(|v| u16::try_from(v).ok()),
        diag_readiness_status: o.diag_readiness_status.and_then(|v| u16::try_from(v).ok()),
        ecu_vin: o.ecu_vin,
        software_calibration_id: o.software_calibration_id,
        cvn: o.cvn,
        iupr: o.iupr.into_iter().map(|v| u16::try_from(v).unwrap_or(u16::MAX)).collect(),
        fault_codes: o.fault_codes_valid.then_some(o.fault_codes),
    }
}

pub fn record_to_proto(r: &TelemetryRecord) -> proto::TelemetryRecord {
    proto::TelemetryRecord {
        vin: r.vin.to_string(),
        time_ms: r.time_ms,
        position: r.fix.map(fix_to_proto),
        engine: r.engine.map(|e| copy_engine!(e => proto::EngineData)),
        obd: r.obd.as_ref().map(|o| proto::ObdInfo {
            protocol: match o.protocol {
                ObdProtocol::Unknown => proto::ObdProtocol::Unspecified,
                ObdProtocol::Iso15765 => proto::ObdProtocol::Iso15765,
                ObdProtocol::Iso27145 => proto::ObdProtocol::Iso27145,
                ObdProtocol::SaeJ1939 => proto::ObdProtocol::Saej1939,
                ObdProtocol::Invalid => proto::ObdProtocol::Invalid,
            } as i32,
            mil: match o.mil {
                MilStatus::Unknown => proto::MilStatus::Unspecified,
                MilStatus::Off => proto::MilStatus::Off,
                MilStatus::On => proto::MilStatus::On,
                MilStatus::Invalid => proto::MilStatus::Invalid,
            } as i32,
            diag_support_status: o.diag_support_status.map(u32::from),
            diag_readiness_status: o.diag_readiness_status.map(u32::from),
            ecu_vin: o.ecu_vin.clone(),
            software_calibration_id: o.software_calibration_id.clone(),
            cvn: o.cvn.clone(),
            iupr: o.iupr.iter().map(|&v| u32::from(v)).collect(),
            fault_codes: o.fault_codes.clone().unwrap_or_default(),
            fault_codes_valid: o.fault_codes.is_some(),
            fault_codes_readable: o.fault_codes_readable().unwrap_or_default(),
        }),
        opacity_k: r.opacity_k,
        stream_kind: match r.stream_kind {
            EngineStreamKind::Unknown => proto::EngineStreamKind::Unspecified,
            EngineStreamKind::Diesel => proto::EngineStreamKind::Diesel,
            EngineStreamKind::Gas => proto::EngineStreamKind::Gas,
        } as i32,
    }
}

fn fix_to_proto(f: Fix) -> proto::Position {
    proto::Position { longitude: f.lon, latitude: f.lat, valid: f.valid }
}

#[derive(Debug, thiserror::Error)]
pub enum VehicleError {
    #[error("invalid VIN: {0}")]
    Vin(#[from] VinError),
    #[error("unknown {field} value {value}")]
    Enum { field: &'static str, value: i32 },
}

macro_rules! enum_map {
    ($name:ident, $to:ident, $proto:ty, $dom:ty, $field:literal, { $($p:ident => $d:ident),* $(,)? }) => {
        pub(crate) fn $name(v: i32) -> Result<$dom, VehicleError> {
            match <$proto>::try_from(v) {
                $(Ok(<$proto>::$p) => Ok(<$dom>::$d),)*
                #[allow(unreachable_patterns)]
                _ => Err(VehicleError::Enum { field: $field, value: v }),
            }
        }
        pub(crate) fn $to(v: $dom) -> i32 {
            match v { $(<$dom>::$d => <$proto>::$p as i32,)* }
        }
    };
}

enum_map!(kind_from, kind_to, proto::VehicleKind, VehicleKind, "kind", {
    Truck => Truck, NonRoadMachine => NonRoadMachine,
});
enum_map!(fuel_from, fuel_to, proto::Fuel, Fuel, "fuel", {
    Unspecified => Unknown, Diesel => Diesel, Gas => Gas, Petrol => Petrol, Electric => Electric,
    Hybrid => Hybrid, Hydrogen => Hydrogen,
});
enum_map!(plate_from, plate_to, proto::PlateColour, PlateColour, "plate_colour", {
    Unspecified => Unknown, Blue => Blue, Yellow => Yellow, Green => Green, YellowGreen => YellowGreen,
    White => White, Black => Black,
});
enum_map!(stage_from, stage_to, proto::EmissionStage, EmissionStage, "emission_stage", {
    Unspecified => Unknown, China0 => China0, ChinaI => ChinaI, ChinaIi => ChinaII, ChinaIii => ChinaIII,
    ChinaIv => ChinaIV, ChinaV => ChinaV, ChinaVi => ChinaVI, NonRoadPreI => NonRoadPreI,
    NonRoadI => NonRoadI, NonRoadIi => NonRoadII, NonRoadIii => NonRoadIII, NonRoadIv => NonRoadIV,
});

pub fn vehicle_from_proto(p: proto::Vehicle) -> Result<Vehicle, VehicleError> {
    Ok(Vehicle {
        vin: Some(Vin::parse(&p.vin)?),
        plate: p.plate.trim().to_string(),
        plate_colour: plate_from(p.plate_colour)?,
        kind: kind_from(p.kind)?,
        machine_type: p.machine_type,
        fuel: fuel_from(p.fuel)?,
        emission_stage: stage_from(p.emission_stage)?,
        owner_enterprise_id: p.owner_enterprise_id,
        rated_power_kw: p.rated_power_kw,
        registration_code: p.registration_code,
        city_code: p.city_code,
    })
}

pub fn vehicle_to_proto(v: &Vehicle) -> proto::Vehicle {
    proto::Vehicle {
        vin: v.vin.map(|v| v.to_string()).unwrap_or_default(),
        plate: v.plate.clone(),
        plate_colour: plate_to(v.plate_colour),
        kind: kind_to(v.kind),
        machine_type: v.machine_type.clone(),
        fuel: fuel_to(v.fuel),
        emission_stage: stage_to(v.emission_stage),
        owner_enterprise_id: v.owner_enterprise_id.clone(),
        rated_power_kw: v.rated_power_kw,
        registration_code: v.registration_code.clone(),
        city_code: v.city_code.clone(),
    }
}

pub fn enterprise_from_proto(p: proto::Enterprise) -> Enterprise {
    Enterprise { id: p.id, name: p.name, industry: p.industry, city_code: p.city_code }
}

pub fn enterprise_to_proto(e: &Enterprise) -> proto::Enterprise {
    proto::Enterprise {
        id: e.id.clone(),
        name: e.name.clone(),
        industry: e.industry.clone(),
        city_code: e.city_code.clone(),
    }
}

pub fn violation_to_proto(v: &Violation) -> proto::Violation {
    let details = serde_json::json!({
        "thresholds": v.thresholds,
        "measured": v.measured,
        "evidence": v.evidence,
    });
    proto::Violation {
        id: v.id.0.clone(),
        rule: v.rule.clone(),
        vin: v.vin.to_string(),
        plate: v.plate.clone(),
        status: match v.status {
            ViolationStatus::Open => proto::ViolationStatus::Open,
            ViolationStatus::Closed => proto::ViolationStatus::Closed,
        } as i32,
        late: v.late,
        started_ms: v.started_ms,
        ended_ms: v.ended_ms,
        position: v.position.map(fix_to_proto),
        zone_id: v.zone_id.clone().unwrap_or_default(),
        city_code: v.city_code.clone().unwrap_or_default(),
        county_code: v.county_code.clone().unwrap_or_default(),
        summary: v.summary.clone(),
        details_json: details.to_string(),
        review: None,
    }
}

pub fn reject_reason(e: &RecordError) -> proto::RejectReason {
    match e {
        RecordError::Vin(_) | RecordError::CheckDigit { .. } => proto::RejectReason::InvalidVin,
        RecordError::UnknownVin(_) => proto::RejectReason::UnknownVin,
        RecordError::ForbiddenVin(_) => proto::RejectReason::ForbiddenVin,
        RecordError::Position { .. } => proto::RejectReason::InvalidPosition,
        RecordError::Time(TimeError::BeyondRetention { .. }) => proto::RejectReason::BeyondRetention,
        RecordError::Time(_) => proto::RejectReason::InvalidTime,
        RecordError::Value { .. } | RecordError::Oversize { .. } => proto::RejectReason::InvalidValue,
        RecordError::BatchSpan { .. } => proto::RejectReason::BatchSpan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_absent_values_absent() {
        let p = proto::TelemetryRecord {
            vin: "LGBH52E07HY000001".into(),
            time_ms: 1_761_926_400_000,
            position: Some(proto::Position { longitude: 120.1, latitude: 30.2, valid: true }),
            engine: Some(proto::EngineData { engine_speed_rpm: Some(0.0), ..Default::default() }),
            obd: None,
            opacity_k: None,
            stream_kind: proto::EngineStreamKind::Diesel as i32,
        };
        let r = record_from_proto(p.clone()).unwrap();
        let e = r.engine.unwrap();
        assert_eq!(e.engine_speed_rpm, Some(0.0));
        assert_eq!(e.scr_downstream_nox_ppm, None);
        assert_eq!(record_to_proto(&r), p);
    }

    #[test]
    fn vehicle_enums_are_checked() {
        let p = proto::Vehicle {
            vin: "LGBH52E07HY000001".into(),
            kind: proto::VehicleKind::Truck as i32,
            fuel: 99,
            ..Default::default()
        };
        assert!(matches!(vehicle_from_proto(p), Err(VehicleError::Enum { field: "fuel", value: 99 })));
        let p = proto::Vehicle {
            vin: "LGBH52E07HY000001".into(),
            kind: proto::VehicleKind::Truck as i32,
            emission_stage: proto::EmissionStage::ChinaIii as i32,
            ..Default::default()
        };
        let v = vehicle_from_proto(p.clone()).unwrap();
        assert_eq!(v.emission_stage, EmissionStage::ChinaIII);
        assert_eq!(vehicle_to_proto(&v).emission_stage, p.emission_stage);
        let p = proto::Vehicle { vin: "LGBH52E07HY000001".into(), ..Default::default() };
        assert!(matches!(vehicle_from_proto(p), Err(VehicleError::Enum { field: "kind", value: 0 })));
    }
}
