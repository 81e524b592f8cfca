//! Helpers for end-to-end tests: a real server on 127.0.0.1 (ephemeral ports) over a temp store.
#![allow(dead_code)]
use smogwatch::config::Config;
use smogwatch::proto;
use smogwatch::server::{start, Options, RunningServer};
use std::path::Path;
use tonic::transport::Channel;

pub const T0: i64 = 1_761_926_400_000; // 2025-11-01T00:00:00+08:00

pub fn config(dir: &Path) -> Config {
    let mut cfg = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        retention_days: 0,
        ..Default::default()
    };
    cfg.pipeline.workers = 2;
    cfg.hj1239.addr = Some("127.0.0.1:0".parse().unwrap());
    cfg
}

pub async fn server(dir: &Path) -> RunningServer {
    start(config(dir), Options { sample_data: false }).await.expect("server starts")
}

pub async fn channel(s: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", s.grpc_addr)).unwrap().connect().await.expect("connect")
}

pub fn truck(vin: &str, stage: proto::EmissionStage) -> proto::Vehicle {
    proto::Vehicle {
        vin: vin.into(),
        plate: format!("浙A{}", &vin[12..]),
        plate_colour: proto::PlateColour::Yellow as i32,
        kind: proto::VehicleKind::Truck as i32,
        fuel: proto::Fuel::Diesel as i32,
        emission_stage: stage as i32,
        owner_enterprise_id: "ENT-1".into(),
        city_code: "330100".into(),
        ..Default::default()
    }
}

/// A 1 Hz record of a warmed-up diesel engine at (lon, lat) with the given downstream NOx.
pub fn record(vin: &str, t_ms: i64, lon: f64, lat: f64, down_nox: f64) -> proto::TelemetryRecord {
    proto::TelemetryRecord {
        vin: vin.into(),
        time_ms: t_ms,
        position: Some(proto::Position { longitude: lon, latitude: lat, valid: true }),
        engine: Some(proto::EngineData {
            vehicle_speed_kmh: Some(40.0),
            engine_speed_rpm: Some(1400.0),
            scr_inlet_temp_c: Some(320.0),
            coolant_temp_c: Some(85.0),
            scr_upstream_nox_ppm: Some(900.0),
            scr_downstream_nox_ppm: Some(down_nox),
            reagent_remaining_pct: Some(60.0),
            intake_air_flow_kgph: Some(800.0),
            dpf_pressure_diff_kpa: Some(3.0),
            ..Default::default()
        }),
        obd: None,
        opacity_k: None,
        stream_kind: proto::EngineStreamKind::Diesel as i32,
    }
}

/// Streams `batches` over one ingest stream and returns the acks in order.
pub async fn stream_batches(ch: Channel, batches: Vec<proto::TelemetryBatch>) -> Vec<proto::BatchAck> {
    let mut client = proto::telemetry_ingest_client::TelemetryIngestClient::new(ch);
    let n = batches.len();
    let resp = client.stream(tokio_stream::iter(batches)).await.expect("stream opens");
    let mut acks = resp.into_inner();
    let mut out = Vec::with_capacity(n);
    while let Some(ack) = acks.message().await.expect("ack") {
        out.push(ack);
        if out.len() == n {
            break;
        }
    }
    out
}

/// Splits records into batches of 10 with sequence numbers from `first_seq`.
pub fn batches(
    records: Vec<proto::TelemetryRecord>,
    first_seq: u64,
    reissue: bool,
) -> Vec<proto::TelemetryBatch> {
    records
        .chunks(10)
        .enumerate()
        .map(|(i, c)| proto::TelemetryBatch { sequence: first_seq + i as u64, records: c.to_vec(), reissue })
        .collect()
}
