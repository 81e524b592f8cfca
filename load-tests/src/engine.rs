//! Engine and aftertreatment values for one vehicle, second by second.
//!
//! Compliant vehicles are kept *clearly* compliant (a working SCR converts 93–97 %, downstream NOx
//! 20–80 ppm, reagent 30–90 %, DPF Δp of several kPa, opacity well under every limit) so that any
//! violation found on them is a genuine false alarm, not a borderline call. Planted faults
//! (`Faults`) are just as clear on the other side of each threshold.
use crate::fleet::Class;
use crate::rng::Rng;
use smogwatch::proto;

/// Faults in force for one second (from the vehicle's plan).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// R3: downstream NOx 650–800 ppm with upstream ~1100 ppm (conversion > 25 %, so R4 does not
    /// count it: the R3 plant tests R3 alone).
    pub high_nox: bool,
    /// R4 SCR ineffective: conversion ~10 % at a low-load upstream of ~400 ppm (downstream stays
    /// under 500 ppm so R3 does not fire).
    pub scr_tamper: bool,
    /// R4 reagent empty: reagent level 0 % (NOx kept compliant to test the reagent rule alone).
    pub reagent_empty: bool,
    /// R4 DPF bypass: DPF Δp 0.0–0.15 kPa whatever the flow (filter removed).
    pub dpf_bypass: bool,
}

#[derive(Debug, Clone)]
pub struct EngineModel {
    class: Class,
    coolant_c: f64,
    scr_in_c: f64,
    reagent_pct: f64,
    fuel_pct: f64,
    odo_km: f64,
    scr_eff: f64,
}

impl EngineModel {
    /// `warm`: already on the road with everything at temperature; otherwise a cold start.
    pub fn new(class: Class, warm: bool, rng: &mut Rng) -> Self {
        EngineModel {
            class,
            coolant_c: if warm { rng.range(84.0, 90.0) } else { rng.range(25.0, 45.0) },
            scr_in_c: if warm { rng.range(310.0, 360.0) } else { rng.range(60.0, 120.0) },
            reagent_pct: rng.range(30.0, 90.0),
            fuel_pct: rng.range(30.0, 95.0),
            odo_km: rng.range(20_000.0, 600_000.0),
            scr_eff: rng.range(0.93, 0.97),
        }
    }

    /// One second of operation at `speed_kmh`; `working` is true for a machine at work.
    pub fn step(
        &mut self,
        speed_kmh: f64,
        working: bool,
        faults: Faults,
        rng: &mut Rng,
    ) -> proto::EngineData {
        let c = self.class;
        self.odo_km += speed_kmh / 3600.0;
        if c == Class::NewEnergyTruck {
            return proto::EngineData {
                vehicle_speed_kmh: Some(round(speed_kmh, 2)),
                odometer_km: Some(round(self.odo_km, 1)),
                ..Default::default()
            };
        }
        let machine = matches!(c, Class::Machine(_));
        let moving = speed_kmh > 1.0;
        let (rpm, torque) = if machine && working {
            (1650.0 + rng.noise(120.0), 55.0 + rng.noise(15.0))
        } else if moving {
            (
                1050.0 + speed_kmh * 9.0 + rng.noise(40.0),
                (30.0 + speed_kmh * 0.2 + rng.noise(8.0)).clamp(5.0, 95.0),
            )
        } else {
            (650.0 + rng.noise(20.0), 8.0 + rng.noise(2.0))
        };
        // First-order warm-up towards the operating temperatures.
        self.coolant_c += (88.0 - self.coolant_c) * 0.006;
        let scr_target = if moving || working { 300.0 + torque * 1.2 } else { 220.0 };
        let tau = if scr_target > self.scr_in_c { 90.0 } else { 240.0 };
        self.scr_in_c += (scr_target - self.scr_in_c) / tau;
        self.fuel_pct = (self.fuel_pct - 0.0008).max(5.0);
        self.reagent_pct = (self.reagent_pct - 0.0006).max(15.0);
        let air = rpm * 0.5 + torque * 3.0;
        let mut e = proto::EngineData {
            vehicle_speed_kmh: Some(round(speed_kmh, 2)),
            atmospheric_pressure_kpa: Some(round(100.8 + rng.noise(0.3), 1)),
            engine_torque_pct: Some(torque.round()),
            friction_torque_pct: Some((10.0 + rng.noise(2.0)).round()),
            engine_speed_rpm: Some(round(rpm, 1)),
            fuel_flow_lph: Some(round(
                if moving || working { 8.0 + speed_kmh * 0.22 + torque * 0.1 } else { 3.0 },
                2,
            )),
            intake_air_flow_kgph: Some(round(air, 1)),
            coolant_temp_c: Some(self.coolant_c.round()),
            fuel_level_pct: Some(round(self.fuel_pct, 1)),
            odometer_km: Some(round(self.odo_km, 1)),
            ..Default::default()
        };
        if c == Class::GasTruck {
            // Three-way catalyst with a NOx sensor behind it (info type 0x05): low NOx, no SCR.
            e.scr_downstream_nox_ppm = Some(round(25.0 + rng.noise(10.0), 1));
            return e;
        }
        if c.has_scr() {
            let mut up = 500.0 + torque * 6.0 + rng.noise(40.0);
            // SCR conversion rises from ~50 % when cold to its working value above ~250 °C.
            let warmth = ((self.scr_in_c - 150.0) / 100.0).clamp(0.0, 1.0);
            let eff = 0.5 + (self.scr_eff - 0.5) * warmth;
            let mut down = up * (1.0 - eff) + rng.noise(3.0);
            if faults.high_nox {
                up = 1100.0 + rng.noise(40.0);
                down = 720.0 + rng.noise(70.0);
            }
            if faults.scr_tamper {
                up = 400.0 + rng.noise(30.0);
                down = up * (0.9 + rng.noise(0.02));
            }
            e.scr_upstream_nox_ppm = Some(round(up, 1));
            e.scr_downstream_nox_ppm = Some(round(down.max(1.0), 1));
            e.scr_inlet_temp_c = Some(round(self.scr_in_c, 1));
            e.scr_outlet_temp_c = Some(round(self.scr_in_c - 8.0, 1));
            e.reagent_remaining_pct =
                Some(if faults.reagent_empty { 0.0 } else { round(self.reagent_pct, 1) });
        }
        if c.has_dpf() {
            e.dpf_pressure_diff_kpa = Some(if faults.dpf_bypass {
                round(rng.range(0.0, 0.15), 2)
            } else {
                round(1.0 + air * 0.004 + rng.noise(0.2), 1)
            });
        }
        e
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(class: Class, warm: bool, faults: Faults, secs: usize) -> Vec<proto::EngineData> {
        let mut rng = Rng::new(9);
        let mut m = EngineModel::new(class, warm, &mut rng);
        (0..secs).map(|_| m.step(70.0, false, faults, &mut rng)).collect()
    }

    #[test]
    fn working_scr_is_clearly_compliant_and_faults_clearly_not() {
        for e in run(Class::DieselTruck(6), true, Faults::default(), 600) {
            let (up, down) = (e.scr_upstream_nox_ppm.unwrap(), e.scr_downstream_nox_ppm.unwrap());
            assert!((550.0..1050.0).contains(&up), "{up}");
            assert!((10.0..90.0).contains(&down), "{down}");
            assert!(e.scr_inlet_temp_c.unwrap() > 280.0);
            assert!(e.dpf_pressure_diff_kpa.unwrap() > 1.0);
            assert!(e.reagent_remaining_pct.unwrap() >= 15.0);
        }
        for e in run(Class::DieselTruck(5), true, Faults { high_nox: true, ..Default::default() }, 60) {
            let (up, down) = (e.scr_upstream_nox_ppm.unwrap(), e.scr_downstream_nox_ppm.unwrap());
            assert!(down > 600.0 && 1.0 - down / up > 0.25);
        }
        for e in run(Class::DieselTruck(4), true, Faults { scr_tamper: true, ..Default::default() }, 60) {
            let (up, down) = (e.scr_upstream_nox_ppm.unwrap(), e.scr_downstream_nox_ppm.unwrap());
            assert!(down < 460.0 && up >= 300.0 && 1.0 - down / up < 0.15);
        }
        // A cold start never shows NOx above 500 ppm downstream.
        for e in run(Class::DieselTruck(6), false, Faults::default(), 900) {
            assert!(e.scr_downstream_nox_ppm.unwrap() < 500.0);
        }
    }

    #[test]
    fn classes_report_what_they_have() {
        let nev = run(Class::NewEnergyTruck, true, Faults::default(), 1).remove(0);
        assert!(nev.engine_speed_rpm.is_none() && nev.vehicle_speed_kmh.is_some());
        let iii = run(Class::DieselTruck(3), true, Faults::default(), 1).remove(0);
        assert!(iii.scr_downstream_nox_ppm.is_none() && iii.dpf_pressure_diff_kpa.is_none());
        let v = run(Class::DieselTruck(5), true, Faults::default(), 1).remove(0);
        assert!(v.scr_downstream_nox_ppm.is_some() && v.dpf_pressure_diff_kpa.is_none());
    }
}
