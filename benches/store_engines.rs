//! The embedded engine choice, measured on smogwatch's workload: group commits of encoded 1 Hz
//! records keyed by (VIN, time), each commit made durable (fsync) before it returns, then a
//! per-vehicle time-range read. redb (the default) against fjall (LSM-tree).
//!
//! Run: `cargo bench --bench store_engines -- --warm-up-time 1 --measurement-time 5`
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use smogwatch::model::{EngineData, EngineStreamKind, Fix, TelemetryRecord, Vin};
use smogwatch::store::codec::{encode_record, record_key};

const VEHICLES: usize = 500;
const PER_COMMIT: usize = 5_000;

fn vins() -> Vec<Vin> {
    (0..VEHICLES).filter_map(|i| Vin::parse(&format!("LBENCH{:011}", i)).ok()).collect()
}

fn records(vins: &[Vin], t0: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..PER_COMMIT)
        .map(|i| {
            let vin = vins[i % vins.len()];
            let t = t0 + (i / vins.len()) as i64 * 1000;
            let r = TelemetryRecord {
                vin,
                time_ms: t,
                fix: Some(Fix { lon: 120.0 + i as f64 * 1e-5, lat: 30.0, valid: true }),
                engine: Some(EngineData {
                    engine_speed_rpm: Some(1400.0),
                    scr_downstream_nox_ppm: Some(80.0),
                    scr_upstream_nox_ppm: Some(700.0),
                    coolant_temp_c: Some(85.0),
                    vehicle_speed_kmh: Some(60.0),
                    ..Default::default()
                }),
                obd: None,
                opacity_k: None,
                stream_kind: EngineStreamKind::Diesel,
            };
            (record_key(&vin, t).to_vec(), encode_record(&r))
        })
        .collect()
}

const RECORDS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");

fn bench(c: &mut Criterion) {
    let vins = vins();
    let mut g = c.benchmark_group("durable_group_commit");
    g.throughput(Throughput::Elements(PER_COMMIT as u64));
    g.sample_size(20);

    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("bench.redb")).expect("redb");
    let mut t0 = 1_761_926_400_000i64;
    g.bench_function("redb", |b| {
        b.iter_batched(
            || {
                t0 += 100_000;
                records(&vins, t0)
            },
            |recs| {
                let tx = db.begin_write().expect("tx");
                {
                    let mut t = tx.open_table(RECORDS).expect("table");
                    for (k, v) in &recs {
                        t.insert(k.as_slice(), v.as_slice()).expect("insert");
                    }
                }
                tx.commit().expect("commit");
            },
            BatchSize::LargeInput,
        )
    });

    let fdir = tempfile::tempdir().expect("tempdir");
    let fdb = fjall::Database::builder(fdir.path()).open().expect("fjall");
    let ks = fdb.keyspace("records", fjall::KeyspaceCreateOptions::default).expect("keyspace");
    let mut t0 = 1_761_926_400_000i64;
    g.bench_function("fjall", |b| {
        b.iter_batched(
            || {
                t0 += 100_000;
                records(&vins, t0)
            },
            |recs| {
                let mut batch = fdb.batch().durability(Some(fjall::PersistMode::SyncAll));
                for (k, v) in recs {
                    batch.insert(&ks, k, v);
                }
                batch.commit().expect("commit");
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // One vehicle's hour: the evidence / track / late-data context read.
    let mut g = c.benchmark_group("vehicle_range_read");
    let vin = vins[7];
    let (lo, hi) = (record_key(&vin, 0), record_key(&vin, i64::MAX));
    g.bench_function("redb", |b| {
        b.iter(|| {
            let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
            let t = tx.open_table(RECORDS).expect("table");
            t.range(&lo[..]..&hi[..]).expect("range").take(3600).count()
        })
    });
    g.bench_function("fjall", |b| b.iter(|| ks.range(lo.to_vec()..hi.to_vec()).take(3600).count()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
