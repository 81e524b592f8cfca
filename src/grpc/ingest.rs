//! `TelemetryIngest.Stream`: batched bidirectional streaming ingest.
//!
//! One task reads batches, validates each record and submits the good ones to the pipeline in
//! arrival order (so per-vehicle order holds); a second task waits for each batch to be durable
//! and sends its ack, in order. Up to `max_in_flight` batches are pipelined per stream.
use super::auth::{Caller, Principal};
use super::convert::{record_from_proto, reject_reason};
use crate::auth::Authenticator;
use crate::model::{now_ms, RecordError};
use crate::pipeline::{Admission, Completion, Pipeline};
use crate::proto::{self, telemetry_ingest_server::TelemetryIngest};
use crate::registry::Registry;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct IngestService {
    pipeline: Arc<Pipeline>,
    registry: Arc<Registry>,
    max_in_flight: usize,
    auth: Option<Arc<Authenticator>>,
}

impl IngestService {
    pub fn new(pipeline: Arc<Pipeline>, registry: Arc<Registry>, max_in_flight: usize) -> Self {
        IngestService { pipeline, registry, max_in_flight: max_in_flight.max(1), auth: None }
    }

    /// Open streams end when their credential is revoked (see `Authenticator::lapsed`).
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }
}

struct Pending {
    sequence: u64,
    rejections: Vec<proto::RecordRejection>,
    completion: Result<Completion, Status>,
}

/// Validates a batch; returns the good records and the rejections (index + reason).
pub fn validate_batch(
    registry: &Registry,
    admission: &Admission,
    caller: &Caller,
    records: Vec<proto::TelemetryRecord>,
    now: i64,
) -> (Vec<crate::model::TelemetryRecord>, Vec<proto::RecordRejection>) {
    let mut good = Vec::with_capacity(records.len());
    let mut rejections = Vec::new();
    let mut span = admission.day_span();
    for (i, p) in records.into_iter().enumerate() {
        let checked = record_from_proto(p).and_then(|r| {
            admission.check(&r, now)?;
            if !caller.may_send_for(&r.vin) {
                return Err(RecordError::ForbiddenVin(r.vin));
            }
            if registry.get(&r.vin).is_none() {
                return Err(RecordError::UnknownVin(r.vin));
            }
            span.admit(r.time_ms)?;
            Ok(r)
        });
        match checked {
            Ok(r) => good.push(r),
            Err(e) => {
                let reason = reject_reason(&e);
                metrics::counter!("smogwatch_records_rejected_total", "reason" => reason.as_str_name())
                    .increment(1);
                tracing::debug!(index = i, error = %e, "record rejected");
                rejections.push(proto::RecordRejection {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    reason: reason as i32,
                    detail: e.to_string(),
                });
            }
        }
    }
    (good, rejections)
}

/// Takes out the records of vehicles this node may not take now (leased by another node sharing
/// the store, `pipeline::ownership`) as retryable rejections; returns the rest, the rejections,
/// and each kept record's index in the original batch. Only well-formed, registered VINs are
/// asked about, so junk never costs a lease round trip.
async fn refuse_leased_elsewhere(
    pipeline: &Pipeline,
    registry: &Registry,
    records: Vec<proto::TelemetryRecord>,
) -> (Vec<proto::TelemetryRecord>, Vec<proto::RecordRejection>, Vec<u32>) {
    // Collected first: a borrowing iterator held across the awaits is not `Send`.
    let vins: Vec<crate::model::Vin> = records
        .iter()
        .filter_map(|r| crate::model::Vin::parse(&r.vin).ok())
        .filter(|v| registry.get(v).is_some())
        .collect();
    let refused = pipeline.check_vehicles(&vins).await;
    if refused.is_empty() {
        return (records, Vec::new(), Vec::new());
    }
    let (mut kept, mut rejections, mut index_of) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in records.into_iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        match crate::model::Vin::parse(&r.vin).ok().and_then(|v| refused.get(&v)) {
            Some(refusal) => {
                metrics::counter!("smogwatch_records_rejected_total", "reason" => proto::RejectReason::VehicleElsewhere.as_str_name())
                    .increment(1);
                rejections.push(proto::RecordRejection {
                    index: i,
                    reason: proto::RejectReason::VehicleElsewhere as i32,
                    detail: refusal.to_string(),
                });
            }
            None => {
                kept.push(r);
                index_of.push(i);
            }
        }
    }
    (kept, rejections, index_of)
}

/// What an inbound read error becomes for the client: a message over the size limit is
/// RESOURCE_EXHAUSTED with tonic's reason (sizes found and allowed), counted and logged; anything
/// else is passed on as it came.
fn inbound_error(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange {
        metrics::counter!("smogwatch_grpc_messages_refused_total", "reason" => "too_large").increment(1);
        tracing::warn!(reason = %status.message(), "ingest batch over the message size limit; stream ended");
        return Status::resource_exhausted(format!(
            "{} (ingest.max_message_bytes); split the batch",
            status.message()
        ));
    }
    tracing::debug!(%status, "ingest stream ended by client error");
    status
}

/// A batch with more records than allowed ends the stream: INVALID_ARGUMENT, counted and logged.
fn oversize_batch(records: usize, max: usize) -> Status {
    metrics::counter!("smogwatch_grpc_messages_refused_total", "reason" => "too_many_records").increment(1);
    tracing::warn!(records, max, "ingest batch over ingest.max_batch_records; stream ended");
    Status::invalid_argument(format!(
        "batch of {records} records is over ingest.max_batch_records = {max}; split the batch"
    ))
}

type AckStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl TelemetryIngest for IngestService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<proto::TelemetryBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let who = Principal::from_request(&request)?;
        let caller = who.caller.clone();
        caller.require_ingest()?;
        let mut lapsed: futures::future::BoxFuture<'static, crate::auth::ApiError> = match &self.auth {
            Some(auth) => Box::pin(auth.clone().lapsed(who)),
            None => Box::pin(futures::future::pending()),
        };
        let mut inbound = request.into_inner();
        let (ack_tx, ack_rx) = mpsc::channel(self.max_in_flight);
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(self.max_in_flight);
        let pipeline = self.pipeline.clone();
        let registry = self.registry.clone();

        tokio::spawn(async move {
            loop {
                let refused =
                    |status| Pending { sequence: 0, rejections: Vec::new(), completion: Err(status) };
                let next = tokio::select! {
                    n = inbound.message() => n,
                    e = &mut lapsed => {
                        // Acks of what was sent before go out first; nothing after is read.
                        let _ = pending_tx.send(refused(Status::from(e))).await;
                        break;
                    }
                };
                let batch = match next {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        // Reported after the acks of the batches before it (the acker keeps order).
                        let _ = pending_tx.send(refused(inbound_error(status))).await;
                        break;
                    }
                };
                metrics::counter!("smogwatch_batches_received_total", "transport" => "grpc").increment(1);
                let admission = pipeline.admission();
                if batch.records.len() > admission.max_batch_records() {
                    let status = oversize_batch(batch.records.len(), admission.max_batch_records());
                    let _ = pending_tx.send(refused(status)).await;
                    break;
                }
                let now = now_ms();
                let (records, refused, index_of) =
                    refuse_leased_elsewhere(&pipeline, &registry, batch.records).await;
                let (good, mut rejections) = validate_batch(&registry, admission, &caller, records, now);
                if !refused.is_empty() {
                    for r in &mut rejections {
                        r.index = index_of.get(r.index as usize).copied().unwrap_or(r.index);
                    }
                    rejections.extend(refused);
                    rejections.sort_by_key(|r| r.index);
                }
                metrics::counter!("smogwatch_records_received_total", "transport" => "grpc")
                    .increment((good.len() + rejections.len()) as u64);
                let completion = pipeline
                    .submit(good, batch.reissue, now)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()));
                let p = Pending { sequence: batch.sequence, rejections, completion };
                if pending_tx.send(p).await.is_err() {
                    break;
                }
            }
        });

        tokio::spawn(async move {
            while let Some(p) = pending_rx.recv().await {
                let result = match p.completion {
                    Ok(c) => c.wait().await.map_err(|e| Status::unavailable(e.to_string())),
                    Err(s) => Err(s),
                };
                let msg = result.map(|o| proto::BatchAck {
                    sequence: p.sequence,
                    accepted: o.stored + o.duplicates + o.conflicts,
                    duplicates: o.duplicates,
                    rejections: p.rejections,
                    conflicts: o.conflicts,
                });
                let failed = msg.is_err();
                if ack_tx.send(msg).await.is_err() || failed {
                    // The stream ends after an error: later acks would claim data we lost.
                    break;
                }
            }
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }
}
