//! End to end: a day of traffic through a steel works' gate (real server on 127.0.0.1, tokens on).
//!
//! The park is the sample zone `PARK-ENT-STEEL-001` (imported through the Zones service). Two
//! registered trucks drive into and out of the park polygon (telemetry through gRPC ingest); the
//! gate system's CSV export is parsed like the CLI does and submitted; one rail volume is reported.
//!
//! Hand computation for 2025-11-01 (Beijing):
//!
//! | passage                          | source            | counts as        | trips | tonnes  |
//! |----------------------------------|-------------------|------------------|-------|---------|
//! | V1 (China V) in 08:02            | gate + telemetry  | China V (matched; gate claims 国六 → stage_mismatch, registry wins) | 1 | 30 |
//! | V1 out 08:14                     | gate + telemetry  | China V (matched)| 1     | 5       |
//! | V2 (China VI) in 10:00           | gate only         | China VI         | 1     | 30      |
//! | V3 (electric) in 11:00           | gate only         | new energy       | 1     | 25      |
//! | V4 (China IV) in / out 14:0x     | telemetry only    | other truck      | 2     | unknown |
//! | rail, whole day                  | reported volume   | rail             | 1     | 1000    |
//!
//! trips: total 7; clean = rail 1 + new energy 1 = 2 → 2/7; clean or VI = 2 + 1 = 3 → 3/7.
//! tonnage: total 30 + 5 + 30 + 25 + 1000 = 1090; clean = 1025 → 1025/1090 ≈ 94.04 %;
//! clean or VI = 1055 → 1055/1090 ≈ 96.79 %. Steel target 2025 (clean or China VI, tonnage,
//! 100 %): shortfall, gap 35/1090 ≈ 3.21 points.
mod common;

use common::*;
use smogwatch::model::Role;
use smogwatch::proto::{
    self, clean_transport_client::CleanTransportClient, registry_client::RegistryClient,
    zones_client::ZonesClient,
};

const STEEL: &str = "ENT-STEEL-001";
const OTHER: &str = "ENT-OTHER-002";
const PARK: &str = "PARK-ENT-STEEL-001";
const V1: &str = "LZZ5BLSJ3DA000001";
const V2: &str = "LZZ5BLSJ3DA000002";
const V3: &str = "LZZ5BLSJ3DA000003";
const V4: &str = "LZZ5BLSJ3DA000004";
const H: i64 = 3_600_000;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// A truck drives west along 29.93° N from outside the park (121.83° E, the park's east tip is
/// at 121.8212°) to its middle (121.80°) at ~35 km/h, stays 5 min, drives back and waits
/// outside: fixes every 10 s from `start`. Entry ≈ start + 90 s, exit ≈ start + 820 s.
fn drive_through_park(vin: &str, start: i64) -> Vec<proto::TelemetryRecord> {
    (0..=110)
        .map(|k: i64| {
            let lon = match k {
                0..=30 => 121.83 - 0.001 * k as f64,
                31..=60 => 121.80,
                61..=90 => 121.80 + 0.001 * (k - 60) as f64,
                _ => 121.83,
            };
            record(vin, start + k * 10_000, lon, 29.93, 60.0)
        })
        .collect()
}

fn vehicle(vin: &str, plate: &str, fuel: proto::Fuel, stage: proto::EmissionStage) -> proto::Vehicle {
    proto::Vehicle {
        plate: plate.into(),
        fuel: fuel as i32,
        owner_enterprise_id: "HAULIER-1".into(),
        ..truck(vin, stage)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_at_the_steel_works_gate() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let admin = channel(&s).await;
    let mut clean = CleanTransportClient::new(admin.clone());

    // Park zone, enterprises, targets, gate.
    let imported = ZonesClient::new(admin.clone())
        .import(proto::ImportZonesRequest {
            geojson: smogwatch::zones::SAMPLE_ZONES.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(imported.rejected.is_empty(), "{imported:?}");
    let mut reg = RegistryClient::new(admin.clone());
    for (id, name) in [(STEEL, "Beilun steel works"), (OTHER, "Other works")] {
        reg.upsert_enterprise(proto::Enterprise {
            id: id.into(),
            name: name.into(),
            industry: "steel".into(),
            city_code: "330200".into(),
        })
        .await
        .unwrap();
    }
    use proto::{EmissionStage as St, Fuel as F};
    for v in [
        vehicle(V1, "浙B00001", F::Diesel, St::ChinaV),
        vehicle(V2, "浙B00002", F::Diesel, St::ChinaVi),
        vehicle(V3, "浙B00003", F::Electric, St::Unspecified),
        vehicle(V4, "浙B00004", F::Diesel, St::ChinaIv),
    ] {
        reg.upsert_vehicle(v).await.unwrap();
    }
    let steel_target = proto::CleanTarget {
        year: 2025,
        kind: proto::RatioKind::CleanOrChinaVi as i32,
        basis: proto::RatioBasis::Tonnage as i32,
        fraction: 1.0,
        strict: false,
        scope: proto::CargoScope::AllBulk as i32,
    };
    clean
        .set_targets(proto::SetTargetsRequest { enterprise_id: STEEL.into(), targets: vec![steel_target] })
        .await
        .unwrap();
    let profile = clean
        .upsert_gate(proto::UpsertGateRequest {
            enterprise_id: STEEL.into(),
            gate: Some(proto::Gate {
                id: "G-EAST".into(),
                park_zone_id: PARK.into(),
                name: "east gate".into(),
                position: Some(proto::Position { longitude: 121.8205, latitude: 29.93, valid: true }),
                direction: proto::GateDirection::Both as i32,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.parks.iter().map(|p| p.zone_id.as_str()).collect::<Vec<_>>(), [PARK]);
    assert_eq!(profile.gates.len(), 1);

    // Telemetry: V1 at 08:00, V4 at 14:00, each through the park polygon.
    let mut recs = drive_through_park(V1, T0 + 8 * H);
    recs.extend(drive_through_park(V4, T0 + 14 * H));
    let acks = stream_batches(admin.clone(), batches(recs, 1, false)).await;
    assert!(
        acks.iter().all(|a| a.rejections.is_empty()),
        "{:?}",
        acks.iter().find(|a| !a.rejections.is_empty())
    );

    // The gate system's export (line 6: a gate the enterprise never registered).
    let csv = "gate_id,plate,vin,time,direction,emission_stage,fuel,cargo,tonnage\n\
        G-EAST,浙B00001,,2025-11-01 08:02:00,in,国六,柴油,iron_ore,30\n\
        G-EAST,浙B00001,,2025-11-01 08:14:00,out,国五,diesel,steel,5\n\
        G-EAST,浙B00002,LZZ5BLSJ3DA000002,2025-11-01 10:00:00,in,VI,diesel,coal,30\n\
        G-EAST,浙B00003,,2025-11-01 11:00:00,进,,electric,coal,25\n\
        G-WEST,浙B00009,,2025-11-01 12:00:00,in,VI,diesel,coal,30\n";
    let (rows, csv_errors) = smogwatch::clean::csv::parse(csv).unwrap();
    assert!(csv_errors.is_empty());
    let submit = proto::SubmitGateRecordsRequest {
        enterprise_id: STEEL.into(),
        records: rows.iter().map(smogwatch::grpc::clean_svc::gate_record_to_proto).collect(),
    };
    let resp = clean.submit_gate_records(submit.clone()).await.unwrap().into_inner();
    assert_eq!(resp.stored, 4);
    assert_eq!(resp.errors.len(), 1);
    assert_eq!(resp.errors[0].row, 6, "the file line of the bad row");
    assert!(resp.errors[0].reason.contains("unknown gate"), "{}", resp.errors[0].reason);
    // Idempotent: the same file again stores the same four passages, nothing more.
    assert_eq!(clean.submit_gate_records(submit).await.unwrap().into_inner().stored, 4);

    // Rail: 1 000 t in one train over the day.
    clean
        .report_non_road_volume(proto::NonRoadVolume {
            enterprise_id: STEEL.into(),
            from_ms: T0,
            to_ms: T0 + 24 * H,
            mode: proto::NonRoadMode::Rail as i32,
            tonnage: 1000.0,
            trips: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();

    // Reconciliation: V1's gate records match its telemetry; V2 and V3 are gate-only; V4 is
    // telemetry-only; V1's "国六" claim contradicts the registry (China V).
    let passages = clean
        .list_passages(proto::ListPassagesRequest {
            enterprise_id: STEEL.into(),
            period: "2025-11-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .passages;
    let status_of = |source: &str, vin: &str, dir: proto::PassageDirection| {
        passages
            .iter()
            .filter(|p| p.source == source && p.vin == vin && p.direction == dir as i32)
            .map(|p| p.status)
            .collect::<Vec<_>>()
    };
    use proto::{MatchStatus as M, PassageDirection as D};
    assert_eq!(status_of("gate_system", V1, D::In), [M::Matched as i32], "{passages:#?}");
    assert_eq!(status_of("telemetry", V1, D::In), [M::Matched as i32]);
    assert_eq!(status_of("gate_system", V1, D::Out), [M::Matched as i32]);
    assert_eq!(status_of("telemetry", V1, D::Out), [M::Matched as i32]);
    assert_eq!(status_of("gate_system", V2, D::In), [M::GateOnly as i32], "unmatched gate record");
    assert_eq!(status_of("gate_system", V3, D::In), [M::GateOnly as i32]);
    assert_eq!(status_of("telemetry", V4, D::In), [M::TelemetryOnly as i32]);
    assert_eq!(status_of("telemetry", V4, D::Out), [M::TelemetryOnly as i32]);
    assert_eq!(passages.len(), 8);
    let v1_in =
        passages.iter().find(|p| p.source == "gate_system" && p.vin == V1 && p.direction == D::In as i32);
    let v1_in = v1_in.unwrap();
    assert_eq!(v1_in.flags, ["stage_mismatch"]);
    assert_eq!(v1_in.emission_stage, St::ChinaV as i32, "the registry's stage counts");
    let tele_in =
        passages.iter().find(|p| p.source == "telemetry" && p.vin == V1 && p.direction == D::In as i32);
    let tele_in = tele_in.unwrap();
    assert!((tele_in.time_ms - (T0 + 8 * H)).abs() < 5 * 60_000, "entry near 08:01: {}", tele_in.time_ms);
    assert_eq!(v1_in.matched_with, tele_in.id);

    // The ratio, as computed by hand in the module comment.
    let ratio = |c: &mut CleanTransportClient<Authed>, period: &str, ent: &str| {
        let req =
            proto::GetRatioRequest { enterprise_id: ent.into(), period: period.into(), ..Default::default() };
        let mut c = c.clone();
        async move { c.get_ratio(req).await }
    };
    let r = ratio(&mut clean, "2025-11-01", STEEL).await.unwrap().into_inner();
    assert!(close(r.clean_by_trips, 2.0 / 7.0), "{r:#?}");
    assert!(close(r.clean_or_china_vi_by_trips, 3.0 / 7.0));
    assert!(close(r.clean_by_tonnage, 1025.0 / 1090.0));
    assert!(close(r.clean_or_china_vi_by_tonnage, 1055.0 / 1090.0));
    let total = r.total.unwrap();
    assert_eq!((total.trips, total.tonnage), (7.0, 1090.0));
    assert_eq!((r.telemetry_only_trips, r.tonnage_unknown_trips), (2, 2));
    assert_eq!((r.gate_records, r.matched, r.gate_only, r.stage_mismatches), (4, 2, 2, 1));
    let mode = |m: &str| r.by_mode.iter().find(|x| x.mode == m).and_then(|x| x.amount).unwrap();
    assert_eq!((mode("rail").trips, mode("rail").tonnage), (1.0, 1000.0));
    assert_eq!((mode("new_energy_truck").trips, mode("new_energy_truck").tonnage), (1.0, 25.0));
    assert_eq!((mode("china_vi_truck").trips, mode("china_vi_truck").tonnage), (1.0, 30.0));
    assert_eq!((mode("other_truck").trips, mode("other_truck").tonnage), (4.0, 35.0));
    let stage = |s: &str| r.by_stage.iter().find(|x| x.stage == s).and_then(|x| x.amount).unwrap();
    assert_eq!(stage("china_v").trips, 2.0);
    assert_eq!(stage("china_iv").trips, 2.0);
    let check = &r.targets[0];
    assert_eq!(check.met, Some(false));
    assert!((check.gap.unwrap() - 35.0 / 1090.0).abs() < 1e-9);
    assert_eq!(r.shortfalls.len(), 1);
    assert!(
        r.shortfalls[0].contains("SHORTFALL") && r.shortfalls[0].contains("target 100.0 %"),
        "{:?}",
        r.shortfalls
    );

    // An empty day: undefined, not 0 % and not 100 %; no verdict on the target.
    let empty = ratio(&mut clean, "2025-11-02", STEEL).await.unwrap().into_inner();
    assert_eq!(empty.clean_by_trips, None);
    assert_eq!(empty.clean_or_china_vi_by_tonnage, None);
    assert_eq!(empty.targets[0].met, None);
    // The month holds the same day's traffic.
    let month = ratio(&mut clean, "2025-11", STEEL).await.unwrap().into_inner();
    assert!(close(month.clean_or_china_vi_by_tonnage, 1055.0 / 1090.0));

    // Scoping: the steel works' own token reads its ratio; another enterprise's token gets
    // PERMISSION_DENIED (not an empty answer), for the ratio and the passages alike.
    let mut own = CleanTransportClient::new(channel_as(&s, Role::Enterprise(STEEL.into())).await);
    assert!(ratio(&mut own, "2025-11-01", STEEL).await.is_ok());
    let mut other = CleanTransportClient::new(channel_as(&s, Role::Enterprise(OTHER.into())).await);
    let denied = ratio(&mut other, "2025-11-01", STEEL).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let denied = other
        .list_passages(proto::ListPassagesRequest {
            enterprise_id: STEEL.into(),
            period: "2025-11-01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(ratio(&mut other, "2025-11-01", OTHER).await.is_ok(), "its own ratio is fine");
    let denied =
        own.set_targets(proto::SetTargetsRequest { enterprise_id: STEEL.into(), targets: vec![] }).await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied, "targets are the authority's");

    // The same through the HTTP API, as the enterprise's own web portal reads it.
    let steel_token = token(&s, Role::Enterprise(STEEL.into())).await;
    let other_token = token(&s, Role::Enterprise(OTHER.into())).await;
    let path = format!("/v1/enterprises/{STEEL}/clean-transport/ratio?period=2025-11-01");
    let (status, _, body) = http(s.http_addr, "GET", &path, Some(&steel_token), None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(close(j["ratios"]["clean_by_trips"].as_f64(), 2.0 / 7.0), "{j:#}");
    assert!(close(j["ratios"]["clean_or_china_vi_by_tonnage"].as_f64(), 1055.0 / 1090.0));
    assert_eq!(j["passages"]["gate_records"], 4);
    assert!(j["shortfalls"][0].as_str().is_some_and(|t| t.contains("SHORTFALL")), "{j:#}");
    assert_eq!(http(s.http_addr, "GET", &path, Some(&other_token), None).await.0, 403);
    let bad = format!("/v1/enterprises/{STEEL}/clean-transport/ratio?period=yesterday");
    assert_eq!(http(s.http_addr, "GET", &bad, Some(&steel_token), None).await.0, 400);
    let path = format!("/v1/enterprises/{STEEL}/clean-transport/passages?period=2025-11-01");
    let (status, _, body) = http(s.http_addr, "GET", &path, Some(&steel_token), None).await;
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(all["passages"].as_array().unwrap().len(), passages.len(), "same passages as gRPC");
    let (_, _, body) =
        http(s.http_addr, "GET", &format!("{path}&problems_only=true"), Some(&steel_token), None).await;
    let problems: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let problems = problems["passages"].as_array().unwrap();
    assert!(!problems.is_empty() && problems.len() < passages.len());
    assert!(
        problems.iter().all(|p| p["status"] != "matched" || p["stage_mismatch"] == true),
        "{problems:#?}"
    );
    assert_eq!(http(s.http_addr, "GET", &path, Some(&other_token), None).await.0, 403);

    // Ranking for Ningbo police: the steel works (data) before the other (no data, last).
    let mut police = CleanTransportClient::new(
        channel_as(&s, Role::Police(smogwatch::model::Jurisdiction::city("330200").unwrap())).await,
    );
    let ranked = police
        .rank_enterprises(proto::RankEnterprisesRequest { period: "2025-11-01".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .enterprises;
    let order: Vec<(String, Option<f64>)> =
        ranked.iter().map(|e| (e.enterprise.as_ref().unwrap().id.clone(), e.ratio)).collect();
    assert_eq!(order.len(), 2);
    assert_eq!(order[0].0, STEEL);
    assert!(close(order[0].1, 1055.0 / 1090.0));
    assert_eq!(order[1], (OTHER.to_string(), None));
    let denied = other.rank_enterprises(proto::RankEnterprisesRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    s.shutdown().await;
}
