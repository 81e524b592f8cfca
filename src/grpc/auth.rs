//! gRPC side of access control: a tower layer authenticates every call before it reaches a
//! service and leaves the `Principal` in the request extensions; handlers ask
//! `Caller::from_request` and the `Caller` scope questions (`crate::auth`).
use crate::auth::{ApiError, Authenticator};
pub use crate::auth::{Caller, Principal};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::{Request, Status};

impl Caller {
    /// The authenticated caller. Fails closed: a service mounted without `AuthLayer` refuses
    /// every call instead of serving it anonymously.
    pub fn from_request<T>(req: &Request<T>) -> Result<Caller, Status> {
        Ok(Principal::from_request(req)?.caller)
    }
}

impl Principal {
    pub fn from_request<T>(req: &Request<T>) -> Result<Principal, Status> {
        req.extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing credentials"))
    }
}

/// Services anyone may call: load balancers and tooling probe them without credentials.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<HttpRequest> for AuthService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        // The clone is not ready; the ready one (self.inner) serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            if !is_open(req.uri().path()) {
                match auth.authenticate(req.headers()).await {
                    Ok(p) => {
                        req.extensions_mut().insert(p);
                    }
                    Err(e) => return Ok(Status::from(e).into_http()),
                }
            }
            inner.call(req).await
        })
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
        }
    }
}
