//! The host side of a shard: its peers, their events and media. A shard feeds each input to
//! its peer's state machine and carries out the outputs in order, as the contract in
//! [`crate::io`] asks: sends and broadcasts through the network model, deliveries and link
//! statuses as records of metrics, timers, dials and disconnects as events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use vecino_proto::{AuthorKey, Bytes, VerifiedEvent};

use crate::io::{AppEvent, Input, LinkInfo, LinkStatus, Output, PostcardStatus, Priority, StoreOp};
use crate::sim::EPOCH_US;
use crate::sim::Peer;
use crate::sim::disseminators::PeerDirectory;
use crate::sim::metrics::{ArrivedFrame, Metrics, SentFrame};
use crate::sim::network::{Network, Transmit};
use crate::sim::report::Drops;
use crate::sim::scenario::{RateScope, Scenario};
use crate::sim::shards::Plan;

use super::queue::{COUNT_BITS, Ev, Queue, time};

type StoreKey = (AuthorKey, i32, u64);

/// Whether a peer runs, and which incarnation: changed only by the run itself (between
/// windows), read by every shard.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Life {
    pub(super) alive: bool,
    pub(super) started: bool,
    /// Incarnation: bumped on crash, so events for the old one are dropped.
    pub(super) inc: u32,
}

pub(super) struct Node {
    pub(super) proto: Option<Box<dyn Peer + Send>>,
    pub(super) restarts: u32,
    pub(super) links: BTreeSet<u32>,
    pub(super) stored: BTreeMap<StoreKey, VerifiedEvent>,
    /// Events this peer caused so far (the count in their ties).
    pub(super) caused: u64,
}

/// What every shard reads during a window and none changes.
pub(super) struct World<'a> {
    pub(super) sc: &'a Scenario,
    pub(super) full_mesh: bool,
    pub(super) dir: Arc<PeerDirectory>,
    pub(super) plan: Plan,
    pub(super) life: Vec<Life>,
    /// Active partitions (indexes into `sc.faults`).
    pub(super) cut: Vec<usize>,
    /// The scenario crashes peers (so what they persist is kept for their restart).
    pub(super) crashes: bool,
    /// Latency multiplier per peer while a regional fault (`FaultKind::Degrade`) slows its
    /// links (empty: none ever did). A link takes the larger of its ends'.
    pub(super) slow: Vec<f64>,
}

impl World<'_> {
    pub(super) fn is_current(&self, node: u32, inc: u32) -> bool {
        let l = self.life[node as usize];
        l.alive && l.inc == inc
    }

    /// One-way propagation delay from `a` to `b`, µs, with a regional fault's slowdown.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    pub(super) fn one_way_us(&self, a: usize, b: usize) -> u64 {
        let base = self.sc.latency.one_way_us(a, b);
        match (self.slow.get(a), self.slow.get(b)) {
            (Some(&x), Some(&y)) if x.max(y) > 1.0 => (base as f64 * x.max(y)) as u64,
            _ => base,
        }
    }

    /// Round-trip time between `a` and `b`, µs, with a regional fault's slowdown.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    pub(super) fn rtt_us(&self, a: usize, b: usize) -> u64 {
        let base = self.sc.latency.rtt_us(a, b);
        match (self.slow.get(a), self.slow.get(b)) {
            (Some(&x), Some(&y)) if x.max(y) > 1.0 => (base as f64 * x.max(y)) as u64,
            _ => base,
        }
    }

    pub(super) fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.iter().any(|&f| self.sc.faults[f].affects(a, b))
    }

    /// Peers may broadcast on their group's radio.
    pub(super) fn broadcasts(&self) -> bool {
        self.sc.link.broadcast && self.sc.link.scope == RateScope::SharedRadio
    }
}

/// A metric a shard observed, applied to [`Metrics`] between windows in event order.
#[derive(Debug)]
pub(super) enum Record {
    Published {
        author: u32,
        seq: u64,
    },
    Delivered {
        node: u32,
        author: u32,
        seq: u64,
        one_way: u64,
    },
    Link {
        node: u32,
        peer: u32,
        status: LinkStatus,
    },
    /// The engine took postcard command `cmd`: its event, by the first 8 bytes of its id.
    PostcardAccepted {
        cmd: u64,
        key: u64,
    },
    PostcardDelivered {
        node: u32,
        key: u64,
        hops: u32,
        detours: u32,
    },
    PostcardReceipt {
        key: u64,
    },
    PostcardExpired {
        key: u64,
    },
    Sent {
        from: u32,
        to: u32,
        frame: SentFrame,
    },
    Arrived {
        from: u32,
        to: u32,
        frame: ArrivedFrame,
    },
}

/// Some of the peers, their events and their media.
pub(super) struct Shard {
    pub(super) id: u32,
    /// This shard's peers, by their index in it (`Plan::local`).
    pub(super) nodes: Vec<Node>,
    pub(super) q: Queue<Ev>,
    pub(super) net: Network,
    pub(super) out: Vec<Output>,
    /// Events caused here for peers of other shards, handed over at the window's end.
    pub(super) outbox: Vec<(u64, u64, Ev)>,
    /// Metrics observed, with the time and tie of the event that made them.
    pub(super) log: Vec<(u64, u64, Record)>,
    pub(super) drops: Drops,
    pub(super) events: u64,
    pub(super) now: u64,
    /// The tie of the event running.
    pub(super) tie: u64,
    /// The peer whose input or outputs are being carried out: the cause of what they
    /// schedule.
    pub(super) cause: u32,
}

impl Shard {
    fn node(&mut self, w: &World<'_>, i: u32) -> &mut Node {
        &mut self.nodes[w.plan.local[i as usize] as usize]
    }

    /// Schedules a peer event `ev` at `at`, caused by `self.cause`.
    pub(super) fn push(&mut self, w: &World<'_>, at: u64, ev: Ev) {
        let cause = self.cause;
        let node = self.node(w, cause);
        node.caused += 1;
        let tie = (u64::from(cause) << COUNT_BITS) | node.caused;
        if w.plan.shard_of[ev.peer() as usize] == self.id {
            self.q.push(at, tie, ev);
        } else {
            self.outbox.push((at, tie, ev));
        }
    }

    fn record(&mut self, r: Record) {
        self.log.push((self.now, self.tie, r));
    }

    /// Runs this shard's events before `end`.
    pub(super) fn run_until(&mut self, w: &World<'_>, end: u64) {
        while self.q.next().is_some_and(|at| at < end) {
            let Some((at, tie, ev)) = self.q.pop() else { break };
            self.now = at;
            self.tie = tie;
            self.events += 1;
            self.dispatch(w, ev);
        }
    }

    fn dispatch(&mut self, w: &World<'_>, ev: Ev) {
        match ev {
            Ev::Arrive { from, to, inc, class, frame, radio } => {
                self.arrive(w, from, to, inc, class, frame, radio);
            }
            Ev::Timer { node, inc, timer } => {
                if w.is_current(node, inc) {
                    self.feed(w, node, Input::Timer(timer));
                }
            }
            Ev::LinkUp { node, inc, peer, inbound } => {
                let peer_up = w.life[peer as usize].alive;
                if w.is_current(node, inc) && peer_up && self.node(w, node).links.insert(peer) {
                    let shared_medium =
                        w.broadcasts() && w.sc.groups[node as usize] == w.sc.groups[peer as usize];
                    let info = LinkInfo { rate_bps: w.sc.link.rate_bps, inbound, shared_medium };
                    let key = w.dir.key(peer as usize);
                    self.feed(w, node, Input::LinkUp { peer: key, info });
                }
            }
            Ev::LinkDown { node, inc, peer } => {
                if w.is_current(node, inc) && self.node(w, node).links.remove(&peer) {
                    let key = w.dir.key(peer as usize);
                    self.feed(w, node, Input::LinkDown { peer: key });
                }
            }
            Ev::Sent { node, inc, bytes } => {
                if w.is_current(node, inc) {
                    self.feed(w, node, Input::Sent { bytes });
                }
            }
        }
    }

    /// Feeds one input to peer `i` and carries out its outputs.
    pub(super) fn feed(&mut self, w: &World<'_>, i: u32, input: Input) {
        self.cause = i;
        let now = time(self.now);
        let mut outs = std::mem::take(&mut self.out);
        if let Some(proto) = self.node(w, i).proto.as_mut() {
            outs.extend(proto.handle(now, input));
        }
        for o in outs.drain(..) {
            self.apply(w, i, o);
        }
        self.out = outs;
    }

    fn apply(&mut self, w: &World<'_>, i: u32, output: Output) {
        match output {
            Output::Send { to, frame, class } => self.send(w, i, &to, frame, class),
            Output::Broadcast { frame, class } => self.broadcast(w, i, &frame, class),
            Output::Deliver(AppEvent::Post(p)) => {
                let Some(author) = w.dir.index(&p.author) else {
                    return;
                };
                if p.own {
                    self.record(Record::Published { author: i, seq: p.seq });
                } else {
                    // The direct delay a delivery's stretch is scored against; 0 (not
                    // scored) where the matrix pair was missing and filled.
                    let (a, b) = (author as usize, i as usize);
                    let one_way = if w.sc.latency.is_measured(a, b) {
                        w.sc.latency.one_way_us(a, b)
                    } else {
                        0
                    };
                    self.record(Record::Delivered { node: i, author, seq: p.seq, one_way });
                }
            }
            Output::Deliver(AppEvent::Link { peer, status }) => {
                if let Some(p) = w.dir.index(&peer) {
                    self.record(Record::Link { node: i, peer: p, status });
                }
            }
            Output::Deliver(AppEvent::Accepted { id, event }) if Metrics::is_postcard(id) => {
                self.record(Record::PostcardAccepted { cmd: id, key: id_key(&event) });
            }
            Output::Deliver(AppEvent::Postcard(p)) => {
                let hops = u32::try_from(p.trail.len().saturating_sub(1)).unwrap_or(u32::MAX);
                let (key, detours) = (id_key(&p.id), p.detours);
                self.record(Record::PostcardDelivered { node: i, key, hops, detours });
            }
            Output::Deliver(AppEvent::PostcardStatus { id, status, .. }) => match status {
                PostcardStatus::Delivered { .. } => {
                    self.record(Record::PostcardReceipt { key: id_key(&id) });
                }
                PostcardStatus::Expired => {
                    self.record(Record::PostcardExpired { key: id_key(&id) })
                }
                PostcardStatus::Forwarded { .. } => {}
            },
            Output::Deliver(_) => {}
            Output::Schedule { at, timer } => {
                let at = at.0.saturating_sub(EPOCH_US).max(self.now);
                let inc = w.life[i as usize].inc;
                self.push(w, at, Ev::Timer { node: i, inc, timer });
            }
            Output::Dial { peer, .. } => {
                if let Some(p) = w.dir.index(&peer) {
                    self.dial(w, i, p);
                }
            }
            Output::Disconnect { peer } => {
                let Some(p) = w.dir.index(&peer) else {
                    return;
                };
                if self.node(w, i).links.contains(&p) {
                    let (inc_i, inc_p) = (w.life[i as usize].inc, w.life[p as usize].inc);
                    let one_way = w.sc.latency.one_way_us(i as usize, p as usize);
                    self.push(w, self.now, Ev::LinkDown { node: i, inc: inc_i, peer: p });
                    self.push(w, self.now + one_way, Ev::LinkDown { node: p, inc: inc_p, peer: i });
                }
            }
            // What a peer persisted only matters if it can crash and restart: not kept
            // otherwise (it would double the memory of a large run).
            Output::Persist(_) if !w.crashes => {}
            Output::Persist(op) => {
                let stored = &mut self.node(w, i).stored;
                match op {
                    StoreOp::Put(ev) => {
                        stored.insert((ev.author(), ev.stream() as i32, ev.seq()), ev);
                    }
                    StoreOp::Delete { author, stream, seq } => {
                        stored.remove(&(author, stream as i32, seq));
                    }
                }
            }
        }
    }

    fn send(&mut self, w: &World<'_>, i: u32, to: &AuthorKey, frame: Bytes, class: Priority) {
        // With back-pressure the host reports every frame once: when it left, or now.
        let report = |r: &mut Self, at: u64, bytes: usize| {
            if w.sc.link.host_queue_bytes.is_some() {
                let inc = w.life[i as usize].inc;
                r.push(w, at, Ev::Sent { node: i, inc, bytes });
            }
        };
        let Some(to) = w.dir.index(to) else {
            self.drops.no_link += 1;
            report(self, self.now, frame.len());
            return;
        };
        if to == i || (!w.full_mesh && !self.node(w, i).links.contains(&to)) {
            self.drops.no_link += 1;
            report(self, self.now, frame.len());
            return;
        }
        let medium = match w.sc.link.scope {
            RateScope::Uplink => i as usize,
            RateScope::SharedRadio => w.sc.groups[i as usize] as usize,
            RateScope::Pair => 0,
        };
        let prop = w.one_way_us(i as usize, to as usize);
        let bytes = frame.len() as u64;
        let sent = self.net.transmit(self.now, i, to, medium, bytes, prop);
        report(self, self.net.last_done, frame.len());
        self.record(Record::Sent { from: i, to, frame: SentFrame::read(i, class, &frame, &w.dir) });
        if let Transmit::Arrives(at) = sent {
            let inc = w.life[to as usize].inc;
            self.push(w, at, Ev::Arrive { from: i, to, inc, class, frame, radio: false });
        }
    }

    /// One transmission on `i`'s radio, heard by every other member of its group.
    fn broadcast(&mut self, w: &World<'_>, i: u32, frame: &Bytes, class: Priority) {
        let len = frame.len();
        let done = if w.broadcasts() {
            let frame = SentFrame::read(i, class, frame, &w.dir);
            self.record(Record::Sent { from: i, to: i, frame });
            self.net.broadcast(self.now, w.sc.groups[i as usize] as usize, len as u64)
        } else {
            self.drops.no_link += 1; // no radio to broadcast on
            None
        };
        if w.sc.link.host_queue_bytes.is_some() {
            let inc = w.life[i as usize].inc;
            self.push(w, done.unwrap_or(self.now), Ev::Sent { node: i, inc, bytes: len });
        }
        let Some(done) = done else { return };
        let group = w.sc.groups[i as usize];
        let members: Vec<usize> = w.sc.group_members(group).filter(|&j| j != i as usize).collect();
        for j in members {
            let to = j as u32;
            if self.net.lost(i, to) {
                continue;
            }
            let at = done + w.one_way_us(i as usize, j);
            let inc = w.life[j].inc;
            let frame = frame.clone();
            self.push(w, at, Ev::Arrive { from: i, to, inc, class, frame, radio: true });
        }
    }

    /// A frame arrives at `to`: fed to it if it is the incarnation it was sent to, not cut
    /// off, and (sent point to point) still linked to `from`.
    #[allow(clippy::too_many_arguments)]
    fn arrive(
        &mut self,
        w: &World<'_>,
        from: u32,
        to: u32,
        inc: u32,
        class: Priority,
        frame: Bytes,
        radio: bool,
    ) {
        if !self.reaches(w, from, to, inc) {
            return;
        }
        if !radio && !w.full_mesh && !self.node(w, to).links.contains(&from) {
            self.drops.no_link += 1;
            return;
        }
        self.record(Record::Arrived { from, to, frame: ArrivedFrame::read(class, &frame, &w.dir) });
        let from = w.dir.key(from as usize);
        let input =
            if radio { Input::Broadcast { from, frame } } else { Input::Received { from, frame } };
        self.feed(w, to, input);
    }

    /// Whether a frame from `from` reaches incarnation `inc` of `to`: alive still, and not
    /// cut off by a partition (each miss counted).
    fn reaches(&mut self, w: &World<'_>, from: u32, to: u32, inc: u32) -> bool {
        if !w.is_current(to, inc) {
            self.drops.dead += 1;
            return false;
        }
        if w.is_cut(from as usize, to as usize) {
            self.drops.partitioned += 1;
            return false;
        }
        true
    }

    /// Peer `a` dials `b`: the link comes up at both ends one RTT later, if `b` is reachable.
    pub(super) fn dial(&mut self, w: &World<'_>, a: u32, b: u32) {
        if a == b || w.full_mesh || self.node(w, a).links.contains(&b) {
            return;
        }
        if !w.life[b as usize].alive || w.is_cut(a as usize, b as usize) {
            return;
        }
        let rtt = w.rtt_us(a as usize, b as usize);
        let (inc_a, inc_b) = (w.life[a as usize].inc, w.life[b as usize].inc);
        self.push(w, self.now + rtt, Ev::LinkUp { node: a, inc: inc_a, peer: b, inbound: false });
        self.push(w, self.now + rtt, Ev::LinkUp { node: b, inc: inc_b, peer: a, inbound: true });
    }
}

pub(super) fn apply_record(metrics: &mut Metrics, at: u64, r: Record) {
    match r {
        Record::Published { author, seq } => metrics.published(at, author, seq),
        Record::Delivered { node, author, seq, one_way } => {
            metrics.delivered(at, node, author, seq, one_way);
        }
        Record::Link { node, peer, status } => metrics.link(at, node, peer, status),
        Record::PostcardAccepted { cmd, key } => metrics.postcard_accepted(cmd, key),
        Record::PostcardDelivered { node, key, hops, detours } => {
            metrics.postcard_delivered(at, node, key, hops, detours);
        }
        Record::PostcardReceipt { key } => metrics.postcard_receipt(at, key),
        Record::PostcardExpired { key } => metrics.postcard_expired(key),
        Record::Sent { from, to, frame } => metrics.sent(at, (from, to), &frame),
        Record::Arrived { from, to, frame } => metrics.arrived(from, to, &frame),
    }
}

/// A postcard's key in the metrics: the first 8 bytes of its event id.
fn id_key(id: &vecino_proto::EventId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().unwrap_or_default())
}
