//! End to end under hostile input (issue 14): records older than retention, batches spanning
//! many days, a poisoned terminal clock, oversize messages and batches, unbounded OBD strings.
//! Each test failed on the code before the fix.
mod common;

use common::terminal::*;
use common::*;
use futures::SinkExt;
use smogwatch::hj1239::{
    command, Answer, Frame, FrameCodec, GbRecord, GbReport, InfoBody, InfoReport, Login, Message,
};
use smogwatch::model::{now_ms, Vin};
use smogwatch::proto::{self, registry_client::RegistryClient, violations_client::ViolationsClient};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

async fn register(s: &smogwatch::server::RunningServer, vin: &str) -> Authed {
    let ch = channel(s).await;
    RegistryClient::new(ch.clone()).upsert_vehicle(truck(vin, proto::EmissionStage::ChinaV)).await.unwrap();
    ch
}

fn batch(seq: u64, records: Vec<proto::TelemetryRecord>) -> proto::TelemetryBatch {
    proto::TelemetryBatch { sequence: seq, records, reissue: false }
}

fn reasons(ack: &proto::BatchAck) -> Vec<proto::RejectReason> {
    ack.rejections.iter().map(|r| r.reason()).collect()
}

async fn stored(s: &smogwatch::server::RunningServer, vin: &str) -> Vec<i64> {
    let vin = Vin::parse(vin).unwrap();
    s.store.records(vin, 0, i64::MAX, 100_000).await.unwrap().iter().map(|r| r.time_ms).collect()
}

/// Defect 9 (gRPC): a record older than retention is refused with its reason, not acknowledged
/// and deleted by the next sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_retention_are_refused_over_grpc() {
    const VIN: &str = "LZZ5BLSJ3DA001401";
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.retention_days = 30).await;
    let ch = register(&s, VIN).await;
    let now = now_ms();
    let old = record(VIN, now - 31 * DAY, 120.2, 30.3, 60.0);
    let young = record(VIN, now - 29 * DAY, 120.2, 30.3, 60.0);
    let acks = stream_batches(ch, vec![batch(1, vec![old, young])]).await;
    assert_eq!(acks[0].accepted, 1);
    assert_eq!(reasons(&acks[0]), [proto::RejectReason::BeyondRetention]);
    assert_eq!(acks[0].rejections[0].index, 0);
    assert!(acks[0].rejections[0].detail.contains("30-day retention"), "{:?}", acks[0].rejections[0]);
    assert_eq!(stored(&s, VIN).await, [now - 29 * DAY]);
    s.shutdown().await;
}

// --- HJ 1239 ---

fn report(vin: &str, cmd: u8, t_ms: i64) -> Frame {
    let records = (0..5)
        .map(|i| GbRecord { serial: i, body: InfoBody::DieselEngine(engine_body(1400, 60.0)) })
        .collect();
    let report = InfoReport::Gb17691(GbReport { time: tt(t_ms), records });
    let msg = if cmd == command::REISSUE { Message::Reissue(report) } else { Message::RealTime(report) };
    msg.to_frame(wire_vin(vin), 1).unwrap()
}

/// Defect 9 (HJ 1239): a reissued report older than retention is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_retention_are_refused_over_hj1239() {
    const VIN: &str = "LZZ5BLSJ3DA001402";
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.retention_days = 30).await;
    register(&s, VIN).await;
    let mut t = Framed::new(TcpStream::connect(s.hj1239_addr.unwrap()).await.unwrap(), FrameCodec::new());
    let now = now_ms();
    let login = Message::Login(Login {
        time: tt(now),
        serial: 1,
        iccid: *b"89860000000000000001",
        extra: bytes::Bytes::new(),
    });
    t.send(login.to_frame(wire_vin(VIN), 1).unwrap()).await.unwrap();
    assert!(matches!(next_answer(&mut t).await, Some(Answer::Login { result: 0x01, .. })));
    t.send(report(VIN, command::REISSUE, now - 40 * DAY)).await.unwrap();
    t.send(report(VIN, command::REISSUE, now - 2 * HOUR)).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next_answer(&mut t).await, Some(Answer::Report { .. })));
    }
    let times = stored(&s, VIN).await;
    assert_eq!(times.len(), 5, "only the young report is stored: {times:?}");
    assert!(times.iter().all(|&t| t >= now - 2 * HOUR - 1000), "terminal time has whole seconds");
    s.shutdown().await;
}

/// Defect 2: one batch may write only `max_batch_days` storage days; the records of further
/// days are refused with their own reason (and can be sent in other batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_spans_a_bounded_number_of_days() {
    const VIN: &str = "LZZ5BLSJ3DA001403";
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = register(&s, VIN).await;
    // 200 records on 200 distinct past days (the attack created a partition per day).
    let recs: Vec<_> = (0..200).map(|d| record(VIN, T0 - d * DAY, 120.2, 30.3, 60.0)).collect();
    let acks = stream_batches(ch.clone(), vec![batch(1, recs)]).await;
    assert_eq!(acks[0].accepted, 3, "the default max_batch_days");
    assert_eq!(acks[0].rejections.len(), 197);
    assert!(reasons(&acks[0]).iter().all(|r| *r == proto::RejectReason::BatchSpan));
    assert!(acks[0].rejections[0].detail.contains("another batch"), "{:?}", acks[0].rejections[0]);
    // fjall keeps a directory per keyspace (its own metadata one, "0", and one per day): only
    // the three days' partitions were made.
    let partitions = std::fs::read_dir(dir.path().join("telemetry/keyspaces")).unwrap().count();
    assert!(partitions <= 4, "{partitions} keyspace directories");
    s.shutdown().await;
}

/// Defect 3: a record 20 h ahead of the server clock must not make every later real record
/// "late": a real NOx episode after it still raises a live violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_the_future_does_not_switch_off_live_detection() {
    const VIN: &str = "LZZ5BLSJ3DA001404";
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = register(&s, VIN).await;
    let now = now_ms();
    let future = record(VIN, now + 20 * HOUR, 120.2, 30.3, 60.0);
    let acks = stream_batches(ch.clone(), vec![batch(1, vec![future])]).await;
    assert_eq!(acks[0].accepted, 1, "kept as evidence of the clock fault");
    // 400 s of real data, NOx over 500 ppm: R3.
    let start = now - HOUR;
    let recs: Vec<_> = (0..400).map(|i| record(VIN, start + i * 1000, 120.2, 30.3, 800.0)).collect();
    let acks = stream_batches(ch.clone(), batches(recs, 2, false)).await;
    assert_eq!(acks.iter().map(|a| a.accepted).sum::<u32>(), 400);
    let vs = ViolationsClient::new(ch)
        .list(proto::ListViolationsRequest { vin: VIN.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .violations;
    let r3: Vec<_> = vs.iter().filter(|v| v.rule == "R3").collect();
    assert_eq!(r3.len(), 1, "{vs:?}");
    assert!(!r3[0].late, "the episode after the bad clock is live: {:?}", r3[0]);
    assert!(vs.iter().any(|v| v.rule == "R5.time_jump"), "the clock fault itself is flagged: {vs:?}");
    s.shutdown().await;
}

/// Streams `batches` and returns the acks and the status the stream ended with.
async fn stream_until_end(
    ch: Authed,
    batches: Vec<proto::TelemetryBatch>,
) -> (Vec<proto::BatchAck>, Option<tonic::Status>) {
    let mut client = proto::telemetry_ingest_client::TelemetryIngestClient::new(ch)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let mut acks = client.stream(tokio_stream::iter(batches)).await.expect("stream opens").into_inner();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), acks.message()).await.expect("stream answers") {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return (out, None),
            Err(status) => return (out, Some(status)),
        }
    }
}

/// Defect 5: a batch over the message size limit ends the stream with RESOURCE_EXHAUSTED and
/// the sizes, after the acks of the batches before it (not an OK end without an ack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_refused_with_a_reason() {
    const VIN: &str = "LZZ5BLSJ3DA001405";
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = register(&s, VIN).await;
    let mut big = record(VIN, T0 + 1000, 120.2, 30.3, 60.0);
    big.obd = Some(proto::ObdInfo { ecu_vin: "X".repeat(5 << 20), ..Default::default() });
    let first = batch(1, vec![record(VIN, T0, 120.2, 30.3, 60.0)]);
    let (acks, end) = stream_until_end(ch, vec![first, batch(2, vec![big])]).await;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].accepted, 1);
    let status = end.expect("the stream ends with an error status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_message_bytes"), "{status:?}");
    s.shutdown().await;
}

/// Defect 6: a batch with more records than allowed is refused with INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_record_cap_is_refused_with_a_reason() {
    const VIN: &str = "LZZ5BLSJ3DA001406";
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.ingest.max_batch_records = 100).await;
    let ch = register(&s, VIN).await;
    let ok: Vec<_> = (0..100).map(|i| record(VIN, T0 + i * 1000, 120.2, 30.3, 60.0)).collect();
    let over: Vec<_> = (100..201).map(|i| record(VIN, T0 + i * 1000, 120.2, 30.3, 60.0)).collect();
    let (acks, end) = stream_until_end(ch, vec![batch(1, ok), batch(2, over)]).await;
    assert_eq!(acks.iter().map(|a| a.accepted).collect::<Vec<_>>(), [100]);
    let status = end.expect("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("101 records"), "{status:?}");
    assert_eq!(stored(&s, VIN).await.len(), 100);
    s.shutdown().await;
}

/// Defect 7: OBD strings and lists longer than their protocol slot refuse the record; a track
/// page can no longer carry megabytes per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_obd_fields_refuse_the_record() {
    const VIN: &str = "LZZ5BLSJ3DA001407";
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = register(&s, VIN).await;
    let mut huge = record(VIN, T0, 120.2, 30.3, 60.0);
    huge.obd = Some(proto::ObdInfo { ecu_vin: "L".repeat(1 << 20), ..Default::default() });
    let mut many = record(VIN, T0 + 1000, 120.2, 30.3, 60.0);
    many.obd = Some(proto::ObdInfo { iupr: vec![1; 19], ..Default::default() });
    let mut fine = record(VIN, T0 + 2000, 120.2, 30.3, 60.0);
    fine.obd = Some(proto::ObdInfo {
        ecu_vin: VIN.into(),
        cvn: "ABCDEF0123456789AB".into(),
        software_calibration_id: "CAL-0000000000001".into(),
        iupr: vec![1; 18],
        fault_codes: vec![0x1234; 253],
        fault_codes_valid: true,
        ..Default::default()
    });
    let (acks, end) = stream_until_end(ch, vec![batch(1, vec![huge, many, fine])]).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(acks[0].accepted, 1);
    assert_eq!(reasons(&acks[0]), [proto::RejectReason::InvalidValue, proto::RejectReason::InvalidValue]);
    assert!(acks[0].rejections[0].detail.contains("obd.ecu_vin"), "{:?}", acks[0].rejections);
    assert!(acks[0].rejections[1].detail.contains("obd.iupr"), "{:?}", acks[0].rejections);
    assert_eq!(stored(&s, VIN).await, [T0 + 2000]);
    s.shutdown().await;
}

/// Defect 4: a revoked token ends the ingest stream, the gRPC watch and the SSE stream it
/// opened, within the auth cache TTL (1 s here), instead of working until the client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_open_streams() {
    use smogwatch::model::Role;
    const VIN: &str = "LZZ5BLSJ3DA001409";
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.auth.cache_ttl_s = 1).await;
    register(&s, VIN).await;
    let (token, secret) =
        smogwatch::auth::create_token(&*s.store, Role::Admin, "to revoke".into(), "test").await.unwrap();
    let ch = connect_with(s.grpc_addr, Some(&secret)).await;

    // Ingest: a stream kept open by the client.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut ingest = proto::telemetry_ingest_client::TelemetryIngestClient::new(ch.clone());
    let mut acks = ingest.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(batch(1, vec![record(VIN, T0, 120.2, 30.3, 60.0)])).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().accepted, 1);
    // gRPC watch and SSE, both open.
    let mut watch = ViolationsClient::new(ch.clone())
        .watch(proto::WatchViolationsRequest { filter: None, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some(), "the ready event");
    let http_addr = s.http_addr;
    let sse_secret = secret.clone();
    let sse =
        tokio::spawn(async move { http(http_addr, "GET", "/v1/alerts", Some(&sse_secret), None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    smogwatch::auth::revoke_token(&*s.store, &token.id, "test").await.unwrap();

    let ended = tokio::time::timeout(Duration::from_secs(10), acks.message()).await.expect("ingest ends");
    let status = ended.expect_err("an error, not a clean end");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("watch ends");
    assert_eq!(ended.expect_err("an error").code(), tonic::Code::Unauthenticated);
    let (_, _, body) = tokio::time::timeout(Duration::from_secs(10), sse).await.expect("SSE ends").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("event: error") && body.contains("revoked"), "{body}");
    // New calls are refused too.
    let refused = ViolationsClient::new(ch).list(proto::ListViolationsRequest::default()).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    drop(tx);
    s.shutdown().await;
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted when dropped. `None` when this
/// process may not mount (not root): the caller says SKIPPED.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk with a ballast file (until ENOSPC).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

async fn healthz(s: &smogwatch::server::RunningServer) -> http::StatusCode {
    http(s.http_addr, "GET", "/healthz", None, None).await.0
}

async fn grpc_health(s: &smogwatch::server::RunningServer) -> i32 {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let ch = connect_with(s.grpc_addr, None).await;
    HealthClient::new(ch)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Defect 1: a full disk. While commits fail, health says NOT_SERVING / 503 and reads still
/// work; once space is back the store recovers by itself (no restart) and ingest resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_recovered_from_without_a_restart() {
    use tonic_health::pb::health_check_response::ServingStatus;
    const VIN: &str = "LZZ5BLSJ3DA001410";
    let Some(disk) = SmallDisk::mount(48) else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let s = server_with(disk.path(), |c| {
        c.store.embedded.cache_mb = 4;
        c.store.embedded.telemetry_cache_mb = 4;
    })
    .await;
    let ch = register(&s, VIN).await;
    let mut t = T0;
    let mut next = |n: i64| {
        let recs: Vec<_> = (0..n).map(|i| record(VIN, t + i * 1000, 120.2, 30.3, 60.0)).collect();
        t += n * 1000;
        recs
    };
    let acks = stream_batches(ch.clone(), vec![batch(1, next(100))]).await;
    assert_eq!(acks[0].accepted, 100);
    assert_eq!(healthz(&s).await, http::StatusCode::OK);

    let ballast = disk.fill();
    // Keep sending until a commit fails (the engines may have some room left).
    let mut failed = None;
    for seq in 2..200u64 {
        let (acks, end) = stream_until_end(ch.clone(), vec![batch(seq, next(500))]).await;
        if let Some(status) = end {
            failed = Some(status);
            break;
        }
        assert_eq!(acks.len(), 1);
    }
    let status = failed.expect("a commit fails on the full disk");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(healthz(&s).await, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(grpc_health(&s).await, ServingStatus::NotServing as i32);
    // Reads keep working: the first records are there.
    assert_eq!(stored(&s, VIN).await.iter().filter(|&&x| x < T0 + 100_000).count(), 100);

    // Space comes back: health recovers without a restart and ingest resumes.
    std::fs::remove_file(ballast).unwrap();
    let mut waited = 0;
    while healthz(&s).await != http::StatusCode::OK {
        waited += 1;
        assert!(waited < 100, "health did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(grpc_health(&s).await, ServingStatus::Serving as i32);
    let last = next(10);
    let last_t = last[9].time_ms;
    let acks = stream_batches(ch.clone(), vec![batch(1000, last)]).await;
    assert_eq!(acks[0].accepted, 10);
    assert!(stored(&s, VIN).await.contains(&last_t));
    let body = http(s.http_addr, "GET", "/metrics", None, None).await.2;
    assert!(String::from_utf8_lossy(&body).contains("smogwatch_store_write_errors_total"));
    s.shutdown().await;
}

/// Defect 10 (shutdown): with the queues full of expensive work, shutdown still ends within the
/// grace period; what was queued was never acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_full_queues_keeps_to_the_grace_period() {
    const VIN: &str = "LZZ5BLSJ3DA001411";
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| {
        c.shutdown_grace_s = 1;
        c.pipeline.workers = 1;
        c.pipeline.worker_queue = 4096;
    })
    .await;
    let ch = register(&s, VIN).await;
    // An hour of stored context: every late batch below replays it through the detectors.
    let live: Vec<_> = (0..3600).map(|i| record(VIN, T0 + i * 1000, 120.2, 30.3, 60.0)).collect();
    let chunks: Vec<_> = live.chunks(500).enumerate().map(|(i, c)| batch(i as u64, c.to_vec())).collect();
    assert_eq!(stream_batches(ch, chunks).await.iter().map(|a| a.accepted).sum::<u32>(), 3600);
    let vin = Vin::parse(VIN).unwrap();
    let mut pending = Vec::new();
    for i in 0..2000i64 {
        let mut r = smogwatch::model::TelemetryRecord::bare(vin, T0 + (i % 3600) * 1000 + 500);
        r.fix = Some(smogwatch::model::Fix { lon: 120.2, lat: 30.3, valid: true });
        pending.push(s.pipeline.submit(vec![r], true, now_ms()).await.unwrap());
    }
    let started = std::time::Instant::now();
    s.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?} with a 1 s grace");
    drop(pending);
}

/// Defect 10 (HTTP errors): a bad query string, an unknown route and a wrong method answer with
/// the documented JSON error, not axum's text/plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let admin = token(&s, smogwatch::model::Role::Admin).await;
    for (method, path, want) in [
        ("GET", "/v1/violations?from_ms=yesterday", 400),
        ("GET", "/v1/violations?page_size=-1", 400),
        ("GET", "/v1/alerts?cursor=1&from_ms=x", 400),
        ("GET", "/v1/no-such-thing", 404),
        ("DELETE", "/v1/violations", 405),
    ] {
        let (status, headers, body) = http(s.http_addr, method, path, Some(&admin), None).await;
        assert_eq!(status.as_u16(), want, "{method} {path}");
        assert_eq!(headers.get(http::header::CONTENT_TYPE).unwrap(), "application/json", "{method} {path}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{v}");
    }
    s.shutdown().await;
}

/// Defect 8: a Hangzhou truck's NOx episode in Ningbo is Ningbo's: its city code comes from
/// the position (the zone catalogue's district outlines), so Ningbo police see it and
/// Hangzhou police do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jurisdiction_follows_the_position_not_the_home_city() {
    use smogwatch::model::{Jurisdiction, Role};
    use smogwatch::proto::zones_client::ZonesClient;
    const VIN: &str = "LZZ5BLSJ3DA001413";
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = register(&s, VIN).await; // registered in Hangzhou (330100)
    ZonesClient::new(ch.clone())
        .import(proto::ImportZonesRequest {
            geojson: smogwatch::zones::SAMPLE_ZONES.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Inside the sample's Ningbo districts outline.
    let zones =
        smogwatch::geofence::import_zones(smogwatch::zones::SAMPLE_ZONES, &Default::default()).unwrap();
    let ningbo = zones.zones.iter().find(|z| z.id == "R1-330200-DISTRICTS").unwrap();
    let p = geo::InteriorPoint::interior_point(&ningbo.geometry).unwrap();
    let recs: Vec<_> = (0..400).map(|i| record(VIN, T0 + i * 1000, p.x(), p.y(), 800.0)).collect();
    stream_batches(ch.clone(), batches(recs, 1, false)).await;
    let list = |ch: Authed| async move {
        ViolationsClient::new(ch)
            .list(proto::ListViolationsRequest { vin: VIN.into(), ..Default::default() })
            .await
    };
    let all = list(ch).await.unwrap().into_inner().violations;
    let r3: Vec<_> = all.iter().filter(|v| v.rule == "R3").collect();
    assert_eq!(r3.len(), 1, "{all:?}");
    assert_eq!(r3[0].city_code, "330200");
    let nb = channel_as(&s, Role::Police(Jurisdiction::city("330200").unwrap())).await;
    let seen = list(nb).await.unwrap().into_inner().violations;
    assert!(seen.iter().any(|v| v.rule == "R3"), "Ningbo police see it: {seen:?}");
    let hz = channel_as(&s, Role::Police(Jurisdiction::city("330100").unwrap())).await;
    let hz_seen = list(hz).await.map(|r| r.into_inner().violations).unwrap_or_default();
    assert!(hz_seen.iter().all(|v| v.rule != "R3"), "Hangzhou police do not: {hz_seen:?}");
    s.shutdown().await;
}
