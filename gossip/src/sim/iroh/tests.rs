//! The `iroh` model on small seeded fleets: the views HyParView builds, one keep-alive per
//! idle connection per 5 s, a dead neighbour noticed by the idle timeout (each assertion
//! prints the seed).

use std::time::Duration;

use super::*;
use crate::sim::{Fault, FaultKind, Scenario};

const SEED: u64 = 5;

/// `n` idle peers (no posts), 40 ms RTT, 10 Mbit/s, no loss, for `secs` (+ 5 s drain).
fn idle(n: usize, secs: u64) -> Scenario {
    let mut sc = Scenario::small("idle", n);
    sc.traffic.rate_per_s = 0.0;
    sc.link.rate_bps = Some(10_000_000);
    sc.duration = Duration::from_secs(secs);
    sc.drain = Duration::from_secs(5);
    sc.converge_from_start = false;
    sc
}

fn hv_messages() -> Vec<Message> {
    vec![
        Message::Join,
        Message::ForwardJoin { peer: 300, ttl: 6 },
        Message::Shuffle { origin: 1, nodes: vec![2, 3, 400], ttl: 6 },
        Message::ShuffleReply { nodes: vec![] },
        Message::Neighbor { high: true },
        Message::Disconnect { alive: false },
    ]
}

#[test]
fn packets_round_trip() {
    let mut packets = vec![
        Packet::Handshake { step: 2, id: u64::MAX },
        Packet::Ping { pn: 70_000 },
        Packet::Ack { pns: vec![1, 2, 3] },
        Packet::Close,
    ];
    for (i, msg) in hv_messages().into_iter().enumerate() {
        packets.push(Packet::Data { pn: i as u64, mid: 9, msg, acks: vec![4] });
    }
    for p in packets {
        let (kind, body) = p.encode();
        let frame = liveness::frame(kind, &body, 1_200);
        let (k, b) = liveness::parse(&frame).unwrap();
        assert_eq!(Packet::decode(k, b), Some(p));
    }
    assert_eq!(PING_BYTES + 28, 57, "the anchor's QUIC PING on the wire");
}

/// After the joins, each peer holds 1–5 active neighbours; an idle connection costs one PING
/// (and its ACK) per 5 s, not one per end: the ends take turns.
#[test]
fn idle_connections_take_turns_at_keep_alives() {
    let n = 20;
    let secs = 300;
    let sc = idle(n, secs);
    let r = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let views = r.counters["iroh_active_view"];
    assert!((n as u64..=5 * n as u64).contains(&views), "seed {SEED}: {views}");
    let links = views as f64 / 2.0;
    let pings = r.frames_by_kind["iroh_quic_ping"] as f64;
    let expected = links * (secs + 5) as f64 / KEEP_ALIVE.as_secs_f64();
    assert!(
        (pings - expected).abs() / expected < 0.15,
        "seed {SEED}: {pings} pings, {expected:.0} expected of {links} links"
    );
    assert_eq!(r.counters["iroh_idle_closes"], 0, "seed {SEED}");
    assert_eq!(r.counters["iroh_dials_failed"], 0, "seed {SEED}");
}

/// A crashed peer's neighbours close their connections to it when the path has been silent
/// for 15 s: no sooner than 15 s less a keep-alive period and an RTT, no later than 15 s.
#[test]
fn a_dead_neighbour_is_noticed_by_the_idle_timeout() {
    let mut sc = idle(20, 150);
    sc.faults.push(Fault {
        start: Duration::from_secs(60),
        end: Some(Duration::from_secs(120)),
        kind: FaultKind::Crash { peers: vec![4] },
    });
    let r = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let c = r.crash_detection.expect("a crash");
    assert!(c.observers >= 1, "seed {SEED}: {c:?}");
    assert_eq!(c.knew, c.observers, "seed {SEED}: {c:?}");
    let max = c.known_by_all_max_s.unwrap();
    let p50 = c.observer_p50_s.unwrap();
    assert!(max <= PATH_IDLE.as_secs_f64() + 1e-6, "seed {SEED}: {max}");
    let floor = (PATH_IDLE - KEEP_ALIVE).as_secs_f64() - 0.1;
    assert!(p50 >= floor, "seed {SEED}: {p50}");
    assert_eq!(c.within_5s, 0, "seed {SEED}");
}

#[test]
fn same_seed_same_report() {
    let mut sc = idle(12, 90);
    sc.link.loss = crate::sim::Loss::Bernoulli { p: 0.02 };
    sc.faults.push(Fault {
        start: Duration::from_secs(30),
        end: Some(Duration::from_secs(60)),
        kind: FaultKind::Crash { peers: vec![2] },
    });
    let a = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let b = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    assert_eq!(a, b, "seed {SEED}");
}
