//! Generates the sample zone and exemption files in `data/zones/`.
//!
//! The shapes are APPROXIMATE, GENERATED blobs around rough city / county centres: they are not
//! official boundaries and must never be used for enforcement. They exist so the import, index
//! and tracker can be exercised end to end with realistic attributes.
//!
//! Run: `cargo run --example gen_sample_zones` (writes `data/zones/zhejiang-sample.geojson` and
//! `data/zones/sample-exemptions.json`; the output is deterministic).
use serde_json::{json, Value};
use std::f64::consts::TAU;

const NOTE: &str = "approximate, generated, not official boundaries";
/// Policy: every district of the 11 cities restricts China III diesel trucks "by the end of 2024".
const DISTRICTS_FROM: &str = "2024-12-31";
/// Policy: every county and county-level city from 2025-11-01.
const COUNTIES_FROM: &str = "2025-11-01";

/// A smooth star-shaped ring (so always simple), counter-clockwise, closed, 6 decimals.
fn ring(lon: f64, lat: f64, r: f64, seed: f64, clockwise: bool) -> Value {
    let n = 32;
    let mut pts: Vec<Value> = (0..n)
        .map(|i| {
            let a = f64::from(i) / f64::from(n) * TAU;
            let rr = r * (0.85 + 0.1 * (3.0 * a + seed).sin() + 0.05 * (5.0 * a + 2.0 * seed).cos());
            // Stretch east-west by 1/cos(lat) so shapes are roughly round on the ground.
            let x = lon + rr * a.cos() / lat.to_radians().cos();
            let y = lat + rr * a.sin();
            json!([(x * 1e6).round() / 1e6, (y * 1e6).round() / 1e6])
        })
        .collect();
    if clockwise {
        pts.reverse();
    }
    if let Some(first) = pts.first().cloned() {
        pts.push(first);
    }
    Value::Array(pts)
}

fn polygon(rings: Vec<Value>) -> Value {
    json!({ "type": "Polygon", "coordinates": rings })
}

fn feature(id: &str, geometry: Value, mut props: Value) -> Value {
    if let Some(p) = props.as_object_mut() {
        p.insert("note".into(), json!(NOTE));
    }
    json!({ "type": "Feature", "id": id, "geometry": geometry, "properties": props })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // (city code, name, lon, lat, radius °): approximate urban-district centres.
    let cities: [(&str, &str, f64, f64, f64); 11] = [
        ("330100", "杭州市市辖区 Hangzhou districts", 120.16, 30.27, 0.12),
        ("330200", "宁波市市辖区 Ningbo districts", 121.55, 29.87, 0.10),
        ("330300", "温州市市辖区 Wenzhou districts", 120.70, 28.00, 0.08),
        ("330400", "嘉兴市市辖区 Jiaxing districts", 120.76, 30.75, 0.07),
        ("330500", "湖州市市辖区 Huzhou districts", 120.09, 30.89, 0.07),
        ("330600", "绍兴市市辖区 Shaoxing districts", 120.58, 30.03, 0.08),
        ("330700", "金华市市辖区 Jinhua districts", 119.65, 29.08, 0.07),
        ("330800", "衢州市市辖区 Quzhou districts", 118.87, 28.94, 0.06),
        ("330900", "舟山市市辖区 Zhoushan districts", 122.11, 30.02, 0.04),
        ("331000", "台州市市辖区 Taizhou districts", 121.42, 28.66, 0.07),
        ("331100", "丽水市市辖区 Lishui districts", 119.92, 28.45, 0.06),
    ];
    let mut features = Vec::new();
    for (i, (code, name, lon, lat, r)) in cities.iter().enumerate() {
        let seed = i as f64;
        let geometry = match *code {
            // A hole (West Lake scenic area, approximate) to exercise holes.
            "330100" => {
                polygon(vec![ring(*lon, *lat, *r, seed, false), ring(120.145, 30.245, 0.02, 9.0, true)])
            }
            // Two islands (Dinghai, Putuo): a MultiPolygon.
            "330900" => json!({ "type": "MultiPolygon", "coordinates": [
                [ring(*lon, *lat, *r, seed, false)],
                [ring(122.30, 29.95, 0.04, seed + 1.0, false)],
            ]}),
            _ => polygon(vec![ring(*lon, *lat, *r, seed, false)]),
        };
        let mut props = json!({
            "name": format!("{name} (approximate)"),
            "kind": "restriction_zone",
            "city_code": code,
            "county_code": null,
            "effective_from": DISTRICTS_FROM,
            "schedule": "all_day",
            "applicability": {
                "kinds": ["truck"], "fuels": ["diesel"], "max_on_road_stage": "china_iii"
            },
        });
        if *code == "330200" {
            // The sample's one time-windowed zone: weekday peaks, Beijing time.
            props["schedule"] = json!({ "weekly": [
                { "days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "09:00" },
                { "days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00", "end": "19:30" },
            ]});
        }
        features.push(feature(&format!("R1-{code}-DISTRICTS"), geometry, props));
    }
    // Counties from 2025-11-01 (GB/T 2260 codes used as labels; shapes approximate).
    let counties = [
        ("330122", "330100", "桐庐县 Tonglu County", 119.69, 29.80),
        ("330127", "330100", "淳安县 Chun'an County", 119.04, 29.61),
        ("330522", "330500", "长兴县 Changxing County", 119.91, 31.03),
    ];
    for (i, (county, city, name, lon, lat)) in counties.iter().enumerate() {
        features.push(feature(
            &format!("R1-{county}-COUNTY"),
            polygon(vec![ring(*lon, *lat, 0.05, 20.0 + i as f64, false)]),
            json!({
                "name": format!("{name} (approximate)"),
                "kind": "restriction_zone",
                "city_code": city,
                "county_code": county,
                "effective_from": COUNTIES_FROM,
                "schedule": "all_day",
            }),
        ));
    }
    features.push(feature(
        "R6-330114-LEZ",
        polygon(vec![ring(120.49, 30.30, 0.05, 30.0, false)]),
        json!({
            "name": "钱塘区非道路移动机械低排放控制区 Qiantang machinery low-emission zone (approximate)",
            "kind": "machinery_low_emission_zone",
            "city_code": "330100",
            "county_code": "330114",
            "effective_from": "2025-01-01",
            "schedule": "all_day",
            "applicability": {
                "kinds": ["non_road_machine"],
                "max_non_road_stage": "non_road_i",
                "machine_type_max_stage": { "forklift": "non_road_ii" }
            },
        }),
    ));
    features.push(feature(
        "PARK-ENT-STEEL-001",
        polygon(vec![ring(121.80, 29.93, 0.02, 40.0, false)]),
        json!({
            "name": "北仑钢铁园区 Beilun steel works park (approximate)",
            "kind": "park",
            "enterprise_id": "ENT-STEEL-001",
            "city_code": "330200",
            "county_code": "330206",
            "effective_from": "2025-01-01",
            "schedule": "all_day",
            "applicability": { "kinds": ["truck"] },
        }),
    ));
    let count = features.len();
    let fc = json!({
        "type": "FeatureCollection",
        "name": "zhejiang-sample",
        "note": NOTE,
        "features": features,
    });
    std::fs::create_dir_all("data/zones")?;
    std::fs::write("data/zones/zhejiang-sample.geojson", serde_json::to_string_pretty(&fc)? + "\n")?;
    let exemptions = json!([{
        "id": "EX-2025-0001",
        "vin": "LGBH52E07HY000001",
        "zone_id": "R1-330100-DISTRICTS",
        "valid_from": "2025-01-01",
        "valid_until": "2025-12-31",
        "reason": "sample permit (generated): municipal construction haulage",
    }]);
    std::fs::write("data/zones/sample-exemptions.json", serde_json::to_string_pretty(&exemptions)? + "\n")?;
    println!(
        "wrote data/zones/zhejiang-sample.geojson ({count} zones) and data/zones/sample-exemptions.json"
    );
    Ok(())
}
