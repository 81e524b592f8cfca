//! End to end over the HJ 1239 / GB 17691 Annex Q gateway: a TCP client on 127.0.0.1 behaves as
//! an onboard terminal (login, real-time and reissue frames, time calibration, logout).
mod common;

use bytes::Bytes;
use common::terminal::*;
use common::*;
use futures::SinkExt;
use smogwatch::hj1239::{
    command, Answer, Frame, FrameCodec, GbRecord, GbReport, InfoBody, InfoReport, Logout, Message,
};
use smogwatch::model::Vin;
use smogwatch::proto::{self, registry_client::RegistryClient};
use smogwatch::store::ViolationQuery;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const VIN: &str = "LZZ5BLSJ3DA000301";

/// A GB-layout report of 10 engine bodies starting at `t_ms` (one per second).
fn report_frame(vin: &str, cmd: u8, t_ms: i64, down: impl Fn(i64) -> f64) -> Frame {
    let records = (0..10)
        .map(|i| GbRecord {
            serial: i as u16,
            body: InfoBody::DieselEngine(engine_body(1400, down(t_ms + i * 1000))),
        })
        .collect();
    let report = InfoReport::Gb17691(GbReport { time: tt(t_ms), records });
    let msg = if cmd == command::REISSUE { Message::Reissue(report) } else { Message::RealTime(report) };
    msg.to_frame(wire_vin(vin), 1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_session_stores_every_record_and_finds_live_and_late_violations() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    RegistryClient::new(channel(&s).await)
        .upsert_vehicle(truck(VIN, proto::EmissionStage::ChinaV))
        .await
        .unwrap();
    let sock = TcpStream::connect(s.hj1239_addr.unwrap()).await.unwrap();
    let mut t = Framed::new(sock, FrameCodec::new());

    // A report before login is rejected (no answer, no data); the connection stays usable.
    t.send(report_frame(VIN, command::REAL_TIME, T0 - 100_000, |_| 60.0)).await.unwrap();
    t.send(login_frame(VIN, T0)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));

    // Time calibration is answered with the server clock.
    t.send(Message::TimeCalibration.to_frame(wire_vin(VIN), 1).unwrap()).await.unwrap();
    match next_answer(&mut t).await {
        Some(Answer::TimeCalibration { time }) => {
            assert!((time.epoch_millis_utc() - smogwatch::model::now_ms()).abs() < 10_000)
        }
        other => panic!("expected time calibration answer, got {other:?}"),
    }

    // 100 real-time frames of 10 records: 1000 s, NOx above 500 ppm for the first 400 s (R3).
    // Junk and a frame with a broken BCC in the middle must not lose the frames around them.
    for k in 0..100i64 {
        if k == 50 {
            let mut bad = report_frame(VIN, command::REAL_TIME, T0 + 999_000_000, |_| 60.0)
                .to_bytes()
                .unwrap()
                .to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            let junk = [b"\x00\x01garbage##".as_slice(), bad.as_slice()].concat();
            t.get_mut().try_write(&junk).unwrap();
        }
        t.send(report_frame(VIN, command::REAL_TIME, T0 + k * 10_000, |ms| {
            if ms < T0 + 400_000 {
                800.0
            } else {
                60.0
            }
        }))
        .await
        .unwrap();
    }
    for k in 0..100 {
        match next_answer(&mut t).await {
            Some(Answer::Report { command: c, time, .. }) => {
                assert_eq!(c, command::REAL_TIME);
                assert_eq!(time.epoch_millis_utc(), T0 + k * 10_000, "answers come in order, once durable");
            }
            other => panic!("expected report answer {k}, got {other:?}"),
        }
    }

    // Reissue: 50 frames of data buffered during a blind spot the day before, NOx high for 400 s.
    let day_before = T0 - 86_400_000;
    for k in 0..50i64 {
        t.send(report_frame(VIN, command::REISSUE, day_before + k * 10_000, |ms| {
            if ms < day_before + 400_000 {
                900.0
            } else {
                50.0
            }
        }))
        .await
        .unwrap();
    }
    for _ in 0..50 {
        assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { command: command::REISSUE, .. })));
    }

    // Logout closes the session cleanly.
    t.send(
        Message::Logout(Logout { time: tt(T0 + 1_000_000), serial: 1, extra: Bytes::new() })
            .to_frame(wire_vin(VIN), 1)
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Logout { .. })));
    assert!(next_answer(&mut t).await.is_none(), "server closes after logout");

    let vin = Vin::parse(VIN).unwrap();
    let live = s.store.records(vin, T0, T0 + 1_000_000, 10_000).await.unwrap();
    assert_eq!(live.len(), 1000, "every real-time record is stored");
    assert!(live.windows(2).all(|w| w[1].time_ms - w[0].time_ms == 1000));
    let r = &live[0];
    let e = r.engine.unwrap();
    assert_eq!(e.engine_speed_rpm, Some(1400.0));
    assert_eq!(e.scr_downstream_nox_ppm, Some(800.0));
    assert_eq!(r.fix.map(|f| (f.lon, f.lat, f.valid)), Some((120.2, 30.3, true)));
    let reissued = s.store.records(vin, day_before, day_before + 500_000, 10_000).await.unwrap();
    assert_eq!(reissued.len(), 500, "every reissued record is stored");
    assert!(
        s.store.records(vin, T0 - 200_000, T0, 10).await.unwrap().is_empty(),
        "pre-login data was refused"
    );

    let violations = s
        .store
        .violations(&ViolationQuery { vin: Some(vin), ..Default::default() }, None, 100)
        .await
        .unwrap();
    let mut found: Vec<(String, i64, bool)> =
        violations.violations.iter().map(|v| (v.rule.clone(), v.started_ms, v.late)).collect();
    found.sort();
    assert_eq!(
        found,
        vec![("R3".to_string(), day_before, true), ("R3".to_string(), T0, false)],
        "{violations:#?}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_terminal_is_refused_and_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let sock = TcpStream::connect(s.hj1239_addr.unwrap()).await.unwrap();
    let mut t = Framed::new(sock, FrameCodec::new());
    t.send(login_frame("LZZ5BLSJ3DA999999", T0)).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x02, .. })));
    assert!(next_answer(&mut t).await.is_none(), "connection closed after a refused login");
    s.shutdown().await;
}
