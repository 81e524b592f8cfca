//! Non-road mobile machinery (HJ 1014-2020 Stage IV; protocol HJ 1322-2023 Annex C). UNVERIFIED.
//!
//! What the domain reference supports, and all this decoder assumes:
//! - framing is the truck framing; the 17-character machine environmental code sits in the VIN slot;
//! - the position sits in the real-time *header* rather than in the data body;
//! - the data stream adds actual and target EGR valve opening at 0.0025 %/bit.
//!
//! Not supported by the reference, therefore assumptions kept in the consts below: the header
//! position is time(6) followed by status(1) + longitude(4) + latitude(4) with the truck's bit
//! meanings and scaling; the EGR fields are u16. The records after the header are kept raw: their
//! layout (emission-control diagnostic block with ISO 15031 and a "flashing" lamp state, data
//! stream with EGR) is not given in enough detail to decode without guessing.
//! Selected by [`super::Dialect::Machinery`], which also maps command 0x05 to the removal alarm.

use bytes::{BufMut, Bytes, BytesMut};

use super::engine::{fixed_position, signed_coordinates, u16_value, FieldScale, GeoPoint, PositionStatus};
use super::error::MessageError;
use super::reader::Reader;
use super::time::TerminalTime;

/// Header length before the records: time(6) + status(1) + longitude(4) + latitude(4). UNVERIFIED.
pub const MACHINERY_HEADER_LEN: usize = 15;

/// EGR valve opening (actual and target), 0.0025 %/bit (reference), u16 with 0–100 % valid
/// (raw 0..=40,000). UNVERIFIED width and range.
pub const EGR_OPENING: FieldScale = FieldScale { resolution: 0.0025, offset: 0.0, max_raw: 40_000 };

/// EGR valve opening in % from its raw value (sentinels and > 100 % → `None`).
pub fn egr_opening_percent(raw: u16) -> Option<f64> {
    u16_value(raw, EGR_OPENING)
}

/// Real-time/reissue data unit of a machinery terminal (UNVERIFIED layout, see module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineryReport {
    /// Information time.
    pub time: TerminalTime,
    /// Positioning status (truck bit meanings assumed).
    pub position_status: PositionStatus,
    /// Longitude magnitude, 1e-6 degree.
    pub longitude: u32,
    /// Latitude magnitude, 1e-6 degree.
    pub latitude: u32,
    /// Everything after the header, undecoded.
    pub records: Bytes,
}

impl MachineryReport {
    /// Decodes the header; the records stay raw.
    pub fn decode(data: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(data);
        let time = r.time("machinery information time")?;
        let position_status = PositionStatus(r.u8("machinery positioning status")?);
        let longitude = r.u32("machinery longitude")?;
        let latitude = r.u32("machinery latitude")?;
        let records = data.slice(r.offset()..);
        Ok(Self { time, position_status, longitude, latitude, records })
    }

    /// Appends the data unit.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.time.to_bytes());
        out.put_u8(self.position_status.0);
        out.put_u32(self.longitude);
        out.put_u32(self.latitude);
        out.put_slice(&self.records);
    }

    /// Position when the fix is valid and both coordinates are in range.
    pub fn position(&self) -> Option<GeoPoint> {
        fixed_position(self.position_status, self.longitude, self.latitude)
    }

    /// Signed longitude and latitude as sent.
    pub fn coordinates_deg(&self) -> (Option<f64>, Option<f64>) {
        signed_coordinates(self.position_status, self.longitude, self.latitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_egr() {
        let mut data = vec![0x18, 0x07, 0x01, 0x08, 0x00, 0x00, 0x00];
        data.extend(117_200_000u32.to_be_bytes());
        data.extend(31_300_000u32.to_be_bytes());
        data.extend([0xAB, 0xCD]);
        let data = Bytes::from(data);
        let m = MachineryReport::decode(&data).unwrap();
        assert!(m.position().is_some());
        assert_eq!(&m.records[..], &[0xAB, 0xCD]);
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], &data[..]);
        assert_eq!(egr_opening_percent(40_000), Some(100.0));
        assert_eq!(egr_opening_percent(40_001), None);
        assert_eq!(egr_opening_percent(0xFFFF), None);
    }
}
