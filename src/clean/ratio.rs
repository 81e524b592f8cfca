//! The arithmetic of the clean-transport ratio, pure and separately tested (rules.md):
//!
//! - **clean** = (rail + water + pipeline + belt + new-energy trucks) / total
//! - **clean or China VI** = (clean + China VI trucks) / total
//!
//! both by trips and by tonnage. An empty total gives `None` ("no data"), never 0 % or 100 %:
//! an enterprise that moved nothing neither failed nor met its target.
use super::{Basis, CleanTarget, NonRoadMode, RatioKind};
use crate::model::{EmissionStage, Fuel};
use serde::Serialize;
use std::collections::BTreeMap;

/// Slack for floating-point comparisons of fractions (a hand-entered 0.9 against 9/10).
const EPS: f64 = 1e-9;

/// What a truck counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruckClass {
    /// Battery-electric or fuel-cell (whatever the stage field says).
    NewEnergy,
    ChinaVi,
    /// China V and older, gas/petrol below VI, and unknown stages: not clean, not VI.
    Other,
}

/// New energy first: an electric truck is clean even if its record carries a stage.
pub fn classify(fuel: Fuel, stage: EmissionStage) -> TruckClass {
    if fuel.is_new_energy() {
        TruckClass::NewEnergy
    } else if stage == EmissionStage::ChinaVI {
        TruckClass::ChinaVi
    } else {
        TruckClass::Other
    }
}

/// Trips and tonnes. Trips are fractional only when a non-road report is split pro rata.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Amount {
    pub trips: f64,
    pub tonnage: f64,
}

impl Amount {
    pub fn get(&self, basis: Basis) -> f64 {
        match basis {
            Basis::Trips => self.trips,
            Basis::Tonnage => self.tonnage,
        }
    }

    fn add(&mut self, trips: f64, tonnage: f64) {
        self.trips += trips;
        self.tonnage += tonnage;
    }
}

/// Everything counted for one enterprise, period and cargo scope.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Tally {
    pub non_road: BTreeMap<NonRoadMode, Amount>,
    pub new_energy: Amount,
    pub china_vi: Amount,
    pub other_trucks: Amount,
    /// Trucks by emission stage label ("china_v", "china_vi", "unknown", …), new energy included.
    pub by_stage: BTreeMap<String, Amount>,
    /// Truck trips whose tonnage is unknown (telemetry-only passages, gate records without a
    /// weight): in the trip ratios, not in the tonnage ratios.
    pub tonnage_unknown_trips: u64,
    /// Of those, telemetry passages with no gate record.
    pub telemetry_only_trips: u64,
    /// Non-road reports without a trip count (their tonnage counts, their trips cannot).
    pub non_road_reports_without_trips: u64,
}

/// The label of a stage in breakdowns ("china_vi", "unknown", …).
pub fn stage_label(stage: EmissionStage) -> String {
    use EmissionStage::*;
    match stage {
        Unknown => "unknown",
        China0 => "china_0",
        ChinaI => "china_i",
        ChinaII => "china_ii",
        ChinaIII => "china_iii",
        ChinaIV => "china_iv",
        ChinaV => "china_v",
        ChinaVI => "china_vi",
        NonRoadPreI => "non_road_pre_i",
        NonRoadI => "non_road_i",
        NonRoadII => "non_road_ii",
        NonRoadIII => "non_road_iii",
        NonRoadIV => "non_road_iv",
    }
    .to_string()
}

impl Tally {
    /// One truck passage. `tonnage: None` = unknown weight (counted in trips only).
    pub fn add_truck(
        &mut self,
        fuel: Fuel,
        stage: EmissionStage,
        tonnage: Option<f64>,
        telemetry_only: bool,
    ) {
        let t = tonnage.filter(|t| t.is_finite() && *t >= 0.0);
        if t.is_none() {
            self.tonnage_unknown_trips += 1;
        }
        if telemetry_only {
            self.telemetry_only_trips += 1;
        }
        let tonnes = t.unwrap_or(0.0);
        match classify(fuel, stage) {
            TruckClass::NewEnergy => self.new_energy.add(1.0, tonnes),
            TruckClass::ChinaVi => self.china_vi.add(1.0, tonnes),
            TruckClass::Other => self.other_trucks.add(1.0, tonnes),
        }
        let label = if fuel.is_new_energy() { "new_energy".to_string() } else { stage_label(stage) };
        self.by_stage.entry(label).or_default().add(1.0, tonnes);
    }

    /// A (share of a) non-road report. `trips: None` = not reported.
    pub fn add_non_road(&mut self, mode: NonRoadMode, tonnage: f64, trips: Option<f64>) {
        if trips.is_none() {
            self.non_road_reports_without_trips += 1;
        }
        self.non_road.entry(mode).or_default().add(trips.unwrap_or(0.0), tonnage);
    }

    pub fn non_road_total(&self, basis: Basis) -> f64 {
        self.non_road.values().map(|a| a.get(basis)).sum()
    }

    /// Numerator of a ratio.
    pub fn numerator(&self, kind: RatioKind, basis: Basis) -> f64 {
        let clean = self.non_road_total(basis) + self.new_energy.get(basis);
        match kind {
            RatioKind::Clean => clean,
            RatioKind::CleanOrChinaVi => clean + self.china_vi.get(basis),
        }
    }

    pub fn total(&self, basis: Basis) -> f64 {
        self.non_road_total(basis)
            + self.new_energy.get(basis)
            + self.china_vi.get(basis)
            + self.other_trucks.get(basis)
    }

    /// The ratio in 0..=1, or `None` when nothing was moved on that basis.
    pub fn ratio(&self, kind: RatioKind, basis: Basis) -> Option<f64> {
        let total = self.total(basis);
        (total > 0.0).then(|| self.numerator(kind, basis) / total)
    }
}

/// The outcome of comparing a target with the measured ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    pub target: CleanTarget,
    /// `None`: nothing moved in the period (no verdict).
    pub actual: Option<f64>,
    /// `None` with `actual`.
    pub met: Option<bool>,
    /// Shortfall `target − actual` (> 0) when not met; 0 when met; `None` without data.
    pub gap: Option<f64>,
}

impl TargetCheck {
    /// A one-line statement of the outcome, shortfalls stated explicitly.
    pub fn statement(&self) -> String {
        let t = &self.target;
        let what = format!(
            "{} {} by {} ({:?}) target {}{:.1} %",
            t.year,
            match t.kind {
                RatioKind::Clean => "clean",
                RatioKind::CleanOrChinaVi => "clean-or-China-VI",
            },
            match t.basis {
                Basis::Trips => "trips",
                Basis::Tonnage => "tonnage",
            },
            t.scope,
            if t.strict { "> " } else { "≥ " },
            t.fraction * 100.0
        );
        match (self.actual, self.met, self.gap) {
            (Some(a), Some(true), _) => format!("{what}: met, actual {:.1} %", a * 100.0),
            (Some(a), Some(false), Some(g)) => format!(
                "{what}: SHORTFALL — target {:.1} %, actual {:.1} %, gap {:.1} percentage points",
                t.fraction * 100.0,
                a * 100.0,
                g * 100.0
            ),
            _ => format!("{what}: no data in the period (ratio undefined)"),
        }
    }
}

pub fn check(target: &CleanTarget, tally: &Tally) -> TargetCheck {
    let actual = tally.ratio(target.kind, target.basis);
    let met =
        actual.map(|a| if target.strict { a > target.fraction + EPS } else { a + EPS >= target.fraction });
    let gap = match (actual, met) {
        (Some(_), Some(true)) => Some(0.0),
        // A strict target met exactly ("more than half" at exactly half) has a gap of 0 that is
        // still a shortfall; report it as the smallest visible gap rather than hide it.
        (Some(a), Some(false)) => Some((target.fraction - a).max(0.0)),
        _ => None,
    };
    TargetCheck { target: target.clone(), actual, met, gap }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::CargoScope;
    use EmissionStage::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    fn target(kind: RatioKind, basis: Basis, fraction: f64) -> CleanTarget {
        CleanTarget { year: 2025, kind, basis, fraction, strict: false, scope: CargoScope::AllBulk }
    }

    #[test]
    fn classification_puts_new_energy_first() {
        assert_eq!(classify(Fuel::Electric, Unknown), TruckClass::NewEnergy);
        assert_eq!(classify(Fuel::Hydrogen, ChinaV), TruckClass::NewEnergy);
        assert_eq!(classify(Fuel::Diesel, ChinaVI), TruckClass::ChinaVi);
        assert_eq!(classify(Fuel::Gas, ChinaVI), TruckClass::ChinaVi);
        assert_eq!(classify(Fuel::Hybrid, ChinaV), TruckClass::Other);
        assert_eq!(classify(Fuel::Diesel, Unknown), TruckClass::Other);
    }

    /// Hand computation:
    /// trucks: 2 × China V diesel (30 t, 30 t), 3 × China VI diesel (30, 30, 20 t),
    ///         1 × electric (25 t), 1 × China V telemetry-only (weight unknown);
    /// rail: 1 train, 1 000 t.
    /// trips: total 2 + 3 + 1 + 1 + 1 = 8; clean = 1 (rail) + 1 (NE) = 2 → 2/8 = 0.25;
    ///        clean or VI = 2 + 3 = 5 → 5/8 = 0.625.
    /// tonnage: total 60 + 80 + 25 + 0 + 1000 = 1165; clean = 1025 → 1025/1165;
    ///          clean or VI = 1105 → 1105/1165.
    #[test]
    fn ratios_by_trips_and_tonnage() {
        let mut t = Tally::default();
        t.add_truck(Fuel::Diesel, ChinaV, Some(30.0), false);
        t.add_truck(Fuel::Diesel, ChinaV, Some(30.0), false);
        t.add_truck(Fuel::Diesel, ChinaVI, Some(30.0), false);
        t.add_truck(Fuel::Diesel, ChinaVI, Some(30.0), false);
        t.add_truck(Fuel::Diesel, ChinaVI, Some(20.0), false);
        t.add_truck(Fuel::Electric, Unknown, Some(25.0), false);
        t.add_truck(Fuel::Diesel, ChinaV, None, true);
        t.add_non_road(NonRoadMode::Rail, 1000.0, Some(1.0));
        assert_eq!(t.total(Basis::Trips), 8.0);
        assert!(close(t.ratio(RatioKind::Clean, Basis::Trips), 0.25));
        assert!(close(t.ratio(RatioKind::CleanOrChinaVi, Basis::Trips), 0.625));
        assert_eq!(t.total(Basis::Tonnage), 1165.0);
        assert!(close(t.ratio(RatioKind::Clean, Basis::Tonnage), 1025.0 / 1165.0));
        assert!(close(t.ratio(RatioKind::CleanOrChinaVi, Basis::Tonnage), 1105.0 / 1165.0));
        assert_eq!(t.tonnage_unknown_trips, 1);
        assert_eq!(t.telemetry_only_trips, 1);
        assert_eq!(t.by_stage["china_v"], Amount { trips: 3.0, tonnage: 60.0 });
        assert_eq!(t.by_stage["china_vi"], Amount { trips: 3.0, tonnage: 80.0 });
        assert_eq!(t.by_stage["new_energy"], Amount { trips: 1.0, tonnage: 25.0 });
    }

    #[test]
    fn empty_period_is_undefined_not_zero_or_full() {
        let t = Tally::default();
        for kind in [RatioKind::Clean, RatioKind::CleanOrChinaVi] {
            for basis in [Basis::Trips, Basis::Tonnage] {
                assert_eq!(t.ratio(kind, basis), None);
            }
        }
        let c = check(&target(RatioKind::CleanOrChinaVi, Basis::Tonnage, 1.0), &t);
        assert_eq!((c.actual, c.met, c.gap), (None, None, None));
        assert!(c.statement().contains("no data"), "{}", c.statement());
    }

    /// Only non-road volumes: 2 000 t by water (trips not reported) and 500 t by belt (10 runs).
    /// Tonnage: 2500/2500 = 100 % for both ratios. Trips: 10/10 = 100 % (the water report counts
    /// only in tonnage and is reported as a report without trips).
    #[test]
    fn only_non_road_volumes() {
        let mut t = Tally::default();
        t.add_non_road(NonRoadMode::Water, 2000.0, None);
        t.add_non_road(NonRoadMode::Belt, 500.0, Some(10.0));
        assert!(close(t.ratio(RatioKind::Clean, Basis::Tonnage), 1.0));
        assert!(close(t.ratio(RatioKind::CleanOrChinaVi, Basis::Tonnage), 1.0));
        assert!(close(t.ratio(RatioKind::Clean, Basis::Trips), 1.0));
        assert_eq!(t.non_road_reports_without_trips, 1);
        // Only a water report without trips: the trip ratio is undefined, the tonnage one is not.
        let mut w = Tally::default();
        w.add_non_road(NonRoadMode::Water, 100.0, None);
        assert_eq!(w.ratio(RatioKind::Clean, Basis::Trips), None);
        assert!(close(w.ratio(RatioKind::Clean, Basis::Tonnage), 1.0));
    }

    /// Telemetry-only (unknown weight) trucks only: trips defined, tonnage undefined.
    #[test]
    fn unknown_tonnage_counts_in_trips_only() {
        let mut t = Tally::default();
        t.add_truck(Fuel::Diesel, ChinaVI, None, true);
        t.add_truck(Fuel::Diesel, ChinaIV, None, true);
        assert!(close(t.ratio(RatioKind::CleanOrChinaVi, Basis::Trips), 0.5));
        assert_eq!(t.ratio(RatioKind::CleanOrChinaVi, Basis::Tonnage), None);
    }

    /// Steel 2025 (100 % clean or VI by tonnage) against 1105/1165 ≈ 94.85 %: shortfall of
    /// 60/1165 ≈ 5.15 points, stated. Cement 2025 ("more than half") at exactly 50 %: not met.
    #[test]
    fn target_check_states_the_shortfall() {
        let mut t = Tally::default();
        t.add_truck(Fuel::Diesel, ChinaVI, Some(1105.0), false);
        t.add_truck(Fuel::Diesel, ChinaV, Some(60.0), false);
        let c = check(&target(RatioKind::CleanOrChinaVi, Basis::Tonnage, 1.0), &t);
        assert_eq!(c.met, Some(false));
        assert!((c.gap.unwrap() - 60.0 / 1165.0).abs() < 1e-12);
        let s = c.statement();
        assert!(s.contains("SHORTFALL") && s.contains("target 100.0 %") && s.contains("gap 5.2"), "{s}");

        let mut half = Tally::default();
        half.add_truck(Fuel::Diesel, ChinaVI, Some(10.0), false);
        half.add_truck(Fuel::Diesel, ChinaV, Some(10.0), false);
        let mut cement = target(RatioKind::CleanOrChinaVi, Basis::Tonnage, 0.5);
        cement.strict = true;
        assert_eq!(check(&cement, &half).met, Some(false));
        cement.strict = false;
        let c = check(&cement, &half);
        assert_eq!((c.met, c.gap), (Some(true), Some(0.0)));
        assert!(c.statement().contains("met"));
    }

    #[test]
    fn exact_target_is_met_despite_rounding() {
        let mut t = Tally::default();
        for _ in 0..9 {
            t.add_truck(Fuel::Electric, Unknown, Some(0.1), false);
        }
        t.add_truck(Fuel::Diesel, ChinaV, Some(0.1), false);
        let c = check(&target(RatioKind::Clean, Basis::Tonnage, 0.9), &t);
        assert_eq!(c.met, Some(true), "{c:?}");
    }
}
