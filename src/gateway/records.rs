//! HJ 1239 info reports → domain telemetry records.
//!
//! HJ layout: every body carries its own collection time, one record per time.
//! GB 17691 and signed-bodies layouts: one report time for all bodies. A report with several engine-stream bodies
//! (a terminal batching 10 s of 1 Hz data) gets consecutive times `report time + k × interval`
//! for the k-th engine body. UNVERIFIED: the reference does not say how a GB-layout report spreads
//! several engine bodies over time; the interval is configurable (`hj1239.gb_body_interval_ms`).
//! An OBD body joins the record of the engine body it follows (or the next one); the pipeline keeps
//! the first of two same-time records, so an OBD body must never become a record of its own at a
//! time an engine record already holds.
use crate::hj1239::{
    self, EmissionDiagnostics, InfoBody, InfoReport, LampStatus, MachineryBody, MachineryReport, TamperAlarm,
};
use crate::model::{self, EngineStreamKind, Fix, MilStatus, ObdProtocol, TelemetryRecord, Vin};
use crate::pipeline::TamperAlarmEvent;

pub fn from_report(vin: Vin, report: &InfoReport, gb_body_interval_ms: i64) -> Vec<TelemetryRecord> {
    let mut out: Vec<TelemetryRecord> = Vec::new();
    let mut pending_obd: Option<model::ObdInfo> = None;
    let gb = report.shares_one_time();
    let mut engine_index = 0i64;
    for (collected, body) in report.bodies() {
        let base = collected.epoch_millis_utc();
        let time_ms = if gb { base + engine_index * gb_body_interval_ms } else { base };
        match body {
            InfoBody::Obd(o) => {
                let obd = obd(o);
                // Attach to the engine record it follows (GB: shared report time, so the previous
                // engine body's spread time; HJ: same collection time), else hold for the next.
                // A standalone OBD record at a time an engine record already holds would be a
                // same-time conflict and be dropped.
                match out.last_mut() {
                    Some(last) if (gb || last.time_ms == time_ms) && last.obd.is_none() => {
                        last.obd = Some(obd)
                    }
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
        // An OBD-only report is still a record (R4 reads MIL, ECU VIN and CVN from it). If a
        // record already holds the report time, the OBD body joins it rather than clash with it.
        let time_ms = report.time().epoch_millis_utc();
        match out.iter_mut().find(|r| r.time_ms == time_ms) {
            Some(held) if held.obd.is_none() => held.obd = Some(obd),
            Some(_) => tracing::debug!(%vin, time_ms, "second OBD body for one record time dropped"),
            None => out.push(TelemetryRecord { obd: Some(obd), ..TelemetryRecord::bare(vin, time_ms) }),
        }
    }
    out
}

/// Machinery reports (HJ 1322): one record per data-stream body, at its collection time when the
/// terminal sends per-body times, else at `report time + k × interval` as for GB-layout trucks;
/// every record carries the header's position. A diagnostics body joins the record it precedes
/// (or the last one). A report without a stream body is still one record (position, lamp, DTCs).
/// Period statistics and EGR have no place in the record model yet: decoded, logged by the codec
/// tests, not stored.
pub fn from_machinery(vin: Vin, report: &MachineryReport, body_interval_ms: i64) -> Vec<TelemetryRecord> {
    let (lon, lat) = report.coordinates_deg();
    let fix = fix(report.position_status, lon, lat);
    let base = report.time.epoch_millis_utc();
    let mut out: Vec<TelemetryRecord> = Vec::new();
    let mut pending_obd: Option<model::ObdInfo> = None;
    for rec in &report.records {
        match &rec.body {
            MachineryBody::Stream(s) => {
                let time_ms = rec
                    .collected_at
                    .map(|t| t.epoch_millis_utc())
                    .unwrap_or(base + out.len() as i64 * body_interval_ms);
                out.push(TelemetryRecord {
                    fix,
                    engine: Some(common_engine(&s.engine)),
                    obd: pending_obd.take(),
                    ..TelemetryRecord::bare(vin, time_ms)
                });
            }
            MachineryBody::Diagnostics(d) => {
                let obd = machinery_obd(d);
                match out.last_mut() {
                    Some(last) if last.obd.is_none() && pending_obd.is_none() => last.obd = Some(obd),
                    _ => pending_obd = Some(obd),
                }
            }
            MachineryBody::PeriodStatistics(_) => {}
        }
    }
    if out.is_empty() || pending_obd.is_some() {
        let time_ms = out.last().map_or(base, |r| r.time_ms + 1);
        out.push(TelemetryRecord { fix, obd: pending_obd, ..TelemetryRecord::bare(vin, time_ms) });
    }
    out
}

/// The pipeline's view of a tamper/removal alarm frame.
pub fn tamper_alarm(command: u8, a: &TamperAlarm) -> TamperAlarmEvent {
    let (lon, lat) = a.coordinates_deg();
    TamperAlarmEvent {
        at_ms: a.time.epoch_millis_utc(),
        fix: fix(a.position_status, lon, lat),
        status: a.status_byte(),
        command,
        serial: a.serial,
    }
}

fn common_engine(e: &hj1239::EngineData) -> model::EngineData {
    model::EngineData { odometer_km: None, ..diesel(e) }
}

fn machinery_obd(d: &EmissionDiagnostics) -> model::ObdInfo {
    model::ObdInfo {
        protocol: obd_protocol(d.protocol),
        // A flashing lamp is a lit lamp for R4.mil_on.
        mil: match d.lamp_status() {
            LampStatus::Off => MilStatus::Off,
            LampStatus::On | LampStatus::Flashing => MilStatus::On,
            LampStatus::Other(0xFE) => MilStatus::Invalid,
            LampStatus::Other(_) => MilStatus::Unknown,
        },
        fault_codes: d.fault_codes().map(|c| c.iter().map(|d| u32::from_be_bytes(d.0)).collect()),
        ..Default::default()
    }
}

fn obd_protocol(b: u8) -> ObdProtocol {
    match b {
        0 => ObdProtocol::Iso15765,
        1 => ObdProtocol::Iso27145,
        2 => ObdProtocol::SaeJ1939,
        0xFE => ObdProtocol::Invalid,
        _ => ObdProtocol::Unknown,
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

/// Shortest binary CVN shown (the CVN is a 4-byte checksum in ISO 15031 / J1979; terminals send
/// it as 4 binary bytes plus zero padding, others as ASCII). UNVERIFIED for calibration IDs.
const BINARY_ID_MIN_LEN: usize = 4;

/// A calibration ID or CVN as text: the printable ASCII without its padding, or, when any byte is
/// not printable, upper-case hex of the bytes (trailing zero padding removed, at least
/// [`BINARY_ID_MIN_LEN`] bytes). Lossless for binary CVNs, so R4 can compare them; empty when the
/// field is only padding.
pub fn calibration_text(raw: &[u8]) -> String {
    let is_pad = |b: &u8| matches!(b, 0x00 | b' ' | 0xFF);
    let Some(last) = raw.iter().rposition(|b| !is_pad(b)) else { return String::new() };
    let content = raw.get(..=last).unwrap_or(raw);
    if content.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return String::from_utf8_lossy(content).trim().to_string();
    }
    let zero_trimmed = raw.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let shown = raw.get(..zero_trimmed.max(BINARY_ID_MIN_LEN)).unwrap_or(raw);
    hex::encode_upper(shown)
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string()
}

fn obd(o: &hj1239::ObdInfo) -> model::ObdInfo {
    model::ObdInfo {
        protocol: obd_protocol(o.protocol),
        mil: match o.mil_status {
            0 => MilStatus::Off,
            1 => MilStatus::On,
            0xFE => MilStatus::Invalid,
            _ => MilStatus::Unknown,
        },
        diag_support_status: Some(o.diagnostic_support),
        diag_readiness_status: Some(o.diagnostic_readiness),
        ecu_vin: ascii(&o.ecu_vin.0),
        software_calibration_id: calibration_text(&o.calibration_id),
        cvn: calibration_text(&o.cvn),
        iupr: o.iupr.to_vec(),
        fault_codes: (o.fault_count < hj1239::obd::FAULT_COUNT_INVALID_FIRST)
            .then(|| o.faults.iter().map(|d| u32::from_be_bytes(d.0)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb_obd_body_after_an_engine_body_joins_its_record() {
        let t = hj1239::TerminalTime::from_bytes([0x18, 0x03, 0x0F, 0x08, 0x1E, 0x0A]).unwrap();
        let o = hj1239::ObdInfo {
            protocol: 2,
            mil_status: 1,
            diagnostic_support: 0,
            diagnostic_readiness: 0,
            ecu_vin: hj1239::Vin([b'A'; 17]),
            calibration_id: [0; 18],
            cvn: [0; 18],
            iupr: [0; 18],
            fault_count: 0,
            faults: vec![],
        };
        let report = InfoReport::Gb17691(hj1239::GbReport {
            time: t,
            records: vec![
                hj1239::GbRecord { serial: 1, body: InfoBody::DieselEngine(hj1239::EngineData::default()) },
                hj1239::GbRecord { serial: 2, body: InfoBody::Obd(o) },
            ],
        });
        let vin = Vin::parse("LZZ5BLSJ3DA000401").unwrap();
        let recs = from_report(vin, &report, 1000);
        assert_eq!(recs.len(), 1, "one record, no same-time OBD-only record to clash with it");
        assert_eq!(recs[0].obd.as_ref().map(|o| o.mil), Some(MilStatus::On));
    }

    #[test]
    fn calibration_ids_and_cvns_as_text_or_hex() {
        let mut binary = [0u8; 18];
        binary[..4].copy_from_slice(&[0x9A, 0x2B, 0x3C, 0x00]);
        assert_eq!(calibration_text(&binary), "9A2B3C00");
        let mut ascii = [0u8; 18];
        ascii[..8].copy_from_slice(b"1A2B3C4D");
        assert_eq!(calibration_text(&ascii), "1A2B3C4D");
        assert_eq!(calibration_text(b"CAL-ID-1234       "), "CAL-ID-1234");
        assert_eq!(calibration_text(&[0u8; 18]), "");
        assert_eq!(calibration_text(&[0xFF; 18]), "");
        let mut long = [0u8; 18];
        long[..6].copy_from_slice(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
        assert_eq!(calibration_text(&long), "010203040506");
    }
}
