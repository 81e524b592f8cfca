//! Detection quality over many simulated vehicle-hours with every noise model on (see
//! `smogwatch_load_tests::field`). The small run is part of the suite; the large one (≥ 10,000
//! vehicle-hours, the BENCHMARKS.md figures) is run on demand:
//!
//! ```sh
//! FIELD_VEHICLES=2000 FIELD_SECONDS=18000 cargo test -p smogwatch-load-tests --test field -- --ignored --nocapture
//! ```
use smogwatch_load_tests::field::{run, FieldRun};

fn report(f: &FieldRun) -> smogwatch_load_tests::quality::Quality {
    let started = std::time::Instant::now();
    let r = run(f).expect("field run");
    eprintln!(
        "field run: seed {}, {} vehicles × {} s = {:.0} vehicle-hours, {} records, {:.0} s",
        f.seed,
        f.vehicles,
        f.sim_seconds,
        r.vehicle_hours,
        r.records,
        started.elapsed().as_secs_f64()
    );
    eprintln!("| rule | planted | found | missed | false alarms | borderline violation (found) | borderline compliant (flagged) |");
    eprintln!("|---|---|---|---|---|---|---|");
    for (rule, q) in &r.quality.by_rule {
        eprintln!(
            "| {rule} | {} | {} | {} | {} | {} ({}) | {} ({}) |",
            q.planted,
            q.found,
            q.missed,
            q.false_alarms,
            q.borderline_violation,
            q.borderline_violation_found,
            q.borderline_compliant,
            q.borderline_compliant_found
        );
    }
    for fa in r.quality.false_alarm_list.iter().take(20) {
        eprintln!("false alarm: {fa:?}");
    }
    for m in r.quality.misses.iter().take(20) {
        eprintln!("miss: {m:?}");
    }
    r.quality
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn anchor() -> i64 {
    let now = smogwatch::model::now_ms();
    now - 2 * 86_400_000 - (now - 2 * 86_400_000).rem_euclid(60_000)
}

#[test]
fn field_run_small_finds_all_and_nothing_else() {
    let f = FieldRun { seed: 77, vehicles: 60, sim_seconds: 3600, plant_rate: 0.1, anchor_ms: anchor() };
    let q = report(&f);
    assert_eq!(q.false_alarms, 0, "{:#?}", q.false_alarm_list);
    assert_eq!(q.planted, q.found, "{:#?}", q.misses);
}

#[test]
#[ignore = "large: ≥ 10,000 vehicle-hours; run on demand for BENCHMARKS.md"]
fn field_run_large() {
    let f = FieldRun {
        seed: env("FIELD_SEED", 2026).into(),
        vehicles: env("FIELD_VEHICLES", 2000),
        sim_seconds: env("FIELD_SECONDS", 18_000),
        plant_rate: 0.05,
        anchor_ms: anchor(),
    };
    let q = report(&f);
    assert_eq!(q.false_alarms, 0);
    assert_eq!(q.planted, q.found);
}
