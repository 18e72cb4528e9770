//! Events announced by lazy neighbours that this peer does not hold yet, and when to graft
//! them (see `crate::broadcast`).
//!
//! An announced event is grafted from its announcer once an RTT-scaled wait passes without
//! it ([`graft_wait`]); each graft doubles the wait for the next ([`MAX_GRAFT_WAIT`] at most),
//! as a retransmission is backed off. A graft waits while the author's stream is flowing (its
//! head moves) or new events still arrive shortly after a heal, since a backlog draining
//! through an eager link probably holds it. Up to [`MAX_ANNOUNCERS`] announcers are kept per
//! event, and the next graft goes to the next of them.
//!
//! The table keeps its entries ordered by deadline beside the map by name, so that the tick
//! looks only at what is due: with the table near its bound (65 536 names) a scan of every
//! entry on every 100 ms tick was the engine's work when nothing was due.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use vecino_proto::AuthorKey;

use crate::broadcast::tree::PRUNE_GRACE;
use crate::engine::core::Core;
use crate::store::Named;
use crate::time::Time;

/// Announced-but-missing events tracked for grafting at most.
pub(crate) const MAX_MISSING: usize = 65_536;
/// Neighbours remembered as announcers of one missing event.
pub(crate) const MAX_ANNOUNCERS: usize = 4;
/// Longest wait before grafting a missing event again.
const MAX_GRAFT_WAIT: Duration = Duration::from_secs(30);

/// An event announced by lazy neighbours that this peer does not hold yet.
#[derive(Debug)]
pub(crate) struct Missing {
    /// Its author, once known (an announcement names it by key prefix only).
    author: Option<AuthorKey>,
    announcers: Vec<AuthorKey>,
    deadline: Time,
    /// The stream's head when last looked at: if it moves, the stream is flowing and the
    /// graft waits.
    progress: u64,
    /// When it was first announced.
    since: Time,
    /// The announcer with the lowest hop count, and that count.
    best: Option<(AuthorKey, u32)>,
    /// Grafts sent for it so far (each doubles the wait for the next).
    grafted: u32,
}

impl Missing {
    /// Makes `announcer` the next one grafted from (added if new, the others keeping their
    /// order), by `deadline` at the latest.
    fn graft_next_from(&mut self, announcer: AuthorKey, deadline: Time) {
        self.announcers.retain(|a| *a != announcer);
        self.announcers.insert(0, announcer);
        self.deadline = self.deadline.min(deadline);
    }

    /// The first announcer (the one the next graft goes to).
    pub(crate) fn first_announcer(&self) -> Option<AuthorKey> {
        self.announcers.first().copied()
    }

    /// The announcer with the lowest hop count, and that count.
    pub(crate) fn best(&self) -> Option<(AuthorKey, u32)> {
        self.best
    }

    /// When it was first announced.
    pub(crate) fn since(&self) -> Time {
        self.since
    }
}

/// How long to wait for an event announced by `from` before grafting it from there:
/// `graft_rtt_factor` × the link's RTT (ping or acknowledgement time, whichever is larger),
/// at least `graft_min`.
pub(crate) fn graft_wait<R>(core: &Core<R>, from: AuthorKey) -> Duration {
    let min = core.config.graft_min;
    // The acknowledgement time includes the neighbour's deliberate ack delay: not path.
    let rtt = link_rtt(core, &from);
    rtt.map_or(min, |r| min.max(r.mul_f64(core.config.graft_rtt_factor)))
}

/// A link's path RTT: the larger of its ping RTT and its acknowledgement time less the
/// neighbour's deliberate ack delay.
fn link_rtt<R>(core: &Core<R>, peer: &AuthorKey) -> Option<Duration> {
    let ack_delay = core.config.ack_delay;
    core.links.get(peer).and_then(|l| l.rtt().max(l.srtt().map(|s| s.saturating_sub(ack_delay))))
}

/// The one author `prefix` names among those this peer holds events of and its neighbours;
/// `None` if it names none of them, or more than one.
pub(crate) fn resolve_prefix<R>(core: &Core<R>, prefix: u64) -> Option<AuthorKey> {
    let (lo, hi) = AuthorKey::prefix_bounds(prefix);
    let mut named = core.store.authors_prefixed(prefix).chain(core.links.in_range(lo, hi));
    let first = named.next()?;
    named.all(|a| a == first).then_some(first)
}

/// The missing events, by name (at most [`MAX_MISSING`]), and by deadline.
#[derive(Debug, Default)]
pub(crate) struct MissingTable {
    map: BTreeMap<Named, Missing>,
    /// (deadline, name) of every entry of `map`: the same names, so the same bound.
    by_deadline: BTreeSet<(Time, Named)>,
}

impl MissingTable {
    /// Forgets `name` (it arrived, or was refused); what was known of it.
    pub(crate) fn remove(&mut self, name: &Named) -> Option<Missing> {
        let m = self.map.remove(name)?;
        self.by_deadline.remove(&(m.deadline, *name));
        Some(m)
    }

    /// Moves `name` from deadline `was` to `now_due` in the index.
    fn reindex(&mut self, name: Named, was: Time, now_due: Time) {
        if was != now_due {
            self.by_deadline.remove(&(was, name));
            self.by_deadline.insert((now_due, name));
        }
    }

    /// Events tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The deadline index holds exactly the entries of the map, each at its deadline.
    #[cfg(test)]
    pub(crate) fn index_matches(&self) -> bool {
        let scanned: BTreeSet<(Time, Named)> =
            self.map.iter().map(|(k, m)| (m.deadline, *k)).collect();
        scanned == self.by_deadline
    }

    /// Records that `from` holds event `name` (its author if known), at hop count `hops` if
    /// known, which this peer lacks; unless it arrives first, it is grafted from `from` (or
    /// another announcer) by the deadline. False if the table is full.
    pub(crate) fn note<R>(
        &mut self,
        core: &Core<R>,
        name: Named,
        author: Option<AuthorKey>,
        from: AuthorKey,
        hops: Option<u32>,
    ) -> bool {
        let deadline = core.now + graft_wait(core, from);
        let progress = author.map_or(0, |a| core.store.head(&(a, name.1)));
        let full = self.map.len() >= MAX_MISSING;
        match self.map.get_mut(&name) {
            Some(m) => {
                let was = m.deadline;
                m.author = m.author.or(author);
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                    let up = |p: &AuthorKey| core.links.get(p).is_some_and(|l| l.connected());
                    if m.grafted == 0 && m.announcers.first().is_some_and(up) {
                        m.announcers.push(from);
                    } else {
                        // Grafted already, or announced by a link that is down: the grafts
                        // may be lost, or wait for the link, so the new announcer is grafted
                        // from next, as soon as a first one would be, not after the backoff
                        // (up to `MAX_GRAFT_WAIT`).
                        m.graft_next_from(from, deadline);
                    }
                }
                if let Some(a) = hops
                    && m.best.is_none_or(|(_, b)| a < b)
                {
                    m.best = Some((from, a));
                }
                let now_due = m.deadline;
                self.reindex(name, was, now_due);
                true
            }
            None if !full => {
                let best = hops.map(|a| (from, a));
                let m = Missing {
                    author,
                    announcers: vec![from],
                    deadline,
                    progress,
                    since: core.now,
                    best,
                    grafted: 0,
                };
                self.map.insert(name, m);
                self.by_deadline.insert((deadline, name));
                true
            }
            None => false,
        }
    }

    /// `peer`'s link came back: the events it announced that are still missing are grafted
    /// from it next, without waiting out the backoff of grafts lost while it was down.
    pub(crate) fn regraft_from<R>(&mut self, core: &Core<R>, peer: AuthorKey) {
        let deadline = core.now + graft_wait(core, peer);
        for (name, m) in self.map.iter_mut().filter(|(_, m)| m.announcers.contains(&peer)) {
            let was = m.deadline;
            m.graft_next_from(peer, deadline);
            if m.deadline != was {
                self.by_deadline.remove(&(was, *name));
                self.by_deadline.insert((m.deadline, *name));
            }
        }
    }

    /// The events past their deadline that are to be grafted now, by the announcer each is
    /// grafted from; `last_new_event` is when a new event last arrived from a neighbour.
    /// Events that arrived or whose announcers are all gone are forgotten; events whose
    /// stream is flowing wait another round.
    pub(crate) fn overdue<R>(
        &mut self,
        core: &Core<R>,
        last_new_event: Option<Time>,
    ) -> BTreeMap<AuthorKey, Vec<Named>> {
        let now = core.now;
        let min = core.config.graft_min;
        // The due ones, in name order (as a scan of the map met them: grafts list them so).
        let mut due: Vec<Named> =
            self.by_deadline.iter().take_while(|(t, _)| *t <= now).map(|(_, k)| *k).collect();
        due.sort_unstable();
        let flowing = last_new_event.is_some_and(|t| now.saturating_since(t) < min);
        let mut per_peer: BTreeMap<AuthorKey, Vec<Named>> = BTreeMap::new();
        for name in due {
            let (prefix, stream, seq) = name;
            let Some(m) = self.map.get(&name) else { continue };
            // An author unknown when announced may be known by now (its event arrived, say).
            let author = m.author.or_else(|| resolve_prefix(core, prefix));
            let key = author.map(|a| (a, stream));
            if key.is_some_and(|k| core.store.covers(&k, seq)) {
                self.remove(&name);
                continue;
            }
            // Graft from the first announcer still linked; try the next one on the next round.
            let head = key.map_or(0, |k| core.store.head(&k));
            let Some(m) = self.map.get_mut(&name) else { continue };
            let was = m.deadline;
            m.author = author;
            if head > m.progress {
                // The stream is flowing (a backlog draining through an eager link after a
                // heal, say): wait another round instead of pulling a duplicate.
                m.progress = head;
                m.deadline = now + min;
                self.reindex(name, was, now + min);
                continue;
            }
            if flowing && now.saturating_since(m.since) < PRUNE_GRACE {
                // New events are still arriving (a backlog draining after a heal, paced
                // behind others): the announced one is probably among them. Pulling it now
                // would add a copy to the very queues that delay it.
                m.deadline = now + min;
                self.reindex(name, was, now + min);
                continue;
            }
            m.announcers.retain(|p| core.links.contains(p));
            if m.announcers.is_empty() {
                self.map.remove(&name);
                self.by_deadline.remove(&(was, name));
                continue;
            }
            // An author pushes its own events on `root_fanout` links and only announces them
            // on the others: grafted from it, an event comes, but the link stays off the
            // tree and the next event is grafted again. Grafted from a relay, the link joins
            // the author's tree there. (rcm: a site pruned by the two others grafted every
            // post of the third from its author, half a second late, and the sites' stores
            // were never equal again after the 24th heal.)
            let by_author = |p: &AuthorKey| p.prefix() == prefix && author.is_none_or(|a| a == *p);
            if core.config.root_fanout > 0
                && let Some(&relay) = m.announcers.iter().find(|p| !by_author(p))
            {
                m.graft_next_from(relay, now);
            }
            let peer = m.announcers[0];
            m.announcers.rotate_left(1);
            let rtt = link_rtt(core, &peer).unwrap_or(min);
            // Backed off as a retransmission is: the answer to the last graft may be waiting
            // behind a backlog, and another graft would queue another copy behind it.
            let wait = min.max(rtt.mul_f64(core.config.graft_rtt_factor * 2.0));
            m.deadline = now + crate::time::backoff(wait, m.grafted, MAX_GRAFT_WAIT);
            m.grafted += 1;
            let now_due = m.deadline;
            self.reindex(name, was, now_due);
            per_peer.entry(peer).or_default().push(name);
        }
        per_peer
    }
}
