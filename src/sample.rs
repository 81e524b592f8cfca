//! Sample data for the demo: a handful of registered vehicles and enterprises.
use crate::model::*;
use crate::registry::{Registry, RegistryError};
use crate::store::Store;

fn vehicle(
    vin: &str,
    plate: &str,
    kind: VehicleKind,
    fuel: Fuel,
    stage: EmissionStage,
    owner: &str,
) -> Vehicle {
    Vehicle {
        vin: Vin::parse(vin).ok(),
        plate: plate.into(),
        plate_colour: if fuel.is_new_energy() { PlateColour::YellowGreen } else { PlateColour::Yellow },
        kind,
        fuel,
        emission_stage: stage,
        owner_enterprise_id: owner.into(),
        city_code: "330100".into(),
        ..Default::default()
    }
}

pub fn vehicles() -> Vec<Vehicle> {
    use EmissionStage::*;
    use Fuel::*;
    use VehicleKind::*;
    let mut excavator = vehicle("HJ4EXC00000000001", "", NonRoadMachine, Diesel, NonRoadIII, "ENT-STEEL-001");
    excavator.machine_type = "excavator".into();
    excavator.rated_power_kw = Some(118.0);
    excavator.registration_code = "ZJ-HZ-2024-000123".into();
    vec![
        vehicle("LZZ5BLSJ3DA000001", "浙A30001", Truck, Diesel, ChinaIII, "ENT-STEEL-001"),
        vehicle("LZZ5BLSJ3DA000002", "浙B40002", Truck, Diesel, ChinaIV, "ENT-STEEL-001"),
        vehicle("LZZ5BLSJ3DA000003", "浙A50003", Truck, Diesel, ChinaV, "ENT-STEEL-001"),
        vehicle("LZZ5BLSJ3DA000004", "浙A60004", Truck, Diesel, ChinaVI, "ENT-PORT-002"),
        vehicle("LZZ5BLSJ3DA000005", "浙AD70005", Truck, Electric, EmissionStage::Unknown, "ENT-PORT-002"),
        excavator,
    ]
}

pub fn enterprises() -> Vec<Enterprise> {
    vec![
        Enterprise {
            id: "ENT-STEEL-001".into(),
            name: "Sample Steel Works (demo)".into(),
            industry: "steel".into(),
            city_code: "330100".into(),
        },
        Enterprise {
            id: "ENT-PORT-002".into(),
            name: "Sample Port Terminal (demo)".into(),
            industry: "port".into(),
            city_code: "330200".into(),
        },
    ]
}

/// Registers the sample vehicles and enterprises (idempotent).
pub async fn load(registry: &Registry, store: &dyn Store) -> Result<(), RegistryError> {
    for e in enterprises() {
        store.upsert_enterprise(e).await?;
    }
    for v in vehicles() {
        registry.upsert(v).await?;
    }
    Ok(())
}
