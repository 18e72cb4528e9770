//! The event loop: one queue of timed events, one state machine per peer, the network model.
//!
//! Events are ordered by (time, insertion counter), so two runs of the same scenario and seed
//! process the same events in the same order. Each peer's outputs are carried out in order
//! right after its `handle` returns, as the contract in [`crate::io`] asks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{AuthorKey, Bytes, Identity, VerifiedEvent};

use crate::io::{AppEvent, Command, Input, LinkInfo, Output, Priority, StoreOp, Timer};
use crate::sim::disseminators::{Disseminator, NodeSpec, PeerDirectory};
use crate::sim::metrics::Metrics;
use crate::sim::network::{Network, Transmit};
use crate::sim::report::Report;
use crate::sim::scenario::{Arrivals, FaultKind, RateScope, Scenario, TrafficScope};
use crate::sim::{EPOCH_US, seed_for};
use crate::time::Time;

/// RNG concerns, each its own stream derived from the run's seed.
mod concern {
    pub(super) const IDENTITY: u64 = 1;
    pub(super) const NODE: u64 = 2;
    pub(super) const NETWORK: u64 = 3;
    pub(super) const TRAFFIC: u64 = 4;
    pub(super) const LINKS: u64 = 5;
    pub(super) const START: u64 = 6;
}

#[derive(Debug)]
enum Ev {
    Start(u32),
    Arrive {
        from: u32,
        to: u32,
        inc: u32,
        class: Priority,
        frame: Bytes,
    },
    Timer {
        node: u32,
        inc: u32,
        timer: Timer,
    },
    LinkUp {
        node: u32,
        inc: u32,
        peer: u32,
        inbound: bool,
    },
    LinkDown {
        node: u32,
        inc: u32,
        peer: u32,
    },
    /// A frame `from` broadcast on its radio reaches `to`.
    Overheard {
        from: u32,
        to: u32,
        inc: u32,
        class: Priority,
        frame: Bytes,
    },
    /// A frame of `bytes` from `node` left its medium (back-pressure report).
    Sent {
        node: u32,
        inc: u32,
        bytes: usize,
    },
    Publish {
        node: Option<u32>,
    },
    FaultStart(usize),
    FaultEnd(usize),
    Check,
}

/// A min-queue of events by (time, insertion order); payloads live in a slab so the heap
/// moves 24-byte keys only.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    counter: u64,
}

impl Queue {
    fn push(&mut self, at: u64, ev: Ev) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.counter += 1;
        self.heap.push(Reverse((at, self.counter, slot)));
    }

    fn pop(&mut self) -> Option<(u64, Ev)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let ev = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, ev))
    }
}

type StoreKey = (AuthorKey, i32, u64);

struct Node {
    proto: Option<Box<dyn crate::io::Protocol>>,
    /// Incarnation: bumped on crash, so events for the old one are dropped.
    inc: u32,
    alive: bool,
    started: bool,
    restarts: u32,
    links: BTreeSet<u32>,
    stored: BTreeMap<StoreKey, VerifiedEvent>,
}

struct Sim<'a> {
    sc: &'a Scenario,
    dis: &'a Disseminator,
    seed: u64,
    dir: Arc<PeerDirectory>,
    nodes: Vec<Node>,
    q: Queue,
    net: Network,
    metrics: Metrics,
    /// Active partitions (indexes into `sc.faults`).
    cut: Vec<usize>,
    traffic_rng: ChaCha8Rng,
    links_rng: ChaCha8Rng,
    out: Vec<Output>,
    now: u64,
    end: u64,
    body: Bytes,
    events: u64,
    heal_cut_rtt: Vec<u64>,
    /// The scenario crashes peers (so what they persist is kept for their restart).
    crashes: bool,
}

/// Runs `dis` on `scenario` from `seed` and reports. `progress` is called with the fraction of
/// simulated time done, every `scenario.check_interval` of simulated time.
pub fn run(
    scenario: &Scenario,
    dis: &Disseminator,
    seed: u64,
    progress: &mut dyn FnMut(f64),
) -> Report {
    let n = scenario.peers;
    let keys = (0..n).map(|i| identity(seed, i).public()).collect();
    let dir = Arc::new(PeerDirectory::new(keys));
    let end = us(scenario.duration) + us(scenario.drain);
    let media = match scenario.link.scope {
        RateScope::Uplink => n,
        RateScope::SharedRadio => scenario.group_count(),
        RateScope::Pair => 0,
    };
    let mut sim = Sim {
        sc: scenario,
        dis,
        seed,
        dir,
        nodes: (0..n)
            .map(|_| Node {
                proto: None,
                inc: 0,
                alive: false,
                started: false,
                restarts: 0,
                links: BTreeSet::new(),
                stored: BTreeMap::new(),
            })
            .collect(),
        q: Queue::default(),
        net: Network::new(scenario.link.clone(), media, seed_for(seed, concern::NETWORK, 0)),
        metrics: Metrics::new(n, us(scenario.bucket), end),
        cut: Vec::new(),
        traffic_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::TRAFFIC, 0)),
        links_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::LINKS, 0)),
        out: Vec::new(),
        now: 0,
        end,
        body: Bytes::from(vec![b'x'; scenario.traffic.body_bytes]),
        events: 0,
        heal_cut_rtt: Vec::new(),
        crashes: scenario.faults.iter().any(|f| matches!(f.kind, FaultKind::Crash { .. })),
    };
    sim.schedule_initial();
    while let Some((at, ev)) = sim.q.pop() {
        if at > end {
            break;
        }
        sim.now = at;
        sim.events += 1;
        sim.dispatch(ev, progress);
    }
    progress(1.0);
    sim.finish()
}

fn us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The identity of peer `i` in runs seeded with `seed` (the same for every disseminator).
pub fn identity(seed: u64, i: usize) -> Identity {
    let mut rng = ChaCha8Rng::seed_from_u64(seed_for(seed, concern::IDENTITY, i as u64));
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    Identity::from_seed(secret)
}

impl Sim<'_> {
    fn schedule_initial(&mut self) {
        let sc = self.sc;
        let n = sc.peers;
        // Start times: uniform in [0, spread), sorted so lower indexes start first.
        let mut start_rng = ChaCha8Rng::seed_from_u64(seed_for(self.seed, concern::START, 0));
        let spread = us(sc.start_spread);
        let mut starts: Vec<u64> = (0..n)
            .map(|_| if spread == 0 { 0 } else { start_rng.random_range(0..spread) })
            .collect();
        starts.sort_unstable();
        for (i, t) in starts.into_iter().enumerate() {
            self.q.push(t, Ev::Start(i as u32));
        }
        let t0 = us(sc.traffic.start);
        let duration = us(sc.duration);
        if sc.traffic.rate_per_s > 0.0 {
            let period = 1e6 / sc.traffic.rate_per_s;
            match sc.traffic.per {
                TrafficScope::PerPeer => {
                    for i in 0..n {
                        let first = t0 + self.gap(period, true);
                        if first < duration {
                            self.q.push(first, Ev::Publish { node: Some(i as u32) });
                        }
                    }
                }
                TrafficScope::Fleet => {
                    let first = t0 + self.gap(period, true);
                    if first < duration {
                        self.q.push(first, Ev::Publish { node: None });
                    }
                }
            }
        }
        for (f, fault) in sc.faults.iter().enumerate() {
            let start = us(fault.start);
            if start >= duration {
                continue;
            }
            self.q.push(start, Ev::FaultStart(f));
            let end = fault.end.map_or(duration, |e| us(e).min(duration));
            self.q.push(end, Ev::FaultEnd(f));
        }
        self.q.push(0, Ev::Check);
    }

    /// Time to the next publication, µs: periodic (a random phase the first time) or
    /// exponential.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn gap(&mut self, period_us: f64, first: bool) -> u64 {
        let u = unit(&mut self.traffic_rng);
        match (self.sc.traffic.arrivals, first) {
            (Arrivals::Periodic, true) => (u * period_us) as u64,
            (Arrivals::Periodic, false) => period_us as u64,
            (Arrivals::Poisson, _) => (-(1.0 - u).ln() * period_us) as u64,
        }
    }

    fn dispatch(&mut self, ev: Ev, progress: &mut dyn FnMut(f64)) {
        match ev {
            Ev::Start(i) => self.start(i),
            Ev::Arrive { from, to, inc, class, frame } => self.arrive(from, to, inc, class, frame),
            Ev::Overheard { from, to, inc, class, frame } => {
                self.overheard(from, to, inc, class, frame);
            }
            Ev::Timer { node, inc, timer } => {
                if self.is_current(node, inc) {
                    self.feed(node, Input::Timer(timer));
                }
            }
            Ev::LinkUp { node, inc, peer, inbound } => {
                let peer_up = self.nodes[peer as usize].alive;
                if self.is_current(node, inc)
                    && peer_up
                    && self.nodes[node as usize].links.insert(peer)
                {
                    let shared_medium = self.broadcasts()
                        && self.sc.groups[node as usize] == self.sc.groups[peer as usize];
                    let info = LinkInfo { rate_bps: self.sc.link.rate_bps, inbound, shared_medium };
                    let key = self.dir.key(peer as usize);
                    self.feed(node, Input::LinkUp { peer: key, info });
                }
            }
            Ev::LinkDown { node, inc, peer } => {
                if self.is_current(node, inc) && self.nodes[node as usize].links.remove(&peer) {
                    let key = self.dir.key(peer as usize);
                    self.feed(node, Input::LinkDown { peer: key });
                }
            }
            Ev::Publish { node } => self.publish(node),
            Ev::Sent { node, inc, bytes } => {
                if self.is_current(node, inc) {
                    self.feed(node, Input::Sent { bytes });
                }
            }
            Ev::FaultStart(f) => self.fault_start(f),
            Ev::FaultEnd(f) => self.fault_end(f),
            Ev::Check => {
                progress(self.now as f64 / self.end as f64);
                self.check_convergence();
                let next = self.now + us(self.sc.check_interval).max(1_000);
                if next <= self.end {
                    self.q.push(next, Ev::Check);
                }
            }
        }
    }

    fn is_current(&self, node: u32, inc: u32) -> bool {
        let n = &self.nodes[node as usize];
        n.alive && n.inc == inc
    }

    fn time(&self) -> Time {
        Time(EPOCH_US + self.now)
    }

    fn spec(&self, i: usize) -> NodeSpec {
        let node = &self.nodes[i];
        NodeSpec {
            index: i,
            identity: identity(self.seed, i),
            rng_seed: seed_for(
                self.seed,
                concern::NODE,
                (u64::from(node.restarts) << 32) | i as u64,
            ),
            now: self.time(),
            directory: Arc::clone(&self.dir),
            stored: node.stored.values().cloned().collect(),
            restarts: node.restarts,
            rate_bps: self.sc.link.rate_bps,
            uplink_bps: self.uplink_share(i),
            host_queue_bytes: self.sc.link.host_queue_bytes,
            shared_medium: self.broadcasts(),
        }
    }

    /// Peers may broadcast on their group's radio.
    fn broadcasts(&self) -> bool {
        self.sc.link.broadcast && self.sc.link.scope == RateScope::SharedRadio
    }

    /// What peer `i` may send in all: the whole uplink, or an equal share of its group's radio
    /// (a radio has no fair-share arbiter; peers that each sent at the full radio rate would
    /// overrun it by the group size).
    fn uplink_share(&self, i: usize) -> Option<u64> {
        let rate = self.sc.link.rate_bps?;
        match self.sc.link.scope {
            RateScope::Pair => None,
            RateScope::Uplink => Some(rate),
            RateScope::SharedRadio => {
                let members = self.sc.group_members(self.sc.groups[i]).count().max(1) as u64;
                Some(rate / members)
            }
        }
    }

    fn start(&mut self, i: u32) {
        let spec = self.spec(i as usize);
        let proto = (self.dis.factory)(spec);
        let node = &mut self.nodes[i as usize];
        node.proto = Some(proto);
        node.alive = true;
        node.started = true;
        // The contract's first input: the state machine answers with its initial outputs.
        self.feed(i, Input::Start);
        if self.dis.full_mesh || self.sc.bootstrap == 0 {
            return;
        }
        // Bootstrap: random lower-index peers (they started earlier), or any live peer after a
        // restart.
        let restarted = self.nodes[i as usize].restarts > 0;
        let candidates: Vec<u32> = (0..self.sc.peers as u32)
            .filter(|&j| j != i && (restarted || j < i) && self.nodes[j as usize].alive)
            .collect();
        let picks = pick(&mut self.links_rng, &candidates, self.sc.bootstrap);
        for j in picks {
            self.dial(i, j);
        }
    }

    fn crash(&mut self, i: u32) {
        let timeout = us(self.sc.transport_timeout);
        let node = &mut self.nodes[i as usize];
        if !node.alive {
            return;
        }
        node.alive = false;
        node.inc += 1;
        node.proto = None;
        let links = std::mem::take(&mut node.links);
        for p in links {
            let inc = self.nodes[p as usize].inc;
            self.q.push(self.now + timeout, Ev::LinkDown { node: p, inc, peer: i });
        }
    }

    fn restart(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        if node.alive || !node.started {
            return;
        }
        node.restarts += 1;
        self.start(i);
    }

    /// Feeds one input to peer `i` and carries out its outputs.
    fn feed(&mut self, i: u32, input: Input) {
        let now = self.time();
        let Some(proto) = self.nodes[i as usize].proto.as_mut() else {
            return;
        };
        self.out.extend(proto.handle(now, input));
        let mut outs = std::mem::take(&mut self.out);
        for o in outs.drain(..) {
            self.apply(i, o);
        }
        self.out = outs;
    }

    fn apply(&mut self, i: u32, output: Output) {
        match output {
            Output::Send { to, frame, class } => self.send(i, &to, frame, class),
            Output::Broadcast { frame, class } => self.broadcast(i, &frame, class),
            Output::Deliver(AppEvent::Post(p)) => {
                let Some(author) = self.dir.index(&p.author) else {
                    return;
                };
                if p.own {
                    self.metrics.published(self.now, i, p.seq);
                } else {
                    let one_way = self.sc.latency.one_way_us(author as usize, i as usize);
                    self.metrics.delivered(self.now, i, author, p.seq, one_way);
                }
            }
            Output::Deliver(AppEvent::Link { peer, status }) => {
                if let Some(p) = self.dir.index(&peer) {
                    self.metrics.link(self.now, i, p, status);
                }
            }
            Output::Deliver(_) => {}
            Output::Schedule { at, timer } => {
                let at = at.0.saturating_sub(EPOCH_US).max(self.now);
                let inc = self.nodes[i as usize].inc;
                self.q.push(at, Ev::Timer { node: i, inc, timer });
            }
            Output::Dial { peer, .. } => {
                if let Some(p) = self.dir.index(&peer) {
                    self.dial(i, p);
                }
            }
            Output::Disconnect { peer } => {
                let Some(p) = self.dir.index(&peer) else {
                    return;
                };
                if self.nodes[i as usize].links.contains(&p) {
                    let (inc_i, inc_p) = (self.nodes[i as usize].inc, self.nodes[p as usize].inc);
                    let one_way = self.sc.latency.one_way_us(i as usize, p as usize);
                    self.q.push(self.now, Ev::LinkDown { node: i, inc: inc_i, peer: p });
                    self.q.push(self.now + one_way, Ev::LinkDown { node: p, inc: inc_p, peer: i });
                }
            }
            // What a peer persisted only matters if it can crash and restart: not kept
            // otherwise (it would double the memory of a large run).
            Output::Persist(_) if !self.crashes => {}
            Output::Persist(op) => {
                let stored = &mut self.nodes[i as usize].stored;
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

    fn send(&mut self, i: u32, to: &AuthorKey, frame: Bytes, class: Priority) {
        // With back-pressure the host reports every frame once: when it left, or now.
        let report = |r: &mut Self, at: u64, bytes: usize| {
            if r.sc.link.host_queue_bytes.is_some() {
                let inc = r.nodes[i as usize].inc;
                r.q.push(at, Ev::Sent { node: i, inc, bytes });
            }
        };
        let Some(to) = self.dir.index(to) else {
            self.metrics.drops.no_link += 1;
            report(self, self.now, frame.len());
            return;
        };
        if to == i || (!self.dis.full_mesh && !self.nodes[i as usize].links.contains(&to)) {
            self.metrics.drops.no_link += 1;
            report(self, self.now, frame.len());
            return;
        }
        self.metrics.sent(self.now, (i, to), class, &frame, &self.dir);
        let medium = match self.sc.link.scope {
            RateScope::Uplink => i as usize,
            RateScope::SharedRadio => self.sc.groups[i as usize] as usize,
            RateScope::Pair => 0,
        };
        let prop = self.sc.latency.one_way_us(i as usize, to as usize);
        let bytes = frame.len() as u64;
        let sent = self.net.transmit(self.now, i, to, medium, bytes, prop);
        report(self, self.net.last_done, frame.len());
        if let Transmit::Arrives(at) = sent {
            let inc = self.nodes[to as usize].inc;
            self.q.push(at, Ev::Arrive { from: i, to, inc, class, frame });
        }
    }

    /// One transmission on `i`'s radio, heard by every other member of its group.
    fn broadcast(&mut self, i: u32, frame: &Bytes, class: Priority) {
        let len = frame.len();
        let done = if self.broadcasts() {
            self.metrics.sent(self.now, (i, i), class, frame, &self.dir);
            self.net.broadcast(self.now, self.sc.groups[i as usize] as usize, len as u64)
        } else {
            self.metrics.drops.no_link += 1; // no radio to broadcast on
            None
        };
        if self.sc.link.host_queue_bytes.is_some() {
            let inc = self.nodes[i as usize].inc;
            self.q.push(done.unwrap_or(self.now), Ev::Sent { node: i, inc, bytes: len });
        }
        let Some(done) = done else { return };
        let group = self.sc.groups[i as usize];
        let members: Vec<usize> =
            self.sc.group_members(group).filter(|&j| j != i as usize).collect();
        for j in members {
            let to = j as u32;
            if self.net.lost(i, to) {
                continue;
            }
            let at = done + self.sc.latency.one_way_us(i as usize, j);
            let inc = self.nodes[j].inc;
            self.q.push(at, Ev::Overheard { from: i, to, inc, class, frame: frame.clone() });
        }
    }

    fn overheard(&mut self, from: u32, to: u32, inc: u32, class: Priority, frame: Bytes) {
        if self.reaches(from, to, inc) {
            self.metrics.arrived(from, to, class, &frame, &self.dir);
            let key = self.dir.key(from as usize);
            self.feed(to, Input::Broadcast { from: key, frame });
        }
    }

    fn arrive(&mut self, from: u32, to: u32, inc: u32, class: Priority, frame: Bytes) {
        if !self.reaches(from, to, inc) {
            return;
        }
        if !self.dis.full_mesh && !self.nodes[to as usize].links.contains(&from) {
            self.metrics.drops.no_link += 1;
            return;
        }
        self.metrics.arrived(from, to, class, &frame, &self.dir);
        let key = self.dir.key(from as usize);
        self.feed(to, Input::Received { from: key, frame });
    }

    /// Whether a frame from `from` reaches incarnation `inc` of `to`: alive still, and not
    /// cut off by a partition (each miss counted).
    fn reaches(&mut self, from: u32, to: u32, inc: u32) -> bool {
        if !self.is_current(to, inc) {
            self.metrics.drops.dead += 1;
            return false;
        }
        if self.is_cut(from as usize, to as usize) {
            self.metrics.drops.partitioned += 1;
            return false;
        }
        true
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.iter().any(|&f| self.sc.faults[f].affects(a, b))
    }

    fn dial(&mut self, a: u32, b: u32) {
        if a == b || self.dis.full_mesh || self.nodes[a as usize].links.contains(&b) {
            return;
        }
        if !self.nodes[b as usize].alive || self.is_cut(a as usize, b as usize) {
            return;
        }
        let rtt = self.sc.latency.rtt_us(a as usize, b as usize);
        let (inc_a, inc_b) = (self.nodes[a as usize].inc, self.nodes[b as usize].inc);
        self.q.push(self.now + rtt, Ev::LinkUp { node: a, inc: inc_a, peer: b, inbound: false });
        self.q.push(self.now + rtt, Ev::LinkUp { node: b, inc: inc_b, peer: a, inbound: true });
    }

    fn publish(&mut self, node: Option<u32>) {
        let period = 1e6 / self.sc.traffic.rate_per_s;
        let author = match node {
            Some(i) => Some(i),
            None => {
                let live: Vec<u32> =
                    (0..self.sc.peers as u32).filter(|&j| self.nodes[j as usize].alive).collect();
                (!live.is_empty()).then(|| live[self.traffic_rng.random_range(0..live.len())])
            }
        };
        match author {
            Some(i) if self.nodes[i as usize].alive => {
                let topic = self.sc.traffic.topic.clone();
                let body = self.body.clone();
                self.feed(i, Input::Command(Command::Post { topic, body }));
            }
            _ => self.metrics.posts_skipped += 1,
        }
        let next = self.now + self.gap(period, false).max(1);
        if next < us(self.sc.duration) {
            self.q.push(next, Ev::Publish { node });
        }
    }

    fn fault_start(&mut self, f: usize) {
        let fault = &self.sc.faults[f];
        self.metrics.fault_started(self.now, f, fault);
        match &fault.kind {
            FaultKind::Partition { .. } => self.cut.push(f),
            FaultKind::Crash { peers } => {
                for &p in peers {
                    self.crash(p);
                }
            }
        }
    }

    fn fault_end(&mut self, f: usize) {
        let fault = &self.sc.faults[f];
        match &fault.kind {
            FaultKind::Partition { .. } => self.cut.retain(|&g| g != f),
            FaultKind::Crash { peers } => {
                for &p in peers {
                    self.restart(p);
                }
            }
        }
        let rtt = self.cut_rtt(f);
        self.heal_cut_rtt.push(rtt);
        self.metrics.fault_ended(self.now, us(fault.start), f, fault);
        self.check_convergence();
    }

    /// Largest RTT across the cut of fault `f` (sampled when the scenario is large).
    fn cut_rtt(&mut self, f: usize) -> u64 {
        let fault = &self.sc.faults[f];
        let n = self.sc.peers;
        let mut best = 0;
        if n <= 1000 {
            for a in 0..n {
                for b in a + 1..n {
                    if fault.affects(a, b) {
                        best = best.max(self.sc.latency.rtt_us(a, b));
                    }
                }
            }
        } else {
            for _ in 0..100_000 {
                let a = self.links_rng.random_range(0..n);
                let b = self.links_rng.random_range(0..n);
                if fault.affects(a, b) {
                    best = best.max(self.sc.latency.rtt_us(a, b));
                }
            }
        }
        best
    }

    /// Checks, while any is still open: whether every live peer knows every other and they
    /// agree on membership (from the start), whether they hold the same (after the start and
    /// after each heal), and whether they hold the same once publishing and faults are over.
    fn check_convergence(&mut self) {
        if !self.cut.is_empty() || self.metrics.active_faults > 0 {
            return;
        }
        if self.nodes.iter().any(|n| !n.started) {
            return;
        }
        let heals = self.metrics.waiting_for_convergence(self.sc.converge_from_start);
        let members = self.sc.converge_from_start && self.metrics.waiting_for_membership();
        let duration = us(self.sc.duration);
        let quiet = self.now >= duration && self.metrics.converge_quiet.is_none();
        if !heals && !members && !quiet {
            return;
        }
        let live = self.nodes.iter().filter(|n| n.alive).count();
        if self.nodes.iter().any(|n| n.alive && n.proto.as_ref().is_some_and(|p| p.fisheye())) {
            self.check_fisheye(heals, members, quiet, duration);
            return;
        }
        let mut all_known = heals || members;
        let (mut digest, mut equal) = (None, true);
        let (mut m_digest, mut m_equal) = (None, true);
        for n in &self.nodes {
            let Some(p) = n.proto.as_ref().filter(|_| n.alive) else {
                continue;
            };
            all_known = all_known && p.known_peers() + 1 == live;
            let d = p.digest();
            equal = equal && *digest.get_or_insert(d) == d;
            if members {
                let m = p.membership_digest();
                m_equal = m_equal && *m_digest.get_or_insert(m) == m;
            }
            if !all_known && !equal && !m_equal {
                break;
            }
        }
        if members && all_known {
            self.metrics.members(self.now, m_equal);
        }
        if heals && all_known && equal {
            self.metrics.converged(self.now);
        }
        if quiet && equal {
            self.metrics.converged_quiet(self.now - duration);
        }
    }

    /// [`Self::check_convergence`] once some peer keeps fisheye membership: "knows every
    /// other" becomes "knows every peer in its scope" (as that peer's `in_scope` judges the
    /// other's current coordinate), "equal membership digests" becomes "holds the newest
    /// presence and status of every peer in its scope", and "holds the same" compares the
    /// log streams (posts) only. Above [`FISHEYE_CHECK_OBSERVERS`] live peers, an evenly
    /// spread sample of that many observers is checked (against every live peer).
    fn check_fisheye(&mut self, heals: bool, members: bool, quiet: bool, duration: u64) {
        let live: Vec<(AuthorKey, Option<vecino_coords::Coordinate>, (u64, u64))> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.proto.as_ref())
            .map(|p| (p.peer(), p.published_coordinate(), p.presence_seqs(&p.peer())))
            .collect();
        let protos: Vec<&dyn crate::io::Protocol> =
            self.nodes.iter().filter(|n| n.alive).filter_map(|n| n.proto.as_deref()).collect();
        let mut equal = true;
        let mut digest = None;
        for p in &protos {
            let d = p.log_digest();
            equal = equal && *digest.get_or_insert(d) == d;
        }
        let step = protos.len().div_ceil(FISHEYE_CHECK_OBSERVERS).max(1);
        let (mut all_known, mut agree) = (true, true);
        'outer: for p in protos.iter().step_by(step) {
            for (q, c, own) in &live {
                if *q == p.peer() || !p.in_scope(q, c.as_ref()) {
                    continue;
                }
                let held = p.presence_seqs(q);
                all_known = all_known && held != (0, 0);
                agree = agree && held == *own;
                if !all_known {
                    break 'outer;
                }
            }
        }
        if members && all_known {
            self.metrics.members(self.now, agree);
        }
        if heals && all_known && agree && equal {
            self.metrics.converged(self.now);
        }
        if quiet && equal {
            self.metrics.converged_quiet(self.now - duration);
        }
    }

    /// At the end, under fisheye membership: over (a sample of) observers, the (observer,
    /// peer) pairs where the peer is in the observer's scope, how many of them the observer
    /// knows, and of how many it holds the newest presence and status.
    fn fisheye_scope(&self) -> Option<(u64, u64, u64)> {
        let protos: Vec<&dyn crate::io::Protocol> =
            self.nodes.iter().filter(|n| n.alive).filter_map(|n| n.proto.as_deref()).collect();
        if !protos.iter().any(|p| p.fisheye()) {
            return None;
        }
        let live: Vec<_> = protos
            .iter()
            .map(|p| (p.peer(), p.published_coordinate(), p.presence_seqs(&p.peer())))
            .collect();
        let step = protos.len().div_ceil(FISHEYE_CHECK_OBSERVERS).max(1);
        let (mut pairs, mut known, mut newest) = (0, 0, 0);
        for p in protos.iter().step_by(step) {
            for (q, c, own) in &live {
                if *q == p.peer() || !p.in_scope(q, c.as_ref()) {
                    continue;
                }
                pairs += 1;
                let held = p.presence_seqs(q);
                known += u64::from(held != (0, 0));
                newest += u64::from(held == *own);
            }
        }
        Some((pairs, known, newest))
    }

    fn finish(self) -> Report {
        let alive: Vec<bool> = self.nodes.iter().map(|n| n.alive && n.started).collect();
        let scope = self.fisheye_scope();
        let mut metrics = self.metrics;
        metrics.drops.queue = self.net.stats.queue_drops;
        metrics.drops.lost = self.net.stats.lost;
        let medium = match self.sc.link.scope {
            RateScope::SharedRadio => self.net.medium_bytes.as_slice(),
            _ => &[],
        };
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.alive) {
            for (k, v) in n.proto.as_ref().map(|p| p.counters()).unwrap_or_default() {
                *counters.entry(k.to_string()).or_default() += v;
            }
        }
        if let Some((pairs, known, newest)) = scope {
            counters.insert("fisheye_scope_pairs".into(), pairs);
            counters.insert("fisheye_scope_known".into(), known);
            counters.insert("fisheye_scope_newest".into(), newest);
        }
        let links: Vec<Vec<u32>> = self
            .nodes
            .iter()
            .map(|n| {
                let ns = n.proto.as_ref().map(|p| p.neighbours()).unwrap_or_default();
                ns.iter().filter_map(|k| self.dir.index(k)).collect()
            })
            .collect();
        let overlay = crate::sim::overlay::summarize(&self.sc.latency, &links, &alive);
        metrics.finish(
            self.sc,
            self.dis.name,
            &alive,
            self.end,
            medium,
            self.net.stats.max_backlog_bytes,
            self.events,
            &self.heal_cut_rtt,
            counters,
            overlay,
        )
    }
}

/// Observers checked for fisheye membership convergence at most (see `check_fisheye`).
const FISHEYE_CHECK_OBSERVERS: usize = 500;

/// Up to `k` distinct random elements of `from`, in the order drawn.
fn pick(rng: &mut ChaCha8Rng, from: &[u32], k: usize) -> Vec<u32> {
    let mut pool = from.to_vec();
    let mut out = Vec::with_capacity(k.min(pool.len()));
    while out.len() < k && !pool.is_empty() {
        let j = rng.random_range(0..pool.len());
        out.push(pool.swap_remove(j));
    }
    out
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
