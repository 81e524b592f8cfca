//! Acknowledged data survives `kill -9`: the real binary is killed while batches are in flight,
//! and every batch it acknowledged is found in the store afterwards.
mod common;

use common::*;
use smogwatch::model::Vin;
use smogwatch::proto::{
    self, registry_client::RegistryClient, telemetry_ingest_client::TelemetryIngestClient,
};
use smogwatch::store::{embedded::EmbeddedStore, Store};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const VIN: &str = "LZZ5BLSJ3DA000201";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Creates an admin token with the CLI, as an operator would before the first start.
fn admin_token(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_smogwatch"))
        .args(["token", "create", "--role", "admin", "--label", "kill-9 test"])
        .env("SMOGWATCH_DATA_DIR", dir)
        .output()
        .expect("token create runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn spawn(dir: &std::path::Path, grpc: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smogwatch"))
        .arg("serve")
        .env("SMOGWATCH_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("SMOGWATCH_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("SMOGWATCH_DATA_DIR", dir)
        .env("SMOGWATCH_RETENTION_DAYS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts")
}

async fn connect(grpc: u16, token: &str) -> Authed {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return connect_with(addr, Some(token)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not come up on port {grpc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let token = admin_token(dir.path());
    let mut child = spawn(dir.path(), grpc);
    let ch = connect(grpc, &token).await;
    RegistryClient::new(ch.clone()).upsert_vehicle(truck(VIN, proto::EmissionStage::ChinaVi)).await.unwrap();

    // 2000 batches, far more than get acknowledged before the kill.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        for seq in 0..2000u64 {
            let records =
                (0..10).map(|i| record(VIN, T0 + (seq as i64 * 10 + i) * 1000, 120.2, 30.3, 50.0)).collect();
            if tx.send(proto::TelemetryBatch { sequence: seq, records, reissue: false }).await.is_err() {
                return;
            }
        }
    });
    let mut acks = TelemetryIngestClient::new(ch)
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Ok(Some(ack)) = acks.message().await {
        assert_eq!(ack.accepted, 10);
        acked.push(ack.sequence);
        if acked.len() == 50 {
            child.kill().unwrap(); // SIGKILL: no shutdown path runs
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 50);

    // The process is gone; open its store directly.
    let store = EmbeddedStore::open(dir.path()).expect("store opens after kill -9");
    let vin = Vin::parse(VIN).unwrap();
    let stored = store.records(vin, T0, T0 + 100_000_000, 1_000_000).await.unwrap();
    let times: std::collections::HashSet<i64> = stored.iter().map(|r| r.time_ms).collect();
    for seq in &acked {
        for i in 0..10 {
            let t = T0 + (*seq as i64 * 10 + i) * 1000;
            assert!(times.contains(&t), "acked batch {seq} lost record at {t}");
        }
    }
    drop(store);

    // And the service starts again on that store.
    let mut child = spawn(dir.path(), grpc);
    let ch = connect(grpc, &token).await;
    let v = RegistryClient::new(ch).get_vehicle(proto::GetVehicleRequest { vin: VIN.into() }).await.unwrap();
    assert_eq!(v.into_inner().vin, VIN);
    child.kill().unwrap();
    child.wait().unwrap();
}
