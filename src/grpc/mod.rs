//! The gRPC API (tonic): ingest, registry, violations; plus health and reflection.
pub mod auth;
pub mod convert;
pub mod ingest;
pub mod registry_svc;
pub mod violations_svc;
pub mod zones_svc;

use crate::store::StoreError;
use tonic::Status;

/// Store failures are the server's problem, never the caller's: logged in full, reported briefly.
pub fn status_from_store(e: StoreError) -> Status {
    match e {
        StoreError::BadCursor => Status::invalid_argument("invalid page_token"),
        other => {
            tracing::error!(error = %other, "store error while serving a request");
            metrics::counter!("smogwatch_store_read_failures_total").increment(1);
            Status::unavailable("storage unavailable")
        }
    }
}
