//! The smoke scenario against a real server started in-process on 127.0.0.1: every planted R3
//! episode (live, and hidden in offline gaps that are reissued later) is found, nothing else is.
use smogwatch_load_tests::scenario::{run, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_finds_every_planted_r3_and_nothing_else() {
    let sc = Scenario { quiet: true, ..Scenario::smoke() };
    let report = run(sc).await.expect("smoke scenario runs");
    let t = &report.throughput;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert!(t.rejections.is_empty(), "{:?}", t.rejections);
    assert_eq!(t.messages_acked, t.messages_sent);
    assert_eq!(t.records_acked, t.records_sent);

    let q = &report.quality;
    let r3 = &q.by_rule["R3"];
    assert!(r3.planted >= 3, "the smoke fleet must carry several R3 plants: {r3:?}");
    assert_eq!(r3.not_due, 0, "every vehicle runs its full simulated time");
    assert_eq!(r3.recall, Some(1.0), "misses: {:#?}", q.misses);
    assert_eq!(r3.late_flag_mismatches, 0, "reissued episodes must be found as late violations");
    assert_eq!(q.false_alarms, 0, "false alarms: {:#?}", q.false_alarm_list);
    assert!(report.latency.samples > 0);
}

/// The same fleet over the HJ 1239 gateway (login, 0x02/0x03 frames, logout): same truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_over_hj1239_finds_every_planted_r3() {
    use smogwatch_load_tests::scenario::Transport;
    let sc = Scenario { quiet: true, vehicles: 20, transport: Transport::Hj1239, ..Scenario::smoke() };
    let report = run(sc).await.expect("smoke scenario over HJ 1239 runs");
    assert!(report.throughput.errors.is_empty(), "{:?}", report.throughput.errors);
    assert_eq!(report.throughput.records_acked, report.throughput.records_sent);
    let q = &report.quality;
    assert!(q.by_rule["R3"].planted >= 2, "{:?}", q.by_rule["R3"]);
    assert_eq!(q.recall, Some(1.0), "misses: {:#?}", q.misses);
    assert_eq!(q.false_alarms, 0, "false alarms: {:#?}", q.false_alarm_list);
}

/// Every planted rule at once (R1 zone entries against the sample zones, R2 smoke, R4 tampering,
/// R6 unregistered machines, offline gaps with reissue): all found, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_with_every_plant_finds_all_and_nothing_else() {
    use smogwatch_load_tests::plant::PlantFlags;
    let sc = Scenario { quiet: true, vehicles: 400, flags: PlantFlags::all(), ..Scenario::smoke() };
    let report = run(sc).await.expect("smoke scenario with every plant runs");
    assert!(report.throughput.errors.is_empty(), "{:?}", report.throughput.errors);
    let q = &report.quality;
    for rule in ["R1", "R2.opacity", "R4.scr_ineffective", "R4.reagent_empty", "R6.unregistered"] {
        assert!(q.by_rule[rule].planted >= 1, "{rule} must be planted: {:?}", q.by_rule[rule]);
    }
    assert_eq!(q.recall, Some(1.0), "misses: {:#?}", q.misses);
    assert_eq!(q.false_alarms, 0, "false alarms: {:#?}", q.false_alarm_list);
}
