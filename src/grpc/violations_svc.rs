//! `Violations` and `Admin` services: thin adapters from protobuf to `query::ViolationDesk`,
//! which holds the scope rules shared with the HTTP API.
use super::auth::{Caller, Principal};
use super::convert::{record_to_proto, violation_to_proto};
use crate::auth::{TokenDesk, TokenInfo, TokenSpec};
use crate::model::{AuditEntry, ReviewDecision};
use crate::proto::{self, admin_server, violations_server};
use crate::query::export::ExportFormat;
use crate::query::{ViolationDesk, ViolationFilter, ViolationView};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use tonic::{Request, Response, Status};

pub struct ViolationsService {
    desk: ViolationDesk,
}

impl ViolationsService {
    pub fn new(desk: ViolationDesk) -> Self {
        ViolationsService { desk }
    }
}

fn text(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

#[allow(clippy::too_many_arguments)]
fn filter(
    from_ms: i64,
    to_ms: i64,
    vin: String,
    rule: String,
    city_code: String,
    county_code: String,
    zone_id: String,
    plate: String,
    enterprise_id: String,
    status: i32,
    review: i32,
    late: i32,
) -> Result<ViolationFilter, Status> {
    let bad = |what: &str, v: i32| Status::invalid_argument(format!("unknown {what} value {v}"));
    Ok(ViolationFilter {
        from_ms: (from_ms != 0).then_some(from_ms),
        to_ms: (to_ms != 0).then_some(to_ms),
        vin: text(vin),
        plate: text(plate),
        rule: text(rule),
        city_code: text(city_code),
        county_code: text(county_code),
        zone_id: text(zone_id),
        enterprise_id: text(enterprise_id),
        status: match proto::ViolationStatus::try_from(status).map_err(|_| bad("status", status))? {
            proto::ViolationStatus::Unspecified => None,
            proto::ViolationStatus::Open => Some("open".into()),
            proto::ViolationStatus::Closed => Some("closed".into()),
        },
        review: match proto::ReviewState::try_from(review).map_err(|_| bad("review", review))? {
            proto::ReviewState::Unspecified => None,
            proto::ReviewState::Unreviewed => Some("unreviewed".into()),
            proto::ReviewState::Confirmed => Some("confirmed".into()),
            proto::ReviewState::Dismissed => Some("dismissed".into()),
        },
        late: match proto::LateFilter::try_from(late).map_err(|_| bad("late", late))? {
            proto::LateFilter::Any => None,
            proto::LateFilter::Live => Some(false),
            proto::LateFilter::Late => Some(true),
        },
    })
}

fn filter_from_proto(f: Option<proto::ViolationFilter>) -> Result<ViolationFilter, Status> {
    let f = f.unwrap_or_default();
    filter(
        f.from_ms,
        f.to_ms,
        f.vin,
        f.rule,
        f.city_code,
        f.county_code,
        f.zone_id,
        f.plate,
        f.enterprise_id,
        f.status,
        f.review,
        f.late,
    )
}

pub fn view_to_proto(v: &ViolationView) -> proto::Violation {
    let mut p = violation_to_proto(&v.violation);
    p.review = v.review.as_ref().map(|r| proto::Review {
        decision: match r.decision {
            ReviewDecision::Confirmed => proto::ReviewDecision::Confirmed,
            ReviewDecision::Dismissed => proto::ReviewDecision::Dismissed,
        } as i32,
        reason: r.reason.clone(),
        reviewer: r.reviewer.clone(),
        at_ms: r.at_ms,
    });
    p
}

fn audit_to_proto(e: &AuditEntry) -> proto::AuditEntry {
    proto::AuditEntry {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.as_str().to_string(),
        target: e.target.clone(),
        detail_json: e.detail.to_string(),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl violations_server::Violations for ViolationsService {
    async fn list(
        &self,
        req: Request<proto::ListViolationsRequest>,
    ) -> Result<Response<proto::ListViolationsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let f = filter(
            r.from_ms,
            r.to_ms,
            r.vin,
            r.rule,
            r.city_code,
            r.county_code,
            r.zone_id,
            r.plate,
            r.enterprise_id,
            r.status,
            r.review,
            r.late,
        )?;
        let list = self.desk.list(&caller, &f, Some(r.page_size), Some(&r.page_token)).await?;
        Ok(Response::new(proto::ListViolationsResponse {
            violations: list.violations.iter().map(view_to_proto).collect(),
            next_page_token: list.next_page_token,
        }))
    }

    async fn get(
        &self,
        req: Request<proto::GetViolationRequest>,
    ) -> Result<Response<proto::Violation>, Status> {
        let caller = Caller::from_request(&req)?;
        let v = self.desk.get(&caller, &req.get_ref().id).await?;
        Ok(Response::new(view_to_proto(&v)))
    }

    async fn get_evidence(
        &self,
        req: Request<proto::GetViolationRequest>,
    ) -> Result<Response<proto::ViolationEvidence>, Status> {
        let caller = Caller::from_request(&req)?;
        let e = self.desk.evidence(&caller, &req.get_ref().id).await?;
        Ok(Response::new(proto::ViolationEvidence {
            violation: Some(view_to_proto(&e.violation)),
            track: e.track.iter().map(record_to_proto).collect(),
            track_truncated: e.track_truncated,
            track_from_ms: e.track_from_ms,
            track_to_ms: e.track_to_ms,
        }))
    }

    async fn get_track(
        &self,
        req: Request<proto::GetTrackRequest>,
    ) -> Result<Response<proto::Track>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let page = self
            .desk
            .track(&caller, &r.vin, r.from_ms, r.to_ms, Some(r.page_size), Some(&r.page_token))
            .await?;
        Ok(Response::new(proto::Track {
            records: page.records.iter().map(record_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn review(
        &self,
        req: Request<proto::ReviewViolationRequest>,
    ) -> Result<Response<proto::Violation>, Status> {
        let who = Principal::from_request(&req)?;
        let r = req.into_inner();
        let decision = match proto::ReviewDecision::try_from(r.decision) {
            Ok(proto::ReviewDecision::Confirmed) => ReviewDecision::Confirmed,
            Ok(proto::ReviewDecision::Dismissed) => ReviewDecision::Dismissed,
            _ => return Err(Status::invalid_argument("decision must be CONFIRMED or DISMISSED")),
        };
        let v = self.desk.review(&who, &r.id, decision, &r.reason).await?;
        Ok(Response::new(view_to_proto(&v)))
    }

    type WatchStream = BoxStream<proto::ViolationAlert>;

    async fn watch(
        &self,
        req: Request<proto::WatchViolationsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let who = Principal::from_request(&req)?;
        let r = req.into_inner();
        let f = filter_from_proto(r.filter)?;
        let events = self.desk.watch(&who, &f, Some(&r.cursor)).await?;
        let out = events.map(|e| {
            e.map(|e| proto::ViolationAlert {
                cursor: e.cursor.to_string(),
                violation: e
                    .violation
                    .map(|violation| view_to_proto(&ViolationView { violation, review: None })),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(out)))
    }

    type ExportStream = BoxStream<proto::ExportChunk>;

    async fn export(
        &self,
        req: Request<proto::ExportViolationsRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let who = Principal::from_request(&req)?;
        let r = req.into_inner();
        let format = match proto::ExportFormat::try_from(r.format) {
            Ok(proto::ExportFormat::Csv) => ExportFormat::Csv,
            Ok(proto::ExportFormat::Geojson) => ExportFormat::Geojson,
            _ => return Err(Status::invalid_argument("format must be CSV or GEOJSON")),
        };
        let f = filter_from_proto(r.filter)?;
        let chunks = self.desk.export(&who, &f, format).await?;
        let out =
            chunks.map(|c| c.map(|data| proto::ExportChunk { data: data.to_vec() }).map_err(Status::from));
        Ok(Response::new(Box::pin(out)))
    }
}

pub struct AdminService {
    desk: ViolationDesk,
    tokens: TokenDesk,
}

impl AdminService {
    pub fn new(desk: ViolationDesk, tokens: TokenDesk) -> Self {
        AdminService { desk, tokens }
    }
}

fn token_to_proto(t: TokenInfo) -> proto::ApiTokenInfo {
    proto::ApiTokenInfo {
        id: t.id,
        role: t.role,
        scope: t.scope,
        label: t.label,
        created_ms: t.created_ms,
        revoked_ms: t.revoked_ms.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn list_audit(
        &self,
        req: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let page = self.desk.audit(&caller, Some(r.page_size), Some(&r.page_token)).await?;
        Ok(Response::new(proto::ListAuditResponse {
            entries: page.entries.iter().map(audit_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_token(
        &self,
        req: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let who = Principal::from_request(&req)?;
        let r = req.into_inner();
        let some = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        let spec = TokenSpec {
            role: r.role,
            city: some(r.city),
            county: some(r.county),
            enterprise: some(r.enterprise),
            vins: r.vins,
            label: r.label,
        };
        let created = self.tokens.create(&who, spec).await?;
        Ok(Response::new(proto::CreateTokenResponse {
            token: Some(token_to_proto(created.token)),
            secret: created.secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let who = Principal::from_request(&req)?;
        let tokens = self.tokens.list(&who).await?;
        Ok(Response::new(proto::ListTokensResponse {
            tokens: tokens.into_iter().map(token_to_proto).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::RevokeTokenResponse>, Status> {
        let who = Principal::from_request(&req)?;
        let token = self.tokens.revoke(&who, &req.get_ref().id).await?;
        Ok(Response::new(proto::RevokeTokenResponse { token: Some(token_to_proto(token)) }))
    }
}
