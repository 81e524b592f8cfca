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

/// One open ingest stream: batches go in one at a time, their acks come back.
struct Link {
    tx: tokio::sync::mpsc::Sender<proto::TelemetryBatch>,
    acks: tonic::Streaming<proto::BatchAck>,
}

async fn open_link(port: u16, token: &str) -> Option<Link> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let acks = TelemetryIngestClient::new(authed(channel, token))
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    Some(Link { tx, acks })
}

/// What became of one batch sent over a link.
enum Sent {
    Acked,
    /// Every record refused as `VEHICLE_ELSEWHERE`: another node holds the vehicle's lease.
    Elsewhere,
    /// The link broke (node died, commit failed): unknown, resend.
    Broken,
}

async fn send(link: &mut Link, batch: &proto::TelemetryBatch) -> Sent {
    if link.tx.send(batch.clone()).await.is_err() {
        return Sent::Broken;
    }
    match link.acks.message().await {
        Ok(Some(ack)) => {
            assert_eq!(ack.sequence, batch.sequence);
            let elsewhere = proto::RejectReason::VehicleElsewhere as i32;
            if !ack.rejections.is_empty() && ack.rejections.iter().all(|r| r.reason == elsewhere) {
                assert_eq!(ack.accepted, 0, "{ack:?}");
                return Sent::Elsewhere;
            }
            assert_eq!(ack.accepted, 10, "{ack:?}");
            Sent::Acked
        }
        _ => Sent::Broken,
    }
}

/// A terminal with one link per entry of `ports`: batch `k` goes over link `k % links` when
/// `alternate` (a double-connected terminal), else over the current link. It sends one batch
/// at a time and waits for its ack, as a terminal keeps unanswered data. A batch the node
/// refused or that got no answer is resent, in order, over the next link; a broken link is
/// reopened. Returns the acknowledged sequences and how often it had to switch links.
async fn terminal(
    batches: Vec<proto::TelemetryBatch>,
    ports: Vec<u16>,
    start: usize,
    alternate: bool,
    token: String,
    acked_count: Arc<AtomicUsize>,
) -> (BTreeSet<u64>, usize) {
    let mut links: Vec<Option<Link>> = ports.iter().map(|_| None).collect();
    let mut acked = BTreeSet::new();
    let mut current = start;
    let mut switches = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    for (k, batch) in batches.iter().enumerate() {
        if alternate {
            current = (start + k) % ports.len();
        }
        loop {
            assert!(tokio::time::Instant::now() < deadline, "terminal gave up at batch {}", batch.sequence);
            if links[current].is_none() {
                links[current] = open_link(ports[current], &token).await;
            }
            let outcome = match links[current].as_mut() {
                Some(link) => send(link, batch).await,
                None => Sent::Broken,
            };
            match outcome {
                Sent::Acked => {
                    acked.insert(batch.sequence);
                    acked_count.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Sent::Elsewhere => {}
                Sent::Broken => links[current] = None,
            }
            switches += 1;
            current = (current + 1) % ports.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    (acked, switches)
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

/// Two smogwatch nodes (real binaries) on the cluster, sharing one keyspace, with `vins`
/// registered through `register_on` and known to both (registry refresh: 1 s in tests).
struct TwoNodes {
    dir: tempfile::TempDir,
    token: String,
    ports: [u16; 2],
    nodes: [Spawned; 2],
}

async fn two_nodes(vins: &[String], register_on: usize) -> (TwoNodes, Authed) {
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path());
    let ports = [free_port(), free_port()];
    let nodes = [spawn(dir.path(), ports[0]), spawn(dir.path(), ports[1])];
    let ch = connect(ports[register_on], &token).await;
    let _ = connect(ports[1 - register_on], &token).await;
    for v in vins {
        RegistryClient::new(ch.clone()).upsert_vehicle(truck(v, proto::EmissionStage::ChinaV)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    (TwoNodes { dir, token, ports, nodes }, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the 3-node Cassandra cluster of .ci/run"]
async fn smogwatch_node_killed_mid_load_its_terminals_move_to_the_other() {
    let vins: Vec<String> = (0..6).map(|i| format!("LZZ5BLSJ3DA3{i:05}")).collect();
    // Registered through node B only: node A learns of them from the shared store.
    let (TwoNodes { dir, token, ports, mut nodes }, ch_b) = two_nodes(&vins, 1).await;
    // Half the terminals start on node A (index 0), half on node B.
    let progress: Vec<Arc<AtomicUsize>> = vins.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut tasks = Vec::new();
    for (i, v) in vins.iter().enumerate() {
        let fut = terminal(day_of_truck(v), ports.to_vec(), i % 2, false, token.clone(), progress[i].clone());
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

/// Records of `vin` counted through node 3 as coordinator at consistency ONE (the coordinator
/// prefers its own replica). With `Consistency::All` instead, every replica answers and the
/// coordinator repairs the ones that differ before it returns (blocking read repair).
async fn count_via_node_3(keyspace: &str, vin: &str, consistency: scylla::statement::Consistency) -> usize {
    use scylla::client::execution_profile::ExecutionProfile;
    use scylla::client::session_builder::SessionBuilder;
    use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
    let target = NodeIdentifier::NodeAddress("127.0.0.3:9042".parse().unwrap());
    let profile = ExecutionProfile::builder()
        .consistency(consistency)
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
        let cql = format!("SELECT time_ms FROM {keyspace}.telemetry WHERE vin = ? AND day = ?");
        let rows = session.query_unpaged(cql, (vin, day)).await.expect("read").into_rows_result().unwrap();
        n += rows.rows_num();
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
            tokio::spawn(terminal(day_of_truck(v), vec![port], 0, false, token.clone(), progress[i].clone()))
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
    // Node 3 comes back and catches up on what it missed: hinted handoff replays the writes
    // that its peers knew it missed. Writes sent in the seconds before its peers noticed it was
    // gone can lack hints (Cassandra hints are best effort); a read at ALL repairs those, as
    // read repair (or `nodetool repair`) does in operation.
    cassandra(&["start-node", "3"]);
    let keyspace = keyspace_for(dir.path());
    use scylla::statement::Consistency;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut behind: Vec<&String> = vins.iter().collect();
    while !behind.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for v in behind {
            if count_via_node_3(&keyspace, v, Consistency::One).await < 1100 {
                still.push(v);
            }
        }
        behind = still;
    }
    for v in behind {
        let n = count_via_node_3(&keyspace, v, Consistency::One).await;
        println!("{v}: node 3 holds {n} of 1100 after hinted handoff; repairing by a read at ALL");
        assert_eq!(count_via_node_3(&keyspace, v, Consistency::All).await, 1100, "{v}: read at ALL");
    }
    for v in &vins {
        assert_eq!(count_via_node_3(&keyspace, v, Consistency::One).await, 1100, "{v}: node 3 caught up");
    }
    node.kill();
}

/// Streams `batches` over one link, pipelined (15 ms apart, acks read as they come); returns the
/// sequences acknowledged and those refused because another node holds the vehicle.
async fn stream_pipelined(
    port: u16,
    token: String,
    batches: Vec<proto::TelemetryBatch>,
) -> (Vec<u64>, Vec<u64>) {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let n = batches.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for b in batches {
            if tx.send(b).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    let mut acks = TelemetryIngestClient::new(authed(channel, &token))
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let elsewhere = proto::RejectReason::VehicleElsewhere as i32;
    while acked.len() + refused.len() < n {
        let ack = acks.message().await.expect("ack").expect("stream open");
        if ack.accepted == 0 && ack.rejections.iter().all(|r| r.reason == elsewhere) {
            refused.push(ack.sequence);
        } else {
            assert!(ack.rejections.is_empty(), "{ack:?}");
            acked.push(ack.sequence);
        }
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the 3-node Cassandra cluster of .ci/run"]
async fn a_double_connected_terminal_is_evaluated_by_one_node_only() {
    let vins: Vec<String> = (0..3).map(|i| format!("LZZ5BLSJ3DA5{i:05}")).collect();
    let (TwoNodes { dir, token, ports, mut nodes }, ch) = two_nodes(&vins, 0).await;
    // The vehicles were last seen by node B a minute earlier (one clean record): node B still
    // remembers their state, and its lease has run out since (5 s in tests).
    for v in &vins {
        let warm_up = batches(vec![record(v, T0 - 60_000, 120.2, 30.3, 60.0)], 0, false);
        let (acked, refused) = stream_pipelined(ports[1], token.clone(), warm_up).await;
        assert_eq!((acked.len(), refused.len()), (1, 0));
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    // Now each terminal is double-connected: its first batch reaches node A, then its odd
    // batches go over the connection to node A and its even ones over the connection to node B,
    // at the same time. Without leases node B evaluates its half from the state it remembers,
    // which never saw the first batch: its R3 episode starts 10 s after node A's, a second
    // violation for one exceedance (observed: `SMOGWATCH_TEST_LEASE_S=0` splits every vehicle's
    // episode), and the nodes overwrite each other's state. With leases node A holds the
    // vehicle from its first batch, node B refuses its half, and the terminal resends that to
    // node A (late data by then: stored and evaluated, never a second episode).
    let mut refused_by_b = Vec::new();
    for v in &vins {
        let mut day = day_of_truck(v);
        let first = day.remove(0);
        let (acked, _) = stream_pipelined(ports[0], token.clone(), vec![first]).await;
        assert_eq!(acked.len(), 1);
        let (odd, even): (Vec<_>, Vec<_>) = day.into_iter().partition(|b| b.sequence % 2 == 1);
        let to_a = tokio::spawn(stream_pipelined(ports[0], token.clone(), odd));
        let to_b = tokio::spawn(stream_pipelined(ports[1], token.clone(), even.clone()));
        let ((acked_a, refused_a), (acked_b, refused_b)) = (to_a.await.unwrap(), to_b.await.unwrap());
        assert!(refused_a.is_empty(), "{v}: node A holds the vehicle");
        refused_by_b.push(refused_b.len());
        let resend: Vec<_> = even.into_iter().filter(|b| refused_b.contains(&b.sequence)).collect();
        let mut resent = 0;
        if !resend.is_empty() {
            let (ok, again) = stream_pipelined(ports[0], token.clone(), resend).await;
            assert!(again.is_empty(), "{v}: the holder refused too");
            resent = ok.len();
        }
        assert_eq!(1 + acked_a.len() + acked_b.len() + resent, 110, "{v}: every batch acknowledged once");
    }
    for v in &vins {
        assert_all_records(dir.path(), v).await;
        assert_one_episode(&ch, v).await;
    }
    // How: node B took none of the vehicles' batches while node A held them.
    assert!(
        refused_by_b.iter().all(|&r| r == 55),
        "batches refused by node B per terminal: {refused_by_b:?}"
    );
    for n in &mut nodes {
        n.kill();
    }
}
