//! The custody table: routed events (postcards, receipts) this peer keeps until the next hop
//! has taken them, bounded in count, in bytes and per author.

use std::collections::BTreeMap;

use vecino_coords::Coordinate;
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::store::EventKey;
use crate::time::Time;

/// Neighbours a routed event remembers not to use as first hops (they refused it, or it
/// came back from them), at most, each for [`AVOID_FOR`].
pub(crate) const MAX_AVOID: usize = 8;
/// How long a neighbour that refused a routed event, or sent it back, is not asked again.
pub(crate) const AVOID_FOR: std::time::Duration = std::time::Duration::from_secs(20);

/// Neighbours a replicated event remembers having had a copy, at most (a peer's links are
/// fewer).
pub(crate) const MAX_GIVEN: usize = 64;

/// Where a routed event in custody stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Kept here: routed again at `retry` (or sooner, when a link comes up).
    Held {
        /// The next attempt.
        retry: Time,
    },
    /// Handed to `peer` at `at`, not acknowledged yet.
    Sent {
        /// The next hop.
        peer: AuthorKey,
        /// When it was queued for it.
        at: Time,
    },
}

/// A routed event in custody.
#[derive(Debug, Clone)]
pub(crate) struct Custody {
    pub(crate) ev: VerifiedEvent,
    /// Its destination.
    pub(crate) to: AuthorKey,
    /// The destination's coordinate as the event says it (for routers that do not hold it).
    pub(crate) hint: Option<Coordinate>,
    /// When it is dropped wherever it is.
    pub(crate) expires: Time,
    /// The peers it crossed before this one, by key prefix, this peer excluded.
    pub(crate) trail: Vec<u64>,
    /// How many of those hops were detours (see `pb::Events::detours`).
    pub(crate) detours: u32,
    pub(crate) state: State,
    /// First hops not to use for it, and since when (at most [`MAX_AVOID`]).
    avoid: Vec<(AuthorKey, Time)>,
    /// Times it was handed to a next hop from here.
    pub(crate) sends: u32,
    /// Under a replicating router: the copies this peer may still hand on (spray) …
    pub(crate) copies: u32,
    /// … and the neighbours that had one from it or gave it (at most [`MAX_GIVEN`]).
    pub(crate) given: Vec<AuthorKey>,
}

impl Custody {
    /// A new custody entry, held, to be routed at `retry`.
    pub(crate) fn new(
        ev: VerifiedEvent,
        to: AuthorKey,
        hint: Option<Coordinate>,
        expires: Time,
        trail: Vec<u64>,
        retry: Time,
    ) -> Self {
        Self {
            ev,
            to,
            hint,
            expires,
            trail,
            detours: 0,
            state: State::Held { retry },
            avoid: Vec::new(),
            sends: 0,
            copies: 0,
            given: Vec::new(),
        }
    }

    /// Remembers not to hand it to `peer` for [`AVOID_FOR`] from `now`.
    pub(crate) fn avoid(&mut self, peer: AuthorKey, now: Time) {
        self.avoid.retain(|(p, _)| *p != peer);
        if self.avoid.len() >= MAX_AVOID {
            self.avoid.remove(0);
        }
        self.avoid.push((peer, now));
    }

    /// Remembers that `peer` has a copy (under a replicating router).
    pub(crate) fn given(&mut self, peer: AuthorKey) {
        if !self.given.contains(&peer) && self.given.len() < MAX_GIVEN {
            self.given.push(peer);
        }
    }

    /// The neighbours not to hand it to at `now`.
    pub(crate) fn avoided(&self, now: Time) -> Vec<AuthorKey> {
        self.avoid
            .iter()
            .filter(|(_, at)| now.saturating_since(*at) < AVOID_FOR)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// Why custody of an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Past the total count or bytes.
    Total,
    /// Past the author's share.
    Author,
}

/// The custody table (bounded by `max`, `max_bytes`, `per_author`).
#[derive(Debug)]
pub(crate) struct Table {
    entries: BTreeMap<EventKey, Custody>,
    bytes: usize,
    per_author: BTreeMap<AuthorKey, usize>,
    max: usize,
    max_bytes: usize,
    per_author_max: usize,
}

impl Table {
    pub(crate) fn new(max: usize, max_bytes: usize, per_author_max: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            per_author: BTreeMap::new(),
            max,
            max_bytes,
            per_author_max,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of envelopes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn contains(&self, key: &EventKey) -> bool {
        self.entries.contains_key(key)
    }

    pub(crate) fn get_mut(&mut self, key: &EventKey) -> Option<&mut Custody> {
        self.entries.get_mut(key)
    }

    pub(crate) fn get(&self, key: &EventKey) -> Option<&Custody> {
        self.entries.get(key)
    }

    /// Whether `ev` would fit, and if not why (its author's share first; this peer's own
    /// events, `own`, have no share but the whole table).
    pub(crate) fn room_for(&self, ev: &VerifiedEvent, own: bool) -> Result<(), Full> {
        let author = ev.author();
        if !own && self.per_author.get(&author).copied().unwrap_or(0) >= self.per_author_max {
            return Err(Full::Author);
        }
        if self.entries.len() >= self.max || self.bytes + ev.envelope().len() > self.max_bytes {
            return Err(Full::Total);
        }
        Ok(())
    }

    /// Takes `c` in; the caller checked [`Table::room_for`].
    pub(crate) fn insert(&mut self, key: EventKey, c: Custody) {
        let len = c.ev.envelope().len();
        if let Some(old) = self.entries.insert(key, c) {
            self.forget(&old);
        }
        self.bytes += len;
        *self.per_author.entry(key.0.0).or_default() += 1;
    }

    pub(crate) fn remove(&mut self, key: &EventKey) -> Option<Custody> {
        let c = self.entries.remove(key)?;
        self.forget(&c);
        Some(c)
    }

    fn forget(&mut self, c: &Custody) {
        self.bytes -= c.ev.envelope().len();
        let author = c.ev.author();
        if let Some(n) = self.per_author.get_mut(&author) {
            *n -= 1;
            if *n == 0 {
                self.per_author.remove(&author);
            }
        }
    }

    /// Keys of the entries `pick` selects, in key order.
    pub(crate) fn keys_where(&self, pick: impl Fn(&Custody) -> bool) -> Vec<EventKey> {
        self.entries.iter().filter(|(_, c)| pick(c)).map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::post;

    fn held(ev: VerifiedEvent) -> Custody {
        let to = ev.author();
        Custody::new(ev, to, None, Time(0), Vec::new(), Time(0))
    }

    /// The table refuses past an author's share and past its total, and its accounting
    /// follows inserts and removals.
    #[test]
    fn custody_is_bounded_per_author_and_in_total() {
        let mut t = Table::new(3, 1 << 20, 2);
        let key = |e: &VerifiedEvent| ((e.author(), e.stream()), e.seq());
        for seq in 1..=2 {
            let ev = post(1, seq);
            assert_eq!(t.room_for(&ev, false), Ok(()));
            t.insert(key(&ev), held(ev));
        }
        assert_eq!(t.room_for(&post(1, 3), false), Err(Full::Author));
        assert_eq!(t.room_for(&post(1, 3), true), Ok(()), "own events have no share");
        let other = post(2, 1);
        t.insert(key(&other), held(other));
        assert_eq!(t.room_for(&post(3, 1), false), Err(Full::Total));
        let bytes = t.bytes();
        assert!(t.remove(&key(&post(1, 1))).is_some());
        assert_eq!(t.room_for(&post(1, 3), false), Ok(()));
        assert!(t.bytes() < bytes);
        let mut c = held(post(4, 1));
        for n in 0..10 {
            c.avoid(crate::engine::core::testing::key(n), Time(0));
        }
        assert_eq!(c.avoided(Time(0)).len(), MAX_AVOID);
        assert!(c.avoided(Time(0) + AVOID_FOR).is_empty(), "for a while only");
    }
}
