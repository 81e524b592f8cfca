//! End to end over gRPC: register, stream, ack = durable, restart, find everything again.
mod common;

use common::*;
use smogwatch::model::Vin;
use smogwatch::proto::{self, registry_client::RegistryClient, violations_client::ViolationsClient};

const VIN: &str = "LZZ5BLSJ3DA000101";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ack_restart_and_find_records_and_violation_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = channel(&s).await;
    RegistryClient::new(ch.clone()).upsert_vehicle(truck(VIN, proto::EmissionStage::ChinaV)).await.unwrap();

    // 400 s above 500 ppm (R3 needs 300 s within 600 s), then 700 s clean so the episode closes.
    let recs: Vec<_> = (0..1100)
        .map(|s| record(VIN, T0 + s * 1000, 120.2, 30.3, if s < 400 { 800.0 } else { 60.0 }))
        .collect();
    let acks = stream_batches(ch.clone(), batches(recs, 1, false)).await;
    assert_eq!(acks.len(), 110);
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a.sequence, i as u64 + 1, "acks come in order with the batch sequence");
        assert_eq!(a.accepted, 10);
        assert!(a.rejections.is_empty());
    }
    let list = ViolationsClient::new(ch.clone())
        .list(proto::ListViolationsRequest { vin: VIN.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.violations.len(), 1, "{list:#?}");
    let v = &list.violations[0];
    assert_eq!(v.rule, "R3");
    assert_eq!(v.status, proto::ViolationStatus::Closed as i32);
    assert_eq!(v.started_ms, T0);
    assert!(!v.late);
    let details: serde_json::Value = serde_json::from_str(&v.details_json).unwrap();
    assert_eq!(details["measured"]["max"], 800.0);
    assert_eq!(details["thresholds"]["limit_ppm"], 500.0);
    let id = v.id.clone();

    s.shutdown().await;
    let s = server(dir.path()).await;
    let ch = channel(&s).await;
    let vin = Vin::parse(VIN).unwrap();
    let stored = s.store.records(vin, T0, T0 + 2_000_000, 10_000).await.unwrap();
    assert_eq!(stored.len(), 1100, "every acknowledged record survives a restart");
    let got = ViolationsClient::new(ch.clone())
        .get(proto::GetViolationRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.rule, "R3");
    // The registry survives too.
    let veh = RegistryClient::new(ch.clone())
        .get_vehicle(proto::GetVehicleRequest { vin: VIN.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(veh.emission_stage, proto::EmissionStage::ChinaV as i32);

    // Replaying the same stream after the restart creates nothing new.
    let recs: Vec<_> = (0..1100)
        .map(|s| record(VIN, T0 + s * 1000, 120.2, 30.3, if s < 400 { 800.0 } else { 60.0 }))
        .collect();
    let acks = stream_batches(ch.clone(), batches(recs, 1, false)).await;
    assert!(acks.iter().all(|a| a.accepted == 10 && a.duplicates == 10), "{:?}", acks.first());
    let list = ViolationsClient::new(ch)
        .list(proto::ListViolationsRequest { vin: VIN.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.violations.len(), 1);
    assert_eq!(s.store.records(vin, T0, T0 + 2_000_000, 10_000).await.unwrap().len(), 1100);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_rejects_bad_records_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = channel(&s).await;
    RegistryClient::new(ch.clone()).upsert_vehicle(truck(VIN, proto::EmissionStage::ChinaVi)).await.unwrap();

    let mut bad_pos = record(VIN, T0 + 3000, 190.0, 30.0, 10.0);
    bad_pos.position.as_mut().unwrap().longitude = 190.0;
    let mut bad_value = record(VIN, T0 + 5000, 120.0, 30.0, 10.0);
    bad_value.engine.as_mut().unwrap().engine_speed_rpm = Some(99_999.0);
    let batch = proto::TelemetryBatch {
        sequence: 7,
        reissue: false,
        records: vec![
            record(VIN, T0, 120.0, 30.0, 10.0),
            record("LZZ5BLSJ3DA00010I", T0 + 1000, 120.0, 30.0, 10.0), // I is not a VIN letter
            record("LZZ5BLSJ3DA999999", T0 + 2000, 120.0, 30.0, 10.0), // not registered
            bad_pos,
            record(VIN, 0, 120.0, 30.0, 10.0), // clock reset to 1970
            bad_value,
            record(VIN, T0 + 6000, 120.0, 30.0, 10.0),
        ],
    };
    let acks = stream_batches(ch, vec![batch]).await;
    let ack = &acks[0];
    assert_eq!(ack.sequence, 7);
    assert_eq!(ack.accepted, 2);
    let reasons: Vec<(u32, i32)> = ack.rejections.iter().map(|r| (r.index, r.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (1, proto::RejectReason::InvalidVin as i32),
            (2, proto::RejectReason::UnknownVin as i32),
            (3, proto::RejectReason::InvalidPosition as i32),
            (4, proto::RejectReason::InvalidTime as i32),
            (5, proto::RejectReason::InvalidValue as i32),
        ]
    );
    assert!(ack.rejections.iter().all(|r| !r.detail.is_empty()));
    let stored = s.store.records(Vin::parse(VIN).unwrap(), 0, T0 + 10_000, 100).await.unwrap();
    assert_eq!(stored.iter().map(|r| r.time_ms).collect::<Vec<_>>(), vec![T0, T0 + 6000]);
    s.shutdown().await;
}
