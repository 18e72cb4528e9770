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
//! author's events follow the tree of its slot ([`tree::tree_of`]: 4 096 slots from the author key).
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
//! author ([`tree::SHARED_TREE`], slot 2 × `TREE_SLOTS`; [`tree::travel_tree`]), which every post shapes
//! (1.1 copies), at the cost of deeper paths for most authors (median latency 0.17 -> 0.37 s).
//! Presence and status keep their authors' trees and membership slots.
//!
//! **Trees refreshed, links probed** (full membership only). A tree shaped once, by the
//! join's floods, keeps the shape of a congested join; every `tree_refresh_every`-th newspaper
//! of an author floods its tree again (pushed on every link, pruned back by duplicates). A
//! link made once a peer has its links (`probe_new_links_from`) starts lazy on every author's
//! tree but *probed*: each author's next presence or status event passed on is pushed on it
//! too, so the link joins that author's tree only if it came first. A link dropped on purpose
//! has its trees probed again on the remaining links ([`tree::TreeEdges::probe_again`]).
//!
//! **Muted membership.** A fisheye peer refuses the presence and status of members out of its
//! scope (`crate::membership::fisheye`). A pushed event it refuses answers a PRUNE of the author's
//! *membership slot* ([`tree::membership_slot`]: `TREE_SLOTS` + the tree slot), which stops that
//! link from pushing or announcing the presence and status of the slot's authors, either way,
//! while their posts still follow the slot's tree. When such a member comes into scope (this
//! peer holds it again), a GRAFT naming the membership slot unmutes the links. Without it
//! a neighbour whose scope differs pushes every refused event again: at 1 000 peers (scale)
//! 85 % of the membership bytes pushed were refused on arrival.

pub(crate) mod missing;
pub(crate) mod tree;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_proto::pb::{self, Stream, frame::Kind};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::engine::core::Core;
use crate::io::{LinkStatus, Priority};
use crate::links::link::Link;
use crate::medium::Medium;
use crate::membership::fisheye::{Fisheye, Offer, placed};
use crate::store::{EventKey, Named, StreamKey, event_key, named};
use crate::streams::{self, Keep};
use crate::time::Time;

use self::missing::{MAX_ANNOUNCERS, Missing, MissingTable, resolve_prefix};
use self::tree::{
    Announce, PRUNE_GRACE, TreeEdges, membership_slot, probes_links, travel_tree, tree_of,
};

/// Events whose hop count is remembered (graft answers carry it), the oldest forgotten first.
const RECENT_HOPS: usize = 16_384;

/// A fisheye peer pushes a member's presence or status it relays on at most this many of the
/// author's eager tree links, the nearest; the others are announced to. A member's first
/// events flood its ball on young trees: at 1 000 peers 60 % of the presence pushed arrived
/// twice (uncapped 27.3 kbit/s per peer of membership, 90.6 % of in-scope pairs known; capped
/// at 3: 26.1, 91.2 %; at 2: 24.2, 89.8 %; at 1: 20.8, 79.9 %, too many members missed, as
/// announcements of members not held are not grafted).
const MEMBER_FANOUT: usize = 2;

/// The Plumtree machine: what is missing and when to graft it, and this peer's hop counts.
/// The tree edges themselves live on the links ([`tree::LinkTree`]).
#[derive(Debug, Default)]
pub(crate) struct Plumtree {
    /// Announced events this peer lacks.
    missing: MissingTable,
    /// This peer's hop count for recently received events (at most [`RECENT_HOPS`]).
    recent: BTreeMap<EventKey, u32>,
    recent_order: VecDeque<EventKey>,
    /// When a new event last arrived from a neighbour (grafts wait while events flow).
    last_new_event: Option<Time>,
}

/// The tree `author`'s events of `stream` travel on (see [`tree::travel_tree`]).
fn travel<R>(core: &Core<R>, author: &AuthorKey, stream: Stream) -> u16 {
    travel_tree(author, stream, &core.config)
}

/// The slots a prune or graft of `tree` names: with one shared tree, none (every tree, as any
/// peer reads it).
fn slots<R>(core: &Core<R>, tree: u16) -> Vec<u32> {
    if core.config.per_author_trees { vec![u32::from(tree)] } else { Vec::new() }
}

impl Plumtree {
    /// The edges a new link starts with: eager on every tree (Plumtree), or lazy on every
    /// tree once the peer has `Config::lazy_new_links_from` connected links, or probed once
    /// it has `Config::probe_new_links_from` (see there).
    pub(crate) fn new_link_edges<R>(core: &Core<R>, fisheye_active: bool) -> TreeEdges {
        let connected = core.links.connected();
        let mut edges = TreeEdges::all_eager();
        if connected >= core.config.lazy_new_links_from {
            edges.set_all(false);
        } else if probes_links(&core.config, fisheye_active)
            && connected >= core.config.probe_new_links_from
        {
            edges = TreeEdges::probed();
        }
        edges
    }

    /// A link dropped on purpose (`gone`): with probing on (`Config::probe_new_links_from`),
    /// the author trees it was an edge of are probed again on every other connected link,
    /// so the next presence or status event of their authors re-forms them around the gap
    /// by first arrival, instead of leaving them to whichever announcement a graft follows
    /// first.
    pub(crate) fn reprobe<R>(core: &mut Core<R>, fisheye_active: bool, gone: &Link) {
        if core.config.probe_new_links_from == usize::MAX
            || !probes_links(&core.config, fisheye_active)
        {
            return;
        }
        let mut reprobed = false;
        let links = &mut core.links;
        let leaving: Vec<AuthorKey> =
            links.iter().filter(|(p, _)| links.leaving(p)).map(|(p, _)| *p).collect();
        for (p, l) in links.iter_mut() {
            if l.connected() && !leaving.contains(p) {
                reprobed |= l.tree.edges.probe_again(&gone.tree.edges);
            }
        }
        if reprobed {
            core.stats.trees_reprobed += 1;
        }
    }

    /// A new event was stored (`from`: the neighbour it came from, `None` for this peer's
    /// own; `pushed`: by an eager push; `hops`: this peer's hop count for it): the graft
    /// waiting for it is dropped and, if it came by push after an announcement on a shorter
    /// or faster path, the tree is optimised (Plumtree §3.8).
    pub(crate) fn on_new<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        ev: &VerifiedEvent,
        from: Option<AuthorKey>,
        pushed: bool,
        hops: Option<u32>,
    ) {
        let key = (ev.author(), ev.stream());
        if from.is_some() {
            self.last_new_event = Some(core.now);
        }
        if let Some(h) = hops {
            self.remember_hops((key, ev.seq()), h);
        }
        if let Some(m) = self.missing.remove(&named(&key, ev.seq()))
            && pushed
            && let Some(from) = from
        {
            self.optimize(core, &m, &key, from, hops);
        }
    }

    /// The event of `key` came pushed by `from` after `m` recorded its announcements.
    fn optimize<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        m: &Missing,
        key: &StreamKey,
        from: AuthorKey,
        hops: Option<u32>,
    ) {
        let tree = travel(core, &key.0, key.1);
        if let (Some(h), Some((lazy, a))) = (hops, m.best()) {
            self.maybe_optimize(core, tree, lazy, a, from, h);
        }
        let lead = core.now.saturating_since(m.since());
        // An author announces its own events to the links beyond its `root_fanout`, one hop
        // ahead of the relayed push by design: not a faster path to swap to.
        if let Some(lazy) = m.first_announcer()
            && !(lazy == key.0 && core.config.root_fanout > 0)
        {
            self.maybe_swap_faster(core, tree, lazy, lead, from);
        }
    }

    /// An event already held arrived again from `from`. Pushed by a link that has been up a
    /// while, it prunes the link from the event's tree. (A duplicate pushed by a link that
    /// just came back is its outage backlog, not a redundant tree edge.)
    pub(crate) fn on_duplicate<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        ev: &VerifiedEvent,
        from: AuthorKey,
    ) {
        let now = core.now;
        let settled = |l: &Link| {
            l.connected() && l.healed_at().is_none_or(|t| now.saturating_since(t) >= PRUNE_GRACE)
        };
        if core.links.get(&from).is_some_and(settled) {
            let tree = travel(core, &ev.author(), ev.stream());
            self.prune(core, from, tree);
        }
    }

    /// A latest-value event was refused (out of this peer's fisheye): any graft waiting for
    /// it is forgotten.
    pub(crate) fn forget(&mut self, ev: &VerifiedEvent) {
        self.missing.remove(&named(&(ev.author(), ev.stream()), ev.seq()));
    }

    /// Passes a new event on: pushed to eager neighbours, announced to lazy ones, with this
    /// peer's hop count for it.
    pub(crate) fn forward<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
        hops: Option<u32>,
        broadcast: bool,
    ) {
        let tree = travel(core, &ev.author(), ev.stream());
        // Hop counts only serve the optimisation: not sent while it is off.
        let hops = hops.filter(|_| core.config.optimization_threshold > 0);
        // On a shared medium the event enters it once, by broadcast, and the trees carry it
        // on links off the medium only (`crate::medium`).
        if Medium::enters(core, from, broadcast) {
            Medium::broadcast(core, ev, hops);
        }
        let presence = streams::scoped(ev.stream());
        // A member's coordinate, looked up once for every neighbour asked about (log events
        // go to every neighbour).
        let place = presence.then(|| placed(&core.store, ev.author())).flatten();
        let refresh = refreshes_tree(core, fisheye, ev);
        let mut targets: Vec<(AuthorKey, bool)> = core
            .links
            .iter()
            .filter(|(p, l)| {
                Some(**p) != from
                    && l.status() != LinkStatus::Disconnected
                    && !core.links.leaving(p)
                    && !l.on_medium()
                    && l.tree.edges.carries(tree, ev.stream())
            })
            .filter(|(p, _)| {
                !presence || fisheye.wants_within(core, **p, &ev.author(), place, Offer::Push)
            })
            .map(|(p, l)| {
                let probe = presence && l.tree.edges.probe_due(tree);
                (*p, l.tree.edges.eager(tree) || ((refresh || probe) && l.connected()))
            })
            .collect();
        if refresh {
            core.stats.tree_refreshes += 1;
            for (p, eager) in &targets {
                if let Some(l) = core.links.get_mut(p).filter(|_| *eager) {
                    l.tree.edges.set(tree, true);
                }
            }
        }
        if from.is_none() {
            cap_fanout(core, &mut targets, core.config.root_fanout);
        } else if presence && fisheye.active() {
            cap_fanout(core, &mut targets, MEMBER_FANOUT);
        }
        cap_ihave_fanout(core, &mut targets, tree);
        let head = Announce { author: ev.author(), stream: ev.stream(), seq: ev.seq(), hops };
        for (peer, eager) in targets {
            if eager
                && presence
                && let Some(l) = core.links.get_mut(&peer)
                && l.tree.edges.probe_due(tree)
            {
                core.stats.tree_probes += 1;
                l.tree.edges.probed_on(tree);
            }
            if eager {
                core.send_events(peer, std::slice::from_ref(ev), false, hops);
            } else if let Some(l) = core.links.get_mut(&peer) {
                l.tree.announce(head);
            }
        }
    }

    /// Sends the announcements waiting for `peer` (taken from its link by the tick).
    pub(crate) fn flush_announcements<R: Rng>(
        core: &mut Core<R>,
        peer: AuthorKey,
        ihave: Vec<Announce>,
    ) {
        if ihave.is_empty() {
            return;
        }
        let prefixed = ihave
            .into_iter()
            .map(|a| pb::PrefixHead {
                author_prefix: a.author.prefix(),
                stream: a.stream as i32,
                seq: a.seq,
                hops: a.hops,
            })
            .collect();
        // Reliable: an announcement lost in an outage would leave the gap unnoticed. Lowest
        // class: announcements must not overtake the events they announce.
        let ihave = pb::IHave { prefixed, ..Default::default() };
        core.send(peer, Kind::Ihave(ihave), Priority::Membership, true);
    }

    /// Remembers this peer's hop count for an event (for the hop count of graft answers).
    fn remember_hops(&mut self, id: EventKey, hops: u32) {
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
    fn maybe_optimize<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        tree: u16,
        lazy: AuthorKey,
        announced: u32,
        eager: AuthorKey,
        hops: u32,
    ) {
        let threshold = core.config.optimization_threshold;
        if threshold == 0 || lazy == eager || hops < announced.saturating_add(1 + threshold) {
            return;
        }
        self.swap_edges(core, tree, lazy, eager);
    }

    /// `lazy` announced an event (in its batched announcements) `lead` before `eager` pushed
    /// it: the lazy path is faster. With `Config::swap_lead` set and the lead at least that,
    /// graft `lazy` on the event's tree and prune `eager` from it (Plumtree's optimisation,
    /// by time rather than hop counts: on a proximity overlay fewer hops is not less delay).
    fn maybe_swap_faster<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        tree: u16,
        lazy: AuthorKey,
        lead: Duration,
        eager: AuthorKey,
    ) {
        let Some(min_lead) = core.config.swap_lead else { return };
        if lead < min_lead || lazy == eager {
            return;
        }
        self.swap_edges(core, tree, lazy, eager);
    }

    /// Replaces `eager` by `lazy` as this peer's edge of `tree` (both connected, `lazy` not
    /// being dropped): a GRAFT naming no event to `lazy`, a PRUNE to `eager`.
    fn swap_edges<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        tree: u16,
        lazy: AuthorKey,
        eager: AuthorKey,
    ) {
        if !core.links.get(&eager).is_some_and(|l| l.tree.edges.eager(tree) && l.connected())
            || !core.links.get(&lazy).is_some_and(|l| !l.tree.edges.eager(tree) && l.connected())
            || core.links.leaving(&lazy)
        {
            return;
        }
        if let Some(l) = core.links.get_mut(&lazy) {
            l.tree.edges.set(tree, true);
        }
        core.stats.tree_swaps += 1;
        let trees = slots(core, tree);
        core.send(
            lazy,
            Kind::Graft(pb::Graft { trees, ..Default::default() }),
            Priority::Control,
            false,
        );
        self.prune(core, eager, tree);
    }

    /// Turns the link to `peer` eager on the trees that events of `streams` (author prefix,
    /// stream) travel on (a graft sent or received), and unmutes their authors' membership
    /// slots. A key's trees depend on its first bytes only (see [`tree_of`]), so any key of
    /// a prefix stands for its author.
    fn make_eager_for<R>(
        core: &mut Core<R>,
        peer: AuthorKey,
        streams: impl Iterator<Item = (u64, Stream)>,
    ) {
        let per_author = core.config.per_author_trees;
        let trees: Vec<(u16, u16)> = streams
            .map(|(prefix, s)| {
                let a = AuthorKey::prefix_bounds(prefix).0;
                (travel(core, &a, s), tree_of(&a, per_author))
            })
            .collect();
        if let Some(l) = core.links.get_mut(&peer) {
            for (travel, slot) in trees {
                l.tree.edges.set(travel, true);
                l.tree.edges.set(membership_slot(slot), true);
            }
        }
    }

    /// `peer` pushed a presence or status event of `author`, which this peer refused (out of
    /// its fisheye): mute that author's membership slot on the link, both ways — unless this
    /// peer holds another member of the slot, whose events it still wants.
    pub(crate) fn mute_membership<R: Rng>(
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
        author: &AuthorKey,
    ) {
        if !core.config.per_author_trees {
            return; // one shared tree: its one membership slot would mute every member
        }
        let tree = tree_of(author, true);
        if fisheye.held_in_slot(tree) > 0 {
            return;
        }
        let Some(l) = core.links.get_mut(&peer) else { return };
        if !l.connected() || !l.tree.edges.set(membership_slot(tree), false) {
            return;
        }
        core.stats.mutes += 1;
        let trees = vec![u32::from(membership_slot(tree))];
        core.send(peer, Kind::Prune(pb::Prune { trees }), Priority::Control, false);
    }

    /// This peer now holds `author`: unmute its membership slot on every link it is muted on.
    pub(crate) fn unmute_membership<R: Rng>(core: &mut Core<R>, author: &AuthorKey) {
        if !core.config.per_author_trees {
            return;
        }
        let slot = membership_slot(tree_of(author, true));
        let mut unmuted = Vec::new();
        for (peer, l) in core.links.iter_mut() {
            if l.status() != LinkStatus::Disconnected && l.tree.edges.set(slot, true) {
                unmuted.push(*peer);
            }
        }
        for peer in unmuted {
            core.stats.unmutes += 1;
            let graft = pb::Graft { trees: vec![u32::from(slot)], ..Default::default() };
            core.send(peer, Kind::Graft(graft), Priority::Control, false);
        }
    }

    /// A pushed duplicate of an event on `tree` arrived from `peer`: stop eager pushes of that
    /// tree on that link, both ways. The prune is sent even when this end was lazy already:
    /// the duplicate says the neighbour's end is eager (a link that one end made lazy at its
    /// start, or a graft this end never sent), and unanswered it would push every event of
    /// the tree again.
    pub(crate) fn prune<R: Rng>(&mut self, core: &mut Core<R>, peer: AuthorKey, tree: u16) {
        let trees = slots(core, tree);
        let now = core.now;
        let fanout = core.config.ihave_fanout;
        let Some(l) = core.links.get_mut(&peer) else { return };
        l.tree.edges.set(tree, false);
        if fanout > 0 {
            l.tree.note_pruned(&trees, now);
        }
        core.stats.prunes += 1;
        core.send(peer, Kind::Prune(pb::Prune { trees }), Priority::Control, false);
    }

    pub(crate) fn on_prune<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        from: AuthorKey,
        prune: &pb::Prune,
    ) {
        let config = &core.config;
        let now = core.now;
        let Some(l) = core.links.get_mut(&from) else { return };
        let bad = l.tree.edges.apply(&prune.trees, false);
        if config.ihave_fanout > 0 {
            l.tree.note_pruned(&prune.trees, now);
        }
        // Pushes of those trees still waiting for this link turn into announcements.
        let unpushed = l.unpush_lazy(|a, s| travel_tree(a, s, config));
        for ((author, stream), seq) in unpushed {
            if !l.tree.edges.carries(tree_of(&author, config.per_author_trees), stream) {
                continue; // muted: not announced either
            }
            l.tree.announce(Announce { author, stream, seq, hops: None });
        }
        for _ in 0..bad {
            core.reject("bad_tree");
        }
    }

    pub(crate) fn on_ihave<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        from: AuthorKey,
        ihave: &pb::IHave,
    ) {
        for h in &ihave.heads {
            match head_key(&h.author, h.stream) {
                Some(key) => self.on_announced(core, fisheye, from, key, h.seq, h.hops),
                None => core.reject("bad_head"),
            }
        }
        for h in &ihave.prefixed {
            let (prefix, Some(stream)) = (h.author_prefix, streams::from_wire(h.stream)) else {
                core.reject("bad_head");
                continue;
            };
            match resolve_prefix(core, prefix) {
                Some(author) => {
                    self.on_announced(core, fisheye, from, (author, stream), h.seq, h.hops)
                }
                // An author this peer knows nothing of (or a prefix two share): only a
                // fisheye peer's members can be unwanted, and it links to or holds those.
                None if fisheye.active() && streams::scoped(stream) => {}
                None => self.note_named(core, (prefix, stream, h.seq), None, from, h.hops),
            }
        }
    }

    /// `from` announced event `seq` of `key`.
    fn on_announced<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        from: AuthorKey,
        key: StreamKey,
        seq: u64,
        hops: Option<u32>,
    ) {
        if let Some(l) = core.links.get_mut(&from) {
            l.peer_has((key, seq));
        }
        self.note_missing(core, fisheye, key, seq, from, hops);
    }

    /// Records that `from` holds (key, seq), at hop count `hops` if known, which this peer
    /// lacks: unless the event arrives first, it is grafted from `from` (or another announcer)
    /// once the wait is over.
    pub(crate) fn note_missing<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        key: StreamKey,
        seq: u64,
        from: AuthorKey,
        hops: Option<u32>,
    ) {
        if core.store.covers(&key, seq) || !fisheye.may_want(core, &key, seq) {
            return;
        }
        self.note_named(core, named(&key, seq), Some(key.0), from, hops);
    }

    fn note_named<R>(
        &mut self,
        core: &mut Core<R>,
        name: Named,
        author: Option<AuthorKey>,
        from: AuthorKey,
        hops: Option<u32>,
    ) {
        if !self.missing.note(core, name, author, from, hops) {
            core.reject("missing_table_full");
        }
    }

    pub(crate) fn on_graft<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        from: AuthorKey,
        graft: &pb::Graft,
    ) {
        let mut bad = 0;
        let names_none = graft.heads.is_empty() && graft.prefixed.is_empty();
        if (names_none || !graft.trees.is_empty())
            && let Some(l) = core.links.get_mut(&from)
        {
            bad = l.tree.edges.apply(&graft.trees, true);
        }
        for _ in 0..bad {
            core.reject("bad_tree");
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
                None => core.reject("bad_head"),
            }
        }
        for h in &graft.prefixed {
            let (prefix, Some(stream)) = (h.author_prefix, streams::from_wire(h.stream)) else {
                core.reject("bad_head");
                continue;
            };
            trees.push((prefix, stream));
            let authors = core.store.authors_prefixed(prefix).take(MAX_ANNOUNCERS);
            wanted.extend(authors.map(|a| ((a, stream), h.seq)));
        }
        Self::make_eager_for(core, from, trees.into_iter());
        let events: Vec<VerifiedEvent> = wanted
            .into_iter()
            .filter_map(|(key, seq)| match streams::of(key.1).keep {
                // Superseded since it was announced: the newer one answers the graft.
                Keep::Latest => core.store.latest(&key).filter(|e| e.seq() >= seq).cloned(),
                Keep::Log | Keep::Custody => core.store.get(&key, seq).cloned(),
            })
            .collect();
        if !events.is_empty() {
            // This peer's hop count for what it answers (the largest, if they differ).
            let hops = events
                .iter()
                .map(|e| self.recent.get(&event_key(e)).copied())
                .try_fold(0, |acc, h| h.map(|h| acc.max(h)))
                .filter(|_| core.config.optimization_threshold > 0);
            core.send_events(from, &events, true, hops);
        }
    }

    /// `peer`'s link came back: the events it announced that are still missing are grafted
    /// from it next, without waiting out the backoff of grafts lost while it was down.
    pub(crate) fn regraft_from<R>(&mut self, core: &Core<R>, peer: AuthorKey) {
        self.missing.regraft_from(core, peer);
    }

    /// Grafts every announced event still missing past its deadline, from its next announcer.
    pub(crate) fn graft_overdue<R: Rng>(&mut self, core: &mut Core<R>) {
        let per_peer = self.missing.overdue(core, self.last_new_event);
        for (peer, names) in per_peer {
            Self::make_eager_for(
                core,
                peer,
                names.iter().map(|&(prefix, stream, _)| (prefix, stream)),
            );
            core.stats.grafts += 1;
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
            core.send(peer, Kind::Graft(graft), Priority::Control, false);
        }
    }
}

/// Whether `ev` floods its author's tree (see `Config::tree_refresh_every`): a newspaper
/// whose seq is 2, 2 + every, 2 + 2 × every …, passed on by a peer that holds at least
/// `tree_refresh_min_members` members, in a full-membership fleet.
fn refreshes_tree<R>(core: &Core<R>, fisheye: &Fisheye, ev: &VerifiedEvent) -> bool {
    let every = core.config.tree_refresh_every;
    every > 0
        && fisheye.held() >= core.config.tree_refresh_min_members
        && !fisheye.active()
        && !core.config.shares_post_tree()
        && ev.stream() == Stream::Newspaper
        && ev.seq() >= 2
        && (ev.seq() - 2).is_multiple_of(every)
}

/// Pushes on at most `cap` eager links, the nearest (lowest RTT); the others are only
/// announced to. An author caps its own events at `root_fanout`: the others hear the event
/// from those first (so their edges from the author are never pruned, and take over when a
/// nearer link goes); without it the first-arrival tree from an author is a star of all its
/// links, the fan-out tax on its own uplink or radio. A fisheye peer caps the presence it
/// relays at [`MEMBER_FANOUT`].
fn cap_fanout<R>(core: &Core<R>, targets: &mut [(AuthorKey, bool)], cap: usize) {
    if cap == 0 || targets.iter().filter(|t| t.1).count() <= cap {
        return;
    }
    let mut eager: Vec<(Duration, AuthorKey)> = targets
        .iter()
        .filter(|t| t.1)
        .map(|(p, _)| (core.links.get(p).and_then(Link::rtt).unwrap_or(Duration::MAX), *p))
        .collect();
    eager.sort_unstable();
    let keep: Vec<AuthorKey> = eager.iter().take(cap).map(|e| e.1).collect();
    for t in targets.iter_mut() {
        t.1 = t.1 && keep.contains(&t.0);
    }
}

/// Keeps `ihave_fanout` of the lazy targets, at random, and every target owed the
/// announcement whatever the cap: a tree edge not pushed on (beyond `root_fanout`), whose end
/// relies on the link for the tree, and a link pruned on the tree lately
/// ([`tree::LinkTree::pruned_lately`]). The others get nothing.
fn cap_ihave_fanout<R: Rng>(core: &mut Core<R>, targets: &mut Vec<(AuthorKey, bool)>, tree: u16) {
    let cap = core.config.ihave_fanout;
    let lazy = targets.iter().filter(|t| !t.1).count();
    if cap == 0 || lazy <= cap {
        return;
    }
    let now = core.now;
    let owed = |l: &Link| l.tree.edges.eager(tree) || l.tree.pruned_lately(tree, now);
    let rank = |&(p, push): &(AuthorKey, bool)| match push {
        true => 0,
        false if core.links.get(&p).is_some_and(owed) => 1,
        false => 2,
    };
    // Pushed targets first, then the owed ones, then the other lazy ones, of which a
    // partial shuffle picks `cap`.
    let first = targets.iter().filter(|t| rank(t) < 2).count();
    targets.sort_by_cached_key(rank);
    let keep = (first + cap).min(targets.len());
    for i in first..keep {
        let j = core.rng.random_range(i..targets.len());
        targets.swap(i, j);
    }
    targets.truncate(keep);
}

/// Reads an (author, stream) from wire fields; `None` if either is invalid.
pub(crate) fn head_key(author: &[u8], stream: i32) -> Option<(AuthorKey, Stream)> {
    Some((AuthorKey::from_slice(author)?, streams::from_wire(stream)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::engine::core::testing::{key, post};

    fn grafts(sent: &[(AuthorKey, Kind)]) -> Vec<(AuthorKey, Vec<u64>)> {
        sent.iter()
            .filter_map(|(to, k)| match k {
                Kind::Graft(g) => Some((*to, g.prefixed.iter().map(|h| h.seq).collect())),
                _ => None,
            })
            .collect()
    }

    /// An announced event that does not come is grafted from its announcer once the graft
    /// wait (`graft_min` without an RTT) is over, again after a doubled wait, and never once
    /// it arrived.
    #[test]
    fn an_announced_event_is_grafted_after_the_wait_with_backoff_until_it_arrives() {
        let mut core = Core::for_test(1, Config::default());
        let (a, author) = (key(1), key(2));
        core.link_to(a);
        let fisheye = Fisheye::new(false);
        let mut p = Plumtree::default();
        p.note_missing(&mut core, &fisheye, (author, Stream::Post), 1, a, None);
        assert_eq!(p.missing.len(), 1);
        core.advance(Duration::from_millis(140));
        p.graft_overdue(&mut core);
        assert!(grafts(&core.sent()).is_empty(), "not before graft_min (150 ms)");
        core.advance(Duration::from_millis(10));
        p.graft_overdue(&mut core);
        assert_eq!(grafts(&core.sent()), vec![(a, vec![1])]);
        // The next graft waits 2 × graft_rtt_factor × graft_min = 600 ms.
        core.advance(Duration::from_millis(599));
        p.graft_overdue(&mut core);
        assert!(grafts(&core.sent()).is_empty());
        core.advance(Duration::from_millis(1));
        p.graft_overdue(&mut core);
        assert_eq!(grafts(&core.sent()), vec![(a, vec![1])]);
        // It arrives: nothing more to graft.
        let ev = post(2, 1);
        p.on_new(&mut core, &ev, Some(a), false, None);
        assert_eq!(p.missing.len(), 0);
        core.advance(Duration::from_secs(60));
        p.graft_overdue(&mut core);
        assert!(grafts(&core.sent()).is_empty());
    }

    /// The graft timers are kept ordered by deadline beside the table (the tick looks at
    /// the due ones only): through announcements by several links, grafts, a heal's regraft,
    /// arrivals and refusals, the index always holds exactly the table's entries at their
    /// deadlines, and each round grafts in name order what is due.
    #[test]
    fn the_deadline_index_follows_every_change_of_the_missing_table() {
        let mut core = Core::for_test(1, Config::default());
        let links = [key(1), key(3), key(4)];
        for l in links {
            core.link_to(l);
        }
        let author = key(2);
        let fisheye = Fisheye::new(false);
        let mut p = Plumtree::default();
        for round in 0..40u64 {
            let from = links[(round % 3) as usize];
            for seq in 1..=(round % 7) + 1 {
                p.note_missing(
                    &mut core,
                    &fisheye,
                    (author, Stream::Post),
                    seq * 3 + round,
                    from,
                    None,
                );
            }
            if round % 5 == 0 {
                p.regraft_from(&core, links[1]);
            }
            if round % 4 == 0 {
                p.forget(&post(2, round + 3));
            }
            assert!(p.missing.index_matches(), "round {round}, after notes");
            core.advance(Duration::from_millis(100));
            p.graft_overdue(&mut core);
            assert!(p.missing.index_matches(), "round {round}, after grafts");
            for (_, seqs) in grafts(&core.sent()) {
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "round {round}: {seqs:?}");
            }
        }
        assert_ne!(p.missing.len(), 0);
    }

    /// Plumtree's optimisation (§3.8): an event announced by a lazy link with a hop count at
    /// least `optimization_threshold` lower than the eager path that then pushed it swaps the
    /// two (GRAFT to the lazy link, PRUNE to the eager one); a smaller gain changes nothing.
    #[test]
    fn a_much_shorter_lazy_path_replaces_the_eager_one() {
        for (hops, swaps) in [(4, true), (2, false)] {
            let config = Config { optimization_threshold: 1, ..Config::default() };
            let mut core = Core::for_test(2, config);
            let (lazy, eager, author) = (key(1), key(3), key(2));
            core.link_to(lazy);
            core.link_to(eager);
            let tree = travel(&core, &author, Stream::Post);
            core.links.get_mut(&lazy).expect("linked").tree.edges.set(tree, false);
            let mut p = Plumtree::default();
            let fisheye = Fisheye::new(false);
            p.note_missing(&mut core, &fisheye, (author, Stream::Post), 1, lazy, Some(1));
            core.take();
            p.on_new(&mut core, &post(2, 1), Some(eager), true, Some(hops));
            let sent = core.sent();
            let graft = sent.iter().any(|(to, k)| *to == lazy && matches!(k, Kind::Graft(_)));
            let prune = sent.iter().any(|(to, k)| *to == eager && matches!(k, Kind::Prune(_)));
            assert_eq!((graft, prune), (swaps, swaps), "this peer at {hops} hops");
            let edges = |p: &AuthorKey| core.links.get(p).expect("linked").tree.edges.eager(tree);
            assert_eq!((edges(&lazy), edges(&eager)), (swaps, !swaps));
        }
    }

    /// A duplicate pushed by a settled link prunes it from the author's tree; one pushed by a
    /// link back from an outage less than `PRUNE_GRACE` ago is its backlog, and does not.
    #[test]
    fn a_duplicate_prunes_a_settled_link_but_not_one_just_healed() {
        let mut core = Core::for_test(3, Config::default());
        let (settled, healed) = (key(1), key(3));
        core.link_to(settled);
        core.link_to(healed);
        let l = core.links.get_mut(&healed).expect("linked");
        l.set_status(LinkStatus::Suspected, T0_PLUS);
        l.heard(T0_PLUS);
        core.advance(Duration::from_secs(5));
        let mut p = Plumtree::default();
        let ev = post(2, 1);
        p.on_duplicate(&mut core, &ev, settled);
        p.on_duplicate(&mut core, &ev, healed);
        let pruned: Vec<AuthorKey> = core
            .sent()
            .into_iter()
            .filter(|(_, k)| matches!(k, Kind::Prune(_)))
            .map(|(to, _)| to)
            .collect();
        assert_eq!(pruned, vec![settled]);
        assert_eq!(core.stats.prunes, 1);
    }

    const T0_PLUS: Time = Time(crate::engine::core::testing::T0.0 + 1);

    /// A prune turns the link lazy on the tree and the pushes still queued for it into
    /// announcements, flushed as one IHAVE.
    #[test]
    fn a_prune_turns_queued_pushes_into_announcements() {
        let mut core = Core::for_test(4, Config::default());
        let peer = key(1);
        core.link_to(peer);
        core.links.get_mut(&peer).expect("linked").set_status(LinkStatus::Suspected, T0_PLUS);
        let ev = post(2, 1);
        core.send_events(peer, std::slice::from_ref(&ev), false, None);
        let tree = travel(&core, &ev.author(), Stream::Post);
        let mut p = Plumtree::default();
        p.on_prune(&mut core, peer, &pb::Prune { trees: vec![u32::from(tree)] });
        let l = core.links.get_mut(&peer).expect("linked");
        assert!(!l.tree.edges.eager(tree));
        let announced = l.tree.take_announcements();
        assert_eq!(announced.len(), 1);
        assert_eq!((announced[0].author, announced[0].seq), (ev.author(), 1));
        assert_eq!(l.buffered().1, 0, "the push was dropped unsent");
    }
}
