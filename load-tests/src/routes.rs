//! Plausible routes between Zhejiang city centres. A route is a polyline from one city to another
//! with a few gently offset waypoints (roads are not straight lines); vehicles move along it at
//! their speed and turn round at the end. Coordinates are WGS-84 degrees.
use crate::rng::Rng;

#[derive(Debug, Clone, Copy)]
pub struct City {
    pub name: &'static str,
    pub lon: f64,
    pub lat: f64,
    /// GB/T 2260 code of the prefecture-level city.
    pub city_code: &'static str,
    /// Plate prefix letter after 浙.
    pub plate_letter: char,
}

/// The 11 prefecture-level cities of Zhejiang (city centres).
pub const CITIES: [City; 11] = [
    City { name: "Hangzhou", lon: 120.16, lat: 30.27, city_code: "330100", plate_letter: 'A' },
    City { name: "Ningbo", lon: 121.55, lat: 29.87, city_code: "330200", plate_letter: 'B' },
    City { name: "Wenzhou", lon: 120.70, lat: 28.00, city_code: "330300", plate_letter: 'C' },
    City { name: "Jiaxing", lon: 120.76, lat: 30.75, city_code: "330400", plate_letter: 'F' },
    City { name: "Huzhou", lon: 120.09, lat: 30.89, city_code: "330500", plate_letter: 'E' },
    City { name: "Shaoxing", lon: 120.58, lat: 30.00, city_code: "330600", plate_letter: 'D' },
    City { name: "Jinhua", lon: 119.65, lat: 29.08, city_code: "330700", plate_letter: 'G' },
    City { name: "Quzhou", lon: 118.87, lat: 28.94, city_code: "330800", plate_letter: 'H' },
    City { name: "Zhoushan", lon: 122.21, lat: 29.99, city_code: "330900", plate_letter: 'L' },
    City { name: "Taizhou", lon: 121.42, lat: 28.66, city_code: "331000", plate_letter: 'J' },
    City { name: "Lishui", lon: 119.92, lat: 28.47, city_code: "331100", plate_letter: 'K' },
];

/// Towns outside Zhejiang (Anhui, Jiangxi). China III trucks that are not planted R1 offenders
/// run between these, so that they stay out of every Zhejiang restriction zone whatever polygons
/// the geofence engine is configured with.
pub const OUTSIDE: [City; 3] = [
    City { name: "Huangshan", lon: 118.34, lat: 29.71, city_code: "341000", plate_letter: 'A' },
    City { name: "Xuancheng", lon: 118.76, lat: 30.94, city_code: "341800", plate_letter: 'A' },
    City { name: "Shangrao", lon: 117.94, lat: 28.45, city_code: "361100", plate_letter: 'A' },
];

/// Great-circle distance in km.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lon1, lat1) = (a.0.to_radians(), a.1.to_radians());
    let (lon2, lat2) = (b.0.to_radians(), b.1.to_radians());
    let h =
        ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

#[derive(Debug, Clone)]
pub struct Route {
    points: Vec<(f64, f64)>,
    /// Cumulative length at each point, km.
    cum_km: Vec<f64>,
}

impl Route {
    /// A road-like path from `a` to `b`: three intermediate waypoints offset sideways by up to 4 %
    /// of the distance.
    pub fn between(a: (f64, f64), b: (f64, f64), rng: &mut Rng) -> Route {
        let mut points = vec![a];
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        for i in 1..4 {
            let f = f64::from(i) / 4.0;
            let side = rng.noise(0.04);
            points.push((a.0 + dx * f - dy * side, a.1 + dy * f + dx * side));
        }
        points.push(b);
        Route::from_points(points)
    }

    /// A small loop around a centre (a work site, a city-centre delivery round), radius in km.
    pub fn around(centre: (f64, f64), radius_km: f64, rng: &mut Rng) -> Route {
        let deg_lat = radius_km / 111.0;
        let deg_lon = deg_lat / centre.1.to_radians().cos();
        let phase = rng.range(0.0, std::f64::consts::TAU);
        let points = (0..=8)
            .map(|i| {
                let a = phase + f64::from(i) * std::f64::consts::TAU / 8.0;
                (centre.0 + deg_lon * a.cos(), centre.1 + deg_lat * a.sin())
            })
            .collect();
        Route::from_points(points)
    }

    /// A route through the given points in order (e.g. a road along a zone border).
    pub fn through(points: Vec<(f64, f64)>) -> Route {
        Route::from_points(points)
    }

    fn from_points(points: Vec<(f64, f64)>) -> Route {
        let mut cum_km = Vec::with_capacity(points.len());
        let mut total = 0.0;
        for (i, p) in points.iter().enumerate() {
            if i > 0 {
                total += haversine_km(points[i - 1], *p);
            }
            cum_km.push(total);
        }
        Route { points, cum_km }
    }

    pub fn length_km(&self) -> f64 {
        self.cum_km.last().copied().unwrap_or(0.0)
    }

    /// Position after `km` along the route (clamped to its ends).
    pub fn position_at(&self, km: f64) -> (f64, f64) {
        let km = km.clamp(0.0, self.length_km());
        let i = self.cum_km.partition_point(|&c| c < km).max(1).min(self.points.len() - 1);
        let (p0, p1) = (self.points[i - 1], self.points[i]);
        let seg = self.cum_km[i] - self.cum_km[i - 1];
        let f = if seg > 0.0 { (km - self.cum_km[i - 1]) / seg } else { 0.0 };
        (p0.0 + (p1.0 - p0.0) * f, p0.1 + (p1.1 - p0.1) * f)
    }

    /// The route travelled backwards (the return trip).
    pub fn reversed(&self) -> Route {
        Route::from_points(self.points.iter().rev().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangzhou_ningbo_is_about_140_km_and_positions_are_on_the_way() {
        let hz = (CITIES[0].lon, CITIES[0].lat);
        let nb = (CITIES[1].lon, CITIES[1].lat);
        let d = haversine_km(hz, nb);
        assert!((130.0..150.0).contains(&d), "{d}");
        let r = Route::between(hz, nb, &mut Rng::new(1));
        assert!(r.length_km() >= d && r.length_km() < d * 1.2);
        assert_eq!(r.position_at(0.0), hz);
        let end = r.position_at(1e9);
        assert!((end.0 - nb.0).abs() < 1e-9 && (end.1 - nb.1).abs() < 1e-9);
        let mid = r.position_at(r.length_km() / 2.0);
        assert!(mid.0 > hz.0 && mid.0 < nb.0);
    }

    #[test]
    fn loop_stays_near_its_centre() {
        let c = (120.16, 30.27);
        let r = Route::around(c, 2.0, &mut Rng::new(3));
        for i in 0..50 {
            let p = r.position_at(r.length_km() * f64::from(i) / 50.0);
            assert!(haversine_km(c, p) < 2.1);
        }
    }
}
