//! Equivocation: an author signing two different events at the same (author, stream, seq).
//!
//! An honest peer never does this, so two such envelopes are proof that the author's key is
//! misused. The proof is self-contained and verifiable by anyone: both envelopes, each with a
//! valid signature. The pair is ordered bytewise so that every observer builds the same proof
//! (and the same proof bytes) whichever envelope it saw first.

use bytes::Bytes;
use prost::Message;

use crate::error::{FrameError, VerifyError};
use crate::keys::AuthorKey;
use crate::limits::MAX_FRAME_BYTES;
use crate::pb::{self, Stream};
use crate::verify::{VerifiedEvent, Verifier};
use crate::wire;

/// Two validly signed, different events at the same (author, stream, seq).
#[derive(Debug, Clone, PartialEq)]
pub struct FraudProof {
    first: VerifiedEvent,
    second: VerifiedEvent,
}

/// Why bytes are not a valid fraud proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FraudProofError {
    /// The proof could not be decoded.
    #[error("malformed fraud proof: {0}")]
    Malformed(FrameError),
    /// One of the two envelopes does not verify.
    #[error("{which} envelope: {error}")]
    Envelope {
        /// `first` or `second`.
        which: &'static str,
        /// Why it failed.
        error: VerifyError,
    },
    /// The two events do not equivocate.
    #[error("not an equivocation: {0}")]
    NotEquivocation(&'static str),
    /// The envelopes are not in canonical order.
    #[error("not canonical: first must sort before second")]
    NotCanonical,
}

impl FraudProof {
    /// The proof that `a` and `b` equivocate, if they do.
    pub fn from_pair(a: &VerifiedEvent, b: &VerifiedEvent) -> Option<Self> {
        Self::check(a, b).ok()
    }

    fn check(a: &VerifiedEvent, b: &VerifiedEvent) -> Result<Self, FraudProofError> {
        if a.author() != b.author() {
            return Err(FraudProofError::NotEquivocation("different authors"));
        }
        if a.stream() != b.stream() {
            return Err(FraudProofError::NotEquivocation("different streams"));
        }
        if a.seq() != b.seq() {
            return Err(FraudProofError::NotEquivocation("different seqs"));
        }
        if a.id() == b.id() {
            return Err(FraudProofError::NotEquivocation("the same event twice"));
        }
        let (first, second) = if a.envelope() < b.envelope() { (a, b) } else { (b, a) };
        Ok(Self { first: first.clone(), second: second.clone() })
    }

    /// The misbehaving author.
    pub fn author(&self) -> AuthorKey {
        self.first.author()
    }
    /// The stream equivocated on.
    pub fn stream(&self) -> Stream {
        self.first.stream()
    }
    /// The seq equivocated on.
    pub fn seq(&self) -> u64 {
        self.first.seq()
    }
    /// The envelope that sorts first.
    pub fn first(&self) -> &VerifiedEvent {
        &self.first
    }
    /// The envelope that sorts second.
    pub fn second(&self) -> &VerifiedEvent {
        &self.second
    }

    /// The proof as a `vecino.v1.FraudProof` message: both envelopes byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        // An encoded Envelope is a valid encoding of the nested message field: write it as is.
        let mut buf =
            Vec::with_capacity(self.first.envelope().len() + self.second.envelope().len() + 8);
        prost::encoding::bytes::encode(1, self.first.envelope(), &mut buf);
        prost::encoding::bytes::encode(2, self.second.envelope(), &mut buf);
        buf
    }
}

impl Verifier {
    /// Checks a fraud proof received from the network.
    pub fn verify_fraud_proof(&mut self, bytes: Bytes) -> Result<FraudProof, FraudProofError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FraudProofError::Malformed(FrameError::TooLarge {
                size: bytes.len(),
                max: MAX_FRAME_BYTES,
            }));
        }
        wire::check(&bytes, &wire::FRAUD_PROOF)
            .map_err(|e| FraudProofError::Malformed(e.into()))?;
        let proof =
            pb::FraudProof::decode(bytes).map_err(|e| FraudProofError::Malformed(e.into()))?;
        let mut open = |env: Option<pb::Envelope>, which| {
            let env = env.ok_or(FraudProofError::Malformed(FrameError::Malformed {
                message: "FraudProof",
                what: "envelope missing",
            }))?;
            self.verify_stored(Bytes::from(env.encode_to_vec()))
                .map_err(|error| FraudProofError::Envelope { which, error })
        };
        let first = open(proof.first, "first")?;
        let second = open(proof.second, "second")?;
        if first.envelope() >= second.envelope() && first.id() != second.id() {
            return Err(FraudProofError::NotCanonical);
        }
        FraudProof::check(&first, &second)
    }
}
