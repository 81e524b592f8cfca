//! The smoke scenario as a matrix: 20 seeds × 3 plant rates, every plant on, each run against
//! its own in-process server. Every run must find every clear violation and raise no false
//! alarm; borderline cases are reported, never failed. Seeds also move the simulated start
//! across the week (Ningbo's zone has weekday peak-hour windows), so the result does not depend
//! on the hour the test runs. Sized to a few minutes on 2 cores: 30 vehicles × 800 s per run.
use smogwatch_load_tests::plant::PlantFlags;
use smogwatch_load_tests::scenario::{run, Scenario};
use std::collections::BTreeMap;

const SEEDS: u64 = 20;
const RATES: [f64; 3] = [0.05, 0.1, 0.2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_matrix_every_seed_and_rate_finds_all_and_nothing_else() {
    let now = smogwatch::model::now_ms();
    let base = now - 2 * 86_400_000 - (now - 2 * 86_400_000).rem_euclid(60_000);
    let mut planted: BTreeMap<String, u32> = BTreeMap::new();
    let mut borderline: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut failures = Vec::new();
    for seed in 0..SEEDS {
        for rate in RATES {
            // Up to a week back, in steps of 5 h 7 min: every hour of day and day of week.
            let anchor_ms = base - (seed as i64 * 18_420_000) % (7 * 86_400_000);
            let sc = Scenario {
                quiet: true,
                vehicles: 30,
                seed: 1000 + seed,
                plant_rate: rate,
                anchor_ms: Some(anchor_ms),
                flags: PlantFlags::all(),
                ..Scenario::smoke()
            };
            let report = run(sc).await.expect("smoke run");
            let q = &report.quality;
            if !report.throughput.errors.is_empty() {
                failures.push(format!("seed {seed} rate {rate}: errors {:?}", report.throughput.errors));
            }
            if q.false_alarms > 0 || q.planted != q.found {
                failures.push(format!(
                    "seed {seed} rate {rate}: misses {:#?} false alarms {:#?}",
                    q.misses, q.false_alarm_list
                ));
            }
            for (rule, rq) in &q.by_rule {
                *planted.entry(rule.clone()).or_default() += rq.planted;
                let b = borderline.entry(rule.clone()).or_default();
                b.0 += rq.borderline_violation + rq.borderline_compliant;
                b.1 += rq.borderline_violation_found + rq.borderline_compliant_found;
            }
        }
    }
    eprintln!("planted over the matrix: {planted:?}");
    eprintln!("borderline (cases, flagged): {borderline:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for rule in [
        "R1",
        "R2.opacity",
        "R3",
        "R4.scr_ineffective",
        "R4.reagent_empty",
        "R4.dpf_bypass",
        "R4.mil_on",
        "R4.ecu_vin_mismatch",
        "R4.cvn_changed",
        "R6.unregistered",
        "R6.banned_stage",
    ] {
        assert!(planted.get(rule).copied().unwrap_or(0) >= 1, "{rule} never planted: {planted:?}");
    }
}
