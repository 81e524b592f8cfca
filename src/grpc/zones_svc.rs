//! `Zones` service: import (GeoJSON), list, delete, exemptions.
use super::auth::Caller;
use crate::geofence::{FeatureError, ZoneKind};
use crate::proto::{self, zones_server};
use crate::zones::{ImportRequest, ZoneCatalog, ZoneCatalogError};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ZonesService {
    catalog: Arc<ZoneCatalog>,
}

impl ZonesService {
    pub fn new(catalog: Arc<ZoneCatalog>) -> Self {
        ZonesService { catalog }
    }
}

fn rejection(e: &FeatureError) -> proto::FeatureRejection {
    proto::FeatureRejection {
        index: u32::try_from(e.at.index).unwrap_or(u32::MAX),
        feature_id: e.at.id.clone().unwrap_or_default(),
        reason: e.reason.to_string(),
    }
}

fn status(e: ZoneCatalogError) -> Status {
    match e {
        ZoneCatalogError::Store(e) => super::status_from_store(e),
        ZoneCatalogError::Import(crate::geofence::ZoneImportError::Rejected(errs)) => {
            let detail: Vec<String> = errs.iter().take(20).map(ToString::to_string).collect();
            Status::invalid_argument(format!(
                "{} feature(s) rejected, nothing imported: {}",
                errs.len(),
                detail.join("; ")
            ))
        }
        other => Status::invalid_argument(other.to_string()),
    }
}

#[tonic::async_trait]
impl zones_server::Zones for ZonesService {
    async fn import(
        &self,
        req: Request<proto::ImportZonesRequest>,
    ) -> Result<Response<proto::ImportZonesResponse>, Status> {
        Caller::from_request(&req)?.require_admin()?;
        let r = req.into_inner();
        let summary = self
            .catalog
            .import(
                &r.geojson,
                ImportRequest { gcj02: r.gcj02, lenient: r.lenient, fix_winding: r.fix_winding },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ImportZonesResponse {
            imported: u32::try_from(summary.imported).unwrap_or(u32::MAX),
            rejected: summary.rejected.iter().map(rejection).collect(),
            rewound: summary.rewound.iter().filter_map(|r| r.id.clone()).collect(),
            zone_set_version: summary.version,
        }))
    }

    async fn list(
        &self,
        req: Request<proto::ListZonesRequest>,
    ) -> Result<Response<proto::ListZonesResponse>, Status> {
        Caller::from_request(&req)?;
        let set = self.catalog.registry().load_full();
        let zones = set
            .iter()
            .map(|z| proto::ZoneSummary {
                id: z.id.clone(),
                name: z.name.clone(),
                kind: match &z.kind {
                    ZoneKind::RestrictionZone => "restriction_zone",
                    ZoneKind::MachineryLowEmissionZone => "machinery_low_emission_zone",
                    ZoneKind::Park { .. } => "park",
                }
                .into(),
                city_code: z.city_code.clone(),
                county_code: z.county_code.clone().unwrap_or_default(),
                effective_from: z.effective_from.to_string(),
                effective_until: z.effective_until.map(|d| d.to_string()).unwrap_or_default(),
                enterprise_id: match &z.kind {
                    ZoneKind::Park { enterprise_id } => enterprise_id.clone(),
                    _ => String::new(),
                },
            })
            .collect();
        Ok(Response::new(proto::ListZonesResponse {
            zones,
            zone_set_version: set.version(),
            exemptions: u32::try_from(set.exemptions().len()).unwrap_or(u32::MAX),
        }))
    }

    async fn delete(
        &self,
        req: Request<proto::DeleteZonesRequest>,
    ) -> Result<Response<proto::DeleteZonesResponse>, Status> {
        Caller::from_request(&req)?.require_admin()?;
        let version = self.catalog.remove(req.into_inner().ids).await.map_err(status)?;
        Ok(Response::new(proto::DeleteZonesResponse { zone_set_version: version }))
    }

    async fn set_exemptions(
        &self,
        req: Request<proto::SetExemptionsRequest>,
    ) -> Result<Response<proto::SetExemptionsResponse>, Status> {
        Caller::from_request(&req)?.require_admin()?;
        let r = req.into_inner();
        let (n, rejected) = self.catalog.set_exemptions(&r.json, r.lenient).await.map_err(status)?;
        Ok(Response::new(proto::SetExemptionsResponse {
            exemptions: u32::try_from(n).unwrap_or(u32::MAX),
            rejected: rejected
                .iter()
                .map(|e| proto::FeatureRejection {
                    index: u32::try_from(e.at.index).unwrap_or(u32::MAX),
                    feature_id: e.at.id.clone().unwrap_or_default(),
                    reason: e.reason.clone(),
                })
                .collect(),
        }))
    }
}
