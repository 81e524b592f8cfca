//! Property tests for the HJ 1239 codec: message round trips, decoder robustness under arbitrary
//! input and chunking, and recovery of valid frames from split and junk-laden streams.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use smogwatch::hj1239::{
    fuzz_harness, Activation, BodyLayout, Decoded, Dialect, Dtc, EmissionDiagnostics, EngineData, Frame,
    FrameCodec, GasEngineData, GbRecord, GbReport, HjRecord, HjReport, InfoBody, InfoReport, LayoutChoice,
    Login, Logout, MachineryBody, MachineryRecord, MachineryReport, MachineryStream, Message, ObdInfo,
    PeriodStatistics, PositionStatus, SignedRecord, SignedReport, Sm2Signature, TamperAlarm, TerminalTime,
    Vin,
};
use tokio_util::codec::Decoder;

fn arb_time() -> impl Strategy<Value = TerminalTime> {
    (any::<u8>(), 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60).prop_map(|(y, mo, d, h, mi, s)| {
        TerminalTime::from_bytes([y, mo, d, h, mi, s]).expect("valid by construction")
    })
}

fn arb_engine() -> impl Strategy<Value = EngineData> {
    (
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u16>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
    )
        .prop_map(|((a, b, c, d, e, f, g, h, i, j), (k, l, m, n, o, p, q, r, s))| EngineData {
            vehicle_speed: a,
            atmospheric_pressure: b,
            net_torque: c,
            friction_torque: d,
            engine_speed: e,
            fuel_flow: f,
            scr_upstream_nox: g,
            scr_downstream_nox: h,
            reagent_level: i,
            intake_air_flow: j,
            scr_inlet_temperature: k,
            scr_outlet_temperature: l,
            dpf_pressure_drop: m,
            coolant_temperature: n,
            fuel_level: o,
            position_status: PositionStatus(p),
            longitude: q,
            latitude: r,
            odometer: s,
        })
}

fn arb_obd() -> impl Strategy<Value = ObdInfo> {
    let faults = prop_oneof![
        prop::collection::vec(any::<[u8; 4]>(), 0..6)
            .prop_map(|v| (v.len() as u8, v.into_iter().map(Dtc).collect::<Vec<_>>())),
        (0xFEu8..=0xFF).prop_map(|c| (c, Vec::new())),
    ];
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<[u8; 17]>(),
        any::<[u8; 18]>(),
        any::<[u8; 18]>(),
        any::<[u16; 18]>(),
        faults,
    )
        .prop_map(|(protocol, mil_status, sup, ready, vin, cal, cvn, iupr, (fault_count, faults))| {
            ObdInfo {
                protocol,
                mil_status,
                diagnostic_support: sup,
                diagnostic_readiness: ready,
                ecu_vin: Vin(vin),
                calibration_id: cal,
                cvn,
                iupr,
                fault_count,
                faults,
            }
        })
}

fn arb_body() -> impl Strategy<Value = InfoBody> {
    prop_oneof![
        arb_obd().prop_map(InfoBody::Obd),
        arb_engine().prop_map(InfoBody::DieselEngine),
        (any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>(), any::<[u8; 21]>())
            .prop_map(|(a, b, c, d, e, f, rest)| InfoBody::GasEngine(GasEngineData {
                vehicle_speed: a,
                atmospheric_pressure: b,
                net_torque: c,
                friction_torque: d,
                engine_speed: e,
                fuel_flow: f,
                rest,
            })),
        any::<[u8; 8]>().prop_map(InfoBody::Hybrid),
        any::<[u8; 32]>().prop_map(InfoBody::TwcNox),
        any::<[u8; 17]>().prop_map(InfoBody::Supplementary),
    ]
}

fn arb_report() -> impl Strategy<Value = InfoReport> {
    prop_oneof![
        (arb_time(), prop::collection::vec((any::<u16>(), arb_body()), 0..6)).prop_map(|(time, recs)| {
            InfoReport::Gb17691(GbReport {
                time,
                records: recs.into_iter().map(|(serial, body)| GbRecord { serial, body }).collect(),
            })
        }),
        (
            arb_time(),
            any::<u16>(),
            prop::collection::vec((arb_time(), arb_body()), 0..6),
            prop::option::of((any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| Sm2Signature { r, s })),
        )
            .prop_map(|(time, serial, recs, signature)| {
                InfoReport::Hj1239(HjReport {
                    time,
                    serial,
                    records: recs
                        .into_iter()
                        .map(|(collected_at, body)| HjRecord { collected_at, body })
                        .collect(),
                    signature,
                })
            }),
        (arb_time(), any::<u16>(), prop::collection::vec((arb_body(), arb_signature()), 0..4)).prop_map(
            |(time, serial, recs)| {
                InfoReport::Signed(SignedReport {
                    time,
                    serial,
                    records: recs
                        .into_iter()
                        .map(|(body, signature)| SignedRecord { body, signature })
                        .collect(),
                })
            }
        ),
    ]
}

fn arb_signature() -> impl Strategy<Value = Sm2Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| Sm2Signature { r, s })
}

fn arb_machinery_body() -> impl Strategy<Value = MachineryBody> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), prop::collection::vec(any::<[u8; 4]>(), 0..4)).prop_map(
            |(protocol, lamp, d)| {
                MachineryBody::Diagnostics(EmissionDiagnostics {
                    protocol,
                    lamp,
                    dtc_count: d.len() as u8,
                    dtcs: d.into_iter().map(Dtc).collect(),
                })
            }
        ),
        (arb_engine(), any::<u16>(), any::<u16>()).prop_map(|(e, a, t)| {
            let engine = EngineData {
                position_status: PositionStatus(0x01),
                longitude: u32::MAX,
                latitude: u32::MAX,
                odometer: u32::MAX,
                ..e
            };
            MachineryBody::Stream(MachineryStream { engine, egr_actual: a, egr_target: t })
        }),
        (arb_time(), any::<[u16; 8]>(), any::<[u8; 3]>()).prop_map(|(t, w, b)| {
            MachineryBody::PeriodStatistics(PeriodStatistics {
                collected_at: t,
                reference_torque: w[0],
                average_power: w[1],
                nox_upstream_avg: w[2],
                nox_downstream_avg: w[3],
                nox_mass_flow_upstream: b[0],
                nox_mass_flow_downstream: b[1],
                scr_inlet_avg: w[4],
                scr_outlet_avg: w[5],
                fuel_flow_avg: w[6],
                period: w[7],
                valid_ratio: b[2],
            })
        }),
    ]
}

fn arb_alarm() -> impl Strategy<Value = TamperAlarm> {
    (arb_time(), any::<u16>(), any::<u8>(), any::<u32>(), any::<u32>(), arb_bytes(2)).prop_map(
        |(time, serial, st, longitude, latitude, extra)| TamperAlarm {
            time,
            serial,
            position_status: PositionStatus(st),
            longitude,
            latitude,
            extra,
        },
    )
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_machinery() -> impl Strategy<Value = MachineryReport> {
    (
        arb_time(),
        any::<u16>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        prop::collection::vec((arb_time(), arb_machinery_body()), 0..4),
        prop::option::of(arb_signature()),
    )
        .prop_map(|(time, serial, st, lon, lat, timed, bodies, signature)| MachineryReport {
            time,
            serial,
            position_status: PositionStatus(st),
            longitude: lon,
            latitude: lat,
            records: bodies
                .into_iter()
                .map(|(t, body)| {
                    let own_time = matches!(body, MachineryBody::PeriodStatistics(_));
                    MachineryRecord { collected_at: (timed && !own_time).then_some(t), body }
                })
                .collect(),
            signature,
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (arb_time(), any::<u16>(), any::<[u8; 20]>(), arb_bytes(4))
            .prop_map(|(time, serial, iccid, extra)| Message::Login(Login { time, serial, iccid, extra })),
        arb_report().prop_map(Message::RealTime),
        arb_report().prop_map(Message::Reissue),
        (arb_time(), any::<u16>(), arb_bytes(4)).prop_map(|(time, serial, extra)| Message::Logout(Logout {
            time,
            serial,
            extra
        })),
        Just(Message::TimeCalibration),
        arb_machinery().prop_map(Message::MachineryRealTime),
        arb_machinery().prop_map(Message::MachineryReissue),
        arb_alarm().prop_map(Message::RemovalAlarm),
        arb_alarm().prop_map(Message::TamperAlarm),
        (
            arb_time(),
            any::<[u8; 16]>(),
            prop::collection::vec(any::<u8>(), 64),
            any::<[u8; 17]>(),
            arb_bytes(66)
        )
            .prop_map(|(time, chip_id, key, vin, signature)| Message::Activation(Activation {
                time,
                chip_id,
                public_key: key.try_into().unwrap(),
                vin,
                signature
            })),
        (0x80u8..=0xFE, arb_bytes(64)).prop_map(|(command, data)| Message::PlatformDefined { command, data }),
    ]
}

/// Layout and dialect a receiver must be configured with to read `m` back.
fn config_for(m: &Message) -> (BodyLayout, Dialect) {
    match m {
        Message::RealTime(r) | Message::Reissue(r) => (r.layout(), Dialect::Vehicle),
        Message::MachineryRealTime(_) | Message::MachineryReissue(_) | Message::RemovalAlarm(_) => {
            (BodyLayout::Gb17691, Dialect::Machinery)
        }
        _ => (BodyLayout::Gb17691, Dialect::Vehicle),
    }
}

fn arb_frame_bytes() -> impl Strategy<Value = (Message, Frame, Vec<u8>)> {
    (arb_message(), any::<[u8; 17]>(), any::<u8>()).prop_map(|(m, vin, ver)| {
        let f = m.to_frame(Vin(vin), ver).expect("generated messages encode");
        let bytes = f.to_bytes().expect("fits").to_vec();
        (m, f, bytes)
    })
}

fn decode_all(codec: &mut FrameCodec, buf: &mut BytesMut, eof: bool) -> Vec<Decoded> {
    let mut out = Vec::new();
    while let Some(item) = codec.decode(buf).expect("no I/O error") {
        out.push(item);
    }
    if eof {
        while let Some(item) = codec.decode_eof(buf).expect("no I/O error") {
            out.push(item);
        }
    }
    out
}

fn frames_of(items: Vec<Decoded>) -> Vec<Frame> {
    items
        .into_iter()
        .filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::Dropped(_) => None,
        })
        .collect()
}

/// Junk with no `##` pair, so it cannot hold a false start marker.
fn arb_markerless_junk() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'#')], 0..64).prop_map(|mut v| {
        for i in 1..v.len() {
            if v[i] == b'#' && v[i - 1] == b'#' {
                v[i] = 0;
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip((m, _f, bytes) in arb_frame_bytes()) {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..]);
        let frames = frames_of(decode_all(&mut codec, &mut buf, true));
        prop_assert_eq!(frames.len(), 1);
        let (layout, dialect) = config_for(&m);
        let back = Message::decode(&frames[0], layout, dialect).expect("decodes");
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode_data().unwrap(), frames[0].data.clone());
    }

    #[test]
    fn detection_reads_every_layout_back(report in arb_report()) {
        let mut data = BytesMut::new();
        report.encode(&mut data).unwrap();
        // The layout a terminal used before is tried first: it always reads its own reports.
        prop_assert_eq!(&InfoReport::detect(&data, Some(report.layout())).unwrap(), &report);
        // Without a hint some layout fits, and whatever it reads re-encodes to the same bytes.
        let detected = InfoReport::detect(&data, None).unwrap();
        let mut again = BytesMut::new();
        detected.encode(&mut again).unwrap();
        prop_assert_eq!(&again[..], &data[..]);
        let m = Message::decode_data(0x02, &data.freeze(), LayoutChoice::Detect { prefer: None }, Dialect::Vehicle);
        prop_assert!(m.is_ok());
    }

    #[test]
    fn frame_survives_every_split((_m, f, bytes) in arb_frame_bytes()) {
        for cut in 0..=bytes.len() {
            let mut codec = FrameCodec::new();
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut items = decode_all(&mut codec, &mut buf, false);
            buf.extend_from_slice(&bytes[cut..]);
            items.extend(decode_all(&mut codec, &mut buf, true));
            prop_assert_eq!(items, vec![Decoded::Frame(f.clone())], "cut at {}", cut);
        }
    }

    #[test]
    fn planted_frame_found_after_markerless_junk(
        (_m, f, bytes) in arb_frame_bytes(),
        lead in arb_markerless_junk(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        chunk in 1usize..40,
    ) {
        let mut stream = lead.clone();
        stream.extend(&bytes);
        stream.extend(&tail);
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for c in stream.chunks(chunk) {
            buf.extend_from_slice(c);
            items.extend(decode_all(&mut codec, &mut buf, false));
        }
        items.extend(decode_all(&mut codec, &mut buf, true));
        // Nothing but junk reports may come before the planted frame.
        let before: Vec<&Decoded> = items.iter().take_while(|d| !matches!(d, Decoded::Frame(_))).collect();
        prop_assert!(before.iter().all(|d| matches!(d, Decoded::Dropped(e) if e.kind() == "junk")), "{:?}", before);
        let frames = frames_of(items);
        prop_assert_eq!(frames.first(), Some(&f));
        prop_assert!(codec.stats().junk_bytes >= lead.len() as u64);
    }

    #[test]
    fn planted_frame_found_in_random_junk(
        (_m, f, bytes) in arb_frame_bytes(),
        lead in prop::collection::vec(any::<u8>(), 0..64),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut stream = lead;
        stream.extend(&bytes);
        stream.extend(&tail);
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let frames = frames_of(decode_all(&mut codec, &mut buf, true));
        prop_assert!(frames.contains(&f));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(b'#')], 0..1024)) {
        fuzz_harness(&data);
    }

    #[test]
    fn corrupted_frame_streams_never_panic(
        pieces in prop::collection::vec((arb_frame_bytes(), any::<u16>(), any::<u8>(), 0u8..4), 1..5),
    ) {
        // Valid frames, some with one byte flipped or cut short, concatenated.
        let mut stream = Vec::new();
        for ((_m, _f, mut bytes), pos, xor, action) in pieces {
            let at = usize::from(pos) % bytes.len();
            match action {
                0 => bytes[at] ^= xor.max(1),
                1 => bytes.truncate(at),
                _ => {}
            }
            stream.extend(bytes);
        }
        fuzz_harness(&stream);
    }
}
