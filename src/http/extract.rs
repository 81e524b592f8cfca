//! Extractors whose rejections are the API's JSON errors (axum's own answer `text/plain`, which
//! the OpenAPI document does not describe).
use crate::auth::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// `Query<T>`, rejected as `400 {"error": {"code": "invalid_argument", ...}}`.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => {
                metrics::counter!("smogwatch_http_rejections_total", "kind" => "query").increment(1);
                tracing::debug!(error = %e.body_text(), "query string rejected");
                Err(ApiError::invalid(e.body_text()))
            }
        }
    }
}
