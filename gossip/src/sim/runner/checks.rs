//! Convergence checks and the report: whether the live peers know each other, agree on
//! membership and hold the same (everything, or in scope under fisheye membership), checked
//! between windows; and, at the end, the shards' counters gathered into the [`Report`].

use crate::sim::opinions::OpinionWatch;
use std::collections::BTreeMap;

use vecino_proto::AuthorKey;

use crate::sim::Peer;
use crate::sim::report::Report;
use crate::sim::scenario::RateScope;

use super::Sim;
use super::queue::us;

impl Sim<'_> {
    /// Checks, while any is still open: whether every live peer knows every other and they
    /// agree on membership (from the start), whether they hold the same (after the start and
    /// after each heal), and whether they hold the same once publishing and faults are over.
    pub(super) fn check_convergence(&mut self) {
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

    /// The report: the metrics, with the shards' counters and the peers' final state.
    pub(super) fn finish(self) -> Report {
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
        report.opinions = self.opinions.as_ref().map(OpinionWatch::report);
        report.barrios = self.barrios.as_ref().map(crate::sim::barrios::BarrioWatch::report);
        report.shards = self.shards.len();
        report.lookahead_us = (self.shards.len() > 1).then_some(self.world.plan.lookahead_us);
        report
    }
}

/// Observers checked for fisheye membership convergence at most (see `check_fisheye`).
const FISHEYE_CHECK_OBSERVERS: usize = 500;
