//! End to end for the emission rules: a machine streaming high smoke opacity (R2), a truck with
//! an ineffective SCR (R4), and a roadside black-smoke camera record (R2, source b) each produce
//! exactly one violation, visible through the query API with measured values.
mod common;

use common::*;
use smogwatch::proto::{
    self, registry_client::RegistryClient, roadside_client::RoadsideClient,
    violations_client::ViolationsClient,
};

const EXCAVATOR: &str = "HJ4EXC00000000501";
const TRUCK: &str = "LZZ5BLSJ3DA000502";
const SEEN_TRUCK: &str = "LZZ5BLSJ3DA000503";

async fn list(ch: &Authed, vin: &str) -> Vec<proto::Violation> {
    ViolationsClient::new(ch.clone())
        .list(proto::ListViolationsRequest { vin: vin.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .violations
}

fn details(v: &proto::Violation) -> serde_json::Value {
    serde_json::from_str(&v.details_json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scr_and_roadside_each_give_exactly_one_violation() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let ch = channel(&s).await;
    let mut reg = RegistryClient::new(ch.clone());
    reg.upsert_vehicle(proto::Vehicle {
        vin: EXCAVATOR.into(),
        kind: proto::VehicleKind::NonRoadMachine as i32,
        machine_type: "excavator".into(),
        fuel: proto::Fuel::Diesel as i32,
        emission_stage: proto::EmissionStage::NonRoadIii as i32,
        rated_power_kw: Some(118.0),
        registration_code: "ZJ-HZ-2024-000501".into(),
        city_code: "330100".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    reg.upsert_vehicle(truck(TRUCK, proto::EmissionStage::ChinaV)).await.unwrap();
    let mut seen = truck(SEEN_TRUCK, proto::EmissionStage::ChinaV);
    seen.plate = "浙A88888".into();
    reg.upsert_vehicle(seen).await.unwrap();

    // Excavator: opacity 3.0 m⁻¹ (Stage III, ≥ 37 kW limit 0.80) for 60 s, then clean for 120 s.
    let machine: Vec<_> = (0..180)
        .map(|s| {
            let mut r = record(EXCAVATOR, T0 + s * 1000, 120.1, 30.2, 40.0);
            r.opacity_k = Some(if s < 60 { 3.0 } else { 0.2 });
            r
        })
        .collect();
    assert!(stream_batches(ch.clone(), batches(machine, 1, false)).await.iter().all(|a| a.accepted == 10));

    // Truck: warm SCR, upstream 400 ppm, downstream 360 ppm (10 % conversion; below the R3 limit).
    let scr: Vec<_> = (0..800)
        .map(|s| {
            let mut r = record(TRUCK, T0 + s * 1000, 120.2, 30.3, 360.0);
            r.engine.as_mut().unwrap().scr_upstream_nox_ppm = Some(400.0);
            r
        })
        .collect();
    assert!(stream_batches(ch.clone(), batches(scr, 1, false)).await.iter().all(|a| a.accepted == 10));

    let smoke = list(&ch, EXCAVATOR).await;
    assert_eq!(smoke.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(), ["R2.opacity"], "{smoke:#?}");
    let m = &details(&smoke[0])["measured"];
    assert_eq!(m["max"], 3.0, "{m}");

    let tamper = list(&ch, TRUCK).await;
    assert_eq!(
        tamper.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(),
        ["R4.scr_ineffective"],
        "{tamper:#?}"
    );
    assert!(details(&tamper[0])["measured"]["samples"].as_u64().unwrap_or(0) > 0);

    // Roadside: a black-smoke camera sees Ringelmann 3 on a registered truck, and on an unknown plate.
    let camera = |plate: &str| proto::RoadsideRecord {
        plate: plate.into(),
        plate_colour: proto::PlateColour::Yellow as i32,
        time_ms: T0 + 3_600_000,
        longitude: 120.15,
        latitude: 30.25,
        ringelmann: Some(3),
        k_per_m: None,
        device_id: "HZ-CAM-07".into(),
        source: proto::RoadsideSourceKind::BlackSmokeCamera as i32,
        evidence_ref: "cam07/2025-11-01/0800.jpg".into(),
    };
    let mut roadside = RoadsideClient::new(ch.clone());
    let request = proto::SubmitRoadsideRequest { records: vec![camera("浙A·88888"), camera("浙Z00000")] };
    let first = roadside.submit(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.results[0].outcome, proto::RoadsideOutcome::Violation as i32);
    assert_eq!(first.results[1].outcome, proto::RoadsideOutcome::Unmatched as i32);
    // Resubmitting the same records creates nothing new.
    let again = roadside.submit(request).await.unwrap().into_inner();
    assert_eq!(again.results[0].violation_id, first.results[0].violation_id);
    let cam = list(&ch, SEEN_TRUCK).await;
    assert_eq!(cam.len(), 1, "{cam:#?}");
    assert_eq!(cam[0].rule, "R2.roadside");
    let unmatched =
        roadside.list_unmatched(proto::ListUnmatchedRoadsideRequest {}).await.unwrap().into_inner();
    assert_eq!(unmatched.records.len(), 1);
    assert_eq!(unmatched.records[0].plate, "浙Z00000");
    s.shutdown().await;
}
