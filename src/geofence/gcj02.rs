//! GCJ-02 ("Mars coordinates", used by AMap/Gaode and Tencent maps) to and from WGS-84.
//!
//! Zone boundaries drawn on AMap or Tencent maps are in GCJ-02, offset from WGS-84 by a few hundred
//! metres; terminals report WGS-84 (GB 17691 Annex Q / HJ 1239). Zones are stored in WGS-84, so
//! GCJ-02 input is converted once, on import. The forward transform is the widely published one
//! (Krasovsky 1940 ellipsoid parameters); it has no closed-form inverse, so [`gcj02_to_wgs84`]
//! iterates the forward transform until the residual is below 1e-9° (≈ 0.1 mm).
use std::f64::consts::PI;

/// Semi-major axis (Krasovsky 1940) used by the published transform.
const A: f64 = 6_378_245.0;
/// First eccentricity squared (Krasovsky 1940).
const EE: f64 = 0.006_693_421_622_965_943;

/// The offset is only applied inside this rough bounding box of China (as the published code does).
pub fn out_of_china(lon: f64, lat: f64) -> bool {
    !((72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat))
}

fn transform_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn transform_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// (Δlon, Δlat) in degrees to add to a WGS-84 position.
fn delta(lon: f64, lat: f64) -> (f64, f64) {
    let d_lat = transform_lat(lon - 105.0, lat - 35.0);
    let d_lon = transform_lon(lon - 105.0, lat - 35.0);
    let rad_lat = lat / 180.0 * PI;
    let magic = 1.0 - EE * rad_lat.sin() * rad_lat.sin();
    let sqrt_magic = magic.sqrt();
    let d_lat = d_lat * 180.0 / ((A * (1.0 - EE)) / (magic * sqrt_magic) * PI);
    let d_lon = d_lon * 180.0 / (A / sqrt_magic * rad_lat.cos() * PI);
    (d_lon, d_lat)
}

/// WGS-84 → GCJ-02, degrees (lon, lat).
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let (d_lon, d_lat) = delta(lon, lat);
    (lon + d_lon, lat + d_lat)
}

/// GCJ-02 → WGS-84, degrees (lon, lat), by fixed-point iteration on the forward transform.
/// Converges to < 1e-9° in a handful of steps (the offset varies slowly with position).
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let (mut w_lon, mut w_lat) = (lon, lat);
    for _ in 0..30 {
        let (g_lon, g_lat) = wgs84_to_gcj02(w_lon, w_lat);
        let (e_lon, e_lat) = (g_lon - lon, g_lat - lat);
        w_lon -= e_lon;
        w_lat -= e_lat;
        if e_lon.abs() < 1e-10 && e_lat.abs() < 1e-10 {
            break;
        }
    }
    (w_lon, w_lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres between two nearby points (equirectangular; fine at these distances).
    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        let lat = (a.1 + b.1) / 2.0 * PI / 180.0;
        let dx = (a.0 - b.0) * PI / 180.0 * lat.cos() * 6_371_000.0;
        let dy = (a.1 - b.1) * PI / 180.0 * 6_371_000.0;
        dx.hypot(dy)
    }

    #[test]
    fn forward_matches_published_pairs() {
        // wandergis/coordtransform README: wgs84togcj02(116.404, 39.915).
        let g = wgs84_to_gcj02(116.404, 39.915);
        assert!((g.0 - 116.410_244_499_169_38).abs() < 1e-9, "{g:?}");
        assert!((g.1 - 39.916_404_281_501_64).abs() < 1e-9, "{g:?}");
        // googollee/eviltransform test vector (Shanghai); that library uses the WGS-84 semi-major
        // axis, a relative difference of 2e-5 on a ~500 m offset, i.e. millimetres.
        let g = wgs84_to_gcj02(121.527_210_6, 31.177_427_6);
        assert!(metres(g, (121.531_541_859_215, 31.175_303_983_645_97)) < 0.05, "{g:?}");
    }

    #[test]
    fn inverse_is_sub_metre() {
        // The same published pair, backwards.
        let w = gcj02_to_wgs84(116.410_244_499_169_38, 39.916_404_281_501_64);
        assert!(metres(w, (116.404, 39.915)) < 0.01, "{w:?}");
        // And a grid over Zhejiang, round trip.
        for i in 0..=20 {
            for j in 0..=20 {
                let p = (118.0 + 0.25 * f64::from(i), 27.0 + 0.21 * f64::from(j));
                let g = wgs84_to_gcj02(p.0, p.1);
                assert!(metres(g, p) > 100.0, "the offset is hundreds of metres");
                let back = gcj02_to_wgs84(g.0, g.1);
                assert!(metres(back, p) < 1e-3, "{p:?} -> {g:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn outside_china_is_identity() {
        assert_eq!(wgs84_to_gcj02(2.35, 48.85), (2.35, 48.85));
        assert_eq!(gcj02_to_wgs84(-74.0, 40.7), (-74.0, 40.7));
    }
}
