//! HJ 1239-2021 / GB 17691-2018 Annex Q terminal protocol codec (heavy-duty vehicle remote
//! emissions monitoring; HJ 1322 non-road machinery as an UNVERIFIED dialect).
//!
//! Pure library code: no sockets, no sessions. Two layers, kept apart:
//!
//! - **Frame layer** — [`FrameCodec`] finds frames in a TCP byte stream (sticky/split packets, junk,
//!   bad BCC, impossible lengths) and yields [`Decoded::Frame`] or [`Decoded::Dropped`]; only real
//!   I/O errors are `Err`, so one damaged frame never ends a `Framed` stream.
//! - **Message layer** — [`Message::decode`] turns an intact [`Frame`] into a typed message
//!   (login, real-time/reissue info reports in either [`BodyLayout`], logout, time calibration,
//!   platform-defined pass-through); [`Answer`] builds the platform's replies.
//!
//! What the gateway does:
//!
//! ```no_run
//! use futures::{SinkExt, StreamExt};
//! use smogwatch::hj1239::{Answer, BodyLayout, Decoded, Dialect, FrameCodec, Message, TerminalTime};
//! use tokio_util::codec::Framed;
//!
//! # async fn serve(socket: tokio::net::TcpStream) -> anyhow::Result<()> {
//! let mut framed = Framed::new(socket, FrameCodec::new());
//! while let Some(item) = framed.next().await {
//!     match item? {                                   // Err = socket I/O error only
//!         Decoded::Dropped(e) => tracing::warn!(kind = e.kind(), "{e}"),
//!         Decoded::Frame(frame) => {
//!             match Message::decode(&frame, BodyLayout::Gb17691, Dialect::Vehicle) {
//!                 Ok(Message::Login(login)) => {
//!                     let registered = true; // the gateway's registry check
//!                     let answer = Answer::login(TerminalTime::now()?, registered);
//!                     framed.send(answer.reply_to(&frame)).await?;
//!                 }
//!                 Ok(Message::TimeCalibration) => {
//!                     framed.send(Answer::time_calibration(TerminalTime::now()?).reply_to(&frame)).await?;
//!                 }
//!                 Ok(Message::RealTime(report)) => {
//!                     for (_collected_at, _body) in report.bodies() { /* pipeline */ }
//!                 }
//!                 Ok(_other) => {}
//!                 // ReservedCommand, UnknownInfoType, EncryptedFrameNoKey…: drop the frame, keep the link.
//!                 Err(e) => tracing::warn!(vin = %frame.vin, "{e}"),
//!             }
//!         }
//!     }
//! }
//! let _counters = framed.codec().stats();
//! # Ok(()) }
//! ```
//!
//! Values the reference marks UNVERIFIED live behind one const/table each, labelled UNVERIFIED:
//! the non-GB encryption mapping ([`ENCRYPTION_TABLE`]), sentinels ([`engine::sentinel`]), the
//! 0x80 body length ([`report::body_type`]), the gas-engine tail, the login/logout answer body
//! ([`answer`]), DTC byte orders ([`obd::Dtc`], [`obd::THREE_BYTE_DTC_PROTOCOLS`]), layout
//! detection order ([`DETECTION_ORDER`]), and the machinery details ([`machinery`]).

// Input comes from untrusted terminals: no unsafe, and no panicking shortcuts outside tests.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable
    )
)]

mod alarm;
pub mod answer;
mod codec;
pub mod crypto;
pub mod engine;
mod error;
mod frame;
mod fuzz;
pub mod machinery;
mod message;
pub mod obd;
mod reader;
pub mod report;
pub mod signature;
mod time;

pub use alarm::{Activation, TamperAlarm};
pub use answer::Answer;
pub use codec::{CodecEncodeError, CodecStats, Decoded, FrameCodec, FrameError, DEFAULT_MAX_DATA_LEN};
pub use crypto::{DecryptError, Decryptor, NoKeys};
pub use engine::{EngineData, GasEngineData, GeoPoint, PositionStatus};
pub use error::MessageError;
pub use frame::{bcc, Encryption, Frame, FrameEncodeError, StartMarker, Vin, ENCRYPTION_TABLE};
pub use fuzz::fuzz_harness;
pub use machinery::{
    EmissionDiagnostics, LampStatus, MachineryBody, MachineryRecord, MachineryReport, MachineryStream,
    PeriodStatistics,
};
pub use message::{command, Command, Dialect, LayoutChoice, Login, Logout, Message};
pub use obd::{Dtc, DtcReading, ObdInfo};
pub use report::{
    BodyLayout, GbRecord, GbReport, HjRecord, HjReport, InfoBody, InfoReport, SignedRecord, SignedReport,
    DETECTION_ORDER,
};
pub use signature::Sm2Signature;
pub use time::{decode_time_epoch_millis, decode_time_local, TerminalTime, TimeError};
