//! Records from an enterprise's gate system (门禁): validated one by one, each failure reported
//! with its row number and reason, each success turned into a [`GatePassage`] with a
//! deterministic id so that resubmitting a file (or an overlapping export) stores nothing twice.
use super::{CleanProfile, GatePassage, PassageSource};
use crate::geofence::PassageDirection;
use crate::model::{validate_time, EmissionStage, Fuel, TimestampMs, Vin};
use crate::registry::normalise_plate;
use serde::Serialize;

/// Heaviest plausible gross load of one truck passage, tonnes (a 6-axle 49 t combination
/// carries ~35 t; this leaves room for special permits and catches unit mix-ups: kg for t).
pub const MAX_TONNAGE: f64 = 100.0;
pub const MAX_PLATE_CHARS: usize = 16;
pub const MAX_CARGO_CHARS: usize = 32;
/// Largest batch accepted in one submission (bounded request work; the CLI splits files).
pub const MAX_BATCH: usize = 5000;

/// A gate record as received, before validation. `row` is the caller's numbering (CSV line, or
/// index + 1 in an API batch) and is what errors refer to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawGateRecord {
    pub row: u32,
    pub gate_id: String,
    pub plate: String,
    /// Empty when the gate system does not know it.
    pub vin: String,
    pub time_ms: TimestampMs,
    pub direction: Option<PassageDirection>,
    pub emission_stage: Option<EmissionStage>,
    pub fuel: Option<Fuel>,
    pub cargo: String,
    pub tonnage: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub row: u32,
    pub reason: String,
}

/// Deterministic id of a gate record: gate, normalised plate, time and direction identify one
/// passage (the same truck cannot pass the same barrier twice in one millisecond).
pub fn gate_record_id(gate_id: &str, plate: &str, time_ms: TimestampMs, d: PassageDirection) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"gate\0");
    h.update(gate_id.as_bytes());
    h.update(&[0]);
    h.update(normalise_plate(plate).as_bytes());
    h.update(&[0]);
    h.update(&time_ms.to_be_bytes());
    h.update(match d {
        PassageDirection::In => b"i",
        PassageDirection::Out => b"o",
    });
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// Checks one record against the enterprise's gates; `resolve_plate` finds the VIN of a
/// registered plate when the record has none (so that reconciliation can use it).
pub fn validate(
    raw: RawGateRecord,
    profile: &CleanProfile,
    resolve_plate: &dyn Fn(&str) -> Option<Vin>,
    now_ms: TimestampMs,
) -> Result<GatePassage, RowError> {
    let err = |reason: String| RowError { row: raw.row, reason };
    let gate = profile.gate(raw.gate_id.trim()).ok_or_else(|| {
        err(format!(
            "unknown gate {:?} (register it for enterprise {} first)",
            raw.gate_id, profile.enterprise_id
        ))
    })?;
    let plate = raw.plate.trim();
    if plate.is_empty() {
        return Err(err("plate is empty".into()));
    }
    if plate.chars().count() > MAX_PLATE_CHARS {
        return Err(err(format!("plate longer than {MAX_PLATE_CHARS} characters")));
    }
    let vin = match raw.vin.trim() {
        "" => resolve_plate(plate),
        v => Some(Vin::parse(v).map_err(|e| err(format!("invalid VIN {v:?}: {e}")))?),
    };
    validate_time(raw.time_ms, now_ms).map_err(|e| err(format!("invalid time: {e}")))?;
    let direction = raw.direction.ok_or_else(|| err("direction must be in or out".into()))?;
    if !gate.direction.allows(direction) {
        return Err(err(format!("gate {} is {:?}-only, record says {direction:?}", gate.id, gate.direction)));
    }
    if raw.cargo.chars().count() > MAX_CARGO_CHARS {
        return Err(err(format!("cargo type longer than {MAX_CARGO_CHARS} characters")));
    }
    if let Some(t) = raw.tonnage {
        if !(t.is_finite() && (0.0..=MAX_TONNAGE).contains(&t)) {
            return Err(err(format!("tonnage {t} outside 0..={MAX_TONNAGE} t")));
        }
    }
    Ok(GatePassage {
        id: gate_record_id(&gate.id, plate, raw.time_ms, direction),
        enterprise_id: profile.enterprise_id.clone(),
        source: PassageSource::GateSystem,
        time_ms: raw.time_ms,
        direction,
        vin,
        plate: plate.to_string(),
        zone_id: gate.park_zone_id.clone(),
        gate_id: gate.id.clone(),
        claimed_stage: raw.emission_stage.filter(|s| *s != EmissionStage::Unknown),
        claimed_fuel: raw.fuel.filter(|f| *f != Fuel::Unknown),
        cargo: raw.cargo.trim().to_string(),
        tonnage: raw.tonnage,
        fix: gate.position,
    })
}

/// Text forms accepted for a direction (CSV and CLI): in / out, 进 / 出, entry / exit.
pub fn parse_direction(s: &str) -> Option<PassageDirection> {
    match s.trim().to_ascii_lowercase().as_str() {
        "in" | "entry" | "enter" | "进" | "入" | "进厂" => Some(PassageDirection::In),
        "out" | "exit" | "leave" | "出" | "出厂" => Some(PassageDirection::Out),
        _ => None,
    }
}

/// Emission stage text: "china_vi", "VI", "6", "国六", "国6" …; `Ok(None)` for an empty field.
pub fn parse_stage(s: &str) -> Result<Option<EmissionStage>, String> {
    use EmissionStage::*;
    let t = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    let t = t.strip_prefix("china_").or_else(|| t.strip_prefix("国")).unwrap_or(&t).to_string();
    Ok(Some(match t.as_str() {
        "" => return Ok(None),
        "unknown" => return Ok(None),
        "0" | "零" => China0,
        "i" | "1" | "一" => ChinaI,
        "ii" | "2" | "二" => ChinaII,
        "iii" | "3" | "三" => ChinaIII,
        "iv" | "4" | "四" => ChinaIV,
        "v" | "5" | "五" => ChinaV,
        "vi" | "6" | "六" | "via" | "vib" | "6a" | "6b" => ChinaVI,
        _ => return Err(format!("unknown emission stage {s:?}")),
    }))
}

/// Fuel text: diesel, gas / lng / cng, petrol, electric / bev, hybrid, hydrogen / fcev, and the
/// Chinese words; `Ok(None)` for an empty field.
pub fn parse_fuel(s: &str) -> Result<Option<Fuel>, String> {
    Ok(Some(match s.trim().to_ascii_lowercase().as_str() {
        "" | "unknown" => return Ok(None),
        "diesel" | "柴油" => Fuel::Diesel,
        "gas" | "lng" | "cng" | "natural_gas" | "天然气" | "燃气" => Fuel::Gas,
        "petrol" | "gasoline" | "汽油" => Fuel::Petrol,
        "electric" | "bev" | "ev" | "纯电" | "纯电动" | "电动" => Fuel::Electric,
        "hybrid" | "phev" | "混合动力" => Fuel::Hybrid,
        "hydrogen" | "fcev" | "fuel_cell" | "氢" | "氢燃料" | "燃料电池" => Fuel::Hydrogen,
        _ => return Err(format!("unknown fuel {s:?}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::{Gate, GateDirection};
    const T: i64 = 1_761_926_400_000;

    fn profile() -> CleanProfile {
        let mut p = CleanProfile::new("ENT-STEEL-001");
        p.gates.push(Gate {
            id: "G1".into(),
            park_zone_id: "PARK-ENT-STEEL-001".into(),
            name: "north".into(),
            position: None,
            direction: GateDirection::Both,
        });
        p.gates.push(Gate {
            id: "G2".into(),
            park_zone_id: "PARK-ENT-STEEL-001".into(),
            name: "south exit".into(),
            position: None,
            direction: GateDirection::Out,
        });
        p
    }

    fn raw(row: u32) -> RawGateRecord {
        RawGateRecord {
            row,
            gate_id: "G1".into(),
            plate: "浙B·12345".into(),
            time_ms: T,
            direction: Some(PassageDirection::In),
            emission_stage: Some(EmissionStage::ChinaVI),
            fuel: Some(Fuel::Diesel),
            cargo: "iron_ore".into(),
            tonnage: Some(32.5),
            ..Default::default()
        }
    }

    #[test]
    fn valid_record_gets_a_deterministic_id_and_resolved_vin() {
        let vin = Vin::parse("LZZ5BLSJ3DA000101").unwrap();
        let resolve = |p: &str| (normalise_plate(p) == "浙B12345").then_some(vin);
        let a = validate(raw(1), &profile(), &resolve, T).unwrap();
        assert_eq!(a.vin, Some(vin));
        assert_eq!(a.zone_id, "PARK-ENT-STEEL-001");
        let mut again = raw(7);
        again.plate = "浙b12345".into();
        assert_eq!(validate(again, &profile(), &resolve, T).unwrap().id, a.id, "same passage, same id");
        let mut out = raw(2);
        out.direction = Some(PassageDirection::Out);
        assert_ne!(validate(out, &profile(), &resolve, T).unwrap().id, a.id);
    }

    #[test]
    fn each_problem_is_reported_with_its_row() {
        let none = |_: &str| None;
        let cases: Vec<(RawGateRecord, &str)> = vec![
            (RawGateRecord { gate_id: "G9".into(), ..raw(2) }, "unknown gate"),
            (RawGateRecord { plate: " ".into(), ..raw(3) }, "plate is empty"),
            (RawGateRecord { vin: "LZZ5BLSJ3DA00010I".into(), ..raw(4) }, "invalid VIN"),
            (RawGateRecord { time_ms: 5, ..raw(5) }, "invalid time"),
            (RawGateRecord { direction: None, ..raw(6) }, "direction"),
            (RawGateRecord { gate_id: "G2".into(), ..raw(7) }, "Out-only"),
            (RawGateRecord { tonnage: Some(32_500.0), ..raw(8) }, "tonnage"),
            (RawGateRecord { tonnage: Some(f64::NAN), ..raw(9) }, "tonnage"),
        ];
        for (r, reason) in cases {
            let row = r.row;
            let e = validate(r, &profile(), &none, T).unwrap_err();
            assert_eq!(e.row, row);
            assert!(e.reason.contains(reason), "row {row}: {}", e.reason);
        }
    }

    #[test]
    fn text_forms() {
        assert_eq!(parse_stage("国六"), Ok(Some(EmissionStage::ChinaVI)));
        assert_eq!(parse_stage("China V"), Ok(Some(EmissionStage::ChinaV)));
        assert_eq!(parse_stage("china_vi"), Ok(Some(EmissionStage::ChinaVI)));
        assert_eq!(parse_stage("5"), Ok(Some(EmissionStage::ChinaV)));
        assert_eq!(parse_stage(""), Ok(None));
        assert!(parse_stage("VII").is_err());
        assert_eq!(parse_fuel("纯电动"), Ok(Some(Fuel::Electric)));
        assert_eq!(parse_fuel("LNG"), Ok(Some(Fuel::Gas)));
        assert!(parse_fuel("coal").is_err());
        assert_eq!(parse_direction("出"), Some(PassageDirection::Out));
        assert_eq!(parse_direction("sideways"), None);
    }
}
