//! `TelemetryIngest.Stream`: batched bidirectional streaming ingest.
//!
//! One task reads batches, validates each record and submits the good ones to the pipeline in
//! arrival order (so per-vehicle order holds); a second task waits for each batch to be durable
//! and sends its ack, in order. Up to `max_in_flight` batches are pipelined per stream.
use super::auth::Caller;
use super::convert::{record_from_proto, reject_reason};
use crate::model::{now_ms, RecordError};
use crate::pipeline::{Completion, Pipeline};
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
}

impl IngestService {
    pub fn new(pipeline: Arc<Pipeline>, registry: Arc<Registry>, max_in_flight: usize) -> Self {
        IngestService { pipeline, registry, max_in_flight: max_in_flight.max(1) }
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
    caller: &Caller,
    records: Vec<proto::TelemetryRecord>,
    now: i64,
) -> (Vec<crate::model::TelemetryRecord>, Vec<proto::RecordRejection>) {
    let mut good = Vec::with_capacity(records.len());
    let mut rejections = Vec::new();
    for (i, p) in records.into_iter().enumerate() {
        let checked = record_from_proto(p).and_then(|r| {
            r.validate(now)?;
            if !caller.may_send_for(&r.vin) {
                return Err(RecordError::ForbiddenVin(r.vin));
            }
            if registry.get(&r.vin).is_none() {
                return Err(RecordError::UnknownVin(r.vin));
            }
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

type AckStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl TelemetryIngest for IngestService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<proto::TelemetryBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_ingest()?;
        let mut inbound = request.into_inner();
        let (ack_tx, ack_rx) = mpsc::channel(self.max_in_flight);
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(self.max_in_flight);
        let pipeline = self.pipeline.clone();
        let registry = self.registry.clone();

        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "ingest stream ended by client error");
                        break;
                    }
                };
                metrics::counter!("smogwatch_batches_received_total", "transport" => "grpc").increment(1);
                let now = now_ms();
                let (good, rejections) = validate_batch(&registry, &caller, batch.records, now);
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
