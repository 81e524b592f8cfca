//! Golden frames for what real terminals send beyond the public samples (issue 15): the
//! signed-bodies real-time layout, the `~~` start marker, the truck tamper alarm 0x06, the
//! machinery layout (header position, diagnostics, EGR stream, period statistics, removal alarm
//! 0x05) and the activation request 0x07. Each constant is re-derived from its fields by an
//! independent builder, decoded to typed values, and must re-encode byte for byte.

use bytes::BytesMut;
use smogwatch::hj1239::{
    Answer, BodyLayout, Decoded, Dialect, Frame, FrameCodec, InfoBody, InfoReport, LampStatus, LayoutChoice,
    MachineryBody, Message, StartMarker, TerminalTime,
};
use tokio_util::codec::Decoder;

const SIGNED_BODIES: &str =
    "2323024C4657535258534A374D31413030303031010100C418030F081E0A0010024880C9AA852D5401D5520D12669C2FD645D043E800207EBC0006F01448026113EF0012D687200102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F40800000000000000000000000000000000001200102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F401C";
const TILDE_LOGOUT: &str = "7E7E044C4657535258534A374D314130303030310601000818030F12000500012F";
const TRUCK_TAMPER: &str =
    "2323064C4657535258534A374D314130303030310101001118030F081E0A00070006FC548001DD99A0F5";
const MACHINERY_REALTIME: &str =
    "2323024D434533323031303030303031323334350101005018030F081E0A00090006FC548001DD99A0022800FAAF7D2EE0019055F01450963E804A204760001E7D7D4E205DC001030201204700080418030F081E0A0BB800C855F0145010024A2047600190003C6488";
const MACHINERY_TIMED: &str =
    "2323024D434533323031303030303031323334350101004218030F081E0A00090006FC548001DD99A00218030F081E092800FAAF7D2EE0019055F01450963E804A204760001E7D7D4E205DC00118030F081E09030201204700089A";
const MACHINERY_REMOVAL: &str =
    "2323054D434533323031303030303031323334350101001218030F081E0A00030006FC548001DD99A0019C";
const ACTIVATION: &str =
    "2323074C4657535258534A374D31413030303031010100A918030F081E0A00000000000000000000000000000001ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB4C4657535258534A374D31413030303031200102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F40E7";

const VIN: &str = "LFWSRXSJ7M1A00001";
const MACHINE: &str = "MCE32010000012345";
const T: &str = "18030F081E0A";
const E1: &str = "4880C9AA852D5401D5520D12669C2FD645D043E800207EBC0006F01448026113EF0012D687";
const LON_LAT: &str = "06FC548001DD99A0";

/// Independent frame builder: marker, header, data, XOR BCC from command to last data byte.
fn build(marker: &str, command: u8, vin: &str, version: u8, data_hex: &str) -> String {
    let data = hex::decode(data_hex).unwrap();
    let mut body = vec![command];
    body.extend(vin.as_bytes());
    body.extend([version, 0x01]);
    body.extend((data.len() as u16).to_be_bytes());
    body.extend(&data);
    let bcc = body.iter().fold(0u8, |a, b| a ^ b);
    let mut frame = marker.as_bytes().to_vec();
    frame.extend(body);
    frame.push(bcc);
    hex::encode_upper(frame)
}

fn sig() -> String {
    let r: String = (1..=32).map(|i| format!("{i:02X}")).collect();
    let s: String = (0x21..=0x40).map(|i| format!("{i:02X}")).collect();
    format!("20{r}20{s}")
}

fn frame(hex_str: &str) -> Frame {
    Frame::parse(&hex::decode(hex_str).unwrap()).expect("golden frame parses")
}

/// Decodes and checks the byte-for-byte round trip.
fn decode(hex_str: &str, layout: LayoutChoice, dialect: Dialect) -> Message {
    let f = frame(hex_str);
    assert_eq!(hex::encode_upper(f.to_bytes().unwrap()), hex_str);
    let m = Message::decode(&f, layout, dialect).expect("golden message decodes");
    assert_eq!(m.encode_data().unwrap(), f.data, "re-encodes byte for byte");
    m
}

const DETECT: LayoutChoice = LayoutChoice::Detect { prefer: None };

#[test]
fn constants_match_their_fields() {
    let stream = "2800FAAF7D2EE0019055F01450963E804A204760001E7D7D4E205DC0";
    let diag = "03020120470008";
    let period = format!("{T}0BB800C855F014501002 4A2047600190003C64").replace(' ', "");
    let cases = [
        (
            SIGNED_BODIES,
            build("##", 0x02, VIN, 1, &format!("{T}001002{E1}{}80{}01{}", sig(), "00".repeat(16), sig())),
        ),
        (TILDE_LOGOUT, build("~~", 0x04, VIN, 6, "18030F1200050001")),
        (TRUCK_TAMPER, build("##", 0x06, VIN, 1, &format!("{T}000700{LON_LAT}"))),
        (
            MACHINERY_REALTIME,
            build("##", 0x02, MACHINE, 1, &format!("{T}000900{LON_LAT}02{stream}01{diag}04{period}")),
        ),
        (
            MACHINERY_TIMED,
            build(
                "##",
                0x02,
                MACHINE,
                1,
                &format!("{T}000900{LON_LAT}0218030F081E09{stream}0118030F081E09{diag}"),
            ),
        ),
        (MACHINERY_REMOVAL, build("##", 0x05, MACHINE, 1, &format!("{T}000300{LON_LAT}01"))),
        (
            ACTIVATION,
            build(
                "##",
                0x07,
                VIN,
                1,
                &format!("{T}{}01{}{}{}", "00".repeat(15), "AB".repeat(64), hex::encode_upper(VIN), sig()),
            ),
        ),
    ];
    for (constant, built) in cases {
        assert_eq!(constant, built);
    }
}

#[test]
fn signed_bodies_layout() {
    let f = frame(SIGNED_BODIES);
    // Today's two layouts reject it, as the field saw.
    assert!(Message::decode(&f, BodyLayout::Gb17691, Dialect::Vehicle).is_err());
    assert!(Message::decode(&f, BodyLayout::Hj1239, Dialect::Vehicle).is_err());
    for layout in [DETECT, LayoutChoice::Fixed(BodyLayout::SignedBodies)] {
        let Message::RealTime(InfoReport::Signed(r)) = decode(SIGNED_BODIES, layout, Dialect::Vehicle) else {
            panic!("signed-bodies report")
        };
        assert_eq!(r.time, TerminalTime::from_bytes([0x18, 0x03, 0x0F, 0x08, 0x1E, 0x0A]).unwrap());
        assert_eq!(r.serial, 0x10);
        assert_eq!(r.records.len(), 2);
        let InfoBody::DieselEngine(e) = &r.records[0].body else { panic!("engine body") };
        assert_eq!(e.vehicle_speed_kmh(), Some(72.5));
        assert_eq!(e.engine_speed_rpm(), Some(1450.5));
        assert_eq!(r.records[0].signature.r[0], 0x01);
        assert_eq!(r.records[1].signature.s[31], 0x40);
        assert!(matches!(r.records[1].body, InfoBody::Supplementary(_)));
    }
}

#[test]
fn tilde_marker_is_decoded_and_answered_in_kind() {
    let f = frame(TILDE_LOGOUT);
    assert_eq!(f.marker, StartMarker::Tilde);
    assert_eq!(f.software_version, 6);
    let Message::Logout(l) = decode(TILDE_LOGOUT, DETECT, Dialect::Vehicle) else { panic!("logout") };
    assert_eq!(l.serial, 1);
    let t = TerminalTime::from_bytes([0x18, 0x03, 0x0F, 0x12, 0x00, 0x06]).unwrap();
    let answer = Answer::logout(t).reply_to(&f).to_bytes().unwrap();
    assert_eq!(&answer[..2], b"~~");
    assert_eq!(Frame::parse(&answer).unwrap().marker, StartMarker::Tilde);
}

#[test]
fn truck_tamper_alarm() {
    for dialect in [Dialect::Vehicle, Dialect::Machinery] {
        let Message::TamperAlarm(a) = decode(TRUCK_TAMPER, DETECT, dialect) else { panic!("tamper alarm") };
        assert_eq!(a.serial, 7);
        let p = a.position().expect("valid fix");
        assert_eq!((p.longitude, p.latitude), (117.2, 31.3));
        assert!(a.extra.is_empty());
    }
}

#[test]
fn machinery_real_time_layout() {
    let Message::MachineryRealTime(m) = decode(MACHINERY_REALTIME, DETECT, Dialect::Machinery) else {
        panic!("machinery report")
    };
    assert_eq!(m.serial, 9);
    let p = m.position().unwrap();
    assert_eq!((p.longitude, p.latitude), (117.2, 31.3));
    assert_eq!(m.records.len(), 3);
    assert!(m.records.iter().all(|r| r.collected_at.is_none()));
    let MachineryBody::Stream(s) = &m.records[0].body else { panic!("stream") };
    assert_eq!(s.engine.vehicle_speed_kmh(), Some(40.0));
    assert_eq!(s.engine.engine_speed_rpm(), Some(1500.0));
    assert_eq!(s.engine.scr_downstream_nox_ppm(), Some(60.0));
    assert_eq!(s.egr_actual_percent(), Some(50.0));
    assert_eq!(s.egr_target_percent(), Some(60.0));
    let MachineryBody::Diagnostics(d) = &m.records[1].body else { panic!("diagnostics") };
    assert_eq!(d.protocol, 3);
    assert_eq!(d.lamp_status(), LampStatus::Flashing);
    assert_eq!(d.fault_codes().unwrap()[0].0, [0x20, 0x47, 0x00, 0x08]);
    let MachineryBody::PeriodStatistics(ps) = &m.records[2].body else { panic!("period statistics") };
    assert_eq!(ps.period, 60);
    assert_eq!(ps.valid_ratio, 100);

    // The same bodies with a per-body collection time are detected as such.
    let Message::MachineryRealTime(m) = decode(MACHINERY_TIMED, DETECT, Dialect::Machinery) else {
        panic!("machinery report")
    };
    let t = TerminalTime::from_bytes([0x18, 0x03, 0x0F, 0x08, 0x1E, 0x09]).unwrap();
    assert!(m.records.iter().all(|r| r.collected_at == Some(t)));
}

#[test]
fn machinery_removal_alarm() {
    let Message::RemovalAlarm(a) = decode(MACHINERY_REMOVAL, DETECT, Dialect::Machinery) else {
        panic!("removal alarm")
    };
    assert_eq!(a.serial, 3);
    assert!(a.position().is_some());
    assert_eq!(&a.extra[..], &[0x01], "the machinery state byte is kept");
    // The same command is a time calibration request for trucks (and has the wrong length there).
    assert!(Message::decode(&frame(MACHINERY_REMOVAL), DETECT, Dialect::Vehicle).is_err());
}

#[test]
fn activation_request() {
    let Message::Activation(a) = decode(ACTIVATION, DETECT, Dialect::Vehicle) else { panic!("activation") };
    assert_eq!(a.chip_id[15], 0x01);
    assert_eq!(&a.vin, VIN.as_bytes());
    assert_eq!(a.public_key, [0xAB; 64]);
    assert_eq!(a.signature.len(), 66);
}

#[test]
fn every_field_golden_in_one_sticky_stream() {
    let all = [
        SIGNED_BODIES,
        TILDE_LOGOUT,
        TRUCK_TAMPER,
        MACHINERY_REALTIME,
        MACHINERY_TIMED,
        MACHINERY_REMOVAL,
        ACTIVATION,
    ];
    let mut stream = b"~#junk".to_vec();
    for g in all {
        stream.extend(hex::decode(g).unwrap());
    }
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&stream[..]);
    let mut found = Vec::new();
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        if let Decoded::Frame(f) = item {
            found.push(hex::encode_upper(f.to_bytes().unwrap()));
        }
    }
    assert_eq!(found, all.map(str::to_owned));
}
