//! Planted violations and the ground truth they produce.
//!
//! Each vehicle carries at most one plant, so a violation found on a VIN can be attributed
//! without ambiguity. R3 is always planted; the other rules are behind flags so they can be
//! switched on as their detectors land (a plant for a rule nobody detects would be a "miss" that
//! says nothing). Offsets are simulated seconds from the vehicle's first record.
use crate::fleet::{Class, VehicleSpec};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

pub const R1: &str = "R1";
pub const R2: &str = "R2.opacity";
pub const R3: &str = "R3";
pub const R4_SCR: &str = "R4.scr_ineffective";
pub const R4_REAGENT: &str = "R4.reagent_empty";
pub const R4_DPF: &str = "R4.dpf_bypass";
pub const R4_MIL: &str = "R4.mil_on";
pub const R4_ECU_VIN: &str = "R4.ecu_vin_mismatch";
pub const R4_CVN: &str = "R4.cvn_changed";
pub const R6_BANNED: &str = "R6.banned_stage";
pub const R6_UNREGISTERED: &str = "R6.unregistered";

/// Which rules to plant besides R3.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PlantFlags {
    /// China III diesel trucks driving in a city centre (restriction zones).
    pub r1: bool,
    /// Black-smoke episodes on terminals with an opacity meter (`opacity_k`).
    pub r2: bool,
    /// SCR tampering (conversion < 20 %) and reagent empty.
    pub r4: bool,
    /// Offline gaps filled later by reissue (`reissue: true`), some hiding an R3 episode that can
    /// only be found late.
    pub offline: bool,
    /// Machines working without a registration code.
    pub r6: bool,
}

impl PlantFlags {
    pub fn all() -> Self {
        PlantFlags { r1: true, r2: true, r4: true, offline: true, r6: true }
    }

    /// Rule ids whose detection quality is scored.
    pub fn scored_rules(&self) -> Vec<&'static str> {
        let mut v = vec![R3];
        if self.r1 {
            v.push(R1);
        }
        if self.r2 {
            v.push(R2);
        }
        if self.r4 {
            v.extend([R4_SCR, R4_REAGENT, R4_DPF, R4_MIL, R4_ECU_VIN, R4_CVN]);
        }
        if self.r6 {
            v.extend([R6_UNREGISTERED, R6_BANNED]);
        }
        v
    }
}

/// A span of simulated seconds from the vehicle's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_s: u32,
    pub len_s: u32,
}

impl Span {
    pub fn contains(&self, s: u32) -> bool {
        s >= self.start_s && s < self.start_s + self.len_s
    }
}

/// What is planted on one vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    #[default]
    Clean,
    /// R3: downstream NOx > 500 ppm, warm, for the span (400 s).
    Nox(Span),
    /// Offline gap (records buffered, sent later as reissue); `nox` is an R3 episode inside it.
    Offline {
        gap: Span,
        nox: Option<Span>,
    },
    ScrTamper(Span),
    ReagentEmpty(Span),
    Smoke(Span),
    /// China III truck driving round a city centre from its first record (what it truly did
    /// in which zone, and when the zone was in force, is judged by [`crate::truth`]).
    ZoneEntry,
    /// China III truck on a road along its home district's border, `offset_m` metres inside
    /// (positive) or outside (negative): borderline on both sides of R1.
    ZoneBorder {
        offset_m: i32,
    },
    /// Machine working without a registration code.
    Unregistered,
    /// R4.dpf_bypass: DPF Δp ≈ 0.1 kPa at full flow for the span (China VI).
    DpfBypass(Span),
    /// OBD from `start_s` on: MIL on / a foreign ECU VIN / a new CVN (once).
    MilOn(Span),
    EcuVinMismatch(Span),
    CvnChanged(Span),
    /// A Stage II forklift (banned stage) working inside the machinery low-emission zone (the
    /// truth of R6.banned_stage comes from its true path, crate::truth).
    BannedMachine,
}

/// Decides the plan of one vehicle. `rate` is the probability that an eligible vehicle gets each
/// kind of plant (all kinds share one draw, so they never overlap).
pub fn plan_for(seed: u64, v: &VehicleSpec, flags: PlantFlags, rate: f64) -> Plan {
    let mut rng = Rng::derive(seed, u64::from(v.index), 2);
    let x = rng.unit();
    let start = 60 + rng.below(60) as u32;
    match v.class {
        Class::DieselTruck(3) => {
            // A fifth of the China III trucks are offenders when R1 is planted.
            if flags.r1 && x < (rate * 20.0).min(0.5) {
                Plan::ZoneEntry
            } else if flags.r1 && x < (rate * 40.0).min(0.9) {
                // Border roads: outside (truth: compliant), just inside (borderline), deep inside.
                const OFFSETS: [i32; 5] = [-30, -15, 10, 30, 80];
                Plan::ZoneBorder { offset_m: OFFSETS[rng.below(OFFSETS.len() as u64) as usize] }
            } else {
                Plan::Clean
            }
        }
        Class::Machine(_) if flags.r6 && !v.class.has_scr() && x < (rate * 10.0).min(0.5) => {
            Plan::Unregistered
        }
        Class::Machine(2) if flags.r6 && x < (rate * 20.0).min(0.9) => Plan::BannedMachine,
        c if c.has_scr() => {
            let mut slots: Vec<Plan> = vec![Plan::Nox(Span { start_s: start, len_s: 400 })];
            if flags.offline {
                // Gap of 480 s on tick boundaries; the hidden episode lies wholly inside it.
                let gap = Span { start_s: 120, len_s: 480 };
                slots.push(Plan::Offline { gap, nox: Some(Span { start_s: 170, len_s: 400 }) });
                slots.push(Plan::Offline { gap, nox: None });
            }
            if flags.r4 {
                slots.push(Plan::ScrTamper(Span { start_s: start, len_s: 720 }));
                slots.push(Plan::ReagentEmpty(Span { start_s: start, len_s: 420 }));
                if v.class.has_dpf() {
                    slots.push(Plan::DpfBypass(Span { start_s: start, len_s: 420 }));
                }
                let obd = Span { start_s: start, len_s: 600 };
                slots.extend([Plan::MilOn(obd), Plan::EcuVinMismatch(obd), Plan::CvnChanged(obd)]);
            }
            if flags.r2 && v.opacity_meter {
                slots.push(Plan::Smoke(Span { start_s: start, len_s: 40 }));
            }
            let i = (x / rate) as usize;
            slots.get(i).copied().unwrap_or(Plan::Clean)
        }
        _ if flags.r2 && v.opacity_meter && x < rate => Plan::Smoke(Span { start_s: start, len_s: 40 }),
        _ => Plan::Clean,
    }
}

/// One violation the system under test is expected to find.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub rule: String,
    pub vin: String,
    /// The found violation's `started_ms` must fall in [from, to].
    pub start_from_ms: i64,
    pub start_to_ms: i64,
    /// The data up to this time must have been delivered for the rule to be able to fire; plants
    /// whose vehicle did not get that far in the run are reported as "not due", not as misses.
    pub due_ms: i64,
    /// Expected as a late violation (found in reissued data).
    pub late: bool,
}

/// A case near a threshold: the truth states on which side it is and why. Whatever the
/// detector does with it is accepted and reported (never a miss, never a false alarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Borderline {
    pub rule: String,
    pub vin: String,
    /// A found violation whose `started_ms` falls in [from, to] is this case.
    pub from_ms: i64,
    pub to_ms: i64,
    /// "violation" or "compliant": what the vehicle truly did.
    pub side: String,
    pub reason: String,
}

/// What the run must be judged against; written as JSON next to the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroundTruth {
    pub seed: u64,
    pub anchor_ms: i64,
    pub vehicles: u32,
    pub flags: PlantFlags,
    pub scored_rules: Vec<String>,
    pub expected: Vec<Expected>,
    /// VINs with an offline gap and reissue: none of them may raise anything (R5 included).
    pub offline_vins: Vec<String>,
    /// Cases near a threshold, with their true side.
    #[serde(default)]
    pub borderline: Vec<Borderline>,
}

/// How long before a planted episode the found violation may start. A rule's episode starts at
/// the first sample that counts within its accumulation, and under noise a glitch (a NOx spike,
/// an acceleration puff) shortly before the plant can be that sample: R3 and R2 count within a
/// trailing window (600 s, 60 s); R4 forgets a glitch after 60 s of clear operation.
const R3_LEAD_MS: i64 = 600_000;
const R2_LEAD_MS: i64 = 60_000;
const R4_LEAD_MS: i64 = 120_000;

/// The expected violations of a vehicle whose first record is at `t0_ms`.
pub fn expected_for(v: &VehicleSpec, plan: Plan, t0_ms: i64) -> Vec<Expected> {
    let at = |s: u32| t0_ms + i64::from(s) * 1000;
    let exp = |rule: &str, from: i64, to: i64, due: i64, late: bool| Expected {
        rule: rule.to_string(),
        vin: v.vin.clone(),
        start_from_ms: from,
        start_to_ms: to,
        due_ms: due,
        late,
    };
    match plan {
        Plan::Clean => vec![],
        Plan::Nox(s) => {
            vec![exp(R3, at(s.start_s) - R3_LEAD_MS, at(s.start_s) + 30_000, at(s.start_s + 360), false)]
        }
        Plan::Offline { nox: Some(s), .. } => {
            vec![exp(R3, at(s.start_s) - R3_LEAD_MS, at(s.start_s) + 30_000, at(s.start_s + 360), true)]
        }
        Plan::Offline { nox: None, .. } => vec![],
        Plan::ScrTamper(s) => {
            vec![exp(R4_SCR, at(s.start_s) - R4_LEAD_MS, at(s.start_s) + 60_000, at(s.start_s + 660), false)]
        }
        Plan::ReagentEmpty(s) => {
            vec![exp(
                R4_REAGENT,
                at(s.start_s) - R4_LEAD_MS,
                at(s.start_s) + 60_000,
                at(s.start_s + 360),
                false,
            )]
        }
        Plan::Smoke(s) => {
            vec![exp(R2, at(s.start_s) - R2_LEAD_MS, at(s.start_s) + 60_000, at(s.start_s + 70), false)]
        }
        // Zone rules: from the true path, after the run (crate::truth).
        Plan::ZoneEntry | Plan::ZoneBorder { .. } => vec![],
        Plan::Unregistered => vec![exp(R6_UNREGISTERED, at(0) - 10_000, at(600), at(120), false)],
        Plan::DpfBypass(s) => {
            vec![exp(R4_DPF, at(s.start_s) - R4_LEAD_MS, at(s.start_s) + 60_000, at(s.start_s + 360), false)]
        }
        // OBD bodies come every 30 s: the first one in the span opens it.
        Plan::MilOn(s) => vec![exp(R4_MIL, at(s.start_s), at(s.start_s) + 31_000, at(s.start_s + 40), false)],
        Plan::EcuVinMismatch(s) => {
            vec![exp(R4_ECU_VIN, at(s.start_s), at(s.start_s) + 31_000, at(s.start_s + 40), false)]
        }
        Plan::CvnChanged(s) => {
            vec![exp(R4_CVN, at(s.start_s), at(s.start_s) + 31_000, at(s.start_s + 40), false)]
        }
        Plan::BannedMachine => vec![],
    }
}

/// Top-level rule id ("R4" for "R4.reagent_empty"), for grouping in reports. Matching found
/// violations to the truth uses the full sub-rule.
pub fn top_rule(rule: &str) -> &str {
    rule.split('.').next().unwrap_or(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::vehicle;

    #[test]
    fn only_r3_without_flags_and_roughly_the_rate() {
        let mut n = 0;
        for i in 0..20_000 {
            let v = vehicle(5, i, false);
            match plan_for(5, &v, PlantFlags::default(), 0.01) {
                Plan::Clean => {}
                Plan::Nox(s) => {
                    assert!(v.class.has_scr() && s.len_s == 400);
                    n += 1;
                }
                p => panic!("unexpected plan {p:?}"),
            }
        }
        assert!((80..180).contains(&n), "{n}");
    }

    #[test]
    fn every_plant_kind_occurs_with_all_flags() {
        let mut kinds = std::collections::HashSet::new();
        for i in 0..20_000 {
            let v = vehicle(5, i, false);
            let p = plan_for(5, &v, PlantFlags::all(), 0.02);
            kinds.insert(std::mem::discriminant(&p));
            let e = expected_for(&v, p, 1_000_000);
            assert!(e.iter().all(|e| e.start_from_ms < e.start_to_ms && e.due_ms > e.start_from_ms));
        }
        assert!(kinds.len() >= 13, "{}", kinds.len());
        assert_eq!(top_rule(R4_REAGENT), "R4");
        assert_eq!(top_rule("R3"), "R3");
    }
}
