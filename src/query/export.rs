//! Streamed exports of a violation query: CSV for spreadsheets, GeoJSON for maps (each violation
//! a Feature whose geometry is the vehicle's track around it). The store is read a page at a
//! time and each page is written out before the next is read, so an export of any size holds one
//! page (and one track) in memory; a slow client slows the reading through the bounded channel.
use super::{evidence_window, ViolationDesk, ViolationFilter, ViolationView, MAX_EVIDENCE_POINTS};
use crate::auth::{ApiError, Principal};
use crate::model::{format_ms, now_ms, AuditAction, AuditEntry};
use crate::store::ViolationQuery;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io::Write;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Violations read from the store per step.
const EXPORT_PAGE: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Geojson,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Geojson => "application/geo+json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Geojson => "geojson",
        }
    }
}

pub type ExportStream = ReceiverStream<Result<Bytes, ApiError>>;

const CSV_COLUMNS: &[&str] = &[
    "id",
    "rule",
    "vin",
    "plate",
    "status",
    "late",
    "started",
    "ended",
    "city_code",
    "county_code",
    "zone_id",
    "longitude",
    "latitude",
    "measured_min",
    "measured_max",
    "measured_mean",
    "review",
    "review_reason",
    "reviewer",
    "summary",
];

impl ViolationDesk {
    /// Checks scope, writes the audit entry, then streams the export. Scope and argument errors
    /// come back before the first byte; a store failure midway ends the stream with an error.
    pub async fn export(
        &self,
        who: &Principal,
        filter: &ViolationFilter,
        format: ExportFormat,
    ) -> Result<ExportStream, ApiError> {
        let q = self.scoped_query(&who.caller, filter)?;
        self.store
            .append_audit(AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                actor: who.actor(),
                action: AuditAction::Export,
                target: format.extension().to_string(),
                detail: serde_json::json!({ "filter": filter, "format": format }),
            })
            .await?;
        let (tx, rx) = mpsc::channel(4);
        let desk = self.clone();
        tokio::spawn(async move {
            if let Err(e) = desk.write_export(q, format, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    async fn write_export(
        &self,
        q: ViolationQuery,
        format: ExportFormat,
        tx: &mpsc::Sender<Result<Bytes, ApiError>>,
    ) -> Result<(), ApiError> {
        // A send fails only when the client went away: stop reading the store.
        let send = |buf: Vec<u8>| async { tx.send(Ok(Bytes::from(buf))).await.is_ok() };
        let head = match format {
            // The BOM makes spreadsheet programs read the plates' Chinese characters as UTF-8.
            ExportFormat::Csv => format!("\u{feff}{}\r\n", CSV_COLUMNS.join(",")),
            ExportFormat::Geojson => "{\"type\":\"FeatureCollection\",\"features\":[\n".to_string(),
        };
        if !send(head.into_bytes()).await {
            return Ok(());
        }
        let (mut cursor, mut first) = (None, true);
        loop {
            let page = self.store.violations(&q, cursor.take(), EXPORT_PAGE).await?;
            let views = self.views(page.violations).await?;
            let mut buf = Vec::with_capacity(views.len() * 256);
            for v in &views {
                match format {
                    ExportFormat::Csv => csv_row(&mut buf, v),
                    ExportFormat::Geojson => {
                        if !first {
                            buf.extend_from_slice(b",\n");
                        }
                        first = false;
                        let (from, to) = evidence_window(&v.violation);
                        let track =
                            self.store.records(v.violation.vin, from, to, MAX_EVIDENCE_POINTS).await?;
                        let coords: Vec<[f64; 2]> =
                            track.iter().filter_map(|r| r.valid_fix()).map(|f| [f.lon, f.lat]).collect();
                        buf.extend(serde_json::to_vec(&feature(v, &coords)).unwrap_or_default());
                        // One track at a time: flush per feature.
                        if !send(std::mem::take(&mut buf)).await {
                            return Ok(());
                        }
                    }
                }
            }
            if !buf.is_empty() && !send(buf).await {
                return Ok(());
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if format == ExportFormat::Geojson {
            send(b"\n]}\n".to_vec()).await;
        }
        Ok(())
    }
}

/// A CSV field: quoted when needed, and defused when a spreadsheet would read it as a formula.
fn csv_field(out: &mut Vec<u8>, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err();
    let quote = formula || s.contains([',', '"', '\n', '\r']);
    if quote {
        out.push(b'"');
        if formula {
            out.push(b'\'');
        }
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn csv_row(out: &mut Vec<u8>, view: &ViolationView) {
    let v = &view.violation;
    let num = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    let status = match v.status {
        crate::model::ViolationStatus::Open => "open",
        crate::model::ViolationStatus::Closed => "closed",
    };
    let review = crate::model::ReviewState::of(view.review.as_ref());
    let fields = [
        v.id.0.clone(),
        v.rule.clone(),
        v.vin.to_string(),
        v.plate.clone(),
        status.to_string(),
        v.late.to_string(),
        format_ms(v.started_ms),
        v.ended_ms.map(format_ms).unwrap_or_default(),
        v.city_code.clone().unwrap_or_default(),
        v.county_code.clone().unwrap_or_default(),
        v.zone_id.clone().unwrap_or_default(),
        num(v.position.map(|p| p.lon)),
        num(v.position.map(|p| p.lat)),
        num(v.measured.map(|m| m.min)),
        num(v.measured.map(|m| m.max)),
        num(v.measured.map(|m| m.mean)),
        serde_json::to_value(review).ok().and_then(|r| r.as_str().map(str::to_string)).unwrap_or_default(),
        view.review.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
        view.review.as_ref().map(|r| r.reviewer.clone()).unwrap_or_default(),
        v.summary.clone(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, f);
    }
    let _ = out.write_all(b"\r\n");
}

/// A GeoJSON Feature: the track as a LineString, else the violation's position as a Point.
fn feature(view: &ViolationView, coords: &[[f64; 2]]) -> serde_json::Value {
    let v = &view.violation;
    let geometry = match (coords, v.position) {
        ([_, _, ..], _) => serde_json::json!({ "type": "LineString", "coordinates": coords }),
        ([only], _) => serde_json::json!({ "type": "Point", "coordinates": only }),
        ([], Some(p)) => serde_json::json!({ "type": "Point", "coordinates": [p.lon, p.lat] }),
        ([], None) => serde_json::Value::Null,
    };
    serde_json::json!({
        "type": "Feature",
        "id": v.id.as_str(),
        "geometry": geometry,
        "properties": {
            "rule": v.rule, "vin": v.vin, "plate": v.plate, "status": v.status, "late": v.late,
            "started_ms": v.started_ms, "ended_ms": v.ended_ms, "city_code": v.city_code,
            "county_code": v.county_code, "zone_id": v.zone_id, "summary": v.summary,
            "measured": v.measured, "review": view.review,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> String {
        let mut out = Vec::new();
        csv_field(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("浙A12345"), "浙A12345");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-12.5"), "-12.5", "negative numbers stay numbers");
    }
}
