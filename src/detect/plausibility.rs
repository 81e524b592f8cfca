//! Plausibility of the SCR NOx sensor pair, shared by R3 and R4.scr_ineffective.
//!
//! An SCR does not make NOx: a downstream reading well above the upstream one is a faulty
//! sensor, or ammonia slip read by the downstream sensor (NOx sensors are cross-sensitive to
//! NH₃). Such a sample is not evidence of an exceedance nor of tampering; it is treated as an
//! absent value (it neither counts nor clears). The tolerance covers the two sensors' accuracy:
//! ±10 % (and ±10 ppm near zero) each for common smart NOx sensors, so a removed or dead SCR
//! (conversion ≈ 0, downstream ≈ upstream) still reads as plausible and is still caught.
//!
//! A downstream sensor whose reading stays exactly the same for `stuck_s` while the upstream
//! reading moves is stuck; its readings are implausible until it changes again. A live sensor's
//! reading is never constant to the last bit under changing load.
use crate::model::TimestampMs;
use serde::{Deserialize, Serialize};

/// `[rules.nox.plausibility]` and `[rules.tamper.plausibility]`. Policy defaults (ours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoxPlausibility {
    /// Downstream above `upstream × max_down_over_up + tolerance_ppm` is implausible.
    pub max_down_over_up: f64,
    pub tolerance_ppm: f64,
    /// A downstream reading unchanged this long while upstream moved is a stuck sensor
    /// (0 = no stuck check).
    pub stuck_s: u32,
}

impl Default for NoxPlausibility {
    fn default() -> Self {
        NoxPlausibility { max_down_over_up: 1.25, tolerance_ppm: 20.0, stuck_s: 60 }
    }
}

/// Per-vehicle memory of the downstream reading, for the stuck check. Kept only while the
/// reading would count for the rule (a stuck sensor reading a low value proves nothing), so it
/// is one byte for a compliant vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoxSensorWatch {
    /// (downstream reading, since when unchanged, upstream then, whether upstream moved since).
    same: Option<(f32, TimestampMs, f32, bool)>,
}

impl NoxSensorWatch {
    /// Whether the pair at `t` is plausible. `counts`: the sample would count for the rule
    /// (exceedance, or conversion below the limit). Call once per record that carries a
    /// downstream value, in time order.
    pub fn plausible(
        &mut self,
        cfg: &NoxPlausibility,
        t: TimestampMs,
        up: Option<f64>,
        down: f64,
        counts: bool,
    ) -> bool {
        let above_upstream = up.is_some_and(|u| down > u * cfg.max_down_over_up + cfg.tolerance_ppm);
        let (d, u) = (down as f32, up.map_or(f32::NAN, |u| u as f32));
        // A frozen reading is followed whether or not it counts at the moment (upstream moves
        // it across the limit and back); a changing one is only remembered when it counts.
        let stuck = match &mut self.same {
            Some((v, since, up0, moved)) if *v == d => {
                *moved |= !u.is_nan() && u != *up0;
                cfg.stuck_s > 0 && *moved && t.saturating_sub(*since) >= i64::from(cfg.stuck_s) * 1000
            }
            _ => {
                self.same = counts.then_some((d, t, u, false));
                false
            }
        };
        !stuck && !above_upstream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstream_above_upstream_and_stuck_sensors_are_implausible() {
        let cfg = NoxPlausibility::default();
        let mut w = NoxSensorWatch::default();
        assert!(w.plausible(&cfg, 0, Some(800.0), 40.0, false));
        // A removed SCR reads downstream ≈ upstream within the sensors' tolerance.
        assert!(w.plausible(&cfg, 1000, Some(800.0), 900.0, true));
        assert!(!w.plausible(&cfg, 2000, Some(300.0), 450.0, true), "NH3 slip / faulty sensor");
        assert!(w.plausible(&cfg, 3000, None, 450.0, true), "nothing to compare with");
        // Stuck at 600 ppm while upstream moves: implausible from 60 s on, until it changes.
        let mut w = NoxSensorWatch::default();
        let verdicts: Vec<bool> = (0..100)
            .map(|s| w.plausible(&cfg, s * 1000, Some(900.0 + (s % 7) as f64), 600.0, true))
            .collect();
        assert!(verdicts[..60].iter().all(|&v| v));
        assert!(verdicts[60..].iter().all(|&v| !v));
        assert!(w.plausible(&cfg, 100_000, Some(900.0), 601.0, true));
        // Both constant (a synthetic trace, or a test bench): not judged stuck.
        let mut w = NoxSensorWatch::default();
        assert!((0..200).all(|s| w.plausible(&cfg, s * 1000, Some(900.0), 600.0, true)));
        // A low reading that would not count keeps no state.
        assert!(w.plausible(&cfg, 300_000, Some(900.0), 40.0, false));
        assert_eq!(w, NoxSensorWatch::default());
        // Stuck at 700 ppm while upstream swings across 875 ppm (conversion across 20 %): the
        // samples that do not count do not restart the stuck timer.
        let mut w = NoxSensorWatch::default();
        let verdicts: Vec<bool> = (0..100)
            .map(|s| {
                let up = if s % 3 == 0 { 950.0 } else { 800.0 + s as f64 };
                w.plausible(&cfg, s * 1000, Some(up), 700.0, 700.0 > up * 0.8)
            })
            .collect();
        assert!(verdicts[61..].iter().all(|&v| !v), "{verdicts:?}");
    }
}
