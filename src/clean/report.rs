//! The ratio of an enterprise over a period, read from the store: passages reconciled, counted
//! (see the module docs of [`crate::clean`] for what counts), non-road reports added pro rata,
//! and every target of the period's year checked.
use super::period::Period;
use super::ratio::{check, Tally, TargetCheck};
use super::reconcile::{reconcile, MatchStatus, Reconciled, VehicleLookup};
use super::{Basis, CargoScope, CleanProfile, PassageSource, RatioKind};
use crate::model::Enterprise;
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// Passages are read and reconciled one day at a time (plus the match window on each side), so
/// a year's ratio never holds a year of passages in memory.
const CHUNK_MS: i64 = 86_400_000;
/// Passages of one enterprise in one day (plus window) beyond which the report refuses rather
/// than silently count a truncated read. A large steel works sees a few thousand a day.
pub const MAX_PASSAGES_PER_DAY: usize = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "more than {MAX_PASSAGES_PER_DAY} passages in one day for enterprise {0}; refusing a truncated count"
    )]
    TooManyPassages(String),
}

/// How many passages of each kind the period held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassageCounts {
    pub gate_records: u64,
    pub telemetry: u64,
    /// Gate records paired with a telemetry passage.
    pub matched: u64,
    pub gate_only: u64,
    pub telemetry_only: u64,
    pub stage_mismatches: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    pub clean_by_trips: Option<f64>,
    pub clean_by_tonnage: Option<f64>,
    pub clean_or_china_vi_by_trips: Option<f64>,
    pub clean_or_china_vi_by_tonnage: Option<f64>,
}

impl Ratios {
    pub fn of(t: &Tally) -> Self {
        Ratios {
            clean_by_trips: t.ratio(RatioKind::Clean, Basis::Trips),
            clean_by_tonnage: t.ratio(RatioKind::Clean, Basis::Tonnage),
            clean_or_china_vi_by_trips: t.ratio(RatioKind::CleanOrChinaVi, Basis::Trips),
            clean_or_china_vi_by_tonnage: t.ratio(RatioKind::CleanOrChinaVi, Basis::Tonnage),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioReport {
    pub enterprise_id: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub period: String,
    /// Year whose targets were checked (the year the period starts in).
    pub year: i32,
    /// Everything through the gates (all-bulk scope).
    pub tally: Tally,
    pub ratios: Ratios,
    /// Tallies of the narrower cargo scopes the year's targets use.
    pub scoped: BTreeMap<CargoScope, Tally>,
    pub targets: Vec<TargetCheck>,
    pub passages: PassageCounts,
}

impl RatioReport {
    /// Targets not met, in words (empty when none is short).
    pub fn shortfalls(&self) -> Vec<String> {
        self.targets.iter().filter(|c| c.met == Some(false)).map(TargetCheck::statement).collect()
    }
}

/// Calls `f` with every reconciled passage of `[from, to)`, in time order within each day.
pub async fn for_each_reconciled(
    store: &dyn Store,
    lookup: &(dyn VehicleLookup + Sync),
    enterprise_id: &str,
    from_ms: i64,
    to_ms: i64,
    window_ms: i64,
    mut f: impl FnMut(Reconciled),
) -> Result<(), ReportError> {
    let mut start = from_ms;
    while start < to_ms {
        let end = start.saturating_add(CHUNK_MS).min(to_ms);
        let read = store
            .gate_passages(
                enterprise_id,
                start.saturating_sub(window_ms),
                end.saturating_add(window_ms),
                MAX_PASSAGES_PER_DAY + 1,
            )
            .await?;
        if read.len() > MAX_PASSAGES_PER_DAY {
            return Err(ReportError::TooManyPassages(enterprise_id.to_string()));
        }
        for r in reconcile(read, lookup, window_ms) {
            if (start..end).contains(&r.passage.time_ms) {
                f(r);
            }
        }
        start = end;
    }
    Ok(())
}

/// Adds one reconciled passage to the counts and to every tally whose scope covers its cargo.
fn count(r: &Reconciled, counts: &mut PassageCounts, tallies: &mut BTreeMap<CargoScope, Tally>) {
    counts.stage_mismatches += u64::from(r.stage_mismatch);
    let add = |tallies: &mut BTreeMap<CargoScope, Tally>, tonnage: Option<f64>, telemetry_only: bool| {
        for (scope, t) in tallies.iter_mut() {
            if scope.covers(&r.passage.cargo) {
                t.add_truck(r.fuel, r.stage, tonnage, telemetry_only);
            }
        }
    };
    match (r.passage.source, r.status) {
        (PassageSource::GateSystem, status) => {
            counts.gate_records += 1;
            match status {
                MatchStatus::Matched => counts.matched += 1,
                _ => counts.gate_only += 1,
            }
            add(tallies, r.passage.tonnage, false);
        }
        (PassageSource::Telemetry, MatchStatus::TelemetryOnly) => {
            counts.telemetry += 1;
            counts.telemetry_only += 1;
            add(tallies, None, true);
        }
        // Matched telemetry: the gate record of the same trip is what counts.
        (PassageSource::Telemetry, _) => counts.telemetry += 1,
    }
}

/// The ratio report of one enterprise and period.
pub async fn ratio_report(
    store: &dyn Store,
    lookup: &(dyn VehicleLookup + Sync),
    profile: &CleanProfile,
    period: &Period,
    window_ms: i64,
) -> Result<RatioReport, ReportError> {
    let year = period.year();
    let targets: Vec<_> = profile.targets_for(year).cloned().collect();
    let mut tallies: BTreeMap<CargoScope, Tally> = BTreeMap::new();
    tallies.insert(CargoScope::AllBulk, Tally::default());
    for t in &targets {
        tallies.entry(t.scope).or_default();
    }
    let mut counts = PassageCounts::default();
    let eid = profile.enterprise_id.as_str();
    for_each_reconciled(store, lookup, eid, period.from_ms, period.to_ms, window_ms, |r| {
        count(&r, &mut counts, &mut tallies)
    })
    .await?;
    for v in store.non_road_volumes(eid, period.from_ms, period.to_ms).await? {
        let share = v.overlap_fraction(period.from_ms, period.to_ms);
        for (scope, t) in tallies.iter_mut() {
            if scope.covers(&v.cargo) {
                t.add_non_road(v.mode, v.tonnage * share, v.trips.map(|n| n as f64 * share));
            }
        }
    }
    let checks =
        targets.iter().map(|t| check(t, tallies.get(&t.scope).unwrap_or(&Tally::default()))).collect();
    let tally = tallies.remove(&CargoScope::AllBulk).unwrap_or_default();
    Ok(RatioReport {
        enterprise_id: eid.to_string(),
        from_ms: period.from_ms,
        to_ms: period.to_ms,
        period: period.label.clone(),
        year,
        ratios: Ratios::of(&tally),
        tally,
        scoped: tallies,
        targets: checks,
        passages: counts,
    })
}

/// One line of a ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankEntry {
    pub enterprise: Enterprise,
    /// The ranked ratio (all-bulk scope); `None` = no data in the period.
    pub ratio: Option<f64>,
    pub report: RatioReport,
}

/// Ranks enterprises by one ratio, best first; enterprises without data last (by id).
pub async fn rank(
    store: &dyn Store,
    lookup: &(dyn VehicleLookup + Sync),
    enterprises: Vec<Enterprise>,
    period: &Period,
    kind: RatioKind,
    basis: Basis,
    window_ms: i64,
) -> Result<Vec<RankEntry>, ReportError> {
    let mut out = Vec::with_capacity(enterprises.len());
    for e in enterprises {
        let profile = store.clean_profile(&e.id).await?.unwrap_or_else(|| CleanProfile::new(e.id.clone()));
        let report = ratio_report(store, lookup, &profile, period, window_ms).await?;
        out.push(RankEntry { ratio: report.tally.ratio(kind, basis), enterprise: e, report });
    }
    out.sort_by(|a, b| match (a.ratio, b.ratio) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.enterprise.id.cmp(&b.enterprise.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.enterprise.id.cmp(&b.enterprise.id),
    });
    Ok(out)
}
