//! The HTTP side: the JSON API (a mirror of the gRPC violation queries, for browsers and GIS
//! tools), streamed exports, server-sent live alerts, the OpenAPI document, Prometheus metrics
//! and liveness.
//!
//! `routes()` is the one route table: it builds the router and is checked against
//! `openapi.json` by a test, so the document cannot silently fall behind the code.
use crate::auth::{ApiError, Authenticator, Principal, TokenDesk, TokenSpec};
use crate::model::ReviewDecision;
use crate::query::export::ExportFormat;
use crate::query::{ViolationDesk, ViolationFilter};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use extract::ApiQuery;
use futures::StreamExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

mod extract;

/// The process-wide Prometheus recorder: `metrics` allows one global recorder, and tests start
/// several servers in one process.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only this handle");
        }
        handle
    })
}

/// The OpenAPI 3.1 description of the routes below.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
pub struct HttpState {
    pub desk: ViolationDesk,
    pub auth: Arc<Authenticator>,
    pub tokens: TokenDesk,
    /// For the clean-transport reads (the gRPC service's scoping and reports, reused).
    pub store: Arc<dyn crate::store::Store>,
    pub registry: Arc<crate::registry::Registry>,
}

pub struct Route {
    pub method: Method,
    /// axum path syntax, which for parameters (`{id}`) is also OpenAPI's.
    pub path: &'static str,
    /// Served without credentials (probes, metrics, the API description).
    pub open: bool,
    handler: MethodRouter<HttpState>,
}

fn route(method: Method, path: &'static str, open: bool, handler: MethodRouter<HttpState>) -> Route {
    Route { method, path, open, handler }
}

/// Every HTTP route: the router is built from this table and the OpenAPI test reads it.
pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/healthz", true, get(healthz)),
        route(Method::GET, "/metrics", true, get(|| async { prometheus().render() })),
        route(
            Method::GET,
            "/openapi.json",
            true,
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        ),
        route(Method::GET, "/v1/violations", false, get(list_violations)),
        route(Method::GET, "/v1/violations/{id}", false, get(get_violation)),
        route(Method::GET, "/v1/violations/{id}/evidence", false, get(get_evidence)),
        route(Method::POST, "/v1/violations/{id}/review", false, post(review_violation)),
        route(Method::GET, "/v1/vehicles/{vin}/track", false, get(get_track)),
        route(Method::GET, "/v1/alerts", false, get(watch_alerts)),
        route(Method::GET, "/v1/export/violations.csv", false, get(export_csv)),
        route(Method::GET, "/v1/export/violations.geojson", false, get(export_geojson)),
        route(Method::GET, "/v1/audit", false, get(list_audit)),
        route(Method::GET, "/v1/tokens", false, get(list_tokens)),
        route(Method::POST, "/v1/tokens", false, post(create_token)),
        route(Method::POST, "/v1/tokens/{id}/revoke", false, post(revoke_token)),
        route(Method::GET, "/v1/enterprises/{id}/clean-transport/ratio", false, get(clean_ratio)),
        route(Method::GET, "/v1/enterprises/{id}/clean-transport/passages", false, get(clean_passages)),
    ]
}

/// The router. Without a state (no API), only the open routes are served.
pub fn router(state: HttpState) -> Router {
    let (mut open, mut api) = (Router::new(), Router::new());
    for r in routes() {
        if r.open {
            open = open.route(r.path, r.handler);
        } else {
            api = api.route(r.path, r.handler);
        }
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // Unknown paths and methods answer with the API's JSON error too, not an empty body.
    open.merge(api)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, ApiError::invalid("method not allowed on this route"))
        })
        .with_state(state)
}

async fn authenticate(State(st): State<HttpState>, mut req: Request, next: Next) -> Response {
    match st.auth.authenticate(req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
            ApiError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let body = Json(serde_json::json!({ "error": { "code": code, "message": self.to_string() } }));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Page {
    page_size: Option<u32>,
    page_token: Option<String>,
}

type ApiResult<T> = Result<T, ApiError>;

async fn list_violations(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    ApiQuery(filter): ApiQuery<ViolationFilter>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.desk.list(&who.caller, &filter, page.page_size, page.page_token.as_deref()).await?))
}

async fn get_violation(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.desk.get(&who.caller, &id).await?))
}

async fn get_evidence(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.desk.evidence(&who.caller, &id).await?))
}

#[derive(Debug, Deserialize)]
struct ReviewBody {
    decision: ReviewDecision,
    reason: String,
}

async fn review_violation(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<ReviewBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(Json(st.desk.review(&who, &id, body.decision, &body.reason).await?))
}

#[derive(Debug, Deserialize)]
struct TrackParams {
    from_ms: i64,
    to_ms: i64,
    page_size: Option<u32>,
    page_token: Option<String>,
}

async fn get_track(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(vin): Path<String>,
    ApiQuery(p): ApiQuery<TrackParams>,
) -> ApiResult<impl IntoResponse> {
    let page =
        st.desk.track(&who.caller, &vin, p.from_ms, p.to_ms, p.page_size, p.page_token.as_deref()).await?;
    Ok(Json(page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cursor {
    cursor: Option<String>,
}

/// Liveness and readiness in one: 503 (JSON error) while the store refuses writes, so that a
/// load balancer sends terminals elsewhere; reads are still served meanwhile.
async fn healthz(State(st): State<HttpState>) -> ApiResult<&'static str> {
    if st.desk.pipeline.write_health().is_ok() {
        Ok("ok\n")
    } else {
        Err(ApiError::Unavailable("store writes are failing (see smogwatch_store_write_errors_total)".into()))
    }
}

/// Live alerts as server-sent events. Each event's id is its cursor, so a browser's
/// `EventSource` resumes after a reconnect by itself (it sends `Last-Event-ID`).
async fn watch_alerts(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    ApiQuery(filter): ApiQuery<ViolationFilter>,
    ApiQuery(c): ApiQuery<Cursor>,
) -> ApiResult<impl IntoResponse> {
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let cursor = last_event.or(c.cursor);
    let events = st.desk.watch(&who, &filter, cursor.as_deref()).await?;
    let sse = events.map(|e| match e {
        Ok(e) => {
            let ev = Event::default().id(e.cursor.to_string());
            Ok::<_, std::convert::Infallible>(match e.violation {
                Some(v) => ev
                    .event("violation")
                    .json_data(&v)
                    .unwrap_or_else(|_| Event::default().comment("skipped")),
                None => ev.event("ready").data(e.cursor.to_string()),
            })
        }
        Err(e) => Ok(Event::default().event("error").data(e.to_string())),
    });
    Ok(Sse::new(sse).keep_alive(KeepAlive::default()))
}

async fn export(
    st: HttpState,
    who: Principal,
    filter: ViolationFilter,
    format: ExportFormat,
) -> ApiResult<Response> {
    let chunks = st.desk.export(&who, &filter, format).await?;
    let disposition = format!("attachment; filename=\"violations.{}\"", format.extension());
    let headers = [
        (header::CONTENT_TYPE, format.content_type().to_string()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

async fn export_csv(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    ApiQuery(filter): ApiQuery<ViolationFilter>,
) -> ApiResult<Response> {
    export(st, who, filter, ExportFormat::Csv).await
}

async fn export_geojson(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    ApiQuery(filter): ApiQuery<ViolationFilter>,
) -> ApiResult<Response> {
    export(st, who, filter, ExportFormat::Geojson).await
}

async fn list_audit(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.desk.audit(&who.caller, page.page_size, page.page_token.as_deref()).await?))
}

async fn list_tokens(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(serde_json::json!({ "tokens": st.tokens.list(&who).await? })))
}

async fn create_token(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<TokenSpec>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(spec) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok((StatusCode::CREATED, Json(st.tokens.create(&who, spec).await?)))
}

async fn revoke_token(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.tokens.revoke(&who, &id).await?))
}

/// Query of the clean-transport reads; the same fields as the gRPC requests.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CleanQuery {
    /// `2025`, `2025-Q3`, `2025-07`; empty: `from_ms`..`to_ms`.
    period: String,
    from_ms: i64,
    to_ms: i64,
    /// Gate record ↔ telemetry pairing window; 0: the default.
    match_window_s: u32,
    problems_only: bool,
    page_size: u32,
}

/// The clean-transport service decides in gRPC terms; the HTTP API reuses its decisions.
fn from_status(s: tonic::Status) -> ApiError {
    let m = s.message().to_string();
    match s.code() {
        tonic::Code::PermissionDenied => ApiError::PermissionDenied(m),
        tonic::Code::NotFound => ApiError::NotFound(m),
        tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted => ApiError::InvalidArgument(m),
        tonic::Code::Unauthenticated => ApiError::Unauthenticated(m),
        _ => ApiError::Unavailable(m),
    }
}

async fn clean_ratio(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CleanQuery>,
) -> ApiResult<impl IntoResponse> {
    use crate::grpc::clean_svc::{period, report_status, scope_enterprise, window_ms, Action};
    let (_, profile) =
        scope_enterprise(&*st.store, &who.caller, &id, Action::Read).await.map_err(from_status)?;
    let p = period(&q.period, q.from_ms, q.to_ms).map_err(from_status)?;
    let report = crate::clean::report::ratio_report(
        &*st.store,
        &*st.registry,
        &profile,
        &p,
        window_ms(q.match_window_s),
    )
    .await
    .map_err(|e| from_status(report_status(e)))?;
    let mut body = serde_json::to_value(&report).map_err(|e| {
        tracing::error!(error = %e, "ratio report does not serialise");
        ApiError::Unavailable("cannot render the report".into())
    })?;
    body["shortfalls"] = serde_json::json!(report.shortfalls());
    Ok(Json(body))
}

async fn clean_passages(
    State(st): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CleanQuery>,
) -> ApiResult<impl IntoResponse> {
    use crate::clean::reconcile::MatchStatus;
    use crate::grpc::clean_svc::{period, report_status, scope_enterprise, window_ms, Action};
    scope_enterprise(&*st.store, &who.caller, &id, Action::Read).await.map_err(from_status)?;
    let p = period(&q.period, q.from_ms, q.to_ms).map_err(from_status)?;
    let limit = match q.page_size {
        0 => 1000,
        n => n.min(10_000) as usize,
    };
    let (mut passages, mut truncated) = (Vec::new(), false);
    crate::clean::report::for_each_reconciled(
        &*st.store,
        &*st.registry,
        &id,
        p.from_ms,
        p.to_ms,
        window_ms(q.match_window_s),
        |x| {
            if q.problems_only && x.status == MatchStatus::Matched && !x.stage_mismatch {
                return;
            }
            if passages.len() < limit {
                passages.push(x);
            } else {
                truncated = true;
            }
        },
    )
    .await
    .map_err(|e| from_status(report_status(e)))?;
    Ok(Json(serde_json::json!({ "passages": passages, "truncated": truncated })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_route_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = doc["paths"].as_object().expect("paths");
        let table = routes();
        for r in &table {
            let op = &paths.get(r.path).unwrap_or_else(|| panic!("{} missing from openapi.json", r.path))
                [r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing from openapi.json", r.method, r.path);
            let secured = op.get("security").is_none_or(|s| s.as_array().is_none_or(|a| !a.is_empty()));
            assert_eq!(
                secured, !r.open,
                "{} {}: security in the document disagrees with the code",
                r.method, r.path
            );
        }
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys().filter(|k| *k != "parameters") {
                assert!(
                    table.iter().any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                    "openapi.json documents {method} {path}, which the router does not serve"
                );
            }
        }
    }
}
