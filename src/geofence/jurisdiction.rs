//! Where a violation happened, for police jurisdiction. A violation with a valid position takes
//! its city (and county, when known) from the zone outlines that contain that position: the
//! zone catalogue's district, county and park outlines each carry their GB/T 2260 codes. The
//! most specific outline wins (one with a county code over a city-only one; ties by zone id, so
//! the answer does not depend on import order).
//!
//! Without an outline covering the position (no zones loaded, or a point outside all of them)
//! the violation keeps the vehicle's registered city: jurisdiction is then the home city, as
//! documented in `docs/rules.md`.
use super::{Zone, ZoneSet};
use crate::model::Violation;

/// The outline giving the jurisdiction of (lon, lat), if any.
pub fn area_at(zones: &ZoneSet, lon: f64, lat: f64) -> Option<&Zone> {
    zones
        .zones_containing(lon, lat)
        .into_iter()
        .filter(|z| !z.city_code.is_empty())
        .max_by(|a, b| a.county_code.is_some().cmp(&b.county_code.is_some()).then_with(|| b.id.cmp(&a.id)))
}

/// Sets the violation's city and county from its position; false (unchanged) when it has no
/// valid position or no outline covers it.
pub fn place(zones: &ZoneSet, v: &mut Violation) -> bool {
    let Some(fix) = v.position.filter(|f| f.valid && f.in_range()) else {
        return false;
    };
    let Some(area) = area_at(zones, fix.lon, fix.lat) else {
        return false;
    };
    v.city_code = Some(area.city_code.clone());
    v.county_code = area.county_code.clone();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::{import_zones, ExemptionBook, ImportOptions};
    use crate::model::{Fix, Vin, ViolationId, ViolationStatus};

    fn sample() -> ZoneSet {
        let zones = import_zones(crate::zones::SAMPLE_ZONES, &ImportOptions::default()).unwrap().zones;
        ZoneSet::build(zones, ExemptionBook::default()).unwrap()
    }

    fn violation_at(lon: f64, lat: f64, valid: bool) -> Violation {
        let vin = Vin::parse("LZZ5BLSJ3DA001412").unwrap();
        Violation {
            id: ViolationId::derive(&vin, "R3", "", 0),
            rule: "R3".into(),
            vin,
            plate: String::new(),
            status: ViolationStatus::Open,
            late: false,
            started_ms: 0,
            ended_ms: None,
            position: Some(Fix { lon, lat, valid }),
            zone_id: None,
            city_code: Some("330100".into()),
            county_code: None,
            summary: String::new(),
            thresholds: serde_json::Value::Null,
            measured: None,
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_position_decides_not_the_home_city() {
        let zones = sample();
        let ningbo = zones.get("R1-330200-DISTRICTS").unwrap();
        let c = geo::InteriorPoint::interior_point(&ningbo.geometry).unwrap();
        let mut v = violation_at(c.x(), c.y(), true);
        assert!(place(&zones, &mut v));
        assert_eq!(v.city_code.as_deref(), Some("330200"));
        // Outside every outline (the East China Sea): the home city stays.
        let mut v = violation_at(123.5, 29.0, true);
        assert!(!place(&zones, &mut v));
        assert_eq!(v.city_code.as_deref(), Some("330100"));
        // An invalid fix is never used.
        let mut v = violation_at(c.x(), c.y(), false);
        assert!(!place(&zones, &mut v));
        assert_eq!(v.city_code.as_deref(), Some("330100"));
    }

    #[test]
    fn a_county_outline_is_more_specific_than_a_city_one() {
        let zones = sample();
        for county in zones.iter().filter(|z| z.county_code.is_some()) {
            let c = geo::InteriorPoint::interior_point(&county.geometry).unwrap();
            let mut v = violation_at(c.x(), c.y(), true);
            assert!(place(&zones, &mut v));
            let area = area_at(&zones, c.x(), c.y()).unwrap();
            assert!(area.county_code.is_some(), "{} at {c:?}", county.id);
            assert_eq!(v.county_code, area.county_code);
        }
    }
}
