//! Plumtree (`crate::broadcast`): posts reach everyone once and in order; prunes and grafts
//! change only the trees they name; a much shorter lazy path replaces the eager one; an
//! event is pushed or announced on the links its fanouts say, announced and grafted by key
//! prefix, grafted again when its announcer returns, and grafted from a relay rather than its
//! author; newspapers refresh and probe an author's tree. Every test prints its seed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{Command, Config, Engine, Input, Output, Protocol, Time};
use vecino_proto::{AuthorKey, Bytes, Identity, VerifiedEvent};

use common::{
    Net, START, engine, events, frames_sent, frames_sent_answering, identity, line, post_by,
    pushed, received, sent_to, up,
};

/// Duplicates other than pushed membership events (presence, status, link state, which young
/// trees also carry twice): the posts'.
fn post_duplicates(s: &vecino_gossip::EngineStats) -> u64 {
    s.events_duplicate - s.events_duplicate_pushed_members
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
            before = (count(&net, |s| s.events_new), count(&net, post_duplicates));
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
    let dups = count(&net, post_duplicates) - before.1;
    eprintln!("after each author's first post: {news} new events, {dups} duplicates");
    assert!(news >= 17 * 7, "seed {seed}: {news} new events");
    assert!(dups * 20 < news, "seed {seed}: {dups} duplicates for {news} new events");
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
        trail: Vec::new(),
        detours: None,
        copies: None,
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
                    trail: Vec::new(),
                    detours: None,
                    copies: None,
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

/// A neighbour's answer to a ping (a pong 20 ms later), which keeps its link connected.
fn pong(now: Time, to: AuthorKey, k: &vecino_proto::pb::frame::Kind) -> Option<(Time, Input)> {
    use vecino_proto::pb::{self, frame::Kind};
    let Kind::Ping(p) = k else { return None };
    let pong = pb::Pong { nonce: p.nonce, coordinate: None, fisheye_radius_us: None, slow: false };
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
