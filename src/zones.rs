//! The zone catalog: zones and exemptions managed through the API and the CLI, persisted in the
//! store (as the GeoJSON features they were imported from) and published to the live
//! [`ZoneRegistry`] that the detectors read — no restart, no pause.
use crate::geofence::{
    import_exemptions, import_zones, CoordinateSystem, ExemptionBook, FeatureError, ImportMode,
    ImportOptions, RecordRef, WindingPolicy, ZoneImportError, ZoneRegistry, ZoneSet, ZoneSetError,
};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const ZONE_DOC: &str = "zone";
const EXEMPTION_DOC: &str = "exemptions";
const EXEMPTION_ID: &str = "book";

/// The demo zones (approximate, generated; see data/zones/README.md), built into the binary so
/// `serve --sample-data` works from any directory.
pub const SAMPLE_ZONES: &str = include_str!("../data/zones/zhejiang-sample.geojson");
pub const SAMPLE_EXEMPTIONS: &str = include_str!("../data/zones/sample-exemptions.json");

#[derive(Debug, thiserror::Error)]
pub enum ZoneCatalogError {
    #[error(transparent)]
    Import(#[from] ZoneImportError),
    #[error("exemptions: {0}")]
    Exemptions(String),
    #[error(transparent)]
    ZoneSet(#[from] ZoneSetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored zone {id} no longer imports: {reason}")]
    Stored { id: String, reason: String },
}

/// How a feature was imported, kept with it so a restart re-imports it identically.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredZone {
    gcj02: bool,
    fix_winding: bool,
    feature: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ImportRequest {
    pub gcj02: bool,
    pub lenient: bool,
    pub fix_winding: bool,
}

impl ImportRequest {
    fn options(&self) -> ImportOptions {
        ImportOptions {
            mode: if self.lenient { ImportMode::Lenient } else { ImportMode::Strict },
            coordinates: if self.gcj02 { CoordinateSystem::Gcj02 } else { CoordinateSystem::Wgs84 },
            winding: if self.fix_winding { WindingPolicy::Fix } else { WindingPolicy::Reject },
        }
    }
}

#[derive(Debug, Default)]
pub struct ImportSummary {
    pub imported: usize,
    pub rejected: Vec<FeatureError>,
    pub rewound: Vec<RecordRef>,
    pub version: u64,
}

pub struct ZoneCatalog {
    registry: Arc<ZoneRegistry>,
    store: Arc<dyn Store>,
    /// Serialises catalog writes so the store and the registry change in the same order.
    write: tokio::sync::Mutex<()>,
}

fn feature_id(f: &serde_json::Value) -> Option<String> {
    match f.get("id") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl ZoneCatalog {
    /// Loads the persisted zones and exemptions into a new registry.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, ZoneCatalogError> {
        let mut zones = Vec::new();
        for (id, body) in store.documents(ZONE_DOC).await? {
            let stored: StoredZone = serde_json::from_slice(&body)
                .map_err(|e| ZoneCatalogError::Stored { id: id.clone(), reason: e.to_string() })?;
            let req = ImportRequest { gcj02: stored.gcj02, lenient: false, fix_winding: stored.fix_winding };
            let doc = serde_json::json!({ "type": "FeatureCollection", "features": [stored.feature] });
            let imported = import_zones(&doc.to_string(), &req.options())
                .map_err(|e| ZoneCatalogError::Stored { id: id.clone(), reason: e.to_string() })?;
            zones.extend(imported.zones);
        }
        let book = match store.documents(EXEMPTION_DOC).await?.into_iter().next() {
            Some((_, body)) => {
                let text = String::from_utf8_lossy(&body);
                let imported = import_exemptions(&text, ImportMode::Strict)
                    .map_err(|e| ZoneCatalogError::Exemptions(e.to_string()))?;
                ExemptionBook::new(imported.exemptions)
            }
            None => ExemptionBook::default(),
        };
        let set = ZoneSet::build(zones, book)?;
        tracing::info!(zones = set.len(), "zone catalog loaded");
        Ok(ZoneCatalog {
            registry: Arc::new(ZoneRegistry::new(set)),
            store,
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// The live registry the detectors read.
    pub fn registry(&self) -> Arc<ZoneRegistry> {
        self.registry.clone()
    }

    /// Validates, persists and publishes the zones of a GeoJSON FeatureCollection.
    pub async fn import(&self, geojson: &str, req: ImportRequest) -> Result<ImportSummary, ZoneCatalogError> {
        let imported = import_zones(geojson, &req.options())?;
        // The importer has already accepted the document's shape; pair accepted zones with the
        // features they came from to persist the original feature.
        let doc: serde_json::Value =
            serde_json::from_str(geojson).map_err(|e| ZoneImportError::Json(e.to_string()))?;
        let accepted: std::collections::HashSet<&str> =
            imported.zones.iter().map(|z| z.id.as_str()).collect();
        let mut docs = Vec::new();
        for f in doc.get("features").and_then(|f| f.as_array()).into_iter().flatten() {
            let Some(id) = feature_id(f) else { continue };
            if accepted.contains(id.as_str()) {
                let stored =
                    StoredZone { gcj02: req.gcj02, fix_winding: req.fix_winding, feature: f.clone() };
                docs.push((id, serde_json::to_vec(&stored).unwrap_or_default()));
            }
        }
        let _w = self.write.lock().await;
        // Check that the zones fit the index before persisting anything.
        self.registry.load().with_upserted(imported.zones.clone())?;
        self.store.put_documents(ZONE_DOC, docs).await?;
        let imported_n = imported.zones.len();
        let version = self.registry.upsert(imported.zones)?;
        metrics::gauge!("smogwatch_zones").set(self.registry.load().len() as f64);
        tracing::info!(imported = imported_n, rejected = imported.rejected.len(), version, "zones imported");
        Ok(ImportSummary {
            imported: imported_n,
            rejected: imported.rejected,
            rewound: imported.rewound,
            version,
        })
    }

    pub async fn remove(&self, ids: Vec<String>) -> Result<u64, ZoneCatalogError> {
        let _w = self.write.lock().await;
        self.store.delete_documents(ZONE_DOC, ids.clone()).await?;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok(self.registry.remove(&refs))
    }

    /// Replaces the exemption book; returns the number loaded and the rejected entries.
    pub async fn set_exemptions(
        &self,
        json: &str,
        lenient: bool,
    ) -> Result<(usize, Vec<crate::geofence::RecordError>), ZoneCatalogError> {
        let mode = if lenient { ImportMode::Lenient } else { ImportMode::Strict };
        let imported =
            import_exemptions(json, mode).map_err(|e| ZoneCatalogError::Exemptions(e.to_string()))?;
        let n = imported.exemptions.len();
        let _w = self.write.lock().await;
        // Persist only what was accepted, so a restart loads exactly the live book.
        let accepted = serde_json::to_vec(&accepted_entries(json, &imported.rejected)).unwrap_or_default();
        self.store.put_documents(EXEMPTION_DOC, vec![(EXEMPTION_ID.into(), accepted)]).await?;
        self.registry.set_exemptions(ExemptionBook::new(imported.exemptions));
        Ok((n, imported.rejected))
    }
}

/// The entries of an exemption array that were not rejected (by index).
fn accepted_entries(json: &str, rejected: &[crate::geofence::RecordError]) -> Vec<serde_json::Value> {
    let bad: std::collections::HashSet<usize> = rejected.iter().map(|r| r.at.index).collect();
    let items: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    items.into_iter().enumerate().filter(|(i, _)| !bad.contains(i)).map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn imported_zones_survive_a_reload_and_bad_files_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cat = ZoneCatalog::load(store.clone()).await.unwrap();
        let s = cat.import(SAMPLE_ZONES, ImportRequest::default()).await.unwrap();
        assert!(s.imported >= 14, "{s:?}");
        let (n, rejected) = cat.set_exemptions(SAMPLE_EXEMPTIONS, false).await.unwrap();
        assert_eq!((n, rejected.len()), (1, 0));
        let live = cat.registry().load().len();

        // A file with one bad feature is rejected whole (strict) and the live set is unchanged.
        let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"X1","properties":{},
            "geometry":{"type":"Polygon","coordinates":[[[120,30],[121,30],[121,31]]]}}]}"#;
        assert!(matches!(cat.import(bad, ImportRequest::default()).await, Err(ZoneCatalogError::Import(_))));
        assert_eq!(cat.registry().load().len(), live);

        drop(cat);
        let again = ZoneCatalog::load(store.clone()).await.unwrap();
        assert_eq!(again.registry().load().len(), live);
        assert_eq!(again.registry().load().exemptions().len(), 1);
        again.remove(vec!["R1-330122-COUNTY".into()]).await.unwrap();
        assert_eq!(ZoneCatalog::load(store).await.unwrap().registry().load().len(), live - 1);
    }
}
