//! The server under test: spawned as a child process (its CPU and memory are then its own), run
//! in-process (for the integration test), or an already running server on 127.0.0.1.
use anyhow::{bail, Context};
use smogwatch::config::Config;
use smogwatch::gateway::LayoutSetting;
use smogwatch::server::{start, Options, RunningServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum ServerMode {
    /// Spawn the `smogwatch` binary (path, or found next to this binary / built with cargo).
    Spawn {
        bin: Option<PathBuf>,
    },
    InProcess,
    /// A server that is already running; only 127.0.0.1 is accepted.
    External(SocketAddr),
}

impl std::str::FromStr for ServerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spawn" => Ok(ServerMode::Spawn { bin: None }),
            "inproc" | "in-process" => Ok(ServerMode::InProcess),
            addr => {
                let a: SocketAddr =
                    addr.parse().map_err(|e| format!("server: spawn, inproc or 127.0.0.1:PORT ({e})"))?;
                if a.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
                    return Err("only 127.0.0.1 may be load-tested".into());
                }
                Ok(ServerMode::External(a))
            }
        }
    }
}

enum Kind {
    Child(tokio::process::Child),
    InProcess(Box<RunningServer>),
    External,
}

pub struct Target {
    pub grpc_addr: SocketAddr,
    /// The HJ 1239 gateway (HJ 1239 body layout), when the server runs one.
    pub hj1239_addr: Option<SocketAddr>,
    /// Process to sample for CPU and memory (the child, or this process when in-process).
    pub pid: Option<u32>,
    pub description: String,
    kind: Kind,
    /// Keeps the temporary data directory alive for the server's lifetime.
    _dir: Option<tempfile::TempDir>,
}

/// Per-connection frame limit of the gateway during load tests. Time is compressed (a terminal
/// sends its 10-second frames as fast as answers allow), so the field limit would throttle it.
const GATEWAY_FRAMES_PER_S: f64 = 100_000.0;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `smogwatch` binary next to this one; built with cargo (same profile) when missing.
fn server_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no directory for the current executable")?;
    let candidate = dir.join("smogwatch");
    if candidate.exists() {
        return Ok(candidate);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-p", "smogwatch", "--bin", "smogwatch"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    eprintln!("building the smogwatch binary: {cmd:?}");
    let status = cmd.status().context("running cargo to build the server")?;
    if !status.success() || !candidate.exists() {
        bail!("the smogwatch binary is not at {}; pass --server-bin", candidate.display());
    }
    Ok(candidate)
}

impl Target {
    pub async fn start(mode: ServerMode, workers: Option<usize>) -> anyhow::Result<Target> {
        match mode {
            ServerMode::External(addr) => Ok(Target {
                grpc_addr: addr,
                hj1239_addr: None,
                pid: None,
                description: format!("external server at {addr}"),
                kind: Kind::External,
                _dir: None,
            }),
            ServerMode::InProcess => {
                let dir = tempfile::tempdir()?;
                let mut cfg = Config {
                    grpc_addr: "127.0.0.1:0".parse()?,
                    http_addr: "127.0.0.1:0".parse()?,
                    data_dir: dir.path().to_path_buf(),
                    retention_days: 0,
                    ..Default::default()
                };
                if let Some(w) = workers {
                    cfg.pipeline.workers = w;
                }
                // The load test measures ingest and detection; it calls as an anonymous admin.
                cfg.auth.enabled = false;
                cfg.hj1239.addr = Some("127.0.0.1:0".parse()?);
                cfg.hj1239.layout = LayoutSetting::Hj1239;
                cfg.hj1239.max_frames_per_s = GATEWAY_FRAMES_PER_S;
                cfg.hj1239.frame_burst = GATEWAY_FRAMES_PER_S;
                // The sample zones (approximate district and county zones of the 11 cities) are what
                // planted R1 offenders drive into.
                let server = start(cfg, Options { sample_data: true }).await?;
                Ok(Target {
                    grpc_addr: server.grpc_addr,
                    hj1239_addr: server.hj1239_addr,
                    pid: Some(std::process::id()),
                    description: "in-process (CPU and memory include the load generator)".into(),
                    kind: Kind::InProcess(Box::new(server)),
                    _dir: Some(dir),
                })
            }
            ServerMode::Spawn { bin } => {
                let bin = server_binary(bin)?;
                let dir = tempfile::tempdir()?;
                let grpc_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let hj1239_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let log = std::fs::File::create(dir.path().join("server.log"))?;
                let mut cmd = tokio::process::Command::new(&bin);
                cmd.arg("serve")
                    .arg("--sample-data")
                    .env("SMOGWATCH_GRPC_ADDR", grpc_addr.to_string())
                    .env("SMOGWATCH_HTTP_ADDR", http_addr.to_string())
                    .env("SMOGWATCH_DATA_DIR", dir.path().join("data"))
                    .env("SMOGWATCH_RETENTION_DAYS", "0")
                    // Ingest and detection are measured; clients call as an anonymous admin.
                    .env("SMOGWATCH_AUTH__ENABLED", "false")
                    .env("SMOGWATCH_HJ1239__ADDR", hj1239_addr.to_string())
                    .env("SMOGWATCH_HJ1239__LAYOUT", "hj1239")
                    .env("SMOGWATCH_HJ1239__MAX_FRAMES_PER_S", GATEWAY_FRAMES_PER_S.to_string())
                    .env("SMOGWATCH_HJ1239__FRAME_BURST", GATEWAY_FRAMES_PER_S.to_string())
                    .env("RUST_LOG", std::env::var("SERVER_LOG").unwrap_or_else(|_| "warn".into()))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true);
                if let Some(w) = workers {
                    cmd.env("SMOGWATCH_PIPELINE__WORKERS", w.to_string());
                }
                let mut child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
                let pid = child.id();
                let until = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(status) = child.try_wait()? {
                        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                        bail!("server exited during start-up ({status}):\n{log}");
                    }
                    if tokio::net::TcpStream::connect(grpc_addr).await.is_ok() {
                        break;
                    }
                    if Instant::now() > until {
                        bail!("server did not listen on {grpc_addr} within 30 s");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Target {
                    grpc_addr,
                    hj1239_addr: Some(hj1239_addr),
                    pid,
                    description: format!("child process {} (pid {})", bin.display(), pid.unwrap_or(0)),
                    kind: Kind::Child(child),
                    _dir: Some(dir),
                })
            }
        }
    }

    /// Stops the server: SIGTERM to the child (graceful drain), then SIGKILL after 15 s.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.kind {
            Kind::External => {}
            Kind::InProcess(s) => s.shutdown().await,
            Kind::Child(mut child) => {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                    child.kill().await?;
                }
            }
        }
        Ok(())
    }
}
