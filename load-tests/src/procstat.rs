//! CPU time and memory of a process from /proc (Linux). Used on the server when it runs as a
//! child process, so its numbers are its own and not mixed with the load generator's.
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    /// Peak resident set size so far (VmHWM).
    pub hwm_kib: u64,
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every mainstream Linux build; ask getconf in case this one differs.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads /proc/<pid>/stat and /proc/<pid>/status; `None` if the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        at: Instant::now(),
        cpu_s: (utime + stime) as f64 / clock_ticks_per_second(),
        rss_kib: status_kib(&status, "VmRSS:")?,
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// CPU used between two samples, in cores (1.0 = one core fully busy).
pub fn cores_used(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall > 0.0 {
        (b.cpu_s - a.cpu_s) / wall
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let a = sample(std::process::id()).expect("own /proc entry");
        assert!(a.rss_kib > 0 && a.hwm_kib >= a.rss_kib / 2);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = sample(std::process::id()).unwrap();
        assert!(cores_used(&a, &b) >= 0.0);
    }
}
