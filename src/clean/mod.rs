//! Clean transport of bulk goods (policy.md §四(一), rules.md "Clean-transport ratio").
//!
//! An enterprise (steel works, power plant, cement plant, port) must move a share of its bulk
//! goods "clean" — rail, water, pipeline, closed belt corridor or new-energy trucks — or, for the
//! steel / power / cement targets, "clean or by China VI trucks". This module holds:
//!
//! - the enterprise's clean-transport profile: yearly [`CleanTarget`]s and its [`Gate`]s (its
//!   parks are geofence zones of kind park carrying its id, imported with the other zones);
//! - [`GatePassage`]: one truck passing into or out of a park, from either source — telemetry
//!   (the zone tracker saw a registered truck cross the park polygon) or the enterprise's own
//!   gate system (records submitted through the API or a CSV import);
//! - [`NonRoadVolume`]: tonnage the enterprise reports for rail, water, pipeline and belt;
//! - [`reconcile`]: pairs the two passage sources and flags what does not pair or contradicts
//!   the registry; [`ratio`]: the pure arithmetic of the two ratios; [`report`]: both applied to a
//!   period read from the store.
//!
//! **How passages count** (decided here, stated in the API): gate records are the authoritative
//! list of trips and the only tonnage source. A telemetry passage that pairs with a gate record is
//! the same trip (counted once, from the gate record). A telemetry passage with NO gate record is
//! still a real truck trip through the park: it counts in the trip ratios (classified by the
//! registry's fuel and stage), never in tonnage (unknown), and is reported separately
//! (`telemetry_only_trips`), so that leaving dirty trucks out of the gate system does not improve
//! the ratio. Emission stage and fuel come from the registry when the vehicle is registered (a
//! gate record's claim that contradicts it is flagged `stage_mismatch` and not believed); the
//! gate record's claim is used only for unregistered vehicles.
pub mod csv;
pub mod gate_records;
pub mod period;
pub mod ratio;
pub mod reconcile;
pub mod report;

use crate::geofence::PassageDirection;
use crate::model::{EmissionStage, Fix, Fuel, TimestampMs, Vin};
use serde::{Deserialize, Serialize};

/// Default reconciliation window: a gate record and a telemetry passage of the same vehicle
/// within ± this many seconds are the same trip. Policy default (gate clocks, GNSS dwell and the
/// park polygon's distance from the barrier all blur the times by minutes).
pub const DEFAULT_MATCH_WINDOW_S: u32 = 600;

/// Bounds that keep one enterprise's profile small (it is read with every ratio).
pub const MAX_GATES: usize = 200;
pub const MAX_TARGETS: usize = 50;

/// Which ratio a target counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioKind {
    /// Rail + water + pipeline + belt + new-energy trucks.
    Clean,
    /// Clean + China VI trucks (what the steel, power and cement targets count).
    CleanOrChinaVi,
}

/// What is counted: truck passages ("trips") or tonnes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Trips,
    Tonnage,
}

/// The cargo a target is about (the Ningbo-Zhoushan port has separate container and ore/coal
/// targets). Gate records carry a free-text cargo type, matched by [`CargoScope::covers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CargoScope {
    /// Everything through the gates (bulk goods of steel, power and cement plants).
    AllBulk,
    Containers,
    OreAndCoal,
}

impl CargoScope {
    /// Whether a cargo type counts for this scope. An unknown cargo (telemetry-only passages,
    /// gate records without a cargo type, volumes reported without one) counts only for
    /// `AllBulk`: a specific target is measured on what is known to be that cargo.
    pub fn covers(self, cargo: &str) -> bool {
        let c = cargo.trim().to_ascii_lowercase();
        match self {
            CargoScope::AllBulk => true,
            CargoScope::Containers => matches!(c.as_str(), "container" | "containers" | "集装箱"),
            CargoScope::OreAndCoal => matches!(
                c.as_str(),
                "coal" | "iron_ore" | "ore" | "iron ore" | "ore_and_coal" | "煤" | "煤炭" | "铁矿石" | "矿石"
            ),
        }
    }
}

/// A yearly target, e.g. steel 2025: clean_or_china_vi ≥ 100 % of tonnage, all bulk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanTarget {
    pub year: i32,
    pub kind: RatioKind,
    pub basis: Basis,
    /// Required fraction, 0..=1 (0.9 = 90 %). "More than half" is stored as 0.5 with `strict`.
    pub fraction: f64,
    /// The ratio must exceed `fraction` rather than reach it ("more than half").
    #[serde(default)]
    pub strict: bool,
    pub scope: CargoScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateDirection {
    In,
    Out,
    Both,
}

impl GateDirection {
    pub fn allows(self, d: PassageDirection) -> bool {
        matches!(
            (self, d),
            (GateDirection::Both, _)
                | (GateDirection::In, PassageDirection::In)
                | (GateDirection::Out, PassageDirection::Out)
        )
    }
}

/// A physical gate (barrier with camera / RFID) of a park.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub id: String,
    /// The park zone (geofence zone of kind park) this gate belongs to.
    pub park_zone_id: String,
    pub name: String,
    pub position: Option<Fix>,
    pub direction: GateDirection,
}

/// The clean-transport side of an enterprise: targets and gates. Kept apart from
/// `model::Enterprise` so that a registry upsert (name, industry, city) never wipes them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CleanProfile {
    pub enterprise_id: String,
    pub targets: Vec<CleanTarget>,
    pub gates: Vec<Gate>,
}

impl CleanProfile {
    pub fn new(enterprise_id: impl Into<String>) -> Self {
        CleanProfile { enterprise_id: enterprise_id.into(), ..Default::default() }
    }

    pub fn gate(&self, id: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.id == id)
    }

    /// The targets that apply to a year.
    pub fn targets_for(&self, year: i32) -> impl Iterator<Item = &CleanTarget> {
        self.targets.iter().filter(move |t| t.year == year)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassageSource {
    /// Derived from the vehicle's track crossing the park polygon.
    Telemetry,
    /// Submitted by the enterprise's gate system.
    GateSystem,
}

/// One truck passing into or out of an enterprise park, from either source. Ids are
/// deterministic (see [`telemetry_passage_id`], [`gate_records::gate_record_id`]): re-sending
/// the same data stores one copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatePassage {
    /// 32 hex digits.
    pub id: String,
    pub enterprise_id: String,
    pub source: PassageSource,
    pub time_ms: TimestampMs,
    pub direction: PassageDirection,
    /// Telemetry: always; gate records: as recorded (or resolved from the plate at submission).
    pub vin: Option<Vin>,
    /// Gate records: as recorded; telemetry: empty (the registry knows it).
    pub plate: String,
    /// The park zone: telemetry: the zone crossed; gate records: the gate's park.
    pub zone_id: String,
    /// Gate records only.
    pub gate_id: String,
    /// What the gate system recorded (gate records only; `None` = not recorded).
    pub claimed_stage: Option<EmissionStage>,
    pub claimed_fuel: Option<Fuel>,
    pub cargo: String,
    /// Tonnes of cargo (gate records only).
    pub tonnage: Option<f64>,
    pub fix: Option<Fix>,
}

/// Deterministic id of a telemetry-derived passage: a replay of the same track yields the same
/// passage, so it is stored once.
pub fn telemetry_passage_id(vin: &Vin, zone_id: &str, time_ms: TimestampMs, d: PassageDirection) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"telemetry\0");
    h.update(vin.as_bytes());
    h.update(&[0]);
    h.update(zone_id.as_bytes());
    h.update(&[0]);
    h.update(&time_ms.to_be_bytes());
    h.update(&[direction_byte(d)]);
    hex::encode(&h.finalize().as_bytes()[..16])
}

fn direction_byte(d: PassageDirection) -> u8 {
    match d {
        PassageDirection::In => b'i',
        PassageDirection::Out => b'o',
    }
}

impl GatePassage {
    /// The stored form of a passage the zone tracker emitted.
    pub fn from_park_passage(p: &crate::geofence::ParkPassage) -> Self {
        GatePassage {
            id: telemetry_passage_id(&p.vin, &p.zone_id, p.time_ms, p.direction),
            enterprise_id: p.enterprise_id.clone(),
            source: PassageSource::Telemetry,
            time_ms: p.time_ms,
            direction: p.direction,
            vin: Some(p.vin),
            plate: String::new(),
            zone_id: p.zone_id.clone(),
            gate_id: String::new(),
            claimed_stage: None,
            claimed_fuel: None,
            cargo: String::new(),
            tonnage: None,
            fix: Some(p.fix),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonRoadMode {
    Rail,
    Water,
    Pipeline,
    Belt,
}

impl NonRoadMode {
    pub const ALL: [NonRoadMode; 4] =
        [NonRoadMode::Rail, NonRoadMode::Water, NonRoadMode::Pipeline, NonRoadMode::Belt];

    pub fn label(self) -> &'static str {
        match self {
            NonRoadMode::Rail => "rail",
            NonRoadMode::Water => "water",
            NonRoadMode::Pipeline => "pipeline",
            NonRoadMode::Belt => "belt",
        }
    }
}

/// Longest period one non-road report may cover. Bounds the store's look-back when a period is
/// read (a report is filed under the year it starts in).
pub const MAX_VOLUME_SPAN_MS: i64 = 366 * 86_400_000;

/// Tonnage (and optionally trips) an enterprise moved by a non-road mode over `[from, to)`.
/// Resubmitting the same (enterprise, mode, from, to) replaces the earlier report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonRoadVolume {
    pub id: String,
    pub enterprise_id: String,
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub mode: NonRoadMode,
    pub tonnage: f64,
    /// Train / vessel / batch count when the enterprise reports it; trip ratios count only what
    /// is reported.
    pub trips: Option<u64>,
    /// Cargo type, as for gate records ("" = unspecified: counts for all-bulk targets only).
    #[serde(default)]
    pub cargo: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VolumeError {
    #[error("period must have from < to")]
    EmptyPeriod,
    #[error("period longer than 366 days; report per year or shorter")]
    TooLong,
    #[error("time before 2000-01-01")]
    TooOld,
    #[error("tonnage must be a finite number ≥ 0, got {0}")]
    Tonnage(f64),
    #[error("enterprise id must be 1-64 characters")]
    Enterprise,
    #[error("cargo type longer than 32 characters")]
    Cargo,
}

impl NonRoadVolume {
    /// Validates and assigns the deterministic id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        enterprise_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        mode: NonRoadMode,
        tonnage: f64,
        trips: Option<u64>,
        cargo: &str,
    ) -> Result<Self, VolumeError> {
        if enterprise_id.trim().is_empty() || enterprise_id.len() > 64 {
            return Err(VolumeError::Enterprise);
        }
        if from_ms >= to_ms {
            return Err(VolumeError::EmptyPeriod);
        }
        if from_ms < crate::model::MIN_VALID_MS {
            return Err(VolumeError::TooOld);
        }
        if to_ms - from_ms > MAX_VOLUME_SPAN_MS {
            return Err(VolumeError::TooLong);
        }
        if !(tonnage.is_finite() && tonnage >= 0.0) {
            return Err(VolumeError::Tonnage(tonnage));
        }
        if cargo.chars().count() > 32 {
            return Err(VolumeError::Cargo);
        }
        let mut h = blake3::Hasher::new();
        h.update(b"volume\0");
        h.update(enterprise_id.as_bytes());
        h.update(&[0]);
        h.update(mode.label().as_bytes());
        h.update(&[0]);
        h.update(cargo.trim().as_bytes());
        h.update(&[0]);
        h.update(&from_ms.to_be_bytes());
        h.update(&to_ms.to_be_bytes());
        Ok(NonRoadVolume {
            id: hex::encode(&h.finalize().as_bytes()[..16]),
            enterprise_id: enterprise_id.to_string(),
            from_ms,
            to_ms,
            mode,
            tonnage,
            trips,
            cargo: cargo.trim().to_string(),
        })
    }

    /// The share of this report inside `[from, to)`: a report that straddles the period counts
    /// pro rata by time (a monthly rail figure split over days is the best estimate there is).
    pub fn overlap_fraction(&self, from_ms: TimestampMs, to_ms: TimestampMs) -> f64 {
        let lo = self.from_ms.max(from_ms);
        let hi = self.to_ms.min(to_ms);
        if hi <= lo || self.to_ms <= self.from_ms {
            return 0.0;
        }
        (hi - lo) as f64 / (self.to_ms - self.from_ms) as f64
    }
}
