//! End to end over the HJ 1239 gateway with what real terminals send (issue 15): one test per
//! field defect, each against the real server on 127.0.0.1.
mod common;

use bytes::Bytes;
use common::terminal::{engine_body, login_frame, tt, wire_vin, Terminal};
use common::*;
use futures::{SinkExt, StreamExt};
use smogwatch::hj1239::{
    Activation, Answer, Decoded, Dtc, EmissionDiagnostics, EngineData, Frame, FrameCodec, GbRecord, GbReport,
    HjRecord, HjReport, InfoBody, InfoReport, Logout, MachineryBody, MachineryRecord, MachineryReport,
    MachineryStream, Message, ObdInfo, PositionStatus, SignedRecord, SignedReport, Sm2Signature, StartMarker,
    TamperAlarm,
};
use smogwatch::model::Vin;
use smogwatch::proto::{self, registry_client::RegistryClient};
use smogwatch::store::ViolationQuery;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const VIN_A: &str = "LZZ5BLSJ3DA000401";
const VIN_B: &str = "LZZ5BLSJ3DA000402";

/// A GB-layout real-time report of `n` engine bodies starting at `t_ms`.
fn gb_report(vin: &str, t_ms: i64, n: u16) -> Frame {
    let records = (0..n)
        .map(|i| GbRecord { serial: i, body: InfoBody::DieselEngine(engine_body(1400, 60.0)) })
        .collect();
    Message::RealTime(InfoReport::Gb17691(GbReport { time: tt(t_ms), records }))
        .to_frame(wire_vin(vin), 1)
        .unwrap()
}

fn logout_frame(vin: &str, t_ms: i64) -> Frame {
    Message::Logout(Logout { time: tt(t_ms), serial: 1, extra: Bytes::new() })
        .to_frame(wire_vin(vin), 1)
        .unwrap()
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
    register(
        &s,
        vec![truck(VIN_A, proto::EmissionStage::ChinaVi), truck(VIN_B, proto::EmissionStage::ChinaVi)],
    )
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

const VIN_C: &str = "LZZ5BLSJ3DA000403";
const VIN_D: &str = "LZZ5BLSJ3DA000404";
const MACHINE: &str = "MCE32010000012345";

fn signature(seed: u8) -> Sm2Signature {
    Sm2Signature { r: [seed; 32], s: [seed ^ 0xFF; 32] }
}

/// HJ layout: each of `n` engine bodies with its own collection time, one signature at the end.
fn hj_report(vin: &str, t_ms: i64, n: i64) -> Frame {
    let records = (0..n)
        .map(|i| HjRecord {
            collected_at: tt(t_ms + i * 1000),
            body: InfoBody::DieselEngine(engine_body(1400, 60.0)),
        })
        .collect();
    let report = HjReport { time: tt(t_ms + n * 1000), serial: 1, records, signature: Some(signature(7)) };
    Message::RealTime(InfoReport::Hj1239(report)).to_frame(wire_vin(vin), 1).unwrap()
}

/// Signed-bodies layout (defect 1): time + serial, then type + body + signature, no body time.
fn signed_report(vin: &str, t_ms: i64, n: u8) -> Frame {
    let records = (0..n)
        .map(|i| SignedRecord {
            body: InfoBody::DieselEngine(engine_body(1400, 60.0)),
            signature: signature(i),
        })
        .collect();
    Message::RealTime(InfoReport::Signed(SignedReport { time: tt(t_ms), serial: 3, records }))
        .to_frame(wire_vin(vin), 1)
        .unwrap()
}

fn tilde(mut f: Frame) -> Frame {
    f.marker = StartMarker::Tilde;
    f.software_version = 6;
    f
}

fn lon_lat() -> (u32, u32) {
    (117_200_000, 31_300_000)
}

fn machinery_report(t_ms: i64, n: i64, body_times: bool) -> Frame {
    let (longitude, latitude) = lon_lat();
    let stream = MachineryStream {
        engine: EngineData {
            position_status: PositionStatus(0x01),
            longitude: u32::MAX,
            latitude: u32::MAX,
            odometer: u32::MAX,
            ..engine_body(1500, 60.0)
        },
        egr_actual: 20_000,
        egr_target: 24_000,
    };
    let mut records: Vec<MachineryRecord> = (0..n)
        .map(|i| MachineryRecord {
            collected_at: body_times.then(|| tt(t_ms + i * 1000)),
            body: MachineryBody::Stream(stream),
        })
        .collect();
    records.push(MachineryRecord {
        collected_at: body_times.then(|| tt(t_ms)),
        body: MachineryBody::Diagnostics(EmissionDiagnostics {
            protocol: 3,
            lamp: 0,
            dtc_count: 0,
            dtcs: vec![],
        }),
    });
    let report = MachineryReport {
        time: tt(t_ms),
        serial: 1,
        position_status: PositionStatus(0),
        longitude,
        latitude,
        records,
        signature: None,
    };
    Message::MachineryRealTime(report).to_frame(wire_vin(MACHINE), 1).unwrap()
}

fn alarm(t_ms: i64) -> TamperAlarm {
    let (longitude, latitude) = lon_lat();
    TamperAlarm {
        time: tt(t_ms),
        serial: 2,
        position_status: PositionStatus(0),
        longitude,
        latitude,
        extra: Bytes::new(),
    }
}

fn machine() -> proto::Vehicle {
    proto::Vehicle {
        vin: MACHINE.into(),
        kind: proto::VehicleKind::NonRoadMachine as i32,
        machine_type: "excavator".into(),
        fuel: proto::Fuel::Diesel as i32,
        emission_stage: proto::EmissionStage::NonRoadIv as i32,
        rated_power_kw: Some(118.0),
        registration_code: "ZJ-HZ-2024-000777".into(),
        city_code: "330100".into(),
        ..Default::default()
    }
}

/// The next frame the server sends, raw (to check its start marker).
async fn next_frame(t: &mut Terminal) -> Frame {
    match tokio::time::timeout(Duration::from_secs(20), t.next()).await.expect("answer in time") {
        Some(Ok(Decoded::Frame(f))) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Defect 1: the signed-bodies layout is decoded and stored (today: rejected by both layouts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bodies_layout_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_C, proto::EmissionStage::ChinaVi)]).await;
    let mut t = logged_in(&s, VIN_C).await;
    t.send(signed_report(VIN_C, T0, 3)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })));
    let recs = s.store.records(Vin::parse(VIN_C).unwrap(), T0, T0 + 10_000, 100).await.unwrap();
    assert_eq!(recs.len(), 3, "one record per engine body, consecutive seconds");
    assert_eq!(recs[2].time_ms, T0 + 2000);
    assert_eq!(recs[0].engine.unwrap().engine_speed_rpm, Some(1400.0));
    s.shutdown().await;
}

/// Defect 2 and 9: one listener with its default configuration takes a mixed fleet at once:
/// GB, HJ (signed) and signed-bodies trucks, a `~~` truck answered with `~~`, and a machine in
/// the machinery layout (with and without per-body times); a truck tamper alarm 0x06 and a
/// machinery removal alarm 0x05 become R4.removal_alarm violations with their position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_fleet_on_one_listener() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(
        &s,
        vec![
            truck(VIN_A, proto::EmissionStage::ChinaVi),
            truck(VIN_B, proto::EmissionStage::ChinaVi),
            truck(VIN_C, proto::EmissionStage::ChinaVi),
            truck(VIN_D, proto::EmissionStage::ChinaVi),
            machine(),
        ],
    )
    .await;
    let mut gb = logged_in(&s, VIN_A).await;
    let mut hj = logged_in(&s, VIN_B).await;
    let mut signed = logged_in(&s, VIN_C).await;
    let mut tilde_t = connect(&s).await;
    let mut machine_t = logged_in(&s, MACHINE).await;

    tilde_t.send(tilde(login_frame(VIN_D, T0))).await.unwrap();
    let f = next_frame(&mut tilde_t).await;
    assert_eq!(f.marker, StartMarker::Tilde, "a ~~ terminal is answered with ~~");
    assert!(matches!(Answer::decode(&f), Ok(Answer::Login { result: 0x01, .. })));

    for k in 0..3i64 {
        let t = T0 + k * 10_000;
        gb.send(gb_report(VIN_A, t, 10)).await.unwrap();
        hj.send(hj_report(VIN_B, t, 10)).await.unwrap();
        signed.send(signed_report(VIN_C, t, 10)).await.unwrap();
        tilde_t.send(tilde(hj_report(VIN_D, t, 10))).await.unwrap();
        machine_t.send(machinery_report(t, 10, k % 2 == 1)).await.unwrap();
    }
    for (name, term) in [
        ("gb", &mut gb),
        ("hj", &mut hj),
        ("signed", &mut signed),
        ("tilde", &mut tilde_t),
        ("machine", &mut machine_t),
    ] {
        for k in 0..3 {
            let f = next_frame(term).await;
            let expected = if name == "tilde" { StartMarker::Tilde } else { StartMarker::Hash };
            assert_eq!(f.marker, expected, "{name} answer {k} marker");
            assert!(matches!(Answer::decode(&f), Ok(Answer::Report { .. })), "{name} answer {k}");
        }
    }

    // Alarms: the truck's 0x06 and the machine's 0x05 (its removal alarm, not a time calibration).
    gb.send(Message::TamperAlarm(alarm(T0 + 40_000)).to_frame(wire_vin(VIN_A), 1).unwrap()).await.unwrap();
    machine_t
        .send(Message::RemovalAlarm(alarm(T0 + 41_000)).to_frame(wire_vin(MACHINE), 1).unwrap())
        .await
        .unwrap();
    // Activation is for the national platform: counted, not answered; the link stays usable.
    let activation = Activation {
        time: tt(T0),
        chip_id: [1; 16],
        public_key: [2; 64],
        vin: VIN_A.as_bytes().try_into().unwrap(),
        signature: Bytes::from_static(&[0x20; 66]),
    };
    gb.send(Message::Activation(activation).to_frame(wire_vin(VIN_A), 1).unwrap()).await.unwrap();
    gb.send(gb_report(VIN_A, T0 + 50_000, 1)).await.unwrap();
    match next_answer(&mut gb).await {
        Some(Answer::Report { time, .. }) => assert_eq!(time.epoch_millis_utc(), T0 + 50_000),
        other => panic!("alarm/activation must not be answered; got {other:?}"),
    }
    // Logouts flush each terminal's pipeline work (answers only come once durable).
    machine_t.send(logout_frame(MACHINE, T0 + 60_000)).await.unwrap();
    assert!(matches!(next_answer(&mut machine_t).await, Some(Answer::Logout { .. })));

    for vin in [VIN_A, VIN_B, VIN_C, VIN_D] {
        assert_eq!(stored(&s, vin, T0, T0 + 30_000).await, 30, "{vin}: every record stored");
    }
    let machine_recs = s.store.records(Vin::parse(MACHINE).unwrap(), T0, T0 + 40_000, 100).await.unwrap();
    assert_eq!(machine_recs.len(), 30, "machine: one record per stream body");
    let r = &machine_recs[0];
    assert_eq!(r.fix.map(|f| (f.lon, f.lat)), Some((117.2, 31.3)), "position from the report header");
    assert_eq!(r.engine.unwrap().engine_speed_rpm, Some(1500.0));
    assert!(machine_recs.iter().any(|r| r.obd.is_some()), "diagnostics body kept");

    for (vin, at) in [(VIN_A, T0 + 40_000), (MACHINE, T0 + 41_000)] {
        let v = s
            .store
            .violations(
                &ViolationQuery { vin: Some(Vin::parse(vin).unwrap()), ..Default::default() },
                None,
                100,
            )
            .await
            .unwrap();
        let alarm = v
            .violations
            .iter()
            .find(|v| v.rule == "R4.removal_alarm")
            .unwrap_or_else(|| panic!("{vin}: {v:#?}"));
        assert_eq!(alarm.started_ms, at);
        assert_eq!(alarm.position.map(|p| (p.lon, p.lat)), Some((117.2, 31.3)));
    }
    s.shutdown().await;
}

fn obd(protocol: u8, cvn: [u8; 18], faults: Vec<Dtc>) -> ObdInfo {
    ObdInfo {
        protocol,
        mil_status: 0,
        diagnostic_support: 0,
        diagnostic_readiness: 0,
        ecu_vin: wire_vin(VIN_A),
        calibration_id: *b"CAL-ID-1234\0\0\0\0\0\0\0",
        cvn,
        iupr: [0; 18],
        fault_count: faults.len() as u8,
        faults,
    }
}

fn obd_report(t_ms: i64, o: ObdInfo) -> Frame {
    let records = vec![
        GbRecord { serial: 1, body: InfoBody::DieselEngine(engine_body(1400, 60.0)) },
        GbRecord { serial: 2, body: InfoBody::Obd(o) },
    ];
    Message::RealTime(InfoReport::Gb17691(GbReport { time: tt(t_ms), records }))
        .to_frame(wire_vin(VIN_A), 1)
        .unwrap()
}

fn binary_cvn(b: [u8; 4]) -> [u8; 18] {
    let mut cvn = [0u8; 18];
    cvn[..4].copy_from_slice(&b);
    cvn
}

/// Defect 5: a CVN sent as 4 binary bytes + zero padding is kept readable (hex), and a change of
/// it is found by R4.cvn_changed (today: stored as U+FFFD and treated as absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_cvn_is_kept_and_its_change_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let mut t = logged_in(&s, VIN_A).await;
    t.send(obd_report(T0, obd(2, binary_cvn([0x9A, 0x2B, 0x3C, 0x4D]), vec![]))).await.unwrap();
    t.send(obd_report(T0 + 30_000, obd(2, binary_cvn([0xDE, 0xAD, 0xBE, 0xEF]), vec![]))).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })));
    }
    let recs = s.store.records(Vin::parse(VIN_A).unwrap(), T0, T0 + 60_000, 10).await.unwrap();
    let cvns: Vec<&str> = recs.iter().filter_map(|r| r.obd.as_ref()).map(|o| o.cvn.as_str()).collect();
    assert_eq!(cvns, ["9A2B3C4D", "DEADBEEF"]);
    assert_eq!(recs[0].obd.as_ref().unwrap().software_calibration_id, "CAL-ID-1234");
    let v = s
        .store
        .violations(
            &ViolationQuery { vin: Some(Vin::parse(VIN_A).unwrap()), ..Default::default() },
            None,
            100,
        )
        .await
        .unwrap();
    let change = v.violations.iter().find(|v| v.rule == "R4.cvn_changed").expect("CVN change found");
    assert_eq!(change.evidence["old_cvn"], "9A2B3C4D");
    assert_eq!(change.evidence["new_cvn"], "DEADBEEF");
    s.shutdown().await;
}

/// Defect 7: an ISO 27145 terminal's 3-byte DTC + status is stored raw and served readable
/// (P2047), a J1939 terminal's as SPN/FMI (today: every DTC was read as J1939).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_codes_are_read_by_obd_protocol() {
    use smogwatch::proto::violations_client::ViolationsClient;
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let mut t = logged_in(&s, VIN_A).await;
    let zero = binary_cvn([0; 4]);
    t.send(obd_report(T0, obd(1, zero, vec![Dtc([0x20, 0x47, 0x1C, 0x08])]))).await.unwrap();
    t.send(obd_report(T0 + 30_000, obd(2, zero, vec![Dtc([0x9A, 0x0C, 0x02, 0x01])]))).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })));
    }
    let track = ViolationsClient::new(channel(&s).await)
        .get_track(proto::GetTrackRequest {
            vin: VIN_A.into(),
            from_ms: T0,
            to_ms: T0 + 60_000,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let obds: Vec<&proto::ObdInfo> = track.records.iter().filter_map(|r| r.obd.as_ref()).collect();
    assert_eq!(obds.len(), 2);
    assert_eq!(obds[0].fault_codes, vec![0x2047_1C08], "raw kept");
    assert_eq!(obds[0].fault_codes_readable, vec!["P2047-1C status 0x08".to_string()]);
    assert_eq!(obds[1].fault_codes_readable, vec!["SPN 3226 FMI 2 OC 1".to_string()]);
    s.shutdown().await;
}

/// Defect 6: a resend of a held time with different values keeps the first record and is counted
/// apart from true duplicates: in the gRPC ack, and as a clock-fault flag on the vehicle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_resends_are_counted_apart_from_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s, vec![truck(VIN_A, proto::EmissionStage::ChinaVi)]).await;
    let ch = channel(&s).await;
    let recs = |nox: f64| (0..10).map(|i| record(VIN_A, T0 + i * 1000, 120.2, 30.3, nox)).collect::<Vec<_>>();
    let ack = |recs, seq| {
        let ch = ch.clone();
        async move { stream_batches(ch, batches(recs, seq, false)).await.remove(0) }
    };
    let first = ack(recs(60.0), 1).await;
    assert_eq!((first.accepted, first.duplicates, first.conflicts), (10, 0, 0));
    let clashing = ack(recs(61.0), 2).await;
    assert_eq!((clashing.accepted, clashing.duplicates, clashing.conflicts), (10, 0, 10), "{clashing:?}");
    let resent = ack(recs(60.0), 3).await;
    assert_eq!((resent.accepted, resent.duplicates, resent.conflicts), (10, 10, 0), "{resent:?}");
    // Two different records for one time in a single batch: the first sent is kept.
    let same_batch = ack(
        vec![record(VIN_A, T0 + 20_000, 120.2, 30.3, 70.0), record(VIN_A, T0 + 20_000, 120.2, 30.3, 71.0)],
        4,
    )
    .await;
    assert_eq!((same_batch.accepted, same_batch.duplicates, same_batch.conflicts), (2, 0, 1));

    let vin = Vin::parse(VIN_A).unwrap();
    let stored = s.store.records(vin, T0, T0 + 30_000, 100).await.unwrap();
    assert_eq!(stored.len(), 11);
    assert!(
        stored[..10].iter().all(|r| r.engine.unwrap().scr_downstream_nox_ppm == Some(60.0)),
        "first kept"
    );
    assert_eq!(stored[10].engine.unwrap().scr_downstream_nox_ppm, Some(70.0));
    let flags = s.store.documents(smogwatch::pipeline::DATA_QUALITY_DOC).await.unwrap();
    let (id, body) = flags.iter().find(|(id, _)| id == VIN_A).expect("vehicle flagged");
    let flag: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(id, VIN_A);
    assert_eq!(flag["clock_fault"], true);
    s.shutdown().await;
}

/// Defect 10: a connection that never logs in is closed and counted as `login_timeout`, not `idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeout_is_counted_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.hj1239.login_timeout_s = 1).await;
    let mut t = connect(&s).await;
    assert!(matches!(answer_within(&mut t, 10).await, Some(None)), "closed without an answer");
    let (status, _, body) = http(s.http_addr, "GET", "/metrics", None, None).await;
    assert!(status.is_success());
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("smogwatch_hj1239_sessions_closed_total{reason=\"login_timeout\"}")),
        "{text}"
    );
    s.shutdown().await;
}
