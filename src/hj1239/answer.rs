//! Platform answers (downlink). The platform replies with the same frame layout and the same
//! command code as the request (there is no response-flag byte).
//!
//! The reference defines only the time-calibration answer body (the platform time, 6 bytes). For
//! login and logout answers it is silent; this codec sends `time(6) + result(1)` with the result
//! codes below, borrowed from GB/T 32960 (same protocol family). UNVERIFIED: adjust
//! [`LOGIN_LOGOUT_ANSWER_HAS_RESULT`] and the result consts once the standard text or a terminal
//! vendor confirms the layout.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::MessageError;
use super::frame::{Encryption, Frame, Vin};
use super::message::command;
use super::reader::Reader;
use super::time::TerminalTime;

/// Result code for an accepted login/logout. UNVERIFIED (GB/T 32960 "success").
pub const ANSWER_RESULT_SUCCESS: u8 = 0x01;
/// Result code for a refused login (e.g. unregistered VIN). UNVERIFIED (GB/T 32960 "error").
pub const ANSWER_RESULT_FAILURE: u8 = 0x02;
/// Whether login/logout answers carry the result byte after the time. UNVERIFIED.
pub const LOGIN_LOGOUT_ANSWER_HAS_RESULT: bool = true;

/// A platform answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Answer to 0x01.
    Login {
        /// Platform time.
        time: TerminalTime,
        /// Result code ([`ANSWER_RESULT_SUCCESS`] / [`ANSWER_RESULT_FAILURE`]).
        result: u8,
    },
    /// Answer to 0x04.
    Logout {
        /// Platform time.
        time: TerminalTime,
        /// Result code.
        result: u8,
    },
    /// Answer to 0x02 / 0x03, sent once the report's records are durable, so a terminal that
    /// misses it keeps the data for reissue. UNVERIFIED: the reference does not say whether
    /// reports are answered; the body mirrors the login answer (report time + result), and
    /// the gateway can switch these answers off (`hj1239.answer_reports`).
    Report {
        /// 0x02 or 0x03.
        command: u8,
        /// The report's own time, echoed so the terminal can match the answer.
        time: TerminalTime,
        /// Result code.
        result: u8,
    },
    /// Answer to 0x05: the platform time the terminal sets its clock to.
    TimeCalibration {
        /// Platform time (Beijing local).
        time: TerminalTime,
    },
}

impl Answer {
    /// Login answer: accepted or refused.
    pub fn login(time: TerminalTime, accepted: bool) -> Self {
        let result = if accepted { ANSWER_RESULT_SUCCESS } else { ANSWER_RESULT_FAILURE };
        Answer::Login { time, result }
    }

    /// Logout answer (always accepted).
    pub fn logout(time: TerminalTime) -> Self {
        Answer::Logout { time, result: ANSWER_RESULT_SUCCESS }
    }

    /// Answer to a real-time (0x02) or reissue (0x03) report whose records are durable.
    pub fn report(command: u8, report_time: TerminalTime) -> Self {
        Answer::Report { command, time: report_time, result: ANSWER_RESULT_SUCCESS }
    }

    /// Time-calibration answer carrying the server time.
    pub fn time_calibration(server_time: TerminalTime) -> Self {
        Answer::TimeCalibration { time: server_time }
    }

    /// Command byte (same as the request's).
    pub fn command(&self) -> u8 {
        match self {
            Answer::Login { .. } => command::LOGIN,
            Answer::Logout { .. } => command::LOGOUT,
            Answer::TimeCalibration { .. } => command::TIME_CALIBRATION,
            Answer::Report { command, .. } => *command,
        }
    }

    /// The answer's data unit.
    pub fn encode_data(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(7);
        match self {
            Answer::Login { time, result }
            | Answer::Logout { time, result }
            | Answer::Report { time, result, .. } => {
                out.put_slice(&time.to_bytes());
                if LOGIN_LOGOUT_ANSWER_HAS_RESULT {
                    out.put_u8(*result);
                }
            }
            Answer::TimeCalibration { time } => out.put_slice(&time.to_bytes()),
        }
        out.freeze()
    }

    /// The answer frame for a terminal, unencrypted.
    pub fn to_frame(&self, vin: Vin, software_version: u8) -> Frame {
        Frame {
            marker: super::frame::StartMarker::Hash,
            command: self.command(),
            vin,
            software_version,
            encryption: Encryption::None,
            data: self.encode_data(),
        }
    }

    /// The answer to `request`, echoing its start marker, VIN and software version (a `~~`
    /// terminal is answered with `~~`).
    pub fn reply_to(&self, request: &Frame) -> Frame {
        Frame { marker: request.marker, ..self.to_frame(request.vin, request.software_version) }
    }

    /// Decodes an answer frame (terminal simulators and tests).
    pub fn decode(frame: &Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(&frame.data);
        let mut time_and_result = |what| -> Result<(TerminalTime, u8), MessageError> {
            let time = r.time(what)?;
            let result =
                if LOGIN_LOGOUT_ANSWER_HAS_RESULT { r.u8("answer result")? } else { ANSWER_RESULT_SUCCESS };
            Ok((time, result))
        };
        let answer = match frame.command {
            command::LOGIN => {
                let (time, result) = time_and_result("login answer time")?;
                Answer::Login { time, result }
            }
            command::LOGOUT => {
                let (time, result) = time_and_result("logout answer time")?;
                Answer::Logout { time, result }
            }
            c @ (command::REAL_TIME | command::REISSUE) => {
                let (time, result) = time_and_result("report answer time")?;
                Answer::Report { command: c, time, result }
            }
            command::TIME_CALIBRATION => Answer::TimeCalibration { time: r.time("calibration time")? },
            other => {
                return Err(MessageError::UnexpectedCommand { command: other, expected: "platform answer" })
            }
        };
        r.finish("platform answer")?;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = TerminalTime::from_bytes([25, 1, 2, 3, 4, 5]).unwrap();
        for a in
            [Answer::login(t, true), Answer::login(t, false), Answer::logout(t), Answer::time_calibration(t)]
        {
            let f = a.to_frame(Vin([b'V'; 17]), 3);
            assert_eq!(Answer::decode(&f), Ok(a));
        }
        assert_eq!(&Answer::time_calibration(t).encode_data()[..], &[25, 1, 2, 3, 4, 5]);
    }
}
