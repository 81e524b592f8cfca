//! Message layer: turns an intact [`Frame`] from the terminal into a typed [`Message`] and back.
//! Platform answers (downlink) are in `answer.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use super::alarm::{Activation, TamperAlarm};
use super::crypto::{plaintext, Decryptor, NoKeys};
use super::error::MessageError;
use super::frame::{Encryption, Frame, Vin, MAX_WIRE_DATA_LEN};
use super::machinery::MachineryReport;
use super::reader::Reader;
use super::report::{BodyLayout, InfoReport};
use super::time::TerminalTime;

/// Command codes (one table).
pub mod command {
    /// Vehicle login.
    pub const LOGIN: u8 = 0x01;
    /// Real-time information.
    pub const REAL_TIME: u8 = 0x02;
    /// Reissue (补发) information: buffered while offline; evaluated as late data, never live.
    pub const REISSUE: u8 = 0x03;
    /// Vehicle logout.
    pub const LOGOUT: u8 = 0x04;
    /// Terminal time calibration (trucks) / removal alarm (machinery; see `Dialect`).
    pub const TIME_CALIBRATION: u8 = 0x05;
    /// Truck tamper/removal alarm (field notes, multi).
    pub const TAMPER_ALARM: u8 = 0x06;
    /// Activation (备案) request to the national platform (field notes, multi); not answered here.
    pub const ACTIVATION: u8 = 0x07;
    /// First platform-defined code; 0x80..=0xFE are passed through.
    pub const PLATFORM_DEFINED_FIRST: u8 = 0x80;
    /// Last platform-defined code. 0xFF is not in the platform range and is treated as reserved.
    pub const PLATFORM_DEFINED_LAST: u8 = 0xFE;
}

/// Classification of a command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// 0x01.
    Login,
    /// 0x02.
    RealTime,
    /// 0x03.
    Reissue,
    /// 0x04.
    Logout,
    /// 0x05.
    TimeCalibration,
    /// 0x06.
    TamperAlarm,
    /// 0x07.
    Activation,
    /// 0x08–0x7F and 0xFF: reject the frame, keep the connection (0x08 is the national
    /// platform's activation answer, never a terminal's).
    Reserved(u8),
    /// 0x80–0xFE: pass through.
    PlatformDefined(u8),
}

impl Command {
    /// Classifies a command byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            command::LOGIN => Command::Login,
            command::REAL_TIME => Command::RealTime,
            command::REISSUE => Command::Reissue,
            command::LOGOUT => Command::Logout,
            command::TIME_CALIBRATION => Command::TimeCalibration,
            command::TAMPER_ALARM => Command::TamperAlarm,
            command::ACTIVATION => Command::Activation,
            command::PLATFORM_DEFINED_FIRST..=command::PLATFORM_DEFINED_LAST => Command::PlatformDefined(b),
            other => Command::Reserved(other),
        }
    }
}

/// Which family of terminals a listener serves. Resolves the command 0x05 conflict and selects the
/// real-time layout family; the body layout within the truck family is [`BodyLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// Heavy-duty vehicles (GB 17691 / HJ 1239): 0x05 is time calibration.
    #[default]
    Vehicle,
    /// Non-road machinery (HJ 1322): 0x02/0x03 in the machinery layout ([`MachineryReport`]),
    /// falling back to the truck layouts (machine terminals on truck firmware), and 0x05 is the
    /// removal (tamper) alarm.
    Machinery,
}

/// How a receiver picks the real-time/reissue body layout: one fixed layout (a listener
/// override, tests) or detection per frame, trying a preferred layout first (the one the terminal
/// used last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayoutChoice {
    /// Only this layout.
    Fixed(BodyLayout),
    /// Whichever layout fits ([`InfoReport::detect`]).
    Detect {
        /// Tried first.
        prefer: Option<BodyLayout>,
    },
}

impl From<BodyLayout> for LayoutChoice {
    fn from(l: BodyLayout) -> Self {
        LayoutChoice::Fixed(l)
    }
}

impl LayoutChoice {
    fn report(self, data: &[u8]) -> Result<InfoReport, MessageError> {
        match self {
            LayoutChoice::Fixed(l) => InfoReport::decode(data, l),
            LayoutChoice::Detect { prefer } => InfoReport::detect(data, prefer),
        }
    }

    /// Name for logs: the fixed layout, or `detect`.
    pub fn name(self) -> &'static str {
        match self {
            LayoutChoice::Fixed(l) => l.name(),
            LayoutChoice::Detect { .. } => "detect",
        }
    }
}

/// 0x01 vehicle login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Login {
    /// Login time.
    pub time: TerminalTime,
    /// Login serial (restarts at 1 each day).
    pub serial: u16,
    /// SIM card ICCID, 20 ASCII characters.
    pub iccid: [u8; 20],
    /// Bytes after the defined fields (empty for conforming terminals). Kept, not rejected, because
    /// a failed login would lock the terminal out; the gateway may log it.
    pub extra: Bytes,
}

impl Login {
    /// ICCID as text, if ASCII (NUL padding removed).
    pub fn iccid_str(&self) -> Option<&str> {
        let s = std::str::from_utf8(&self.iccid).ok().filter(|s| s.is_ascii())?;
        Some(s.trim_end_matches('\0'))
    }
}

/// 0x04 vehicle logout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Logout {
    /// Logout time.
    pub time: TerminalTime,
    /// Logout serial (the login serial of the session).
    pub serial: u16,
    /// Bytes after the defined fields (empty for conforming terminals).
    pub extra: Bytes,
}

/// A decoded uplink message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0x01.
    Login(Login),
    /// 0x02, truck layouts.
    RealTime(InfoReport),
    /// 0x03, truck layouts. Late data: never raise live alerts from it.
    Reissue(InfoReport),
    /// 0x04.
    Logout(Logout),
    /// 0x05 (Vehicle dialect): empty request for the platform time.
    TimeCalibration,
    /// 0x02 (Machinery dialect, UNVERIFIED layout).
    MachineryRealTime(MachineryReport),
    /// 0x03 (Machinery dialect, UNVERIFIED layout).
    MachineryReissue(MachineryReport),
    /// 0x05 (Machinery dialect): removal (tamper) alarm.
    RemovalAlarm(TamperAlarm),
    /// 0x06: truck tamper/removal alarm.
    TamperAlarm(TamperAlarm),
    /// 0x07: activation request (counted and logged, not answered).
    Activation(Activation),
    /// 0x80–0xFE: platform-defined, passed through raw.
    PlatformDefined {
        /// Command byte.
        command: u8,
        /// Data unit.
        data: Bytes,
    },
}

/// A machine's report in the machinery layout, or (some machine terminals run truck firmware)
/// in a truck layout.
enum MachineReport {
    Machinery(MachineryReport),
    Truck(InfoReport),
}

impl MachineReport {
    fn either(
        self,
        m: impl FnOnce(MachineryReport) -> Message,
        t: impl FnOnce(InfoReport) -> Message,
    ) -> Message {
        match self {
            MachineReport::Machinery(r) => m(r),
            MachineReport::Truck(r) => t(r),
        }
    }
}

/// The machinery layout first, then the truck layout choice; the error names both attempts.
fn machinery_or_truck(data: &[u8], layout: LayoutChoice) -> Result<MachineReport, MessageError> {
    let machinery_err = match MachineryReport::decode(data) {
        Ok(r) => return Ok(MachineReport::Machinery(r)),
        Err(e) => e,
    };
    layout.report(data).map(MachineReport::Truck).map_err(|truck_err| MessageError::NoLayoutFits {
        tried: format!("machinery: {machinery_err}; {}: {truck_err}", layout.name()),
    })
}

impl Message {
    /// Decodes an unencrypted frame. Encrypted frames fail with
    /// [`MessageError::EncryptedFrameNoKey`]; use [`Message::decode_with`] to supply keys.
    pub fn decode(
        frame: &Frame,
        layout: impl Into<LayoutChoice>,
        dialect: Dialect,
    ) -> Result<Self, MessageError> {
        Self::decode_with(frame, layout, dialect, &NoKeys)
    }

    /// Decodes a frame, decrypting its data unit through `decryptor` when it is encrypted.
    pub fn decode_with(
        frame: &Frame,
        layout: impl Into<LayoutChoice>,
        dialect: Dialect,
        decryptor: &dyn Decryptor,
    ) -> Result<Self, MessageError> {
        // Reserved commands are rejected before any decryption work.
        if let Command::Reserved(command) = Command::from_byte(frame.command) {
            return Err(MessageError::ReservedCommand { command });
        }
        let data = plaintext(frame, decryptor)?;
        Self::decode_data(frame.command, &data, layout, dialect)
    }

    /// Decodes a plaintext data unit for `command`.
    pub fn decode_data(
        command: u8,
        data: &Bytes,
        layout: impl Into<LayoutChoice>,
        dialect: Dialect,
    ) -> Result<Self, MessageError> {
        let layout = layout.into();
        match (Command::from_byte(command), dialect) {
            (Command::Login, _) => {
                let mut r = Reader::new(data);
                let time = r.time("login time")?;
                let serial = r.u16("login serial")?;
                let iccid = r.array("ICCID")?;
                let extra = data.slice(r.offset()..);
                Ok(Message::Login(Login { time, serial, iccid, extra }))
            }
            (Command::Logout, _) => {
                let mut r = Reader::new(data);
                let time = r.time("logout time")?;
                let serial = r.u16("logout serial")?;
                let extra = data.slice(r.offset()..);
                Ok(Message::Logout(Logout { time, serial, extra }))
            }
            (Command::RealTime, Dialect::Vehicle) => layout.report(data).map(Message::RealTime),
            (Command::Reissue, Dialect::Vehicle) => layout.report(data).map(Message::Reissue),
            (Command::RealTime, Dialect::Machinery) => machinery_or_truck(data, layout)
                .map(|r| r.either(Message::MachineryRealTime, Message::RealTime)),
            (Command::Reissue, Dialect::Machinery) => machinery_or_truck(data, layout)
                .map(|r| r.either(Message::MachineryReissue, Message::Reissue)),
            (Command::TimeCalibration, Dialect::Vehicle) => {
                Reader::new(data).finish("time calibration request")?;
                Ok(Message::TimeCalibration)
            }
            (Command::TimeCalibration, Dialect::Machinery) => {
                TamperAlarm::decode(data).map(Message::RemovalAlarm)
            }
            (Command::TamperAlarm, _) => TamperAlarm::decode(data).map(Message::TamperAlarm),
            (Command::Activation, _) => Activation::decode(data).map(Message::Activation),
            (Command::PlatformDefined(command), _) => {
                Ok(Message::PlatformDefined { command, data: data.clone() })
            }
            (Command::Reserved(command), _) => Err(MessageError::ReservedCommand { command }),
        }
    }

    /// The command byte this message travels under.
    pub fn command(&self) -> u8 {
        match self {
            Message::Login(_) => command::LOGIN,
            Message::RealTime(_) | Message::MachineryRealTime(_) => command::REAL_TIME,
            Message::Reissue(_) | Message::MachineryReissue(_) => command::REISSUE,
            Message::Logout(_) => command::LOGOUT,
            Message::TimeCalibration | Message::RemovalAlarm(_) => command::TIME_CALIBRATION,
            Message::TamperAlarm(_) => command::TAMPER_ALARM,
            Message::Activation(_) => command::ACTIVATION,
            Message::PlatformDefined { command, .. } => *command,
        }
    }

    /// Encodes the data unit.
    pub fn encode_data(&self) -> Result<Bytes, MessageError> {
        let mut out = BytesMut::new();
        match self {
            Message::Login(l) => {
                out.put_slice(&l.time.to_bytes());
                out.put_u16(l.serial);
                out.put_slice(&l.iccid);
                out.put_slice(&l.extra);
            }
            Message::Logout(l) => {
                out.put_slice(&l.time.to_bytes());
                out.put_u16(l.serial);
                out.put_slice(&l.extra);
            }
            Message::RealTime(r) | Message::Reissue(r) => r.encode(&mut out)?,
            Message::MachineryRealTime(m) | Message::MachineryReissue(m) => m.encode(&mut out),
            Message::TimeCalibration => {}
            Message::RemovalAlarm(a) | Message::TamperAlarm(a) => a.encode(&mut out),
            Message::Activation(a) => a.encode(&mut out),
            Message::PlatformDefined { data: d, .. } => out.put_slice(d),
        }
        if out.len() > MAX_WIRE_DATA_LEN {
            return Err(MessageError::DataTooLong { len: out.len() });
        }
        Ok(out.freeze())
    }

    /// A complete unencrypted frame carrying this message (terminal simulators, tests).
    pub fn to_frame(&self, vin: Vin, software_version: u8) -> Result<Frame, MessageError> {
        Ok(Frame {
            marker: super::frame::StartMarker::Hash,
            command: self.command(),
            vin,
            software_version,
            encryption: Encryption::None,
            data: self.encode_data()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(command: u8, data: &[u8]) -> Frame {
        Frame {
            marker: crate::hj1239::StartMarker::Hash,
            command,
            vin: Vin([b'A'; 17]),
            software_version: 1,
            encryption: Encryption::None,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn classification() {
        assert_eq!(Command::from_byte(0x06), Command::TamperAlarm);
        assert_eq!(Command::from_byte(0x07), Command::Activation);
        assert_eq!(Command::from_byte(0x08), Command::Reserved(0x08));
        assert_eq!(Command::from_byte(0x7F), Command::Reserved(0x7F));
        assert_eq!(Command::from_byte(0x80), Command::PlatformDefined(0x80));
        assert_eq!(Command::from_byte(0xFE), Command::PlatformDefined(0xFE));
        assert_eq!(Command::from_byte(0xFF), Command::Reserved(0xFF));
    }

    #[test]
    fn reserved_and_encrypted_are_typed_errors() {
        let f = frame(0x10, &[]);
        assert_eq!(
            Message::decode(&f, BodyLayout::Gb17691, Dialect::Vehicle),
            Err(MessageError::ReservedCommand { command: 0x10 })
        );
        let mut f = frame(0x05, &[]);
        f.encryption = Encryption::Sm2;
        assert_eq!(
            Message::decode(&f, BodyLayout::Gb17691, Dialect::Vehicle),
            Err(MessageError::EncryptedFrameNoKey { scheme: Encryption::Sm2 })
        );
        f.encryption = Encryption::Abnormal;
        assert!(matches!(
            Message::decode(&f, BodyLayout::Gb17691, Dialect::Vehicle),
            Err(MessageError::UnsupportedEncryption { .. })
        ));
    }

    #[test]
    fn dialect_resolves_0x05() {
        let f = frame(0x05, &[0x01]);
        assert!(matches!(
            Message::decode(&f, BodyLayout::Gb17691, Dialect::Vehicle),
            Err(MessageError::TrailingBytes { .. })
        ));
        assert!(matches!(
            Message::decode(&f, BodyLayout::Gb17691, Dialect::Machinery),
            Err(MessageError::Truncated { .. })
        ));
        let mut alarm = vec![0x18, 0x07, 0x01, 0x08, 0x00, 0x00, 0x00, 0x03, 0x01];
        alarm.extend(117_200_000u32.to_be_bytes());
        alarm.extend(31_300_000u32.to_be_bytes());
        let f = frame(0x05, &alarm);
        let Ok(Message::RemovalAlarm(a)) = Message::decode(&f, BodyLayout::Gb17691, Dialect::Machinery)
        else {
            panic!("removal alarm")
        };
        assert_eq!(a.serial, 3);
        assert!(a.position().is_none(), "status bit0 set: fix invalid");
    }

    #[test]
    fn machine_on_truck_firmware_falls_back_to_the_truck_layouts() {
        // HJ truck layout: send time + serial, one hybrid body with its collection time.
        let mut data = vec![0x18, 0x03, 0x0F, 0x08, 0x1E, 0x0A, 0x00, 0x01, 0x04];
        data.extend([0x18, 0x03, 0x0F, 0x08, 0x1E, 0x09]);
        data.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        let f = frame(0x02, &data);
        let m = Message::decode(&f, LayoutChoice::Detect { prefer: None }, Dialect::Machinery).unwrap();
        assert!(matches!(m, Message::RealTime(InfoReport::Hj1239(_))));
        let e =
            Message::decode(&frame(0x02, &data[..12]), BodyLayout::Hj1239, Dialect::Machinery).unwrap_err();
        assert!(e.to_string().contains("machinery: ") && e.to_string().contains("hj1239: "), "{e}");
    }

    #[test]
    fn login_bad_time() {
        let mut data = vec![20, 13, 1, 0, 0, 0, 0, 1];
        data.extend([b'8'; 20]);
        assert!(matches!(
            Message::decode(&frame(0x01, &data), BodyLayout::Gb17691, Dialect::Vehicle),
            Err(MessageError::InvalidTime { .. })
        ));
    }
}
