//! Stream framing: finds frames in a TCP byte stream for `tokio_util::codec::Framed`.
//!
//! TCP delivers sticky (several frames in one read) and split (one frame over several reads)
//! packets, and some terminals emit junk between frames. The decoder therefore:
//! - skips bytes until the next `##` start marker and reports them as [`FrameError::Junk`];
//! - in a run of `#` bytes takes the *last* two as the marker, so a stray `#` right before a real
//!   frame cannot swallow it (cost: a frame whose command byte is 0x23 — a reserved code — is never
//!   recognised);
//! - drops a frame with a bad BCC or an impossible length and resumes scanning at the byte after
//!   that frame's start marker, so valid frames hidden behind a false marker are still found;
//! - never returns `Err` for bad input: a `Framed` stream ends on the first `Err`, which would
//!   disconnect a terminal over one damaged frame. Bad input becomes [`Decoded::Dropped`]; `Err` is
//!   left for real I/O errors.
//!
//! - accepts both start markers seen in the field, `##` and `~~` ([`StartMarker`]);
//! - abandons a frame whose (damaged) length field makes it wait for bytes that already hold a
//!   complete valid frame: as soon as a frame with a printable VIN and a valid BCC starts inside
//!   the awaited bytes and ends before the awaited frame would, the stream resyncs to it
//!   ([`FrameError::Resynced`]). Without this, one corrupted length (say 4,000 instead of 145)
//!   kept every good frame after it unanswered until the link died;
//! - optionally ([`FrameCodec::with_stall_timeout`], used by the gateway) abandons a frame that
//!   stays incomplete for longer than the timeout while other bytes keep arriving
//!   ([`FrameError::Stalled`]).
//!
//! Every decision except the optional stall timeout is taken only once enough bytes are buffered
//! that later bytes cannot change it, so the frames found do not depend on how the stream was
//! chunked (checked by property tests and the fuzz harness). The resync rule is chosen for that:
//! an inner frame wins only if it ends *before* the awaited frame would, which is exactly when a
//! byte-by-byte reader would have seen it first.

use std::io;

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{
    bcc, frame_from_checked, header_vin, Frame, FrameEncodeError, StartMarker, Vin, HEADER_LEN,
    LENGTH_OFFSET, MAX_WIRE_DATA_LEN, OVERHEAD_LEN,
};

/// Marker length (both markers are two bytes).
const MARKER_LEN: usize = 2;

/// Default limit on the declared data-unit length.
///
/// The largest layouts the reference describes are far below it: a 10-record real-time frame is
/// 6 + 10 × 40 = 406 bytes, an OBD body with the maximum 253 fault codes is 1,108 bytes, the HJ
/// signature adds 66. 8 KiB leaves > 4× headroom for terminals that batch more records into a
/// reissue frame, while bounding what one false `##` inside junk can do: the decoder must buffer
/// the declared length before the BCC can reject the false frame, and valid frames behind it wait
/// that long. At 64 KiB (the u16 maximum) a terminal sending 400 bytes every 10 s could stall for
/// half an hour; at 8 KiB it is a few minutes at worst, and memory per connection stays small.
/// Raise it with [`FrameCodec::with_max_data_len`] if real terminals need more.
pub const DEFAULT_MAX_DATA_LEN: usize = 8 * 1024;

/// Bytes of a dropped frame or junk run shown (as hex) in [`FrameError`] for logs.
const EXCERPT_LEN: usize = 32;

/// One item out of the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A frame with a valid length and BCC.
    Frame(Frame),
    /// Bytes that were discarded, and why. The stream goes on.
    Dropped(FrameError),
}

/// Why bytes were discarded by the decoder. Carries enough context to log the event usefully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Check code mismatch: the frame is dropped, scanning resumes after its start marker.
    #[error("bad BCC on command 0x{command:02X} from {}: computed 0x{expected:02X}, received 0x{actual:02X} [{excerpt}]", vin_label(vin))]
    BadBcc {
        /// BCC computed over the received bytes.
        expected: u8,
        /// BCC byte the frame carried.
        actual: u8,
        /// Command byte of the dropped frame.
        command: u8,
        /// VIN from the header when printable.
        vin: Option<Vin>,
        /// Hex of the first bytes of the frame.
        excerpt: String,
    },
    /// Declared data length above the codec's limit.
    #[error("declared data length {declared} exceeds the limit {max} (command 0x{command:02X} from {}) [{excerpt}]", vin_label(vin))]
    Oversize {
        /// Declared data-unit length.
        declared: usize,
        /// Configured limit.
        max: usize,
        /// Command byte of the dropped frame.
        command: u8,
        /// VIN from the header when printable.
        vin: Option<Vin>,
        /// Hex of the first bytes of the frame.
        excerpt: String,
    },
    /// Bytes outside any frame, skipped while looking for a start marker.
    /// Includes the body of a dropped frame, which is rescanned for markers.
    #[error("skipped {skipped} junk bytes [{excerpt}]")]
    Junk {
        /// Number of bytes skipped.
        skipped: usize,
        /// Hex of the first skipped bytes.
        excerpt: String,
    },
    /// The stream ended (or a stored frame stops) before the frame was complete.
    #[error("truncated frame from {}: need {needed} bytes, have {available} [{excerpt}]", vin_label(vin))]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
        /// VIN from the header when printable.
        vin: Option<Vin>,
        /// Hex of the first bytes.
        excerpt: String,
    },
    /// A frame was abandoned because a complete valid frame starts inside the bytes it was
    /// waiting for (typically a corrupted length field); scanning resumes at that frame.
    #[error("frame from {} declaring {declared} data bytes abandoned: a valid frame starts {resync_at} bytes in [{excerpt}]", vin_label(vin))]
    Resynced {
        /// Declared data-unit length of the abandoned frame.
        declared: usize,
        /// Offset of the valid frame the stream resynced to (bytes skipped).
        resync_at: usize,
        /// Command byte of the abandoned frame.
        command: u8,
        /// VIN from the header when printable.
        vin: Option<Vin>,
        /// Hex of the first bytes of the abandoned frame.
        excerpt: String,
    },
    /// A frame stayed incomplete longer than the stall timeout while other bytes kept arriving;
    /// scanning resumes after its start marker.
    #[error(
        "frame from {} stalled: need {needed} bytes, have {available} after {waited_ms} ms [{excerpt}]",
        vin_label(vin)
    )]
    Stalled {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
        /// How long it had been waiting.
        waited_ms: u64,
        /// VIN from the header when printable.
        vin: Option<Vin>,
        /// Hex of the first bytes.
        excerpt: String,
    },
}

impl FrameError {
    /// Short stable label for metrics (`bad_bcc`, `oversize`, `junk`, `truncated`, `resynced`,
    /// `stalled`).
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::BadBcc { .. } => "bad_bcc",
            FrameError::Oversize { .. } => "oversize",
            FrameError::Junk { .. } => "junk",
            FrameError::Truncated { .. } => "truncated",
            FrameError::Resynced { .. } => "resynced",
            FrameError::Stalled { .. } => "stalled",
        }
    }

    /// The terminal's VIN if the damaged header still showed a printable one.
    pub fn vin(&self) -> Option<Vin> {
        match self {
            FrameError::BadBcc { vin, .. }
            | FrameError::Oversize { vin, .. }
            | FrameError::Truncated { vin, .. }
            | FrameError::Resynced { vin, .. }
            | FrameError::Stalled { vin, .. } => *vin,
            FrameError::Junk { .. } => None,
        }
    }
}

fn vin_label(vin: &Option<Vin>) -> String {
    vin.map(|v| v.to_string()).unwrap_or_else(|| "unreadable VIN".to_owned())
}

/// Upper-case hex of the first [`EXCERPT_LEN`] bytes, `…` when cut.
pub(crate) fn hex_excerpt(bytes: &[u8]) -> String {
    let shown = bytes.get(..EXCERPT_LEN).unwrap_or(bytes);
    let mut s = hex::encode_upper(shown);
    if bytes.len() > shown.len() {
        s.push('…');
    }
    s
}

/// Per-connection counters, readable with [`FrameCodec::stats`] (e.g. `framed.codec().stats()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodecStats {
    /// Frames decoded with a valid length and BCC.
    pub frames_ok: u64,
    /// Frames dropped for a BCC mismatch.
    pub bad_bcc: u64,
    /// Frames dropped for a declared length above the limit.
    pub oversize: u64,
    /// Incomplete frames dropped at end of stream.
    pub truncated: u64,
    /// Bytes skipped outside frames.
    pub junk_bytes: u64,
    /// Frames abandoned because a valid frame started inside their awaited bytes.
    pub resynced: u64,
    /// Frames abandoned after the stall timeout.
    pub stalled: u64,
    /// Frames written by the encoder.
    pub frames_encoded: u64,
}

/// `tokio_util` codec for the HJ 1239 / GB 17691 frame layer. Holds counters and, while a frame is
/// incomplete, what is known about the bytes it is waiting for; a fresh codec per connection is
/// cheap.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_data_len: usize,
    stats: CodecStats,
    stall_after: Option<Duration>,
    pending: Option<Pending>,
}

/// The frame at the start of the buffer, while it is being waited for. Offsets are relative to
/// the buffer start; reset whenever bytes are consumed.
#[derive(Debug, Clone)]
struct Pending {
    since: Instant,
    /// Marker positions below this one have been looked at.
    scan_from: usize,
    /// Start markers inside the frame that may still begin a valid frame: (start, end once the
    /// header is there). Each is checked once; only undecided ones stay.
    candidates: Vec<(usize, Option<usize>)>,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCodec {
    /// Codec with [`DEFAULT_MAX_DATA_LEN`].
    pub fn new() -> Self {
        Self::with_max_data_len(DEFAULT_MAX_DATA_LEN)
    }

    /// Codec accepting data units up to `max` bytes (capped at the u16 maximum, 65,535).
    pub fn with_max_data_len(max: usize) -> Self {
        Self {
            max_data_len: max.min(MAX_WIRE_DATA_LEN),
            stats: CodecStats::default(),
            stall_after: None,
            pending: None,
        }
    }

    /// Abandons a frame that is still incomplete `after` it was first seen, when more bytes arrive
    /// (the decoder only runs when bytes arrive). Off by default: it makes the outcome depend on
    /// timing, which the pure decoder avoids.
    pub fn with_stall_timeout(mut self, after: Duration) -> Self {
        self.stall_after = Some(after);
        self
    }

    /// The configured data-length limit.
    pub fn max_data_len(&self) -> usize {
        self.max_data_len
    }

    /// Counters since the codec was created.
    pub fn stats(&self) -> CodecStats {
        self.stats
    }

    fn skip_junk(&mut self, src: &mut BytesMut, n: usize) -> Decoded {
        let n = n.min(src.len());
        let excerpt = hex_excerpt(src.get(..n).unwrap_or_default());
        self.consume(src, n);
        self.stats.junk_bytes += n as u64;
        Decoded::Dropped(FrameError::Junk { skipped: n, excerpt })
    }

    /// Drops `n` bytes from the front; what was known about them goes too.
    fn consume(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n.min(src.len()));
        self.pending = None;
    }

    /// The start of a complete valid frame (printable VIN, valid BCC) that begins inside the
    /// frame at the buffer start (declared wire length `total`) and ends before it would. Of
    /// several, the one ending first (then starting first): the one a byte-by-byte reader meets
    /// first, so the choice does not depend on chunking.
    fn inner_frame(&mut self, buf: &[u8], total: usize) -> Option<usize> {
        let max_data_len = self.max_data_len;
        let pending = self.pending.get_or_insert_with(|| Pending {
            since: Instant::now(),
            scan_from: MARKER_LEN,
            candidates: Vec::new(),
        });
        let mut p = pending.scan_from;
        // A frame starting at p ends at p + OVERHEAD_LEN at the earliest; it must end before `total`.
        while p + MARKER_LEN < buf.len() && p + OVERHEAD_LEN < total {
            if let (Some(&a), Some(&b), Some(&c)) = (buf.get(p), buf.get(p + 1), buf.get(p + 2)) {
                // As in `find_frame_start`: in a run of marker bytes the last two are the marker.
                if a == b && c != a && StartMarker::of_byte(a).is_some() {
                    pending.candidates.push((p, None));
                }
            }
            p += 1;
        }
        pending.scan_from = p;
        let mut best: Option<(usize, usize)> = None;
        pending.candidates.retain_mut(|(start, end)| {
            let start = *start;
            if end.is_none() {
                let Some(len) = buf.get(start + LENGTH_OFFSET..start + HEADER_LEN) else { return true };
                let declared = len.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
                let e = start + OVERHEAD_LEN + declared;
                if declared > max_data_len || e >= total {
                    return false;
                }
                *end = Some(e);
            }
            let Some(e) = *end else { return true };
            if e > buf.len() {
                return true;
            }
            let frame = buf.get(start..e).unwrap_or_default();
            let valid = header_vin(frame).is_some()
                && matches!(inspect(frame, max_data_len), Inspect::Complete { total } if total == frame.len());
            if valid && best.is_none_or(|b| (e, start) < b) {
                best = Some((e, start));
            }
            false
        });
        best.map(|(_, start)| start)
    }

    fn resync(&mut self, src: &mut BytesMut, total: usize, at: usize) -> Decoded {
        let err = FrameError::Resynced {
            declared: total.saturating_sub(OVERHEAD_LEN),
            resync_at: at,
            command: src.get(2).copied().unwrap_or(0),
            vin: header_vin(src),
            excerpt: hex_excerpt(src.get(..at).unwrap_or_default()),
        };
        self.stats.resynced += 1;
        self.consume(src, at);
        Decoded::Dropped(err)
    }

    /// With a stall timeout: the stalled frame at the buffer start is dropped.
    fn stalled(&mut self, src: &mut BytesMut, needed: usize) -> Option<Decoded> {
        let waited = self.pending.as_ref()?.since.elapsed();
        if waited < self.stall_after? {
            return None;
        }
        let err = FrameError::Stalled {
            needed,
            available: src.len(),
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            vin: header_vin(src),
            excerpt: hex_excerpt(src),
        };
        self.stats.stalled += 1;
        self.consume(src, MARKER_LEN);
        Some(Decoded::Dropped(err))
    }
}

/// Where the next frame may start in the buffer.
enum Start {
    /// A start marker at this offset, followed by a non-`#` byte.
    At(usize),
    /// No usable marker yet; the first `junk` bytes can be discarded whatever arrives next.
    NotYet { junk: usize },
}

fn is_marker_pair(w: &[u8]) -> bool {
    matches!(w, [a, b] if a == b && StartMarker::of_byte(*a).is_some())
}

fn find_frame_start(buf: &[u8]) -> Start {
    let mut from = 0;
    loop {
        let found = buf.get(from..).and_then(|s| s.windows(2).position(is_marker_pair));
        let Some(rel) = found else {
            // Keep a trailing marker byte: it may be the first half of a marker split across reads.
            let keep = usize::from(buf.last().is_some_and(|b| StartMarker::of_byte(*b).is_some()));
            return Start::NotYet { junk: buf.len() - keep };
        };
        let at = from + rel;
        match (buf.get(at), buf.get(at + 2)) {
            // Can't tell `##x` from `###` yet: drop what is surely junk and wait.
            (_, None) => return Start::NotYet { junk: at },
            // A run of '#' (or '~'): the real marker is its last two bytes.
            (Some(&m), Some(&b)) if b == m => from = at + 1,
            _ => return Start::At(at),
        }
    }
}

/// Result of looking at a buffer that should start with a frame.
pub(crate) enum Inspect {
    /// The buffer does not start with `##`.
    NoMarker,
    /// Header or body incomplete; `needed` bytes in total are required to decide.
    NeedMore { needed: usize },
    /// The frame at the start is bad.
    Bad(FrameError),
    /// A valid frame of `total` bytes starts the buffer.
    Complete { total: usize },
}

/// Validates the frame at the start of `buf` (length limit, completeness, BCC).
pub(crate) fn inspect(buf: &[u8], max_data_len: usize) -> Inspect {
    if buf.len() < MARKER_LEN {
        return Inspect::NeedMore { needed: MARKER_LEN };
    }
    if StartMarker::at_start(buf).is_none() {
        return Inspect::NoMarker;
    }
    let Some(len_bytes) = buf.get(LENGTH_OFFSET..HEADER_LEN) else {
        return Inspect::NeedMore { needed: HEADER_LEN };
    };
    let declared = usize::from(u16::from_be_bytes([
        len_bytes.first().copied().unwrap_or(0),
        len_bytes.get(1).copied().unwrap_or(0),
    ]));
    let command = buf.get(2).copied().unwrap_or(0);
    if declared > max_data_len {
        return Inspect::Bad(FrameError::Oversize {
            declared,
            max: max_data_len,
            command,
            vin: header_vin(buf),
            excerpt: hex_excerpt(buf),
        });
    }
    let total = OVERHEAD_LEN + declared;
    let (Some(checked), Some(&actual)) = (buf.get(2..total - 1), buf.get(total - 1)) else {
        return Inspect::NeedMore { needed: total };
    };
    let expected = bcc(checked);
    if expected != actual {
        return Inspect::Bad(FrameError::BadBcc {
            expected,
            actual,
            command,
            vin: header_vin(buf),
            excerpt: hex_excerpt(buf.get(..total).unwrap_or(buf)),
        });
    }
    Inspect::Complete { total }
}

impl Decoder for FrameCodec {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, io::Error> {
        match find_frame_start(src) {
            Start::At(0) => {}
            Start::At(n) | Start::NotYet { junk: n } if n > 0 => {
                return Ok(Some(self.skip_junk(src, n)));
            }
            Start::At(_) | Start::NotYet { .. } => return Ok(None),
        }
        match inspect(src, self.max_data_len) {
            Inspect::Complete { total } => {
                if let Some(at) = self.inner_frame(src, total) {
                    return Ok(Some(self.resync(src, total, at)));
                }
                self.stats.frames_ok += 1;
                self.pending = None;
                Ok(Some(Decoded::Frame(frame_from_checked(src.split_to(total).freeze()))))
            }
            Inspect::NeedMore { needed } => {
                if needed > HEADER_LEN {
                    if let Some(at) = self.inner_frame(src, needed) {
                        return Ok(Some(self.resync(src, needed, at)));
                    }
                    if let Some(dropped) = self.stalled(src, needed) {
                        return Ok(Some(dropped));
                    }
                }
                src.reserve(needed.saturating_sub(src.len()));
                Ok(None)
            }
            Inspect::Bad(e) => {
                match e {
                    FrameError::Oversize { .. } => self.stats.oversize += 1,
                    _ => self.stats.bad_bcc += 1,
                }
                // Resume right after the start marker: a valid frame may hide behind a false one.
                self.consume(src, MARKER_LEN);
                Ok(Some(Decoded::Dropped(e)))
            }
            // find_frame_start put a marker at 0; treat the impossible case as one junk byte.
            Inspect::NoMarker => Ok(Some(self.skip_junk(src, 1))),
        }
    }

    /// At end of stream nothing more will arrive: an incomplete frame is dropped as truncated and
    /// the bytes after its marker are rescanned (a false marker with a large declared length may
    /// hide valid frames), until the buffer is empty.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, io::Error> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        if StartMarker::at_start(buf).is_some() {
            let needed = match inspect(buf, self.max_data_len) {
                Inspect::NeedMore { needed } => needed,
                _ => buf.len(),
            };
            let err = FrameError::Truncated {
                needed,
                available: buf.len(),
                vin: header_vin(buf),
                excerpt: hex_excerpt(buf),
            };
            self.stats.truncated += 1;
            self.consume(buf, MARKER_LEN);
            Ok(Some(Decoded::Dropped(err)))
        } else {
            let n = buf.len();
            Ok(Some(self.skip_junk(buf, n)))
        }
    }
}

/// Why the encoder failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecEncodeError {
    /// Socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The frame cannot be represented on the wire.
    #[error(transparent)]
    Frame(#[from] FrameEncodeError),
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecEncodeError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecEncodeError> {
        item.encode_into(dst)?;
        self.stats.frames_encoded += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const LOGOUT: &str = "2323044C47365A44414E4837455932303831383202010008140911132E34001A5E";

    fn logout() -> Vec<u8> {
        hex::decode(LOGOUT).unwrap()
    }

    fn drain(codec: &mut FrameCodec, buf: &mut BytesMut, eof: bool) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(item) = codec.decode(buf).unwrap() {
            out.push(item);
        }
        if eof {
            while let Some(item) = codec.decode_eof(buf).unwrap() {
                out.push(item);
            }
            assert!(buf.is_empty());
        }
        out
    }

    fn frames(items: &[Decoded]) -> Vec<&Frame> {
        items
            .iter()
            .filter_map(|d| match d {
                Decoded::Frame(f) => Some(f),
                Decoded::Dropped(_) => None,
            })
            .collect()
    }

    #[test]
    fn sticky_frames_and_junk() {
        let mut stream = b"garbage".to_vec();
        stream.extend(logout());
        stream.extend(logout());
        stream.extend(b"#x#");
        stream.extend(logout());
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut codec, &mut buf, true);
        assert_eq!(frames(&items).len(), 3);
        let s = codec.stats();
        assert_eq!(s.frames_ok, 3);
        assert_eq!(s.junk_bytes, 10);
    }

    #[test]
    fn split_byte_by_byte() {
        let bytes = logout();
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let mut found = 0;
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                assert!(matches!(item, Decoded::Frame(_)));
                found += 1;
            }
        }
        assert_eq!(found, 1);
    }

    #[test]
    fn bad_bcc_drops_only_that_frame() {
        let mut bad = logout();
        *bad.last_mut().unwrap() ^= 0xFF;
        let mut stream = bad;
        stream.extend(logout());
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut codec, &mut buf, true);
        assert_eq!(frames(&items).len(), 1);
        let first = items.first().unwrap();
        match first {
            Decoded::Dropped(FrameError::BadBcc { expected, actual, vin, .. }) => {
                assert_eq!(*expected, 0x5E);
                assert_eq!(*actual, 0x5E ^ 0xFF);
                assert_eq!(vin.unwrap().as_str(), Some("LG6ZDANH7EY208182"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(codec.stats().bad_bcc, 1);
    }

    #[test]
    fn oversize_then_valid_frame_found_without_waiting() {
        // A false marker declaring 0xFFFF bytes must not hold back the valid frame behind it.
        let mut stream = b"##".to_vec();
        stream.push(0x02);
        stream.extend([b'A'; 17]);
        stream.extend([0x01, 0x01, 0xFF, 0xFF]);
        stream.extend(logout());
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut codec, &mut buf, false);
        assert!(matches!(
            items.first(),
            Some(Decoded::Dropped(FrameError::Oversize { declared: 0xFFFF, .. }))
        ));
        assert_eq!(frames(&items).len(), 1);
        assert_eq!(codec.stats().oversize, 1);
    }

    #[test]
    fn false_marker_recovered_at_eof() {
        // False marker with a plausible length larger than what follows and no complete frame
        // inside: only EOF can resolve it.
        let mut stream = b"##".to_vec();
        stream.push(0x02);
        stream.extend([b'A'; 17]);
        stream.extend([0x01, 0x01, 0x01, 0x00]);
        stream.extend(&logout()[..20]);
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        assert!(drain(&mut codec, &mut buf, false).is_empty());
        let items = drain(&mut codec, &mut buf, true);
        assert!(frames(&items).is_empty());
        assert_eq!(codec.stats().truncated, 2);
    }

    /// A real-time frame whose length field says 4,000 instead of its real length.
    fn corrupted_length_frame() -> Vec<u8> {
        let mut f = logout();
        f[22] = 0x0F;
        f[23] = 0xA0;
        f
    }

    #[test]
    fn corrupted_length_resyncs_to_the_next_valid_frame_without_waiting() {
        let mut stream = corrupted_length_frame();
        stream.extend(logout());
        stream.extend(logout());
        // Byte by byte, as a slow link delivers it: the first good frame comes out as soon as it
        // is complete, not after 4,000 bytes or at EOF.
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &stream {
            buf.extend_from_slice(&[*b]);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        assert!(matches!(got.first(), Some(Decoded::Dropped(FrameError::Resynced { declared: 4000, .. }))));
        assert_eq!(frames(&got).len(), 2);
        assert_eq!(codec.stats().resynced, 1);
        // All at once gives the same frames and counters.
        let mut whole = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut whole, &mut buf, false);
        assert_eq!(frames(&items), frames(&got));
        assert_eq!(whole.stats(), codec.stats());
    }

    #[test]
    fn a_valid_frame_ending_after_the_awaited_one_does_not_abandon_it() {
        // Outer frame complete and valid; a marker inside it starts a "frame" that would end
        // after it: the outer frame stands.
        let f = Frame {
            marker: StartMarker::Hash,
            command: 0x80,
            vin: Vin(*b"LG6ZDANH7EY208182"),
            software_version: 1,
            encryption: super::super::Encryption::None,
            data: Bytes::from([b"##".as_slice(), &logout()[2..20]].concat()),
        };
        let mut buf = BytesMut::from(&f.to_bytes().unwrap()[..]);
        let mut codec = FrameCodec::new();
        let items = drain(&mut codec, &mut buf, true);
        assert_eq!(frames(&items), vec![&f]);
    }

    #[test]
    fn stall_timeout_abandons_a_frame_that_never_completes() {
        let mut codec = FrameCodec::new().with_stall_timeout(std::time::Duration::from_millis(20));
        let mut buf = BytesMut::from(&corrupted_length_frame()[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        std::thread::sleep(std::time::Duration::from_millis(30));
        // More bytes arrive (the decoder runs): the stalled frame goes, the rest is rescanned.
        buf.extend_from_slice(b"xx");
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Decoded::Dropped(FrameError::Stalled { .. }))
        ));
        assert_eq!(codec.stats().stalled, 1);
        buf.extend_from_slice(&logout());
        let items = drain(&mut codec, &mut buf, false);
        assert_eq!(frames(&items).len(), 1);
    }

    #[test]
    fn tilde_marker_frames_are_found_and_keep_their_marker() {
        let mut tilde = logout();
        tilde[0] = 0x7E;
        tilde[1] = 0x7E;
        let mut stream = b"~".to_vec();
        stream.extend(&tilde);
        stream.extend(logout());
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut codec, &mut buf, true);
        let found = frames(&items);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].marker, StartMarker::Tilde);
        assert_eq!(found[1].marker, StartMarker::Hash);
        assert_eq!(&found[0].to_bytes().unwrap()[..], &tilde[..]);
    }

    #[test]
    fn hash_run_before_frame() {
        let mut stream = b"###".to_vec();
        stream.extend(logout());
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let items = drain(&mut codec, &mut buf, true);
        assert_eq!(frames(&items).len(), 1);
        assert_eq!(codec.stats().junk_bytes, 3);
    }

    #[test]
    fn encoder_writes_frame() {
        let f = Frame::parse(&logout()).unwrap();
        let mut codec = FrameCodec::new();
        let mut dst = BytesMut::new();
        codec.encode(f, &mut dst).unwrap();
        assert_eq!(&dst[..], &logout()[..]);
        assert_eq!(codec.stats().frames_encoded, 1);
        let _ = Bytes::new();
    }

    #[tokio::test]
    async fn framed_over_a_duplex_stream() {
        use crate::hj1239::{Answer, BodyLayout, Dialect, Message, TerminalTime};
        use futures::{SinkExt, StreamExt};
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::Framed;

        let (mut terminal, server) = tokio::io::duplex(64);
        let mut framed = Framed::new(server, FrameCodec::new());
        let writer = tokio::spawn(async move {
            let mut bytes = b"noise".to_vec();
            bytes.extend(logout());
            let mut bad = logout();
            bad[30] ^= 1;
            bytes.extend(bad);
            bytes.extend(logout());
            for chunk in bytes.chunks(5) {
                terminal.write_all(chunk).await.unwrap();
            }
            terminal
        });
        let mut got = Vec::new();
        while got.iter().filter(|d| matches!(d, Decoded::Frame(_))).count() < 2 {
            got.push(framed.next().await.unwrap().unwrap());
        }
        let kinds: Vec<&str> = got
            .iter()
            .map(|d| match d {
                Decoded::Frame(_) => "frame",
                Decoded::Dropped(e) => e.kind(),
            })
            .collect();
        assert_eq!(kinds.first(), Some(&"junk"));
        assert!(kinds.contains(&"bad_bcc"));
        let Some(Decoded::Frame(req)) = got.into_iter().find(|d| matches!(d, Decoded::Frame(_))) else {
            panic!("no frame")
        };
        assert!(matches!(
            Message::decode(&req, BodyLayout::Gb17691, Dialect::Vehicle),
            Ok(Message::Logout(_))
        ));
        let answer = Answer::logout(TerminalTime::now().unwrap()).reply_to(&req);
        framed.send(answer).await.unwrap();
        assert_eq!(framed.codec().stats().frames_encoded, 1);
        drop(writer.await.unwrap());
    }
}
