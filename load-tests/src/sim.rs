//! One vehicle's timeline: motion along its route, engine values, planted faults, offline gaps
//! with reissue. Produces 10-record batches (10 s of 1 Hz data, the HJ 1239 cadence) in simulated
//! time, as fast as the driver asks: time is compressed, nothing waits for the wall clock.
use crate::engine::{EngineModel, Faults};
use crate::fleet::{Class, VehicleSpec};
use crate::noise::{GnssNoise, GnssSample, SensorNoise};
use crate::plant::{Borderline, Expected};
use crate::plant::{Plan, Span};
use crate::rng::Rng;
use crate::routes::{Route, CITIES, OUTSIDE};
use crate::truth::{ZoneTruthLog, ZoneWorld};
use smogwatch::proto;
use std::collections::VecDeque;
use std::sync::Arc;

pub const RECORDS_PER_BATCH: u32 = 10;
/// Reissue batches a vehicle sends per tick once back online (terminals reissue at a lower rate
/// than real time, but faster than they recorded).
const REISSUE_PER_TICK: usize = 3;

/// One 10-record batch of one vehicle.
#[derive(Debug, Clone)]
pub struct VehicleBatch {
    pub vehicle: u32,
    pub records: Vec<proto::TelemetryRecord>,
    pub reissue: bool,
}

pub struct VehicleSim {
    pub spec: VehicleSpec,
    pub plan: Plan,
    rng: Rng,
    /// Time of the first record, epoch ms.
    pub t0_ms: i64,
    /// Next simulated second to generate.
    next_s: u32,
    route: Route,
    km: f64,
    speed_kmh: f64,
    cruise_kmh: f64,
    prev_speed_kmh: f64,
    /// Seconds left standing still (turnaround at a route end).
    stop_left: u32,
    engine: EngineModel,
    pending_reissue: VecDeque<Vec<proto::TelemetryRecord>>,
    /// Zone ground truth from the true path (vehicles a zone rule can apply to).
    zone_truth: Option<ZoneTruthLog>,
    /// Field noise (see [`crate::noise`]); `None` = an ideal terminal.
    gnss: Option<GnssNoise>,
    sensors: Option<SensorNoise>,
}

impl VehicleSim {
    pub fn new(seed: u64, spec: VehicleSpec, plan: Plan, t0_ms: i64) -> Self {
        let mut rng = Rng::derive(seed, u64::from(spec.index), 3);
        let home = (spec.home.lon, spec.home.lat);
        let route = match (spec.class, plan) {
            (Class::Machine(_), _) => {
                // A work site a few km outside the home city centre.
                let site = (home.0 + rng.noise(0.08), home.1 + rng.noise(0.08));
                Route::around(site, 0.15, &mut rng)
            }
            (Class::DieselTruck(3), Plan::ZoneEntry) => Route::around(home, 2.0, &mut rng),
            (Class::DieselTruck(3), _) => {
                let a = OUTSIDE[rng.below(OUTSIDE.len() as u64) as usize];
                let mut b = OUTSIDE[rng.below(OUTSIDE.len() as u64) as usize];
                if a.name == b.name {
                    b = OUTSIDE
                        [(OUTSIDE.iter().position(|c| c.name == a.name).unwrap_or(0) + 1) % OUTSIDE.len()];
                }
                Route::between((a.lon, a.lat), (b.lon, b.lat), &mut rng)
            }
            _ => {
                let mut dest = CITIES[rng.below(CITIES.len() as u64) as usize];
                if dest.name == spec.home.name {
                    dest = CITIES
                        [(CITIES.iter().position(|c| c.name == dest.name).unwrap_or(0) + 1) % CITIES.len()];
                }
                Route::between(home, (dest.lon, dest.lat), &mut rng)
            }
        };
        let km = rng.range(0.0, route.length_km() * 0.8);
        let cruise_kmh = match (spec.class, plan) {
            (Class::Machine(_), _) => rng.range(2.0, 5.0),
            (_, Plan::ZoneEntry | Plan::ZoneBorder { .. }) => rng.range(25.0, 40.0),
            _ => rng.range(60.0, 85.0),
        };
        // Planted vehicles start warm so their episode counts from its first second.
        let warm = plan != Plan::Clean || rng.chance(0.8);
        let engine = EngineModel::new(spec.class, warm, &mut rng);
        VehicleSim {
            spec,
            plan,
            rng,
            t0_ms,
            next_s: 0,
            route,
            km,
            speed_kmh: cruise_kmh,
            cruise_kmh,
            prev_speed_kmh: cruise_kmh,
            stop_left: 0,
            engine,
            pending_reissue: VecDeque::new(),
            zone_truth: None,
            gnss: None,
            sensors: None,
        }
    }

    /// Switches the field noise models on (seeded from the vehicle).
    pub fn with_noise(mut self, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, u64::from(self.spec.index), 4);
        self.gnss = Some(GnssNoise::new(&mut rng));
        self.sensors = Some(SensorNoise::new(&mut rng, self.plan == Plan::Clean));
        self
    }

    /// Judges this vehicle's true path against `world` (R1 / R6 zone truth); a border-road plan
    /// gets its road along the home district's border.
    pub fn with_world(mut self, world: &Arc<ZoneWorld>) -> Self {
        if !matches!(self.spec.class, Class::DieselTruck(3) | Class::Machine(_)) {
            return self;
        }
        if let Plan::ZoneBorder { offset_m } = self.plan {
            if let Some(route) = border_road(world, self.spec.home.city_code, f64::from(offset_m)) {
                self.km = self.rng.range(0.0, route.length_km() * 0.5);
                self.route = route;
            }
        }
        if self.plan == Plan::BannedMachine {
            // A work site in the middle of the machinery low-emission zone.
            if let Some(ring) = world.zones.get(LEZ).and_then(|z| z.geometry.0.first().map(|p| p.exterior()))
            {
                let n = ring.0.len().max(1) as f64;
                let c = ring.0.iter().fold((0.0, 0.0), |a, p| (a.0 + p.x / n, a.1 + p.y / n));
                self.route = Route::around(c, 0.15, &mut self.rng);
                self.km = 0.0;
            }
        }
        if let Ok(v) = smogwatch::grpc::convert::vehicle_from_proto(self.spec.to_proto()) {
            self.zone_truth = Some(ZoneTruthLog::new(world.clone(), v, self.t0_ms));
        }
        self
    }

    /// The zone truth of what this vehicle did (taken once, after its simulation).
    pub fn take_zone_truth(&mut self) -> Option<(Vec<Expected>, Vec<Borderline>)> {
        self.zone_truth.take().map(ZoneTruthLog::finish)
    }

    fn in_span(span: Option<Span>, s: u32) -> bool {
        span.is_some_and(|sp| sp.contains(s))
    }

    fn faults(&self, s: u32) -> Faults {
        match self.plan {
            Plan::Nox(sp) | Plan::Offline { nox: Some(sp), .. } => {
                Faults { high_nox: sp.contains(s), ..Default::default() }
            }
            Plan::ScrTamper(sp) => Faults { scr_tamper: sp.contains(s), ..Default::default() },
            Plan::ReagentEmpty(sp) => Faults { reagent_empty: sp.contains(s), ..Default::default() },
            Plan::DpfBypass(sp) => Faults { dpf_bypass: sp.contains(s), ..Default::default() },
            _ => Faults::default(),
        }
    }

    fn gap(&self) -> Option<Span> {
        match self.plan {
            Plan::Offline { gap, .. } => Some(gap),
            _ => None,
        }
    }

    /// Advances one simulated second and returns its record.
    fn record(&mut self, s: u32) -> proto::TelemetryRecord {
        let machine = matches!(self.spec.class, Class::Machine(_));
        if self.stop_left > 0 {
            self.stop_left -= 1;
            self.speed_kmh = 0.0;
        } else {
            // Smooth speed changes with occasional slow traffic; planted vehicles keep moving.
            let target = if !machine && self.plan == Plan::Clean && self.rng.chance(0.002) {
                self.cruise_kmh * 0.4
            } else {
                self.cruise_kmh
            };
            self.speed_kmh += (target - self.speed_kmh) * 0.05 + self.rng.noise(0.8);
            self.speed_kmh = self.speed_kmh.clamp(0.0, 95.0);
            self.km += self.speed_kmh / 3600.0;
            if self.km >= self.route.length_km() {
                self.route = self.route.reversed();
                self.km = 0.0;
                if !machine && self.plan == Plan::Clean {
                    self.stop_left = 60;
                }
            }
        }
        let (lon, lat) = self.route.position_at(self.km);
        let fix = match self.gnss.as_mut() {
            Some(g) => g.step((lon, lat)),
            None => GnssSample { pos: (lon, lat), valid: true, healthy: true },
        };
        if let Some(t) = self.zone_truth.as_mut() {
            t.observe(s, (lon, lat), fix.healthy);
        }
        let faults = self.faults(s);
        let mut engine = self.engine.step(self.speed_kmh, machine, faults, &mut self.rng);
        if let Some(n) = self.sensors.as_mut() {
            if let (Some(up), Some(down)) = (engine.scr_upstream_nox_ppm, engine.scr_downstream_nox_ppm) {
                engine.scr_downstream_nox_ppm = n.downstream(s, up, down).map(|d| (d * 10.0).round() / 10.0);
            }
            if let Some(level) = engine.reagent_remaining_pct.filter(|_| !faults.reagent_empty) {
                engine.reagent_remaining_pct = Some((n.reagent(level) * 10.0).round() / 10.0);
            }
            if let (Some(_), Some(air)) = (engine.dpf_pressure_diff_kpa, engine.intake_air_flow_kgph) {
                // A removed filter does not regenerate.
                if n.regenerating(s) && !faults.dpf_bypass {
                    let dp = 0.4 + air * 0.0012 + self.rng.noise(0.05);
                    engine.dpf_pressure_diff_kpa = Some((dp * 10.0).round() / 10.0);
                }
            }
        }
        let smoke = matches!(self.plan, Plan::Smoke(sp) if sp.contains(s));
        let accelerating = self.speed_kmh > self.prev_speed_kmh + 0.5;
        self.prev_speed_kmh = self.speed_kmh;
        let coolant = engine.coolant_temp_c.unwrap_or(88.0);
        let opacity_k = if self.spec.opacity_meter {
            let clean = self.rng.range(0.08, 0.25);
            let k = match self.sensors.as_mut() {
                _ if smoke => self.rng.range(3.2, 4.0),
                Some(n) => n.opacity(clean, coolant, accelerating),
                None => clean,
            };
            Some((k * 100.0).round() / 100.0)
        } else {
            None
        };
        let stream_kind = match self.spec.class {
            Class::GasTruck => proto::EngineStreamKind::Gas,
            Class::NewEnergyTruck => proto::EngineStreamKind::Unspecified,
            _ => proto::EngineStreamKind::Diesel,
        };
        proto::TelemetryRecord {
            vin: self.spec.vin.clone(),
            time_ms: self.t0_ms + i64::from(s) * 1000,
            position: Some(proto::Position {
                longitude: (fix.pos.0 * 1e6).round() / 1e6,
                latitude: (fix.pos.1 * 1e6).round() / 1e6,
                valid: fix.valid,
            }),
            engine: Some(engine),
            obd: (s.is_multiple_of(30) && self.spec.class.is_diesel()).then(|| self.obd(s)),
            opacity_k,
            stream_kind: stream_kind as i32,
        }
    }

    fn obd(&self, s: u32) -> proto::ObdInfo {
        let on = |p: &Plan| match p {
            Plan::MilOn(sp) | Plan::EcuVinMismatch(sp) | Plan::CvnChanged(sp) => s >= sp.start_s,
            _ => false,
        };
        let active = on(&self.plan);
        let mil = if active && matches!(self.plan, Plan::MilOn(_)) {
            proto::MilStatus::On
        } else {
            proto::MilStatus::Off
        };
        let ecu_vin = if active && matches!(self.plan, Plan::EcuVinMismatch(_)) {
            "LSMWZ999999999999".to_string()
        } else {
            self.spec.vin.clone()
        };
        let cvn = if active && matches!(self.plan, Plan::CvnChanged(_)) { "C0FFEE01" } else { "5A5A5A5A" };
        proto::ObdInfo {
            protocol: proto::ObdProtocol::Saej1939 as i32,
            mil: mil as i32,
            diag_support_status: Some(0x0F),
            diag_readiness_status: Some(0),
            ecu_vin,
            software_calibration_id: "SIMCAL0001".into(),
            cvn: cvn.into(),
            iupr: vec![100; 18],
            fault_codes: vec![],
            fault_codes_valid: true,
            fault_codes_readable: vec![],
        }
    }

    /// The next 10 simulated seconds: the live batch (unless the terminal is offline, in which
    /// case it is buffered for reissue) and any reissue batches due now.
    pub fn tick(&mut self, out: &mut Vec<VehicleBatch>) {
        let first = self.next_s;
        let records: Vec<_> = (first..first + RECORDS_PER_BATCH).map(|s| self.record(s)).collect();
        self.next_s += RECORDS_PER_BATCH;
        let offline = Self::in_span(self.gap(), first);
        if offline {
            self.pending_reissue.push_back(records);
        } else {
            out.push(VehicleBatch { vehicle: self.spec.index, records, reissue: false });
            for _ in 0..REISSUE_PER_TICK {
                let Some(r) = self.pending_reissue.pop_front() else { break };
                out.push(VehicleBatch { vehicle: self.spec.index, records: r, reissue: true });
            }
        }
    }

    /// Every record up to this time (exclusive) has been handed out.
    pub fn complete_until_ms(&self) -> i64 {
        let through_s = match (self.gap(), self.pending_reissue.is_empty()) {
            (Some(g), false) => g.start_s,
            (Some(g), true) if g.contains(self.next_s.saturating_sub(1)) => g.start_s,
            _ => self.next_s,
        };
        self.t0_ms + i64::from(through_s) * 1000
    }

    pub fn simulated_s(&self) -> u32 {
        self.next_s
    }

    pub fn has_pending_reissue(&self) -> bool {
        !self.pending_reissue.is_empty()
    }

    /// Hands out everything still buffered for reissue (the run's simulated time is over).
    pub fn drain_reissue(&mut self, out: &mut Vec<VehicleBatch>) {
        while let Some(r) = self.pending_reissue.pop_front() {
            out.push(VehicleBatch { vehicle: self.spec.index, records: r, reissue: true });
        }
    }
}

/// The sample machinery low-emission zone (Qiantang, approximate).
const LEZ: &str = "R6-330114-LEZ";

/// A road along the border of the R1 district zone of `city_code`, `offset_m` metres inside
/// (positive) or outside: the zone's outer ring, each vertex moved radially (the sample zones
/// are smooth blobs, so radial is close to normal).
fn border_road(world: &ZoneWorld, city_code: &str, offset_m: f64) -> Option<Route> {
    let zone = world.zones.get(&format!("R1-{city_code}-DISTRICTS"))?;
    let ring = zone.geometry.0.first()?.exterior();
    let n = ring.0.len().max(1) as f64;
    let (cx, cy) = ring.0.iter().fold((0.0, 0.0), |a, c| (a.0 + c.x / n, a.1 + c.y / n));
    let kx = 111_320.0 * cy.to_radians().cos();
    let ky = 110_574.0;
    let points = ring
        .0
        .iter()
        .map(|c| {
            let (dx, dy) = ((c.x - cx) * kx, (c.y - cy) * ky);
            let r = dx.hypot(dy).max(1.0);
            let f = (r - offset_m) / r;
            (cx + dx * f / kx, cy + dy * f / ky)
        })
        .collect();
    Some(Route::through(points))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::vehicle;
    use crate::plant::Span;

    fn sim(plan: Plan) -> VehicleSim {
        let mut spec = vehicle(1, 0, false);
        spec.class = Class::DieselTruck(6);
        VehicleSim::new(1, spec, plan, 1_700_000_000_000)
    }

    #[test]
    fn batches_are_ten_consecutive_seconds_at_plausible_speeds() {
        let mut v = sim(Plan::Clean);
        let mut out = Vec::new();
        for _ in 0..30 {
            v.tick(&mut out);
        }
        let times: Vec<i64> = out.iter().flat_map(|b| b.records.iter().map(|r| r.time_ms)).collect();
        assert_eq!(times.len(), 300);
        assert!(times.windows(2).all(|w| w[1] - w[0] == 1000));
        let mut prev: Option<(f64, f64)> = None;
        for r in out.iter().flat_map(|b| &b.records) {
            let p = r.position.as_ref().unwrap();
            if let Some(q) = prev {
                let km = crate::routes::haversine_km(q, (p.longitude, p.latitude));
                assert!(km < 0.03, "{km} km in one second");
            }
            prev = Some((p.longitude, p.latitude));
        }
        assert_eq!(v.complete_until_ms(), 1_700_000_000_000 + 300_000);
    }

    #[test]
    fn offline_gap_is_buffered_then_reissued_in_order() {
        let gap = Span { start_s: 20, len_s: 40 };
        let mut v = sim(Plan::Offline { gap, nox: None });
        let mut out = Vec::new();
        for _ in 0..6 {
            v.tick(&mut out);
        }
        assert_eq!(out.len(), 2, "two live batches before the gap, none during it");
        assert_eq!(v.complete_until_ms(), v.t0_ms + 20_000);
        v.tick(&mut out); // back online at 60 s: live + 3 reissue
        assert_eq!(out.len(), 6);
        assert!(!out[2].reissue && out[3].reissue && out[3].records[0].time_ms == v.t0_ms + 20_000);
        v.tick(&mut out);
        assert_eq!(out.iter().filter(|b| b.reissue).count(), 4);
        assert!(!v.has_pending_reissue());
        assert_eq!(v.complete_until_ms(), v.t0_ms + 80_000);
    }
}
