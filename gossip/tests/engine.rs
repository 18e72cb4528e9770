//! Engine behaviour on a tiny in-test network (`common::Net`) and on one engine fed by hand.
//! Every test prints its seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{
    AppEvent, Command, Config, Engine, Input, LinkStatus, Output, Protocol, StoreOp, Time,
};
use vecino_proto::{AuthorKey, Bytes, Identity, VerifiedEvent};

use common::{
    Ev, Net, ONE_WAY, START, engine, events, frames_sent, frames_sent_answering, identity, line,
    post_by, pushed, received, sent_to, up,
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

#[test]
fn posts_reach_everyone_once_in_order() {
    let seed = 7;
    let mut net = line(8, seed, Config::default());
    net.run_for(Duration::from_secs(5));
    let count = |net: &Net, f: fn(&vecino_gossip::EngineStats) -> u64| -> u64 {
        (0..8).map(|i| f(net.engine(i).stats())).sum()
    };
    let mut posts = BTreeMap::new();
    let mut before = (0, 0);
    for k in 0..20 {
        let author = k % 3;
        if k == 3 {
            before = (count(&net, |s| s.events_new), count(&net, |s| s.events_duplicate));
        }
        net.post(author, &format!("post {k}"));
        *posts.entry(net.ids[author]).or_default() += 1;
        net.run_for(Duration::from_millis(150));
    }
    net.run_for(Duration::from_secs(5));
    net.assert_all_delivered(&posts);
    // Each author's first post runs on its own tree, young: the overlay dialled links after
    // its presence went out, and each such link carries one duplicate, which prunes it from
    // that tree. From then on every node gets each post once.
    let news = count(&net, |s| s.events_new) - before.0;
    let dups = count(&net, |s| s.events_duplicate) - before.1;
    eprintln!("after each author's first post: {news} new events, {dups} duplicates");
    assert!(news >= 17 * 7, "seed {seed}: {news} new events");
    assert!(dups * 20 < news, "seed {seed}: {dups} duplicates for {news} new events");
}

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
fn garbage_frames_are_counted_and_ignored() {
    let mut net = line(2, 5, Config::default());
    net.run_for(Duration::from_secs(2));
    let from = net.ids[1];
    net.feed(0, Input::Received { from, frame: Bytes::from_static(&[0xff, 0xff, 0xff]) });
    net.feed(0, Input::Received { from, frame: Bytes::from(vec![0u8; 2 << 20]) });
    let rejected = &net.engine(0).stats().rejected;
    assert_eq!(
        rejected.get("malformed").copied().unwrap_or(0)
            + rejected.get("truncated").copied().unwrap_or(0),
        1,
        "{rejected:?}"
    );
    assert_eq!(rejected.get("too_large"), Some(&1));
    net.post(1, "still works");
    net.run_for(Duration::from_secs(2));
    assert!(net.delivered[0].iter().any(|(a, _)| *a == from));
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

/// One engine (optimisation threshold 3) fed by hand: neighbour A pushes an event eagerly at
/// hop count `eager_hops`, lazy neighbour B announces it at hop count 0 (B is its author's
/// neighbour), before or after the push. Returns the tree swaps counted, whether B was sent an event-less graft and A a
/// prune, and the final eager flags of A and B.
fn swap_case(announce_first: bool, eager_hops: u32) -> (u64, bool, bool, bool, bool) {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 11;
    eprintln!("seed {seed}");
    let (me, a, b, x) =
        (identity(seed, 0), identity(seed, 1), identity(seed, 2), identity(seed, 3));
    let (a, b) = (a.public(), b.public());
    // The event: a post by X, taken from X's own engine.
    let mut author =
        Engine::new(x, Config::default(), ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let _ = author.handle(START, Input::Start).count();
    let cmd = Command::Post { topic: "t".into(), body: Bytes::from_static(b"hello") };
    let ev = author
        .handle(START, Input::Command { id: 0, cmd })
        .find_map(|o| match o {
            Output::Persist(vecino_gossip::StoreOp::Put(ev)) if ev.seq() == 1 => Some(ev),
            _ => None,
        })
        .expect("the author stores its post");
    let frame = |kind: Kind| {
        Bytes::from(vecino_proto::encode_frame(&pb::Frame {
            link_seq: 0,
            link_floor: 0,
            kind: Some(kind),
        }))
    };
    let push = frame(Kind::Events(pb::Events {
        envelopes: vec![ev.envelope().clone()],
        sync: false,
        hops: Some(eager_hops),
    }));
    let ihave = frame(Kind::Ihave(pb::IHave {
        prefixed: vec![pb::PrefixHead {
            author_prefix: ev.author().prefix(),
            stream: ev.stream() as i32,
            seq: ev.seq(),
            hops: Some(0),
        }],
        ..Default::default()
    }));

    let config = Config { optimization_threshold: 3, ..Config::default() };
    let mut e = Engine::new(me, config, ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let mut now = START;
    let mut outs: Vec<Output> = Vec::new();
    let mut feed = |e: &mut Engine<ChaCha8Rng>, now: Time, input: Input| {
        outs.extend(e.handle(now, input));
    };
    feed(&mut e, now, Input::Start);
    for peer in [a, b] {
        feed(&mut e, now, up(peer));
    }
    // B pruned the link: it is lazy.
    feed(
        &mut e,
        now,
        Input::Received { from: b, frame: frame(Kind::Prune(pb::Prune { trees: vec![] })) },
    );
    now = now + Duration::from_millis(10);
    let (first, second) =
        if announce_first { ((b, ihave.clone()), (a, push)) } else { ((a, push), (b, ihave)) };
    feed(&mut e, now, Input::Received { from: first.0, frame: first.1 });
    now = now + Duration::from_millis(10);
    feed(&mut e, now, Input::Received { from: second.0, frame: second.1 });

    let sent = |to: AuthorKey, want: fn(&Kind) -> bool| {
        outs.iter().any(|o| match o {
            Output::Send { to: t, frame, .. } if *t == to => {
                vecino_proto::decode_frame(frame.clone())
                    .ok()
                    .and_then(|f| f.kind)
                    .is_some_and(|k| want(&k))
            }
            _ => false,
        })
    };
    let graft_b =
        sent(b, |k| matches!(k, Kind::Graft(g) if g.heads.is_empty() && g.prefixed.is_empty()));
    let prune_a = sent(a, |k| matches!(k, Kind::Prune(_)));
    let eager = |p: AuthorKey| e.eager_on(&p, &ev.author()) == Some(true);
    (e.stats().tree_swaps, graft_b, prune_a, eager(a), eager(b))
}

#[test]
fn a_much_shorter_lazy_path_replaces_the_eager_one() {
    // Plumtree §3.8: the announcement came first over a 1-hop lazy path, the event then down
    // a 6-hop eager one (threshold 3): swap.
    let (swaps, graft_b, prune_a, eager_a, eager_b) = swap_case(true, 5);
    assert_eq!(swaps, 1);
    assert!(graft_b && prune_a, "graft sent: {graft_b}, prune sent: {prune_a}");
    assert!(!eager_a && eager_b, "A eager: {eager_a}, B eager: {eager_b}");
    // Eager path 3 hops, lazy 1: within the threshold, the tree stays as it is; and an
    // announcement that comes after the event (the eager path was faster) never swaps.
    for (announce_first, eager_hops) in [(true, 2), (false, 2), (false, 5)] {
        let (swaps, graft_b, prune_a, eager_a, eager_b) = swap_case(announce_first, eager_hops);
        assert_eq!(swaps, 0, "announce first: {announce_first}, eager hops {eager_hops}");
        assert!(!graft_b && !prune_a && eager_a && !eager_b, "{announce_first} {eager_hops}");
    }
}

/// Prunes and grafts name tree slots: a prune of one author's slot turns only that tree lazy
/// on the link, one naming no slot turns every tree lazy (the single-tree meaning), a slot
/// out of range is counted and ignored, and a graft naming an event turns its author's tree
/// eager again. A membership slot (TREE_SLOTS + slot) mutes presence and status only.
#[test]
fn prunes_and_grafts_change_only_the_trees_they_name() {
    use vecino_proto::limits::TREE_SLOTS;
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 12;
    eprintln!("seed {seed}");
    let ids: Vec<Identity> = (0..8).map(|i| identity(seed, i)).collect();
    let me = identity(seed, 100);
    let b = ids[0].public();
    // Authors in different tree slots (the slot is the author key's first two bytes).
    let slot = |k: &AuthorKey| {
        usize::from(u16::from_le_bytes([k.as_bytes()[0], k.as_bytes()[1]])) % TREE_SLOTS
    };
    let (x, y) = (ids[1].public(), ids[2].public());
    assert_ne!(slot(&x), slot(&y), "seed {seed}: pick other authors");
    let frame = |kind: Kind| {
        Bytes::from(vecino_proto::encode_frame(&pb::Frame {
            link_seq: 0,
            link_floor: 0,
            kind: Some(kind),
        }))
    };
    let mut e = Engine::new(me, Config::default(), ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let _ = e.handle(START, Input::Start).count();
    let _ = e.handle(START, up(b)).count();
    let feed = |e: &mut Engine<ChaCha8Rng>, kind: Kind| {
        let _ = e.handle(START, Input::Received { from: b, frame: frame(kind) }).count();
    };
    assert_eq!((e.eager_on(&b, &x), e.eager_on(&b, &y)), (Some(true), Some(true)));

    let trees = vec![slot(&x) as u32];
    feed(&mut e, Kind::Prune(pb::Prune { trees }));
    assert_eq!((e.eager_on(&b, &x), e.eager_on(&b, &y)), (Some(false), Some(true)), "seed {seed}");

    // y's membership slot (muting its presence and status) leaves its posts' tree eager.
    let trees = vec![(TREE_SLOTS + slot(&y)) as u32];
    feed(&mut e, Kind::Prune(pb::Prune { trees }));
    assert_eq!(e.eager_on(&b, &y), Some(true), "seed {seed}: a membership slot pruned a tree");
    assert_eq!(e.stats().rejected.get("bad_tree"), None, "seed {seed}");

    let trees = vec![2 * TREE_SLOTS as u32 + 1, u32::MAX];
    feed(&mut e, Kind::Prune(pb::Prune { trees }));
    assert_eq!(e.stats().rejected.get("bad_tree"), Some(&2), "seed {seed}");
    assert_eq!(e.eager_on(&b, &y), Some(true), "seed {seed}: a bad slot changed a tree");

    let head = pb::StreamHead {
        author: Bytes::copy_from_slice(x.as_bytes()),
        stream: pb::Stream::Post as i32,
        seq: 1,
        hops: None,
    };
    feed(&mut e, Kind::Graft(pb::Graft { heads: vec![head], ..Default::default() }));
    assert_eq!(e.eager_on(&b, &x), Some(true), "seed {seed}: the graft named x's event");

    feed(&mut e, Kind::Prune(pb::Prune { trees: vec![] }));
    assert_eq!((e.eager_on(&b, &x), e.eager_on(&b, &y)), (Some(false), Some(false)), "seed {seed}");
    let view = e.links().into_iter().find(|l| l.peer == b).expect("link");
    assert!(!view.eager() && view.eager_trees == 0, "seed {seed}: {view:?}");
}

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

/// With `ihave_fanout`, an event is announced on that many of the links lazy for its tree
/// (chosen at random per event), not on all of them; but on every link pruned in the last
/// 5 s, whose end may have lost its parent on the tree with that prune.
#[test]
fn announcements_go_to_ihave_fanout_lazy_links_and_to_every_link_pruned_lately() {
    let seed = 14;
    eprintln!("seed {seed}");
    let later = Duration::from_secs(6);
    let plumtree = heads_announced(seed, 0, later);
    assert_eq!(plumtree, 6, "seed {seed}: Plumtree announces on every lazy link");
    assert_eq!(heads_announced(seed, 2, later), 2, "seed {seed}");
    let lately = heads_announced(seed, 2, Duration::from_secs(1));
    assert_eq!(lately, 6, "seed {seed}: the six links were pruned 1 s before");
}

/// Heads announced in the first 300 ms after a peer with six links, all pruned at the start
/// (lazy), posts once, `post_after` the start.
fn heads_announced(seed: u64, ihave_fanout: usize, post_after: Duration) -> usize {
    use vecino_proto::pb::{self, frame::Kind};
    let config = Config { ihave_fanout, ..Config::default() };
    let me = identity(seed, 100);
    let mut e = Engine::new(me, config, ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let mut inputs: Vec<(Time, Input)> = vec![(START, Input::Start)];
    for i in 0..6 {
        let peer = identity(seed, i).public();
        inputs.push((START, up(peer)));
        inputs.push((START, received(peer, 0, Kind::Prune(pb::Prune { trees: vec![] }))));
    }
    let body = Bytes::from_static(b"hello");
    let post = START + post_after;
    inputs.push((post, Input::Command { id: 0, cmd: Command::Post { topic: "t".into(), body } }));
    let end = post + Duration::from_millis(300);
    frames_sent_answering(&mut e, inputs, end, pong)
        .into_iter()
        .map(|(_, kind)| if let Kind::Ihave(i) = kind { i.prefixed.len() } else { 0 })
        .sum()
}

/// An author pushes its post on `root_fanout` (2) of its tree edges and announces it on the
/// others, which rely on the link for the tree: with `ihave_fanout` = 1 on both of them, and
/// on one of the lazy links.
#[test]
fn an_author_announces_its_post_on_every_tree_edge_it_does_not_push_on() {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 25;
    eprintln!("seed {seed}");
    let config = Config { ihave_fanout: 1, root_fanout: 2, ..Config::default() };
    let mut e = engine(seed, config);
    let peers: Vec<AuthorKey> = (0..6).map(|i| identity(seed, i).public()).collect();
    let mut inputs: Vec<(Time, Input)> = vec![(START, Input::Start)];
    inputs.extend(peers.iter().map(|p| (START, up(*p))));
    // Two links pruned every tree: lazy. The other four are tree edges.
    for p in &peers[..2] {
        inputs.push((START, received(*p, 0, Kind::Prune(pb::Prune { trees: vec![] }))));
    }
    let post = START + Duration::from_secs(6);
    let body = Bytes::from_static(b"hello");
    inputs.push((post, Input::Command { id: 0, cmd: Command::Post { topic: "t".into(), body } }));
    let sent = frames_sent_answering(&mut e, inputs, post + Duration::from_millis(300), pong);
    let got = |p: AuthorKey, pick: fn(&Kind) -> bool| {
        !sent_to(&sent, p, |k| pick(k).then_some(())).is_empty()
    };
    let is_post = |k: &Kind| matches!(k, Kind::Events(ev) if ev.envelopes.iter().any(is_a_post));
    let is_ihave = |k: &Kind| matches!(k, Kind::Ihave(i) if i.prefixed.iter().any(|h| h.stream == pb::Stream::Post as i32));
    let pushed: Vec<_> = peers.iter().filter(|p| got(**p, is_post)).collect();
    let edges = &peers[2..];
    assert_eq!(pushed.len(), 2, "seed {seed}: pushed on root_fanout edges");
    assert!(pushed.iter().all(|p| edges.contains(p)), "seed {seed}: pushed on tree edges only");
    for p in edges.iter().filter(|p| !pushed.contains(p)) {
        assert!(got(*p, is_ihave), "seed {seed}: an edge not pushed on is announced to");
    }
    let lazy_told = peers[..2].iter().filter(|p| got(**p, is_ihave)).count();
    assert_eq!(lazy_told, 1, "seed {seed}: one lazy link of two is announced to");
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
        kind: Some(Kind::Ping(pb::Ping { nonce: 7 })),
    }));
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

/// A neighbour's answer to a ping (a pong 20 ms later), which keeps its link connected.
fn pong(now: Time, to: AuthorKey, k: &vecino_proto::pb::frame::Kind) -> Option<(Time, Input)> {
    use vecino_proto::pb::{self, frame::Kind};
    let Kind::Ping(p) = k else { return None };
    let pong = pb::Pong { nonce: p.nonce, coordinate: None, fisheye_radius_us: None };
    Some((now + Duration::from_millis(20), received(to, 0, Kind::Pong(pong))))
}

/// Whether an envelope holds a post.
fn is_a_post(envelope: &Bytes) -> bool {
    use prost::Message;
    use vecino_proto::pb;
    pb::Envelope::decode(envelope.as_ref())
        .ok()
        .and_then(|env| pb::Event::decode(env.event.as_ref()).ok())
        .is_some_and(|ev| ev.stream == pb::Stream::Post as i32)
}

/// The engine started, with a link up to each of `peers`.
fn started_with(peers: &[AuthorKey]) -> Vec<(Time, Input)> {
    let mut inputs = vec![(START, Input::Start)];
    inputs.extend(peers.iter().map(|p| (START, up(*p))));
    inputs
}

/// An announcement (by key prefix) of `author`'s first post.
fn announced_first_post(author: &AuthorKey) -> vecino_proto::pb::frame::Kind {
    use vecino_proto::pb;
    let head = pb::PrefixHead {
        author_prefix: author.prefix(),
        stream: pb::Stream::Post as i32,
        seq: 1,
        hops: None,
    };
    pb::frame::Kind::Ihave(pb::IHave { prefixed: vec![head], ..Default::default() })
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

/// Announcements name an event's author by its key's first 8 bytes. A peer that knows
/// nothing of the author still grafts the event, by that prefix; the announcer's answer
/// arrives, is passed on, and is announced on a lazy link by prefix too (no full key).
#[test]
fn an_event_of_an_author_unknown_here_is_announced_and_grafted_by_key_prefix() {
    use vecino_proto::pb::{self, Stream, frame::Kind};
    let seed = 23;
    eprintln!("seed {seed}");
    let (b, c, d) =
        (identity(seed, 1).public(), identity(seed, 2).public(), identity(seed, 3).public());
    let x = identity(seed, 4);
    let px = post_by(&x);
    let head = |hops| pb::PrefixHead {
        author_prefix: x.public().prefix(),
        stream: Stream::Post as i32,
        seq: 1,
        hops,
    };
    let at = |ms: u64| START + Duration::from_millis(ms);
    let run = |answer_grafts: bool| {
        let mut e = engine(seed, Config::default());
        let ihave = Kind::Ihave(pb::IHave { prefixed: vec![head(Some(0))], ..Default::default() });
        let mut inputs = started_with(&[b, c, d]);
        inputs.extend([
            // D pruned every tree: what reaches this peer is announced to D.
            (at(50), received(d, 1, Kind::Prune(pb::Prune { trees: vec![] }))),
            (at(100), received(b, 1, ihave)),
        ]);
        let answer = |now: Time, to: AuthorKey, k: &Kind| match k {
            Kind::Graft(_) if answer_grafts && to == b => {
                let events = pb::Events {
                    envelopes: vec![px.envelope().clone()],
                    sync: true,
                    hops: Some(0),
                };
                Some((now + Duration::from_millis(40), received(b, 2, Kind::Events(events))))
            }
            _ => None,
        };
        frames_sent_answering(&mut e, inputs, at(5_000), answer)
    };
    let sent = run(true);
    let grafts = sent_to(&sent, b, |k| if let Kind::Graft(g) = k { Some(g) } else { None });
    assert_eq!(grafts.len(), 1, "seed {seed}: one graft, answered");
    assert!(grafts[0].heads.is_empty(), "seed {seed}: grafts name events by prefix");
    assert_eq!(grafts[0].prefixed, vec![head(None)], "seed {seed}");
    let pushed_to_c = sent.iter().any(|(to, k)| {
        *to == c && matches!(k, Kind::Events(ev) if ev.envelopes.contains(px.envelope()))
    });
    assert!(pushed_to_c, "seed {seed}: the grafted post is passed on");
    let to_d = sent_to(&sent, d, |k| if let Kind::Ihave(i) = k { Some(i) } else { None });
    assert!(
        to_d.iter().any(|i| i.heads.is_empty()
            && i.prefixed.iter().any(|h| h.author_prefix == x.public().prefix())),
        "seed {seed}: announced to lazy D by prefix: {to_d:?}"
    );
    // Unanswered, the graft is sent again (backed off), never the post passed on.
    let sent = run(false);
    let grafts = sent.iter().filter(|(to, k)| *to == b && matches!(k, Kind::Graft(_))).count();
    assert!(grafts >= 2, "seed {seed}: {grafts} grafts unanswered");
    assert!(!sent.iter().any(|(to, k)| *to == c && matches!(k, Kind::Events(_))), "seed {seed}");
}

/// A graft by prefix is answered with the event the announcer holds under that prefix; a
/// prefix naming nothing held gets no answer, and a head with no valid stream is counted.
/// (The grafting neighbour is lazy, so the post was announced to it, not pushed.)
#[test]
fn a_graft_by_key_prefix_is_answered_with_the_event_it_names() {
    use vecino_proto::pb::{self, Stream, frame::Kind};
    let seed = 24;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let (x, y) = (identity(seed, 3), identity(seed, 4));
    let px = post_by(&x);
    let head = |author: &Identity, stream: i32| pb::PrefixHead {
        author_prefix: author.public().prefix(),
        stream,
        seq: 1,
        hops: None,
    };
    let at = |ms: u64| START + Duration::from_millis(ms);
    let graft = |heads| Kind::Graft(pb::Graft { prefixed: heads, ..Default::default() });
    let mut e = engine(seed, Config::default());
    let inputs = vec![
        (START, Input::Start),
        (START, up(b)),
        (START, up(c)),
        // C pruned every tree: X's post is announced to it, not pushed.
        (at(50), received(c, 1, Kind::Prune(pb::Prune { trees: vec![] }))),
        (at(100), pushed(b, &px)),
        // Y's post is not held; stream 9999 is no stream.
        (at(200), received(c, 2, graft(vec![head(&y, Stream::Post as i32), head(&x, 9999)]))),
        (at(300), received(c, 3, graft(vec![head(&x, Stream::Post as i32)]))),
    ];
    let sent = frames_sent(&mut e, inputs, at(400));
    let answers = sent_to(&sent, c, |k| match k {
        Kind::Events(ev) if ev.sync => Some(ev),
        _ => None,
    });
    assert_eq!(answers.len(), 1, "seed {seed}: only the graft naming a held event is answered");
    assert_eq!(answers[0].envelopes, vec![px.envelope().clone()], "seed {seed}");
    assert_eq!(e.stats().rejected.get("bad_head"), Some(&1), "seed {seed}");
}

/// A graft whose announcer's link went down is backed off (up to 30 s between tries); when
/// the link comes back the event is grafted from it at once, not at the next backed-off try.
/// And a new announcer of an event grafted already is grafted from at once.
#[test]
fn a_missing_event_is_grafted_again_at_once_when_its_announcer_comes_back_or_another_announces_it()
{
    use vecino_proto::pb::frame::Kind;
    let seed = 26;
    eprintln!("seed {seed}");
    let (b, c) = (identity(seed, 1).public(), identity(seed, 2).public());
    let x = identity(seed, 3);
    let ihave = || announced_first_post(&x.public());
    let at = |ms: u64| START + Duration::from_millis(ms);
    // Frames sent carry no time: grafts are counted in runs that end at different times.
    let grafts = |sent: &[(AuthorKey, Kind)], to: AuthorKey| {
        sent_to(sent, to, |k| matches!(k, Kind::Graft(_)).then_some(())).len()
    };
    let run = |inputs: Vec<(Time, Input)>, end_ms: u64| {
        let mut e = engine(seed, Config::default());
        // C answers pings; B, down, does not (an answer would bring its link back).
        let answer = |now, to, k: &Kind| if to == c { pong(now, to, k) } else { None };
        frames_sent_answering(&mut e, inputs, at(end_ms), answer)
    };
    // B announces X's post, and its link goes down: the grafts to it back off.
    let mut inputs = vec![
        (START, Input::Start),
        (START, up(b)),
        (START, up(c)),
        (at(100), received(b, 0, ihave())),
        (at(200), Input::LinkDown { peer: b }),
    ];
    let before = grafts(&run(inputs.clone(), 25_000), b);
    let waiting = grafts(&run(inputs.clone(), 19_500), b);
    assert_eq!(before, waiting, "seed {seed}: backed off, no graft from 19.5 s to 25 s");
    // B comes back at 25 s: grafted from at once.
    inputs.push((at(25_000), up(b)));
    let healed = grafts(&run(inputs.clone(), 25_500), b);
    assert!(healed > before, "seed {seed}: grafted within 0.5 s of the heal ({healed} > {before})");
    // C announces it at 25 s instead: grafted from C at once.
    inputs.pop();
    inputs.push((at(25_000), received(c, 0, ihave())));
    let sent = run(inputs, 25_500);
    assert_eq!(grafts(&sent, c), 1, "seed {seed}: C grafted within 0.5 s");
}

/// An event announced by its author and by a relay is grafted from the relay: past its
/// `root_fanout` the author only announces its events, so a link grafted from it stays off
/// the author's tree, while a relay's link joins it. With `root_fanout` 0 (the author pushes
/// on every tree edge) the first announcer, the author, is grafted from.
#[test]
fn an_event_announced_by_its_author_and_a_relay_is_grafted_from_the_relay() {
    use vecino_proto::pb::frame::Kind;
    let seed = 28;
    eprintln!("seed {seed}");
    let x = identity(seed, 1);
    let relay = identity(seed, 2).public();
    let ihave = || announced_first_post(&x.public());
    let at = |ms: u64| START + Duration::from_millis(ms);
    let grafted_from = |root_fanout: usize| {
        let mut e = engine(seed, Config { root_fanout, ..Config::default() });
        let inputs = vec![
            (START, Input::Start),
            (START, up(x.public())),
            (START, up(relay)),
            (at(100), received(x.public(), 0, ihave())),
            (at(120), received(relay, 0, ihave())),
        ];
        let sent = frames_sent_answering(&mut e, inputs, at(400), pong);
        let first =
            sent.iter().find(|(_, k)| matches!(k, Kind::Graft(g) if !g.prefixed.is_empty()));
        first.map(|(to, _)| *to)
    };
    assert_eq!(grafted_from(2), Some(relay), "seed {seed}: grafted from the relay");
    assert_eq!(grafted_from(0), Some(x.public()), "seed {seed}: from the first announcer");
}

/// `Config::tree_refresh_every`: an author's 2nd newspaper floods its tree. Links pruned
/// from the author's tree by duplicates of its 1st newspaper are only announced to when
/// its 3rd comes (the control, refresh off); with refresh on, the 2nd is pushed on them and
/// turns them eager again, so the 3rd is pushed there too, until duplicates prune them.
#[test]
fn a_refreshing_newspaper_floods_the_authors_tree_and_makes_its_links_eager() {
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 23;
    eprintln!("seed {seed}");
    let (b, c, d) =
        (identity(seed, 1).public(), identity(seed, 2).public(), identity(seed, 3).public());
    let x = identity(seed, 4);
    let paper = |seq: u64| {
        let hlc = vecino_proto::Hlc { ms: START.as_millis() + seq, counter: 0 };
        let body = Body::Newspaper(pb::Newspaper { uptime_s: seq as u32, ..Default::default() });
        x.sign(Stream::Newspaper, seq, hlc, body).expect("sign")
    };
    let (p1, p2, p3) = (paper(1), paper(2), paper(3));
    let at = |ms: u64| START + Duration::from_millis(ms);
    let run = |every: u64| {
        let config =
            Config { tree_refresh_every: every, tree_refresh_min_members: 0, ..Config::default() };
        let mut e = engine(seed, config);
        let mut inputs = started_with(&[b, c, d]);
        inputs.extend([
            (at(100), received(b, 1, events(&p1))),
            (at(120), received(c, 1, events(&p1))),
            (at(130), received(d, 1, events(&p1))),
            (at(300), received(b, 2, events(&p2))),
            (at(600), received(b, 3, events(&p3))),
        ]);
        let sent = frames_sent(&mut e, inputs, at(900));
        let pushed_to = |ev: &VerifiedEvent| -> Vec<AuthorKey> {
            let mut to: Vec<AuthorKey> = sent
                .iter()
                .filter(
                    |(_, k)| matches!(k, Kind::Events(v) if v.envelopes.contains(ev.envelope())),
                )
                .map(|(to, _)| *to)
                .collect();
            to.sort();
            to.dedup();
            to
        };
        let pruned = sent.iter().filter(|(_, k)| matches!(k, Kind::Prune(_))).count();
        (pushed_to(&p2), pushed_to(&p3), pruned)
    };
    let mut cd = vec![c, d];
    cd.sort();
    let (p2_to, p3_to, pruned) = run(0);
    assert_eq!(pruned, 2, "seed {seed}: the duplicates of the 1st newspaper prune c and d");
    assert!(
        p2_to.is_empty() && p3_to.is_empty(),
        "seed {seed}: control pushed {p2_to:?} {p3_to:?}"
    );
    let (p2_to, p3_to, _) = run(4);
    assert_eq!(p2_to, cd, "seed {seed}: the 2nd newspaper floods the tree");
    assert_eq!(p3_to, cd, "seed {seed}: the flooded links stay eager");
}

/// `Config::probe_new_links_from`: a link made once the peer has that many is lazy on every
/// author tree (an author's first post is announced on it, not pushed) until the author's
/// presence or status probes it: that newspaper is pushed on it and the link turns eager on
/// the author's tree, so the author's next post is pushed there too, while another author's
/// tree, not probed yet, is still only announced. The control (probing off) pushes all.
#[test]
fn a_probed_link_joins_an_authors_tree_when_the_authors_newspaper_probes_it() {
    use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
    let seed = 29;
    eprintln!("seed {seed}");
    let (b, c, d) =
        (identity(seed, 1).public(), identity(seed, 2).public(), identity(seed, 3).public());
    let (x, y) = (identity(seed, 4), identity(seed, 5));
    let hlc = |ms: u64| vecino_proto::Hlc { ms: START.as_millis() + ms, counter: 0 };
    let post = |who: &Identity, seq: u64| {
        let body = Body::Post(pb::Post {
            topic: "t".into(),
            body: Bytes::from_static(b"hi"),
            ..Default::default()
        });
        who.sign(Stream::Post, seq, hlc(seq), body).expect("sign")
    };
    let paper = x
        .sign(Stream::Newspaper, 1, hlc(5), Body::Newspaper(pb::Newspaper::default()))
        .expect("sign");
    let (x1, x2, y1) = (post(&x, 1), post(&x, 2), post(&y, 1));
    let at = |ms: u64| START + Duration::from_millis(ms);
    let run = |probe_from: usize| {
        let config =
            Config { probe_new_links_from: probe_from, tree_refresh_every: 0, ..Config::default() };
        let mut e = engine(seed, config);
        let mut inputs = started_with(&[b, c, d]);
        inputs.extend([
            (at(100), received(b, 1, events(&x1))),
            (at(300), received(b, 2, events(&paper))),
            (at(600), received(b, 3, events(&x2))),
            (at(700), received(b, 4, events(&y1))),
        ]);
        let sent = frames_sent(&mut e, inputs, at(900));
        let pushed_to_d = |ev: &VerifiedEvent| {
            sent.iter().any(|(to, k)| {
                *to == d && matches!(k, Kind::Events(v) if v.envelopes.contains(ev.envelope()))
            })
        };
        let announced_to_d = |author: &AuthorKey| {
            sent.iter().any(|(to, k)| {
                *to == d
                    && matches!(k, Kind::Ihave(i) if i.prefixed.iter().any(|h| h.author_prefix == author.prefix()))
            })
        };
        (
            [pushed_to_d(&x1), pushed_to_d(&paper), pushed_to_d(&x2), pushed_to_d(&y1)],
            [announced_to_d(&x.public()), announced_to_d(&y.public())],
            e.stats().tree_probes,
        )
    };
    let (pushed, _, probes) = run(usize::MAX);
    assert_eq!(pushed, [true; 4], "seed {seed}: control: a new link is eager on every tree");
    assert_eq!(probes, 0, "seed {seed}: control probes nothing");
    let (pushed, announced, probes) = run(2);
    assert_eq!(
        pushed,
        [false, true, true, false],
        "seed {seed}: x's 1st post announced, its newspaper probes, its 2nd post pushed, y's announced"
    );
    assert_eq!(announced, [true, true], "seed {seed}: the unprobed trees are announced on d");
    assert_eq!(probes, 1, "seed {seed}: one tree probed");
}

/// A command is answered by its id: a post with the event it made, after the post's own
/// `Persist` and `Deliver`; an invalid one refused with why, with nothing kept or sent.
#[test]
fn commands_are_answered_by_their_id() {
    let mut e = engine(1, Config::default());
    let _ = e.handle(START, Input::Start).count();
    let post = |topic: &str| Command::Post { topic: topic.into(), body: Bytes::from_static(b"hi") };
    let ok: Vec<Output> = e.handle(START, Input::Command { id: 7, cmd: post("t") }).collect();
    let put = ok.iter().position(|o| matches!(o, Output::Persist(StoreOp::Put(_))));
    let delivered = ok.iter().position(|o| matches!(o, Output::Deliver(AppEvent::Post(_))));
    let accepted = ok.iter().position(|o| matches!(o, Output::Deliver(AppEvent::Accepted { .. })));
    assert!(put < delivered && delivered < accepted, "{ok:?}");
    let (
        Some(Output::Persist(StoreOp::Put(ev))),
        Some(Output::Deliver(AppEvent::Accepted { id, event })),
    ) = (put.map(|i| &ok[i]), accepted.map(|i| &ok[i]))
    else {
        panic!("{ok:?}")
    };
    assert_eq!((*id, *event), (7, ev.id()));
    let bad: Vec<Output> = e.handle(START, Input::Command { id: 8, cmd: post("") }).collect();
    match bad.as_slice() {
        [Output::Deliver(AppEvent::Refused { id: 8, reason })] => assert!(!reason.is_empty()),
        other => panic!("expected one refusal, got {other:?}"),
    }
}
