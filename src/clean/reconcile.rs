//! Pairs gate-system records with telemetry passages and checks gate records against the
//! registry (rules.md: "a gate record with no matching telemetry (or the reverse) is visible as
//! such").
//!
//! Two passages are the same trip when they are of the same vehicle (gate record VIN, else its
//! plate through the registry), the same direction, the same park (when both name one), and at
//! most `window` apart. Pairing is one-to-one and greedy in time order, each gate record taking
//! the nearest free telemetry passage, so the result does not depend on input order.
use super::{GatePassage, PassageSource};
use crate::model::{EmissionStage, Fuel, Vehicle, Vin};
use crate::registry::Registry;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Registry lookups reconciliation needs (a trait so that the tests need no store).
pub trait VehicleLookup {
    fn by_vin(&self, vin: &Vin) -> Option<Arc<Vehicle>>;
    fn by_plate(&self, plate: &str) -> Option<Arc<Vehicle>>;
}

impl VehicleLookup for Registry {
    fn by_vin(&self, vin: &Vin) -> Option<Arc<Vehicle>> {
        self.get(vin)
    }
    fn by_plate(&self, plate: &str) -> Option<Arc<Vehicle>> {
        Registry::by_plate(self, plate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    /// Both sources saw this trip.
    Matched,
    /// A gate record with no telemetry passage in the window.
    GateOnly,
    /// A telemetry passage with no gate record in the window.
    TelemetryOnly,
}

/// A passage with its reconciliation outcome and the classification that counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciled {
    pub passage: GatePassage,
    pub status: MatchStatus,
    /// Id of the passage of the other source it paired with.
    pub matched_with: Option<String>,
    /// The vehicle (recorded VIN, else the registered owner of the plate).
    pub vin: Option<Vin>,
    /// A gate record claims a stage or fuel that contradicts the registry.
    pub stage_mismatch: bool,
    pub mismatch_detail: String,
    /// Fuel and stage that count for the ratio: the registry's when known, else the claim.
    pub fuel: Fuel,
    pub stage: EmissionStage,
}

/// Reconciles the passages of one enterprise; output in time order (then id).
pub fn reconcile(passages: Vec<GatePassage>, lookup: &dyn VehicleLookup, window_ms: i64) -> Vec<Reconciled> {
    let mut out: Vec<Reconciled> = passages.into_iter().map(|p| classify(p, lookup)).collect();
    out.sort_by(|a, b| (a.passage.time_ms, &a.passage.id).cmp(&(b.passage.time_ms, &b.passage.id)));
    // Telemetry passages by (vehicle, direction), indexes into `out` in time order.
    let mut telemetry: HashMap<(Vin, bool), Vec<usize>> = HashMap::new();
    for (i, r) in out.iter().enumerate() {
        if let (PassageSource::Telemetry, Some(vin)) = (r.passage.source, r.vin) {
            telemetry.entry((vin, is_in(&r.passage))).or_default().push(i);
        }
    }
    let mut taken = vec![false; out.len()];
    for g in 0..out.len() {
        if out[g].passage.source != PassageSource::GateSystem {
            continue;
        }
        let Some(vin) = out[g].vin else { continue };
        let Some(candidates) = telemetry.get(&(vin, is_in(&out[g].passage))) else { continue };
        let gp = &out[g].passage;
        let best = candidates
            .iter()
            .copied()
            .filter(|&t| !taken[t])
            .filter(|&t| {
                let tp = &out[t].passage;
                (tp.time_ms - gp.time_ms).abs() <= window_ms
                    && (tp.zone_id.is_empty() || gp.zone_id.is_empty() || tp.zone_id == gp.zone_id)
            })
            .min_by_key(|&t| ((out[t].passage.time_ms - gp.time_ms).abs(), t));
        if let Some(t) = best {
            taken[t] = true;
            taken[g] = true;
            let (gid, tid) = (out[g].passage.id.clone(), out[t].passage.id.clone());
            out[g].status = MatchStatus::Matched;
            out[g].matched_with = Some(tid);
            out[t].status = MatchStatus::Matched;
            out[t].matched_with = Some(gid);
        }
    }
    out
}

fn is_in(p: &GatePassage) -> bool {
    p.direction == crate::geofence::PassageDirection::In
}

fn classify(p: GatePassage, lookup: &dyn VehicleLookup) -> Reconciled {
    let registered = p
        .vin
        .and_then(|v| lookup.by_vin(&v))
        .or_else(|| (!p.plate.is_empty()).then(|| lookup.by_plate(&p.plate)).flatten());
    let vin = p.vin.or_else(|| registered.as_ref().and_then(|v| v.vin));
    let status = match p.source {
        PassageSource::GateSystem => MatchStatus::GateOnly,
        PassageSource::Telemetry => MatchStatus::TelemetryOnly,
    };
    let mut problems = Vec::new();
    let (mut fuel, mut stage) = (p.claimed_fuel.unwrap_or_default(), p.claimed_stage.unwrap_or_default());
    if let Some(v) = &registered {
        if v.emission_stage != EmissionStage::Unknown {
            if let Some(c) = p.claimed_stage.filter(|c| *c != v.emission_stage) {
                problems.push(format!("gate says {c:?}, registry says {:?}", v.emission_stage));
            }
            stage = v.emission_stage;
        }
        if v.fuel != Fuel::Unknown {
            if let Some(c) = p.claimed_fuel.filter(|c| *c != v.fuel) {
                problems.push(format!("gate says {c:?}, registry says {:?}", v.fuel));
            }
            fuel = v.fuel;
        }
    }
    Reconciled {
        status,
        matched_with: None,
        vin,
        stage_mismatch: !problems.is_empty(),
        mismatch_detail: problems.join("; "),
        fuel,
        stage,
        passage: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::telemetry_passage_id;
    use crate::geofence::PassageDirection::{self, *};
    use crate::registry::normalise_plate;

    const T: i64 = 1_761_926_400_000;
    const MIN: i64 = 60_000;

    struct Map(Vec<Vehicle>);
    impl VehicleLookup for Map {
        fn by_vin(&self, vin: &Vin) -> Option<Arc<Vehicle>> {
            self.0.iter().find(|v| v.vin == Some(*vin)).cloned().map(Arc::new)
        }
        fn by_plate(&self, plate: &str) -> Option<Arc<Vehicle>> {
            self.0.iter().find(|v| normalise_plate(&v.plate) == normalise_plate(plate)).cloned().map(Arc::new)
        }
    }

    fn vin(n: u32) -> Vin {
        Vin::parse(&format!("LZZ5BLSJ3DA{n:06}")).unwrap()
    }

    fn registry() -> Map {
        let v = |n, plate: &str, fuel, stage| Vehicle {
            plate: plate.into(),
            fuel,
            emission_stage: stage,
            ..Vehicle::new(vin(n))
        };
        Map(vec![
            v(1, "浙B00001", Fuel::Diesel, EmissionStage::ChinaV),
            v(2, "浙B00002", Fuel::Diesel, EmissionStage::ChinaVI),
        ])
    }

    fn tele(n: u32, t: i64, d: PassageDirection) -> GatePassage {
        GatePassage {
            id: telemetry_passage_id(&vin(n), "P", t, d),
            enterprise_id: "E".into(),
            source: PassageSource::Telemetry,
            time_ms: t,
            direction: d,
            vin: Some(vin(n)),
            plate: String::new(),
            zone_id: "P".into(),
            gate_id: String::new(),
            claimed_stage: None,
            claimed_fuel: None,
            cargo: String::new(),
            tonnage: None,
            fix: None,
        }
    }

    fn gate(plate: &str, t: i64, d: PassageDirection, stage: Option<EmissionStage>) -> GatePassage {
        GatePassage {
            id: crate::clean::gate_records::gate_record_id("G1", plate, t, d),
            source: PassageSource::GateSystem,
            vin: None,
            plate: plate.into(),
            gate_id: "G1".into(),
            claimed_stage: stage,
            tonnage: Some(30.0),
            ..tele(1, t, d)
        }
    }

    #[test]
    fn pairs_by_vehicle_direction_and_window() {
        let out = reconcile(
            vec![
                tele(1, T, In),
                gate("浙B00001", T + 4 * MIN, In, None), // matched by plate → VIN 1
                gate("浙B00001", T + 30 * MIN, Out, None), // no telemetry Out within 10 min
                tele(1, T + 45 * MIN, Out),
                gate("浙B00002", T, In, None), // VIN 2 has no telemetry
                gate("浙X99999", T, In, None), // unregistered plate
                tele(2, T + 11 * MIN, Out),    // no gate record
            ],
            &registry(),
            10 * MIN,
        );
        let by_status = |s| out.iter().filter(|r| r.status == s).count();
        assert_eq!(by_status(MatchStatus::Matched), 2);
        assert_eq!(by_status(MatchStatus::GateOnly), 3);
        assert_eq!(by_status(MatchStatus::TelemetryOnly), 2);
        let m = out
            .iter()
            .find(|r| r.passage.source == PassageSource::GateSystem && r.status == MatchStatus::Matched);
        assert_eq!(m.unwrap().vin, Some(vin(1)));
        assert_eq!(
            m.unwrap().matched_with.as_deref(),
            Some(telemetry_passage_id(&vin(1), "P", T, In).as_str())
        );
        assert!(out.windows(2).all(|w| w[0].passage.time_ms <= w[1].passage.time_ms));
    }

    #[test]
    fn nearest_telemetry_wins_and_pairing_is_one_to_one() {
        let out = reconcile(
            vec![
                tele(1, T, In),
                tele(1, T + 8 * MIN, In),
                gate("浙B00001", T + 7 * MIN, In, None),
                gate("浙B00001", T + 9 * MIN, In, None),
            ],
            &registry(),
            10 * MIN,
        );
        let g1 = out.iter().find(|r| r.passage.time_ms == T + 7 * MIN).unwrap();
        assert_eq!(
            g1.matched_with.as_deref(),
            Some(telemetry_passage_id(&vin(1), "P", T + 8 * MIN, In).as_str())
        );
        let g2 = out.iter().find(|r| r.passage.time_ms == T + 9 * MIN).unwrap();
        assert_eq!(g2.matched_with.as_deref(), Some(telemetry_passage_id(&vin(1), "P", T, In).as_str()));
    }

    #[test]
    fn a_claim_contradicting_the_registry_is_flagged_and_not_believed() {
        let out = reconcile(
            vec![
                gate("浙B00001", T, In, Some(EmissionStage::ChinaVI)),
                gate("浙B00002", T, In, Some(EmissionStage::ChinaVI)),
                gate("浙X99999", T, In, Some(EmissionStage::ChinaVI)),
            ],
            &registry(),
            10 * MIN,
        );
        let of = |p: &str| out.iter().find(|r| r.passage.plate == p).unwrap();
        assert!(of("浙B00001").stage_mismatch);
        assert!(of("浙B00001").mismatch_detail.contains("ChinaV"));
        assert_eq!(of("浙B00001").stage, EmissionStage::ChinaV, "registry wins");
        assert!(!of("浙B00002").stage_mismatch);
        assert!(!of("浙X99999").stage_mismatch, "unregistered: nothing to contradict");
        assert_eq!(of("浙X99999").stage, EmissionStage::ChinaVI, "unregistered: the claim counts");
    }
}
