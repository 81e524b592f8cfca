//! How deep a point lies inside a zone: the R1 / R6 entry margin (see [`super::tracker`]).
//!
//! A terminal's fix is off by metres to tens of metres, and the error drifts slowly (multipath,
//! atmosphere), so a fix a few metres inside a boundary proves nothing about the vehicle. The
//! tracker only takes a fix as evidence of presence when no zone boundary lies within a margin
//! of it. The check walks every boundary segment of the zone (O(vertices)), which is why the
//! tracker asks it only for an unproven candidate of a vehicle the zone applies to.
use geo::MultiPolygon;

/// Metres per degree of latitude (mean) and of longitude at the equator (WGS-84, local flat
/// approximation: exact to well under 1 % over the few hundred metres that matter here).
const M_PER_DEG_LAT: f64 = 110_574.0;
const M_PER_DEG_LON_EQ: f64 = 111_320.0;

/// Whether some boundary (exterior or hole) of `geom` passes within `margin_m` metres of the
/// point. A non-positive margin is never "near".
pub fn boundary_within(geom: &MultiPolygon<f64>, lon: f64, lat: f64, margin_m: f64) -> bool {
    if margin_m <= 0.0 || !margin_m.is_finite() {
        return false;
    }
    let kx = M_PER_DEG_LON_EQ * lat.to_radians().cos();
    let ky = M_PER_DEG_LAT;
    let local = |x: f64, y: f64| ((x - lon) * kx, (y - lat) * ky);
    let m2 = margin_m * margin_m;
    geom.0.iter().flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors())).any(|ring| {
        ring.lines().any(|l| {
            let (ax, ay) = local(l.start.x, l.start.y);
            let (bx, by) = local(l.end.x, l.end.y);
            // Cheap reject: the segment's box is farther than the margin on some side.
            if (ax > margin_m && bx > margin_m)
                || (ax < -margin_m && bx < -margin_m)
                || (ay > margin_m && by > margin_m)
                || (ay < -margin_m && by < -margin_m)
            {
                return false;
            }
            dist2_to_segment(ax, ay, bx, by) <= m2
        })
    })
}

/// Squared distance from the origin to the segment a–b.
fn dist2_to_segment(ax: f64, ay: f64, bx: f64, by: f64) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (px, py) = (ax + t * dx, ay + t * dy);
    px * px + py * py
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::zone::tests::square;

    #[test]
    fn margin_against_a_square_edge() {
        // East edge at 120.17; 0.0001° of longitude at 30.27° N is 9.6 m.
        let g = square(120.16, 30.27, 0.01);
        assert!(boundary_within(&g, 120.1699, 30.27, 20.0), "9.6 m inside");
        assert!(!boundary_within(&g, 120.1697, 30.27, 20.0), "29 m inside");
        assert!(boundary_within(&g, 120.1701, 30.27, 20.0), "9.6 m outside is near too");
        assert!(!boundary_within(&g, 120.16, 30.27, 20.0));
        assert!(!boundary_within(&g, 120.1699, 30.27, 0.0));
        assert!(!boundary_within(&g, 120.1699, 30.27, f64::NAN));
        // Near a corner: both edges count.
        assert!(boundary_within(&g, 120.1699, 30.2799, 20.0));
    }
}
