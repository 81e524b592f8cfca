//! An HJ 1239 terminal for end-to-end tests: wire values, frames and the platform's answers.
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use smogwatch::hj1239::{
    Answer, Decoded, EngineData, Frame, FrameCodec, Login, Message, PositionStatus, TerminalTime,
    Vin as WireVin,
};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub type Terminal = Framed<TcpStream, FrameCodec>;

pub fn wire_vin(v: &str) -> WireVin {
    WireVin(v.as_bytes().try_into().unwrap())
}

pub fn tt(ms: i64) -> TerminalTime {
    TerminalTime::from_utc(DateTime::<Utc>::from_timestamp_millis(ms).unwrap()).unwrap()
}

/// Raw engine body of a warmed-up diesel (SCR inlet 320 °C, upstream NOx 900 ppm) at `rpm` with
/// the given downstream NOx (ppm), at (120.2, 30.3).
pub fn engine_body(rpm: u16, down_ppm: f64) -> EngineData {
    EngineData {
        vehicle_speed: 40 * 256,
        atmospheric_pressure: 200,
        net_torque: 175,
        friction_torque: 130,
        engine_speed: rpm * 8,
        fuel_flow: 400,
        scr_upstream_nox: ((900.0 + 200.0) / 0.05) as u16,
        scr_downstream_nox: ((down_ppm + 200.0) / 0.05) as u16,
        reagent_level: 150,
        intake_air_flow: 16_000,
        scr_inlet_temperature: ((320.0 + 273.0) / 0.03125) as u16,
        scr_outlet_temperature: ((300.0 + 273.0) / 0.03125) as u16,
        dpf_pressure_drop: 30,
        coolant_temperature: 125,
        fuel_level: 125,
        position_status: PositionStatus(0),
        longitude: 120_200_000,
        latitude: 30_300_000,
        odometer: 123_456,
    }
}

pub fn login_frame(vin: &str, t_ms: i64) -> Frame {
    Message::Login(Login { time: tt(t_ms), serial: 1, iccid: *b"89860000000000000001", extra: Bytes::new() })
        .to_frame(wire_vin(vin), 1)
        .unwrap()
}

/// The platform's next answer (None when it closed the connection); panics after 20 s.
pub async fn next_answer(t: &mut Terminal) -> Option<Answer> {
    match tokio::time::timeout(Duration::from_secs(20), t.next()).await.expect("answer in time") {
        Some(Ok(Decoded::Frame(f))) => Some(Answer::decode(&f).expect("answer decodes")),
        Some(Ok(Decoded::Dropped(e))) => panic!("server sent a bad frame: {e}"),
        Some(Err(e)) => panic!("socket: {e}"),
        None => None,
    }
}
