//! The single place where an encrypted data unit is turned into plaintext. The codec has no keys:
//! the gateway passes a [`Decryptor`] backed by its terminal key store. Without one (or without a
//! key for that terminal) an encrypted frame is rejected with
//! [`MessageError::EncryptedFrameNoKey`], as the reference requires.

use bytes::Bytes;

use super::error::MessageError;
use super::frame::{Encryption, Frame, Vin};

/// Decryption failure reported by a [`Decryptor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecryptError(pub String);

/// Decrypts data units of one terminal. Implemented by the gateway's key store.
pub trait Decryptor {
    /// Plaintext of `ciphertext`, `Ok(None)` when no key is configured for `vin` and `scheme`.
    fn decrypt(
        &self,
        vin: &Vin,
        scheme: Encryption,
        ciphertext: &[u8],
    ) -> Result<Option<Bytes>, DecryptError>;
}

/// A key store with no keys: every encrypted frame is rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl Decryptor for NoKeys {
    fn decrypt(&self, _: &Vin, _: Encryption, _: &[u8]) -> Result<Option<Bytes>, DecryptError> {
        Ok(None)
    }
}

/// The frame's data unit in clear.
pub(crate) fn plaintext(frame: &Frame, decryptor: &dyn Decryptor) -> Result<Bytes, MessageError> {
    match frame.encryption {
        Encryption::None => Ok(frame.data.clone()),
        scheme @ (Encryption::Rsa | Encryption::Sm2) => decryptor
            .decrypt(&frame.vin, scheme, &frame.data)
            .map_err(|e| MessageError::Decryption(e.0))?
            .ok_or(MessageError::EncryptedFrameNoKey { scheme }),
        scheme => Err(MessageError::UnsupportedEncryption { scheme }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hj1239::{BodyLayout, Dialect, Message};

    /// Test key store: "decrypts" SM2 frames of one VIN by XOR with 0x5A.
    struct XorKeys(Vin);

    impl Decryptor for XorKeys {
        fn decrypt(&self, vin: &Vin, scheme: Encryption, c: &[u8]) -> Result<Option<Bytes>, DecryptError> {
            if *vin != self.0 || scheme != Encryption::Sm2 {
                return Ok(None);
            }
            Ok(Some(c.iter().map(|b| b ^ 0x5A).collect()))
        }
    }

    #[test]
    fn decrypts_with_configured_key_only() {
        let vin = Vin([b'K'; 17]);
        let plain = [0x18u8, 3, 15, 8, 30, 0, 0x00, 0x01];
        let frame = Frame {
            marker: crate::hj1239::StartMarker::Hash,
            command: 0x04,
            vin,
            software_version: 1,
            encryption: Encryption::Sm2,
            data: plain.iter().map(|b| b ^ 0x5A).collect(),
        };
        let m = Message::decode_with(&frame, BodyLayout::Gb17691, Dialect::Vehicle, &XorKeys(vin)).unwrap();
        assert!(matches!(m, Message::Logout(l) if l.serial == 1));
        let other = XorKeys(Vin([b'Z'; 17]));
        assert_eq!(
            Message::decode_with(&frame, BodyLayout::Gb17691, Dialect::Vehicle, &other),
            Err(MessageError::EncryptedFrameNoKey { scheme: Encryption::Sm2 })
        );
    }
}
