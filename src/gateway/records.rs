//! HJ 1239 info reports → domain telemetry records.
//!
//! HJ layout: every body carries its own collection time, one record per time.
//! GB 17691 layout: one report time for all bodies. A report with several engine-stream bodies
//! (a terminal batching 10 s of 1 Hz data) gets consecutive times `report time + k × interval`
//! for the k-th engine body. UNVERIFIED: the reference does not say how a GB-layout report spreads
//! several engine bodies over time; the interval is configurable (`hj1239.gb_body_interval_ms`).
//! An OBD body joins the record of the engine body it follows (or the first one).
use crate::hj1239::{self, InfoBody, InfoReport, MachineryReport};
use crate::model::{self, EngineStreamKind, Fix, MilStatus, ObdProtocol, TelemetryRecord, Vin};

pub fn from_report(vin: Vin, report: &InfoReport, gb_body_interval_ms: i64) -> Vec<TelemetryRecord> {
    let mut out: Vec<TelemetryRecord> = Vec::new();
    let mut pending_obd: Option<model::ObdInfo> = None;
    let gb = matches!(report, InfoReport::Gb17691(_));
    let mut engine_index = 0i64;
    for (collected, body) in report.bodies() {
        let base = collected.epoch_millis_utc();
        let time_ms = if gb { base + engine_index * gb_body_interval_ms } else { base };
        match body {
            InfoBody::Obd(o) => {
                let obd = obd(o);
                // Attach to the current record if it has the same time, else hold for the next.
                match out.last_mut() {
                    Some(last) if last.time_ms == time_ms && last.obd.is_none() => last.obd = Some(obd),
                    _ => pending_obd = Some(obd),
                }
            }
            InfoBody::DieselEngine(e) => {
                out.push(TelemetryRecord {
                    vin,
                    time_ms,
                    fix: fix(e.position_status, e.longitude_deg(), e.latitude_deg()),
                    engine: Some(diesel(e)),
                    obd: pending_obd.take(),
                    opacity_k: None,
                    stream_kind: EngineStreamKind::Diesel,
                });
                engine_index += 1;
            }
            InfoBody::GasEngine(g) => {
                out.push(TelemetryRecord {
                    vin,
                    time_ms,
                    fix: None,
                    engine: Some(model::EngineData {
                        vehicle_speed_kmh: g.vehicle_speed_kmh(),
                        atmospheric_pressure_kpa: g.atmospheric_pressure_kpa(),
                        engine_torque_pct: g.net_torque_percent(),
                        friction_torque_pct: g.friction_torque_percent(),
                        engine_speed_rpm: g.engine_speed_rpm(),
                        fuel_flow_lph: g.fuel_flow_lph(),
                        ..Default::default()
                    }),
                    obd: pending_obd.take(),
                    opacity_k: None,
                    stream_kind: EngineStreamKind::Gas,
                });
                engine_index += 1;
            }
            // Raw bodies whose layout the reference does not give: kept in the frame log only.
            InfoBody::Hybrid(_) | InfoBody::TwcNox(_) | InfoBody::Supplementary(_) => {}
        }
    }
    if let Some(obd) = pending_obd {
        // An OBD-only report is still a record (R4 reads MIL, ECU VIN and CVN from it).
        let time_ms = report.time().epoch_millis_utc();
        out.push(TelemetryRecord { obd: Some(obd), ..TelemetryRecord::bare(vin, time_ms) });
    }
    out
}

/// Machinery reports (HJ 1322, UNVERIFIED layout): the position from the header; the record
/// bodies stay raw until their layout is confirmed.
pub fn from_machinery(vin: Vin, report: &MachineryReport) -> TelemetryRecord {
    let fix = report.position().map(|p| Fix { lon: p.longitude, lat: p.latitude, valid: true });
    TelemetryRecord {
        vin,
        time_ms: report.time.epoch_millis_utc(),
        fix,
        engine: None,
        obd: None,
        opacity_k: None,
        stream_kind: EngineStreamKind::Unknown,
    }
}

fn fix(status: hj1239::PositionStatus, lon: Option<f64>, lat: Option<f64>) -> Option<Fix> {
    match (lon, lat) {
        // An invalid fix is kept (evidence) but marked so it is never geofenced.
        (Some(lon), Some(lat)) => Some(Fix { lon, lat, valid: status.fix_valid() }),
        _ => None,
    }
}

fn diesel(e: &hj1239::EngineData) -> model::EngineData {
    model::EngineData {
        vehicle_speed_kmh: e.vehicle_speed_kmh(),
        atmospheric_pressure_kpa: e.atmospheric_pressure_kpa(),
        engine_torque_pct: e.net_torque_percent(),
        friction_torque_pct: e.friction_torque_percent(),
        engine_speed_rpm: e.engine_speed_rpm(),
        fuel_flow_lph: e.fuel_flow_lph(),
        scr_upstream_nox_ppm: e.scr_upstream_nox_ppm(),
        scr_downstream_nox_ppm: e.scr_downstream_nox_ppm(),
        reagent_remaining_pct: e.reagent_level_percent(),
        intake_air_flow_kgph: e.intake_air_flow_kgph(),
        scr_inlet_temp_c: e.scr_inlet_temperature_c(),
        scr_outlet_temp_c: e.scr_outlet_temperature_c(),
        dpf_pressure_diff_kpa: e.dpf_pressure_drop_kpa(),
        coolant_temp_c: e.coolant_temperature_c(),
        fuel_level_pct: e.fuel_level_percent(),
        odometer_km: e.odometer_km(),
    }
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string()
}

fn obd(o: &hj1239::ObdInfo) -> model::ObdInfo {
    model::ObdInfo {
        protocol: match o.protocol {
            0 => ObdProtocol::Iso15765,
            1 => ObdProtocol::Iso27145,
            2 => ObdProtocol::SaeJ1939,
            0xFE => ObdProtocol::Invalid,
            _ => ObdProtocol::Unknown,
        },
        mil: match o.mil_status {
            0 => MilStatus::Off,
            1 => MilStatus::On,
            0xFE => MilStatus::Invalid,
            _ => MilStatus::Unknown,
        },
        diag_support_status: Some(o.diagnostic_support),
        diag_readiness_status: Some(o.diagnostic_readiness),
        ecu_vin: ascii(&o.ecu_vin.0),
        software_calibration_id: ascii(&o.calibration_id),
        cvn: ascii(&o.cvn),
        iupr: o.iupr.to_vec(),
        fault_codes: (o.fault_count < hj1239::obd::FAULT_COUNT_INVALID_FIRST)
            .then(|| o.faults.iter().map(|d| u32::from_be_bytes(d.0)).collect()),
    }
}
