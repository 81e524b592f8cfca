//! One roadside observation of exhaust smoke: a remote-sensing station (light-absorption
//! coefficient k) or a black-smoke camera (Ringelmann level), submitted through the API and matched
//! to a registered vehicle by plate (rules.md R2, source b).
use super::{validate_time, PlateColour, TimeError, TimestampMs};
use serde::{Deserialize, Serialize};

/// Longest plate accepted (Chinese plates are 7–8 characters; room for a prefix or a trailer mark).
pub const MAX_PLATE_CHARS: usize = 16;
/// Longest device id accepted.
pub const MAX_DEVICE_ID_CHARS: usize = 64;
/// The Ringelmann scale runs 0 (clear) to 5 (black).
pub const MAX_RINGELMANN: u8 = 5;
/// Same plausibility bound as a terminal's opacity (`TelemetryRecord::validate`).
pub const MAX_K_PER_M: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoadsideSource {
    #[default]
    RemoteSensing,
    BlackSmokeCamera,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoadsideRecord {
    /// Plate as read by the device; matched to the registry with [`normalize_plate`].
    pub plate: String,
    pub plate_colour: PlateColour,
    /// Observation time, epoch ms UTC.
    pub time_ms: TimestampMs,
    /// Device location, WGS-84 degrees.
    pub lon: f64,
    pub lat: f64,
    /// Ringelmann level 0–5, when the device grades smoke visually.
    pub ringelmann: Option<u8>,
    /// Light-absorption coefficient k in m⁻¹, when the device measures opacity.
    pub k_per_m: Option<f64>,
    pub device_id: String,
    pub source: RoadsideSource,
    /// Reference to the device operator's photo / video / raw measurement, kept as evidence.
    pub evidence_ref: Option<String>,
}

/// Why a roadside record was refused at the edge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoadsideError {
    #[error("plate is empty")]
    EmptyPlate,
    #[error("plate has {0} characters, at most {MAX_PLATE_CHARS} are allowed")]
    PlateTooLong(usize),
    #[error("device id is empty")]
    EmptyDevice,
    #[error("device id has {0} characters, at most {MAX_DEVICE_ID_CHARS} are allowed")]
    DeviceTooLong(usize),
    #[error("position out of range: lon {lon}, lat {lat}")]
    Position { lon: f64, lat: f64 },
    #[error("invalid time: {0}")]
    Time(#[from] TimeError),
    #[error("Ringelmann level {0} is outside 0–{MAX_RINGELMANN}")]
    Ringelmann(u8),
    #[error("light-absorption coefficient {0} m⁻¹ is outside 0–{MAX_K_PER_M}")]
    Opacity(f64),
    #[error("the record carries neither a Ringelmann level nor a k value")]
    NoMeasurement,
}

/// Canonical plate for matching: upper case, without spaces, dots and dashes that devices insert
/// ("浙A·12345", "浙a 12345" and "浙A12345" are one plate). The registry should be keyed the same way.
pub fn normalize_plate(plate: &str) -> String {
    plate
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '•' | '.' | '-' | '_'))
        .flat_map(char::to_uppercase)
        .collect()
}

impl RoadsideRecord {
    /// Edge validation; `now_ms` is the server clock (same time rules as telemetry records).
    pub fn validate(&self, now_ms: TimestampMs) -> Result<(), RoadsideError> {
        let plate = normalize_plate(&self.plate);
        if plate.is_empty() {
            return Err(RoadsideError::EmptyPlate);
        }
        let n = plate.chars().count();
        if n > MAX_PLATE_CHARS {
            return Err(RoadsideError::PlateTooLong(n));
        }
        let device = self.device_id.trim();
        if device.is_empty() {
            return Err(RoadsideError::EmptyDevice);
        }
        let n = device.chars().count();
        if n > MAX_DEVICE_ID_CHARS {
            return Err(RoadsideError::DeviceTooLong(n));
        }
        validate_time(self.time_ms, now_ms)?;
        let in_range = self.lon.is_finite()
            && self.lat.is_finite()
            && (-180.0..=180.0).contains(&self.lon)
            && (-90.0..=90.0).contains(&self.lat);
        if !in_range {
            return Err(RoadsideError::Position { lon: self.lon, lat: self.lat });
        }
        if let Some(r) = self.ringelmann {
            if r > MAX_RINGELMANN {
                return Err(RoadsideError::Ringelmann(r));
            }
        }
        if let Some(k) = self.k_per_m {
            if !(k.is_finite() && (0.0..=MAX_K_PER_M).contains(&k)) {
                return Err(RoadsideError::Opacity(k));
            }
        }
        if self.ringelmann.is_none() && self.k_per_m.is_none() {
            return Err(RoadsideError::NoMeasurement);
        }
        Ok(())
    }

    /// Deterministic identity of the observation (normalised plate, device, time): a resubmitted
    /// record has the same key, so neither a violation nor an unmatched entry is stored twice.
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(normalize_plate(&self.plate).as_bytes());
        h.update(&[0]);
        h.update(self.device_id.trim().as_bytes());
        h.update(&[0]);
        h.update(&self.time_ms.to_be_bytes());
        hex::encode(&h.finalize().as_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec() -> RoadsideRecord {
        RoadsideRecord {
            plate: "浙A·12345".into(),
            plate_colour: PlateColour::Yellow,
            time_ms: 1_761_926_400_000,
            lon: 120.15,
            lat: 30.28,
            ringelmann: Some(2),
            k_per_m: Some(1.5),
            device_id: "HZ-RS-007".into(),
            source: RoadsideSource::RemoteSensing,
            evidence_ref: None,
        }
    }

    #[test]
    fn plates_normalise() {
        assert_eq!(normalize_plate("浙a·12345"), "浙A12345");
        assert_eq!(normalize_plate(" 浙A 12345 "), "浙A12345");
        assert_eq!(normalize_plate("浙A-12345"), "浙A12345");
    }

    type Case = (fn(&mut RoadsideRecord), RoadsideError);

    #[test]
    fn validation_names_the_cause() {
        let now = 1_761_926_400_000;
        assert_eq!(rec().validate(now), Ok(()));
        let cases: [Case; 7] = [
            (|r| r.plate = " · ".into(), RoadsideError::EmptyPlate),
            (|r| r.plate = "浙A123456789012345".into(), RoadsideError::PlateTooLong(17)),
            (|r| r.device_id = "  ".into(), RoadsideError::EmptyDevice),
            (|r| r.lat = 95.0, RoadsideError::Position { lon: 120.15, lat: 95.0 }),
            (|r| r.ringelmann = Some(6), RoadsideError::Ringelmann(6)),
            (|r| r.k_per_m = Some(-1.0), RoadsideError::Opacity(-1.0)),
            (
                |r| {
                    r.ringelmann = None;
                    r.k_per_m = None
                },
                RoadsideError::NoMeasurement,
            ),
        ];
        for (edit, want) in cases {
            let mut r = rec();
            edit(&mut r);
            assert_eq!(r.validate(now), Err(want));
        }
        let mut r = rec();
        r.time_ms = 5;
        assert!(matches!(r.validate(now), Err(RoadsideError::Time(_))));
        let mut r = rec();
        r.k_per_m = Some(f64::NAN);
        assert!(matches!(r.validate(now), Err(RoadsideError::Opacity(_))));
    }

    #[test]
    fn key_is_stable_across_plate_spelling() {
        let a = rec();
        let mut b = rec();
        b.plate = "浙a12345".into();
        b.k_per_m = Some(0.1);
        assert_eq!(a.key(), b.key());
        let mut c = rec();
        c.time_ms += 1;
        assert_ne!(a.key(), c.key());
        let mut d = rec();
        d.device_id = "HZ-RS-008".into();
        assert_ne!(a.key(), d.key());
    }
}
