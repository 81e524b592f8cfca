//! Domain model: the validated types every other module speaks. Input from the network is turned
//! into these types at the edge (gRPC conversion, HJ 1239 gateway); past that point a `Vin` is a
//! valid VIN and a `Fix` has coordinates in range.
mod access;
mod record;
mod review;
mod roadside;
mod time;
mod vehicle;
mod vin;
mod violation;

pub use access::{city_of_county, violation_city, ApiToken, AreaCodeError, Jurisdiction, Role, TOKEN_PREFIX};
pub use record::{
    EngineData, EngineStreamKind, Fix, MilStatus, ObdInfo, ObdProtocol, RecordError, TelemetryRecord,
    OBD_CALIBRATION_ID_MAX, OBD_CVN_MAX, OBD_ECU_VIN_MAX, OBD_FAULT_CODES_MAX, OBD_IUPR_MAX,
};
pub use review::{AuditAction, AuditEntry, ReviewDecision, ReviewState, ViolationReview};
pub use roadside::{
    normalize_plate, RoadsideError, RoadsideRecord, RoadsideSource, MAX_DEVICE_ID_CHARS, MAX_K_PER_M,
    MAX_PLATE_CHARS, MAX_RINGELMANN,
};
pub use time::{
    beijing_day, beijing_offset, format_ms, now_ms, validate_time, TimeBounds, TimeError, TimestampMs,
    MAX_FUTURE_MS, MIN_VALID_MS,
};
pub use vehicle::{EmissionStage, Enterprise, Fuel, PlateColour, Vehicle, VehicleKind};
pub use vin::{Vin, VinError};
pub use violation::{Measured, Violation, ViolationId, ViolationStatus};
