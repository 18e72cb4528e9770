//! Every way a signed event or a frame from the network can be bad, as typed errors.
//!
//! Each error maps to a [`Reason`], a stable lowercase label the host counts rejections by
//! (`vecino_wire_rejected_total{reason="bad_signature"}`).

use crate::pb::Stream;
use crate::wire::WireError;

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Larger than the envelope limit; nothing was decoded.
    #[error("envelope too large: {size} bytes, at most {max}")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes end inside a field.
    #[error("truncated envelope: {0}")]
    Truncated(&'static str),
    /// The bytes are not a valid encoding (no allocation: junk is rejected at line rate).
    #[error("malformed {message}: {what}")]
    Malformed {
        /// Message being decoded.
        message: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// A field is over its size or count limit.
    #[error("limit exceeded: {field} has {got}, at most {max}")]
    LimitExceeded {
        /// `Message.field` over its limit.
        field: &'static str,
        /// What was seen.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The signature is not 64 bytes.
    #[error("signature has {0} bytes, expected 64")]
    BadSignatureLength(usize),
    /// The author key is not a raw 32-byte ed25519 key.
    #[error("unknown author key format ({len} bytes; v1 keys are raw 32-byte ed25519)")]
    UnknownKeyFormat {
        /// Length of the author field.
        len: usize,
    },
    /// The author key is 32 bytes but not a point on the curve.
    #[error("author key is not a valid ed25519 point")]
    InvalidKey,
    /// The author key has small order: anyone could forge signatures for it.
    #[error("weak (small-order) author key")]
    WeakKey,
    /// The stream is unspecified or unknown to this version.
    #[error("unknown stream {0}")]
    UnknownStream(i32),
    /// Sequence numbers start at 1.
    #[error("seq 0 is not a valid sequence number")]
    SeqZero,
    /// The event carries no hybrid logical clock.
    #[error("event has no clock")]
    MissingClock,
    /// The event's clock is too far ahead of the receiver's.
    #[error(
        "clock too far ahead: event at {hlc_ms} ms, now {now_ms} ms, at most {max_ahead_ms} ms ahead"
    )]
    ClockAhead {
        /// The event's physical time.
        hlc_ms: u64,
        /// The receiver's time.
        now_ms: u64,
        /// The allowed skew.
        max_ahead_ms: u64,
    },
    /// The signature does not verify under the author key.
    #[error("bad signature")]
    BadSignature,
    /// The event has no body.
    #[error("event has no body")]
    MissingBody,
    /// The body does not belong to the event's stream.
    #[error("wrong stream kind: a {body} body in the {stream} stream")]
    WrongStreamKind {
        /// Stream named by the event.
        stream: &'static str,
        /// Stream the body belongs to.
        body: &'static str,
    },
    /// A field decodes but its value is not allowed.
    #[error("invalid {field}: {why}")]
    InvalidField {
        /// `Message.field`.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl VerifyError {
    /// The label this rejection is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            VerifyError::TooLarge { .. } => Reason::TooLarge,
            VerifyError::Truncated(_) => Reason::Truncated,
            VerifyError::Malformed { .. } => Reason::Malformed,
            VerifyError::LimitExceeded { .. } => Reason::LimitExceeded,
            VerifyError::BadSignatureLength(_) | VerifyError::BadSignature => Reason::BadSignature,
            VerifyError::UnknownKeyFormat { .. } => Reason::UnknownKeyFormat,
            VerifyError::InvalidKey => Reason::InvalidKey,
            VerifyError::WeakKey => Reason::WeakKey,
            VerifyError::UnknownStream(_) => Reason::UnknownStream,
            VerifyError::SeqZero => Reason::SeqZero,
            VerifyError::MissingClock | VerifyError::ClockAhead { .. } => Reason::Clock,
            VerifyError::MissingBody | VerifyError::WrongStreamKind { .. } => {
                Reason::WrongStreamKind
            }
            VerifyError::InvalidField { .. } => Reason::InvalidField,
        }
    }

    pub(crate) fn wrong_stream(stream: Stream, body: Stream) -> Self {
        VerifyError::WrongStreamKind { stream: stream.name(), body: body.name() }
    }
}

impl From<WireError> for VerifyError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(what) => VerifyError::Truncated(what),
            WireError::Malformed { message, what } => VerifyError::Malformed { message, what },
            WireError::Limit { field, got, max } => VerifyError::LimitExceeded { field, got, max },
        }
    }
}

/// What prost can still reject after the pre-scan: values, not shapes.
pub(crate) const PROST_VALUE: &str = "invalid value (a string that is not UTF-8)";

impl From<prost::DecodeError> for VerifyError {
    fn from(_: prost::DecodeError) -> Self {
        VerifyError::Malformed { message: "event", what: PROST_VALUE }
    }
}

/// Why a transport frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the frame limit; nothing was decoded.
    #[error("frame too large: {size} bytes, at most {max}")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes end inside a field.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// The bytes are not a valid encoding.
    #[error("malformed {message}: {what}")]
    Malformed {
        /// Message being decoded.
        message: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// A field is over its size or count limit.
    #[error("limit exceeded: {field} has {got}, at most {max}")]
    LimitExceeded {
        /// `Message.field` over its limit.
        field: &'static str,
        /// What was seen.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The frame has no content.
    #[error("empty frame")]
    Empty,
}

impl FrameError {
    /// The label this rejection is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            FrameError::TooLarge { .. } => Reason::TooLarge,
            FrameError::Truncated(_) => Reason::Truncated,
            FrameError::Malformed { .. } | FrameError::Empty => Reason::Malformed,
            FrameError::LimitExceeded { .. } => Reason::LimitExceeded,
        }
    }
}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(what) => FrameError::Truncated(what),
            WireError::Malformed { message, what } => FrameError::Malformed { message, what },
            WireError::Limit { field, got, max } => FrameError::LimitExceeded { field, got, max },
        }
    }
}

impl From<prost::DecodeError> for FrameError {
    fn from(_: prost::DecodeError) -> Self {
        FrameError::Malformed { message: "frame", what: PROST_VALUE }
    }
}

/// Stable labels for counting rejected input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Reason {
    TooLarge,
    Truncated,
    Malformed,
    LimitExceeded,
    BadSignature,
    UnknownKeyFormat,
    InvalidKey,
    WeakKey,
    UnknownStream,
    SeqZero,
    Clock,
    WrongStreamKind,
    InvalidField,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 13] = [
        Reason::TooLarge,
        Reason::Truncated,
        Reason::Malformed,
        Reason::LimitExceeded,
        Reason::BadSignature,
        Reason::UnknownKeyFormat,
        Reason::InvalidKey,
        Reason::WeakKey,
        Reason::UnknownStream,
        Reason::SeqZero,
        Reason::Clock,
        Reason::WrongStreamKind,
        Reason::InvalidField,
    ];

    /// The metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Truncated => "truncated",
            Reason::Malformed => "malformed",
            Reason::LimitExceeded => "limit_exceeded",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKeyFormat => "unknown_key_format",
            Reason::InvalidKey => "invalid_key",
            Reason::WeakKey => "weak_key",
            Reason::UnknownStream => "unknown_stream",
            Reason::SeqZero => "seq_zero",
            Reason::Clock => "clock",
            Reason::WrongStreamKind => "wrong_stream_kind",
            Reason::InvalidField => "invalid_field",
        }
    }
}

/// Rejection counts by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections([u64; Reason::ALL.len()]);

impl Rejections {
    /// Counts one rejection.
    pub fn add(&mut self, reason: Reason) {
        self.0[reason as usize] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason as usize]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.into_iter().map(|r| (r, self.get(r))).filter(|&(_, n)| n > 0)
    }
}
