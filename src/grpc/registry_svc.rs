//! `Registry` service: vehicles and enterprises.
use super::auth::Caller;
use super::convert::*;
use super::status_from_store;
use crate::model::Vin;
use crate::proto::{self, registry_server};
use crate::registry::{Registry, RegistryError};
use crate::store::Store;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct RegistryService {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
}

impl RegistryService {
    pub fn new(registry: Arc<Registry>, store: Arc<dyn Store>) -> Self {
        RegistryService { registry, store }
    }
}

fn page_size(n: u32) -> usize {
    match n {
        0 => 100,
        n => n.min(1000) as usize,
    }
}

#[tonic::async_trait]
impl registry_server::Registry for RegistryService {
    async fn upsert_vehicle(&self, req: Request<proto::Vehicle>) -> Result<Response<proto::Vehicle>, Status> {
        Caller::from_request(&req)?.require_admin()?;
        let v = vehicle_from_proto(req.into_inner()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let stored = self.registry.upsert(v).await.map_err(|e| match e {
            RegistryError::Store(e) => status_from_store(e),
            other => Status::invalid_argument(other.to_string()),
        })?;
        Ok(Response::new(vehicle_to_proto(&stored)))
    }

    async fn get_vehicle(
        &self,
        req: Request<proto::GetVehicleRequest>,
    ) -> Result<Response<proto::Vehicle>, Status> {
        let caller = Caller::from_request(&req)?;
        let vin = Vin::parse(&req.get_ref().vin).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let v = self
            .registry
            .get(&vin)
            .ok_or_else(|| Status::not_found(format!("vehicle {vin} not registered")))?;
        if !caller.may_see_vehicle(&v) {
            return Err(Status::permission_denied(format!(
                "vehicle {vin} is outside this credential's scope"
            )));
        }
        Ok(Response::new(vehicle_to_proto(&v)))
    }

    async fn list_vehicles(
        &self,
        req: Request<proto::ListVehiclesRequest>,
    ) -> Result<Response<proto::ListVehiclesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let mut r = req.into_inner();
        match &caller {
            Caller::Admin | Caller::Police(_) => {}
            Caller::Enterprise(own) => {
                if !r.owner_enterprise_id.is_empty() && &r.owner_enterprise_id != own {
                    return Err(Status::permission_denied("an enterprise token lists its own vehicles only"));
                }
                r.owner_enterprise_id = own.clone();
            }
            Caller::Terminal(_) => {
                return Err(Status::permission_denied("terminal tokens cannot list vehicles"))
            }
        }
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(Vin::parse(t).map_err(|_| Status::invalid_argument("invalid page_token"))?),
        };
        let limit = page_size(r.page_size);
        let mut out = Vec::new();
        let mut cursor = after;
        // Filtering by owner happens on the page; keep reading until the page is full.
        loop {
            let page = self.store.vehicles(cursor, limit).await.map_err(status_from_store)?;
            let exhausted = page.len() < limit;
            for v in page {
                cursor = v.vin;
                if r.owner_enterprise_id.is_empty() || v.owner_enterprise_id == r.owner_enterprise_id {
                    out.push(vehicle_to_proto(&v));
                    if out.len() == limit {
                        break;
                    }
                }
            }
            if exhausted || out.len() == limit {
                break;
            }
        }
        let next_page_token = if out.len() == limit {
            out.last().map(|v| v.vin.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListVehiclesResponse { vehicles: out, next_page_token }))
    }

    async fn upsert_enterprise(
        &self,
        req: Request<proto::Enterprise>,
    ) -> Result<Response<proto::Enterprise>, Status> {
        Caller::from_request(&req)?.require_admin()?;
        let e = enterprise_from_proto(req.into_inner());
        if e.id.trim().is_empty() || e.id.len() > 64 {
            return Err(Status::invalid_argument("enterprise id must be 1-64 characters"));
        }
        self.store.upsert_enterprise(e.clone()).await.map_err(status_from_store)?;
        Ok(Response::new(enterprise_to_proto(&e)))
    }

    async fn get_enterprise(
        &self,
        req: Request<proto::GetEnterpriseRequest>,
    ) -> Result<Response<proto::Enterprise>, Status> {
        let caller = Caller::from_request(&req)?;
        let id = &req.get_ref().id;
        if !caller.may_see_enterprise(id) {
            return Err(Status::permission_denied(format!(
                "enterprise {id} is outside this credential's scope"
            )));
        }
        let e = self.store.enterprise(id).await.map_err(status_from_store)?;
        let e = e.ok_or_else(|| Status::not_found(format!("enterprise {id} not found")))?;
        Ok(Response::new(enterprise_to_proto(&e)))
    }

    async fn list_enterprises(
        &self,
        req: Request<proto::ListEnterprisesRequest>,
    ) -> Result<Response<proto::ListEnterprisesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        match &caller {
            Caller::Admin | Caller::Police(_) => {}
            Caller::Enterprise(own) => {
                // Its own entry is all an enterprise may list.
                let own = self.store.enterprise(own).await.map_err(status_from_store)?;
                return Ok(Response::new(proto::ListEnterprisesResponse {
                    enterprises: own.iter().map(enterprise_to_proto).collect(),
                    next_page_token: String::new(),
                }));
            }
            Caller::Terminal(_) => {
                return Err(Status::permission_denied("terminal tokens cannot list enterprises"));
            }
        }
        let limit = page_size(r.page_size);
        let after = (!r.page_token.is_empty()).then_some(r.page_token);
        let page = self.store.enterprises(after, limit).await.map_err(status_from_store)?;
        let next_page_token = if page.len() == limit {
            page.last().map(|e| e.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListEnterprisesResponse {
            enterprises: page.iter().map(enterprise_to_proto).collect(),
            next_page_token,
        }))
    }
}
