//! Every class of bad input gets its typed error and is counted; honest input still passes.

mod common;

use common::*;
use prost::Message;
use vecino_proto::limits::*;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{Bytes, Reason, Verifier, VerifyConfig, VerifyError};

const SEED: [u8; 32] = [9; 32];

fn good_event() -> Vec<u8> {
    raw_event(SEED, Stream::Newspaper as i32, 1, Some(NOW_MS), Some(newspaper()))
}

/// Verifies, checks the error, and checks it was counted under its reason.
fn rejects(envelope: Bytes, expected: impl Fn(&VerifyError) -> bool, reason: Reason) {
    let mut v = Verifier::default();
    let err = v.verify(envelope, NOW_MS).expect_err("bad input accepted");
    assert!(expected(&err), "unexpected error: {err:?}");
    assert_eq!(err.reason(), reason, "{err}");
    assert_eq!(v.rejected().get(reason), 1);
    assert_eq!(v.rejected().total(), 1);
    assert_eq!(v.accepted(), 0);
}

#[test]
fn honest_envelope_passes_and_is_counted() {
    let mut v = Verifier::default();
    let ev = v.verify(raw_envelope(SEED, &good_event()), NOW_MS).unwrap();
    assert_eq!(ev.seq(), 1);
    assert_eq!(ev.stream(), Stream::Newspaper);
    assert_eq!(v.accepted(), 1);
    assert_eq!(v.rejected().total(), 0);
}

#[test]
fn too_large() {
    let big = Bytes::from(vec![0u8; MAX_ENVELOPE_BYTES + 1]);
    rejects(
        big,
        |e| matches!(e, VerifyError::TooLarge { size, .. } if *size == MAX_ENVELOPE_BYTES + 1),
        Reason::TooLarge,
    );
    // A smaller configured limit is honoured too.
    let mut v = Verifier::new(VerifyConfig { max_envelope_bytes: 100, ..Default::default() });
    let err = v.verify(raw_envelope(SEED, &good_event()), NOW_MS).unwrap_err();
    assert!(matches!(err, VerifyError::TooLarge { max: 100, .. }));
}

#[test]
fn truncated_at_every_length() {
    let env = raw_envelope(SEED, &good_event());
    for cut in 1..env.len() {
        let mut v = Verifier::default();
        let err = v.verify(env.slice(..cut), NOW_MS).expect_err("truncated envelope accepted");
        assert!(
            matches!(
                err,
                VerifyError::Truncated(_)
                    | VerifyError::BadSignatureLength(_)
                    | VerifyError::Malformed { .. }
            ),
            "cut at {cut}: {err:?}"
        );
    }
    rejects(
        env.slice(..env.len() - 10),
        |e| matches!(e, VerifyError::Truncated(_)),
        Reason::Truncated,
    );
}

#[test]
fn garbage_is_malformed() {
    rejects(
        Bytes::from_static(&[0x0b, 0x0c]),
        |e| matches!(e, VerifyError::Malformed { .. }),
        Reason::Malformed,
    );
    rejects(
        Bytes::from_static(&[0xff; 16]),
        |e| matches!(e, VerifyError::Malformed { .. }),
        Reason::Malformed,
    );
    // An event field that is not an Event: a string of 0xff.
    rejects(
        envelope(&[0xff; 40], &[0; 64]),
        |e| matches!(e, VerifyError::Malformed { .. } | VerifyError::Truncated(_)),
        Reason::Malformed,
    );
}

#[test]
fn empty_envelope_has_no_signature() {
    rejects(
        Bytes::new(),
        |e| matches!(e, VerifyError::BadSignatureLength(0)),
        Reason::BadSignature,
    );
}

#[test]
fn bad_signature_length() {
    let env = envelope(&good_event(), &[1; 63]);
    rejects(env, |e| matches!(e, VerifyError::BadSignatureLength(63)), Reason::BadSignature);
}

#[test]
fn bad_signature() {
    let event = good_event();
    // Signed by another key than the author's.
    let other = raw_envelope([10; 32], &event);
    rejects(other, |e| matches!(e, VerifyError::BadSignature), Reason::BadSignature);
    // Signed without the domain tag.
    use ed25519_dalek::Signer;
    let sig = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(&event);
    rejects(
        envelope(&event, &sig.to_bytes()),
        |e| matches!(e, VerifyError::BadSignature),
        Reason::BadSignature,
    );
}

#[test]
fn unknown_author_key_format() {
    let mut event = pb::Event::decode(good_event().as_slice()).unwrap();
    let mut long = event.author.to_vec();
    long.insert(0, 0xed); // a "typed" 33-byte key this version does not know
    event.author = long.into();
    let env = raw_envelope(SEED, &event.encode_to_vec());
    rejects(
        env,
        |e| matches!(e, VerifyError::UnknownKeyFormat { len: 33 }),
        Reason::UnknownKeyFormat,
    );
    event.author = Bytes::from_static(&[1; 65]);
    let env = raw_envelope(SEED, &event.encode_to_vec());
    rejects(
        env,
        |e| matches!(e, VerifyError::LimitExceeded { field: "Event.author", got: 65, .. }),
        Reason::LimitExceeded,
    );
    event.author = Bytes::from_static(&[1; 31]);
    let env = raw_envelope(SEED, &event.encode_to_vec());
    rejects(
        env,
        |e| matches!(e, VerifyError::UnknownKeyFormat { len: 31 }),
        Reason::UnknownKeyFormat,
    );
}

#[test]
fn invalid_and_weak_keys() {
    let mut event = pb::Event::decode(good_event().as_slice()).unwrap();
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    event.author = Bytes::copy_from_slice(&not_a_point);
    rejects(
        raw_envelope(SEED, &event.encode_to_vec()),
        |e| matches!(e, VerifyError::InvalidKey),
        Reason::InvalidKey,
    );
    // The identity point (order 1): every signature "verifies" under it without the check.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    event.author = Bytes::copy_from_slice(&identity_point);
    rejects(
        raw_envelope(SEED, &event.encode_to_vec()),
        |e| matches!(e, VerifyError::WeakKey),
        Reason::WeakKey,
    );
}

#[test]
fn unknown_and_unspecified_streams() {
    let ev = raw_event(SEED, 99, 1, Some(NOW_MS), Some(newspaper()));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::UnknownStream(99)),
        Reason::UnknownStream,
    );
    let ev = raw_event(SEED, 0, 1, Some(NOW_MS), Some(newspaper()));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::UnknownStream(0)),
        Reason::UnknownStream,
    );
}

#[test]
fn seq_zero() {
    let ev = raw_event(SEED, Stream::Newspaper as i32, 0, Some(NOW_MS), Some(newspaper()));
    rejects(raw_envelope(SEED, &ev), |e| matches!(e, VerifyError::SeqZero), Reason::SeqZero);
}

#[test]
fn clock_missing_or_too_far_ahead() {
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, None, Some(newspaper()));
    rejects(raw_envelope(SEED, &ev), |e| matches!(e, VerifyError::MissingClock), Reason::Clock);
    let ahead = NOW_MS + DEFAULT_MAX_CLOCK_AHEAD_MS + 1;
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(ahead), Some(newspaper()));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::ClockAhead { hlc_ms, .. } if *hlc_ms == ahead),
        Reason::Clock,
    );
    // Exactly at the limit is fine; so is any time in the past; storage reload skips the check.
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(ahead - 1), Some(newspaper()));
    assert!(Verifier::default().verify(raw_envelope(SEED, &ev), NOW_MS).is_ok());
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(ahead), Some(newspaper()));
    assert!(Verifier::default().verify_stored(raw_envelope(SEED, &ev)).is_ok());
}

#[test]
fn missing_body_and_wrong_stream_kind() {
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(NOW_MS), None);
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::MissingBody),
        Reason::WrongStreamKind,
    );
    // A post body in the newspaper stream.
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(NOW_MS), Some(post("t", b"x")));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::WrongStreamKind { stream: "newspaper", body: "post" }),
        Reason::WrongStreamKind,
    );
    // A newspaper body in the (log) post stream.
    let ev = raw_event(SEED, Stream::Post as i32, 1, Some(NOW_MS), Some(newspaper()));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::WrongStreamKind { stream: "post", body: "newspaper" }),
        Reason::WrongStreamKind,
    );
}

#[test]
fn body_limits_are_checked_after_the_signature() {
    let body = post("t", &vec![b'x'; MAX_POST_BODY_BYTES + 1]);
    let ev = raw_event(SEED, Stream::Post as i32, 1, Some(NOW_MS), Some(body));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::LimitExceeded { field: "Post.body", .. }),
        Reason::LimitExceeded,
    );
    // The same body with a bad signature fails on the signature: the body was never looked at.
    let env = raw_envelope([10; 32], &ev);
    rejects(env, |e| matches!(e, VerifyError::BadSignature), Reason::BadSignature);

    let entries = (0..=MAX_OPINION_ENTRIES)
        .map(|i| pb::OpinionEntry {
            subject: Bytes::from(vec![i as u8; 32]),
            online: true,
            ..Default::default()
        })
        .collect();
    let ev = raw_event(
        SEED,
        Stream::Opinion as i32,
        1,
        Some(NOW_MS),
        Some(Body::Opinion(pb::Opinion { entries })),
    );
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::LimitExceeded { field: "Opinion.entries", .. }),
        Reason::LimitExceeded,
    );
}

#[test]
fn invalid_field_values() {
    let mut c = coordinate(8);
    c.vec[3] = f32::NAN;
    let body = Body::Newspaper(pb::Newspaper { coordinate: Some(c), ..Default::default() });
    let ev = raw_event(SEED, Stream::Newspaper as i32, 1, Some(NOW_MS), Some(body));
    rejects(
        raw_envelope(SEED, &ev),
        |e| {
            matches!(
                e,
                VerifyError::InvalidField { field: "Newspaper.coordinate", why: "not finite" }
            )
        },
        Reason::InvalidField,
    );
    // An opinion entry names its subject by prefix or by its whole key, never both.
    let entry = pb::OpinionEntry {
        subject_prefix: 7,
        subject: Bytes::from(vec![3; 32]),
        online: true,
        ..Default::default()
    };
    let body = Body::Opinion(pb::Opinion { entries: vec![entry] });
    let ev = raw_event(SEED, Stream::Opinion as i32, 1, Some(NOW_MS), Some(body));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::InvalidField { field: "OpinionEntry.subject", .. }),
        Reason::InvalidField,
    );
    let body =
        Body::Postcard(pb::Postcard { to: Bytes::from_static(&[1; 5]), ..Default::default() });
    let ev = raw_event(SEED, Stream::Postcard as i32, 1, Some(NOW_MS), Some(body));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::InvalidField { field: "Postcard.to", .. }),
        Reason::InvalidField,
    );
    let ev = raw_event(SEED, Stream::Post as i32, 1, Some(NOW_MS), Some(post("", b"x")));
    rejects(
        raw_envelope(SEED, &ev),
        |e| matches!(e, VerifyError::InvalidField { field: "Post.topic", .. }),
        Reason::InvalidField,
    );
}

#[test]
fn invalid_utf8_in_a_string_is_malformed() {
    let body = pb::Chau { reason: "bye".into() }.encode_to_vec();
    let mut event = raw_event(SEED, Stream::Chau as i32, 1, Some(NOW_MS), None);
    // Append the chau body with its string bytes corrupted to invalid UTF-8.
    let mut bad = body.clone();
    let n = bad.len();
    bad[n - 1] = 0xff;
    event.push(0x62); // field 12, wire type 2
    event.push(bad.len() as u8);
    event.extend_from_slice(&bad);
    rejects(
        raw_envelope(SEED, &event),
        |e| matches!(e, VerifyError::Malformed { .. }),
        Reason::Malformed,
    );
}

#[test]
fn signing_refuses_what_receivers_would_reject() {
    let id = identity(1);
    assert!(matches!(id.sign(Stream::Newspaper, 0, hlc(), newspaper()), Err(VerifyError::SeqZero)));
    assert!(matches!(
        id.sign(Stream::Post, 1, hlc(), newspaper()),
        Err(VerifyError::WrongStreamKind { .. })
    ));
    assert!(matches!(
        id.sign(Stream::Unspecified, 1, hlc(), newspaper()),
        Err(VerifyError::UnknownStream(0))
    ));
    let huge = post("t", &vec![0; MAX_POST_BODY_BYTES + 1]);
    assert!(matches!(
        id.sign(Stream::Post, 1, hlc(), huge),
        Err(VerifyError::LimitExceeded { .. })
    ));
}

#[test]
fn rejected_input_never_stops_honest_input() {
    let mut v = Verifier::default();
    let id = identity(3);
    let mut accepted = 0;
    for seq in 1..=50u64 {
        let _ = v.verify(Bytes::from(vec![seq as u8; seq as usize]), NOW_MS);
        if v.verify(signed_post(&id, seq, "hola").envelope().clone(), NOW_MS).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 50);
    assert_eq!(v.rejected().total(), 50);
}
