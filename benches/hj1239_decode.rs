//! Frame decode + message decode of a typical real-time frame: 10 diesel engine records (one per
//! second, sent every 10 s), GB 17691 layout — the bulk of a gateway's traffic.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smogwatch::hj1239::{
    BodyLayout, Decoded, Dialect, EngineData, FrameCodec, GbRecord, GbReport, InfoBody, InfoReport, Message,
    PositionStatus, TerminalTime, Vin,
};
use tokio_util::codec::Decoder;

fn ten_record_frame() -> Vec<u8> {
    let time = TerminalTime::from_bytes([24, 3, 15, 8, 30, 0]).expect("valid time");
    let records = (0..10u16)
        .map(|i| GbRecord {
            serial: i + 1,
            body: InfoBody::DieselEngine(EngineData {
                vehicle_speed: 18_560 + i,
                atmospheric_pressure: 201,
                net_torque: 170,
                friction_torque: 133,
                engine_speed: 11_604 + i * 8,
                fuel_flow: 469,
                scr_upstream_nox: 21_005,
                scr_downstream_nox: 4_710,
                reagent_level: 156,
                intake_air_flow: 12_246,
                scr_inlet_temperature: 17_872,
                scr_outlet_temperature: 17_384,
                dpf_pressure_drop: 32,
                coolant_temperature: 126,
                fuel_level: 188,
                position_status: PositionStatus(0),
                longitude: 116_397_128 + u32::from(i),
                latitude: 39_916_527,
                odometer: 1_234_567,
            }),
        })
        .collect();
    let msg = Message::RealTime(InfoReport::Gb17691(GbReport { time, records }));
    let vin = Vin::try_from("LFWSRXSJ7M1A00001").expect("17 chars");
    let frame = msg.to_frame(vin, 1).expect("message encodes");
    frame.to_bytes().expect("frame encodes").to_vec()
}

fn bench(c: &mut Criterion) {
    let bytes = ten_record_frame();
    let mut group = c.benchmark_group("hj1239");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_10_record_realtime_frame", |b| {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(bytes.len());
        b.iter(|| {
            buf.extend_from_slice(black_box(&bytes));
            let Ok(Some(Decoded::Frame(frame))) = codec.decode(&mut buf) else { panic!("frame expected") };
            let msg = Message::decode(&frame, BodyLayout::Gb17691, Dialect::Vehicle);
            black_box(msg.expect("decodes"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
