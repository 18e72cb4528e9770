//! Simulator tests: determinism, the baselines on small clean and faulty scenarios, and the
//! measurement of link faults and convergence with a toy heartbeat protocol. Every scenario is
//! small and seeded; each assertion prints the seed.

use std::sync::Arc;
use std::time::Duration;

use vecino_proto::{AuthorKey, Bytes};

use super::*;
use crate::io::{AppEvent, Input, LinkStatus, Output, Priority, Protocol, TimerKind};
use crate::time::Time;

const SEED: u64 = 7;

fn quiet(_: f64) {}

/// `peers` on `latency` with 10 Mbit/s uplinks, `rate_per_s` posts fleet-wide from
/// `start_s` to `duration_s`.
fn fleet(
    name: &str,
    peers: usize,
    latency: Latency,
    rate_per_s: f64,
    start_s: u64,
    duration_s: u64,
) -> Scenario {
    let mut sc = Scenario::small(name, peers);
    sc.latency = latency;
    sc.link.rate_bps = Some(10_000_000);
    sc.traffic.per = TrafficScope::Fleet;
    sc.traffic.rate_per_s = rate_per_s;
    sc.traffic.start = Duration::from_secs(start_s);
    sc.duration = Duration::from_secs(duration_s);
    sc
}

/// `peers` on the compact Internet-like model, drawn from `SEED`.
fn internet(peers: usize) -> Latency {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let model = vecino_coords::topology::InternetModel::default();
    Latency::Internet(Arc::new(latency::CompactInternet::generate(peers, &model, &mut rng)))
}

fn partitioned(peers: usize, start_s: u64, end_s: u64) -> Scenario {
    let mut sc = Scenario::small("partition", peers);
    let side: Vec<u8> = (0..peers).map(|i| if i < peers / 2 { 1 } else { 2 }).collect();
    sc.faults.push(Fault {
        start: Duration::from_secs(start_s),
        end: Some(Duration::from_secs(end_s)),
        kind: FaultKind::Partition { side: Arc::new(side) },
    });
    sc
}

/// Two convoys of `peers / 2` vehicles, each on a 256 kbit/s radio, cut apart for 60 s in
/// every 120 s from t = 60 s, `cuts` times (convoy's rhythm); 200-byte posts, 1/s fleet-wide.
fn convoys(peers: usize, cuts: u64) -> Scenario {
    let mut sc = Scenario::small("radios", peers);
    let half = peers / 2;
    let side: Arc<Vec<u8>> = Arc::new((0..peers).map(|i| if i < half { 1 } else { 2 }).collect());
    for k in 0..cuts {
        sc.faults.push(Fault {
            start: Duration::from_secs(60 + 120 * k),
            end: Some(Duration::from_secs(120 + 120 * k)),
            kind: FaultKind::Partition { side: Arc::clone(&side) },
        });
    }
    sc.link.rate_bps = Some(256_000);
    sc.link.scope = RateScope::SharedRadio;
    sc.groups = Arc::new((0..peers).map(|i| u32::from(i >= half)).collect());
    sc.traffic.per = TrafficScope::Fleet;
    sc.traffic.body_bytes = 200;
    sc
}

#[test]
fn same_seed_same_report() {
    let mut sc = Scenario::small("determinism", 12);
    sc.link.loss = Loss::Bernoulli { p: 0.05 };
    sc.traffic.arrivals = Arrivals::Poisson;
    for dis in [disseminators::push(), disseminators::fullmesh()] {
        let a = run(&sc, &dis, SEED, &mut quiet);
        let b = run(&sc, &dis, SEED, &mut quiet);
        assert_eq!(a, b, "{}: seed {SEED} not reproducible", dis.name);
        let c = run(&sc, &dis, SEED + 1, &mut quiet);
        assert_ne!(a, c, "{}: the seed changes nothing", dis.name);
    }
}

/// Shards change nothing but the wall time: with loss, a partition and crashes, a run split
/// into shards on two or three threads reports exactly what it reports on one.
#[test]
fn a_run_is_the_same_on_one_thread_or_split_into_shards() {
    let peers = 48;
    let mut sc = fleet("shards", peers, internet(peers), 2.0, 5, 40);
    sc.link.loss = Loss::Bernoulli { p: 0.02 };
    let side: Vec<u8> = (0..peers).map(|i| if i % 3 == 0 { 1 } else { 2 }).collect();
    sc.faults.push(Fault {
        start: Duration::from_secs(12),
        end: Some(Duration::from_secs(20)),
        kind: FaultKind::Partition { side: Arc::new(side) },
    });
    sc.faults.push(Fault {
        start: Duration::from_secs(25),
        end: Some(Duration::from_secs(32)),
        kind: FaultKind::Crash { peers: vec![3, 40] },
    });
    let vecino = disseminators::vecino_factory().expect("vecino");
    for dis in [vecino, disseminators::fullmesh(), disseminators::push()] {
        let one = run(&sc, &dis, SEED, &mut quiet);
        assert_eq!((one.shards, one.lookahead_us), (1, None));
        assert!(one.deliveries > 0, "{}: seed {SEED}: nothing delivered", dis.name);
        for threads in [2, 3] {
            let mut split = run_parallel(&sc, &dis, SEED, threads, &mut quiet);
            assert!(split.shards > 1, "{}: seed {SEED}: not split", dis.name);
            assert!(split.lookahead_us.is_some_and(|l| l >= 50), "{}: seed {SEED}", dis.name);
            split.shards = 1;
            split.lookahead_us = None;
            assert_eq!(one, split, "{}: seed {SEED}, {threads} threads", dis.name);
        }
    }
}

#[test]
fn baselines_deliver_everything_in_order_on_a_clean_network() {
    let sc = Scenario::small("clean", 10);
    for dis in [disseminators::fullmesh(), disseminators::push()] {
        let r = run(&sc, &dis, SEED, &mut quiet);
        // 10 peers × 1 post/s over 19 s.
        assert!(r.posts_published >= 180, "{}: seed {SEED}: {}", dis.name, r.posts_published);
        assert_eq!(r.delivery_ratio, 1.0, "{}: seed {SEED}", dis.name);
        assert_eq!(r.fifo_violations, 0, "{}: seed {SEED}", dis.name);
        assert_eq!(r.duplicate_deliveries, 0, "{}: seed {SEED}", dis.name);
        // Latency ≥ the 20 ms propagation, stretch ≥ 1.
        assert!(r.latency_p50_s.unwrap() >= 0.02, "{}: {:?}", dis.name, r.latency_p50_s);
        assert!(r.stretch_p50.unwrap() >= 1.0);
        assert_eq!(r.drops, Drops::default());
    }
    let full = run(&sc, &disseminators::fullmesh(), SEED, &mut quiet);
    // Full mesh: exactly one copy per delivery, N − 1 frames from the author, one hop.
    assert_eq!(full.copies_per_delivery, 1.0);
    assert_eq!(full.last_delivery_hop_max, 1);
    let frame = full.bytes_sent.post as f64 / full.posts_published as f64 / 9.0;
    assert!((full.author_egress_bytes_per_post - 9.0 * frame).abs() < 1e-6);
    let push = run(&sc, &disseminators::push(), SEED, &mut quiet);
    // Push: every peer forwards to 5 of 9, so ~5 copies per delivery.
    assert!((4.0..6.0).contains(&push.copies_per_delivery), "{}", push.copies_per_delivery);
}

#[test]
fn baselines_lose_posts_across_a_partition() {
    let sc = partitioned(8, 5, 12);
    for dis in [disseminators::fullmesh(), disseminators::push()] {
        let r = run(&sc, &dis, SEED, &mut quiet);
        // 7 s of 20 cut in half: about 7/19 × 4/7 of deliveries lost.
        assert!(r.delivery_ratio < 0.9, "{}: seed {SEED}: {}", dis.name, r.delivery_ratio);
        assert!(r.delivery_ratio > 0.6, "{}: seed {SEED}: {}", dis.name, r.delivery_ratio);
        assert!(r.drops.partitioned > 0);
        // The gap after the heal is skipped (counted) rather than blocking the author forever.
        assert!(r.fifo_violations > 0, "{}: seed {SEED}", dis.name);
        // Never converges again: the two halves hold different posts.
        assert_eq!(r.converge_after_heal_s, vec![None], "{}", dis.name);
        assert_eq!(r.backlog.len(), 1);
        assert!(r.backlog[0].posts > 0 && r.backlog[0].drained_s.is_none());
        // Baselines report no link statuses.
        assert_eq!(r.suspect_delay_s, vec![None]);
    }
}

#[test]
fn queues_stay_bounded_under_overload() {
    let mut sc = Scenario::small("overload", 10);
    sc.link.rate_bps = Some(64_000);
    sc.link.queue_bytes = 8_000;
    sc.traffic.rate_per_s = 5.0;
    let r = run(&sc, &disseminators::fullmesh(), SEED, &mut quiet);
    assert!(r.drops.queue > 0, "seed {SEED}: no overload");
    assert!(r.max_queue_bytes <= 8_000, "seed {SEED}: {}", r.max_queue_bytes);
    assert!(r.delivery_ratio < 1.0);
}

#[test]
fn shared_radio_is_slower_than_own_uplinks() {
    let mut sc = Scenario::small("radio", 6);
    sc.link.rate_bps = Some(256_000);
    sc.traffic.rate_per_s = 2.0;
    let own = run(&sc, &disseminators::fullmesh(), SEED, &mut quiet);
    sc.link.scope = RateScope::SharedRadio;
    sc.groups = Arc::new(vec![0; 6]);
    let shared = run(&sc, &disseminators::fullmesh(), SEED, &mut quiet);
    assert!(shared.latency_p99_s > own.latency_p99_s, "seed {SEED}");
    // One radio carries every byte.
    let per_radio = shared.bytes_sent_per_radio_per_post.unwrap();
    assert!(
        (per_radio - shared.bytes_sent.total() as f64 / shared.posts_published as f64).abs() < 1.0
    );
}

#[test]
fn crashed_peer_misses_posts_and_comes_back() {
    let mut sc = Scenario::small("crash", 6);
    sc.faults.push(Fault {
        start: Duration::from_secs(5),
        end: Some(Duration::from_secs(9)),
        kind: FaultKind::Crash { peers: vec![5] },
    });
    let r = run(&sc, &disseminators::fullmesh(), SEED, &mut quiet);
    assert!(r.drops.dead > 0, "seed {SEED}");
    assert!(r.posts_skipped > 0, "seed {SEED}: the crashed peer still published");
    assert!(r.delivery_ratio < 1.0 && r.delivery_ratio > 0.8, "seed {SEED}: {}", r.delivery_ratio);
}

/// A toy protocol for the link-fault measurements: pings every 500 ms on each link, suspects
/// a neighbour after 2 s of silence, and reports it connected on the next frame.
#[derive(Debug)]
struct Heartbeat {
    me: AuthorKey,
    links: std::collections::BTreeMap<AuthorKey, (Time, LinkStatus)>,
    out: Vec<Output>,
}

impl Protocol for Heartbeat {
    fn peer(&self) -> AuthorKey {
        self.me
    }
    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        let tick = |at| Output::Schedule { at, timer: crate::io::Timer(TimerKind::Tick) };
        match input {
            Input::LinkUp { peer, .. } => {
                if self.links.is_empty() {
                    self.out.push(tick(now + Duration::from_millis(500)));
                }
                self.links.insert(peer, (now, LinkStatus::Connected));
                self.out
                    .push(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
            }
            Input::Received { from, .. } => {
                if let Some((heard, status)) = self.links.get_mut(&from) {
                    *heard = now;
                    if *status != LinkStatus::Connected {
                        *status = LinkStatus::Connected;
                        self.out.push(Output::Deliver(AppEvent::Link {
                            peer: from,
                            status: LinkStatus::Connected,
                        }));
                    }
                }
            }
            Input::Timer(crate::io::Timer(TimerKind::Tick)) => {
                for (peer, (heard, status)) in &mut self.links {
                    self.out.push(Output::Send {
                        to: *peer,
                        frame: Bytes::from_static(b"\x1a\x00"),
                        class: Priority::Control,
                    });
                    if *status == LinkStatus::Connected && now - *heard > Duration::from_secs(2) {
                        *status = LinkStatus::Suspected;
                        self.out.push(Output::Deliver(AppEvent::Link {
                            peer: *peer,
                            status: LinkStatus::Suspected,
                        }));
                    }
                }
                self.out.push(tick(now + Duration::from_millis(500)));
            }
            _ => {}
        }
        self.out.drain(..)
    }
}

impl Observe for Heartbeat {
    fn digest(&self) -> u64 {
        0
    }
    fn known_peers(&self) -> usize {
        self.links.len()
    }
}

#[test]
fn link_fault_detection_and_convergence_are_measured() {
    let mut sc = partitioned(4, 5, 12);
    sc.traffic.rate_per_s = 0.0;
    sc.bootstrap = 3; // a full mesh of links: every peer knows the 3 others
    let dis = Disseminator {
        name: "heartbeat",
        full_mesh: false,
        factory: Box::new(|spec| {
            Box::new(Heartbeat {
                me: spec.identity.public(),
                links: Default::default(),
                out: Vec::new(),
            })
        }),
    };
    let r = run(&sc, &dis, SEED, &mut quiet);
    // Suspected 2–2.5 s after the cut (silence > 2 s, checked every 500 ms), reconnected within
    // a ping period plus propagation after the heal.
    let s = r.suspect_delay_s[0].expect("suspected");
    assert!((2.0..=2.6).contains(&s), "seed {SEED}: suspect delay {s}");
    let c = r.reconnect_delay_s[0].expect("reconnected");
    assert!(c <= 0.6, "seed {SEED}: reconnect delay {c}");
    // 2 × 2 directed links cut, each suspected then connected again; 12 connects at start.
    assert_eq!(r.link_transitions.suspected, 8);
    assert_eq!(r.link_transitions.connected, 12 + 8);
    assert!(r.converge_from_start_s.is_some());
    assert_eq!(r.converge_after_heal_s.len(), 1);
    assert!(r.converge_after_heal_s[0].is_some(), "seed {SEED}");
}

/// 24 peers joining within 1 s under 5 % loss while posts flow: every peer knows every other
/// and agrees on membership well before the posts stop; the stores agree soon after.
#[test]
fn vecino_join_converges_on_membership_while_posts_flow() {
    let mut sc = Scenario::small("join", 24);
    sc.start_spread = Duration::from_secs(1);
    sc.link.loss = Loss::Bernoulli { p: 0.05 };
    sc.traffic.per = TrafficScope::Fleet;
    sc.traffic.rate_per_s = 2.0;
    sc.traffic.start = Duration::ZERO;
    sc.check_interval = Duration::from_millis(100);
    let dis = disseminators::vecino_factory().expect("vecino");
    let r = run(&sc, &dis, SEED, &mut quiet);
    assert_eq!(r.delivery_ratio, 1.0, "seed {SEED}");
    let known = r.members_known_s.expect("all know all");
    let agreed = r.membership_converged_s.expect("membership converged");
    assert!(known <= agreed, "seed {SEED}: {known} > {agreed}");
    assert!(agreed <= 10.0, "seed {SEED}: membership converged at {agreed} s");
    let quiet_s = r.converge_quiet_s.expect("stores agree once quiet");
    assert!(quiet_s <= 5.0, "seed {SEED}: stores agree {quiet_s} s after the last post");
    // The per-kind accounting covers every byte sent.
    assert_eq!(r.bytes_by_kind.values().sum::<u64>(), r.bytes_sent.total());
}

/// Two radios of three peers each, cut apart for 20 s while posts flow: after the heal the
/// backlog crosses without a flood of grafts (grafts wait while events are still arriving).
/// Over seeds 1–8, since single seeds of six peers swing by a few grafts either way.
#[test]
fn vecino_heal_drains_without_a_graft_flood() {
    let mut sc = partitioned(6, 5, 25);
    sc.duration = Duration::from_secs(40);
    sc.link.rate_bps = Some(256_000);
    sc.link.scope = RateScope::SharedRadio;
    sc.groups = Arc::new(vec![0, 0, 0, 1, 1, 1]);
    sc.traffic.per = TrafficScope::Fleet;
    sc.bootstrap = 2;
    // Opinions off: this is about the posts' trees at a heal. With them, each observer's
    // opinion of the cut and of the heal shares the radio with the backlog (seed 7 drained in
    // 2.16 s against 2.0; docs/BENCHMARKS.md, Opinions: their cost on convoy).
    let dis = disseminators::vecino_with(|c| c.opinions = false);
    let (mut grafts, mut copies) = (0, 0.0);
    for seed in 1..=8 {
        let r = run(&sc, &dis, seed, &mut quiet);
        assert_eq!(r.delivery_ratio, 1.0, "seed {seed}");
        assert_eq!(r.fifo_violations, 0, "seed {seed}");
        let b = &r.backlog[0];
        assert!(b.posts > 0, "seed {seed}: nothing to drain");
        assert!(b.drained_s.is_some_and(|d| d <= 2.0), "seed {seed}: {b:?}");
        let g = r.counters.get("grafts").copied().unwrap_or(0);
        eprintln!("seed {seed}: {g} grafts, {:.3} copies per delivery", r.copies_per_delivery);
        grafts += g;
        copies += r.copies_per_delivery / 8.0;
    }
    // With the wait: 106 grafts and 1.89 copies per delivery; without: 141 and 2.00 (vectors
    // naming members by fingerprint, stop 14; before them 96 / 1.98 against 112 / 2.01).
    // With the liveness classes and the relative newspaper gate (issue 28, `b792874`): 132
    // grafts and 1.71 copies; the wait's share was not re-measured under them.
    assert!(grafts <= 135, "seeds 1-8: {grafts} grafts");
    assert!(copies < 2.0, "seeds 1-8: {copies} copies per delivery");
}

/// Two radios of five peers, cut apart for 60 s in every 120 s while posts flow (convoy's
/// rhythm, three times): with back-pressure from the host (each peer keeps at most 500 B in
/// the radio's queue and uses what the others leave idle) the backlogs drain faster than with
/// each peer paced to a fifth of its radio, where one relay forwards a backlog at its share
/// alone. Seeds 1-2.
#[test]
fn host_back_pressure_drains_a_radio_faster_than_equal_shares() {
    let mut sc = convoys(10, 3);
    sc.duration = Duration::from_secs(390);
    // Opinions off: this compares two ways of sharing a radio among the posts. With them
    // every observer publishes each cut and heal, airtime both arms pay (32.2 s with
    // back-pressure against 33.8 s paced at `0d23290`).
    let dis = disseminators::vecino_with(|c| c.opinions = false);
    let drained = |sc: &Scenario| -> f64 {
        (1..=2)
            .map(|seed| {
                let r = run(sc, &dis, seed, &mut quiet);
                assert_eq!(r.delivery_ratio, 1.0, "seed {seed}");
                assert_eq!(r.fifo_violations, 0, "seed {seed}");
                let d: Vec<f64> = r.backlog.iter().filter_map(|b| b.drained_s).collect();
                assert_eq!(d.len(), 3, "seed {seed}: {:?}", r.backlog);
                d.iter().sum::<f64>()
            })
            .sum()
    };
    let paced = drained(&sc);
    sc.link.host_queue_bytes = Some(500);
    let pressed = drained(&sc);
    eprintln!("seeds 1-2, 3 heals each: {paced:.2} s paced, {pressed:.2} s with back-pressure");
    // 20.51 s against 29.30 s paced at stop 18 (28.20 against 31.59 at stop 11; 34.34 s paced
    // before the pacer woke from its balance at the time it is asked rather than at its last
    // refill).
    assert!(pressed < paced * 0.95, "{pressed:.2} s with back-pressure, {paced:.2} s paced");
}

/// Two convoys of eight vehicles on radios, cut apart for 60 s in every 120 s (convoy's
/// rhythm, twice), 2 % of frames lost: broadcasting on the radio (`LinkModel::broadcast`,
/// `Config::shared_medium`) still delivers every post once, in order, on both sides and
/// drains every backlog, while each radio carries far fewer bytes per post than with every
/// frame point to point. Seeds 1-2.
#[test]
fn radio_broadcast_delivers_everything_with_fewer_radio_bytes() {
    let mut sc = convoys(16, 2);
    sc.duration = Duration::from_secs(270);
    sc.drain = Duration::from_secs(60);
    sc.link.host_queue_bytes = Some(250);
    sc.link.loss = Loss::Bernoulli { p: 0.02 };
    let dis = disseminators::vecino_factory().expect("vecino");
    let radio_bytes = |sc: &Scenario| -> f64 {
        (1..=2)
            .map(|seed| {
                let r = run(sc, &dis, seed, &mut quiet);
                let b = sc.link.broadcast;
                assert_eq!(r.delivery_ratio, 1.0, "seed {seed}, broadcast {b}");
                assert_eq!(r.fifo_violations, 0, "seed {seed}, broadcast {b}");
                assert_eq!(r.duplicate_deliveries, 0, "seed {seed}, broadcast {b}");
                assert!(
                    r.backlog.iter().all(|x| x.drained_s.is_some()),
                    "seed {seed}, broadcast {b}: {:?}",
                    r.backlog
                );
                let heard = r.counters.get("broadcasts_heard").copied().unwrap_or(0);
                assert_eq!(heard > 0, b, "seed {seed}: {heard} broadcasts heard");
                r.bytes_sent_per_radio_per_post.expect("radios")
            })
            .sum::<f64>()
            / 2.0
    };
    let point_to_point = radio_bytes(&sc);
    sc.link.broadcast = true;
    let broadcast = radio_bytes(&sc);
    eprintln!(
        "per radio per post: {point_to_point:.0} B point to point, {broadcast:.0} B broadcast"
    );
    assert!(
        broadcast < point_to_point * 0.7,
        "{broadcast:.0} B per radio per post broadcast, {point_to_point:.0} B point to point"
    );
}

/// 40 peers on an Internet-like topology, posts from every peer after the join: with one
/// tree per author each post follows the lowest-delay tree from its author, so latency
/// stretch is lower than on the one tree shared by all authors (Plumtree as published), the
/// copies stay near one per delivery once the trees are pruned, and an author sends each post
/// on at most `root_fanout` links.
#[test]
fn per_author_trees_beat_one_shared_tree() {
    let sc = fleet("trees", 40, internet(40), 4.0, 20, 80);
    let shared = disseminators::vecino_with(|c| c.per_author_trees = false);
    let own = disseminators::vecino_factory().expect("vecino");
    let shared = run(&sc, &shared, SEED, &mut quiet);
    let own = run(&sc, &own, SEED, &mut quiet);
    for r in [&shared, &own] {
        assert_eq!(r.delivery_ratio, 1.0, "seed {SEED}");
        assert_eq!(r.fifo_violations, 0, "seed {SEED}");
    }
    let (s, o) = (shared.stretch_p50.unwrap(), own.stretch_p50.unwrap());
    eprintln!(
        "seed {SEED}: stretch p50 shared {s:.2}, per author {o:.2}; copies {:.3} / {:.3}",
        shared.copies_per_delivery, own.copies_per_delivery
    );
    assert!(o < s, "seed {SEED}: stretch p50 per author {o:.2}, shared {s:.2}");
    assert!(o < 2.0, "seed {SEED}: stretch p50 per author {o:.2}");
    assert!(own.copies_per_delivery < 1.6, "seed {SEED}: copies {}", own.copies_per_delivery);
    // Two eager copies at most, plus the odd graft answer or retransmission.
    let frame = own.envelope_bytes_mean + 20.0;
    let egress = own.author_egress_bytes_per_post;
    assert!(egress < 2.5 * frame, "seed {SEED}: author egress {egress:.0} B, frame ~{frame:.0} B");
}

/// Proximity swaps: the view a peer fills while it joins is chosen before any coordinate has
/// settled; once they have, swaps replace far "near" links by nearer members, so the overlay
/// ends with shorter links and shorter paths than the one filled at join, and nothing is lost
/// while links are swapped under a flow of posts. (At 60 peers the gain is small: seed 7,
/// mean link RTT 114 -> 107 ms, path stretch 1.39 -> 1.33; planet's 490: 124 -> 110 ms.)
#[test]
fn proximity_swaps_make_the_near_links_near() {
    let sc = fleet("swaps", 60, internet(60), 2.0, 20, 240);
    let off = run(&sc, &disseminators::vecino_with(|c| c.swap_interval = None), SEED, &mut quiet);
    let swapping = |c: &mut crate::Config| c.swap_interval = Some(Duration::from_secs(30));
    let on = run(&sc, &disseminators::vecino_with(swapping), SEED, &mut quiet);
    for r in [&off, &on] {
        assert_eq!(r.delivery_ratio, 1.0, "seed {SEED}");
        assert_eq!(r.fifo_violations, 0, "seed {SEED}");
        assert_eq!(r.duplicate_deliveries, 0, "seed {SEED}");
    }
    let (a, b) = (off.overlay.clone().unwrap(), on.overlay.clone().unwrap());
    let swaps = on.counters.get("proximity_swaps").copied().unwrap_or(0);
    eprintln!(
        "seed {SEED}: link RTT {:.1} -> {:.1} ms, path stretch p50 {:.2} -> {:.2}, stretch p50 \
         {:.2} -> {:.2}, copies {:.3} -> {:.3}, {swaps} swaps",
        a.link_rtt_ms_mean,
        b.link_rtt_ms_mean,
        a.path_stretch_p50,
        b.path_stretch_p50,
        off.stretch_p50.unwrap(),
        on.stretch_p50.unwrap(),
        off.copies_per_delivery,
        on.copies_per_delivery,
    );
    assert_eq!(off.counters.get("proximity_swaps").copied().unwrap_or(0), 0, "seed {SEED}");
    assert!(swaps > 0, "seed {SEED}: no swap");
    assert!(
        b.link_rtt_ms_mean < a.link_rtt_ms_mean,
        "seed {SEED}: link RTT {:.1} ms with swaps, {:.1} without",
        b.link_rtt_ms_mean,
        a.link_rtt_ms_mean
    );
    assert!(b.path_stretch_p50 < a.path_stretch_p50, "seed {SEED}: {b:?} against {a:?}");
    assert_eq!(b.unreachable_pairs, 0, "seed {SEED}: the overlay split");
}

/// An engine the test can still inspect after the run (the runner owns its peers).
struct Inspectable {
    engine: std::sync::Arc<std::sync::Mutex<crate::Engine<rand_chacha::ChaCha8Rng>>>,
    out: Vec<Output>,
}

impl Protocol for Inspectable {
    fn peer(&self) -> AuthorKey {
        self.engine.lock().expect("engine").peer()
    }
    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        self.out.extend(self.engine.lock().expect("engine").handle(now, input));
        self.out.drain(..)
    }
}

impl Observe for Inspectable {
    fn digest(&self) -> u64 {
        self.engine.lock().expect("engine").digest()
    }
    fn known_peers(&self) -> usize {
        self.engine.lock().expect("engine").known_peers()
    }
    fn fisheye(&self) -> bool {
        self.engine.lock().expect("engine").fisheye()
    }
    fn log_digest(&self) -> u64 {
        self.engine.lock().expect("engine").log_digest()
    }
    fn published_coordinate(&self) -> Option<vecino_coords::Coordinate> {
        self.engine.lock().expect("engine").published_coordinate()
    }
    fn presence_seqs(&self, peer: &AuthorKey) -> (u64, u64) {
        self.engine.lock().expect("engine").presence_seqs(peer)
    }
    fn in_scope(&self, peer: &AuthorKey, c: Option<&vecino_coords::Coordinate>) -> bool {
        self.engine.lock().expect("engine").in_scope(peer, c)
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.engine.lock().expect("engine").counters()
    }
}

type Engines = std::sync::Arc<
    std::sync::Mutex<Vec<std::sync::Arc<std::sync::Mutex<crate::Engine<rand_chacha::ChaCha8Rng>>>>>,
>;

/// `2 × half` peers in two clusters 150 ms apart, each a 2-D patch 24 ms across (RTT =
/// distance + 2 ms), run with fisheye membership of `k` members and one landmark in 8
/// (`from_start`: `Config::fisheye_from_start`).
#[allow(clippy::too_many_lines)]
fn two_clusters(
    half: usize,
    k: usize,
    from_start: bool,
    seed: u64,
) -> (Report, Engines, Vec<AuthorKey>) {
    use rand::SeedableRng;
    let n = 2 * half;
    let pos: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let j = i % half;
            let side = (half as f64).sqrt().ceil() as usize;
            let step = 24.0 / side as f64;
            let base = if i < half { 0.0 } else { 150.0 };
            (base + (j % side) as f64 * step, (j / side) as f64 * step)
        })
        .collect();
    let mut ms = vec![0.0; n * n];
    for a in 0..n {
        for b in 0..n {
            if a != b {
                ms[a * n + b] = (pos[a].0 - pos[b].0).hypot(pos[a].1 - pos[b].1) + 2.0;
            }
        }
    }
    let matrix = vecino_coords::topology::RttMatrix::from_ms(n, ms).expect("matrix");
    let mut sc = fleet("fisheye", n, Latency::Matrix(Arc::new(matrix)), 1.0, 60, 120);
    sc.drain = Duration::from_secs(20);
    sc.check_interval = Duration::from_secs(1);
    sc.start_spread = Duration::from_secs(5);
    let config = crate::Config {
        fisheye_members: k,
        fisheye_landmarks: 8,
        fisheye_from_start: from_start,
        ..crate::Config::default()
    };
    let engines: Engines = Default::default();
    let kept = std::sync::Arc::clone(&engines);
    let cache = VerifyCache::default();
    let dis = Disseminator {
        name: "vecino",
        full_mesh: false,
        factory: Box::new(move |spec| {
            let rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.rng_seed);
            let config = crate::Config { uplink_bps: spec.uplink_bps, ..config.clone() };
            let mut e = crate::Engine::new(spec.identity, config, rng, spec.now, spec.stored);
            e.share_verification(cache.clone());
            let e = std::sync::Arc::new(std::sync::Mutex::new(e));
            kept.lock().expect("engine").push(std::sync::Arc::clone(&e));
            Box::new(Inspectable { engine: e, out: Vec::new() })
        }),
    };
    let r = run(&sc, &dis, seed, &mut quiet);
    let keys = (0..n).map(|i| identity(seed, i).public()).collect();
    (r, engines, keys)
}

/// Fisheye membership on two far clusters: posts reach everyone; each peer knows every peer
/// within its radius, no peer of the far cluster individually (but landmarks and links), and
/// that the far cluster exists (a landmark or a far-sample entry there); the membership
/// traffic per peer grows far slower than the fleet.
#[test]
fn fisheye_knows_the_near_cluster_peer_by_peer_and_the_far_one_coarsely() {
    let seed = SEED;
    eprintln!("seed {seed}");
    let (small, _, _) = two_clusters(20, 12, false, seed);
    let (full, _, _) = two_clusters(50, 0, false, seed);
    let (r, engines, keys) = two_clusters(50, 12, false, seed);
    assert_eq!(r.delivery_ratio, 1.0, "seed {seed}");
    assert_eq!(r.fifo_violations, 0, "seed {seed}");
    let half = keys.len() / 2;
    // Every peer knows (nearly) every peer in its scope.
    let c = |k: &str| r.counters.get(k).copied().unwrap_or(0) as f64;
    let known = c("fisheye_scope_known") / c("fisheye_scope_pairs");
    eprintln!("in-scope pairs known: {known:.3} of {}", c("fisheye_scope_pairs"));
    // 0.957 with one shared tree, 0.948 with per-author trees and byes (their merge): the
    // bound keeps a margin under what fisheye reaches, which is not all (see BENCHMARKS).
    assert!(known >= 0.93, "seed {seed}: only {known:.3} of the in-scope pairs known");
    let cluster = |k: &AuthorKey| keys.iter().position(|x| x == k).map(|i| i >= half);
    let engines = engines.lock().expect("engine");
    let (mut far_holders, mut unaware) = (0, 0);
    for e in engines.iter() {
        let e = e.lock().expect("engine");
        let mine = cluster(&e.id()).expect("a peer of the run");
        assert!(e.fisheye(), "seed {seed}: {} not fisheye", e.id());
        let held: Vec<AuthorKey> = e.members().into_iter().map(|m| m.peer).collect();
        let far_held = held
            .iter()
            .filter(|p| cluster(p) == Some(!mine))
            .filter(|p| matches!(e.scope_facts(p), (false, false, _)))
            .count();
        far_holders += usize::from(far_held > 0);
        let near_held = held.iter().filter(|p| cluster(p) == Some(mine)).count();
        assert!(near_held < half - 1, "seed {seed}: fisheye kept the whole cluster");
        let far_known = held.iter().any(|p| cluster(p) == Some(!mine) && e.scope_facts(p).0)
            || keys.iter().any(|p| cluster(p) == Some(!mine) && e.scope_facts(p).2);
        unaware += usize::from(!far_known);
    }
    // A peer whose early links all went to the far cluster gets a coordinate and a scope
    // there (the overlay does not trade its links for nearer ones while it has enough): on
    // this seed about one peer in five keeps a few far peers.
    eprintln!("peers holding far peers: {far_holders}; unaware of the far cluster: {unaware}");
    assert!(far_holders <= keys.len() / 4, "seed {seed}: {far_holders} peers hold far peers");
    assert!(unaware <= keys.len() / 10, "seed {seed}: {unaware} peers unaware of the far one");
    // Full membership grows with the fleet; fisheye far less (2.5 × the peers here).
    let ratio = r.membership_rx_bps_per_peer / small.membership_rx_bps_per_peer;
    eprintln!(
        "membership + control per peer: {:.0} b/s at 40, {:.0} b/s at 100 ({ratio:.2}×), \
         {:.0} b/s at 100 with full membership",
        small.membership_rx_bps_per_peer,
        r.membership_rx_bps_per_peer,
        full.membership_rx_bps_per_peer
    );
    assert!(ratio < 2.0, "seed {seed}: membership per peer grew {ratio:.2}× for 2.5× peers");
    assert!(
        r.membership_rx_bps_per_peer < full.membership_rx_bps_per_peer,
        "seed {seed}: fisheye costs more than full membership"
    );
}

/// A fleet told it is large (`fisheye_from_start`) joins without a flood of presences, and
/// neighbours stop passing on what a fisheye peer refuses (its pongs tell its scope; a
/// refused push mutes the author's membership slot): against the same fleet without the size
/// hint, fewer membership bytes and far fewer refused events, with every post delivered and
/// the in-scope members still known.
#[test]
fn a_fleet_told_it_is_large_joins_without_a_flood_and_is_not_sent_what_it_refuses() {
    let seed = SEED;
    eprintln!("seed {seed}");
    let (late, _, _) = two_clusters(50, 12, false, seed);
    let (r, engines, _) = two_clusters(50, 12, true, seed);
    assert_eq!(r.delivery_ratio, 1.0, "seed {seed}");
    assert_eq!(r.fifo_violations, 0, "seed {seed}");
    let c = |r: &Report, k: &str| r.counters.get(k).copied().unwrap_or(0) as f64;
    let known = c(&r, "fisheye_scope_known") / c(&r, "fisheye_scope_pairs");
    let known_late = c(&late, "fisheye_scope_known") / c(&late, "fisheye_scope_pairs");
    let peers = engines.lock().expect("engine").len() as f64;
    let refused = c(&r, "fisheye_refused") / peers;
    let refused_late = c(&late, "fisheye_refused") / peers;
    eprintln!(
        "from the start / after K members: membership + control {:.0} / {:.0} b/s per peer, \
         refused {refused:.1} / {refused_late:.1} events per peer, in-scope pairs known \
         {known:.3} / {known_late:.3}, mutes {} / {}",
        r.membership_rx_bps_per_peer,
        late.membership_rx_bps_per_peer,
        c(&r, "membership_mutes"),
        c(&late, "membership_mutes"),
    );
    assert!(
        engines.lock().expect("engine").iter().all(|e| e.lock().expect("engine").fisheye()),
        "seed {seed}"
    );
    assert!(
        r.membership_rx_bps_per_peer < late.membership_rx_bps_per_peer,
        "seed {seed}: the size hint did not save membership traffic"
    );
    assert!(known >= 0.93, "seed {seed}: only {known:.3} of the in-scope pairs known");
}

/// Postcards across convoy cuts, with custodians killed mid-outage (each restarts 10 s later
/// with what it persisted, behind a connection its neighbours still take for the old one):
/// every postcard arrives exactly once and in order per pair, its receipt comes back, and
/// none expires — under vecino's router and each baseline.
#[test]
fn postcards_survive_cuts_and_custodians_killed_mid_outage() {
    let mut sc = convoys(10, 3);
    sc.traffic.rate_per_s = 0.0;
    sc.duration = Duration::from_secs(400);
    sc.drain = Duration::from_secs(60);
    sc.postcards = Some(PostcardTraffic {
        rate_per_s: 1.0,
        body_bytes: 200,
        lifetime: Duration::from_secs(600),
        start: Duration::from_secs(30),
        pairs: Pairs::AcrossGroups,
        hint: false,
    });
    for (at, peers) in [(90, vec![2]), (210, vec![7]), (330, vec![0, 5])] {
        sc.faults.push(Fault {
            start: Duration::from_secs(at),
            end: Some(Duration::from_secs(at + 10)),
            kind: FaultKind::Crash { peers },
        });
    }
    for name in ["vecino", "direct", "epidemic", "spray"] {
        let dis = disseminators::by_name(name).expect(name);
        let r = run(&sc, &dis, SEED, &mut quiet);
        let p = r.postcards.as_ref().expect("postcards measured");
        let ctx = format!("{name}, seed {SEED}: {p:?}");
        assert!(p.sent > 300, "{ctx}");
        assert_eq!(p.delivered, p.sent, "{ctx}");
        assert_eq!(p.fifo_violations, 0, "{ctx}");
        assert_eq!(p.duplicate_deliveries, 0, "{ctx}");
        assert_eq!(p.expired, 0, "{ctx}");
        assert!(p.receipt_ratio > 0.97, "{ctx}");
        assert!(p.sent_during_cut > 100, "{ctx}");
        if name == "vecino" {
            // Held where the cut finds it, not walked through the convoy on the far side's
            // stale link state (5 hops a postcard before the two-way check).
            assert!(p.hops_mean < 2.0, "{ctx}");
        }
    }
}

/// Barrios and their coherence on three clusters (8 peers each, 4 ms apart inside, 80 ms
/// between): barrios stay inside clusters, the peers agree on each other's barrio, and
/// when every link of the first cluster's barrio turns 3 times slower (t = 420 … 540 s) most
/// of its members raise a coherence alarm, no other peer does, and the alarms clear after.
#[test]
fn clusters_are_barrios_and_a_slowed_barrio_alarms_alone() {
    let seed = SEED;
    eprintln!("seed {seed}");
    let (per, clusters) = (8, 3);
    let n = per * clusters;
    let mut ms = vec![0.0; n * n];
    for a in 0..n {
        for b in 0..n {
            if a != b {
                ms[a * n + b] = if a / per == b / per { 4.0 } else { 80.0 };
            }
        }
    }
    let matrix = vecino_coords::topology::RttMatrix::from_ms(n, ms).expect("matrix");
    let mut sc = fleet("barrios", n, Latency::Matrix(Arc::new(matrix)), 0.0, 0, 660);
    sc.check_interval = Duration::from_secs(5);
    sc.barrios = Some(crate::sim::BarrioSampling {
        every: Duration::from_secs(2),
        steady_from: Duration::from_secs(300),
    });
    sc.faults.push(Fault {
        start: Duration::from_secs(420),
        end: Some(Duration::from_secs(540)),
        kind: FaultKind::Degrade { around: 0, rtt_factor: 3.0 },
    });
    let dis = disseminators::vecino_with(|c| c.opinions = false);
    let r = run(&sc, &dis, seed, &mut quiet);
    let b = r.barrios.expect("barrios sampled");
    eprintln!("{b:?}");
    assert_eq!(b.peers_placed, n, "seed {seed}: every peer in a barrio");
    // No barrio spans two clusters. A cluster may be two barrios: Vivaldi places peers by the
    // links they measure, and a cluster whose two halves are not linked to each other can be
    // folded apart on the map (seed 7: the third cluster's halves sit 45 ms apart, their heads
    // unlinked), which a barrio drawn from the map follows.
    assert!(b.head_rtt_ms_max.is_some_and(|r| r <= 4.0), "seed {seed}: a barrio spans clusters");
    assert!(b.barrios <= 2 * clusters, "seed {seed}: {} barrios", b.barrios);
    assert!(
        b.steady_changes <= 2,
        "seed {seed}: {} barrio changes after the join",
        b.steady_changes
    );
    assert!(b.agree_share.is_some_and(|a| a >= 0.999), "seed {seed}: agreement {b:?}");
    assert_eq!(b.degraded_members, Some(per), "seed {seed}");
    assert!(b.alarm_share_max.is_some_and(|s| s >= 0.75), "seed {seed}: {b:?}");
    assert_eq!(b.false_alarms, 0, "seed {seed}: {b:?}");
    assert!(b.clear_s.is_some_and(|s| s <= 60.0), "seed {seed}: {b:?}");
}

/// Liars that only shift their neighbours' start by an hour (every link claimed up, as it
/// is, so no status of theirs ever contradicts the consensus) lose their clout all the same:
/// each subject signs its own start in its presence, and a claim denying it counts against
/// the observer at every review. Without that check their clout never falls, and a subject
/// they watch in numbers reads their start.
#[test]
fn liars_about_a_start_the_subject_signed_lose_their_clout() {
    let seed = SEED;
    let peers = 16;
    let mut sc = fleet("start-liars", peers, internet(peers), 0.0, 0, 300);
    sc.opinions = Some(OpinionSampling { every: Duration::from_secs(10), observers: 6 });
    sc.faults.push(Fault {
        start: Duration::ZERO,
        end: None,
        kind: FaultKind::Lie {
            peers: vec![1, 5, 9, 13],
            lie: crate::opinions::Lie {
                offline: false,
                restarts_add: 0,
                start_shift_ms: 3_600_000,
                uptime_factor: 1.0,
                about_all: false,
            },
        },
    });
    let r = run(&sc, &disseminators::vecino_with(|_| {}), seed, &mut quiet);
    let o = r.opinions.expect("opinions sampled");
    eprintln!("seed {seed}: {o:?}");
    let end = o.liar_clout_share_end.expect("liars sampled");
    assert!(end < 0.02, "seed {seed}: liars hold {end:.3} of the clout at the end");
    let v = &o.methods["vecino"];
    assert!(v.start_err_s_p50.is_some_and(|e| e <= 1.0), "seed {seed}: {v:?}");
    assert_eq!(v.false_offline, 0, "seed {seed}: {v:?}");
}
