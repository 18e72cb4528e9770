//! What the run does itself, between windows: it starts peers (and dials their bootstrap
//! links), publishes the scenario's traffic, starts and ends faults (partitions; crashes and
//! restarts) and schedules the convergence checks. Its draws (start times, publications,
//! bootstrap picks, cut samples) come from the run's own RNG streams, in event order.

use std::sync::Arc;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::Bytes;

use crate::io::{Command, Input};
use crate::sim::disseminators::NodeSpec;
use crate::sim::scenario::{Arrivals, FaultKind, Pairs, RateScope, TrafficScope};
use crate::sim::seed_for;

use super::queue::{Ev, RunEv, time, us};
use super::{Sim, concern, identity};

impl Sim<'_> {
    /// Schedules the starts, the first publications, the faults and the first check.
    pub(super) fn schedule_initial(&mut self) {
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
        if let Some(pc) = &sc.postcards
            && pc.rate_per_s > 0.0
        {
            let first = us(pc.start) + (unit(&mut self.postcard_rng) * 1e6 / pc.rate_per_s) as u64;
            if first < duration {
                self.push_run(first, RunEv::Postcard);
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
        if let Some(o) = sc.opinions {
            self.push_run(us(o.every).max(1_000), RunEv::Opinions);
        }
        if let Some(b) = sc.barrios {
            self.push_run(us(b.every).max(1_000), RunEv::Barrios);
        }
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

    /// Carries out one of the run's own events.
    pub(super) fn dispatch(&mut self, ev: &RunEv, progress: &mut (dyn FnMut(f64) + Send)) {
        match *ev {
            RunEv::Start(i) => self.start(i),
            RunEv::Publish { node } => self.publish(node),
            RunEv::Postcard => self.send_postcard(),
            RunEv::FaultStart(f) => self.fault_start(f),
            RunEv::FaultEnd(f) => self.fault_end(f),
            RunEv::Opinions => {
                self.sample_opinions();
                let every = self.world.sc.opinions.map_or(1_000_000, |o| us(o.every).max(1_000));
                if self.now + every <= self.end {
                    self.push_run(self.now + every, RunEv::Opinions);
                }
            }
            RunEv::Barrios => {
                self.sample_barrios();
                let every = self.world.sc.barrios.map_or(1_000_000, |b| us(b.every).max(1_000));
                if self.now + every <= self.end {
                    self.push_run(self.now + every, RunEv::Barrios);
                }
            }
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
        self.started_us[i as usize] = self.now;
        let mut proto = (self.dis.factory)(spec);
        if self.liars.contains(&i) {
            // A liar restarted lies again.
            let lie = self.world.sc.faults.iter().find_map(|f| match &f.kind {
                FaultKind::Lie { peers, lie } if peers.contains(&i) => Some(*lie),
                _ => None,
            });
            proto.set_lie(lie);
        }
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
        if let Some(w) = &mut self.opinions {
            w.crashed(self.world.dir.key(i as usize), self.now);
        }
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
        if let Some(w) = &mut self.opinions {
            w.restarted(self.world.dir.key(i as usize));
        }
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

    /// Sends one postcard from a random live peer to a random other peer (of another group
    /// with `Pairs::AcrossGroups`), with the oracle's latency for it: the shortest path on the
    /// live overlay by true delay at this moment.
    fn send_postcard(&mut self) {
        let sc = self.world.sc;
        let Some(pc) = &sc.postcards else { return };
        let n = sc.peers as u32;
        let life = &self.world.life;
        let live: Vec<u32> = (0..n).filter(|&j| life[j as usize].alive).collect();
        let next = self.now
            + (-(1.0 - unit(&mut self.postcard_rng)).ln() * 1e6 / pc.rate_per_s).max(1.0) as u64;
        if next < us(sc.duration) {
            self.push_run(next, RunEv::Postcard);
        }
        if live.is_empty() {
            return;
        }
        let author = live[self.postcard_rng.random_range(0..live.len())];
        let group = sc.groups[author as usize];
        let others: Vec<u32> = (0..n)
            .filter(|&j| j != author)
            .filter(|&j| pc.pairs == Pairs::Random || sc.groups[j as usize] != group)
            .collect();
        if others.is_empty() {
            return;
        }
        let dest = others[self.postcard_rng.random_range(0..others.len())];
        let oracle = self.oracle_us(author, dest);
        let (a, b) = (author as usize, dest as usize);
        let direct = sc.latency.is_measured(a, b).then(|| sc.latency.one_way_us(a, b));
        let id = self.metrics.postcard_planned(self.now, author, dest, direct, oracle);
        // Sent during a cut of the pair: measured from when the last cut of it heals.
        let heal = self
            .world
            .cut
            .iter()
            .map(|&f| &sc.faults[f])
            .filter(|f| matches!(f.kind, FaultKind::Partition { .. }) && f.affects(a, b))
            .map(|f| f.end.map_or(u64::MAX, us))
            .max();
        if let Some(heal) = heal {
            self.metrics.postcard_cut(id, heal);
        }
        let to = self.world.dir.key(b);
        let coordinate = if pc.hint {
            self.node(dest).proto.as_ref().and_then(|p| p.published_coordinate())
        } else {
            None
        };
        let body = Bytes::from(vec![b'x'; pc.body_bytes]);
        let cmd = Command::Postcard { to, body, lifetime: Some(pc.lifetime), coordinate };
        self.at_peer(author, |s, w| s.feed(w, author, Input::Command { id, cmd }));
    }

    /// The one-way delay of the shortest path from `a` to `b` on the live overlay (the links
    /// the peers report connected), by true delay; `None` if `b` is not reachable.
    fn oracle_us(&self, a: u32, b: u32) -> Option<u64> {
        let sc = self.world.sc;
        let n = sc.peers;
        let mut adj: Vec<Vec<u32>> = vec![Vec::new(); n];
        for i in 0..n as u32 {
            if !self.world.life[i as usize].alive {
                continue;
            }
            let Some(p) = self.node(i).proto.as_ref() else { continue };
            for k in p.neighbours() {
                if let Some(j) = self.world.dir.index(&k) {
                    adj[i as usize].push(j);
                    adj[j as usize].push(i);
                }
            }
        }
        let mut dist = vec![u64::MAX; n];
        let mut heap = std::collections::BinaryHeap::new();
        dist[a as usize] = 0;
        heap.push(std::cmp::Reverse((0u64, a)));
        while let Some(std::cmp::Reverse((d, u))) = heap.pop() {
            if u == b {
                return Some(d);
            }
            if d > dist[u as usize] {
                continue;
            }
            for &v in &adj[u as usize] {
                let nd = d + sc.latency.one_way_us(u as usize, v as usize);
                if nd < dist[v as usize] {
                    dist[v as usize] = nd;
                    heap.push(std::cmp::Reverse((nd, v)));
                }
            }
        }
        None
    }

    fn fault_start(&mut self, f: usize) {
        let fault = &self.world.sc.faults[f];
        if let FaultKind::Degrade { around, rtt_factor } = fault.kind {
            // Cuts nothing: the barrio of `around` now, slowed.
            let members = self.barrio_members(around);
            let n = self.world.sc.peers;
            self.world.slow.resize(n, 1.0);
            for &p in &members {
                self.world.slow[p as usize] = rtt_factor.max(1.0);
            }
            if let Some(w) = &mut self.barrios {
                w.degraded(self.now, members);
            }
            return;
        }
        if let FaultKind::Lie { peers, lie } = &fault.kind {
            // Cuts nothing: not a fault the delivery and link figures know of.
            for &p in peers {
                self.liars.insert(p);
                if let Some(proto) = self.node_mut(p).proto.as_mut() {
                    proto.set_lie(Some(*lie));
                }
            }
            return;
        }
        if let Some(w) = &mut self.opinions {
            w.give_up_heals();
        }
        self.metrics.fault_started(self.now, f, fault);
        match &fault.kind {
            FaultKind::Partition { .. } => self.world.cut.push(f),
            FaultKind::Crash { peers } => {
                for &p in peers {
                    self.crash(p);
                }
            }
            FaultKind::Lie { .. } | FaultKind::Degrade { .. } => {}
        }
    }

    fn fault_end(&mut self, f: usize) {
        let fault = &self.world.sc.faults[f];
        match &fault.kind {
            FaultKind::Degrade { .. } => {
                self.world.slow.iter_mut().for_each(|x| *x = 1.0);
                if let Some(w) = &mut self.barrios {
                    w.restored(self.now);
                }
                return;
            }
            FaultKind::Lie { peers, .. } => {
                for &p in peers {
                    self.liars.remove(&p);
                    if let Some(proto) = self.node_mut(p).proto.as_mut() {
                        proto.set_lie(None);
                    }
                }
                return;
            }
            FaultKind::Partition { .. } => {
                self.world.cut.retain(|&g| g != f);
                if let Some(w) = &mut self.opinions {
                    w.healed(self.now);
                }
            }
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
}

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
