//! Shared fuzz harness: used by the cargo-fuzz target (`fuzz/fuzz_targets/frame_decoder.rs`) and by
//! `tests/hj1239_fuzz_corpus.rs`, which replays the seed corpus and any regression inputs on every
//! `cargo test`. It panics only when the codec breaks one of its invariants — that is its purpose.

// The harness exists to panic when an invariant breaks.
#![allow(clippy::panic)]

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::answer::Answer;
use super::codec::{CodecStats, Decoded, FrameCodec};
use super::frame::Frame;
use super::message::{Dialect, LayoutChoice, Message};
use super::report::{BodyLayout, InfoBody};

const LAYOUTS: [LayoutChoice; 4] = [
    LayoutChoice::Fixed(BodyLayout::Gb17691),
    LayoutChoice::Fixed(BodyLayout::Hj1239),
    LayoutChoice::Fixed(BodyLayout::SignedBodies),
    LayoutChoice::Detect { prefer: None },
];
const DIALECTS: [Dialect; 2] = [Dialect::Vehicle, Dialect::Machinery];

/// Feeds `input` through [`FrameCodec`] in several chunkings and through every message decoder.
///
/// Invariants checked: no panic; the frames found and the counters do not depend on chunking;
/// every frame re-encodes to a frame that parses back equal; every message that decodes re-encodes
/// to exactly the bytes it came from; decoded engineering values are finite.
pub fn fuzz_harness(input: &[u8]) {
    let (frames, stats) = run_codec(input, |_| usize::MAX);
    let sizes: Vec<usize> = input.iter().map(|b| 1 + usize::from(b % 16)).collect();
    let (chunked, chunked_stats) =
        run_codec(input, |i| sizes.get(i % sizes.len().max(1)).copied().unwrap_or(1));
    assert_eq!(frames, chunked, "frames depend on chunking");
    assert_eq!(stats, chunked_stats, "counters depend on chunking");
    if input.len() <= 4096 {
        let (single, single_stats) = run_codec(input, |_| 1);
        assert_eq!(frames, single, "frames differ when fed byte by byte");
        assert_eq!(stats, single_stats, "counters differ when fed byte by byte");
    }
    assert_eq!(stats.frames_ok, frames.len() as u64);

    for frame in &frames {
        check_frame(frame);
    }
    if let Ok(frame) = Frame::parse(input) {
        check_frame(&frame);
    }
    // The input as a bare data unit under every command class, so message decoders get fuzzed
    // without needing a valid BCC first.
    let data = Bytes::copy_from_slice(input);
    for command in [0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x80] {
        for layout in LAYOUTS {
            for dialect in DIALECTS {
                if let Ok(m) = Message::decode_data(command, &data, layout, dialect) {
                    check_message(&m, &data);
                }
            }
        }
    }
}

fn run_codec(input: &[u8], chunk: impl Fn(usize) -> usize) -> (Vec<Frame>, CodecStats) {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = input;
    let mut i = 0;
    let mut collect = |item: Decoded| {
        if let Decoded::Frame(f) = item {
            frames.push(f);
        }
    };
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(chunk(i).min(rest.len()));
        buf.extend_from_slice(head);
        rest = tail;
        i += 1;
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            collect(item);
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => collect(item),
            Ok(None) => break,
            Err(e) => panic!("decoder returned an I/O error on in-memory input: {e}"),
        }
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
    (frames, codec.stats())
}

fn check_frame(frame: &Frame) {
    let bytes = frame.to_bytes();
    let reparsed = bytes.as_ref().ok().map(|b| Frame::parse(b));
    assert!(matches!(reparsed, Some(Ok(ref f)) if f == frame), "frame does not survive encode/parse");
    for layout in LAYOUTS {
        for dialect in DIALECTS {
            if let Ok(m) = Message::decode(frame, layout, dialect) {
                check_message(&m, &frame.data);
            }
        }
    }
    if let Ok(a) = Answer::decode(frame) {
        assert_eq!(a.encode_data(), frame.data, "answer round trip");
    }
}

fn check_message(m: &Message, data: &Bytes) {
    let encoded = m.encode_data();
    assert!(matches!(encoded, Ok(ref e) if e == data), "message does not re-encode to its bytes: {m:?}");
    if let Message::RealTime(r) | Message::Reissue(r) = m {
        for (time, body) in r.bodies() {
            let _ = time.epoch_millis_utc();
            if let InfoBody::DieselEngine(e) = body {
                let values = [
                    e.vehicle_speed_kmh(),
                    e.atmospheric_pressure_kpa(),
                    e.net_torque_percent(),
                    e.friction_torque_percent(),
                    e.engine_speed_rpm(),
                    e.fuel_flow_lph(),
                    e.scr_upstream_nox_ppm(),
                    e.scr_downstream_nox_ppm(),
                    e.reagent_level_percent(),
                    e.intake_air_flow_kgph(),
                    e.scr_inlet_temperature_c(),
                    e.scr_outlet_temperature_c(),
                    e.dpf_pressure_drop_kpa(),
                    e.coolant_temperature_c(),
                    e.fuel_level_percent(),
                    e.longitude_deg(),
                    e.latitude_deg(),
                    e.odometer_km(),
                ];
                assert!(values.iter().flatten().all(|v| v.is_finite()));
            }
        }
    }
}
