//! Sealed postcard bodies: a message only its recipient can read.
//!
//! A postcard's body is sealed to its recipient's key with libsodium's *sealed box*
//! (`crypto_box_seal`, from RustCrypto's `crypto_box`): an ephemeral X25519 key, Diffie–Hellman
//! with the recipient's X25519 key, XSalsa20-Poly1305. The recipient's X25519 keys are the
//! birational images of its ed25519 keys (the public key's Montgomery form; the secret
//! scalar of its signing key), as libsodium's `crypto_sign_ed25519_*_to_curve25519` convert
//! them, so one identity serves for signing and for receiving. A sealed box does not say who
//! sealed it; the postcard's envelope, signed by its author, does.
//!
//! Sealing draws its ephemeral key from a 32-byte seed the caller draws from its own RNG (the
//! engine's injected one), expanded by ChaCha20: the engine stays deterministic under a seed.

use crypto_box::{PublicKey, SecretKey};
use ed25519_dalek::VerifyingKey;
use rand_chacha_06::ChaCha20Rng;
use rand_chacha_06::rand_core::SeedableRng;

use crate::keys::{AuthorKey, Identity};
use crate::limits::SEAL_OVERHEAD_BYTES;

/// Why a body could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient's key is not a valid ed25519 public key.
    #[error("not a valid recipient key")]
    BadKey,
    /// The sealed body is shorter than a sealed box can be.
    #[error("sealed body too short")]
    TooShort,
    /// The body was not sealed to this identity, or was altered.
    #[error("cannot open the sealed body")]
    Open,
}

/// The X25519 public key of an ed25519 key.
fn x25519_public(to: &AuthorKey) -> Result<PublicKey, SealError> {
    let key = VerifyingKey::from_bytes(&to.0).map_err(|_| SealError::BadKey)?;
    Ok(PublicKey::from_bytes(key.to_montgomery().to_bytes()))
}

/// Seals `message` to `to`; `seed` (32 random bytes from the caller's RNG) makes the
/// ephemeral key.
pub fn seal(to: &AuthorKey, message: &[u8], seed: [u8; 32]) -> Result<Vec<u8>, SealError> {
    let public = x25519_public(to)?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    public.seal(&mut rng, message).map_err(|_| SealError::BadKey)
}

impl Identity {
    /// Opens a body sealed to this identity.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD_BYTES {
            return Err(SealError::TooShort);
        }
        let secret = SecretKey::from_bytes(self.signing_key().to_scalar_bytes());
        secret.unseal(sealed).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity::from_seed([n; 32])
    }

    /// Only the recipient opens what was sealed to it; the box is the message plus the
    /// overhead; a flipped byte or another recipient fails.
    #[test]
    fn only_the_recipient_opens_a_sealed_body() {
        let (to, other) = (id(1), id(2));
        let sealed = seal(&to.public(), b"hola vecino", [7; 32]).expect("sealed");
        assert_eq!(sealed.len(), 11 + SEAL_OVERHEAD_BYTES);
        assert_eq!(to.unseal(&sealed).expect("opened"), b"hola vecino");
        assert_eq!(other.unseal(&sealed), Err(SealError::Open));
        let mut altered = sealed.clone();
        altered[40] ^= 1;
        assert_eq!(to.unseal(&altered), Err(SealError::Open));
        assert_eq!(to.unseal(&sealed[..10]), Err(SealError::TooShort));
        // The same seed gives the same box (the engine is deterministic); another seed, not.
        assert_eq!(seal(&to.public(), b"hola vecino", [7; 32]).expect("sealed"), sealed);
        assert_ne!(seal(&to.public(), b"hola vecino", [8; 32]).expect("sealed"), sealed);
    }

    #[test]
    fn a_key_that_is_no_point_is_refused() {
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(seal(&AuthorKey(bad), b"x", [0; 32]), Err(SealError::BadKey));
    }
}
