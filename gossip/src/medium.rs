//! A shared medium: a radio that every peer on it hears (`Config::shared_medium`).
//!
//! Point to point, a post crosses a convoy's radio once per tree edge inside the convoy: on a
//! radio of n vehicles, about n − 1 transmissions of the same bytes, each occupying the
//! medium for everyone. On a shared medium an event enters it **once**, broadcast
//! ([`crate::Output::Broadcast`]) by the first peer on it to hold the event: its author, or
//! the end of a link from off the medium (another convoy). Peers that hear it pass it on only
//! over links off the medium; links on it carry no events by eager push and no
//! announcements, only control (heartbeats, acknowledgements, grafts) and anti-entropy.
//!
//! - **Several entries.** Two peers on the medium that take the same event from off it each
//!   queue a broadcast. A peer that hears the event broadcast before its own left drops its
//!   own, and prunes its off-medium link from the event's tree: the medium has another entry
//!   for that tree. When both broadcasts left, the end with the higher key prunes, so one
//!   entry per tree stays.
//! - **Loss.** A broadcast is not acknowledged. A peer that missed one notices the gap when
//!   the author's next event comes and grafts it from the broadcaster if it is a neighbour;
//!   the version-vector exchange on the slow sync timer catches the rest.
//! - **Bounds.** Broadcasts wait in per-class queues of at most
//!   `links::broadcasts::MAX_QUEUED_BYTES` in all (past it a broadcast is dropped, counted
//!   `medium_queue_full`, and its event reaches the medium's peers by anti-entropy), served
//!   before the links in each class, within the host's queue or the uplink's bucket like any
//!   frame (`crate::links`). The entries remembered for the pruning above are at most
//!   [`MAX_ENTRIES`].

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;
use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::broadcast::tree::{PRUNE_GRACE, travel_tree};
use crate::engine::core::Core;
use crate::links::unsequenced;
use crate::store::{EventKey, event_key};
use crate::streams;

/// Events remembered with the off-medium link they were pushed on.
pub(crate) const MAX_ENTRIES: usize = 4_096;

/// Where recent events entered the medium here, and what was heard on it.
#[derive(Debug, Default)]
pub(crate) struct Medium {
    /// Events this peer took by eager push from a link off the medium, and that link (at
    /// most [`MAX_ENTRIES`], the oldest forgotten first).
    entries: BTreeMap<EventKey, AuthorKey>,
    entry_order: VecDeque<EventKey>,
    /// Broadcasts heard.
    heard: u64,
}

/// True when `peer` is a neighbour on this peer's shared medium.
fn on_medium<R>(core: &Core<R>, peer: &AuthorKey) -> bool {
    core.links.get(peer).is_some_and(|l| l.on_medium())
}

impl Medium {
    /// Broadcasts heard so far.
    pub(crate) fn heard(&self) -> u64 {
        self.heard
    }

    /// A broadcast frame arrived.
    pub(crate) fn note_heard(&mut self) {
        self.heard += 1;
    }

    /// Whether a new event that came from `from` (`None`: this peer's own), broadcast on the
    /// medium or not, enters the medium here: it did not come over the medium, by broadcast
    /// or from a neighbour on it.
    pub(crate) fn enters<R>(core: &Core<R>, from: Option<AuthorKey>, broadcast: bool) -> bool {
        core.config.shared_medium && !broadcast && !from.is_some_and(|f| on_medium(core, &f))
    }

    /// Queues one broadcast of `ev` on the medium.
    pub(crate) fn broadcast<R: Rng>(core: &mut Core<R>, ev: &VerifiedEvent, hops: Option<u32>) {
        let key = event_key(ev);
        if core.links.broadcasts.queued(&key) {
            return;
        }
        let envelopes = vec![ev.envelope().clone()];
        let frame = unsequenced(Kind::Events(pb::Events {
            envelopes,
            sync: false,
            hops,
            trail: Vec::new(),
            detours: None,
            copies: None,
        }));
        if !core.links.broadcasts.push(key, frame, streams::class_of(ev.stream())) {
            core.reject("medium_queue_full");
            return;
        }
        core.pump();
    }

    /// Remembers the link off the medium that pushed a new event, for the pruning of
    /// [`Medium::heard_again`].
    pub(crate) fn note_entry<R>(&mut self, core: &Core<R>, ev: &VerifiedEvent, from: AuthorKey) {
        if !core.config.shared_medium || on_medium(core, &from) {
            return;
        }
        let key = event_key(ev);
        if self.entries.insert(key, from).is_none() {
            self.entry_order.push_back(key);
        }
        while self.entry_order.len() > MAX_ENTRIES {
            if let Some(old) = self.entry_order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// An event heard broadcast by `from` that this peer already held: if it entered the
    /// medium here too, pushed on a link off it, that link is to be pruned from the event's
    /// tree when this peer's own broadcast did not leave (`own_queued`), or both left and
    /// `from` has the lower key. Returns the link and tree to prune.
    pub(crate) fn heard_again<R>(
        &mut self,
        core: &Core<R>,
        from: AuthorKey,
        ev: &VerifiedEvent,
        own_queued: bool,
    ) -> Option<(AuthorKey, u16)> {
        let key = event_key(ev);
        let &entry = self.entries.get(&key)?;
        if !(own_queued || from < core.me) {
            return None;
        }
        self.entries.remove(&key);
        let now = core.now;
        let settled = core.links.get(&entry).is_some_and(|l| {
            l.connected() && l.healed_at().is_none_or(|t| now.saturating_since(t) >= PRUNE_GRACE)
        });
        settled.then(|| (entry, travel_tree(&ev.author(), ev.stream(), &core.config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::engine::core::testing::{key, post};
    use crate::io::Output;

    /// An event that entered the medium here (pushed from off it) and is then heard broadcast
    /// by another entry: the off-medium link is pruned if this peer's own broadcast had not
    /// left yet, or if the other entry has the lower key; otherwise this entry stays.
    #[test]
    fn a_second_entry_prunes_its_off_medium_link() {
        let config = Config { shared_medium: true, ..Config::default() };
        for own_queued in [true, false] {
            let mut core = Core::for_test(1, config.clone());
            let off = key(1);
            core.link_to(off);
            let mut m = Medium::default();
            let ev = post(2, 1);
            assert!(Medium::enters(&core, Some(off), false), "from off the medium");
            assert!(!Medium::enters(&core, Some(off), true), "heard broadcast");
            m.note_entry(&core, &ev, off);
            let (lower, higher) = (key(3).min(key(4)), key(3).max(key(4)));
            let other = if own_queued { higher } else { lower };
            let expected = own_queued || other < core.me;
            let pruned = m.heard_again(&core, other, &ev, own_queued);
            assert_eq!(pruned.map(|p| p.0), expected.then_some(off), "own queued: {own_queued}");
            if expected {
                assert_eq!(m.heard_again(&core, other, &ev, own_queued), None, "once");
            }
        }
    }

    /// A broadcast is queued once per event, within the queue's bound.
    #[test]
    fn an_event_is_broadcast_once() {
        let config = Config { shared_medium: true, uplink_bps: Some(8_000), ..Config::default() };
        let mut core = Core::for_test(2, config);
        let ev = post(2, 1);
        Medium::broadcast(&mut core, &ev, None);
        Medium::broadcast(&mut core, &ev, None);
        let sent =
            core.take().into_iter().filter(|o| matches!(o, Output::Broadcast { .. })).count();
        let queued = usize::from(core.links.broadcasts.queued(&event_key(&ev)));
        assert_eq!(sent + queued, 1);
    }
}
