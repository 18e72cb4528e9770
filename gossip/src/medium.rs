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
//! - **Bounds.** Broadcasts wait in per-class queues of at most [`MAX_QUEUED_BYTES`] in all
//!   (past it a broadcast is dropped, counted `medium_queue_full`, and its event reaches the
//!   medium's peers by anti-entropy), served before the links in each class, within the
//!   host's queue or the uplink's bucket like any frame. The entries remembered for the
//!   pruning above are at most [`MAX_ENTRIES`].

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;
use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, Bytes, VerifiedEvent, decode_frame};

use crate::engine::{Engine, Via, class_of, unsequenced};
use crate::io::{LinkStatus, Priority};
use crate::store::{EventKey, event_key};

/// Bytes of broadcasts waiting for the host, all classes together.
pub(crate) const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Events remembered with the off-medium link they were pushed on.
pub(crate) const MAX_ENTRIES: usize = 4_096;

/// The broadcasts waiting to leave, and where recent events entered.
#[derive(Debug, Default)]
pub(crate) struct Medium {
    /// Per class (the order of [`Priority::ALL`]): each broadcast with the event it carries.
    queue: [VecDeque<(EventKey, Bytes)>; 4],
    queued_bytes: usize,
    /// Events this peer took by eager push from a link off the medium, and that link.
    entries: BTreeMap<EventKey, AuthorKey>,
    entry_order: VecDeque<EventKey>,
    /// Broadcasts handed to the host, and heard.
    pub(crate) sent: u64,
    pub(crate) heard: u64,
}

fn class_index(class: Priority) -> usize {
    Priority::ALL.iter().position(|c| *c == class).unwrap_or(0)
}

impl Medium {
    pub(crate) fn is_empty(&self) -> bool {
        self.queued_bytes == 0
    }

    /// The next broadcast of `class`, if any.
    pub(crate) fn pop(&mut self, class: Priority) -> Option<Bytes> {
        let (_, frame) = self.queue[class_index(class)].pop_front()?;
        self.queued_bytes -= frame.len();
        Some(frame)
    }

    /// Drops the queued broadcast of `key`; true if there was one.
    fn cancel(&mut self, key: &EventKey) -> bool {
        for q in &mut self.queue {
            if let Some(i) = q.iter().position(|(k, _)| k == key) {
                let (_, frame) = q.remove(i).expect("position found");
                self.queued_bytes -= frame.len();
                return true;
            }
        }
        false
    }

    fn queued(&self, key: &EventKey) -> bool {
        self.queue.iter().any(|q| q.iter().any(|(k, _)| k == key))
    }

    /// Remembers that `key` came pushed on `link`, off the medium.
    fn note_entry(&mut self, key: EventKey, link: AuthorKey) {
        if self.entries.insert(key, link).is_none() {
            self.entry_order.push_back(key);
        }
        while self.entry_order.len() > MAX_ENTRIES {
            if let Some(old) = self.entry_order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

impl<R: Rng> Engine<R> {
    /// True when `peer` is a neighbour on this peer's shared medium.
    pub(crate) fn on_medium(&self, peer: &AuthorKey) -> bool {
        self.links.get(peer).is_some_and(|l| l.on_medium)
    }

    /// Whether a new event that came from `from` (`None`: this peer's own), broadcast on the
    /// medium or not, enters the medium here: it did not come over the medium, by broadcast
    /// or from a neighbour on it.
    pub(crate) fn enters_medium(&self, from: Option<AuthorKey>, broadcast: bool) -> bool {
        self.config.shared_medium && !broadcast && !from.is_some_and(|f| self.on_medium(&f))
    }

    /// Queues one broadcast of `ev` on the medium.
    pub(crate) fn broadcast(&mut self, ev: &VerifiedEvent, hops: Option<u32>) {
        let key = event_key(ev);
        if self.medium.queued(&key) {
            return;
        }
        let envelopes = vec![ev.envelope().clone()];
        let frame = unsequenced(Kind::Events(pb::Events { envelopes, sync: false, hops }));
        if self.medium.queued_bytes + frame.len() > MAX_QUEUED_BYTES {
            self.reject("medium_queue_full");
            return;
        }
        self.medium.queued_bytes += frame.len();
        self.medium.queue[class_index(class_of(ev.stream()))].push_back((key, frame));
        self.pump();
    }

    /// Remembers the link off the medium that pushed a new event, for the pruning of
    /// [`Self::heard_again`].
    pub(crate) fn note_entry(&mut self, ev: &VerifiedEvent, from: AuthorKey) {
        if self.config.shared_medium && !self.on_medium(&from) {
            self.medium.note_entry(event_key(ev), from);
        }
    }

    /// A frame `from` broadcast on the medium: its events are taken as pushed by it, but
    /// passed on only off the medium.
    pub(crate) fn on_broadcast(&mut self, from: AuthorKey, bytes: Bytes) {
        self.stats.frames_in += 1;
        if !self.config.shared_medium || from == self.me {
            self.reject("broadcast_without_medium");
            return;
        }
        let frame = match decode_frame(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.reject(e.reason().as_str());
                return;
            }
        };
        let Some(Kind::Events(evs)) = frame.kind else {
            self.reject("broadcast_not_events");
            return;
        };
        self.medium.heard += 1;
        for r in self.verify(evs.envelopes) {
            match r {
                Ok(ev) => {
                    if let Some(l) = self.links.get_mut(&from) {
                        l.peer_has(event_key(&ev));
                    }
                    let own_queued = self.medium.cancel(&event_key(&ev));
                    self.accept(Some(from), &ev, Via::Broadcast { own_queued }, evs.hops);
                }
                Err(e) => self.reject(e.reason().as_str()),
            }
        }
    }

    /// An event heard broadcast by `from` that this peer already held: if it entered the
    /// medium here too, pushed on a link off it, that link is pruned from the event's tree
    /// when this peer's own broadcast did not leave (`own_queued`), or both left and `from`
    /// has the lower key.
    pub(crate) fn heard_again(&mut self, from: AuthorKey, ev: &VerifiedEvent, own_queued: bool) {
        let key = event_key(ev);
        let Some(&entry) = self.medium.entries.get(&key) else { return };
        if !(own_queued || from < self.me) {
            return;
        }
        self.medium.entries.remove(&key);
        let now = self.now;
        let settled = self.links.get(&entry).is_some_and(|l| {
            l.status == LinkStatus::Connected
                && l.healed_at.is_none_or(|t| now.saturating_since(t) >= crate::engine::PRUNE_GRACE)
        });
        if settled {
            self.prune(entry, self.travel_tree(&ev.author(), ev.stream()));
        }
    }
}
