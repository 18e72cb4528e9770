//! The event loop: timed events, one state machine per peer, the network model.
//!
//! Events are ordered by (time, tie). The tie names what caused the event and how many events
//! it had caused before (`cause << 40 | count`; the cause is the peer whose input or outputs
//! made it, or the run itself for publications, faults and checks), so the order does not
//! depend on how the run is split: two runs of the same scenario and seed process the same
//! events in the same order, on one thread or several. Each peer's outputs are carried out in
//! order right after its `handle` returns, as the contract in [`crate::io`] asks.
//!
//! **Shards.** Peers are split into shards ([`crate::sim::shards`]) that run side by side in
//! windows no longer than the least one-way delay between shards (the lookahead): within a
//! window no shard can affect another, so each runs its own events, and what it caused for
//! peers of other shards is handed over at the window's end. What the run does itself
//! (start peers, publish, faults, convergence checks) happens between windows, on one thread.
//! Metrics are recorded by the shards and applied between windows, merged in event order, so
//! a report is bit-identical whatever the number of shards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{AuthorKey, Bytes, Identity, VerifiedEvent};

use crate::io::Timer;
use crate::io::{AppEvent, Command, Input, LinkInfo, LinkStatus, Output, Priority, StoreOp};
use crate::sim::Peer;
use crate::sim::disseminators::{Disseminator, NodeSpec, PeerDirectory};
use crate::sim::metrics::{ArrivedFrame, Metrics, SentFrame};
use crate::sim::network::{Network, Transmit};
use crate::sim::report::{Drops, Report};
use crate::sim::scenario::{Arrivals, FaultKind, RateScope, Scenario, TrafficScope};
use crate::sim::shards::Plan;
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

/// The cause named in the tie of what the run schedules itself (starts, publications,
/// faults, checks); peers are causes `0 .. RUN`.
const RUN: u32 = (1 << 24) - 1;

/// Bits of a tie that count a cause's events.
const COUNT_BITS: u32 = 40;

/// What happens at a peer; run by the peer's shard.
#[derive(Debug)]
enum Ev {
    /// A frame `from` sent to `to` arrives (`radio`: it was broadcast on their radio, and
    /// `to` overheard it).
    Arrive {
        from: u32,
        to: u32,
        inc: u32,
        class: Priority,
        frame: Bytes,
        radio: bool,
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
    /// A frame of `bytes` from `node` left its medium (back-pressure report).
    Sent {
        node: u32,
        inc: u32,
        bytes: usize,
    },
}

impl Ev {
    /// The peer the event happens at.
    fn peer(&self) -> u32 {
        match self {
            Ev::Arrive { to, .. } => *to,
            Ev::Timer { node, .. }
            | Ev::LinkUp { node, .. }
            | Ev::LinkDown { node, .. }
            | Ev::Sent { node, .. } => *node,
        }
    }
}

/// What the run does itself, between windows.
#[derive(Debug)]
enum RunEv {
    Start(u32),
    Publish { node: Option<u32> },
    FaultStart(usize),
    FaultEnd(usize),
    Check,
}

/// A min-queue of events by (time, tie); payloads live in a slab so the heap moves 24-byte
/// keys only.
#[derive(Debug)]
struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), slab: Vec::new(), free: Vec::new() }
    }
}

impl<E> Queue<E> {
    fn push(&mut self, at: u64, tie: u64, ev: E) {
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
        self.heap.push(Reverse((at, tie, slot)));
    }

    /// When the next event happens.
    fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    fn pop(&mut self) -> Option<(u64, u64, E)> {
        let Reverse((at, tie, slot)) = self.heap.pop()?;
        let ev = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, tie, ev))
    }
}

type StoreKey = (AuthorKey, i32, u64);

/// Whether a peer runs, and which incarnation: changed only by the run itself (between
/// windows), read by every shard.
#[derive(Debug, Clone, Copy, Default)]
struct Life {
    alive: bool,
    started: bool,
    /// Incarnation: bumped on crash, so events for the old one are dropped.
    inc: u32,
}

struct Node {
    proto: Option<Box<dyn Peer + Send>>,
    restarts: u32,
    links: BTreeSet<u32>,
    stored: BTreeMap<StoreKey, VerifiedEvent>,
    /// Events this peer caused so far (the count in their ties).
    caused: u64,
}

/// What every shard reads during a window and none changes.
struct World<'a> {
    sc: &'a Scenario,
    full_mesh: bool,
    dir: Arc<PeerDirectory>,
    plan: Plan,
    life: Vec<Life>,
    /// Active partitions (indexes into `sc.faults`).
    cut: Vec<usize>,
    /// The scenario crashes peers (so what they persist is kept for their restart).
    crashes: bool,
}

impl World<'_> {
    fn is_current(&self, node: u32, inc: u32) -> bool {
        let l = self.life[node as usize];
        l.alive && l.inc == inc
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.iter().any(|&f| self.sc.faults[f].affects(a, b))
    }

    /// Peers may broadcast on their group's radio.
    fn broadcasts(&self) -> bool {
        self.sc.link.broadcast && self.sc.link.scope == RateScope::SharedRadio
    }
}

/// A metric a shard observed, applied to [`Metrics`] between windows in event order.
#[derive(Debug)]
enum Record {
    Published { author: u32, seq: u64 },
    Delivered { node: u32, author: u32, seq: u64, one_way: u64 },
    Link { node: u32, peer: u32, status: LinkStatus },
    Sent { from: u32, to: u32, frame: SentFrame },
    Arrived { from: u32, to: u32, frame: ArrivedFrame },
}

/// Some of the peers, their events and their media.
struct Shard {
    id: u32,
    /// This shard's peers, by their index in it (`Plan::local`).
    nodes: Vec<Node>,
    q: Queue<Ev>,
    net: Network,
    out: Vec<Output>,
    /// Events caused here for peers of other shards, handed over at the window's end.
    outbox: Vec<(u64, u64, Ev)>,
    /// Metrics observed, with the time and tie of the event that made them.
    log: Vec<(u64, u64, Record)>,
    drops: Drops,
    events: u64,
    now: u64,
    /// The tie of the event running.
    tie: u64,
    /// The peer whose input or outputs are being carried out: the cause of what they
    /// schedule.
    cause: u32,
}

struct Sim<'a> {
    world: World<'a>,
    dis: &'a Disseminator,
    seed: u64,
    shards: Vec<Shard>,
    /// What the run does itself: starts, publications, faults, checks.
    runq: Queue<RunEv>,
    run_caused: u64,
    metrics: Metrics,
    traffic_rng: ChaCha8Rng,
    links_rng: ChaCha8Rng,
    now: u64,
    tie: u64,
    end: u64,
    body: Bytes,
    events: u64,
    heal_cut_rtt: Vec<u64>,
}

/// Runs `dis` on `scenario` from `seed` on one thread and reports. `progress` is called with
/// the fraction of simulated time done, every `scenario.check_interval` of simulated time.
pub fn run(
    scenario: &Scenario,
    dis: &Disseminator,
    seed: u64,
    progress: &mut (dyn FnMut(f64) + Send),
) -> Report {
    run_parallel(scenario, dis, seed, 1, progress)
}

/// As [`run`], on `threads` threads: the peers are split into up to `threads` ×
/// [`SHARDS_PER_THREAD`] shards that run side by side (see the module docs). The report is the
/// same whatever `threads` is, except for `Report::shards` and `Report::lookahead_us`, which
/// say how the run was split. A run keeps one shard on a shared radio (its members share one
/// medium), and when no split leaves windows of at least
/// [`MIN_LOOKAHEAD_US`](crate::sim::shards::MIN_LOOKAHEAD_US).
pub fn run_parallel(
    scenario: &Scenario,
    dis: &Disseminator,
    seed: u64,
    threads: usize,
    progress: &mut (dyn FnMut(f64) + Send),
) -> Report {
    let n = scenario.peers;
    let plan = if threads > 1 && scenario.link.scope != RateScope::SharedRadio {
        Plan::new(&scenario.latency, n, threads * SHARDS_PER_THREAD)
    } else {
        Plan::single(n)
    };
    let pool = (plan.shards() > 1)
        .then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok())
        .flatten();
    let plan = if pool.is_some() { plan } else { Plan::single(n) };
    let mut sim = Sim::new(scenario, dis, seed, plan);
    match &pool {
        // The whole run on the pool: a thread that waits for the others' shards keeps
        // looking for work instead of sleeping.
        Some(pool) => pool.install(|| sim.run(Some(pool), progress)),
        None => sim.run(None, progress),
    }
    sim.finish()
}

/// Shards per thread. More shards than threads let a thread that is done with its shards
/// take another's instead of waiting for the window's end: a window lasts as long as its
/// busiest thread. Two per thread: scale at 2 000 peers × 60 s ran in 58 s on two threads,
/// against 69 s with one shard per thread (and 104 s on one).
const SHARDS_PER_THREAD: usize = 2;

/// Simulated time `now_us` (µs since the run began) as the peers' clock reads it.
fn time(now_us: u64) -> Time {
    Time(EPOCH_US + now_us)
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

impl Shard {
    fn node(&mut self, w: &World<'_>, i: u32) -> &mut Node {
        &mut self.nodes[w.plan.local[i as usize] as usize]
    }

    /// Schedules a peer event `ev` at `at`, caused by `self.cause`.
    fn push(&mut self, w: &World<'_>, at: u64, ev: Ev) {
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
    fn run_until(&mut self, w: &World<'_>, end: u64) {
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
    fn feed(&mut self, w: &World<'_>, i: u32, input: Input) {
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
        let prop = w.sc.latency.one_way_us(i as usize, to as usize);
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
            let at = done + w.sc.latency.one_way_us(i as usize, j);
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
    fn dial(&mut self, w: &World<'_>, a: u32, b: u32) {
        if a == b || w.full_mesh || self.node(w, a).links.contains(&b) {
            return;
        }
        if !w.life[b as usize].alive || w.is_cut(a as usize, b as usize) {
            return;
        }
        let rtt = w.sc.latency.rtt_us(a as usize, b as usize);
        let (inc_a, inc_b) = (w.life[a as usize].inc, w.life[b as usize].inc);
        self.push(w, self.now + rtt, Ev::LinkUp { node: a, inc: inc_a, peer: b, inbound: false });
        self.push(w, self.now + rtt, Ev::LinkUp { node: b, inc: inc_b, peer: a, inbound: true });
    }
}

fn apply_record(metrics: &mut Metrics, at: u64, r: Record) {
    match r {
        Record::Published { author, seq } => metrics.published(at, author, seq),
        Record::Delivered { node, author, seq, one_way } => {
            metrics.delivered(at, node, author, seq, one_way);
        }
        Record::Link { node, peer, status } => metrics.link(at, node, peer, status),
        Record::Sent { from, to, frame } => metrics.sent(at, (from, to), &frame),
        Record::Arrived { from, to, frame } => metrics.arrived(from, to, &frame),
    }
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, dis: &'a Disseminator, seed: u64, plan: Plan) -> Self {
        let n = sc.peers;
        let keys = (0..n).map(|i| identity(seed, i).public()).collect();
        let dir = Arc::new(PeerDirectory::new(keys));
        let end = us(sc.duration) + us(sc.drain);
        let media = match sc.link.scope {
            RateScope::Uplink => n,
            RateScope::SharedRadio => sc.group_count(),
            RateScope::Pair => 0,
        };
        let shards = plan
            .members
            .iter()
            .enumerate()
            .map(|(s, members)| Shard {
                id: s as u32,
                nodes: members
                    .iter()
                    .map(|_| Node {
                        proto: None,
                        restarts: 0,
                        links: BTreeSet::new(),
                        stored: BTreeMap::new(),
                        caused: 0,
                    })
                    .collect(),
                q: Queue::default(),
                net: Network::new(sc.link.clone(), media, seed_for(seed, concern::NETWORK, 0)),
                out: Vec::new(),
                outbox: Vec::new(),
                log: Vec::new(),
                drops: Drops::default(),
                events: 0,
                now: 0,
                tie: 0,
                cause: 0,
            })
            .collect();
        let mut sim = Sim {
            world: World {
                sc,
                full_mesh: dis.full_mesh,
                dir,
                plan,
                life: vec![Life::default(); n],
                cut: Vec::new(),
                crashes: sc.faults.iter().any(|f| matches!(f.kind, FaultKind::Crash { .. })),
            },
            dis,
            seed,
            shards,
            runq: Queue::default(),
            run_caused: 0,
            metrics: Metrics::new(n, us(sc.bucket), end),
            traffic_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::TRAFFIC, 0)),
            links_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::LINKS, 0)),
            now: 0,
            tie: 0,
            end,
            body: Bytes::from(vec![b'x'; sc.traffic.body_bytes]),
            events: 0,
            heal_cut_rtt: Vec::new(),
        };
        sim.schedule_initial();
        sim
    }

    /// Runs to the end: the run's own events one at a time, the peers' in windows between
    /// them no longer than the lookahead, the shards side by side.
    fn run(&mut self, pool: Option<&rayon::ThreadPool>, progress: &mut (dyn FnMut(f64) + Send)) {
        let lookahead = self.world.plan.lookahead_us;
        loop {
            let next_run = self.runq.next();
            let next_peer = self.shards.iter().filter_map(|s| s.q.next()).min();
            let Some(next) = next_run.into_iter().chain(next_peer).min() else { break };
            if next > self.end {
                break;
            }
            // At equal times the run's own events go first.
            if next_run == Some(next) {
                let Some((at, tie, ev)) = self.runq.pop() else { break };
                self.now = at;
                self.tie = tie;
                self.events += 1;
                self.dispatch(&ev, progress);
                continue;
            }
            let stop =
                next.saturating_add(lookahead).min(next_run.unwrap_or(u64::MAX)).min(self.end + 1);
            let world = &self.world;
            match (self.shards.split_first_mut(), pool) {
                (Some((first, rest)), Some(pool)) => pool.scope(|scope| {
                    for shard in rest {
                        scope.spawn(move |_| shard.run_until(world, stop));
                    }
                    first.run_until(world, stop);
                }),
                (Some((first, _)), None) => first.run_until(world, stop),
                (None, _) => break,
            }
            self.settle();
        }
        progress(1.0);
    }

    /// Between windows: hands events over to the shards of their peers, and applies the
    /// metrics the shards observed in event order.
    fn settle(&mut self) {
        let plan = &self.world.plan;
        for s in 0..self.shards.len() {
            let outbox = std::mem::take(&mut self.shards[s].outbox);
            for (at, tie, ev) in outbox {
                let to = plan.shard_of[ev.peer() as usize] as usize;
                self.shards[to].q.push(at, tie, ev);
            }
        }
        if let [shard] = self.shards.as_mut_slice() {
            for (at, _, r) in shard.log.drain(..) {
                apply_record(&mut self.metrics, at, r);
            }
            return;
        }
        let mut logs: Vec<std::vec::IntoIter<(u64, u64, Record)>> =
            self.shards.iter_mut().map(|s| std::mem::take(&mut s.log).into_iter()).collect();
        let mut heads: Vec<Option<(u64, u64, Record)>> =
            logs.iter_mut().map(Iterator::next).collect();
        loop {
            let first = heads
                .iter()
                .enumerate()
                .filter_map(|(s, h)| h.as_ref().map(|(at, tie, _)| ((*at, *tie), s)))
                .min();
            let Some((_, s)) = first else { break };
            let Some((at, _, r)) = std::mem::replace(&mut heads[s], logs[s].next()) else { break };
            apply_record(&mut self.metrics, at, r);
        }
    }

    fn push_run(&mut self, at: u64, ev: RunEv) {
        self.run_caused += 1;
        let tie = (u64::from(RUN) << COUNT_BITS) | self.run_caused;
        self.runq.push(at, tie, ev);
    }

    fn node(&self, i: u32) -> &Node {
        let p = &self.world.plan;
        &self.shards[p.shard_of[i as usize] as usize].nodes[p.local[i as usize] as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        let p = &self.world.plan;
        &mut self.shards[p.shard_of[i as usize] as usize].nodes[p.local[i as usize] as usize]
    }

    /// Every peer in index order.
    fn nodes(&self) -> impl Iterator<Item = (&Node, Life)> + '_ {
        (0..self.world.sc.peers as u32).map(|i| (self.node(i), self.world.life[i as usize]))
    }

    /// Carries out something of peer `i` between windows (its input, its dials), then
    /// settles what it caused.
    fn at_peer(&mut self, i: u32, f: impl FnOnce(&mut Shard, &World<'_>)) {
        let s = self.world.plan.shard_of[i as usize] as usize;
        let shard = &mut self.shards[s];
        shard.now = self.now;
        shard.tie = self.tie;
        shard.cause = i;
        f(shard, &self.world);
        self.settle();
    }

    fn schedule_initial(&mut self) {
        let sc = self.world.sc;
        let n = sc.peers;
        // Start times: uniform in [0, spread), sorted so lower indexes start first.
        let mut start_rng = ChaCha8Rng::seed_from_u64(seed_for(self.seed, concern::START, 0));
        let spread = us(sc.start_spread);
        let mut starts: Vec<u64> = (0..n)
            .map(|_| if spread == 0 { 0 } else { start_rng.random_range(0..spread) })
            .collect();
        starts.sort_unstable();
        for (i, t) in starts.into_iter().enumerate() {
            self.push_run(t, RunEv::Start(i as u32));
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
                            self.push_run(first, RunEv::Publish { node: Some(i as u32) });
                        }
                    }
                }
                TrafficScope::Fleet => {
                    let first = t0 + self.gap(period, true);
                    if first < duration {
                        self.push_run(first, RunEv::Publish { node: None });
                    }
                }
            }
        }
        for (f, fault) in sc.faults.iter().enumerate() {
            let start = us(fault.start);
            if start >= duration {
                continue;
            }
            self.push_run(start, RunEv::FaultStart(f));
            let end = fault.end.map_or(duration, |e| us(e).min(duration));
            self.push_run(end, RunEv::FaultEnd(f));
        }
        self.push_run(0, RunEv::Check);
    }

    /// Time to the next publication, µs: periodic (a random phase the first time) or
    /// exponential.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn gap(&mut self, period_us: f64, first: bool) -> u64 {
        let u = unit(&mut self.traffic_rng);
        match (self.world.sc.traffic.arrivals, first) {
            (Arrivals::Periodic, true) => (u * period_us) as u64,
            (Arrivals::Periodic, false) => period_us as u64,
            (Arrivals::Poisson, _) => (-(1.0 - u).ln() * period_us) as u64,
        }
    }

    fn dispatch(&mut self, ev: &RunEv, progress: &mut (dyn FnMut(f64) + Send)) {
        match *ev {
            RunEv::Start(i) => self.start(i),
            RunEv::Publish { node } => self.publish(node),
            RunEv::FaultStart(f) => self.fault_start(f),
            RunEv::FaultEnd(f) => self.fault_end(f),
            RunEv::Check => {
                progress(self.now as f64 / self.end as f64);
                self.check_convergence();
                let next = self.now + us(self.world.sc.check_interval).max(1_000);
                if next <= self.end {
                    self.push_run(next, RunEv::Check);
                }
            }
        }
    }

    fn spec(&self, i: usize) -> NodeSpec {
        let sc = self.world.sc;
        let node = self.node(i as u32);
        NodeSpec {
            index: i,
            identity: identity(self.seed, i),
            rng_seed: seed_for(
                self.seed,
                concern::NODE,
                (u64::from(node.restarts) << 32) | i as u64,
            ),
            now: time(self.now),
            directory: Arc::clone(&self.world.dir),
            stored: node.stored.values().cloned().collect(),
            restarts: node.restarts,
            rate_bps: sc.link.rate_bps,
            uplink_bps: self.uplink_share(i),
            host_queue_bytes: sc.link.host_queue_bytes,
            shared_medium: self.world.broadcasts(),
        }
    }

    /// What peer `i` may send in all: the whole uplink, or an equal share of its group's radio
    /// (a radio has no fair-share arbiter; peers that each sent at the full radio rate would
    /// overrun it by the group size).
    fn uplink_share(&self, i: usize) -> Option<u64> {
        let sc = self.world.sc;
        let rate = sc.link.rate_bps?;
        match sc.link.scope {
            RateScope::Pair => None,
            RateScope::Uplink => Some(rate),
            RateScope::SharedRadio => {
                let members = sc.group_members(sc.groups[i]).count().max(1) as u64;
                Some(rate / members)
            }
        }
    }

    fn start(&mut self, i: u32) {
        let spec = self.spec(i as usize);
        let proto = (self.dis.factory)(spec);
        self.node_mut(i).proto = Some(proto);
        let life = &mut self.world.life[i as usize];
        life.alive = true;
        life.started = true;
        // The contract's first input: the state machine answers with its initial outputs.
        self.at_peer(i, |s, w| s.feed(w, i, Input::Start));
        let sc = self.world.sc;
        if self.dis.full_mesh || sc.bootstrap == 0 {
            return;
        }
        // Bootstrap: random lower-index peers (they started earlier), or any live peer after a
        // restart.
        let restarted = self.node(i).restarts > 0;
        let life = &self.world.life;
        let candidates: Vec<u32> = (0..sc.peers as u32)
            .filter(|&j| j != i && (restarted || j < i) && life[j as usize].alive)
            .collect();
        let picks = pick(&mut self.links_rng, &candidates, sc.bootstrap);
        self.at_peer(i, |s, w| {
            for j in picks {
                s.dial(w, i, j);
            }
        });
    }

    fn crash(&mut self, i: u32) {
        let timeout = us(self.world.sc.transport_timeout);
        let life = &mut self.world.life[i as usize];
        if !life.alive {
            return;
        }
        life.alive = false;
        life.inc += 1;
        let node = self.node_mut(i);
        node.proto = None;
        let links = std::mem::take(&mut node.links);
        let at = self.now + timeout;
        self.at_peer(i, |s, w| {
            for p in links {
                let inc = w.life[p as usize].inc;
                s.push(w, at, Ev::LinkDown { node: p, inc, peer: i });
            }
        });
    }

    fn restart(&mut self, i: u32) {
        let life = self.world.life[i as usize];
        if life.alive || !life.started {
            return;
        }
        self.node_mut(i).restarts += 1;
        self.start(i);
    }

    fn publish(&mut self, node: Option<u32>) {
        let sc = self.world.sc;
        let period = 1e6 / sc.traffic.rate_per_s;
        let author = match node {
            Some(i) => Some(i),
            None => {
                let life = &self.world.life;
                let live: Vec<u32> =
                    (0..sc.peers as u32).filter(|&j| life[j as usize].alive).collect();
                (!live.is_empty()).then(|| live[self.traffic_rng.random_range(0..live.len())])
            }
        };
        match author {
            Some(i) if self.world.life[i as usize].alive => {
                let topic = sc.traffic.topic.clone();
                let body = self.body.clone();
                self.at_peer(i, |s, w| {
                    s.feed(w, i, Input::Command { id: 0, cmd: Command::Post { topic, body } })
                });
            }
            _ => self.metrics.posts_skipped += 1,
        }
        let next = self.now + self.gap(period, false).max(1);
        if next < us(sc.duration) {
            self.push_run(next, RunEv::Publish { node });
        }
    }

    fn fault_start(&mut self, f: usize) {
        let fault = &self.world.sc.faults[f];
        self.metrics.fault_started(self.now, f, fault);
        match &fault.kind {
            FaultKind::Partition { .. } => self.world.cut.push(f),
            FaultKind::Crash { peers } => {
                for &p in peers {
                    self.crash(p);
                }
            }
        }
    }

    fn fault_end(&mut self, f: usize) {
        let fault = &self.world.sc.faults[f];
        match &fault.kind {
            FaultKind::Partition { .. } => self.world.cut.retain(|&g| g != f),
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
        let fault = &self.world.sc.faults[f];
        let n = self.world.sc.peers;
        let mut best = 0;
        if n <= 1000 {
            for a in 0..n {
                for b in a + 1..n {
                    if fault.affects(a, b) {
                        best = best.max(self.world.sc.latency.rtt_us(a, b));
                    }
                }
            }
        } else {
            for _ in 0..100_000 {
                let a = self.links_rng.random_range(0..n);
                let b = self.links_rng.random_range(0..n);
                if fault.affects(a, b) {
                    best = best.max(self.world.sc.latency.rtt_us(a, b));
                }
            }
        }
        best
    }

    /// Checks, while any is still open: whether every live peer knows every other and they
    /// agree on membership (from the start), whether they hold the same (after the start and
    /// after each heal), and whether they hold the same once publishing and faults are over.
    fn check_convergence(&mut self) {
        if !self.world.cut.is_empty() || self.metrics.active_faults > 0 {
            return;
        }
        if self.world.life.iter().any(|l| !l.started) {
            return;
        }
        let sc = self.world.sc;
        let heals = self.metrics.waiting_for_convergence(sc.converge_from_start);
        let members = sc.converge_from_start && self.metrics.waiting_for_membership();
        let duration = us(sc.duration);
        let quiet = self.now >= duration && self.metrics.converge_quiet.is_none();
        if !heals && !members && !quiet {
            return;
        }
        let live = self.world.life.iter().filter(|l| l.alive).count();
        if self.nodes().any(|(n, l)| l.alive && n.proto.as_ref().is_some_and(|p| p.fisheye())) {
            self.check_fisheye(heals, members, quiet, duration);
            return;
        }
        let mut all_known = heals || members;
        let (mut digest, mut equal) = (None, true);
        let (mut m_digest, mut m_equal) = (None, true);
        for (n, life) in self.nodes() {
            let Some(p) = n.proto.as_ref().filter(|_| life.alive) else {
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
        let protos = self.live_protos();
        let live: Vec<(AuthorKey, Option<vecino_coords::Coordinate>, (u64, u64))> = protos
            .iter()
            .map(|p| (p.peer(), p.published_coordinate(), p.presence_seqs(&p.peer())))
            .collect();
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
        let protos = self.live_protos();
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

    /// The state machines of live peers, in index order.
    fn live_protos(&self) -> Vec<&dyn Peer> {
        self.nodes()
            .filter(|(_, l)| l.alive)
            .filter_map(|(n, _)| n.proto.as_deref())
            .map(|p| p as &dyn Peer)
            .collect()
    }

    fn finish(self) -> Report {
        let alive: Vec<bool> = self.world.life.iter().map(|l| l.alive && l.started).collect();
        let scope = self.fisheye_scope();
        let sc = self.world.sc;
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for (n, _) in self.nodes().filter(|(_, l)| l.alive) {
            for (k, v) in n.proto.as_ref().map(|p| p.counters()).unwrap_or_default() {
                *counters.entry(k.to_string()).or_default() += v;
            }
        }
        let dir = &self.world.dir;
        let links: Vec<Vec<u32>> = self
            .nodes()
            .map(|(n, _)| {
                let ns = n.proto.as_ref().map(|p| p.neighbours()).unwrap_or_default();
                ns.iter().filter_map(|k| dir.index(k)).collect()
            })
            .collect();
        let mut metrics = self.metrics;
        let mut medium_bytes = vec![0u64; self.shards[0].net.medium_bytes.len()];
        let mut max_backlog = 0;
        let mut events = self.events;
        for s in &self.shards {
            let d = &mut metrics.drops;
            d.queue += s.net.stats.queue_drops;
            d.lost += s.net.stats.lost;
            d.partitioned += s.drops.partitioned;
            d.dead += s.drops.dead;
            d.no_link += s.drops.no_link;
            max_backlog = max_backlog.max(s.net.stats.max_backlog_bytes);
            for (sum, b) in medium_bytes.iter_mut().zip(&s.net.medium_bytes) {
                *sum += b;
            }
            events += s.events;
        }
        let medium = match sc.link.scope {
            RateScope::SharedRadio => medium_bytes.as_slice(),
            _ => &[],
        };
        if let Some((pairs, known, newest)) = scope {
            counters.insert("fisheye_scope_pairs".into(), pairs);
            counters.insert("fisheye_scope_known".into(), known);
            counters.insert("fisheye_scope_newest".into(), newest);
        }
        let overlay =
            crate::sim::overlay::summarize(&sc.latency, &links, &alive, metrics.arrivals());
        let mut report = metrics.finish(
            sc,
            self.dis.name,
            &alive,
            self.end,
            medium,
            max_backlog,
            events,
            &self.heal_cut_rtt,
            counters,
            overlay,
        );
        report.shards = self.shards.len();
        report.lookahead_us = (self.shards.len() > 1).then_some(self.world.plan.lookahead_us);
        report
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
