//! Membership (`crate::membership`): peers learn each other by gossip; and the fisheye
//! scope: a fisheye fleet's posts share one tree, a refused presence mutes its membership
//! slot on the link, a neighbour or peer without a radius is pushed no members and pulls
//! them, and a fisheye peer relays presence on two eager links only. Every test prints its
//! seed.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{Config, Engine, Input, Time};
use vecino_proto::AuthorKey;

use common::{
    ONE_WAY, START, engine, events, frames_sent, frames_sent_answering, identity, line, post_by,
    pushed, received, sent_to, up,
};

#[test]
fn peers_learn_each_other_by_gossip_and_converge() {
    for seed in [1, 2, 3] {
        let mut net = line(8, seed, Config::default());
        net.run_for(Duration::from_secs(10));
        for i in 0..8 {
            assert_eq!(net.engine(i).member_count(), 7, "seed {seed}: node {i}");
        }
        assert_eq!(net.digests().len(), 1, "seed {seed}: digests differ");
    }
}

/// Fisheye from the start at `k` members, with no landmarks.
fn fisheye_from_start(k: usize) -> Config {
    Config {
        fisheye_members: k,
        fisheye_from_start: true,
        fisheye_landmarks: 0,
        ..Config::default()
    }
}

/// In a fisheye fleet posts travel on one tree shared by every author (their own trees are
/// pruned only inside their balls): a post pushed twice prunes the shared tree (slot
/// 2 × `TREE_SLOTS`) on the second link, and another author's post is then announced there,
/// not pushed. With full membership (the control) the duplicate prunes the first author's
/// tree only and the other author's post is still pushed.
#[test]
fn in_a_fisheye_fleet_a_duplicate_post_prunes_the_tree_all_posts_share() {
    use vecino_proto::limits::TREE_SLOTS;
    use vecino_proto::pb::frame::Kind;
    let seed = 21;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let (x, y) = (identity(seed, 3), identity(seed, 4));
    let slot = |k: &AuthorKey| {
        usize::from(u16::from_le_bytes([k.as_bytes()[0], k.as_bytes()[1]])) % TREE_SLOTS
    };
    assert_ne!(slot(&x.public()), slot(&y.public()), "seed {seed}: pick other authors");
    let (px, py) = (post_by(&x), post_by(&y));
    let at = |ms: u64| START + Duration::from_millis(ms);
    let run = |config: Config| {
        let mut e = engine(seed, config);
        let inputs = vec![
            (START, Input::Start),
            (START, up(b)),
            (START, up(c)),
            (at(100), received(b, 1, events(&px))),
            (at(120), received(c, 1, events(&px))),
            (at(300), received(b, 2, events(&py))),
        ];
        let sent = frames_sent(&mut e, inputs, at(400));
        let prune = sent.iter().find_map(|(to, k)| match k {
            Kind::Prune(p) if *to == c => Some(p.trees.clone()),
            _ => None,
        });
        let pushed_y = sent.iter().any(|(to, k)| {
            *to == c && matches!(k, Kind::Events(ev) if ev.envelopes.contains(py.envelope()))
        });
        (prune, pushed_y)
    };
    let shared = (2 * TREE_SLOTS) as u32;
    assert_eq!(run(fisheye_from_start(128)), (Some(vec![shared]), false), "seed {seed}");
    let own = slot(&x.public()) as u32;
    assert_eq!(run(Config::default()), (Some(vec![own]), true), "seed {seed}: control");
}

/// A fisheye peer that refuses a pushed presence answers with a prune of the author's
/// *membership slot* (`TREE_SLOTS` + its tree slot); a peer whose link is muted on that slot
/// neither pushes nor announces that author's presence and status there any more, while an
/// unmuted link still gets them (the control, so the test can fail).
#[test]
fn a_refused_presence_mutes_its_membership_slot_on_the_link() {
    use vecino_proto::limits::TREE_SLOTS;
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 18;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let far = identity(seed, 3);
    let slot = |k: &AuthorKey| {
        usize::from(u16::from_le_bytes([k.as_bytes()[0], k.as_bytes()[1]])) % TREE_SLOTS
    };
    let muted_slot = (TREE_SLOTS + slot(&far.public())) as u32;
    let hlc = vecino_proto::Hlc { ms: START.as_millis(), counter: 0 };
    let hey = Body::HeyThere(pb::HeyThere { name: "far".into(), ..Default::default() });
    let ev = far.sign(Stream::HeyThere, 1, hlc, hey).expect("sign");
    let push = |from: AuthorKey| pushed(from, &ev);
    let at = START + Duration::from_millis(300);
    let end = START + Duration::from_secs(2);

    // The refuser: fisheye from the start, no landmarks, its coordinate not settled.
    let config = fisheye_from_start(4);
    let mut e = engine(seed, config);
    let inputs = vec![(START, Input::Start), (START, up(b)), (at, push(b))];
    let sent = frames_sent(&mut e, inputs, end);
    let prunes = sent_to(&sent, b, |k| if let Kind::Prune(p) = k { Some(&p.trees) } else { None });
    assert_eq!(prunes, vec![&vec![muted_slot]], "seed {seed}: the refusal's prune");
    let counter = |e: &Engine<ChaCha8Rng>, name: &str| {
        e.counters_by_name().iter().find(|c| c.0 == name).map(|c| c.1)
    };
    assert_eq!(counter(&e, "membership_mutes"), Some(1));
    // Its coordinate is not settled: the refusal is counted as one it could not place.
    assert_eq!(counter(&e, "fisheye_refused"), Some(1), "seed {seed}");
    assert_eq!(counter(&e, "fisheye_refused_unplaced"), Some(1), "seed {seed}");
    assert_eq!(counter(&e, "fisheye_refused_edge"), Some(0), "seed {seed}");

    // The sender: full membership, links to b and c; the event comes from c.
    let carries = |sent: &[(AuthorKey, Kind)], to: AuthorKey| {
        sent.iter().any(|(t, k)| {
            *t == to
                && match k {
                    Kind::Events(evs) => evs.envelopes.contains(ev.envelope()),
                    Kind::Ihave(i) => {
                        i.prefixed.iter().any(|h| h.author_prefix == far.public().prefix())
                    }
                    _ => false,
                }
        })
    };
    let mute = received(b, 0, Kind::Prune(pb::Prune { trees: vec![muted_slot] }));
    let start = vec![(START, Input::Start), (START, up(b)), (START, up(c))];
    for muted in [false, true] {
        let mut inputs = start.clone();
        if muted {
            inputs.push((START + Duration::from_millis(100), mute.clone()));
        }
        inputs.push((at, push(c)));
        let me = identity(seed, 101);
        let mut s =
            Engine::new(me, Config::default(), ChaCha8Rng::seed_from_u64(seed), START, vec![]);
        let sent = frames_sent(&mut s, inputs, end);
        assert_eq!(carries(&sent, b), !muted, "seed {seed}: muted {muted}");
    }
}

/// A neighbour that is a fisheye peer with no radius yet (its pong says 0) is pushed and
/// announced no members, since every neighbour would push it every member it holds; its pull
/// (a presence-only version vector) is answered with them. A neighbour with full membership
/// (no scope on its pong) is pushed the same newspaper: the control.
#[test]
fn a_neighbour_with_no_radius_is_not_pushed_members_but_its_pull_is_answered() {
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 19;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let far = identity(seed, 3);
    let settled = |x: f32| pb::Coordinate {
        vec: vec![x; vecino_coords::DEFAULT_DIMENSIONS],
        height: 1.0,
        error: 0.1,
        adjustment: 0.0,
    };
    let hlc = vecino_proto::Hlc { ms: START.as_millis(), counter: 0 };
    let paper =
        Body::Newspaper(pb::Newspaper { coordinate: Some(settled(30.0)), ..Default::default() });
    let ev = far.sign(Stream::Newspaper, 1, hlc, paper).expect("sign");
    let push = pushed(c, &ev);
    let pull = received(
        b,
        1,
        Kind::VersionVector(pb::VersionVector {
            heads: Vec::new(),
            partial: false,
            reply: false,
            presence_only: true,
            ..Default::default()
        }),
    );
    let carries = |sent: &[(AuthorKey, Kind)], sync: bool| {
        sent.iter().any(|(t, k)| {
            *t == b
                && match k {
                    Kind::Events(evs) => evs.sync == sync && evs.envelopes.contains(ev.envelope()),
                    Kind::Ihave(i) => {
                        !sync && i.prefixed.iter().any(|h| h.author_prefix == far.public().prefix())
                    }
                    _ => false,
                }
        })
    };
    let pushed_at = START + Duration::from_secs(6);
    let pulled_at = START + Duration::from_secs(8);
    let end = START + Duration::from_secs(10);
    for radiusless in [true, false] {
        // b answers every ping, its pong carrying a settled coordinate and its scope.
        let scope = radiusless.then_some(0);
        let answer = |now: Time, to: AuthorKey, k: &Kind| match k {
            Kind::Ping(p) if to == b => Some((
                now + ONE_WAY * 2,
                received(
                    b,
                    0,
                    Kind::Pong(pb::Pong {
                        nonce: p.nonce,
                        coordinate: Some(settled(31.0)),
                        fisheye_radius_us: scope,
                        slow: false,
                    }),
                ),
            )),
            _ => None,
        };
        let inputs =
            vec![(START, Input::Start), (START, up(b)), (START, up(c)), (pushed_at, push.clone())];
        let mut e = engine(seed, Config::default());
        let mut sent = frames_sent_answering(&mut e, inputs, pulled_at, answer);
        assert_eq!(
            carries(&sent, false),
            !radiusless,
            "seed {seed}: pushed, no radius {radiusless}"
        );
        if radiusless {
            sent = frames_sent(&mut e, vec![(pulled_at, pull.clone())], end);
            assert!(carries(&sent, true), "seed {seed}: the pull is answered with the member");
        }
    }
}

/// A fisheye peer whose coordinate settled but that cannot draw a radius yet (it holds fewer
/// than K settled members) is pushed no members, so it pulls: a presence-only vector to one
/// connected neighbour at a time, nearest by RTT first, then the next, every
/// `PULL_RADIUSLESS` (10 s).
#[test]
fn a_peer_with_no_radius_pulls_one_neighbour_at_a_time_nearest_first() {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 22;
    eprintln!("seed {seed}");
    let peers: Vec<AuthorKey> = (1..=3).map(|i| identity(seed, i).public()).collect();
    // Neighbour i answers pings after (i + 1) × 10 ms, with a settled coordinate.
    let rtt = |to: AuthorKey| {
        let i = peers.iter().position(|p| *p == to).expect("a neighbour");
        Duration::from_millis(10 * (i as u64 + 2))
    };
    let coordinate = |to: AuthorKey| pb::Coordinate {
        vec: vec![rtt(to).as_secs_f32() * 1e3; vecino_coords::DEFAULT_DIMENSIONS],
        height: 0.001,
        error: 0.05,
        adjustment: 0.0,
    };
    let answer = |now: Time, to: AuthorKey, k: &Kind| match k {
        Kind::Ping(p) => Some((
            now + rtt(to),
            received(
                to,
                0,
                Kind::Pong(pb::Pong {
                    nonce: p.nonce,
                    coordinate: Some(coordinate(to)),
                    fisheye_radius_us: None,
                    slow: false,
                }),
            ),
        )),
        // Whatever else is sent is heard back from: no link turns suspected for want of
        // frames from its end (which would skip its turn; nothing else answers here).
        _ => Some((now + rtt(to), received(to, 0, Kind::Ack(pb::Ack::default())))),
    };
    let config = fisheye_from_start(8);
    let mut e = engine(seed, config);
    let mut inputs = vec![(START, Input::Start)];
    inputs.extend(peers.iter().map(|p| (START, up(*p))));
    let end = START + Duration::from_secs(300);
    // Each pull once (nothing is acknowledged here, so frames are retransmitted: a vector's
    // salt names it), with the time it was first handed over.
    let mut pulls: Vec<(Time, AuthorKey)> = Vec::new();
    let mut salts = BTreeSet::new();
    let sent = frames_sent_answering(&mut e, inputs, end, |t, to, k| {
        if let Kind::VersionVector(v) = k
            && v.presence_only
            && !v.reply
            && salts.insert(v.member_salt)
        {
            pulls.push((t, to));
        }
        answer(t, to, k)
    });
    assert!(!sent.is_empty());
    // Two rounds.
    assert!(pulls.len() >= 6, "seed {seed}: {} pulls", pulls.len());
    let order: Vec<AuthorKey> = pulls.iter().take(6).map(|p| p.1).collect();
    let expected: Vec<AuthorKey> = peers.iter().copied().cycle().take(6).collect();
    assert_eq!(order, expected, "seed {seed}: one at a time, nearest first, in turn");
    for w in pulls.windows(2) {
        let gap = w[1].0.saturating_since(w[0].0);
        assert!(gap >= Duration::from_secs(10), "seed {seed}: pulls {gap:?} apart");
    }
}

/// A fisheye peer relays a member's presence on at most two of the author's eager tree links
/// and announces it on the others (a member's first events flood its ball on young trees);
/// a full-membership peer pushes it on every eager link (the control). The author's own link
/// counts as any other (leaving it out cost members known: 0.921 against 0.948 in the sim
/// test `a_fleet_told_it_is_large_joins_without_a_flood_and_is_not_sent_what_it_refuses`).
#[test]
fn a_fisheye_peer_relays_presence_on_two_eager_links_and_announces_it_on_the_rest() {
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 20;
    eprintln!("seed {seed}");
    let author = identity(seed, 1);
    let from = identity(seed, 2).public();
    let others: Vec<AuthorKey> = (3..7).map(|i| identity(seed, i).public()).collect();
    let hlc = vecino_proto::Hlc { ms: START.as_millis(), counter: 0 };
    let paper = Body::Newspaper(pb::Newspaper::default());
    let ev = author.sign(Stream::Newspaper, 1, hlc, paper).expect("sign");
    let push = pushed(from, &ev);
    let at = START + Duration::from_millis(300);
    let end = START + Duration::from_secs(2);
    for fisheye in [true, false] {
        // The author is a neighbour too, so a fisheye peer keeps its events from the start.
        let mut inputs =
            vec![(START, Input::Start), (START, up(author.public())), (START, up(from))];
        inputs.extend(others.iter().map(|p| (START, up(*p))));
        inputs.push((at, push.clone()));
        let config = Config {
            fisheye_members: if fisheye { 4 } else { 0 },
            fisheye_from_start: fisheye,
            ..Config::default()
        };
        let mut e = engine(seed, config);
        let sent = frames_sent(&mut e, inputs, end);
        // Every link but the one it came from: the author's too.
        let targets: Vec<AuthorKey> = others.iter().copied().chain([author.public()]).collect();
        let pushed = targets
            .iter()
            .filter(|p| {
                sent.iter().any(|(to, k)| {
                    to == *p
                        && matches!(k, Kind::Events(evs) if evs.envelopes.contains(ev.envelope()))
                })
            })
            .count();
        let announced = targets
            .iter()
            .filter(|p| {
                sent.iter().any(|(to, k)| {
                    to == *p
                        && matches!(k, Kind::Ihave(i) if i.prefixed.iter().any(|h| h.author_prefix == author.public().prefix()))
                })
            })
            .count();
        let (want_pushed, want_announced) = if fisheye { (2, 3) } else { (5, 0) };
        assert_eq!(
            (pushed, announced),
            (want_pushed, want_announced),
            "seed {seed}: fisheye {fisheye}"
        );
    }
}
