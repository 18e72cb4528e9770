//! What a peer holds: every event it accepted, by (author, stream).
//!
//! Latest-value streams keep one event per (author, stream), the highest seq: a newer one
//! supersedes (and the host is told to delete) the older. Log streams keep every seq, and track
//! the *contiguous head*: the highest seq below which nothing is missing. Posts are delivered
//! to the application exactly as the contiguous head advances, which makes delivery gapless and
//! in order per author. The head of every (author, stream) is what peers exchange as a version
//! vector; [`Store::digest`] summarises all heads in one number, kept up to date incrementally.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use vecino_proto::pb::Stream;
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::streams;

/// Key of one stream of one author.
pub(crate) type StreamKey = (AuthorKey, Stream);

/// One event by its stream and seq (what links, grafts and hop counts track events by).
pub(crate) type EventKey = (StreamKey, u64);

/// The key of `ev`.
pub(crate) fn event_key(ev: &VerifiedEvent) -> EventKey {
    ((ev.author(), ev.stream()), ev.seq())
}

/// An event by the name announcements give it: its author's key prefix
/// ([`AuthorKey::prefix`]), its stream and seq. What the engine tracks announced, missing
/// events by, whether or not it knows their author.
pub(crate) type Named = (u64, Stream, u64);

/// The name of event `seq` of `key` (see [`Named`]).
pub(crate) fn named(key: &StreamKey, seq: u64) -> Named {
    (key.0.prefix(), key.1, seq)
}

/// Result of inserting an event.
#[derive(Debug)]
pub(crate) enum Insert {
    /// New to this store.
    New {
        /// For a latest-value stream, the seq it superseded.
        superseded: Option<u64>,
        /// For a log stream, the seqs that became contiguous (deliverable) by this insert.
        delivered: Option<RangeInclusive<u64>>,
    },
    /// Already held.
    Duplicate,
    /// Older than what a latest-value stream holds, or below a log's forgotten floor.
    Stale,
    /// Same (author, stream, seq) as a held event with different bytes.
    Equivocation(Box<VerifiedEvent>),
}

#[derive(Debug, Default)]
struct Log {
    events: BTreeMap<u64, VerifiedEvent>,
    /// Every seq in 1..=contiguous was held (some may since be forgotten).
    contiguous: u64,
}

/// What the log streams (posts) may hold: a share per author, a total, and an age. Past the
/// share or the total, the oldest *delivered* events go first (of the author over its share;
/// for the total, of the author holding most): a peer that posts without pause only churns its
/// own history, never anyone else's. What was forgotten stays forgotten (a copy offered again
/// is stale), so every peer's heads still converge. Custody streams (postcards) have budgets
/// of their own (`crate::postcards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBudget {
    /// Bytes of one author's log events held at most.
    pub(crate) per_author: usize,
    /// Bytes of all log events held at most.
    pub(crate) total: usize,
    /// A delivered event whose HLC is older than this (ms) is forgotten on the next sweep.
    pub(crate) retention_ms: u64,
}

impl LogBudget {
    /// No limits (tests).
    #[cfg(test)]
    pub(crate) const UNLIMITED: LogBudget =
        LogBudget { per_author: usize::MAX, total: usize::MAX, retention_ms: u64::MAX };
}

/// Bytes a held log event is counted for: its envelope, and about what holding it costs
/// besides (the decoded event, the map entry).
pub(crate) fn held_bytes(ev: &VerifiedEvent) -> usize {
    ev.envelope().len() + EVENT_OVERHEAD
}

/// The bookkeeping per held event, in bytes (measured order of magnitude, not exact).
const EVENT_OVERHEAD: usize = 256;

/// Why a log event was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Forgot {
    /// Its author's share was full.
    AuthorShare,
    /// The store's total was full.
    Total,
    /// Older than the retention.
    Age,
    /// Past the count per author (`max_log_per_author`).
    Count,
}

impl Forgot {
    /// The label it is counted under.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Forgot::AuthorShare => "author_share",
            Forgot::Total => "total",
            Forgot::Age => "age",
            Forgot::Count => "count",
        }
    }
}

/// The event store of one peer.
#[derive(Debug)]
pub(crate) struct Store {
    latest: BTreeMap<StreamKey, VerifiedEvent>,
    logs: BTreeMap<StreamKey, Log>,
    /// XOR of `head_hash` over every head.
    digest: u64,
    /// The same over the latest-value heads only (the membership view).
    lv_digest: u64,
    /// Bound: log events kept per (author, stream).
    max_log: usize,
    /// Bound: distinct authors.
    max_authors: usize,
    authors: BTreeMap<AuthorKey, usize>,
    budget: LogBudget,
    /// Bytes of log events held per author (an entry per author holding any: at most
    /// `max_authors`).
    shares: BTreeMap<AuthorKey, Share>,
    /// Bytes of log events held in all.
    log_bytes_total: usize,
    /// Log events forgotten since last drained, for the host to delete (drained after every
    /// insert and sweep: at most what one insert or sweep forgets).
    forgotten: Vec<(EventKey, Forgot)>,
    /// Seqs given up behind gaps, since last drained (see [`Store::enforce_budget`]).
    skipped: u64,
}

/// What one author's log events take of the budgets.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    /// Bytes held.
    held: usize,
    /// Of those, bytes waiting behind a gap (undelivered).
    waiting: usize,
}

/// FNV-1a over a head; stable across runs and platforms (unlike std's hasher).
fn head_hash(key: &StreamKey, head: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let stream = key.1 as i32;
    for b in key.0.as_bytes().iter().chain(&stream.to_le_bytes()).chain(&head.to_le_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Store {
    pub(crate) fn new(max_log: usize, max_authors: usize, budget: LogBudget) -> Self {
        Self {
            latest: BTreeMap::new(),
            logs: BTreeMap::new(),
            digest: 0,
            lv_digest: 0,
            max_log,
            max_authors,
            authors: BTreeMap::new(),
            budget,
            shares: BTreeMap::new(),
            log_bytes_total: 0,
            forgotten: Vec::new(),
            skipped: 0,
        }
    }

    /// Counts `n` bytes of `author`'s held (`add`) or let go of, in the log byte budgets;
    /// `waiting` when they are undelivered.
    fn account(&mut self, author: AuthorKey, n: usize, add: bool, waiting: bool) {
        let share = self.shares.entry(author).or_default();
        if add {
            share.held += n;
            share.waiting += if waiting { n } else { 0 };
            self.log_bytes_total += n;
        } else {
            share.held = share.held.saturating_sub(n);
            share.waiting = share.waiting.saturating_sub(if waiting { n } else { 0 });
            self.log_bytes_total = self.log_bytes_total.saturating_sub(n);
            if share.held == 0 {
                self.shares.remove(&author);
            }
        }
    }

    /// Advances the contiguous head of a log over what it holds; moves the bytes it passes
    /// from waiting to delivered; returns the (old, new) head.
    fn advance(&mut self, key: StreamKey) -> (u64, u64) {
        let log_stream = streams::of(key.1).keep == streams::Keep::Log;
        let Some(log) = self.logs.get_mut(&key) else { return (0, 0) };
        let old = log.contiguous;
        let mut passed = 0;
        while let Some(ev) = log.events.get(&(log.contiguous + 1)) {
            passed += held_bytes(ev);
            log.contiguous += 1;
        }
        let new = log.contiguous;
        if log_stream && passed > 0 {
            let share = self.shares.entry(key.0).or_default();
            share.waiting = share.waiting.saturating_sub(passed);
        }
        (old, new)
    }

    /// Forgets the oldest delivered log event of `author` (of the stream whose oldest is
    /// oldest); false when it holds none delivered.
    fn forget_oldest_of(&mut self, author: AuthorKey, why: Forgot) -> bool {
        let oldest = self
            .logs
            .range((author, Stream::Unspecified)..)
            .take_while(|(k, _)| k.0 == author)
            .filter(|(k, _)| streams::of(k.1).keep == streams::Keep::Log)
            .filter_map(|(k, l)| {
                let (seq, ev) = l.events.first_key_value()?;
                (*seq <= l.contiguous).then(|| (ev.hlc(), *k, *seq))
            })
            .min();
        let Some((_, key, seq)) = oldest else { return false };
        if let Some(ev) = self.logs.get_mut(&key).and_then(|l| l.events.remove(&seq)) {
            self.account(author, held_bytes(&ev), false, false);
            self.forgotten.push(((key, seq), why));
        }
        true
    }

    /// Gives up the first gap of `author`'s log that has posts waiting behind it: they become
    /// deliverable (returned, to be delivered), the seqs never received are counted skipped,
    /// and the head moves on as if they had come.
    fn give_up_gap(&mut self, author: AuthorKey) -> Option<(StreamKey, RangeInclusive<u64>)> {
        let (key, first) = self
            .logs
            .range_mut((author, Stream::Unspecified)..)
            .take_while(|(k, _)| k.0 == author)
            .filter(|(k, _)| streams::of(k.1).keep == streams::Keep::Log)
            .find_map(|(k, l)| {
                let first = *l.events.range(l.contiguous + 1..).next()?.0;
                Some((*k, first))
            })?;
        let log = self.logs.get_mut(&key)?;
        let before = log.contiguous;
        self.skipped += first - 1 - before;
        log.contiguous = first - 1;
        let (_, new) = self.advance(key);
        self.set_head(&key, before, new);
        Some((key, first..=new))
    }

    /// Keeps the log byte budgets after `author` added to its share, and returns what became
    /// deliverable doing so (to be delivered). While the author is over its share: if more
    /// than half of it waits behind a gap, the gap is given up (when the author's first posts
    /// are forgotten everywhere, a flood past every peer's budget, waiting would stall it for
    /// good); else its oldest delivered post goes. Then, while the total is over, the oldest
    /// delivered post of whoever holds most. With `give_up` false (a restart) gaps are kept.
    pub(crate) fn enforce_budget(
        &mut self,
        author: AuthorKey,
        give_up: bool,
    ) -> Vec<(StreamKey, RangeInclusive<u64>)> {
        let mut deliverable = Vec::new();
        let half = self.budget.per_author / 2;
        loop {
            let share = self.shares.get(&author).copied().unwrap_or_default();
            if share.held <= self.budget.per_author {
                break;
            }
            let gap_first = give_up && share.waiting > half;
            if gap_first && let Some(d) = self.give_up_gap(author) {
                deliverable.push(d);
            } else if !self.forget_oldest_of(author, Forgot::AuthorShare) {
                match if give_up { self.give_up_gap(author) } else { None } {
                    Some(d) => deliverable.push(d),
                    None => break,
                }
            }
        }
        while self.log_bytes_total > self.budget.total {
            let heaviest = self.shares.iter().max_by_key(|(a, s)| (s.held, **a)).map(|(a, _)| *a);
            let Some(heaviest) = heaviest else { break };
            if !self.forget_oldest_of(heaviest, Forgot::Total) {
                break;
            }
        }
        deliverable
    }

    /// Forgets every delivered log event older than the retention at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(self.budget.retention_ms);
        if cutoff == 0 {
            return;
        }
        let mut gone = Vec::new();
        for (key, log) in &mut self.logs {
            if streams::of(key.1).keep != streams::Keep::Log {
                continue;
            }
            while let Some(entry) = log.events.first_entry() {
                if *entry.key() > log.contiguous || entry.get().hlc().ms >= cutoff {
                    break;
                }
                let seq = *entry.key();
                gone.push(((*key, seq), entry.remove()));
            }
        }
        for (k, ev) in gone {
            self.account(ev.author(), held_bytes(&ev), false, false);
            self.forgotten.push((k, Forgot::Age));
        }
    }

    /// The log events forgotten since last asked, and why.
    pub(crate) fn take_forgotten(&mut self) -> Vec<(EventKey, Forgot)> {
        std::mem::take(&mut self.forgotten)
    }

    /// Seqs given up behind gaps since last asked.
    pub(crate) fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Bytes of log events held: of `author`, and in all.
    #[cfg(test)]
    pub(crate) fn log_bytes(&self, author: &AuthorKey) -> (usize, usize) {
        (self.shares.get(author).map_or(0, |s| s.held), self.log_bytes_total)
    }

    fn set_head(&mut self, key: &StreamKey, old: u64, new: u64) {
        let mut change = if new != 0 { head_hash(key, new) } else { 0 };
        if old != 0 {
            change ^= head_hash(key, old);
        }
        self.digest ^= change;
        if streams::latest_value(key.1) {
            self.lv_digest ^= change;
        }
    }

    /// True when a new author can be admitted (the store is bounded in authors).
    fn admit(&mut self, author: AuthorKey, is_new_stream: bool) -> bool {
        if !is_new_stream {
            return true;
        }
        let known = self.authors.contains_key(&author);
        if !known && self.authors.len() >= self.max_authors {
            return false;
        }
        *self.authors.entry(author).or_default() += 1;
        true
    }

    /// Inserts a verified event.
    pub(crate) fn insert(&mut self, ev: VerifiedEvent) -> Insert {
        let key = (ev.author(), ev.stream());
        match streams::of(ev.stream()).keep {
            streams::Keep::Latest => {
                let old = self.latest.get(&key).map(|e| (e.seq(), e.id()));
                match old {
                    Some((seq, id)) if seq == ev.seq() => {
                        if id == ev.id() {
                            Insert::Duplicate
                        } else {
                            Insert::Equivocation(Box::new(self.latest[&key].clone()))
                        }
                    }
                    Some((seq, _)) if seq > ev.seq() => Insert::Stale,
                    _ => {
                        if !self.admit(key.0, old.is_none()) {
                            return Insert::Stale;
                        }
                        let old_seq = old.map_or(0, |(s, _)| s);
                        self.set_head(&key, old_seq, ev.seq());
                        self.latest.insert(key, ev);
                        Insert::New { superseded: old.map(|(s, _)| s), delivered: None }
                    }
                }
            }
            streams::Keep::Log | streams::Keep::Custody => {
                let is_new = !self.logs.contains_key(&key);
                if !self.admit(key.0, is_new) {
                    return Insert::Stale;
                }
                let max_log = self.max_log;
                let log = self.logs.entry(key).or_default();
                let seq = ev.seq();
                if let Some(held) = log.events.get(&seq) {
                    return if held.id() == ev.id() {
                        Insert::Duplicate
                    } else {
                        Insert::Equivocation(Box::new(held.clone()))
                    };
                }
                if seq <= log.contiguous {
                    return Insert::Stale; // held once, since forgotten
                }
                let log_stream = streams::of(key.1).keep == streams::Keep::Log;
                let n = held_bytes(&ev);
                log.events.insert(seq, ev);
                if log_stream {
                    self.account(key.0, n, true, true);
                }
                let (old, new) = self.advance(key);
                let mut dropped = Vec::new();
                if let Some(log) = self.logs.get_mut(&key) {
                    while log.events.len() > max_log {
                        if let Some((s, e)) = log.events.pop_first() {
                            dropped.push((s, s > log.contiguous, e));
                        }
                    }
                }
                let delivered = (new > old).then(|| old + 1..=new);
                if new > old {
                    self.set_head(&key, old, new);
                }
                for (s, waiting, e) in dropped {
                    if log_stream {
                        self.account(key.0, held_bytes(&e), false, waiting);
                    }
                    self.forgotten.push(((key, s), Forgot::Count));
                }
                Insert::New { superseded: None, delivered }
            }
        }
    }

    /// The event at (author, stream, seq), if held.
    pub(crate) fn get(&self, key: &StreamKey, seq: u64) -> Option<&VerifiedEvent> {
        streams::policy(key.1)?;
        if streams::latest_value(key.1) {
            self.latest.get(key).filter(|e| e.seq() == seq)
        } else {
            self.logs.get(key)?.events.get(&seq)
        }
    }

    /// The latest-value event of (author, stream).
    pub(crate) fn latest(&self, key: &StreamKey) -> Option<&VerifiedEvent> {
        self.latest.get(key)
    }

    /// `author`'s hey-there and newspaper, in one look-up (they are next to each other in
    /// the map): the scope check asks for both on every member event it sees.
    pub(crate) fn presence(
        &self,
        author: AuthorKey,
    ) -> (Option<&VerifiedEvent>, Option<&VerifiedEvent>) {
        let (mut hey, mut paper) = (None, None);
        for ((_, s), ev) in
            self.latest.range((author, Stream::HeyThere)..=(author, Stream::Newspaper))
        {
            match s {
                Stream::HeyThere => hey = Some(ev),
                _ => paper = Some(ev),
            }
        }
        (hey, paper)
    }

    /// True when (author, stream, seq) is held or superseded: nothing to fetch.
    pub(crate) fn covers(&self, key: &StreamKey, seq: u64) -> bool {
        match streams::policy(key.1).map(|p| p.keep) {
            Some(streams::Keep::Latest) => self.latest.get(key).is_some_and(|e| e.seq() >= seq),
            Some(streams::Keep::Log | streams::Keep::Custody) => self
                .logs
                .get(key)
                .is_some_and(|l| seq <= l.contiguous || l.events.contains_key(&seq)),
            None => true,
        }
    }

    /// Head of one stream: latest seq, or a log's contiguous head; 0 if nothing.
    pub(crate) fn head(&self, key: &StreamKey) -> u64 {
        match streams::policy(key.1).map(|p| p.keep) {
            Some(streams::Keep::Latest) => self.latest.get(key).map_or(0, VerifiedEvent::seq),
            Some(streams::Keep::Log | streams::Keep::Custody) => {
                self.logs.get(key).map_or(0, |l| l.contiguous)
            }
            None => 0,
        }
    }

    /// Every head, in key order.
    pub(crate) fn heads(&self) -> impl Iterator<Item = (StreamKey, u64)> + '_ {
        let lv = self.latest.iter().map(|(k, e)| (*k, e.seq()));
        let logs =
            self.logs.iter().filter(|(_, l)| l.contiguous > 0).map(|(k, l)| (*k, l.contiguous));
        lv.chain(logs)
    }

    /// Summary of every head: equal digests mean equal heads.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// Summary of the latest-value heads alone (presence, status, departures: the
    /// membership view), whatever posts are held.
    #[cfg(feature = "sim")]
    pub(crate) fn membership_digest(&self) -> u64 {
        self.lv_digest
    }

    /// Summary of the log heads alone (posts, postcards): what every peer holds under
    /// fisheye membership, where the latest-value streams held differ from peer to peer.
    pub(crate) fn log_digest(&self) -> u64 {
        self.digest ^ self.lv_digest
    }

    /// Number of log heads (for the digest frame of a fisheye peer).
    pub(crate) fn log_head_count(&self) -> usize {
        self.logs.values().filter(|l| l.contiguous > 0).count()
    }

    /// The authors this store holds events of whose keys `prefix` names (an announcement's
    /// name for its author: see [`AuthorKey::prefix`]).
    pub(crate) fn authors_prefixed(&self, prefix: u64) -> impl Iterator<Item = AuthorKey> + '_ {
        let (lo, hi) = AuthorKey::prefix_bounds(prefix);
        self.authors.range(lo..=hi).map(|(a, _)| *a)
    }

    /// Forgets every latest-value event of `author` (fisheye eviction); returns the
    /// (stream, seq) forgotten, for the host to delete. Its log events stay.
    pub(crate) fn forget_latest(&mut self, author: AuthorKey) -> Vec<(Stream, u64)> {
        let keys: Vec<StreamKey> = self
            .latest
            .range((author, Stream::Unspecified)..)
            .map(|(k, _)| *k)
            .take_while(|k| k.0 == author)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(ev) = self.latest.remove(&key) {
                self.set_head(&key, ev.seq(), 0);
                out.push((key.1, ev.seq()));
                if let Some(n) = self.authors.get_mut(&author) {
                    *n -= 1;
                    if *n == 0 {
                        self.authors.remove(&author);
                    }
                }
            }
        }
        out
    }

    /// Number of heads (for the digest frame).
    pub(crate) fn head_count(&self) -> usize {
        self.latest.len() + self.logs.values().filter(|l| l.contiguous > 0).count()
    }

    /// Events a peer with heads `theirs` lacks: latest-value ones first, newest first, then
    /// log events in ascending seq per stream (the receiver delivers logs in order anyway). At
    /// most `limit` events.
    /// Latest-value events are only offered for authors `wanted` accepts (fisheye scope).
    pub(crate) fn missing_for(
        &self,
        theirs: &BTreeMap<StreamKey, u64>,
        limit: usize,
        wanted: &dyn Fn(&AuthorKey) -> bool,
        presence_only: bool,
    ) -> Vec<VerifiedEvent> {
        let mut lv: Vec<&VerifiedEvent> = self
            .latest
            .iter()
            .filter(|(k, e)| theirs.get(*k).copied().unwrap_or(0) < e.seq() && wanted(&k.0))
            .map(|(_, e)| e)
            .collect();
        lv.sort_by_key(|e| std::cmp::Reverse(e.hlc()));
        let mut out: Vec<VerifiedEvent> = lv.into_iter().take(limit).cloned().collect();
        if presence_only {
            return out;
        }
        for (k, log) in &self.logs {
            if out.len() >= limit {
                break;
            }
            let have = theirs.get(k).copied().unwrap_or(0);
            let room = limit - out.len();
            out.extend(log.events.range(have + 1..).take(room).map(|(_, e)| e.clone()));
        }
        out
    }

    /// Log events of one stream in `range` (for gap repair requests).
    pub(crate) fn range(&self, key: &StreamKey, range: RangeInclusive<u64>) -> Vec<VerifiedEvent> {
        self.logs
            .get(key)
            .map_or_else(Vec::new, |l| l.events.range(range).map(|(_, e)| e.clone()).collect())
    }

    /// The log events of one stream held in `range`, by reference (delivery).
    pub(crate) fn held(
        &self,
        key: &StreamKey,
        range: RangeInclusive<u64>,
    ) -> impl Iterator<Item = &VerifiedEvent> + '_ {
        self.logs
            .get(key)
            .into_iter()
            .flat_map(move |l| l.events.range(range.clone()))
            .map(|(_, e)| e)
    }

    /// Latest-value events, in key order.
    pub(crate) fn latest_events(&self) -> impl Iterator<Item = &VerifiedEvent> + '_ {
        self.latest.values()
    }

    /// Log events held (not forgotten), in all streams.
    #[cfg(test)]
    pub(crate) fn log_len(&self) -> usize {
        self.logs.values().map(|l| l.events.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::pb::{self, event::Body};
    use vecino_proto::{Bytes, Hlc, Identity};

    fn post(id: &Identity, seq: u64, text: &str) -> VerifiedEvent {
        let body = Body::Post(pb::Post {
            topic: "t".into(),
            body: Bytes::from(text.to_owned()),
            content_type: String::new(),
        });
        id.sign(Stream::Post, seq, Hlc { ms: seq, counter: 0 }, body).unwrap()
    }

    fn paper(id: &Identity, seq: u64) -> VerifiedEvent {
        let body = Body::Newspaper(pb::Newspaper { uptime_s: seq as u32, ..Default::default() });
        id.sign(Stream::Newspaper, seq, Hlc { ms: seq, counter: 0 }, body).unwrap()
    }

    #[test]
    fn log_delivers_contiguously_and_detects_equivocation() {
        let a = Identity::from_seed([1; 32]);
        let mut s = Store::new(100, 100, LogBudget::UNLIMITED);
        assert!(matches!(s.insert(post(&a, 2, "b")), Insert::New { delivered: None, .. }));
        match s.insert(post(&a, 1, "a")) {
            Insert::New { delivered: Some(r), .. } => assert_eq!(r, 1..=2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.insert(post(&a, 2, "b")), Insert::Duplicate));
        assert!(matches!(s.insert(post(&a, 2, "B")), Insert::Equivocation(_)));
        assert_eq!(s.head(&(a.public(), Stream::Post)), 2);
    }

    #[test]
    fn latest_value_supersedes_and_digest_tracks_heads() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let mut s1 = Store::new(100, 100, LogBudget::UNLIMITED);
        let mut s2 = Store::new(100, 100, LogBudget::UNLIMITED);
        s1.insert(paper(&a, 1));
        assert!(matches!(s1.insert(paper(&a, 3)), Insert::New { superseded: Some(1), .. }));
        assert!(matches!(s1.insert(paper(&a, 2)), Insert::Stale));
        s1.insert(paper(&b, 1));
        // Another order, same final heads, same digest.
        s2.insert(paper(&b, 1));
        s2.insert(paper(&a, 3));
        assert_eq!(s1.digest(), s2.digest());
        s2.insert(post(&a, 1, "x"));
        assert_ne!(s1.digest(), s2.digest());
        let theirs: BTreeMap<_, _> = s1.heads().collect();
        let missing = s2.missing_for(&theirs, 10, &|_| true, false);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].stream(), Stream::Post);
    }

    #[test]
    fn bounds_hold() {
        let mut s = Store::new(3, 2, LogBudget::UNLIMITED);
        let a = Identity::from_seed([1; 32]);
        for seq in 1..=10 {
            s.insert(post(&a, seq, "x"));
        }
        assert_eq!(s.log_len(), 3);
        assert_eq!(s.head(&(a.public(), Stream::Post)), 10);
        assert!(matches!(s.insert(post(&a, 4, "x")), Insert::Stale));
        s.insert(paper(&Identity::from_seed([2; 32]), 1));
        assert!(
            matches!(s.insert(paper(&Identity::from_seed([3; 32]), 1)), Insert::Stale),
            "third author refused"
        );
    }

    fn forgotten_seqs(s: &mut Store) -> Vec<(u64, Forgot)> {
        s.take_forgotten().into_iter().map(|((_, seq), why)| (seq, why)).collect()
    }

    #[test]
    fn an_author_past_its_share_forgets_its_own_oldest_and_no_one_elses() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let one = held_bytes(&post(&a, 1, &"x".repeat(1000)));
        let budget = LogBudget { per_author: 3 * one, total: usize::MAX, retention_ms: u64::MAX };
        let mut s = Store::new(100, 100, budget);
        s.insert(post(&b, 1, &"y".repeat(1000)));
        for seq in 1..=10 {
            assert!(matches!(s.insert(post(&a, seq, &"x".repeat(1000))), Insert::New { .. }));
            s.enforce_budget(a.public(), true);
        }
        assert_eq!(s.log_bytes(&a.public()).0, 3 * one, "a keeps its newest three");
        assert_eq!(s.log_bytes(&b.public()).0, one, "b untouched");
        let forgot = forgotten_seqs(&mut s);
        assert_eq!(forgot, (1..=7).map(|q| (q, Forgot::AuthorShare)).collect::<Vec<_>>());
        // Heads still advance (what peers compare), and a forgotten post offered again is stale.
        assert_eq!(s.head(&(a.public(), Stream::Post)), 10);
        assert!(matches!(s.insert(post(&a, 2, &"x".repeat(1000))), Insert::Stale));
        assert!(s.get(&(a.public(), Stream::Post), 8).is_some());
    }

    #[test]
    fn past_the_total_whoever_holds_most_forgets_first() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let one = held_bytes(&post(&a, 1, &"x".repeat(1000)));
        let budget = LogBudget { per_author: usize::MAX, total: 5 * one, retention_ms: u64::MAX };
        let mut s = Store::new(100, 100, budget);
        s.insert(post(&b, 1, &"y".repeat(1000)));
        s.enforce_budget(b.public(), true);
        for seq in 1..=6 {
            s.insert(post(&a, seq, &"x".repeat(1000)));
            s.enforce_budget(a.public(), true);
        }
        assert_eq!(s.log_bytes(&b.public()), (one, 5 * one), "b's one post kept");
        assert_eq!(forgotten_seqs(&mut s), vec![(1, Forgot::Total), (2, Forgot::Total)]);
    }

    #[test]
    fn posts_waiting_behind_a_gap_are_never_forgotten_and_past_the_share_the_gap_is_given_up() {
        let a = Identity::from_seed([1; 32]);
        let p = |seq| post(&a, seq, &"x".repeat(1000));
        let one = held_bytes(&p(1));
        let budget = LogBudget { per_author: 4 * one, total: usize::MAX, retention_ms: u64::MAX };
        let key = (a.public(), Stream::Post);
        // 1..=3 delivered; 4 missing; 5 and 6 wait behind it: over the share, but no more
        // than half of it waiting, so the oldest delivered goes.
        let mut s = Store::new(100, 100, budget);
        for seq in [1, 2, 3, 5, 6] {
            s.insert(p(seq));
            assert!(s.enforce_budget(a.public(), true).is_empty());
        }
        assert_eq!(forgotten_seqs(&mut s), vec![(1, Forgot::AuthorShare)]);
        assert_eq!(s.head(&key), 3);
        // The gap filler is always let in, and makes what waits deliverable.
        let mut filled = Store::new(100, 100, budget);
        for seq in [1, 2, 3, 5, 6] {
            filled.insert(p(seq));
            filled.enforce_budget(a.public(), true);
        }
        match filled.insert(p(4)) {
            Insert::New { delivered: Some(r), .. } => assert_eq!(r, 4..=6),
            other => panic!("{other:?}"),
        }
        // Without it: 7 puts more than half of the share behind the gap, so the gap is given
        // up: 5..=7 deliverable, 4 skipped, the head moves on as if 4 had come; then the
        // oldest delivered goes.
        s.insert(p(7));
        assert_eq!(s.enforce_budget(a.public(), true), vec![(key, 5..=7)]);
        assert_eq!(s.take_skipped(), 1);
        assert_eq!(s.head(&key), 7);
        assert_eq!(forgotten_seqs(&mut s), vec![(2, Forgot::AuthorShare)]);
        let mut whole = Store::new(100, 100, LogBudget::UNLIMITED);
        for seq in 1..=7 {
            whole.insert(p(seq));
        }
        assert_eq!(s.digest(), whole.digest(), "heads as if nothing had been missing");
        assert_eq!(s.log_bytes(&a.public()).0, 4 * one);
        // On a restart nothing is given up: waiting posts stay, delivered ones go.
        let mut restarted = Store::new(100, 100, budget);
        for seq in [1, 2, 5, 6, 7, 8] {
            restarted.insert(p(seq));
        }
        assert!(restarted.enforce_budget(a.public(), false).is_empty());
        assert_eq!(restarted.head(&key), 2);
        assert_eq!(
            forgotten_seqs(&mut restarted),
            vec![(1, Forgot::AuthorShare), (2, Forgot::AuthorShare)]
        );
    }

    #[test]
    fn delivered_posts_past_the_retention_are_forgotten() {
        let a = Identity::from_seed([1; 32]);
        let budget = LogBudget { per_author: usize::MAX, total: usize::MAX, retention_ms: 1_000 };
        let mut s = Store::new(100, 100, budget);
        // HLC ms = seq * 1: posts 1..=3 and 5 (4 missing: 5 undelivered).
        for seq in [1, 2, 3, 5] {
            s.insert(post(&a, seq, "x"));
        }
        s.expire(1_002);
        assert_eq!(forgotten_seqs(&mut s), vec![(1, Forgot::Age)]);
        s.expire(10_000);
        assert_eq!(forgotten_seqs(&mut s), vec![(2, Forgot::Age), (3, Forgot::Age)]);
        assert!(s.get(&(a.public(), Stream::Post), 5).is_some(), "undelivered kept");
        assert_eq!(s.log_bytes(&a.public()).0, held_bytes(&post(&a, 5, "x")));
    }
}
