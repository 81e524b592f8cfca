//! R3: suspected NOx exceedance (rules.md). Policy default, not a standard limit: SCR downstream
//! NOx above 500 ppm for ≥ 300 s of accumulated valid time within a 600 s window, counting only
//! records of a warmed-up SCR (engine > 500 rpm, SCR inlet ≥ 250 °C, coolant ≥ 70 °C).
use super::plausibility::{NoxPlausibility, NoxSensorWatch};
use super::window::{sample_duration_ms, WindowCounter, WindowSpec};
use super::{Detector, Observation};
use crate::model::{Fix, Measured, TimestampMs, Violation, ViolationId, ViolationStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const RULE: &str = "R3";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoxConfig {
    pub limit_ppm: f64,
    pub min_exceed_s: u32,
    pub window_s: u32,
    pub min_engine_rpm: f64,
    pub min_scr_inlet_c: f64,
    pub min_coolant_c: f64,
    /// Longest time one sample may stand for (a gap never counts as exceedance).
    pub max_sample_gap_s: u32,
    /// Upstream / downstream sensor plausibility: an implausible sample counts as absent.
    pub plausibility: NoxPlausibility,
}

impl Default for NoxConfig {
    fn default() -> Self {
        NoxConfig {
            limit_ppm: 500.0,
            min_exceed_s: 300,
            window_s: 600,
            min_engine_rpm: 500.0,
            min_scr_inlet_c: 250.0,
            min_coolant_c: 70.0,
            max_sample_gap_s: 10,
            plausibility: NoxPlausibility::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoxState {
    /// Time of the previous sample that carried a downstream NOx value.
    pub prev_ms: Option<TimestampMs>,
    window: WindowCounter,
    episode: Option<Episode>,
    sensor: NoxSensorWatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Episode {
    started_ms: TimestampMs,
    last_exceed_ms: TimestampMs,
    fix: Option<Fix>,
    opened: bool,
    min: f64,
    max: f64,
    sum: f64,
    n: u32,
    exceed_ms: i64,
}

pub struct NoxDetector {
    cfg: NoxConfig,
    spec: WindowSpec,
}

impl NoxDetector {
    pub fn new(cfg: NoxConfig) -> Self {
        let spec = WindowSpec::seconds(cfg.window_s);
        NoxDetector { cfg, spec }
    }

    fn violation(&self, ep: &Episode, obs: &Observation<'_>, status: ViolationStatus) -> Violation {
        let vin = obs.record.vin;
        let measured = (ep.n > 0).then(|| Measured {
            min: ep.min,
            max: ep.max,
            mean: ep.sum / f64::from(ep.n),
            samples: ep.n,
            seconds: ep.exceed_ms as f64 / 1000.0,
        });
        Violation {
            id: ViolationId::derive(&vin, RULE, "", ep.started_ms),
            rule: RULE.into(),
            vin,
            plate: obs.vehicle.plate.clone(),
            status,
            late: false,
            started_ms: ep.started_ms,
            ended_ms: (status == ViolationStatus::Closed).then_some(ep.last_exceed_ms),
            position: ep.fix,
            zone_id: None,
            city_code: Some(obs.vehicle.city_code.clone()).filter(|c| !c.is_empty()),
            county_code: None,
            summary: format!(
                "SCR downstream NOx above {} ppm for {:.0} s within {} s (suspected exceedance)",
                self.cfg.limit_ppm,
                ep.exceed_ms as f64 / 1000.0,
                self.cfg.window_s
            ),
            thresholds: json!({
                "source": "policy default (rules.md R3)",
                "limit_ppm": self.cfg.limit_ppm,
                "min_exceed_s": self.cfg.min_exceed_s,
                "window_s": self.cfg.window_s,
                "warm_up": {
                    "min_engine_rpm": self.cfg.min_engine_rpm,
                    "min_scr_inlet_c": self.cfg.min_scr_inlet_c,
                    "min_coolant_c": self.cfg.min_coolant_c,
                },
                "plausibility": {
                    "max_down_over_up": self.cfg.plausibility.max_down_over_up,
                    "tolerance_ppm": self.cfg.plausibility.tolerance_ppm,
                    "stuck_s": self.cfg.plausibility.stuck_s,
                },
            }),
            measured,
            evidence: json!({
                "quantity": "scr_downstream_nox_ppm",
                "first_exceedance_ms": ep.started_ms,
                "last_exceedance_ms": ep.last_exceed_ms,
                "track": { "vin": vin.as_str(), "from_ms": ep.started_ms, "to_ms": ep.last_exceed_ms },
            }),
        }
    }
}

impl Detector for NoxDetector {
    type State = NoxState;

    fn rule(&self) -> &'static str {
        RULE
    }

    fn update(&self, st: &mut NoxState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        let t = obs.record.time_ms;
        let Some(e) = obs.record.engine.as_ref() else { return };
        // Absent downstream NOx: this record neither counts nor lets time pass for the rule.
        let Some(down) = e.scr_downstream_nox_ppm else { return };
        // An implausible pair (downstream far above upstream, a stuck sensor) is absent too.
        let counts = down > self.cfg.limit_ppm;
        if !st.sensor.plausible(&self.cfg.plausibility, t, e.scr_upstream_nox_ppm, down, counts) {
            return;
        }
        let dt = sample_duration_ms(st.prev_ms, t, i64::from(self.cfg.max_sample_gap_s) * 1000);
        st.prev_ms = Some(t.max(st.prev_ms.unwrap_or(i64::MIN)));

        let warm = matches!(
            (e.engine_speed_rpm, e.scr_inlet_temp_c, e.coolant_temp_c),
            (Some(rpm), Some(inlet), Some(cool))
                if rpm > self.cfg.min_engine_rpm && inlet >= self.cfg.min_scr_inlet_c && cool >= self.cfg.min_coolant_c
        );
        let exceeding = warm && down > self.cfg.limit_ppm;

        st.window.advance(self.spec, t);
        if exceeding {
            st.window.add(self.spec, t, dt);
            let ep = st.episode.get_or_insert(Episode {
                started_ms: t,
                last_exceed_ms: t,
                fix: obs.record.valid_fix(),
                opened: false,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                n: 0,
                exceed_ms: 0,
            });
            ep.last_exceed_ms = t;
            ep.min = ep.min.min(down);
            ep.max = ep.max.max(down);
            ep.sum += down;
            ep.n += 1;
            ep.exceed_ms += dt;
        }

        let total = i64::try_from(st.window.total_ms()).unwrap_or(i64::MAX);
        let threshold_ms = i64::from(self.cfg.min_exceed_s) * 1000;
        if let Some(ep) = st.episode.as_mut() {
            if !ep.opened && total >= threshold_ms {
                ep.opened = true;
                let v = self.violation(ep, obs, ViolationStatus::Open);
                out.push(v);
            }
        }
        if total == 0 {
            if let Some(ep) = st.episode.take() {
                if ep.opened {
                    out.push(self.violation(&ep, obs, ViolationStatus::Closed));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::{EmissionStage, EngineData};

    fn run(trace: impl IntoIterator<Item = (i64, EngineData)>) -> Vec<Violation> {
        let d = NoxDetector::new(NoxConfig::default());
        let v = truck(EmissionStage::ChinaV);
        let mut st = NoxState::default();
        let mut out = Vec::new();
        for (t, e) in trace {
            let r = record(t, e);
            d.update(&mut st, &Observation { vehicle: &v, record: &r, received_ms: t }, &mut out);
        }
        out
    }

    fn secs(from: i64, to: i64, e: EngineData) -> impl Iterator<Item = (i64, EngineData)> {
        (from..to).map(move |s| (T0 + s * 1000, e))
    }

    #[test]
    fn clear_exceedance_fires_once_and_closes() {
        let high = warm(900.0, 700.0);
        let ok = warm(900.0, 50.0);
        let out = run(secs(0, 400, high).chain(secs(400, 1200, ok)));
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0].status, ViolationStatus::Open);
        assert_eq!(out[0].started_ms, T0);
        assert_eq!(out[1].status, ViolationStatus::Closed);
        assert_eq!(out[0].id, out[1].id);
        let m = out[1].measured.unwrap();
        assert_eq!((m.min, m.max, m.samples), (700.0, 700.0, 400));
        assert_eq!(out[1].ended_ms, Some(T0 + 399_000));
    }

    #[test]
    fn borderline_does_not_fire() {
        // 299 s above the limit, and exactly-at-limit values never count.
        let out = run(secs(0, 299, warm(900.0, 700.0)).chain(secs(299, 900, warm(900.0, 500.0))));
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn cold_scr_and_engine_off_are_excluded() {
        let mut cold = warm(900.0, 900.0);
        cold.scr_inlet_temp_c = Some(200.0);
        let mut idle = warm(900.0, 900.0);
        idle.engine_speed_rpm = Some(450.0);
        let mut cool = warm(900.0, 900.0);
        cool.coolant_temp_c = Some(60.0);
        let out = run(secs(0, 400, cold).chain(secs(400, 800, idle)).chain(secs(800, 1200, cool)));
        assert!(out.is_empty());
    }

    #[test]
    fn absent_values_never_fire_or_close() {
        let mut absent = warm(900.0, 700.0);
        absent.scr_downstream_nox_ppm = None;
        assert!(run(secs(0, 2000, absent)).is_empty());
        let mut no_warmup_data = warm(900.0, 900.0);
        no_warmup_data.scr_inlet_temp_c = None;
        assert!(run(secs(0, 2000, no_warmup_data)).is_empty());
        // An open episode followed by an hour of absent data stays open.
        let out = run(secs(0, 400, warm(900.0, 700.0)).chain(secs(400, 4000, absent)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, ViolationStatus::Open);
    }

    #[test]
    fn intermittent_exceedance_accumulates_within_window() {
        // Alternating 1 s above / 1 s below for 600 s = 300 s above within the window.
        let trace = (0..620)
            .map(|s| (T0 + s * 1000, if s % 2 == 0 { warm(900.0, 800.0) } else { warm(900.0, 100.0) }));
        let out = run(trace);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, ViolationStatus::Open);
    }

    /// Failure mode (d): downstream NOx above upstream (NH₃ slip read by the NOx sensor, or a
    /// faulty sensor) is not an exceedance; neither is a sensor stuck above the limit.
    #[test]
    fn downstream_above_upstream_is_not_an_exceedance() {
        assert!(run(secs(0, 1200, warm(400.0, 650.0))).is_empty());
        let stuck = (0..1200).map(|s| (T0 + s * 1000, warm(850.0 + (s % 50) as f64, 620.0)));
        assert!(run(stuck).is_empty());
        // A real exceedance with downstream ≈ upstream (no SCR at all) is still caught.
        let out =
            run((0..400).map(|s| (T0 + s * 1000, warm(800.0 + (s % 9) as f64, 790.0 + (s % 5) as f64))));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn gaps_do_not_count_as_exceedance() {
        // One sample an hour for a day: each stands for at most 10 s.
        let trace = (0..24).map(|h| (T0 + h * 3_600_000, warm(900.0, 900.0)));
        assert!(run(trace).is_empty());
    }
}
