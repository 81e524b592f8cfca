//! CSV files exported by gate systems, turned into [`RawGateRecord`]s. Row numbers are file line
//! numbers (the header is line 1), which is what an operator fixing the file needs.
//!
//! Columns are found by header name, in any order: `gate_id`, `plate`, `vin`, `time`,
//! `direction`, `emission_stage`, `fuel`, `cargo`, `tonnage` (`vin`, `emission_stage`, `fuel`,
//! `cargo`, `tonnage` may be absent or empty). `time` is epoch milliseconds, RFC 3339, or
//! `YYYY-MM-DD HH:MM[:SS]` in Beijing time. Fields may be double-quoted (RFC 4180, `""` escapes a
//! quote); quoted fields do not span lines. A UTF-8 BOM is ignored.
use super::gate_records::{parse_direction, parse_fuel, parse_stage, RawGateRecord, RowError};
use crate::model::{beijing_offset, TimestampMs};
use chrono::{NaiveDateTime, TimeZone};

const REQUIRED: [&str; 4] = ["gate_id", "plate", "time", "direction"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("empty file")]
    Empty,
    #[error("header lacks column {0:?} (need gate_id, plate, time, direction)")]
    MissingColumn(&'static str),
}

/// Splits one line into fields.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, c) => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out)
}

/// Epoch ms, RFC 3339, or Beijing local `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_time(s: &str) -> Option<TimestampMs> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .and_then(|dt| beijing_offset().from_local_datetime(&dt).single())
        .map(|t| t.timestamp_millis())
}

/// Parses the file: the records that parse, and an error for every row that does not. Rows that
/// parse here are validated again by the server (gates, VIN, plausibility).
pub fn parse(text: &str) -> Result<(Vec<RawGateRecord>, Vec<RowError>), CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.find(|(_, l)| !l.trim().is_empty()).ok_or(CsvError::Empty)?;
    let names: Vec<String> =
        fields(header).unwrap_or_default().iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |n: &str| names.iter().position(|h| h == n);
    for r in REQUIRED {
        if col(r).is_none() {
            return Err(CsvError::MissingColumn(r));
        }
    }
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row = u32::try_from(i + 1).unwrap_or(u32::MAX);
        match parse_row(row, line, &col, names.len()) {
            Ok(r) => ok.push(r),
            Err(reason) => errs.push(RowError { row, reason }),
        }
    }
    Ok((ok, errs))
}

fn parse_row(
    row: u32,
    line: &str,
    col: &dyn Fn(&str) -> Option<usize>,
    width: usize,
) -> Result<RawGateRecord, String> {
    let f = fields(line)?;
    if f.len() != width {
        return Err(format!("{} fields, header has {width}", f.len()));
    }
    let get = |n: &str| col(n).and_then(|i| f.get(i)).map(|s| s.trim()).unwrap_or("");
    let time_ms = parse_time(get("time")).ok_or_else(|| format!("unreadable time {:?}", get("time")))?;
    let direction = Some(
        parse_direction(get("direction"))
            .ok_or_else(|| format!("direction {:?} is not in/out", get("direction")))?,
    );
    let tonnage = match get("tonnage") {
        "" => None,
        t => Some(t.parse::<f64>().map_err(|_| format!("tonnage {t:?} is not a number"))?),
    };
    Ok(RawGateRecord {
        row,
        gate_id: get("gate_id").to_string(),
        plate: get("plate").to_string(),
        vin: get("vin").to_string(),
        time_ms,
        direction,
        emission_stage: parse_stage(get("emission_stage"))?,
        fuel: parse_fuel(get("fuel"))?,
        cargo: get("cargo").to_string(),
        tonnage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::PassageDirection;
    use crate::model::{EmissionStage, Fuel};

    #[test]
    fn parses_rows_and_reports_bad_ones_by_line() {
        let text = "\u{feff}plate,gate_id,time,direction,emission_stage,fuel,cargo,tonnage,vin\n\
            浙B12345,G1,2025-11-01 08:00:00,in,国六,柴油,iron_ore,32.5,\n\
            \n\
            \"浙B,X\",G1,1761955200000,out,,,,,\n\
            浙B1,G1,yesterday,in,,,,,\n\
            浙B2,G1,2025-11-01T08:00:00+08:00,in,VII,,,,\n\
            浙B3,G1,2025-11-01 08:00,in\n";
        let (ok, errs) = parse(text).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].row, 2);
        assert_eq!(ok[0].time_ms, 1_761_955_200_000);
        assert_eq!(ok[0].emission_stage, Some(EmissionStage::ChinaVI));
        assert_eq!(ok[0].fuel, Some(Fuel::Diesel));
        assert_eq!(ok[0].tonnage, Some(32.5));
        assert_eq!(ok[1].row, 4);
        assert_eq!(ok[1].plate, "浙B,X");
        assert_eq!(ok[1].direction, Some(PassageDirection::Out));
        assert_eq!(ok[1].tonnage, None);
        let rows: Vec<u32> = errs.iter().map(|e| e.row).collect();
        assert_eq!(rows, [5, 6, 7]);
        assert!(errs[0].reason.contains("time"));
        assert!(errs[1].reason.contains("emission stage"));
        assert!(errs[2].reason.contains("fields"));
    }

    #[test]
    fn header_problems() {
        assert_eq!(parse(""), Err(CsvError::Empty));
        assert_eq!(parse("plate,time,direction\n"), Err(CsvError::MissingColumn("gate_id")));
        assert!(fields("\"abc").is_err());
    }
}
