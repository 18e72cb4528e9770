//! The links (`crate::links`): RCM statuses through a partition and an outage, heartbeats
//! that fit a scarce uplink, the host's back-pressure, and what leaves a link's queues once
//! the neighbour pruned the tree or sent the events itself. Every test prints its seed.

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{Command, Config, Engine, Input, LinkInfo, LinkStatus, Output, Protocol, Time};
use vecino_proto::Bytes;

use common::{Net, START, identity, line, up};

#[test]
fn partition_loses_nothing_and_links_report_rcm_statuses() {
    let seed = 11;
    let mut net = line(6, seed, Config::default());
    net.run_for(Duration::from_secs(5));
    let cut_at = net.now;
    net.partition(&[0, 1, 2], &[3, 4, 5]);
    let mut posts = BTreeMap::new();
    for k in 0..30 {
        let author = (k * 5) % 6;
        net.post(author, &format!("during split {k}"));
        *posts.entry(net.ids[author]).or_default() += 1;
        net.run_for(Duration::from_millis(500));
    }
    let healed_at = net.now;
    net.heal();
    net.run_for(Duration::from_secs(10));
    net.assert_all_delivered(&posts);
    assert_eq!(net.digests().len(), 1, "seed {seed}: not converged after heal");
    // Suspected within 3 s of the cut, connected again within 1 s of the heal, on a cut link.
    let (a, b) = (net.ids[2], net.ids[3]);
    let suspected = net
        .links
        .iter()
        .find(|(t, i, p, s)| *t > cut_at && *i == 2 && *p == b && *s == LinkStatus::Suspected);
    let (t, ..) = suspected.expect("link 2-3 suspected");
    assert!(
        *t - cut_at <= Duration::from_secs(3),
        "seed {seed}: suspected after {:?}",
        *t - cut_at
    );
    let back = net
        .links
        .iter()
        .find(|(t, i, p, s)| *t > healed_at && *i == 3 && *p == a && *s == LinkStatus::Connected);
    let (t, ..) = back.expect("link 3-2 connected again");
    assert!(
        *t - healed_at <= Duration::from_secs(1),
        "seed {seed}: reconnected after {:?}",
        *t - healed_at
    );
}

#[test]
fn outage_past_the_suspect_timeout_disconnects_and_anti_entropy_catches_up() {
    let seed = 13;
    let config = Config { suspect_timeout: Duration::from_secs(5), ..Config::default() };
    let mut net = line(4, seed, config);
    net.run_for(Duration::from_secs(5));
    net.partition(&[0, 1], &[2, 3]);
    let mut posts = BTreeMap::new();
    for k in 0..10 {
        net.post(k % 4, "x");
        *posts.entry(net.ids[k % 4]).or_default() += 1;
        net.run_for(Duration::from_secs(2));
    }
    assert!(
        net.links.iter().any(|(_, i, _, s)| *i == 1 && *s == LinkStatus::Disconnected),
        "seed {seed}: link never disconnected"
    );
    net.heal();
    net.run_for(Duration::from_secs(15));
    net.assert_all_delivered(&posts);
    assert_eq!(net.digests().len(), 1);
}

#[test]
fn heartbeats_fit_a_scarce_uplink_and_links_stay_connected() {
    // Eight peers in a full mesh behind an 8 kbit/s uplink each (a crowded shared radio): a
    // ping and a pong per link per second would be ~2.8 kbit/s of it; the heartbeat stretches
    // so that they stay within a tenth, and no link is suspected for it.
    let seed = 29;
    let config = Config { uplink_bps: Some(8_000), ..Config::default() };
    let mut net = Net::new(8, seed, config);
    for a in 0..8 {
        for b in a + 1..8 {
            net.connect(a, b);
        }
    }
    net.run_for(Duration::from_secs(60));
    let before: Vec<u64> = (0..8).map(|i| heartbeat_bytes(net.engine(i))).collect();
    net.run_for(Duration::from_secs(120));
    for (i, b0) in before.iter().enumerate() {
        let bps = (heartbeat_bytes(net.engine(i)) - b0) as f64 * 8.0 / 120.0;
        eprintln!("peer {i}: {bps:.0} bit/s of heartbeats");
        assert!(bps <= 0.1 * 8_000.0, "seed {seed}: peer {i} sends {bps:.0} bit/s of heartbeats");
        for l in net.engine(i).links() {
            assert_eq!(l.status, LinkStatus::Connected, "seed {seed}: peer {i}");
        }
    }
}

/// Liveness that costs what it must (`Config::fast_links`): in an idle full mesh of ten, each
/// peer holds three links to fast detection and pings the others every slow heartbeat, for
/// well under the heartbeat bytes of every link held fast, and no link is suspected for it;
/// a peer cut off suspects at least three of its links within 3 s of the cut, and every peer
/// suspects its link to it within 15 s.
#[test]
fn idle_links_beat_slowly_and_a_cut_is_still_noticed() {
    let seed = 31;
    let mesh = |config: Config| {
        let mut net = Net::new(10, seed, config);
        for a in 0..10 {
            for b in a + 1..10 {
                net.connect(a, b);
            }
        }
        net.run_for(Duration::from_secs(90));
        let before: Vec<u64> = (0..10).map(|i| heartbeat_bytes(net.engine(i))).collect();
        net.run_for(Duration::from_secs(60));
        let bytes: u64 = (0..10).map(|i| heartbeat_bytes(net.engine(i))).sum::<u64>()
            - before.iter().sum::<u64>();
        (net, bytes)
    };
    let (_, all_fast) = mesh(Config { fast_links: 100, ..Config::default() });
    let (mut net, classes) = mesh(Config::default());
    eprintln!("heartbeat bytes over 60 s: {classes} with classes, {all_fast} all fast");
    let fast: Vec<(usize, usize)> = (0..10)
        .map(|i| {
            let l = net.engine(i).links();
            (l.iter().filter(|l| l.fast.0).count(), l.iter().filter(|l| l.fast.1).count())
        })
        .collect();
    eprintln!("links fast per peer (own, held fast by the neighbour): {fast:?}");
    assert!(
        (classes as f64) < 0.6 * all_fast as f64,
        "seed {seed}: {classes} B of heartbeats against {all_fast} B with every link fast"
    );
    assert!(
        net.links.iter().all(|(_, _, _, s)| *s == LinkStatus::Connected),
        "seed {seed}: a link was suspected while idle"
    );
    let cut_at = net.now;
    net.partition(&[0], &(1..10).collect::<Vec<_>>());
    net.run_for(Duration::from_secs(20));
    let suspected = |i: usize, peer: vecino_proto::AuthorKey| {
        net.links
            .iter()
            .find(|(t, j, p, s)| {
                *t > cut_at && *j == i && *p == peer && *s == LinkStatus::Suspected
            })
            .map(|(t, ..)| *t - cut_at)
    };
    let own: Vec<Option<Duration>> = (1..10).map(|j| suspected(0, net.ids[j])).collect();
    eprintln!("the cut peer suspected its links after {own:?}");
    let fast = own.iter().filter(|d| d.is_some_and(|d| d <= Duration::from_secs(3))).count();
    assert!(fast >= 3, "seed {seed}: only {fast} links suspected within 3 s: {own:?}");
    for j in 1..10 {
        let d = suspected(j, net.ids[0]);
        assert!(
            d.is_some_and(|d| d <= Duration::from_secs(15)),
            "seed {seed}: peer {j} suspected the cut peer after {d:?}"
        );
    }
}

fn heartbeat_bytes(e: &Engine<ChaCha8Rng>) -> u64 {
    ["ping", "pong"].iter().map(|k| e.stats().queued.get(k).map_or(0, |x| x.1)).sum()
}

/// With host back-pressure the engine hands the host at most `host_queue_bytes` not yet
/// reported sent, keeps the rest in its own queues, and goes on as the host reports; a host
/// that stops reporting stalls it for `HOST_SILENT` (30 s) at most.
#[test]
fn host_back_pressure_bounds_what_the_host_holds() {
    let seed = 15;
    eprintln!("seed {seed}");
    const MAX: usize = 600;
    let config = Config { host_queue_bytes: Some(MAX), ..Config::default() };
    let me = identity(seed, 100);
    let mut e = Engine::new(me, config, ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let _ = e.handle(START, Input::Start).count();
    let peer = identity(seed, 1).public();
    let sent_bytes = |outs: Vec<Output>| -> usize {
        outs.iter().map(|o| if let Output::Send { frame, .. } = o { frame.len() } else { 0 }).sum()
    };
    let mut handed = sent_bytes(e.handle(START, up(peer)).collect());
    for i in 0..20u8 {
        let body = Bytes::from(vec![i; 200]);
        let post = Input::Command { id: 0, cmd: Command::Post { topic: "t".into(), body } };
        handed += sent_bytes(e.handle(START, post).collect());
    }
    // One frame may pass the bound (it is handed whole).
    assert!(handed > 0 && handed < MAX + 400, "seed {seed}: {handed} B handed at once");
    let reported = handed;
    let later = START + Duration::from_millis(50);
    let more = sent_bytes(e.handle(later, Input::Sent { bytes: reported }).collect());
    assert!(more > 0 && more < MAX + 400, "seed {seed}: {more} B after the report");
    // The host goes silent: nothing more until HOST_SILENT has passed.
    let mut at = later;
    let mut stalled = 0;
    while at < later + Duration::from_secs(29) {
        at = at + Duration::from_secs(1);
        let outs: Vec<Output> = e
            .handle(
                at,
                Input::Command {
                    id: 0,
                    cmd: Command::Post { topic: "t".into(), body: Bytes::from_static(b"x") },
                },
            )
            .collect();
        stalled += sent_bytes(outs);
    }
    assert_eq!(stalled, 0, "seed {seed}: sent without room in the host's queue");
    at = at + Duration::from_secs(2);
    let body = Bytes::from_static(b"y");
    let resumed = sent_bytes(
        e.handle(at, Input::Command { id: 0, cmd: Command::Post { topic: "t".into(), body } })
            .collect(),
    );
    assert!(resumed > 0, "seed {seed}: still stalled");
    assert_eq!(e.stats().rejected.get("host_sent_missing"), Some(&1), "seed {seed}");
}

/// Posts queued behind a slow link when the neighbour prunes their tree leave as
/// announcements, not as events (Plumtree's lazy push, applied to what has not left yet).
#[test]
fn a_prune_turns_queued_posts_into_announcements() {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 16;
    eprintln!("seed {seed}");
    let prune = |_: &[Bytes]| (0, Kind::Prune(pb::Prune { trees: vec![] }));
    let (before, after, announced) = slow_link_backlog(seed, prune);
    assert!(before > 0 && before < 20, "seed {seed}: the link should hold a backlog");
    assert_eq!(after, 0, "seed {seed}: pushes left after the prune");
    assert!(announced >= 20 - before, "seed {seed}: {announced} announced");
}

/// Posts queued behind a slow link that the neighbour then sends us itself are not sent to
/// it: it holds them.
#[test]
fn events_the_neighbour_sends_are_not_sent_back_to_it() {
    use vecino_proto::pb::{self, frame::Kind};
    let seed = 17;
    eprintln!("seed {seed}");
    let echo = |posts: &[Bytes]| {
        let envelopes = posts.to_vec();
        (
            1,
            Kind::Events(pb::Events {
                envelopes,
                sync: false,
                hops: None,
                trail: Vec::new(),
                detours: None,
                copies: None,
            }),
        )
    };
    let (before, after, _) = slow_link_backlog(seed, echo);
    assert!(before > 0 && before < 20, "seed {seed}: the link should hold a backlog");
    assert_eq!(after, 0, "seed {seed}: {after} posts sent to the peer that sent them");
}

/// A peer posts 20 times on a link paced at 1 kB/s; 500 ms later the neighbour sends the
/// frame `then` makes of the posts' envelopes (with that link seq). Returns the posts sent
/// before it, the posts sent first after it (retransmissions not counted: nothing is
/// acknowledged here) and the heads announced, over 20 s.
fn slow_link_backlog(
    seed: u64,
    then: impl FnOnce(&[Bytes]) -> (u64, vecino_proto::pb::frame::Kind),
) -> (usize, usize, usize) {
    use vecino_proto::pb::{self, frame::Kind};
    let me = identity(seed, 100);
    let mut e = Engine::new(me, Config::default(), ChaCha8Rng::seed_from_u64(seed), START, vec![]);
    let peer = identity(seed, 1).public();
    let info = LinkInfo { rate_bps: Some(8_000), inbound: false, shared_medium: false };
    let mut inputs: Vec<(Time, Input)> =
        vec![(START, Input::Start), (START, Input::LinkUp { peer, info })];
    for i in 0..20u8 {
        let post = Command::Post { topic: "t".into(), body: Bytes::from(vec![i; 150]) };
        inputs.push((START, Input::Command { id: 0, cmd: post }));
    }
    inputs.reverse();
    let at = START + Duration::from_millis(500);
    let end = START + Duration::from_secs(20);
    let (mut before, mut after, mut announced) = (0, 0, 0);
    let mut posts: Vec<Bytes> = Vec::new();
    let mut seqs = BTreeSet::new();
    let mut then = Some(then);
    loop {
        let next = inputs.pop();
        if then.is_some() && next.as_ref().is_none_or(|(t, _)| *t >= at) {
            let (link_seq, kind) = (then.take().expect("once"))(&posts);
            let frame = pb::Frame { link_seq, link_floor: 0, kind: Some(kind) };
            let frame = Bytes::from(vecino_proto::encode_frame(&frame));
            inputs.extend(next);
            inputs.push((at, Input::Received { from: peer, frame }));
            inputs.sort_by_key(|(t, _)| Reverse(*t));
            continue;
        }
        let Some((now, input)) = next else { break };
        for o in e.handle(now, input) {
            match o {
                Output::Schedule { at, timer } if at <= end => {
                    inputs.push((at, Input::Timer(timer)));
                }
                Output::Persist(vecino_gossip::StoreOp::Put(ev))
                    if ev.stream() == pb::Stream::Post =>
                {
                    posts.push(ev.envelope().clone());
                }
                Output::Send { frame, .. } => {
                    let Ok(f) = vecino_proto::decode_frame(frame) else { continue };
                    if f.link_seq != 0 && !seqs.insert(f.link_seq) {
                        continue;
                    }
                    match f.kind {
                        Some(Kind::Events(ev)) if now < at => before += ev.envelopes.len(),
                        Some(Kind::Events(ev)) => after += ev.envelopes.len(),
                        Some(Kind::Ihave(i)) => announced += i.prefixed.len(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        inputs.sort_by_key(|(t, _)| Reverse(*t));
    }
    eprintln!("{before} posts sent before, {after} after, {announced} heads announced");
    (before, after, announced)
}
