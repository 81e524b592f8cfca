//! Geofence point checks: 10,000 zones of 20–500 vertices spread over Zhejiang (lon 118–123,
//! lat 27–31.2); one check = find every zone containing a random point.
//!
//! Run: `cargo bench --bench geofence -- --warm-up-time 1 --measurement-time 5`
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geo::{Contains, LineString, MultiPolygon, Point, Polygon, Relate};
use smogwatch::geofence::pip::PreparedPolygon;
use smogwatch::geofence::{Applicability, ExemptionBook, Schedule, Zone, ZoneKind, ZoneSet};
use std::hint::black_box;

/// SplitMix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn f(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A star-shaped (hence simple) polygon of `n` vertices around (cx, cy).
fn blob(rng: &mut Rng, cx: f64, cy: f64, r: f64, n: usize) -> Polygon<f64> {
    let pts: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let rr = r * rng.f(0.55, 1.0);
            (cx + rr * a.cos(), cy + rr * a.sin())
        })
        .collect();
    Polygon::new(LineString::from(pts), vec![])
}

fn zones(count: usize) -> Vec<Zone> {
    let mut rng = Rng(42);
    (0..count)
        .map(|i| {
            let n = 20 + (rng.next() % 481) as usize;
            let (cx, cy) = (rng.f(118.0, 123.0), rng.f(27.0, 31.2));
            let r = rng.f(0.005, 0.04);
            Zone {
                id: format!("bench-{i}"),
                name: format!("bench zone {i}"),
                kind: ZoneKind::RestrictionZone,
                city_code: "330100".into(),
                county_code: None,
                geometry: MultiPolygon(vec![blob(&mut rng, cx, cy, r, n)]),
                effective_from: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default(),
                effective_until: None,
                schedule: Schedule::AllDay,
                applicability: Applicability::china_iii_diesel_trucks(),
                note: "benchmark".into(),
            }
        })
        .collect()
}

fn points(n: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = Rng(seed);
    (0..n).map(|_| (rng.f(118.0, 123.0), rng.f(27.0, 31.2))).collect()
}

/// CPU time of this thread in seconds (Linux: utime + stime from /proc, 10 ms ticks), so the
/// rate below is per busy core even when other jobs share the machine.
fn thread_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Checks per CPU-second over ~3 s of CPU time.
fn cpu_rate(set: &ZoneSet, pts: &[(f64, f64)]) -> Option<f64> {
    let start = thread_cpu_s()?;
    let mut buf = Vec::with_capacity(8);
    let (mut n, mut hits) = (0u64, 0usize);
    loop {
        for &(x, y) in pts {
            buf.clear();
            set.zones_at(black_box(x), black_box(y), &mut buf);
            hits += buf.len();
        }
        n += pts.len() as u64;
        let used = thread_cpu_s()? - start;
        if used >= 3.0 {
            black_box(hits);
            return Some(n as f64 / used);
        }
    }
}

fn zone_set(c: &mut Criterion) {
    let zs = zones(10_000);
    let vertices: usize = zs.iter().map(|z| z.geometry.0[0].exterior().0.len() - 1).sum();
    let t = std::time::Instant::now();
    let set = match ZoneSet::build(zs, ExemptionBook::default()) {
        Ok(s) => s,
        Err(e) => panic!("bench zones are valid: {e}"),
    };
    eprintln!(
        "10,000 zones, {vertices} vertices: index built in {:.2} s, {} edge-band incidences ({:.0} MB)",
        t.elapsed().as_secs_f64(),
        set.stored_edges(),
        set.stored_edges() as f64 * 32.0 / 1e6
    );
    let t = std::time::Instant::now();
    let edited = set.with_upserted(zones(1));
    eprintln!("one zone replaced (the other 9,999 copied, not prepared): {:.3} s", t.elapsed().as_secs_f64());
    drop(edited);
    let pts = points(10_000, 7);
    let hits: usize = pts
        .iter()
        .map(|&(x, y)| {
            let mut b = Vec::new();
            set.zones_at(x, y, &mut b);
            b.len()
        })
        .sum();
    eprintln!("10,000 zones, 10,000 uniform points: {hits} point-in-zone hits in total");
    if let Some(r) = cpu_rate(&set, &pts) {
        eprintln!("zones_at, uniform points: {:.2} M checks per CPU-second (one core)", r / 1e6);
    }
    let mut g = c.benchmark_group("zone_set_10k");
    g.throughput(Throughput::Elements(pts.len() as u64));
    g.bench_function("zones_at_uniform_points", |b| {
        let mut buf = Vec::with_capacity(8);
        b.iter(|| {
            let mut total = 0;
            for &(x, y) in &pts {
                buf.clear();
                set.zones_at(black_box(x), black_box(y), &mut buf);
                total += buf.len();
            }
            total
        })
    });
    g.bench_function("zones_at_uniform_points_rtree_only", |b| {
        let mut buf = Vec::with_capacity(8);
        b.iter(|| {
            let mut total = 0;
            for &(x, y) in &pts {
                buf.clear();
                set.zones_at_rtree(black_box(x), black_box(y), &mut buf);
                total += buf.len();
            }
            total
        })
    });
    // Points near zones (a truck's fixes are mostly on roads near or in zones).
    let near: Vec<(f64, f64)> = {
        let mut rng = Rng(9);
        set.iter()
            .take(10_000)
            .map(|z| {
                let p = &z.geometry.0[0].exterior().0[0];
                (p.x + rng.f(-0.03, 0.03), p.y + rng.f(-0.03, 0.03))
            })
            .collect()
    };
    g.bench_function("zones_at_points_near_zones", |b| {
        let mut buf = Vec::with_capacity(8);
        b.iter(|| {
            let mut total = 0;
            for &(x, y) in &near {
                buf.clear();
                set.zones_at(black_box(x), black_box(y), &mut buf);
                total += buf.len();
            }
            total
        })
    });
    g.finish();
}

/// One 500-vertex polygon, points in its bounding box: banded index vs geo.
fn single_polygon(c: &mut Criterion) {
    let mut rng = Rng(3);
    let poly = blob(&mut rng, 120.0, 30.0, 0.04, 500);
    let pts: Vec<(f64, f64)> = (0..1000).map(|_| (rng.f(119.96, 120.04), rng.f(29.96, 30.04))).collect();
    let banded = PreparedPolygon::new(&poly);
    let prepared = geo::PreparedGeometry::from(poly.clone());
    let mut g = c.benchmark_group("polygon_500_vertices");
    g.throughput(Throughput::Elements(pts.len() as u64));
    g.bench_function("banded_pip", |b| {
        b.iter(|| pts.iter().filter(|&&(x, y)| banded.contains(x, y)).count())
    });
    g.bench_function("geo_contains", |b| {
        b.iter(|| pts.iter().filter(|&&(x, y)| poly.contains(&Point::new(x, y))).count())
    });
    g.bench_function("geo_prepared_relate", |b| {
        b.iter(|| pts.iter().filter(|&&(x, y)| prepared.relate(&Point::new(x, y)).is_contains()).count())
    });
    g.finish();
}

criterion_group!(benches, zone_set, single_polygon);
criterion_main!(benches);
