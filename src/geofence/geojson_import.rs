//! GeoJSON zone import with per-feature validation.
//!
//! # Input
//!
//! A GeoJSON `FeatureCollection` (RFC 7946). Each feature is one zone:
//!
//! - `id` (feature member, string or number, required, unique): the zone id;
//! - `geometry`: `Polygon` or `MultiPolygon`, lon/lat degrees; exterior rings counter-clockwise,
//!   holes clockwise (RFC 7946 §3.1.6); a third coordinate (altitude) is ignored;
//! - `properties` (unknown keys are ignored):
//!
//! | key              | type                    | required | meaning                                       |
//! |------------------|-------------------------|----------|-----------------------------------------------|
//! | `name`           | string                  | yes      | display name, e.g. "杭州市上城区"             |
//! | `kind`           | string                  | yes      | `restriction_zone`, `machinery_low_emission_zone` or `park` |
//! | `enterprise_id`  | string                  | parks    | owner of a park, e.g. "ENT-STEEL-001"        |
//! | `city_code`      | string                  | yes      | GB/T 2260 city code, e.g. "330100"            |
//! | `county_code`    | string or null          | no       | GB/T 2260 district / county code              |
//! | `effective_from` | "YYYY-MM-DD"            | yes      | first day in force, Asia/Shanghai            |
//! | `effective_until`| "YYYY-MM-DD" or null    | no       | last day in force (inclusive)                 |
//! | `schedule`       | `"all_day"` or `{"weekly": [{"days": ["mon",…], "start": "HH:MM", "end": "HH:MM"}]}` | no (all_day) | `end < start` crosses midnight; `end` may be "24:00" |
//! | `applicability`  | object                  | no       | see below; default by kind                    |
//! | `note`           | string                  | no       | provenance ("approximate, generated, …")      |
//!
//! `applicability` = `{"kinds": ["truck" | "non_road_machine"], "fuels": ["diesel", …],
//! "max_on_road_stage": "china_iii", "max_non_road_stage": "non_road_i",
//! "machine_type_max_stage": {"forklift": "non_road_ii"}}`. Defaults: restriction zones = diesel
//! trucks ≤ China III (R1); machinery zones = machinery ≤ Stage I, forklifts ≤ Stage II (R6);
//! parks = every truck.
//!
//! # Validation
//!
//! A feature is rejected, with its index, id and a typed [`FeatureErrorKind`], for: not a
//! feature / malformed JSON, missing or duplicate id, missing geometry, non-polygon geometry, a
//! position with fewer than 2 numbers, coordinates out of range or non-finite, an unclosed ring, a
//! ring with fewer than 4 positions (3 distinct points), a self-intersecting ring (including
//! spikes), rings crossing each other, a hole outside its exterior or inside another hole,
//! overlapping polygons of a multipolygon, a zero-area ring, wrong winding (unless
//! [`WindingPolicy::Fix`]), and missing or invalid properties. Consecutive duplicate positions
//! are dropped silently (common in digitised data, harmless).
//!
//! With [`CoordinateSystem::Gcj02`] the validated coordinates are converted to WGS-84 (inverse
//! transform, < 1 mm error) before geometric checks.
use super::exemption::{import_exemptions, ExemptionBook, ExemptionImportError};
use super::gcj02::gcj02_to_wgs84;
use super::import::{ImportMode, RecordRef};
use super::index::{ZoneSet, ZoneSetError};
use super::pip::PreparedPolygon;
use super::schedule::Schedule;
use super::zone::{Applicability, Zone, ZoneError, ZoneKind};
use chrono::NaiveDate;
use geo::line_intersection::{line_intersection, LineIntersection};
use geo::{Coord, Line, LineString, MultiPolygon, Polygon};
use rstar::primitives::GeomWithData;
use rstar::{RTree, RTreeObject};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoordinateSystem {
    #[default]
    Wgs84,
    /// AMap / Tencent "Mars" coordinates: converted to WGS-84 on import.
    Gcj02,
}

/// What to do with a ring wound the wrong way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindingPolicy {
    /// Reject the feature (RFC 7946 conformance; the default, as the issue asks).
    #[default]
    Reject,
    /// Reverse the ring and report the feature in [`ZoneImport::rewound`] (for pre-RFC files,
    /// whose winding carries no meaning).
    Fix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    pub mode: ImportMode,
    pub coordinates: CoordinateSystem,
    pub winding: WindingPolicy,
}

/// A ring inside a feature's geometry: polygon index, ring index (0 = exterior, k = hole k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRef {
    pub polygon: usize,
    pub ring: usize,
}

impl fmt::Display for RingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ring {
            0 => write!(f, "polygon {} exterior ring", self.polygon),
            k => write!(f, "polygon {} hole {}", self.polygon, k),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureErrorKind {
    #[error("not a valid GeoJSON feature: {0}")]
    Malformed(String),
    #[error("feature has no id")]
    MissingId,
    #[error("duplicate zone id")]
    DuplicateId,
    #[error("feature has no geometry")]
    NoGeometry,
    #[error("geometry is {0}, expected Polygon or MultiPolygon")]
    NotPolygon(&'static str),
    #[error("geometry has no polygons")]
    EmptyGeometry,
    #[error("{ring}: position {index} has fewer than 2 numbers")]
    ShortPosition { ring: RingRef, index: usize },
    #[error("{ring}: position {index} ({lon}, {lat}) is out of range")]
    CoordinateOutOfRange { ring: RingRef, index: usize, lon: f64, lat: f64 },
    #[error("{ring} is not closed (first and last positions differ)")]
    UnclosedRing { ring: RingRef },
    #[error("{ring} has {count} positions, at least 4 (3 distinct points, closed) are needed")]
    TooFewPoints { ring: RingRef, count: usize },
    #[error("{ring} intersects itself")]
    SelfIntersection { ring: RingRef },
    #[error("{a} and {b} cross or overlap")]
    RingsCross { a: RingRef, b: RingRef },
    #[error("{ring} has zero area")]
    ZeroArea { ring: RingRef },
    #[error("{ring} is wound {found}, RFC 7946 requires {expected}")]
    WrongWinding { ring: RingRef, found: &'static str, expected: &'static str },
    #[error("{ring} is not inside its exterior ring")]
    HoleOutsideExterior { ring: RingRef },
    #[error("{ring} is inside another hole")]
    NestedHole { ring: RingRef },
    #[error("polygons {a} and {b} overlap")]
    OverlappingPolygons { a: usize, b: usize },
    #[error("properties: {0}")]
    Properties(String),
    #[error("{0}")]
    Zone(#[from] ZoneError),
}

/// A rejected feature: where it is and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feature {at}: {reason}")]
pub struct FeatureError {
    pub at: RecordRef,
    pub reason: FeatureErrorKind,
}

#[derive(Debug, Clone, Default)]
pub struct ZoneImport {
    pub zones: Vec<Zone>,
    /// Empty in strict mode (any rejection is an error there).
    pub rejected: Vec<FeatureError>,
    /// Features whose winding was reversed under [`WindingPolicy::Fix`].
    pub rewound: Vec<RecordRef>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneImportError {
    #[error("zone file is not JSON: {0}")]
    Json(String),
    #[error("zone file is not a GeoJSON FeatureCollection: {0}")]
    NotFeatureCollection(String),
    #[error("{} feature(s) rejected, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Rejected(Vec<FeatureError>),
}

#[derive(Deserialize)]
struct Properties {
    name: String,
    kind: KindName,
    #[serde(default)]
    enterprise_id: Option<String>,
    city_code: String,
    #[serde(default)]
    county_code: Option<String>,
    effective_from: NaiveDate,
    #[serde(default)]
    effective_until: Option<NaiveDate>,
    #[serde(default)]
    schedule: Schedule,
    #[serde(default)]
    applicability: Option<Applicability>,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KindName {
    RestrictionZone,
    MachineryLowEmissionZone,
    Park,
}

/// Parses a FeatureCollection into zones. See the module documentation for the schema.
pub fn import_zones(text: &str, opts: &ImportOptions) -> Result<ZoneImport, ZoneImportError> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ZoneImportError::Json(e.to_string()))?;
    if doc.get("type").and_then(|t| t.as_str()) != Some("FeatureCollection") {
        return Err(ZoneImportError::NotFeatureCollection("\"type\" is not \"FeatureCollection\"".into()));
    }
    let Some(features) = doc.get("features").and_then(|f| f.as_array()) else {
        return Err(ZoneImportError::NotFeatureCollection("no \"features\" array".into()));
    };
    let mut out = ZoneImport::default();
    let mut ids = HashSet::new();
    for (index, raw) in features.iter().enumerate() {
        let id = match raw.get("id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let at = RecordRef { index, id: id.clone() };
        let result = id
            .filter(|i| !i.trim().is_empty())
            .ok_or(FeatureErrorKind::MissingId)
            .and_then(|id| if ids.insert(id.clone()) { Ok(id) } else { Err(FeatureErrorKind::DuplicateId) })
            .and_then(|id| feature_to_zone(id, raw, opts));
        match result {
            Ok((zone, rewound)) => {
                if rewound {
                    out.rewound.push(at);
                }
                out.zones.push(zone);
            }
            Err(reason) => out.rejected.push(FeatureError { at, reason }),
        }
    }
    if opts.mode == ImportMode::Strict && !out.rejected.is_empty() {
        return Err(ZoneImportError::Rejected(out.rejected));
    }
    Ok(out)
}

fn feature_to_zone(
    id: String,
    raw: &serde_json::Value,
    opts: &ImportOptions,
) -> Result<(Zone, bool), FeatureErrorKind> {
    let feature: geojson::Feature =
        serde_json::from_value(raw.clone()).map_err(|e| FeatureErrorKind::Malformed(e.to_string()))?;
    let props = feature.properties.clone().ok_or_else(|| FeatureErrorKind::Properties("missing".into()))?;
    let props: Properties = serde_json::from_value(serde_json::Value::Object(props))
        .map_err(|e| FeatureErrorKind::Properties(e.to_string()))?;
    let geometry = feature.geometry.ok_or(FeatureErrorKind::NoGeometry)?;
    let polygons = match geometry.value {
        geojson::GeometryValue::Polygon { coordinates } => vec![coordinates],
        geojson::GeometryValue::MultiPolygon { coordinates } => coordinates,
        other => return Err(FeatureErrorKind::NotPolygon(other.type_name())),
    };
    let (geometry, rewound) = build_geometry(&polygons, opts)?;
    let (kind, default_applicability) = match props.kind {
        KindName::RestrictionZone => (ZoneKind::RestrictionZone, Applicability::china_iii_diesel_trucks()),
        KindName::MachineryLowEmissionZone => {
            (ZoneKind::MachineryLowEmissionZone, Applicability::banned_stage_machinery())
        }
        KindName::Park => (
            ZoneKind::Park { enterprise_id: props.enterprise_id.unwrap_or_default() },
            Applicability::all_trucks(),
        ),
    };
    let mut applicability = props.applicability.unwrap_or(default_applicability);
    applicability.machine_type_max_stage =
        applicability.machine_type_max_stage.into_iter().map(|(k, v)| (k.trim().to_lowercase(), v)).collect();
    let zone = Zone {
        id,
        name: props.name,
        kind,
        city_code: props.city_code,
        county_code: props.county_code.filter(|c| !c.is_empty()),
        geometry,
        effective_from: props.effective_from,
        effective_until: props.effective_until,
        schedule: props.schedule,
        applicability,
        note: props.note,
    };
    zone.validate()?;
    Ok((zone, rewound))
}

/// A validated ring and where it is in the feature.
type Ring = (RingRef, Vec<Coord<f64>>);

/// Validated, converted rings, then topology checks across all rings of the feature.
fn build_geometry(
    polygons: &[Vec<Vec<geojson::Position>>],
    opts: &ImportOptions,
) -> Result<(MultiPolygon<f64>, bool), FeatureErrorKind> {
    if polygons.is_empty() {
        return Err(FeatureErrorKind::EmptyGeometry);
    }
    let mut rings: Vec<Vec<Ring>> = Vec::with_capacity(polygons.len());
    for (pi, poly) in polygons.iter().enumerate() {
        if poly.is_empty() {
            return Err(FeatureErrorKind::EmptyGeometry);
        }
        let mut out = Vec::with_capacity(poly.len());
        for (ri, ring) in poly.iter().enumerate() {
            let r = RingRef { polygon: pi, ring: ri };
            out.push((r, ring_coords(r, ring, opts.coordinates)?));
        }
        rings.push(out);
    }
    check_crossings(&rings)?;
    let mut rewound = false;
    for poly in &mut rings {
        for (r, coords) in poly.iter_mut() {
            let area = signed_area(coords);
            if area == 0.0 {
                return Err(FeatureErrorKind::ZeroArea { ring: *r });
            }
            let want_ccw = r.ring == 0;
            if (area > 0.0) != want_ccw {
                if opts.winding == WindingPolicy::Fix {
                    coords.reverse();
                    rewound = true;
                } else {
                    let (found, expected) = if want_ccw {
                        ("clockwise", "counter-clockwise")
                    } else {
                        ("counter-clockwise", "clockwise")
                    };
                    return Err(FeatureErrorKind::WrongWinding { ring: *r, found, expected });
                }
            }
        }
    }
    let polys: Vec<Polygon<f64>> = rings
        .into_iter()
        .map(|poly| {
            let mut it = poly.into_iter().map(|(_, c)| LineString(c));
            let ext = it.next().unwrap_or_else(|| LineString(vec![]));
            Polygon::new(ext, it.collect())
        })
        .collect();
    check_containment(&polys)?;
    Ok((MultiPolygon(polys), rewound))
}

fn ring_coords(
    r: RingRef,
    ring: &[geojson::Position],
    cs: CoordinateSystem,
) -> Result<Vec<Coord<f64>>, FeatureErrorKind> {
    let mut coords: Vec<Coord<f64>> = Vec::with_capacity(ring.len());
    for (index, p) in ring.iter().enumerate() {
        let &[lon, lat, ..] = p.as_slice() else {
            return Err(FeatureErrorKind::ShortPosition { ring: r, index });
        };
        if !(lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat))
        {
            return Err(FeatureErrorKind::CoordinateOutOfRange { ring: r, index, lon, lat });
        }
        let c = Coord { x: lon, y: lat };
        if coords.last() != Some(&c) {
            coords.push(c);
        }
    }
    if ring.len() >= 2 && ring.first().map(|p| p.as_slice()) != ring.last().map(|p| p.as_slice()) {
        return Err(FeatureErrorKind::UnclosedRing { ring: r });
    }
    // After dropping repeats, a closed ring of 3 distinct points has 4 coordinates.
    if coords.len() < 4 {
        return Err(FeatureErrorKind::TooFewPoints { ring: r, count: ring.len() });
    }
    if cs == CoordinateSystem::Gcj02 {
        // Identical input positions (the closing one) convert to identical output.
        for c in &mut coords {
            let (x, y) = gcj02_to_wgs84(c.x, c.y);
            *c = Coord { x, y };
        }
    }
    Ok(coords)
}

/// Shoelace formula: positive for counter-clockwise rings (x east, y north).
fn signed_area(c: &[Coord<f64>]) -> f64 {
    c.windows(2)
        .map(|w| match w {
            [a, b] => a.x * b.y - b.x * a.y,
            _ => 0.0,
        })
        .sum::<f64>()
        / 2.0
}

#[derive(Clone, Copy, PartialEq)]
struct SegId {
    polygon: u32,
    ring: u32,
    seg: u32,
    ring_segs: u32,
}

/// Finds self-intersections and ring crossings with an R-tree of segments: O(n log n) for real
/// boundaries with tens of thousands of vertices, where the naive pairwise test is not usable.
fn check_crossings(rings: &[Vec<Ring>]) -> Result<(), FeatureErrorKind> {
    let mut segs = Vec::new();
    for (pi, poly) in rings.iter().enumerate() {
        for (ri, (_, coords)) in poly.iter().enumerate() {
            let ring_segs = u32::try_from(coords.len().saturating_sub(1)).unwrap_or(u32::MAX);
            for (si, w) in coords.windows(2).enumerate() {
                if let [a, b] = w {
                    let id = SegId {
                        polygon: u32::try_from(pi).unwrap_or(u32::MAX),
                        ring: u32::try_from(ri).unwrap_or(u32::MAX),
                        seg: u32::try_from(si).unwrap_or(u32::MAX),
                        ring_segs,
                    };
                    segs.push(GeomWithData::new(Line::new(*a, *b), id));
                }
            }
        }
    }
    let tree = RTree::bulk_load(segs.clone());
    let ring_ref = |s: &SegId| RingRef { polygon: s.polygon as usize, ring: s.ring as usize };
    for s in &segs {
        for o in tree.locate_in_envelope_intersecting(&s.envelope()) {
            let (a, b) = (s.data, o.data);
            if (b.polygon, b.ring, b.seg) <= (a.polygon, a.ring, a.seg) {
                continue; // each pair once, and not with itself
            }
            let Some(x) = line_intersection(*s.geom(), *o.geom()) else { continue };
            let same_ring = a.polygon == b.polygon && a.ring == b.ring;
            let adjacent = same_ring && (b.seg == a.seg + 1 || (a.seg == 0 && b.seg + 1 == a.ring_segs));
            let bad = match x {
                LineIntersection::Collinear { .. } => true,
                LineIntersection::SinglePoint { is_proper, .. } => {
                    if adjacent {
                        false // the shared vertex
                    } else if same_ring {
                        true
                    } else {
                        is_proper // different rings may touch at a point
                    }
                }
            };
            if bad {
                return Err(if same_ring {
                    FeatureErrorKind::SelfIntersection { ring: ring_ref(&a) }
                } else {
                    FeatureErrorKind::RingsCross { a: ring_ref(&a), b: ring_ref(&b) }
                });
            }
        }
    }
    Ok(())
}

/// With no crossings left, one interior point of a ring decides which side of another ring the
/// whole ring is on. The midpoint of a ring's first segment is used: a vertex may lie on the
/// other ring (touching is allowed), a midpoint only if segments overlap, already rejected.
fn probe(ring: &LineString<f64>) -> Option<(f64, f64)> {
    match ring.0.as_slice() {
        [a, b, ..] => Some(((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)),
        _ => None,
    }
}

fn check_containment(polys: &[Polygon<f64>]) -> Result<(), FeatureErrorKind> {
    for (pi, p) in polys.iter().enumerate() {
        let ext = PreparedPolygon::new(&Polygon::new(p.exterior().clone(), vec![]));
        let holes: Vec<PreparedPolygon> =
            p.interiors().iter().map(|h| PreparedPolygon::new(&Polygon::new(h.clone(), vec![]))).collect();
        for (hi, h) in p.interiors().iter().enumerate() {
            let ring = RingRef { polygon: pi, ring: hi + 1 };
            let Some((x, y)) = probe(h) else { continue };
            if !ext.contains(x, y) {
                return Err(FeatureErrorKind::HoleOutsideExterior { ring });
            }
            if holes.iter().enumerate().any(|(j, o)| j != hi && o.contains(x, y)) {
                return Err(FeatureErrorKind::NestedHole { ring });
            }
        }
    }
    if polys.len() > 1 {
        let prepared: Vec<PreparedPolygon> = polys.iter().map(PreparedPolygon::new).collect();
        for (a, pa) in polys.iter().enumerate() {
            let Some((x, y)) = probe(pa.exterior()) else { continue };
            if let Some(b) = prepared.iter().enumerate().position(|(b, pb)| b != a && pb.contains(x, y)) {
                return Err(FeatureErrorKind::OverlappingPolygons { a: a.min(b), b: a.max(b) });
            }
        }
    }
    Ok(())
}

/// Everything that can go wrong loading zone and exemption files into a [`ZoneSet`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Zones { path: String, source: ZoneImportError },
    #[error("{path}: {source}")]
    Exemptions { path: String, source: ExemptionImportError },
    #[error("building the zone set: {0}")]
    ZoneSet(#[from] ZoneSetError),
}

/// What a load accepted with warnings (lenient mode, rewound rings, rejected exemptions).
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub zones: usize,
    pub exemptions: usize,
    pub rejected_features: Vec<FeatureError>,
    pub rewound: Vec<RecordRef>,
    pub rejected_exemptions: Vec<super::import::RecordError>,
}

/// Reads a zone GeoJSON file and, optionally, an exemptions JSON file, into a ready [`ZoneSet`].
pub fn load_zone_set(
    zones_path: &Path,
    exemptions_path: Option<&Path>,
    opts: &ImportOptions,
) -> Result<(ZoneSet, LoadReport), LoadError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| LoadError::Io { path: p.display().to_string(), source })
    };
    let zones = import_zones(&read(zones_path)?, opts)
        .map_err(|source| LoadError::Zones { path: zones_path.display().to_string(), source })?;
    let exemptions = match exemptions_path {
        Some(p) => import_exemptions(&read(p)?, opts.mode)
            .map_err(|source| LoadError::Exemptions { path: p.display().to_string(), source })?,
        None => Default::default(),
    };
    let report = LoadReport {
        zones: zones.zones.len(),
        exemptions: exemptions.exemptions.len(),
        rejected_features: zones.rejected,
        rewound: zones.rewound,
        rejected_exemptions: exemptions.rejected,
    };
    let set = ZoneSet::build(zones.zones, ExemptionBook::new(exemptions.exemptions))?;
    Ok((set, report))
}

#[cfg(test)]
#[path = "geojson_import_tests.rs"]
mod tests;
