//! The vehicle registry: the store is the source of truth, an in-memory map serves the per-record
//! lookups of the ingest path without touching the store.
use crate::model::{Vehicle, Vin};
use crate::store::{Store, StoreError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("vehicle has no VIN")]
    MissingVin,
    #[error("non-road machine {0} needs a machine type")]
    MissingMachineType(Vin),
    #[error("rated power must be positive, got {0}")]
    RatedPower(f64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Registry {
    store: Arc<dyn Store>,
    vehicles: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    by_vin: HashMap<Vin, Arc<Vehicle>>,
    /// Normalised plate → VIN.
    by_plate: HashMap<String, Vin>,
}

impl Maps {
    fn insert(&mut self, vin: Vin, v: Arc<Vehicle>) {
        if let Some(old) = self.by_vin.get(&vin) {
            self.by_plate.remove(&normalise_plate(&old.plate));
        }
        if !v.plate.is_empty() {
            self.by_plate.insert(normalise_plate(&v.plate), vin);
        }
        self.by_vin.insert(vin, v);
    }
}

impl Registry {
    /// Loads every registered vehicle into memory.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let map = read_all(&*store).await?;
        Ok(Arc::new(Registry { store, vehicles: RwLock::new(map) }))
    }

    /// Reads the whole registry from the store again and swaps it in. On a shared (CQL) store
    /// this is how a node learns of vehicles registered through another node; returns how many
    /// vehicles it holds now.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let map = read_all(&*self.store).await?;
        let n = map.by_vin.len();
        *self.vehicles.write() = map;
        Ok(n)
    }

    pub fn get(&self, vin: &Vin) -> Option<Arc<Vehicle>> {
        self.vehicles.read().by_vin.get(vin).cloned()
    }

    pub fn len(&self) -> usize {
        self.vehicles.read().by_vin.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The VINs an enterprise owns (an enterprise token's scope). A scan of the in-memory map:
    /// fleets are asked for per request, not per record.
    pub fn fleet(&self, enterprise_id: &str) -> std::collections::BTreeSet<Vin> {
        let maps = self.vehicles.read();
        maps.by_vin
            .iter()
            .filter(|(_, v)| v.owner_enterprise_id == enterprise_id)
            .map(|(vin, _)| *vin)
            .collect()
    }

    /// Finds a vehicle by plate (roadside sensing and gate records identify vehicles by plate).
    pub fn by_plate(&self, plate: &str) -> Option<Arc<Vehicle>> {
        let maps = self.vehicles.read();
        maps.by_plate.get(&normalise_plate(plate)).and_then(|vin| maps.by_vin.get(vin)).cloned()
    }

    /// Validates, stores, then publishes the vehicle to the in-memory map.
    pub async fn upsert(&self, v: Vehicle) -> Result<Arc<Vehicle>, RegistryError> {
        let vin = v.vin.ok_or(RegistryError::MissingVin)?;
        if v.kind == crate::model::VehicleKind::NonRoadMachine && v.machine_type.trim().is_empty() {
            return Err(RegistryError::MissingMachineType(vin));
        }
        if let Some(p) = v.rated_power_kw {
            if !(p.is_finite() && p > 0.0) {
                return Err(RegistryError::RatedPower(p));
            }
        }
        self.store.upsert_vehicle(v.clone()).await?;
        let v = Arc::new(v);
        self.vehicles.write().insert(vin, v.clone());
        Ok(v)
    }
}

async fn read_all(store: &dyn Store) -> Result<Maps, StoreError> {
    let mut map = Maps::default();
    let mut after = None;
    loop {
        let page = store.vehicles(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.vin;
        for v in page {
            if let Some(vin) = v.vin {
                map.insert(vin, Arc::new(v));
            }
        }
    }
    Ok(map)
}

/// Plates are compared without spaces, dots and case ("浙A·12345" = "浙a12345").
pub fn normalise_plate(p: &str) -> String {
    p.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '.' | '-'))
        .flat_map(char::to_uppercase)
        .collect()
}
