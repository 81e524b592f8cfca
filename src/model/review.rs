//! Traffic-police review of violations, and the audit trail of everything people do with them.
use super::{TimestampMs, ViolationId};
use serde::{Deserialize, Serialize};

/// What a reviewer decided about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The evidence holds: the violation stands (and may be enforced).
    Confirmed,
    /// A false positive (sensor fault, exemption, wrong vehicle, ...): kept, but not enforced.
    Dismissed,
}

/// Review state as a query filter: a violation nobody reviewed yet is `Unreviewed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Unreviewed,
    Confirmed,
    Dismissed,
}

impl ReviewState {
    pub fn of(review: Option<&ViolationReview>) -> ReviewState {
        match review.map(|r| r.decision) {
            None => ReviewState::Unreviewed,
            Some(ReviewDecision::Confirmed) => ReviewState::Confirmed,
            Some(ReviewDecision::Dismissed) => ReviewState::Dismissed,
        }
    }

    pub fn parse(s: &str) -> Option<ReviewState> {
        match s {
            "unreviewed" => Some(ReviewState::Unreviewed),
            "confirmed" => Some(ReviewState::Confirmed),
            "dismissed" => Some(ReviewState::Dismissed),
            _ => None,
        }
    }
}

/// The latest decision on a violation. Stored apart from the violation itself because detection
/// rewrites the violation snapshot (open → closed) and must never erase a decision; the history
/// of decisions lives in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationReview {
    pub violation_id: ViolationId,
    pub decision: ReviewDecision,
    pub reason: String,
    /// Who decided: the credential's id and label.
    pub reviewer: String,
    pub at_ms: TimestampMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Review,
    Export,
    TokenCreate,
    TokenRevoke,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Review => "review",
            AuditAction::Export => "export",
            AuditAction::TokenCreate => "token_create",
            AuditAction::TokenRevoke => "token_revoke",
        }
    }
}

/// One line of the audit log: who did what, when, to what. Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store on append, increasing; 0 before that.
    pub seq: u64,
    pub at_ms: TimestampMs,
    /// The credential that acted: token id and label (never the token itself).
    pub actor: String,
    pub action: AuditAction,
    /// What it acted on: a violation id, a token id, or the export's format.
    pub target: String,
    /// Action-specific facts: the decision and reason, the export's filter and row count, ...
    pub detail: serde_json::Value,
}
