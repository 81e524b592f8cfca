//! Field noise for the simulator: seeded, per vehicle, on by default in every scenario
//! (`Scenario::noise`). Each model states where its parameters come from. Compliant vehicles
//! under noise must raise nothing; the truth never depends on the noise (it comes from the true
//! path and true emissions), only on whether the terminal could report it at all.
//!
//! The sources are cited from the published literature as generally known (GPS SPS Performance
//! Standard, GNSS/INS textbooks, NOx-sensor datasheets); the exact figures were not re-checked
//! against the documents here: UNVERIFIED, tune them when field data is available.
//!
//! | model | parameters | source / reasoning |
//! |---|---|---|
//! | correlated GNSS error, first-order Gauss-Markov per axis | σ 2.5–6 m, τ 30–180 s | GPS SPS Performance Standard (2020): ≤ 8 m 95 % horizontal ⇒ ≈ 3–4 m per axis; urban multipath larger and correlated over tens of seconds to minutes (GNSS/INS literature models it as 1st-order Gauss-Markov with τ of 30–300 s) |
//! | invalid fixes (status bit 0) | bursts of 1–5 s, 0.2 % of seconds | receivers flag fixes below their quality mask in short bursts |
//! | GNSS outage (tunnel, garage, canyon) | one per ~20 min, 10–180 s; terminal repeats the last fix, flagged invalid | typical urban tunnel and underpass lengths at 30–80 km/h |
//! | reacquisition jump | 100–500 m, decaying with τ 8 s | first fixes after a warm start are off by hundreds of metres and converge within tens of seconds |
//! | NOx sensor spikes | 30 % of SCR vehicles, 1–3 s every 30–60 s, downstream ≈ upstream | dew-point / heater transients and CAN glitches of smart NOx sensors |
//! | stuck / dead downstream sensor | 1 % / 1 % of SCR vehicles | sensor failure: frozen value (550–750 ppm) / no value |
//! | NH₃ slip read as NOx | 2 % of SCR vehicles, 60–300 s episodes, downstream 1.3–1.8 × upstream | NOx sensors are cross-sensitive to NH₃ (datasheets of smart NOx sensors); over-dosing |
//! | reagent slosh, near-empty tank | ±1 % level noise; 3 % of vehicles at 2–4 % level with ±2.5 % slosh | level senders in a moving tank |
//! | DPF regeneration (China VI) | every 30–60 min for 10–20 min, Δp ≥ 0.4 kPa | soot burn-off lowers Δp, a filter in place keeps it well above 0.2 kPa |
//! | acceleration puffs | k 0.4–0.9 m⁻¹ for 1–2 s on 20 % of accelerations | transient smoke near the 0.7 limit b |
//! | cold-start steam | k 1.0–1.8 m⁻¹ while coolant < 40 °C on cold starts | water vapour condensing in a cold exhaust |
//! | SCR near light-off | 10 % of vehicles idle-heavy, SCR inlet 240–265 °C | cold-start and low-load duty cycles |
use crate::rng::Rng;

/// Metres per degree of latitude; longitude scales with cos(latitude).
const M_PER_DEG_LAT: f64 = 110_574.0;
const M_PER_DEG_LON_EQ: f64 = 111_320.0;

/// What the terminal reports for one second.
#[derive(Debug, Clone, Copy)]
pub struct GnssSample {
    pub pos: (f64, f64),
    pub valid: bool,
    /// The reported fix is a good one (valid, not in an outage, converged after one): the truth
    /// counts a stay as provable only over such seconds.
    pub healthy: bool,
}

#[derive(Debug, Clone)]
pub struct GnssNoise {
    rng: Rng,
    a: f64,
    b: f64,
    err: (f64, f64),
    invalid_left: u32,
    outage_left: u32,
    jump: (f64, f64),
    last_reported: Option<(f64, f64)>,
}

impl GnssNoise {
    pub fn new(rng: &mut Rng) -> Self {
        let sigma = rng.range(2.5, 6.0);
        let tau = rng.range(30.0, 180.0);
        let a = (-1.0 / tau).exp();
        let mut own = Rng::new(rng.next_u64());
        let err = (sigma * normal(&mut own), sigma * normal(&mut own));
        GnssNoise {
            rng: own,
            a,
            b: sigma * (1.0 - a * a).sqrt(),
            err,
            invalid_left: 0,
            outage_left: 0,
            jump: (0.0, 0.0),
            last_reported: None,
        }
    }

    /// One second at the true position `pos`.
    pub fn step(&mut self, pos: (f64, f64)) -> GnssSample {
        let r = &mut self.rng;
        self.err = (self.a * self.err.0 + self.b * normal(r), self.a * self.err.1 + self.b * normal(r));
        if self.outage_left == 0 && r.chance(1.0 / 1200.0) {
            self.outage_left = 10 + r.below(171) as u32;
        }
        if self.outage_left > 0 {
            self.outage_left -= 1;
            if self.outage_left == 0 {
                let (d, ang) = (r.range(100.0, 500.0), r.range(0.0, std::f64::consts::TAU));
                self.jump = (d * ang.cos(), d * ang.sin());
            }
            let last = self.last_reported.unwrap_or(pos);
            return GnssSample { pos: last, valid: false, healthy: false };
        }
        if self.invalid_left == 0 && r.chance(0.002) {
            self.invalid_left = 1 + r.below(5) as u32;
        }
        let decay = (-1.0f64 / 8.0).exp();
        self.jump = (self.jump.0 * decay, self.jump.1 * decay);
        let (ex, ey) = (self.err.0 + self.jump.0, self.err.1 + self.jump.1);
        let kx = M_PER_DEG_LON_EQ * pos.1.to_radians().cos();
        let reported = (pos.0 + ex / kx, pos.1 + ey / M_PER_DEG_LAT);
        let converged = self.jump.0.hypot(self.jump.1) < 5.0;
        if self.invalid_left > 0 {
            self.invalid_left -= 1;
            return GnssSample { pos: reported, valid: false, healthy: false };
        }
        self.last_reported = Some(reported);
        GnssSample { pos: reported, valid: true, healthy: converged }
    }
}

/// Standard normal (Box-Muller).
pub fn normal(r: &mut Rng) -> f64 {
    let u = r.unit().max(1e-12);
    let v = r.unit();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Sensor and aftertreatment noise of one vehicle, decided once from its seed.
#[derive(Debug, Clone)]
pub struct SensorNoise {
    rng: Rng,
    spikes: bool,
    next_spike_s: u32,
    spike_left: u32,
    /// Downstream frozen at this value from this second on.
    stuck: Option<(u32, f64)>,
    dead: bool,
    slip: bool,
    slip_left: u32,
    pub near_empty_reagent: Option<f64>,
    next_regen_s: u32,
    regen_left: u32,
    pub idle_heavy: bool,
    steam_left: u32,
    puff_left: u32,
}

impl SensorNoise {
    /// `sensor_faults`: stuck / dead / slip may be drawn (compliant vehicles only: a planted
    /// exceedance on a dead sensor would be unprovable, not a miss).
    pub fn new(rng: &mut Rng, sensor_faults: bool) -> Self {
        let mut own = Rng::new(rng.next_u64());
        let x = own.unit();
        let stuck =
            (sensor_faults && x < 0.01).then(|| (60 + own.below(300) as u32, own.range(550.0, 750.0)));
        let dead = sensor_faults && (0.01..0.02).contains(&x);
        let slip = sensor_faults && (0.02..0.04).contains(&x);
        SensorNoise {
            spikes: own.chance(0.3),
            next_spike_s: 30 + own.below(31) as u32,
            spike_left: 0,
            stuck,
            dead,
            slip,
            slip_left: 0,
            near_empty_reagent: (sensor_faults && own.chance(0.03)).then(|| own.range(2.0, 4.0)),
            next_regen_s: own.below(3600) as u32,
            regen_left: 0,
            idle_heavy: own.chance(0.1),
            steam_left: 30 + own.below(31) as u32,
            puff_left: 0,
            rng: own,
        }
    }

    /// Downstream NOx as the sensor reports it at second `s`; `None` for a dead sensor.
    pub fn downstream(&mut self, s: u32, up: f64, down: f64) -> Option<f64> {
        if self.dead {
            return None;
        }
        if let Some((from, v)) = self.stuck {
            if s >= from {
                return Some(v);
            }
        }
        if self.slip {
            if self.slip_left == 0 && self.rng.chance(1.0 / 600.0) {
                self.slip_left = 60 + self.rng.below(241) as u32;
            }
            if self.slip_left > 0 {
                self.slip_left -= 1;
                return Some(up * self.rng.range(1.3, 1.8));
            }
        }
        if self.spikes {
            if s >= self.next_spike_s {
                self.spike_left = 1 + self.rng.below(3) as u32;
                self.next_spike_s = s + 30 + self.rng.below(31) as u32;
            }
            if self.spike_left > 0 {
                self.spike_left -= 1;
                return Some(up * self.rng.range(0.9, 1.0));
            }
        }
        Some(down)
    }

    /// Reagent level as the sender reports it.
    pub fn reagent(&mut self, level: f64) -> f64 {
        match self.near_empty_reagent {
            Some(l) => (l + self.rng.noise(2.5)).max(0.0),
            None => (level + self.rng.noise(1.0)).max(0.0),
        }
    }

    /// Whether a DPF regeneration is running at second `s`.
    pub fn regenerating(&mut self, s: u32) -> bool {
        if self.regen_left == 0 && s >= self.next_regen_s {
            self.regen_left = 600 + self.rng.below(601) as u32;
            self.next_regen_s = s + self.regen_left + 1800 + self.rng.below(1801) as u32;
        }
        if self.regen_left > 0 {
            self.regen_left -= 1;
            return true;
        }
        false
    }

    /// Opacity as the meter reads it: steam while the coolant is cold after a cold start,
    /// puffs on accelerations, else the clean value.
    pub fn opacity(&mut self, clean_k: f64, coolant_c: f64, accelerating: bool) -> f64 {
        if coolant_c < 40.0 && self.steam_left > 0 {
            self.steam_left -= 1;
            return self.rng.range(1.0, 1.8);
        }
        if self.puff_left == 0 && accelerating && self.rng.chance(0.02) {
            self.puff_left = 1 + self.rng.below(2) as u32;
        }
        if self.puff_left > 0 {
            self.puff_left -= 1;
            return self.rng.range(0.4, 0.9);
        }
        clean_k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_markov_error_has_its_sigma_and_outages_end_with_a_jump() {
        let mut rng = Rng::new(4);
        let mut g = GnssNoise::new(&mut rng);
        let (mut sum2, mut n, mut invalid, mut far) = (0.0, 0.0, 0, 0);
        for _ in 0..200_000 {
            let s = g.step((120.0, 30.0));
            let dx = (s.pos.0 - 120.0) * M_PER_DEG_LON_EQ * 30f64.to_radians().cos();
            let dy = (s.pos.1 - 30.0) * M_PER_DEG_LAT;
            if !s.valid {
                invalid += 1;
                continue;
            }
            if s.healthy {
                sum2 += dx * dx + dy * dy;
                n += 1.0;
            } else if dx.hypot(dy) > 50.0 {
                far += 1;
            }
        }
        let rms = (sum2 / n / 2.0).sqrt();
        assert!((1.5..8.0).contains(&rms), "per-axis rms {rms}");
        assert!(invalid > 1000, "{invalid}");
        assert!(far > 10, "reacquisition jumps: {far}");
    }
}
