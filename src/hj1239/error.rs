//! Message-layer errors. Frame-layer (stream) problems are [`super::FrameError`]; these concern a
//! frame that arrived intact but whose data unit cannot be used. None of them should close the
//! connection by itself: the gateway drops the frame, counts and logs it.

use super::frame::Encryption;
use super::time::TimeError;

/// Why a data unit could not be decoded or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Command 0x06–0x7F (or 0xFF): reserved by the standard. Reject the frame, keep the connection.
    #[error("command 0x{command:02X} is reserved; frame rejected")]
    ReservedCommand {
        /// The command byte.
        command: u8,
    },
    /// The frame is encrypted and no key is configured for the terminal.
    #[error("frame encrypted with {scheme} but no key is configured for this terminal")]
    EncryptedFrameNoKey {
        /// Declared scheme.
        scheme: Encryption,
    },
    /// The encryption byte names no scheme that can be decrypted (abnormal, invalid, unknown).
    #[error("cannot decrypt a data unit marked {scheme}")]
    UnsupportedEncryption {
        /// Declared scheme.
        scheme: Encryption,
    },
    /// A configured decryptor failed.
    #[error("decryption failed: {0}")]
    Decryption(String),
    /// A 6-byte time field is not a valid date.
    #[error("{what}: {source}")]
    InvalidTime {
        /// Which time field.
        what: &'static str,
        /// The date problem.
        source: TimeError,
    },
    /// The data unit ends inside a field.
    #[error("{what} truncated at data offset {offset}: need {needed} bytes, {available} left")]
    Truncated {
        /// Field or body being read.
        what: &'static str,
        /// Offset in the data unit.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Info body type whose length is unknown: the rest of the data unit cannot be walked.
    #[error("unknown info body type 0x{info_type:02X} at data offset {offset}; its length is unknown, frame dropped")]
    UnknownInfoType {
        /// The type byte.
        info_type: u8,
        /// Offset of the type byte in the data unit.
        offset: usize,
    },
    /// A body in the signed-bodies layout is not followed by a valid signature block.
    #[error("no SM2 signature block (0x20 + R(32) + 0x20 + S(32)) at data offset {offset}")]
    BadSignatureBlock {
        /// Offset where the block should start.
        offset: usize,
    },
    /// Layout detection: no real-time layout walks the data unit.
    #[error("no real-time layout fits ({tried})")]
    NoLayoutFits {
        /// Each layout tried and why it failed.
        tried: String,
    },
    /// Bytes left after a data unit with a fixed layout.
    #[error("{what}: {extra} unexpected bytes after the data unit")]
    TrailingBytes {
        /// Message being decoded.
        what: &'static str,
        /// Number of extra bytes.
        extra: usize,
    },
    /// OBD body whose fault-code count and list disagree (encode side).
    #[error("OBD fault count {count} does not match {listed} listed fault codes")]
    FaultCountMismatch {
        /// The count byte.
        count: u8,
        /// Codes in the list.
        listed: usize,
    },
    /// The encoded data unit would not fit the u16 length field.
    #[error("data unit of {len} bytes exceeds the u16 length field")]
    DataTooLong {
        /// Encoded length.
        len: usize,
    },
    /// The frame's command is not the one this decoder handles (e.g. an answer decoder given 0x02).
    #[error("command 0x{command:02X} is not a {expected}")]
    UnexpectedCommand {
        /// The command byte.
        command: u8,
        /// What was expected.
        expected: &'static str,
    },
}
