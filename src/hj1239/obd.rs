//! OBD information body (info type 0x01): 96 + 4·n bytes (confirmed by public sample frames).

use bytes::{BufMut, BytesMut};

use super::error::MessageError;
use super::frame::Vin;
use super::reader::Reader;

/// Fault-count values at or above this carry no fault list (0xFE = invalid per the reference;
/// 0xFF treated the same by the sentinel convention — UNVERIFIED).
pub const FAULT_COUNT_INVALID_FIRST: u8 = 0xFE;

/// One J1939 diagnostic trouble code as 4 raw bytes.
///
/// The byte order on this protocol is UNVERIFIED: [`Dtc::j1939_spn_fmi`] assumes J1939-73 DM1 order
/// (SPN low byte first, then SPN bits 8–15, then SPN bits 16–18 in the top 3 bits with FMI in the
/// low 5 bits, then CM/OC). Storage keeps the raw bytes so a wrong guess costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dtc(pub [u8; 4]);

/// OBD protocol bytes whose terminals send ISO 27145 / SAE J1979 style DTCs (3-byte DTC + status
/// byte) instead of J1939 SPN/FMI: 0 ISO 15765 (J1979 over CAN), 1 ISO 27145 (WWH-OBD), 3 ISO
/// 15031 (machinery diagnostics). Everything else is read as J1939. One table; UNVERIFIED which
/// protocols each terminal firmware really maps to which DTC format.
pub const THREE_BYTE_DTC_PROTOCOLS: &[u8] = &[0, 1, 3];

/// A DTC read according to the OBD protocol it came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtcReading {
    /// SAE J1939: suspect parameter number, failure mode identifier, occurrence count.
    J1939 {
        /// SPN.
        spn: u32,
        /// FMI.
        fmi: u8,
        /// Occurrence count (low 7 bits of byte 4).
        occurrence: u8,
    },
    /// ISO 27145 / SAE J1979: 2-byte DTC (letter + 4 digits), failure type byte, status byte.
    /// Assumed byte order (UNVERIFIED): DTC high, DTC low, failure type, status.
    Obd {
        /// DTC bytes (high, low), e.g. 0x20 0x47 = P2047.
        code: [u8; 2],
        /// Failure type byte (ISO 14229 "low byte").
        failure_type: u8,
        /// DTC status byte.
        status: u8,
    },
}

impl std::fmt::Display for DtcReading {
    /// `SPN 3226 FMI 2 OC 1`, or `P2047-1C status 0x08`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            DtcReading::J1939 { spn, fmi, occurrence } => write!(f, "SPN {spn} FMI {fmi} OC {occurrence}"),
            DtcReading::Obd { code: [hi, lo], failure_type, status } => {
                let letter = ['P', 'C', 'B', 'U'].get(usize::from(hi >> 6)).copied().unwrap_or('P');
                write!(
                    f,
                    "{letter}{}{:X}{lo:02X}-{failure_type:02X} status 0x{status:02X}",
                    (hi >> 4) & 0x03,
                    hi & 0x0F
                )
            }
        }
    }
}

impl Dtc {
    /// (SPN, FMI) under the J1939-73 byte order assumption (UNVERIFIED).
    pub fn j1939_spn_fmi(&self) -> (u32, u8) {
        let [b0, b1, b2, _] = self.0;
        let spn = u32::from(b0) | (u32::from(b1) << 8) | (u32::from(b2 >> 5) << 16);
        (spn, b2 & 0x1F)
    }

    /// The DTC read by the OBD protocol byte of its body ([`THREE_BYTE_DTC_PROTOCOLS`]).
    pub fn read(&self, protocol: u8) -> DtcReading {
        let [b0, b1, b2, b3] = self.0;
        if THREE_BYTE_DTC_PROTOCOLS.contains(&protocol) {
            DtcReading::Obd { code: [b0, b1], failure_type: b2, status: b3 }
        } else {
            let (spn, fmi) = self.j1939_spn_fmi();
            DtcReading::J1939 { spn, fmi, occurrence: b3 & 0x7F }
        }
    }
}

/// OBD communication protocol (field 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObdProtocol {
    /// 0: ISO 15765.
    Iso15765,
    /// 1: ISO 27145.
    Iso27145,
    /// 2: SAE J1939.
    SaeJ1939,
    /// 0xFE: invalid.
    Invalid,
    /// Anything else.
    Other(u8),
}

/// Malfunction indicator lamp status (field 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MilStatus {
    /// 0: off.
    Off,
    /// 1: on.
    On,
    /// 0xFE: invalid.
    Invalid,
    /// Anything else.
    Other(u8),
}

/// OBD information, raw wire values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObdInfo {
    /// OBD protocol (raw; see [`ObdInfo::protocol_kind`]).
    pub protocol: u8,
    /// MIL status (raw; see [`ObdInfo::mil`]).
    pub mil_status: u8,
    /// Diagnostic support status bit field.
    pub diagnostic_support: u16,
    /// Diagnostic readiness status bit field.
    pub diagnostic_readiness: u16,
    /// VIN as read from the ECU; a mismatch with the frame VIN is a tampering signal.
    pub ecu_vin: Vin,
    /// Software calibration ID, ASCII, padded.
    pub calibration_id: [u8; 18],
    /// Calibration verification number, ASCII, padded.
    pub cvn: [u8; 18],
    /// In-use performance ratio counters (18 × u16).
    pub iupr: [u16; 18],
    /// Fault count byte as sent (0–253; ≥ 0xFE = invalid, no list follows).
    pub fault_count: u8,
    /// Fault codes; must hold `fault_count` entries (or none when the count is invalid).
    pub faults: Vec<Dtc>,
}

impl ObdInfo {
    /// Length without fault codes.
    pub const FIXED_LEN: usize = 96;

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        let fixed = r.take(Self::FIXED_LEN, "OBD information (0x01)")?;
        let mut f = Reader::new(fixed);
        let protocol = f.u8("OBD protocol")?;
        let mil_status = f.u8("MIL status")?;
        let diagnostic_support = f.u16("diagnostic support")?;
        let diagnostic_readiness = f.u16("diagnostic readiness")?;
        let ecu_vin = Vin(f.array("ECU VIN")?);
        let calibration_id = f.array("calibration ID")?;
        let cvn = f.array("CVN")?;
        let mut iupr = [0u16; 18];
        for slot in iupr.iter_mut() {
            *slot = f.u16("IUPR")?;
        }
        let fault_count = f.u8("fault count")?;
        let n = if fault_count >= FAULT_COUNT_INVALID_FIRST { 0 } else { usize::from(fault_count) };
        let mut faults = Vec::with_capacity(n);
        for _ in 0..n {
            faults.push(Dtc(r.array("OBD fault code")?));
        }
        Ok(Self {
            protocol,
            mil_status,
            diagnostic_support,
            diagnostic_readiness,
            ecu_vin,
            calibration_id,
            cvn,
            iupr,
            fault_count,
            faults,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), MessageError> {
        let expected =
            if self.fault_count >= FAULT_COUNT_INVALID_FIRST { 0 } else { usize::from(self.fault_count) };
        if self.faults.len() != expected {
            return Err(MessageError::FaultCountMismatch {
                count: self.fault_count,
                listed: self.faults.len(),
            });
        }
        out.put_u8(self.protocol);
        out.put_u8(self.mil_status);
        out.put_u16(self.diagnostic_support);
        out.put_u16(self.diagnostic_readiness);
        out.put_slice(&self.ecu_vin.0);
        out.put_slice(&self.calibration_id);
        out.put_slice(&self.cvn);
        for c in self.iupr {
            out.put_u16(c);
        }
        out.put_u8(self.fault_count);
        for d in &self.faults {
            out.put_slice(&d.0);
        }
        Ok(())
    }

    /// Wire length of this body.
    pub fn wire_len(&self) -> usize {
        Self::FIXED_LEN + 4 * self.faults.len()
    }

    /// Decoded OBD protocol.
    pub fn protocol_kind(&self) -> ObdProtocol {
        match self.protocol {
            0 => ObdProtocol::Iso15765,
            1 => ObdProtocol::Iso27145,
            2 => ObdProtocol::SaeJ1939,
            0xFE => ObdProtocol::Invalid,
            other => ObdProtocol::Other(other),
        }
    }

    /// Decoded MIL status.
    pub fn mil(&self) -> MilStatus {
        match self.mil_status {
            0 => MilStatus::Off,
            1 => MilStatus::On,
            0xFE => MilStatus::Invalid,
            other => MilStatus::Other(other),
        }
    }

    /// The fault list, or `None` when the terminal marked the count invalid.
    pub fn fault_codes(&self) -> Option<&[Dtc]> {
        (self.fault_count < FAULT_COUNT_INVALID_FIRST).then_some(self.faults.as_slice())
    }

    /// Calibration ID as text (trailing NUL/space padding removed), if ASCII.
    pub fn calibration_id_str(&self) -> Option<&str> {
        padded_ascii(&self.calibration_id)
    }

    /// CVN as text (trailing padding removed), if ASCII.
    pub fn cvn_str(&self) -> Option<&str> {
        padded_ascii(&self.cvn)
    }
}

fn padded_ascii(b: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(b).ok().filter(|s| s.is_ascii())?;
    Some(s.trim_end_matches(['\0', ' ']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtc_j1939_order() {
        // SPN 3226 (0x0C9A), FMI 2.
        let d = Dtc([0x9A, 0x0C, 0x02, 0x01]);
        assert_eq!(d.j1939_spn_fmi(), (3226, 2));
    }

    #[test]
    fn dtc_read_by_protocol() {
        let d = Dtc([0x20, 0x47, 0x1C, 0x08]);
        assert_eq!(d.read(1).to_string(), "P2047-1C status 0x08");
        assert_eq!(d.read(0).to_string(), "P2047-1C status 0x08");
        assert!(matches!(d.read(2), DtcReading::J1939 { .. }));
        assert_eq!(Dtc([0xC1, 0x00, 0x00, 0x00]).read(1).to_string(), "U0100-00 status 0x00");
        assert_eq!(Dtc([0x9A, 0x0C, 0x02, 0x81]).read(2).to_string(), "SPN 3226 FMI 2 OC 1");
    }

    #[test]
    fn invalid_fault_count_has_no_list() {
        let mut body = vec![0u8; 96];
        body[95] = 0xFE;
        let o = ObdInfo::decode(&mut Reader::new(&body)).unwrap();
        assert_eq!(o.fault_codes(), None);
        let mut out = BytesMut::new();
        o.encode(&mut out).unwrap();
        assert_eq!(&out[..], &body[..]);
    }

    #[test]
    fn fault_list_truncated() {
        let mut body = vec![0u8; 96 + 4];
        body[95] = 2;
        assert!(matches!(ObdInfo::decode(&mut Reader::new(&body)), Err(MessageError::Truncated { .. })));
    }
}
