//! Anti-entropy: what a peer does to catch a neighbour up, and be caught up.
//!
//! Live dissemination (broadcast) and per-link acknowledged delivery (link) lose nothing while
//! a link is connected or suspected. What they cannot cover — a neighbour that was
//! disconnected past the suspect timeout, a new neighbour, a peer that restarted — is covered
//! here, after the manner of RCM's recovery and Demers et al.'s anti-entropy ("Epidemic
//! algorithms for replicated database maintenance", PODC 1987):
//! - a new link, and a link back from *disconnected*, exchange version vectors (the head of
//!   every (author, stream)); each side sends what the other lacks, latest-value events newest
//!   first, then log events in order, paced by the link;
//! - every `sync_interval` neighbours exchange a digest of their heads; a digest that differs
//!   from ours while neither has changed since the last one (nothing is in flight: the two are
//!   not catching up by themselves) triggers a version vector exchange;
//! - a log event that arrives ahead of a gap makes the receiver ask the sender for the gap.
//!
//! Under fisheye membership (`crate::membership`) neighbours hold different members, so a
//! fisheye peer's digest covers the log streams only (a digest equal to either of ours is a
//! match), its version-vector answers carry latest-value events in the other end's presumed
//! scope only (within this peer's radius of it, and within the radius its vector implies),
//! and it replies with its own vector only for what it keeps.

use std::collections::BTreeMap;

use rand::Rng;
use vecino_proto::limits::MAX_HEADS_PER_FRAME;
use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, Bytes};

use crate::broadcast::head_key;
use crate::engine::{Engine, MAX_SYNC_EVENTS};
use crate::io::Priority;

impl<R: Rng> Engine<R> {
    pub(crate) fn send_digest(&mut self, peer: AuthorKey) {
        let (hash, heads) = if self.fisheye.active {
            (self.store.log_digest(), self.store.log_head_count())
        } else {
            (self.store.digest(), self.store.head_count())
        };
        let digest = pb::Digest {
            hash: Bytes::copy_from_slice(&hash.to_le_bytes()),
            heads: u32::try_from(heads).unwrap_or(u32::MAX),
        };
        self.send(peer, Kind::Digest(digest), Priority::Control, false);
    }

    pub(crate) fn on_digest(&mut self, from: AuthorKey, d: &pb::Digest) {
        let Ok(bytes) = <[u8; 8]>::try_from(d.hash.as_ref()) else {
            self.reject("bad_digest");
            return;
        };
        let theirs = u64::from_le_bytes(bytes);
        let mine = self.store.digest();
        // A fisheye neighbour's digest covers the log streams alone.
        let matches = theirs == mine || theirs == self.store.log_digest();
        let Some(link) = self.links.get_mut(&from) else { return };
        // Stuck: neither side's digest moved over a whole interval, yet they differ. A digest
        // that differs only because an event is in flight (one side just received or
        // published it) is not stuck, and costs no version vectors (two of them, ~40 B per
        // head each way).
        let stuck = link.their_digest == Some(theirs) && link.my_digest == Some(mine);
        link.their_digest = Some(theirs);
        link.my_digest = Some(mine);
        // A link still carrying unacknowledged or queued frames is catching up already.
        let idle = link.retained() == 0;
        if !matches && stuck && idle {
            self.send_version_vector(from, false);
        }
    }

    /// Sends every head, in frames of at most `MAX_HEADS_PER_FRAME`.
    pub(crate) fn send_version_vector(&mut self, peer: AuthorKey, reply: bool) {
        self.send_heads(peer, reply, false);
    }

    /// Sends every head (`presence_only`: of the latest-value streams only), in frames of
    /// at most `MAX_HEADS_PER_FRAME`.
    pub(crate) fn send_heads(&mut self, peer: AuthorKey, reply: bool, presence_only: bool) {
        self.stats.version_vectors += 1;
        let heads: Vec<pb::StreamHead> = self
            .store
            .heads()
            .filter(|((_, stream), _)| {
                !presence_only || stream.kind() == Some(vecino_proto::StreamKind::LatestValue)
            })
            .map(|((author, stream), seq)| pb::StreamHead {
                author: Bytes::copy_from_slice(author.as_bytes()),
                stream: stream as i32,
                seq,
                hops: None,
            })
            .collect();
        let chunks: Vec<Vec<pb::StreamHead>> =
            heads.chunks(MAX_HEADS_PER_FRAME).map(<[_]>::to_vec).collect();
        let n = chunks.len().max(1);
        let mut chunks = chunks.into_iter();
        for i in 0..n {
            let heads = chunks.next().unwrap_or_default();
            let vv = pb::VersionVector { heads, partial: i + 1 < n, reply, presence_only };
            self.send(peer, Kind::VersionVector(vv), Priority::Control, true);
        }
    }

    pub(crate) fn on_version_vector(&mut self, from: AuthorKey, vv: &pb::VersionVector) {
        let max_heads = self.config.max_members.saturating_mul(8);
        let Some(link) = self.links.get_mut(&from) else { return };
        for h in &vv.heads {
            if let Some(key) = head_key(&h.author, h.stream)
                && (link.vv_in.len() < max_heads || link.vv_in.contains_key(&key))
            {
                link.vv_in.insert(key, h.seq);
            }
        }
        if vv.partial {
            return;
        }
        let theirs: BTreeMap<_, _> = std::mem::take(&mut link.vv_in);
        let radius = self.radius_of(from, &theirs);
        let events = self.store.missing_for(
            &theirs,
            MAX_SYNC_EVENTS,
            &|a| self.answers(from, a, radius),
            vv.presence_only,
        );
        if !events.is_empty() {
            self.send_events(from, &events, true, None);
        }
        // A fisheye peer lacks only what it would keep: posts, and members it holds or always
        // keeps (neighbours, landmarks); the rest of the other end's members are out of its
        // scope, and replying for them would cost a vector and an answer every time.
        let lacking = theirs.iter().any(|(k, &seq)| self.store.head(k) < seq && self.would_keep(k));
        if lacking && !vv.reply {
            self.send_heads(from, true, vv.presence_only);
        }
    }

    pub(crate) fn on_request(&mut self, from: AuthorKey, r: &pb::RequestRanges) {
        let mut events = Vec::new();
        for range in &r.ranges {
            let Some(key) = head_key(&range.author, range.stream) else {
                self.reject("bad_range");
                continue;
            };
            if range.from_seq > range.to_seq {
                continue;
            }
            let room = MAX_SYNC_EVENTS.saturating_sub(events.len()) as u64;
            let to = range.to_seq.min(range.from_seq.saturating_add(room.saturating_sub(1)));
            events.extend(self.store.range(&key, range.from_seq..=to));
        }
        if !events.is_empty() {
            self.send_events(from, &events, true, None);
        }
    }
}
