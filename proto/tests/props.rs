//! Property tests: encode → decode → verify round-trips; tampering with any byte, or cutting the
//! envelope anywhere, is rejected; batch verification agrees with single verification; arbitrary
//! bytes never panic the decoders. proptest prints the seed of a failing case and replays it
//! from `proptest-regressions/`.

mod common;

use common::*;
use proptest::prelude::*;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{Bytes, Hlc, Identity, Verifier, body_stream, decode_frame};

fn finite() -> impl Strategy<Value = f32> {
    -1.0e4f32..1.0e4
}

fn coordinate() -> impl Strategy<Value = Option<pb::Coordinate>> {
    proptest::option::of(
        (prop::collection::vec(finite(), 0..=12), finite(), 0.0f32..2.0, finite()).prop_map(
            |(vec, height, error, adjustment)| pb::Coordinate { vec, height, error, adjustment },
        ),
    )
}

fn key32() -> impl Strategy<Value = Bytes> {
    prop::array::uniform32(any::<u8>()).prop_map(|k| Bytes::copy_from_slice(&k))
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(move |cs| {
        let mut s: String = cs.into_iter().collect();
        while s.len() > max {
            s.pop();
        }
        s
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            coordinate(),
            prop::collection::vec("/ip4/[0-9.]{7,15}/tcp/[0-9]{1,5}", 0..4),
            text(20),
            text(10),
            any::<u64>()
        )
            .prop_map(|(coordinate, addrs, name, version, started_ms)| Body::HeyThere(
                pb::HeyThere { coordinate, addrs, name, version, started_ms }
            )),
        (coordinate(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>())
            .prop_map(
                |(coordinate, uptime_s, restarts, barrio, connected, flags)| Body::Newspaper(
                    pb::Newspaper { coordinate, uptime_s, restarts, barrio, connected, flags }
                )
            ),
        text(40).prop_map(|reason| Body::Chau(pb::Chau { reason })),
        prop::collection::vec(
            (key32(), any::<bool>(), any::<u32>(), 0u32..=1000, any::<u32>()),
            0..8
        )
        .prop_map(|es| {
            Body::Opinion(pb::Opinion {
                entries: es
                    .into_iter()
                    .enumerate()
                    // Subjects by prefix, as peers write them, and every other one by its
                    // whole key, as older peers did.
                    .map(|(i, (subject, online, restarts, q, rtt_us))| pb::OpinionEntry {
                        subject_prefix: if i % 2 == 0 {
                            u64::from_le_bytes(subject[..8].try_into().unwrap()) | 1
                        } else {
                            0
                        },
                        subject: if i % 2 == 0 { Bytes::new() } else { subject },
                        online,
                        restarts,
                        uptime_s: restarts / 2,
                        link_quality_permille: q,
                        rtt_us,
                        started_ms: u64::from(rtt_us) * 1_000,
                    })
                    .collect(),
            })
        }),
        (any::<u64>(), any::<u64>(), coordinate(), prop::collection::vec(finite(), 0..8)).prop_map(
            |(barrio, version, coordinate, health)| Body::BarrioSlot(pb::BarrioSlot {
                barrio,
                version,
                coordinate,
                health
            })
        ),
        ("[a-z/]{1,30}", prop::collection::vec(any::<u8>(), 0..600), text(12)).prop_map(
            |(topic, body, content_type)| {
                Body::Post(pb::Post { topic, body: body.into(), content_type })
            }
        ),
        (key32(), prop::collection::vec(any::<u8>(), 48..300), any::<u64>()).prop_map(
            |(to, body, expires_ms)| Body::Postcard(pb::Postcard {
                to,
                body: body.into(),
                expires_ms,
                ..Default::default()
            })
        ),
        key32().prop_map(|postcard_id| Body::PostcardReceipt(pb::PostcardReceipt {
            to: postcard_id.clone(),
            postcard_id,
            ..Default::default()
        })),
    ]
}

fn event() -> impl Strategy<Value = (u8, u64, Hlc, Body)> {
    (1u8..=255, 1u64..u64::MAX, 0..=NOW_MS, any::<u32>(), body())
        .prop_map(|(who, seq, ms, counter, body)| (who, seq, Hlc { ms, counter }, body))
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn sign_encode_decode_verify_round_trips((who, seq, hlc, body) in event()) {
        let id = Identity::from_seed([who; 32]);
        let stream = body_stream(&body);
        let signed = id.sign(stream, seq, hlc, body.clone()).unwrap();
        let got = Verifier::default().verify(signed.envelope().clone(), NOW_MS).unwrap();
        prop_assert_eq!(&got, &signed);
        prop_assert_eq!(got.body(), &body);
        prop_assert_eq!((got.author(), got.stream(), got.seq(), got.hlc()), (id.public(), stream, seq, hlc));
        prop_assert_eq!(got.stream().kind().is_some(), true);
    }

    #[test]
    fn tampering_with_any_byte_is_rejected((who, seq, hlc, body) in event(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let signed = Identity::from_seed([who; 32]).sign(body_stream(&body), seq, hlc, body).unwrap();
        let mut bytes = signed.envelope().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        let result = Verifier::default().verify(Bytes::from(bytes), NOW_MS);
        prop_assert!(result.is_err(), "byte {} ^ {:#04x} still verified", i, mask);
    }

    #[test]
    fn truncation_anywhere_is_rejected((who, seq, hlc, body) in event(), at in any::<prop::sample::Index>()) {
        let signed = Identity::from_seed([who; 32]).sign(body_stream(&body), seq, hlc, body).unwrap();
        let cut = at.index(signed.envelope().len());
        prop_assert!(Verifier::default().verify(signed.envelope().slice(..cut), NOW_MS).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let bytes = Bytes::from(bytes);
        let _ = Verifier::default().verify(bytes.clone(), NOW_MS);
        let _ = decode_frame(bytes.clone());
        let _ = Verifier::default().verify_fraud_proof(bytes);
    }
}

proptest! {
    // Each case verifies up to 40 signatures twice; fewer cases keep the suite fast.
    #![proptest_config(proptest_config(48))]

    #[test]
    fn batch_verification_agrees_with_single(n in 1usize..40, forged in prop::collection::btree_set(0usize..40, 0..6)) {
        let mut envs: Vec<Bytes> = (0..n)
            .map(|i| signed_post(&identity(i as u8 % 5 + 1), i as u64 + 1, "x").envelope().clone())
            .collect();
        for &i in forged.iter().filter(|&&i| i < n) {
            let mut b = envs[i].to_vec();
            let len = b.len();
            b[len - 1] ^= 0x11;
            envs[i] = Bytes::from(b);
        }
        let batch = Verifier::default().verify_batch(envs.clone(), NOW_MS);
        let mut single = Verifier::default();
        let want: Vec<_> = envs.into_iter().map(|e| single.verify(e, NOW_MS)).collect();
        prop_assert_eq!(batch, want);
    }
}

#[test]
fn the_stream_decides_the_kind_for_every_body() {
    // Every body the strategy can make signs into its own stream and nowhere else.
    let id = identity(1);
    let post = post("t", b"x");
    assert!(id.sign(Stream::Post, 1, hlc(), post.clone()).is_ok());
    for s in [
        Stream::HeyThere,
        Stream::Newspaper,
        Stream::Chau,
        Stream::Opinion,
        Stream::BarrioSlot,
        Stream::Postcard,
        Stream::PostcardReceipt,
    ] {
        assert!(id.sign(s, 1, hlc(), post.clone()).is_err(), "{s:?}");
    }
}
