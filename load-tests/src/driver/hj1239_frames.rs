//! Simulated records as HJ 1239 frames, built with smogwatch's own codec so the load test speaks
//! exactly what the gateway parses: login (0x01), real-time (0x02) or reissue (0x03) in the HJ 1239
//! body layout (each record with its own collection time: ten 1 Hz records per frame), logout
//! (0x04). Engineering values are turned back into raw wire values with the codec's scale table.
use smogwatch::hj1239::engine::{scale, FieldScale};
use smogwatch::hj1239::{
    EngineData, Frame, HjRecord, HjReport, InfoBody, InfoReport, Login, Logout, Message, PositionStatus,
    TerminalTime, Vin,
};
use smogwatch::proto;

fn time(ms: i64) -> anyhow::Result<TerminalTime> {
    let utc = chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| anyhow::anyhow!("bad time {ms}"))?;
    Ok(TerminalTime::from_utc(utc)?)
}

pub fn vin(s: &str) -> anyhow::Result<Vin> {
    let b: [u8; 17] = s.as_bytes().try_into().map_err(|_| anyhow::anyhow!("VIN {s} is not 17 bytes"))?;
    Ok(Vin(b))
}

/// Raw value of `v` on `sc`, or the "invalid" sentinel (all ones) when absent.
fn raw(v: Option<f64>, sc: FieldScale, invalid: u32) -> u32 {
    match v {
        Some(x) => (((x - sc.offset) / sc.resolution).round().max(0.0) as u32).min(sc.max_raw),
        None => invalid,
    }
}

fn raw8(v: Option<f64>, sc: FieldScale) -> u8 {
    u8::try_from(raw(v, sc, 0xFF)).unwrap_or(0xFF)
}

fn raw16(v: Option<f64>, sc: FieldScale) -> u16 {
    u16::try_from(raw(v, sc, 0xFFFF)).unwrap_or(0xFFFF)
}

/// The diesel engine body (0x02) of one record.
pub fn engine_body(r: &proto::TelemetryRecord) -> EngineData {
    let e = r.engine.unwrap_or_default();
    let p = r.position.unwrap_or_default();
    // bit0 = invalid fix; bit1 = south; bit2 = west.
    let status = u8::from(!p.valid) | (u8::from(p.latitude < 0.0) << 1) | (u8::from(p.longitude < 0.0) << 2);
    EngineData {
        vehicle_speed: raw16(e.vehicle_speed_kmh, scale::VEHICLE_SPEED),
        atmospheric_pressure: raw8(e.atmospheric_pressure_kpa, scale::ATMOSPHERIC_PRESSURE),
        net_torque: raw8(e.engine_torque_pct, scale::NET_TORQUE),
        friction_torque: raw8(e.friction_torque_pct, scale::FRICTION_TORQUE),
        engine_speed: raw16(e.engine_speed_rpm, scale::ENGINE_SPEED),
        fuel_flow: raw16(e.fuel_flow_lph, scale::FUEL_FLOW),
        scr_upstream_nox: raw16(e.scr_upstream_nox_ppm, scale::NOX),
        scr_downstream_nox: raw16(e.scr_downstream_nox_ppm, scale::NOX),
        reagent_level: raw8(e.reagent_remaining_pct, scale::REAGENT_LEVEL),
        intake_air_flow: raw16(e.intake_air_flow_kgph, scale::INTAKE_AIR_FLOW),
        scr_inlet_temperature: raw16(e.scr_inlet_temp_c, scale::SCR_TEMPERATURE),
        scr_outlet_temperature: raw16(e.scr_outlet_temp_c, scale::SCR_TEMPERATURE),
        dpf_pressure_drop: raw16(e.dpf_pressure_diff_kpa, scale::DPF_PRESSURE),
        coolant_temperature: raw8(e.coolant_temp_c, scale::COOLANT_TEMPERATURE),
        fuel_level: raw8(e.fuel_level_pct, scale::FUEL_LEVEL),
        position_status: PositionStatus(status),
        longitude: raw(Some(p.longitude.abs()), scale::LONGITUDE, u32::MAX),
        latitude: raw(Some(p.latitude.abs()), scale::LATITUDE, u32::MAX),
        odometer: raw(e.odometer_km, scale::ODOMETER, u32::MAX),
    }
}

/// One real-time (or reissue) frame carrying `records` of one vehicle.
pub fn report_frame(
    vin_s: &str,
    records: &[proto::TelemetryRecord],
    serial: u16,
    reissue: bool,
) -> anyhow::Result<Frame> {
    let first = records.first().ok_or_else(|| anyhow::anyhow!("empty batch"))?;
    let last = records.last().unwrap_or(first);
    let recs = records
        .iter()
        .map(|r| {
            Ok(HjRecord { collected_at: time(r.time_ms)?, body: InfoBody::DieselEngine(engine_body(r)) })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report =
        InfoReport::Hj1239(HjReport { time: time(last.time_ms)?, serial, records: recs, signature: None });
    let msg = if reissue { Message::Reissue(report) } else { Message::RealTime(report) };
    Ok(msg.to_frame(vin(vin_s)?, 1)?)
}

pub fn login_frame(vin_s: &str, at_ms: i64, serial: u16) -> anyhow::Result<Frame> {
    let mut iccid = [b'0'; 20];
    iccid[..8].copy_from_slice(b"89860000");
    let msg = Message::Login(Login { time: time(at_ms)?, serial, iccid, extra: Default::default() });
    Ok(msg.to_frame(vin(vin_s)?, 1)?)
}

pub fn logout_frame(vin_s: &str, at_ms: i64, serial: u16) -> anyhow::Result<Frame> {
    let msg = Message::Logout(Logout { time: time(at_ms)?, serial, extra: Default::default() });
    Ok(msg.to_frame(vin(vin_s)?, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::vehicle;
    use crate::plant::Plan;
    use crate::sim::VehicleSim;
    use smogwatch::hj1239::{BodyLayout, Dialect};

    #[test]
    fn frames_decode_back_to_the_simulated_values() {
        let mut spec = vehicle(1, 3, false);
        spec.class = crate::fleet::Class::DieselTruck(6);
        let mut sim = VehicleSim::new(1, spec.clone(), Plan::Clean, 1_700_000_000_000);
        let mut out = Vec::new();
        sim.tick(&mut out);
        let recs = &out[0].records;
        let frame = report_frame(&spec.vin, recs, 1, false).unwrap();
        let bytes = frame.to_bytes().unwrap();
        let parsed = Frame::parse(&bytes).unwrap();
        let Message::RealTime(report) =
            Message::decode(&parsed, BodyLayout::Hj1239, Dialect::Vehicle).unwrap()
        else {
            panic!("not a real-time message")
        };
        let bodies: Vec<_> = report.bodies().collect();
        assert_eq!(bodies.len(), 10);
        for ((at, body), r) in bodies.iter().zip(recs) {
            assert_eq!(at.epoch_millis_utc(), r.time_ms);
            let InfoBody::DieselEngine(e) = body else { panic!("not an engine body") };
            let want = r.engine.unwrap();
            let near = |a: Option<f64>, b: Option<f64>, tol: f64| (a.unwrap() - b.unwrap()).abs() <= tol;
            assert!(near(e.scr_downstream_nox_ppm(), want.scr_downstream_nox_ppm, 0.05));
            assert!(near(e.engine_speed_rpm(), want.engine_speed_rpm, 0.125));
            assert!(near(e.scr_inlet_temperature_c(), want.scr_inlet_temp_c, 0.04));
            assert!(near(e.longitude_deg(), Some(r.position.unwrap().longitude), 1e-6));
        }
        let login = login_frame(&spec.vin, 1_700_000_000_000, 1).unwrap();
        assert!(matches!(
            Message::decode(&login, BodyLayout::Hj1239, Dialect::Vehicle),
            Ok(Message::Login(_))
        ));
    }
}
