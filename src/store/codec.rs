//! Byte layouts of keys and values shared by the storage backends.
//!
//! Keys sort as the queries need them: big-endian integers with the sign bit flipped so negative
//! times (never valid, but never a panic either) sort first. Values carry a format version byte.
use super::StoreError;
use crate::model::{TelemetryRecord, TimestampMs, Vin, Violation};

const RECORD_FORMAT: u8 = 1;

pub fn time_key(t: TimestampMs) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from_key(b: &[u8]) -> Option<TimestampMs> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// Telemetry key: VIN (17) + time (8).
pub fn record_key(vin: &Vin, t: TimestampMs) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..17].copy_from_slice(vin.as_bytes());
    k[17..].copy_from_slice(&time_key(t));
    k
}

pub fn encode_record(r: &TelemetryRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_FORMAT);
    // Serialising plain data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(r).unwrap_or_default());
    out
}

pub fn decode_record(b: &[u8]) -> Result<TelemetryRecord, StoreError> {
    match b.split_first() {
        Some((&RECORD_FORMAT, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StoreError::Corrupt { what: "telemetry record", detail: e.to_string() }),
        other => Err(StoreError::Corrupt {
            what: "telemetry record",
            detail: format!("unknown format {:?}", other.map(|o| *o.0)),
        }),
    }
}

/// Violation time index key: start (8) + id (32 ASCII hex).
pub fn violation_time_key(v: &Violation) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&time_key(v.started_ms));
    k.extend_from_slice(v.id.as_str().as_bytes());
    k
}

/// Violation VIN index key: VIN (17) + start (8) + id.
pub fn violation_vin_key(v: &Violation) -> Vec<u8> {
    let mut k = Vec::with_capacity(57);
    k.extend_from_slice(v.vin.as_bytes());
    k.extend_from_slice(&violation_time_key(v));
    k
}

/// Violation area index key: area code (6 ASCII digits) + start (8) + id. Used for the city and
/// the county index, police's main access path.
pub fn violation_area_key(code: &str, v: &Violation) -> Vec<u8> {
    let mut k = Vec::with_capacity(code.len() + 40);
    k.extend_from_slice(code.as_bytes());
    k.extend_from_slice(&violation_time_key(v));
    k
}

/// The (start, id) a violation index key ends with.
pub fn violation_key_position(key: &[u8]) -> Option<(TimestampMs, &str)> {
    let id_at = key.len().checked_sub(32)?;
    let id = std::str::from_utf8(key.get(id_at..)?).ok()?;
    let started = time_from_key(key.get(id_at.checked_sub(8)?..id_at)?)?;
    Some((started, id))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_and_round_trip() {
        for (a, b) in [(-5i64, 3i64), (0, 1), (1_700_000_000_000, 1_700_000_000_001)] {
            assert!(time_key(a) < time_key(b));
            assert_eq!(time_from_key(&time_key(a)), Some(a));
        }
        assert_eq!(time_from_key(&[1, 2]), None);
    }

    #[test]
    fn violation_keys_end_with_their_position() {
        let k = [b"330100".as_slice(), &time_key(42), b"0123456789abcdef0123456789abcdef"].concat();
        assert_eq!(violation_key_position(&k), Some((42, "0123456789abcdef0123456789abcdef")));
        assert_eq!(violation_key_position(b"short"), None);
    }

    #[test]
    fn corrupt_record_is_an_error_not_a_panic() {
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&[9, 9]).is_err());
        assert!(decode_record(&[RECORD_FORMAT, 0xff, 0xff]).is_err());
    }
}
