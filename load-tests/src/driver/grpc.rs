//! gRPC driver: one `TelemetryIngest.Stream` per connection (each on its own HTTP/2 connection,
//! like independent forwarding platforms), many vehicles' batches per stream, acks matched to
//! sends by sequence number (the server acks in order).
use super::{ConnStats, Driver, Pacer, RunControl};
use crate::source::Source;
use futures::future::BoxFuture;
use smogwatch::proto::{self, telemetry_ingest_client::TelemetryIngestClient};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

pub struct GrpcDriver {
    pub addr: SocketAddr,
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .connect()
        .await?)
}

struct InFlight {
    sequence: u64,
    due: Instant,
    records: u64,
}

impl Driver for GrpcDriver {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn run(
        &self,
        connection: usize,
        source: Source,
        ctl: Arc<RunControl>,
    ) -> BoxFuture<'static, (ConnStats, Source)> {
        let addr = self.addr;
        Box::pin(async move {
            let mut stats = ConnStats::new();
            let mut source = source;
            if let Err(e) = run_stream(addr, &mut source, &ctl, &mut stats).await {
                stats.errors.push(format!("connection {connection}: {e:#}"));
            }
            (stats, source)
        })
    }
}

async fn run_stream(
    addr: SocketAddr,
    source: &mut Source,
    ctl: &Arc<RunControl>,
    stats: &mut ConnStats,
) -> anyhow::Result<()> {
    let channel = connect(addr).await?;
    let mut client = TelemetryIngestClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel::<proto::TelemetryBatch>(ctl.window);
    let window = Arc::new(Semaphore::new(ctl.window));
    let inflight = Arc::new(Mutex::new(VecDeque::<InFlight>::new()));
    let response = client.stream(ReceiverStream::new(rx)).await?;
    let mut acks = response.into_inner();

    // Acks are read by their own task so sending never waits behind a slow reader.
    let ack_task = {
        let (window, inflight, ctl) = (window.clone(), inflight.clone(), ctl.clone());
        tokio::spawn(async move {
            let mut st = ConnStats::new();
            loop {
                let msg = match acks.message().await {
                    Ok(Some(a)) => a,
                    Ok(None) => break,
                    Err(s) => {
                        st.errors.push(format!("ack stream: {s}"));
                        break;
                    }
                };
                let Some(f) = inflight.lock().await.pop_front() else {
                    st.errors.push(format!("ack {} without a pending batch", msg.sequence));
                    break;
                };
                if f.sequence != msg.sequence {
                    st.errors.push(format!("ack {} out of order (expected {})", msg.sequence, f.sequence));
                }
                st.duplicates += u64::from(msg.duplicates);
                for r in &msg.rejections {
                    let reason = proto::RejectReason::try_from(r.reason)
                        .map(|x| x.as_str_name().to_string())
                        .unwrap_or_else(|_| r.reason.to_string());
                    *st.rejections.entry(reason).or_default() += 1;
                    if st.errors.len() < 5 {
                        st.errors.push(format!("rejected: {}", r.detail));
                    }
                }
                st.record_ack(&ctl, u64::from(msg.accepted).min(f.records), f.due.elapsed());
                window.add_permits(1);
            }
            st
        })
    };

    let mut pacer = Pacer::new(ctl.rate_per_connection());
    let mut sequence = 0u64;
    while ctl.keep_going() {
        let permit = match tokio::time::timeout(Duration::from_millis(200), window.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => break,
            Err(_) => {
                if ack_task.is_finished() {
                    break;
                }
                continue;
            }
        };
        let Some(msg) = source.next_message() else { break };
        let records = msg.records();
        let due = pacer.wait(records).await;
        sequence += 1;
        let batch = proto::TelemetryBatch {
            sequence,
            reissue: msg.reissue,
            records: msg.batches.into_iter().flat_map(|b| b.records).collect(),
        };
        inflight.lock().await.push_back(InFlight { sequence, due, records: records as u64 });
        permit.forget();
        if tx.send(batch).await.is_err() {
            anyhow::bail!("request stream closed by the server");
        }
        stats.messages_sent += 1;
        stats.records_sent += records as u64;
        ctl.count_sent(records as u64);
    }
    drop(tx);
    match tokio::time::timeout(ctl.drain_timeout, ack_task).await {
        // The ack reader counted acks only; merging adds them to this side's send counts.
        Ok(Ok(st)) => stats.merge(st),
        Ok(Err(e)) => anyhow::bail!("ack reader failed: {e}"),
        Err(_) => anyhow::bail!("outstanding acks not received within {:?}", ctl.drain_timeout),
    }
    if stats.messages_acked < stats.messages_sent {
        anyhow::bail!(
            "{} of {} messages never acknowledged",
            stats.messages_sent - stats.messages_acked,
            stats.messages_sent
        );
    }
    Ok(())
}
