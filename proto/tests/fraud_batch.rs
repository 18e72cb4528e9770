//! Equivocation proofs, batch verification with bisection, the wire size of a newspaper, and
//! frames put together as they leave.

mod common;

use common::*;
use vecino_proto::pb::{self, Stream};
use vecino_proto::{
    Bytes, FraudProof, FraudProofError, Reason, Verifier, VerifyError, decode_frame, encode_frame,
    frame_with_seq,
};

#[test]
fn newspaper_envelope_fits_in_200_bytes() {
    let ev = signed_newspaper(&identity(1), 123_456);
    let size = ev.envelope().len();
    println!("signed newspaper envelope: {size} bytes");
    assert!(size <= 200, "newspaper envelope is {size} bytes");
}

#[test]
fn equivocation_yields_a_verifiable_canonical_proof() {
    let id = identity(4);
    let a = signed_post(&id, 7, "the bridge is open");
    let b = signed_post(&id, 7, "the bridge is closed");
    let p1 = FraudProof::from_pair(&a, &b).expect("equivocation");
    let p2 = FraudProof::from_pair(&b, &a).expect("equivocation");
    assert_eq!(p1, p2, "order of observation must not matter");
    assert_eq!(p1.encode(), p2.encode());
    assert_eq!((p1.author(), p1.stream(), p1.seq()), (id.public(), Stream::Post, 7));

    let mut v = Verifier::default();
    let back = v.verify_fraud_proof(Bytes::from(p1.encode())).unwrap();
    assert_eq!(back, p1);
}

#[test]
fn non_equivocations_are_not_proofs() {
    let id = identity(4);
    let a = signed_post(&id, 7, "x");
    assert!(FraudProof::from_pair(&a, &a).is_none(), "same event twice");
    assert!(FraudProof::from_pair(&a, &signed_post(&id, 8, "y")).is_none(), "different seq");
    assert!(
        FraudProof::from_pair(&a, &signed_post(&identity(5), 7, "y")).is_none(),
        "different author"
    );
    let n = signed_newspaper(&id, 7);
    assert!(FraudProof::from_pair(&a, &n).is_none(), "different stream");
}

#[test]
fn forged_or_reordered_proofs_are_rejected() {
    let id = identity(4);
    let a = signed_post(&id, 7, "one");
    let b = signed_post(&id, 7, "two");
    let proof = FraudProof::from_pair(&a, &b).unwrap();
    let (first, second) = (proof.first().envelope().clone(), proof.second().envelope().clone());
    let encode = |x: &Bytes, y: &Bytes| {
        let mut buf = Vec::new();
        prost::encoding::bytes::encode(1, x, &mut buf);
        prost::encoding::bytes::encode(2, y, &mut buf);
        Bytes::from(buf)
    };
    let mut v = Verifier::default();
    assert_eq!(v.verify_fraud_proof(encode(&second, &first)), Err(FraudProofError::NotCanonical));
    assert!(matches!(
        v.verify_fraud_proof(encode(&first, &first)),
        Err(FraudProofError::NotEquivocation(_))
    ));
    // Tamper with the second envelope's signature.
    let mut forged = second.to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert!(matches!(
        v.verify_fraud_proof(encode(&first, &Bytes::from(forged))),
        Err(FraudProofError::Envelope { which: "second", error: VerifyError::BadSignature })
    ));
    assert!(matches!(
        v.verify_fraud_proof(Bytes::from_static(&[0x0a, 0x05])),
        Err(FraudProofError::Malformed(_))
    ));
}

fn batch_of(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            signed_post(&identity((i % 7) as u8 + 1), i as u64 + 1, &format!("message {i}"))
                .envelope()
                .clone()
        })
        .collect()
}

fn forge(env: &Bytes) -> Bytes {
    let mut b = env.to_vec();
    let n = b.len();
    b[n - 5] ^= 0x40; // inside the signature
    Bytes::from(b)
}

#[test]
fn batch_agrees_with_single_verification() {
    for (n, forged) in [
        (1, vec![]),
        (1, vec![0]),
        (64, vec![]),
        (64, vec![17]),
        (64, vec![0, 63]),
        (33, vec![1, 2, 3, 30]),
        (8, (0..8).collect()),
    ] {
        let mut envs = batch_of(n);
        for &i in &forged {
            envs[i] = forge(&envs[i]);
        }
        let mut batch = Verifier::default();
        let got = batch.verify_batch(envs.clone(), NOW_MS);
        let mut single = Verifier::default();
        let want: Vec<_> = envs.into_iter().map(|e| single.verify(e, NOW_MS)).collect();
        assert_eq!(got, want, "n={n} forged={forged:?}");
        assert_eq!(batch.rejected().get(Reason::BadSignature), forged.len() as u64);
        assert_eq!(batch.accepted(), (n - forged.len()) as u64);
    }
}

#[test]
fn batch_keeps_precheck_failures_in_place() {
    let mut envs = batch_of(10);
    envs[3] = Bytes::from_static(b"garbage");
    envs[6] = forge(&envs[6]);
    let results = Verifier::default().verify_batch(envs, NOW_MS);
    assert!(matches!(results[3], Err(VerifyError::Malformed { .. } | VerifyError::Truncated(_))));
    assert_eq!(results[6], Err(VerifyError::BadSignature));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 8);
    assert!(Verifier::default().verify_batch(Vec::new(), NOW_MS).is_empty());
}

#[test]
fn frames_round_trip_and_bad_frames_are_typed() {
    let env = signed_post(&identity(2), 1, "hi").envelope().clone();
    let frame = pb::Frame {
        link_seq: 9,
        link_floor: 0,
        kind: Some(pb::frame::Kind::Events(pb::Events {
            envelopes: vec![env],
            sync: false,
            hops: None,
            trail: Vec::new(),
            detours: None,
            copies: None,
        })),
    };
    let bytes = Bytes::from(encode_frame(&frame));
    assert_eq!(decode_frame(bytes.clone()).unwrap(), frame);
    assert!(decode_frame(bytes.slice(..bytes.len() - 1)).is_err());
    assert_eq!(
        decode_frame(Bytes::from_static(&[0x08, 0x01])).unwrap_err().reason(),
        Reason::Malformed
    );
    let too_many_acks = pb::Frame {
        link_seq: 0,
        link_floor: 0,
        kind: Some(pb::frame::Kind::Ack(pb::Ack {
            cumulative: 1,
            runs: vec![1; 4000].into(),
            refused: Vec::new(),
        })),
    };
    assert_eq!(
        decode_frame(encode_frame(&too_many_acks).into()).unwrap_err().reason(),
        Reason::LimitExceeded
    );
}

/// A frame whose kind was encoded alone, with its seq and floor put in front as it leaves,
/// decodes as the frame with both set.
#[test]
fn seq_and_floor_put_in_front_decode_as_one_frame() {
    let kind = Some(pb::frame::Kind::Ping(pb::Ping { nonce: 7, slow: false }));
    let body = encode_frame(&pb::Frame { link_seq: 0, link_floor: 0, kind: kind.clone() });
    for (seq, floor) in [(0, 0), (1, 1), (300, 2), (u64::MAX, u64::MAX)] {
        let frame = decode_frame(frame_with_seq(seq, floor, &body).into()).expect("decodes");
        assert_eq!(frame, pb::Frame { link_seq: seq, link_floor: floor, kind: kind.clone() });
    }
}
