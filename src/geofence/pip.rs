//! Exact point-in-polygon for polygons with many vertices, in O(1) expected edges per query.
//!
//! A polygon (exterior and holes together) is cut into horizontal bands of equal height; each band
//! lists the edges whose y-range overlaps it. A query casts a ray towards +x and counts crossings
//! with the edges of the point's band only (even-odd rule, so holes need no special case). With
//! about one band per four edges a query looks at a handful of edges whatever the vertex count;
//! measured against `geo::Contains` and `geo::PreparedGeometry` in `benches/geofence.rs`.
//!
//! # Boundary semantics
//!
//! The crossing test is half-open (an edge counts when `y_lo <= y < y_hi` and the point is strictly
//! left of it). Consequences, all deterministic:
//! - a point on an edge shared by two adjacent zones (same vertices) is inside exactly one of them,
//!   so districts that tile a city never both claim, nor both drop, a boundary point;
//! - on a boundary with no neighbour, points on left/bottom edges are inside, on right/top edges
//!   outside.
//!
//! GNSS error (metres) dwarfs these cases; the tracker's dwell rule is what makes boundary jitter
//! harmless, not this convention.
use geo::{BoundingRect, Polygon};

/// One non-horizontal edge, oriented so that `y_lo < y_hi`.
#[derive(Debug, Clone, Copy)]
struct Edge {
    y_lo: f64,
    y_hi: f64,
    x_at_lo: f64,
    /// dx/dy.
    slope: f64,
}

#[derive(Debug, Clone)]
pub struct PreparedPolygon {
    min_x: f64,
    min_y: f64,
    max_x: f64,
    max_y: f64,
    bands_per_unit: f64,
    /// `band_start[b]..band_start[b + 1]` indexes `edges` for band `b`.
    band_start: Vec<u32>,
    edges: Vec<Edge>,
}

/// Bands per edge: fewer bands save memory (long edges are repeated in every band they span),
/// more bands mean fewer edges per query. One band per 4 edges tested best in the bench.
const EDGES_PER_BAND: usize = 4;
/// Cap on edge repetitions (edge-band incidences) relative to the edge count, against
/// pathological shapes (long spikes spanning every band).
const MAX_INCIDENCE_FACTOR: usize = 8;

impl PreparedPolygon {
    pub fn new(poly: &Polygon<f64>) -> Self {
        let Some(bbox) = poly.bounding_rect() else {
            return Self::empty();
        };
        let mut edges: Vec<Edge> = Vec::new();
        for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
            for line in ring.lines() {
                let (a, b) = (line.start, line.end);
                if a.y == b.y || !(a.x.is_finite() && a.y.is_finite() && b.x.is_finite() && b.y.is_finite()) {
                    continue; // horizontal edges never satisfy the half-open crossing test
                }
                let (lo, hi) = if a.y < b.y { (a, b) } else { (b, a) };
                edges.push(Edge {
                    y_lo: lo.y,
                    y_hi: hi.y,
                    x_at_lo: lo.x,
                    slope: (hi.x - lo.x) / (hi.y - lo.y),
                });
            }
        }
        let (min, max) = (bbox.min(), bbox.max());
        let height = max.y - min.y;
        let mut nbands = (edges.len() / EDGES_PER_BAND).clamp(1, 1 << 20);
        loop {
            let built = Self::bucket(&edges, min.y, height, nbands);
            let incidences = built.1.len();
            if nbands == 1 || incidences <= MAX_INCIDENCE_FACTOR * edges.len().max(1) {
                let bands_per_unit = if height > 0.0 { nbands as f64 / height } else { 0.0 };
                return PreparedPolygon {
                    min_x: min.x,
                    min_y: min.y,
                    max_x: max.x,
                    max_y: max.y,
                    bands_per_unit,
                    band_start: built.0,
                    edges: built.1,
                };
            }
            nbands /= 2;
        }
    }

    fn empty() -> Self {
        PreparedPolygon {
            min_x: f64::INFINITY,
            min_y: f64::INFINITY,
            max_x: f64::NEG_INFINITY,
            max_y: f64::NEG_INFINITY,
            bands_per_unit: 0.0,
            band_start: vec![0, 0],
            edges: Vec::new(),
        }
    }

    fn band_of(y: f64, min_y: f64, bands_per_unit: f64, nbands: usize) -> usize {
        // `as` saturates (NaN → 0), and the result is clamped to a valid band.
        (((y - min_y) * bands_per_unit) as usize).min(nbands.saturating_sub(1))
    }

    fn bucket(edges: &[Edge], min_y: f64, height: f64, nbands: usize) -> (Vec<u32>, Vec<Edge>) {
        let per_unit = if height > 0.0 { nbands as f64 / height } else { 0.0 };
        let range = |e: &Edge| {
            (Self::band_of(e.y_lo, min_y, per_unit, nbands), Self::band_of(e.y_hi, min_y, per_unit, nbands))
        };
        // counts[b + 1] = edges in band b, then prefix sums: counts[b] = first slot of band b.
        let mut counts = vec![0u32; nbands + 1];
        for e in edges {
            let (a, b) = range(e);
            for c in counts.iter_mut().take(b + 2).skip(a + 1) {
                *c += 1;
            }
        }
        let mut acc = 0u32;
        for c in &mut counts {
            acc += *c;
            *c = acc;
        }
        let mut fill = counts.clone();
        let total = counts.last().copied().unwrap_or(0) as usize;
        let mut out = vec![Edge { y_lo: 0.0, y_hi: 0.0, x_at_lo: 0.0, slope: 0.0 }; total];
        for e in edges {
            let (a, b) = range(e);
            for slot in fill.iter_mut().take(b + 1).skip(a) {
                if let Some(o) = out.get_mut(*slot as usize) {
                    *o = *e;
                }
                *slot += 1;
            }
        }
        (counts, out)
    }

    /// Bounding box `[min_x, min_y, max_x, max_y]`.
    pub fn bbox(&self) -> [f64; 4] {
        [self.min_x, self.min_y, self.max_x, self.max_y]
    }

    /// Number of stored edge references (memory footprint is ~32 bytes each).
    pub fn stored_edges(&self) -> usize {
        self.edges.len()
    }

    #[inline]
    pub fn contains(&self, x: f64, y: f64) -> bool {
        if !(x >= self.min_x && x <= self.max_x && y >= self.min_y && y <= self.max_y) {
            return false;
        }
        let nbands = self.band_start.len().saturating_sub(1);
        let b = Self::band_of(y, self.min_y, self.bands_per_unit, nbands);
        let (Some(&from), Some(&to)) = (self.band_start.get(b), self.band_start.get(b + 1)) else {
            return false;
        };
        let mut inside = false;
        for e in self.edges.get(from as usize..to as usize).unwrap_or(&[]) {
            if y >= e.y_lo && y < e.y_hi && x < e.x_at_lo + (y - e.y_lo) * e.slope {
                inside = !inside;
            }
        }
        inside
    }
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
        assert!(prep.stored_edges() < 8 * 404);
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
