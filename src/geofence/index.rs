//! `ZoneSet`: an immutable snapshot of every zone plus ONE spatial index over all of them.
//!
//! Lookup is two-stage: the bounding boxes of every zone part (each polygon of a multipolygon is a
//! separate entry, so a city made of a mainland and islands does not produce one huge box) give
//! candidates; each candidate is then tested exactly with its prepared polygon
//! ([`super::pip`]), whose boundary semantics apply.
//!
//! The part boxes are held in one rstar R-tree (envelope queries, and the reference for
//! point queries) and flattened into a uniform grid for point queries: `benches/geofence.rs`
//! measured the R-tree point query at ~1.5 µs over 10,000 zones (tree descent with overlapping
//! nodes), the grid lookup at one cell plus a few boxes. The grid's cell size follows the median
//! part size and its cell count is capped, so a sparse zone set spread over the country stays
//! small (dense cells then just hold more candidates).
//!
//! Memory layout is what the point query costs (the arithmetic is a few dozen flops): a grid
//! item carries its part's bounding box and band parameters inline, and the bands and edges of
//! every part of every zone live in two flat arrays ([`PackedParts`]). A candidate thus costs
//! the grid cell, one band-table entry and the band's edges, with no pointer to follow.
//!
//! A `ZoneSet` is never mutated: edits produce a new set (sharing unchanged zones through `Arc`
//! and copying their prepared parts, not preparing them again) that
//! [`ZoneRegistry`](super::ZoneRegistry) swaps in atomically.
use super::exemption::{Exemption, ExemptionBook};
use super::pip::{Band, Edge, PolygonHead, PolygonRef, PreparedPolygon};
use super::zone::{Zone, ZoneError};
use crate::model::{TimestampMs, Vehicle};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, RTreeObject};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// A part's box with (zone, part) indexes.
type PartEntry = GeomWithData<Rectangle<[f64; 2]>, (u32, u32)>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneSetError {
    #[error("zone id {0:?} appears more than once")]
    DuplicateId(String),
    #[error("zone {id:?}: {source}")]
    Invalid { id: String, source: ZoneError },
    #[error("more than u32::MAX zones, parts or edges")]
    TooMany,
}

/// The prepared polygons of every part of every zone, packed: part `i` is `heads[i]` read against
/// the shared band and edge tables.
#[derive(Debug, Default)]
struct PackedParts {
    heads: Vec<PolygonHead>,
    bands: Vec<Band>,
    edges: Vec<Edge>,
}

impl PackedParts {
    fn get(&self, part: u32) -> Option<PolygonRef<'_>> {
        let head = self.heads.get(part as usize)?;
        Some(PolygonRef { head, bands: &self.bands, edges: &self.edges })
    }

    fn push(&mut self, p: PolygonRef<'_>) -> Result<u32, ZoneSetError> {
        let part = u32::try_from(self.heads.len()).map_err(|_| ZoneSetError::TooMany)?;
        let head = p.pack_into(&mut self.bands, &mut self.edges).ok_or(ZoneSetError::TooMany)?;
        self.heads.push(head);
        Ok(part)
    }
}

/// The spatial side of a snapshot, shared by snapshots that differ only in exemptions.
#[derive(Debug, Default)]
struct Index {
    parts: PackedParts,
    /// `zone_parts[z]`: the range of `parts` holding zone `z`'s polygons.
    zone_parts: Vec<Range<u32>>,
    tree: RTree<PartEntry>,
    grid: Grid,
}

/// Where a zone's prepared parts come from when a snapshot is built.
enum Source<'a> {
    Prepare,
    CopyFrom(&'a Index, Range<u32>),
}

impl Index {
    fn build(zones: &[(Arc<Zone>, Source<'_>)]) -> Result<Index, ZoneSetError> {
        let mut parts = PackedParts::default();
        let mut zone_parts = Vec::with_capacity(zones.len());
        let mut entries = Vec::new();
        for (i, (z, source)) in zones.iter().enumerate() {
            let zi = u32::try_from(i).map_err(|_| ZoneSetError::TooMany)?;
            let first = u32::try_from(parts.heads.len()).map_err(|_| ZoneSetError::TooMany)?;
            match source {
                Source::Prepare => {
                    for poly in &z.geometry.0 {
                        parts.push(PreparedPolygon::new(poly).as_ref())?;
                    }
                }
                Source::CopyFrom(old, range) => {
                    for p in range.clone() {
                        if let Some(r) = old.parts.get(p) {
                            parts.push(r)?;
                        }
                    }
                }
            }
            let last = u32::try_from(parts.heads.len()).map_err(|_| ZoneSetError::TooMany)?;
            for p in first..last {
                let Some([x0, y0, x1, y1]) = parts.get(p).map(|r| r.head.bbox()) else { continue };
                if x0 <= x1 && y0 <= y1 {
                    entries.push(GeomWithData::new(Rectangle::from_corners([x0, y0], [x1, y1]), (zi, p)));
                }
            }
            zone_parts.push(first..last);
        }
        let grid = Grid::new(&entries, &parts);
        Ok(Index { parts, zone_parts, tree: RTree::bulk_load(entries), grid })
    }
}

/// Immutable snapshot: zones, their index, and the exemptions in force.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: Vec<Arc<Zone>>,
    by_id: HashMap<String, u32>,
    index: Arc<Index>,
    exemptions: Arc<ExemptionBook>,
    version: u64,
}

/// Index of a zone inside one `ZoneSet` (not stable across snapshots: use the zone id for that).
pub type ZoneIdx = u32;

impl ZoneSet {
    pub fn empty() -> Self {
        ZoneSet::default()
    }

    /// Validates and indexes `zones`. Ids must be unique.
    pub fn build(zones: Vec<Zone>, exemptions: ExemptionBook) -> Result<Self, ZoneSetError> {
        for z in &zones {
            z.validate().map_err(|source| ZoneSetError::Invalid { id: z.id.clone(), source })?;
        }
        let sources = zones.into_iter().map(|z| (Arc::new(z), Source::Prepare)).collect();
        Self::assemble(sources, Arc::new(exemptions), 1)
    }

    fn assemble(
        sources: Vec<(Arc<Zone>, Source<'_>)>,
        exemptions: Arc<ExemptionBook>,
        version: u64,
    ) -> Result<Self, ZoneSetError> {
        let mut by_id = HashMap::with_capacity(sources.len());
        for (i, (z, _)) in sources.iter().enumerate() {
            let zi = u32::try_from(i).map_err(|_| ZoneSetError::TooMany)?;
            if by_id.insert(z.id.clone(), zi).is_some() {
                return Err(ZoneSetError::DuplicateId(z.id.clone()));
            }
        }
        let index = Arc::new(Index::build(&sources)?);
        let zones = sources.into_iter().map(|(z, _)| z).collect();
        Ok(ZoneSet { zones, by_id, index, exemptions, version })
    }

    /// Zone `i` of this snapshot, to be carried into the next one without preparing it again.
    fn kept(&self, i: usize) -> Option<(Arc<Zone>, Source<'_>)> {
        let z = self.zones.get(i)?.clone();
        let parts = self.index.zone_parts.get(i)?.clone();
        Some((z, Source::CopyFrom(&self.index, parts)))
    }

    /// A new snapshot with `zones` added or replacing the zones of the same id.
    pub fn with_upserted(&self, zones: Vec<Zone>) -> Result<Self, ZoneSetError> {
        let mut all: Vec<(Arc<Zone>, Source<'_>)> =
            (0..self.zones.len()).filter_map(|i| self.kept(i)).collect();
        let mut pos: HashMap<String, usize> =
            all.iter().enumerate().map(|(i, (z, _))| (z.id.clone(), i)).collect();
        for z in zones {
            z.validate().map_err(|source| ZoneSetError::Invalid { id: z.id.clone(), source })?;
            let id = z.id.clone();
            let fresh = (Arc::new(z), Source::Prepare);
            match pos.get(&id) {
                Some(&i) => {
                    if let Some(slot) = all.get_mut(i) {
                        *slot = fresh;
                    }
                }
                None => {
                    pos.insert(id, all.len());
                    all.push(fresh);
                }
            }
        }
        Self::assemble(all, self.exemptions.clone(), self.version + 1)
    }

    /// A new snapshot without the zones whose ids are listed (unknown ids are ignored).
    pub fn without(&self, ids: &[&str]) -> Self {
        let keep: Vec<_> = (0..self.zones.len())
            .filter(|&i| self.zones.get(i).is_some_and(|z| !ids.contains(&z.id.as_str())))
            .filter_map(|i| self.kept(i))
            .collect();
        // Ids were unique in `self`, so they are in any subset, and a subset's parts fit where
        // the whole set's did: rebuilding cannot fail.
        Self::assemble(keep, self.exemptions.clone(), self.version + 1).unwrap_or_default()
    }

    /// A new snapshot with the same zones (and index) and another exemption book.
    pub fn with_exemptions(&self, exemptions: ExemptionBook) -> Self {
        ZoneSet {
            zones: self.zones.clone(),
            by_id: self.by_id.clone(),
            index: self.index.clone(),
            exemptions: Arc::new(exemptions),
            version: self.version + 1,
        }
    }

    pub(crate) fn with_version(mut set: ZoneSet, version: u64) -> ZoneSet {
        set.version = version;
        set
    }

    /// Increases by one with every derived snapshot (for logs and metrics).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn zone(&self, idx: ZoneIdx) -> Option<&Zone> {
        self.zones.get(idx as usize).map(|z| &**z)
    }

    pub fn get(&self, id: &str) -> Option<&Zone> {
        self.index_of(id).and_then(|i| self.zone(i))
    }

    pub fn index_of(&self, id: &str) -> Option<ZoneIdx> {
        self.by_id.get(id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter().map(|z| &**z)
    }

    pub fn exemptions(&self) -> &ExemptionBook {
        &self.exemptions
    }

    /// The permit exempting `v` from `zone` at `at_ms`, if any.
    pub fn exemption(&self, zone: &Zone, v: &Vehicle, at_ms: TimestampMs) -> Option<&Exemption> {
        zone.exemption(v, at_ms, &self.exemptions)
    }

    /// Edge-band incidences stored for all parts (32 bytes each): the bulk of the index's memory.
    pub fn stored_edges(&self) -> usize {
        self.index.parts.edges.len()
    }

    /// Appends to `out` the index of every zone containing (lon, lat), each once, in no
    /// particular order. `out` is not cleared, so a caller can reuse one buffer.
    pub fn zones_at(&self, lon: f64, lat: f64, out: &mut Vec<ZoneIdx>) {
        if !(lon.is_finite() && lat.is_finite()) {
            return;
        }
        let start = out.len();
        let parts = &self.index.parts;
        for it in self.index.grid.candidates(lon, lat) {
            let poly = PolygonRef { head: &it.head, bands: &parts.bands, edges: &parts.edges };
            if poly.contains(lon, lat) && !out.get(start..).unwrap_or(&[]).contains(&it.zone) {
                out.push(it.zone);
            }
        }
    }

    /// The same as [`zones_at`](Self::zones_at) through the R-tree instead of the grid (kept as a
    /// cross-check in tests and for the bench comparison).
    #[doc(hidden)]
    pub fn zones_at_rtree(&self, lon: f64, lat: f64, out: &mut Vec<ZoneIdx>) {
        let start = out.len();
        for e in self.index.tree.locate_all_at_point(&[lon, lat]) {
            let (zi, part) = e.data;
            let hit = self.index.parts.get(part).is_some_and(|p| p.contains(lon, lat));
            if hit && !out.get(start..).unwrap_or(&[]).contains(&zi) {
                out.push(zi);
            }
        }
    }

    /// Zones whose bounding box intersects the rectangle (lon/lat degrees), e.g. for map views.
    pub fn zones_near(&self, min: [f64; 2], max: [f64; 2]) -> Vec<ZoneIdx> {
        let env = rstar::AABB::from_corners(min, max);
        let mut v: Vec<ZoneIdx> =
            self.index.tree.locate_in_envelope_intersecting(&env).map(|e| e.data.0).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Convenience: the zones containing (lon, lat).
    pub fn zones_containing(&self, lon: f64, lat: f64) -> Vec<&Zone> {
        let mut idx = Vec::new();
        self.zones_at(lon, lat, &mut idx);
        idx.into_iter().filter_map(|i| self.zone(i)).collect()
    }

    /// Reference implementation for tests and benches: every zone, `geo::Contains`, no index.
    #[doc(hidden)]
    pub fn zones_at_brute_force(&self, lon: f64, lat: f64) -> Vec<ZoneIdx> {
        use geo::Contains;
        let p = geo::Point::new(lon, lat);
        (0..self.zones.len())
            .filter(|&i| self.zones.get(i).is_some_and(|z| z.geometry.contains(&p)))
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    }
}

/// Uniform grid over the extent of all part boxes; each cell lists the parts whose box overlaps it.
#[derive(Debug, Clone, Default)]
struct Grid {
    min_x: f64,
    min_y: f64,
    cells_per_deg: f64,
    nx: usize,
    ny: usize,
    /// `start[c]..start[c + 1]` indexes `items` for cell `c = row * nx + col`.
    start: Vec<u32>,
    items: Vec<GridItem>,
}

/// A part with its head (box and band parameters) inline, so that a candidate is rejected by its
/// box, or tested, without another lookup.
#[derive(Debug, Clone, Copy)]
struct GridItem {
    head: PolygonHead,
    zone: u32,
}

/// A part's box corners and (zone, part) indexes.
type PartBox = ([f64; 2], [f64; 2], (u32, u32));

/// Upper bound on grid cells (4 bytes each in `start`).
const MAX_CELLS: f64 = 1_048_576.0;

impl Grid {
    fn new(entries: &[PartEntry], parts: &PackedParts) -> Grid {
        let boxes: Vec<PartBox> = entries
            .iter()
            .map(|e| {
                let env = e.geom().envelope();
                (env.lower(), env.upper(), e.data)
            })
            .filter(|(lo, hi, _)| lo.iter().chain(hi).all(|v| v.is_finite()))
            .collect();
        if boxes.is_empty() {
            return Grid::default();
        }
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        let mut sizes = Vec::with_capacity(boxes.len());
        for (l, h, _) in &boxes {
            lo = [lo[0].min(l[0]), lo[1].min(l[1])];
            hi = [hi[0].max(h[0]), hi[1].max(h[1])];
            sizes.push((h[0] - l[0]).max(h[1] - l[1]));
        }
        sizes.sort_unstable_by(f64::total_cmp);
        let median = sizes.get(sizes.len() / 2).copied().unwrap_or(1.0).max(1e-6);
        let (w, h) = ((hi[0] - lo[0]).max(1e-9), (hi[1] - lo[1]).max(1e-9));
        // Cells of half the median part size (fewer candidates per cell; measured), fewer cells
        // if that would exceed MAX_CELLS.
        let mut cells_per_deg = 2.0 / median;
        let cells = w * h * cells_per_deg * cells_per_deg;
        if cells > MAX_CELLS {
            cells_per_deg *= (MAX_CELLS / cells).sqrt();
        }
        let nx = ((w * cells_per_deg) as usize + 1).max(1);
        let ny = ((h * cells_per_deg) as usize + 1).max(1);
        let mut g =
            Grid { min_x: lo[0], min_y: lo[1], cells_per_deg, nx, ny, start: Vec::new(), items: Vec::new() };
        let mut counts = vec![0u32; nx * ny + 1];
        for (l, h, _) in &boxes {
            let (c0, r0, c1, r1) = (g.col(l[0]), g.row(l[1]), g.col(h[0]), g.row(h[1]));
            for r in r0..=r1 {
                for c in counts.iter_mut().skip(r * nx + c0 + 1).take(c1 - c0 + 1) {
                    *c += 1;
                }
            }
        }
        let mut acc = 0u32;
        for c in &mut counts {
            acc += *c;
            *c = acc;
        }
        let mut fill = counts.clone();
        let placeholder = GridItem { head: PolygonHead::default(), zone: 0 };
        let mut items = vec![placeholder; counts.last().copied().unwrap_or(0) as usize];
        for (l, h, data) in &boxes {
            let Some(part) = parts.get(data.1) else { continue };
            let item = GridItem { head: *part.head, zone: data.0 };
            let (c0, r0, c1, r1) = (g.col(l[0]), g.row(l[1]), g.col(h[0]), g.row(h[1]));
            for r in r0..=r1 {
                for slot in fill.iter_mut().skip(r * nx + c0).take(c1 - c0 + 1) {
                    if let Some(it) = items.get_mut(*slot as usize) {
                        *it = item;
                    }
                    *slot += 1;
                }
            }
        }
        g.start = counts;
        g.items = items;
        g
    }

    /// Column of a longitude, clamped to the grid (callers check the extent first).
    fn col(&self, x: f64) -> usize {
        (((x - self.min_x) * self.cells_per_deg) as usize).min(self.nx.saturating_sub(1))
    }

    fn row(&self, y: f64) -> usize {
        (((y - self.min_y) * self.cells_per_deg) as usize).min(self.ny.saturating_sub(1))
    }

    /// Parts whose bounding box overlaps the point's cell (a superset of the parts containing it).
    #[inline]
    fn candidates(&self, x: f64, y: f64) -> &[GridItem] {
        let (dx, dy) = ((x - self.min_x) * self.cells_per_deg, (y - self.min_y) * self.cells_per_deg);
        // Also rejects NaN, and the empty grid (nx = ny = 0).
        if !(dx >= 0.0 && dy >= 0.0 && dx < self.nx as f64 && dy < self.ny as f64) {
            return &[];
        }
        let c = (dy as usize) * self.nx + dx as usize;
        match (self.start.get(c), self.start.get(c + 1)) {
            (Some(&a), Some(&b)) => self.items.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::zone::tests::{date, r1_zone, square};
    use geo::{LineString, MultiPolygon, Polygon};
    use proptest::prelude::*;

    fn blob(cx: f64, cy: f64, r: f64, n: usize, seed: u64) -> Polygon<f64> {
        let mut s = seed;
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let jitter = 0.6 + 0.4 * ((s >> 33) as f64 / f64::from(u32::MAX));
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                (cx + r * jitter * a.cos(), cy + r * jitter * a.sin())
            })
            .collect();
        Polygon::new(LineString::from(pts), vec![])
    }

    fn set_of(n: usize) -> ZoneSet {
        let zones = (0..n)
            .map(|i| {
                let mut z = r1_zone(&format!("z{i}"), date(2024, 12, 31));
                let cx = 118.0 + (i * 37 % 100) as f64 * 0.05;
                let cy = 27.0 + (i * 53 % 84) as f64 * 0.05;
                let mut parts = vec![blob(cx, cy, 0.08, 20 + i * 7 % 300, i as u64)];
                if i % 5 == 0 {
                    parts.push(blob(cx + 0.3, cy, 0.05, 30, i as u64 + 1000));
                }
                if i % 7 == 0 {
                    let hole = blob(cx, cy, 0.03, 12, i as u64 + 77);
                    let (ext, _) = parts.swap_remove(0).into_inner();
                    let mut h = hole.exterior().clone();
                    h.0.reverse();
                    parts.push(Polygon::new(ext, vec![h]));
                }
                z.geometry = MultiPolygon(parts);
                z
            })
            .collect();
        ZoneSet::build(zones, ExemptionBook::default()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn index_agrees_with_brute_force(lon in 117.8f64..123.5, lat in 26.8f64..31.5) {
            let set = SET.with(|s| s.clone());
            let mut got = Vec::new();
            set.zones_at(lon, lat, &mut got);
            got.sort_unstable();
            let mut via_tree = Vec::new();
            set.zones_at_rtree(lon, lat, &mut via_tree);
            via_tree.sort_unstable();
            prop_assert_eq!(&got, &set.zones_at_brute_force(lon, lat));
            prop_assert_eq!(got, via_tree);
        }
    }

    thread_local! {
        static SET: Arc<ZoneSet> = Arc::new(set_of(400));
    }

    #[test]
    fn hole_is_outside() {
        let mut z = r1_zone("h", date(2024, 12, 31));
        let outer = square(120.0, 30.0, 0.1).0.remove(0);
        let mut hole = square(120.0, 30.0, 0.02).0.remove(0).exterior().clone();
        hole.0.reverse();
        z.geometry = MultiPolygon(vec![Polygon::new(outer.exterior().clone(), vec![hole])]);
        let set = ZoneSet::build(vec![z], ExemptionBook::default()).unwrap();
        assert_eq!(set.zones_containing(120.05, 30.05).len(), 1);
        assert!(set.zones_containing(120.0, 30.0).is_empty(), "inside the hole = outside the zone");
        assert!(set.zones_containing(121.0, 30.0).is_empty());
        assert!(set.zones_containing(f64::NAN, 30.0).is_empty());
    }

    #[test]
    fn edits_make_new_snapshots() {
        let set = ZoneSet::build(vec![r1_zone("a", date(2024, 12, 31))], ExemptionBook::default()).unwrap();
        assert!(matches!(
            ZoneSet::build(
                vec![r1_zone("a", date(2024, 12, 31)), r1_zone("a", date(2024, 12, 31))],
                ExemptionBook::default()
            ),
            Err(ZoneSetError::DuplicateId(_))
        ));
        let mut b = r1_zone("b", date(2024, 12, 31));
        b.geometry = square(121.0, 30.0, 0.05);
        let mut a2 = r1_zone("a", date(2024, 12, 31));
        a2.geometry = square(122.0, 30.0, 0.05);
        let next = set.with_upserted(vec![b, a2]).unwrap();
        assert_eq!(next.len(), 2);
        assert_eq!(next.version(), set.version() + 1);
        assert!(next.zones_containing(120.16, 30.27).is_empty(), "a moved");
        assert_eq!(next.zones_containing(122.0, 30.0)[0].id, "a");
        assert_eq!(next.zones_containing(121.0, 30.0)[0].id, "b");
        let fewer = next.without(&["a"]);
        assert_eq!(fewer.len(), 1);
        assert!(fewer.get("a").is_none());
        assert_eq!(set.len(), 1, "old snapshot untouched");
        let mut bad = r1_zone("c", date(2024, 12, 31));
        bad.city_code = "x".into();
        assert!(matches!(set.with_upserted(vec![bad]), Err(ZoneSetError::Invalid { .. })));
    }
}
