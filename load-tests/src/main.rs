//! Command line of the load tests: `standard` (the measured scenario) and `smoke` (seconds).
use clap::{Args, Parser, Subcommand};
use smogwatch_load_tests::plant::PlantFlags;
use smogwatch_load_tests::scenario::{run, Scenario, Transport};
use smogwatch_load_tests::target::ServerMode;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "smogwatch-load-tests", about = "Fleet simulator, load drivers and report for smogwatch")]
struct Cli {
    #[command(subcommand)]
    scenario: Which,
}

#[derive(Subcommand)]
enum Which {
    /// The measured scenario (defaults: 100k vehicles, 60 s, 32 streams, as fast as acks allow).
    Standard(Overrides),
    /// A few dozen vehicles through every planted episode in a few seconds, in-process server.
    Smoke(Overrides),
    /// Hostile clients mixed into a fixed normal load (issue 14); spawns the server binary.
    Soak(SoakArgs),
}

/// Knobs of the hostile soak (see `soak.rs`).
#[derive(Args, Debug)]
struct SoakArgs {
    #[arg(long, default_value_t = 2000)]
    vehicles: u32,
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Records/s the normal clients offer together (keep it below the server's capacity).
    #[arg(long, default_value_t = 4000.0)]
    rate: f64,
    /// Seconds of each phase (baseline, then mixed).
    #[arg(long, default_value_t = 60.0)]
    phase: f64,
    #[arg(long, default_value_t = 1024)]
    rss_budget_mb: u64,
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Every knob of a scenario; unset ones keep the scenario's default.
#[derive(Args, Debug)]
struct Overrides {
    /// Vehicles in the fleet.
    #[arg(long)]
    vehicles: Option<u32>,
    /// Wall-clock limit of the load phase, seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many records (may be exceeded by one message per connection).
    #[arg(long)]
    max_records: Option<u64>,
    /// Concurrent streams (gRPC: each on its own HTTP/2 connection).
    #[arg(long, alias = "streams")]
    connections: Option<usize>,
    /// Unacknowledged messages allowed per connection.
    #[arg(long)]
    window: Option<usize>,
    /// Vehicle batches (10 records each) per message.
    #[arg(long)]
    batch_vehicles: Option<usize>,
    /// Fixed rate in records/s for the whole run; 0 or unset = as fast as acks allow.
    #[arg(long)]
    rate: Option<f64>,
    /// Simulated seconds per vehicle (the run also ends when every vehicle is through).
    #[arg(long)]
    sim_seconds: Option<u32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Probability that an eligible vehicle carries each kind of planted violation.
    #[arg(long)]
    plant_rate: Option<f64>,
    /// Plant R1 (China III trucks in city centres).
    #[arg(long)]
    plant_r1: bool,
    /// Plant R2 (black-smoke episodes, opacity_k).
    #[arg(long)]
    plant_r2: bool,
    /// Plant R4 (SCR conversion < 20 %, reagent empty).
    #[arg(long)]
    plant_r4: bool,
    /// Plant offline gaps with later reissue (some hiding a late R3 episode).
    #[arg(long)]
    plant_offline: bool,
    /// Plant R6 (machines working without a registration code).
    #[arg(long)]
    plant_r6: bool,
    /// All of the plant flags above.
    #[arg(long)]
    plant_all: bool,
    /// `spawn` (child process, default for standard), `inproc`, or `127.0.0.1:PORT`.
    #[arg(long)]
    server: Option<ServerMode>,
    /// The smogwatch binary to spawn (default: next to this binary, built if missing).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Server pipeline workers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// HJ 1239 gateway address (127.0.0.1:PORT) for `--transport hj1239`.
    #[arg(long)]
    hj1239_addr: Option<std::net::SocketAddr>,
    /// Directory for report.json and truth.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Simulated start time, epoch ms (default two days ago).
    #[arg(long)]
    anchor_ms: Option<i64>,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Ideal terminals: switch the field noise models off (they are on by default).
    #[arg(long)]
    no_noise: bool,
}

impl Overrides {
    fn apply(self, mut s: Scenario) -> (Scenario, bool) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        set!(vehicles, max_records, connections, window, batch_vehicles, sim_seconds, seed, plant_rate);
        s.workers = self.workers.or(s.workers);
        if let Some(d) = self.duration {
            s.duration = Duration::from_secs_f64(d.clamp(0.1, 3600.0));
        }
        if let Some(r) = self.rate {
            s.rate = (r > 0.0).then_some(r);
        }
        if let Some(t) = self.transport {
            s.transport = t;
        }
        if let Some(m) = self.server {
            s.server = m;
        }
        if let Some(b) = self.server_bin {
            s.server = ServerMode::Spawn { bin: Some(b) };
        }
        s.hj1239_addr = self.hj1239_addr.or(s.hj1239_addr);
        s.out_dir = self.out.or(s.out_dir);
        s.anchor_ms = self.anchor_ms.or(s.anchor_ms);
        let f = if self.plant_all { PlantFlags::all() } else { s.flags };
        s.flags = PlantFlags {
            r1: f.r1 || self.plant_r1,
            r2: f.r2 || self.plant_r2,
            r4: f.r4 || self.plant_r4,
            offline: f.offline || self.plant_offline,
            r6: f.r6 || self.plant_r6,
        };
        s.quiet = self.json;
        s.noise = !self.no_noise;
        (s, self.json)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (scenario, json) = match cli.scenario {
        Which::Standard(o) => o.apply(Scenario::standard()),
        Which::Smoke(o) => o.apply(Scenario::smoke()),
        Which::Soak(a) => {
            let cfg = smogwatch_load_tests::soak::SoakConfig {
                server_bin: a.server_bin,
                vehicles: a.vehicles.max(1),
                streams: a.streams.max(1),
                rate: a.rate,
                phase_s: a.phase.clamp(5.0, 600.0),
                rss_budget_mib: a.rss_budget_mb,
                ..Default::default()
            };
            let report = smogwatch_load_tests::soak::run(cfg).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            if !report.pass {
                std::process::exit(1);
            }
            return Ok(());
        }
    };
    let scenario = Scenario { command: std::env::args().collect::<Vec<_>>().join(" "), ..scenario };
    let report = run(scenario).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
