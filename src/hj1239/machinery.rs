//! Non-road mobile machinery (HJ 1014-2020 Stage IV; protocol HJ 1322-2023 Annex C).
//!
//! Layout from the field notes (terminal firmware and parsers, see `shared/domain/hj1239.md`):
//! framing is the truck framing, the 17-character machine environmental code sits in the VIN slot,
//! and a real-time/reissue data unit is
//!
//! ```text
//! send time(6) | info serial u16 | position status(1) | longitude u32 | latitude u32   [multi]
//! then repeated: type(1) [+ collection time(6)] + body, optionally one trailing SM2 signature
//! ```
//!
//! Bodies: 0x01 emission-control diagnostics (protocol, lamp, DTC count, 4 bytes per DTC),
//! 0x02 data stream (28 bytes: the truck stream's first 15 fields, then actual and target EGR
//! opening), 0x04 period statistics (25 bytes, its own collection time first).
//!
//! UNVERIFIED, each kept in one const here: whether bodies carry their own collection time (the
//! sources conflict, so it is detected per frame, trying [`BODY_TIME_ORDER`]); that 0x04 carries
//! only its own time even where other bodies have a per-body time; the EGR scale's range; the
//! value lists of protocol and lamp (single source).
//! Selected by [`super::Dialect::Machinery`], which also maps command 0x05 to the removal alarm.

use bytes::{BufMut, BytesMut};

use super::engine::{
    fixed_position, signed_coordinates, u16_value, EngineData, FieldScale, GeoPoint, PositionStatus,
};
use super::error::MessageError;
use super::obd::{Dtc, FAULT_COUNT_INVALID_FIRST};
use super::reader::Reader;
use super::signature::Sm2Signature;
use super::time::TerminalTime;

/// Header length before the bodies: time(6) + serial(2) + status(1) + longitude(4) + latitude(4).
pub const MACHINERY_HEADER_LEN: usize = 17;

/// EGR valve opening (actual and target), 0.0025 %/bit [single], u16 with 0–100 % valid
/// (raw 0..=40,000). UNVERIFIED range.
pub const EGR_OPENING: FieldScale = FieldScale { resolution: 0.0025, offset: 0.0, max_raw: 40_000 };

/// Whether bodies carry their own collection time, in the order detection tries it. UNVERIFIED:
/// the sources conflict; without comes first because it is the shorter reading (a data unit that
/// walks cleanly both ways is improbable: every time must be a valid date).
pub const BODY_TIME_ORDER: [bool; 2] = [false, true];

/// Machinery info body types and lengths (one table).
pub mod machinery_body {
    /// Emission-control diagnostics: 3 + 4·n bytes.
    pub const DIAGNOSTICS: u8 = 0x01;
    /// Data stream with EGR, 28 bytes.
    pub const STREAM: u8 = 0x02;
    /// Period statistics, 25 bytes including its collection time.
    pub const PERIOD_STATISTICS: u8 = 0x04;
    /// Data stream length.
    pub const STREAM_LEN: usize = 28;
    /// Period statistics length (time included).
    pub const PERIOD_STATISTICS_LEN: usize = 25;
}

/// EGR valve opening in % from its raw value (sentinels and > 100 % → `None`).
pub fn egr_opening_percent(raw: u16) -> Option<f64> {
    u16_value(raw, EGR_OPENING)
}

/// Fault lamp of the diagnostics body [single for the values].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LampStatus {
    /// 0.
    Off,
    /// 1.
    On,
    /// 2: flashing.
    Flashing,
    /// Anything else (0xFE invalid included).
    Other(u8),
}

/// 0x01 emission-control diagnostics, raw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmissionDiagnostics {
    /// 0 ISO 15765, 1 ISO 27145, 2 J1939, 3 ISO 15031, 0xFE invalid [single].
    pub protocol: u8,
    /// Lamp (see [`EmissionDiagnostics::lamp_status`]).
    pub lamp: u8,
    /// DTC count as sent (≥ 0xFE: invalid, no list).
    pub dtc_count: u8,
    /// The DTCs.
    pub dtcs: Vec<Dtc>,
}

impl EmissionDiagnostics {
    fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        let protocol = r.u8("diagnostics protocol")?;
        let lamp = r.u8("diagnostics lamp")?;
        let dtc_count = r.u8("diagnostics DTC count")?;
        let n = if dtc_count >= FAULT_COUNT_INVALID_FIRST { 0 } else { usize::from(dtc_count) };
        let dtcs = (0..n).map(|_| r.array("diagnostics DTC").map(Dtc)).collect::<Result<_, _>>()?;
        Ok(Self { protocol, lamp, dtc_count, dtcs })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.protocol);
        out.put_u8(self.lamp);
        out.put_u8(self.dtc_count);
        for d in &self.dtcs {
            out.put_slice(&d.0);
        }
    }

    /// Decoded lamp state.
    pub fn lamp_status(&self) -> LampStatus {
        match self.lamp {
            0 => LampStatus::Off,
            1 => LampStatus::On,
            2 => LampStatus::Flashing,
            other => LampStatus::Other(other),
        }
    }

    /// The DTC list, `None` when the count was marked invalid.
    pub fn fault_codes(&self) -> Option<&[Dtc]> {
        (self.dtc_count < FAULT_COUNT_INVALID_FIRST).then_some(self.dtcs.as_slice())
    }
}

/// 0x02 machinery data stream: truck fields 1–15 (same scales) and EGR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MachineryStream {
    /// Fields 1–15; position and odometer are not part of this body (left invalid).
    pub engine: EngineData,
    /// Actual EGR valve opening (raw, 0.0025 %).
    pub egr_actual: u16,
    /// Target EGR valve opening (raw, 0.0025 %).
    pub egr_target: u16,
}

impl MachineryStream {
    fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        let body = r.take(machinery_body::STREAM_LEN, "machinery data stream (0x02)")?;
        let mut r = Reader::new(body);
        Ok(Self {
            engine: EngineData::decode_common(&mut r)?,
            egr_actual: r.u16("actual EGR opening")?,
            egr_target: r.u16("target EGR opening")?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        self.engine.encode_common(out);
        out.put_u16(self.egr_actual);
        out.put_u16(self.egr_target);
    }

    /// Actual EGR opening, %.
    pub fn egr_actual_percent(&self) -> Option<f64> {
        egr_opening_percent(self.egr_actual)
    }

    /// Target EGR opening, %.
    pub fn egr_target_percent(&self) -> Option<f64> {
        egr_opening_percent(self.egr_target)
    }
}

/// 0x04 period statistics [single], raw values (scales not given by the source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodStatistics {
    /// Collection time of the period.
    pub collected_at: TerminalTime,
    /// Engine reference torque.
    pub reference_torque: u16,
    /// Average power.
    pub average_power: u16,
    /// SCR upstream NOx average.
    pub nox_upstream_avg: u16,
    /// SCR downstream NOx average.
    pub nox_downstream_avg: u16,
    /// NOx mass flow upstream.
    pub nox_mass_flow_upstream: u8,
    /// NOx mass flow downstream.
    pub nox_mass_flow_downstream: u8,
    /// SCR inlet temperature average.
    pub scr_inlet_avg: u16,
    /// SCR outlet temperature average.
    pub scr_outlet_avg: u16,
    /// Average fuel flow.
    pub fuel_flow_avg: u16,
    /// Period length.
    pub period: u16,
    /// Valid-time ratio.
    pub valid_ratio: u8,
}

impl PeriodStatistics {
    fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        let body = r.take(machinery_body::PERIOD_STATISTICS_LEN, "period statistics (0x04)")?;
        let mut r = Reader::new(body);
        Ok(Self {
            collected_at: r.time("period statistics time")?,
            reference_torque: r.u16("reference torque")?,
            average_power: r.u16("average power")?,
            nox_upstream_avg: r.u16("NOx upstream average")?,
            nox_downstream_avg: r.u16("NOx downstream average")?,
            nox_mass_flow_upstream: r.u8("NOx mass flow upstream")?,
            nox_mass_flow_downstream: r.u8("NOx mass flow downstream")?,
            scr_inlet_avg: r.u16("SCR inlet average")?,
            scr_outlet_avg: r.u16("SCR outlet average")?,
            fuel_flow_avg: r.u16("fuel flow average")?,
            period: r.u16("period length")?,
            valid_ratio: r.u8("valid-time ratio")?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.collected_at.to_bytes());
        out.put_u16(self.reference_torque);
        out.put_u16(self.average_power);
        out.put_u16(self.nox_upstream_avg);
        out.put_u16(self.nox_downstream_avg);
        out.put_u8(self.nox_mass_flow_upstream);
        out.put_u8(self.nox_mass_flow_downstream);
        out.put_u16(self.scr_inlet_avg);
        out.put_u16(self.scr_outlet_avg);
        out.put_u16(self.fuel_flow_avg);
        out.put_u16(self.period);
        out.put_u8(self.valid_ratio);
    }
}

/// One machinery info body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MachineryBody {
    /// 0x01.
    Diagnostics(EmissionDiagnostics),
    /// 0x02.
    Stream(MachineryStream),
    /// 0x04.
    PeriodStatistics(PeriodStatistics),
}

impl MachineryBody {
    /// Type byte.
    pub fn info_type(&self) -> u8 {
        match self {
            MachineryBody::Diagnostics(_) => machinery_body::DIAGNOSTICS,
            MachineryBody::Stream(_) => machinery_body::STREAM,
            MachineryBody::PeriodStatistics(_) => machinery_body::PERIOD_STATISTICS,
        }
    }

    /// Whether a per-body collection time precedes this body when the terminal sends them
    /// (0x04 carries its own). UNVERIFIED.
    fn takes_body_time(info_type: u8) -> bool {
        info_type != machinery_body::PERIOD_STATISTICS
    }
}

/// A machinery body with its collection time when the terminal sends per-body times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineryRecord {
    /// Per-body collection time (`None` in the layout without body times, and for 0x04).
    pub collected_at: Option<TerminalTime>,
    /// The body.
    pub body: MachineryBody,
}

/// Real-time/reissue data unit of a machinery terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineryReport {
    /// Send time.
    pub time: TerminalTime,
    /// Info serial.
    pub serial: u16,
    /// Positioning status (bit0 fix invalid, bit1 south, bit2 west).
    pub position_status: PositionStatus,
    /// Longitude magnitude, 1e-6 degree.
    pub longitude: u32,
    /// Latitude magnitude, 1e-6 degree.
    pub latitude: u32,
    /// Bodies in wire order.
    pub records: Vec<MachineryRecord>,
    /// Trailing SM2 signature, detected from the bytes left after the bodies.
    pub signature: Option<Sm2Signature>,
}

impl MachineryReport {
    /// Decodes the header and the bodies, detecting per-body collection times.
    pub fn decode(data: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(data);
        let time = r.time("machinery send time")?;
        let serial = r.u16("machinery info serial")?;
        let position_status = PositionStatus(r.u8("machinery positioning status")?);
        let longitude = r.u32("machinery longitude")?;
        let latitude = r.u32("machinery latitude")?;
        let mut first_err = None;
        for body_times in BODY_TIME_ORDER {
            match walk(Reader::new(r.rest()), body_times) {
                Ok((records, signature)) => {
                    return Ok(Self {
                        time,
                        serial,
                        position_status,
                        longitude,
                        latitude,
                        records,
                        signature,
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(MessageError::Truncated {
            what: "machinery bodies",
            offset: MACHINERY_HEADER_LEN,
            needed: 1,
            available: 0,
        }))
    }

    /// Appends the data unit.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.time.to_bytes());
        out.put_u16(self.serial);
        out.put_u8(self.position_status.0);
        out.put_u32(self.longitude);
        out.put_u32(self.latitude);
        for rec in &self.records {
            out.put_u8(rec.body.info_type());
            if let Some(t) = rec.collected_at {
                out.put_slice(&t.to_bytes());
            }
            match &rec.body {
                MachineryBody::Diagnostics(d) => d.encode(out),
                MachineryBody::Stream(s) => s.encode(out),
                MachineryBody::PeriodStatistics(p) => p.encode(out),
            }
        }
        if let Some(sig) = &self.signature {
            sig.encode(out);
        }
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

type Walked = (Vec<MachineryRecord>, Option<Sm2Signature>);

fn walk(mut r: Reader<'_>, body_times: bool) -> Result<Walked, MessageError> {
    let mut records = Vec::new();
    while r.remaining() > 0 {
        // 0x20 (the signature's length byte) is not a body type, so no ambiguity.
        if let Some(sig) = Sm2Signature::parse_block(r.rest()) {
            return Ok((records, Some(sig)));
        }
        let offset = r.offset() + MACHINERY_HEADER_LEN;
        let info_type = r.u8("machinery info type")?;
        let collected_at = if body_times && MachineryBody::takes_body_time(info_type) {
            Some(r.time("machinery collection time")?)
        } else {
            None
        };
        let body = match info_type {
            machinery_body::DIAGNOSTICS => MachineryBody::Diagnostics(EmissionDiagnostics::decode(&mut r)?),
            machinery_body::STREAM => MachineryBody::Stream(MachineryStream::decode(&mut r)?),
            machinery_body::PERIOD_STATISTICS => {
                MachineryBody::PeriodStatistics(PeriodStatistics::decode(&mut r)?)
            }
            other => return Err(MessageError::UnknownInfoType { info_type: other, offset }),
        };
        records.push(MachineryRecord { collected_at, body });
    }
    Ok((records, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut data = vec![0x18, 0x07, 0x01, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00];
        data.extend(117_200_000u32.to_be_bytes());
        data.extend(31_300_000u32.to_be_bytes());
        data
    }

    fn stream_body() -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[5] = 0x2E; // engine speed 0x2EE0 = 12,000 → 1,500 rpm
        b[6] = 0xE0;
        b.extend(20_000u16.to_be_bytes());
        b.extend(24_000u16.to_be_bytes());
        b
    }

    #[test]
    fn bodies_without_and_with_collection_time() {
        let mut plain = header();
        plain.push(0x02);
        plain.extend(stream_body());
        plain.extend([0x01, 0x03, 0x02, 0x01, 0x20, 0x47, 0x00, 0x08]);
        let m = MachineryReport::decode(&plain).unwrap();
        assert_eq!(m.serial, 9);
        assert!(m.position().is_some());
        assert_eq!(m.records.len(), 2);
        assert!(m.records.iter().all(|r| r.collected_at.is_none()));
        let MachineryBody::Stream(s) = &m.records[0].body else { panic!("stream") };
        assert_eq!(s.engine.engine_speed_rpm(), Some(1500.0));
        assert_eq!(s.egr_actual_percent(), Some(50.0));
        assert_eq!(s.egr_target_percent(), Some(60.0));
        let MachineryBody::Diagnostics(d) = &m.records[1].body else { panic!("diagnostics") };
        assert_eq!(d.lamp_status(), LampStatus::Flashing);
        assert_eq!(d.fault_codes().map(<[Dtc]>::len), Some(1));
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], &plain[..]);

        let mut timed = header();
        timed.push(0x02);
        timed.extend([0x18, 0x07, 0x01, 0x07, 0x3B, 0x3B]);
        timed.extend(stream_body());
        let m = MachineryReport::decode(&timed).unwrap();
        assert!(m.records[0].collected_at.is_some());
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], &timed[..]);
    }

    #[test]
    fn egr_scale() {
        assert_eq!(egr_opening_percent(40_000), Some(100.0));
        assert_eq!(egr_opening_percent(40_001), None);
        assert_eq!(egr_opening_percent(0xFFFF), None);
    }
}
