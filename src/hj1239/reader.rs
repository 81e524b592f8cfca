//! Bounds-checked big-endian reader over a data unit. Every read returns a typed
//! [`MessageError::Truncated`] instead of panicking, and remembers the offset for error messages.

use super::error::MessageError;
use super::time::TerminalTime;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MessageError> {
        let slice = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)).ok_or(
            MessageError::Truncated { what, offset: self.pos, needed: n, available: self.remaining() },
        )?;
        self.pos += n;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], MessageError> {
        let offset = self.pos;
        let available = self.remaining();
        self.take(N, what)?.try_into().map_err(|_| MessageError::Truncated {
            what,
            offset,
            needed: N,
            available,
        })
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, MessageError> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn time(&mut self, what: &'static str) -> Result<TerminalTime, MessageError> {
        let bytes = self.array::<6>(what)?;
        TerminalTime::from_bytes(bytes).map_err(|source| MessageError::InvalidTime { what, source })
    }

    /// Fails with [`MessageError::TrailingBytes`] unless everything was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), MessageError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(MessageError::TrailingBytes { what, extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_truncation() {
        let mut r = Reader::new(&[0x01, 0x02, 0x03]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.u32("b"),
            Err(MessageError::Truncated { what: "b", offset: 2, needed: 4, available: 1 })
        );
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.finish("x").is_ok());
        assert_eq!(
            r.take(usize::MAX, "huge").map(|_| ()),
            Err(MessageError::Truncated { what: "huge", offset: 3, needed: usize::MAX, available: 0 })
        );
    }
}
