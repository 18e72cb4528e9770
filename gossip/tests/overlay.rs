//! The overlay (`crate::overlay`): a hub drops its surplus links with a bye and they stay
//! dropped, and a peer at `max_links` refuses newcomers with one bye. Every test prints its
//! seed.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{Config, Engine, Input, LinkStatus, Output, Protocol};
use vecino_proto::{AuthorKey, Bytes};

use common::{Net, START, identity, up};

/// A hub with more links than its views need drops the surplus with a bye: the dropped
/// neighbour closes the link and does not dial the hub back (before the bye, it took the
/// closed transport for a fade and redialled at once, and the trim started over).
#[test]
fn a_surplus_link_is_dropped_with_a_bye_and_stays_dropped() {
    let seed = 13;
    eprintln!("seed {seed}");
    let n = 16;
    // A view of 6: the hub's 15 links are over twice that, so it trims.
    let mut net = Net::new(n, seed, Config { active_view: 6, ..Config::default() });
    for i in 1..n {
        net.connect(0, i);
    }
    let links_of = |net: &Net, i: usize| -> BTreeSet<AuthorKey> {
        net.engine(i).links().into_iter().map(|l| l.peer).collect()
    };
    net.run_for(Duration::from_secs(5));
    assert_eq!(links_of(&net, 0).len(), n - 1, "seed {seed}");
    // Trims start once links are a minute old; one per overlay round.
    net.run_for(Duration::from_secs(120));
    let hub = links_of(&net, 0);
    let dropped: Vec<usize> = (1..n).filter(|&i| !hub.contains(&net.ids[i])).collect();
    assert!(!dropped.is_empty(), "seed {seed}: the hub kept all {} links", hub.len());
    assert!(hub.len() <= 12, "seed {seed}: the hub kept {} links", hub.len());
    // Each dropped link was said bye on by one of its ends (a crowded neighbour may drop
    // its link to the hub too).
    let byes: u64 =
        (0..n).map(|i| net.engine(i).stats().queued.get("bye").map_or(0, |b| b.0)).sum();
    assert!(byes >= dropped.len() as u64, "seed {seed}: {byes} byes, {} dropped", dropped.len());
    // The dropped ones forgot the hub and did not dial it back.
    let hub_id = net.ids[0];
    for &i in &dropped {
        assert!(!links_of(&net, i).contains(&hub_id), "seed {seed}: peer {i} kept the hub");
    }
    let relinked = net.links.iter().filter(|(_, i, p, s)| {
        *i == 0 && *s == LinkStatus::Connected && { dropped.iter().any(|&d| net.ids[d] == *p) }
    });
    let before = relinked.count();
    net.run_for(Duration::from_secs(60));
    let hub = links_of(&net, 0);
    for &i in &dropped {
        assert!(!hub.contains(&net.ids[i]), "seed {seed}: peer {i} came back");
    }
    let after = net
        .links
        .iter()
        .filter(|(_, i, p, s)| {
            *i == 0 && *s == LinkStatus::Connected && dropped.iter().any(|&d| net.ids[d] == *p)
        })
        .count();
    assert_eq!(before, after, "seed {seed}: dropped links reconnected");
    // Everyone still knows everyone: the overlay stayed connected.
    for i in 0..n {
        assert_eq!(net.engine(i).member_count(), n - 1, "seed {seed}: peer {i}");
    }
}

/// A peer at its `max_links` tells a newcomer so with a bye outside any link ("full": try
/// again in 30 s), both when the newcomer's transport comes up and when its frames arrive
/// unannounced, once: the newcomer then forgets the link instead of pushing into a link the
/// other end does not hold and dumping that backlog as duplicates when a slot frees up. Its
/// later frames are dropped.
#[test]
fn a_peer_without_room_refuses_newcomers_with_one_bye() {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 18;
    eprintln!("seed {seed}");
    let me = identity(seed, 100);
    let (a, b, c) =
        (identity(seed, 1).public(), identity(seed, 2).public(), identity(seed, 3).public());
    let config = Config { max_links: 1, ..Config::default() };
    let mut e = Engine::new(me, config, ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let _ = e.handle(START, Input::Start).count();
    let _ = e.handle(START, up(a)).count();
    let byes_to = |outs: &[Output], to: AuthorKey| {
        outs.iter()
            .filter(|o| match o {
                Output::Send { to: t, frame, .. } if *t == to => matches!(
                    vecino_proto::decode_frame(frame.clone()).map(|f| f.kind),
                    Ok(Some(Kind::Bye(pb::Bye { reason: 2 })))
                ),
                _ => false,
            })
            .count()
    };
    let disconnects = |outs: &[Output], to: AuthorKey| {
        outs.iter().filter(|o| matches!(o, Output::Disconnect { peer } if *peer == to)).count()
    };
    let ping = Bytes::from(vecino_proto::encode_frame(&pb::Frame {
        link_seq: 0,
        link_floor: 0,
        kind: Some(Kind::Ping(pb::Ping { nonce: 7, slow: false })),
    }));
    // `a` speaks the protocol: a neighbour, not a stranger a newcomer may displace.
    let _ = e.handle(START, Input::Received { from: a, frame: ping.clone() }).count();
    // Frames from a peer it holds no link for.
    let outs: Vec<Output> =
        e.handle(START, Input::Received { from: b, frame: ping.clone() }).collect();
    assert_eq!(byes_to(&outs, b), 1, "seed {seed}: {outs:?}");
    let outs: Vec<Output> = e.handle(START, Input::Received { from: b, frame: ping }).collect();
    assert_eq!(byes_to(&outs, b), 0, "seed {seed}: told twice");
    assert_eq!(e.stats().rejected.get("after_bye"), Some(&1), "seed {seed}");
    // A transport that comes up: a bye, and the neighbour closes it (not a disconnect here,
    // which would drop the bye with the connection).
    let outs: Vec<Output> = e.handle(START, up(c)).collect();
    assert_eq!((byes_to(&outs, c), disconnects(&outs, c)), (1, 0), "seed {seed}: {outs:?}");
    assert_eq!(e.stats().rejected.get("too_many_links"), Some(&2), "seed {seed}");
    let linked: Vec<AuthorKey> = e.links().into_iter().map(|l| l.peer).collect();
    assert_eq!(linked, vec![a], "seed {seed}");
}
