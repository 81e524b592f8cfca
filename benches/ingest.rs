//! The ingest path end to end inside one process: protobuf decode → validation → per-VIN worker
//! (detectors) → group commit to the embedded store (fsync) → completion. No network.
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 10`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use smogwatch::detect::{DetectorSet, RulesConfig};
use smogwatch::grpc::auth::Caller;
use smogwatch::grpc::ingest::validate_batch;
use smogwatch::model::{EmissionStage, Fuel, Vehicle, VehicleKind, Vin};
use smogwatch::pipeline::{Pipeline, PipelineConfig};
use smogwatch::proto;
use smogwatch::registry::Registry;
use smogwatch::store::{embedded::EmbeddedStore, Store};
use std::sync::Arc;

const VEHICLES: usize = 100;
/// Batches submitted per iteration: 100 batches × 10 records, as terminals send them.
const BATCHES: usize = 100;

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (pipeline, registry) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let registry = Registry::load(store.clone()).await.expect("registry");
        for i in 0..VEHICLES {
            let vin = Vin::parse(&format!("LBENCH{:011}", i)).expect("vin");
            let v = Vehicle {
                kind: VehicleKind::Truck,
                fuel: Fuel::Diesel,
                emission_stage: EmissionStage::ChinaV,
                ..Vehicle::new(vin)
            };
            registry.upsert(v).await.expect("upsert");
        }
        let detectors = Arc::new(DetectorSet::new(&RulesConfig::default()));
        let cfg = PipelineConfig { workers: 2, ..Default::default() };
        (Pipeline::start(store, registry.clone(), detectors, &cfg), registry)
    });

    let mut t = 1_761_926_400_000i64;
    let mut g = c.benchmark_group("ingest_path");
    g.throughput(Throughput::Elements((BATCHES * 10) as u64));
    g.sample_size(20);
    g.bench_function("decode_validate_detect_commit", |b| {
        b.iter_batched(
            || {
                t += 10_000;
                let now = t;
                // Each batch: one vehicle's 10 s of 1 Hz records, encoded as on the wire.
                let wire = (0..BATCHES)
                    .map(|i| {
                        let vin = format!("LBENCH{:011}", i % VEHICLES);
                        let records = (0..10)
                            .map(|s| proto::TelemetryRecord {
                                vin: vin.clone(),
                                time_ms: now + s * 1000,
                                position: Some(proto::Position {
                                    longitude: 120.1,
                                    latitude: 30.2,
                                    valid: true,
                                }),
                                engine: Some(proto::EngineData {
                                    engine_speed_rpm: Some(1400.0),
                                    scr_inlet_temp_c: Some(300.0),
                                    coolant_temp_c: Some(85.0),
                                    scr_upstream_nox_ppm: Some(800.0),
                                    scr_downstream_nox_ppm: Some(90.0),
                                    ..Default::default()
                                }),
                                stream_kind: proto::EngineStreamKind::Diesel as i32,
                                ..Default::default()
                            })
                            .collect();
                        proto::TelemetryBatch { sequence: i as u64, records, reissue: false }.encode_to_vec()
                    })
                    .collect::<Vec<_>>();
                (now, wire)
            },
            |(t, wire)| {
                rt.block_on(async {
                    let mut waits = Vec::with_capacity(wire.len());
                    for bytes in wire {
                        let batch = proto::TelemetryBatch::decode(bytes.as_slice()).expect("decode");
                        let (good, _) = validate_batch(
                            &registry,
                            pipeline.admission(),
                            &Caller::Admin,
                            batch.records,
                            t + 20_000,
                        );
                        waits.push(pipeline.submit(good, false, t + 20_000).await.expect("submit"));
                    }
                    for w in waits {
                        w.wait().await.expect("durable");
                    }
                })
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
    rt.block_on(pipeline.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
