//! Token administration while the server runs (gRPC `Admin` and `/v1/tokens`), for admins only.
//!
//! The CLI's `token` commands open the store file directly, which the embedded store allows only
//! while the server is stopped; this desk is how a running deployment issues and revokes
//! credentials. Every change is in the audit log under the acting token.
//!
//! Revocation takes effect on this node at once (its cache entry is dropped). Another node
//! sharing a ScyllaDB store keeps accepting the token until its cache entry expires
//! (`auth.cache_ttl_s`).
use super::{
    create_token, revoke_token, role_from_parts, ApiError, Authenticator, Principal, TokenAdminError,
};
use crate::model::{ApiToken, Role};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a token is for, in the words of the CLI (`role_from_parts`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenSpec {
    /// admin, police, enterprise or terminal.
    pub role: String,
    /// Police: a city code (330100) or a county code, not both.
    pub city: Option<String>,
    pub county: Option<String>,
    /// Enterprise: its id.
    pub enterprise: Option<String>,
    /// Terminal: the VINs it may send for.
    pub vins: Vec<String>,
    /// Who holds it ("Hangzhou traffic police, desk 3"). Required: a revocation must name a holder.
    pub label: String,
}

/// A token as administrators see it: never the secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub role: String,
    pub scope: String,
    pub label: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl From<&ApiToken> for TokenInfo {
    fn from(t: &ApiToken) -> Self {
        TokenInfo {
            id: t.id.clone(),
            role: t.role.name().to_string(),
            scope: t.role.scope(),
            label: t.label.clone(),
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
        }
    }
}

/// A new token and its secret, which is shown here once and stored nowhere.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: String,
}

/// Longest label accepted (it is shown in listings and the audit log).
const MAX_LABEL: usize = 200;

#[derive(Clone)]
pub struct TokenDesk {
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    /// Revocations one at a time on this node, so that two admins revoking each other's
    /// tokens at once cannot both pass the last-admin check.
    revoking: Arc<tokio::sync::Mutex<()>>,
}

impl TokenDesk {
    pub fn new(store: Arc<dyn Store>, auth: Arc<Authenticator>) -> Self {
        TokenDesk { store, auth, revoking: Arc::default() }
    }

    pub async fn create(&self, who: &Principal, spec: TokenSpec) -> Result<CreatedToken, ApiError> {
        who.caller.require_admin()?;
        let label = spec.label.trim();
        if label.is_empty() || label.chars().count() > MAX_LABEL {
            return Err(ApiError::invalid(format!("label must be 1 to {MAX_LABEL} characters")));
        }
        let role = role_from_parts(
            spec.role.trim(),
            non_empty(&spec.city),
            non_empty(&spec.county),
            non_empty(&spec.enterprise),
            &spec.vins,
        )
        .map_err(|e| ApiError::invalid(e.to_string()))?;
        let (token, secret) =
            create_token(&*self.store, role, label.to_string(), &who.actor()).await.map_err(admin_error)?;
        tracing::info!(id = %token.id, role = token.role.name(), actor = %who.actor(), "token created");
        metrics::counter!("smogwatch_tokens_created_total").increment(1);
        Ok(CreatedToken { token: TokenInfo::from(&token), secret })
    }

    /// Every token, oldest first.
    pub async fn list(&self, who: &Principal) -> Result<Vec<TokenInfo>, ApiError> {
        who.caller.require_admin()?;
        let mut tokens = self.store.tokens().await?;
        tokens.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(tokens.iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token (idempotent: revoking a revoked token changes nothing).
    pub async fn revoke(&self, who: &Principal, id: &str) -> Result<TokenInfo, ApiError> {
        who.caller.require_admin()?;
        let id = id.trim();
        if id.is_empty() {
            return Err(ApiError::invalid("token id is empty"));
        }
        let _one_at_a_time = self.revoking.lock().await;
        let target = self
            .store
            .token(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no token with id {id}")))?;
        if target.is_active() && target.role == Role::Admin {
            let admins =
                self.store.tokens().await?.iter().filter(|t| t.is_active() && t.role == Role::Admin).count();
            if admins <= 1 {
                metrics::counter!("smogwatch_token_revocations_refused_total").increment(1);
                tracing::warn!(id = %target.id, actor = %who.actor(), "refused to revoke the last active admin token");
                return Err(ApiError::invalid(
                    "refusing to revoke the last active admin token: nobody could administer the server; create another admin token first",
                ));
            }
        }
        let token = revoke_token(&*self.store, id, &who.actor()).await.map_err(admin_error)?;
        self.auth.forget(&token.id);
        tracing::info!(id = %token.id, actor = %who.actor(), "token revoked");
        metrics::counter!("smogwatch_tokens_revoked_total").increment(1);
        Ok(TokenInfo::from(&token))
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn admin_error(e: TokenAdminError) -> ApiError {
    match e {
        TokenAdminError::NoSuchToken(id) => ApiError::NotFound(format!("no token with id {id}")),
        TokenAdminError::Store(e) => e.into(),
        TokenAdminError::Random(e) => {
            tracing::error!(error = %e, "no randomness for a new token");
            ApiError::Unavailable("cannot generate a token now".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthConfig;
    use crate::auth::Caller;
    use crate::store::embedded::EmbeddedStore;

    fn principal(caller: Caller) -> Principal {
        Principal { caller, token_id: "t0".into(), label: "test".into() }
    }

    async fn desk() -> (TokenDesk, Arc<Authenticator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cfg = AuthConfig { enabled: true, ..AuthConfig::default() };
        let auth = Arc::new(Authenticator::new(store.clone(), &cfg));
        (TokenDesk::new(store, auth.clone()), auth, dir)
    }

    fn bearer(secret: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {secret}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn create_use_list_revoke() {
        let (desk, auth, _dir) = desk().await;
        let admin = principal(Caller::Admin);
        let spec = TokenSpec {
            role: "police".into(),
            city: Some("330100".into()),
            label: "Hangzhou desk 3".into(),
            ..TokenSpec::default()
        };
        let created = desk.create(&admin, spec).await.unwrap();
        assert_eq!((created.token.role.as_str(), created.token.scope.as_str()), ("police", "city 330100"));
        let p = auth.authenticate(&bearer(&created.secret)).await.unwrap();
        assert_eq!(p.token_id, created.token.id);
        let listed = desk.list(&admin).await.unwrap();
        assert_eq!(listed, vec![created.token.clone()]);
        let revoked = desk.revoke(&admin, &created.token.id).await.unwrap();
        assert!(revoked.revoked_ms.is_some());
        // Refused at once, although the authenticator had cached it.
        assert!(matches!(
            auth.authenticate(&bearer(&created.secret)).await,
            Err(ApiError::Unauthenticated(_))
        ));
        assert_eq!(desk.revoke(&admin, &created.token.id).await.unwrap(), revoked, "idempotent");
        assert!(matches!(desk.revoke(&admin, "0000000000000000").await, Err(ApiError::NotFound(_))));
    }

    #[tokio::test]
    async fn the_last_admin_token_cannot_be_revoked() {
        let (desk, _auth, _dir) = desk().await;
        let admin = principal(Caller::Admin);
        let spec = || TokenSpec { role: "admin".into(), label: "ops".into(), ..TokenSpec::default() };
        let first = desk.create(&admin, spec()).await.unwrap().token;
        match desk.revoke(&admin, &first.id).await {
            Err(ApiError::InvalidArgument(m)) => assert!(m.contains("last active admin"), "{m}"),
            other => panic!("{other:?}"),
        }
        let second = desk.create(&admin, spec()).await.unwrap().token;
        assert!(desk.revoke(&admin, &first.id).await.unwrap().revoked_ms.is_some(), "another admin remains");
        assert!(matches!(desk.revoke(&admin, &second.id).await, Err(ApiError::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn only_admins_and_only_sensible_specs() {
        let (desk, _auth, _dir) = desk().await;
        let firm = principal(Caller::from_role(&crate::model::Role::Enterprise("E1".into())));
        let spec = TokenSpec { role: "admin".into(), label: "x".into(), ..TokenSpec::default() };
        assert!(matches!(desk.create(&firm, spec).await, Err(ApiError::PermissionDenied(_))));
        assert!(matches!(desk.list(&firm).await, Err(ApiError::PermissionDenied(_))));
        assert!(matches!(desk.revoke(&firm, "abc").await, Err(ApiError::PermissionDenied(_))));
        let admin = principal(Caller::Admin);
        for (spec, why) in [
            (
                TokenSpec { role: "police".into(), label: "x".into(), ..TokenSpec::default() },
                "police without area",
            ),
            (TokenSpec { role: "root".into(), label: "x".into(), ..TokenSpec::default() }, "unknown role"),
            (TokenSpec { role: "admin".into(), label: " ".into(), ..TokenSpec::default() }, "no label"),
            (
                TokenSpec {
                    role: "admin".into(),
                    enterprise: Some("E1".into()),
                    label: "x".into(),
                    ..TokenSpec::default()
                },
                "scope that does not fit the role",
            ),
            (
                TokenSpec {
                    role: "terminal".into(),
                    vins: vec!["nope".into()],
                    label: "x".into(),
                    ..TokenSpec::default()
                },
                "bad VIN",
            ),
        ] {
            assert!(matches!(desk.create(&admin, spec).await, Err(ApiError::InvalidArgument(_))), "{why}");
        }
        assert!(desk.list(&admin).await.unwrap().is_empty(), "nothing was created");
    }
}
