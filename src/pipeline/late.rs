//! Late data: reissued records (HJ 1239 0x03) and anything at or before a vehicle's newest
//! evaluated record. The live detector state has moved on, so late records are evaluated by
//! replaying the vehicle's stored records around them, together with them, in time order, through
//! fresh detector state. What that replay finds is written as *late* violations that never
//! overwrite a live one (same deterministic id) and never raise a live alert.
use crate::detect::{DetectorSet, Observation, VehicleState};
use crate::model::{TelemetryRecord, Vehicle, Violation};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};

/// Upper bound on records read as context for one late evaluation (about 4 h at 1 Hz).
const MAX_CONTEXT_RECORDS: usize = 16_000;

pub(super) struct LateResult {
    pub new_records: Vec<TelemetryRecord>,
    /// Records equal to the one already held for their time.
    pub duplicates: u32,
    /// Records whose time is held by a record with *different* values: the first is kept, these
    /// are counted apart (a terminal clock fault, not a resend).
    pub conflicts: u32,
    /// Time of the last conflicting record, for the data-quality flag.
    pub last_conflict_ms: Option<i64>,
    pub violations: Vec<Violation>,
}

pub(super) async fn evaluate(
    store: &dyn Store,
    detectors: &DetectorSet,
    vehicle: &Vehicle,
    mut late: Vec<TelemetryRecord>,
    pending: &[TelemetryRecord],
    received_ms: i64,
    context_ms: i64,
) -> Result<LateResult, StoreError> {
    // Stable sort: of two same-time records in one batch, the first sent stays first.
    late.sort_by_key(|r| r.time_ms);
    let (Some(first), Some(last)) = (late.first(), late.last()) else {
        return Ok(LateResult {
            new_records: Vec::new(),
            duplicates: 0,
            conflicts: 0,
            last_conflict_ms: None,
            violations: Vec::new(),
        });
    };
    let vin = first.vin;
    let from = first.time_ms.saturating_sub(context_ms);
    let to = last.time_ms.saturating_add(context_ms).saturating_add(1);
    let context = store.records(vin, from, to, MAX_CONTEXT_RECORDS).await?;

    let mut timeline: BTreeMap<i64, TelemetryRecord> = context.into_iter().map(|r| (r.time_ms, r)).collect();
    // Records of this batch already taken live are not stored yet: they hold their time too.
    for r in pending.iter().filter(|r| r.vin == vin && (from..to).contains(&r.time_ms)) {
        timeline.entry(r.time_ms).or_insert_with(|| r.clone());
    }
    let mut new_records = Vec::with_capacity(late.len());
    let (mut duplicates, mut conflicts, mut last_conflict_ms) = (0, 0, None);
    for r in late {
        match timeline.entry(r.time_ms) {
            std::collections::btree_map::Entry::Occupied(held) if *held.get() == r => duplicates += 1,
            std::collections::btree_map::Entry::Occupied(_) => {
                conflicts += 1;
                last_conflict_ms = Some(r.time_ms);
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(r.clone());
                new_records.push(r);
            }
        }
    }
    new_records.dedup_by_key(|r| r.time_ms);

    let mut violations: HashMap<_, Violation> = HashMap::new();
    if !new_records.is_empty() {
        // An episode that starts near the context's beginning may really have started earlier
        // (outside what was read); only episodes with a full context before them are trusted.
        let trusted_from =
            from.saturating_add(context_ms / 2).min(new_records.first().map_or(i64::MAX, |r| r.time_ms));
        let mut state = VehicleState::default();
        let mut out = Vec::new();
        for r in timeline.values() {
            detectors.observe(&mut state, &Observation { vehicle, record: r, received_ms }, &mut out);
        }
        for mut v in out {
            if v.started_ms >= trusted_from {
                v.late = true;
                violations.insert(v.id.clone(), v);
            }
        }
    }
    Ok(LateResult {
        new_records,
        duplicates,
        conflicts,
        last_conflict_ms,
        violations: violations.into_values().collect(),
    })
}
