//! `iroh`: iroh-gossip's membership (HyParView, [`hyparview`]) over iroh's QUIC connections, as
//! a disseminator of the simulator, so that its idle traffic and its crash detection are
//! measured on vecino's network, faults and seed.
//!
//! iroh-gossip has no heartbeat of its own: a neighbour is gone when its QUIC connection
//! closes. What keeps connections alive and notices dead ones is iroh's transport
//! (`n0-computer/iroh` @ a05c9c4, `iroh/src/socket.rs:105-117`, `endpoint/quic.rs:154-158`,
//! on `n0-computer/noq` @ c334d2d): a path that received nothing for [`KEEP_ALIVE`] (5 s,
//! `HEARTBEAT_INTERVAL`) sends a PING, and one that received nothing for [`PATH_IDLE`]
//! (15 s, `PATH_MAX_IDLE_TIMEOUT`) is abandoned, closing the connection with its last path.
//! Both timers restart on every packet received (`noq-proto` `on_packet_authenticated`), so
//! the two ends of an idle connection take turns: one PING and one ACK per 5 s per connection.
//!
//! Modelled per connection (one direct path; no relay): the handshake (client Initial and
//! server flight padded to 1 200 bytes, RFC 9000 §14.1; the client's Finished and the
//! server's HANDSHAKE_DONE with new connection ids: [`HANDSHAKE_BYTES`]); 1-RTT packets of one
//! HyParView message each on the topic's stream; ACKs after [`MAX_ACK_DELAY`] or at once for
//! every second ack-eliciting packet, piggybacked on a packet sent meanwhile; loss recovery
//! (a packet older than 9/8 RTT below an acknowledged one is lost, a probe timeout of
//! 2 × RTT + 25 ms doubling while unanswered) retransmitting HyParView messages, which are
//! delivered once each; keep-alive and idle timers; CONNECTION_CLOSE when HyParView drops a
//! peer; dials that fail after [`DIAL_TIMEOUT`] (noq's default `max_idle_timeout`).
//!
//! A peer emits `AppEvent::Link` *connected* when a peer enters its active view (HyParView's
//! `NeighborUp`) and *disconnected* when one leaves it (`NeighborDown`: for a crashed
//! neighbour, when the connection went idle).
//!
//! Not modelled: posts (ignored; iroh-gossip's PlumTree sends nothing while idle), the relay
//! path (a second path with keep-alives of its own where one is in use), NAT traversal frames,
//! datagram coalescing beyond ACKs.

pub mod hyparview;
mod quic;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{AuthorKey, Bytes};

use crate::io::{AppEvent, Input, LinkStatus, Output, Priority, Protocol, Timer, TimerKind};
use crate::sim::disseminators::{Disseminator, NodeSpec, PeerDirectory};
use crate::sim::liveness::{self, Kind};
use crate::time::Time;

use self::hyparview::{Message, Out};
use self::quic::Conn;
#[cfg(test)]
use self::quic::Packet;
pub use self::quic::{
    ACK_BYTES, ACK_FRAME, AEAD_TAG, CLOSE_BYTES, DIAL_TIMEOUT, HANDSHAKE_BYTES, INITIAL_RTT,
    KEEP_ALIVE, MAX_ACK_DELAY, PATH_IDLE, PING_BYTES, SHORT_HEADER, STREAM_FRAME, STREAM_HEADER,
};

/// Bootstrap peers a joining peer sends `Join` to: random lower-index peers at the start (as
/// the simulator gives vecino's peers), random others after a restart.
pub const BOOTSTRAP: usize = 3;

/// The `iroh` disseminator. The simulator's transport is a full mesh (any peer can send to
/// any); the model keeps its own QUIC connections on it, handshakes and all.
pub fn disseminator() -> Disseminator {
    Disseminator {
        name: "iroh",
        full_mesh: true,
        factory: Box::new(|spec| Box::new(Iroh::new(spec))),
    }
}

/// Timers, by the tag of `TimerKind::Peer(key, tag)`.
mod tag {
    /// A connection's wake-up (key: the peer).
    pub(super) const CONN: u8 = 1;
    /// HyParView's shuffle (key: this peer).
    pub(super) const SHUFFLE: u8 = 2;
    /// HyParView's neighbour request timeout (key: the peer).
    pub(super) const NEIGHBOR: u8 = 3;
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    dials: u64,
    dials_failed: u64,
    idle_closes: u64,
    neighbor_down: u64,
    retransmits: u64,
}

/// One iroh-gossip peer on iroh's QUIC.
#[derive(Debug)]
pub(crate) struct Iroh {
    key: AuthorKey,
    me: u32,
    dir: Arc<PeerDirectory>,
    rng: ChaCha8Rng,
    hv: hyparview::State,
    /// One per peer this one has a connection with: bounded by the active view, the pending
    /// neighbour requests and the short-lived connections of shuffles and joins.
    conns: BTreeMap<u32, Conn>,
    restarts: u32,
    counters: Counters,
    out: Vec<Output>,
}

impl Iroh {
    pub(crate) fn new(spec: NodeSpec) -> Self {
        let me = spec.index as u32;
        Self {
            key: spec.identity.public(),
            me,
            dir: spec.directory,
            rng: ChaCha8Rng::seed_from_u64(spec.rng_seed),
            hv: hyparview::State::new(me),
            conns: BTreeMap::new(),
            restarts: spec.restarts,
            counters: Counters::default(),
            out: Vec::new(),
        }
    }

    fn start(&mut self, now: Time) {
        let n = self.dir.len() as u32;
        let mut candidates: Vec<u32> =
            (0..n).filter(|&j| j != self.me && (self.restarts > 0 || j < self.me)).collect();
        let mut picks = Vec::new();
        while picks.len() < BOOTSTRAP && !candidates.is_empty() {
            let j = (self.rng.next_u64() % candidates.len() as u64) as usize;
            picks.push(candidates.swap_remove(j));
        }
        for p in picks {
            self.hv.request_join(p);
        }
        self.run_hv(now);
    }

    /// Carries out what HyParView asked.
    fn run_hv(&mut self, now: Time) {
        while !self.hv.out.is_empty() {
            let outs = std::mem::take(&mut self.hv.out);
            for o in outs {
                match o {
                    Out::Send(to, m) => self.send_msg(now, to, m),
                    Out::Disconnect(p) => self.close(now, p, true),
                    Out::NeighborUp(p) => self.link(p, LinkStatus::Connected),
                    Out::NeighborDown(p) => {
                        self.counters.neighbor_down += 1;
                        self.link(p, LinkStatus::Disconnected);
                    }
                    Out::ShuffleTimer(d) => {
                        let key = self.key;
                        self.schedule(now + d, key, tag::SHUFFLE);
                    }
                    Out::NeighborTimer(d, p) => {
                        let key = self.dir.key(p as usize);
                        self.schedule(now + d, key, tag::NEIGHBOR);
                    }
                }
            }
        }
    }

    fn link(&mut self, p: u32, status: LinkStatus) {
        let peer = self.dir.key(p as usize);
        self.out.push(Output::Deliver(AppEvent::Link { peer, status }));
    }

    fn schedule(&mut self, at: Time, key: AuthorKey, t: u8) {
        self.out.push(Output::Schedule { at, timer: Timer(TimerKind::Peer(key, t)) });
    }

    fn hv_message(&mut self, now: Time, from: u32, m: Message) {
        let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
        self.hv.message(from, m, &mut rng);
        self.rng = rng;
        self.run_hv(now);
    }

    fn timer(&mut self, now: Time, key: AuthorKey, t: u8) {
        match t {
            tag::SHUFFLE => {
                let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
                self.hv.shuffle_timer(&mut rng);
                self.rng = rng;
                self.run_hv(now);
            }
            tag::NEIGHBOR => {
                if let Some(p) = self.dir.index(&key) {
                    let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
                    self.hv.neighbor_timer(p, &mut rng);
                    self.rng = rng;
                    self.run_hv(now);
                }
            }
            tag::CONN => {
                if let Some(p) = self.dir.index(&key) {
                    self.wake(now, p);
                }
            }
            _ => {}
        }
    }
}

impl Protocol for Iroh {
    fn peer(&self) -> AuthorKey {
        self.key
    }

    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        match input {
            Input::Start => self.start(now),
            Input::Received { from, frame } => {
                if let Some(f) = self.dir.index(&from) {
                    self.received(now, f, &frame);
                }
            }
            Input::Timer(Timer(TimerKind::Peer(key, t))) => self.timer(now, key, t),
            _ => {}
        }
        self.out.drain(..)
    }
}

impl crate::sim::Observe for Iroh {
    fn digest(&self) -> u64 {
        0
    }

    /// HyParView never knows every peer: its active and passive views.
    fn known_peers(&self) -> usize {
        self.hv.active.len() + self.hv.passive.len()
    }

    fn neighbours(&self) -> Vec<AuthorKey> {
        self.hv.active.iter().map(|p| self.dir.key(p as usize)).collect()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters;
        vec![
            ("iroh_dials", c.dials),
            ("iroh_dials_failed", c.dials_failed),
            ("iroh_idle_closes", c.idle_closes),
            ("iroh_neighbor_down", c.neighbor_down),
            ("iroh_retransmits", c.retransmits),
            ("iroh_active_view", self.hv.active.len() as u64),
            ("iroh_passive_view", self.hv.passive.len() as u64),
        ]
    }
}
