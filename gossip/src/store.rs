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
    pub(crate) fn new(max_log: usize, max_authors: usize) -> Self {
        Self {
            latest: BTreeMap::new(),
            logs: BTreeMap::new(),
            digest: 0,
            lv_digest: 0,
            max_log,
            max_authors,
            authors: BTreeMap::new(),
        }
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
                log.events.insert(seq, ev);
                let old = log.contiguous;
                while log.events.contains_key(&(log.contiguous + 1)) {
                    log.contiguous += 1;
                }
                let new = log.contiguous;
                while log.events.len() > max_log {
                    log.events.pop_first();
                }
                let delivered = (new > old).then(|| old + 1..=new);
                if new > old {
                    self.set_head(&key, old, new);
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
        let mut s = Store::new(100, 100);
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
        let mut s1 = Store::new(100, 100);
        let mut s2 = Store::new(100, 100);
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
        let mut s = Store::new(3, 2);
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
}
