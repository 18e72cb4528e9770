//! Signing and verifying events.
//!
//! An event is signed over its exact bytes with a domain tag,
//! `sig = ed25519(author, "vecino/v1/event\0" || event_bytes)`, and named by
//! `id = SHA-256(event_bytes)`. Receivers check, in this order, and stop at the first failure:
//! 1. the envelope size against the limit (nothing decoded yet);
//! 2. the envelope's wire shape, then the event header (author, stream, seq, hlc): key format,
//!    weak keys, known stream, seq ≥ 1, clock not too far ahead;
//! 3. the signature (the body has not been looked into);
//! 4. the body's wire shape and limits, then the body itself: it must belong to the stream and
//!    its values must be allowed.
//!
//! Only a [`VerifiedEvent`] comes out, and only this module makes one: holding one means the
//! checks above passed (or that this peer signed it itself).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::ed25519::signature::{MultipartSigner, MultipartVerifier};
use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;

use crate::clock::Hlc;
use crate::error::{Rejections, VerifyError};
use crate::keys::{AuthorKey, EventId, Identity};
use crate::limits::{
    DEFAULT_MAX_CLOCK_AHEAD_MS, MAX_ENVELOPE_BYTES, SEAL_OVERHEAD_BYTES, SIGNATURE_BYTES,
};
use crate::pb::{self, Stream, event::Body};
use crate::stream::{StreamKind, body_stream};
use crate::wire;

/// Domain tag prefixed to the event bytes before signing.
pub const EVENT_DOMAIN: &[u8] = b"vecino/v1/event\0";

/// Decompressed keys kept by a [`Verifier`] by default (~450 kB); the cache is cleared when
/// it fills.
const KEY_CACHE_ENTRIES: usize = 1024;

/// An event whose signature and shape have been checked. Cheap to clone: the decoded event
/// is shared (a peer keeps it in its store, its queues and its caches at once; a simulation
/// shares it between all its peers).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvent(Arc<Decoded>);

#[derive(Debug, PartialEq)]
struct Decoded {
    id: EventId,
    author: AuthorKey,
    stream: Stream,
    seq: u64,
    hlc: Hlc,
    body: Body,
    envelope: Bytes,
}

impl VerifiedEvent {
    /// SHA-256 of the signed event bytes.
    pub fn id(&self) -> EventId {
        self.0.id
    }
    /// The author's key.
    pub fn author(&self) -> AuthorKey {
        self.0.author
    }
    /// The stream.
    pub fn stream(&self) -> Stream {
        self.0.stream
    }
    /// The stream's kind.
    pub fn kind(&self) -> StreamKind {
        // Verification rejects streams without a kind.
        self.0.stream.kind().unwrap_or(StreamKind::Log)
    }
    /// Sequence number within (author, stream), from 1.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }
    /// The author's hybrid logical clock at signing.
    pub fn hlc(&self) -> Hlc {
        self.0.hlc
    }
    /// The decoded body.
    pub fn body(&self) -> &Body {
        &self.0.body
    }
    /// The exact envelope bytes: forward and store these, never a re-encoding.
    pub fn envelope(&self) -> &Bytes {
        &self.0.envelope
    }
}

/// Settings for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyConfig {
    /// Largest envelope accepted (bytes); at most [`MAX_ENVELOPE_BYTES`] is meaningful.
    pub max_envelope_bytes: usize,
    /// How far an event's clock may be ahead of the receiver's (ms).
    pub max_clock_ahead_ms: u64,
    /// Decompressed author keys cached (0: none). The cache is allocated whole on first use
    /// (~450 kB at the default 1 024); a simulation of thousands of peers that share their
    /// signature checks keeps a few per peer.
    pub key_cache_entries: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            max_envelope_bytes: MAX_ENVELOPE_BYTES,
            max_clock_ahead_ms: DEFAULT_MAX_CLOCK_AHEAD_MS,
            key_cache_entries: KEY_CACHE_ENTRIES,
        }
    }
}

/// Verifies envelopes, caches decompressed author keys and counts what it rejects.
#[derive(Debug)]
pub struct Verifier {
    config: VerifyConfig,
    /// Decompressed, non-weak keys; at most `config.key_cache_entries`.
    keys: HashMap<[u8; 32], VerifyingKey>,
    rejected: Rejections,
    accepted: u64,
}

/// An envelope that passed every check before the signature.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) envelope: Bytes,
    pub(crate) event: Bytes,
    pub(crate) signature: Signature,
    pub(crate) key: VerifyingKey,
    author: AuthorKey,
    stream: Stream,
    seq: u64,
    hlc: Hlc,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(VerifyConfig::default())
    }
}

impl Verifier {
    /// A verifier with the given settings.
    pub fn new(config: VerifyConfig) -> Self {
        Self { config, keys: HashMap::new(), rejected: Rejections::default(), accepted: 0 }
    }

    /// Caches at most `entries` decompressed keys from now on (0: none); empties the cache.
    pub fn set_key_cache_entries(&mut self, entries: usize) {
        self.config.key_cache_entries = entries;
        self.keys = HashMap::new();
    }

    /// Verifies one envelope received live at `now_ms` (ms since the Unix epoch).
    pub fn verify(&mut self, envelope: Bytes, now_ms: u64) -> Result<VerifiedEvent, VerifyError> {
        let result = self.verify_inner(envelope, Some(now_ms));
        self.count(&result);
        result
    }

    /// Verifies one envelope read back from storage or carried in a fraud proof: every check
    /// except the clock (an old event is not suspicious there).
    pub fn verify_stored(&mut self, envelope: Bytes) -> Result<VerifiedEvent, VerifyError> {
        let result = self.verify_inner(envelope, None);
        self.count(&result);
        result
    }

    fn verify_inner(
        &mut self,
        envelope: Bytes,
        now_ms: Option<u64>,
    ) -> Result<VerifiedEvent, VerifyError> {
        let pending = self.precheck(envelope, now_ms)?;
        pending
            .key
            .multipart_verify(&[EVENT_DOMAIN, &pending.event], &pending.signature)
            .map_err(|_| VerifyError::BadSignature)?;
        finish(pending)
    }

    /// Envelopes accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Envelopes rejected so far, by reason.
    pub fn rejected(&self) -> &Rejections {
        &self.rejected
    }

    pub(crate) fn count<T>(&mut self, result: &Result<T, VerifyError>) {
        match result {
            Ok(_) => self.accepted += 1,
            Err(e) => self.rejected.add(e.reason()),
        }
    }

    /// Steps 1 and 2 of the module docs.
    pub(crate) fn precheck(
        &mut self,
        envelope: Bytes,
        now_ms: Option<u64>,
    ) -> Result<Pending, VerifyError> {
        let max = self.config.max_envelope_bytes.min(MAX_ENVELOPE_BYTES);
        if envelope.len() > max {
            return Err(VerifyError::TooLarge { size: envelope.len(), max });
        }
        wire::check(&envelope, &wire::ENVELOPE)?;
        let env = pb::Envelope::decode(envelope.clone())?;
        let signature: [u8; SIGNATURE_BYTES] = env
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| VerifyError::BadSignatureLength(env.signature.len()))?;
        let signature = Signature::from_bytes(&signature);

        wire::check_shallow(&env.event, &wire::EVENT)?;
        let header = pb::EventHeader::decode(env.event.clone())?;
        let author = AuthorKey::from_slice(&header.author)
            .ok_or(VerifyError::UnknownKeyFormat { len: header.author.len() })?;
        let key = self.key(&author)?;
        let stream = match Stream::try_from(header.stream) {
            Ok(s) if s.kind().is_some() => s,
            _ => return Err(VerifyError::UnknownStream(header.stream)),
        };
        if header.seq == 0 {
            return Err(VerifyError::SeqZero);
        }
        let hlc = Hlc::from(header.hlc.ok_or(VerifyError::MissingClock)?);
        if let Some(now_ms) = now_ms {
            let max_ahead_ms = self.config.max_clock_ahead_ms;
            if hlc.ms > now_ms.saturating_add(max_ahead_ms) {
                return Err(VerifyError::ClockAhead { hlc_ms: hlc.ms, now_ms, max_ahead_ms });
            }
        }
        Ok(Pending {
            envelope,
            event: env.event,
            signature,
            key,
            author,
            stream,
            seq: header.seq,
            hlc,
        })
    }

    fn key(&mut self, author: &AuthorKey) -> Result<VerifyingKey, VerifyError> {
        if let Some(k) = self.keys.get(&author.0) {
            return Ok(*k);
        }
        let key = VerifyingKey::from_bytes(&author.0).map_err(|_| VerifyError::InvalidKey)?;
        if key.is_weak() {
            return Err(VerifyError::WeakKey);
        }
        let entries = self.config.key_cache_entries;
        if entries == 0 {
            return Ok(key);
        }
        // Allocated whole on first use and never grown, so verifying allocates nothing for it.
        if self.keys.capacity() == 0 {
            self.keys.reserve(entries);
        }
        if self.keys.len() >= entries {
            self.keys.clear();
        }
        self.keys.insert(author.0, key);
        Ok(key)
    }
}

/// Step 4 of the module docs, for an envelope whose signature verified.
pub(crate) fn finish(p: Pending) -> Result<VerifiedEvent, VerifyError> {
    wire::check(&p.event, &wire::EVENT)?;
    let event = pb::Event::decode(p.event.clone())?;
    let body = event.body.ok_or(VerifyError::MissingBody)?;
    let belongs = body_stream(&body);
    if belongs != p.stream {
        return Err(VerifyError::wrong_stream(p.stream, belongs));
    }
    validate_body(&body)?;
    Ok(VerifiedEvent(Arc::new(Decoded {
        id: EventId::of(&p.event),
        author: p.author,
        stream: p.stream,
        seq: p.seq,
        hlc: p.hlc,
        body,
        envelope: p.envelope,
    })))
}

/// Value checks the wire shape cannot express.
fn validate_body(body: &Body) -> Result<(), VerifyError> {
    let key = |b: &Bytes, field| {
        if b.len() == 32 {
            Ok(())
        } else {
            Err(VerifyError::InvalidField { field, why: "must be 32 bytes" })
        }
    };
    let coordinate = |c: &Option<pb::Coordinate>, field| match c {
        Some(c)
            if !c.vec.iter().chain([&c.height, &c.error, &c.adjustment]).all(|x| x.is_finite()) =>
        {
            Err(VerifyError::InvalidField { field, why: "not finite" })
        }
        _ => Ok(()),
    };
    match body {
        Body::HeyThere(h) => coordinate(&h.coordinate, "HeyThere.coordinate"),
        Body::Newspaper(n) => coordinate(&n.coordinate, "Newspaper.coordinate"),
        Body::BarrioSlot(s) => {
            coordinate(&s.coordinate, "BarrioSlot.coordinate")?;
            if s.health.iter().all(|x| x.is_finite()) {
                Ok(())
            } else {
                Err(VerifyError::InvalidField { field: "BarrioSlot.health", why: "not finite" })
            }
        }
        Body::Chau(_) => Ok(()),
        // A subject named by its prefix leaves the whole key out; one named by its key (an
        // older peer's opinion) must not also give a prefix.
        Body::Opinion(o) => {
            o.entries.iter().try_for_each(|e| match (e.subject.is_empty(), e.subject_prefix) {
                (true, _) => Ok(()),
                (false, 0) => key(&e.subject, "OpinionEntry.subject"),
                (false, _) => Err(VerifyError::InvalidField {
                    field: "OpinionEntry.subject",
                    why: "an entry names its subject by prefix or by key, not both",
                }),
            })
        }
        Body::Post(p) if p.topic.is_empty() => {
            Err(VerifyError::InvalidField { field: "Post.topic", why: "empty" })
        }
        Body::Post(_) => Ok(()),
        Body::Postcard(p) => {
            key(&p.to, "Postcard.to")?;
            coordinate(&p.from, "Postcard.from")?;
            coordinate(&p.to_coordinate, "Postcard.to_coordinate")?;
            if p.body.len() < SEAL_OVERHEAD_BYTES {
                return Err(VerifyError::InvalidField {
                    field: "Postcard.body",
                    why: "not sealed",
                });
            }
            Ok(())
        }
        Body::PostcardReceipt(r) => {
            key(&r.postcard_id, "PostcardReceipt.postcard_id")?;
            key(&r.to, "PostcardReceipt.to")?;
            coordinate(&r.to_coordinate, "PostcardReceipt.to_coordinate")
        }
        Body::LinkState(l) if l.peers.len() != l.rtt_100us.len() => {
            Err(VerifyError::InvalidField { field: "LinkState.rtt_100us", why: "not one per peer" })
        }
        Body::LinkState(_) => Ok(()),
    }
}

impl Identity {
    /// Signs an event of this identity and returns it ready to send.
    ///
    /// The result passes every check a receiver makes (except the receiver's clock): a body
    /// that does not belong to `stream`, seq 0, or a body over the limits is refused here rather
    /// than discovered by every peer.
    pub fn sign(
        &self,
        stream: Stream,
        seq: u64,
        hlc: Hlc,
        body: Body,
    ) -> Result<VerifiedEvent, VerifyError> {
        if stream.kind().is_none() {
            return Err(VerifyError::UnknownStream(stream as i32));
        }
        let belongs = body_stream(&body);
        if belongs != stream {
            return Err(VerifyError::wrong_stream(stream, belongs));
        }
        if seq == 0 {
            return Err(VerifyError::SeqZero);
        }
        validate_body(&body)?;
        let event = pb::Event {
            author: Bytes::copy_from_slice(self.public().as_bytes()),
            stream: stream as i32,
            seq,
            hlc: Some(hlc.into()),
            body: Some(body),
        };
        let event_bytes = Bytes::from(event.encode_to_vec());
        wire::check(&event_bytes, &wire::EVENT)?;
        let signature = self
            .signing_key()
            .try_multipart_sign(&[EVENT_DOMAIN, &event_bytes])
            .map_err(|_| VerifyError::BadSignature)?;
        debug_assert!(
            self.verifying_key()
                .multipart_verify(&[EVENT_DOMAIN, &event_bytes], &signature)
                .is_ok()
        );
        let envelope = pb::Envelope {
            event: event_bytes.clone(),
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
        };
        let envelope = Bytes::from(envelope.encode_to_vec());
        if envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(VerifyError::TooLarge { size: envelope.len(), max: MAX_ENVELOPE_BYTES });
        }
        let Some(body) = event.body else {
            return Err(VerifyError::MissingBody);
        };
        Ok(VerifiedEvent(Arc::new(Decoded {
            id: EventId::of(&event_bytes),
            author: self.public(),
            stream,
            seq,
            hlc,
            body,
            envelope,
        })))
    }
}
