//! Registry entities: vehicles (trucks and non-road machines) and enterprises.
use super::Vin;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleKind {
    #[default]
    Truck,
    NonRoadMachine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fuel {
    #[default]
    Unknown,
    Diesel,
    Gas,
    Petrol,
    Electric,
    Hybrid,
    Hydrogen,
}

impl Fuel {
    /// New-energy per the clean-transport definition (policy.md): battery, fuel cell.
    pub fn is_new_energy(self) -> bool {
        matches!(self, Fuel::Electric | Fuel::Hydrogen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateColour {
    #[default]
    Unknown,
    Blue,
    Yellow,
    Green,
    YellowGreen,
    White,
    Black,
}

/// Emission stage. On-road China 0–VI (GB 17691 / GB 3847 lineage) and non-road Stage I–IV
/// (GB 20891 / HJ 1014) are different scales: compare within a scale only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmissionStage {
    #[default]
    Unknown,
    China0,
    ChinaI,
    ChinaII,
    ChinaIII,
    ChinaIV,
    ChinaV,
    ChinaVI,
    NonRoadPreI,
    NonRoadI,
    NonRoadII,
    NonRoadIII,
    NonRoadIV,
}

impl EmissionStage {
    /// Position on the on-road scale (0 = China 0 … 6 = China VI).
    pub fn on_road_level(self) -> Option<u8> {
        use EmissionStage::*;
        Some(match self {
            China0 => 0,
            ChinaI => 1,
            ChinaII => 2,
            ChinaIII => 3,
            ChinaIV => 4,
            ChinaV => 5,
            ChinaVI => 6,
            _ => return None,
        })
    }

    /// Position on the non-road scale (0 = before Stage I … 4 = Stage IV).
    pub fn non_road_level(self) -> Option<u8> {
        use EmissionStage::*;
        Some(match self {
            NonRoadPreI => 0,
            NonRoadI => 1,
            NonRoadII => 2,
            NonRoadIII => 3,
            NonRoadIV => 4,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Vehicle {
    pub vin: Option<Vin>,
    pub plate: String,
    pub plate_colour: PlateColour,
    pub kind: VehicleKind,
    /// Non-road machinery type (excavator, loader, forklift, …); empty for trucks.
    pub machine_type: String,
    pub fuel: Fuel,
    pub emission_stage: EmissionStage,
    pub owner_enterprise_id: String,
    pub rated_power_kw: Option<f64>,
    /// Non-road machinery registration code (编码登记); empty when unregistered.
    pub registration_code: String,
    /// Home jurisdiction (GB/T 2260 code), e.g. "330100" for Hangzhou.
    pub city_code: String,
}

impl Vehicle {
    pub fn new(vin: Vin) -> Self {
        Vehicle { vin: Some(vin), ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Enterprise {
    pub id: String,
    pub name: String,
    /// steel, power, cement, port, non_ferrous, other.
    pub industry: String,
    pub city_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_scales_are_separate() {
        assert_eq!(EmissionStage::ChinaIII.on_road_level(), Some(3));
        assert_eq!(EmissionStage::NonRoadIII.on_road_level(), None);
        assert_eq!(EmissionStage::NonRoadI.non_road_level(), Some(1));
        assert!(EmissionStage::ChinaIII < EmissionStage::ChinaIV);
    }
}
