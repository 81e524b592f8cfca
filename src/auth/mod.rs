//! Who is calling and what they may see: bearer-token authentication shared by gRPC and HTTP,
//! the scoped `Caller` every handler consults, and token administration.
//!
//! A token is 32 random bytes shown once at creation; the store keeps its BLAKE3 hash under a
//! short public id. Roles: admin (everything), police (a city or county: violations that
//! happened there), enterprise (its own vehicles), terminal (telemetry for its VINs).
mod desk;

pub use desk::{CreatedToken, TokenDesk, TokenInfo, TokenSpec};

use crate::model::{now_ms, ApiToken, AuditAction, AuditEntry, Jurisdiction, Role, Vehicle, Vin, Violation};
use crate::registry::Registry;
use crate::store::{Store, StoreError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a request was refused or failed; each transport maps it to its own status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn denied(what: impl Into<String>) -> Self {
        ApiError::PermissionDenied(what.into())
    }

    pub fn invalid(what: impl Into<String>) -> Self {
        ApiError::InvalidArgument(what.into())
    }
}

impl From<StoreError> for ApiError {
    /// Store failures are the server's problem, never the caller's: logged in full, reported briefly.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => ApiError::invalid("invalid page_token"),
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            other => {
                tracing::error!(error = %other, "store error while serving a request");
                metrics::counter!("smogwatch_store_read_failures_total").increment(1);
                ApiError::Unavailable("storage unavailable".into())
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Require a bearer token on every API call (health, metrics and the API descriptions stay
    /// open). Off only for local development: every caller is then an administrator.
    pub enabled: bool,
    /// How long a verified token is trusted without reading the store again; a token revoked on
    /// another node stops working after at most this long.
    pub cache_ttl_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { enabled: true, cache_ttl_s: 30 }
    }
}

/// What the caller may see and do; every handler asks it before touching data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Everything. Also what trusted internal transports act as.
    Admin,
    Police(Jurisdiction),
    Enterprise(String),
    Terminal(Arc<BTreeSet<Vin>>),
}

impl Caller {
    pub fn from_role(role: &Role) -> Caller {
        match role {
            Role::Admin => Caller::Admin,
            Role::Police(j) => Caller::Police(j.clone()),
            Role::Enterprise(e) => Caller::Enterprise(e.clone()),
            Role::Terminal(vins) => Caller::Terminal(Arc::new(vins.iter().copied().collect())),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            _ => Err(ApiError::denied("this needs an admin token")),
        }
    }

    /// Telemetry ingest: administrators (forwarding platforms) and terminals.
    pub fn require_ingest(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin | Caller::Terminal(_) => Ok(()),
            _ => Err(ApiError::denied("only terminal and admin tokens may send telemetry")),
        }
    }

    /// Whether ingest may carry records of this VIN (others are rejected per record).
    pub fn may_send_for(&self, vin: &Vin) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Terminal(vins) => vins.contains(vin),
            _ => false,
        }
    }

    /// Violation queries, evidence, exports and alerts.
    pub fn require_violation_reader(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin | Caller::Police(_) | Caller::Enterprise(_) => Ok(()),
            Caller::Terminal(_) => Err(ApiError::denied("terminal tokens may only send telemetry")),
        }
    }

    /// Confirming or dismissing violations is police work.
    pub fn require_reviewer(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin | Caller::Police(_) => Ok(()),
            _ => Err(ApiError::denied("only police and admin tokens may review violations")),
        }
    }

    /// Registry entries: police read any vehicle (to identify what drives through), an
    /// enterprise its own, a terminal the vehicles it reports for.
    pub fn may_see_vehicle(&self, v: &Vehicle) -> bool {
        match self {
            Caller::Admin | Caller::Police(_) => true,
            Caller::Enterprise(e) => &v.owner_enterprise_id == e,
            Caller::Terminal(vins) => v.vin.is_some_and(|vin| vins.contains(&vin)),
        }
    }

    pub fn may_see_enterprise(&self, id: &str) -> bool {
        match self {
            Caller::Admin | Caller::Police(_) => true,
            Caller::Enterprise(e) => e == id,
            Caller::Terminal(_) => false,
        }
    }

    /// Police see what happened in their jurisdiction; an enterprise what its vehicles did.
    pub fn may_see_violation(&self, v: &Violation, registry: &Registry) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Police(j) => j.covers(v),
            Caller::Enterprise(e) => registry.get(&v.vin).is_some_and(|veh| &veh.owner_enterprise_id == e),
            Caller::Terminal(_) => false,
        }
    }
}

/// An authenticated caller and the credential it used (for the audit log).
#[derive(Debug, Clone)]
pub struct Principal {
    pub caller: Caller,
    pub token_id: String,
    pub label: String,
}

impl Principal {
    /// The caller when authentication is switched off.
    pub fn unauthenticated_admin() -> Principal {
        Principal { caller: Caller::Admin, token_id: "-".into(), label: "auth disabled".into() }
    }

    /// How the audit log names this caller: token id and label, never the secret.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.token_id, self.label)
    }
}

/// Bounds the token cache so that a flood of distinct valid tokens cannot grow memory.
const MAX_CACHED_TOKENS: usize = 10_000;

/// Verifies bearer tokens against the store, with a short-lived cache so that a request does
/// not cost a store read.
pub struct Authenticator {
    store: Arc<dyn Store>,
    enabled: bool,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, cfg: &AuthConfig) -> Self {
        Authenticator {
            store,
            enabled: cfg.enabled,
            ttl: Duration::from_secs(cfg.cache_ttl_s),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Checks the `authorization: Bearer <token>` header (gRPC metadata is the same header).
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, ApiError> {
        if !self.enabled {
            return Ok(Principal::unauthenticated_admin());
        }
        let secret = bearer(headers)?;
        let (hash, id) = ApiToken::hash_secret(secret);
        if let Some((p, at)) = self.cache.lock().get(&hash) {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let token = self.store.token(&id).await.map_err(ApiError::from)?;
        let token = token
            .filter(|t| t.hash == hash && t.is_active())
            .ok_or_else(|| ApiError::Unauthenticated("unknown or revoked token".into()))?;
        let p = Principal { caller: Caller::from_role(&token.role), token_id: token.id, label: token.label };
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.clear();
        }
        cache.insert(hash, (p.clone(), Instant::now()));
        Ok(p)
    }

    /// Drops a token from the cache (after a revocation on this node).
    pub fn forget(&self, token_id: &str) {
        self.cache.lock().retain(|_, (p, _)| p.token_id != token_id);
    }

    /// Whether the credential a long-lived call was opened with is still good (read from the
    /// store, so a revocation on any node counts). The caller with authentication off is.
    pub async fn still_valid(&self, p: &Principal) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        match self.store.token(&p.token_id).await.map_err(ApiError::from)? {
            Some(t) if t.is_active() => Ok(()),
            _ => Err(ApiError::Unauthenticated("token revoked while the stream was open".into())),
        }
    }

    /// Resolves when `p`'s credential is revoked, checked once per cache TTL (at least every
    /// second): open streams (ingest, watch, SSE) select on it and end, so a revoked token
    /// stops working on them as soon as it would on a new call. A store error keeps the stream
    /// (logged): a blip in the store must not cut every client off.
    pub async fn lapsed(self: Arc<Self>, p: Principal) -> ApiError {
        let period = self.ttl.max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(period).await;
            match self.still_valid(&p).await {
                Ok(()) => {}
                Err(e @ ApiError::Unauthenticated(_)) => {
                    metrics::counter!("smogwatch_streams_ended_total", "reason" => "revoked").increment(1);
                    tracing::info!(token = %p.token_id, label = %p.label, "credential revoked; ending its open stream");
                    return e;
                }
                Err(e) => {
                    tracing::warn!(token = %p.token_id, error = %e, "cannot re-check a stream's credential")
                }
            }
        }
    }
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, ApiError> {
    let missing =
        || ApiError::Unauthenticated("missing credentials: send `authorization: Bearer <token>`".into());
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

#[derive(Debug, thiserror::Error)]
pub enum TokenAdminError {
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("no token with id {0}")]
    NoSuchToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a token, records the creation in the audit log and returns the secret (shown once).
pub async fn create_token(
    store: &dyn Store,
    role: Role,
    label: String,
    actor: &str,
) -> Result<(ApiToken, String), TokenAdminError> {
    let now = now_ms();
    let (token, secret) =
        ApiToken::generate(role, label, now).map_err(|e| TokenAdminError::Random(e.to_string()))?;
    store.put_token(token.clone()).await?;
    store
        .append_audit(AuditEntry {
            seq: 0,
            at_ms: now,
            actor: actor.to_string(),
            action: AuditAction::TokenCreate,
            target: token.id.clone(),
            detail: serde_json::json!({
                "role": token.role.name(), "scope": token.role.scope(), "label": token.label,
            }),
        })
        .await?;
    Ok((token, secret))
}

/// Revokes a token (kept, marked revoked, so that the audit log still resolves its id).
pub async fn revoke_token(store: &dyn Store, id: &str, actor: &str) -> Result<ApiToken, TokenAdminError> {
    let mut token = store.token(id).await?.ok_or_else(|| TokenAdminError::NoSuchToken(id.to_string()))?;
    if token.revoked_ms.is_none() {
        let now = now_ms();
        token.revoked_ms = Some(now);
        store.put_token(token.clone()).await?;
        store
            .append_audit(AuditEntry {
                seq: 0,
                at_ms: now,
                actor: actor.to_string(),
                action: AuditAction::TokenRevoke,
                target: token.id.clone(),
                detail: serde_json::json!({ "label": token.label }),
            })
            .await?;
    }
    Ok(token)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleSpecError {
    #[error("unknown role {0:?}: admin, police, enterprise or terminal")]
    UnknownRole(String),
    #[error("{0}")]
    Area(#[from] crate::model::AreaCodeError),
    #[error("a police token needs exactly one of --city or --county")]
    PoliceScope,
    #[error("an enterprise token needs --enterprise")]
    EnterpriseScope,
    #[error("a terminal token needs at least one --vin")]
    TerminalScope,
    #[error("invalid VIN: {0}")]
    Vin(#[from] crate::model::VinError),
    #[error("--{option} does not apply to the {role} role")]
    Extra { option: &'static str, role: &'static str },
}

/// Builds a role from command-line style parts, refusing scopes that do not fit the role (a
/// police token with an enterprise would be a misunderstanding, not a wider scope).
pub fn role_from_parts(
    role: &str,
    city: Option<&str>,
    county: Option<&str>,
    enterprise: Option<&str>,
    vins: &[String],
) -> Result<Role, RoleSpecError> {
    let built = match role {
        "admin" => Role::Admin,
        "police" => match (city, county) {
            (Some(c), None) => Role::Police(Jurisdiction::city(c)?),
            (None, Some(k)) => Role::Police(Jurisdiction::county(k)?),
            _ => return Err(RoleSpecError::PoliceScope),
        },
        "enterprise" => match enterprise.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => Role::Enterprise(e.to_string()),
            None => return Err(RoleSpecError::EnterpriseScope),
        },
        "terminal" if vins.is_empty() => return Err(RoleSpecError::TerminalScope),
        "terminal" => Role::Terminal(vins.iter().map(|v| Vin::parse(v)).collect::<Result<_, _>>()?),
        other => return Err(RoleSpecError::UnknownRole(other.to_string())),
    };
    let name = built.name();
    let extra = |option| RoleSpecError::Extra { option, role: name };
    if (city.is_some() || county.is_some()) && name != "police" {
        return Err(extra(if city.is_some() { "city" } else { "county" }));
    }
    if enterprise.is_some() && name != "enterprise" {
        return Err(extra("enterprise"));
    }
    if !vins.is_empty() && name != "terminal" {
        return Err(extra("vin"));
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn headers(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn tokens_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let role = Role::Police(Jurisdiction::city("330100").unwrap());
        let (token, secret) = create_token(&*store, role, "desk 3".into(), "cli").await.unwrap();
        let auth = Authenticator::new(store.clone(), &AuthConfig { enabled: true, cache_ttl_s: 0 });
        let p = auth.authenticate(&headers(&format!("Bearer {secret}"))).await.unwrap();
        assert_eq!(p.caller, Caller::Police(Jurisdiction::City("330100".into())));
        assert_eq!(p.actor(), format!("{} (desk 3)", token.id));
        assert!(auth.authenticate(&headers(&format!("bearer  {secret} "))).await.is_ok());
        for bad in ["", "Bearer", "Basic abc", "Bearer swt_00"] {
            let r = auth.authenticate(&headers(bad)).await;
            assert!(matches!(r, Err(ApiError::Unauthenticated(_))), "{bad:?}: {r:?}");
        }
        assert!(matches!(
            auth.authenticate(&http::HeaderMap::new()).await,
            Err(ApiError::Unauthenticated(_))
        ));
        revoke_token(&*store, &token.id, "cli").await.unwrap();
        auth.forget(&token.id);
        assert!(auth.authenticate(&headers(&format!("Bearer {secret}"))).await.is_err());
        let log = store.audit_log(None, 10).await.unwrap();
        assert_eq!(
            log.iter().map(|e| e.action).collect::<Vec<_>>(),
            vec![AuditAction::TokenRevoke, AuditAction::TokenCreate]
        );
        assert!(!serde_json::to_string(&log).unwrap().contains(&secret));
    }

    #[test]
    fn roles_from_parts() {
        let police = role_from_parts("police", Some("330100"), None, None, &[]).unwrap();
        assert_eq!(police, Role::Police(Jurisdiction::City("330100".into())));
        assert!(role_from_parts("police", None, None, None, &[]).is_err());
        assert!(role_from_parts("police", Some("330100"), Some("330106"), None, &[]).is_err());
        assert!(role_from_parts("admin", Some("330100"), None, None, &[]).is_err());
        assert!(role_from_parts("enterprise", None, None, Some(" "), &[]).is_err());
        let vins = vec!["LZZ5BLSJ3DA000001".to_string()];
        assert!(
            matches!(role_from_parts("terminal", None, None, None, &vins), Ok(Role::Terminal(v)) if v.len() == 1)
        );
        assert!(role_from_parts("root", None, None, None, &[]).is_err());
    }

    #[tokio::test]
    async fn disabled_auth_makes_everyone_admin() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let auth = Authenticator::new(store, &AuthConfig { enabled: false, cache_ttl_s: 30 });
        assert_eq!(auth.authenticate(&http::HeaderMap::new()).await.unwrap().caller, Caller::Admin);
    }
}
