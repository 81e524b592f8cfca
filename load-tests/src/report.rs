//! The run's report: what was run, throughput, ack latency, server resources and detection
//! quality; printed for humans and written as JSON for tooling and comparisons.
use crate::driver::ConnStats;
use crate::quality::Quality;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct RunSetup {
    pub scenario: String,
    pub transport: String,
    pub command: String,
    pub vehicles: u32,
    pub seed: u64,
    pub simulated_s_per_vehicle: u32,
    pub anchor: String,
    pub connections: usize,
    pub window: usize,
    pub vehicle_batches_per_message: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub max_records: u64,
    pub server: String,
    pub planted: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    pub elapsed_s: f64,
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub records_sent: u64,
    pub records_acked: u64,
    /// Records acknowledged / time until the last ack.
    pub records_per_s: f64,
    /// Median and minimum of the per-second acked counts (whole seconds, first and last dropped).
    pub per_second_median: u64,
    pub per_second_min: u64,
    pub duplicates: u64,
    pub rejections: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    pub measured: String,
    pub cpu_cores_during_load: Option<f64>,
    pub rss_start_mib: Option<f64>,
    pub rss_after_registration_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// (RSS at end − RSS at start) / vehicles that sent data.
    pub bytes_per_vehicle: Option<f64>,
    /// (RSS at end − RSS after registration) / vehicles: detector state and pipeline only.
    pub bytes_per_vehicle_excluding_registry: Option<f64>,
    pub load_generator_cpu_cores: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: RunSetup,
    pub registration_s: f64,
    pub throughput: Throughput,
    pub latency: Latency,
    pub server: Resources,
    pub quality: Quality,
}

impl Throughput {
    pub fn from_stats(s: &ConnStats) -> Self {
        let elapsed = s.last_ack.as_secs_f64();
        let mut full: Vec<u64> = if s.acked_per_second.len() > 2 {
            s.acked_per_second[1..s.acked_per_second.len() - 1].to_vec()
        } else {
            s.acked_per_second.clone()
        };
        full.sort_unstable();
        Throughput {
            elapsed_s: elapsed,
            messages_sent: s.messages_sent,
            messages_acked: s.messages_acked,
            records_sent: s.records_sent,
            records_acked: s.records_acked,
            records_per_s: if elapsed > 0.0 { s.records_acked as f64 / elapsed } else { 0.0 },
            per_second_median: full.get(full.len() / 2).copied().unwrap_or(0),
            per_second_min: full.first().copied().unwrap_or(0),
            duplicates: s.duplicates,
            rejections: s.rejections.clone(),
            errors: s.errors.iter().take(20).cloned().collect(),
        }
    }
}

impl Latency {
    pub fn from_stats(s: &ConnStats) -> Self {
        let h = &s.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.1}{unit}"))
}

impl Report {
    pub fn to_text(&self) -> String {
        let s = &self.setup;
        let t = &self.throughput;
        let l = &self.latency;
        let r = &self.server;
        let q = &self.quality;
        let mut o = String::new();
        let _ = writeln!(o, "== smogwatch load test: scenario `{}` over {} ==", s.scenario, s.transport);
        let _ = writeln!(o, "command   : {}", s.command);
        let _ = writeln!(
            o,
            "fleet     : {} vehicles, seed {}, {} simulated s each from {}; planted: {}",
            s.vehicles, s.seed, s.simulated_s_per_vehicle, s.anchor, s.planted
        );
        let _ = writeln!(o, "server    : {}", s.server);
        let rate = s.rate.map_or("as fast as acks allow".into(), |r| format!("fixed {r:.0} records/s"));
        let _ = writeln!(
            o,
            "load      : {} connections x window {}, {} vehicle batches ({} records) per message, {}; limits {:.0} s / {} records",
            s.connections,
            s.window,
            s.vehicle_batches_per_message,
            s.vehicle_batches_per_message * 10,
            rate,
            s.duration_s,
            s.max_records
        );
        let _ = writeln!(o, "registry  : {} vehicles registered in {:.1} s", s.vehicles, self.registration_s);
        let _ = writeln!(o, "\nThroughput (durable acks)");
        let _ = writeln!(
            o,
            "  {} records acked in {:.1} s = {:.0} records/s (per-second median {}, min {})",
            t.records_acked, t.elapsed_s, t.records_per_s, t.per_second_median, t.per_second_min
        );
        let _ = writeln!(
            o,
            "  messages sent {} / acked {}; duplicates {}; rejections {}",
            t.messages_sent,
            t.messages_acked,
            t.duplicates,
            if t.rejections.is_empty() { "none".into() } else { format!("{:?}", t.rejections) }
        );
        for e in &t.errors {
            let _ = writeln!(o, "  error: {e}");
        }
        let _ = writeln!(
            o,
            "\nAck latency per message (send, or scheduled send at a fixed rate, to durable ack)"
        );
        let _ = writeln!(
            o,
            "  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        );
        let _ = writeln!(o, "\nServer resources ({})", r.measured);
        let _ = writeln!(o, "  CPU during load: {} cores", opt(r.cpu_cores_during_load, ""));
        let _ = writeln!(
            o,
            "  RSS: start {}, after registration {}, end {}, peak {}",
            opt(r.rss_start_mib, " MiB"),
            opt(r.rss_after_registration_mib, " MiB"),
            opt(r.rss_end_mib, " MiB"),
            opt(r.rss_peak_mib, " MiB")
        );
        let _ = writeln!(
            o,
            "  memory per tracked vehicle: {} (excluding the registry: {})",
            opt(r.bytes_per_vehicle, " B"),
            opt(r.bytes_per_vehicle_excluding_registry, " B")
        );
        let _ = writeln!(o, "  load generator CPU: {} cores", opt(r.load_generator_cpu_cores, ""));
        let _ = writeln!(o, "\nDetection quality (scored rules: {})", q.scored_rules.join(", "));
        let _ = writeln!(
            o,
            "  {:<20} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>10}",
            "rule", "planted", "found", "missed", "not-due", "false", "recall", "precision"
        );
        for (rule, rq) in &q.by_rule {
            let _ = writeln!(
                o,
                "  {:<20} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>10}{}",
                rule,
                rq.planted,
                rq.found,
                rq.missed,
                rq.not_due,
                rq.false_alarms,
                pct(rq.recall),
                pct(rq.precision),
                if rq.late_flag_mismatches > 0 {
                    format!("  ({} late-flag mismatches)", rq.late_flag_mismatches)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            o,
            "  {:<20} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>10}",
            "total",
            q.planted,
            q.found,
            q.planted - q.found,
            q.not_due,
            q.false_alarms,
            pct(q.recall),
            pct(q.precision)
        );
        for m in q.misses.iter().take(20) {
            let _ = writeln!(
                o,
                "  MISS {} {} start in [{}, {}]{}",
                m.rule,
                m.vin,
                smogwatch::model::format_ms(m.start_from_ms),
                smogwatch::model::format_ms(m.start_to_ms),
                if m.late { " (late)" } else { "" }
            );
        }
        for f in q.false_alarm_list.iter().take(20) {
            let _ = writeln!(
                o,
                "  FALSE ALARM {} {} started {}{}: {}",
                f.rule,
                f.vin,
                smogwatch::model::format_ms(f.started_ms),
                if f.late { " (late)" } else { "" },
                f.summary
            );
        }
        if q.misses.len() + q.false_alarm_list.len() > 40 {
            let _ = writeln!(o, "  (full lists in the JSON report)");
        }
        o
    }
}
