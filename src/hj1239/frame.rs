//! Frame layer: the envelope shared by every command (GB 17691-2018 Annex Q / HJ 1239).
//!
//! ```text
//! ## | command(1) | VIN(17) | software version(1) | encryption(1) | data length(2, BE) | data(n) | BCC(1)
//! ```
//! The BCC is the XOR of every byte from the command byte through the last data byte (the start
//! marker is excluded). This file only knows the envelope; what the data unit means is the message
//! layer's job (`message.rs`), and finding frames in a TCP byte stream is `codec.rs`'s job.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Start marker `##`, confirmed on the public sample frames.
pub const START_MARKER: [u8; 2] = [0x23, 0x23];
/// Start marker `~~` that one T-box maker's firmware uses in HJ mode (field notes, single source).
pub const TILDE_MARKER: [u8; 2] = [0x7E, 0x7E];

/// The two start markers seen in the field. A terminal is answered with the marker it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMarker {
    /// `##` (GB 17691 / HJ 1239 text, every public sample).
    #[default]
    Hash,
    /// `~~` (one T-box maker's HJ mode).
    Tilde,
}

impl StartMarker {
    /// Every accepted marker, in one table.
    pub const ALL: [StartMarker; 2] = [StartMarker::Hash, StartMarker::Tilde];

    /// The two wire bytes.
    pub fn bytes(self) -> [u8; 2] {
        match self {
            StartMarker::Hash => START_MARKER,
            StartMarker::Tilde => TILDE_MARKER,
        }
    }

    /// The marker `bytes` start with, if any.
    pub fn at_start(bytes: &[u8]) -> Option<StartMarker> {
        let head = bytes.get(..2)?;
        Self::ALL.into_iter().find(|m| m.bytes() == head)
    }

    /// The marker whose bytes are both `b` (a marker is one byte twice).
    pub fn of_byte(b: u8) -> Option<StartMarker> {
        Self::ALL.into_iter().find(|m| m.bytes()[0] == b)
    }
}
/// Bytes before the data unit: marker(2) + command(1) + VIN(17) + version(1) + encryption(1) + length(2).
pub const HEADER_LEN: usize = 24;
/// Bytes of a frame that are not data: the header plus the trailing BCC.
pub const OVERHEAD_LEN: usize = HEADER_LEN + 1;
/// Offset of the big-endian data-length field inside a frame.
pub(crate) const LENGTH_OFFSET: usize = 22;
/// The data length field is a u16: no frame can carry more.
pub const MAX_WIRE_DATA_LEN: usize = u16::MAX as usize;

/// The 17-byte identity in the VIN slot: the vehicle VIN for trucks, the 17-character machine
/// environmental code (机械环保代码) for non-road machinery (HJ 1322). Kept as raw bytes because a
/// misconfigured terminal may send non-ASCII; [`Vin::as_str`] tells whether it is readable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vin(pub [u8; 17]);

impl Vin {
    /// Wire length of a VIN.
    pub const LEN: usize = 17;

    /// The VIN as text when every byte is printable ASCII (what logs and registries key on).
    pub fn as_str(&self) -> Option<&str> {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            std::str::from_utf8(&self.0).ok()
        } else {
            None
        }
    }
}

impl TryFrom<&str> for Vin {
    type Error = usize;

    /// Builds a VIN from exactly 17 bytes of text; the error is the length actually given.
    fn try_from(s: &str) -> Result<Self, usize> {
        let arr: [u8; 17] = s.as_bytes().try_into().map_err(|_| s.len())?;
        Ok(Vin(arr))
    }
}

impl fmt::Display for Vin {
    /// Printable VINs print as text, anything else as `hex:…` so logs never carry raw control bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "hex:{}", hex::encode_upper(self.0)),
        }
    }
}

impl fmt::Debug for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vin({self})")
    }
}

/// Data-unit encryption declared in the header.
///
/// Only 0x01 (none) is agreed by all sources. The remaining codes follow the GB 17691 sources.
/// One manufacturer's HJ mode instead uses 0x02 SM2, 0x03 SM4, 0x04 RSA, 0x05 AES128 (conflict noted
/// in the domain reference); if that mode has to be supported, change [`ENCRYPTION_TABLE`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// 0x01: data unit in clear.
    None,
    /// 0x02 (GB 17691): RSA.
    Rsa,
    /// 0x03 (GB 17691): SM2.
    Sm2,
    /// 0xFE: the terminal reports its encryption state as abnormal.
    Abnormal,
    /// 0xFF: invalid.
    Invalid,
    /// Any other byte, kept so the frame still round-trips.
    Unknown(u8),
}

/// The single mapping between encryption bytes and [`Encryption`] (GB 17691 sources).
/// HJ manufacturer variant (NOT used): 0x02 SM2, 0x03 SM4, 0x04 RSA, 0x05 AES128.
pub const ENCRYPTION_TABLE: &[(u8, Encryption)] = &[
    (0x01, Encryption::None),
    (0x02, Encryption::Rsa),
    (0x03, Encryption::Sm2),
    (0xFE, Encryption::Abnormal),
    (0xFF, Encryption::Invalid),
];

impl Encryption {
    /// Maps a header byte through [`ENCRYPTION_TABLE`].
    pub fn from_byte(b: u8) -> Self {
        ENCRYPTION_TABLE
            .iter()
            .find(|(code, _)| *code == b)
            .map(|(_, e)| *e)
            .unwrap_or(Encryption::Unknown(b))
    }

    /// The header byte for this scheme (inverse of [`Encryption::from_byte`]).
    pub fn to_byte(self) -> u8 {
        match self {
            Encryption::Unknown(b) => b,
            known => {
                ENCRYPTION_TABLE.iter().find(|(_, e)| *e == known).map(|(code, _)| *code).unwrap_or(0x01)
            }
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::Unknown(b) => write!(f, "unknown encryption 0x{b:02X}"),
            other => write!(f, "{other:?} (0x{:02X})", other.to_byte()),
        }
    }
}

/// One protocol frame, envelope decoded, data unit still opaque.
///
/// `data` is a zero-copy slice of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Start marker the frame came with (answers reuse it).
    pub marker: StartMarker,
    /// Command code (0x01 login … 0x05 time calibration, 0x80–0xFE platform-defined).
    pub command: u8,
    /// Vehicle VIN or machine environmental code.
    pub vin: Vin,
    /// Terminal software version, 0..255.
    pub software_version: u8,
    /// Declared encryption of the data unit.
    pub encryption: Encryption,
    /// The data unit.
    pub data: Bytes,
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum FrameEncodeError {
    /// The data unit does not fit the u16 length field.
    #[error("data unit of {len} bytes exceeds the u16 length field")]
    DataTooLong {
        /// Length that was asked for.
        len: usize,
    },
}

/// XOR block check over `bytes` (callers pass command..=last data byte).
pub fn bcc(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

impl Frame {
    /// Total wire length of this frame.
    pub fn wire_len(&self) -> usize {
        OVERHEAD_LEN + self.data.len()
    }

    /// Appends the frame (marker, header, data, BCC) to `dst`.
    pub fn encode_into(&self, dst: &mut BytesMut) -> Result<(), FrameEncodeError> {
        let len = u16::try_from(self.data.len())
            .map_err(|_| FrameEncodeError::DataTooLong { len: self.data.len() })?;
        dst.reserve(self.wire_len());
        let start = dst.len();
        dst.put_slice(&self.marker.bytes());
        dst.put_u8(self.command);
        dst.put_slice(&self.vin.0);
        dst.put_u8(self.software_version);
        dst.put_u8(self.encryption.to_byte());
        dst.put_u16(len);
        dst.put_slice(&self.data);
        let check = bcc(dst.get(start + START_MARKER.len()..).unwrap_or_default());
        dst.put_u8(check);
        Ok(())
    }

    /// The frame as one contiguous byte string.
    pub fn to_bytes(&self) -> Result<Bytes, FrameEncodeError> {
        let mut b = BytesMut::with_capacity(self.wire_len());
        self.encode_into(&mut b)?;
        Ok(b.freeze())
    }

    /// Parses exactly one complete frame (no junk, nothing after it), e.g. a stored raw frame.
    /// Streams go through [`crate::hj1239::FrameCodec`] instead.
    pub fn parse(bytes: &[u8]) -> Result<Frame, super::FrameError> {
        use super::codec::{inspect, Inspect};
        match inspect(bytes, MAX_WIRE_DATA_LEN) {
            Inspect::Complete { total } if total == bytes.len() => {
                Ok(frame_from_checked(Bytes::copy_from_slice(bytes)))
            }
            // A valid frame followed by extra bytes: report the extra bytes as junk.
            Inspect::Complete { total } => {
                let extra = bytes.get(total..).unwrap_or_default();
                Err(super::FrameError::Junk {
                    skipped: extra.len(),
                    excerpt: super::codec::hex_excerpt(extra),
                })
            }
            Inspect::NeedMore { needed } => Err(super::FrameError::Truncated {
                needed,
                available: bytes.len(),
                vin: header_vin(bytes),
                excerpt: super::codec::hex_excerpt(bytes),
            }),
            Inspect::Bad(e) => Err(e),
            Inspect::NoMarker => Err(super::FrameError::Junk {
                skipped: bytes.len(),
                excerpt: super::codec::hex_excerpt(bytes),
            }),
        }
    }
}

/// The VIN of a (possibly damaged) frame starting at `bytes[0]`, when the header is there and the
/// VIN is printable: lets drop reports name the terminal.
pub(crate) fn header_vin(bytes: &[u8]) -> Option<Vin> {
    let raw: [u8; 17] = bytes.get(3..20)?.try_into().ok()?;
    let vin = Vin(raw);
    vin.as_str().map(|_| vin)
}

/// Builds a [`Frame`] from bytes already checked by `inspect` (length and BCC verified).
/// Uses checked access throughout; a malformed input yields an empty-data frame rather than a panic,
/// but callers only pass checked frames.
pub(crate) fn frame_from_checked(frame: Bytes) -> Frame {
    let marker = StartMarker::at_start(&frame).unwrap_or_default();
    let command = frame.get(2).copied().unwrap_or(0);
    let vin = frame.get(3..20).and_then(|s| <[u8; 17]>::try_from(s).ok()).map(Vin).unwrap_or(Vin([0; 17]));
    let software_version = frame.get(20).copied().unwrap_or(0);
    let encryption = Encryption::from_byte(frame.get(21).copied().unwrap_or(0x01));
    let end = frame.len().saturating_sub(1).max(HEADER_LEN);
    let data = if frame.len() > HEADER_LEN { frame.slice(HEADER_LEN..end) } else { Bytes::new() };
    Frame { marker, command, vin, software_version, encryption, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_table_round_trips_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(Encryption::from_byte(b).to_byte(), b);
        }
        assert_eq!(Encryption::from_byte(0x03), Encryption::Sm2);
    }

    #[test]
    fn vin_display_escapes_binary() {
        let v = Vin([0u8; 17]);
        assert!(v.as_str().is_none());
        assert!(v.to_string().starts_with("hex:"));
        let ok = Vin::try_from("LCIAMMBE4G0004671").unwrap();
        assert_eq!(ok.to_string(), "LCIAMMBE4G0004671");
        assert_eq!(Vin::try_from("short"), Err(5));
    }

    #[test]
    fn encode_then_parse() {
        let f = Frame {
            marker: StartMarker::Hash,
            command: 0x04,
            vin: Vin::try_from("LG6ZDANH7EY208182").unwrap(),
            software_version: 2,
            encryption: Encryption::None,
            data: Bytes::from_static(&[0x14, 0x09, 0x11, 0x13, 0x2E, 0x34, 0x00, 0x1A]),
        };
        let bytes = f.to_bytes().unwrap();
        assert_eq!(*bytes.last().unwrap(), 0x5E);
        assert_eq!(Frame::parse(&bytes).unwrap(), f);
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(Frame::parse(&longer), Err(crate::hj1239::FrameError::Junk { skipped: 1, .. })));
        assert!(matches!(Frame::parse(&bytes[..10]), Err(crate::hj1239::FrameError::Truncated { .. })));
    }

    #[test]
    fn oversized_data_is_an_encode_error() {
        let f = Frame {
            marker: StartMarker::Hash,
            command: 0x02,
            vin: Vin([b'A'; 17]),
            software_version: 0,
            encryption: Encryption::None,
            data: Bytes::from(vec![0u8; 70_000]),
        };
        assert_eq!(f.to_bytes(), Err(FrameEncodeError::DataTooLong { len: 70_000 }));
    }
}
