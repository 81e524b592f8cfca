//! The gRPC API (tonic): ingest, registry, violations; plus health and reflection.
pub mod auth;
pub mod clean_svc;
pub mod convert;
pub mod ingest;
pub mod registry_svc;
pub mod roadside_svc;
pub mod violations_svc;
pub mod zones_svc;

use crate::store::StoreError;
use tonic::Status;

/// Store failures are the server's problem, never the caller's: logged in full, reported briefly.
pub fn status_from_store(e: StoreError) -> Status {
    Status::from(crate::auth::ApiError::from(e))
}
