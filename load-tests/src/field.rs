//! Detection quality over many simulated vehicle-hours, without the transport and the store:
//! the simulator's records go straight through the server's detectors (`DetectorSet`, the same
//! code and default `[rules]` the pipeline runs, over the sample zones), one vehicle at a time,
//! in time order. This is what makes ≥ 10,000 vehicle-hours with every noise model affordable on
//! a 2-core machine; transport, storage and the late-data path are covered by the smoke matrix.
//! Offline gaps are delivered in time order here (no reissue), so their hidden R3 episodes are
//! found live: `late_flag_mismatches` counts them and means nothing in this run.
use crate::plant::{GroundTruth, PlantFlags};
use crate::quality::{self, Quality};
use crate::scenario::{build_fleet, Scenario};
use crate::sim::VehicleBatch;
use smogwatch::detect::{DetectorSet, Observation, RulesConfig, VehicleState};
use smogwatch::geofence::ZoneRegistry;
use smogwatch::grpc::convert::{record_from_proto, vehicle_from_proto, violation_to_proto};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct FieldRun {
    pub seed: u64,
    pub vehicles: u32,
    pub sim_seconds: u32,
    pub plant_rate: f64,
    pub anchor_ms: i64,
}

#[derive(Debug)]
pub struct FieldResult {
    pub vehicle_hours: f64,
    pub records: u64,
    pub quality: Quality,
    pub truth: GroundTruth,
}

pub fn run(f: &FieldRun) -> anyhow::Result<FieldResult> {
    let sc = Scenario {
        vehicles: f.vehicles,
        sim_seconds: f.sim_seconds,
        seed: f.seed,
        plant_rate: f.plant_rate,
        flags: PlantFlags::all(),
        ..Scenario::smoke()
    };
    let fleet = build_fleet(&sc, f.anchor_ms);
    let mut truth = fleet.truth;
    let zones = Arc::new(ZoneRegistry::new(crate::truth::ZoneWorld::sample_set()?));
    let detectors = DetectorSet::with_zones(&RulesConfig::default(), zones);
    let mut found = Vec::new();
    let mut complete_until = HashMap::new();
    let mut records = 0u64;
    for mut sim in fleet.sims {
        let vehicle = vehicle_from_proto(sim.spec.to_proto())?;
        let mut batches: Vec<VehicleBatch> = Vec::new();
        while sim.simulated_s() < f.sim_seconds {
            sim.tick(&mut batches);
        }
        sim.drain_reissue(&mut batches);
        let mut recs: Vec<_> = batches.into_iter().flat_map(|b| b.records).collect();
        recs.sort_by_key(|r| r.time_ms);
        let mut state = VehicleState::default();
        let mut out = Vec::new();
        for p in recs {
            let Ok(r) = record_from_proto(p) else { continue };
            records += 1;
            detectors.observe(
                &mut state,
                &Observation { vehicle: &vehicle, record: &r, received_ms: r.time_ms },
                &mut out,
            );
        }
        // The newest snapshot of each violation, as the store would list it.
        let mut at: HashMap<String, usize> = HashMap::new();
        for v in &out {
            let p = violation_to_proto(v);
            match at.get(&p.id) {
                Some(&i) => found[i] = p,
                None => {
                    at.insert(p.id.clone(), found.len());
                    found.push(p);
                }
            }
        }
        complete_until.insert(sim.spec.vin.clone(), sim.t0_ms + i64::from(f.sim_seconds) * 1000);
        if let Some((exp, border)) = sim.take_zone_truth() {
            truth.expected.extend(exp);
            truth.borderline.extend(border);
        }
    }
    let quality = quality::evaluate(&truth, &complete_until, &found);
    Ok(FieldResult {
        vehicle_hours: f64::from(f.vehicles) * f64::from(f.sim_seconds) / 3600.0,
        records,
        quality,
        truth,
    })
}
