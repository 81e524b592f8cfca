//! Scenarios (`standard`, `smoke`) and the run itself: start the server, register the fleet,
//! drive the load, then judge detection against the ground truth and report.
use crate::driver::{grpc::GrpcDriver, hj1239::Hj1239Driver, ConnStats, Driver, RunControl};
use crate::fleet::{self, VehicleSpec};
use crate::plant::{self, GroundTruth, Plan, PlantFlags};
use crate::procstat;
use crate::quality;
use crate::report::{Latency, Report, Resources, RunSetup, Throughput};
use crate::sim::VehicleSim;
use crate::source::Source;
use crate::target::{ServerMode, Target};
use anyhow::Context;
use futures::StreamExt;
use smogwatch::proto::registry_client::RegistryClient;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Grpc,
    /// HJ 1239 over TCP, one connection per terminal, to a gateway at `hj1239_addr`.
    Hj1239,
}

/// Everything a run needs. The named scenarios are presets; every field can be overridden.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub vehicles: u32,
    pub duration: Duration,
    pub max_records: u64,
    pub connections: usize,
    pub window: usize,
    pub batch_vehicles: usize,
    pub rate: Option<f64>,
    pub sim_seconds: u32,
    pub seed: u64,
    pub plant_rate: f64,
    pub flags: PlantFlags,
    pub server: ServerMode,
    pub workers: Option<usize>,
    pub transport: Transport,
    /// The HJ 1239 gateway of an external server (a spawned or in-process one reports its own).
    pub hj1239_addr: Option<std::net::SocketAddr>,
    pub out_dir: Option<PathBuf>,
    /// Simulated time of the fleet's first records, epoch ms (default: two days ago, so every
    /// record is in the past whatever the compression).
    pub anchor_ms: Option<i64>,
    pub command: String,
    pub quiet: bool,
    /// Field noise models on every vehicle (crate::noise); on unless `--no-noise`.
    pub noise: bool,
}

impl Scenario {
    /// The measured scenario: a large fleet, many streams, as fast as acks allow.
    pub fn standard() -> Self {
        Scenario {
            name: "standard".into(),
            vehicles: 100_000,
            duration: Duration::from_secs(60),
            max_records: 100_000_000,
            connections: 32,
            window: 16,
            batch_vehicles: 10,
            rate: None,
            sim_seconds: 900,
            seed: 42,
            plant_rate: 0.005,
            flags: PlantFlags::default(),
            server: ServerMode::Spawn { bin: None },
            workers: None,
            transport: Transport::Grpc,
            hj1239_addr: None,
            out_dir: None,
            anchor_ms: None,
            command: String::new(),
            quiet: false,
            noise: true,
        }
    }

    /// A few dozen vehicles, live and reissued (late) R3 episodes, in a few seconds.
    pub fn smoke() -> Self {
        Scenario {
            name: "smoke".into(),
            vehicles: 40,
            duration: Duration::from_secs(60),
            max_records: 1_000_000,
            connections: 4,
            window: 8,
            batch_vehicles: 4,
            sim_seconds: 800,
            seed: 7,
            plant_rate: 0.1,
            flags: PlantFlags { offline: true, ..PlantFlags::default() },
            server: ServerMode::InProcess,
            workers: Some(2),
            ..Scenario::standard()
        }
    }

    fn anchor(&self) -> i64 {
        self.anchor_ms.unwrap_or_else(|| {
            let two_days_ago = smogwatch::model::now_ms() - 2 * 86_400_000;
            two_days_ago - two_days_ago.rem_euclid(60_000)
        })
    }

    fn planted_description(&self) -> String {
        let f = self.flags;
        let mut v = vec!["R3"];
        for (on, name) in
            [(f.r1, "R1"), (f.r2, "R2"), (f.r4, "R4"), (f.offline, "offline+reissue"), (f.r6, "R6")]
        {
            if on {
                v.push(name);
            }
        }
        format!("{} at rate {}", v.join(" "), self.plant_rate)
    }
}

/// The generated fleet: vehicles, their plans and the truth.
pub struct Fleet {
    pub sims: Vec<VehicleSim>,
    pub truth: GroundTruth,
}

pub fn build_fleet(sc: &Scenario, anchor_ms: i64) -> Fleet {
    let mut sims = Vec::with_capacity(sc.vehicles as usize);
    let mut expected = Vec::new();
    let mut offline_vins = Vec::new();
    // The zones the server runs with (sample data); without them no zone truth (never fails in
    // practice: the sample zones are built into the library and tested there).
    let world = crate::truth::ZoneWorld::sample().ok();
    for i in 0..sc.vehicles {
        let mut spec = fleet::vehicle(sc.seed, i, false);
        let plan = plant::plan_for(sc.seed, &spec, sc.flags, sc.plant_rate);
        if plan == Plan::Unregistered {
            spec.registration_code.clear();
        }
        if plan == Plan::BannedMachine {
            spec.machine_type = "forklift";
        }
        if matches!(plan, Plan::Offline { .. }) {
            offline_vins.push(spec.vin.clone());
        }
        // Terminals are not synchronised: spread first records over the first 10 s.
        let t0 = anchor_ms + i64::from(i % 10) * 1000;
        expected.extend(plant::expected_for(&spec, plan, t0));
        let mut sim = VehicleSim::new(sc.seed, spec, plan, t0);
        if sc.noise {
            sim = sim.with_noise(sc.seed);
        }
        sims.push(match &world {
            Some(w) => sim.with_world(w),
            None => sim,
        });
    }
    let truth = GroundTruth {
        seed: sc.seed,
        anchor_ms,
        vehicles: sc.vehicles,
        flags: sc.flags,
        scored_rules: sc.flags.scored_rules().into_iter().map(String::from).collect(),
        expected,
        offline_vins,
        borderline: Vec::new(),
    };
    Fleet { sims, truth }
}

async fn register(addr: std::net::SocketAddr, specs: Vec<VehicleSpec>) -> anyhow::Result<()> {
    let channel = crate::driver::grpc::connect(addr).await?;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(specs)
        .map(|s| {
            let mut c = RegistryClient::new(channel.clone());
            async move {
                c.upsert_vehicle(s.to_proto()).await.with_context(|| format!("registering {}", s.vin))?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs a scenario end to end and returns its report (also written to `out_dir` if set).
pub async fn run(sc: Scenario) -> anyhow::Result<Report> {
    let say = |m: &str| {
        if !sc.quiet {
            eprintln!("[load] {m}");
        }
    };
    let anchor_ms = sc.anchor();
    let target = Target::start(sc.server.clone(), sc.workers).await?;
    say(&format!("server up: {} on {}", target.description, target.grpc_addr));
    let s_start = target.pid.and_then(procstat::sample);
    let hj_addr = match (sc.transport, sc.hj1239_addr.or(target.hj1239_addr)) {
        (Transport::Hj1239, None) => anyhow::bail!("--transport hj1239 needs --hj1239-addr 127.0.0.1:PORT"),
        (Transport::Hj1239, Some(a)) if !a.ip().is_loopback() => {
            anyhow::bail!("only 127.0.0.1 may be load-tested")
        }
        (_, a) => a,
    };

    let Fleet { sims, mut truth } = build_fleet(&sc, anchor_ms);
    say(&format!("fleet: {} vehicles, {} planted violations", sims.len(), truth.expected.len()));
    let reg_started = Instant::now();
    register(target.grpc_addr, sims.iter().map(|s| s.spec.clone()).collect()).await?;
    let registration_s = reg_started.elapsed().as_secs_f64();
    say(&format!("registered in {registration_s:.1} s; driving load"));

    // A vehicle always uses the same connection (keeps its batches in order). HJ 1239 has one
    // connection per terminal.
    let (n, per_message) = match sc.transport {
        Transport::Grpc => (sc.connections.max(1), sc.batch_vehicles),
        Transport::Hj1239 => (sims.len().max(1), 1),
    };
    let mut parts: Vec<Vec<VehicleSim>> = (0..n).map(|_| Vec::new()).collect();
    for (i, s) in sims.into_iter().enumerate() {
        parts[i % n].push(s);
    }
    let driver: Arc<dyn Driver> = match (sc.transport, hj_addr) {
        (Transport::Hj1239, Some(addr)) => Arc::new(Hj1239Driver { addr }),
        _ => Arc::new(GrpcDriver { addr: target.grpc_addr }),
    };
    let s_load = target.pid.and_then(procstat::sample);
    let me_load = procstat::sample(std::process::id());
    let ctl = Arc::new(RunControl::new(sc.duration, sc.max_records, sc.rate, n, sc.window));
    let handles: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(i, sims)| {
            tokio::spawn(driver.run(i, Source::new(sims, sc.sim_seconds, per_message), ctl.clone()))
        })
        .collect();
    let mut stats = ConnStats::new();
    let mut complete_until: HashMap<String, i64> = HashMap::new();
    for h in handles {
        let (st, mut src) = h.await?;
        stats.merge(st);
        for s in &mut src.sims {
            complete_until.insert(s.spec.vin.clone(), s.complete_until_ms());
            if let Some((exp, border)) = s.take_zone_truth() {
                truth.expected.extend(exp);
                truth.borderline.extend(border);
            }
        }
    }
    let s_end = target.pid.and_then(procstat::sample);
    let me_end = procstat::sample(std::process::id());
    say(&format!("load done: {} records acked; judging detection", stats.records_acked));

    let vins: HashSet<String> = complete_until.keys().cloned().collect();
    let channel = crate::driver::grpc::connect(target.grpc_addr).await?;
    let found = quality::fetch_violations(channel, &vins).await?;
    let quality = quality::evaluate(&truth, &complete_until, &found);
    target.stop().await?;

    let in_process = matches!(sc.server, ServerMode::InProcess);
    let per_vehicle = |from: Option<procstat::ProcSample>| match (from, s_end) {
        (Some(a), Some(b)) if sc.vehicles > 0 => {
            Some((b.rss_kib as f64 - a.rss_kib as f64) * 1024.0 / f64::from(sc.vehicles))
        }
        _ => None,
    };
    let server = Resources {
        measured: target_measured(&sc.server, in_process),
        cpu_cores_during_load: s_load.zip(s_end).map(|(a, b)| procstat::cores_used(&a, &b)),
        rss_start_mib: s_start.map(|s| mib(s.rss_kib)),
        rss_after_registration_mib: s_load.map(|s| mib(s.rss_kib)),
        rss_end_mib: s_end.map(|s| mib(s.rss_kib)),
        rss_peak_mib: s_end.map(|s| mib(s.hwm_kib)),
        bytes_per_vehicle: per_vehicle(s_start),
        bytes_per_vehicle_excluding_registry: per_vehicle(s_load),
        load_generator_cpu_cores: if in_process {
            None
        } else {
            me_load.zip(me_end).map(|(a, b)| procstat::cores_used(&a, &b))
        },
    };
    let report = Report {
        setup: RunSetup {
            scenario: sc.name.clone(),
            transport: format!("{:?}", sc.transport).to_lowercase(),
            command: sc.command.clone(),
            vehicles: sc.vehicles,
            seed: sc.seed,
            simulated_s_per_vehicle: sc.sim_seconds,
            anchor: smogwatch::model::format_ms(anchor_ms),
            connections: n,
            window: sc.window,
            vehicle_batches_per_message: per_message,
            rate: sc.rate,
            duration_s: sc.duration.as_secs_f64(),
            max_records: sc.max_records,
            server: target_description(&sc.server, sc.workers),
            planted: sc.planted_description(),
        },
        registration_s,
        throughput: Throughput::from_stats(&stats),
        latency: Latency::from_stats(&stats),
        server,
        quality,
    };
    if let Some(dir) = &sc.out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
        std::fs::write(dir.join("truth.json"), serde_json::to_vec_pretty(&truth)?)?;
        say(&format!("wrote {}/report.json and truth.json", dir.display()));
    }
    Ok(report)
}

fn target_measured(mode: &ServerMode, in_process: bool) -> String {
    match mode {
        ServerMode::External(_) => "external server: not measured".into(),
        _ if in_process => "in-process: includes the load generator".into(),
        _ => "server child process, from /proc/<pid>".into(),
    }
}

fn target_description(mode: &ServerMode, workers: Option<usize>) -> String {
    let w = workers.map_or("workers = one per core".into(), |w| format!("workers = {w}"));
    match mode {
        ServerMode::Spawn { .. } => format!("spawned smogwatch binary, embedded store in a temp dir, {w}"),
        ServerMode::InProcess => format!("in-process smogwatch::server, embedded store in a temp dir, {w}"),
        ServerMode::External(a) => format!("external server at {a}"),
    }
}
