//! HJ 1239 driver: one TCP connection per terminal, as in the field: login (0x01, waits for the
//! platform's answer), real-time frames of 10 records (0x02; reissue 0x03), logout (0x04).
//!
//! smogwatch's gateway answers each report once its records are durable (`answer_reports`, an
//! UNVERIFIED protocol behaviour kept behind a setting); those answers are this driver's acks.
use super::hj1239_frames::{login_frame, logout_frame, report_frame};
use super::{ConnStats, Driver, Pacer, RunControl};
use crate::source::Source;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use smogwatch::hj1239::command::{LOGOUT, REAL_TIME, REISSUE};
use smogwatch::hj1239::{Decoded, FrameCodec};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};
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

struct InFlight {
    due: Instant,
    records: u64,
}

async fn run_terminal(
    addr: SocketAddr,
    source: &mut Source,
    ctl: &Arc<RunControl>,
    stats: &mut ConnStats,
) -> anyhow::Result<()> {
    let Some(sim) = source.sims.first() else { return Ok(()) };
    anyhow::ensure!(source.sims.len() == 1, "an HJ 1239 connection carries exactly one terminal");
    let (vin, t0) = (sim.spec.vin.clone(), sim.t0_ms);
    let socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let mut framed = Framed::new(socket, FrameCodec::new());

    framed.send(login_frame(&vin, t0, 1)?).await?;
    match tokio::time::timeout(Duration::from_secs(10), framed.next()).await {
        Ok(Some(Ok(Decoded::Frame(f)))) if f.command == 0x01 => {}
        Ok(other) => anyhow::bail!("login not answered as expected: {other:?}"),
        Err(_) => anyhow::bail!("no login answer within 10 s"),
    }
    let (mut sink, mut stream) = framed.split();
    let window = Arc::new(Semaphore::new(ctl.window));
    let inflight = Arc::new(Mutex::new(VecDeque::<InFlight>::new()));
    // Report answers (sent by the gateway once the records are durable) are read by their own
    // task; they come in order, so each one closes the oldest report in flight.
    let reader = {
        let (window, inflight, ctl) = (window.clone(), inflight.clone(), ctl.clone());
        tokio::spawn(async move {
            let mut st = ConnStats::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(Decoded::Frame(f)) if f.command == REAL_TIME || f.command == REISSUE => {
                        let Some(x) = inflight.lock().await.pop_front() else {
                            st.errors.push("report answer without a report in flight".into());
                            break;
                        };
                        st.record_ack(&ctl, x.records, x.due.elapsed());
                        window.add_permits(1);
                    }
                    Ok(Decoded::Frame(f)) if f.command == LOGOUT => break,
                    Ok(Decoded::Frame(_)) => {}
                    Ok(Decoded::Dropped(e)) => st.errors.push(format!("bad frame from the gateway: {e}")),
                    Err(e) => {
                        st.errors.push(format!("read: {e}"));
                        break;
                    }
                }
            }
            st
        })
    };

    let mut pacer = Pacer::new(ctl.rate_per_connection());
    let mut serial: u16 = 0;
    let mut last_ms = t0;
    'send: while ctl.keep_going() {
        let Some(msg) = source.next_message() else { break };
        let due = pacer.wait(msg.records()).await;
        for b in &msg.batches {
            let permit = loop {
                match tokio::time::timeout(Duration::from_millis(200), window.acquire()).await {
                    Ok(Ok(p)) => break p,
                    Ok(Err(_)) => break 'send,
                    Err(_) if reader.is_finished() => break 'send,
                    Err(_) => {}
                }
            };
            permit.forget();
            serial = serial.wrapping_add(1);
            let n = b.records.len() as u64;
            inflight.lock().await.push_back(InFlight { due, records: n });
            sink.send(report_frame(&vin, &b.records, serial, b.reissue)?).await?;
            stats.messages_sent += 1;
            stats.records_sent += n;
            ctl.count_sent(n);
            last_ms = last_ms.max(b.records.last().map_or(last_ms, |r| r.time_ms));
        }
    }
    // Wait for the outstanding answers, then log out.
    let until = Instant::now() + ctl.drain_timeout;
    while !inflight.lock().await.is_empty() && Instant::now() < until && !reader.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sink.send(logout_frame(&vin, last_ms, 1)?).await?;
    match tokio::time::timeout(Duration::from_secs(10), reader).await {
        Ok(Ok(st)) => stats.merge(st),
        Ok(Err(e)) => anyhow::bail!("answer reader failed: {e}"),
        Err(_) => anyhow::bail!("no logout answer within 10 s"),
    }
    if stats.messages_acked < stats.messages_sent {
        anyhow::bail!(
            "{} of {} reports never answered",
            stats.messages_sent - stats.messages_acked,
            stats.messages_sent
        );
    }
    Ok(())
}
