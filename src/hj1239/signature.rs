//! The one place that knows the HJ 1239 trailing signature: when signing is on, the data unit of a
//! 0x02/0x03 frame ends with R-length(1) + R + S-length(1) + S, an SM2 (SM3 digest) signature over
//! the data unit before it. Lengths are fixed at 32 per the reference (UNVERIFIED whether terminals
//! ever send 33-byte components). Verification needs the terminal's registered public key and an
//! SM2 implementation; the codec only splits the block off, keeps it raw, and exposes the signed
//! bytes ([`split_signed`]) so a verifier can be plugged in later without touching the parser.

use bytes::{BufMut, BytesMut};

/// Length byte value of each component.
pub const SIGNATURE_COMPONENT_LEN: usize = 32;
/// Whole trailing block: 1 + 32 + 1 + 32.
pub const SIGNATURE_WIRE_LEN: usize = 2 + 2 * SIGNATURE_COMPONENT_LEN;

/// A raw SM2 signature (r, s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sm2Signature {
    /// R component.
    pub r: [u8; SIGNATURE_COMPONENT_LEN],
    /// S component.
    pub s: [u8; SIGNATURE_COMPONENT_LEN],
}

impl Sm2Signature {
    /// Parses `tail` if it is exactly one signature block (both length bytes = 32).
    pub fn parse_block(tail: &[u8]) -> Option<Self> {
        if tail.len() != SIGNATURE_WIRE_LEN {
            return None;
        }
        let len_byte = SIGNATURE_COMPONENT_LEN as u8;
        let (r_len, rest) = tail.split_first()?;
        let r: [u8; SIGNATURE_COMPONENT_LEN] = rest.get(..SIGNATURE_COMPONENT_LEN)?.try_into().ok()?;
        let (s_len, s) = rest.get(SIGNATURE_COMPONENT_LEN..)?.split_first()?;
        let s: [u8; SIGNATURE_COMPONENT_LEN] = s.try_into().ok()?;
        (*r_len == len_byte && *s_len == len_byte).then_some(Self { r, s })
    }

    /// Appends the block.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(SIGNATURE_COMPONENT_LEN as u8);
        out.put_slice(&self.r);
        out.put_u8(SIGNATURE_COMPONENT_LEN as u8);
        out.put_slice(&self.s);
    }
}

/// Splits an HJ-layout data unit into (signed bytes, signature) when it ends with a signature block.
pub fn split_signed(data: &[u8]) -> (&[u8], Option<Sm2Signature>) {
    let Some(cut) = data.len().checked_sub(SIGNATURE_WIRE_LEN) else {
        return (data, None);
    };
    match data.get(cut..).and_then(Sm2Signature::parse_block).zip(data.get(..cut)) {
        Some((sig, signed)) => (signed, Some(sig)),
        None => (data, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trip() {
        let sig = Sm2Signature { r: [0xAA; 32], s: [0x55; 32] };
        let mut out = BytesMut::from(&b"payload"[..]);
        sig.encode(&mut out);
        let (signed, parsed) = split_signed(&out);
        assert_eq!(signed, b"payload");
        assert_eq!(parsed, Some(sig));
        assert_eq!(split_signed(b"short"), (&b"short"[..], None));
        let mut bad = out.to_vec();
        bad[7] = 33;
        assert_eq!(split_signed(&bad).1, None);
    }
}
