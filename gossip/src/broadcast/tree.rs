//! The shape of the Plumtree trees on one link: which trees it is eager on, which membership
//! slots are muted, which trees it is still to be probed on, the prunes it saw lately and the
//! announcements waiting for the next flush (see `crate::broadcast` for the algorithm).

use std::collections::VecDeque;
use std::time::Duration;

use vecino_proto::AuthorKey;
use vecino_proto::limits::TREE_SLOTS;
use vecino_proto::pb::Stream;

use crate::config::Config;
use crate::streams::{self, Keep};
use crate::time::Time;

/// Prunes remembered per link ([`LinkTree::pruned_lately`]); older ones are forgotten first.
pub(crate) const MAX_RECENT_PRUNES: usize = 64;
/// A tree pruned on a link this recently is announced on it whatever `ihave_fanout`.
pub(crate) const ANNOUNCE_AFTER_PRUNE: Duration = Duration::from_secs(5);
/// [`LinkTree::note_pruned`]'s name for a prune of every tree.
const ALL_TREES: u16 = u16::MAX;
/// Duplicates pushed on a link within this long of its return from an outage do not prune it
/// (they are its outage backlog, not a redundant tree edge).
pub(crate) const PRUNE_GRACE: Duration = Duration::from_secs(10);
/// Heads announced per link per tick at most; the rest wait for the next tick.
pub(crate) const MAX_IHAVE_PER_LINK: usize = 4_096;

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
    if config.shares_post_tree() && streams::of(stream).keep == Keep::Log {
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
    /// presence and status (fisheye-scoped streams) not while their membership slot is muted.
    pub(crate) fn carries(&self, tree: u16, stream: Stream) -> bool {
        !streams::scoped(stream) || !self.muted(tree)
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

/// Whether new links may be probed (`Config::probe_new_links_from`): a full-membership fleet
/// with one tree per author, whose members' presence and status reach every peer.
pub(crate) fn probes_links(config: &Config, fisheye_active: bool) -> bool {
    config.per_author_trees && !fisheye_active && !config.shares_post_tree()
}

/// An event to announce on a lazy link at the next flush, with this peer's hop count for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announce {
    pub(crate) author: AuthorKey,
    pub(crate) stream: Stream,
    pub(crate) seq: u64,
    pub(crate) hops: Option<u32>,
}

/// A link's Plumtree slot.
#[derive(Debug, Clone)]
pub(crate) struct LinkTree {
    /// The trees on which events are pushed eagerly on this link (on the others they are
    /// announced lazily), and the muted membership slots.
    pub(crate) edges: TreeEdges,
    /// Trees pruned on this link lately, by either end, and when (at most
    /// [`MAX_RECENT_PRUNES`], oldest first; kept only while `ihave_fanout` caps
    /// announcements): see [`LinkTree::pruned_lately`].
    pruned: VecDeque<(u16, Time)>,
    /// Heads to announce lazily on the next flush (at most [`MAX_IHAVE_PER_LINK`]).
    ihave: Vec<Announce>,
}

impl LinkTree {
    /// A new link's slot with these edges.
    pub(crate) fn new(edges: TreeEdges) -> Self {
        Self { edges, pruned: VecDeque::new(), ihave: Vec::new() }
    }

    /// Queues an announcement for the next flush; false if the queue is full.
    pub(crate) fn announce(&mut self, a: Announce) -> bool {
        if self.ihave.len() >= MAX_IHAVE_PER_LINK {
            return false;
        }
        self.ihave.push(a);
        true
    }

    /// The announcements waiting, taken for a flush.
    pub(crate) fn take_announcements(&mut self) -> Vec<Announce> {
        std::mem::take(&mut self.ihave)
    }

    /// The link turned disconnected: announcements waiting are dropped (anti-entropy catches
    /// the neighbour up when it returns).
    pub(crate) fn on_disconnected(&mut self) {
        self.ihave.clear();
    }

    /// Remembers that the tree slots of a prune frame (none named: every tree) were pruned
    /// on this link at `now`, whichever end sent it; slots out of range are skipped.
    pub(crate) fn note_pruned(&mut self, trees: &[u32], now: Time) {
        let named = trees.iter().filter_map(|&t| u16::try_from(t).ok().filter(|&t| t != ALL_TREES));
        let slots: Vec<u16> = if trees.is_empty() { vec![ALL_TREES] } else { named.collect() };
        for t in slots {
            if self.pruned.len() >= MAX_RECENT_PRUNES {
                self.pruned.pop_front();
            }
            self.pruned.push_back((t, now));
        }
    }

    /// Whether `tree` was pruned on this link within [`ANNOUNCE_AFTER_PRUNE`] of `now`.
    ///
    /// A prune turns the link lazy both ways, so each end may have just lost its parent on
    /// the tree; if the other links that reached it were pruned too (two ends pushing the
    /// same event at each other during a heal's backlog), it is off the tree, and only an
    /// announcement tells it of the events already on their way. Announced on one lazy link
    /// in `ihave_fanout`, chosen at random, the events in flight at the prune were often
    /// announced elsewhere and the hole was found only at the author's next event (convoy:
    /// 4–22 s after a heal).
    pub(crate) fn pruned_lately(&self, tree: u16, now: Time) -> bool {
        let lately = |at: Time| now.saturating_since(at) <= ANNOUNCE_AFTER_PRUNE;
        self.pruned
            .iter()
            .rev()
            .take_while(|p| lately(p.1))
            .any(|p| p.0 == tree || p.0 == ALL_TREES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prune or graft naming slots changes those only; naming none changes every tree;
    /// slots out of range are counted, not applied.
    #[test]
    fn prunes_and_grafts_change_the_slots_they_name() {
        let mut e = TreeEdges::all_eager();
        assert_eq!(e.apply(&[3, 70_000], false), 1);
        assert!(!e.eager(3) && e.eager(4));
        assert_eq!(e.eager_count(), TREE_SLOTS as u32 - 1);
        e.apply(&[], false);
        assert_eq!(e.eager_count(), 0);
        e.apply(&[u32::from(SHARED_TREE)], true);
        assert!(e.eager(SHARED_TREE) && !e.eager(3));
    }

    /// A muted membership slot stops presence of its authors, not their posts.
    #[test]
    fn a_muted_slot_stops_presence_not_posts() {
        let mut e = TreeEdges::all_eager();
        e.set(membership_slot(9), false);
        assert!(e.muted(9));
        assert!(!e.carries(9, Stream::Newspaper));
        assert!(e.pushes(9, Stream::Post));
        assert!(e.carries(10, Stream::HeyThere));
    }

    /// A probed link is lazy on every author tree until an event probes it; a dropped link's
    /// trees are probed again on the links lazy on them.
    #[test]
    fn probed_links_join_the_trees_their_probes_reach() {
        let mut e = TreeEdges::probed();
        assert!(e.probing() && e.probe_due(5) && !e.eager(5));
        e.probed_on(5);
        assert!(e.eager(5) && !e.probe_due(5));
        let mut gone = TreeEdges::all_eager();
        gone.set(6, false);
        let mut other = TreeEdges::all_eager();
        other.set(5, false);
        other.set(6, false);
        assert!(other.probe_again(&gone));
        assert!(other.probe_due(5) && !other.probe_due(6), "only the trees the gone link was on");
    }

    /// A prune is remembered for [`ANNOUNCE_AFTER_PRUNE`], per tree or for every tree.
    #[test]
    fn prunes_are_remembered_briefly() {
        let mut t = LinkTree::new(TreeEdges::all_eager());
        t.note_pruned(&[4], Time(0));
        assert!(t.pruned_lately(4, Time(1_000_000)) && !t.pruned_lately(5, Time(1_000_000)));
        assert!(!t.pruned_lately(4, Time(6_000_000)));
        t.note_pruned(&[], Time(7_000_000));
        assert!(t.pruned_lately(5, Time(8_000_000)));
    }
}
