//! Who a peer is: its ed25519 key, and the ids derived from it.
//!
//! A peer is one ed25519 key. [`Identity`] holds the secret half and signs; [`AuthorKey`] is the
//! public half as it appears on the wire (32 raw bytes); [`EventId`] names one event by the
//! SHA-256 of its exact bytes. Reading and writing key files is the node's business (this crate
//! does no IO): it hands the PEM text to [`Identity::from_pkcs8_pem`].

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::limits::{AUTHOR_KEY_BYTES, EVENT_ID_BYTES};

/// An author's raw ed25519 public key, exactly as carried in `Event.author`.
/// Ordered by its bytes, as a slice would be.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthorKey(pub [u8; AUTHOR_KEY_BYTES]);

// Keys are compared in every map the engine keeps per neighbour and per stream: as four
// big-endian words (the bytes' order) rather than through `memcmp` (12 % of a 1 000-peer
// simulation's time went to that call).
impl Ord for AuthorKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or_default());
        self.0
            .chunks_exact(8)
            .zip(other.0.chunks_exact(8))
            .map(|(a, b)| word(a).cmp(&word(b)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for AuthorKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl AuthorKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; AUTHOR_KEY_BYTES] {
        &self.0
    }

    /// Reads a key from a wire field; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// First 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex8(&self.0)
    }

    /// The name announcements give this key (`PrefixHead.author_prefix`): its first 8
    /// bytes, little-endian.
    pub fn prefix(&self) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }

    /// The prefix an opinion entry names its subject by: `subject_prefix`, or the prefix of
    /// the whole key an older peer gave instead (see `OpinionEntry` in `bodies.proto`).
    pub fn opinion_subject(e: &crate::pb::OpinionEntry) -> u64 {
        match Self::from_slice(&e.subject) {
            Some(k) => k.prefix(),
            None => e.subject_prefix,
        }
    }

    /// The smallest and the largest key named by `prefix` (see [`AuthorKey::prefix`]): the
    /// bounds of an ordered lookup.
    pub fn prefix_bounds(prefix: u64) -> (Self, Self) {
        let (mut lo, mut hi) = ([0; AUTHOR_KEY_BYTES], [0xff; AUTHOR_KEY_BYTES]);
        lo[..8].copy_from_slice(&prefix.to_le_bytes());
        hi[..8].copy_from_slice(&prefix.to_le_bytes());
        (Self(lo), Self(hi))
    }

    /// This key's fingerprint under `salt` (a `MemberHead`'s name for its author): the first
    /// 4 bytes, little-endian, of SHA-256(salt little-endian ‖ key). The salt is drawn per
    /// vector, so a collision is a chance of that vector alone (~5 · 10⁻⁵ between a pull of
    /// 450 members and an answerer holding 500) and costs one member one round; nobody can
    /// aim one at a key ahead of time.
    pub fn fingerprint(&self, salt: u64) -> u32 {
        let mut h = Sha256::new();
        h.update(salt.to_le_bytes());
        h.update(self.0);
        let d = h.finalize();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    }
}

impl fmt::Display for AuthorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for AuthorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorKey({})", self.short())
    }
}

/// An event's id: SHA-256 of the exact event bytes that were signed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub [u8; EVENT_ID_BYTES]);

impl EventId {
    /// Hashes event bytes into their id.
    pub fn of(event_bytes: &[u8]) -> Self {
        Self(Sha256::digest(event_bytes).into())
    }

    /// Reads an id from a wire field; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// First 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex8(&self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.short())
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The text is not a PKCS#8 PEM ed25519 private key.
    #[error("not a PKCS#8 PEM ed25519 private key: {0}")]
    Pem(String),
    /// The key could not be encoded.
    #[error("could not encode the key as PKCS#8 PEM: {0}")]
    Encode(String),
}

/// A peer's secret key: signs the events it authors.
///
/// The same 32-byte seed also makes the peer's libp2p `PeerId` (the node derives it), so one key
/// file names a peer everywhere. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    public: AuthorKey,
}

impl Identity {
    /// An identity from a 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let public = AuthorKey(signing.verifying_key().to_bytes());
        Self { signing, public }
    }

    /// A fresh identity from a cryptographically secure RNG.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// Reads a PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----") ed25519 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, IdentityError> {
        let signing =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| IdentityError::Pem(e.to_string()))?;
        let public = AuthorKey(signing.verifying_key().to_bytes());
        Ok(Self { signing, public })
    }

    /// Writes the key as PKCS#8 PEM (v1, seed only), LF line endings.
    pub fn to_pkcs8_pem(&self) -> Result<String, IdentityError> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|z| z.as_str().to_owned())
            .map_err(|e| IdentityError::Encode(e.to_string()))
    }

    /// The secret seed, for deriving the libp2p keypair of the same peer. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key, as it appears on the wire.
    pub fn public(&self) -> AuthorKey {
        self.public
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_keys_order_as_their_bytes() {
        // Keys that differ in one byte, anywhere, by small and large amounts.
        let mut keys = vec![AuthorKey([0; 32]), AuthorKey([0xff; 32])];
        for i in 0..32 {
            for v in [1u8, 0x7f, 0x80, 0xfe] {
                let mut k = [0x80; 32];
                k[i] = v;
                keys.push(AuthorKey(k));
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(a.cmp(b), a.0[..].cmp(&b.0[..]), "{a:?} vs {b:?}");
                assert_eq!(a.partial_cmp(b), Some(a.0[..].cmp(&b.0[..])));
            }
        }
    }

    #[test]
    fn a_prefix_bounds_exactly_the_keys_it_names() {
        let mut k = [0x5a; 32];
        k[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let key = AuthorKey(k);
        let p = key.prefix();
        // The wire's fixed64 is little-endian: the prefix travels as the key's own bytes.
        assert_eq!(p.to_le_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        let (lo, hi) = AuthorKey::prefix_bounds(p);
        assert!(lo <= key && key <= hi);
        assert_eq!((lo.prefix(), hi.prefix()), (p, p));
        // Keys one step past either end of the prefix fall outside.
        let (mut below, mut above) = (k, k);
        below[7] -= 1;
        above[7] += 1;
        assert!(AuthorKey(below) < lo && AuthorKey(above) > hi);
    }

    #[test]
    fn pem_round_trips_and_matches_rfc8032_vector() {
        // RFC 8032 §7.1 test 1.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let id = Identity::from_seed(seed);
        assert_eq!(
            id.public().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let pem = id.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = Identity::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(back.seed(), seed);
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        assert!(matches!(Identity::from_pkcs8_pem("hello"), Err(IdentityError::Pem(_))));
        let rsa_like = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(Identity::from_pkcs8_pem(rsa_like), Err(IdentityError::Pem(_))));
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let id = Identity::from_seed([7; 32]);
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("0707070707"), "{dbg}");
    }
}
