//! What zone and exemption imports share: the strict/lenient choice and how a rejected entry is
//! named.
use std::fmt;

/// How an import treats a bad entry.
///
/// `Strict` (recommended for production reloads): any bad entry fails the whole import and the
/// running zone set stays as it was. A silently dropped restriction zone means missed enforcement,
/// and a partial file swapped in for a complete one would REMOVE zones. `Lenient` loads the good
/// entries and returns the rejected ones alongside (for previews and data-cleaning tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    #[default]
    Strict,
    Lenient,
}

/// Position of an entry in the input: its 0-based index and, when it has one, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub index: usize,
    pub id: Option<String>,
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "#{} (id {id:?})", self.index),
            None => write!(f, "#{} (no id)", self.index),
        }
    }
}

/// A rejected entry of a non-geometric import (exemptions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {at}: {reason}")]
pub struct RecordError {
    pub at: RecordRef,
    pub reason: String,
}
