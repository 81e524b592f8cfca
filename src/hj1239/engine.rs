//! Engine data stream bodies: type 0x02 (diesel, DPF/SCR, 37 bytes) and type 0x03 (gas engine,
//! 30 bytes, first six fields as in 0x02).
//!
//! Structs hold the raw wire values so `encode(decode(x)) == x` byte for byte; accessors convert to
//! engineering units and return `None` for sentinels (0xFE/0xFF, 0xFFFE/0xFFFF,
//! 0xFFFFFFFE/0xFFFFFFFF: abnormal/invalid in the GB/T 32960 convention) and for values beyond the
//! field's range. A `None` is "absent": it must never trigger or clear a violation downstream.

use bytes::{BufMut, BytesMut};

use super::error::MessageError;
use super::reader::Reader;

/// Linear scaling of one field: `value = raw × resolution + offset`, valid for `raw ≤ max_raw`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldScale {
    /// Engineering units per bit.
    pub resolution: f64,
    /// Value at raw 0.
    pub offset: f64,
    /// Largest raw value inside the documented range.
    pub max_raw: u32,
}

impl FieldScale {
    /// Engineering value, or `None` when above the range.
    pub fn apply(&self, raw: u32) -> Option<f64> {
        // Rounded to 1e-9 so decimal resolutions give the decimal a person expects
        // (120_200_000 × 1e-6 = 120.2, not 120.19999999999999); every resolution is ≥ 1e-6.
        (raw <= self.max_raw).then(|| ((f64::from(raw) * self.resolution + self.offset) * 1e9).round() / 1e9)
    }
}

/// Sentinels: values at or above these are abnormal (…FE) or invalid (…FF) for every field width.
/// UNVERIFIED per field (GB/T 32960 convention, per the domain reference).
pub mod sentinel {
    /// 1-byte fields: 0xFE abnormal, 0xFF invalid.
    pub const U8_FIRST: u8 = 0xFE;
    /// 2-byte fields: 0xFFFE abnormal, 0xFFFF invalid.
    pub const U16_FIRST: u16 = 0xFFFE;
    /// 4-byte fields: 0xFFFFFFFE abnormal, 0xFFFFFFFF invalid.
    pub const U32_FIRST: u32 = 0xFFFF_FFFE;
}

/// The one table of resolutions, offsets and ranges of the engine data stream (hj1239.md, J1939).
///
/// Ranges follow J1939's valid raw range (0..=0xFA for 1 byte, 0..=0xFAFF for 2 bytes), which
/// reproduces every range in the reference except NOx: the reference's upper bound 3212.75 ppm is
/// not reachable by 0.05 ppm/bit − 200 in 2 bytes (J1939 SPN 3216/3226 give 3012.75 ppm =
/// raw 0xFAFF), so 0xFAFF is used there too.
pub mod scale {
    use super::FieldScale;

    const U8_MAX_VALID: u32 = 0xFA;
    const U16_MAX_VALID: u32 = 0xFAFF;

    /// 1: vehicle speed, 1/256 km/h, 0–250.996 km/h (SPN 84).
    pub const VEHICLE_SPEED: FieldScale =
        FieldScale { resolution: 1.0 / 256.0, offset: 0.0, max_raw: U16_MAX_VALID };
    /// 2: atmospheric pressure, 0.5 kPa, 0–125 kPa (SPN 108).
    pub const ATMOSPHERIC_PRESSURE: FieldScale =
        FieldScale { resolution: 0.5, offset: 0.0, max_raw: U8_MAX_VALID };
    /// 3: engine net output torque, 1 %, −125–125 % (SPN 513).
    pub const NET_TORQUE: FieldScale = FieldScale { resolution: 1.0, offset: -125.0, max_raw: U8_MAX_VALID };
    /// 4: friction torque, 1 %, −125–125 % (SPN 514).
    pub const FRICTION_TORQUE: FieldScale =
        FieldScale { resolution: 1.0, offset: -125.0, max_raw: U8_MAX_VALID };
    /// 5: engine speed, 0.125 rpm, 0–8031.875 rpm (SPN 190).
    pub const ENGINE_SPEED: FieldScale =
        FieldScale { resolution: 0.125, offset: 0.0, max_raw: U16_MAX_VALID };
    /// 6: engine fuel flow, 0.05 L/h, 0–3212.75 L/h (SPN 183).
    pub const FUEL_FLOW: FieldScale = FieldScale { resolution: 0.05, offset: 0.0, max_raw: U16_MAX_VALID };
    /// 7/8: SCR up/downstream NOx, 0.05 ppm, −200–3012.75 ppm (SPN 3216/3226; see module doc).
    pub const NOX: FieldScale = FieldScale { resolution: 0.05, offset: -200.0, max_raw: U16_MAX_VALID };
    /// 9: reagent remaining, 0.4 %, 0–100 % (SPN 1761).
    pub const REAGENT_LEVEL: FieldScale = FieldScale { resolution: 0.4, offset: 0.0, max_raw: U8_MAX_VALID };
    /// 10: intake air mass flow, 0.05 kg/h, 0–3212.75 kg/h (SPN 132).
    pub const INTAKE_AIR_FLOW: FieldScale =
        FieldScale { resolution: 0.05, offset: 0.0, max_raw: U16_MAX_VALID };
    /// 11/12: SCR inlet/outlet temperature, 0.03125 °C, −273–1734.97 °C (SPN 4360/4363).
    pub const SCR_TEMPERATURE: FieldScale =
        FieldScale { resolution: 0.031_25, offset: -273.0, max_raw: U16_MAX_VALID };
    /// 13: DPF differential pressure, 0.1 kPa, 0–6425.5 kPa (SPN 3251).
    pub const DPF_PRESSURE: FieldScale = FieldScale { resolution: 0.1, offset: 0.0, max_raw: U16_MAX_VALID };
    /// 14: coolant temperature, 1 °C, −40–210 °C (SPN 110).
    pub const COOLANT_TEMPERATURE: FieldScale =
        FieldScale { resolution: 1.0, offset: -40.0, max_raw: U8_MAX_VALID };
    /// 15: fuel tank level, 0.4 %, 0–100 % (SPN 96).
    pub const FUEL_LEVEL: FieldScale = FieldScale { resolution: 0.4, offset: 0.0, max_raw: U8_MAX_VALID };
    /// 17: longitude magnitude, 1e-6 degree, 0–180.
    pub const LONGITUDE: FieldScale = FieldScale { resolution: 1e-6, offset: 0.0, max_raw: 180_000_000 };
    /// 18: latitude magnitude, 1e-6 degree, 0–90.
    pub const LATITUDE: FieldScale = FieldScale { resolution: 1e-6, offset: 0.0, max_raw: 90_000_000 };
    /// 19: odometer, 0.1 km. The reference gives no range: only sentinels are excluded.
    pub const ODOMETER: FieldScale = FieldScale { resolution: 0.1, offset: 0.0, max_raw: 0xFFFF_FFFD };
}

pub(crate) fn u8_value(raw: u8, s: FieldScale) -> Option<f64> {
    (raw < sentinel::U8_FIRST).then_some(())?;
    s.apply(u32::from(raw))
}

pub(crate) fn u16_value(raw: u16, s: FieldScale) -> Option<f64> {
    (raw < sentinel::U16_FIRST).then_some(())?;
    s.apply(u32::from(raw))
}

pub(crate) fn u32_value(raw: u32, s: FieldScale) -> Option<f64> {
    (raw < sentinel::U32_FIRST).then_some(())?;
    s.apply(raw)
}

/// Positioning status byte (field 16). Bits: 0 = fix invalid, 1 = south, 2 = west.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PositionStatus(pub u8);

impl PositionStatus {
    /// Bit 0 clear: the terminal has a valid fix.
    pub fn fix_valid(self) -> bool {
        self.0 & 0x01 == 0
    }
    /// Bit 1 set: southern latitude.
    pub fn south(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// Bit 2 set: western longitude.
    pub fn west(self) -> bool {
        self.0 & 0x04 != 0
    }
}

/// A WGS-84 position in signed degrees (east and north positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Degrees, west negative.
    pub longitude: f64,
    /// Degrees, south negative.
    pub latitude: f64,
}

/// Signed longitude/latitude from a status byte and the two magnitudes (shared with machinery).
pub(crate) fn signed_coordinates(status: PositionStatus, lon: u32, lat: u32) -> (Option<f64>, Option<f64>) {
    let sign = |negative: bool| if negative { -1.0 } else { 1.0 };
    (
        u32_value(lon, scale::LONGITUDE).map(|v| v * sign(status.west())),
        u32_value(lat, scale::LATITUDE).map(|v| v * sign(status.south())),
    )
}

/// Position only when the fix is valid and both coordinates are in range (shared with machinery).
pub(crate) fn fixed_position(status: PositionStatus, lon: u32, lat: u32) -> Option<GeoPoint> {
    if !status.fix_valid() {
        return None;
    }
    match signed_coordinates(status, lon, lat) {
        (Some(longitude), Some(latitude)) => Some(GeoPoint { longitude, latitude }),
        _ => None,
    }
}

/// Diesel engine data stream (info type 0x02), raw wire values in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EngineData {
    /// 1: vehicle speed (raw, 1/256 km/h).
    pub vehicle_speed: u16,
    /// 2: atmospheric pressure (raw, 0.5 kPa).
    pub atmospheric_pressure: u8,
    /// 3: engine net output torque (raw, 1 % − 125).
    pub net_torque: u8,
    /// 4: friction torque (raw, 1 % − 125).
    pub friction_torque: u8,
    /// 5: engine speed (raw, 0.125 rpm).
    pub engine_speed: u16,
    /// 6: engine fuel flow (raw, 0.05 L/h).
    pub fuel_flow: u16,
    /// 7: SCR upstream NOx (raw, 0.05 ppm − 200).
    pub scr_upstream_nox: u16,
    /// 8: SCR downstream NOx (raw, 0.05 ppm − 200).
    pub scr_downstream_nox: u16,
    /// 9: reagent (urea/DEF) remaining (raw, 0.4 %).
    pub reagent_level: u8,
    /// 10: intake air mass flow (raw, 0.05 kg/h).
    pub intake_air_flow: u16,
    /// 11: SCR inlet temperature (raw, 0.03125 °C − 273).
    pub scr_inlet_temperature: u16,
    /// 12: SCR outlet temperature (raw, 0.03125 °C − 273).
    pub scr_outlet_temperature: u16,
    /// 13: DPF differential pressure (raw, 0.1 kPa).
    pub dpf_pressure_drop: u16,
    /// 14: engine coolant temperature (raw, 1 °C − 40).
    pub coolant_temperature: u8,
    /// 15: fuel tank level (raw, 0.4 %).
    pub fuel_level: u8,
    /// 16: positioning status.
    pub position_status: PositionStatus,
    /// 17: longitude magnitude (raw, 1e-6 degree).
    pub longitude: u32,
    /// 18: latitude magnitude (raw, 1e-6 degree).
    pub latitude: u32,
    /// 19: odometer (raw, 0.1 km).
    pub odometer: u32,
}

impl EngineData {
    /// Wire length of a type 0x02 body.
    pub const WIRE_LEN: usize = 37;

    /// Wire length of fields 1–15 (speed … fuel level), shared with the machinery stream.
    pub const COMMON_LEN: usize = 24;

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        // Check the whole body up front so a short body reports the body, not a field.
        let body = r.take(Self::WIRE_LEN, "diesel engine data (0x02)")?;
        let mut r = Reader::new(body);
        let common = Self::decode_common(&mut r)?;
        Ok(Self {
            position_status: PositionStatus(r.u8("positioning status")?),
            longitude: r.u32("longitude")?,
            latitude: r.u32("latitude")?,
            odometer: r.u32("odometer")?,
            ..common
        })
    }

    /// Fields 1–15; position and odometer are left invalid (fix-invalid status, sentinels).
    pub(crate) fn decode_common(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        Ok(Self {
            vehicle_speed: r.u16("vehicle speed")?,
            atmospheric_pressure: r.u8("atmospheric pressure")?,
            net_torque: r.u8("net torque")?,
            friction_torque: r.u8("friction torque")?,
            engine_speed: r.u16("engine speed")?,
            fuel_flow: r.u16("fuel flow")?,
            scr_upstream_nox: r.u16("SCR upstream NOx")?,
            scr_downstream_nox: r.u16("SCR downstream NOx")?,
            reagent_level: r.u8("reagent level")?,
            intake_air_flow: r.u16("intake air flow")?,
            scr_inlet_temperature: r.u16("SCR inlet temperature")?,
            scr_outlet_temperature: r.u16("SCR outlet temperature")?,
            dpf_pressure_drop: r.u16("DPF pressure drop")?,
            coolant_temperature: r.u8("coolant temperature")?,
            fuel_level: r.u8("fuel level")?,
            position_status: PositionStatus(0x01),
            longitude: u32::MAX,
            latitude: u32::MAX,
            odometer: u32::MAX,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        self.encode_common(out);
        out.put_u8(self.position_status.0);
        out.put_u32(self.longitude);
        out.put_u32(self.latitude);
        out.put_u32(self.odometer);
    }

    /// Fields 1–15 only.
    pub(crate) fn encode_common(&self, out: &mut BytesMut) {
        out.put_u16(self.vehicle_speed);
        out.put_u8(self.atmospheric_pressure);
        out.put_u8(self.net_torque);
        out.put_u8(self.friction_torque);
        out.put_u16(self.engine_speed);
        out.put_u16(self.fuel_flow);
        out.put_u16(self.scr_upstream_nox);
        out.put_u16(self.scr_downstream_nox);
        out.put_u8(self.reagent_level);
        out.put_u16(self.intake_air_flow);
        out.put_u16(self.scr_inlet_temperature);
        out.put_u16(self.scr_outlet_temperature);
        out.put_u16(self.dpf_pressure_drop);
        out.put_u8(self.coolant_temperature);
        out.put_u8(self.fuel_level);
    }

    /// Vehicle speed, km/h.
    pub fn vehicle_speed_kmh(&self) -> Option<f64> {
        u16_value(self.vehicle_speed, scale::VEHICLE_SPEED)
    }
    /// Atmospheric pressure, kPa.
    pub fn atmospheric_pressure_kpa(&self) -> Option<f64> {
        u8_value(self.atmospheric_pressure, scale::ATMOSPHERIC_PRESSURE)
    }
    /// Engine net output (actual) torque, % of reference torque.
    pub fn net_torque_percent(&self) -> Option<f64> {
        u8_value(self.net_torque, scale::NET_TORQUE)
    }
    /// Friction torque, %.
    pub fn friction_torque_percent(&self) -> Option<f64> {
        u8_value(self.friction_torque, scale::FRICTION_TORQUE)
    }
    /// Engine speed, rpm.
    pub fn engine_speed_rpm(&self) -> Option<f64> {
        u16_value(self.engine_speed, scale::ENGINE_SPEED)
    }
    /// Engine fuel flow, L/h.
    pub fn fuel_flow_lph(&self) -> Option<f64> {
        u16_value(self.fuel_flow, scale::FUEL_FLOW)
    }
    /// SCR upstream NOx, ppm.
    pub fn scr_upstream_nox_ppm(&self) -> Option<f64> {
        u16_value(self.scr_upstream_nox, scale::NOX)
    }
    /// SCR downstream (tailpipe) NOx, ppm.
    pub fn scr_downstream_nox_ppm(&self) -> Option<f64> {
        u16_value(self.scr_downstream_nox, scale::NOX)
    }
    /// Reagent (urea/DEF) remaining, %.
    pub fn reagent_level_percent(&self) -> Option<f64> {
        u8_value(self.reagent_level, scale::REAGENT_LEVEL)
    }
    /// Intake air mass flow, kg/h.
    pub fn intake_air_flow_kgph(&self) -> Option<f64> {
        u16_value(self.intake_air_flow, scale::INTAKE_AIR_FLOW)
    }
    /// SCR inlet temperature, °C.
    pub fn scr_inlet_temperature_c(&self) -> Option<f64> {
        u16_value(self.scr_inlet_temperature, scale::SCR_TEMPERATURE)
    }
    /// SCR outlet temperature, °C.
    pub fn scr_outlet_temperature_c(&self) -> Option<f64> {
        u16_value(self.scr_outlet_temperature, scale::SCR_TEMPERATURE)
    }
    /// DPF differential pressure, kPa.
    pub fn dpf_pressure_drop_kpa(&self) -> Option<f64> {
        u16_value(self.dpf_pressure_drop, scale::DPF_PRESSURE)
    }
    /// Engine coolant temperature, °C.
    pub fn coolant_temperature_c(&self) -> Option<f64> {
        u8_value(self.coolant_temperature, scale::COOLANT_TEMPERATURE)
    }
    /// Fuel tank level, %.
    pub fn fuel_level_percent(&self) -> Option<f64> {
        u8_value(self.fuel_level, scale::FUEL_LEVEL)
    }
    /// Longitude in signed degrees (west negative), as sent, whatever the fix flag says.
    pub fn longitude_deg(&self) -> Option<f64> {
        signed_coordinates(self.position_status, self.longitude, self.latitude).0
    }
    /// Latitude in signed degrees (south negative), as sent, whatever the fix flag says.
    pub fn latitude_deg(&self) -> Option<f64> {
        signed_coordinates(self.position_status, self.longitude, self.latitude).1
    }
    /// Position only if the fix is valid and both coordinates are usable: firmware keeps sending
    /// the last fix with the invalid bit set, which must not be taken as the current position.
    pub fn position(&self) -> Option<GeoPoint> {
        fixed_position(self.position_status, self.longitude, self.latitude)
    }
    /// Odometer, km.
    pub fn odometer_km(&self) -> Option<f64> {
        u32_value(self.odometer, scale::ODOMETER)
    }
}

/// Gas engine (three-way catalyst) stream (info type 0x03), 30 bytes.
/// The first six fields are laid out as in 0x02 (reference); the remaining 21 bytes are kept raw:
/// UNVERIFIED, the reference does not give their layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GasEngineData {
    /// Vehicle speed (raw, 1/256 km/h).
    pub vehicle_speed: u16,
    /// Atmospheric pressure (raw, 0.5 kPa).
    pub atmospheric_pressure: u8,
    /// Engine net output torque (raw, 1 % − 125).
    pub net_torque: u8,
    /// Friction torque (raw, 1 % − 125).
    pub friction_torque: u8,
    /// Engine speed (raw, 0.125 rpm).
    pub engine_speed: u16,
    /// Engine fuel flow (raw, 0.05 L/h).
    pub fuel_flow: u16,
    /// Bytes 10–30, undecoded (UNVERIFIED layout).
    pub rest: [u8; 21],
}

impl GasEngineData {
    /// Wire length of a type 0x03 body.
    pub const WIRE_LEN: usize = 30;

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        let body = r.take(Self::WIRE_LEN, "gas engine data (0x03)")?;
        let mut r = Reader::new(body);
        Ok(Self {
            vehicle_speed: r.u16("vehicle speed")?,
            atmospheric_pressure: r.u8("atmospheric pressure")?,
            net_torque: r.u8("net torque")?,
            friction_torque: r.u8("friction torque")?,
            engine_speed: r.u16("engine speed")?,
            fuel_flow: r.u16("fuel flow")?,
            rest: r.array("gas engine remainder")?,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.vehicle_speed);
        out.put_u8(self.atmospheric_pressure);
        out.put_u8(self.net_torque);
        out.put_u8(self.friction_torque);
        out.put_u16(self.engine_speed);
        out.put_u16(self.fuel_flow);
        out.put_slice(&self.rest);
    }

    /// Vehicle speed, km/h.
    pub fn vehicle_speed_kmh(&self) -> Option<f64> {
        u16_value(self.vehicle_speed, scale::VEHICLE_SPEED)
    }
    /// Atmospheric pressure, kPa.
    pub fn atmospheric_pressure_kpa(&self) -> Option<f64> {
        u8_value(self.atmospheric_pressure, scale::ATMOSPHERIC_PRESSURE)
    }
    /// Engine net output torque, %.
    pub fn net_torque_percent(&self) -> Option<f64> {
        u8_value(self.net_torque, scale::NET_TORQUE)
    }
    /// Friction torque, %.
    pub fn friction_torque_percent(&self) -> Option<f64> {
        u8_value(self.friction_torque, scale::FRICTION_TORQUE)
    }
    /// Engine speed, rpm.
    pub fn engine_speed_rpm(&self) -> Option<f64> {
        u16_value(self.engine_speed, scale::ENGINE_SPEED)
    }
    /// Engine fuel flow, L/h.
    pub fn fuel_flow_lph(&self) -> Option<f64> {
        u16_value(self.fuel_flow, scale::FUEL_FLOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn sentinels_and_range() {
        assert_eq!(u8_value(0xFE, scale::COOLANT_TEMPERATURE), None);
        assert_eq!(u8_value(0xFF, scale::COOLANT_TEMPERATURE), None);
        assert_eq!(u8_value(0xFB, scale::COOLANT_TEMPERATURE), None);
        assert!(close(u8_value(0xFA, scale::COOLANT_TEMPERATURE), 210.0));
        assert_eq!(u16_value(0xFFFE, scale::ENGINE_SPEED), None);
        assert_eq!(u16_value(0xFB00, scale::ENGINE_SPEED), None);
        assert!(close(u16_value(0xFAFF, scale::ENGINE_SPEED), 8031.875));
        assert!(close(u16_value(0, scale::NOX), -200.0));
        assert_eq!(u32_value(0xFFFF_FFFF, scale::ODOMETER), None);
        assert_eq!(u32_value(180_000_001, scale::LONGITUDE), None);
    }

    #[test]
    fn position_signs_and_fix() {
        let mut d = EngineData {
            position_status: PositionStatus(0b110),
            longitude: 116_397_128,
            latitude: 39_916_527,
            ..Default::default()
        };
        assert!(close(d.longitude_deg(), -116.397128));
        assert!(close(d.latitude_deg(), -39.916527));
        assert!(d.position().is_some());
        d.position_status = PositionStatus(0b001);
        assert!(d.position().is_none());
        assert!(close(d.longitude_deg(), 116.397128));
    }

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (1..=37).collect();
        let mut r = Reader::new(&bytes);
        let d = EngineData::decode(&mut r).unwrap();
        let mut out = BytesMut::new();
        d.encode(&mut out);
        assert_eq!(&out[..], &bytes[..]);
        let short = [0u8; 36];
        assert!(EngineData::decode(&mut Reader::new(&short)).is_err());
    }
}
