//! Acknowledged data survives `kill -9`: the real binary is killed while batches are in flight,
//! and every batch it acknowledged is found in the store afterwards.
mod common;

use common::*;
use smogwatch::model::Vin;
use smogwatch::proto::{
    self, registry_client::RegistryClient, telemetry_ingest_client::TelemetryIngestClient,
};

const VIN: &str = "LZZ5BLSJ3DA000201";

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
            child.kill(); // SIGKILL: no shutdown path runs
            break;
        }
    }
    assert_eq!(acked.len(), 50);

    // The process is gone; open its store directly.
    let store = open_store(dir.path()).await;
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
    child.kill();
}
