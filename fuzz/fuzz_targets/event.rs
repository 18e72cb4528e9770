//! Arbitrary bytes as the *event* inside a validly signed envelope: everything behind the
//! signature check (header, body shape and limits, body decoding, value checks) sees fuzz input.
#![no_main]

#[path = "alloc_track.rs"]
mod alloc_track;

use std::sync::{Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use ed25519_dalek::ed25519::signature::MultipartSigner;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use vecino_proto::pb;
use vecino_proto::{Bytes, EVENT_DOMAIN, Verifier};

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

const NOW_MS: u64 = 1_763_702_400_000;

struct State {
    key: SigningKey,
    verifier: Verifier,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(State { key: SigningKey::from_bytes(&[42; 32]), verifier: alloc_track::warmed_verifier() }))
}

fuzz_target!(|data: &[u8]| {
    let mut s = state().lock().unwrap();
    // The event is the author field (this target's key, so the signature verifies) followed by
    // the fuzz input as the rest of the event's fields.
    let author = s.key.verifying_key().to_bytes();
    let mut event = Vec::with_capacity(34 + data.len());
    event.push(0x0a);
    event.push(32);
    event.extend_from_slice(&author);
    event.extend_from_slice(data);
    let sig = s.key.try_multipart_sign(&[EVENT_DOMAIN, &event]).unwrap();
    let envelope: Bytes = pb::Envelope { event: event.into(), signature: Bytes::copy_from_slice(&sig.to_bytes()) }
        .encode_to_vec()
        .into();
    let len = envelope.len();
    let (_, stats) = alloc_track::measure(|| {
        let _ = s.verifier.verify(envelope.clone(), NOW_MS);
    });
    alloc_track::check(len, stats);
});
