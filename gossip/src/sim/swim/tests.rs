//! The `swim` model against memberlist's formulas and its own computed rates, on small seeded
//! fleets (each assertion prints the seed).

use std::time::Duration;

use super::*;
use crate::sim::{Fault, FaultKind, Scenario};

const SEED: u64 = 11;

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

fn crash(sc: &mut Scenario, peer: u32, at: u64, restart: u64) {
    sc.faults.push(Fault {
        start: Duration::from_secs(at),
        end: Some(Duration::from_secs(restart)),
        kind: FaultKind::Crash { peers: vec![peer] },
    });
}

#[test]
fn timeouts_are_memberlists() {
    // 4 × log10(20) × 1 s, memberlist's integer arithmetic: 4 × 1 301 ms.
    assert_eq!(suspicion_timeout(SUSPICION_MULT, 20, PROBE_INTERVAL), Duration::from_millis(5_204));
    assert_eq!(
        suspicion_timeout(SUSPICION_MULT, 490, PROBE_INTERVAL),
        Duration::from_millis(10_760)
    );
    // Below 10 members the scale is 1.
    assert_eq!(suspicion_timeout(SUSPICION_MULT, 4, PROBE_INTERVAL), Duration::from_secs(4));
    assert_eq!(retransmit_limit(RETRANSMIT_MULT, 20), 8);
    assert_eq!(retransmit_limit(RETRANSMIT_MULT, 490), 12);
    assert_eq!(push_pull_scale(PUSH_PULL_INTERVAL, 20), Duration::from_secs(30));
    assert_eq!(push_pull_scale(PUSH_PULL_INTERVAL, 70), Duration::from_secs(90));
    assert_eq!(push_pull_scale(PUSH_PULL_INTERVAL, 490), Duration::from_secs(150));
    assert_eq!(push_pull_scale(PUSH_PULL_INTERVAL, 10_000), Duration::from_secs(300));
    // The suspicion timer: max with no confirmation, min with k = 2, between with one.
    let min = Duration::from_millis(5_204);
    let max = min * SUSPICION_MAX_TIMEOUT_MULT;
    assert_eq!(remaining_suspicion(0, 2, Duration::ZERO, min, max), Some(max));
    assert_eq!(remaining_suspicion(2, 2, Duration::ZERO, min, max), Some(min));
    let one = remaining_suspicion(1, 2, Duration::ZERO, min, max).unwrap();
    assert_eq!(one, Duration::from_millis(14_807), "31.224 − ln 2 / ln 3 × 26.02 s");
    assert_eq!(remaining_suspicion(2, 2, Duration::from_secs(6), min, max), None);
}

/// An idle fleet receives, per peer and second, one ping and one ack (it answers one ping and
/// gets one ack back) and, every push/pull interval, two state messages (one it asked for, one
/// it was sent); nothing else: no suspicion, no gossip.
#[test]
fn idle_traffic_is_probes_and_push_pull() {
    let n = 20;
    let sc = idle(n, 300);
    let r = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let push_pull = sizes::push_pull(n, false) as f64;
    let computed = (sizes::ping() + sizes::ack()) as f64 + 2.0 * push_pull / 30.0;
    let measured = r.membership_rx_bps_per_peer / 8.0;
    let err = (measured - computed).abs() / computed;
    assert!(err < 0.10, "seed {SEED}: {measured:.1} B/s measured, {computed:.1} computed");
    let steady = r.steady_membership.expect("60 s to the end").sent_bps_per_peer / 8.0;
    assert!((steady - computed).abs() / computed < 0.05, "seed {SEED}: {steady:.1} B/s steady");
    assert_eq!(r.counters.get("swim_suspected"), Some(&0), "seed {SEED}");
    assert!(!r.bytes_by_kind.contains_key("swim_gossip"), "seed {SEED}: {:?}", r.bytes_by_kind);
    // On the wire: UDP/IPv4 on each datagram, TCP on each push/pull.
    let segs = (push_pull / 1_448.0).ceil();
    let wire = computed + 2.0 * 28.0 + 2.0 * (5.0 * 52.0 + 2.0 * 52.0 * segs) / 30.0;
    let measured = r.membership_wire_rx_bps_per_peer / 8.0;
    assert!((measured - wire).abs() / wire < 0.10, "seed {SEED}: {measured:.1} vs {wire:.1} B/s");
}

/// A crashed member is declared failed by every live one, no sooner than a probe and the
/// shortest suspicion, no later than a probe round, the longest suspicion and some gossip.
/// Back after its entry was reaped (60 s down), it joins as new; back while still held dead
/// (20 s down), it refutes. Either way every member holds every other alive again.
#[test]
fn a_crash_is_declared_by_all_and_the_peer_taken_back() {
    let n = 20;
    let mut sc = idle(n, 200);
    crash(&mut sc, 7, 40, 100);
    crash(&mut sc, 3, 130, 150);
    let r = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let c = r.crash_detection.expect("crashes");
    assert_eq!((c.crashes, c.observers, c.knew), (2, 38, 38), "seed {SEED}: {c:?}");
    let min = suspicion_timeout(SUSPICION_MULT, n, PROBE_INTERVAL).as_secs_f64();
    let max_suspicion = min * f64::from(SUSPICION_MAX_TIMEOUT_MULT);
    for all in c.known_by_all_s.iter().map(|x| x.expect("known by all")) {
        assert!(all >= min + PROBE_TIMEOUT.as_secs_f64(), "seed {SEED}: {all} s");
        assert!(all <= (n - 1) as f64 + 1.0 + max_suspicion + 2.0, "seed {SEED}: {all} s");
    }
    assert_eq!(c.within_5s, 0, "seed {SEED}: the shortest suspicion is 5.2 s");
    assert!(r.counters.get("swim_refuted").is_some_and(|&x| x >= 1), "seed {SEED}");
    assert!(
        r.converge_after_heal_s.iter().all(Option::is_some),
        "seed {SEED}: {:?}",
        r.converge_after_heal_s
    );
}

#[test]
fn same_seed_same_report() {
    let mut sc = idle(12, 60);
    crash(&mut sc, 3, 20, 40);
    sc.link.loss = crate::sim::Loss::Bernoulli { p: 0.02 };
    let a = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    let b = crate::sim::run(&sc, &disseminator(), SEED, &mut |_| {});
    assert_eq!(a, b, "seed {SEED}");
}
