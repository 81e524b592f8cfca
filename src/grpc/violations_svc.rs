//! `Violations` service: listing with filters and stable cursor paging, newest first.
use super::auth::Caller;
use super::convert::violation_to_proto;
use super::status_from_store;
use crate::model::{Vin, ViolationId};
use crate::proto::{self, violations_server};
use crate::store::{Store, ViolationCursor, ViolationQuery};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ViolationsService {
    store: Arc<dyn Store>,
}

impl ViolationsService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ViolationsService { store }
    }
}

#[tonic::async_trait]
impl violations_server::Violations for ViolationsService {
    async fn list(
        &self,
        req: Request<proto::ListViolationsRequest>,
    ) -> Result<Response<proto::ListViolationsResponse>, Status> {
        Caller::from_request(&req)?;
        let r = req.into_inner();
        let query = ViolationQuery {
            from_ms: (r.from_ms != 0).then_some(r.from_ms),
            to_ms: (r.to_ms != 0).then_some(r.to_ms),
            vin: match r.vin.as_str() {
                "" => None,
                s => Some(Vin::parse(s).map_err(|e| Status::invalid_argument(e.to_string()))?),
            },
            rule: (!r.rule.is_empty()).then_some(r.rule),
            ..Default::default()
        };
        let cursor = match r.page_token.as_str() {
            "" => None,
            t => {
                Some(ViolationCursor::decode(t).map_err(|_| Status::invalid_argument("invalid page_token"))?)
            }
        };
        let limit = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let page = self.store.violations(&query, cursor, limit).await.map_err(status_from_store)?;
        Ok(Response::new(proto::ListViolationsResponse {
            violations: page.violations.iter().map(violation_to_proto).collect(),
            next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
        }))
    }

    async fn get(
        &self,
        req: Request<proto::GetViolationRequest>,
    ) -> Result<Response<proto::Violation>, Status> {
        Caller::from_request(&req)?;
        let id = ViolationId(req.into_inner().id);
        let v = self.store.violation(&id).await.map_err(status_from_store)?;
        let v = v.ok_or_else(|| Status::not_found(format!("violation {} not found", id.as_str())))?;
        Ok(Response::new(violation_to_proto(&v)))
    }
}
