//! vecino-proto: what goes on the wire, and how a peer knows it is genuine.
//!
//! - [`pb`]: the protobuf schema (`proto/vecino/v1/*.proto`), compiled by prost-build fed by
//!   protox (no `protoc`).
//! - [`Identity`], [`AuthorKey`], [`EventId`]: a peer is one ed25519 key; an event is named by
//!   the SHA-256 of its bytes.
//! - [`Identity::sign`] and [`Verifier`]: domain-separated signatures over the exact bytes
//!   carried, with sizes bounded before the signature and the signature checked before the body
//!   is decoded; [`Verifier::verify_batch`] batches and bisects.
//! - [`FraudProof`]: two signed events at one (author, stream, seq).
//! - [`decode_frame`]: the per-link transport frames.
//!
//! Pure: no IO, no clock (time is a parameter), no global RNG.
#![deny(missing_docs)]

/// The generated protobuf types of package `vecino.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, missing_debug_implementations)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/vecino.v1.rs"));
}

mod batch;
mod clock;
mod error;
mod frame;
mod fraud;
mod keys;
pub mod limits;
mod seal;
mod stream;
mod verify;
mod wire;

pub use bytes::Bytes;
pub use clock::Hlc;
pub use error::{FrameError, Reason, Rejections, VerifyError};
pub use frame::{decode_frame, encode_frame, frame_with_seq};
pub use fraud::{FraudProof, FraudProofError};
pub use keys::{AuthorKey, EventId, Identity, IdentityError};
pub use seal::{SealError, seal};
pub use stream::{StreamKind, body_stream};
pub use verify::{EVENT_DOMAIN, VerifiedEvent, Verifier, VerifyConfig};
pub use wire::WireError;
