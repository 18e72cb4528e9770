//! The event loop: timed events, one state machine per peer, the network model.
//!
//! Events are ordered by (time, tie), where the tie names what caused the event and how many
//! events it had caused before ([`queue`]), so the order does not depend on how the run is
//! split: two runs of the same scenario and seed process the same events in the same order, on
//! one thread or several. Each peer's outputs are carried out in order right after its `handle`
//! returns, as the contract in [`crate::io`] asks.
//!
//! **Shards.** Peers are split into shards ([`crate::sim::shards`]) that run side by side in
//! windows no longer than the least one-way delay between shards (the lookahead): within a
//! window no shard can affect another, so each runs its own events, and what it caused for
//! peers of other shards is handed over at the window's end. What the run does itself
//! (start peers, publish, faults, convergence checks) happens between windows, on one thread.
//! Metrics are recorded by the shards and applied between windows, merged in event order, so
//! a report is bit-identical whatever the number of shards.
//!
//! Here: [`Sim`], the window loop and the hand-over between windows. Then [`queue`] (what is
//! scheduled, in which order), [`shard`] (the host side: feeding peers and carrying out their
//! outputs), [`script`] (what the run does itself: starts, publications, faults) and [`checks`]
//! (convergence, and the report at the end).

mod barrios;
mod checks;
mod opinions;
mod queue;
mod script;
mod shard;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{Bytes, Identity};

use crate::sim::disseminators::{Disseminator, PeerDirectory};
use crate::sim::metrics::Metrics;
use crate::sim::network::Network;
use crate::sim::opinions::OpinionWatch;
use crate::sim::report::{Drops, Report};
use crate::sim::scenario::{FaultKind, RateScope, Scenario};
use crate::sim::seed_for;
use crate::sim::shards::Plan;

use self::queue::{COUNT_BITS, Queue, RUN, RunEv, us};
use self::shard::{Life, Node, Record, Shard, World, apply_record};

/// RNG concerns, each its own stream derived from the run's seed.
mod concern {
    pub(super) const IDENTITY: u64 = 1;
    pub(super) const NODE: u64 = 2;
    pub(super) const NETWORK: u64 = 3;
    pub(super) const TRAFFIC: u64 = 4;
    pub(super) const LINKS: u64 = 5;
    pub(super) const START: u64 = 6;
    pub(super) const POSTCARDS: u64 = 7;
}

/// A run: the world the shards read, the shards, and what the run does itself.
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
    /// Postcard traffic (its own stream: a scenario without postcards draws nothing from it).
    postcard_rng: ChaCha8Rng,
    links_rng: ChaCha8Rng,
    now: u64,
    tie: u64,
    end: u64,
    body: Bytes,
    events: u64,
    heal_cut_rtt: Vec<u64>,
    /// What peers believe about each other, sampled (scenarios with `opinions`).
    opinions: Option<OpinionWatch>,
    /// Barrios, sampled (scenarios with `barrios`).
    barrios: Option<crate::sim::barrios::BarrioWatch>,
    /// Each peer's current run's start, µs (for the truth the samples are judged against).
    started_us: Vec<u64>,
    /// Peers lying now (the liar fault).
    liars: BTreeSet<u32>,
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

/// The identity of peer `i` in runs seeded with `seed` (the same for every disseminator).
pub fn identity(seed: u64, i: usize) -> Identity {
    let mut rng = ChaCha8Rng::seed_from_u64(seed_for(seed, concern::IDENTITY, i as u64));
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    Identity::from_seed(secret)
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
                slow: Vec::new(),
            },
            dis,
            seed,
            shards,
            runq: Queue::default(),
            run_caused: 0,
            metrics: Metrics::new(n, us(sc.bucket), end),
            traffic_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::TRAFFIC, 0)),
            postcard_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::POSTCARDS, 0)),
            links_rng: ChaCha8Rng::seed_from_u64(seed_for(seed, concern::LINKS, 0)),
            now: 0,
            tie: 0,
            end,
            body: Bytes::from(vec![b'x'; sc.traffic.body_bytes]),
            events: 0,
            heal_cut_rtt: Vec::new(),
            opinions: sc.opinions.map(|o| OpinionWatch::new(o.observers.min(n))),
            barrios: sc.barrios.map(|b| crate::sim::barrios::BarrioWatch::new(us(b.steady_from))),
            started_us: vec![0; n],
            liars: BTreeSet::new(),
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
}
