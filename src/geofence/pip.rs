//! Exact point-in-polygon for polygons with many vertices, in O(log n) edges per query.
//!
//! A polygon (exterior and holes together) is cut into horizontal bands of equal height. A query
//! casts a ray towards +x from the point and counts crossings with the edges of the point's band
//! (even-odd rule, so holes need no special case). A band holds two kinds of edges:
//! - *partial* edges, with an end inside the band, each tested on its own;
//! - *spanning* edges, crossing the whole band. The edges of a valid polygon do not cross, so
//!   inside one band the spanning edges keep their left-to-right order: they are stored sorted
//!   by x and the number right of the point is found by binary search.
//!
//! Zones drawn with many jagged vertices (the bench's 500-vertex stars) have ~50 edges across any
//! horizontal line: the binary search turns those 50 tests into 6. Layout: one header, a band
//! table and an edge array, all plain data with `u32` offsets, so that
//! [`ZoneSet`](super::ZoneSet) can pack every polygon of a snapshot into two arrays
//! ([`PolygonRef`] reads either).
//!
//! # Boundary semantics
//!
//! Every edge is tested with the same half-open predicate (`y_lo <= y < y_hi` and the point
//! strictly left of the edge, the edge's x computed the same way from the same numbers), whether
//! it is tested on its own or met in the binary search. Consequences, all deterministic:
//! - a point on an edge shared by two adjacent zones (same vertices) is inside exactly one of them,
//!   so districts that tile a city never both claim, nor both drop, a boundary point;
//! - on a boundary with no neighbour, points on left/bottom edges are inside, on right/top edges
//!   outside.
//!
//! GNSS error (metres) dwarfs these cases; the tracker's dwell rule is what makes boundary jitter
//! harmless, not this convention. For an invalid (self-crossing) polygon the answer is some
//! deterministic parity, never a panic; zones are validated before they are indexed.
use geo::{BoundingRect, Polygon};

/// One non-horizontal edge, oriented so that `y_lo < y_hi`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Edge {
    y_lo: f64,
    y_hi: f64,
    x_at_lo: f64,
    /// dx/dy.
    slope: f64,
}

impl Edge {
    #[inline]
    fn x_at(&self, y: f64) -> f64 {
        self.x_at_lo + (y - self.y_lo) * self.slope
    }

    /// Whether the edge passes strictly right of (x, y), at height y.
    #[inline]
    fn right_of(&self, x: f64, y: f64) -> bool {
        x < self.x_at(y)
    }

    /// The half-open crossing test of a ray from (x, y) towards +x.
    #[inline]
    fn crosses(&self, x: f64, y: f64) -> bool {
        y >= self.y_lo && y < self.y_hi && self.right_of(x, y)
    }
}

/// One band: `edges[start..split]` are its partial edges, `edges[split..]` up to the next band's
/// `start` its spanning edges, sorted by x.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Band {
    start: u32,
    split: u32,
}

/// What a query needs before it touches the band table: the bounding box and where the bands are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolygonHead {
    min_x: f64,
    min_y: f64,
    max_x: f64,
    max_y: f64,
    bands_per_unit: f64,
    /// Index of band 0 in the band table, which holds `nbands + 1` entries for this polygon (the
    /// last one only ends the last band).
    band_off: u32,
    nbands: u32,
}

impl Default for PolygonHead {
    /// The head of an empty polygon: contains nothing.
    fn default() -> Self {
        PolygonHead {
            min_x: f64::INFINITY,
            min_y: f64::INFINITY,
            max_x: f64::NEG_INFINITY,
            max_y: f64::NEG_INFINITY,
            bands_per_unit: 0.0,
            band_off: 0,
            nbands: 1,
        }
    }
}

impl PolygonHead {
    /// `[min_x, min_y, max_x, max_y]`.
    pub(crate) fn bbox(&self) -> [f64; 4] {
        [self.min_x, self.min_y, self.max_x, self.max_y]
    }
}

/// A polygon prepared for point queries, owning its tables.
#[derive(Debug, Clone)]
pub struct PreparedPolygon {
    head: PolygonHead,
    bands: Vec<Band>,
    edges: Vec<Edge>,
}

/// A polygon's head read against band and edge tables that may hold other polygons too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolygonRef<'a> {
    pub(crate) head: &'a PolygonHead,
    pub(crate) bands: &'a [Band],
    pub(crate) edges: &'a [Edge],
}

impl PolygonRef<'_> {
    #[inline]
    pub(crate) fn contains(&self, x: f64, y: f64) -> bool {
        let h = self.head;
        if !(x >= h.min_x && x <= h.max_x && y >= h.min_y && y <= h.max_y) {
            return false;
        }
        let b = band_of(y, h.min_y, h.bands_per_unit, h.nbands as usize) + h.band_off as usize;
        let (Some(band), Some(next)) = (self.bands.get(b), self.bands.get(b + 1)) else {
            return false;
        };
        let (Some(partial), Some(spanning)) = (
            self.edges.get(band.start as usize..band.split as usize),
            self.edges.get(band.split as usize..next.start as usize),
        ) else {
            return false;
        };
        let mut inside = false;
        for e in partial {
            inside ^= e.crosses(x, y);
        }
        // Every spanning edge passes the y test for any y of this band (see `bucket`), so it
        // crosses iff the point is left of it; those edges come last in x order.
        let left_of_point = spanning.partition_point(|e| !e.right_of(x, y));
        inside ^ ((spanning.len() - left_of_point) % 2 == 1)
    }

    /// Appends this polygon's bands and edges to shared tables and returns its head for them
    /// (`None` if the tables would outgrow `u32` offsets).
    pub(crate) fn pack_into(&self, bands: &mut Vec<Band>, edges: &mut Vec<Edge>) -> Option<PolygonHead> {
        let h = self.head;
        let own_bands = self.bands.get(h.band_off as usize..=h.band_off as usize + h.nbands as usize)?;
        let (first, end) = (own_bands.first()?.start, own_bands.last()?.start);
        let own_edges = self.edges.get(first as usize..end as usize)?;
        let band_off = u32::try_from(bands.len()).ok()?;
        let edge_off = u32::try_from(edges.len()).ok()?;
        u32::try_from(edges.len() + own_edges.len()).ok()?;
        // Band offsets grow from `first` to `end`, so rebased ones fit (checked just above);
        // saturating arithmetic keeps even a corrupt table from panicking.
        let rebase = |o: u32| o.saturating_sub(first).saturating_add(edge_off);
        bands.extend(own_bands.iter().map(|b| Band { start: rebase(b.start), split: rebase(b.split) }));
        edges.extend_from_slice(own_edges);
        Some(PolygonHead { band_off, ..*h })
    }
}

/// Target edges (partial ones) per band; more bands cost memory for edges spanning many bands.
const EDGES_PER_BAND: usize = 2;
/// Cap on edge-band incidences relative to the edge count, against pathological shapes (long
/// spikes spanning every band): the band count is halved until it holds.
const MAX_INCIDENCE_FACTOR: usize = 8;

/// The band of `y`. `as` saturates (NaN → 0) and the result is clamped to a valid band; the
/// function is monotone in `y`, which `bucket` relies on.
#[inline]
fn band_of(y: f64, min_y: f64, bands_per_unit: f64, nbands: usize) -> usize {
    (((y - min_y) * bands_per_unit) as usize).min(nbands.saturating_sub(1))
}

fn to_u32(n: usize) -> u32 {
    // Offsets beyond u32 would need > 100 GB of edges; saturating keeps lookups in bounds
    // (`get` then fails and the point is outside) instead of panicking.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl PreparedPolygon {
    pub fn new(poly: &Polygon<f64>) -> Self {
        let Some(bbox) = poly.bounding_rect() else {
            return Self::empty();
        };
        let edges = edges_of(poly);
        let (min, max) = (bbox.min(), bbox.max());
        let height = max.y - min.y;
        let mut nbands = (edges.len() / EDGES_PER_BAND).clamp(1, 1 << 20);
        let per_unit = |nbands: usize| if height > 0.0 { nbands as f64 / height } else { 0.0 };
        while nbands > 1 {
            let pu = per_unit(nbands);
            let incidences: usize = edges
                .iter()
                .map(|e| band_of(e.y_hi, min.y, pu, nbands) - band_of(e.y_lo, min.y, pu, nbands) + 1)
                .sum();
            if incidences <= MAX_INCIDENCE_FACTOR * edges.len() {
                break;
            }
            nbands /= 2;
        }
        let bands_per_unit = per_unit(nbands);
        let (bands, edges) = Self::bucket(&edges, min.y, bands_per_unit, nbands);
        PreparedPolygon {
            head: PolygonHead {
                min_x: min.x,
                min_y: min.y,
                max_x: max.x,
                max_y: max.y,
                bands_per_unit,
                band_off: 0,
                nbands: to_u32(nbands),
            },
            bands,
            edges,
        }
    }

    fn empty() -> Self {
        PreparedPolygon { head: PolygonHead::default(), bands: vec![Band::default(); 2], edges: Vec::new() }
    }

    /// Lays the edges out band by band. An edge spans band `b` when its lower end's band is below
    /// `b` and its upper end's band above: `band_of` being monotone, every `y` of band `b` then
    /// has `y_lo < y < y_hi`, so the y test can be skipped for it.
    fn bucket(edges: &[Edge], min_y: f64, per_unit: f64, nbands: usize) -> (Vec<Band>, Vec<Edge>) {
        // (band, spanning, x at the band's middle, edge), sorted: partial edges first, then
        // spanning edges left to right. Non-crossing spanning edges are strictly ordered inside
        // the band, so the order at its middle is the order everywhere in it.
        let mut slots: Vec<(usize, bool, f64, Edge)> = Vec::new();
        for e in edges {
            let (a, b) = (band_of(e.y_lo, min_y, per_unit, nbands), band_of(e.y_hi, min_y, per_unit, nbands));
            for band in a..=b {
                let spanning = band > a && band < b;
                let mid = if per_unit > 0.0 { min_y + (band as f64 + 0.5) / per_unit } else { min_y };
                slots.push((band, spanning, if spanning { e.x_at(mid) } else { 0.0 }, *e));
            }
        }
        slots.sort_by(|p, q| p.0.cmp(&q.0).then(p.1.cmp(&q.1)).then(p.2.total_cmp(&q.2)));
        let mut bands = Vec::with_capacity(nbands + 1);
        let mut i = 0;
        for band in 0..nbands {
            let start = i;
            while slots.get(i).is_some_and(|s| s.0 == band && !s.1) {
                i += 1;
            }
            let split = i;
            while slots.get(i).is_some_and(|s| s.0 == band) {
                i += 1;
            }
            bands.push(Band { start: to_u32(start), split: to_u32(split) });
        }
        bands.push(Band { start: to_u32(slots.len()), split: to_u32(slots.len()) });
        (bands, slots.into_iter().map(|s| s.3).collect())
    }

    /// Bounding box `[min_x, min_y, max_x, max_y]`.
    pub fn bbox(&self) -> [f64; 4] {
        self.head.bbox()
    }

    /// Number of stored edge references (memory footprint is 32 bytes each).
    pub fn stored_edges(&self) -> usize {
        self.edges.len()
    }

    #[inline]
    pub fn contains(&self, x: f64, y: f64) -> bool {
        self.as_ref().contains(x, y)
    }

    pub(crate) fn as_ref(&self) -> PolygonRef<'_> {
        PolygonRef { head: &self.head, bands: &self.bands, edges: &self.edges }
    }

    /// The even-odd crossing count over every edge, without bands: the reference the banded
    /// query must agree with, point for point.
    #[cfg(test)]
    fn contains_linear(poly: &Polygon<f64>, x: f64, y: f64) -> bool {
        edges_of(poly).iter().filter(|e| e.crosses(x, y)).count() % 2 == 1
    }
}

/// The non-horizontal edges of every ring (horizontal edges never pass the half-open test).
fn edges_of(poly: &Polygon<f64>) -> Vec<Edge> {
    let mut edges = Vec::new();
    for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
        for line in ring.lines() {
            let (a, b) = (line.start, line.end);
            if a.y == b.y || !(a.x.is_finite() && a.y.is_finite() && b.x.is_finite() && b.y.is_finite()) {
                continue;
            }
            let (lo, hi) = if a.y < b.y { (a, b) } else { (b, a) };
            edges.push(Edge { y_lo: lo.y, y_hi: hi.y, x_at_lo: lo.x, slope: (hi.x - lo.x) / (hi.y - lo.y) });
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Contains, LineString, Point};

    fn star(n: usize, cx: f64, cy: f64, r: f64) -> Polygon<f64> {
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let rr = if i % 2 == 0 { r } else { r * 0.45 };
                (cx + rr * a.cos(), cy + rr * a.sin())
            })
            .collect();
        Polygon::new(LineString::from(pts), vec![])
    }

    #[test]
    fn agrees_with_geo_on_a_grid() {
        let mut p = star(400, 120.0, 30.0, 0.5);
        p.interiors_push(LineString::from(vec![
            (119.95, 29.95),
            (119.95, 30.05),
            (120.05, 30.05),
            (120.05, 29.95),
        ]));
        let prep = PreparedPolygon::new(&p);
        for i in 0..200 {
            for j in 0..200 {
                let (x, y) = (119.4 + i as f64 * 0.006_1, 29.4 + j as f64 * 0.005_9);
                assert_eq!(prep.contains(x, y), p.contains(&Point::new(x, y)), "({x}, {y})");
            }
        }
        assert!(!prep.contains(120.0, 30.0), "inside the hole");
        assert!(prep.stored_edges() <= MAX_INCIDENCE_FACTOR * 404);
    }

    /// A star-shaped (hence simple) polygon with random radii, optionally with a square hole
    /// around the centre, and its vertices: the points where degenerate cases live.
    fn random_star(radii: &[f64], hole: bool) -> Polygon<f64> {
        let n = radii.len();
        let ring: Vec<(f64, f64)> = radii
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                (120.0 + r * a.cos(), 30.0 + r * a.sin())
            })
            .collect();
        let holes = if hole {
            vec![LineString::from(vec![(119.99, 29.99), (119.99, 30.01), (120.01, 30.01), (120.01, 29.99)])]
        } else {
            vec![]
        };
        Polygon::new(LineString::from(ring), holes)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Bands and binary search answer exactly as the plain crossing count over every edge,
        /// on random points, on vertices and on points of edges.
        #[test]
        fn banded_agrees_with_linear_scan(
            radii in proptest::collection::vec(0.02f64..0.1, 3..400),
            hole in proptest::prelude::any::<bool>(),
            pts in proptest::collection::vec((119.89f64..120.11, 29.89f64..30.11), 50),
            ts in proptest::collection::vec(0.0f64..1.0, 20),
        ) {
            let poly = random_star(&radii, hole);
            let prep = PreparedPolygon::new(&poly);
            let verts = poly.exterior().0.clone();
            let on_edges = verts.windows(2).zip(ts.iter().cycle()).map(|(w, t)| {
                (w[0].x + t * (w[1].x - w[0].x), w[0].y + t * (w[1].y - w[0].y))
            });
            let all = pts.iter().copied().chain(verts.iter().map(|c| (c.x, c.y))).chain(on_edges);
            for (x, y) in all {
                proptest::prop_assert_eq!(
                    prep.contains(x, y),
                    PreparedPolygon::contains_linear(&poly, x, y),
                    "({}, {})", x, y
                );
            }
        }
    }

    #[test]
    fn shared_edge_point_belongs_to_exactly_one() {
        let left =
            Polygon::new(LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]), vec![]);
        let right =
            Polygon::new(LineString::from(vec![(1.0, 0.0), (2.0, 0.0), (2.0, 1.0), (1.0, 1.0)]), vec![]);
        let (l, r) = (PreparedPolygon::new(&left), PreparedPolygon::new(&right));
        for y in [0.1, 0.5, 0.9] {
            assert!(l.contains(1.0, y) ^ r.contains(1.0, y));
        }
        // Slanted shared edge, reversed orientation in the neighbour.
        let a = Polygon::new(LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.7, 1.0), (0.0, 1.0)]), vec![]);
        let b = Polygon::new(LineString::from(vec![(1.0, 0.0), (3.0, 0.0), (3.0, 1.0), (1.7, 1.0)]), vec![]);
        let (a, b) = (PreparedPolygon::new(&a), PreparedPolygon::new(&b));
        for k in 1..10 {
            let y = k as f64 / 10.0;
            let x = 1.0 + 0.7 * y;
            assert!(a.contains(x, y) ^ b.contains(x, y), "y = {y}");
        }
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        let empty = Polygon::new(LineString::new(vec![]), vec![]);
        assert!(!PreparedPolygon::new(&empty).contains(0.0, 0.0));
        let flat = Polygon::new(LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]), vec![]);
        assert!(!PreparedPolygon::new(&flat).contains(0.5, 0.0));
        let sq = PreparedPolygon::new(&star(8, 0.0, 0.0, 1.0));
        assert!(!sq.contains(f64::NAN, 0.0));
        assert!(!sq.contains(0.0, f64::INFINITY));
    }
}
