//! The wire counters (`vecino_transport_wire_bytes_{sent,received}_total{transport}`) against the
//! frame counters, on two real processes: what one side sends on the wire the other receives,
//! and the wire carries every frame plus a plausible overhead.

mod common;

use common::{Peer, metric_in, wait_converged, wait_until};

/// One peer's counters: frames sent, and wire bytes [tcp, quic] sent and received.
#[derive(Debug, Clone, Copy)]
struct Counters {
    frames_sent: f64,
    sent: [f64; 2],
    received: [f64; 2],
}

impl Counters {
    fn of(p: &Peer) -> Counters {
        let text = p.client().get_text("/metrics").expect("metrics");
        let wire = |name: &str, transport: &str| {
            metric_in(&text, name, &format!("transport=\"{transport}\""))
        };
        let (s, r) = (
            "vecino_transport_wire_bytes_sent_total",
            "vecino_transport_wire_bytes_received_total",
        );
        Counters {
            frames_sent: metric_in(&text, "vecino_transport_bytes_sent_total", ""),
            sent: [wire(s, "tcp"), wire(s, "quic")],
            received: [wire(r, "tcp"), wire(r, "quic")],
        }
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            frames_sent: self.frames_sent - before.frames_sent,
            sent: std::array::from_fn(|k| self.sent[k] - before.sent[k]),
            received: std::array::from_fn(|k| self.received[k] - before.received[k]),
        }
    }

    fn sent_total(&self) -> f64 {
        self.sent.iter().sum()
    }
}

/// The address `p` says it is dialled on for `transport` ("tcp" or "quic-v1"), as
/// `/v1/status` gives it: a full multiaddr with its peer id, pasted as is into `--bootstrap`.
fn addr(p: &Peer, transport: &str) -> String {
    let status = p.get("/v1/status");
    let a = status["dial"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains(&format!("/{transport}/")))
        .unwrap_or_else(|| panic!("no {transport} address in {status}"));
    assert!(a.ends_with(&format!("/p2p/{}", p.peer_id)), "{a}");
    a.to_string()
}

/// b joins a over `transport` (index `k`: 0 tcp, 1 quic) and a sends it posts of a known size.
fn exchange(k: usize) {
    const POSTS: usize = 40;
    const BODY: usize = 2_000;
    let transport = ["tcp", "quic-v1"][k];
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), &[addr(&a, transport)], &[]);
    wait_converged(&[&a, &b]);
    let (a0, b0) = (Counters::of(&a), Counters::of(&b));
    // Connection set-up already went over the wire, on the transport b dialled.
    assert!(a0.sent[k] > 0.0 && b0.sent[k] > 0.0, "nothing counted on {transport}: {a0:?} {b0:?}");

    let text = "x".repeat(BODY);
    for i in 0..POSTS {
        a.post("wire", &format!("{i} {text}"));
    }
    wait_until("every post at b", || b.post_texts().len() == POSTS);
    // b holds every post, so it has read every byte a wrote for them; only heartbeats and
    // acknowledgements can be in flight between the two snapshots.
    let (a1, b1) = (Counters::of(&a).since(a0), Counters::of(&b).since(b0));
    println!("over {transport}:\n  a: {a1:?}\n  b: {b1:?}");

    // a sent at least the posts' bytes in frames, on the transport b dialled; the wire carried
    // every frame byte (for TCP more: noise, yamux and headers; QUIC is counted in its streams,
    // where a frame is a frame), but not several times as much.
    assert!(a1.frames_sent > (POSTS * BODY) as f64, "a's frames: {a1:?}");
    assert!(a1.sent[k] >= a1.frames_sent, "the posts went on {transport}: {a1:?}");
    for (name, c) in [("a", a1), ("b", b1)] {
        assert!(
            c.sent_total() >= c.frames_sent,
            "{name}: the wire carried less than the frames: {c:?}"
        );
        if k == 0 {
            assert!(c.sent[0] > c.frames_sent, "{name}: TCP without overhead: {c:?}");
        }
        assert!(
            c.sent_total() < 2.0 * c.frames_sent + 16_000.0,
            "{name}: implausible overhead: {c:?}"
        );
    }
    // What one side sent on each transport the other received on it, up to the heartbeats that
    // crossed between the two snapshots and the TCP header model's per-call rounding.
    for k in 0..2 {
        for (from, to, sent, received) in
            [("a", "b", a1.sent[k], b1.received[k]), ("b", "a", b1.sent[k], a1.received[k])]
        {
            assert!(
                (sent - received).abs() <= 0.1 * sent + 4_000.0,
                "transport {k}: {from} sent {sent} B, {to} received {received} B"
            );
        }
    }
}

#[test]
fn tcp_wire_counters_carry_the_frames_and_agree_across_the_link() {
    exchange(0);
}

#[test]
fn quic_wire_counters_carry_the_frames_and_agree_across_the_link() {
    exchange(1);
}
