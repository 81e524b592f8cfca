//! Issue 7 end to end, through real clients on 127.0.0.1: violation queries and paging, scopes
//! (police jurisdiction, enterprise, terminal), authentication, review and audit, exports, live
//! alerts resumed from a cursor, and the OpenAPI document.
mod common;

use common::*;
use smogwatch::model::{Jurisdiction, Role, Vin, Violation, ViolationId, ViolationStatus};
use smogwatch::proto::{self, registry_client::RegistryClient, violations_client::ViolationsClient};
use smogwatch::server::RunningServer;
use smogwatch::store::{CommitBatch, ViolationWrite};
use std::time::Duration;
use tonic::Code;

/// Hangzhou truck of enterprise ENT-HZ, Ningbo truck of enterprise ENT-NB.
const HZ: &str = "LZZ5BLSJ3DA000301";
const NB: &str = "LZZ5BLSJ3DA000302";

fn violation(vin: &str, rule: &str, started_ms: i64, city: &str, county: Option<&str>) -> Violation {
    let vin = Vin::parse(vin).unwrap();
    Violation {
        id: ViolationId::derive(&vin, rule, "", started_ms),
        rule: rule.into(),
        vin,
        plate: format!("浙A{}", &vin.as_str()[12..]),
        status: ViolationStatus::Closed,
        late: false,
        started_ms,
        ended_ms: Some(started_ms + 60_000),
        position: None,
        zone_id: None,
        city_code: Some(city.into()),
        county_code: county.map(Into::into),
        summary: format!("{rule} test violation"),
        thresholds: serde_json::json!({"limit_ppm": 500.0}),
        measured: None,
        evidence: serde_json::json!({}),
    }
}

async fn commit(s: &RunningServer, vs: Vec<Violation>) {
    let violations = vs.into_iter().map(ViolationWrite::Upsert).collect();
    s.store.commit(CommitBatch { violations, ..Default::default() }).await.expect("commit");
}

async fn register(s: &RunningServer) {
    let mut reg = RegistryClient::new(channel(s).await);
    let mut hz = truck(HZ, proto::EmissionStage::ChinaV);
    hz.owner_enterprise_id = "ENT-HZ".into();
    let mut nb = truck(NB, proto::EmissionStage::ChinaV);
    nb.owner_enterprise_id = "ENT-NB".into();
    nb.city_code = "330200".into();
    reg.upsert_vehicle(hz).await.unwrap();
    reg.upsert_vehicle(nb).await.unwrap();
}

/// 12 violations: Hangzhou (6, two in Xihu county 330106, one late, one open R4), Ningbo (6).
fn fixture() -> Vec<Violation> {
    let mut vs = Vec::new();
    for i in 0..6 {
        let county = (i < 2).then_some("330106");
        let mut v = violation(
            HZ,
            if i % 2 == 0 { "R3" } else { "R4.reagent_empty" },
            T0 + i * 1000,
            "330100",
            county,
        );
        v.late = i == 3;
        if i == 5 {
            v.status = ViolationStatus::Open;
            v.zone_id = Some("Z-PORT".into());
        }
        vs.push(v);
        vs.push(violation(NB, "R3", T0 + i * 1000 + 500, "330200", None));
    }
    vs
}

async fn list_all(
    client: &mut ViolationsClient<Authed>,
    mut req: proto::ListViolationsRequest,
) -> Result<Vec<proto::Violation>, tonic::Status> {
    let mut out = Vec::new();
    loop {
        let page = client.list(req.clone()).await?.into_inner();
        out.extend(page.violations);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        req.page_token = page.next_page_token;
    }
}

fn starts(vs: &[proto::Violation]) -> Vec<i64> {
    vs.iter().map(|v| v.started_ms - T0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_pages_return_exactly_the_expected_violations() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s).await;
    commit(&s, fixture()).await;
    let mut c = ViolationsClient::new(channel(&s).await);
    let req = |f: fn(&mut proto::ListViolationsRequest)| {
        let mut r = proto::ListViolationsRequest { page_size: 2, ..Default::default() };
        f(&mut r);
        r
    };
    let all = list_all(&mut c, req(|_| {})).await.unwrap();
    assert_eq!(starts(&all), vec![5500, 5000, 4500, 4000, 3500, 3000, 2500, 2000, 1500, 1000, 500, 0]);
    let ids: std::collections::HashSet<_> = all.iter().map(|v| v.id.clone()).collect();
    assert_eq!(ids.len(), 12, "no violation twice across pages");

    let cases: Vec<(proto::ListViolationsRequest, Vec<i64>)> = vec![
        (req(|r| r.city_code = "330200".into()), vec![5500, 4500, 3500, 2500, 1500, 500]),
        (req(|r| r.county_code = "330106".into()), vec![1000, 0]),
        (req(|r| r.rule = "R4".into()), vec![5000, 3000, 1000]),
        (req(|r| r.vin = HZ.into()), vec![5000, 4000, 3000, 2000, 1000, 0]),
        (req(|r| r.plate = "浙a·00302".into()), vec![5500, 4500, 3500, 2500, 1500, 500]),
        (req(|r| r.enterprise_id = "ENT-HZ".into()), vec![5000, 4000, 3000, 2000, 1000, 0]),
        (req(|r| r.late = proto::LateFilter::Late as i32), vec![3000]),
        (req(|r| r.status = proto::ViolationStatus::Open as i32), vec![5000]),
        (req(|r| r.zone_id = "Z-PORT".into()), vec![5000]),
        (
            req(|r| {
                r.from_ms = T0 + 1000;
                r.to_ms = T0 + 3000;
            }),
            vec![2500, 2000, 1500, 1000],
        ),
        (
            req(|r| {
                r.city_code = "330100".into();
                r.late = proto::LateFilter::Live as i32;
                r.rule = "R3".into();
            }),
            vec![4000, 2000, 0],
        ),
    ];
    for (r, want) in cases {
        assert_eq!(starts(&list_all(&mut c, r.clone()).await.unwrap()), want, "{r:?}");
    }

    // Review: confirmed / dismissed / unreviewed filters.
    let first = &all[0];
    let reviewed = c
        .review(proto::ReviewViolationRequest {
            id: first.id.clone(),
            decision: proto::ReviewDecision::Dismissed as i32,
            reason: "sensor fault confirmed by workshop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reviewed.review.unwrap().decision, proto::ReviewDecision::Dismissed as i32);
    let dismissed = list_all(&mut c, req(|r| r.review = proto::ReviewState::Dismissed as i32)).await.unwrap();
    assert_eq!(starts(&dismissed), vec![5500]);
    let open = list_all(&mut c, req(|r| r.review = proto::ReviewState::Unreviewed as i32)).await.unwrap();
    assert_eq!(open.len(), 11);
    let bad = c
        .review(proto::ReviewViolationRequest { id: first.id.clone(), decision: 1, reason: " ".into() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "a review needs a reason");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_see_their_jurisdiction_only_and_every_review_and_export_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s).await;
    commit(&s, fixture()).await;
    let hz_police = Role::Police(Jurisdiction::city("330100").unwrap());
    let mut police = ViolationsClient::new(channel_as(&s, hz_police).await);

    let seen = list_all(&mut police, proto::ListViolationsRequest::default()).await.unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|v| v.city_code == "330100" && v.vin == HZ), "{seen:?}");
    // Naming Ningbo is refused, not answered with an empty list.
    let e = police
        .list(proto::ListViolationsRequest { city_code: "330200".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = police
        .list(proto::ListViolationsRequest { county_code: "330203".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Asking for the Ningbo vehicle in Hangzhou is legitimate and finds nothing.
    let nb_here =
        list_all(&mut police, proto::ListViolationsRequest { vin: NB.into(), ..Default::default() })
            .await
            .unwrap();
    assert!(nb_here.is_empty());

    let ningbo = violation(NB, "R3", T0 + 500, "330200", None).id.0;
    let hangzhou = violation(HZ, "R3", T0, "330100", Some("330106")).id.0;
    let e = police.get(proto::GetViolationRequest { id: ningbo.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = police.get_evidence(proto::GetViolationRequest { id: ningbo.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        police.get(proto::GetViolationRequest { id: hangzhou.clone() }).await.unwrap().into_inner().vin,
        HZ
    );
    let e = police
        .review(proto::ReviewViolationRequest { id: ningbo, decision: 1, reason: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    police
        .review(proto::ReviewViolationRequest {
            id: hangzhou.clone(),
            decision: proto::ReviewDecision::Confirmed as i32,
            reason: "checked the track".into(),
        })
        .await
        .unwrap();

    // A county officer (Xihu) sees the two Xihu violations only.
    let xihu = Role::Police(Jurisdiction::county("330106").unwrap());
    let mut county = ViolationsClient::new(channel_as(&s, xihu).await);
    assert_eq!(list_all(&mut county, Default::default()).await.unwrap().len(), 2);

    // Export over gRPC: the police token exports Hangzhou rows only.
    let mut chunks = police
        .export(proto::ExportViolationsRequest { filter: None, format: proto::ExportFormat::Csv as i32 })
        .await
        .unwrap()
        .into_inner();
    let mut csv = Vec::new();
    while let Some(c) = chunks.message().await.unwrap() {
        csv.extend(c.data);
    }
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "{csv}");
    assert!(rows.iter().all(|r| r.contains(HZ) && !r.contains(NB)));
    assert!(rows.iter().any(|r| r.contains("confirmed") && r.contains("checked the track")));
    let e = police
        .export(proto::ExportViolationsRequest {
            filter: Some(proto::ViolationFilter { city_code: "330200".into(), ..Default::default() }),
            format: proto::ExportFormat::Geojson as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The audit log: the review and the export, by the police token; admins only.
    let mut admin = proto::admin_client::AdminClient::new(channel(&s).await);
    let log = admin.list_audit(proto::ListAuditRequest::default()).await.unwrap().into_inner().entries;
    let actions: Vec<&str> =
        log.iter().map(|e| e.action.as_str()).filter(|a| !a.starts_with("token")).collect();
    assert_eq!(actions, vec!["export", "review"]);
    let review = log.iter().find(|e| e.action == "review").unwrap();
    assert_eq!(review.target, hangzhou);
    assert!(review.detail_json.contains("checked the track"));
    assert!(review.actor.contains("e2e"));
    let police_admin = proto::admin_client::AdminClient::new(
        channel_as(&s, Role::Police(Jurisdiction::city("330100").unwrap())).await,
    )
    .list_audit(proto::ListAuditRequest::default())
    .await
    .unwrap_err();
    assert_eq!(police_admin.code(), Code::PermissionDenied);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprises_and_terminals_stay_in_their_lane() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s).await;
    commit(&s, fixture()).await;
    let ent = channel_as(&s, Role::Enterprise("ENT-HZ".into())).await;
    let mut reg = RegistryClient::new(ent.clone());
    let e = reg.get_vehicle(proto::GetVehicleRequest { vin: NB.into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        reg.get_vehicle(proto::GetVehicleRequest { vin: HZ.into() }).await.unwrap().into_inner().vin,
        HZ
    );
    let own = reg.list_vehicles(proto::ListVehiclesRequest::default()).await.unwrap().into_inner().vehicles;
    assert_eq!(own.iter().map(|v| v.vin.as_str()).collect::<Vec<_>>(), vec![HZ]);
    let e = reg
        .list_vehicles(proto::ListVehiclesRequest {
            owner_enterprise_id: "ENT-NB".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = reg.upsert_vehicle(truck(HZ, proto::EmissionStage::ChinaVi)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let mut v = ViolationsClient::new(ent);
    let mine = list_all(&mut v, Default::default()).await.unwrap();
    assert_eq!(mine.len(), 6);
    assert!(mine.iter().all(|x| x.vin == HZ));
    let e = v.list(proto::ListViolationsRequest { vin: NB.into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e =
        v.list(proto::ListViolationsRequest { enterprise_id: "ENT-NB".into(), ..Default::default() }).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    let ningbo = violation(NB, "R3", T0 + 500, "330200", None).id.0;
    assert_eq!(
        v.get(proto::GetViolationRequest { id: ningbo }).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let e = v
        .get_track(proto::GetTrackRequest {
            vin: NB.into(),
            from_ms: T0,
            to_ms: T0 + 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A terminal for the Hangzhou truck: its records go in, the Ningbo truck's are refused.
    let terminal = channel_as(&s, Role::Terminal(vec![Vin::parse(HZ).unwrap()])).await;
    let batch = proto::TelemetryBatch {
        sequence: 1,
        reissue: false,
        records: vec![record(HZ, T0, 120.1, 30.2, 50.0), record(NB, T0, 121.5, 29.9, 50.0)],
    };
    let acks = stream_batches(terminal.clone(), vec![batch]).await;
    assert_eq!(acks[0].accepted, 1);
    let r: Vec<(u32, i32)> = acks[0].rejections.iter().map(|r| (r.index, r.reason)).collect();
    assert_eq!(r, vec![(1, proto::RejectReason::ForbiddenVin as i32)]);
    let e = ViolationsClient::new(terminal).list(proto::ListViolationsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Police cannot feed telemetry.
    let police = channel_as(&s, Role::Police(Jurisdiction::city("330100").unwrap())).await;
    let e = proto::telemetry_ingest_client::TelemetryIngestClient::new(police)
        .stream(tokio_stream::iter(Vec::<proto::TelemetryBatch>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_but_probes_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    for secret in [None, Some("swt_not-a-real-token")] {
        let anon = connect_with(s.grpc_addr, secret).await;
        let e = ViolationsClient::new(anon.clone()).list(proto::ListViolationsRequest::default()).await;
        assert_eq!(e.unwrap_err().code(), Code::Unauthenticated);
        let e =
            RegistryClient::new(anon.clone()).get_vehicle(proto::GetVehicleRequest { vin: HZ.into() }).await;
        assert_eq!(e.unwrap_err().code(), Code::Unauthenticated);
        let e = proto::telemetry_ingest_client::TelemetryIngestClient::new(anon.clone())
            .stream(tokio_stream::iter(Vec::<proto::TelemetryBatch>::new()))
            .await;
        assert_eq!(e.unwrap_err().code(), Code::Unauthenticated);
        let health = tonic_health::pb::health_client::HealthClient::new(anon)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .unwrap();
        assert_eq!(
            health.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let (status, headers, _) = http(s.http_addr, "GET", "/v1/violations", secret, None).await;
        assert_eq!(status, 401);
        assert_eq!(headers[http::header::WWW_AUTHENTICATE], "Bearer");
    }
    // A revoked token stops working.
    let (token, secret) =
        smogwatch::auth::create_token(&*s.store, Role::Admin, "temp".into(), "test").await.unwrap();
    assert_eq!(http(s.http_addr, "GET", "/v1/violations", Some(&secret), None).await.0, 200);
    smogwatch::auth::revoke_token(&*s.store, &token.id, "test").await.unwrap();
    // (The cache trusts a verified token for cache_ttl_s; a fresh server reads the revocation.)
    s.shutdown().await;
    let s = server_with(dir.path(), |c| c.auth.cache_ttl_s = 0).await;
    assert_eq!(http(s.http_addr, "GET", "/v1/violations", Some(&secret), None).await.0, 401);
    for open in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(http(s.http_addr, "GET", open, None, None).await.0, 200, "{open}");
    }
    s.shutdown().await;
}

async fn next_alert(stream: &mut tonic::Streaming<proto::ViolationAlert>) -> proto::ViolationAlert {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("an alert in time")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_live_violations_and_resumes_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.watch_poll_ms = 100).await;
    register(&s).await;
    let admin = channel(&s).await;
    let hangzhou = proto::ViolationFilter { city_code: "330100".into(), ..Default::default() };
    let mut stream = ViolationsClient::new(admin.clone())
        .watch(proto::WatchViolationsRequest { filter: Some(hangzhou.clone()), cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    let ready = next_alert(&mut stream).await;
    assert!(ready.violation.is_none(), "the first message only tells the cursor");

    // A live R3 violation through the real ingest path (400 s above the limit).
    let recs: Vec<_> = (0..420)
        .map(|i| record(HZ, T0 + i * 1000, 120.2, 30.3, if i < 400 { 800.0 } else { 60.0 }))
        .collect();
    stream_batches(admin.clone(), batches(recs, 1, false)).await;
    let first = next_alert(&mut stream).await;
    let v = first.violation.as_ref().expect("a violation");
    assert_eq!((v.rule.as_str(), v.vin.as_str(), v.late), ("R3", HZ, false));
    drop(stream);

    // While disconnected: two Hangzhou violations, one in Ningbo, one late one in Hangzhou.
    let mut late = violation(HZ, "R4.reagent_empty", T0 + 9_000_000, "330100", None);
    late.late = true;
    let missed = [
        violation(HZ, "R4.reagent_empty", T0 + 7_000_000, "330100", None),
        violation(NB, "R3", T0 + 7_500_000, "330200", None),
        late,
        violation(HZ, "R3", T0 + 8_000_000, "330100", None),
    ];
    commit(&s, missed[..2].to_vec()).await;
    commit(&s, missed[2..].to_vec()).await;

    let mut stream = ViolationsClient::new(admin.clone())
        .watch(proto::WatchViolationsRequest { filter: Some(hangzhou.clone()), cursor: first.cursor.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_alert(&mut stream).await.cursor, first.cursor, "resumes where it left off");
    let a = next_alert(&mut stream).await;
    let b = next_alert(&mut stream).await;
    let got: Vec<String> = [&a, &b].iter().map(|x| x.violation.as_ref().unwrap().id.clone()).collect();
    assert_eq!(got, vec![missed[0].id.0.clone(), missed[3].id.0.clone()]);
    assert!(a.cursor.parse::<u64>().unwrap() < b.cursor.parse::<u64>().unwrap());

    // Another one while connected arrives too; then nothing more (no repeats).
    let more = violation(HZ, "R3", T0 + 10_000_000, "330100", Some("330106"));
    commit(&s, vec![more.clone()]).await;
    let c = next_alert(&mut stream).await;
    assert_eq!(c.violation.unwrap().id, more.id.0);
    let quiet = tokio::time::timeout(Duration::from_millis(600), stream.message()).await;
    assert!(quiet.is_err(), "nothing twice: {quiet:?}");

    // A Ningbo officer's watch from the beginning sees only the Ningbo one.
    let nb_police = channel_as(&s, Role::Police(Jurisdiction::city("330200").unwrap())).await;
    let mut nb = ViolationsClient::new(nb_police.clone())
        .watch(proto::WatchViolationsRequest { filter: None, cursor: "0".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(next_alert(&mut nb).await.violation.is_none());
    assert_eq!(next_alert(&mut nb).await.violation.unwrap().id, missed[1].id.0);
    assert!(tokio::time::timeout(Duration::from_millis(400), nb.message()).await.is_err());
    let e = ViolationsClient::new(nb_police)
        .watch(proto::WatchViolationsRequest { filter: Some(hangzhou), cursor: String::new() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_mirrors_grpc_streams_exports_and_serves_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s).await;
    commit(&s, fixture()).await;
    // A track for the newest Hangzhou violation's window, so the GeoJSON has a LineString.
    let admin = channel(&s).await;
    let recs: Vec<_> =
        (0..30).map(|i| record(HZ, T0 + 5000 + i * 1000, 120.2 + i as f64 * 1e-3, 30.3, 50.0)).collect();
    stream_batches(admin, batches(recs, 1, false)).await;
    let police = token(&s, Role::Police(Jurisdiction::city("330100").unwrap())).await;
    let admin = token(&s, Role::Admin).await;

    let (status, _, body) = http(s.http_addr, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for r in smogwatch::http::routes() {
        assert!(
            doc["paths"][r.path][r.method.as_str().to_ascii_lowercase()].is_object(),
            "{} {} is served but not documented",
            r.method,
            r.path
        );
    }

    let (status, _, body) =
        http(s.http_addr, "GET", "/v1/violations?page_size=4&late=false", Some(&police), None).await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["violations"].as_array().unwrap().len(), 4);
    assert!(!page["next_page_token"].as_str().unwrap().is_empty());
    let next = format!(
        "/v1/violations?page_size=4&late=false&page_token={}",
        page["next_page_token"].as_str().unwrap()
    );
    let (_, _, body) = http(s.http_addr, "GET", &next, Some(&police), None).await;
    let page2: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page2["violations"].as_array().unwrap().len(), 1, "5 live Hangzhou violations in all");
    assert_eq!(http(s.http_addr, "GET", "/v1/violations?city_code=330200", Some(&police), None).await.0, 403);
    let ningbo = violation(NB, "R3", T0 + 500, "330200", None).id.0;
    assert_eq!(
        http(s.http_addr, "GET", &format!("/v1/violations/{ningbo}"), Some(&police), None).await.0,
        403
    );

    let newest = violation(HZ, "R4.reagent_empty", T0 + 5000, "330100", None).id.0;
    let (status, _, body) =
        http(s.http_addr, "GET", &format!("/v1/violations/{newest}/evidence"), Some(&police), None).await;
    assert_eq!(status, 200);
    let ev: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["violation"]["id"], newest);
    assert_eq!(ev["track"].as_array().unwrap().len(), 30);
    // Police may read the track around it, not the vehicle's whole history.
    let around = format!("/v1/vehicles/{HZ}/track?from_ms={}&to_ms={}&page_size=10", T0 + 5000, T0 + 35_000);
    let (status, _, body) = http(s.http_addr, "GET", &around, Some(&police), None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let t: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(t["records"].as_array().unwrap().len(), 10);
    let far = format!("/v1/vehicles/{HZ}/track?from_ms={}&to_ms={}", T0 - 86_400_000, T0 + 35_000);
    assert_eq!(http(s.http_addr, "GET", &far, Some(&police), None).await.0, 403);

    let review =
        serde_json::json!({"decision": "dismissed", "reason": "exempt: emergency vehicle"}).to_string();
    let path = format!("/v1/violations/{newest}/review");
    let (status, _, body) = http(s.http_addr, "POST", &path, Some(&police), Some(review)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let bad = serde_json::json!({"decision": "maybe", "reason": "x"}).to_string();
    assert_eq!(http(s.http_addr, "POST", &path, Some(&police), Some(bad)).await.0, 400);

    let (status, headers, body) =
        http(s.http_addr, "GET", "/v1/export/violations.csv", Some(&police), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers[http::header::TRANSFER_ENCODING], "chunked", "streamed, not buffered");
    assert!(headers[http::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with("\u{feff}id,rule,vin,plate"));
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(csv.contains("exempt: emergency vehicle"));

    let (status, headers, body) =
        http(s.http_addr, "GET", "/v1/export/violations.geojson?rule=R4", Some(&police), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers[http::header::TRANSFER_ENCODING], "chunked");
    let fc: serde_json::Value = serde_json::from_slice(&body).expect("valid GeoJSON");
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 3);
    let line = features.iter().find(|f| f["id"] == newest).unwrap();
    assert_eq!(line["geometry"]["type"], "LineString");
    assert_eq!(line["geometry"]["coordinates"].as_array().unwrap().len(), 30);
    assert_eq!(
        http(s.http_addr, "GET", "/v1/export/violations.csv?city_code=330200", Some(&police), None).await.0,
        403
    );

    let (status, _, body) = http(s.http_addr, "GET", "/v1/audit", Some(&admin), None).await;
    assert_eq!(status, 200);
    let log: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| !a.starts_with("token"))
        .collect();
    assert_eq!(actions, vec!["export", "export", "review"], "refused exports are not exports");
    assert_eq!(http(s.http_addr, "GET", "/v1/audit", Some(&police), None).await.0, 403);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_alerts_are_server_sent_events_resumable_by_last_event_id() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), |c| c.watch_poll_ms = 100).await;
    register(&s).await;
    let police = token(&s, Role::Police(Jurisdiction::city("330100").unwrap())).await;
    commit(&s, vec![violation(HZ, "R3", T0, "330100", None), violation(NB, "R3", T0 + 1, "330200", None)])
        .await;
    let stream = tokio::net::TcpStream::connect(s.http_addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/v1/alerts")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::AUTHORIZATION, format!("Bearer {police}"))
        .header("last-event-id", "0")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[http::header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("event: violation") {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("events in time");
        if let Some(Ok(f)) = frame {
            if let Some(d) = f.data_ref() {
                text.push_str(&String::from_utf8_lossy(d));
            }
        }
    }
    assert!(text.contains("event: ready"), "{text}");
    assert!(text.contains(HZ) && !text.contains(NB), "{text}");
    assert!(text.contains("id: 1\n"), "the event id is the cursor: {text}");
    s.shutdown().await;
}

/// Issue 7 follow-up: credentials are issued and revoked while the server runs (the CLI needs
/// the store file, which the running server holds), over gRPC and HTTP, by admins only, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_issue_and_revoke_tokens_on_a_running_server() {
    use proto::admin_client::AdminClient;
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    register(&s).await;
    commit(&s, fixture()).await;
    let mut admin = AdminClient::new(channel(&s).await);
    let admin_secret = token(&s, Role::Admin).await;

    // gRPC: a Hangzhou police token, usable at once and scoped like one made by the CLI.
    let created = admin
        .create_token(proto::CreateTokenRequest {
            role: "police".into(),
            city: "330100".into(),
            label: "Hangzhou traffic police, desk 3".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let info = created.token.clone().unwrap();
    assert_eq!((info.role.as_str(), info.scope.as_str(), info.revoked_ms), ("police", "city 330100", 0));
    assert!(created.secret.starts_with("swt_"));
    let mut police = ViolationsClient::new(connect_with(s.grpc_addr, Some(&created.secret)).await);
    let seen = list_all(&mut police, proto::ListViolationsRequest::default()).await.unwrap();
    assert!(!seen.is_empty() && seen.iter().all(|v| v.vin == HZ), "Hangzhou only");

    // Not for police: creating, listing or revoking tokens.
    let mut as_police = AdminClient::new(connect_with(s.grpc_addr, Some(&created.secret)).await);
    let e = as_police
        .create_token(proto::CreateTokenRequest {
            role: "admin".into(),
            label: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        as_police.list_tokens(proto::ListTokensRequest {}).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // A spec that does not fit its role is an invalid argument naming the problem.
    let e = admin
        .create_token(proto::CreateTokenRequest {
            role: "police".into(),
            label: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("city"), "{}", e.message());

    // HTTP: an enterprise token, then the listing (no secrets, no hashes).
    let (status, _, body) = http(
        s.http_addr,
        "POST",
        "/v1/tokens",
        Some(&admin_secret),
        Some(r#"{"role":"enterprise","enterprise":"ENT-NB","label":"Ningbo port logistics"}"#.into()),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let firm: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(firm["token"]["scope"], "enterprise ENT-NB");
    let listed = admin.list_tokens(proto::ListTokensRequest {}).await.unwrap().into_inner().tokens;
    assert!(listed.iter().any(|t| t.id == info.id) && listed.iter().any(|t| t.id == firm["token"]["id"]));
    let (_, _, body) = http(s.http_addr, "GET", "/v1/tokens", Some(&admin_secret), None).await;
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(&created.secret) && !text.contains("hash"), "{text}");

    // Revocation: refused at once on this node, idempotent, unknown ids are not found.
    let revoked = admin
        .revoke_token(proto::RevokeTokenRequest { id: info.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert!(revoked.revoked_ms > 0);
    let e = police.list(proto::ListViolationsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let again = admin.revoke_token(proto::RevokeTokenRequest { id: info.id.clone() }).await.unwrap();
    assert_eq!(again.into_inner().token.unwrap().revoked_ms, revoked.revoked_ms);
    let e =
        admin.revoke_token(proto::RevokeTokenRequest { id: "0123456789abcdef".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let firm_secret = firm["secret"].as_str().unwrap().to_string();
    let path = format!("/v1/tokens/{}/revoke", firm["token"]["id"].as_str().unwrap());
    let (status, _, _) = http(s.http_addr, "POST", &path, Some(&admin_secret), None).await;
    assert_eq!(status, 200);
    assert_eq!(http(s.http_addr, "GET", "/v1/violations", Some(&firm_secret), None).await.0, 401);

    // Every change is in the audit log, under the acting admin token.
    let audit = admin.list_audit(proto::ListAuditRequest::default()).await.unwrap().into_inner().entries;
    let actions: Vec<_> = audit.iter().map(|e| (e.action.as_str(), e.target.as_str())).collect();
    assert!(actions.contains(&("token_create", info.id.as_str())), "{actions:?}");
    assert!(actions.contains(&("token_revoke", info.id.as_str())), "{actions:?}");
    assert_eq!(audit.iter().filter(|e| e.action == "token_revoke" && e.target == info.id).count(), 1);
    s.shutdown().await;
}
