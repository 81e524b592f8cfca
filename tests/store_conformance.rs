//! Storage conformance: ONE suite of behaviours every `Store` backend must show, written once as
//! async functions over `Arc<dyn Store>` and instantiated per backend by `conformance!`.
//!
//! - `embedded::*` always runs (redb in a temp dir).
//! - `scylla::*` runs when the crate is built with `--features scylla` AND `SMOGWATCH_SCYLLA_URI`
//!   (e.g. `127.0.0.1:9042`, comma-separated for several) is set when building the test; each case
//!   gets a throw-away keyspace (SimpleStrategy, RF 1), dropped when it passes. Otherwise the test
//!   `scylla_conformance_skipped_no_server` prints why the Scylla half did not run.
//!
//! Times are relative to now (yesterday and the weeks before), so that TTL-based retention keeps
//! them and look-back windows include them.
use smogwatch::clean::gate_records::gate_record_id;
use smogwatch::clean::{
    Basis, CargoScope, CleanProfile, CleanTarget, Gate, GateDirection, GatePassage, NonRoadMode,
    NonRoadVolume, PassageSource, RatioKind,
};
use smogwatch::geofence::{ParkPassage, PassageDirection};
use smogwatch::model::{
    now_ms, Enterprise, TelemetryRecord, Vehicle, Vin, Violation, ViolationId, ViolationStatus,
};
use smogwatch::model::{EmissionStage, Fix};
use smogwatch::store::{CommitBatch, Store, ViolationQuery, ViolationWrite};
use std::sync::Arc;

const DAY: i64 = 86_400_000;
const BEIJING: i64 = 8 * 3_600_000;

/// How a backend implements retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// `expire_records` deletes and counts (embedded).
    Sweep,
    /// Rows carry a TTL; `expire_records` is a no-op returning 0 (ScyllaDB).
    Ttl,
}

pub struct Harness {
    pub store: Arc<dyn Store>,
    pub retention: Retention,
    /// Several processes share the store (CQL): vehicle leases are real.
    pub shared: bool,
}

fn vin(n: u32) -> Vin {
    Vin::parse(&format!("LGBH52E07HY{n:06}")).unwrap()
}

/// Beijing midnight that started yesterday.
fn yesterday_midnight() -> i64 {
    (now_ms() + BEIJING).div_euclid(DAY) * DAY - BEIJING - DAY
}

fn rec(v: Vin, t: i64) -> TelemetryRecord {
    TelemetryRecord {
        vin: v,
        time_ms: t,
        fix: None,
        engine: None,
        obd: None,
        opacity_k: Some((t % 1000) as f64 / 100.0),
        stream_kind: Default::default(),
    }
}

fn violation(v: Vin, rule: &str, started_ms: i64) -> Violation {
    Violation {
        id: ViolationId::derive(&v, rule, "", started_ms),
        rule: rule.into(),
        vin: v,
        plate: format!("浙A{}", &v.as_str()[12..]),
        status: ViolationStatus::Open,
        late: false,
        started_ms,
        ended_ms: None,
        position: None,
        zone_id: None,
        city_code: Some("330100".into()),
        county_code: None,
        summary: "test".into(),
        thresholds: serde_json::json!({"limit_ppm": 500}),
        measured: None,
        evidence: serde_json::json!({}),
    }
}

fn upserts(vs: &[Violation]) -> CommitBatch {
    CommitBatch { violations: vs.iter().cloned().map(ViolationWrite::Upsert).collect(), ..Default::default() }
}

/// Pages through a listing with the cursor the API would hand out.
async fn list_all(store: &dyn Store, q: &ViolationQuery, page: usize) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let got = store.violations(q, cursor.clone(), page).await.unwrap();
        assert!(got.violations.len() <= page);
        out.extend(got.violations);
        // A short page may still carry a cursor (scan budget); no cursor means the end.
        match got.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("listing did not end");
}

fn newest_first(mut vs: Vec<Violation>) -> Vec<ViolationId> {
    vs.sort_by(|a, b| (b.started_ms, &b.id).cmp(&(a.started_ms, &a.id)));
    vs.into_iter().map(|v| v.id).collect()
}

fn ids(vs: &[Violation]) -> Vec<ViolationId> {
    vs.iter().map(|v| v.id.clone()).collect()
}

pub mod cases {
    use super::*;

    pub async fn record_round_trip_and_range_bounds(h: Harness) {
        let s = &*h.store;
        let (a, b) = (vin(1), vin(2));
        // Ten 1 Hz records straddling a Beijing midnight (two day partitions on ScyllaDB).
        let mid = yesterday_midnight();
        let times: Vec<i64> = (-5..5).map(|i| mid + i * 1000).collect();
        let mut records: Vec<TelemetryRecord> = times.iter().map(|&t| rec(a, t)).collect();
        records.push(rec(b, mid));
        records.reverse();
        s.commit(CommitBatch { records, ..Default::default() }).await.unwrap();

        let all = s.records(a, mid - DAY, mid + DAY, 100).await.unwrap();
        assert_eq!(all.iter().map(|r| r.time_ms).collect::<Vec<_>>(), times, "oldest first, one VIN");
        assert_eq!(all[0], rec(a, times[0]), "round trip is lossless");
        // from inclusive, to exclusive.
        let mid_range = s.records(a, mid - 2000, mid + 1000, 100).await.unwrap();
        assert_eq!(mid_range.iter().map(|r| r.time_ms).collect::<Vec<_>>(), [mid - 2000, mid - 1000, mid]);
        let limited = s.records(a, mid - DAY, mid + DAY, 3).await.unwrap();
        assert_eq!(limited.iter().map(|r| r.time_ms).collect::<Vec<_>>(), times[..3]);
        assert!(s.records(a, mid + 10_000, mid + DAY, 100).await.unwrap().is_empty());
        assert!(s.records(a, mid, mid, 100).await.unwrap().is_empty());
        assert_eq!(s.records(b, mid - DAY, mid + DAY, 100).await.unwrap(), [rec(b, mid)]);
        assert!(s.records(vin(3), mid - DAY, mid + DAY, 100).await.unwrap().is_empty());
    }

    pub async fn recommit_is_idempotent(h: Harness) {
        let s = &*h.store;
        let a = vin(1);
        let mid = yesterday_midnight();
        let batch = || CommitBatch {
            passages: Vec::new(),
            records: (0..20).map(|i| rec(a, mid + i * 1000)).collect(),
            violations: vec![ViolationWrite::Upsert(violation(a, "R3", mid + 5000))],
            states: vec![(a, vec![1, 2, 3])],
        };
        s.commit(batch()).await.unwrap();
        s.commit(batch()).await.unwrap();
        // A client retry may also resend a subset mixed with new data.
        let mut again = batch();
        again.records.truncate(5);
        again.records.push(rec(a, mid + 20_000));
        s.commit(again).await.unwrap();
        let got = s.records(a, mid - DAY, mid + DAY, 1000).await.unwrap();
        assert_eq!(got.len(), 21);
        assert_eq!(list_all(s, &ViolationQuery::default(), 10).await.len(), 1);
        assert_eq!(s.vehicle_state(a).await.unwrap(), Some(vec![1, 2, 3]));
    }

    pub async fn state_save_load(h: Harness) {
        let s = &*h.store;
        let (a, b) = (vin(1), vin(2));
        assert_eq!(s.vehicle_state(a).await.unwrap(), None);
        s.commit(CommitBatch { states: vec![(a, vec![1]), (b, vec![2; 300])], ..Default::default() })
            .await
            .unwrap();
        assert_eq!(s.vehicle_state(a).await.unwrap(), Some(vec![1]));
        assert_eq!(s.vehicle_state(b).await.unwrap(), Some(vec![2; 300]));
        // Newer state replaces older, including twice in one group commit (last wins).
        s.commit(CommitBatch { states: vec![(a, vec![3]), (a, vec![4])], ..Default::default() })
            .await
            .unwrap();
        assert_eq!(s.vehicle_state(a).await.unwrap(), Some(vec![4]));
        assert_eq!(s.vehicle_state(vin(3)).await.unwrap(), None);
    }

    pub async fn documents_by_kind(h: Harness) {
        let s = &*h.store;
        assert!(s.documents("zone").await.unwrap().is_empty());
        s.put_documents("zone", vec![("z2".into(), b"two".to_vec()), ("z1".into(), b"one".to_vec())])
            .await
            .unwrap();
        s.put_documents("exemptions", vec![("all".into(), b"[]".to_vec())]).await.unwrap();
        s.put_documents("zone", vec![("z2".into(), b"TWO".to_vec())]).await.unwrap();
        let mut zones = s.documents("zone").await.unwrap();
        zones.sort();
        assert_eq!(zones, vec![("z1".into(), b"one".to_vec()), ("z2".into(), b"TWO".to_vec())]);
        s.delete_documents("zone", vec!["z1".into(), "missing".into()]).await.unwrap();
        assert_eq!(s.documents("zone").await.unwrap(), vec![("z2".into(), b"TWO".to_vec())]);
        assert_eq!(s.documents("exemptions").await.unwrap().len(), 1, "kinds are separate");
    }

    pub async fn vehicles_and_enterprises_paging(h: Harness) {
        let s = &*h.store;
        let n = 25u32;
        // Inserted out of order; listed by VIN.
        for i in (0..n).map(|i| (i * 7) % n) {
            let mut v = Vehicle::new(vin(i + 1));
            v.plate = format!("浙A{:05}", i + 1);
            v.owner_enterprise_id = format!("ENT-{}", i % 3);
            s.upsert_vehicle(v).await.unwrap();
        }
        // Re-registering updates in place (plate change).
        let mut changed = Vehicle::new(vin(5));
        changed.plate = "浙B99999".into();
        changed.owner_enterprise_id = "ENT-9".into();
        s.upsert_vehicle(changed.clone()).await.unwrap();
        assert!(s.upsert_vehicle(Vehicle::default()).await.is_err(), "a vehicle needs a VIN");

        let mut seen: Vec<Vehicle> = Vec::new();
        let mut after = None;
        loop {
            let page = s.vehicles(after, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = last.vin;
            seen.extend(page);
        }
        let vins: Vec<Vin> = seen.iter().filter_map(|v| v.vin).collect();
        assert_eq!(vins, (1..=n).map(vin).collect::<Vec<_>>(), "every vehicle once, in VIN order");
        assert_eq!(seen[4], changed);
        assert!(s.vehicles(Some(vin(n)), 10).await.unwrap().is_empty());

        for i in 0..9 {
            let e = Enterprise {
                id: format!("ENT-{i}"),
                name: format!("企业{i}"),
                industry: "steel".into(),
                city_code: "330100".into(),
            };
            s.upsert_enterprise(e).await.unwrap();
        }
        let mut e2 = s.enterprise("ENT-2").await.unwrap().unwrap();
        assert_eq!(e2.name, "企业2");
        e2.industry = "cement".into();
        s.upsert_enterprise(e2.clone()).await.unwrap();
        assert_eq!(s.enterprise("ENT-2").await.unwrap(), Some(e2));
        assert_eq!(s.enterprise("nope").await.unwrap(), None);
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = s.enterprises(after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            ids.extend(page.into_iter().map(|e| e.id));
        }
        assert_eq!(ids, (0..9).map(|i| format!("ENT-{i}")).collect::<Vec<_>>());
    }

    pub async fn violation_upsert_keeps_one_row(h: Harness) {
        let s = &*h.store;
        let a = vin(1);
        let t = yesterday_midnight() + 3_600_000;
        let open = violation(a, "R3", t);
        let out = s.commit(upserts(std::slice::from_ref(&open))).await.unwrap();
        assert_eq!(out.written_violations, std::slice::from_ref(&open));
        let mut closed = open.clone();
        closed.status = ViolationStatus::Closed;
        closed.ended_ms = Some(t + 600_000);
        let out = s.commit(upserts(std::slice::from_ref(&closed))).await.unwrap();
        assert_eq!(out.written_violations, [closed.clone()]);
        assert_eq!(s.violation(&open.id).await.unwrap(), Some(closed.clone()));
        assert_eq!(list_all(s, &ViolationQuery::default(), 10).await, [closed.clone()]);
        let by_vin = ViolationQuery { vin: Some(a), ..Default::default() };
        assert_eq!(list_all(s, &by_vin, 10).await, [closed]);
        assert_eq!(s.violation(&ViolationId("0".repeat(32))).await.unwrap(), None);
    }

    pub async fn insert_if_absent_does_not_overwrite(h: Harness) {
        let s = &*h.store;
        let a = vin(1);
        let t = yesterday_midnight() + 7_200_000;
        let live = violation(a, "R3", t);
        s.commit(upserts(std::slice::from_ref(&live))).await.unwrap();
        let mut late = live.clone();
        late.late = true;
        late.summary = "found in reissued data".into();
        let mut fresh = violation(a, "R3", t + 60_000);
        fresh.late = true;
        let out = s
            .commit(CommitBatch {
                passages: Vec::new(),
                violations: vec![
                    ViolationWrite::InsertIfAbsent(late.clone()),
                    ViolationWrite::InsertIfAbsent(fresh.clone()),
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(out.written_violations, [fresh.clone()], "only the absent one is written");
        assert_eq!(s.violation(&live.id).await.unwrap(), Some(live.clone()));
        // Retrying the same late write changes nothing and reports nothing.
        let out = s
            .commit(CommitBatch {
                passages: Vec::new(),
                violations: vec![ViolationWrite::InsertIfAbsent(fresh.clone())],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(out.written_violations.is_empty());
        assert_eq!(list_all(s, &ViolationQuery::default(), 10).await, [fresh, live]);
    }

    /// 30 violations over three vehicles, spread over six weeks (several days, two or three
    /// months), with ties on the start time broken by id.
    fn spread() -> Vec<Violation> {
        let base = yesterday_midnight();
        let mut vs = Vec::new();
        for i in 0..30i64 {
            let v = vin(1 + (i % 3) as u32);
            let rule = ["R3", "R4.reagent_empty", "R4", "R40", "R1"][(i % 5) as usize];
            let t = base - (i / 2) * 3 * DAY + 3_600_000; // pairs share a start
            vs.push(violation(v, rule, t));
        }
        vs
    }

    pub async fn violations_newest_first_with_cursor_paging(h: Harness) {
        let s = &*h.store;
        let vs = spread();
        // Written over several commits, out of order.
        s.commit(upserts(&vs[15..])).await.unwrap();
        s.commit(upserts(&vs[..15])).await.unwrap();
        let expected = newest_first(vs.clone());
        for page in [1, 7, 30, 31, 1000] {
            let got = list_all(s, &ViolationQuery::default(), page).await;
            assert_eq!(ids(&got), expected, "page size {page}");
        }
        let first = s.violations(&ViolationQuery::default(), None, 5).await.unwrap();
        assert_eq!(ids(&first.violations), expected[..5]);
        assert!(s.violations(&ViolationQuery::default(), None, 0).await.unwrap().violations.is_empty());
    }

    pub async fn violation_filters(h: Harness) {
        let s = &*h.store;
        let vs = spread();
        s.commit(upserts(&vs)).await.unwrap();
        let expect =
            |f: &dyn Fn(&Violation) -> bool| newest_first(vs.iter().filter(|v| f(v)).cloned().collect());

        let q = ViolationQuery { vin: Some(vin(2)), ..Default::default() };
        assert_eq!(ids(&list_all(s, &q, 3).await), expect(&|v| v.vin == vin(2)));

        let q = ViolationQuery { rule: Some("R4".into()), ..Default::default() };
        let got = list_all(s, &q, 4).await;
        assert_eq!(ids(&got), expect(&|v| v.rule == "R4" || v.rule == "R4.reagent_empty"));
        assert!(got.iter().all(|v| v.rule != "R40"), "a family prefix stops at the dot");
        let q = ViolationQuery { rule: Some("R4.reagent_empty".into()), ..Default::default() };
        assert_eq!(ids(&list_all(s, &q, 4).await), expect(&|v| v.rule == "R4.reagent_empty"));

        // Time range: from inclusive, to exclusive, on the start time.
        let from = vs[20].started_ms;
        let to = vs[6].started_ms;
        let q = ViolationQuery { from_ms: Some(from), to_ms: Some(to), ..Default::default() };
        let got = list_all(s, &q, 5).await;
        assert_eq!(ids(&got), expect(&|v| v.started_ms >= from && v.started_ms < to));
        assert!(got.iter().any(|v| v.started_ms == from) && got.iter().all(|v| v.started_ms != to));

        let q = ViolationQuery {
            vin: Some(vin(1)),
            rule: Some("R4".into()),
            from_ms: Some(from),
            ..Default::default()
        };
        assert_eq!(
            ids(&list_all(s, &q, 2).await),
            expect(&|v| v.vin == vin(1) && q.matches(v) && v.started_ms >= from)
        );
        let none = ViolationQuery { vin: Some(vin(9)), ..Default::default() };
        assert!(list_all(s, &none, 10).await.is_empty());
    }

    pub async fn expire_records_keeps_violations(h: Harness) {
        let s = &*h.store;
        let a = vin(1);
        let mid = yesterday_midnight();
        let old: Vec<i64> = (0..4).map(|i| mid - 3 * DAY + i * 1000).collect();
        let new: Vec<i64> = (0..3).map(|i| mid + i * 1000).collect();
        let v = violation(a, "R3", old[0]);
        s.upsert_vehicle(Vehicle::new(a)).await.unwrap();
        s.commit(CommitBatch {
            passages: Vec::new(),
            records: old.iter().chain(&new).map(|&t| rec(a, t)).collect(),
            violations: vec![ViolationWrite::Upsert(v.clone())],
            states: vec![(a, vec![7])],
        })
        .await
        .unwrap();
        let removed = s.expire_records(mid - DAY).await.unwrap();
        let left: Vec<i64> =
            s.records(a, mid - 10 * DAY, mid + DAY, 100).await.unwrap().iter().map(|r| r.time_ms).collect();
        match h.retention {
            Retention::Sweep => {
                assert_eq!(removed, old.len() as u64);
                assert_eq!(left, new);
                assert_eq!(s.expire_records(mid - DAY).await.unwrap(), 0, "nothing left to expire");
            }
            Retention::Ttl => {
                // Expiry is the TTL's job; the call must succeed and remove nothing itself.
                assert_eq!(removed, 0);
                assert_eq!(left.len(), old.len() + new.len());
            }
        }
        assert_eq!(s.violation(&v.id).await.unwrap(), Some(v.clone()));
        assert_eq!(list_all(s, &ViolationQuery::default(), 10).await, [v]);
        assert_eq!(s.vehicle_state(a).await.unwrap(), Some(vec![7]));
        assert_eq!(s.vehicles(None, 10).await.unwrap().len(), 1);
    }

    /// Clean transport: a profile round-trips and is replaced whole.
    pub async fn clean_profile_round_trip(h: Harness) {
        let s = &*h.store;
        assert_eq!(s.clean_profile("ENT-1").await.unwrap(), None);
        let mut p = CleanProfile::new("ENT-1");
        p.targets.push(CleanTarget {
            year: 2025,
            kind: RatioKind::CleanOrChinaVi,
            basis: Basis::Tonnage,
            fraction: 1.0,
            strict: false,
            scope: CargoScope::AllBulk,
        });
        p.gates.push(Gate {
            id: "G1".into(),
            park_zone_id: "PARK-1".into(),
            name: "north".into(),
            position: Some(Fix { lon: 121.8, lat: 29.93, valid: true }),
            direction: GateDirection::Both,
        });
        s.put_clean_profile(p.clone()).await.unwrap();
        assert_eq!(s.clean_profile("ENT-1").await.unwrap(), Some(p.clone()));
        p.gates.clear();
        s.put_clean_profile(p.clone()).await.unwrap();
        assert_eq!(s.clean_profile("ENT-1").await.unwrap(), Some(p));
        assert_eq!(s.clean_profile("ENT-2").await.unwrap(), None);
    }

    /// Passages of both sources: range bounds across a Beijing midnight, oldest first, one copy
    /// per id however often written, enterprises kept apart, telemetry passages from `commit`.
    pub async fn gate_passages_range_idempotence_and_commit(h: Harness) {
        let s = &*h.store;
        let mid = yesterday_midnight();
        let gate = |t: i64, plate: &str, ent: &str| GatePassage {
            id: gate_record_id("G1", plate, t, PassageDirection::In),
            enterprise_id: ent.into(),
            source: PassageSource::GateSystem,
            time_ms: t,
            direction: PassageDirection::In,
            vin: None,
            plate: plate.into(),
            zone_id: "PARK-1".into(),
            gate_id: "G1".into(),
            claimed_stage: Some(EmissionStage::ChinaVI),
            claimed_fuel: None,
            cargo: "coal".into(),
            tonnage: Some(31.5),
            fix: None,
        };
        let ps = vec![
            gate(mid - 1000, "浙B1", "ENT-1"),
            gate(mid, "浙B2", "ENT-1"),
            gate(mid + 1000, "浙B3", "ENT-1"),
            gate(mid, "浙B9", "ENT-2"),
        ];
        s.put_gate_passages(ps.clone()).await.unwrap();
        s.put_gate_passages(ps[..2].to_vec()).await.unwrap();
        let park = ParkPassage {
            zone_id: "PARK-1".into(),
            enterprise_id: "ENT-1".into(),
            vin: vin(1),
            direction: PassageDirection::Out,
            time_ms: mid + 500,
            fix: Fix { lon: 121.8, lat: 29.93, valid: true },
        };
        for _ in 0..2 {
            s.commit(CommitBatch { passages: vec![park.clone()], ..Default::default() }).await.unwrap();
        }
        let all = s.gate_passages("ENT-1", mid - DAY, mid + DAY, 100).await.unwrap();
        let times: Vec<i64> = all.iter().map(|p| p.time_ms).collect();
        assert_eq!(times, [mid - 1000, mid, mid + 500, mid + 1000], "oldest first, one copy each");
        assert_eq!(all[0], ps[0], "round trip is lossless");
        assert_eq!(all[2], GatePassage::from_park_passage(&park));
        assert_eq!(all[2].source, PassageSource::Telemetry);
        let window = s.gate_passages("ENT-1", mid, mid + 1000, 100).await.unwrap();
        assert_eq!(window.iter().map(|p| p.time_ms).collect::<Vec<_>>(), [mid, mid + 500], "[from, to)");
        assert_eq!(s.gate_passages("ENT-1", mid - DAY, mid + DAY, 2).await.unwrap().len(), 2, "limit");
        let other = s.gate_passages("ENT-2", mid - DAY, mid + DAY, 100).await.unwrap();
        assert_eq!(other, [ps[3].clone()]);
        assert!(s.gate_passages("ENT-3", mid - DAY, mid + DAY, 100).await.unwrap().is_empty());
    }

    /// Non-road reports: everything overlapping the period, including one that started 300 days
    /// earlier (in the previous year's partition when yesterday was early in the year);
    /// resubmission replaces.
    pub async fn non_road_volumes_overlap(h: Harness) {
        let s = &*h.store;
        let mid = yesterday_midnight();
        let v = |from: i64, to: i64, t: f64| {
            NonRoadVolume::new("ENT-1", from, to, NonRoadMode::Rail, t, Some(2), "").unwrap()
        };
        let long = v(mid - 300 * DAY, mid + DAY, 9000.0);
        let day = v(mid, mid + DAY, 1000.0);
        let before = v(mid - 3 * DAY, mid - 2 * DAY, 500.0);
        for x in [&long, &day, &before] {
            s.put_non_road_volume(x.clone()).await.unwrap();
        }
        s.put_non_road_volume(v(mid, mid + DAY, 1200.0)).await.unwrap();
        let got = s.non_road_volumes("ENT-1", mid, mid + DAY).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], long);
        assert_eq!(got[1].tonnage, 1200.0, "same enterprise, mode and period: replaced");
        assert_eq!(s.non_road_volumes("ENT-1", mid - 3 * DAY, mid - 2 * DAY).await.unwrap().len(), 2);
        assert!(s.non_road_volumes("ENT-2", mid, mid + DAY).await.unwrap().is_empty());
    }

    /// A listing without `from` reaches violations of any age (first run on Cassandra: a
    /// 366-day look-back horizon hid older ones), by time, by VIN and by city.
    pub async fn old_violations_are_listed_without_a_from_bound(h: Harness) {
        let s = &*h.store;
        let a = vin(7);
        let old = violation(a, "R1", yesterday_midnight() - 800 * DAY);
        let recent = violation(a, "R3", yesterday_midnight() + 3_600_000);
        s.commit(upserts(&[old.clone(), recent.clone()])).await.unwrap();
        let want = vec![recent.id.clone(), old.id.clone()];
        assert_eq!(ids(&list_all(s, &ViolationQuery::default(), 10).await), want, "by time");
        let q = ViolationQuery { vin: Some(a), ..Default::default() };
        assert_eq!(ids(&list_all(s, &q, 10).await), want, "by VIN");
        let q = ViolationQuery { city_code: Some("330100".into()), ..Default::default() };
        assert_eq!(ids(&list_all(s, &q, 10).await), want, "by city");
        let q = ViolationQuery { vins: Some(Arc::new([a].into_iter().collect())), ..Default::default() };
        assert_eq!(ids(&list_all(s, &q, 10).await), want, "by fleet");
    }

    /// Live violations written for the first time get increasing alert numbers, once each, across
    /// re-commits; late ones never alert; a reader resumes after any number.
    pub async fn alerts_number_each_live_violation_once(h: Harness) {
        let s = &*h.store;
        assert_eq!(s.last_alert_seq().await.unwrap(), 0);
        let t = yesterday_midnight() + 3_600_000;
        let live: Vec<Violation> = (0..3).map(|i| violation(vin(20 + i), "R3", t + i64::from(i))).collect();
        let out = s.commit(upserts(&live)).await.unwrap();
        let seqs: Vec<u64> = out.alerts.iter().map(|a| a.seq).collect();
        assert_eq!(seqs.len(), 3, "{seqs:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] >= 1, "{seqs:?}");
        let mut alerted: Vec<ViolationId> = out.alerts.iter().map(|a| a.violation.id.clone()).collect();
        alerted.sort();
        let mut want = ids(&live);
        want.sort();
        assert_eq!(alerted, want);
        assert_eq!(s.last_alert_seq().await.unwrap(), seqs[2]);
        // The same episodes again (a closed snapshot, a retried commit): no new alert.
        let mut closed = live.clone();
        for v in &mut closed {
            v.status = ViolationStatus::Closed;
            v.ended_ms = Some(v.started_ms + 60_000);
        }
        assert!(s.commit(upserts(&closed)).await.unwrap().alerts.is_empty());
        // A late violation never alerts.
        let mut late = violation(vin(30), "R3", t - DAY);
        late.late = true;
        let out = s
            .commit(CommitBatch {
                violations: vec![ViolationWrite::InsertIfAbsent(late)],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(out.written_violations.len(), 1);
        assert!(out.alerts.is_empty());
        // A fourth live one continues the numbering.
        let fourth = violation(vin(31), "R2.opacity", t + 10);
        let out = s.commit(upserts(std::slice::from_ref(&fourth))).await.unwrap();
        assert_eq!(out.alerts.len(), 1);
        assert!(out.alerts[0].seq > seqs[2]);
        let all = s.alerts_after(0, 100).await.unwrap();
        assert_eq!(
            all.iter().map(|a| a.seq).collect::<Vec<_>>(),
            [seqs[0], seqs[1], seqs[2], out.alerts[0].seq]
        );
        let rest = s.alerts_after(seqs[1], 100).await.unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].violation.id, fourth.id);
        assert_eq!(s.alerts_after(seqs[0], 1).await.unwrap().len(), 1, "limit holds");
    }

    /// A review and its audit entry; the audit log pages newest first; a review of a violation
    /// that does not exist is refused.
    pub async fn reviews_and_audit_log(h: Harness) {
        use smogwatch::model::{AuditAction, AuditEntry, ReviewDecision, ViolationReview};
        let s = &*h.store;
        let v = violation(vin(40), "R3", yesterday_midnight() + 3_600_000);
        s.commit(upserts(std::slice::from_ref(&v))).await.unwrap();
        let entry = |action, target: &str| AuditEntry {
            seq: 0,
            at_ms: now_ms(),
            actor: "tok1 (desk 3)".into(),
            action,
            target: target.into(),
            detail: serde_json::json!({"n": 1}),
        };
        let review = ViolationReview {
            violation_id: v.id.clone(),
            decision: ReviewDecision::Dismissed,
            reason: "NOx sensor replaced that day".into(),
            reviewer: "tok1 (desk 3)".into(),
            at_ms: now_ms(),
        };
        let first =
            s.review_violation(review.clone(), entry(AuditAction::Review, v.id.as_str())).await.unwrap();
        assert!(first.seq >= 1);
        let got = s.violation_reviews(&[v.id.clone(), ViolationId("nope".into())]).await.unwrap();
        assert_eq!(got, vec![Some(review), None]);
        let missing =
            ViolationReview { violation_id: ViolationId("missing".into()), ..got[0].clone().unwrap() };
        assert!(s.review_violation(missing, entry(AuditAction::Review, "missing")).await.is_err());
        let mut seqs = vec![first.seq];
        for i in 0..4 {
            let e = s.append_audit(entry(AuditAction::Export, &format!("csv-{i}"))).await.unwrap();
            assert!(e.seq > *seqs.last().unwrap(), "audit numbers increase");
            seqs.push(e.seq);
        }
        let log = s.audit_log(None, 3).await.unwrap();
        assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[4], seqs[3], seqs[2]]);
        assert_eq!(log[0].target, "csv-3");
        let older = s.audit_log(Some(seqs[2]), 10).await.unwrap();
        assert_eq!(older.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[1], seqs[0]]);
        assert_eq!(older[1].action, AuditAction::Review);
    }

    pub async fn tokens_round_trip(h: Harness) {
        use smogwatch::model::{ApiToken, Role};
        let s = &*h.store;
        let admin = ApiToken {
            id: "0123456789abcdef".into(),
            hash: "ab".repeat(32),
            role: Role::Admin,
            label: "operator".into(),
            created_ms: now_ms(),
            revoked_ms: None,
        };
        let ent = ApiToken {
            id: "fedcba9876543210".into(),
            hash: "cd".repeat(32),
            role: Role::Enterprise("ENT-1".into()),
            label: "steel works".into(),
            ..admin.clone()
        };
        s.put_token(admin.clone()).await.unwrap();
        s.put_token(ent.clone()).await.unwrap();
        assert_eq!(s.token(&ent.id).await.unwrap(), Some(ent.clone()));
        assert_eq!(s.token("0000000000000000").await.unwrap(), None);
        let revoked = ApiToken { revoked_ms: Some(now_ms()), ..ent.clone() };
        s.put_token(revoked.clone()).await.unwrap();
        let mut all = s.tokens().await.unwrap();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(all, vec![admin, revoked]);
    }

    /// Vehicle leases between nodes: taken when free, renewed by the holder, refused to others,
    /// given back; a store of one process grants every claim.
    pub async fn vehicle_leases(h: Harness) {
        use smogwatch::store::LeaseClaim;
        let s = &*h.store;
        let (a, b) = (vin(50), vin(51));
        if !h.shared {
            assert_eq!(s.claim_vehicle(a, "node-a", 30).await.unwrap(), LeaseClaim::Renewed);
            assert_eq!(s.claim_vehicle(a, "node-b", 30).await.unwrap(), LeaseClaim::Renewed);
            s.release_vehicle(a, "node-a").await.unwrap();
            return;
        }
        assert_eq!(s.claim_vehicle(a, "node-a", 30).await.unwrap(), LeaseClaim::Taken);
        assert_eq!(s.claim_vehicle(a, "node-a", 30).await.unwrap(), LeaseClaim::Renewed);
        assert_eq!(s.claim_vehicle(a, "node-b", 30).await.unwrap(), LeaseClaim::HeldBy("node-a".into()));
        assert_eq!(s.claim_vehicle(b, "node-b", 30).await.unwrap(), LeaseClaim::Taken, "per vehicle");
        // Only the holder gives it back.
        s.release_vehicle(a, "node-b").await.unwrap();
        assert_eq!(s.claim_vehicle(a, "node-b", 30).await.unwrap(), LeaseClaim::HeldBy("node-a".into()));
        s.release_vehicle(a, "node-a").await.unwrap();
        assert_eq!(s.claim_vehicle(a, "node-b", 30).await.unwrap(), LeaseClaim::Taken);
        // The holder renews as often as it likes (a node keeps one claim in flight per vehicle).
        for _ in 0..3 {
            assert_eq!(s.claim_vehicle(b, "node-b", 30).await.unwrap(), LeaseClaim::Renewed);
        }
        // A lease the holder stops renewing expires by itself.
        assert_eq!(s.claim_vehicle(vin(52), "node-a", 1).await.unwrap(), LeaseClaim::Taken);
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert_eq!(s.claim_vehicle(vin(52), "node-b", 30).await.unwrap(), LeaseClaim::Taken);
    }
}

fn embedded_harness(dir: &std::path::Path) -> Harness {
    let store = smogwatch::store::embedded::EmbeddedStore::open(dir).expect("embedded store opens");
    Harness { store: Arc::new(store), retention: Retention::Sweep, shared: false }
}

#[cfg(all(feature = "scylla", smogwatch_scylla_server))]
async fn scylla_harness(case: &str) -> (Harness, smogwatch::store::scylla::ScyllaStore) {
    use smogwatch::config::{Replication, ScyllaConfig};
    let uris = std::env::var("SMOGWATCH_SCYLLA_URI")
        .ok()
        .or(option_env!("SMOGWATCH_SCYLLA_URI").map(String::from))
        .expect("SMOGWATCH_SCYLLA_URI");
    let suffix = now_ms() % 1_000_000_000;
    let cfg = ScyllaConfig {
        uris: uris.split(',').map(|s| s.trim().to_string()).collect(),
        keyspace: format!("swc_{}_{suffix}", &case[..case.len().min(24)]),
        // RF 1 on the single node of scripts/test; SMOGWATCH_TEST_RF=3 on a 3-node cluster.
        replication: Replication::Simple {
            factor: std::env::var("SMOGWATCH_TEST_RF").ok().and_then(|v| v.parse().ok()).unwrap_or(1),
        },
        ..Default::default()
    };
    let store =
        smogwatch::store::scylla::ScyllaStore::connect(&cfg, 30).await.expect("scylla store connects");
    println!("scylla conformance {case}: keyspace {} on {uris}", cfg.keyspace);
    (Harness { store: Arc::new(store.clone()), retention: Retention::Ttl, shared: true }, store)
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::cases::$case(super::embedded_harness(dir.path())).await;
                }
            )*
        }

        #[cfg(all(feature = "scylla", smogwatch_scylla_server))]
        mod scylla {
            $(
                #[tokio::test]
                async fn $case() {
                    let (h, store) = super::scylla_harness(stringify!($case)).await;
                    super::cases::$case(h).await;
                    store.drop_keyspace().await.expect("drop test keyspace");
                }
            )*
        }
    };
}

conformance!(
    record_round_trip_and_range_bounds,
    recommit_is_idempotent,
    state_save_load,
    documents_by_kind,
    vehicles_and_enterprises_paging,
    violation_upsert_keeps_one_row,
    insert_if_absent_does_not_overwrite,
    violations_newest_first_with_cursor_paging,
    violation_filters,
    expire_records_keeps_violations,
    clean_profile_round_trip,
    gate_passages_range_idempotence_and_commit,
    non_road_volumes_overlap,
    old_violations_are_listed_without_a_from_bound,
    alerts_number_each_live_violation_once,
    reviews_and_audit_log,
    tokens_round_trip,
    vehicle_leases,
);

/// Present exactly when the Scylla half of the suite is NOT compiled in, so that a run without a
/// server says so in the test list and in the output instead of passing silently.
#[cfg(not(all(feature = "scylla", smogwatch_scylla_server)))]
#[test]
fn scylla_conformance_skipped_no_server() {
    let line = if cfg!(feature = "scylla") {
        "SKIPPED: scylla conformance — SMOGWATCH_SCYLLA_URI not set (no ScyllaDB server on this machine)"
    } else {
        "SKIPPED: scylla conformance — built without the `scylla` feature \
         (SMOGWATCH_SCYLLA_URI=host:9042 cargo test --features scylla --test store_conformance)"
    };
    println!("{line}");
    eprintln!("{line}");
}
