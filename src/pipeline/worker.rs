//! A worker owns the detector state of the vehicles hashed to its shard. It evaluates records in
//! the order they were submitted, then hands records, violations and new state to the committer.
use super::committer::CommitItem;
use super::{late, Admission, Outcome, PipelineConfig, PipelineError, SessionEvent, WorkItem};
use crate::detect::{DetectorSet, Observation, VehicleState};
use crate::model::{TelemetryRecord, Vin};
use crate::registry::Registry;
use crate::store::{CommitBatch, Store, ViolationWrite};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) struct Worker {
    shard: usize,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    detectors: Arc<DetectorSet>,
    commit_tx: mpsc::Sender<CommitItem>,
    invalidations: Arc<Vec<Mutex<Vec<Vin>>>>,
    states: HashMap<Vin, VehicleState>,
    late_context_ms: i64,
    tick_interval: std::time::Duration,
    admission: Admission,
    /// Per shard, the newest ticket whose commit has returned (set by the committer).
    committed: Arc<Vec<AtomicU64>>,
    next_ticket: u64,
    /// Records handed to the committer whose commit has not returned yet, by ticket: a resend
    /// of one of them is a duplicate although the store does not have it yet.
    in_flight: VecDeque<(u64, Vec<(Vin, i64)>)>,
    in_flight_keys: HashSet<(Vin, i64)>,
}

impl Worker {
    pub fn new(
        shard: usize,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        detectors: Arc<DetectorSet>,
        commit_tx: mpsc::Sender<CommitItem>,
        invalidations: Arc<Vec<Mutex<Vec<Vin>>>>,
        cfg: &PipelineConfig,
    ) -> Self {
        Worker {
            shard,
            store,
            registry,
            detectors,
            commit_tx,
            invalidations,
            states: HashMap::new(),
            late_context_ms: i64::from(cfg.late_context_s) * 1000,
            tick_interval: std::time::Duration::from_secs(cfg.tick_interval_s.max(1)),
            admission: Admission::default(),
            committed: Arc::new(Vec::new()),
            next_ticket: 0,
            in_flight: VecDeque::new(),
            in_flight_keys: HashSet::new(),
        }
    }

    /// Where the committer marks the commits that returned (see `in_flight`).
    pub fn with_commit_marks(mut self, committed: Arc<Vec<AtomicU64>>) -> Self {
        self.committed = committed;
        self
    }

    /// A ticket for the next commit item, remembering its records as in flight.
    fn ticket(&mut self, batch: &CommitBatch) -> u64 {
        self.next_ticket += 1;
        if !batch.records.is_empty() && !self.committed.is_empty() {
            let keys: Vec<(Vin, i64)> = batch.records.iter().map(|r| (r.vin, r.time_ms)).collect();
            self.in_flight_keys.extend(keys.iter().copied());
            self.in_flight.push_back((self.next_ticket, keys));
        }
        self.next_ticket
    }

    /// Forgets the in-flight records of commits that have returned.
    fn forget_committed(&mut self) {
        let done = self.committed.get(self.shard).map_or(u64::MAX, |c| c.load(Ordering::Acquire));
        while self.in_flight.front().is_some_and(|(t, _)| *t <= done) {
            if let Some((_, keys)) = self.in_flight.pop_front() {
                for k in keys {
                    self.in_flight_keys.remove(&k);
                }
            }
        }
    }

    /// The edge checks in force (the worker needs the clock tolerance).
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<WorkItem>) {
        let mut tick = tokio::time::interval(self.tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; nothing to do at start
        loop {
            let item = tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
                _ = tick.tick() => {
                    self.apply_invalidations();
                    if let Some(commit) = self.tick() {
                        if self.commit_tx.send(commit).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            };
            self.apply_invalidations();
            self.forget_committed();
            let (result, done, permit) = match item {
                WorkItem::Records { records, late, received_ms, done, permit } => {
                    (self.process(records, late, received_ms).await, done, Some(permit))
                }
                WorkItem::Session { vin, event, received_ms, done } => {
                    (self.session_event(vin, event, received_ms).await, done, None)
                }
            };
            match result {
                Ok((mut batch, vins, outcome)) => {
                    self.place(&mut batch);
                    let ticket = self.ticket(&batch);
                    let item = CommitItem {
                        batch,
                        shard: self.shard,
                        vins,
                        outcome,
                        done: Some(done),
                        permit,
                        ticket,
                    };
                    if self.commit_tx.send(item).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            }
        }
    }

    /// Time-driven rules over every vehicle of the shard. Only states that changed are written.
    fn tick(&mut self) -> Option<CommitItem> {
        let now = crate::model::now_ms();
        let mut batch = CommitBatch::default();
        let mut vins = Vec::new();
        let mut found = Vec::new();
        for (vin, state) in self.states.iter_mut() {
            let Some(vehicle) = self.registry.get(vin) else { continue };
            let before = state.encode();
            self.detectors.tick(state, &vehicle, now, &mut found);
            let after = state.encode();
            if after != before {
                batch.states.push((*vin, after));
                vins.push(*vin);
            }
        }
        batch.violations.extend(found.into_iter().map(ViolationWrite::Upsert));
        self.place(&mut batch);
        if batch.is_empty() {
            return None;
        }
        let ticket = self.ticket(&batch);
        Some(CommitItem {
            batch,
            shard: self.shard,
            vins,
            outcome: Outcome::default(),
            done: None,
            permit: None,
            ticket,
        })
    }

    async fn session_event(
        &mut self,
        vin: Vin,
        event: SessionEvent,
        received_ms: i64,
    ) -> Result<(CommitBatch, Vec<Vin>, Outcome), PipelineError> {
        self.ensure_state(vin).await?;
        let mut batch = CommitBatch::default();
        let (Some(state), Some(vehicle)) = (self.states.get_mut(&vin), self.registry.get(&vin)) else {
            return Ok((batch, Vec::new(), Outcome::default()));
        };
        let mut found = Vec::new();
        match event {
            SessionEvent::Login => self.detectors.on_login(state, received_ms),
            SessionEvent::Logout => self.detectors.on_logout(state, &vehicle, received_ms, &mut found),
            SessionEvent::TamperAlarm(alarm) => found
                .extend(crate::detect::tamper::removal_alarm_violations(vin, &vehicle, &alarm, received_ms)),
        }
        batch.violations.extend(found.into_iter().map(ViolationWrite::Upsert));
        batch.states.push((vin, state.encode()));
        Ok((batch, vec![vin], Outcome::default()))
    }

    /// Police jurisdiction follows the position, not the vehicle's home city
    /// (`geofence::jurisdiction`); violations without a covered position keep the home city.
    fn place(&self, batch: &mut CommitBatch) {
        if batch.violations.is_empty() {
            return;
        }
        let zones = self.detectors.zone_registry().load();
        for w in &mut batch.violations {
            let (ViolationWrite::Upsert(v) | ViolationWrite::InsertIfAbsent(v)) = w;
            crate::geofence::jurisdiction::place(&zones, v);
        }
    }

    fn apply_invalidations(&mut self) {
        let Some(q) = self.invalidations.get(self.shard) else { return };
        let vins = std::mem::take(&mut *q.lock());
        for vin in vins {
            self.states.remove(&vin);
        }
    }

    /// Same-time records with different values: counted, logged and flagged on the vehicle
    /// (a data-quality document, not a violation: a clock fault is not an emission offence).
    async fn flag_clock_fault(
        &self,
        vin: Vin,
        conflicts: u32,
        at_ms: i64,
        received_ms: i64,
    ) -> Result<(), PipelineError> {
        metrics::counter!("smogwatch_records_conflicting_total").increment(u64::from(conflicts));
        tracing::warn!(%vin, conflicts, last_conflict_ms = at_ms, "records resent for a time already held, with different values: first kept (terminal clock fault?)");
        let flag = serde_json::json!({
            "vin": vin.as_str(),
            "clock_fault": true,
            "conflicting_records_last_batch": conflicts,
            "last_conflict_record_ms": at_ms,
            "flagged_ms": received_ms,
        });
        self.store
            .put_documents(super::DATA_QUALITY_DOC, vec![(vin.to_string(), flag.to_string().into_bytes())])
            .await
            .map_err(|e| PipelineError::Store(e.to_string()))
    }

    /// Loads a vehicle's state on first sight (it may have been persisted by this node before a
    /// restart, or by another node).
    async fn ensure_state(&mut self, vin: Vin) -> Result<(), PipelineError> {
        if self.states.contains_key(&vin) {
            return Ok(());
        }
        let raw = self.store.vehicle_state(vin).await.map_err(|e| PipelineError::Store(e.to_string()))?;
        let state = match raw.map(|b| VehicleState::decode(&b)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                metrics::counter!("smogwatch_state_decode_failures_total").increment(1);
                tracing::warn!(%vin, error = %e, "persisted detector state unreadable; starting fresh");
                VehicleState::default()
            }
            None => VehicleState::default(),
        };
        self.states.insert(vin, state);
        metrics::gauge!("smogwatch_tracked_vehicles", "shard" => self.shard.to_string())
            .set(self.states.len() as f64);
        Ok(())
    }

    async fn process(
        &mut self,
        records: Vec<TelemetryRecord>,
        late: bool,
        received_ms: i64,
    ) -> Result<(CommitBatch, Vec<Vin>, Outcome), PipelineError> {
        let mut batch = CommitBatch { records: Vec::with_capacity(records.len()), ..Default::default() };
        let mut outcome = Outcome::default();
        let mut touched: Vec<Vin> = Vec::new();
        let mut late_records: HashMap<Vin, Vec<TelemetryRecord>> = HashMap::new();
        let mut found = Vec::new();
        let mut cached: Option<(Vin, Option<std::sync::Arc<crate::model::Vehicle>>)> = None;
        let mut clock_faults = 0u64;
        // Live records of this call: a repeat of one later in the same batch is a duplicate.
        let mut live_here: HashSet<(Vin, i64)> = HashSet::new();
        for rec in records {
            let vin = rec.vin;
            self.ensure_state(vin).await?;
            let Some(state) = self.states.get_mut(&vin) else { continue };
            if !late && self.admission.is_clock_fault(rec.time_ms, received_ms) {
                // Kept as evidence and shown to R5.time_jump only: it must not move the vehicle's
                // live clock, or every real record after it would be "late".
                if let Some(vehicle) = self.registry.get(&vin) {
                    let obs = Observation { vehicle: &vehicle, record: &rec, received_ms };
                    self.detectors.observe_clock_fault(state, &obs, &mut found);
                }
                if clock_faults == 0 {
                    tracing::warn!(%vin, time_ms = rec.time_ms, received_ms, "record ahead of the server clock held as a clock fault");
                }
                clock_faults += 1;
                if !touched.contains(&vin) {
                    touched.push(vin);
                }
                batch.records.push(rec);
                outcome.stored += 1;
                continue;
            }
            if late || state.last_time_ms.is_some_and(|t| rec.time_ms <= t) {
                late_records.entry(vin).or_default().push(rec);
                continue;
            }
            // Batches are mostly one vehicle's records: look the registry up once per run of a VIN.
            if cached.as_ref().is_none_or(|(v, _)| *v != vin) {
                cached = Some((vin, self.registry.get(&vin)));
            }
            if let Some(vehicle) = cached.as_ref().and_then(|(_, v)| v.as_deref()) {
                let obs = Observation { vehicle, record: &rec, received_ms };
                self.detectors.observe_with_passages(state, &obs, &mut found, &mut batch.passages);
            } else {
                // De-registered between validation and now: keep the data, evaluate nothing.
                state.last_time_ms = Some(rec.time_ms);
            }
            if !touched.contains(&vin) {
                touched.push(vin);
            }
            live_here.insert((vin, rec.time_ms));
            batch.records.push(rec);
            outcome.stored += 1;
        }
        if clock_faults > 0 {
            metrics::counter!("smogwatch_clock_faults_total").increment(clock_faults);
        }
        batch.violations.extend(found.drain(..).map(ViolationWrite::Upsert));
        for (vin, recs) in late_records {
            metrics::counter!("smogwatch_late_records_total").increment(recs.len() as u64);
            let Some(vehicle) = self.registry.get(&vin) else {
                outcome.stored += recs.len() as u32;
                batch.records.extend(recs);
                continue;
            };
            let r = late::evaluate(
                &*self.store,
                &self.detectors,
                &vehicle,
                recs,
                &batch.records,
                received_ms,
                self.late_context_ms,
            )
            .await
            .map_err(|e| PipelineError::Store(e.to_string()))?;
            // Not in the store yet, but in a commit on its way: a duplicate all the same. It is
            // written again (same key, harmless) in case that commit fails.
            let in_flight = r
                .new_records
                .iter()
                .filter(|x| {
                    let k = (vin, x.time_ms);
                    self.in_flight_keys.contains(&k) || live_here.contains(&k)
                })
                .count() as u32;
            outcome.stored += r.new_records.len() as u32 - in_flight;
            outcome.duplicates += r.duplicates + in_flight;
            outcome.conflicts += r.conflicts;
            if let Some(at) = r.last_conflict_ms {
                self.flag_clock_fault(vin, r.conflicts, at, received_ms).await?;
            }
            // Reissued data may fill an offline gap the live state is holding (R5).
            if let (true, Some(first), Some(last), Some(state)) =
                (late, r.new_records.first(), r.new_records.last(), self.states.get_mut(&vin))
            {
                let mut withdrawn = Vec::new();
                self.detectors.on_reissue_covering(
                    state,
                    &vehicle,
                    first.time_ms,
                    last.time_ms,
                    &mut withdrawn,
                );
                batch.violations.extend(withdrawn.into_iter().map(ViolationWrite::Upsert));
                if !touched.contains(&vin) {
                    touched.push(vin);
                }
            }
            batch.records.extend(r.new_records);
            batch.violations.extend(r.violations.into_iter().map(ViolationWrite::InsertIfAbsent));
        }
        for vin in &touched {
            if let Some(s) = self.states.get(vin) {
                batch.states.push((*vin, s.encode()));
            }
        }
        Ok((batch, touched, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::RulesConfig;
    use crate::model::{TelemetryRecord, Vehicle, VehicleKind};
    use crate::store::embedded::EmbeddedStore;

    /// A resend of records whose commit has not returned yet is counted as duplicates, within
    /// one batch and across batches; once that commit returned (here: failed), it is new again.
    #[tokio::test]
    async fn duplicates_in_flight_are_counted_as_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let registry = Registry::load(store.clone()).await.unwrap();
        let vin = Vin::parse("LZZ5BLSJ3DA001414").unwrap();
        registry.upsert(Vehicle { kind: VehicleKind::Truck, ..Vehicle::new(vin) }).await.unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let marks = Arc::new(vec![AtomicU64::new(0)]);
        let mut w = Worker::new(
            0,
            store,
            registry,
            Arc::new(DetectorSet::new(&RulesConfig::default())),
            tx,
            Arc::new(vec![Mutex::new(Vec::new())]),
            &PipelineConfig::default(),
        )
        .with_commit_marks(marks.clone());
        let t0 = 1_761_926_400_000;
        let recs: Vec<_> = (0..5).map(|i| TelemetryRecord::bare(vin, t0 + i * 1000)).collect();

        let mut twice = recs.clone();
        twice.push(recs[2].clone());
        let (first, _, o) = w.process(twice, false, t0).await.unwrap();
        assert_eq!((o.stored, o.duplicates), (5, 1), "a repeat inside the batch");
        w.ticket(&first); // handed to the committer; its commit has not returned

        w.forget_committed();
        let (_, _, o) = w.process(recs.clone(), true, t0).await.unwrap();
        assert_eq!((o.stored, o.duplicates), (0, 5), "a resend while the first is in flight");

        marks[0].store(1, Ordering::Release); // that commit returned (and, here, stored nothing)
        w.forget_committed();
        let (_, _, o) = w.process(recs, true, t0).await.unwrap();
        assert_eq!((o.stored, o.duplicates), (5, 0));
    }
}
