//! The hostile soak (issue 14): normal clients at a fixed rate, first alone (baseline), then with
//! hostile clients mixed in — giant batches, oversize messages, future clocks, batches over many
//! days and beyond retention, slow readers (SSE, Watch and ingest streams nobody reads) and
//! tokens revoked while their streams are open. It reports the normal clients' throughput and
//! ack p99 in both phases and the server's peak RSS, and passes when throughput and p99 stay
//! within `tolerance` of the baseline and RSS under the budget. Bounded: two phases of
//! `phase_s` seconds; only 127.0.0.1; the spawned server is killed when the soak ends.
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use smogwatch::proto::{
    self, admin_client::AdminClient, registry_client::RegistryClient,
    telemetry_ingest_client::TelemetryIngestClient, violations_client::ViolationsClient,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub server_bin: Option<PathBuf>,
    pub vehicles: u32,
    pub streams: usize,
    /// Records/s offered by the normal clients together (fixed, below capacity).
    pub rate: f64,
    pub phase_s: f64,
    pub rss_budget_mib: u64,
    /// Allowed relative change of throughput and ack p99 (0.10 = 10 %).
    pub tolerance: f64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            server_bin: None,
            vehicles: 2000,
            streams: 4,
            rate: 4000.0,
            phase_s: 60.0,
            rss_budget_mib: 1024,
            tolerance: 0.10,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub records_acked: u64,
    pub records_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub config: String,
    pub baseline: PhaseResult,
    pub mixed: PhaseResult,
    pub throughput_change: f64,
    pub p99_change: f64,
    pub rss_peak_mib: f64,
    pub rss_budget_mib: u64,
    /// What the hostile clients saw, by outcome.
    pub hostile: BTreeMap<String, u64>,
    pub pass: bool,
}

impl SoakReport {
    pub fn to_text(&self) -> String {
        let p = |n: &str, r: &PhaseResult| {
            format!(
                "{n:>9}: {:>8.0} records/s acked, ack p50 {:>7.1} ms, p99 {:>7.1} ms, {} errors\n",
                r.records_per_s, r.ack_p50_ms, r.ack_p99_ms, r.errors
            )
        };
        let mut s = format!("hostile soak: {}\n", self.config);
        s += &p("baseline", &self.baseline);
        s += &p("mixed", &self.mixed);
        s += &format!(
            "throughput change {:+.1} %, ack p99 change {:+.1} %; server RSS peak {:.0} MiB (budget {} MiB)\n",
            self.throughput_change * 100.0,
            self.p99_change * 100.0,
            self.rss_peak_mib,
            self.rss_budget_mib
        );
        for (k, v) in &self.hostile {
            s += &format!("  hostile {k}: {v}\n");
        }
        s += if self.pass { "PASS\n" } else { "FAIL\n" };
        s
    }
}

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

async fn connect(addr: SocketAddr, secret: &str) -> anyhow::Result<Authed> {
    let ch = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    Ok(InterceptedService::new(ch, Bearer(format!("Bearer {secret}").parse()?)))
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    grpc: SocketAddr,
    http: SocketAddr,
    admin_secret: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn server_bin(explicit: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("no directory for this executable")?.join("smogwatch");
    if !p.exists() {
        bail!("no smogwatch binary at {}; build it or pass --server-bin", p.display());
    }
    Ok(p)
}

async fn spawn(cfg: &SoakConfig) -> anyhow::Result<Server> {
    let bin = server_bin(&cfg.server_bin)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let out = std::process::Command::new(&bin)
        .args(["token", "create", "--role", "admin", "--label", "soak operator"])
        .env("SMOGWATCH_DATA_DIR", &data)
        .output()?;
    if !out.status.success() {
        bail!("token create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let admin_secret = String::from_utf8(out.stdout)?.trim().to_string();
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = tokio::process::Command::new(&bin)
        .arg("serve")
        .env("SMOGWATCH_GRPC_ADDR", grpc.to_string())
        .env("SMOGWATCH_HTTP_ADDR", http.to_string())
        .env("SMOGWATCH_HJ1239__ADDR", format!("127.0.0.1:{}", free_port()?))
        .env("SMOGWATCH_DATA_DIR", &data)
        .env("SMOGWATCH_RETENTION_DAYS", "30")
        .env("SMOGWATCH_AUTH__CACHE_TTL_S", "2")
        .env("RUST_LOG", std::env::var("SERVER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("child pid")?;
    let until = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(grpc).await.is_err() {
        if Instant::now() > until {
            bail!("server did not listen on {grpc}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, pid, grpc, http, admin_secret, _dir: dir })
}

fn vin(kind: char, i: u32) -> String {
    format!("LSWK{kind}{i:012}")
}

fn record(vin: &str, t: i64) -> proto::TelemetryRecord {
    proto::TelemetryRecord {
        vin: vin.into(),
        time_ms: t,
        position: Some(proto::Position { longitude: 120.2, latitude: 30.3, valid: true }),
        engine: Some(proto::EngineData {
            vehicle_speed_kmh: Some(40.0),
            engine_speed_rpm: Some(1400.0),
            scr_inlet_temp_c: Some(320.0),
            coolant_temp_c: Some(85.0),
            scr_upstream_nox_ppm: Some(900.0),
            scr_downstream_nox_ppm: Some(60.0),
            ..Default::default()
        }),
        obd: None,
        opacity_k: None,
        stream_kind: proto::EngineStreamKind::Diesel as i32,
    }
}

async fn register(ch: &Authed, vins: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut reg = RegistryClient::new(ch.clone());
    for v in vins {
        reg.upsert_vehicle(proto::Vehicle {
            vin: v,
            kind: proto::VehicleKind::Truck as i32,
            fuel: proto::Fuel::Diesel as i32,
            emission_stage: proto::EmissionStage::ChinaV as i32,
            city_code: "330100".into(),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// One normal stream: its vehicles' records at a fixed rate, acks timed.
struct Normal {
    hist: Histogram<u64>,
    acked: u64,
    errors: u64,
}

async fn normal_stream(
    ch: Authed,
    vins: Vec<String>,
    clock: Arc<Vec<AtomicU64>>,
    rate: f64,
    until: Instant,
) -> Normal {
    const PER_MESSAGE_VEHICLES: usize = 10;
    const WINDOW: usize = 16;
    let mut out = Normal { hist: Histogram::new(3).expect("histogram"), acked: 0, errors: 0 };
    let (tx, rx) = tokio::sync::mpsc::channel(WINDOW);
    let mut client = TelemetryIngestClient::new(ch);
    let mut acks = match client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(_) => {
            out.errors += 1;
            return out;
        }
    };
    let records_per_message = (PER_MESSAGE_VEHICLES * 10) as f64;
    let interval = Duration::from_secs_f64(records_per_message / rate.max(1.0));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: VecDeque<(u64, Instant, u32)> = VecDeque::new();
    let mut seq = 0u64;
    let mut next_vehicle = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick(), if sent.len() < WINDOW && Instant::now() < until => {
                let mut records = Vec::with_capacity(PER_MESSAGE_VEHICLES * 10);
                for _ in 0..PER_MESSAGE_VEHICLES {
                    let i = next_vehicle % vins.len();
                    next_vehicle += 1;
                    let slot = &clock[i];
                    let t0 = slot.fetch_add(10_000, Ordering::Relaxed) as i64;
                    records.extend((0..10).map(|k| record(&vins[i], t0 + k * 1000)));
                }
                seq += 1;
                let n = records.len() as u32;
                if tx.send(proto::TelemetryBatch { sequence: seq, records, reissue: false }).await.is_err() {
                    out.errors += 1;
                    return out;
                }
                sent.push_back((seq, Instant::now(), n));
            }
            ack = acks.message() => match ack {
                Ok(Some(a)) => {
                    if let Some((s, at, n)) = sent.pop_front() {
                        if s == a.sequence {
                            let _ = out.hist.record(at.elapsed().as_micros() as u64);
                            out.acked += u64::from(n.min(a.accepted + a.rejections.len() as u32));
                            out.errors += a.rejections.len() as u64;
                        }
                    }
                    if sent.is_empty() && Instant::now() >= until {
                        return out;
                    }
                }
                _ => {
                    out.errors += 1;
                    return out;
                }
            },
            _ = tokio::time::sleep_until((until + Duration::from_secs(30)).into()) => return out,
        }
    }
}

async fn phase(
    srv: &Server,
    cfg: &SoakConfig,
    vins: &[String],
    clock: &Arc<Vec<AtomicU64>>,
) -> anyhow::Result<PhaseResult> {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(cfg.phase_s);
    let mut tasks = Vec::new();
    for s in 0..cfg.streams {
        let mine: Vec<String> = vins.iter().skip(s).step_by(cfg.streams).cloned().collect();
        let slots: Arc<Vec<AtomicU64>> = Arc::new(
            (s..vins.len())
                .step_by(cfg.streams)
                .map(|i| AtomicU64::new(clock[i].load(Ordering::Relaxed)))
                .collect(),
        );
        let ch = connect(srv.grpc, &srv.admin_secret).await?;
        let rate = cfg.rate / cfg.streams as f64;
        tasks.push(tokio::spawn(async move {
            let r = normal_stream(ch, mine, slots.clone(), rate, until).await;
            (r, s, slots)
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut acked, mut errors) = (0, 0);
    let streams = cfg.streams;
    for t in tasks {
        let (r, s, slots) = t.await?;
        hist.add(&r.hist)?;
        acked += r.acked;
        errors += r.errors;
        // Carry each vehicle's clock into the next phase.
        for (k, i) in (s..clock.len()).step_by(streams).enumerate() {
            clock[i].store(slots[k].load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
    let secs = started.elapsed().as_secs_f64().max(cfg.phase_s);
    Ok(PhaseResult {
        records_acked: acked,
        records_per_s: acked as f64 / secs,
        ack_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        ack_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    })
}

type Tally = Arc<tally::Counters>;

/// Between two attempts of one hostile client: hostile, not a second full load.
const HOSTILE_PAUSE: Duration = Duration::from_millis(500);

/// What the hostile clients saw: a fixed set of named atomic counters.
mod tally {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const NAMES: [&str; 10] = [
        "giant_batch_refused",
        "oversize_message_refused",
        "future_records_acked",
        "many_day_records_refused",
        "old_records_refused",
        "slow_sse_opened",
        "slow_watch_opened",
        "unread_ingest_streams",
        "revoked_streams_ended",
        "unexpected",
    ];

    #[derive(Default)]
    pub struct Counters([AtomicU64; 10]);

    impl Counters {
        pub fn add(&self, name: &str, n: u64) {
            let i = NAMES.iter().position(|x| *x == name).unwrap_or(NAMES.len() - 1);
            self.0[i].fetch_add(n, Ordering::Relaxed);
        }
        pub fn snapshot(&self) -> BTreeMap<String, u64> {
            NAMES.iter().zip(&self.0).map(|(n, c)| (n.to_string(), c.load(Ordering::Relaxed))).collect()
        }
    }
}

/// Hostile clients, each looping until `stop`.
async fn hostile(
    srv: ServerRef,
    vins: Vec<String>,
    stop: Arc<AtomicBool>,
    tally: Tally,
) -> anyhow::Result<()> {
    let admin = connect(srv.grpc, &srv.admin_secret).await?;
    let now = smogwatch::model::now_ms();
    let mut tasks = Vec::new();
    let until_stop = |stop: &Arc<AtomicBool>| !stop.load(Ordering::Relaxed);

    // Giant batches (over max_batch_records) and oversize messages (over max_message_bytes).
    {
        let (ch, stop, tally, v) = (admin.clone(), stop.clone(), tally.clone(), vins[0].clone());
        tasks.push(tokio::spawn(async move {
            // Built once: the point is what the server does with them, not the client's work.
            let giant: Vec<_> = (0..10_001).map(|i| record(&v, now - 3_600_000 + i)).collect();
            let mut big = record(&v, now - 3_600_000);
            big.obd = Some(proto::ObdInfo { ecu_vin: "X".repeat(5 << 20), ..Default::default() });
            let mut k = 0i64;
            while until_stop(&stop) {
                k += 1;
                let batch = if k % 2 == 0 { giant.clone() } else { vec![big.clone()] };
                let mut c = TelemetryIngestClient::new(ch.clone()).max_encoding_message_size(64 << 20);
                let req = tokio_stream::iter(vec![proto::TelemetryBatch {
                    sequence: 1,
                    records: batch,
                    reissue: false,
                }]);
                match c.stream(req).await {
                    Ok(r) => match r.into_inner().message().await {
                        Err(s) if s.code() == tonic::Code::InvalidArgument => {
                            tally.add("giant_batch_refused", 1)
                        }
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            tally.add("oversize_message_refused", 1)
                        }
                        _ => tally.add("unexpected", 1),
                    },
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        tally.add("oversize_message_refused", 1)
                    }
                    Err(_) => tally.add("unexpected", 1),
                }
                tokio::time::sleep(HOSTILE_PAUSE).await;
            }
        }));
    }
    // Future clocks, batches over many days, records older than retention.
    {
        let (ch, stop, tally, v) = (admin.clone(), stop.clone(), tally.clone(), vins[1].clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut t_future = now + 20 * 3_600_000;
            while until_stop(&stop) {
                let future: Vec<_> = (0..100).map(|i| record(&v, t_future + i * 1000)).collect();
                t_future += 100_000;
                let days: Vec<_> = (0..2000).map(|d| record(&v, now - 3_600_000 - d * 86_400_000)).collect();
                let batches: Vec<_> = [future, days]
                    .into_iter()
                    .map(|records| {
                        seq += 1;
                        proto::TelemetryBatch { sequence: seq, records, reissue: false }
                    })
                    .collect();
                let mut c = TelemetryIngestClient::new(ch.clone());
                if let Ok(r) = c.stream(tokio_stream::iter(batches)).await {
                    let mut acks = r.into_inner();
                    if let Ok(Some(a)) = acks.message().await {
                        tally.add("future_records_acked", u64::from(a.accepted));
                    }
                    if let Ok(Some(a)) = acks.message().await {
                        for rej in &a.rejections {
                            match rej.reason() {
                                proto::RejectReason::BatchSpan => tally.add("many_day_records_refused", 1),
                                proto::RejectReason::BeyondRetention => tally.add("old_records_refused", 1),
                                _ => tally.add("unexpected", 1),
                            }
                        }
                    }
                }
                tokio::time::sleep(HOSTILE_PAUSE).await;
            }
        }));
    }
    // Slow readers: SSE requests never read, Watch streams never polled, ingest streams whose
    // acks are never read. Held open to the end of the phase.
    {
        let (http, ch, stop, tally, secret) =
            (srv.http, admin.clone(), stop.clone(), tally.clone(), srv.admin_secret.clone());
        let v = vins[2].clone();
        tasks.push(tokio::spawn(async move {
            let mut held_sse = Vec::new();
            let mut held_watch = Vec::new();
            let mut held_ingest = Vec::new();
            for _ in 0..20 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
                    let req = format!(
                        "GET /v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n\r\n"
                    );
                    if s.write_all(req.as_bytes()).await.is_ok() {
                        tally.add("slow_sse_opened", 1);
                        held_sse.push(s);
                    }
                }
                if let Ok(w) = ViolationsClient::new(ch.clone())
                    .watch(proto::WatchViolationsRequest { filter: None, cursor: String::new() })
                    .await
                {
                    tally.add("slow_watch_opened", 1);
                    held_watch.push(w);
                }
            }
            for k in 0..8u64 {
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                let mut c = TelemetryIngestClient::new(ch.clone());
                let v = v.clone();
                let feeder = tokio::spawn(async move {
                    let mut t = now - 7_200_000 + (k as i64) * 10_000_000;
                    for seq in 0..100u64 {
                        let records = (0..100).map(|i| record(&v, t + i * 1000)).collect();
                        t += 100_000;
                        if tx
                            .send(proto::TelemetryBatch { sequence: seq, records, reissue: false })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                if let Ok(r) = c.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
                    tally.add("unread_ingest_streams", 1);
                    held_ingest.push((r, feeder));
                }
            }
            while until_stop(&stop) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop((held_sse, held_watch, held_ingest));
        }));
    }
    // Revoked tokens: a terminal token opens an ingest stream and keeps sending; the token is
    // revoked; the stream must end.
    {
        let (grpc, ch, stop, tally, v) =
            (srv.grpc, admin.clone(), stop.clone(), tally.clone(), vins[3].clone());
        tasks.push(tokio::spawn(async move {
            let mut t = now - 3_000_000;
            while until_stop(&stop) {
                let created = AdminClient::new(ch.clone())
                    .create_token(proto::CreateTokenRequest {
                        role: "terminal".into(),
                        vins: vec![v.clone()],
                        label: "soak revoked".into(),
                        ..Default::default()
                    })
                    .await;
                let Ok(created) = created.map(|r| r.into_inner()) else {
                    tally.add("unexpected", 1);
                    break;
                };
                let Ok(terminal) = connect(grpc, &created.secret).await else { break };
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                let Ok(r) = TelemetryIngestClient::new(terminal)
                    .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                else {
                    tally.add("unexpected", 1);
                    continue;
                };
                let mut acks = r.into_inner();
                let id = created.token.map(|t| t.id).unwrap_or_default();
                let _ = AdminClient::new(ch.clone()).revoke_token(proto::RevokeTokenRequest { id }).await;
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut seq = 0;
                let ended = loop {
                    seq += 1;
                    t += 1000;
                    let _ = tx
                        .send(proto::TelemetryBatch {
                            sequence: seq,
                            records: vec![record(&v, t)],
                            reissue: false,
                        })
                        .await;
                    match tokio::time::timeout(Duration::from_millis(500), acks.message()).await {
                        Ok(Err(s)) if s.code() == tonic::Code::Unauthenticated => break true,
                        Ok(Ok(None)) | Ok(Err(_)) => break false,
                        _ => {}
                    }
                    if Instant::now() > deadline {
                        break false;
                    }
                };
                tally.add(if ended { "revoked_streams_ended" } else { "unexpected" }, 1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Runs the soak: baseline phase, then the mixed phase, with RSS sampled throughout.
pub async fn run(cfg: SoakConfig) -> anyhow::Result<SoakReport> {
    let mut srv = spawn(&cfg).await?;
    let admin = connect(srv.grpc, &srv.admin_secret).await?;
    let normal: Vec<String> = (0..cfg.vehicles).map(|i| vin('N', i)).collect();
    let hostile_vins: Vec<String> = (0..4).map(|i| vin('H', i)).collect();
    register(&admin, normal.iter().cloned().chain(hostile_vins.iter().cloned())).await?;
    // Each normal vehicle starts two hours ago and advances 10 s per message it is in.
    let start = smogwatch::model::now_ms() - 2 * 3_600_000;
    let clock: Arc<Vec<AtomicU64>> =
        Arc::new((0..normal.len()).map(|_| AtomicU64::new(start as u64)).collect());

    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, on, pid) = (rss_peak.clone(), sampling.clone(), srv.pid);
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                if let Some(s) = crate::procstat::sample(pid) {
                    peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    eprintln!("soak: baseline phase ({} s)", cfg.phase_s);
    let baseline = phase(&srv, &cfg, &normal, &clock).await?;
    eprintln!("soak: mixed phase ({} s)", cfg.phase_s);
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Tally = Arc::default();
    let hostile_task = {
        let target = ServerRef { grpc: srv.grpc, http: srv.http, admin_secret: srv.admin_secret.clone() };
        tokio::spawn(hostile(target, hostile_vins.clone(), stop.clone(), tally.clone()))
    };
    // Let the hostile clients get going before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mixed = phase(&srv, &cfg, &normal, &clock).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), hostile_task).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let _ = srv.child.kill().await;

    let throughput_change = mixed.records_per_s / baseline.records_per_s.max(1e-9) - 1.0;
    let p99_change = mixed.ack_p99_ms / baseline.ack_p99_ms.max(1e-9) - 1.0;
    let rss_peak_mib = rss_peak.load(Ordering::Relaxed) as f64 / 1024.0;
    let hostile = tally.snapshot();
    let pass = throughput_change >= -cfg.tolerance
        && p99_change <= cfg.tolerance
        && rss_peak_mib <= cfg.rss_budget_mib as f64
        && hostile.get("unexpected").copied().unwrap_or(0) == 0;
    Ok(SoakReport {
        config: format!(
            "{} vehicles, {} streams, {:.0} records/s offered, 2 × {} s, RSS budget {} MiB",
            cfg.vehicles, cfg.streams, cfg.rate, cfg.phase_s, cfg.rss_budget_mib
        ),
        baseline,
        mixed,
        throughput_change,
        p99_change,
        rss_peak_mib,
        rss_budget_mib: cfg.rss_budget_mib,
        hostile,
        pass,
    })
}

/// What the hostile clients need of the server: addresses and the admin secret.
struct ServerRef {
    grpc: SocketAddr,
    http: SocketAddr,
    admin_secret: String,
}
