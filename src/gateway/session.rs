//! One terminal connection: login, reports, logout, with the platform's answers.
//!
//! Reading and answering are two tasks joined by a bounded queue: the reader decodes frames and
//! submits records to the pipeline; the answerer waits, in order, for each report to be durable
//! before answering it. A terminal that never gets an answer keeps the data for reissue.
use super::activity::{Activity, ActivityStream};
use super::limits::FrameBudget;
use super::{records, GatewayConfig, LayoutMemory};
use crate::hj1239::{
    command, Answer, BodyLayout, Decoded, Dialect, Frame, FrameCodec, InfoReport, LayoutChoice, Message,
    MessageError, TerminalTime,
};
use crate::model::{now_ms, TelemetryRecord, Vehicle, VehicleKind, Vin};
use crate::pipeline::{Completion, Pipeline, SessionEvent};
use crate::registry::Registry;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

enum Outbound {
    Now(Frame),
    /// Answer once the records are durable; no answer (and the link closes) if they are not.
    WhenDurable(Completion, Option<Frame>),
    Close,
}

enum State {
    AwaitingLogin,
    LoggedIn { vin: Vin, vehicle: Arc<Vehicle>, dialect: Dialect },
}

pub(super) struct Session {
    cfg: Arc<GatewayConfig>,
    registry: Arc<Registry>,
    pipeline: Arc<Pipeline>,
    layouts: Arc<LayoutMemory>,
    peer: SocketAddr,
}

fn count_frame(what: &'static str) {
    metrics::counter!("smogwatch_hj1239_frames_total", "outcome" => what).increment(1);
}

fn hex_excerpt(b: &[u8]) -> String {
    hex::encode(b.get(..b.len().min(48)).unwrap_or_default())
}

impl Session {
    pub fn new(
        cfg: Arc<GatewayConfig>,
        registry: Arc<Registry>,
        pipeline: Arc<Pipeline>,
        layouts: Arc<LayoutMemory>,
        peer: SocketAddr,
    ) -> Self {
        Session { cfg, registry, pipeline, layouts, peer }
    }

    pub async fn run(self, socket: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let codec = FrameCodec::with_max_data_len(self.cfg.max_data_len)
            .with_stall_timeout(Duration::from_millis(self.cfg.stall_timeout_ms.max(1)));
        let activity = Activity::new();
        let socket = ActivityStream::new(socket, activity.clone());
        let (mut sink, mut frames) = Framed::new(socket, codec).split();
        let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(self.cfg.max_in_flight.max(1));
        let peer = self.peer;
        let answerer = tokio::spawn(async move {
            while let Some(o) = out_rx.recv().await {
                let frame = match o {
                    Outbound::Now(f) => Some(f),
                    Outbound::WhenDurable(c, f) => match c.wait().await {
                        Ok(_) => f,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "records not durable; closing so the terminal reissues");
                            break;
                        }
                    },
                    Outbound::Close => break,
                };
                if let Some(f) = frame {
                    if sink.send(f).await.is_err() {
                        break;
                    }
                }
            }
            let _ = sink.close().await;
        });

        let mut state = State::AwaitingLogin;
        let mut budget = FrameBudget::new(self.cfg.max_frames_per_s, self.cfg.frame_burst);
        let opened = Instant::now();
        loop {
            // Login: a fixed deadline from the connection's start. Logged in: any received byte
            // is activity, not only whole frames (a damaged frame may be collecting bytes).
            let timeout = match state {
                State::AwaitingLogin => {
                    Duration::from_secs(self.cfg.login_timeout_s.max(1)).saturating_sub(opened.elapsed())
                }
                State::LoggedIn { .. } => self.cfg.idle_timeout().saturating_sub(activity.idle_for()),
            };
            let next = tokio::select! {
                n = tokio::time::timeout(timeout, frames.next()) => n,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let item = match next {
                Err(_) if matches!(state, State::AwaitingLogin) => {
                    metrics::counter!("smogwatch_hj1239_sessions_closed_total", "reason" => "login_timeout")
                        .increment(1);
                    tracing::info!(peer = %self.peer, "hj1239 connection sent no valid login in time; closing");
                    break;
                }
                Err(_) if activity.idle_for() < self.cfg.idle_timeout() => continue,
                Err(_) => {
                    metrics::counter!("smogwatch_hj1239_sessions_closed_total", "reason" => "idle")
                        .increment(1);
                    tracing::info!(peer = %self.peer, "hj1239 session idle; closing");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(peer = %self.peer, error = %e, "hj1239 socket error");
                    break;
                }
                Ok(Some(Ok(item))) => item,
            };
            let frame = match item {
                Decoded::Frame(f) => f,
                Decoded::Dropped(e) => {
                    metrics::counter!("smogwatch_hj1239_frames_dropped_total", "kind" => e.kind())
                        .increment(1);
                    tracing::warn!(peer = %self.peer, vin = ?e.vin().and_then(|v| v.as_str().map(str::to_owned)), "hj1239 frame dropped: {e}");
                    continue;
                }
            };
            if !budget.take(Instant::now()) {
                count_frame("rate_limited");
                tracing::warn!(peer = %self.peer, "hj1239 frame rate over the limit; frame dropped");
                continue;
            }
            match self.handle(&mut state, frame).await {
                Step::Continue(out) => {
                    for o in out {
                        if out_tx.send(o).await.is_err() {
                            break;
                        }
                    }
                }
                Step::Close(out) => {
                    for o in out {
                        let _ = out_tx.send(o).await;
                    }
                    break;
                }
            }
        }
        let _ = out_tx.send(Outbound::Close).await;
        drop(out_tx);
        let _ = answerer.await;
    }

    async fn handle(&self, state: &mut State, frame: Frame) -> Step {
        let (dialect, session_vin) = match state {
            State::LoggedIn { dialect, vin, .. } => (*dialect, Some(*vin)),
            State::AwaitingLogin => (Dialect::Vehicle, None),
        };
        let layout = match self.cfg.layout.fixed() {
            Some(l) => LayoutChoice::Fixed(l),
            None => LayoutChoice::Detect { prefer: session_vin.and_then(|v| self.layouts.get(&v)) },
        };
        let message = match Message::decode(&frame, layout, dialect) {
            Ok(m) => m,
            Err(e) => {
                self.decode_error(&frame, &e, layout, dialect);
                return Step::Continue(vec![]);
            }
        };
        if let (Some(vin), Message::RealTime(r) | Message::Reissue(r)) = (session_vin, &message) {
            if let Some(previous) = self.layouts.learn(vin, r.layout()) {
                tracing::info!(peer = %self.peer, %vin, layout = r.layout().name(), previous = previous.map(BodyLayout::name), "hj1239 terminal report layout learned");
            }
        }
        match (&*state, message) {
            (_, Message::Activation(a)) => {
                // Meant for the national platform, which answers with 0x08; a local platform
                // only records that the terminal asked.
                count_frame("activation");
                tracing::info!(peer = %self.peer, vin = %frame.vin, request_vin = %crate::hj1239::Vin(a.vin), chip_id = %a.chip_id_hex(), time = ?a.time, "hj1239 activation request received (not answered: national platform's job)");
                Step::Continue(vec![])
            }
            (State::AwaitingLogin, Message::Login(_)) => self.login(state, &frame).await,
            (State::LoggedIn { vin, .. }, Message::Login(_)) => self.second_login(*vin, &frame).await,
            (State::AwaitingLogin, other) => {
                count_frame("before_login");
                tracing::warn!(peer = %self.peer, vin = ?frame.vin.as_str(), command = frame.command, "hj1239 frame before login rejected ({})", kind(&other));
                Step::Continue(vec![])
            }
            // Login upper-cases the VIN: compare the normalised form, or a lower-case terminal
            // would be locked out of every frame after its login.
            (State::LoggedIn { vin, .. }, _) if !same_vin(&frame.vin, vin) => {
                count_frame("vin_mismatch");
                tracing::warn!(peer = %self.peer, session_vin = %vin, frame_vin = ?frame.vin.as_str(), "hj1239 frame for another VIN rejected");
                Step::Continue(vec![])
            }
            (State::LoggedIn { vin, vehicle, .. }, message) => {
                let (vin, vehicle) = (*vin, vehicle.clone());
                self.logged_in(vin, &vehicle, &frame, message).await
            }
        }
    }

    async fn login(&self, state: &mut State, frame: &Frame) -> Step {
        let answer = |ok| server_time().map(|t| Outbound::Now(Answer::login(t, ok).reply_to(frame)));
        let vin = match Vin::from_bytes(&frame.vin.0) {
            Ok(v) => v,
            Err(e) => {
                metrics::counter!("smogwatch_hj1239_logins_total", "result" => "invalid_vin").increment(1);
                tracing::warn!(peer = %self.peer, vin = %hex_excerpt(&frame.vin.0), error = %e, "hj1239 login with invalid VIN refused");
                return Step::Close(answer(false).into_iter().collect());
            }
        };
        let Some(vehicle) = self.registry.get(&vin) else {
            metrics::counter!("smogwatch_hj1239_logins_total", "result" => "unregistered").increment(1);
            tracing::warn!(peer = %self.peer, %vin, "hj1239 login of unregistered VIN refused");
            return Step::Close(answer(false).into_iter().collect());
        };
        let dialect = if self.cfg.machinery_dialect && vehicle.kind == VehicleKind::NonRoadMachine {
            Dialect::Machinery
        } else {
            Dialect::Vehicle
        };
        metrics::counter!("smogwatch_hj1239_logins_total", "result" => "ok").increment(1);
        tracing::info!(peer = %self.peer, %vin, ?dialect, layout = ?self.cfg.layout, remembered_layout = ?self.layouts.get(&vin).map(BodyLayout::name), "hj1239 terminal logged in");
        *state = State::LoggedIn { vin, vehicle, dialect };
        let answer = server_time().map(|t| Answer::login(t, true).reply_to(frame));
        match self.pipeline.session_event(vin, SessionEvent::Login, now_ms()).await {
            Ok(c) => Step::Continue(vec![Outbound::WhenDurable(c, answer)]),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "pipeline closed; dropping connection");
                Step::Close(vec![])
            }
        }
    }

    /// A login on a connection that is already logged in. The same VIN logging in again (a
    /// terminal that restarted its state machine) is answered with success and changes nothing;
    /// another VIN is refused and the session stays with its first VIN: one connection never
    /// mixes two vehicles' data.
    async fn second_login(&self, vin: Vin, frame: &Frame) -> Step {
        let same = same_vin(&frame.vin, &vin);
        let result = if same { "repeated" } else { "second_vin_refused" };
        metrics::counter!("smogwatch_hj1239_logins_total", "result" => result).increment(1);
        if same {
            tracing::info!(peer = %self.peer, %vin, "hj1239 terminal logged in again on its open session");
        } else {
            tracing::warn!(peer = %self.peer, session_vin = %vin, frame_vin = %frame.vin, "hj1239 login for another VIN on an open session refused");
        }
        let answer = server_time().map(|t| Outbound::Now(Answer::login(t, same).reply_to(frame)));
        Step::Continue(answer.into_iter().collect())
    }

    async fn logged_in(&self, vin: Vin, vehicle: &Vehicle, frame: &Frame, message: Message) -> Step {
        let _ = vehicle;
        match message {
            Message::RealTime(report) => self.report(vin, frame, &report, false).await,
            Message::Reissue(report) => self.report(vin, frame, &report, true).await,
            Message::MachineryRealTime(r) | Message::MachineryReissue(r) => {
                let late = frame.command == command::REISSUE;
                let recs = records::from_machinery(vin, &r, self.cfg.gb_body_interval_ms);
                self.submit(frame, recs, late, r.time).await
            }
            Message::TamperAlarm(a) | Message::RemovalAlarm(a) => {
                count_frame("tamper_alarm");
                let event = records::tamper_alarm(frame.command, &a);
                tracing::warn!(peer = %self.peer, %vin, command = frame.command, status = a.status_byte(), serial = a.serial, position = ?a.position(), time = ?a.time, "hj1239 terminal tamper/removal alarm");
                match self.pipeline.session_event(vin, SessionEvent::TamperAlarm(event), now_ms()).await {
                    Ok(c) => Step::Continue(vec![Outbound::WhenDurable(c, None)]),
                    Err(e) => {
                        tracing::error!(peer = %self.peer, error = %e, "pipeline closed; dropping connection");
                        Step::Close(vec![])
                    }
                }
            }
            Message::Logout(_) => {
                count_frame("logout");
                tracing::info!(peer = %self.peer, %vin, "hj1239 terminal logged out");
                let answer = server_time().map(|t| Answer::logout(t).reply_to(frame));
                match self.pipeline.session_event(vin, SessionEvent::Logout, now_ms()).await {
                    Ok(c) => Step::Close(vec![Outbound::WhenDurable(c, answer)]),
                    Err(_) => Step::Close(vec![]),
                }
            }
            Message::TimeCalibration => {
                count_frame("time_calibration");
                let answer =
                    server_time().map(|t| Outbound::Now(Answer::time_calibration(t).reply_to(frame)));
                Step::Continue(answer.into_iter().collect())
            }
            Message::PlatformDefined { command, data } => {
                count_frame("platform_defined");
                tracing::debug!(peer = %self.peer, %vin, command, len = data.len(), "platform-defined frame passed through");
                Step::Continue(vec![])
            }
            Message::Login(_) | Message::Activation(_) => Step::Continue(vec![]),
        }
    }

    async fn report(&self, vin: Vin, frame: &Frame, report: &InfoReport, late: bool) -> Step {
        let recs = records::from_report(vin, report, self.cfg.gb_body_interval_ms);
        self.submit(frame, recs, late, report.time()).await
    }

    async fn submit(
        &self,
        frame: &Frame,
        recs: Vec<TelemetryRecord>,
        late: bool,
        time: TerminalTime,
    ) -> Step {
        count_frame(if late { "reissue" } else { "real_time" });
        let now = now_ms();
        let mut good = Vec::with_capacity(recs.len());
        for r in recs {
            match self.pipeline.admission().check(&r, now) {
                Ok(()) => good.push(r),
                Err(e) => {
                    metrics::counter!("smogwatch_records_rejected_total", "reason" => "hj1239_invalid")
                        .increment(1);
                    tracing::warn!(peer = %self.peer, vin = %r.vin, error = %e, "hj1239 record rejected");
                }
            }
        }
        metrics::counter!("smogwatch_records_received_total", "transport" => "hj1239")
            .increment(good.len() as u64);
        // A vehicle leased by another node sharing the store (pipeline::ownership) is not taken
        // here: no answer, so the terminal keeps the data and reissues it.
        if let Some(vin) = good.first().map(|r| r.vin) {
            if let Err(refusal) = self.pipeline.check_vehicle(vin).await {
                count_frame("vehicle_elsewhere");
                tracing::warn!(peer = %self.peer, %vin, "hj1239 report not taken: {refusal}");
                return Step::Continue(vec![]);
            }
        }
        let answer = self.cfg.answer_reports.then(|| Answer::report(frame.command, time).reply_to(frame));
        match self.pipeline.submit(good, late, now).await {
            Ok(c) => Step::Continue(vec![Outbound::WhenDurable(c, answer)]),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "pipeline closed; dropping connection");
                Step::Close(vec![])
            }
        }
    }

    /// A rejected frame is counted and logged with the layout and dialect tried, and gets no
    /// answer (see ARCHITECTURE.md: an unanswered report is kept by the terminal for reissue).
    fn decode_error(&self, frame: &Frame, e: &MessageError, layout: LayoutChoice, dialect: Dialect) {
        let kind = match e {
            MessageError::ReservedCommand { .. } => "reserved_command",
            MessageError::EncryptedFrameNoKey { .. } => "encrypted_no_key",
            _ => "undecodable",
        };
        count_frame(kind);
        tracing::warn!(peer = %self.peer, vin = ?frame.vin.as_str(), command = frame.command, layout = layout.name(), ?dialect, data = %hex_excerpt(&frame.data), "hj1239 frame rejected: {e}");
    }
}

enum Step {
    Continue(Vec<Outbound>),
    Close(Vec<Outbound>),
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Login(_) => "login",
        Message::RealTime(_) | Message::MachineryRealTime(_) => "real-time",
        Message::Reissue(_) | Message::MachineryReissue(_) => "reissue",
        Message::Logout(_) => "logout",
        Message::TimeCalibration => "time calibration",
        Message::RemovalAlarm(_) | Message::TamperAlarm(_) => "tamper alarm",
        Message::Activation(_) => "activation",
        Message::PlatformDefined { .. } => "platform-defined",
    }
}

/// Whether a frame's VIN slot names the session's vehicle, compared as login normalises it.
fn same_vin(wire: &crate::hj1239::Vin, session: &Vin) -> bool {
    Vin::from_bytes(&wire.0).is_ok_and(|v| v == *session)
}

/// The platform clock as terminal time. `None` only if the host clock is outside the 6-byte
/// range (years 2000–2255): a host misconfiguration, logged, and the answer is not sent.
fn server_time() -> Option<TerminalTime> {
    match TerminalTime::now() {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "server clock cannot be expressed as terminal time");
            None
        }
    }
}
