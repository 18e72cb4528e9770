//! Plumtree-style dissemination (Leitão, Pereira, Rodrigues, "Epidemic Broadcast Trees",
//! SRDS 2007) over the neighbour links.
//!
//! Each link is *eager* or *lazy*. A new event is pushed whole on eager links and announced by
//! (author, stream, seq) on lazy ones, batched per tick. A peer that receives a pushed event it
//! already held answers PRUNE, and both ends turn that link lazy: the eager links thin out to a
//! spanning tree and each peer receives each event about once. A peer that hears an
//! announcement but not the event within an RTT-scaled timeout sends GRAFT to the announcer,
//! which sends the event and turns the link eager again: the tree repairs itself around failed
//! links, and re-forms across a healed partition. An event announced by its author and by a
//! relay is grafted from the relay (past `root_fanout` the author only announces, so its link
//! would not join the tree); grafts lost to a link that went down are sent again as soon as
//! it comes back or another neighbour announces the event.
//!
//! With `optimization_threshold` > 0, pushed events and announcements carry the sender's hop
//! count (links crossed from the author). When a lazy neighbour announced an event before it
//! arrived by eager push, with a hop count lower than the eager path's by the threshold, the
//! lazy link is grafted (a GRAFT naming no event) and the eager one pruned: the paper's §3.8
//! optimisation, which shortens the tree instead of only repairing it. (An announcement that
//! comes after the event does not swap: the eager path, longer in hops, was faster.)
//!
//! **One tree per author.** Eager and lazy are decided per link *and per tree*, and each
//! author's events follow the tree of its slot ([`tree_of`]: 4 096 slots from the author key).
//! A duplicate prunes the link for that author's tree only, so every author's tree becomes
//! the first-arrival (lowest-delay) tree from that author over the overlay, instead of one
//! tree shared by all authors that is deep and slow for most of them. An author's presence
//! and status events build its tree before its posts ride it. Prunes and grafts name the
//! slots they change; one naming none changes every slot (the single-tree meaning).
//!
//! **One post tree in a fisheye fleet.** An author's tree is shaped by the duplicates of its
//! own events. With full membership its presence and status reach everyone and shape it
//! before its posts ride it. A fisheye author's presence goes no further than its ball, so
//! beyond the ball its tree stays eager on every link and its posts flooded there (scale,
//! 1 000 peers: 6.1 copies per delivery). There, posts travel on one tree shared by every
//! author ([`SHARED_TREE`], slot 2 × [`TREE_SLOTS`]; [`travel_tree`]), which every post shapes
//! (1.1 copies), at the cost of deeper paths for most authors (median latency 0.17 -> 0.37 s).
//! Presence and status keep their authors' trees and membership slots.
//!
//! **Trees refreshed, links probed** (full membership only). A tree shaped once, by the
//! join's floods, keeps the shape of a congested join; every `tree_refresh_every`-th newspaper
//! of an author floods its tree again (pushed on every link, pruned back by duplicates). A
//! link made once a peer has its links (`probe_new_links_from`) starts lazy on every author's
//! tree but *probed*: each author's next presence or status event passed on is pushed on it
//! too, so the link joins that author's tree only if it came first. A link dropped on purpose
//! has its trees probed again on the remaining links ([`TreeEdges::probe_again`]).
//!
//! **Muted membership.** A fisheye peer refuses the presence and status of members out of its
//! scope (`crate::membership`). A pushed event it refuses answers a PRUNE of the author's
//! *membership slot* ([`membership_slot`]: `TREE_SLOTS` + the tree slot), which stops that
//! link from pushing or announcing the presence and status of the slot's authors, either way,
//! while their posts still follow the slot's tree. When such a member comes into scope (this
//! peer holds it again), a GRAFT naming the membership slot unmutes the links. Without it
//! a neighbour whose scope differs pushes every refused event again: at 1 000 peers (scale)
//! 85 % of the membership bytes pushed were refused on arrival.

use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_proto::limits::TREE_SLOTS;
use vecino_proto::pb::{self, Stream};
use vecino_proto::{AuthorKey, StreamKind, VerifiedEvent};

use crate::engine::{
    Engine, MAX_ANNOUNCERS, MAX_MISSING, Missing, PRUNE_GRACE, RECENT_HOPS, published_coordinate,
};
use crate::io::{LinkStatus, Priority};
use crate::membership::Offer;
use crate::store::{Named, StreamKey, event_key, named};

/// Heads announced per link per tick at most; the rest wait for the next tick.
const MAX_IHAVE_PER_LINK: usize = 4_096;
/// Longest wait before grafting a missing event again.
const MAX_GRAFT_WAIT: Duration = Duration::from_secs(30);

/// The author's tree slot: the tree its events are disseminated on (with `per_author_trees`
/// off the one shared tree, 0), and the slot whose membership slot mutes its presence.
/// It reads the key's first two bytes only, so an announced author prefix
/// ([`AuthorKey::prefix`]) names its author's tree.
pub(crate) fn tree_of(author: &AuthorKey, per_author_trees: bool) -> u16 {
    if !per_author_trees {
        return 0;
    }
    let b = author.as_bytes();
    (usize::from(u16::from_le_bytes([b[0], b[1]])) % TREE_SLOTS) as u16
}

/// The tree events of `stream` by `author` travel on: the author's slot, or for posts in a
/// fleet that shares one post tree ([`crate::Config::shares_post_tree`]) [`SHARED_TREE`].
pub(crate) fn travel_tree(author: &AuthorKey, stream: Stream, config: &crate::Config) -> u16 {
    if config.shares_post_tree() && stream.kind() == Some(StreamKind::Log) {
        SHARED_TREE
    } else {
        tree_of(author, config.per_author_trees)
    }
}

/// The tree a fisheye fleet's posts travel on (see the module docs): one slot past the
/// author trees and the membership slots.
pub(crate) const SHARED_TREE: u16 = (2 * TREE_SLOTS) as u16;

/// Slots a link keeps a bit for: the author trees, the membership slots (see the module
/// docs), then the shared post tree, rounded up to whole words.
const EDGE_SLOTS: usize = 2 * TREE_SLOTS + 64;

/// The slot that mutes (or unmutes) the presence and status of the authors of `tree`.
pub(crate) fn membership_slot(tree: u16) -> u16 {
    (TREE_SLOTS + usize::from(tree) % TREE_SLOTS) as u16
}

/// Which trees a link is eager on, and which membership slots are muted: a bit set over
/// the [`TREE_SLOTS`], as many membership slots and the shared post tree (~1 KiB per link).
#[derive(Debug, Clone)]
pub(crate) struct TreeEdges {
    /// Bit set: the link is lazy on these trees (muted on these membership slots).
    lazy: Box<[u64; EDGE_SLOTS / 64]>,
    /// A probed link's author trees that no event has probed yet (`Config::
    /// probe_new_links_from`); `None` once all have been, or for a link never probed.
    unprobed: Option<Box<[u64; TREE_SLOTS / 64]>>,
}

impl TreeEdges {
    /// A new link: eager on every tree, until duplicates prune it.
    pub(crate) fn all_eager() -> Self {
        Self { lazy: Box::new([0; EDGE_SLOTS / 64]), unprobed: None }
    }

    /// A new probed link (`Config::probe_new_links_from`): lazy on every author tree, each
    /// to be probed by the first presence or status event of its authors passed on. The
    /// membership slots stay unmuted (the probes are membership events).
    pub(crate) fn probed() -> Self {
        let mut lazy = Box::new([0; EDGE_SLOTS / 64]);
        lazy[..TREE_SLOTS / 64].fill(u64::MAX);
        Self { lazy, unprobed: Some(Box::new([u64::MAX; TREE_SLOTS / 64])) }
    }

    /// Whether `tree` is still to be probed on this link.
    pub(crate) fn probe_due(&self, tree: u16) -> bool {
        let t = usize::from(tree);
        self.unprobed.as_ref().is_some_and(|u| t < TREE_SLOTS && u[t / 64] & (1 << (t % 64)) != 0)
    }

    /// `tree` was probed: the link turns eager on it, and the duplicates decide.
    pub(crate) fn probed_on(&mut self, tree: u16) {
        let t = usize::from(tree);
        if let Some(u) = self.unprobed.as_mut().filter(|_| t < TREE_SLOTS) {
            u[t / 64] &= !(1 << (t % 64));
            if u.iter().all(|w| *w == 0) {
                self.unprobed = None;
            }
        }
        self.set(tree, true);
    }

    /// Marks the author trees `gone` (a dropped link's edges) to be probed again on this
    /// link, where it is lazy on them; whether any was.
    pub(crate) fn probe_again(&mut self, gone: &TreeEdges) -> bool {
        let mut any = false;
        for w in 0..TREE_SLOTS / 64 {
            let again = !gone.lazy[w] & self.lazy[w];
            if again != 0 {
                let u = self.unprobed.get_or_insert_with(|| Box::new([0; TREE_SLOTS / 64]));
                u[w] |= again;
                any = true;
            }
        }
        any
    }

    /// Whether some author tree is still to be probed on this link (`unprobed` is `None`
    /// once none is).
    pub(crate) fn probing(&self) -> bool {
        self.unprobed.is_some()
    }

    pub(crate) fn eager(&self, tree: u16) -> bool {
        let t = usize::from(tree) % EDGE_SLOTS;
        self.lazy[t / 64] & (1 << (t % 64)) == 0
    }

    /// Sets one tree; returns whether it changed.
    pub(crate) fn set(&mut self, tree: u16, eager: bool) -> bool {
        let t = usize::from(tree) % EDGE_SLOTS;
        let was = self.eager(tree);
        if eager {
            self.lazy[t / 64] &= !(1 << (t % 64));
        } else {
            self.lazy[t / 64] |= 1 << (t % 64);
        }
        was != eager
    }

    pub(crate) fn set_all(&mut self, eager: bool) {
        self.lazy.fill(if eager { 0 } else { u64::MAX });
    }

    /// Trees this link is eager on (membership slots not counted).
    pub(crate) fn eager_count(&self) -> u32 {
        let lazy: u32 = self.lazy[..TREE_SLOTS / 64].iter().map(|w| w.count_ones()).sum();
        TREE_SLOTS as u32 - lazy
    }

    /// Whether an event of `stream` on `tree` is pushed on this link.
    pub(crate) fn pushes(&self, tree: u16, stream: Stream) -> bool {
        self.eager(tree) && self.carries(tree, stream)
    }

    /// Whether an event of `stream` on `tree` is pushed or announced on this link at all:
    /// presence and status (latest-value streams) not while their membership slot is muted.
    pub(crate) fn carries(&self, tree: u16, stream: Stream) -> bool {
        stream.kind() != Some(StreamKind::LatestValue) || !self.muted(tree)
    }

    /// Whether the presence and status of `tree`'s authors are muted on this link.
    pub(crate) fn muted(&self, tree: u16) -> bool {
        !self.eager(membership_slot(tree))
    }

    /// Applies the tree slots of a prune or graft frame (none named: every tree); slots out
    /// of range are skipped and returned as the count of rejects.
    pub(crate) fn apply(&mut self, trees: &[u32], eager: bool) -> usize {
        if trees.is_empty() {
            self.set_all(eager);
            return 0;
        }
        let mut bad = 0;
        for &t in trees {
            match u16::try_from(t).ok().filter(|&t| t <= SHARED_TREE) {
                Some(t) => {
                    self.set(t, eager);
                }
                None => bad += 1,
            }
        }
        bad
    }
}

/// A fisheye peer pushes a member's presence or status it relays on at most this many of the
/// author's eager tree links, the nearest; the others are announced to. A member's first
/// events flood its ball on young trees: at 1 000 peers 60 % of the presence pushed arrived
/// twice (uncapped 27.3 kbit/s per peer of membership, 90.6 % of in-scope pairs known; capped
/// at 3: 26.1, 91.2 %; at 2: 24.2, 89.8 %; at 1: 20.8, 79.9 %, too many members missed, as
/// announcements of members not held are not grafted).
const MEMBER_FANOUT: usize = 2;

impl<R: Rng> Engine<R> {
    /// Passes a new event on: pushed to eager neighbours, announced to lazy ones, with this
    /// peer's hop count for it.
    pub(crate) fn forward(
        &mut self,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
        hops: Option<u32>,
        broadcast: bool,
    ) {
        let tree = self.travel_tree(&ev.author(), ev.stream());
        // Hop counts only serve the optimisation: not sent while it is off.
        let hops = hops.filter(|_| self.config.optimization_threshold > 0);
        // On a shared medium the event enters it once, by broadcast, and the trees carry it
        // on links off the medium only (`crate::medium`).
        if self.enters_medium(from, broadcast) {
            self.broadcast(ev, hops);
        }
        let presence = ev.kind() == StreamKind::LatestValue;
        // A member's coordinate, looked up once for every neighbour asked about (log events
        // go to every neighbour).
        let place = presence.then(|| published_coordinate(&self.store, ev.author())).flatten();
        let refresh = self.refreshes_tree(ev);
        let mut targets: Vec<(AuthorKey, bool)> = self
            .links
            .iter()
            .filter(|(p, l)| {
                Some(**p) != from
                    && l.status != LinkStatus::Disconnected
                    && !self.leaving_links.contains_key(*p)
                    && !l.on_medium
                    && l.trees.carries(tree, ev.stream())
            })
            .filter(|(p, _)| !presence || self.wants_within(**p, &ev.author(), place, Offer::Push))
            .map(|(p, l)| {
                let connected = l.status == LinkStatus::Connected;
                let probe = presence && l.trees.probe_due(tree);
                (*p, l.trees.eager(tree) || ((refresh || probe) && connected))
            })
            .collect();
        if refresh {
            self.stats.tree_refreshes += 1;
            for (p, eager) in &targets {
                if let Some(l) = self.links.get_mut(p).filter(|_| *eager) {
                    l.trees.set(tree, true);
                }
            }
        }
        if from.is_none() {
            self.cap_fanout(&mut targets, self.config.root_fanout);
        } else if presence && self.fisheye.active {
            self.cap_fanout(&mut targets, MEMBER_FANOUT);
        }
        self.cap_ihave_fanout(&mut targets, tree);
        let head = (ev.author(), ev.stream(), ev.seq());
        for (peer, eager) in targets {
            if eager
                && presence
                && let Some(l) = self.links.get_mut(&peer)
                && l.trees.probe_due(tree)
            {
                self.stats.tree_probes += 1;
                l.trees.probed_on(tree);
            }
            if eager {
                self.send_events(peer, std::slice::from_ref(ev), false, hops);
            } else if let Some(l) = self.links.get_mut(&peer)
                && l.ihave.len() < MAX_IHAVE_PER_LINK
            {
                l.ihave.push((head.0, head.1, head.2, hops));
            }
        }
    }

    /// Whether `ev` floods its author's tree (see `Config::tree_refresh_every`): a newspaper
    /// whose seq is 2, 2 + every, 2 + 2 × every …, passed on by a peer that holds at least
    /// `tree_refresh_min_members` members, in a full-membership fleet.
    fn refreshes_tree(&self, ev: &VerifiedEvent) -> bool {
        let every = self.config.tree_refresh_every;
        every > 0
            && self.fisheye.held >= self.config.tree_refresh_min_members
            && !self.fisheye.active
            && !self.config.shares_post_tree()
            && ev.stream() == Stream::Newspaper
            && ev.seq() >= 2
            && (ev.seq() - 2).is_multiple_of(every)
    }

    /// Whether new links may be probed (`Config::probe_new_links_from`): a full-membership
    /// fleet with one tree per author, whose members' presence and status reach every peer.
    pub(crate) fn probes_links(&self) -> bool {
        self.config.per_author_trees && !self.fisheye.active && !self.config.shares_post_tree()
    }

    /// An author's tree slot: its own, or the one shared tree (see [`tree_of`]).
    pub(crate) fn tree(&self, author: &AuthorKey) -> u16 {
        tree_of(author, self.config.per_author_trees)
    }

    /// The tree `author`'s events of `stream` travel on (see [`travel_tree`]).
    pub(crate) fn travel_tree(&self, author: &AuthorKey, stream: Stream) -> u16 {
        travel_tree(author, stream, &self.config)
    }

    /// The slots a prune or graft of `tree` names: with one shared tree, none (every tree,
    /// as any peer reads it).
    fn slots(&self, tree: u16) -> Vec<u32> {
        if self.config.per_author_trees { vec![u32::from(tree)] } else { Vec::new() }
    }

    /// Pushes on at most `cap` eager links, the nearest (lowest RTT); the others are only
    /// announced to. An author caps its own events at `root_fanout`: the others hear the
    /// event from those first (so their edges from the author are never pruned, and take
    /// over when a nearer link goes); without it the first-arrival tree from an author is a
    /// star of all its links, the fan-out tax on its own uplink or radio. A fisheye peer caps
    /// the presence it relays at [`MEMBER_FANOUT`].
    fn cap_fanout(&self, targets: &mut [(AuthorKey, bool)], cap: usize) {
        if cap == 0 || targets.iter().filter(|t| t.1).count() <= cap {
            return;
        }
        let mut eager: Vec<(Duration, AuthorKey)> = targets
            .iter()
            .filter(|t| t.1)
            .map(|(p, _)| (self.links.get(p).and_then(|l| l.rtt()).unwrap_or(Duration::MAX), *p))
            .collect();
        eager.sort_unstable();
        let keep: Vec<AuthorKey> = eager.iter().take(cap).map(|e| e.1).collect();
        for t in targets.iter_mut() {
            t.1 = t.1 && keep.contains(&t.0);
        }
    }

    /// Keeps `ihave_fanout` of the lazy targets, at random, and every target owed the
    /// announcement whatever the cap: a tree edge not pushed on (beyond `root_fanout`), whose
    /// end relies on the link for the tree, and a link pruned on the tree lately
    /// ([`crate::link::Link::pruned_lately`]). The others get nothing.
    fn cap_ihave_fanout(&mut self, targets: &mut Vec<(AuthorKey, bool)>, tree: u16) {
        let cap = self.config.ihave_fanout;
        let lazy = targets.iter().filter(|t| !t.1).count();
        if cap == 0 || lazy <= cap {
            return;
        }
        let now = self.now;
        let owed = |l: &crate::link::Link| l.trees.eager(tree) || l.pruned_lately(tree, now);
        let rank = |&(p, push): &(AuthorKey, bool)| match push {
            true => 0,
            false if self.links.get(&p).is_some_and(owed) => 1,
            false => 2,
        };
        // Pushed targets first, then the owed ones, then the other lazy ones, of which a
        // partial shuffle picks `cap`.
        let first = targets.iter().filter(|t| rank(t) < 2).count();
        targets.sort_by_cached_key(rank);
        let keep = (first + cap).min(targets.len());
        for i in first..keep {
            let j = self.rng.random_range(i..targets.len());
            targets.swap(i, j);
        }
        targets.truncate(keep);
    }

    /// Remembers this peer's hop count for an event (for the hop count of graft answers).
    pub(crate) fn remember_hops(&mut self, id: (StreamKey, u64), hops: u32) {
        if self.recent.insert(id, hops).is_none() {
            self.recent_order.push_back(id);
        }
        while self.recent_order.len() > RECENT_HOPS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Plumtree's optimisation: `lazy` announced with hop count `announced` an event that
    /// `eager` pushed at this peer's hop count `hops`. If the lazy path is shorter by the
    /// threshold, graft `lazy` (naming no event) and prune `eager`.
    pub(crate) fn maybe_optimize(
        &mut self,
        tree: u16,
        lazy: AuthorKey,
        announced: u32,
        eager: AuthorKey,
        hops: u32,
    ) {
        let threshold = self.config.optimization_threshold;
        if threshold == 0 || lazy == eager || hops < announced.saturating_add(1 + threshold) {
            return;
        }
        self.swap_edges(tree, lazy, eager);
    }

    /// `lazy` announced an event (in its batched announcements) `lead` before `eager` pushed
    /// it: the lazy path is faster. With `Config::swap_lead` set and the lead at least that,
    /// graft `lazy` on the event's tree and prune `eager` from it (Plumtree's optimisation,
    /// by time rather than hop counts: on a proximity overlay fewer hops is not less delay).
    pub(crate) fn maybe_swap_faster(
        &mut self,
        tree: u16,
        lazy: AuthorKey,
        lead: Duration,
        eager: AuthorKey,
    ) {
        let Some(min_lead) = self.config.swap_lead else { return };
        if lead < min_lead || lazy == eager {
            return;
        }
        self.swap_edges(tree, lazy, eager);
    }

    /// Replaces `eager` by `lazy` as this peer's edge of `tree` (both connected, `lazy` not
    /// being dropped): a GRAFT naming no event to `lazy`, a PRUNE to `eager`.
    fn swap_edges(&mut self, tree: u16, lazy: AuthorKey, eager: AuthorKey) {
        let usable = |l: &crate::link::Link| l.status == LinkStatus::Connected;
        if !self.links.get(&eager).is_some_and(|l| l.trees.eager(tree) && usable(l))
            || !self.links.get(&lazy).is_some_and(|l| !l.trees.eager(tree) && usable(l))
            || self.leaving_links.contains_key(&lazy)
        {
            return;
        }
        if let Some(l) = self.links.get_mut(&lazy) {
            l.trees.set(tree, true);
        }
        self.stats.tree_swaps += 1;
        let trees = self.slots(tree);
        self.send(
            lazy,
            pb::frame::Kind::Graft(pb::Graft { trees, ..Default::default() }),
            Priority::Control,
            false,
        );
        self.prune(eager, tree);
    }

    /// Turns the link to `peer` eager on the trees that events of `streams` (author prefix,
    /// stream) travel on (a graft sent or received), and unmutes their authors' membership
    /// slots. A key's trees depend on its first bytes only (see [`tree_of`]), so any key of
    /// a prefix stands for its author.
    fn make_eager_for(&mut self, peer: AuthorKey, streams: impl Iterator<Item = (u64, Stream)>) {
        let trees: Vec<(u16, u16)> = streams
            .map(|(prefix, s)| {
                let a = AuthorKey::prefix_bounds(prefix).0;
                (self.travel_tree(&a, s), self.tree(&a))
            })
            .collect();
        if let Some(l) = self.links.get_mut(&peer) {
            for (travel, slot) in trees {
                l.trees.set(travel, true);
                l.trees.set(membership_slot(slot), true);
            }
        }
    }

    /// `peer` pushed a presence or status event of `author`, which this peer refused (out of
    /// its fisheye): mute that author's membership slot on the link, both ways — unless this
    /// peer holds another member of the slot, whose events it still wants.
    pub(crate) fn mute_membership(&mut self, peer: AuthorKey, author: &AuthorKey) {
        if !self.config.per_author_trees {
            return; // one shared tree: its one membership slot would mute every member
        }
        let tree = self.tree(author);
        if self.fisheye.held_in_slot(tree) > 0 {
            return;
        }
        let Some(l) = self.links.get_mut(&peer) else { return };
        if l.status != LinkStatus::Connected || !l.trees.set(membership_slot(tree), false) {
            return;
        }
        self.stats.mutes += 1;
        let trees = vec![u32::from(membership_slot(tree))];
        self.send(peer, pb::frame::Kind::Prune(pb::Prune { trees }), Priority::Control, false);
    }

    /// This peer now holds `author`: unmute its membership slot on every link it is muted on.
    pub(crate) fn unmute_membership(&mut self, author: &AuthorKey) {
        if !self.config.per_author_trees {
            return;
        }
        let tree = self.tree(author);
        let slot = membership_slot(tree);
        let mut unmuted = Vec::new();
        for (peer, l) in &mut self.links {
            if l.status != LinkStatus::Disconnected && l.trees.set(slot, true) {
                unmuted.push(*peer);
            }
        }
        for peer in unmuted {
            self.stats.unmutes += 1;
            let graft = pb::Graft { trees: vec![u32::from(slot)], ..Default::default() };
            self.send(peer, pb::frame::Kind::Graft(graft), Priority::Control, false);
        }
    }

    /// A pushed duplicate of an event on `tree` arrived from `peer`: stop eager pushes of that
    /// tree on that link, both ways. The prune is sent even when this end was lazy already:
    /// the duplicate says the neighbour's end is eager (a link that one end made lazy at its
    /// start, or a graft this end never sent), and unanswered it would push every event of
    /// the tree again.
    pub(crate) fn prune(&mut self, peer: AuthorKey, tree: u16) {
        let trees = self.slots(tree);
        let Some(l) = self.links.get_mut(&peer) else { return };
        l.trees.set(tree, false);
        if self.config.ihave_fanout > 0 {
            l.note_pruned(&trees, self.now);
        }
        self.stats.prunes += 1;
        self.send(peer, pb::frame::Kind::Prune(pb::Prune { trees }), Priority::Control, false);
    }

    pub(crate) fn on_prune(&mut self, from: AuthorKey, prune: &pb::Prune) {
        let config = &self.config;
        let Some(l) = self.links.get_mut(&from) else { return };
        let bad = l.trees.apply(&prune.trees, false);
        if config.ihave_fanout > 0 {
            l.note_pruned(&prune.trees, self.now);
        }
        // Pushes of those trees still waiting for this link turn into announcements.
        let unpushed = l.unpush_lazy(|a, s| travel_tree(a, s, config));
        for ((author, stream), seq) in unpushed {
            if !l.trees.carries(tree_of(&author, config.per_author_trees), stream) {
                continue; // muted: not announced either
            }
            if l.ihave.len() < MAX_IHAVE_PER_LINK {
                l.ihave.push((author, stream, seq, None));
            }
        }
        for _ in 0..bad {
            self.reject("bad_tree");
        }
    }

    pub(crate) fn on_ihave(&mut self, from: AuthorKey, ihave: &pb::IHave) {
        for h in &ihave.heads {
            match head_key(&h.author, h.stream) {
                Some(key) => self.on_announced(from, key, h.seq, h.hops),
                None => self.reject("bad_head"),
            }
        }
        for h in &ihave.prefixed {
            let (prefix, Some(stream)) = (h.author_prefix, valid_stream(h.stream)) else {
                self.reject("bad_head");
                continue;
            };
            match self.resolve_prefix(prefix) {
                Some(author) => self.on_announced(from, (author, stream), h.seq, h.hops),
                // An author this peer knows nothing of (or a prefix two share): only a
                // fisheye peer's members can be unwanted, and it links to or holds those.
                None if self.fisheye.active && stream.kind() == Some(StreamKind::LatestValue) => {}
                None => self.note_named((prefix, stream, h.seq), None, from, h.hops),
            }
        }
    }

    /// `from` announced event `seq` of `key`.
    fn on_announced(&mut self, from: AuthorKey, key: StreamKey, seq: u64, hops: Option<u32>) {
        if let Some(l) = self.links.get_mut(&from) {
            l.peer_has((key, seq));
        }
        self.note_missing(key, seq, from, hops);
    }

    /// The one author `prefix` names among those this peer holds events of and its
    /// neighbours; `None` if it names none of them, or more than one.
    pub(crate) fn resolve_prefix(&self, prefix: u64) -> Option<AuthorKey> {
        let (lo, hi) = AuthorKey::prefix_bounds(prefix);
        let mut named =
            self.store.authors_prefixed(prefix).chain(self.links.range(lo..=hi).map(|(a, _)| *a));
        let first = named.next()?;
        named.all(|a| a == first).then_some(first)
    }

    /// How long to wait for an event announced by `from` before grafting it from there.
    fn graft_wait(&self, from: AuthorKey) -> std::time::Duration {
        let min = self.config.graft_min;
        // The acknowledgement time includes the neighbour's deliberate ack delay: not path.
        let ack_delay = self.config.ack_delay;
        let rtt = self
            .links
            .get(&from)
            .and_then(|l| l.rtt().max(l.srtt().map(|s| s.saturating_sub(ack_delay))));
        rtt.map_or(min, |r| min.max(r.mul_f64(self.config.graft_rtt_factor)))
    }

    /// Records that `from` holds (key, seq), at hop count `hops` if known, which this peer
    /// lacks: unless the event arrives first, it is grafted from `from` (or another announcer)
    /// once the wait is over.
    pub(crate) fn note_missing(
        &mut self,
        key: StreamKey,
        seq: u64,
        from: AuthorKey,
        hops: Option<u32>,
    ) {
        if self.store.covers(&key, seq) || !self.may_want(&key, seq) {
            return;
        }
        self.note_named(named(&key, seq), Some(key.0), from, hops);
    }

    /// Records that `from` holds event `name` (its author if known), which this peer lacks
    /// (see [`Engine::note_missing`]).
    fn note_named(
        &mut self,
        name: Named,
        author: Option<AuthorKey>,
        from: AuthorKey,
        hops: Option<u32>,
    ) {
        let deadline = self.now + self.graft_wait(from);
        let progress = author.map_or(0, |a| self.store.head(&(a, name.1)));
        let full = self.missing.len() >= MAX_MISSING;
        match self.missing.get_mut(&name) {
            Some(m) => {
                m.author = m.author.or(author);
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                    let up = |p: &AuthorKey| {
                        self.links.get(p).is_some_and(|l| l.status == LinkStatus::Connected)
                    };
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
            }
            None if !full => {
                let best = hops.map(|a| (from, a));
                let m = Missing {
                    author,
                    announcers: vec![from],
                    deadline,
                    progress,
                    since: self.now,
                    best,
                    grafted: 0,
                };
                self.missing.insert(name, m);
            }
            None => self.reject("missing_table_full"),
        }
    }

    pub(crate) fn on_graft(&mut self, from: AuthorKey, graft: &pb::Graft) {
        let mut bad = 0;
        let names_none = graft.heads.is_empty() && graft.prefixed.is_empty();
        if (names_none || !graft.trees.is_empty())
            && let Some(l) = self.links.get_mut(&from)
        {
            bad = l.trees.apply(&graft.trees, true);
        }
        for _ in 0..bad {
            self.reject("bad_tree");
        }
        // What it names: by key, or every author this peer holds that a prefix names (one,
        // but for a collision); the trees they travel on, from any key of the prefix.
        let mut wanted: Vec<(StreamKey, u64)> = Vec::new();
        let mut trees: Vec<(u64, Stream)> = Vec::new();
        for h in &graft.heads {
            match head_key(&h.author, h.stream) {
                Some(key) => {
                    wanted.push((key, h.seq));
                    trees.push((key.0.prefix(), key.1));
                }
                None => self.reject("bad_head"),
            }
        }
        for h in &graft.prefixed {
            let (prefix, Some(stream)) = (h.author_prefix, valid_stream(h.stream)) else {
                self.reject("bad_head");
                continue;
            };
            trees.push((prefix, stream));
            let authors = self.store.authors_prefixed(prefix).take(MAX_ANNOUNCERS);
            wanted.extend(authors.map(|a| ((a, stream), h.seq)));
        }
        self.make_eager_for(from, trees.into_iter());
        let events: Vec<VerifiedEvent> = wanted
            .into_iter()
            .filter_map(|(key, seq)| match key.1.kind()? {
                // Superseded since it was announced: the newer one answers the graft.
                StreamKind::LatestValue => {
                    self.store.latest(&key).filter(|e| e.seq() >= seq).cloned()
                }
                StreamKind::Log => self.store.get(&key, seq).cloned(),
            })
            .collect();
        if !events.is_empty() {
            // This peer's hop count for what it answers (the largest, if they differ).
            let hops = events
                .iter()
                .map(|e| self.recent.get(&event_key(e)).copied())
                .try_fold(0, |acc, h| h.map(|h| acc.max(h)))
                .filter(|_| self.config.optimization_threshold > 0);
            self.send_events(from, &events, true, hops);
        }
    }

    /// `peer`'s link came back: the events it announced that are still missing are grafted
    /// from it next, without waiting out the backoff of grafts lost while it was down.
    pub(crate) fn regraft_from(&mut self, peer: AuthorKey) {
        let deadline = self.now + self.graft_wait(peer);
        for m in self.missing.values_mut().filter(|m| m.announcers.contains(&peer)) {
            m.graft_next_from(peer, deadline);
        }
    }

    /// Grafts every announced event still missing past its deadline, from its next announcer.
    pub(crate) fn graft_overdue(&mut self) {
        let now = self.now;
        let min = self.config.graft_min;
        let due: Vec<Named> =
            self.missing.iter().filter(|(_, m)| m.deadline <= now).map(|(k, _)| *k).collect();
        let flowing = self.last_new_event.is_some_and(|t| now.saturating_since(t) < min);
        let mut per_peer: std::collections::BTreeMap<AuthorKey, Vec<Named>> = Default::default();
        for name in due {
            let (prefix, stream, seq) = name;
            let Some(m) = self.missing.get(&name) else { continue };
            // An author unknown when announced may be known by now (its event arrived, say).
            let author = m.author.or_else(|| self.resolve_prefix(prefix));
            let key = author.map(|a| (a, stream));
            if key.is_some_and(|k| self.store.covers(&k, seq)) {
                self.missing.remove(&name);
                continue;
            }
            // Graft from the first announcer still linked; try the next one on the next round.
            let head = key.map_or(0, |k| self.store.head(&k));
            let Some(m) = self.missing.get_mut(&name) else { continue };
            m.author = author;
            if head > m.progress {
                // The stream is flowing (a backlog draining through an eager link after a
                // heal, say): wait another round instead of pulling a duplicate.
                m.progress = head;
                m.deadline = now + min;
                continue;
            }
            if flowing && now.saturating_since(m.since) < PRUNE_GRACE {
                // New events are still arriving (a backlog draining after a heal, paced
                // behind others): the announced one is probably among them. Pulling it now
                // would add a copy to the very queues that delay it.
                m.deadline = now + min;
                continue;
            }
            m.announcers.retain(|p| self.links.contains_key(p));
            if m.announcers.is_empty() {
                self.missing.remove(&name);
                continue;
            }
            // An author pushes its own events on `root_fanout` links and only announces them
            // on the others: grafted from it, an event comes, but the link stays off the
            // tree and the next event is grafted again. Grafted from a relay, the link joins
            // the author's tree there. (rcm: a site pruned by the two others grafted every
            // post of the third from its author, half a second late, and the sites' stores
            // were never equal again after the 24th heal.)
            let by_author = |p: &AuthorKey| p.prefix() == prefix && author.is_none_or(|a| a == *p);
            if self.config.root_fanout > 0
                && let Some(&relay) = m.announcers.iter().find(|p| !by_author(p))
            {
                m.graft_next_from(relay, now);
            }
            let peer = m.announcers[0];
            m.announcers.rotate_left(1);
            let rtt = self
                .links
                .get(&peer)
                .and_then(|l| {
                    l.rtt().max(l.srtt().map(|s| s.saturating_sub(self.config.ack_delay)))
                })
                .unwrap_or(min);
            // Backed off as a retransmission is: the answer to the last graft may be waiting
            // behind a backlog, and another graft would queue another copy behind it.
            let wait = min.max(rtt.mul_f64(self.config.graft_rtt_factor * 2.0));
            m.deadline = now + crate::time::backoff(wait, m.grafted, MAX_GRAFT_WAIT);
            m.grafted += 1;
            per_peer.entry(peer).or_default().push(name);
        }
        for (peer, names) in per_peer {
            self.make_eager_for(peer, names.iter().map(|&(prefix, stream, _)| (prefix, stream)));
            self.stats.grafts += 1;
            // Named by prefix even when this peer knows the author: the announcer resolves
            // it among what it holds, which includes the event it announced.
            let prefixed = names
                .into_iter()
                .map(|(author_prefix, stream, seq)| pb::PrefixHead {
                    author_prefix,
                    stream: stream as i32,
                    seq,
                    hops: None,
                })
                .collect();
            let graft = pb::Graft { prefixed, ..Default::default() };
            self.send(peer, pb::frame::Kind::Graft(graft), Priority::Control, false);
        }
    }
}

/// Reads a stream from a wire field; `None` unless it is a known stream of a known kind.
fn valid_stream(stream: i32) -> Option<Stream> {
    Stream::try_from(stream).ok().filter(|s| s.kind().is_some())
}

/// Reads an (author, stream) from wire fields; `None` if either is invalid.
pub(crate) fn head_key(author: &[u8], stream: i32) -> Option<(AuthorKey, Stream)> {
    Some((AuthorKey::from_slice(author)?, valid_stream(stream)?))
}
