//! Violation queries for traffic police, enterprises and administrators, shared by the gRPC and
//! the HTTP API: filters narrowed to the caller's scope, evidence, tracks, review, the audit log,
//! streamed exports (`export`) and live alerts (`watch`).
//!
//! Scope rule: a filter that explicitly names something outside the caller's scope (another
//! city, another enterprise's vehicle) is refused with a permission error instead of quietly
//! returning nothing; everything else is narrowed to the scope.
pub mod export;
pub mod watch;

use crate::auth::{ApiError, Caller, Principal};
use crate::model::{
    city_of_county, now_ms, AuditAction, AuditEntry, Jurisdiction, ReviewDecision, ReviewState,
    TelemetryRecord, TimestampMs, Vin, Violation, ViolationId, ViolationReview, ViolationStatus,
};
use crate::pipeline::Pipeline;
use crate::registry::{normalise_plate, Registry};
use crate::store::{Store, ViolationCursor, ViolationQuery};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Margin of track shown around a violation episode, so the approach and departure are visible.
pub const EVIDENCE_MARGIN_MS: i64 = 60_000;
/// Track points returned with one violation's evidence at most (about 5.5 h at 1 Hz).
pub const MAX_EVIDENCE_POINTS: usize = 20_000;
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// A violation filter as a client states it (gRPC fields or HTTP query parameters). Empty
/// strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViolationFilter {
    /// Inclusive lower / exclusive upper bound on the violation start, epoch ms.
    pub from_ms: Option<TimestampMs>,
    pub to_ms: Option<TimestampMs>,
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub rule: Option<String>,
    pub city_code: Option<String>,
    pub county_code: Option<String>,
    pub zone_id: Option<String>,
    pub enterprise_id: Option<String>,
    /// Episode status: "open" or "closed".
    pub status: Option<String>,
    /// "unreviewed", "confirmed" or "dismissed".
    pub review: Option<String>,
    /// true: late violations only; false: live ones only.
    pub late: Option<bool>,
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A violation with its review decision, as the APIs return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViolationView {
    #[serde(flatten)]
    pub violation: Violation,
    pub review: Option<ViolationReview>,
}

/// A violation with the vehicle's track around it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub violation: ViolationView,
    pub track: Vec<TelemetryRecord>,
    /// More points existed than `MAX_EVIDENCE_POINTS`; page the track API for the rest.
    pub track_truncated: bool,
    pub track_from_ms: TimestampMs,
    pub track_to_ms: TimestampMs,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackPage {
    pub records: Vec<TelemetryRecord>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationList {
    pub violations: Vec<ViolationView>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_page_token: String,
}

pub fn page_size(n: Option<u32>) -> usize {
    match n {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => (n as usize).min(MAX_PAGE),
    }
}

/// The query side of the service. Cheap to clone.
#[derive(Clone)]
pub struct ViolationDesk {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) watch_poll: Duration,
    /// Becomes true at shutdown: live watches end then instead of holding the server open.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Re-checks the credential of open watches (a revoked token ends them).
    pub(crate) auth: Option<Arc<crate::auth::Authenticator>>,
}

impl ViolationDesk {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        pipeline: Arc<Pipeline>,
        watch_poll: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        ViolationDesk {
            store,
            registry,
            pipeline,
            watch_poll: watch_poll.max(Duration::from_millis(50)),
            shutdown,
            auth: None,
        }
    }

    /// Live watches end when their credential is revoked (see `Authenticator::lapsed`).
    pub fn with_authenticator(mut self, auth: Arc<crate::auth::Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Turns a client filter into a store query confined to what `caller` may see.
    pub fn scoped_query(&self, caller: &Caller, f: &ViolationFilter) -> Result<ViolationQuery, ApiError> {
        caller.require_violation_reader()?;
        let mut q = ViolationQuery {
            from_ms: f.from_ms.filter(|t| *t != 0),
            to_ms: f.to_ms.filter(|t| *t != 0),
            vin: given(&f.vin).map(Vin::parse).transpose().map_err(|e| ApiError::invalid(e.to_string()))?,
            rule: given(&f.rule).map(str::to_string),
            city_code: given(&f.city_code).map(str::to_string),
            county_code: given(&f.county_code).map(str::to_string),
            zone_id: given(&f.zone_id).map(str::to_string),
            plate: given(&f.plate).map(normalise_plate),
            status: match given(&f.status) {
                None => None,
                Some("open") => Some(ViolationStatus::Open),
                Some("closed") => Some(ViolationStatus::Closed),
                Some(s) => return Err(ApiError::invalid(format!("status {s:?}: open or closed"))),
            },
            late: f.late,
            review: given(&f.review)
                .map(|r| {
                    ReviewState::parse(r).ok_or_else(|| {
                        ApiError::invalid(format!("review {r:?}: unreviewed, confirmed or dismissed"))
                    })
                })
                .transpose()?,
            vins: None,
        };
        if let (Some(from), Some(to)) = (q.from_ms, q.to_ms) {
            if from >= to {
                return Err(ApiError::invalid("from_ms must be before to_ms"));
            }
        }
        if let Some(e) = given(&f.enterprise_id) {
            if !caller.may_see_enterprise(e) {
                return Err(ApiError::denied(format!("enterprise {e} is outside this credential's scope")));
            }
            q.vins = Some(Arc::new(self.registry.fleet(e)));
        }
        match caller {
            Caller::Admin | Caller::Terminal(_) => {}
            Caller::Police(j) => narrow_to_jurisdiction(&mut q, j)?,
            Caller::Enterprise(own) => {
                let foreign =
                    |vin: &Vin| self.registry.get(vin).is_none_or(|v| &v.owner_enterprise_id != own);
                if let Some(vin) = q.vin.filter(foreign) {
                    return Err(ApiError::denied(format!("vehicle {vin} is not one of this enterprise's")));
                }
                if let Some(p) = &q.plate {
                    if self.registry.by_plate(p).and_then(|v| v.vin).is_some_and(|vin| foreign(&vin)) {
                        return Err(ApiError::denied(format!("plate {p} is not one of this enterprise's")));
                    }
                }
                if q.vins.is_none() {
                    q.vins = Some(Arc::new(self.registry.fleet(own)));
                }
            }
        }
        Ok(q)
    }

    async fn views(&self, violations: Vec<Violation>) -> Result<Vec<ViolationView>, ApiError> {
        let ids: Vec<ViolationId> = violations.iter().map(|v| v.id.clone()).collect();
        let reviews = self.store.violation_reviews(&ids).await?;
        Ok(violations
            .into_iter()
            .zip(reviews)
            .map(|(violation, review)| ViolationView { violation, review })
            .collect())
    }

    pub async fn list(
        &self,
        caller: &Caller,
        filter: &ViolationFilter,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<ViolationList, ApiError> {
        let q = self.scoped_query(caller, filter)?;
        let cursor = match page_token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(ViolationCursor::decode(t).map_err(|_| ApiError::invalid("invalid page_token"))?),
        };
        let page = self.store.violations(&q, cursor, self::page_size(page_size)).await?;
        Ok(ViolationList {
            violations: self.views(page.violations).await?,
            next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
        })
    }

    /// One violation, if the caller may see it (PERMISSION_DENIED otherwise, never another's data).
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ViolationView, ApiError> {
        caller.require_violation_reader()?;
        let id = ViolationId(id.trim().to_string());
        let v = self.store.violation(&id).await?;
        let v = v.ok_or_else(|| ApiError::NotFound(format!("violation {} not found", id.as_str())))?;
        if !caller.may_see_violation(&v, &self.registry) {
            return Err(ApiError::denied(format!(
                "violation {} is outside this credential's scope",
                id.as_str()
            )));
        }
        Ok(self.views(vec![v]).await?.remove(0))
    }

    pub async fn evidence(&self, caller: &Caller, id: &str) -> Result<Evidence, ApiError> {
        let view = self.get(caller, id).await?;
        let (from, to) = evidence_window(&view.violation);
        let mut track = self.store.records(view.violation.vin, from, to, MAX_EVIDENCE_POINTS + 1).await?;
        let track_truncated = track.len() > MAX_EVIDENCE_POINTS;
        track.truncate(MAX_EVIDENCE_POINTS);
        Ok(Evidence { violation: view, track, track_truncated, track_from_ms: from, track_to_ms: to })
    }

    /// A vehicle's records in `[from, to)`, oldest first, paged. Police may read a track only
    /// around a violation in their jurisdiction; an enterprise its own vehicles'.
    pub async fn track(
        &self,
        caller: &Caller,
        vin: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<TrackPage, ApiError> {
        let vin = Vin::parse(vin.trim()).map_err(|e| ApiError::invalid(e.to_string()))?;
        if from_ms >= to_ms {
            return Err(ApiError::invalid("from_ms must be before to_ms"));
        }
        match caller {
            Caller::Admin => {}
            Caller::Enterprise(own) => {
                if self.registry.get(&vin).is_none_or(|v| &v.owner_enterprise_id != own) {
                    return Err(ApiError::denied(format!("vehicle {vin} is not one of this enterprise's")));
                }
            }
            Caller::Police(j) => {
                if !self.track_is_evidence(j, vin, from_ms, to_ms).await? {
                    return Err(ApiError::denied(format!(
                        "no violation of {vin} in {j} covers this time range: police read tracks around violations"
                    )));
                }
            }
            Caller::Terminal(_) => return Err(ApiError::denied("terminal tokens may only send telemetry")),
        }
        let start = match page_token.map(str::trim).filter(|t| !t.is_empty()) {
            None => from_ms,
            Some(t) => t
                .parse::<i64>()
                .ok()
                .filter(|t| (from_ms..to_ms).contains(t))
                .ok_or_else(|| ApiError::invalid("invalid page_token"))?,
        };
        let limit = self::page_size(page_size);
        let mut records = self.store.records(vin, start, to_ms, limit + 1).await?;
        let next_page_token = if records.len() > limit {
            records.truncate(limit + 1);
            records.pop().map(|r| r.time_ms.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(TrackPage { records, next_page_token })
    }

    async fn track_is_evidence(
        &self,
        j: &Jurisdiction,
        vin: Vin,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    ) -> Result<bool, ApiError> {
        let mut q = ViolationQuery {
            vin: Some(vin),
            to_ms: Some(to_ms.saturating_add(EVIDENCE_MARGIN_MS)),
            ..Default::default()
        };
        narrow_to_jurisdiction(&mut q, j)?;
        let page = self.store.violations(&q, None, 200).await?;
        Ok(page.violations.iter().any(|v| {
            let (lo, hi) = evidence_window(v);
            lo <= from_ms && to_ms <= hi
        }))
    }

    /// Confirms or dismisses a violation; the decision and the audit entry commit together.
    pub async fn review(
        &self,
        who: &Principal,
        id: &str,
        decision: ReviewDecision,
        reason: &str,
    ) -> Result<ViolationView, ApiError> {
        who.caller.require_reviewer()?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(ApiError::invalid("a review needs a reason (at most 2000 characters)"));
        }
        let view = self.get(&who.caller, id).await?;
        let now = now_ms();
        let review = ViolationReview {
            violation_id: view.violation.id.clone(),
            decision,
            reason: reason.to_string(),
            reviewer: who.actor(),
            at_ms: now,
        };
        let audit = AuditEntry {
            seq: 0,
            at_ms: now,
            actor: who.actor(),
            action: AuditAction::Review,
            target: view.violation.id.0.clone(),
            detail: serde_json::json!({
                "decision": decision,
                "reason": reason,
                "previous": view.review.as_ref().map(|r| r.decision),
            }),
        };
        self.store.review_violation(review.clone(), audit).await?;
        Ok(ViolationView { violation: view.violation, review: Some(review) })
    }

    /// The audit log, newest first (administrators only).
    pub async fn audit(
        &self,
        caller: &Caller,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<AuditPage, ApiError> {
        caller.require_admin()?;
        let before = match page_token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(t.parse::<u64>().map_err(|_| ApiError::invalid("invalid page_token"))?),
        };
        let limit = self::page_size(page_size);
        let entries = self.store.audit_log(before, limit).await?;
        let next_page_token = match entries.last() {
            Some(e) if entries.len() == limit && e.seq > 1 => e.seq.to_string(),
            _ => String::new(),
        };
        Ok(AuditPage { entries, next_page_token })
    }
}

/// Confines a query to a police jurisdiction; naming another area is refused.
fn narrow_to_jurisdiction(q: &mut ViolationQuery, j: &Jurisdiction) -> Result<(), ApiError> {
    let outside =
        |what: &str| Err(ApiError::denied(format!("{what} is outside this credential's jurisdiction ({j})")));
    match j {
        Jurisdiction::City(c) => {
            if let Some(rc) = q.city_code.as_deref().filter(|rc| rc != c) {
                return outside(&format!("city {rc}"));
            }
            if let Some(k) = q.county_code.as_deref() {
                if city_of_county(k).as_deref() != Some(c.as_str()) {
                    return outside(&format!("county {k}"));
                }
            }
            q.city_code = Some(c.clone());
        }
        Jurisdiction::County(k) => {
            if let Some(rk) = q.county_code.as_deref().filter(|rk| rk != k) {
                return outside(&format!("county {rk}"));
            }
            if let Some(rc) = q.city_code.as_deref() {
                if city_of_county(k).as_deref() != Some(rc) {
                    return outside(&format!("city {rc}"));
                }
            }
            q.county_code = Some(k.clone());
        }
    }
    Ok(())
}

/// The stretch of track that is a violation's evidence: the detector's track reference when it
/// gave one, else the episode, with a margin either side.
pub fn evidence_window(v: &Violation) -> (TimestampMs, TimestampMs) {
    let track = &v.evidence["track"];
    let from = track["from_ms"].as_i64().unwrap_or(v.started_ms);
    let to = track["to_ms"].as_i64().or(v.ended_ms).unwrap_or(v.started_ms).max(from);
    (from.saturating_sub(EVIDENCE_MARGIN_MS), to.saturating_add(EVIDENCE_MARGIN_MS).saturating_add(1))
}
