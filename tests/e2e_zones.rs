//! End to end for the China III restriction zones (R1): zones imported through the API while the
//! server runs, a China III diesel truck driven through Hangzhou's district zone over gRPC,
//! exactly one violation with evidence; a replay after a restart creates no second one.
mod common;

use common::*;
use smogwatch::proto::{
    self, registry_client::RegistryClient, violations_client::ViolationsClient, zones_client::ZonesClient,
};

const CHINA_III: &str = "LZZ5BLSJ3DA000401";
const CHINA_VI: &str = "LZZ5BLSJ3DA000402";

/// 1 Hz drive due east through Hangzhou (lat 30.30) at about 50 km/h, clean engine.
fn drive(vin: &str) -> Vec<proto::TelemetryRecord> {
    (0..2400).map(|s| record(vin, T0 + s * 1000, 119.95 + s as f64 * 0.000145, 30.30, 40.0)).collect()
}

async fn r1_violations(ch: &Authed, vin: &str) -> Vec<proto::Violation> {
    ViolationsClient::new(ch.clone())
        .list(proto::ListViolationsRequest { vin: vin.into(), rule: "R1".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .violations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn china_iii_truck_through_a_zone_gives_one_violation_even_after_replay_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = channel(&s).await;

    // A bad file is refused with the feature id and the reason; nothing is imported.
    let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"BAD-1","properties":{},
        "geometry":{"type":"Polygon","coordinates":[[[120,30],[121,30],[121,31]]]}}]}"#;
    let err = ZonesClient::new(ch.clone())
        .import(proto::ImportZonesRequest { geojson: bad.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("BAD-1"), "{}", err.message());

    let imported = ZonesClient::new(ch.clone())
        .import(proto::ImportZonesRequest {
            geojson: smogwatch::zones::SAMPLE_ZONES.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(imported.imported >= 14);
    let listed = ZonesClient::new(ch.clone()).list(proto::ListZonesRequest {}).await.unwrap().into_inner();
    assert!(listed.zones.iter().any(|z| z.id == "R1-330100-DISTRICTS" && z.effective_from == "2024-12-31"));

    let mut reg = RegistryClient::new(ch.clone());
    reg.upsert_vehicle(truck(CHINA_III, proto::EmissionStage::ChinaIii)).await.unwrap();
    reg.upsert_vehicle(truck(CHINA_VI, proto::EmissionStage::ChinaVi)).await.unwrap();
    for vin in [CHINA_III, CHINA_VI] {
        let acks = stream_batches(ch.clone(), batches(drive(vin), 1, false)).await;
        assert!(acks.iter().all(|a| a.accepted == 10 && a.rejections.is_empty()));
    }

    let found = r1_violations(&ch, CHINA_III).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let v = &found[0];
    assert_eq!(v.zone_id, "R1-330100-DISTRICTS");
    assert_eq!(v.city_code, "330100");
    assert_eq!(v.status, proto::ViolationStatus::Closed as i32);
    assert!(!v.late);
    let details: serde_json::Value = serde_json::from_str(&v.details_json).unwrap();
    let evidence = &details["evidence"];
    assert!(evidence.to_string().contains("entry"), "{evidence}");
    assert!(r1_violations(&ch, CHINA_VI).await.is_empty(), "a China VI truck never violates R1");
    let id = v.id.clone();

    // Restart, replay the same stream: the same single violation.
    s.shutdown().await;
    let s = server(dir.path()).await;
    let ch = channel(&s).await;
    let acks = stream_batches(ch.clone(), batches(drive(CHINA_III), 1, false)).await;
    assert!(acks.iter().all(|a| a.duplicates == 10));
    let again = r1_violations(&ch, CHINA_III).await;
    assert_eq!(again.iter().map(|v| v.id.clone()).collect::<Vec<_>>(), vec![id]);
    // Zones imported through the API survived the restart.
    let listed = ZonesClient::new(ch).list(proto::ListZonesRequest {}).await.unwrap().into_inner();
    assert!(listed.zones.len() >= 14);
    s.shutdown().await;
}
