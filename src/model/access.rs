//! Credentials and what they may see. A token carries one role; a role carries its scope.
use super::{TimestampMs, Vin, Violation};
use serde::{Deserialize, Serialize};

/// A GB/T 2260 administrative area that police are responsible for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jurisdiction {
    /// Prefecture-level city, e.g. "330100" (Hangzhou): includes all its counties and districts.
    City(String),
    /// County or district, e.g. "330106" (Xihu).
    County(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaCodeError {
    #[error("area code {0:?} must be 6 digits (GB/T 2260)")]
    Format(String),
    #[error("{0} is not a city code (a city code ends in 00 and is not a province)")]
    NotCity(String),
    #[error("{0} is not a county code (a city or province code ends in 00)")]
    NotCounty(String),
}

fn check_code(code: &str) -> Result<(), AreaCodeError> {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(AreaCodeError::Format(code.to_string()))
    }
}

/// The city a county belongs to: GB/T 2260 codes share the first four digits.
pub fn city_of_county(county: &str) -> Option<String> {
    county.get(..4).map(|p| format!("{p}00"))
}

/// The city a violation happened in: its city code, else derived from its county code, so that
/// an index and a filter agree even when a detector only knew the county.
pub fn violation_city(v: &Violation) -> Option<String> {
    v.city_code
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| v.county_code.as_deref().and_then(city_of_county))
}

impl Jurisdiction {
    pub fn city(code: &str) -> Result<Self, AreaCodeError> {
        check_code(code)?;
        if !code.ends_with("00") || code.ends_with("0000") {
            return Err(AreaCodeError::NotCity(code.to_string()));
        }
        Ok(Jurisdiction::City(code.to_string()))
    }

    pub fn county(code: &str) -> Result<Self, AreaCodeError> {
        check_code(code)?;
        if code.ends_with("00") {
            return Err(AreaCodeError::NotCounty(code.to_string()));
        }
        Ok(Jurisdiction::County(code.to_string()))
    }

    /// A violation is in this jurisdiction when it happened there.
    pub fn covers(&self, v: &Violation) -> bool {
        match self {
            Jurisdiction::City(c) => violation_city(v).as_deref() == Some(c.as_str()),
            Jurisdiction::County(k) => v.county_code.as_deref() == Some(k.as_str()),
        }
    }

    /// The city this jurisdiction lies in.
    pub fn city_code(&self) -> Option<String> {
        match self {
            Jurisdiction::City(c) => Some(c.clone()),
            Jurisdiction::County(k) => city_of_county(k),
        }
    }
}

impl std::fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Jurisdiction::City(c) => write!(f, "city {c}"),
            Jurisdiction::County(k) => write!(f, "county {k}"),
        }
    }
}

/// What a credential may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including registry changes, tokens and the audit log.
    Admin,
    /// Traffic police: violations (and their evidence) that happened in the jurisdiction.
    Police(Jurisdiction),
    /// An enterprise: its own vehicles (by `Vehicle::owner_enterprise_id`) and their violations.
    Enterprise(String),
    /// A vehicle terminal or forwarding platform: may send telemetry for these VINs only.
    Terminal(Vec<Vin>),
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Police(_) => "police",
            Role::Enterprise(_) => "enterprise",
            Role::Terminal(_) => "terminal",
        }
    }

    /// The scope in words, for listings and the audit log.
    pub fn scope(&self) -> String {
        match self {
            Role::Admin => "all".into(),
            Role::Police(j) => j.to_string(),
            Role::Enterprise(e) => format!("enterprise {e}"),
            Role::Terminal(vins) => {
                format!("VIN {}", vins.iter().map(Vin::as_str).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// A stored API credential. Only the BLAKE3 hash of the secret is kept: a copy of the store
/// does not let anyone call the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Public handle (the first 16 hex digits of the hash), used to list and revoke.
    pub id: String,
    /// BLAKE3 of the secret, hex.
    pub hash: String,
    pub role: Role,
    /// Who or what holds it ("Hangzhou traffic police, desk 3").
    pub label: String,
    pub created_ms: TimestampMs,
    pub revoked_ms: Option<TimestampMs>,
}

/// Prefix of every secret, so that a leaked token is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "swt_";

impl ApiToken {
    /// The hash of a presented secret, and the id it would be stored under.
    pub fn hash_secret(secret: &str) -> (String, String) {
        let hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
        let id = hash.get(..16).unwrap_or_default().to_string();
        (hash, id)
    }

    /// Makes a new credential from 32 random bytes; returns the stored form and the secret, which
    /// is shown once and never stored.
    pub fn generate(
        role: Role,
        label: String,
        now_ms: TimestampMs,
    ) -> Result<(ApiToken, String), getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let (hash, id) = Self::hash_secret(&secret);
        Ok((ApiToken { id, hash, role, label, created_ms: now_ms, revoked_ms: None }, secret))
    }

    pub fn is_active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked() {
        assert!(Jurisdiction::city("330100").is_ok());
        assert!(Jurisdiction::city("330000").is_err(), "a province is not a city");
        assert!(Jurisdiction::city("330106").is_err());
        assert!(Jurisdiction::city("33010").is_err());
        assert!(Jurisdiction::county("330106").is_ok());
        assert!(Jurisdiction::county("330100").is_err());
        assert_eq!(Jurisdiction::county("330106").unwrap().city_code().as_deref(), Some("330100"));
    }

    #[test]
    fn generated_tokens_hash_to_their_id() {
        let (t, secret) = ApiToken::generate(Role::Admin, "x".into(), 1).unwrap();
        assert!(secret.starts_with(TOKEN_PREFIX));
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        let (hash, id) = ApiToken::hash_secret(&secret);
        assert_eq!((hash, id), (t.hash.clone(), t.id.clone()));
        assert!(!t.hash.contains(&secret[4..]));
        let (t2, s2) = ApiToken::generate(Role::Admin, "x".into(), 1).unwrap();
        assert_ne!(secret, s2);
        assert_ne!(t.id, t2.id);
    }
}
