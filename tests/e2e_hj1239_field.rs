//! End to end over the HJ 1239 gateway with what real terminals send (issue 15): one test per
//! field defect, each against the real server on 127.0.0.1.
mod common;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::*;
use futures::{SinkExt, StreamExt};
use smogwatch::hj1239::{
    Answer, Decoded, EngineData, Frame, FrameCodec, GbRecord, GbReport, InfoBody, InfoReport, Login,
    Logout, Message, PositionStatus, TerminalTime, Vin as WireVin,
};
use smogwatch::model::Vin;
use smogwatch::proto::{self, registry_client::RegistryClient};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const VIN_A: &str = "LZZ5BLSJ3DA000401";
const VIN_B: &str = "LZZ5BLSJ3DA000402";

type Terminal = Framed<TcpStream, FrameCodec>;

fn wire_vin(v: &str) -> WireVin {
    WireVin(v.as_bytes().try_into().unwrap())
}

fn tt(ms: i64) -> TerminalTime {
    TerminalTime::from_utc(DateTime::<Utc>::from_timestamp_millis(ms).unwrap()).unwrap()
}

fn engine(rpm: u16) -> EngineData {
    EngineData {
        vehicle_speed: 40 * 256,
        atmospheric_pressure: 200,
        net_torque: 175,
        friction_torque: 130,
        engine_speed: rpm * 8,
        fuel_flow: 400,
        scr_upstream_nox: 22_000,
        scr_downstream_nox: 5_200,
        reagent_level: 150,
        intake_air_flow: 16_000,
        scr_inlet_temperature: 18_976,
        scr_outlet_temperature: 18_336,
        dpf_pressure_drop: 30,
        coolant_temperature: 125,
        fuel_level: 125,
        position_status: PositionStatus(0),
        longitude: 120_200_000,
        latitude: 30_300_000,
        odometer: 123_456,
    }
}

/// A GB-layout real-time report of `n` engine bodies starting at `t_ms`.
fn gb_report(vin: &str, t_ms: i64, n: u16) -> Frame {
    let records = (0..n).map(|i| GbRecord { serial: i, body: InfoBody::DieselEngine(engine(1400)) }).collect();
    Message::RealTime(InfoReport::Gb17691(GbReport { time: tt(t_ms), records }))
        .to_frame(wire_vin(vin), 1)
        .unwrap()
}

fn login_frame(vin: &str, t_ms: i64) -> Frame {
    Message::Login(Login { time: tt(t_ms), serial: 1, iccid: *b"89860000000000000001", extra: Bytes::new() })
        .to_frame(wire_vin(vin), 1)
        .unwrap()
}

fn logout_frame(vin: &str, t_ms: i64) -> Frame {
    Message::Logout(Logout { time: tt(t_ms), serial: 1, extra: Bytes::new() }).to_frame(wire_vin(vin), 1).unwrap()
}

async fn answer_within(t: &mut Terminal, secs: u64) -> Option<Option<Answer>> {
    match tokio::time::timeout(Duration::from_secs(secs), t.next()).await {
        Err(_) => None,
        Ok(Some(Ok(Decoded::Frame(f)))) => Some(Some(Answer::decode(&f).expect("answer decodes"))),
        Ok(Some(Ok(Decoded::Dropped(e)))) => panic!("server sent a bad frame: {e}"),
        Ok(Some(Err(e))) => panic!("socket: {e}"),
        Ok(None) => Some(None),
    }
}

async fn next_answer(t: &mut Terminal) -> Option<Answer> {
    answer_within(t, 20).await.expect("answer in time")
}

async fn register(s: &smogwatch::server::RunningServer, vehicles: Vec<proto::Vehicle>) {
    let mut reg = RegistryClient::new(channel(s).await);
    for v in vehicles {
        reg.upsert_vehicle(v).await.unwrap();
    }
}

async fn connect(s: &smogwatch::server::RunningServer) -> Terminal {
    Framed::new(TcpStream::connect(s.hj1239_addr.unwrap()).await.unwrap(), FrameCodec::new())
}

async fn stored(s: &smogwatch::server::RunningServer, vin: &str, from: i64, to: i64) -> usize {
    s.store.records(Vin::parse(vin).unwrap(), from, to, 100_000).await.unwrap().len()
}

/// Defect 4: a terminal that logs in with a lower-case VIN keeps working after its login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_vin_terminal_is_not_locked_out_after_login() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let lower = VIN_A.to_ascii_lowercase();
    let mut t = connect(&s).await;
    t.send(login_frame(&lower, T0)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));
    t.send(gb_report(&lower, T0, 10)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })), "report answered");
    t.send(logout_frame(&lower, T0 + 20_000)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Logout { .. })), "logout answered");
    assert_eq!(stored(&s, VIN_A, T0, T0 + 60_000).await, 10);
    s.shutdown().await;
}

/// Defect 8: a second login for another VIN on an open connection is refused; the session keeps
/// its first VIN and never stores the second vehicle's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_for_another_vin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi), truck(VIN_B, proto::EmissionStage::ChinaVi)])
        .await;
    let mut t = connect(&s).await;
    t.send(login_frame(VIN_A, T0)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));
    t.send(login_frame(VIN_B, T0 + 1000)).await.unwrap();
    assert!(
        matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x02, .. })),
        "second VIN refused"
    );
    // B's report on A's connection is rejected (no answer); A's report is answered and stored.
    t.send(gb_report(VIN_B, T0 + 10_000, 10)).await.unwrap();
    t.send(gb_report(VIN_A, T0 + 10_000, 10)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })));
    // The same VIN logging in again is answered with success.
    t.send(login_frame(VIN_A, T0 + 30_000)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));
    assert_eq!(stored(&s, VIN_A, T0, T0 + 60_000).await, 10);
    assert_eq!(stored(&s, VIN_B, T0, T0 + 60_000).await, 0, "no data mixed into the other VIN");
    s.shutdown().await;
}

async fn logged_in(s: &smogwatch::server::RunningServer, vin: &str) -> Terminal {
    let mut t = connect(s).await;
    t.send(login_frame(vin, T0)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));
    t
}

/// Defect 3: a frame whose length field is damaged (4,000 instead of its real length) must not
/// hold back the good frames after it: they are answered and stored while the link lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_length_field_does_not_silence_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let mut t = logged_in(&s, VIN_A).await;
    let mut damaged = gb_report(VIN_A, T0 + 100_000, 10).to_bytes().unwrap().to_vec();
    damaged[22..24].copy_from_slice(&4000u16.to_be_bytes());
    t.get_mut().try_write(&damaged).unwrap();
    for k in 0..3 {
        t.send(gb_report(VIN_A, T0 + k * 10_000, 10)).await.unwrap();
    }
    for k in 0..3 {
        match answer_within(&mut t, 5).await {
            Some(Some(Answer::Report { time, .. })) => assert_eq!(time.epoch_millis_utc(), T0 + k * 10_000),
            other => panic!("good frame {k} after the damaged one not answered: {other:?}"),
        }
    }
    assert_eq!(stored(&s, VIN_A, T0, T0 + 30_000).await, 30);
    assert_eq!(stored(&s, VIN_A, T0 + 100_000, T0 + 200_000).await, 0, "the damaged frame is not stored");
    s.shutdown().await;
}

/// Defect 3: bytes received are activity. A frame trickling in slower than the idle timeout
/// (bytes keep arriving, no whole frame yet) keeps the link open and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_received_keep_the_session_alive() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.hj1239.idle_timeout_s = 1).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let mut t = logged_in(&s, VIN_A).await;
    let bytes = gb_report(VIN_A, T0, 1).to_bytes().unwrap();
    let chunks: Vec<&[u8]> = bytes.chunks(bytes.len() / 5 + 1).collect();
    for c in chunks {
        tokio::time::sleep(Duration::from_millis(450)).await;
        use tokio::io::AsyncWriteExt;
        t.get_mut().write_all(c).await.expect("link still open");
    }
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })), "slow frame answered");
    assert_eq!(stored(&s, VIN_A, T0, T0 + 10_000).await, 1);
    s.shutdown().await;
}
