//! What every machine shares: the peer's identity and clock, the configuration, the one RNG,
//! the event store, the Vivaldi client, the send path ([`Links`]), the ordered outputs and the
//! counters.
//!
//! A machine's method takes `&mut Core<R>` (and `&` siblings it reads), as raft-rs's machines
//! take its `RaftCore`. Apart from the links, the core holds no deadlines and no per-peer
//! protocol tables: those belong to a machine. The single output buffer carries the order the
//! host relies on ("Persist before any Send that acknowledges it", `crate::io`).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use vecino_coords::Client;
use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
use vecino_proto::{AuthorKey, Bytes, Hlc, Identity, VerifiedEvent, Verifier};

use crate::config::Config;
use crate::io::{Output, Priority, StoreOp, Timer, TimerKind};
use crate::links::Links;
use crate::links::link::Meta;
use crate::store::{Insert, Store, StreamKey, event_key};
use crate::streams::{self, Keep};
use crate::time::Time;

/// Room kept for outputs between calls to `handle`.
const OUT_KEPT: usize = 256;
/// Share of a paced uplink that heartbeats may take: on a scarce shared medium (35 vehicles
/// on one 256 kbit/s radio leave 7.3 kbit/s each) a ping and a pong per link per second would
/// take it all, so the heartbeat period stretches until they fit in this share.
const HEARTBEAT_SHARE: f64 = 0.1;
/// Bytes on the wire of one ping and its pong (framing and the coordinate on one pong in four
/// included), for the budget above.
const HEARTBEAT_ROUND_BYTES: f64 = 50.0;

/// Counters an operator (or a test) reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames received from neighbours.
    pub frames_in: u64,
    /// Frames and events rejected, by reason label.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Log events (posts) forgotten to keep the store's budgets, by why: `author_share`,
    /// `total`, `age`, `count`; and `gap_given_up`: seqs never received, skipped so that an
    /// author whose share is full of posts waiting behind them is delivered again.
    pub log_forgotten: BTreeMap<&'static str, u64>,
    /// New events accepted.
    pub events_new: u64,
    /// Events received again.
    pub events_duplicate: u64,
    /// Of those, presence and status (latest-value) events pushed (not answers to a pull).
    pub events_duplicate_pushed_members: u64,
    /// Posts delivered to the application (own ones included).
    pub posts_delivered: u64,
    /// Grafts sent.
    pub grafts: u64,
    /// Prunes sent.
    pub prunes: u64,
    /// Frames retransmitted.
    pub retransmits: u64,
    /// Reliable frames received again (a retransmission whose first copy had arrived).
    pub frames_again: u64,
    /// Neighbours that numbered their frames from 1 again on a link taken for the old one
    /// (they restarted behind a connection this side had not seen close).
    pub link_restarts: u64,
    /// Version vectors sent.
    pub version_vectors: u64,
    /// Equivocations seen.
    pub equivocations: u64,
    /// Opinions this peer published, and links checked because another observer said their
    /// neighbour was down.
    pub opinions_published: u64,
    /// See `opinions_published`.
    pub links_checked: u64,
    /// Entries in the opinions published, and of those, subjects claimed down.
    pub opinion_entries: u64,
    /// See `opinion_entries`.
    pub opinion_entries_down: u64,
    /// Opinions published because a subject turned up or down, because the set of subjects
    /// (or a start or restart) changed, and because none had gone out for
    /// `Config::opinion_max_interval` (the first is in none of them).
    pub opinions_for_flips: u64,
    /// See `opinions_for_flips`.
    pub opinions_for_set: u64,
    /// See `opinions_for_flips`.
    pub opinions_for_age: u64,
    /// Plumtree optimisations: a lazy link with a much shorter path grafted, the eager one
    /// pruned.
    pub tree_swaps: u64,
    /// Newspapers that flooded their author's tree (`Config::tree_refresh_every`), counted at
    /// every peer that passed one on.
    pub tree_refreshes: u64,
    /// Author trees probed on a new link (`Config::probe_new_links_from`): a presence or
    /// status event pushed on it, the link turned eager on the author's tree.
    pub tree_probes: u64,
    /// Links dropped on purpose whose trees were probed again on the other links (see
    /// `Config::probe_new_links_from`).
    pub trees_reprobed: u64,
    /// Membership slots muted on a link (a refused presence or status event; see
    /// `broadcast`), and unmuted (the member came into scope).
    pub mutes: u64,
    /// See `mutes`.
    pub unmutes: u64,
    /// Routed events (postcards, receipts) handed to a next hop, counting every attempt.
    pub postcard_sends: u64,
    /// Of those, hops chosen greedily (the destination beyond the link state known here).
    pub postcard_greedy_hops: u64,
    /// Routing decisions that kept a routed event here (no neighbour makes progress: a cut,
    /// or link state that does not show a way yet), each retried a second later.
    pub postcard_holds: u64,
    /// Routed frames retransmitted on their own RTT timer (see `Link::routed_rto`).
    pub routed_retransmits: u64,
    /// Routed events that arrived again (after a reroute, a loop, a custodian's restart).
    pub postcard_duplicates: u64,
    /// Postcards delivered to this peer's application.
    pub postcards_delivered: u64,
    /// Receipts of this peer's postcards that came back.
    pub receipts: u64,
    /// Postcards in custody here dropped because their receipt passed by.
    pub postcards_cleared: u64,
    /// Postcards a next hop refused to take (custody space full), routed another way.
    pub postcards_refused_downstream: u64,
    /// Postcards delivered without their predecessor, after waiting `HOLD_MAX` for it.
    pub postcard_order_gave_up: u64,
    /// Frames queued for sending and their bytes, by frame kind (first sends only).
    pub queued: BTreeMap<&'static str, (u64, u64)>,
}

/// Points of misbehaviour past which a peer's link is dropped: a hundred invalid frames or
/// events in a burst (or a steadier stream of them, less the decay).
pub(crate) const MISBEHAVIOUR_LIMIT: f64 = 100.0;
/// Misbehaviour points halve in this long.
const SCORE_HALF_LIFE: Duration = Duration::from_secs(10);
/// Peers scored at most.
const MAX_SCORED: usize = 1_024;

/// A peer's misbehaviour points, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Score {
    points: f64,
    at: Time,
}

impl Score {
    /// The points decayed to `now`.
    fn at(&self, now: Time) -> f64 {
        let halves = now.saturating_since(self.at).div_duration_f64(SCORE_HALF_LIFE);
        self.points * 0.5f64.powf(halves)
    }
}

/// The shared resources of one peer's engine.
#[derive(Debug)]
pub(crate) struct Core<R> {
    pub(crate) identity: Identity,
    pub(crate) me: AuthorKey,
    pub(crate) config: Config,
    /// The one RNG: every draw of every machine, in the order the machines act.
    pub(crate) rng: R,
    verifier: Verifier,
    pub(crate) hlc: Hlc,
    /// The seq of this peer's latest event per stream.
    own_seq: BTreeMap<Stream, u64>,
    pub(crate) store: Store,
    pub(crate) coords: Client<AuthorKey>,
    pub(crate) links: Links,
    pub(crate) now: Time,
    pub(crate) started: Time,
    out: Vec<Output>,
    pub(crate) stats: EngineStats,
    /// Misbehaviour scores of the peers that sent this one invalid frames or events (see
    /// [`Core::misbehaved`]; at most [`MAX_SCORED`] peers).
    scores: BTreeMap<AuthorKey, Score>,
    /// Simulator only: signature checks shared by all simulated peers.
    #[cfg(feature = "sim")]
    sim_verified: Option<crate::sim::VerifyCache>,
}

impl<R> Core<R> {
    pub(crate) fn new(identity: Identity, config: Config, rng: R, now: Time) -> Self {
        Self {
            coords: Client::new(config.coords),
            store: Store::new(config.max_log_per_author, config.max_members, config.log_budget()),
            links: Links::new(config.uplink_bps, now),
            me: identity.public(),
            identity,
            config,
            rng,
            verifier: Verifier::default(),
            hlc: Hlc::default(),
            own_seq: BTreeMap::new(),
            now,
            started: now,
            out: Vec::new(),
            stats: EngineStats::default(),
            scores: BTreeMap::new(),
            #[cfg(feature = "sim")]
            sim_verified: None,
        }
    }

    /// Takes an event persisted before a restart back (this peer's own ones set its seqs).
    pub(crate) fn restore(&mut self, ev: VerifiedEvent) {
        if ev.author() == self.me {
            let seq = self.own_seq.entry(ev.stream()).or_default();
            *seq = (*seq).max(ev.seq());
        }
        self.hlc.observe(ev.hlc(), 0);
        let author = ev.author();
        if let Insert::New { .. } = self.store.insert(ev) {
            // A store written under larger budgets is brought within these (deletes go out
            // with the outputs of `new`).
            let kept_waiting = self.store.enforce_budget(author, false);
            debug_assert!(kept_waiting.is_empty(), "no gap is given up on a restart");
            self.forget_evicted();
        }
    }

    /// Tells the host to delete the log events the store forgot (budgets, retention), and
    /// counts them by why.
    pub(crate) fn forget_evicted(&mut self) {
        let skipped = self.store.take_skipped();
        if skipped > 0 {
            *self.stats.log_forgotten.entry("gap_given_up").or_default() += skipped;
        }
        for ((key, seq), why) in self.store.take_forgotten() {
            *self.stats.log_forgotten.entry(why.label()).or_default() += 1;
            self.emit(Output::Persist(StoreOp::Delete { author: key.0, stream: key.1, seq }));
        }
    }

    /// Simulator only: shares signature checks with the other peers of a simulation.
    #[cfg(feature = "sim")]
    pub(crate) fn share_verification(&mut self, cache: crate::sim::VerifyCache) {
        self.sim_verified = Some(cache);
        // Each envelope is verified by one peer of the simulation: a key cache per peer
        // (~450 kB each, most of the memory of a 10 000-peer run) would rarely be hit.
        self.verifier.set_key_cache_entries(0);
    }

    // ----- outputs -----

    pub(crate) fn emit(&mut self, o: Output) {
        self.out.push(o);
    }

    /// The outputs of one call to `handle`. A burst (a pull answered with thousands of
    /// events) must not keep its room for good: the buffer shrinks back before each call.
    pub(crate) fn outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Lets go of the room a burst took (called before each input).
    pub(crate) fn shrink_outputs(&mut self) {
        self.out.shrink_to(OUT_KEPT);
    }

    /// Counts an input rejected for `reason`.
    pub(crate) fn reject(&mut self, reason: &'static str) {
        *self.stats.rejected.entry(reason).or_default() += 1;
    }

    /// Counts a frame or event from `from` rejected for `reason`, against `from` when an
    /// honest peer would never send it (garbage, a bad signature: an honest neighbour verifies
    /// what it passes on; not a clock ahead or a stream unknown to this version). True when
    /// `from` is now past [`MISBEHAVIOUR_LIMIT`]: the link is to be dropped (gossipsub's
    /// graylist is the model). Scores halve every [`SCORE_HALF_LIFE`].
    pub(crate) fn misbehaved(&mut self, from: AuthorKey, reason: vecino_proto::Reason) -> bool {
        use vecino_proto::Reason;
        self.reject(reason.as_str());
        if matches!(reason, Reason::Clock | Reason::UnknownStream) {
            return false;
        }
        let now = self.now;
        if !self.scores.contains_key(&from) && self.scores.len() >= MAX_SCORED {
            // Room: the lowest score goes (decayed to now).
            let lowest = self
                .scores
                .iter()
                .min_by(|a, b| a.1.at(now).total_cmp(&b.1.at(now)))
                .map(|(k, _)| *k);
            if let Some(k) = lowest {
                self.scores.remove(&k);
            }
        }
        let score = self.scores.entry(from).or_insert(Score { points: 0.0, at: now });
        score.points = score.at(now) + 1.0;
        score.at = now;
        if score.points >= MISBEHAVIOUR_LIMIT {
            self.scores.remove(&from);
            return true;
        }
        false
    }

    pub(crate) fn schedule_tick(&mut self) {
        let at = self.now + self.config.tick;
        self.emit(Output::Schedule { at, timer: Timer(TimerKind::Tick) });
    }

    /// `bytes` handed to the host outside the links (a bye to a refused peer).
    pub(crate) fn host_took(&mut self, bytes: usize) {
        self.links.host_took(bytes, self.now, &self.config);
    }

    /// Hands the host what the pacing allows now (see [`Links::pump`]).
    pub(crate) fn pump(&mut self) {
        if self.links.pump(self.now, &self.config, &mut self.out) {
            self.reject("host_sent_missing");
        }
    }

    /// The heartbeat period: the configured one, stretched on a paced uplink so that a ping
    /// and a pong per link per period stay within [`HEARTBEAT_SHARE`] of it.
    pub(crate) fn heartbeat(&self) -> Duration {
        let base = self.config.heartbeat;
        let Some(bps) = self.config.uplink_bps.filter(|&b| b > 0) else { return base };
        let round_bits = self.links.len().max(1) as f64 * HEARTBEAT_ROUND_BYTES * 8.0;
        base.max(Duration::from_secs_f64(round_bits / (bps as f64 * HEARTBEAT_SHARE)))
    }
}

impl<R: Rng> Core<R> {
    // ----- sending -----

    /// Queues a frame to a neighbour; `reliable` frames get a link seq and are kept until
    /// acknowledged. Sends at once what the link's pacing allows.
    pub(crate) fn send(&mut self, to: AuthorKey, kind: Kind, class: Priority, reliable: bool) {
        self.send_with(to, kind, class, Meta { reliable, ..Meta::default() });
    }

    /// As [`Core::send`], with what the links must know of the frame (the events it
    /// carries, the latest-value stream it supersedes, whether it is an eager push).
    pub(crate) fn send_with(&mut self, to: AuthorKey, kind: Kind, class: Priority, meta: Meta) {
        let max = self.config.max_link_buffer_bytes;
        if self.links.push(to, kind, class, meta, max, &mut self.stats.queued) {
            self.pump();
        }
    }

    /// Sends events to one neighbour in frames of at most `max_events_per_frame` and about
    /// `frame_event_bytes` (a single larger event still goes alone); `hops` is this peer's
    /// hop count for them, if known. Events already on their way to it are not queued again.
    pub(crate) fn send_events(
        &mut self,
        to: AuthorKey,
        events: &[VerifiedEvent],
        sync: bool,
        hops: Option<u32>,
    ) {
        let max_events = self.config.max_events_per_frame.max(1);
        let max_bytes = self.links.frame_event_bytes(&to);
        let Some(link) = self.links.get(&to) else { return };
        let fresh: Vec<VerifiedEvent>;
        let events = if events.iter().any(|e| link.carries(&event_key(e))) {
            fresh = events.iter().filter(|e| !link.carries(&event_key(e))).cloned().collect();
            &fresh[..]
        } else {
            events
        };
        let mut chunks: Vec<&[VerifiedEvent]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, e) in events.iter().enumerate() {
            let len = e.envelope().len();
            if i > start && (i - start >= max_events || bytes + len > max_bytes) {
                chunks.push(&events[start..i]);
                (start, bytes) = (i, 0);
            }
            bytes += len;
        }
        if start < events.len() {
            chunks.push(&events[start..]);
        }
        for chunk in chunks {
            let class =
                chunk.iter().map(|e| streams::class_of(e.stream())).min().unwrap_or(Priority::Post);
            let envelopes = chunk.iter().map(|e| e.envelope().clone()).collect();
            // A frame carrying one latest-value event replaces an older one of its stream
            // still waiting in the queue.
            let supersedes: Option<StreamKey> = match chunk {
                [e] if streams::of(e.stream()).keep == Keep::Latest => {
                    Some((e.author(), e.stream()))
                }
                _ => None,
            };
            let carries = chunk.iter().map(event_key).collect();
            let kind = Kind::Events(pb::Events {
                envelopes,
                sync,
                hops,
                trail: Vec::new(),
                detours: None,
                copies: None,
            });
            let meta = Meta { reliable: true, supersedes, carries, push: !sync, custody: None };
            self.send_with(to, kind, class, meta);
        }
    }

    // ----- events -----

    /// Signs `body` as this peer's next event of its stream; an error (counted
    /// `own_event_invalid`) if it does not make a valid event.
    pub(crate) fn sign(&mut self, body: Body) -> Result<VerifiedEvent, vecino_proto::VerifyError> {
        let stream = vecino_proto::body_stream(&body);
        let next = self.own_seq.get(&stream).copied().unwrap_or(0) + 1;
        // A routed stream's events are forgotten once delivered, so a restart may not know
        // its last seq: its seqs follow the clock (ms) too, never reused by a restarted peer
        // while a copy of the old event may still be in someone's custody. (Its order is
        // carried by each postcard naming its predecessor, not by consecutive seqs.)
        let seq = if crate::streams::of(stream).travel == crate::streams::Travel::Routed {
            next.max(self.now.as_millis())
        } else {
            next
        };
        let hlc = self.hlc.tick(self.now.as_millis());
        match self.identity.sign(stream, seq, hlc, body) {
            Ok(ev) => {
                self.own_seq.insert(stream, seq);
                Ok(ev)
            }
            Err(e) => {
                self.reject("own_event_invalid");
                Err(e)
            }
        }
    }

    /// Verifies envelopes from the network (signatures first, then decoding).
    pub(crate) fn verify(
        &mut self,
        envelopes: Vec<Bytes>,
    ) -> Vec<Result<VerifiedEvent, vecino_proto::VerifyError>> {
        let now_ms = self.now.as_millis();
        #[cfg(feature = "sim")]
        if let Some(cache) = &self.sim_verified {
            return cache.verify(&mut self.verifier, envelopes, now_ms);
        }
        self.verifier.verify_batch(envelopes, now_ms)
    }
}

/// What the machines' unit tests drive them with: a `Core` alone, with links made by hand.
#[cfg(test)]
pub(crate) mod testing {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use vecino_coords::Coordinate;
    use vecino_proto::pb;

    use super::*;
    use crate::broadcast::tree::TreeEdges;
    use crate::links::link::Link;

    /// The test start time.
    pub(crate) const T0: Time = Time(1_763_702_400_000_000);

    /// The `n`th test identity.
    pub(crate) fn identity(n: u8) -> Identity {
        Identity::from_seed([n; 32])
    }

    /// The `n`th test key.
    pub(crate) fn key(n: u8) -> AuthorKey {
        identity(n).public()
    }

    /// A coordinate `x` ms along the first axis, with error `error`.
    pub(crate) fn at_ms(x: f64, error: f64) -> Coordinate {
        let mut v = [0.0; vecino_coords::DEFAULT_DIMENSIONS];
        v[0] = x / 1e3;
        Coordinate::from_parts(&v, 1e-5, error, 0.0).expect("a valid coordinate")
    }

    /// A hey-there of peer `n` (its `seq`th) at coordinate `c`.
    pub(crate) fn hey_there(n: u8, seq: u64, c: &Coordinate) -> VerifiedEvent {
        let body = Body::HeyThere(pb::HeyThere {
            coordinate: Some(crate::published::coord_to_pb(c)),
            addrs: vec![format!("/ip4/10.0.0.{n}/tcp/7301")],
            ..Default::default()
        });
        identity(n)
            .sign(Stream::HeyThere, seq, Hlc { ms: 1_763_702_400_000 + seq, counter: 0 }, body)
            .expect("a valid event")
    }

    /// Post `seq` of peer `n`.
    pub(crate) fn post(n: u8, seq: u64) -> VerifiedEvent {
        let body = Body::Post(pb::Post {
            topic: "t".into(),
            body: Bytes::from_static(b"x"),
            content_type: String::new(),
        });
        identity(n)
            .sign(Stream::Post, seq, Hlc { ms: 1_763_702_400_000 + seq, counter: 0 }, body)
            .expect("a valid event")
    }

    impl Core<ChaCha8Rng> {
        /// A core for peer 0 at [`T0`], seeded.
        pub(crate) fn for_test(seed: u64, config: Config) -> Self {
            Core::new(identity(0), config, ChaCha8Rng::seed_from_u64(seed), T0)
        }

        /// Links this peer to `peer` (connected, eager on every tree).
        pub(crate) fn link_to(&mut self, peer: AuthorKey) {
            self.links.insert(peer, Link::new(self.now, None, TreeEdges::all_eager()));
        }

        /// Moves the clock on.
        pub(crate) fn advance(&mut self, by: Duration) {
            self.now = self.now + by;
        }

        /// The outputs so far, taken.
        pub(crate) fn take(&mut self) -> Vec<Output> {
            self.out.drain(..).collect()
        }

        /// The frames sent so far (taken with the other outputs), decoded, with their
        /// receivers.
        pub(crate) fn sent(&mut self) -> Vec<(AuthorKey, Kind)> {
            self.take()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Send { to, frame, .. } => {
                        vecino_proto::decode_frame(frame).ok()?.kind.map(|k| (to, k))
                    }
                    _ => None,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::key;
    use vecino_proto::Reason;

    #[test]
    fn a_peer_is_dropped_after_a_hundred_invalid_inputs_and_its_score_decays() {
        let mut core = Core::for_test(1, Config::default());
        let (bad, slow) = (key(1), key(2));
        for _ in 0..99 {
            assert!(!core.misbehaved(bad, Reason::BadSignature));
        }
        assert!(core.misbehaved(bad, Reason::Malformed), "the hundredth");
        // Clocks ahead and streams unknown to this version are not held against anyone.
        for _ in 0..500 {
            assert!(!core.misbehaved(slow, Reason::Clock));
            assert!(!core.misbehaved(slow, Reason::UnknownStream));
        }
        // Sixty invalid inputs, then a half-life: thirty left, so seventy more are needed.
        for _ in 0..60 {
            assert!(!core.misbehaved(slow, Reason::Truncated));
        }
        core.advance(SCORE_HALF_LIFE);
        let n = (1..=100).find(|_| core.misbehaved(slow, Reason::Truncated)).unwrap();
        assert_eq!(n, 70);
        assert_eq!(core.stats.rejected["truncated"], 130);
    }
}
