//! `Roadside` service: remote-sensing and black-smoke camera records (R2, source b).
use super::auth::Caller;
use super::status_from_store;
use crate::detect::smoke::{RoadsideOutcome, UnmatchedRoadside};
use crate::detect::DetectorSet;
use crate::model::{now_ms, PlateColour, RoadsideRecord, RoadsideSource};
use crate::proto::{self, roadside_server};
use crate::registry::Registry;
use crate::store::{CommitBatch, Store, ViolationWrite};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Document kind under which unmatched over-limit records are kept (key: the record's key).
const UNMATCHED: &str = "roadside_unmatched";
/// Records per request: a device batch, not a bulk import.
const MAX_RECORDS: usize = 1000;

pub struct RoadsideService {
    registry: Arc<Registry>,
    detectors: Arc<DetectorSet>,
    store: Arc<dyn Store>,
}

impl RoadsideService {
    pub fn new(registry: Arc<Registry>, detectors: Arc<DetectorSet>, store: Arc<dyn Store>) -> Self {
        RoadsideService { registry, detectors, store }
    }
}

fn from_proto(p: proto::RoadsideRecord) -> RoadsideRecord {
    RoadsideRecord {
        plate: p.plate,
        plate_colour: match proto::PlateColour::try_from(p.plate_colour) {
            Ok(proto::PlateColour::Blue) => PlateColour::Blue,
            Ok(proto::PlateColour::Yellow) => PlateColour::Yellow,
            Ok(proto::PlateColour::Green) => PlateColour::Green,
            Ok(proto::PlateColour::YellowGreen) => PlateColour::YellowGreen,
            Ok(proto::PlateColour::White) => PlateColour::White,
            Ok(proto::PlateColour::Black) => PlateColour::Black,
            _ => PlateColour::Unknown,
        },
        time_ms: p.time_ms,
        lon: p.longitude,
        lat: p.latitude,
        // Values above u8 are out of the 0–5 scale anyway; validation names them.
        ringelmann: p.ringelmann.map(|r| u8::try_from(r).unwrap_or(u8::MAX)),
        k_per_m: p.k_per_m,
        device_id: p.device_id,
        source: match proto::RoadsideSourceKind::try_from(p.source) {
            Ok(proto::RoadsideSourceKind::BlackSmokeCamera) => RoadsideSource::BlackSmokeCamera,
            _ => RoadsideSource::RemoteSensing,
        },
        evidence_ref: (!p.evidence_ref.is_empty()).then_some(p.evidence_ref),
    }
}

fn result(
    index: usize,
    outcome: proto::RoadsideOutcome,
    id: String,
    detail: String,
) -> proto::RoadsideResult {
    proto::RoadsideResult {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        outcome: outcome as i32,
        violation_id: id,
        detail,
    }
}

#[tonic::async_trait]
impl roadside_server::Roadside for RoadsideService {
    async fn submit(
        &self,
        req: Request<proto::SubmitRoadsideRequest>,
    ) -> Result<Response<proto::SubmitRoadsideResponse>, Status> {
        Caller::from_request(&req)?.require_reviewer()?;
        let records = req.into_inner().records;
        if records.len() > MAX_RECORDS {
            return Err(Status::invalid_argument(format!("at most {MAX_RECORDS} records per request")));
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(records.len());
        let mut batch = CommitBatch::default();
        let mut unmatched = Vec::new();
        for (i, p) in records.into_iter().enumerate() {
            let rec = from_proto(p);
            if let Err(e) = rec.validate(now) {
                metrics::counter!("smogwatch_roadside_records_total", "outcome" => "rejected").increment(1);
                results.push(result(i, proto::RoadsideOutcome::Rejected, String::new(), e.to_string()));
                continue;
            }
            let vehicle = self.registry.by_plate(&rec.plate);
            match self.detectors.evaluate_roadside(&rec, vehicle.as_deref()) {
                RoadsideOutcome::Violation(v) => {
                    metrics::counter!("smogwatch_roadside_records_total", "outcome" => "violation")
                        .increment(1);
                    results.push(result(
                        i,
                        proto::RoadsideOutcome::Violation,
                        v.id.0.clone(),
                        v.summary.clone(),
                    ));
                    batch.violations.push(ViolationWrite::Upsert(*v));
                }
                RoadsideOutcome::Compliant => {
                    metrics::counter!("smogwatch_roadside_records_total", "outcome" => "compliant")
                        .increment(1);
                    results.push(result(i, proto::RoadsideOutcome::Compliant, String::new(), String::new()));
                }
                RoadsideOutcome::Unmatched(u) => {
                    metrics::counter!("smogwatch_roadside_records_total", "outcome" => "unmatched")
                        .increment(1);
                    tracing::info!(plate = %u.plate, device = %u.device_id, "roadside record over the limit matches no registered vehicle");
                    results.push(result(
                        i,
                        proto::RoadsideOutcome::Unmatched,
                        String::new(),
                        u.reason.clone(),
                    ));
                    unmatched.push((u.key.clone(), serde_json::to_vec(&u).unwrap_or_default()));
                }
            }
        }
        if !unmatched.is_empty() {
            self.store.put_documents(UNMATCHED, unmatched).await.map_err(status_from_store)?;
        }
        if !batch.is_empty() {
            self.store.commit(batch).await.map_err(status_from_store)?;
        }
        Ok(Response::new(proto::SubmitRoadsideResponse { results }))
    }

    async fn list_unmatched(
        &self,
        req: Request<proto::ListUnmatchedRoadsideRequest>,
    ) -> Result<Response<proto::ListUnmatchedRoadsideResponse>, Status> {
        Caller::from_request(&req)?.require_reviewer()?;
        let docs = self.store.documents(UNMATCHED).await.map_err(status_from_store)?;
        let mut records: Vec<proto::UnmatchedRoadsideRecord> = docs
            .into_iter()
            .filter_map(|(_, body)| serde_json::from_slice::<UnmatchedRoadside>(&body).ok())
            .map(|u| proto::UnmatchedRoadsideRecord {
                key: u.key,
                plate: u.plate,
                time_ms: u.time_ms,
                device_id: u.device_id,
                reason: u.reason,
                summary: u.summary,
            })
            .collect();
        records.sort_by(|a, b| b.time_ms.cmp(&a.time_ms));
        Ok(Response::new(proto::ListUnmatchedRoadsideResponse { records }))
    }
}
