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
//! A vector names each member (the latest-value heads) by a 32-bit fingerprint of its key
//! under a salt drawn per vector (`pb::MemberHead`), 11 bytes a head instead of 40; the
//! receiver resolves the fingerprints of the members it holds and of its neighbours, and a
//! head it cannot resolve is of a member it does not hold. A fisheye pull lists hundreds of
//! members: at 1 000 peers this cut membership + control from 19.6 to 16.4 kbit/s per peer.
//!
//! Under fisheye membership (`crate::membership::fisheye`) neighbours hold different members, so a
//! fisheye peer's digest covers the log streams only (a digest equal to either of ours is a
//! match), its version-vector answers carry latest-value events in the other end's presumed
//! scope only (within this peer's radius of it, and within the radius its vector implies),
//! and it replies with its own vector only for what it keeps.

pub(crate) mod slot;

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, RngExt};
use vecino_proto::limits::MAX_HEADS_PER_FRAME;
use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, Bytes};

use crate::broadcast::head_key;
use crate::engine::core::Core;
use crate::io::Priority;
use crate::membership::fisheye::{Fisheye, PRESENCE};
use crate::store::StreamKey;
use crate::streams;

/// Events answered per version vector at most (the rest follow on the next exchange).
pub(crate) const MAX_SYNC_EVENTS: usize = 4_096;

/// Anti-entropy. Stateless: what it keeps per link is the link's [`slot::LinkSync`].
#[derive(Debug, Default)]
pub(crate) struct AntiEntropy;

impl AntiEntropy {
    /// A new or reset link: starts a version-vector exchange with the neighbour. Only the end
    /// with the lower key starts it (the other answers), so the two ends do not both send
    /// everything twice.
    pub(crate) fn open<R: Rng>(&self, core: &mut Core<R>, peer: AuthorKey) {
        if core.me < peer {
            self.send_heads(core, peer, false, false);
        }
    }

    /// The tick of a link whose digest is due: the next one is scheduled (jittered, so the
    /// links of a peer do not exchange in step) and this one sent.
    pub(crate) fn digest_due<R: Rng>(
        &self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
    ) {
        let jitter = core.rng.random_range(0.0..0.2);
        let next = core.now + core.config.sync_interval.mul_f64(1.0 + jitter);
        if let Some(l) = core.links.get_mut(&peer) {
            l.sync.next_digest_at(next);
        }
        self.send_digest(core, fisheye, peer);
    }

    fn send_digest<R: Rng>(&self, core: &mut Core<R>, fisheye: &Fisheye, peer: AuthorKey) {
        let (hash, heads) = if fisheye.active() {
            (core.store.log_digest(), core.store.log_head_count())
        } else {
            (core.store.digest(), core.store.head_count())
        };
        let digest = pb::Digest {
            hash: Bytes::copy_from_slice(&hash.to_le_bytes()),
            heads: u32::try_from(heads).unwrap_or(u32::MAX),
        };
        core.send(peer, Kind::Digest(digest), Priority::Control, false);
    }

    pub(crate) fn on_digest<R: Rng>(&self, core: &mut Core<R>, from: AuthorKey, d: &pb::Digest) {
        let Ok(bytes) = <[u8; 8]>::try_from(d.hash.as_ref()) else {
            core.reject("bad_digest");
            return;
        };
        let theirs = u64::from_le_bytes(bytes);
        let mine = core.store.digest();
        // A fisheye neighbour's digest covers the log streams alone.
        let matches = theirs == mine || theirs == core.store.log_digest();
        let Some(link) = core.links.get_mut(&from) else { return };
        // Stuck: neither side's digest moved over a whole interval, yet they differ. A digest
        // that differs only because an event is in flight (one side just received or
        // published it) is not stuck, and costs no version vectors (two of them, ~40 B per
        // head each way).
        let stuck = link.sync.digest_heard(theirs, mine);
        // A link still carrying unacknowledged or queued frames is catching up already.
        let idle = link.retained() == 0;
        if !matches && stuck && idle {
            self.send_heads(core, from, false, false);
        }
    }

    /// Sends every head (`presence_only`: of the latest-value streams only), in frames of
    /// at most `MAX_HEADS_PER_FRAME` of each kind. Latest-value heads name their author by
    /// fingerprint (`pb::MemberHead`), under a salt drawn for this vector.
    pub(crate) fn send_heads<R: Rng>(
        &self,
        core: &mut Core<R>,
        peer: AuthorKey,
        reply: bool,
        presence_only: bool,
    ) {
        core.stats.version_vectors += 1;
        let salt: u64 = core.rng.random();
        let mut heads: Vec<pb::StreamHead> = Vec::new();
        let mut members: Vec<pb::MemberHead> = Vec::new();
        let mut last: Option<(AuthorKey, u32)> = None; // heads come by author
        for ((author, stream), seq) in core.store.heads() {
            let policy = streams::of(stream);
            if !policy.anti_entropy {
                continue;
            }
            if policy.keep == streams::Keep::Latest {
                let member = match last {
                    Some((a, fp)) if a == author => fp,
                    _ => author.fingerprint(salt),
                };
                last = Some((author, member));
                members.push(pb::MemberHead { member, stream: stream as i32, seq });
            } else if !presence_only {
                heads.push(pb::StreamHead {
                    author: Bytes::copy_from_slice(author.as_bytes()),
                    stream: stream as i32,
                    seq,
                    hops: None,
                });
            }
        }
        let n = heads.len().max(members.len()).div_ceil(MAX_HEADS_PER_FRAME).max(1);
        let (mut heads, mut members) = (heads.into_iter(), members.into_iter());
        for i in 0..n {
            let vv = pb::VersionVector {
                heads: heads.by_ref().take(MAX_HEADS_PER_FRAME).collect(),
                partial: i + 1 < n,
                reply,
                presence_only,
                members: members.by_ref().take(MAX_HEADS_PER_FRAME).collect(),
                member_salt: salt,
            };
            core.send(peer, Kind::VersionVector(vv), Priority::Control, true);
        }
    }

    pub(crate) fn on_version_vector<R: Rng>(
        &self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        from: AuthorKey,
        vv: &pb::VersionVector,
    ) {
        let max_heads = core.config.max_members.saturating_mul(8);
        if !core.links.contains(&from) {
            return;
        }
        let members = resolve_members(core, vv);
        let Some(link) = core.links.get_mut(&from) else { return };
        let keyed = vv.heads.iter().filter_map(|h| Some((head_key(&h.author, h.stream)?, h.seq)));
        link.sync.vector_part(keyed.chain(members.resolved), members.unresolved, max_heads);
        if vv.partial {
            return;
        }
        let (theirs, unresolved) = link.sync.take_vector();
        let radius = fisheye.radius_of(core, from, &theirs);
        let events = core.store.missing_for(
            &theirs,
            MAX_SYNC_EVENTS,
            &|a| fisheye.answers(core, from, a, radius, listed(&theirs, a)),
            vv.presence_only,
        );
        if !events.is_empty() {
            core.send_events(from, &events, true, None);
        }
        // A fisheye peer lacks only what it would keep: posts, and members it holds or always
        // keeps (neighbours, landmarks); the rest of the other end's members are out of its
        // scope, and replying for them would cost a vector and an answer every time. A member
        // it could not resolve is one it does not hold: lacking, unless fisheye.
        let lacking =
            theirs.iter().any(|(k, &seq)| core.store.head(k) < seq && fisheye.would_keep(core, k))
                || (unresolved && !fisheye.active());
        if lacking && !vv.reply {
            self.send_heads(core, from, true, vv.presence_only);
        }
    }

    pub(crate) fn on_request<R: Rng>(
        &self,
        core: &mut Core<R>,
        from: AuthorKey,
        r: &pb::RequestRanges,
    ) {
        let mut events = Vec::new();
        for range in &r.ranges {
            let Some(key) = head_key(&range.author, range.stream) else {
                core.reject("bad_range");
                continue;
            };
            if range.from_seq > range.to_seq {
                continue;
            }
            let room = MAX_SYNC_EVENTS.saturating_sub(events.len()) as u64;
            let to = range.to_seq.min(range.from_seq.saturating_add(room.saturating_sub(1)));
            events.extend(core.store.range(&key, range.from_seq..=to));
        }
        if !events.is_empty() {
            core.send_events(from, &events, true, None);
        }
    }
}

/// The latest-value heads of a vector, their authors resolved among the members this peer
/// holds and its neighbours (each fingerprint computed under the vector's salt).
fn resolve_members<R>(core: &mut Core<R>, vv: &pb::VersionVector) -> Resolved {
    let mut out = Resolved::default();
    if vv.members.is_empty() {
        return out;
    }
    let salt = vv.member_salt;
    // A fingerprint two keys share under this salt resolves to neither.
    let mut known: HashMap<u32, Option<AuthorKey>> = HashMap::new();
    let mut last = None;
    let held = core.store.heads().filter(|((_, s), _)| streams::latest_value(*s));
    for a in held.map(|((a, _), _)| a).chain(core.links.peers()) {
        if last != Some(a) {
            let entry = known.entry(a.fingerprint(salt)).or_insert(Some(a));
            if *entry != Some(a) {
                *entry = None;
            }
            last = Some(a);
        }
    }
    let mut bad = 0;
    for m in &vv.members {
        let stream = streams::from_wire(m.stream).filter(|s| streams::latest_value(*s));
        match (stream, known.get(&m.member)) {
            (None, _) => bad += 1,
            (Some(stream), Some(Some(a))) => out.resolved.push(((*a, stream), m.seq)),
            (Some(_), _) => out.unresolved = true,
        }
    }
    for _ in 0..bad {
        core.reject("bad_member_head");
    }
    out
}

/// Whether a vector lists `author`'s presence or status (the other end holds the member).
fn listed(theirs: &BTreeMap<StreamKey, u64>, author: &AuthorKey) -> bool {
    PRESENCE.iter().any(|s| theirs.contains_key(&(*author, *s)))
}

/// A vector's latest-value heads, resolved (see [`resolve_members`]).
#[derive(Debug, Default)]
struct Resolved {
    resolved: Vec<(StreamKey, u64)>,
    /// Some named a member this peer neither holds nor links to.
    unresolved: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::{key, post};

    fn vectors(sent: &[(AuthorKey, Kind)]) -> usize {
        sent.iter().filter(|(_, k)| matches!(k, Kind::VersionVector(_))).count()
    }

    fn digest(hash: u64) -> pb::Digest {
        pb::Digest { hash: Bytes::copy_from_slice(&hash.to_le_bytes()), heads: 1 }
    }

    /// The digest rule: a neighbour's digest that differs from ours triggers a version
    /// vector only once neither digest moved over a whole interval (nothing is catching up by
    /// itself); an equal digest, or a malformed one, never does.
    #[test]
    fn a_vector_goes_out_only_when_differing_digests_are_stuck() {
        let mut core = Core::for_test(1, crate::Config::default());
        let peer = key(1);
        core.link_to(peer);
        let _ = core.store.insert(post(2, 1));
        let sync = AntiEntropy;
        sync.on_digest(&mut core, peer, &digest(42));
        assert_eq!(vectors(&core.sent()), 0, "first sight: maybe in flight");
        sync.on_digest(&mut core, peer, &digest(42));
        assert_eq!(vectors(&core.sent()), 1, "stuck");
        let ours = core.store.digest();
        sync.on_digest(&mut core, peer, &digest(ours));
        sync.on_digest(&mut core, peer, &digest(ours));
        assert_eq!(vectors(&core.sent()), 0, "equal");
        sync.on_digest(&mut core, peer, &pb::Digest { hash: Bytes::from_static(b"x"), heads: 0 });
        assert_eq!(core.stats.rejected.get("bad_digest"), Some(&1));
    }

    /// Only the end with the lower key opens an exchange; a vector listing less than this
    /// peer holds is answered with what it lacks.
    #[test]
    fn the_lower_key_opens_and_a_vector_is_answered_with_what_it_lacks() {
        let mut core = Core::for_test(2, crate::Config::default());
        let (a, b) = (key(1), key(3));
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        let me = core.me;
        core.link_to(a);
        core.link_to(b);
        let sync = AntiEntropy;
        sync.open(&mut core, low);
        sync.open(&mut core, high);
        let opened: Vec<AuthorKey> = core.sent().into_iter().map(|(to, _)| to).collect();
        let expected: Vec<AuthorKey> = [low, high].into_iter().filter(|p| me < *p).collect();
        assert_eq!(opened, expected);
        for seq in 1..=3 {
            let _ = core.store.insert(post(2, seq));
        }
        let fisheye = Fisheye::new(false);
        let vv = pb::VersionVector {
            heads: vec![pb::StreamHead {
                author: Bytes::copy_from_slice(key(2).as_bytes()),
                stream: pb::Stream::Post as i32,
                seq: 1,
                hops: None,
            }],
            ..Default::default()
        };
        sync.on_version_vector(&mut core, &fisheye, a, &vv);
        let answered: Vec<u64> = core
            .sent()
            .into_iter()
            .filter_map(|(_, k)| match k {
                Kind::Events(e) => Some(e.envelopes.len() as u64),
                _ => None,
            })
            .collect();
        assert_eq!(answered, vec![2], "posts 2 and 3");
    }
}
