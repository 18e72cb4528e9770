//! Anti-entropy (`crate::sync`): a crashed peer restarts from its store and catches up, an
//! idle overlay sends no version vectors, and vectors name members by salted fingerprint,
//! answered with only what they do not list. (An outage past the suspect timeout, caught up
//! by anti-entropy, is in `links.rs`.) Every test prints its seed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use vecino_gossip::{Config, Input};
use vecino_proto::{Identity, VerifiedEvent};

use common::{Ev, START, engine, frames_sent, identity, line, received, up};

#[test]
fn a_crashed_peer_restarts_from_its_store_and_catches_up() {
    let seed = 17;
    let mut net = line(4, seed, Config::default());
    net.run_for(Duration::from_secs(3));
    let mut posts = BTreeMap::new();
    for k in 0..5 {
        net.post(k % 2, "before");
        *posts.entry(net.ids[k % 2]).or_default() += 1;
    }
    net.run_for(Duration::from_secs(2));
    // Crash node 3: its neighbours' transports notice; posts continue without it.
    net.engines[3] = None;
    net.push(
        net.now + Duration::from_secs(1),
        2,
        Ev::Input(2, Input::LinkDown { peer: net.ids[3] }),
    );
    for _ in 0..5 {
        net.post(0, "while down");
        *posts.entry(net.ids[0]).or_default() += 1;
        net.run_for(Duration::from_millis(500));
    }
    net.start(3);
    net.connect(2, 3);
    net.run_for(Duration::from_secs(10));
    // Node 3 had delivered the first posts before the crash and got the rest after.
    let seqs: Vec<u64> =
        net.delivered[3].iter().filter(|(a, _)| *a == net.ids[0]).map(|x| x.1).collect();
    assert_eq!(seqs, (1..=posts[&net.ids[0]]).collect::<Vec<_>>(), "seed {seed}");
    assert_eq!(net.digests().len(), 1);
    // Its own seqs resumed, not restarted: a new post from node 3 is seq 1 of its post stream.
    net.post(3, "back");
    net.run_for(Duration::from_secs(3));
    assert!(net.delivered[0].iter().any(|(a, s)| *a == net.ids[3] && *s == 1));
}

#[test]
fn an_idle_overlay_costs_little() {
    // After convergence, an idle network only heartbeats, exchanges digests and the odd
    // newspaper: no version vectors, no events.
    let seed = 23;
    let mut net = line(8, seed, Config::default());
    net.run_for(Duration::from_secs(30));
    let before: Vec<_> = (0..8).map(|i| net.engine(i).stats().queued.clone()).collect();
    net.run_for(Duration::from_secs(120));
    let mut total: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (i, b) in before.iter().enumerate() {
        for (k, (n, bytes)) in &net.engine(i).stats().queued {
            let (n0, b0) = b.get(k).copied().unwrap_or_default();
            let e = total.entry(k).or_default();
            e.0 += n - n0;
            e.1 += bytes - b0;
        }
    }
    eprintln!("idle 120 s, 8 peers: {total:?}");
    let bytes: u64 = total.values().map(|(_, b)| b).sum();
    let kbps = bytes as f64 * 8.0 / 120.0 / 8.0 / 1e3;
    eprintln!("queued per peer: {kbps:.2} kbit/s");
    assert_eq!(total.get("version_vector").map_or(0, |x| x.0), 0, "seed {seed}: {total:?}");
}

/// Version vectors name members by fingerprint under a salt drawn per vector (11 bytes a
/// head instead of 40): a peer's own vector lists its members that way, and a pull answered
/// from one carries only the members it does not list. A fingerprint the answerer cannot
/// resolve is a member it lacks: it replies with its own vector (the control: none without).
#[test]
fn vectors_name_members_by_fingerprint_and_answers_carry_only_what_is_not_listed() {
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 21;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let (x, y, z) = (identity(seed, 3), identity(seed, 4), identity(seed, 5));
    let hlc = vecino_proto::Hlc { ms: START.as_millis(), counter: 0 };
    let hey = |who: &Identity| {
        let body = Body::HeyThere(pb::HeyThere { name: "m".into(), ..Default::default() });
        who.sign(Stream::HeyThere, 1, hlc, body).expect("sign")
    };
    let (hx, hy) = (hey(&x), hey(&y));
    let events = pb::Events {
        envelopes: vec![hx.envelope().clone(), hy.envelope().clone()],
        sync: false,
        hops: None,
        trail: Vec::new(),
        detours: None,
        copies: None,
    };
    let salt = 0x5eed_u64;
    let head = |who: &Identity| pb::MemberHead {
        member: who.public().fingerprint(salt),
        stream: Stream::HeyThere as i32,
        seq: 1,
    };
    let at = |ms: u64| START + Duration::from_millis(ms);
    for unknown in [false, true] {
        let mut members = vec![head(&x)];
        if unknown {
            members.push(head(&z)); // z: never heard of here
        }
        let pull = pb::VersionVector {
            presence_only: true,
            members,
            member_salt: salt,
            ..Default::default()
        };
        let inputs = vec![
            (START, Input::Start),
            (START, up(c)),
            (at(100), received(c, 1, Kind::Events(events.clone()))),
            (at(200), up(b)),
            (at(300), received(b, 1, Kind::VersionVector(pull))),
        ];
        let mut e = engine(seed, Config::default());
        let sent = frames_sent(&mut e, inputs, at(1_000));
        let to_b: Vec<&Kind> = sent.iter().filter(|(t, _)| *t == b).map(|(_, k)| k).collect();
        // Its own vector to the new neighbour: members by fingerprint, no 32-byte keys.
        let vector = to_b
            .iter()
            .find_map(|k| match k {
                Kind::VersionVector(v) if !v.reply => Some(v),
                _ => None,
            })
            .expect("a vector on the new link");
        assert!(vector.heads.is_empty(), "seed {seed}: no keyed heads (no posts here)");
        for who in [&x, &y] {
            let fp = who.public().fingerprint(vector.member_salt);
            assert!(vector.members.iter().any(|m| m.member == fp), "seed {seed}: lists members");
        }
        let answered = |ev: &VerifiedEvent| {
            to_b.iter().any(|k| {
                matches!(k, Kind::Events(evs) if evs.sync && evs.envelopes.contains(ev.envelope()))
            })
        };
        assert!(answered(&hy), "seed {seed}: the member not listed is sent");
        assert!(!answered(&hx), "seed {seed}: the member listed is not");
        let replied = to_b.iter().any(|k| matches!(k, Kind::VersionVector(v) if v.reply));
        assert_eq!(replied, unknown, "seed {seed}: a reply vector iff a member was unresolved");
    }
}
