//! `swim`: HashiCorp memberlist under Serf — SWIM with Lifeguard's refinements, the membership
//! behind Consul and Nomad — as a disseminator of the simulator, so that its idle traffic and
//! its crash detection are measured on vecino's network, faults and seed.
//!
//! What runs is memberlist's state machine (`hashicorp/memberlist` @ 1b4c746, `state.go`),
//! timer for timer, with `DefaultLANConfig`'s settings (`config.go:302-341`):
//!
//! - **probe** every [`PROBE_INTERVAL`] (a ticker: a tick that comes while a probe runs starts
//!   the next one when it ends) the next member of a shuffled round-robin list, skipping dead
//!   ones (reaped [`GOSSIP_TO_THE_DEAD`] after their death when the list wraps, then
//!   reshuffled): a ping (a suspect member's with a suspect message, so that it can refute);
//!   no ack within [`PROBE_TIMEOUT`] → indirect pings through [`INDIRECT_CHECKS`] random
//!   alive members (which ping the target and relay its ack, or nack after the probe timeout)
//!   and a TCP ping to the target; nothing by the end of the probe interval (scaled by the
//!   Lifeguard awareness score, up to ×[`AWARENESS_MAX`]) → *suspect* it;
//! - **suspicion** (`suspicion.go`): a timer from `max = SuspicionMaxTimeoutMult × min` down
//!   to `min = SuspicionMult × max(1, log10 n) × ProbeInterval` ([`suspicion_timeout`]) as
//!   independent confirmations arrive (k = SuspicionMult − 2); when it fires the member is
//!   declared *dead*; a member hearing it is suspected or dead refutes with a higher
//!   incarnation;
//! - **dissemination**: suspect, dead and alive messages go into a transmit-limited queue
//!   (each sent [`retransmit_limit`] times, least sent first, a newer message about a member
//!   replacing an older one), piggybacked on every ping, ack, indirect ping and nack, and sent
//!   every [`GOSSIP_INTERVAL`] to [`GOSSIP_NODES`] random live, suspect or recently dead
//!   members (nothing is sent when the queue is empty: an idle cluster does not gossip);
//! - **push/pull**: every [`PUSH_PULL_INTERVAL`] × [`push_pull_scale`] (after a random
//!   stagger) a full state exchange with one random alive member over TCP; a restarted peer
//!   joins with one, learns it was declared dead and refutes; every [`RECONNECT_INTERVAL`]
//!   Serf tries to join a failed member (a healed partition merges back).
//!
//! Byte sizes are memberlist's and Serf's encodings ([`sizes`]): a ping is 85 B, an ack 154 B
//! (Serf puts its Vivaldi coordinate in every ack), push/pull the compressed state.
//!
//! Serf reports members *failed*, never *suspect*: a peer emits `AppEvent::Link` *connected*
//! for every member it starts with, *disconnected* for a member it declares dead and
//! *connected* when a dead one comes back, nothing else (so the report's suspect delay of a
//! partition is, for `swim`, the time until every member declared the other side failed).
//!
//! Not modelled: posts (a `swim` peer ignores them: its post figures are empty; Serf's user
//! events would ride the same queue), the initial join (every peer starts knowing every peer
//! alive, as the other baselines do; a restarted one rejoins), TCP connection attempts as such
//! (a reconnect to a member still down is counted as the push/pull it would have sent: about
//! one a reconnect interval fleet-wide), TCP retransmissions (a lost push/pull frame is lost;
//! a restarted peer retries its join after [`TCP_TIMEOUT`]), encryption and labels.

mod members;
mod messages;
mod probe;
pub mod sizes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{AuthorKey, Bytes};

use crate::io::{AppEvent, Input, LinkStatus, Output, Priority, Protocol, Timer, TimerKind};
use crate::sim::disseminators::{Disseminator, NodeSpec, PeerDirectory};
use crate::sim::liveness::{self, Kind};
use crate::time::Time;

use self::members::Suspicion;
#[cfg(test)]
use self::members::remaining_suspicion;
use self::messages::{Member, Msg, Part, Queued, State};
use self::probe::{Helping, Probe};

/// `ProbeInterval`: one probe per second.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `ProbeTimeout`: how long a direct ping waits for its ack.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// `IndirectChecks`: members asked to ping a target that did not answer.
pub const INDIRECT_CHECKS: usize = 3;
/// `SuspicionMult`.
pub const SUSPICION_MULT: u32 = 4;
/// `SuspicionMaxTimeoutMult`.
pub const SUSPICION_MAX_TIMEOUT_MULT: u32 = 6;
/// `GossipInterval`.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
/// `GossipNodes`.
pub const GOSSIP_NODES: usize = 3;
/// `GossipToTheDeadTime`: dead members are still gossiped to, and kept, this long.
pub const GOSSIP_TO_THE_DEAD: Duration = Duration::from_secs(30);
/// `PushPullInterval`, before [`push_pull_scale`].
pub const PUSH_PULL_INTERVAL: Duration = Duration::from_secs(30);
/// `pushPullScaleThreshold`: push/pull slows down above this many members.
pub const PUSH_PULL_SCALE_THRESHOLD: usize = 32;
/// `RetransmitMult`.
pub const RETRANSMIT_MULT: u32 = 4;
/// `UDPBufferSize`: the largest datagram.
pub const UDP_BUFFER: usize = 1_400;
/// `AwarenessMaxMultiplier`: the probe interval stretches up to this factor.
pub const AWARENESS_MAX: u32 = 8;
/// `TCPTimeout`: a join that got no state back by then is retried with another member.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Serf's `ReconnectInterval` (`serf/config.go:310` @ a24f620): every 30 s a member holding
/// failed members tries to join one of them, with probability failed ÷ alive (so that the
/// cluster tries each about once an interval): how a partition heals once both sides declared
/// each other failed (memberlist's push/pull only goes to alive members).
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(30);

/// The `swim` disseminator: every peer knows every other from the start and sends to any
/// (memberlist's UDP and TCP need no links).
pub fn disseminator() -> Disseminator {
    Disseminator {
        name: "swim",
        full_mesh: true,
        factory: Box::new(|spec| Box::new(Swim::new(spec))),
    }
}

/// memberlist's `suspicionTimeout`: `mult × max(1, log10 n) × interval`, with its integer
/// arithmetic (the scale kept to three decimals).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn suspicion_timeout(mult: u32, n: usize, interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let milli = (scale * 1_000.0) as u64;
    Duration::from_nanos(u64::from(mult) * milli * interval.as_nanos() as u64 / 1_000)
}

/// memberlist's `retransmitLimit`: `mult × ⌈log10(n + 1)⌉`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn retransmit_limit(mult: u32, n: usize) -> u32 {
    mult * ((n + 1) as f64).log10().ceil() as u32
}

/// memberlist's `pushPullScale`: the interval × (⌈log2 n − log2 32⌉ + 1) above 32 members.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    if n <= PUSH_PULL_SCALE_THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (PUSH_PULL_SCALE_THRESHOLD as f64).log2()).ceil() + 1.0;
    interval * mult as u32
}

/// Timers, by the tag of `TimerKind::Peer(key, tag)`.
mod tag {
    pub(super) const PROBE: u8 = 1;
    pub(super) const PROBE_TIMEOUT: u8 = 2;
    pub(super) const PROBE_DEADLINE: u8 = 3;
    pub(super) const GOSSIP: u8 = 4;
    pub(super) const PUSH_PULL: u8 = 5;
    pub(super) const SUSPECT: u8 = 6;
    pub(super) const NACK: u8 = 7;
    pub(super) const JOIN: u8 = 8;
    pub(super) const RECONNECT: u8 = 9;
}

/// Counters for the report.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    probes: u64,
    probes_failed: u64,
    suspected: u64,
    declared_dead: u64,
    refuted: u64,
    push_pulls: u64,
    reconnects: u64,
}

/// One memberlist + Serf node.
#[derive(Debug)]
pub(crate) struct Swim {
    key: AuthorKey,
    me: u32,
    dir: Arc<PeerDirectory>,
    rng: ChaCha8Rng,
    members: Vec<Option<Member>>,
    /// memberlist's `nodes`: the probe order.
    order: Vec<u32>,
    probe_index: usize,
    incarnation: u32,
    seq: u32,
    awareness: u32,
    probe: Option<Probe>,
    tick_pending: bool,
    /// Indirect probes run for others: bounded by the probes others run through this member
    /// within one probe timeout.
    helping: Vec<Helping>,
    suspicions: BTreeMap<u32, Suspicion>,
    /// Serf's failed members (kept after memberlist reaps them; bounded by the peers).
    failed: BTreeSet<u32>,
    /// Bounded by the members (one broadcast per member).
    queue: Vec<Queued>,
    next_id: u64,
    joining: bool,
    restarts: u32,
    counters: Counters,
    out: Vec<Output>,
}

impl Swim {
    pub(crate) fn new(spec: NodeSpec) -> Self {
        let n = spec.directory.len();
        let me = spec.index as u32;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.rng_seed);
        let member = Member { state: State::Alive, incarnation: 1, changed: spec.now };
        let mut order: Vec<u32> = (0..n as u32).collect();
        shuffle(&mut rng, &mut order);
        Self {
            key: spec.identity.public(),
            me,
            dir: spec.directory,
            rng,
            members: vec![Some(member); n],
            order,
            probe_index: 0,
            incarnation: 1,
            seq: 0,
            awareness: 0,
            probe: None,
            tick_pending: false,
            helping: Vec::new(),
            suspicions: BTreeMap::new(),
            failed: BTreeSet::new(),
            queue: Vec::new(),
            next_id: 0,
            joining: false,
            restarts: spec.restarts,
            counters: Counters::default(),
            out: Vec::new(),
        }
    }

    fn schedule(&mut self, at: Time, key: AuthorKey, t: u8) {
        self.out.push(Output::Schedule { at, timer: Timer(TimerKind::Peer(key, t)) });
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    /// A uniform random duration in `[0, d)`: memberlist's stagger of each ticker.
    fn stagger(&mut self, d: Duration) -> Duration {
        Duration::from_micros(self.rng.next_u64() % (d.as_micros() as u64).max(1))
    }

    fn member_count(&self) -> usize {
        self.order.len()
    }

    /// Up to `k` distinct random members (other than this one) that `ok` accepts.
    fn random_members(&mut self, k: usize, ok: impl Fn(u32, &Member) -> bool) -> Vec<u32> {
        let mut pool: Vec<u32> = self
            .order
            .iter()
            .copied()
            .filter(|&i| i != self.me)
            .filter(|&i| self.members[i as usize].as_ref().is_some_and(|m| ok(i, m)))
            .collect();
        pool.sort_unstable();
        let mut picked = Vec::with_capacity(k.min(pool.len()));
        while picked.len() < k && !pool.is_empty() {
            let j = self.below(pool.len());
            picked.push(pool.swap_remove(j));
        }
        picked
    }

    fn start(&mut self, now: Time) {
        // Serf's member-join events for the members it starts with (so that partitions are
        // measured like vecino's links: from connected to failed).
        for i in (0..self.dir.len()).filter(|&i| i != self.me as usize) {
            let peer = self.dir.key(i);
            self.out.push(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
        }
        let key = self.key;
        let probe = now + self.stagger(PROBE_INTERVAL);
        self.schedule(probe, key, tag::PROBE);
        let gossip = now + self.stagger(GOSSIP_INTERVAL);
        self.schedule(gossip, key, tag::GOSSIP);
        let push_pull = now + self.stagger(PUSH_PULL_INTERVAL);
        self.schedule(push_pull, key, tag::PUSH_PULL);
        // Serf's reconnect ticker has no stagger of its own; agents start at different times,
        // the simulator starts them at once: a random phase stands for that.
        let reconnect = now + self.stagger(RECONNECT_INTERVAL);
        self.schedule(reconnect, key, tag::RECONNECT);
        if self.restarts > 0 {
            self.join(now);
        }
    }

    /// A restarted node joins: a push/pull with a random other member (retried after
    /// [`TCP_TIMEOUT`] until one answers).
    fn join(&mut self, now: Time) {
        let n = self.dir.len();
        if n < 2 {
            return;
        }
        let mut to = self.below(n - 1) as u32;
        if to >= self.me {
            to += 1;
        }
        self.joining = true;
        self.send_push_pull(to, true, false);
        let key = self.key;
        self.schedule(now + TCP_TIMEOUT, key, tag::JOIN);
    }

    // ---- periodic ----

    fn gossip_tick(&mut self, now: Time) {
        let key = self.key;
        self.schedule(now + GOSSIP_INTERVAL, key, tag::GOSSIP);
        if self.queue.is_empty() {
            return;
        }
        let targets = self.random_members(GOSSIP_NODES, |_, m| match m.state {
            State::Alive | State::Suspect => true,
            State::Dead => now.saturating_since(m.changed) <= GOSSIP_TO_THE_DEAD,
        });
        let avail = UDP_BUFFER - sizes::COMPOUND_HEADER;
        for t in targets {
            let msgs = self.get_broadcasts(sizes::COMPOUND_PART, avail);
            if msgs.is_empty() {
                return;
            }
            let parts: Vec<Part> = msgs.into_iter().map(Part::Broadcast).collect();
            self.send_parts(t, &parts, true);
        }
    }

    fn push_pull_tick(&mut self, now: Time) {
        let next = push_pull_scale(PUSH_PULL_INTERVAL, self.member_count());
        let key = self.key;
        self.schedule(now + next, key, tag::PUSH_PULL);
        if let Some(&to) = self.random_members(1, |_, m| m.state == State::Alive).first() {
            self.counters.push_pulls += 1;
            self.send_push_pull(to, false, false);
        }
    }

    /// Serf's `reconnect`: with probability failed ÷ alive, a join to a random failed member.
    fn reconnect_tick(&mut self, now: Time) {
        let key = self.key;
        self.schedule(now + RECONNECT_INTERVAL, key, tag::RECONNECT);
        if self.failed.is_empty() {
            return;
        }
        let alive = self.members.iter().flatten().filter(|m| m.state != State::Dead).count();
        let p = self.failed.len() as f64 / alive.max(1) as f64;
        let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if draw > p {
            return;
        }
        let i = self.below(self.failed.len());
        if let Some(&to) = self.failed.iter().nth(i) {
            self.counters.reconnects += 1;
            self.send_push_pull(to, true, false);
        }
    }

    // ---- input ----

    fn received(&mut self, now: Time, from: u32, frame: &Bytes) {
        let Some((kind, body)) = liveness::parse(frame) else { return };
        let mut at = 0;
        match kind {
            Kind::SwimPushPull => {
                let Some(&flags) = body.first() else { return };
                at = 1;
                let Some(n) = crate::sim::wire::varint(body, &mut at) else { return };
                let mut remote = Vec::with_capacity(n.min(1 << 20) as usize);
                for _ in 0..n {
                    let (Some(i), Some(inc), Some(s)) = (
                        crate::sim::wire::varint(body, &mut at),
                        crate::sim::wire::varint(body, &mut at),
                        crate::sim::wire::varint(body, &mut at),
                    ) else {
                        return;
                    };
                    let (Ok(i), Ok(inc), Some(s)) =
                        (u32::try_from(i), u32::try_from(inc), State::of(s))
                    else {
                        return;
                    };
                    remote.push((i, inc, s));
                }
                if flags & 2 == 0 {
                    // A request: our state goes back before we merge theirs.
                    self.send_push_pull(from, flags & 1 != 0, true);
                } else {
                    self.joining = false;
                }
                self.merge(now, &remote);
            }
            Kind::SwimTcpPing => {
                if let Some(seq) = crate::sim::wire::varint(body, &mut at) {
                    self.send_tcp(from, Kind::SwimTcpAck, seq as u32);
                }
            }
            Kind::SwimTcpAck => {
                let seq = crate::sim::wire::varint(body, &mut at).unwrap_or_default() as u32;
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq && now <= p.deadline) {
                    p.tcp_ok = true;
                }
            }
            _ => {
                let Some(n) = crate::sim::wire::varint(body, &mut at) else { return };
                for _ in 0..n.min(256) {
                    let Some(part) = Part::decode(body, &mut at) else { return };
                    self.part(now, from, part);
                }
            }
        }
    }

    fn part(&mut self, now: Time, from: u32, part: Part) {
        match part {
            Part::Ping { seq } => self.send_msg(from, Part::Ack { seq, payload: true }),
            Part::Ack { seq, .. } => self.on_ack(now, seq),
            Part::Indirect { seq, target } => {
                if target as usize >= self.members.len() {
                    return;
                }
                let my_seq = self.next_seq();
                self.send_msg(target, Part::Ping { seq: my_seq });
                let until = now + PROBE_TIMEOUT;
                self.helping.push(Helping { requester: from, their_seq: seq, my_seq, until });
                let key = self.dir.key(from as usize);
                self.schedule(until, key, tag::NACK);
            }
            Part::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Part::Broadcast(msg) => {
                if msg.node() as usize >= self.members.len() {
                    return;
                }
                self.apply(now, msg);
            }
        }
    }

    fn timer(&mut self, now: Time, key: AuthorKey, t: u8) {
        match t {
            tag::PROBE => self.probe_tick(now),
            tag::PROBE_TIMEOUT => self.probe_timeout(now),
            tag::PROBE_DEADLINE => self.probe_deadline(now),
            tag::GOSSIP => self.gossip_tick(now),
            tag::PUSH_PULL => self.push_pull_tick(now),
            tag::NACK => self.nack_due(now),
            tag::JOIN if self.joining => self.join(now),
            tag::RECONNECT => self.reconnect_tick(now),
            tag::SUSPECT => {
                if let Some(node) = self.dir.index(&key) {
                    self.suspicion_due(now, node);
                }
            }
            _ => {}
        }
    }
}

/// Fisher–Yates with the model's RNG.
fn shuffle(rng: &mut ChaCha8Rng, v: &mut [u32]) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

impl Protocol for Swim {
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

impl crate::sim::Observe for Swim {
    fn digest(&self) -> u64 {
        self.membership_digest()
    }

    fn membership_digest(&self) -> u64 {
        self.members.iter().enumerate().fold(0u64, |d, (i, m)| {
            let v = m.as_ref().map_or(0, |m| (u64::from(m.incarnation) << 2 | m.state.code()) + 1);
            d.wrapping_add(crate::sim::mix((i as u64) << 40 ^ v))
        })
    }

    fn known_peers(&self) -> usize {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                *i != self.me as usize && m.as_ref().is_some_and(|m| m.state != State::Dead)
            })
            .count()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters;
        vec![
            ("swim_probes", c.probes),
            ("swim_probes_failed", c.probes_failed),
            ("swim_suspected", c.suspected),
            ("swim_declared_dead", c.declared_dead),
            ("swim_refuted", c.refuted),
            ("swim_push_pulls", c.push_pulls),
            ("swim_reconnects", c.reconnects),
        ]
    }
}
