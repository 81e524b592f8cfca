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
