//! `CleanTransport` service: enterprise targets, gates, gate-system records, non-road volumes,
//! reconciled passages, the ratio and the ranking (crate::clean).
//!
//! Scoping is decided in ONE function, [`authorize`]: an enterprise token reaches only its own
//! enterprise and is refused (PERMISSION_DENIED, never an empty answer) for any other id, even one
//! that does not exist — so the answer does not reveal which ids exist.
use super::auth::Caller;
use super::convert::{enterprise_to_proto, fuel_from, fuel_to, stage_from, stage_to};
use super::status_from_store;
use crate::clean::gate_records::{self, RawGateRecord, MAX_BATCH};
use crate::clean::period::Period;
use crate::clean::ratio::{Amount, TargetCheck};
use crate::clean::reconcile::{MatchStatus, Reconciled};
use crate::clean::report::{self, RatioReport, ReportError};
use crate::clean::{
    Basis, CargoScope, CleanProfile, CleanTarget, Gate, GateDirection, NonRoadMode, NonRoadVolume,
    PassageSource, RatioKind, DEFAULT_MATCH_WINDOW_S, MAX_GATES, MAX_TARGETS,
};
use crate::geofence::{PassageDirection, ZoneKind, ZoneRegistry};
use crate::model::{city_of_county, now_ms, Enterprise, Fix, Jurisdiction};
use crate::proto::{self, clean_transport_server};
use crate::registry::Registry;
use crate::store::Store;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// What a caller wants to do with an enterprise's clean-transport data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Profile, passages, ratio.
    Read,
    /// Gates, gate records, non-road volumes: the enterprise's own operational data.
    Manage,
    /// Targets are set by the authority.
    SetTargets,
}

/// Whether a police jurisdiction covers an enterprise (by the enterprise's registered area).
fn covers(j: &Jurisdiction, e: &Enterprise) -> bool {
    match j {
        Jurisdiction::City(c) => e.city_code == *c || city_of_county(&e.city_code).as_deref() == Some(c),
        Jurisdiction::County(k) => e.city_code == *k,
    }
}

/// The one scoping decision of this service. `enterprise` is `None` when it does not exist: an
/// admin gets NOT_FOUND, a caller who could not see it anyway gets PERMISSION_DENIED.
pub fn authorize(
    caller: &Caller,
    id: &str,
    enterprise: Option<&Enterprise>,
    action: Action,
) -> Result<(), Status> {
    let denied = || Status::permission_denied(format!("no access to enterprise {id}"));
    let allowed = match (caller, action) {
        (Caller::Admin, _) => true,
        (Caller::Enterprise(own), Action::Read | Action::Manage) => own == id,
        (Caller::Police(j), Action::Read) => enterprise.is_some_and(|e| covers(j, e)),
        _ => false,
    };
    if !allowed {
        return Err(denied());
    }
    if enterprise.is_none() {
        return Err(Status::not_found(format!("enterprise {id} not found")));
    }
    Ok(())
}

/// Checks the caller's scope for `action` on enterprise `id`, then loads the enterprise and its
/// clean-transport profile (an empty profile when none was set). Shared with the HTTP API.
pub async fn scope_enterprise(
    store: &dyn Store,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<(Enterprise, CleanProfile), Status> {
    // Refuse before touching the store when the id alone decides (enterprise, terminal).
    if !matches!(caller, Caller::Admin | Caller::Police(_)) {
        authorize(caller, id, Some(&Enterprise::default()), action)?;
    }
    let e = store.enterprise(id).await.map_err(status_from_store)?;
    authorize(caller, id, e.as_ref(), action)?;
    let e = e.ok_or_else(|| Status::not_found(format!("enterprise {id} not found")))?;
    let profile = store.clean_profile(id).await.map_err(status_from_store)?;
    Ok((e, profile.unwrap_or_else(|| CleanProfile::new(id))))
}

pub struct CleanTransportService {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    zones: Arc<ZoneRegistry>,
    /// Serialises read-modify-write of profiles (gates and targets of one enterprise).
    profile_lock: tokio::sync::Mutex<()>,
}

impl CleanTransportService {
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>, zones: Arc<ZoneRegistry>) -> Self {
        CleanTransportService { store, registry, zones, profile_lock: tokio::sync::Mutex::new(()) }
    }

    /// Authenticates, checks scope and loads the enterprise and its profile.
    async fn scoped<T>(
        &self,
        req: &Request<T>,
        id: &str,
        action: Action,
    ) -> Result<(Enterprise, CleanProfile), Status> {
        let caller = Caller::from_request(req)?;
        scope_enterprise(&*self.store, &caller, id, action).await
    }

    fn profile_to_proto(&self, p: &CleanProfile) -> proto::CleanProfile {
        let zones = self.zones.load();
        let parks = zones
            .iter()
            .filter(
                |z| matches!(&z.kind, ZoneKind::Park { enterprise_id } if *enterprise_id == p.enterprise_id),
            )
            .map(|z| proto::Park { zone_id: z.id.clone(), name: z.name.clone() })
            .collect();
        proto::CleanProfile {
            enterprise_id: p.enterprise_id.clone(),
            targets: p.targets.iter().map(target_to_proto).collect(),
            gates: p.gates.iter().map(gate_to_proto).collect(),
            parks,
        }
    }
}

pub fn window_ms(s: u32) -> i64 {
    i64::from(if s == 0 { DEFAULT_MATCH_WINDOW_S } else { s.min(6 * 3600) }) * 1000
}

pub fn period(p: &str, from: i64, to: i64) -> Result<Period, Status> {
    Period::parse(p, from, to).map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn report_status(e: ReportError) -> Status {
    match e {
        ReportError::Store(e) => status_from_store(e),
        e @ ReportError::TooManyPassages(_) => Status::resource_exhausted(e.to_string()),
    }
}

fn kind_from(v: i32) -> Result<RatioKind, Status> {
    match proto::RatioKind::try_from(v) {
        Ok(proto::RatioKind::Clean) => Ok(RatioKind::Clean),
        Ok(proto::RatioKind::CleanOrChinaVi | proto::RatioKind::Unspecified) => Ok(RatioKind::CleanOrChinaVi),
        Err(_) => Err(Status::invalid_argument(format!("unknown ratio kind {v}"))),
    }
}

fn kind_to(k: RatioKind) -> i32 {
    match k {
        RatioKind::Clean => proto::RatioKind::Clean as i32,
        RatioKind::CleanOrChinaVi => proto::RatioKind::CleanOrChinaVi as i32,
    }
}

fn basis_from(v: i32) -> Result<Basis, Status> {
    match proto::RatioBasis::try_from(v) {
        Ok(proto::RatioBasis::Trips) => Ok(Basis::Trips),
        Ok(proto::RatioBasis::Tonnage | proto::RatioBasis::Unspecified) => Ok(Basis::Tonnage),
        Err(_) => Err(Status::invalid_argument(format!("unknown ratio basis {v}"))),
    }
}

fn basis_to(b: Basis) -> i32 {
    match b {
        Basis::Trips => proto::RatioBasis::Trips as i32,
        Basis::Tonnage => proto::RatioBasis::Tonnage as i32,
    }
}

fn scope_from(v: i32) -> Result<CargoScope, Status> {
    match proto::CargoScope::try_from(v) {
        Ok(proto::CargoScope::AllBulk | proto::CargoScope::Unspecified) => Ok(CargoScope::AllBulk),
        Ok(proto::CargoScope::Containers) => Ok(CargoScope::Containers),
        Ok(proto::CargoScope::OreAndCoal) => Ok(CargoScope::OreAndCoal),
        Err(_) => Err(Status::invalid_argument(format!("unknown cargo scope {v}"))),
    }
}

fn scope_to(s: CargoScope) -> i32 {
    match s {
        CargoScope::AllBulk => proto::CargoScope::AllBulk as i32,
        CargoScope::Containers => proto::CargoScope::Containers as i32,
        CargoScope::OreAndCoal => proto::CargoScope::OreAndCoal as i32,
    }
}

fn target_from(t: proto::CleanTarget) -> Result<CleanTarget, Status> {
    if !(t.fraction.is_finite() && (0.0..=1.0).contains(&t.fraction)) {
        return Err(Status::invalid_argument(format!("target fraction {} must be within 0..=1", t.fraction)));
    }
    if !(2000..=2100).contains(&t.year) {
        return Err(Status::invalid_argument(format!("target year {} out of range", t.year)));
    }
    Ok(CleanTarget {
        year: t.year,
        kind: kind_from(t.kind)?,
        basis: basis_from(t.basis)?,
        fraction: t.fraction,
        strict: t.strict,
        scope: scope_from(t.scope)?,
    })
}

fn target_to_proto(t: &CleanTarget) -> proto::CleanTarget {
    proto::CleanTarget {
        year: t.year,
        kind: kind_to(t.kind),
        basis: basis_to(t.basis),
        fraction: t.fraction,
        strict: t.strict,
        scope: scope_to(t.scope),
    }
}

fn gate_to_proto(g: &Gate) -> proto::Gate {
    proto::Gate {
        id: g.id.clone(),
        park_zone_id: g.park_zone_id.clone(),
        name: g.name.clone(),
        position: g.position.map(|f| proto::Position { longitude: f.lon, latitude: f.lat, valid: f.valid }),
        direction: match g.direction {
            GateDirection::In => proto::GateDirection::In,
            GateDirection::Out => proto::GateDirection::Out,
            GateDirection::Both => proto::GateDirection::Both,
        } as i32,
    }
}

fn direction_from(v: i32) -> Option<PassageDirection> {
    match proto::PassageDirection::try_from(v) {
        Ok(proto::PassageDirection::In) => Some(PassageDirection::In),
        Ok(proto::PassageDirection::Out) => Some(PassageDirection::Out),
        _ => None,
    }
}

fn direction_to(d: PassageDirection) -> i32 {
    match d {
        PassageDirection::In => proto::PassageDirection::In as i32,
        PassageDirection::Out => proto::PassageDirection::Out as i32,
    }
}

fn amount(a: &Amount) -> Option<proto::Amount> {
    Some(proto::Amount { trips: a.trips, tonnage: a.tonnage })
}

fn check_to_proto(c: &TargetCheck) -> proto::TargetCheck {
    proto::TargetCheck {
        target: Some(target_to_proto(&c.target)),
        actual: c.actual,
        met: c.met,
        gap: c.gap,
        statement: c.statement(),
    }
}

fn report_to_proto(r: &RatioReport) -> proto::RatioReport {
    let t = &r.tally;
    let mut by_mode: Vec<proto::ModeAmount> = NonRoadMode::ALL
        .iter()
        .map(|m| proto::ModeAmount {
            mode: m.label().into(),
            amount: amount(&t.non_road.get(m).copied().unwrap_or_default()),
        })
        .collect();
    for (mode, a) in [
        ("new_energy_truck", &t.new_energy),
        ("china_vi_truck", &t.china_vi),
        ("other_truck", &t.other_trucks),
    ] {
        by_mode.push(proto::ModeAmount { mode: mode.into(), amount: amount(a) });
    }
    proto::RatioReport {
        enterprise_id: r.enterprise_id.clone(),
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        period: r.period.clone(),
        year: r.year,
        clean_by_trips: r.ratios.clean_by_trips,
        clean_by_tonnage: r.ratios.clean_by_tonnage,
        clean_or_china_vi_by_trips: r.ratios.clean_or_china_vi_by_trips,
        clean_or_china_vi_by_tonnage: r.ratios.clean_or_china_vi_by_tonnage,
        total: Some(proto::Amount { trips: t.total(Basis::Trips), tonnage: t.total(Basis::Tonnage) }),
        by_mode,
        by_stage: t
            .by_stage
            .iter()
            .map(|(s, a)| proto::StageAmount { stage: s.clone(), amount: amount(a) })
            .collect(),
        targets: r.targets.iter().map(check_to_proto).collect(),
        shortfalls: r.shortfalls(),
        tonnage_unknown_trips: t.tonnage_unknown_trips,
        telemetry_only_trips: t.telemetry_only_trips,
        non_road_reports_without_trips: t.non_road_reports_without_trips,
        gate_records: r.passages.gate_records,
        telemetry_passages: r.passages.telemetry,
        matched: r.passages.matched,
        gate_only: r.passages.gate_only,
        stage_mismatches: r.passages.stage_mismatches,
    }
}

fn passage_to_proto(r: &Reconciled) -> proto::PassageView {
    let p = &r.passage;
    proto::PassageView {
        id: p.id.clone(),
        source: match p.source {
            PassageSource::Telemetry => "telemetry",
            PassageSource::GateSystem => "gate_system",
        }
        .into(),
        time_ms: p.time_ms,
        direction: direction_to(p.direction),
        vin: r.vin.map(|v| v.to_string()).unwrap_or_default(),
        plate: p.plate.clone(),
        zone_id: p.zone_id.clone(),
        gate_id: p.gate_id.clone(),
        status: match r.status {
            MatchStatus::Matched => proto::MatchStatus::Matched,
            MatchStatus::GateOnly => proto::MatchStatus::GateOnly,
            MatchStatus::TelemetryOnly => proto::MatchStatus::TelemetryOnly,
        } as i32,
        matched_with: r.matched_with.clone().unwrap_or_default(),
        flags: if r.stage_mismatch { vec!["stage_mismatch".into()] } else { Vec::new() },
        flag_detail: r.mismatch_detail.clone(),
        fuel: fuel_to(r.fuel),
        emission_stage: stage_to(r.stage),
        cargo: p.cargo.clone(),
        tonnage: p.tonnage,
    }
}

/// The wire form of a parsed CSV row (the CLI and the tests send CSV files this way).
pub fn gate_record_to_proto(r: &RawGateRecord) -> proto::GateRecord {
    proto::GateRecord {
        row: r.row,
        gate_id: r.gate_id.clone(),
        plate: r.plate.clone(),
        vin: r.vin.clone(),
        time_ms: r.time_ms,
        direction: r.direction.map_or(proto::PassageDirection::Unspecified as i32, direction_to),
        emission_stage: stage_to(r.emission_stage.unwrap_or_default()),
        fuel: fuel_to(r.fuel.unwrap_or_default()),
        cargo: r.cargo.clone(),
        tonnage: r.tonnage,
    }
}

fn check_id(what: &str, id: &str) -> Result<(), Status> {
    if id.trim().is_empty() || id.len() > 64 {
        return Err(Status::invalid_argument(format!("{what} must be 1-64 characters")));
    }
    Ok(())
}

#[tonic::async_trait]
impl clean_transport_server::CleanTransport for CleanTransportService {
    async fn set_targets(
        &self,
        req: Request<proto::SetTargetsRequest>,
    ) -> Result<Response<proto::CleanProfile>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let _guard = self.profile_lock.lock().await;
        let (_, mut profile) = self.scoped(&req, &id, Action::SetTargets).await?;
        let targets = req.into_inner().targets;
        if targets.len() > MAX_TARGETS {
            return Err(Status::invalid_argument(format!("at most {MAX_TARGETS} targets")));
        }
        profile.targets = targets.into_iter().map(target_from).collect::<Result<_, _>>()?;
        self.store.put_clean_profile(profile.clone()).await.map_err(status_from_store)?;
        Ok(Response::new(self.profile_to_proto(&profile)))
    }

    async fn upsert_gate(
        &self,
        req: Request<proto::UpsertGateRequest>,
    ) -> Result<Response<proto::CleanProfile>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let _guard = self.profile_lock.lock().await;
        let (_, mut profile) = self.scoped(&req, &id, Action::Manage).await?;
        let g = req.into_inner().gate.ok_or_else(|| Status::invalid_argument("gate is required"))?;
        check_id("gate id", &g.id)?;
        // The park must be one of this enterprise's park zones (as loaded now).
        let zones = self.zones.load();
        match zones.get(&g.park_zone_id).map(|z| &z.kind) {
            Some(ZoneKind::Park { enterprise_id }) if *enterprise_id == id => {}
            _ => {
                return Err(Status::invalid_argument(format!(
                "{:?} is not a park zone of enterprise {id} (import the park as a zone of kind park first)",
                g.park_zone_id
            )))
            }
        }
        let position = match g.position {
            Some(p) if (-180.0..=180.0).contains(&p.longitude) && (-90.0..=90.0).contains(&p.latitude) => {
                Some(Fix { lon: p.longitude, lat: p.latitude, valid: true })
            }
            Some(_) => return Err(Status::invalid_argument("gate position out of range")),
            None => None,
        };
        let direction = match proto::GateDirection::try_from(g.direction) {
            Ok(proto::GateDirection::In) => GateDirection::In,
            Ok(proto::GateDirection::Out) => GateDirection::Out,
            Ok(proto::GateDirection::Both | proto::GateDirection::Unspecified) => GateDirection::Both,
            Err(_) => return Err(Status::invalid_argument("unknown gate direction")),
        };
        let gate = Gate {
            id: g.id.trim().to_string(),
            park_zone_id: g.park_zone_id,
            name: g.name,
            position,
            direction,
        };
        profile.gates.retain(|x| x.id != gate.id);
        if profile.gates.len() >= MAX_GATES {
            return Err(Status::invalid_argument(format!("at most {MAX_GATES} gates per enterprise")));
        }
        profile.gates.push(gate);
        profile.gates.sort_by(|a, b| a.id.cmp(&b.id));
        self.store.put_clean_profile(profile.clone()).await.map_err(status_from_store)?;
        Ok(Response::new(self.profile_to_proto(&profile)))
    }

    async fn delete_gate(
        &self,
        req: Request<proto::DeleteGateRequest>,
    ) -> Result<Response<proto::CleanProfile>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let _guard = self.profile_lock.lock().await;
        let (_, mut profile) = self.scoped(&req, &id, Action::Manage).await?;
        let gate_id = req.into_inner().gate_id;
        let before = profile.gates.len();
        profile.gates.retain(|g| g.id != gate_id);
        if profile.gates.len() == before {
            return Err(Status::not_found(format!("gate {gate_id} not found")));
        }
        self.store.put_clean_profile(profile.clone()).await.map_err(status_from_store)?;
        Ok(Response::new(self.profile_to_proto(&profile)))
    }

    async fn get_profile(
        &self,
        req: Request<proto::GetCleanProfileRequest>,
    ) -> Result<Response<proto::CleanProfile>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let (_, profile) = self.scoped(&req, &id, Action::Read).await?;
        Ok(Response::new(self.profile_to_proto(&profile)))
    }

    async fn submit_gate_records(
        &self,
        req: Request<proto::SubmitGateRecordsRequest>,
    ) -> Result<Response<proto::SubmitGateRecordsResponse>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let (_, profile) = self.scoped(&req, &id, Action::Manage).await?;
        let records = req.into_inner().records;
        if records.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} records per call; split the file"
            )));
        }
        let now = now_ms();
        let resolve = |plate: &str| self.registry.by_plate(plate).and_then(|v| v.vin);
        let (mut ok, mut errors) = (Vec::new(), Vec::new());
        for (i, r) in records.into_iter().enumerate() {
            let row = if r.row == 0 { u32::try_from(i + 1).unwrap_or(u32::MAX) } else { r.row };
            let bad = |reason: String| proto::RowError { row, reason };
            let stage = match stage_from(r.emission_stage) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(bad(e.to_string()));
                    continue;
                }
            };
            let fuel = match fuel_from(r.fuel) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(bad(e.to_string()));
                    continue;
                }
            };
            let raw = RawGateRecord {
                row,
                gate_id: r.gate_id,
                plate: r.plate,
                vin: r.vin,
                time_ms: r.time_ms,
                direction: direction_from(r.direction),
                emission_stage: Some(stage),
                fuel: Some(fuel),
                cargo: r.cargo,
                tonnage: r.tonnage,
            };
            match gate_records::validate(raw, &profile, &resolve, now) {
                Ok(p) => ok.push(p),
                Err(e) => errors.push(proto::RowError { row: e.row, reason: e.reason }),
            }
        }
        let stored = u32::try_from(ok.len()).unwrap_or(u32::MAX);
        if !ok.is_empty() {
            self.store.put_gate_passages(ok).await.map_err(status_from_store)?;
        }
        Ok(Response::new(proto::SubmitGateRecordsResponse { stored, errors }))
    }

    async fn report_non_road_volume(
        &self,
        req: Request<proto::NonRoadVolume>,
    ) -> Result<Response<proto::NonRoadVolume>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        self.scoped(&req, &id, Action::Manage).await?;
        let v = req.into_inner();
        let mode = match proto::NonRoadMode::try_from(v.mode) {
            Ok(proto::NonRoadMode::Rail) => NonRoadMode::Rail,
            Ok(proto::NonRoadMode::Water) => NonRoadMode::Water,
            Ok(proto::NonRoadMode::Pipeline) => NonRoadMode::Pipeline,
            Ok(proto::NonRoadMode::Belt) => NonRoadMode::Belt,
            _ => return Err(Status::invalid_argument("mode must be rail, water, pipeline or belt")),
        };
        let vol = NonRoadVolume::new(&id, v.from_ms, v.to_ms, mode, v.tonnage, v.trips, &v.cargo)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.store.put_non_road_volume(vol.clone()).await.map_err(status_from_store)?;
        Ok(Response::new(proto::NonRoadVolume { id: vol.id, cargo: vol.cargo, ..v }))
    }

    async fn list_passages(
        &self,
        req: Request<proto::ListPassagesRequest>,
    ) -> Result<Response<proto::ListPassagesResponse>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        self.scoped(&req, &id, Action::Read).await?;
        let r = req.into_inner();
        let p = period(&r.period, r.from_ms, r.to_ms)?;
        let limit = match r.page_size {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let (mut out, mut truncated) = (Vec::new(), false);
        report::for_each_reconciled(
            &*self.store,
            &*self.registry,
            &id,
            p.from_ms,
            p.to_ms,
            window_ms(r.match_window_s),
            |x| {
                let problem = x.status != MatchStatus::Matched || x.stage_mismatch;
                if r.problems_only && !problem {
                    return;
                }
                if out.len() < limit {
                    out.push(passage_to_proto(&x));
                } else {
                    truncated = true;
                }
            },
        )
        .await
        .map_err(report_status)?;
        Ok(Response::new(proto::ListPassagesResponse { passages: out, truncated }))
    }

    async fn get_ratio(
        &self,
        req: Request<proto::GetRatioRequest>,
    ) -> Result<Response<proto::RatioReport>, Status> {
        let id = req.get_ref().enterprise_id.clone();
        let (_, profile) = self.scoped(&req, &id, Action::Read).await?;
        let r = req.into_inner();
        let p = period(&r.period, r.from_ms, r.to_ms)?;
        let report =
            report::ratio_report(&*self.store, &*self.registry, &profile, &p, window_ms(r.match_window_s))
                .await
                .map_err(report_status)?;
        Ok(Response::new(report_to_proto(&report)))
    }

    async fn rank_enterprises(
        &self,
        req: Request<proto::RankEnterprisesRequest>,
    ) -> Result<Response<proto::RankEnterprisesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let city = match &caller {
            Caller::Admin => r.city_code.clone(),
            Caller::Police(j) => {
                let own = j.city_code().unwrap_or_default();
                if !r.city_code.is_empty() && r.city_code != own {
                    return Err(Status::permission_denied(format!(
                        "ranking of city {} is not in your jurisdiction",
                        r.city_code
                    )));
                }
                own
            }
            _ => return Err(Status::permission_denied("ranking needs an admin or police token")),
        };
        let p = period(&r.period, r.from_ms, r.to_ms)?;
        let (kind, basis) = (kind_from(r.kind)?, basis_from(r.basis)?);
        let mut enterprises = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.enterprises(after.clone(), 1000).await.map_err(status_from_store)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let done = page.len() < 1000;
            enterprises.extend(page.into_iter().filter(|e| {
                let in_city = city.is_empty()
                    || e.city_code == city
                    || city_of_county(&e.city_code).as_deref() == Some(city.as_str());
                in_city && authorize(&caller, &e.id, Some(e), Action::Read).is_ok()
            }));
            if done {
                break;
            }
        }
        let ranked = report::rank(
            &*self.store,
            &*self.registry,
            enterprises,
            &p,
            kind,
            basis,
            window_ms(r.match_window_s),
        )
        .await
        .map_err(report_status)?;
        let enterprises = ranked
            .iter()
            .enumerate()
            .map(|(i, e)| proto::RankedEnterprise {
                rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
                enterprise: Some(enterprise_to_proto(&e.enterprise)),
                ratio: e.ratio,
                report: Some(report_to_proto(&e.report)),
            })
            .collect();
        Ok(Response::new(proto::RankEnterprisesResponse { enterprises }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(id: &str, city: &str) -> Enterprise {
        Enterprise { id: id.into(), city_code: city.into(), ..Default::default() }
    }

    #[test]
    fn scoping() {
        let e1 = ent("E1", "330200");
        let own = Caller::Enterprise("E1".into());
        let other = Caller::Enterprise("E2".into());
        assert!(authorize(&own, "E1", Some(&e1), Action::Read).is_ok());
        assert!(authorize(&own, "E1", Some(&e1), Action::Manage).is_ok());
        assert_eq!(
            authorize(&own, "E1", Some(&e1), Action::SetTargets).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            authorize(&other, "E1", Some(&e1), Action::Read).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            authorize(&other, "E9", None, Action::Read).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let ningbo = Caller::Police(Jurisdiction::City("330200".into()));
        let hangzhou = Caller::Police(Jurisdiction::City("330100".into()));
        assert!(authorize(&ningbo, "E1", Some(&e1), Action::Read).is_ok());
        assert!(authorize(&ningbo, "E1", Some(&ent("E1", "330206")), Action::Read).is_ok(), "county in city");
        assert_eq!(
            authorize(&hangzhou, "E1", Some(&e1), Action::Read).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            authorize(&ningbo, "E1", Some(&e1), Action::Manage).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(authorize(&Caller::Admin, "E1", Some(&e1), Action::SetTargets).is_ok());
        assert_eq!(
            authorize(&Caller::Admin, "E9", None, Action::Read).unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
}
