//! Commands beyond 0x05 that terminals send in the field (`shared/domain/hj1239.md`, field notes):
//! the tamper/removal alarm (truck 0x06, machinery 0x05) and the activation (备案) request 0x07.

use bytes::{BufMut, Bytes, BytesMut};

use super::engine::{fixed_position, signed_coordinates, GeoPoint, PositionStatus};
use super::error::MessageError;
use super::reader::Reader;
use super::time::TerminalTime;

/// Tamper/removal alarm: time(6) + serial u16 + status(1) + longitude u32 + latitude u32 [multi];
/// one machinery parser adds a state byte (0 diagnostics readable, 1 not), kept in `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TamperAlarm {
    /// Alarm time.
    pub time: TerminalTime,
    /// Alarm serial.
    pub serial: u16,
    /// Positioning status (truck bit meanings).
    pub position_status: PositionStatus,
    /// Longitude magnitude, 1e-6 degree.
    pub longitude: u32,
    /// Latitude magnitude, 1e-6 degree.
    pub latitude: u32,
    /// Bytes after the defined fields, kept (the machinery state byte, when sent).
    pub extra: Bytes,
}

impl TamperAlarm {
    pub(crate) fn decode(data: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(data);
        let time = r.time("alarm time")?;
        let serial = r.u16("alarm serial")?;
        let position_status = PositionStatus(r.u8("alarm positioning status")?);
        let longitude = r.u32("alarm longitude")?;
        let latitude = r.u32("alarm latitude")?;
        let extra = data.slice(r.offset()..);
        Ok(Self { time, serial, position_status, longitude, latitude, extra })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.time.to_bytes());
        out.put_u16(self.serial);
        out.put_u8(self.position_status.0);
        out.put_u32(self.longitude);
        out.put_u32(self.latitude);
        out.put_slice(&self.extra);
    }

    /// The positioning status byte.
    pub fn status_byte(&self) -> u8 {
        self.position_status.0
    }

    /// Signed longitude and latitude as sent (also when the fix is marked invalid).
    pub fn coordinates_deg(&self) -> (Option<f64>, Option<f64>) {
        signed_coordinates(self.position_status, self.longitude, self.latitude)
    }

    /// Where the alarm was raised, when the fix is valid.
    pub fn position(&self) -> Option<GeoPoint> {
        fixed_position(self.position_status, self.longitude, self.latitude)
    }
}

/// 0x07 activation request to the national platform: time(6) + chip ID(16) + public key(64) +
/// VIN/code(17) + signature (the rest, kept raw) [multi]. A local platform counts and logs it;
/// it does not answer (the 0x08 answer is the national platform's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Activation {
    /// Request time.
    pub time: TerminalTime,
    /// Security chip ID.
    pub chip_id: [u8; 16],
    /// Terminal public key.
    pub public_key: [u8; 64],
    /// VIN or machine code as the request states it.
    pub vin: [u8; 17],
    /// Signature bytes, raw.
    pub signature: Bytes,
}

impl Activation {
    pub(crate) fn decode(data: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(data);
        let time = r.time("activation time")?;
        let chip_id = r.array("activation chip ID")?;
        let public_key = r.array("activation public key")?;
        let vin = r.array("activation VIN")?;
        let signature = data.slice(r.offset()..);
        Ok(Self { time, chip_id, public_key, vin, signature })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.time.to_bytes());
        out.put_slice(&self.chip_id);
        out.put_slice(&self.public_key);
        out.put_slice(&self.vin);
        out.put_slice(&self.signature);
    }

    /// Chip ID as upper-case hex (for logs).
    pub fn chip_id_hex(&self) -> String {
        hex::encode_upper(self.chip_id)
    }
}
