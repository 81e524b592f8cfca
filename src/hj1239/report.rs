//! Data units of real-time (0x02) and reissue (0x03) frames: a time followed by info bodies, in one
//! of the three layouts seen in the field ([`BodyLayout`]). No layout carries a per-body length, so
//! an unknown body type ends the walk with [`MessageError::UnknownInfoType`] (the whole frame is
//! dropped).
//!
//! Real fleets mix terminal makes on one gateway, so the layout is detected per frame
//! ([`InfoReport::detect`]): the layout a terminal used last is tried first, then
//! [`DETECTION_ORDER`]; the first layout that walks the whole data unit wins. The layouts differ
//! in where the serial and the times sit, so a data unit that walks cleanly in two of them is
//! improbable (every time field must be a valid date and the bodies must end exactly at the end).

use bytes::{BufMut, BytesMut};

use super::engine::{EngineData, GasEngineData};
use super::error::MessageError;
use super::obd::ObdInfo;
use super::reader::Reader;
use super::signature::{Sm2Signature, SIGNATURE_WIRE_LEN};
use super::time::TerminalTime;

/// Which body layout a terminal (or listener) uses. The gateway configures it per listener or per
/// terminal and should log it with every decode error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BodyLayout {
    /// GB 17691-2018 Annex Q (public sample frames): time(6), then repeated
    /// { type(1) + serial u16 + body }.
    #[default]
    Gb17691,
    /// HJ 1239 (terminal firmware): time(6) + serial u16, then repeated
    /// { type(1) + collection time(6) + body }, optionally ending with an SM2 signature block.
    Hj1239,
    /// Signed bodies (a 2019 server's test frame, single source): collection time(6) + report
    /// serial u16, then repeated { type(1) + body + SM2 signature block }; no per-body time.
    SignedBodies,
}

impl BodyLayout {
    /// Stable name for logs, metrics and configuration.
    pub fn name(self) -> &'static str {
        match self {
            BodyLayout::Gb17691 => "gb17691",
            BodyLayout::Hj1239 => "hj1239",
            BodyLayout::SignedBodies => "signed_bodies",
        }
    }
}

/// Order in which [`InfoReport::detect`] tries the layouts for a terminal whose layout is not
/// known yet. UNVERIFIED: no source says which layout is most common; GB 17691 comes first
/// because both public real-time samples use it, the single-source signed-bodies layout last.
pub const DETECTION_ORDER: [BodyLayout; 3] =
    [BodyLayout::Gb17691, BodyLayout::Hj1239, BodyLayout::SignedBodies];

/// Info body type codes and, for the opaque ones, their fixed lengths (one table).
pub mod body_type {
    /// OBD information, 96 + 4·n bytes.
    pub const OBD: u8 = 0x01;
    /// Diesel engine data stream (DPF/SCR), 37 bytes.
    pub const DIESEL_ENGINE: u8 = 0x02;
    /// Gas engine (three-way catalyst) stream, 30 bytes.
    pub const GAS_ENGINE: u8 = 0x03;
    /// Hybrid add-on, 8 bytes.
    pub const HYBRID: u8 = 0x04;
    /// Three-way catalyst stream with NOx sensor, 32 bytes.
    pub const TWC_NOX: u8 = 0x05;
    /// Supplementary stream, 17 bytes. UNVERIFIED: whether 0x80–0xFE is formally user-defined and
    /// whether 0x80 is always 17 bytes (opacity-meter data would come as such a body).
    pub const SUPPLEMENTARY: u8 = 0x80;

    /// Hybrid body length.
    pub const HYBRID_LEN: usize = 8;
    /// TWC + NOx body length.
    pub const TWC_NOX_LEN: usize = 32;
    /// Supplementary body length (UNVERIFIED).
    pub const SUPPLEMENTARY_LEN: usize = 17;

    /// Whether the walker knows how long a body of this type is.
    pub fn is_known(t: u8) -> bool {
        matches!(t, OBD | DIESEL_ENGINE | GAS_ENGINE | HYBRID | TWC_NOX | SUPPLEMENTARY)
    }
}

/// One info body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InfoBody {
    /// 0x01 OBD information.
    Obd(ObdInfo),
    /// 0x02 diesel engine data stream.
    DieselEngine(EngineData),
    /// 0x03 gas engine stream (first six fields decoded).
    GasEngine(GasEngineData),
    /// 0x04 hybrid add-on, raw (layout not in the reference).
    Hybrid([u8; body_type::HYBRID_LEN]),
    /// 0x05 three-way catalyst + NOx sensor stream, raw: the reference gives only its length, and
    /// guessing offsets for NOx would risk false violations.
    TwcNox([u8; body_type::TWC_NOX_LEN]),
    /// 0x80 supplementary stream, raw (UNVERIFIED length 17).
    Supplementary([u8; body_type::SUPPLEMENTARY_LEN]),
}

impl InfoBody {
    /// The type byte of this body.
    pub fn info_type(&self) -> u8 {
        match self {
            InfoBody::Obd(_) => body_type::OBD,
            InfoBody::DieselEngine(_) => body_type::DIESEL_ENGINE,
            InfoBody::GasEngine(_) => body_type::GAS_ENGINE,
            InfoBody::Hybrid(_) => body_type::HYBRID,
            InfoBody::TwcNox(_) => body_type::TWC_NOX,
            InfoBody::Supplementary(_) => body_type::SUPPLEMENTARY,
        }
    }

    fn decode(info_type: u8, type_offset: usize, r: &mut Reader<'_>) -> Result<Self, MessageError> {
        Ok(match info_type {
            body_type::OBD => InfoBody::Obd(ObdInfo::decode(r)?),
            body_type::DIESEL_ENGINE => InfoBody::DieselEngine(EngineData::decode(r)?),
            body_type::GAS_ENGINE => InfoBody::GasEngine(GasEngineData::decode(r)?),
            body_type::HYBRID => InfoBody::Hybrid(r.array("hybrid body (0x04)")?),
            body_type::TWC_NOX => InfoBody::TwcNox(r.array("TWC+NOx body (0x05)")?),
            body_type::SUPPLEMENTARY => InfoBody::Supplementary(r.array("supplementary body (0x80)")?),
            other => return Err(MessageError::UnknownInfoType { info_type: other, offset: type_offset }),
        })
    }

    fn encode(&self, out: &mut BytesMut) -> Result<(), MessageError> {
        match self {
            InfoBody::Obd(o) => o.encode(out)?,
            InfoBody::DieselEngine(d) => d.encode(out),
            InfoBody::GasEngine(g) => g.encode(out),
            InfoBody::Hybrid(b) => out.put_slice(b),
            InfoBody::TwcNox(b) => out.put_slice(b),
            InfoBody::Supplementary(b) => out.put_slice(b),
        }
        Ok(())
    }
}

/// Reads a type byte and fails early on an unknown type (its length is unknown).
fn read_type(r: &mut Reader<'_>) -> Result<(u8, usize), MessageError> {
    let offset = r.offset();
    let t = r.u8("info type")?;
    if !body_type::is_known(t) {
        return Err(MessageError::UnknownInfoType { info_type: t, offset });
    }
    Ok((t, offset))
}

/// GB 17691 layout record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GbRecord {
    /// Info serial number.
    pub serial: u16,
    /// The body.
    pub body: InfoBody,
}

/// GB 17691 layout data unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GbReport {
    /// Information collection time, shared by all records.
    pub time: TerminalTime,
    /// Records in wire order.
    pub records: Vec<GbRecord>,
}

/// HJ 1239 layout record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HjRecord {
    /// Collection time of this record.
    pub collected_at: TerminalTime,
    /// The body.
    pub body: InfoBody,
}

/// HJ 1239 layout data unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HjReport {
    /// Send time.
    pub time: TerminalTime,
    /// Packet serial number.
    pub serial: u16,
    /// Records in wire order.
    pub records: Vec<HjRecord>,
    /// Trailing SM2 signature, when signing is on (kept raw; not verified here).
    pub signature: Option<Sm2Signature>,
}

/// Signed-bodies layout record: a body and the SM2 signature that follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedRecord {
    /// The body.
    pub body: InfoBody,
    /// The signature over it (kept raw; verified where a key is configured).
    pub signature: Sm2Signature,
}

/// Signed-bodies layout data unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedReport {
    /// Collection time, shared by all records.
    pub time: TerminalTime,
    /// Report serial number.
    pub serial: u16,
    /// Records in wire order.
    pub records: Vec<SignedRecord>,
}

/// The data unit of a real-time or reissue frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InfoReport {
    /// GB 17691 Annex Q layout.
    Gb17691(GbReport),
    /// HJ 1239 layout.
    Hj1239(HjReport),
    /// Signed-bodies layout.
    Signed(SignedReport),
}

impl InfoReport {
    /// Decodes a data unit in the given layout. An empty body list is accepted (nothing to store).
    pub fn decode(data: &[u8], layout: BodyLayout) -> Result<Self, MessageError> {
        let mut r = Reader::new(data);
        match layout {
            BodyLayout::Gb17691 => {
                let time = r.time("information time")?;
                let mut records = Vec::new();
                while r.remaining() > 0 {
                    let (info_type, offset) = read_type(&mut r)?;
                    let serial = r.u16("info serial")?;
                    let body = InfoBody::decode(info_type, offset, &mut r)?;
                    records.push(GbRecord { serial, body });
                }
                Ok(InfoReport::Gb17691(GbReport { time, records }))
            }
            BodyLayout::Hj1239 => {
                let time = r.time("send time")?;
                let serial = r.u16("packet serial")?;
                let mut records = Vec::new();
                let mut signature = None;
                while r.remaining() > 0 {
                    // 0x20 (the signature's length byte) is not a body type, so no ambiguity.
                    if let Some(sig) = Sm2Signature::parse_block(r.rest()) {
                        signature = Some(sig);
                        break;
                    }
                    let (info_type, offset) = read_type(&mut r)?;
                    let collected_at = r.time("collection time")?;
                    let body = InfoBody::decode(info_type, offset, &mut r)?;
                    records.push(HjRecord { collected_at, body });
                }
                Ok(InfoReport::Hj1239(HjReport { time, serial, records, signature }))
            }
            BodyLayout::SignedBodies => {
                let time = r.time("collection time")?;
                let serial = r.u16("report serial")?;
                let mut records = Vec::new();
                while r.remaining() > 0 {
                    let (info_type, offset) = read_type(&mut r)?;
                    let body = InfoBody::decode(info_type, offset, &mut r)?;
                    let offset = r.offset();
                    let block = r.take(SIGNATURE_WIRE_LEN, "body signature")?;
                    let signature =
                        Sm2Signature::parse_block(block).ok_or(MessageError::BadSignatureBlock { offset })?;
                    records.push(SignedRecord { body, signature });
                }
                Ok(InfoReport::Signed(SignedReport { time, serial, records }))
            }
        }
    }

    /// Decodes a data unit in whichever layout fits: `prefer` first (the layout this terminal
    /// used before), then [`DETECTION_ORDER`]. The error names every layout tried and why it
    /// failed.
    pub fn detect(data: &[u8], prefer: Option<BodyLayout>) -> Result<Self, MessageError> {
        let order = prefer.into_iter().chain(DETECTION_ORDER.into_iter().filter(|l| Some(*l) != prefer));
        let mut tried = Vec::new();
        for layout in order {
            match Self::decode(data, layout) {
                Ok(report) => return Ok(report),
                Err(e) => tried.push(format!("{}: {e}", layout.name())),
            }
        }
        Err(MessageError::NoLayoutFits { tried: tried.join("; ") })
    }

    /// Appends the data unit.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), MessageError> {
        match self {
            InfoReport::Gb17691(g) => {
                out.put_slice(&g.time.to_bytes());
                for rec in &g.records {
                    out.put_u8(rec.body.info_type());
                    out.put_u16(rec.serial);
                    rec.body.encode(out)?;
                }
            }
            InfoReport::Hj1239(h) => {
                out.put_slice(&h.time.to_bytes());
                out.put_u16(h.serial);
                for rec in &h.records {
                    out.put_u8(rec.body.info_type());
                    out.put_slice(&rec.collected_at.to_bytes());
                    rec.body.encode(out)?;
                }
                if let Some(sig) = &h.signature {
                    sig.encode(out);
                }
            }
            InfoReport::Signed(g) => {
                out.put_slice(&g.time.to_bytes());
                out.put_u16(g.serial);
                for rec in &g.records {
                    out.put_u8(rec.body.info_type());
                    rec.body.encode(out)?;
                    rec.signature.encode(out);
                }
            }
        }
        Ok(())
    }

    /// Layout of this report.
    pub fn layout(&self) -> BodyLayout {
        match self {
            InfoReport::Gb17691(_) => BodyLayout::Gb17691,
            InfoReport::Hj1239(_) => BodyLayout::Hj1239,
            InfoReport::Signed(_) => BodyLayout::SignedBodies,
        }
    }

    /// The data unit's leading time (collection time in GB layout, send time in HJ layout).
    pub fn time(&self) -> TerminalTime {
        match self {
            InfoReport::Gb17691(g) => g.time,
            InfoReport::Hj1239(h) => h.time,
            InfoReport::Signed(g) => g.time,
        }
    }

    /// Every body with the time it was collected, whatever the layout: the pipeline's view.
    pub fn bodies(&self) -> impl Iterator<Item = (TerminalTime, &InfoBody)> + '_ {
        let (gb, hj, signed) = match self {
            InfoReport::Gb17691(g) => (Some(g.records.iter().map(|r| (g.time, &r.body))), None, None),
            InfoReport::Hj1239(h) => (None, Some(h.records.iter().map(|r| (r.collected_at, &r.body))), None),
            InfoReport::Signed(g) => (None, None, Some(g.records.iter().map(|r| (g.time, &r.body)))),
        };
        gb.into_iter().flatten().chain(hj.into_iter().flatten()).chain(signed.into_iter().flatten())
    }

    /// Whether every body shares the report's one time (GB and signed-bodies layouts): the
    /// gateway then spreads several engine bodies over consecutive seconds.
    pub fn shares_one_time(&self) -> bool {
        !matches!(self, InfoReport::Hj1239(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> [u8; 6] {
        [0x14, 0x05, 0x1D, 0x0D, 0x34, 0x1E]
    }

    #[test]
    fn unknown_type_is_an_error_with_offset() {
        let mut data = t().to_vec();
        data.extend([0x42, 0x00, 0x01]);
        assert_eq!(
            InfoReport::decode(&data, BodyLayout::Gb17691),
            Err(MessageError::UnknownInfoType { info_type: 0x42, offset: 6 })
        );
    }

    #[test]
    fn hj_layout_with_signature() {
        let mut data = t().to_vec();
        data.extend([0x00, 0x07]);
        data.push(body_type::HYBRID);
        data.extend(t());
        data.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        data.push(32);
        data.extend([0x11; 32]);
        data.push(32);
        data.extend([0x22; 32]);
        let rep = InfoReport::decode(&data, BodyLayout::Hj1239).unwrap();
        let InfoReport::Hj1239(h) = &rep else { panic!("layout") };
        assert_eq!(h.serial, 7);
        assert_eq!(h.records.len(), 1);
        assert_eq!(h.signature.unwrap().s, [0x22; 32]);
        assert_eq!(rep.bodies().count(), 1);
        let mut out = BytesMut::new();
        rep.encode(&mut out).unwrap();
        assert_eq!(&out[..], &data[..]);
    }

    /// The field frame of defect 1: time + serial, then type + body + signature, no body time.
    fn signed_bodies_data() -> Vec<u8> {
        let mut data = t().to_vec();
        data.extend([0x00, 0x05]);
        data.push(body_type::HYBRID);
        data.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        data.push(32);
        data.extend([0x11; 32]);
        data.push(32);
        data.extend([0x22; 32]);
        data.push(body_type::SUPPLEMENTARY);
        data.extend([9; 17]);
        data.push(32);
        data.extend([0x33; 32]);
        data.push(32);
        data.extend([0x44; 32]);
        data
    }

    #[test]
    fn signed_bodies_layout_is_rejected_by_the_other_two_and_detected() {
        let data = signed_bodies_data();
        assert!(InfoReport::decode(&data, BodyLayout::Gb17691).is_err());
        assert!(InfoReport::decode(&data, BodyLayout::Hj1239).is_err());
        let rep = InfoReport::detect(&data, None).unwrap();
        let InfoReport::Signed(g) = &rep else { panic!("layout {:?}", rep.layout()) };
        assert_eq!(g.serial, 5);
        assert_eq!(g.records.len(), 2);
        assert_eq!(g.records[1].signature.s, [0x44; 32]);
        assert_eq!(rep.bodies().count(), 2);
        let mut out = BytesMut::new();
        rep.encode(&mut out).unwrap();
        assert_eq!(&out[..], &data[..]);
        // A broken signature length byte is a typed error naming every layout tried.
        let mut bad = data.clone();
        bad[6 + 2 + 1 + 8] = 33;
        let err = InfoReport::detect(&bad, Some(BodyLayout::SignedBodies)).unwrap_err();
        assert!(err.to_string().contains("signed_bodies: "), "{err}");
    }

    #[test]
    fn remembered_layout_is_tried_first() {
        // Time only: GB (no bodies) fits; so would nothing else. Time + serial: HJ and signed fit
        // with no bodies; the preferred one wins.
        let mut data = t().to_vec();
        data.extend([0x00, 0x01]);
        assert_eq!(InfoReport::detect(&data, None).unwrap().layout(), BodyLayout::Hj1239);
        assert_eq!(
            InfoReport::detect(&data, Some(BodyLayout::SignedBodies)).unwrap().layout(),
            BodyLayout::SignedBodies
        );
        assert_eq!(InfoReport::detect(&t(), Some(BodyLayout::Hj1239)).unwrap().layout(), BodyLayout::Gb17691);
    }

    #[test]
    fn truncated_body() {
        let mut data = t().to_vec();
        data.extend([0x02, 0x00, 0x01, 0x00]);
        assert!(matches!(
            InfoReport::decode(&data, BodyLayout::Gb17691),
            Err(MessageError::Truncated { .. })
        ));
    }
}
