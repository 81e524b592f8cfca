use super::*;
use crate::geofence::gcj02::wgs84_to_gcj02;
use serde_json::{json, Value};

const PROPS: &str =
    r#"{"name":"test zone","kind":"restriction_zone","city_code":"330100","effective_from":"2024-12-31"}"#;

fn props() -> Value {
    serde_json::from_str(PROPS).unwrap()
}

/// Counter-clockwise square ring.
fn ccw(x: f64, y: f64, h: f64) -> Value {
    json!([[x - h, y - h], [x + h, y - h], [x + h, y + h], [x - h, y + h], [x - h, y - h]])
}

fn cw(x: f64, y: f64, h: f64) -> Value {
    json!([[x - h, y - h], [x - h, y + h], [x + h, y + h], [x + h, y - h], [x - h, y - h]])
}

fn feature(id: Value, geometry: Value, properties: Value) -> Value {
    json!({"type": "Feature", "id": id, "geometry": geometry, "properties": properties})
}

fn poly(rings: Vec<Value>) -> Value {
    json!({"type": "Polygon", "coordinates": rings})
}

fn collection(features: Vec<Value>) -> String {
    json!({"type": "FeatureCollection", "features": features}).to_string()
}

fn lenient() -> ImportOptions {
    ImportOptions { mode: ImportMode::Lenient, ..Default::default() }
}

/// Imports one feature leniently and returns why it was rejected.
fn reject(f: Value) -> FeatureError {
    let imp = import_zones(&collection(vec![f]), &lenient()).unwrap();
    assert!(imp.zones.is_empty(), "{:?}", imp.zones);
    imp.rejected.into_iter().next().unwrap()
}

#[test]
fn valid_polygon_and_multipolygon_with_hole() {
    let mut park = props();
    park["kind"] = json!("park");
    park["enterprise_id"] = json!("ENT-STEEL-001");
    park["schedule"] = json!({"weekly": [{"days": ["mon", "fri"], "start": "22:00", "end": "06:00"}]});
    let multi = json!({"type": "MultiPolygon", "coordinates": [
        [ccw(120.0, 30.0, 0.1), cw(120.0, 30.0, 0.02)],
        [ccw(121.0, 30.0, 0.1)],
    ]});
    let text = collection(vec![
        feature(json!("A"), poly(vec![ccw(120.0, 30.0, 0.1)]), props()),
        feature(json!(7), multi, park),
    ]);
    let imp = import_zones(&text, &ImportOptions::default()).unwrap();
    assert_eq!(imp.zones.len(), 2);
    let a = &imp.zones[0];
    assert_eq!(a.applicability, Applicability::china_iii_diesel_trucks());
    assert_eq!(a.schedule, Schedule::AllDay);
    let b = &imp.zones[1];
    assert_eq!(b.id, "7");
    assert_eq!(b.kind, ZoneKind::Park { enterprise_id: "ENT-STEEL-001".into() });
    assert_eq!(b.geometry.0.len(), 2);
    assert_eq!(b.geometry.0[0].interiors().len(), 1);
    let set = ZoneSet::build(imp.zones, ExemptionBook::default()).unwrap();
    assert_eq!(set.zones_containing(120.05, 30.05).len(), 2);
    assert_eq!(set.zones_containing(120.0, 30.0).len(), 1, "hole of the park");
}

#[test]
fn each_geometry_error_names_feature_and_reason() {
    use FeatureErrorKind as K;
    let r = |rings| feature(json!("F"), poly(rings), props());
    let unclosed = json!([[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1]]);
    let bowtie = json!([[120.0, 30.0], [120.1, 30.1], [120.1, 30.0], [120.0, 30.1], [120.0, 30.0]]);
    let spike =
        json!([[120.0, 30.0], [120.1, 30.0], [120.2, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.0]]);
    let few = json!([[120.0, 30.0], [120.1, 30.0], [120.0, 30.0], [120.0, 30.0]]);
    let out_of_range = json!([[120.0, 30.0], [181.0, 30.0], [120.1, 30.1], [120.0, 30.0]]);
    let short = json!([[120.0, 30.0], [120.1], [120.1, 30.1], [120.0, 30.0]]);
    let flat = json!([[120.0, 30.0], [120.1, 30.0], [120.2, 30.0], [120.0, 30.0]]);
    type Check = fn(&K) -> bool;
    let cases: Vec<(Value, Check)> = vec![
        (r(vec![unclosed]), |k| matches!(k, K::UnclosedRing { ring: RingRef { polygon: 0, ring: 0 } })),
        (r(vec![bowtie]), |k| matches!(k, K::SelfIntersection { .. })),
        (r(vec![spike]), |k| matches!(k, K::SelfIntersection { .. })),
        (r(vec![cw(120.0, 30.0, 0.1)]), |k| {
            matches!(k, K::WrongWinding { ring: RingRef { ring: 0, .. }, .. })
        }),
        (r(vec![ccw(120.0, 30.0, 0.1), ccw(120.0, 30.0, 0.01)]), |k| {
            matches!(k, K::WrongWinding { ring: RingRef { ring: 1, .. }, expected: "clockwise", .. })
        }),
        (r(vec![out_of_range]), |k| matches!(k, K::CoordinateOutOfRange { index: 1, .. })),
        (r(vec![short]), |k| matches!(k, K::ShortPosition { index: 1, .. })),
        (r(vec![few]), |k| matches!(k, K::TooFewPoints { .. })),
        (r(vec![flat]), |k| matches!(k, K::SelfIntersection { .. } | K::ZeroArea { .. })),
        (r(vec![ccw(120.0, 30.0, 0.1), cw(121.0, 30.0, 0.01)]), |k| {
            matches!(k, K::HoleOutsideExterior { .. })
        }),
        (r(vec![ccw(120.0, 30.0, 0.1), cw(120.05, 30.0, 0.1)]), |k| matches!(k, K::RingsCross { .. })),
        (r(vec![ccw(120.0, 30.0, 0.1), cw(120.0, 30.0, 0.05), cw(120.0, 30.0, 0.01)]), |k| {
            matches!(k, K::NestedHole { .. })
        }),
        (
            feature(
                json!("F"),
                json!({"type": "MultiPolygon", "coordinates": [[ccw(120.0, 30.0, 0.1)], [ccw(120.0, 30.0, 0.01)]]}),
                props(),
            ),
            |k| matches!(k, K::OverlappingPolygons { a: 0, b: 1 }),
        ),
        (feature(json!("F"), json!({"type": "Point", "coordinates": [120.0, 30.0]}), props()), |k| {
            matches!(k, K::NotPolygon("Point"))
        }),
        (
            feature(
                json!("F"),
                json!({"type": "LineString", "coordinates": [[120.0, 30.0], [121.0, 30.0]]}),
                props(),
            ),
            |k| matches!(k, K::NotPolygon("LineString")),
        ),
        (feature(json!("F"), json!({"type": "Circle", "coordinates": [120.0, 30.0]}), props()), |k| {
            matches!(k, K::Malformed(_))
        }),
        (feature(json!("F"), Value::Null, props()), |k| matches!(k, K::NoGeometry)),
    ];
    for (i, (f, check)) in cases.into_iter().enumerate() {
        let e = reject(f);
        assert_eq!(e.at.id.as_deref(), Some("F"), "case {i}");
        assert!(check(&e.reason), "case {i}: {e}");
        assert!(e.to_string().starts_with("feature #0 (id \"F\"): "), "{e}");
    }
}

#[test]
fn property_errors_name_the_field() {
    let g = poly(vec![ccw(120.0, 30.0, 0.1)]);
    let with = |k: &str, v: Value| {
        let mut p = props();
        p[k] = v;
        feature(json!("P"), g.clone(), p)
    };
    let mut no_name = props();
    no_name.as_object_mut().unwrap().remove("name");
    let e = reject(feature(json!("P"), g.clone(), no_name));
    assert!(matches!(&e.reason, FeatureErrorKind::Properties(m) if m.contains("name")), "{e}");
    let e = reject(with("kind", json!("low_emission")));
    assert!(matches!(&e.reason, FeatureErrorKind::Properties(m) if m.contains("low_emission")), "{e}");
    let e = reject(with("effective_from", json!("31/12/2024")));
    assert!(matches!(&e.reason, FeatureErrorKind::Properties(_)), "{e}");
    let e =
        reject(with("schedule", json!({"weekly": [{"days": ["mon"], "start": "25:00", "end": "06:00"}]})));
    assert!(matches!(&e.reason, FeatureErrorKind::Properties(m) if m.contains("25:00")), "{e}");
    let e = reject(with("city_code", json!("HZ")));
    assert!(matches!(&e.reason, FeatureErrorKind::Zone(ZoneError::BadCode { .. })), "{e}");
    let e = reject(with("kind", json!("park")));
    assert_eq!(e.reason, FeatureErrorKind::Zone(ZoneError::NoEnterprise));
    let e = reject(feature(json!("P"), g.clone(), Value::Null));
    assert!(matches!(&e.reason, FeatureErrorKind::Properties(_)), "{e}");
    let e = reject(json!({"type": "Feature", "geometry": g, "properties": props()}));
    assert_eq!((e.at.index, e.at.id.clone(), e.reason), (0, None, FeatureErrorKind::MissingId));
}

#[test]
fn strict_fails_whole_import_lenient_keeps_the_rest() {
    let good = feature(json!("ok"), poly(vec![ccw(120.0, 30.0, 0.1)]), props());
    let dup = feature(json!("ok"), poly(vec![ccw(121.0, 30.0, 0.1)]), props());
    let bad = feature(json!("bad"), poly(vec![cw(122.0, 30.0, 0.1)]), props());
    let text = collection(vec![good, dup, bad]);
    let Err(ZoneImportError::Rejected(errs)) = import_zones(&text, &ImportOptions::default()) else {
        panic!("strict import must fail")
    };
    assert_eq!(errs.len(), 2);
    assert_eq!((errs[0].at.index, &errs[0].reason), (1, &FeatureErrorKind::DuplicateId));
    assert_eq!(errs[1].at.id.as_deref(), Some("bad"));
    let imp = import_zones(&text, &lenient()).unwrap();
    assert_eq!(imp.zones.len(), 1);
    assert_eq!(imp.rejected.len(), 2);
    // Winding fix mode accepts the clockwise ring and reports it.
    let fix = ImportOptions { mode: ImportMode::Lenient, winding: WindingPolicy::Fix, ..Default::default() };
    let imp = import_zones(&text, &fix).unwrap();
    assert_eq!(imp.zones.len(), 2);
    assert_eq!(imp.rewound[0].id.as_deref(), Some("bad"));
    assert!(matches!(import_zones("[]", &lenient()), Err(ZoneImportError::NotFeatureCollection(_))));
    assert!(matches!(import_zones("{", &lenient()), Err(ZoneImportError::Json(_))));
}

#[test]
fn gcj02_input_is_converted_to_wgs84() {
    // A square drawn on AMap around a WGS-84 point: after import the point is inside.
    let (wx, wy) = (120.16, 30.27);
    let h = 0.001; // ~100 m, smaller than the GCJ-02 offset (~500 m here)
    let ring: Vec<Value> = [(-h, -h), (h, -h), (h, h), (-h, h), (-h, -h)]
        .iter()
        .map(|(dx, dy)| {
            let (gx, gy) = wgs84_to_gcj02(wx + dx, wy + dy);
            json!([gx, gy])
        })
        .collect();
    let text = collection(vec![feature(json!("g"), poly(vec![Value::Array(ring)]), props())]);
    let as_wgs =
        ZoneSet::build(import_zones(&text, &ImportOptions::default()).unwrap().zones, Default::default())
            .unwrap();
    assert!(as_wgs.zones_containing(wx, wy).is_empty(), "unconverted GCJ-02 misses the point");
    let opts = ImportOptions { coordinates: CoordinateSystem::Gcj02, ..Default::default() };
    let set = ZoneSet::build(import_zones(&text, &opts).unwrap().zones, Default::default()).unwrap();
    assert_eq!(set.zones_containing(wx, wy).len(), 1);
}

#[test]
fn large_ring_validates_quickly() {
    // 50,000 vertices: the segment R-tree keeps validation near-linear.
    let n = 50_000;
    let mut ring: Vec<Value> = (0..n)
        .map(|i| {
            let a = f64::from(i) / f64::from(n) * std::f64::consts::TAU;
            let r = 0.5 + 0.01 * (a * 50.0).sin();
            json!([120.0 + r * a.cos(), 30.0 + r * a.sin()])
        })
        .collect();
    ring.push(ring[0].clone());
    let text = collection(vec![feature(json!("big"), poly(vec![Value::Array(ring)]), props())]);
    let t = std::time::Instant::now();
    let imp = import_zones(&text, &ImportOptions::default()).unwrap();
    assert_eq!(imp.zones.len(), 1);
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
}

#[test]
fn committed_sample_files_import_strictly() {
    use crate::geofence::exemption::import_exemptions;
    let imp =
        import_zones(include_str!("../../data/zones/zhejiang-sample.geojson"), &ImportOptions::default())
            .unwrap();
    assert_eq!(imp.zones.len(), 16);
    let ex = import_exemptions(include_str!("../../data/zones/sample-exemptions.json"), ImportMode::Strict)
        .unwrap();
    assert_eq!(ex.exemptions.len(), 1);
    let cities: HashSet<&str> = imp.zones.iter().map(|z| z.city_code.as_str()).collect();
    for c in [
        "330100", "330200", "330300", "330400", "330500", "330600", "330700", "330800", "330900", "331000",
        "331100",
    ] {
        assert!(cities.contains(c), "{c}");
    }
    assert!(imp.zones.iter().all(|z| z.note.contains("approximate")));
    let set = ZoneSet::build(imp.zones, ExemptionBook::new(ex.exemptions)).unwrap();
    let ids = |lon, lat| set.zones_containing(lon, lat).iter().map(|z| z.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(120.16, 30.27), ["R1-330100-DISTRICTS"]);
    assert!(ids(120.145, 30.245).is_empty(), "West Lake hole");
    assert_eq!(ids(122.30, 29.95), ["R1-330900-DISTRICTS"], "second Zhoushan island");
    assert_eq!(ids(121.80, 29.93), ["PARK-ENT-STEEL-001"]);
    let tonglu = set.get("R1-330122-COUNTY").unwrap();
    let nov1 = 1_761_926_400_000; // 2025-11-01T00:00:00+08:00
    assert!(!tonglu.is_active(nov1 - 1000));
    assert!(tonglu.is_active(nov1));
    assert!(
        matches!(set.get("R1-330200-DISTRICTS").map(|z| &z.schedule), Some(Schedule::Weekly(w)) if w.len() == 2)
    );
}
