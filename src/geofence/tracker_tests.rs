use super::*;
use crate::detect::testkit::{truck, vin, T0};
use crate::geofence::exemption::{Exemption, ExemptionBook, ExemptionSubject};
use crate::geofence::schedule::{local_midnight_ms, ClockTime, DaySet, Schedule, WeeklyWindow};
use crate::geofence::zone::tests::{date, r1_zone, square};
use crate::geofence::zone::Applicability;
use crate::model::{EmissionStage, EngineStreamKind, Fuel, VehicleKind};
use geo::{MultiPolygon, Polygon};

/// Zone "z" is a square of ±0.01° (~1 km) around CENTER. IN and OUT are ~30 m either side of its
/// east edge (120.17), so that moving between them in 1 s is plausible.
const CENTER: (f64, f64) = (120.16, 30.27);
const IN: (f64, f64) = (120.1697, 30.27);
const OUT: (f64, f64) = (120.1703, 30.27);
/// Just inside / just outside the east edge (120.17): ~10 m either side.
const EDGE_IN: (f64, f64) = (120.1699, 30.27);
const EDGE_OUT: (f64, f64) = (120.1701, 30.27);

fn zone() -> Zone {
    let mut z = r1_zone("z", date(2024, 12, 31));
    z.geometry = square(CENTER.0, CENTER.1, 0.01);
    z
}

fn set(zones: Vec<Zone>) -> ZoneSet {
    ZoneSet::build(zones, ExemptionBook::default()).unwrap()
}

fn rec(t_ms: i64, (lon, lat): (f64, f64), valid: bool) -> TelemetryRecord {
    TelemetryRecord {
        vin: vin(),
        time_ms: t_ms,
        fix: Some(Fix { lon, lat, valid }),
        engine: None,
        obd: None,
        opacity_k: None,
        stream_kind: EngineStreamKind::Diesel,
    }
}

/// One fix per second from `from_s` (inclusive) to `to_s` (exclusive) after `t0`.
fn secs(t0: i64, from_s: i64, to_s: i64, at: (f64, f64)) -> Vec<TelemetryRecord> {
    (from_s..to_s).map(|s| rec(t0 + s * 1000, at, true)).collect()
}

#[derive(Default)]
struct Run {
    state: ZoneTrackState,
    out: Vec<Violation>,
    passages: Vec<ParkPassage>,
}

impl Run {
    fn feed(&mut self, v: &Vehicle, zones: &ZoneSet, records: &[TelemetryRecord]) -> &mut Self {
        let tracker = ZoneTracker::new(TrackerConfig::default());
        for r in records {
            tracker.update(&mut self.state, v, r, zones, &mut self.out, &mut self.passages);
        }
        self
    }
}

fn run(v: &Vehicle, zones: &ZoneSet, records: &[TelemetryRecord]) -> Vec<Violation> {
    let mut r = Run::default();
    r.feed(v, zones, records);
    r.out
}

fn china3() -> Vehicle {
    truck(EmissionStage::ChinaIII)
}

#[test]
fn dwell_exceeded_gives_exactly_one_violation() {
    let zs = set(vec![zone()]);
    let trace = [secs(T0, 0, 10, OUT), secs(T0, 10, 300, IN), secs(T0, 300, 400, OUT)].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 2, "{out:#?}");
    let (open, closed) = (&out[0], &out[1]);
    assert_eq!((open.status, closed.status), (ViolationStatus::Open, ViolationStatus::Closed));
    assert_eq!(open.id, closed.id);
    assert_eq!(open.id, ViolationId::derive(&vin(), "R1", "z", T0 + 10_000), "id from the entry time");
    assert_eq!(open.rule, "R1");
    assert_eq!(open.started_ms, T0 + 10_000);
    assert_eq!(open.ended_ms, None);
    assert_eq!(closed.ended_ms, Some(T0 + 300_000), "first fix outside");
    assert_eq!(open.position, Some(Fix { lon: IN.0, lat: IN.1, valid: true }));
    assert_eq!(open.zone_id.as_deref(), Some("z"));
    assert_eq!(open.city_code.as_deref(), Some("330100"));
    assert_eq!(open.county_code.as_deref(), Some("330122"));
    assert!(!open.late);
    let e = &closed.evidence;
    assert_eq!(e["entry_fix"]["time_ms"], T0 + 10_000);
    assert_eq!(e["exit_fix"]["time_ms"], T0 + 300_000);
    assert_eq!(e["exit_fix"]["lon"], OUT.0);
    assert_eq!(e["end_reason"], "left_zone");
    assert_eq!(e["zone"]["name"], "zone z");
    assert_eq!(e["zone"]["kind"], "restriction_zone");
    assert_eq!(e["zone"]["schedule"], "all_day");
    assert_eq!(e["track"]["from_ms"], T0 + 10_000);
    assert_eq!(e["track"]["to_ms"], T0 + 300_000);
    let pts = e["track_sample"]["points"].as_array().unwrap();
    assert!((2..=20).contains(&pts.len()), "{}", pts.len());
    assert_eq!(pts[0][0], T0 + 10_000);
    assert!(open.thresholds["source"].as_str().unwrap().contains("policy default"));
    assert_eq!(open.thresholds["min_inside_s"], 60);
    // The open snapshot is emitted on the fix that proves 60 s.
    let mut r = Run::default();
    r.feed(&china3(), &zs, &secs(T0, 0, 60, IN));
    assert!(r.out.is_empty());
    r.feed(&china3(), &zs, &secs(T0, 60, 61, IN));
    assert_eq!(r.out.len(), 1);
}

#[test]
fn short_visit_and_boundary_jitter_give_nothing() {
    let zs = set(vec![zone()]);
    assert!(run(&china3(), &zs, &secs(T0, 0, 59, IN)).is_empty());
    // Ten minutes of 1 Hz alternation across the boundary.
    let jitter: Vec<_> =
        (0..600).map(|s| rec(T0 + s * 1000, if s % 2 == 0 { EDGE_IN } else { EDGE_OUT }, true)).collect();
    assert!(run(&china3(), &zs, &jitter).is_empty());
    // Bursts of 50 s inside, 3 s outside, for half an hour.
    let bursts: Vec<_> =
        (0..1800).map(|s| rec(T0 + s * 1000, if s % 53 < 50 { EDGE_IN } else { EDGE_OUT }, true)).collect();
    assert!(run(&china3(), &zs, &bursts).is_empty());
    let mut r = Run::default();
    r.feed(&china3(), &zs, &jitter);
    assert_eq!(r.state.tracked_zones(), 0, "no state for a zone after leaving it");
}

#[test]
fn brief_exits_do_not_split_an_episode() {
    let zs = set(vec![zone()]);
    let trace = [
        secs(T0, 0, 100, IN),
        secs(T0, 100, 150, OUT), // 50 s out: within the 60 s grace
        secs(T0, 150, 300, IN),
        secs(T0, 300, 330, EDGE_OUT),
        secs(T0, 330, 331, EDGE_IN),
        secs(T0, 331, 500, OUT),
    ]
    .concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[1].started_ms, T0);
    assert_eq!(out[1].ended_ms, Some(T0 + 331_000));
}

fn windowed(days: DaySet, start: (u32, u32), end: (u32, u32)) -> Zone {
    let mut z = zone();
    z.schedule = Schedule::Weekly(vec![WeeklyWindow::new(
        days,
        ClockTime::hm(start.0, start.1).unwrap(),
        ClockTime::hm(end.0, end.1).unwrap(),
    )
    .unwrap()]);
    z
}

#[test]
fn schedule_window_start_and_end() {
    // 2025-11-03 is a Monday.
    let monday = local_midnight_ms(date(2025, 11, 3));
    let zs = set(vec![windowed(DaySet::WEEKDAYS, (7, 0), (9, 0))]);
    let h = |hh: i64, mm: i64| hh * 3600 + mm * 60;
    let trace = secs(monday, h(6, 55), h(9, 5), IN);
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].started_ms, monday + h(7, 0) * 1000, "entry = first fix in the window");
    assert_eq!(out[1].ended_ms, Some(monday + h(9, 0) * 1000), "window end");
    assert_eq!(out[1].evidence["end_reason"], "zone_inactive");
    // Parked inside only before the window: nothing.
    assert!(run(&china3(), &zs, &secs(monday, h(5, 0), h(6, 59), IN)).is_empty());
}

#[test]
fn schedule_window_crossing_midnight_and_utc_confusion() {
    let friday = local_midnight_ms(date(2025, 10, 31));
    let fri: DaySet = [crate::geofence::schedule::Day::Fri].into_iter().collect();
    let zs = set(vec![windowed(fri, (22, 0), (6, 0))]);
    // Inside from Friday 21:50 to Saturday 06:10 Beijing time.
    let out = run(&china3(), &zs, &secs(friday, 21 * 3600 + 3000, 30 * 3600 + 600, IN));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].started_ms, friday + 22 * 3_600_000);
    assert_eq!(out[1].ended_ms, Some(friday + 30 * 3_600_000), "Saturday 06:00");
    // A 07:00-09:00 Beijing window must not fire for a truck there 07:00-09:00 UTC.
    let monday = local_midnight_ms(date(2025, 11, 3));
    let zs = set(vec![windowed(DaySet::WEEKDAYS, (7, 0), (9, 0))]);
    let utc_7 = monday + 15 * 3_600_000; // 07:00Z = 15:00+08:00
    assert!(run(&china3(), &zs, &secs(utc_7, 0, 7200, IN)).is_empty());
}

#[test]
fn county_zone_effective_date_in_beijing_time() {
    let mut z = zone();
    z.effective_from = date(2025, 11, 1);
    let zs = set(vec![z.clone()]);
    // T0 = 2025-11-01T00:00:00+08:00.
    assert!(!z.is_active(T0 - 1000), "2025-10-31 23:59:59+08:00");
    assert!(z.is_active(T0));
    // Parked inside across midnight: the episode starts at 00:00:00.
    let out = run(&china3(), &zs, &secs(T0, -300, 300, IN));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].started_ms, T0);
    // Only before: nothing.
    assert!(run(&china3(), &zs, &secs(T0, -3600, 0, IN)).is_empty());
}

fn exemption(from: i64, until: i64) -> ExemptionBook {
    ExemptionBook::new([Exemption {
        id: "PERMIT-1".into(),
        subject: ExemptionSubject::Vin(vin()),
        zone_id: Some("z".into()),
        valid_from_ms: from,
        valid_until_ms: until,
        reason: "test".into(),
    }])
}

#[test]
fn exemptions_inside_and_outside_validity() {
    let zs = set(vec![zone()]);
    let trace = secs(T0, 0, 600, IN);
    assert!(run(&china3(), &zs.with_exemptions(exemption(T0, T0 + 3_600_000)), &trace).is_empty());
    // Permit expires after 200 s: the episode starts at expiry.
    let out = run(&china3(), &zs.with_exemptions(exemption(T0 - 1000, T0 + 200_000)), &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].started_ms, T0 + 200_000);
    // Permit starts during an open episode: it closes, reason "exempt".
    let out = run(&china3(), &zs.with_exemptions(exemption(T0 + 300_000, T0 + 3_600_000)), &trace);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].ended_ms, Some(T0 + 300_000));
    assert_eq!(out[1].evidence["end_reason"], "exempt");
    // A permit for another VIN does nothing.
    let other = ExemptionBook::new([Exemption {
        subject: ExemptionSubject::Plate("浙B99999".into()),
        zone_id: None,
        ..exemption(T0, T0 + 3_600_000).find(&china3(), "z", T0).cloned().unwrap()
    }]);
    assert_eq!(run(&china3(), &zs.with_exemptions(other), &trace).len(), 1);
}

#[test]
fn cleaner_trucks_never_violate() {
    let zs = set(vec![zone()]);
    let trace = secs(T0, 0, 600, IN);
    for stage in [EmissionStage::ChinaIV, EmissionStage::ChinaV, EmissionStage::ChinaVI] {
        assert!(run(&truck(stage), &zs, &trace).is_empty(), "{stage:?}");
    }
    let mut ev = truck(EmissionStage::ChinaVI);
    ev.fuel = Fuel::Electric;
    assert!(run(&ev, &zs, &trace).is_empty());
    let mut ev_unknown_stage = truck(EmissionStage::Unknown);
    ev_unknown_stage.fuel = Fuel::Electric;
    assert!(run(&ev_unknown_stage, &zs, &trace).is_empty());
    let mut gas3 = truck(EmissionStage::ChinaIII);
    gas3.fuel = Fuel::Gas;
    assert!(run(&gas3, &zs, &trace).is_empty());
    assert_eq!(run(&truck(EmissionStage::ChinaII), &zs, &trace).len(), 1);
}

#[test]
fn non_road_machinery_applicability() {
    let mut mz = zone();
    mz.id = "m".into();
    mz.kind = ZoneKind::MachineryLowEmissionZone;
    mz.applicability = Applicability::banned_stage_machinery();
    let zs = set(vec![mz]);
    let trace = secs(T0, 0, 120, IN);
    let machine = |stage, ty: &str| Vehicle {
        kind: VehicleKind::NonRoadMachine,
        machine_type: ty.into(),
        emission_stage: stage,
        ..truck(EmissionStage::Unknown)
    };
    let out = run(&machine(EmissionStage::NonRoadI, "excavator"), &zs, &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule, "R6.banned_stage");
    assert_eq!(out[0].id, ViolationId::derive(&vin(), "R6.banned_stage", "m", T0));
    assert!(run(&machine(EmissionStage::NonRoadII, "excavator"), &zs, &trace).is_empty());
    assert_eq!(run(&machine(EmissionStage::NonRoadII, "forklift"), &zs, &trace).len(), 1);
    assert!(run(&machine(EmissionStage::NonRoadIII, "forklift"), &zs, &trace).is_empty());
    assert!(run(&china3(), &zs, &trace).is_empty(), "trucks are not machinery");
}

#[test]
fn invalid_fixes_are_ignored() {
    let zs = set(vec![zone()]);
    let invalid: Vec<_> = (0..600).map(|s| rec(T0 + s * 1000, IN, false)).collect();
    assert!(run(&china3(), &zs, &invalid).is_empty());
    // Invalid fixes outside neither close an open episode...
    let trace = [secs(T0, 0, 100, IN), (100..400).map(|s| rec(T0 + s * 1000, OUT, false)).collect()].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, ViolationStatus::Open);
    // ...nor does a record with no position at all, or an out-of-range one.
    let mut none = rec(T0 + 500_000, OUT, true);
    none.fix = None;
    let bad = rec(T0 + 501_000, (500.0, 30.0), true);
    let mut r = Run::default();
    r.feed(&china3(), &zs, &[secs(T0, 0, 100, IN), vec![none, bad]].concat());
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.state.tracked_zones(), 1);
}

#[test]
fn implausible_jumps_are_ignored() {
    let zs = set(vec![zone()]);
    let far = (121.5, 30.27); // ~130 km east
                              // Parked far away; every 10th fix a spurious one inside the zone.
    let spikes: Vec<_> =
        (0..900).map(|s| rec(T0 + s * 1000, if s % 10 == 5 { IN } else { far }, true)).collect();
    assert!(run(&china3(), &zs, &spikes).is_empty());
    // Inside for 5 minutes with spurious far fixes: one episode, never closed by them.
    let inside: Vec<_> =
        (0..300).map(|s| rec(T0 + s * 1000, if s % 7 == 3 { far } else { IN }, true)).collect();
    let out = run(&china3(), &zs, &inside);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, ViolationStatus::Open);
    // A bad first anchor is abandoned after three consistent fixes.
    let trace = [vec![rec(T0, far, true)], secs(T0, 1, 200, IN)].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].started_ms, T0 + 3000);
    // A genuine long drive after a gap is plausible (130 km in 2 h).
    let trace = [secs(T0, 0, 10, far), secs(T0, 7200, 7300, IN)].concat();
    assert_eq!(run(&china3(), &zs, &trace).len(), 1);
}

#[test]
fn inside_the_hole_is_outside() {
    let mut z = zone();
    let outer = square(CENTER.0, CENTER.1, 0.01).0.remove(0);
    let mut hole = square(CENTER.0, CENTER.1, 0.002).0.remove(0).exterior().clone();
    hole.0.reverse();
    z.geometry = MultiPolygon(vec![Polygon::new(outer.exterior().clone(), vec![hole])]);
    let zs = set(vec![z]);
    assert!(run(&china3(), &zs, &secs(T0, 0, 600, CENTER)).is_empty());
    assert_eq!(run(&china3(), &zs, &secs(T0, 0, 600, (CENTER.0 + 0.005, CENTER.1))).len(), 1);
}

#[test]
fn state_persisted_mid_episode_continues_to_the_same_single_violation() {
    let zs = set(vec![zone()]);
    let trace = [secs(T0, 0, 200, IN), secs(T0, 200, 300, OUT)].concat();
    let straight = run(&china3(), &zs, &trace);
    assert_eq!(straight.len(), 2);
    for cut in [30usize, 61, 100, 230] {
        let mut first = Run::default();
        first.feed(&china3(), &zs, &trace[..cut]);
        let bytes = postcard::to_allocvec(&first.state).unwrap();
        let restored: ZoneTrackState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(restored, first.state);
        let mut second = Run { state: restored, ..Default::default() };
        // A restart replays a few records already processed: they are ignored.
        second.feed(&china3(), &zs, &trace[cut.saturating_sub(5)..]);
        let all: Vec<_> = first.out.iter().chain(&second.out).cloned().collect();
        assert_eq!(all, straight, "cut at {cut}");
    }
}

#[test]
fn state_stays_small() {
    let zs = set(vec![zone()]);
    let mut r = Run::default();
    r.feed(&china3(), &zs, &secs(T0, 0, 4 * 3600, IN));
    let bytes = postcard::to_allocvec(&r.state).unwrap();
    assert!(bytes.len() < 400, "{} bytes mid-episode after 4 h", bytes.len());
    let mut r = Run::default();
    r.feed(&china3(), &zs, &secs(T0, 0, 100, OUT));
    assert_eq!(r.state.tracked_zones(), 0);
    assert!(postcard::to_allocvec(&r.state).unwrap().len() < 40);
}

#[test]
fn park_passages_in_and_out_without_violations() {
    let mut park = zone();
    park.id = "park".into();
    park.kind = ZoneKind::Park { enterprise_id: "ENT-STEEL-001".into() };
    park.applicability = Applicability::all_trucks();
    let zs = set(vec![park]);
    let trace = [secs(T0, 0, 10, OUT), secs(T0, 10, 700, IN), secs(T0, 700, 800, OUT)].concat();
    for stage in [EmissionStage::ChinaIII, EmissionStage::ChinaVI] {
        let mut r = Run::default();
        r.feed(&truck(stage), &zs, &trace);
        assert!(r.out.is_empty());
        assert_eq!(r.passages.len(), 2, "{:?}", r.passages);
        let (i, o) = (&r.passages[0], &r.passages[1]);
        assert_eq!((i.direction, i.time_ms), (PassageDirection::In, T0 + 10_000));
        assert_eq!((o.direction, o.time_ms), (PassageDirection::Out, T0 + 700_000));
        assert_eq!(i.enterprise_id, "ENT-STEEL-001");
        assert_eq!(o.fix.lon, OUT.0);
    }
    // Driving past the gate with jitter: no passage.
    let jitter: Vec<_> =
        (0..600).map(|s| rec(T0 + s * 1000, if s % 3 == 0 { EDGE_IN } else { EDGE_OUT }, true)).collect();
    let mut r = Run::default();
    r.feed(&china3(), &zs, &jitter);
    assert!(r.passages.is_empty());
}

#[test]
fn removed_zone_closes_its_episode() {
    let zs = set(vec![zone()]);
    let mut r = Run::default();
    r.feed(&china3(), &zs, &secs(T0, 0, 100, IN));
    let zs2 = zs.without(&["z"]);
    r.feed(&china3(), &zs2, &secs(T0, 100, 101, IN));
    assert_eq!(r.out.len(), 2);
    assert_eq!(r.out[1].status, ViolationStatus::Closed);
    assert_eq!(r.out[1].evidence["end_reason"], "zone_removed");
    assert_eq!(r.out[1].id, r.out[0].id);
    assert_eq!(r.out[1].city_code.as_deref(), Some("330100"), "kept from state");
    assert_eq!(r.state.tracked_zones(), 0);
}

#[test]
fn late_tracker_marks_violations_and_old_records_are_ignored() {
    let zs = set(vec![zone()]);
    let trace = secs(T0, 0, 100, IN);
    let tracker = ZoneTracker::for_late_data(TrackerConfig::default());
    let (mut st, mut out, mut pass) = (ZoneTrackState::default(), Vec::new(), Vec::new());
    for r in &trace {
        tracker.update(&mut st, &china3(), r, &zs, &mut out, &mut pass);
    }
    assert!(out[0].late);
    // Out of order: older records after newer ones are ignored by the live tracker.
    let mut r = Run::default();
    r.feed(&china3(), &zs, &secs(T0, 1000, 1001, OUT));
    r.feed(&china3(), &zs, &trace);
    assert!(r.out.is_empty());
    // Replays of the same data with fresh state give the same ids.
    assert_eq!(run(&china3(), &zs, &trace)[0].id, run(&china3(), &zs, &trace)[0].id);
}

/// Metres per degree of longitude / latitude at the test zone (30.27° N).
const M_PER_DEG_LON: f64 = 111_320.0 * 0.863_68;
const M_PER_DEG_LAT: f64 = 110_574.0;

/// A position `east_m` metres east of the zone's east edge (negative = inside).
fn east_of_edge(east_m: f64, north_m: f64) -> (f64, f64) {
    (120.17 + east_m / M_PER_DEG_LON, 30.27 + north_m / M_PER_DEG_LAT)
}

/// First-order Gauss-Markov GNSS error per axis (σ metres, correlation time τ seconds), sampled
/// at 1 Hz from a fixed seed: the slowly drifting error of multipath and atmosphere.
struct GaussMarkov {
    state: u64,
    x: f64,
    y: f64,
    a: f64,
    b: f64,
}

impl GaussMarkov {
    fn new(seed: u64, sigma_m: f64, tau_s: f64) -> Self {
        let a = (-1.0 / tau_s).exp();
        GaussMarkov {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            x: 0.0,
            y: 0.0,
            a,
            b: sigma_m * (1.0 - a * a).sqrt(),
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        ((self.state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn step(&mut self) -> (f64, f64) {
        self.x = self.a * self.x + self.b * self.normal();
        self.y = self.a * self.y + self.b * self.normal();
        (self.x, self.y)
    }
}

/// Failure mode (a): a slowly drifting error on a road 10–20 m outside the zone. A drift that
/// holds the apparent position ~10 m inside for 90 s proved R1 before the entry margin; now no
/// fix within `min_depth_m` (20 m) of the boundary is evidence, so nothing is proven.
#[test]
fn correlated_drift_outside_the_border_never_raises_r1() {
    let zs = set(vec![zone()]);
    // Parked 15 m outside; the error swings 25 m west for 90 s and back.
    let trace: Vec<_> = (0..600)
        .map(|s| {
            let drift = if (200..290).contains(&s) {
                -25.0
            } else {
                -25.0 * (-((s - 245) as f64 / 60.0).powi(2)).exp()
            };
            rec(T0 + s * 1000, east_of_edge(15.0 + drift, 0.0), true)
        })
        .collect();
    assert!(run(&china3(), &zs, &trace).is_empty());
    // Ten hours on a road 10 m and 20 m outside the border, Gauss-Markov error σ = 6 m per axis,
    // τ = 60 s (above the urban figures of the literature, see load-tests/README.md), ten seeds.
    for seed in 0..10 {
        for offset in [10.0, 20.0] {
            let mut gm = GaussMarkov::new(seed, 6.0, 60.0);
            let trace: Vec<_> = (0..36_000)
                .map(|s| {
                    let (ex, ey) = gm.step();
                    rec(T0 + s * 1000, east_of_edge(offset + ex, ((s % 600) as f64 - 300.0) * 2.0 + ey), true)
                })
                .collect();
            let out = run(&china3(), &zs, &trace);
            assert!(out.is_empty(), "seed {seed}, {offset} m outside: {out:#?}");
        }
    }
}

/// What a truck ≤ 10 m inside the border gets: nothing. Within the margin the fix cannot tell
/// inside from outside, so such a stay is never proven (the recall this safeguard costs). A
/// truck 30 m inside is proven after 60 s, and once proven it is followed up to the boundary
/// itself (hysteresis): shallow and boundary fixes continue the episode.
#[test]
fn entry_margin_and_hysteresis() {
    let zs = set(vec![zone()]);
    assert!(run(&china3(), &zs, &secs(T0, 0, 3600, EDGE_IN)).is_empty(), "9.6 m inside");
    let deep = east_of_edge(-30.0, 0.0);
    let trace = [secs(T0, 0, 61, deep), secs(T0, 61, 600, EDGE_IN), secs(T0, 600, 700, OUT)].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[1].ended_ms, Some(T0 + 600_000), "followed while shallow, ends on leaving");
    assert_eq!(out[1].evidence["credited_dwell_s"], 60.0);
    // Shallow fixes neither prove nor discard an unproven stay: 30 s deep, 30 s shallow, 30 s
    // deep is 60 s of evidence only after the second deep stretch has added its own 30 s.
    let trace = [secs(T0, 0, 31, deep), secs(T0, 31, 61, EDGE_IN), secs(T0, 61, 200, deep)].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].started_ms, T0);
    assert_eq!(out[0].evidence["last_inside_fix"]["time_ms"], T0 + 91_000);
}

/// Failure mode (b): a reacquisition jump after a GPS loss. The truck cut 20 s through a zone
/// corner (too short to violate), lost GPS for 120 s in a tunnel while leaving, and the first
/// fixes after the tunnel land 300 m inside before settling back outside. Before, the time in
/// the gap was credited to the dwell (entry to first fix after the gap: 140 s) and R1 fired.
#[test]
fn reacquisition_jump_after_gps_loss_never_raises_r1() {
    let zs = set(vec![zone()]);
    let mut trace = secs(T0, 0, 20, east_of_edge(-40.0, 0.0));
    // Tunnel: invalid fixes (GNSS status bit 0), then a jump that converges over 40 s.
    trace.extend((20..140).map(|s| rec(T0 + s * 1000, east_of_edge(-40.0, 0.0), false)));
    trace.extend((140..180).map(|s| {
        let k = (s - 140) as f64 / 40.0;
        rec(T0 + s * 1000, east_of_edge(-300.0 * (1.0 - k) + 200.0 * k, 0.0), true)
    }));
    trace.extend(secs(T0, 180, 600, east_of_edge(200.0, 0.0)));
    assert!(run(&china3(), &zs, &trace).is_empty());
    // Time in a gap is never credited: 30 s inside, 250 s without records, 20 s inside.
    let deep = east_of_edge(-100.0, 0.0);
    let trace = [secs(T0, 0, 30, deep), secs(T0, 280, 300, deep), secs(T0, 300, 400, OUT)].concat();
    assert!(run(&china3(), &zs, &trace).is_empty());
    // A truck that really stays inside is still proven after a tunnel: 40 s before it, 20 s of
    // gap and 30 s of settling not credited, then 20 s more.
    let trace = [secs(T0, 0, 40, deep), secs(T0, 60, 300, deep)].concat();
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].started_ms, T0);
    assert_eq!(out[0].evidence["last_inside_fix"]["time_ms"], T0 + 111_000);
}

/// A proven episode is neither split nor ended by a jump after a GPS loss.
#[test]
fn reacquisition_jump_does_not_split_a_proven_episode() {
    let zs = set(vec![zone()]);
    let deep = east_of_edge(-100.0, 0.0);
    let mut trace = secs(T0, 0, 120, deep);
    trace.extend(secs(T0, 180, 210, east_of_edge(400.0, 0.0)));
    trace.extend(secs(T0, 210, 600, deep));
    let out = run(&china3(), &zs, &trace);
    assert_eq!(out.len(), 1, "{out:#?}");
}
