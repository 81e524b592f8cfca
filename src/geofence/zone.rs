//! The zone model: an area, when it is in force, which vehicles it restricts, and who is exempt.
//!
//! One model serves three uses (rules.md): R1 China III restriction zones (trucks), R6 machinery
//! low-emission zones (non-road machinery), and enterprise parks whose gate passages feed the
//! clean-transport ratio (policy.md). Geometry is WGS-84 lon/lat degrees.
use super::exemption::{Exemption, ExemptionBook};
use super::schedule::{day_number, LocalInstant, Schedule, ScheduleError};
use crate::model::{EmissionStage, Fuel, TimestampMs, Vehicle, VehicleKind};
use chrono::NaiveDate;
use geo::MultiPolygon;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rule id of R1 (China III restriction zones).
pub const RULE_R1: &str = "R1";
/// Rule id of R6 banned-stage machinery in a machinery low-emission zone.
pub const RULE_R6_BANNED_STAGE: &str = "R6.banned_stage";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ZoneKind {
    /// 国三柴油货车限行区 (R1).
    RestrictionZone,
    /// 非道路移动机械低排放控制区 (R6).
    MachineryLowEmissionZone,
    /// An enterprise's gated area (the zone geometry is the area inside the gates): a registered
    /// truck entering or leaving it is a gate passage, never a violation.
    Park { enterprise_id: String },
}

impl ZoneKind {
    /// The violation rule this kind of zone enforces (`None` for parks).
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            ZoneKind::RestrictionZone => Some(RULE_R1),
            ZoneKind::MachineryLowEmissionZone => Some(RULE_R6_BANNED_STAGE),
            ZoneKind::Park { .. } => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            ZoneKind::RestrictionZone => "restriction_zone",
            ZoneKind::MachineryLowEmissionZone => "machinery_low_emission_zone",
            ZoneKind::Park { .. } => "park",
        }
    }
}

/// Which vehicles a zone restricts. Empty `kinds` / `fuels` lists mean "any".
///
/// A vehicle whose emission stage is `Unknown` (or on the other scale) is never matched: a
/// violation must be provable from registry data, and an unknown stage proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Applicability {
    pub kinds: Vec<VehicleKind>,
    pub fuels: Vec<Fuel>,
    /// On-road vehicles at or below this stage are restricted (e.g. `china_iii`); `None`: no
    /// on-road vehicle is restricted.
    #[serde(deserialize_with = "stage_names::option")]
    pub max_on_road_stage: Option<EmissionStage>,
    /// Non-road machinery at or below this stage is restricted (e.g. `non_road_i`).
    #[serde(deserialize_with = "stage_names::option")]
    pub max_non_road_stage: Option<EmissionStage>,
    /// Per machine type (lower-case, e.g. "forklift"), a stage that replaces
    /// `max_non_road_stage` (R6: forklifts Stage II or lower).
    #[serde(deserialize_with = "stage_names::map")]
    pub machine_type_max_stage: BTreeMap<String, EmissionStage>,
}

impl Applicability {
    /// R1: diesel trucks of China III or lower.
    pub fn china_iii_diesel_trucks() -> Self {
        Applicability {
            kinds: vec![VehicleKind::Truck],
            fuels: vec![Fuel::Diesel],
            max_on_road_stage: Some(EmissionStage::ChinaIII),
            ..Default::default()
        }
    }

    /// R6: machinery of Stage I or lower; forklifts of Stage II or lower (the 2025 rule).
    pub fn banned_stage_machinery() -> Self {
        Applicability {
            kinds: vec![VehicleKind::NonRoadMachine],
            max_non_road_stage: Some(EmissionStage::NonRoadI),
            machine_type_max_stage: BTreeMap::from([("forklift".to_string(), EmissionStage::NonRoadII)]),
            ..Default::default()
        }
    }

    /// Parks: every registered truck (clean-transport counting needs all of them).
    pub fn all_trucks() -> Self {
        Applicability { kinds: vec![VehicleKind::Truck], ..Default::default() }
    }

    /// Kind and fuel filters only (what a park uses: it counts every truck, whatever its stage).
    pub fn matches_kind_and_fuel(&self, v: &Vehicle) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&v.kind))
            && (self.fuels.is_empty() || self.fuels.contains(&v.fuel))
    }

    /// Kind, fuel and emission-stage filters (restriction and machinery zones).
    pub fn matches(&self, v: &Vehicle) -> bool {
        if !self.matches_kind_and_fuel(v) {
            return false;
        }
        match v.kind {
            VehicleKind::Truck => {
                at_or_below(v.emission_stage, self.max_on_road_stage, EmissionStage::on_road_level)
            }
            VehicleKind::NonRoadMachine => {
                let override_stage = (!self.machine_type_max_stage.is_empty())
                    .then(|| self.machine_type_max_stage.get(v.machine_type.trim().to_lowercase().as_str()))
                    .flatten()
                    .copied();
                let max = override_stage.or(self.max_non_road_stage);
                at_or_below(v.emission_stage, max, EmissionStage::non_road_level)
            }
        }
    }
}

/// Readable stage names for zone files. The model's serde names come out of `snake_case` on
/// `ChinaIII` as `china_i_i_i`; zone files may also write `china_iii`, `China III`, `china3`,
/// `non_road_ii`, `nonroad2`, …: case, spaces, `_` and `-` are ignored and digits are accepted.
mod stage_names {
    use crate::model::EmissionStage;
    use serde::{de::Error, Deserialize, Deserializer};
    use std::collections::BTreeMap;

    pub fn parse(s: &str) -> Option<EmissionStage> {
        use EmissionStage::*;
        let k: String =
            s.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect();
        Some(match k.as_str() {
            "china0" => China0,
            "chinai" | "china1" => ChinaI,
            "chinaii" | "china2" => ChinaII,
            "chinaiii" | "china3" => ChinaIII,
            "chinaiv" | "china4" => ChinaIV,
            "chinav" | "china5" => ChinaV,
            "chinavi" | "china6" => ChinaVI,
            "nonroadprei" | "nonroad0" => NonRoadPreI,
            "nonroadi" | "nonroad1" => NonRoadI,
            "nonroadii" | "nonroad2" => NonRoadII,
            "nonroadiii" | "nonroad3" => NonRoadIII,
            "nonroadiv" | "nonroad4" => NonRoadIV,
            _ => return None,
        })
    }

    fn one<E: Error>(s: &str) -> Result<EmissionStage, E> {
        parse(s).ok_or_else(|| {
            E::custom(format!("unknown emission stage {s:?} (e.g. \"china_iii\", \"non_road_ii\")"))
        })
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<EmissionStage>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| one(&s)).transpose()
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, EmissionStage>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?.into_iter().map(|(k, v)| Ok((k, one(&v)?))).collect()
    }
}

fn at_or_below(
    stage: EmissionStage,
    max: Option<EmissionStage>,
    level: fn(EmissionStage) -> Option<u8>,
) -> bool {
    matches!((level(stage), max.and_then(level)), (Some(s), Some(m)) if s <= m)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("zone id is empty")]
    EmptyId,
    #[error("zone name is empty")]
    EmptyName,
    #[error("{field} {value:?} is not a 6-digit GB/T 2260 code")]
    BadCode { field: &'static str, value: String },
    #[error("county code {county} is not inside city {city}")]
    CountyOutsideCity { city: String, county: String },
    #[error("effective_until {until} is before effective_from {from}")]
    EffectivePeriod { from: NaiveDate, until: NaiveDate },
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("park has no enterprise id")]
    NoEnterprise,
    #[error("geometry is empty")]
    EmptyGeometry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub kind: ZoneKind,
    /// GB/T 2260 code of the prefecture-level city, e.g. "330100".
    pub city_code: String,
    /// GB/T 2260 code of the district / county, when the zone is one.
    pub county_code: Option<String>,
    /// WGS-84. Exterior rings counter-clockwise, holes clockwise (RFC 7946); see `geojson_import`.
    pub geometry: MultiPolygon<f64>,
    /// First day in force (Asia/Shanghai).
    pub effective_from: NaiveDate,
    /// Last day in force, inclusive (Asia/Shanghai); `None` = open-ended.
    pub effective_until: Option<NaiveDate>,
    pub schedule: Schedule,
    pub applicability: Applicability,
    /// Provenance, e.g. "approximate, generated, not official boundaries".
    pub note: String,
}

fn is_code(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Zone {
    /// In force at `at_ms`: on or after the effective date, not after the end date, and inside the
    /// schedule (all in Beijing time).
    pub fn is_active(&self, at_ms: TimestampMs) -> bool {
        let t = LocalInstant::of(at_ms);
        t.day >= day_number(self.effective_from)
            && self.effective_until.is_none_or(|u| t.day <= day_number(u))
            && self.schedule.contains(t)
    }

    /// The zone restricts this vehicle (parks: the vehicle's passages are counted, whatever its
    /// emission stage, since clean-transport ratios need every truck).
    pub fn applies_to(&self, v: &Vehicle) -> bool {
        match self.kind {
            ZoneKind::Park { .. } => self.applicability.matches_kind_and_fuel(v),
            _ => self.applicability.matches(v),
        }
    }

    /// The permit exempting `v` from this zone at `at_ms`, looked up in `book` (exemptions live in
    /// the [`ZoneSet`](super::ZoneSet) so permits can change without rebuilding zones).
    pub fn exemption<'b>(
        &self,
        v: &Vehicle,
        at_ms: TimestampMs,
        book: &'b ExemptionBook,
    ) -> Option<&'b Exemption> {
        book.find(v, &self.id, at_ms)
    }

    pub fn is_exempt(&self, v: &Vehicle, at_ms: TimestampMs, book: &ExemptionBook) -> bool {
        self.exemption(v, at_ms, book).is_some()
    }

    /// Attribute checks (geometry is validated at import, see `geojson_import`).
    pub fn validate(&self) -> Result<(), ZoneError> {
        if self.id.trim().is_empty() {
            return Err(ZoneError::EmptyId);
        }
        if self.name.trim().is_empty() {
            return Err(ZoneError::EmptyName);
        }
        if !is_code(&self.city_code) {
            return Err(ZoneError::BadCode { field: "city_code", value: self.city_code.clone() });
        }
        if let Some(c) = &self.county_code {
            if !is_code(c) {
                return Err(ZoneError::BadCode { field: "county_code", value: c.clone() });
            }
            if c.get(..4) != self.city_code.get(..4) {
                return Err(ZoneError::CountyOutsideCity { city: self.city_code.clone(), county: c.clone() });
            }
        }
        if let Some(until) = self.effective_until {
            if until < self.effective_from {
                return Err(ZoneError::EffectivePeriod { from: self.effective_from, until });
            }
        }
        self.schedule.validate()?;
        if matches!(&self.kind, ZoneKind::Park { enterprise_id } if enterprise_id.trim().is_empty()) {
            return Err(ZoneError::NoEnterprise);
        }
        if self.geometry.0.is_empty() {
            return Err(ZoneError::EmptyGeometry);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geofence::exemption::ExemptionSubject;
    use crate::geofence::schedule::{local_midnight_ms, ClockTime, DaySet, WeeklyWindow};
    use crate::model::Vin;
    use geo::{polygon, MultiPolygon};

    pub fn square(lon: f64, lat: f64, half: f64) -> MultiPolygon<f64> {
        MultiPolygon(vec![polygon![
            (x: lon - half, y: lat - half),
            (x: lon + half, y: lat - half),
            (x: lon + half, y: lat + half),
            (x: lon - half, y: lat + half),
        ]])
    }

    pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    pub fn r1_zone(id: &str, from: NaiveDate) -> Zone {
        Zone {
            id: id.into(),
            name: format!("zone {id}"),
            kind: ZoneKind::RestrictionZone,
            city_code: "330100".into(),
            county_code: Some("330122".into()),
            geometry: square(120.16, 30.27, 0.05),
            effective_from: from,
            effective_until: None,
            schedule: Schedule::AllDay,
            applicability: Applicability::china_iii_diesel_trucks(),
            note: String::new(),
        }
    }

    fn vehicle(kind: VehicleKind, fuel: Fuel, stage: EmissionStage, machine_type: &str) -> Vehicle {
        Vehicle {
            plate: "浙A12345".into(),
            kind,
            fuel,
            emission_stage: stage,
            machine_type: machine_type.into(),
            ..Vehicle::new(Vin::parse("LGBH52E07HY000001").unwrap())
        }
    }

    #[test]
    fn county_zone_starts_at_beijing_midnight() {
        let z = r1_zone("tonglu", date(2025, 11, 1));
        let midnight = local_midnight_ms(date(2025, 11, 1));
        assert_eq!(midnight, 1_761_926_400_000);
        // 2025-10-31T23:59:59+08:00 inactive, 2025-11-01T00:00:00+08:00 active.
        assert!(!z.is_active(midnight - 1000));
        assert!(z.is_active(midnight));
        let mut z = z;
        z.effective_until = Some(date(2025, 11, 30));
        let dec1 = local_midnight_ms(date(2025, 12, 1));
        assert!(z.is_active(dec1 - 1));
        assert!(!z.is_active(dec1));
    }

    #[test]
    fn schedule_gates_activity() {
        let mut z = r1_zone("w", date(2024, 12, 31));
        z.schedule = Schedule::Weekly(vec![WeeklyWindow::new(
            DaySet::EVERY_DAY,
            ClockTime::hm(22, 0).unwrap(),
            ClockTime::hm(6, 0).unwrap(),
        )
        .unwrap()]);
        let d = local_midnight_ms(date(2025, 11, 3));
        assert!(z.is_active(d + 5 * 3_600_000));
        assert!(!z.is_active(d + 6 * 3_600_000));
        assert!(z.is_active(d + 22 * 3_600_000));
        // Effective date still applies to the tail of a window that started the day before.
        z.effective_from = date(2025, 11, 3);
        assert!(z.is_active(d + 3_600_000), "window from Sunday 22:00 runs into the first day");
        assert!(!z.is_active(d - 3_600_000), "but not before the effective date");
    }

    #[test]
    fn r1_applies_only_to_china_iii_or_lower_diesel_trucks() {
        let z = r1_zone("z", date(2024, 12, 31));
        use EmissionStage::*;
        for (stage, fuel, expect) in [
            (ChinaIII, Fuel::Diesel, true),
            (ChinaII, Fuel::Diesel, true),
            (China0, Fuel::Diesel, true),
            (ChinaIV, Fuel::Diesel, false),
            (ChinaVI, Fuel::Diesel, false),
            (ChinaIII, Fuel::Electric, false),
            (ChinaIII, Fuel::Gas, false),
            (Unknown, Fuel::Diesel, false),
            (NonRoadI, Fuel::Diesel, false),
        ] {
            assert_eq!(
                z.applies_to(&vehicle(VehicleKind::Truck, fuel, stage, "")),
                expect,
                "{stage:?} {fuel:?}"
            );
        }
        assert!(!z.applies_to(&vehicle(VehicleKind::NonRoadMachine, Fuel::Diesel, NonRoadPreI, "excavator")));
    }

    #[test]
    fn r6_applies_by_stage_with_forklift_override() {
        let mut z = r1_zone("m", date(2024, 12, 31));
        z.kind = ZoneKind::MachineryLowEmissionZone;
        z.applicability = Applicability::banned_stage_machinery();
        use EmissionStage::*;
        let m = |stage, ty| vehicle(VehicleKind::NonRoadMachine, Fuel::Diesel, stage, ty);
        assert!(z.applies_to(&m(NonRoadPreI, "excavator")));
        assert!(z.applies_to(&m(NonRoadI, "loader")));
        assert!(!z.applies_to(&m(NonRoadII, "excavator")));
        assert!(z.applies_to(&m(NonRoadII, "Forklift")));
        assert!(!z.applies_to(&m(NonRoadIII, "forklift")));
        assert!(!z.applies_to(&m(Unknown, "forklift")));
        assert!(!z.applies_to(&vehicle(VehicleKind::Truck, Fuel::Diesel, ChinaIII, "")));
    }

    #[test]
    fn exemption_is_per_zone_and_time() {
        let z = r1_zone("z1", date(2024, 12, 31));
        let v = vehicle(VehicleKind::Truck, Fuel::Diesel, EmissionStage::ChinaIII, "");
        let book = ExemptionBook::new([Exemption {
            id: "P".into(),
            subject: ExemptionSubject::Vin(v.vin.unwrap()),
            zone_id: Some("z1".into()),
            valid_from_ms: 1000,
            valid_until_ms: 2000,
            reason: String::new(),
        }]);
        assert!(!z.is_exempt(&v, 999, &book));
        assert!(z.is_exempt(&v, 1000, &book));
        assert!(!z.is_exempt(&v, 2000, &book));
        assert!(!r1_zone("z2", date(2024, 12, 31)).is_exempt(&v, 1500, &book));
    }

    #[test]
    fn stage_names_are_readable() {
        let a: Applicability = serde_json::from_str(
            r#"{"max_on_road_stage":"China III","max_non_road_stage":"non_road_i","machine_type_max_stage":{"forklift":"nonroad2"}}"#,
        )
        .unwrap();
        assert_eq!(a.max_on_road_stage, Some(EmissionStage::ChinaIII));
        assert_eq!(a.max_non_road_stage, Some(EmissionStage::NonRoadI));
        assert_eq!(a.machine_type_max_stage.get("forklift"), Some(&EmissionStage::NonRoadII));
        // The model's own serde spelling still works.
        let a: Applicability = serde_json::from_str(r#"{"max_on_road_stage":"china_i_i_i"}"#).unwrap();
        assert_eq!(a.max_on_road_stage, Some(EmissionStage::ChinaIII));
        let e = serde_json::from_str::<Applicability>(r#"{"max_on_road_stage":"euro3"}"#).unwrap_err();
        assert!(e.to_string().contains("euro3"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut z = r1_zone("z", date(2024, 12, 31));
        assert_eq!(z.validate(), Ok(()));
        z.county_code = Some("330522".into());
        assert!(matches!(z.validate(), Err(ZoneError::CountyOutsideCity { .. })));
        z.county_code = None;
        z.city_code = "33010".into();
        assert!(matches!(z.validate(), Err(ZoneError::BadCode { field: "city_code", .. })));
        z.city_code = "330100".into();
        z.effective_until = Some(date(2024, 1, 1));
        assert!(matches!(z.validate(), Err(ZoneError::EffectivePeriod { .. })));
        z.effective_until = None;
        z.kind = ZoneKind::Park { enterprise_id: " ".into() };
        assert_eq!(z.validate(), Err(ZoneError::NoEnterprise));
    }
}
