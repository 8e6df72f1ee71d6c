//! Encryption at rest of the API and app keys: AES-256-GCM with a random 96-bit nonce per value
//! and the bucket name as associated data, so a sealed value cannot be moved to another row.
//! Without a key, values are stored with a `plain:` marker, so a store written before
//! encryption was turned on stays readable and is re-sealed on the next update.
//!
//! Key rotation: a sealer holds the current key (the only one it seals with) and any previous
//! keys, tried in order when the current one does not open a value. AES-GCM authenticates, so a
//! wrong key is a clean failure, never garbage. `subscriptions rekey` re-seals every row with
//! the current key, after which the previous keys can be dropped.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

const SEALED: &str = "v1:";
const PLAIN: &str = "plain:";
const NONCE_BYTES: usize = 12;

/// Seals and opens key values; holds the data key, if any.
#[derive(Clone)]
pub struct Sealer {
    cipher: Option<Aes256Gcm>,
    /// Keys that still open values sealed before a rotation; never used to seal.
    previous: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("encrypting", &self.cipher.is_some())
            .field("previous_keys", &self.previous.len())
            .finish()
    }
}

/// Why a value could not be opened, or a key not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("subscriptions.encryption_key must be 32 bytes in base64 (make one with `openssl rand -base64 32`)")]
    BadKey,
    #[error("the value is encrypted but subscriptions.encryption_key is not set")]
    NoKey,
    #[error("the value does not decrypt with subscriptions.encryption_key (wrong key or altered)")]
    Undecryptable,
    #[error("the value has no known encoding")]
    Unknown,
}

impl Sealer {
    /// A sealer that stores values in clear (marked, so they can be told apart).
    #[must_use]
    pub fn plain() -> Self {
        Self {
            cipher: None,
            previous: Vec::new(),
        }
    }

    /// A sealer from a base64 32-byte key.
    ///
    /// # Errors
    /// [`SealError::BadKey`] when the text is not base64 of exactly 32 bytes.
    pub fn from_base64(key: &SecretString) -> Result<Self, SealError> {
        Ok(Self {
            cipher: Some(cipher(key)?),
            previous: Vec::new(),
        })
    }

    /// This sealer, also opening values sealed with any of `previous` (base64 32-byte keys).
    ///
    /// # Errors
    /// [`SealError::BadKey`] naming the position of a key that is not base64 of 32 bytes.
    pub fn with_previous(mut self, previous: &[SecretString]) -> Result<Self, SealError> {
        for key in previous {
            self.previous.push(cipher(key)?);
        }
        Ok(self)
    }

    /// Whether values are encrypted.
    #[must_use]
    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// Seals `value` for the row of `bucket`.
    #[must_use]
    pub fn seal(&self, bucket: &str, value: &SecretString) -> String {
        let Some(cipher) = &self.cipher else {
            return format!("{PLAIN}{}", value.expose_secret());
        };
        let nonce = Nonce::generate();
        let payload = Payload {
            msg: value.expose_secret().as_bytes(),
            aad: bucket.as_bytes(),
        };
        // Encryption only fails for inputs over 64 GiB.
        let sealed = cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut raw = Vec::with_capacity(NONCE_BYTES + sealed.len());
        raw.extend_from_slice(nonce.as_slice());
        raw.extend_from_slice(&sealed);
        format!("{SEALED}{}", STANDARD.encode(raw))
    }

    /// Opens a value sealed for the row of `bucket`.
    ///
    /// # Errors
    /// [`SealError`] when the value is encrypted and there is no key, the key is wrong, or the
    /// value was altered or moved from another row.
    pub fn open(&self, bucket: &str, stored: &str) -> Result<SecretString, SealError> {
        if let Some(clear) = stored.strip_prefix(PLAIN) {
            return Ok(SecretString::from(clear));
        }
        let Some(encoded) = stored.strip_prefix(SEALED) else {
            return Err(SealError::Unknown);
        };
        if self.cipher.is_none() && self.previous.is_empty() {
            return Err(SealError::NoKey);
        }
        let raw = STANDARD
            .decode(encoded)
            .map_err(|_| SealError::Undecryptable)?;
        if raw.len() < NONCE_BYTES {
            return Err(SealError::Undecryptable);
        }
        let (nonce, sealed) = raw.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Undecryptable)?;
        let clear = self
            .cipher
            .iter()
            .chain(&self.previous)
            .find_map(|cipher| {
                let payload = Payload {
                    msg: sealed,
                    aad: bucket.as_bytes(),
                };
                cipher.decrypt(&nonce, payload).ok()
            })
            .ok_or(SealError::Undecryptable)?;
        String::from_utf8(clear)
            .map(SecretString::from)
            .map_err(|_| SealError::Undecryptable)
    }
}

fn cipher(key: &SecretString) -> Result<Aes256Gcm, SealError> {
    let bytes = STANDARD
        .decode(key.expose_secret().trim())
        .map_err(|_| SealError::BadKey)?;
    Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn sealer() -> Sealer {
        Sealer::from_base64(&SecretString::from(KEY)).expect("good key")
    }

    #[test]
    fn a_sealed_value_opens_to_the_same_text_and_hides_it() {
        let s = sealer();
        let sealed = s.seal("bucket-a", &SecretString::from("bp-api-key-1234"));
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.contains("bp-api-key"));
        let opened = s.open("bucket-a", &sealed).expect("opens");
        assert_eq!(opened.expose_secret(), "bp-api-key-1234");
    }

    #[test]
    fn sealing_twice_gives_different_text() {
        let s = sealer();
        let v = SecretString::from("same");
        assert_ne!(s.seal("b", &v), s.seal("b", &v));
    }

    #[test]
    fn a_value_moved_to_another_bucket_does_not_open() {
        let s = sealer();
        let sealed = s.seal("bucket-a", &SecretString::from("k"));
        assert_eq!(
            s.open("bucket-b", &sealed).err(),
            Some(SealError::Undecryptable)
        );
    }

    #[test]
    fn a_wrong_key_or_no_key_cannot_open_a_sealed_value() {
        let sealed = sealer().seal("b", &SecretString::from("k"));
        let other = Sealer::from_base64(&SecretString::from(
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
        ))
        .expect("key");
        assert_eq!(
            other.open("b", &sealed).err(),
            Some(SealError::Undecryptable)
        );
        assert_eq!(
            Sealer::plain().open("b", &sealed).err(),
            Some(SealError::NoKey)
        );
    }

    #[test]
    fn plain_values_open_with_or_without_a_key() {
        let stored = Sealer::plain().seal("b", &SecretString::from("k"));
        assert_eq!(stored, "plain:k");
        assert_eq!(
            sealer().open("b", &stored).expect("opens").expose_secret(),
            "k"
        );
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused() {
        for bad in ["", "not base64!", "MDEyMzQ1Njc4OWFiY2RlZg=="] {
            assert_eq!(
                Sealer::from_base64(&SecretString::from(bad)).err(),
                Some(SealError::BadKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        assert_eq!(
            format!("{:?}", sealer()),
            "Sealer { encrypting: true, previous_keys: 0 }"
        );
    }

    const NEXT: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

    #[test]
    fn after_a_rotation_values_of_the_previous_key_still_open_and_new_ones_use_the_new_key() {
        let old = sealer().seal("b", &SecretString::from("old-value"));
        let rotated = Sealer::from_base64(&SecretString::from(NEXT))
            .and_then(|s| s.with_previous(&[SecretString::from(KEY)]))
            .expect("keys");
        assert_eq!(
            rotated.open("b", &old).expect("opens").expose_secret(),
            "old-value"
        );
        let new = rotated.seal("b", &SecretString::from("new-value"));
        // Sealed with the current key only: the previous key alone cannot open it.
        assert_eq!(
            sealer().open("b", &new).err(),
            Some(SealError::Undecryptable)
        );
        let only_new = Sealer::from_base64(&SecretString::from(NEXT)).expect("key");
        assert_eq!(
            only_new.open("b", &new).expect("opens").expose_secret(),
            "new-value"
        );
        assert_eq!(
            only_new.open("b", &old).err(),
            Some(SealError::Undecryptable)
        );
    }

    #[test]
    fn a_bad_previous_key_is_refused() {
        assert_eq!(
            sealer().with_previous(&[SecretString::from("short")]).err(),
            Some(SealError::BadKey)
        );
    }
}
