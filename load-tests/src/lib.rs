//! smogwatch load tests: a deterministic fleet simulator that plants violations and records the
//! ground truth, load drivers (gRPC; HJ 1239 once the codec lands), and a report with throughput,
//! ack latency, server resources and detection quality (precision and recall per rule).
//!
//! Module map: `rng` → `fleet` (who) → `routes` + `engine` (where, what values) → `plant` (which
//! faults, the truth) → `sim` (one vehicle's timeline) → `source` (one connection's vehicles) →
//! `driver` (transport) → `quality` + `report`; `scenario` runs it all against a `target`.
pub mod driver;
pub mod engine;
pub mod field;
pub mod fleet;
pub mod noise;
pub mod plant;
pub mod procstat;
pub mod quality;
pub mod report;
pub mod rng;
pub mod routes;
pub mod scenario;
pub mod sim;
pub mod soak;
pub mod source;
pub mod target;
pub mod truth;
