//! Helpers shared by the integration tests: identities, sample bodies and a raw signer that
//! signs whatever bytes it is given (to build envelopes that are validly signed but bad).
#![allow(dead_code, unreachable_pub)]

use ed25519_dalek::SigningKey;
use ed25519_dalek::ed25519::signature::MultipartSigner;
use prost::Message;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{Bytes, EVENT_DOMAIN, Hlc, Identity, VerifiedEvent};

/// A fixed "now" for the tests (2025-11-21T05:20:00Z, in ms).
pub const NOW_MS: u64 = 1_763_702_400_000;

pub fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

pub fn coordinate(dims: usize) -> pb::Coordinate {
    pb::Coordinate {
        vec: (0..dims).map(|i| 12.5 + i as f32 * 3.25).collect(),
        height: 4.75,
        error: 0.31,
        adjustment: -0.42,
    }
}

/// The newspaper the size figure is about: 8-D coordinate with height and error, and a few
/// status fields with realistic values.
pub fn newspaper() -> Body {
    Body::Newspaper(pb::Newspaper {
        coordinate: Some(coordinate(8)),
        uptime_s: 86_400 * 3,
        restarts: 2,
        barrio: 0x9e37_79b9_7f4a_7c15,
        connected: 7,
        flags: 1,
    })
}

pub fn post(topic: &str, body: &[u8]) -> Body {
    Body::Post(pb::Post {
        topic: topic.into(),
        body: Bytes::copy_from_slice(body),
        content_type: String::new(),
    })
}

pub fn hlc() -> Hlc {
    Hlc { ms: NOW_MS - 1_000, counter: 3 }
}

pub fn signed_newspaper(id: &Identity, seq: u64) -> VerifiedEvent {
    id.sign(Stream::Newspaper, seq, hlc(), newspaper()).expect("sign newspaper")
}

pub fn signed_post(id: &Identity, seq: u64, text: &str) -> VerifiedEvent {
    id.sign(Stream::Post, seq, hlc(), post("chat", text.as_bytes())).expect("sign post")
}

/// Signs `event_bytes` as given (no checks) with `seed`'s key and wraps them in an envelope.
pub fn raw_envelope(seed: [u8; 32], event_bytes: &[u8]) -> Bytes {
    let key = SigningKey::from_bytes(&seed);
    let sig = key.try_multipart_sign(&[EVENT_DOMAIN, event_bytes]).unwrap();
    envelope(event_bytes, &sig.to_bytes())
}

pub fn envelope(event_bytes: &[u8], signature: &[u8]) -> Bytes {
    pb::Envelope {
        event: Bytes::copy_from_slice(event_bytes),
        signature: Bytes::copy_from_slice(signature),
    }
    .encode_to_vec()
    .into()
}

/// An event by `seed`'s key with the given parts, encoded but not checked.
pub fn raw_event(
    seed: [u8; 32],
    stream: i32,
    seq: u64,
    hlc_ms: Option<u64>,
    body: Option<Body>,
) -> Vec<u8> {
    let author = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    pb::Event {
        author: Bytes::copy_from_slice(&author),
        stream,
        seq,
        hlc: hlc_ms.map(|ms| pb::Hlc { ms, counter: 0 }),
        body,
    }
    .encode_to_vec()
}

/// proptest settings with a printed, replayable seed: `PROPTEST_RNG_SEED` if set, otherwise a
/// fixed default, so CI runs are reproducible and a failure names its seed.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7665_6369_6e6f_u64);
    eprintln!("proptest seed {seed} (replay with PROPTEST_RNG_SEED={seed})");
    Config { cases, rng_seed: RngSeed::Fixed(seed), ..Config::default() }
}
