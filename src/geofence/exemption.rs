//! Exemptions (通行证 / permits): a named vehicle may be inside a restriction zone during the
//! permit's validity. Looked up by VIN or by plate, because permits are issued to plates and the
//! registry may not yet link every plate to a VIN.
//!
//! # JSON file format (`data/zones/sample-exemptions.json`)
//!
//! A JSON array of objects:
//!
//! | field         | type              | meaning                                                      |
//! |---------------|-------------------|--------------------------------------------------------------|
//! | `id`          | string, required  | permit number, unique in the file                             |
//! | `vin`         | string            | exempted VIN; exactly one of `vin` / `plate`                  |
//! | `plate`       | string            | exempted plate, e.g. "浙A12345" (spaces, `·`, `-` ignored)     |
//! | `zone_id`     | string or null    | the zone the permit is for; null or absent = every zone      |
//! | `valid_from`  | string, required  | "YYYY-MM-DD" (00:00 Beijing) or RFC 3339 instant              |
//! | `valid_until` | string, required  | "YYYY-MM-DD" = through the END of that day, or RFC 3339 (exclusive) |
//! | `reason`      | string            | free text (issuing authority, purpose)                       |
use super::import::{ImportMode, RecordError, RecordRef};
use super::schedule::{local_midnight_ms, DAY_MS};
use crate::model::{TimestampMs, Vehicle, Vin};
use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemptionSubject {
    Vin(Vin),
    /// Normalised with [`normalize_plate`].
    Plate(String),
}

/// One permit. Validity is the half-open interval `[valid_from_ms, valid_until_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemption {
    pub id: String,
    pub subject: ExemptionSubject,
    /// `None`: valid in every zone.
    pub zone_id: Option<String>,
    pub valid_from_ms: TimestampMs,
    pub valid_until_ms: TimestampMs,
    pub reason: String,
}

impl Exemption {
    pub fn covers(&self, zone_id: &str, at_ms: TimestampMs) -> bool {
        (self.valid_from_ms..self.valid_until_ms).contains(&at_ms)
            && self.zone_id.as_deref().is_none_or(|z| z == zone_id)
    }
}

/// Plates are written with or without the separator dot and with mixed case by different
/// systems ("浙A·12345", "浙a 12345"); compare them in one canonical form.
pub fn normalize_plate(p: &str) -> String {
    p.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '-' | '•' | '.'))
        .flat_map(char::to_uppercase)
        .collect()
}

/// All exemptions, indexed by subject for a constant-time lookup per record.
#[derive(Debug, Clone, Default)]
pub struct ExemptionBook {
    by_vin: HashMap<Vin, Vec<Exemption>>,
    by_plate: HashMap<String, Vec<Exemption>>,
    len: usize,
}

impl ExemptionBook {
    pub fn new(exemptions: impl IntoIterator<Item = Exemption>) -> Self {
        let mut book = ExemptionBook::default();
        for e in exemptions {
            book.len += 1;
            match &e.subject {
                ExemptionSubject::Vin(v) => book.by_vin.entry(*v).or_default().push(e),
                ExemptionSubject::Plate(p) => book.by_plate.entry(normalize_plate(p)).or_default().push(e),
            }
        }
        book
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The permit that exempts `vehicle` from `zone_id` at `at_ms`, if any.
    pub fn find(&self, vehicle: &Vehicle, zone_id: &str, at_ms: TimestampMs) -> Option<&Exemption> {
        let by_vin = vehicle.vin.as_ref().and_then(|v| self.by_vin.get(v)).into_iter().flatten();
        let by_plate = if self.by_plate.is_empty() || vehicle.plate.is_empty() {
            None
        } else {
            self.by_plate.get(&normalize_plate(&vehicle.plate))
        };
        by_vin.chain(by_plate.into_iter().flatten()).find(|e| e.covers(zone_id, at_ms))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExemption {
    id: String,
    #[serde(default)]
    vin: Option<String>,
    #[serde(default)]
    plate: Option<String>,
    #[serde(default)]
    zone_id: Option<String>,
    valid_from: String,
    valid_until: String,
    #[serde(default)]
    reason: String,
}

/// A date means local midnight (start of that day, or for `until` the start of the next day);
/// an RFC 3339 string means that instant.
fn parse_instant(s: &str, end_of_day: bool) -> Result<TimestampMs, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(local_midnight_ms(d) + if end_of_day { DAY_MS } else { 0 });
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

fn convert(raw: RawExemption) -> Result<Exemption, String> {
    if raw.id.trim().is_empty() {
        return Err("empty id".into());
    }
    let subject = match (raw.vin.as_deref(), raw.plate.as_deref()) {
        (Some(v), None) => ExemptionSubject::Vin(Vin::parse(v).map_err(|e| format!("vin: {e}"))?),
        (None, Some(p)) if !normalize_plate(p).is_empty() => ExemptionSubject::Plate(normalize_plate(p)),
        (None, Some(_)) => return Err("empty plate".into()),
        _ => return Err("exactly one of \"vin\" and \"plate\" is required".into()),
    };
    let valid_from_ms = parse_instant(&raw.valid_from, false).map_err(|e| format!("valid_from: {e}"))?;
    let valid_until_ms = parse_instant(&raw.valid_until, true).map_err(|e| format!("valid_until: {e}"))?;
    if valid_until_ms <= valid_from_ms {
        return Err("valid_until is not after valid_from".into());
    }
    Ok(Exemption {
        id: raw.id,
        subject,
        zone_id: raw.zone_id.filter(|z| !z.is_empty()),
        valid_from_ms,
        valid_until_ms,
        reason: raw.reason,
    })
}

/// Result of reading an exemptions file: the accepted permits and, in lenient mode, the rejected
/// entries (in strict mode any rejected entry fails the whole import).
#[derive(Debug, Clone, Default)]
pub struct ExemptionImport {
    pub exemptions: Vec<Exemption>,
    pub rejected: Vec<RecordError>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExemptionImportError {
    #[error("exemptions file is not a JSON array: {0}")]
    Json(String),
    #[error("{} exemption(s) rejected, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Rejected(Vec<RecordError>),
}

/// Parses the JSON exemptions file described in the module documentation.
pub fn import_exemptions(text: &str, mode: ImportMode) -> Result<ExemptionImport, ExemptionImportError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| ExemptionImportError::Json(e.to_string()))?;
    let mut out = ExemptionImport::default();
    let mut seen = std::collections::HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let id = item.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let at = RecordRef { index, id };
        let parsed = serde_json::from_value::<RawExemption>(item)
            .map_err(|e| e.to_string())
            .and_then(convert)
            .and_then(|e| if seen.insert(e.id.clone()) { Ok(e) } else { Err("duplicate id".into()) });
        match parsed {
            Ok(e) => out.exemptions.push(e),
            Err(reason) => out.rejected.push(RecordError { at, reason }),
        }
    }
    if mode == ImportMode::Strict && !out.rejected.is_empty() {
        return Err(ExemptionImportError::Rejected(out.rejected));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Vehicle, Vin};

    const T0: i64 = 1_761_926_400_000; // 2025-11-01T00:00:00+08:00

    fn vehicle() -> Vehicle {
        Vehicle { plate: "浙A·12345".into(), ..Vehicle::new(Vin::parse("LGBH52E07HY000001").unwrap()) }
    }

    #[test]
    fn validity_is_half_open_and_dates_are_whole_days() {
        let j = r#"[
          {"id":"P1","vin":"LGBH52E07HY000001","zone_id":"Z1","valid_from":"2025-11-01","valid_until":"2025-11-30"},
          {"id":"P2","plate":"浙a 12345","valid_from":"2026-01-01T08:00:00+08:00","valid_until":"2026-01-01T09:00:00+08:00"}
        ]"#;
        let imp = import_exemptions(j, ImportMode::Strict).unwrap();
        let book = ExemptionBook::new(imp.exemptions);
        let v = vehicle();
        assert!(book.find(&v, "Z1", T0 - 1).is_none());
        assert_eq!(book.find(&v, "Z1", T0).map(|e| e.id.as_str()), Some("P1"));
        // "until 2025-11-30" covers the whole of that day, Beijing time.
        let dec1 = T0 + 30 * DAY_MS;
        assert!(book.find(&v, "Z1", dec1 - 1).is_some());
        assert!(book.find(&v, "Z1", dec1).is_none());
        assert!(book.find(&v, "Z2", T0).is_none(), "P1 is for Z1 only");
        // P2 is for every zone, matched by plate in another spelling.
        let t = DateTime::parse_from_rfc3339("2026-01-01T08:30:00+08:00").unwrap().timestamp_millis();
        assert_eq!(book.find(&v, "Z9", t).map(|e| e.id.as_str()), Some("P2"));
        assert!(book.find(&v, "Z9", t + 3_600_000).is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let j = r#"[
          {"id":"A","vin":"BAD","valid_from":"2025-01-01","valid_until":"2025-02-01"},
          {"id":"B","vin":"LGBH52E07HY000001","plate":"浙A1","valid_from":"2025-01-01","valid_until":"2025-02-01"},
          {"id":"C","plate":"浙A1","valid_from":"2025-03-01","valid_until":"2025-02-01"},
          {"id":"D","plate":"浙A1","valid_from":"yesterday","valid_until":"2025-02-01"},
          {"id":"E","plate":"浙A1","valid_from":"2025-01-01","valid_until":"2025-02-01"},
          {"id":"E","plate":"浙A2","valid_from":"2025-01-01","valid_until":"2025-02-01"}
        ]"#;
        let err = import_exemptions(j, ImportMode::Strict).unwrap_err();
        let ExemptionImportError::Rejected(errs) = err else { panic!("{err:?}") };
        let ids: Vec<_> = errs.iter().map(|e| e.at.id.clone().unwrap()).collect();
        assert_eq!(ids, ["A", "B", "C", "D", "E"]);
        assert!(errs[0].reason.contains("vin"), "{}", errs[0]);
        let lenient = import_exemptions(j, ImportMode::Lenient).unwrap();
        assert_eq!(lenient.exemptions.len(), 1);
        assert_eq!(lenient.rejected.len(), 5);
        assert!(import_exemptions("{}", ImportMode::Lenient).is_err());
    }
}
