//! A worker owns the detector state of the vehicles hashed to its shard. It evaluates records in
//! the order they were submitted, then hands records, violations and new state to the committer.
use super::committer::CommitItem;
use super::{late, Outcome, PipelineConfig, PipelineError, SessionEvent, WorkItem};
use crate::detect::{DetectorSet, Observation, VehicleState};
use crate::model::{TelemetryRecord, Vin};
use crate::registry::Registry;
use crate::store::{CommitBatch, Store, ViolationWrite};
use parking_lot::Mutex;
use std::collections::HashMap;
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
        }
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
            let (result, done) = match item {
                WorkItem::Records { records, late, received_ms, done } => {
                    (self.process(records, late, received_ms).await, done)
                }
                WorkItem::Session { vin, event, received_ms, done } => {
                    (self.session_event(vin, event, received_ms).await, done)
                }
            };
            match result {
                Ok((batch, vins, outcome)) => {
                    let item = CommitItem { batch, shard: self.shard, vins, outcome, done: Some(done) };
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
        (!batch.is_empty()).then(|| CommitItem {
            batch,
            shard: self.shard,
            vins,
            outcome: Outcome::default(),
            done: None,
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
        for rec in records {
            let vin = rec.vin;
            self.ensure_state(vin).await?;
            let Some(state) = self.states.get_mut(&vin) else { continue };
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
            batch.records.push(rec);
            outcome.stored += 1;
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
            outcome.stored += r.new_records.len() as u32;
            outcome.duplicates += r.duplicates;
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
