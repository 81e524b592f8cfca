//! Geofencing engine: zones (R1 China III restriction zones, R6 machinery low-emission zones,
//! enterprise parks), their import and index, and the per-vehicle zone tracker.
//!
//! Pure library code, no I/O except the file helpers in [`geojson_import`]:
//! - [`Zone`] and its parts ([`Schedule`], [`Applicability`], [`Exemption`]) model a zone;
//! - [`import_zones`] / [`load_zone_set`] read GeoJSON (optionally GCJ-02) with per-feature errors;
//! - [`ZoneSet`] is an immutable snapshot with one R-tree over all zone parts and exact
//!   point-in-polygon; [`ZoneRegistry`] publishes snapshots with `ArcSwap` so zones change
//!   while ingest runs;
//! - [`ZoneTracker`] turns a vehicle's fixes into R1 / R6 violations (with dwell) and park
//!   passages, over a small serialisable [`ZoneTrackState`].
pub mod depth;
pub mod exemption;
pub mod gcj02;
pub mod geojson_import;
pub mod import;
pub mod index;
pub mod jurisdiction;
pub mod pip;
pub mod registry;
pub mod schedule;
pub mod tracker;
pub mod zone;

pub use exemption::{import_exemptions, Exemption, ExemptionBook, ExemptionImport, ExemptionSubject};
pub use geojson_import::{
    import_zones, load_zone_set, CoordinateSystem, FeatureError, FeatureErrorKind, ImportOptions, LoadError,
    LoadReport, RingRef, WindingPolicy, ZoneImport, ZoneImportError,
};
pub use import::{ImportMode, RecordError, RecordRef};
pub use index::{ZoneIdx, ZoneSet, ZoneSetError};
pub use registry::ZoneRegistry;
pub use schedule::{ClockTime, Day, DaySet, Schedule, WeeklyWindow};
pub use tracker::{
    EndReason, ParkPassage, PassageDirection, TrackPoint, TrackerConfig, ZoneTrackState, ZoneTracker,
};
pub use zone::{Applicability, Zone, ZoneError, ZoneKind, RULE_R1, RULE_R6_BANNED_STAGE};
