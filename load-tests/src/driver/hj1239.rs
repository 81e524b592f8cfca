//! HJ 1239 driver: one TCP connection per terminal, as in the field: login (0x01, waits for the
//! platform's answer), real-time frames of 10 records (0x02; reissue 0x03), logout (0x04).
//!
//! The protocol does not acknowledge real-time frames, so throughput here is frames *written*
//! (not durable acks) and the latency histogram holds login round trips.
use super::hj1239_frames::{login_frame, logout_frame, report_frame};
use super::{ConnStats, Driver, Pacer, RunControl};
use crate::source::Source;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use smogwatch::hj1239::{Decoded, FrameCodec};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;

pub struct Hj1239Driver {
    pub addr: SocketAddr,
}

impl Driver for Hj1239Driver {
    fn name(&self) -> &'static str {
        "hj1239"
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
            if let Err(e) = run_terminal(addr, &mut source, &ctl, &mut stats).await {
                stats.errors.push(format!("terminal {connection}: {e:#}"));
            }
            (stats, source)
        })
    }
}

async fn run_terminal(
    addr: SocketAddr,
    source: &mut Source,
    ctl: &RunControl,
    stats: &mut ConnStats,
) -> anyhow::Result<()> {
    let Some(sim) = source.sims.first() else { return Ok(()) };
    anyhow::ensure!(source.sims.len() == 1, "an HJ 1239 connection carries exactly one terminal");
    let (vin, t0) = (sim.spec.vin.clone(), sim.t0_ms);
    let socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let mut framed = Framed::new(socket, FrameCodec::new());

    let sent_at = Instant::now();
    framed.send(login_frame(&vin, t0, 1)?).await?;
    match tokio::time::timeout(Duration::from_secs(10), framed.next()).await {
        Ok(Some(Ok(Decoded::Frame(f)))) if f.command == 0x01 => {
            stats.record_ack(ctl, 0, sent_at.elapsed());
        }
        Ok(other) => anyhow::bail!("login not answered as expected: {other:?}"),
        Err(_) => anyhow::bail!("no login answer within 10 s"),
    }

    let mut pacer = Pacer::new(ctl.rate_per_connection());
    let mut serial: u16 = 0;
    let mut last_ms = t0;
    while ctl.keep_going() {
        let Some(msg) = source.next_message() else { break };
        pacer.wait(msg.records()).await;
        for b in &msg.batches {
            serial = serial.wrapping_add(1);
            framed.feed(report_frame(&vin, &b.records, serial, b.reissue)?).await?;
            let n = b.records.len() as u64;
            stats.messages_sent += 1;
            stats.records_sent += n;
            ctl.count_sent(n);
            last_ms = last_ms.max(b.records.last().map_or(last_ms, |r| r.time_ms));
        }
        framed.flush().await?;
        // No acks for real-time frames: count them as delivered once written to the socket.
        let n = msg.records() as u64;
        stats.messages_acked += msg.batches.len() as u64;
        stats.records_acked += n;
        stats.add_acked_records(ctl, n);
    }
    framed.send(logout_frame(&vin, last_ms, 1)?).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), framed.next()).await;
    Ok(())
}
