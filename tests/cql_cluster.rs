//! Several smogwatch nodes on a 3-node Cassandra cluster (RF 3, LOCAL_QUORUM): node failures on
//! both tiers lose nothing that was acknowledged and split no episode.
//!
//! Needs the cluster that `.ci/run` starts (`deploy/cassandra/cassandra.sh start 3`, with
//! `SMOGWATCH_CASSANDRA_DIR` set so that the tests can kill and restart its nodes) and
//! `SMOGWATCH_TEST_STORE=cql SMOGWATCH_TEST_RF=3 SMOGWATCH_TEST_CQL_URIS=127.0.0.1:9042,...`.
//! The tests are `#[ignore]`d so that a plain `cargo test` lists them as not run instead of
//! passing them without a cluster; `.ci/run` runs them with `--ignored`.
mod common;

use common::*;
use smogwatch::model::Vin;
use smogwatch::proto::{
    self, registry_client::RegistryClient, telemetry_ingest_client::TelemetryIngestClient,
    violations_client::ViolationsClient,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// 1,100 s of one truck: NOx 800 ppm for the first 400 s (one R3 episode: 300 s above 500 ppm
/// within 600 s), then clean so the episode closes. 110 batches of 10.
fn day_of_truck(vin: &str) -> Vec<proto::TelemetryBatch> {
    let recs: Vec<_> = (0..1100)
        .map(|s| record(vin, T0 + s * 1000, 120.2, 30.3, if s < 400 { 800.0 } else { 60.0 }))
        .collect();
    batches(recs, 1, false)
}

fn require_cluster() {
    assert!(
        cql_uris().is_some_and(|u| u.split(',').count() >= 3) && test_rf() == 3,
        "run with SMOGWATCH_TEST_STORE=cql SMOGWATCH_TEST_RF=3 SMOGWATCH_TEST_CQL_URIS=<three nodes> (see .ci/run)"
    );
}

fn cassandra(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cassandra/cassandra.sh");
    let out = std::process::Command::new(script).args(args).output().expect("cassandra.sh runs");
    assert!(out.status.success(), "cassandra.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A terminal that streams `batches` to `ports[start]` at a steady pace and, whenever its stream
/// breaks (the node died, a commit failed), reconnects to the next node and resends everything
/// after its last acknowledgement, as a real terminal resends unanswered data. Returns the
/// sequences acknowledged and how many times it had to reconnect.
async fn terminal(
    batches: Vec<proto::TelemetryBatch>,
    ports: Vec<u16>,
    start: usize,
    token: String,
    acked_count: Arc<AtomicUsize>,
) -> (BTreeSet<u64>, usize) {
    let mut acked = BTreeSet::new();
    let mut node = start;
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while acked.len() < batches.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "terminal gave up: {} of {} acked",
            acked.len(),
            batches.len()
        );
        let pending: Vec<proto::TelemetryBatch> =
            batches.iter().filter(|b| !acked.contains(&b.sequence)).cloned().collect();
        let addr = format!("http://127.0.0.1:{}", ports[node]);
        let channel = tonic::transport::Channel::from_shared(addr)
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        if let Ok(channel) = channel {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            tokio::spawn(async move {
                for b in pending {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            });
            let stream = TelemetryIngestClient::new(authed(channel, &token))
                .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            if let Ok(resp) = stream {
                let mut acks = resp.into_inner();
                // Until the stream ends or breaks (the node died, a commit failed).
                while let Ok(Some(ack)) = acks.message().await {
                    assert_eq!(ack.accepted, 10, "{ack:?}");
                    if acked.insert(ack.sequence) {
                        acked_count.fetch_add(1, Ordering::SeqCst);
                    }
                    if acked.len() == batches.len() {
                        break;
                    }
                }
            }
        }
        if acked.len() < batches.len() {
            reconnects += 1;
            node = (node + 1) % ports.len();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    (acked, reconnects)
}

/// Every acknowledged record of `vin` is in the store, and nothing else of it is missing.
async fn assert_all_records(dir: &std::path::Path, vin: &str) {
    let store = open_store(dir).await;
    let stored = store.records(Vin::parse(vin).unwrap(), T0, T0 + 2_000_000, 10_000).await.unwrap();
    let times: BTreeSet<i64> = stored.iter().map(|r| r.time_ms).collect();
    assert_eq!(times.len(), 1100, "{vin}: every record stored once");
    assert_eq!(stored.len(), 1100, "{vin}: no record stored twice");
}

/// Exactly one R3 violation for the vehicle: the planted episode, started at T0, closed.
async fn assert_one_episode(ch: &Authed, vin: &str) {
    let list = ViolationsClient::new(ch.clone())
        .list(proto::ListViolationsRequest { vin: vin.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .violations;
    let summary: Vec<_> = list.iter().map(|v| (v.rule.clone(), v.started_ms, v.status, v.late)).collect();
    assert_eq!(
        summary,
        [("R3".to_string(), T0, proto::ViolationStatus::Closed as i32, false)],
        "{vin}: one live episode, neither lost, split nor duplicated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the 3-node Cassandra cluster of .ci/run"]
async fn smogwatch_node_killed_mid_load_its_terminals_move_to_the_other() {
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path());
    let ports = [free_port(), free_port()];
    let mut nodes = [spawn(dir.path(), ports[0]), spawn(dir.path(), ports[1])];
    let ch_b = connect(ports[1], &token).await;
    let _ = connect(ports[0], &token).await;
    let vins: Vec<String> = (0..6).map(|i| format!("LZZ5BLSJ3DA3{i:05}")).collect();
    for v in &vins {
        RegistryClient::new(ch_b.clone())
            .upsert_vehicle(truck(v, proto::EmissionStage::ChinaV))
            .await
            .unwrap();
    }
    // Registered through node B only: node A learns of them from the shared store
    // (`store.scylla.registry_refresh_s`, 1 s in tests).
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Half the terminals start on node A (index 0), half on node B.
    let progress: Vec<Arc<AtomicUsize>> = vins.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut tasks = Vec::new();
    for (i, v) in vins.iter().enumerate() {
        let fut = terminal(day_of_truck(v), ports.to_vec(), i % 2, token.clone(), progress[i].clone());
        tasks.push(tokio::spawn(fut));
    }
    // Kill node A while its terminals are inside their NOx episode (35 of 110 batches = 350 s:
    // the R3 episode is open on node A and must continue on node B).
    let started = tokio::time::Instant::now();
    while progress[0].load(Ordering::SeqCst) < 35 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[0].kill();
    let before_kill = progress[0].load(Ordering::SeqCst);
    assert!(before_kill < 110, "the kill came after the whole stream");
    let mut moved = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let (acked, reconnects) = t.await.unwrap();
        assert_eq!(acked.len(), 110, "{}: every batch acknowledged in the end", vins[i]);
        if i % 2 == 0 {
            moved += usize::from(reconnects > 0);
        }
    }
    assert!(moved >= 1, "node A's terminals had to move to node B");
    for v in &vins {
        assert_all_records(dir.path(), v).await;
        assert_one_episode(&ch_b, v).await;
    }
    nodes[1].kill();
}

/// Records of `vin` that node 3 holds on its own (consistency ONE, node 3 as the only target):
/// what it caught up on after being down.
async fn records_on_node_3(keyspace: &str, vin: &str) -> usize {
    use scylla::client::execution_profile::ExecutionProfile;
    use scylla::client::session_builder::SessionBuilder;
    use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
    use scylla::statement::Consistency;
    let target = NodeIdentifier::NodeAddress("127.0.0.3:9042".parse().unwrap());
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::One)
        .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(target, None))
        .build();
    let session = SessionBuilder::new()
        .known_node("127.0.0.3:9042")
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .expect("session to node 3");
    let days: BTreeSet<i32> =
        (0..1100).map(|s| (T0 + s * 1000 + 8 * 3_600_000).div_euclid(86_400_000) as i32).collect();
    let mut n = 0usize;
    for day in days {
        let cql = format!("SELECT count(*) FROM {keyspace}.telemetry WHERE vin = ? AND day = ?");
        let rows = session.query_unpaged(cql, (vin, day)).await.expect("count").into_rows_result().unwrap();
        let (c,): (i64,) = rows.single_row().unwrap();
        n += c as usize;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the 3-node Cassandra cluster of .ci/run"]
async fn cassandra_node_lost_mid_load_ingest_goes_on_at_quorum_and_it_catches_up() {
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path());
    let port = free_port();
    let mut node = spawn(dir.path(), port);
    let ch = connect(port, &token).await;
    let vins: Vec<String> = (0..4).map(|i| format!("LZZ5BLSJ3DA4{i:05}")).collect();
    for v in &vins {
        RegistryClient::new(ch.clone()).upsert_vehicle(truck(v, proto::EmissionStage::ChinaV)).await.unwrap();
    }
    let progress: Vec<Arc<AtomicUsize>> = vins.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let tasks: Vec<_> = vins
        .iter()
        .enumerate()
        .map(|(i, v)| {
            tokio::spawn(terminal(day_of_truck(v), vec![port], 0, token.clone(), progress[i].clone()))
        })
        .collect();
    let started = tokio::time::Instant::now();
    while progress[0].load(Ordering::SeqCst) < 30 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cassandra(&["kill", "3"]);
    let at_kill: usize = progress.iter().map(|p| p.load(Ordering::SeqCst)).sum();
    let mut reconnects = BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (acked, r) = t.await.unwrap();
        assert_eq!(acked.len(), 110, "{}: ingest went on with one replica down", vins[i]);
        reconnects.insert(vins[i].clone(), r);
    }
    let total: usize = progress.iter().map(|p| p.load(Ordering::SeqCst)).sum();
    assert!(total > at_kill, "batches were acknowledged after the node died");
    println!("acks before the kill {at_kill}, after {}; reconnects {reconnects:?}", total - at_kill);
    for v in &vins {
        assert_all_records(dir.path(), v).await;
        assert_one_episode(&ch, v).await;
    }
    // Node 3 comes back and catches up (hinted handoff) on what it missed.
    cassandra(&["start-node", "3"]);
    let keyspace = keyspace_for(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    for v in &vins {
        loop {
            let n = records_on_node_3(&keyspace, v).await;
            if n == 1100 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{v}: node 3 holds {n} of 1100 records after restart"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    node.kill();
}
