//! R5: terminal offline / data gaps, and terminal time jumps (rules.md).
//!
//! ## `R5.offline`: a pending-then-confirmed design (no false alarms for police)
//! A vehicle "sent data and then nothing for 30 min while not logged out". Silence is common and
//! mostly innocent: tunnels, mountain valleys and basements are blind spots, and the terminal
//! buffers its data and sends it as reissue (0x03) when the link is back. rules.md: a gap later
//! filled by reissue closes *without* a violation. Alerting at 30 min and withdrawing later would
//! put many alarms in front of police that are then taken back, so a silence is only **pending**
//! until it is confirmed:
//!
//! 1. **Pending** ([`OfflineDetector::tick`]): server clock `now` − last sign of life
//!    (record, login) > `offline_after_s` (30 min, policy default) and the vehicle is not logged
//!    out. Nothing is emitted. The gap starts at the last live record's time (`started_ms`).
//! 2. **Resumed** (a live record, or a logout, arrives): the gap's end is that record's time.
//!    Reissued data reported through [`OfflineDetector::on_reissue_covering`] fills the gap, and
//!    a gap is **filled** when no hole longer than `offline_after_s` remains in it. A filled gap is
//!    dropped silently.
//! 3. **Confirmed** (at a tick `reissue_grace_s` (2 h, our policy default) after the vehicle came
//!    back, the gap still not filled): the violation is emitted `Open` then `Closed` at once, with
//!    the same id. It is an offline episode that nothing explained.
//! 4. **Still silent**: a vehicle silent for `alert_silent_after_s` (4 h, our policy default) is
//!    reported `Open` while still silent (a terminal unplugged for good must not stay invisible);
//!    its next live record closes it (`Closed`). If reissue later fills that gap, a last `Closed`
//!    snapshot with evidence `"withdrawn": true, "reason": "gap filled by reissue"` replaces it
//!    (same id): the store keeps the row, and the lead filters withdrawn ones from police views.
//!    Setting `alert_silent_after_s = offline_after_s` gives the "alert at 30 min" behaviour.
//!
//! A record is *live* (a sign that the link is back, able to end a gap) when it was received
//! within `offline_after_s` of its own time; older records are buffered data (reissue, replays)
//! and only refresh the sign of life. Any live record also clears "logged out" (the gateway
//! accepts data only after a login). Up to four gaps are tracked at once; if a fifth begins, the
//! oldest resumed one is confirmed early. Reissue coverage keeps at most eight disjoint intervals
//! per gap (coverage merges intervals less than `offline_after_s` apart, so only badly scrambled
//! reissue gets there); intervals beyond are ignored, which can only confirm, never hide, a gap.
//!
//! ## `R5.time_jump`
//! Record time more than `time_jump_ahead_s` (10 min, rules.md) ahead of the server receive time:
//! one violation per episode, opened on the first such record, closed on the next live record
//! that is not ahead. Nothing is clamped. `started_ms` is the **server** time of the first jumped
//! record (the terminal's own time is wrong by definition); the id is derived from the first
//! jumped record's **terminal** time, which is what a resubmission of that record repeats.
use super::episode::{skeleton, th, track, Stats, POLICY_DEFAULT};
use super::window::sample_duration_ms;
use super::{Detector, Observation};
use crate::model::{Fix, Measured, TimestampMs, Vehicle, Vin, Violation, ViolationId, ViolationStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const RULE: &str = "R5";
pub const RULE_OFFLINE: &str = "R5.offline";
pub const RULE_TIME_JUMP: &str = "R5.time_jump";

const MAX_GAPS: usize = 4;
const MAX_INTERVALS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OfflineConfig {
    /// Silence that makes a gap (rules.md, policy default).
    pub offline_after_s: u32,
    /// How long after the vehicle's return reissue may still fill the gap before it is confirmed.
    pub reissue_grace_s: u32,
    /// Silence after which a still-silent vehicle is reported without waiting for its return.
    pub alert_silent_after_s: u32,
    /// Terminal time this far ahead of the server is a time jump (rules.md, policy default).
    pub time_jump_ahead_s: u32,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            offline_after_s: 1800,
            reissue_grace_s: 7200,
            alert_silent_after_s: 14_400,
            time_jump_ahead_s: 600,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfflineState {
    /// Where the next gap starts: the newest live record time (terminal clock) or the last login.
    last_record_ms: Option<TimestampMs>,
    /// Server time of the last sign of life (record of any kind, login, logout).
    last_seen_ms: Option<TimestampMs>,
    logged_out: bool,
    last_fix: Option<Fix>,
    last_engine_running: Option<bool>,
    /// Pending, resumed or reported gaps; empty while the vehicle reports normally.
    gaps: Vec<Gap>,
    jump: Option<Jump>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Gap {
    /// Last live record before the silence (or the login, if none): the episode start.
    from_ms: TimestampMs,
    /// Server time of the last sign of life before the silence.
    silent_since_ms: TimestampMs,
    /// First live record after the silence (terminal clock); `None` while still silent.
    to_ms: Option<TimestampMs>,
    /// Server time of the return.
    resumed_at_ms: Option<TimestampMs>,
    /// An `Open` snapshot was emitted.
    reported: bool,
    /// A `Closed` snapshot was emitted.
    closed: bool,
    fix: Option<Fix>,
    engine_running: Option<bool>,
    /// Reissued intervals inside the gap, sorted and merged.
    covered: Vec<(TimestampMs, TimestampMs)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Jump {
    first_record_ms: TimestampMs,
    started_ms: TimestampMs,
    last_record_ms: TimestampMs,
    last_rx_ms: TimestampMs,
    /// Seconds ahead of the server clock.
    ahead_s: Stats,
}

/// Why a gap snapshot is emitted; decides its evidence.
#[derive(Clone, Copy, PartialEq)]
enum GapNote {
    StillSilent,
    Returned,
    Confirmed,
    Withdrawn,
}

pub struct OfflineDetector {
    cfg: OfflineConfig,
}

impl OfflineDetector {
    pub fn new(cfg: OfflineConfig) -> Self {
        OfflineDetector { cfg }
    }

    fn offline_ms(&self) -> i64 {
        i64::from(self.cfg.offline_after_s) * 1000
    }

    /// No hole longer than `offline_after_s` is left between the gap's start and end.
    fn filled(&self, g: &Gap) -> bool {
        let Some(to) = g.to_ms else { return false };
        let tol = self.offline_ms();
        let mut cursor = g.from_ms;
        for &(a, b) in &g.covered {
            if a.saturating_sub(cursor) > tol {
                return false;
            }
            cursor = cursor.max(b);
        }
        to.saturating_sub(cursor) <= tol
    }

    fn cover(&self, g: &mut Gap, from_ms: TimestampMs, to_ms: TimestampMs) {
        let (a, b) = (from_ms.max(g.from_ms), to_ms.min(g.to_ms.unwrap_or(i64::MAX)));
        if a > b {
            return;
        }
        let tol = self.offline_ms();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(g.covered.len() + 1);
        let mut all = g.covered.clone();
        all.push((a, b));
        all.sort_unstable();
        for (x, y) in all {
            match merged.last_mut() {
                Some(last) if x.saturating_sub(last.1) <= tol => last.1 = last.1.max(y),
                _ => merged.push((x, y)),
            }
        }
        if merged.len() <= MAX_INTERVALS {
            g.covered = merged;
        }
    }

    fn gap_violation(
        &self,
        g: &Gap,
        vin: Vin,
        vehicle: &Vehicle,
        status: ViolationStatus,
        note: GapNote,
    ) -> Violation {
        let mut v = skeleton(RULE_OFFLINE, "", vin, vehicle, g.from_ms, status);
        let closed = status == ViolationStatus::Closed;
        v.ended_ms = if closed { g.to_ms } else { None };
        v.position = g.fix;
        let gap_s = g.to_ms.map(|to| (to.saturating_sub(g.from_ms)) as f64 / 1000.0);
        v.measured = gap_s.map(|s| Measured { min: s, max: s, mean: s, samples: 1, seconds: s });
        v.summary = match (note, gap_s) {
            (GapNote::Withdrawn, _) => {
                "terminal offline: withdrawn, the gap was filled by reissued data".into()
            }
            (GapNote::StillSilent, _) => format!(
                "terminal silent for more than {} s while not logged out (still offline)",
                self.cfg.alert_silent_after_s
            ),
            (_, Some(s)) => {
                format!("terminal offline for {s:.0} s while not logged out; no reissue filled the gap")
            }
            (_, None) => "terminal offline while not logged out".into(),
        };
        v.thresholds = json!({
            "offline_after_s": th(f64::from(self.cfg.offline_after_s), POLICY_DEFAULT),
            "reissue_grace_s": th(f64::from(self.cfg.reissue_grace_s), POLICY_DEFAULT),
            "alert_silent_after_s": th(f64::from(self.cfg.alert_silent_after_s), POLICY_DEFAULT),
        });
        let mut evidence = json!({
            "gap_from_ms": g.from_ms,
            "gap_to_ms": g.to_ms,
            "window_start_ms": g.from_ms,
            "window_end_ms": g.to_ms,
            "silent_since_server_ms": g.silent_since_ms,
            "resumed_at_server_ms": g.resumed_at_ms,
            "engine_running_at_last_record": g.engine_running,
            "reissue_covered": g.covered,
            "withdrawn": note == GapNote::Withdrawn,
            "track": track(&vin, g.from_ms, g.to_ms.unwrap_or(g.from_ms)),
        });
        if let (GapNote::Withdrawn, Some(o)) = (note, evidence.as_object_mut()) {
            o.insert("reason".into(), json!("gap filled by reissue"));
        }
        if let (GapNote::Confirmed, Some(o)) = (note, evidence.as_object_mut()) {
            o.insert(
                "confirmed".into(),
                json!("no reissue filled the gap within reissue_grace_s of the return"),
            );
        }
        v.evidence = evidence;
        v
    }

    /// A resumed gap whose grace is over (or that must make room): confirm it unless filled.
    fn finalize(&self, g: &Gap, vin: Option<Vin>, vehicle: &Vehicle, out: &mut Vec<Violation>) {
        let Some(vin) = vin else { return };
        if self.filled(g) {
            if g.reported {
                out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Closed, GapNote::Withdrawn));
            }
            return;
        }
        if !g.reported {
            out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Open, GapNote::Confirmed));
        }
        if !g.closed {
            out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Closed, GapNote::Confirmed));
        }
    }

    /// Ends the silent gap (if any) at `to_ms`: emits `Closed` if it was reported; drops it if
    /// reissue already filled it.
    fn resume(
        &self,
        st: &mut OfflineState,
        to_ms: TimestampMs,
        rx_ms: TimestampMs,
        vin: Option<Vin>,
        vehicle: &Vehicle,
        out: &mut Vec<Violation>,
    ) {
        let Some(i) = st.gaps.iter().position(|g| g.to_ms.is_none()) else { return };
        let Some(g) = st.gaps.get_mut(i) else { return };
        g.to_ms = Some(to_ms.max(g.from_ms));
        g.resumed_at_ms = Some(rx_ms);
        g.covered.retain(|iv| iv.0 <= to_ms);
        if self.filled(g) {
            let g = st.gaps.remove(i);
            if let (true, Some(vin)) = (g.reported, vin) {
                out.push(self.gap_violation(&g, vin, vehicle, ViolationStatus::Closed, GapNote::Withdrawn));
            }
            return;
        }
        if let (true, false, Some(vin)) = (g.reported, g.closed, vin) {
            g.closed = true;
            out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Closed, GapNote::Returned));
        }
    }

    /// Time-driven part, called periodically by the pipeline with the server clock.
    pub fn tick(
        &self,
        st: &mut OfflineState,
        vehicle: &Vehicle,
        now_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        let Some(vin) = vehicle.vin else { return };
        let silent_gap = st.gaps.iter().any(|g| g.to_ms.is_none());
        if let (false, false, Some(seen)) = (st.logged_out, silent_gap, st.last_seen_ms) {
            if now_ms.saturating_sub(seen) > self.offline_ms() {
                if st.gaps.len() >= MAX_GAPS {
                    if let Some(i) = st.gaps.iter().position(|g| g.to_ms.is_some()) {
                        let g = st.gaps.remove(i);
                        self.finalize(&g, Some(vin), vehicle, out);
                    }
                }
                st.gaps.push(Gap {
                    from_ms: st.last_record_ms.unwrap_or(seen),
                    silent_since_ms: seen,
                    to_ms: None,
                    resumed_at_ms: None,
                    reported: false,
                    closed: false,
                    fix: st.last_fix,
                    engine_running: st.last_engine_running,
                    covered: Vec::new(),
                });
            }
        }
        let alert_ms = i64::from(self.cfg.alert_silent_after_s) * 1000;
        for g in st.gaps.iter_mut().filter(|g| g.to_ms.is_none() && !g.reported) {
            if now_ms.saturating_sub(g.silent_since_ms) >= alert_ms {
                g.reported = true;
                out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Open, GapNote::StillSilent));
            }
        }
        let grace_ms = i64::from(self.cfg.reissue_grace_s) * 1000;
        let (done, keep): (Vec<Gap>, Vec<Gap>) = std::mem::take(&mut st.gaps)
            .into_iter()
            .partition(|g| g.resumed_at_ms.is_some_and(|r| now_ms.saturating_sub(r) >= grace_ms));
        st.gaps = keep;
        for g in &done {
            self.finalize(g, Some(vin), vehicle, out);
        }
    }

    /// The terminal logged in (server time): it is no longer logged out, and the silence clock
    /// restarts ("logged in and then sent nothing for 30 min" is offline).
    pub fn on_login(&self, st: &mut OfflineState, received_ms: TimestampMs) {
        st.logged_out = false;
        st.last_seen_ms = Some(received_ms.max(st.last_seen_ms.unwrap_or(i64::MIN)));
        // A gap after this login starts at the login, not at the record before the last logout.
        st.last_record_ms = Some(received_ms.max(st.last_record_ms.unwrap_or(i64::MIN)));
    }

    /// The terminal logged out (server time): silence from now on is not a gap. A logout after a
    /// silence is also a return (the terminal had to reconnect to send it), so it ends that gap.
    pub fn on_logout(
        &self,
        st: &mut OfflineState,
        vehicle: &Vehicle,
        received_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        st.logged_out = true;
        st.last_seen_ms = Some(received_ms.max(st.last_seen_ms.unwrap_or(i64::MIN)));
        self.resume(st, received_ms, received_ms, vehicle.vin, vehicle, out);
    }

    /// Reissued (0x03) data covering `[from_ms, to_ms]` (terminal clock) arrived. Gaps it fills are
    /// dropped; one already reported gets a final `Closed` snapshot marked withdrawn.
    pub fn on_reissue_covering(
        &self,
        st: &mut OfflineState,
        vehicle: &Vehicle,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        out: &mut Vec<Violation>,
    ) {
        if from_ms > to_ms {
            return;
        }
        let tol = self.offline_ms();
        for g in st.gaps.iter_mut() {
            let end = g.to_ms.unwrap_or(i64::MAX);
            if to_ms.saturating_add(tol) >= g.from_ms && from_ms.saturating_sub(tol) <= end {
                self.cover(g, from_ms, to_ms);
            }
        }
        let (filled, keep): (Vec<Gap>, Vec<Gap>) =
            std::mem::take(&mut st.gaps).into_iter().partition(|g| self.filled(g));
        st.gaps = keep;
        if let Some(vin) = vehicle.vin {
            for g in filled.iter().filter(|g| g.reported) {
                out.push(self.gap_violation(g, vin, vehicle, ViolationStatus::Closed, GapNote::Withdrawn));
            }
        }
    }

    fn jump_violation(&self, j: &Jump, obs: &Observation<'_>, status: ViolationStatus) -> Violation {
        let vin = obs.record.vin;
        let mut v = skeleton(RULE_TIME_JUMP, "", vin, obs.vehicle, j.started_ms, status);
        v.id = ViolationId::derive(&vin, RULE_TIME_JUMP, "terminal_time", j.first_record_ms);
        v.ended_ms = (status == ViolationStatus::Closed).then_some(j.last_rx_ms);
        v.position = obs.record.valid_fix();
        let measured = j.ahead_s.measured();
        v.summary = format!(
            "terminal clock up to {:.0} s ahead of the server (more than {} s)",
            measured.map_or(0.0, |m| m.max),
            self.cfg.time_jump_ahead_s
        );
        v.thresholds = json!({ "max_ahead_s": th(f64::from(self.cfg.time_jump_ahead_s), POLICY_DEFAULT) });
        v.measured = measured;
        v.evidence = json!({
            "quantity": "terminal_time_ahead_s",
            "first_record_terminal_ms": j.first_record_ms,
            "last_record_terminal_ms": j.last_record_ms,
            "first_received_ms": j.started_ms,
            "last_received_ms": j.last_rx_ms,
            "window_start_ms": j.started_ms,
            "window_end_ms": j.last_rx_ms,
            "clamped": false,
            "track": track(&vin, j.first_record_ms, j.last_record_ms),
        });
        v
    }
}

impl Detector for OfflineDetector {
    type State = OfflineState;

    fn rule(&self) -> &'static str {
        RULE
    }

    fn update(&self, st: &mut OfflineState, obs: &Observation<'_>, out: &mut Vec<Violation>) {
        let (t, rx) = (obs.record.time_ms, obs.received_ms);
        st.last_seen_ms = Some(rx.max(st.last_seen_ms.unwrap_or(i64::MIN)));
        let live = rx.saturating_sub(t) <= self.offline_ms();

        let ahead_ms = t.saturating_sub(rx);
        if ahead_ms > i64::from(self.cfg.time_jump_ahead_s) * 1000 {
            let new = st.jump.is_none();
            let j = st.jump.get_or_insert(Jump {
                first_record_ms: t,
                started_ms: rx,
                last_record_ms: t,
                last_rx_ms: rx,
                ahead_s: Stats::default(),
            });
            let dt = if new {
                sample_duration_ms(None, rx, 10_000)
            } else {
                sample_duration_ms(Some(j.last_rx_ms), rx, 10_000)
            };
            j.last_record_ms = j.last_record_ms.max(t);
            j.last_rx_ms = j.last_rx_ms.max(rx);
            j.ahead_s.add(ahead_ms as f64 / 1000.0, dt);
            if new {
                out.push(self.jump_violation(j, obs, ViolationStatus::Open));
            }
        } else if live {
            if let Some(j) = st.jump.take() {
                out.push(self.jump_violation(&j, obs, ViolationStatus::Closed));
            }
        }

        if !live {
            return;
        }
        st.logged_out = false;
        st.last_record_ms = Some(t.max(st.last_record_ms.unwrap_or(i64::MIN)));
        st.last_fix = obs.record.valid_fix().or(st.last_fix);
        let running = obs.record.engine.as_ref().and_then(|e| e.engine_running());
        st.last_engine_running = running.or(st.last_engine_running);
        self.resume(st, t, rx, Some(obs.record.vin), obs.vehicle, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::detect::VehicleState;
    use crate::model::{EmissionStage, EngineData, TelemetryRecord};

    const GRACE_S: i64 = 7200;

    /// Drives the detector like the pipeline would; optionally round-trips the persisted state
    /// before every step, as a restart between any two commits would.
    struct Sim {
        d: OfflineDetector,
        st: VehicleState,
        v: Vehicle,
        out: Vec<Violation>,
        roundtrip: bool,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                d: OfflineDetector::new(OfflineConfig::default()),
                st: VehicleState::default(),
                v: truck(EmissionStage::ChinaV),
                out: Vec::new(),
                roundtrip: false,
            }
        }

        fn restart(&mut self) {
            if self.roundtrip {
                self.st = VehicleState::decode(&self.st.encode()).unwrap_or_else(|e| panic!("{e}"));
            }
        }

        /// A record collected at `t_s` and received at `rx_s` (seconds after T0).
        fn rec_rx(&mut self, t_s: i64, rx_s: i64) {
            self.restart();
            let r: TelemetryRecord = record(T0 + t_s * 1000, EngineData::default());
            let obs = Observation { vehicle: &self.v, record: &r, received_ms: T0 + rx_s * 1000 };
            self.d.update(&mut self.st.offline, &obs, &mut self.out);
        }

        /// Live records every 10 s in `[from_s, to_s)`.
        fn live(&mut self, from_s: i64, to_s: i64) {
            for s in (from_s..to_s).step_by(10) {
                self.rec_rx(s, s);
            }
        }

        /// Ticks every minute in `[from_s, to_s)`.
        fn ticks(&mut self, from_s: i64, to_s: i64) {
            for s in (from_s..to_s).step_by(60) {
                self.restart();
                self.d.tick(&mut self.st.offline, &self.v, T0 + s * 1000, &mut self.out);
            }
        }

        fn reissue(&mut self, from_s: i64, to_s: i64) {
            self.restart();
            self.d.on_reissue_covering(
                &mut self.st.offline,
                &self.v,
                T0 + from_s * 1000,
                T0 + to_s * 1000,
                &mut self.out,
            );
        }

        fn statuses(&self) -> Vec<(&str, ViolationStatus)> {
            self.out.iter().map(|v| (v.rule.as_str(), v.status)).collect()
        }
    }

    /// 10 min of data, 1 h of silence, back at 70 min, data for 10 min, ticks all along.
    fn hour_gap(sim: &mut Sim) {
        sim.live(0, 600);
        sim.ticks(600, 4200);
        sim.live(4200, 4800);
    }

    #[test]
    fn unexplained_gap_is_confirmed_once() {
        for roundtrip in [false, true] {
            let mut sim = Sim { roundtrip, ..Sim::new() };
            hour_gap(&mut sim);
            assert!(sim.out.is_empty(), "pending, not reported: {:#?}", sim.out);
            sim.ticks(4800, 4200 + GRACE_S + 3600);
            assert_eq!(
                sim.statuses(),
                [(RULE_OFFLINE, ViolationStatus::Open), (RULE_OFFLINE, ViolationStatus::Closed)]
            );
            let (o, c) = (&sim.out[0], &sim.out[1]);
            assert_eq!(o.id, c.id);
            assert_eq!(c.started_ms, T0 + 590_000);
            assert_eq!(c.ended_ms, Some(T0 + 4_200_000));
            assert_eq!(c.measured.map(|m| m.seconds), Some(3610.0));
            assert_eq!(c.evidence["withdrawn"], false);
            assert_eq!(c.thresholds["offline_after_s"]["source"], POLICY_DEFAULT);
        }
    }

    #[test]
    fn gap_filled_by_reissue_never_becomes_a_violation() {
        let mut sim = Sim::new();
        hour_gap(&mut sim);
        // Reissue arrives in two pieces with a 20 min hole: no hole over 30 min remains.
        sim.reissue(600, 1800);
        sim.reissue(3000, 4190);
        sim.ticks(4800, 4200 + GRACE_S + 3600);
        assert!(sim.out.is_empty(), "{:#?}", sim.out);
        // Only the silence after the last record (from 4790 s) is pending.
        assert!(sim.st.offline.gaps.iter().all(|g| g.from_ms == T0 + 4_790_000));
    }

    #[test]
    fn partly_filled_gap_is_confirmed() {
        let mut sim = Sim::new();
        hour_gap(&mut sim);
        sim.reissue(600, 1200); // 50 min hole left
        sim.ticks(4800, 4200 + GRACE_S + 60);
        assert_eq!(
            sim.statuses(),
            [(RULE_OFFLINE, ViolationStatus::Open), (RULE_OFFLINE, ViolationStatus::Closed)]
        );
        assert_eq!(sim.out[1].evidence["reissue_covered"][0][1], T0 + 1_200_000);
    }

    #[test]
    fn reissue_before_the_return_fills_the_gap() {
        let mut sim = Sim::new();
        sim.live(0, 600);
        sim.ticks(600, 4200);
        sim.reissue(600, 4150);
        sim.live(4200, 4800);
        sim.ticks(4800, 4200 + GRACE_S + 3600);
        assert!(sim.out.is_empty(), "{:#?}", sim.out);
    }

    #[test]
    fn borderline_silence_is_not_a_gap() {
        let mut sim = Sim::new();
        sim.live(0, 10);
        // Exactly 30 min of silence with a tick at the very end, then data.
        sim.ticks(60, 1801);
        sim.live(1800, 2400);
        sim.ticks(2400, 2400 + GRACE_S + 3600);
        assert!(sim.out.is_empty(), "{:#?}", sim.out);
        assert!(sim.st.offline.gaps.iter().all(|g| g.from_ms == T0 + 2_390_000));
    }

    #[test]
    fn long_silence_is_reported_then_withdrawn_when_filled() {
        let mut sim = Sim::new();
        sim.live(0, 600);
        sim.ticks(600, 18_000);
        // Silent since 590 s: reported at the first tick ≥ 590 + 4 h.
        assert_eq!(sim.statuses(), [(RULE_OFFLINE, ViolationStatus::Open)]);
        assert_eq!(sim.out[0].ended_ms, None);
        assert_eq!(sim.out[0].started_ms, T0 + 590_000);
        sim.live(18_000, 18_600);
        assert_eq!(sim.statuses()[1], (RULE_OFFLINE, ViolationStatus::Closed));
        assert_eq!(sim.out[1].ended_ms, Some(T0 + 18_000_000));
        sim.reissue(600, 17_990);
        assert_eq!(sim.out.len(), 3);
        let w = &sim.out[2];
        assert_eq!(w.status, ViolationStatus::Closed);
        assert_eq!(w.evidence["withdrawn"], true);
        assert_eq!(w.evidence["reason"], "gap filled by reissue");
        assert!(sim.out.iter().all(|v| v.id == w.id));
        sim.ticks(18_600, 18_000 + GRACE_S + 600);
        assert_eq!(sim.out.len(), 3);
    }

    #[test]
    fn long_silence_not_filled_stays_a_violation() {
        let mut sim = Sim { roundtrip: true, ..Sim::new() };
        sim.live(0, 600);
        sim.ticks(600, 18_000);
        sim.live(18_000, 18_600);
        sim.ticks(18_600, 18_000 + GRACE_S + 600);
        assert_eq!(
            sim.statuses(),
            [(RULE_OFFLINE, ViolationStatus::Open), (RULE_OFFLINE, ViolationStatus::Closed)]
        );
        assert_eq!(sim.out[0].id, sim.out[1].id);
    }

    #[test]
    fn logged_out_vehicle_is_never_offline() {
        let mut sim = Sim::new();
        sim.live(0, 600);
        sim.d.on_logout(&mut sim.st.offline, &sim.v, T0 + 600_000, &mut sim.out);
        sim.ticks(600, 36_000);
        assert!(sim.out.is_empty());
        // Logged in again and silent for an hour: a gap from the login, not from before the logout.
        sim.d.on_login(&mut sim.st.offline, T0 + 36_000_000);
        sim.ticks(36_000, 39_600);
        sim.live(39_600, 40_000);
        sim.ticks(40_000, 39_600 + GRACE_S + 60);
        assert_eq!(
            sim.statuses(),
            [(RULE_OFFLINE, ViolationStatus::Open), (RULE_OFFLINE, ViolationStatus::Closed)]
        );
        assert_eq!(sim.out[0].started_ms, T0 + 36_000_000);
    }

    #[test]
    fn buffered_records_do_not_end_a_gap() {
        let mut sim = Sim::new();
        sim.live(0, 600);
        sim.ticks(600, 4200);
        // Records from inside the gap, received an hour later: signs of life, not a return.
        sim.rec_rx(1000, 4200);
        sim.rec_rx(1010, 4201);
        assert!(sim.st.offline.gaps.iter().all(|g| g.to_ms.is_none()));
        sim.ticks(4260, 4200 + GRACE_S + 60);
        // No return yet: nothing to confirm.
        assert!(sim.out.is_empty(), "{:#?}", sim.out);
        // Still no live data 4 h after the silence began: reported as still offline.
        sim.ticks(4200 + GRACE_S + 60, 15_060);
        assert_eq!(sim.statuses(), [(RULE_OFFLINE, ViolationStatus::Open)]);
    }

    #[test]
    fn unseen_or_vinless_vehicles_never_tick_into_violations() {
        let mut sim = Sim::new();
        sim.ticks(0, 36_000);
        assert!(sim.out.is_empty());
        let mut sim = Sim::new();
        sim.v.vin = None;
        sim.live(0, 600);
        sim.ticks(600, 36_000);
        assert!(sim.out.is_empty());
    }

    #[test]
    fn time_jump_one_violation_per_episode() {
        let mut sim = Sim { roundtrip: true, ..Sim::new() };
        // 60 s of records stamped 11 min ahead, then a correct clock.
        for s in 0..60 {
            sim.rec_rx(s + 660, s);
        }
        sim.live(60, 120);
        for s in 200..210 {
            sim.rec_rx(s + 3600, s);
        }
        sim.live(210, 220);
        assert_eq!(
            sim.statuses(),
            [
                (RULE_TIME_JUMP, ViolationStatus::Open),
                (RULE_TIME_JUMP, ViolationStatus::Closed),
                (RULE_TIME_JUMP, ViolationStatus::Open),
                (RULE_TIME_JUMP, ViolationStatus::Closed)
            ]
        );
        let (o, c) = (&sim.out[0], &sim.out[1]);
        assert_eq!(o.id, c.id);
        assert_ne!(c.id, sim.out[2].id);
        assert_eq!(c.started_ms, T0);
        assert_eq!(c.ended_ms, Some(T0 + 59_000));
        assert_eq!(c.measured.map(|m| (m.min, m.max)), Some((660.0, 660.0)));
        assert_eq!(c.evidence["first_record_terminal_ms"], T0 + 660_000);
        assert_eq!(c.id, ViolationId::derive(&vin(), RULE_TIME_JUMP, "terminal_time", T0 + 660_000));
    }

    #[test]
    fn time_jump_borderline_and_late_data() {
        let mut sim = Sim::new();
        // Exactly 10 min ahead is not more than 10 min.
        for s in 0..60 {
            sim.rec_rx(s + 600, s);
        }
        assert!(sim.out.is_empty());
        // An open jump episode is not closed by buffered (late) records.
        sim.rec_rx(700 + 700, 700);
        sim.rec_rx(10, 7200);
        assert_eq!(sim.statuses(), [(RULE_TIME_JUMP, ViolationStatus::Open)]);
    }
}
