//! The simulated fleet: who the vehicles are (VIN, plate, class, registry entry). Deterministic
//! from the seed: vehicle `i` is always the same vehicle for the same seed and size.
use crate::rng::Rng;
use crate::routes::{City, CITIES};
use smogwatch::proto;

/// What kind of vehicle, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Heavy diesel truck of an on-road emission stage (3 = China III … 6 = China VI).
    DieselTruck(u8),
    /// CNG/LNG truck (three-way catalyst, no SCR, no reagent).
    GasTruck,
    /// Battery-electric truck: position and speed, no engine stream.
    NewEnergyTruck,
    /// Diesel non-road machine of a non-road stage (2 = Stage II … 4 = Stage IV).
    Machine(u8),
}

impl Class {
    pub fn is_diesel(self) -> bool {
        matches!(self, Class::DieselTruck(_) | Class::Machine(_))
    }

    /// SCR with NOx sensors and reagent: China IV and later trucks, Stage IV machines.
    pub fn has_scr(self) -> bool {
        matches!(self, Class::DieselTruck(s) if s >= 4) || self == Class::Machine(4)
    }

    /// Diesel particulate filter: China VI trucks, Stage IV machines.
    pub fn has_dpf(self) -> bool {
        matches!(self, Class::DieselTruck(6) | Class::Machine(4))
    }
}

const MACHINE_TYPES: [&str; 5] = ["excavator", "loader", "forklift", "crane", "roller"];

#[derive(Debug, Clone)]
pub struct VehicleSpec {
    pub index: u32,
    pub vin: String,
    pub class: Class,
    pub home: City,
    pub plate: String,
    pub machine_type: &'static str,
    /// Empty for an unregistered machine (R6 offender) and for trucks.
    pub registration_code: String,
    /// Reports a smoke opacity value (opacity meter on the terminal's user-defined body).
    pub opacity_meter: bool,
}

/// Fleet mix in per-mille of the fleet, in the order of `class_for`.
const MIX: [(Class, u32); 9] = [
    (Class::DieselTruck(3), 40),
    (Class::DieselTruck(4), 150),
    (Class::DieselTruck(5), 300),
    (Class::DieselTruck(6), 290),
    (Class::GasTruck, 70),
    (Class::NewEnergyTruck, 60),
    (Class::Machine(2), 20),
    (Class::Machine(3), 30),
    (Class::Machine(4), 40),
];

fn class_for(rng: &mut Rng) -> Class {
    let mut x = rng.below(1000) as u32;
    for (c, share) in MIX {
        if x < share {
            return c;
        }
        x -= share;
    }
    Class::DieselTruck(6)
}

/// Characters usable in a plate serial (no I, no O: they read as 1 and 0).
const PLATE_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn plate_serial(mut n: u32) -> String {
    let mut s = [b'0'; 5];
    for c in s.iter_mut().rev() {
        *c = PLATE_CHARS[(n % PLATE_CHARS.len() as u32) as usize];
        n /= PLATE_CHARS.len() as u32;
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// VIN: a fixed 4-letter WMI-like prefix, a class letter, the index in 12 digits. Valid VIN
/// characters only (no I, O, Q) and unique per index.
pub fn vin_for(index: u32, class: Class) -> String {
    let c = match class {
        Class::DieselTruck(s) => ['A', 'B', 'C', 'D', 'E', 'F', 'G'][usize::from(s.min(6))],
        Class::GasTruck => 'H',
        Class::NewEnergyTruck => 'J',
        Class::Machine(s) => ['K', 'L', 'M', 'N', 'P'][usize::from(s.min(4))],
    };
    format!("LSMW{c}{index:012}")
}

/// Generates vehicle `index`. `unregistered_machine` makes a machine lack its registration code.
pub fn vehicle(seed: u64, index: u32, unregistered_machine: bool) -> VehicleSpec {
    let mut rng = Rng::derive(seed, u64::from(index), 1);
    let class = class_for(&mut rng);
    let home = CITIES[rng.below(CITIES.len() as u64) as usize];
    let is_machine = matches!(class, Class::Machine(_));
    let machine_type = if is_machine {
        // Forklifts of Stage II or lower are banned (R6): never give a planted-free fleet one.
        let t = MACHINE_TYPES[rng.below(MACHINE_TYPES.len() as u64) as usize];
        if t == "forklift" && class == Class::Machine(2) {
            "excavator"
        } else {
            t
        }
    } else {
        ""
    };
    let registration_code = if is_machine && !unregistered_machine {
        format!("{}{:08}", home.city_code, index)
    } else {
        String::new()
    };
    let plate =
        if is_machine { String::new() } else { format!("浙{}{}", home.plate_letter, plate_serial(index)) };
    let opacity_meter = class.is_diesel() && rng.chance(0.5);
    VehicleSpec {
        index,
        vin: vin_for(index, class),
        class,
        home,
        plate,
        machine_type,
        registration_code,
        opacity_meter,
    }
}

impl VehicleSpec {
    /// The registry entry sent with `Registry.UpsertVehicle` before the run.
    pub fn to_proto(&self) -> proto::Vehicle {
        use proto::{EmissionStage as E, Fuel, PlateColour, VehicleKind};
        let (kind, fuel, stage, colour) = match self.class {
            Class::DieselTruck(s) => {
                let stage = match s {
                    3 => E::ChinaIii,
                    4 => E::ChinaIv,
                    5 => E::ChinaV,
                    _ => E::ChinaVi,
                };
                (VehicleKind::Truck, Fuel::Diesel, stage, PlateColour::Yellow)
            }
            Class::GasTruck => (VehicleKind::Truck, Fuel::Gas, E::ChinaVi, PlateColour::Yellow),
            Class::NewEnergyTruck => {
                (VehicleKind::Truck, Fuel::Electric, E::Unspecified, PlateColour::YellowGreen)
            }
            Class::Machine(s) => {
                let stage = match s {
                    2 => E::NonRoadIi,
                    3 => E::NonRoadIii,
                    _ => E::NonRoadIv,
                };
                (VehicleKind::NonRoadMachine, Fuel::Diesel, stage, PlateColour::Unspecified)
            }
        };
        proto::Vehicle {
            vin: self.vin.clone(),
            plate: self.plate.clone(),
            plate_colour: colour as i32,
            kind: kind as i32,
            machine_type: self.machine_type.to_string(),
            fuel: fuel as i32,
            emission_stage: stage as i32,
            owner_enterprise_id: format!("LOAD-{}", self.home.city_code),
            rated_power_kw: Some(match self.class {
                Class::Machine(_) => 75.0,
                _ => 280.0,
            }),
            registration_code: self.registration_code.clone(),
            city_code: self.home.city_code.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smogwatch::model::Vin;

    #[test]
    fn vins_are_valid_unique_and_deterministic() {
        let mut seen = std::collections::HashSet::new();
        let mut machines = 0;
        for i in 0..5000 {
            let v = vehicle(42, i, false);
            Vin::parse(&v.vin).unwrap();
            assert!(seen.insert(v.vin.clone()));
            assert_eq!(v.vin, vehicle(42, i, false).vin);
            if matches!(v.class, Class::Machine(_)) {
                machines += 1;
                assert!(!v.registration_code.is_empty());
                assert!(!(v.machine_type == "forklift" && v.class == Class::Machine(2)));
            } else {
                assert_eq!(v.plate.chars().count(), 7, "{}", v.plate);
            }
        }
        assert!((300..600).contains(&machines), "{machines}");
        assert!(
            vehicle(42, 7, true).registration_code.is_empty()
                || !matches!(vehicle(42, 7, true).class, Class::Machine(_))
        );
    }
}
