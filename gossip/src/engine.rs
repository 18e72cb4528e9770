//! The engine: one peer's whole protocol state, driven by [`Protocol::handle`].
//!
//! What happens to an input, in brief (the modules hold the details):
//! - a frame is bounded and pre-scanned (`vecino_proto::decode_frame`); every rejection is
//!   counted by reason and nothing else happens;
//! - events inside are verified as a batch, stored ([`crate::store`]), persisted, delivered
//!   (posts in per-author order), and passed on Plumtree-style ([`crate::broadcast`]): pushed
//!   to eager neighbours, announced to lazy ones, grafted when an announcement is not followed
//!   by the event in time, pruned when a pushed event was a duplicate;
//! - every neighbour link keeps its RCM status, RTT, acknowledged-delivery buffers and paced
//!   queues ([`crate::link`]); the tick sends heartbeats, marks silent links suspected and then
//!   disconnected, retransmits, flushes acknowledgements and lazy announcements, and exchanges
//!   digests and version vectors for anti-entropy ([`crate::sync`]);
//! - pongs carry coordinates: each RTT sample updates this peer's Vivaldi coordinate, which it
//!   publishes in newspapers when it moved (edge delta gating) or at the latest every
//!   `newspaper_max_interval`;
//! - the overlay keeps `active_view` neighbours: the nearest known peers by coordinate plus a
//!   few random long links, dialled from the membership learnt by gossip.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_coords::{Client, Coordinate, CoordinateError};
use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
use vecino_proto::{
    AuthorKey, Bytes, FraudProof, Hlc, Identity, VerifiedEvent, Verifier, decode_frame,
};

use crate::config::Config;
use crate::io::{
    AppEvent, Command, DeliveredPost, Input, LinkInfo, LinkStatus, MemberChange, Output, Priority,
    Protocol, StoreOp, Timer, TimerKind,
};
use crate::link::{Link, Meta, Pacer};
use crate::membership::{Fisheye, SETTLED_ERROR, Scope};
use crate::store::{Insert, Named, Store, StreamKey, event_key, named};
use crate::time::Time;

/// Announced-but-missing events tracked for grafting at most.
pub(crate) const MAX_MISSING: usize = 65_536;
/// Neighbours remembered as announcers of one missing event.
pub(crate) const MAX_ANNOUNCERS: usize = 4;
/// Duplicates pushed on a link within this long of its return from an outage do not prune it.
pub(crate) const PRUNE_GRACE: Duration = Duration::from_secs(10);
/// Acknowledge at once when this many reliable frames wait for an acknowledgement.
const ACK_BATCH: u32 = 8;
/// With host back-pressure, how long the host may go without reporting a sent frame while
/// some are outstanding before the engine stops waiting for it.
const HOST_SILENT: Duration = Duration::from_secs(30);
/// Seqs of one gap noted as missing at once (the rest follow as the gap closes).
const MAX_GAP_NOTED: usize = 256;
/// First redial wait after a transport closes; it doubles with each closure, up to
/// `REDIAL_MAX`, and is forgotten once a link stays up for `REDIAL_RESET`.
const REDIAL_FIRST: Duration = Duration::from_millis(500);
const REDIAL_MAX: Duration = Duration::from_secs(60);
const REDIAL_RESET: Duration = Duration::from_secs(30);
/// Shortest wait of a pacing wake-up (bounds the timers a backlog costs).
const PACE_MIN: Duration = Duration::from_millis(2);
/// `Bye.reason`: a surplus link.
const BYE_SURPLUS: u32 = 1;
/// Bye reason: the sender is at `max_links` and did not take the link.
const BYE_FULL: u32 = 2;
/// A peer that said bye, or was told it, is not dialled again for this long.
const BYE_QUIET: Duration = Duration::from_secs(600);
/// A peer refused for want of room (`max_links`) waits this long before trying again.
const BYE_FULL_QUIET: Duration = Duration::from_secs(30);
/// A link said bye to is closed from this end if the neighbour has not closed it by then.
const BYE_WAIT: Duration = Duration::from_secs(5);
/// Peers with a redial backoff remembered at most.
const MAX_REDIAL: usize = 1_024;
/// Pending dials at most.
const MAX_DIALS: usize = 16;
/// Give up on a dial that produced no link after this long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the overlay and the newspaper are looked after.
const MAINTENANCE: Duration = Duration::from_secs(1);
/// A fisheye peer publishes its first settled coordinate at most this soon after the last
/// newspaper.
const SETTLE_PAPER_MIN: Duration = Duration::from_secs(5);
/// Bounds of the event bytes one frame carries (see `Engine::frame_event_bytes`).
const MIN_FRAME_EVENT_BYTES: usize = 1_024;
const MAX_FRAME_EVENT_BYTES: usize = 16_384;
/// Events whose hop count is remembered (graft answers carry it), the oldest forgotten first.
pub(crate) const RECENT_HOPS: usize = 16_384;
/// Events answered per version vector at most (the rest follow on the next exchange).
pub(crate) const MAX_SYNC_EVENTS: usize = 4_096;
/// Room kept for outputs between calls to `handle`.
const OUT_KEPT: usize = 256;
/// Share of a paced uplink that heartbeats may take: on a scarce shared medium (35 vehicles
/// on one 256 kbit/s radio leave 7.3 kbit/s each) a ping and a pong per link per second would
/// take it all, so the heartbeat period stretches until they fit in this share.
const HEARTBEAT_SHARE: f64 = 0.1;
/// Bytes on the wire of one ping and its pong (framing and the coordinate on one pong in four
/// included), for the budget above.
const HEARTBEAT_ROUND_BYTES: f64 = 50.0;

/// An event announced by lazy neighbours that this peer does not hold yet.
#[derive(Debug)]
pub(crate) struct Missing {
    /// Its author, once known (an announcement names it by key prefix only).
    pub(crate) author: Option<AuthorKey>,
    pub(crate) announcers: Vec<AuthorKey>,
    pub(crate) deadline: Time,
    /// The stream's head when last looked at: if it moves, the stream is flowing and the
    /// graft waits.
    pub(crate) progress: u64,
    /// When it was first announced.
    pub(crate) since: Time,
    /// The announcer with the lowest hop count, and that count.
    pub(crate) best: Option<(AuthorKey, u32)>,
    /// Grafts sent for it so far (each doubles the wait for the next).
    pub(crate) grafted: u32,
}

impl Missing {
    /// Makes `announcer` the next one grafted from (added if new, the others keeping their
    /// order), by `deadline` at the latest.
    pub(crate) fn graft_next_from(&mut self, announcer: AuthorKey, deadline: Time) {
        self.announcers.retain(|a| *a != announcer);
        self.announcers.insert(0, announcer);
        self.deadline = self.deadline.min(deadline);
    }
}

/// Counters an operator (or a test) reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames received from neighbours.
    pub frames_in: u64,
    /// Frames and events rejected, by reason label.
    pub rejected: BTreeMap<&'static str, u64>,
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
    /// Version vectors sent.
    pub version_vectors: u64,
    /// Equivocations seen.
    pub equivocations: u64,
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
    /// Frames queued for sending and their bytes, by frame kind (first sends only).
    pub queued: BTreeMap<&'static str, (u64, u64)>,
}

/// A peer's view of one neighbour, for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    /// The neighbour.
    pub peer: AuthorKey,
    /// RCM status.
    pub status: LinkStatus,
    /// Since when.
    pub since: Time,
    /// Median measured RTT.
    pub rtt: Option<Duration>,
    /// Plumtree: the trees (of [`vecino_proto::limits::TREE_SLOTS`]) this link is eager on.
    pub eager_trees: u32,
    /// Bytes queued and frames unacknowledged.
    pub buffered: (usize, usize),
}

impl LinkView {
    /// Plumtree: eager on at least one tree (else lazy on all).
    pub fn eager(&self) -> bool {
        self.eager_trees > 0
    }
}

/// One peer's protocol engine. See the crate docs and [`crate::io`] for how to drive it.
#[derive(Debug)]
pub struct Engine<R> {
    pub(crate) identity: Identity,
    pub(crate) me: AuthorKey,
    pub(crate) config: Config,
    pub(crate) rng: R,
    pub(crate) verifier: Verifier,
    pub(crate) hlc: Hlc,
    pub(crate) store: Store,
    pub(crate) links: BTreeMap<AuthorKey, Link>,
    pub(crate) coords: Client<AuthorKey>,
    pub(crate) missing: BTreeMap<Named, Missing>,
    pub(crate) dialing: BTreeMap<AuthorKey, Time>,
    pub(crate) own_seq: BTreeMap<Stream, u64>,
    pub(crate) last_paper: Option<(Time, Coordinate)>,
    /// The next newspaper that reports a move waits [`Engine::newspaper_spacing`] × this,
    /// drawn from U[1, 1.5) at each newspaper, so that a fleet started together does not
    /// publish (and, with `Config::tree_refresh_every`, flood its trees) in step.
    paper_jitter: f64,
    pub(crate) next_maintenance: Time,
    pub(crate) leaving: bool,
    pub(crate) started: Time,
    pub(crate) out: Vec<Output>,
    pub(crate) now: Time,
    pub(crate) stats: EngineStats,
    /// Redial backoff per peer: attempts and the earliest next dial (at most `MAX_REDIAL`).
    pub(crate) redial: BTreeMap<AuthorKey, (u32, Time)>,
    /// Links this peer said bye on, and when; nothing more is sent on them (bounded by the
    /// links).
    pub(crate) leaving_links: BTreeMap<AuthorKey, Time>,
    /// When the pacing wake-up is due, if one is scheduled.
    pace_at: Option<Time>,
    /// Node-wide egress pacing.
    pub(crate) uplink: Pacer,
    /// Bytes handed to the host and not reported sent yet (with `host_queue_bytes`), and
    /// when the host last reported.
    host_unsent: usize,
    host_heard: Time,
    pub(crate) round_robin: usize,
    /// When a new event last arrived from a neighbour (grafts wait while events flow).
    pub(crate) last_new_event: Option<Time>,
    /// This peer's hop count for recently received events (at most `RECENT_HOPS`).
    pub(crate) recent: BTreeMap<(StreamKey, u64), u32>,
    pub(crate) recent_order: VecDeque<(StreamKey, u64)>,
    /// Fisheye membership state (`crate::membership`).
    pub(crate) fisheye: Fisheye,
    /// Broadcasts on the shared medium (`crate::medium`).
    pub(crate) medium: crate::medium::Medium,
    /// Proximity swaps (`crate::overlay`).
    pub(crate) swaps: crate::overlay::Swaps,
    /// Simulator only: signature checks shared by all simulated peers.
    #[cfg(feature = "sim")]
    pub(crate) sim_verified: Option<crate::sim::VerifyCache>,
}

/// Coordinates travel in milliseconds on the wire; the Vivaldi client works in seconds.
fn coord_to_pb(c: &Coordinate) -> pb::Coordinate {
    let (vec, height, error, adjustment) = c.to_f32_parts();
    pb::Coordinate {
        vec: vec.into_iter().map(|x| x * 1e3).collect(),
        height: height * 1e3,
        error,
        adjustment: adjustment * 1e3,
    }
}

/// Counts `bytes` handed to the host at `now` (`unsent`, and since when it was last heard).
fn handed(unsent: &mut usize, heard: &mut Time, now: Time, bytes: usize) {
    if *unsent == 0 {
        *heard = now;
    }
    *unsent += bytes;
}

pub(crate) fn coord_from_pb(c: &pb::Coordinate) -> Option<Coordinate> {
    // On the stack: this runs for every scope check of every member.
    let mut vec = [0f32; vecino_coords::DEFAULT_DIMENSIONS];
    if c.vec.len() != vec.len() {
        return None;
    }
    for (v, x) in vec.iter_mut().zip(&c.vec) {
        *v = x / 1e3;
    }
    Coordinate::from_f32_parts(&vec, c.height / 1e3, c.error, c.adjustment / 1e3).ok()
}

/// The coordinate a hey-there or newspaper carries, not decoded.
pub(crate) fn coordinate_field(ev: &VerifiedEvent) -> Option<&pb::Coordinate> {
    match ev.body() {
        Body::HeyThere(h) => h.coordinate.as_ref(),
        Body::Newspaper(n) => n.coordinate.as_ref(),
        _ => None,
    }
}

/// The coordinate a member published: its newspaper's, else its hey-there's.
pub(crate) fn published(
    paper: Option<&pb::Coordinate>,
    hey: Option<&pb::Coordinate>,
) -> Option<Coordinate> {
    paper.or(hey).and_then(coord_from_pb)
}

/// The coordinate a member last published (see [`published`]).
pub(crate) fn published_coordinate(store: &Store, peer: AuthorKey) -> Option<Coordinate> {
    let field = |stream| store.latest(&(peer, stream)).and_then(coordinate_field);
    published(field(Stream::Newspaper), field(Stream::HeyThere))
}

impl<R: Rng> Engine<R> {
    /// A new engine for `identity` at `now`, holding `stored` (events persisted before a
    /// restart, verified by the host with `Verifier::verify_stored`; empty on first start).
    ///
    /// The host then feeds [`Input::Start`], which returns the engine's first outputs (its
    /// tick, its hey-there and newspaper).
    pub fn new(
        identity: Identity,
        config: Config,
        rng: R,
        now: Time,
        stored: Vec<VerifiedEvent>,
    ) -> Self {
        let me = identity.public();
        let config_uplink = config.uplink_bps;
        let mut engine = Self {
            coords: Client::new(config.coords),
            store: Store::new(config.max_log_per_author, config.max_members),
            identity,
            me,
            config,
            rng,
            verifier: Verifier::default(),
            hlc: Hlc::default(),
            links: BTreeMap::new(),
            missing: BTreeMap::new(),
            dialing: BTreeMap::new(),
            own_seq: BTreeMap::new(),
            last_paper: None,
            paper_jitter: 1.0,
            next_maintenance: now,
            leaving: false,
            started: now,
            out: Vec::new(),
            now,
            stats: EngineStats::default(),
            uplink: Pacer::new(config_uplink, now),
            redial: BTreeMap::new(),
            leaving_links: BTreeMap::new(),
            pace_at: None,
            host_unsent: 0,
            host_heard: now,
            round_robin: 0,
            last_new_event: None,
            recent: BTreeMap::new(),
            recent_order: VecDeque::new(),
            fisheye: Fisheye::default(),
            medium: crate::medium::Medium::default(),
            swaps: crate::overlay::Swaps::default(),
            #[cfg(feature = "sim")]
            sim_verified: None,
        };
        for ev in stored {
            if ev.author() == me {
                let seq = engine.own_seq.entry(ev.stream()).or_default();
                *seq = (*seq).max(ev.seq());
            }
            engine.hlc.observe(ev.hlc(), 0);
            let _ = engine.store.insert(ev);
        }
        if let Some(c) = published_coordinate(&engine.store, me) {
            let _ = engine.coords.set_coordinate(c);
        }
        engine.fisheye.active =
            engine.config.fisheye_from_start && engine.config.fisheye_members > 0;
        engine.publish_hey_there();
        engine.publish_newspaper();
        engine.schedule_tick();
        engine
    }

    /// This peer's key.
    pub fn id(&self) -> AuthorKey {
        self.me
    }

    /// This peer's current (application-level) coordinate.
    pub fn coordinate(&self) -> Coordinate {
        *self.coords.app_coordinate()
    }

    /// Resumes this peer's coordinate from one the host saved before a restart (fresher than
    /// the last published newspaper, which is gated on movement). Refused if it does not check.
    pub fn resume_coordinate(&mut self, c: Coordinate) -> Result<(), CoordinateError> {
        self.coords.set_coordinate(c)
    }

    /// Simulator only: shares signature checks with the other peers of a simulation (see
    /// `sim::VerifyCache`; the node verifies every event itself).
    #[cfg(feature = "sim")]
    pub fn share_verification(&mut self, cache: crate::sim::VerifyCache) {
        self.sim_verified = Some(cache);
        // Each envelope is verified by one peer of the simulation: a key cache per peer
        // (~450 kB each, most of the memory of a 10 000-peer run) would rarely be hit.
        self.verifier.set_key_cache_entries(0);
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The neighbour links.
    pub fn links(&self) -> Vec<LinkView> {
        self.links
            .iter()
            .map(|(p, l)| LinkView {
                peer: *p,
                status: l.status,
                since: l.status_since,
                rtt: l.rtt(),
                eager_trees: l.trees.eager_count(),
                buffered: l.buffered(),
            })
            .collect()
    }

    /// Whether the link to `peer` pushes `author`'s posts eagerly (an edge of the tree they
    /// travel on); `None` without a link.
    pub fn eager_on(&self, peer: &AuthorKey, author: &AuthorKey) -> Option<bool> {
        self.links.get(peer).map(|l| l.trees.eager(self.travel_tree(author, Stream::Post)))
    }

    /// Peers known by their presence or status (this peer excluded), with the latest of each
    /// and whether they said chau since.
    pub fn members(&self) -> Vec<Member> {
        let mut out: BTreeMap<AuthorKey, Member> = BTreeMap::new();
        for ev in self.store.latest_events() {
            if ev.author() == self.me {
                continue;
            }
            let m = out.entry(ev.author()).or_insert_with(|| Member {
                peer: ev.author(),
                hey_there: None,
                newspaper: None,
                left: false,
            });
            match ev.body() {
                Body::HeyThere(h) => m.hey_there = Some(h.clone()),
                Body::Newspaper(n) => m.newspaper = Some(n.clone()),
                _ => {}
            }
        }
        for m in out.values_mut() {
            m.left = self.has_left(m.peer);
        }
        out.into_values().filter(|m| m.hey_there.is_some() || m.newspaper.is_some()).collect()
    }

    pub(crate) fn has_left(&self, peer: AuthorKey) -> bool {
        let Some(chau) = self.store.latest(&(peer, Stream::Chau)) else { return false };
        let alive = [Stream::HeyThere, Stream::Newspaper]
            .iter()
            .filter_map(|s| self.store.latest(&(peer, *s)))
            .map(VerifiedEvent::hlc)
            .max();
        alive.is_none_or(|h| chau.hlc() > h)
    }

    fn known_count(&self) -> usize {
        let mut last = None;
        let mut n = 0;
        for ev in self.store.latest_events() {
            let peer = ev.author();
            let presence = matches!(ev.stream(), Stream::HeyThere | Stream::Newspaper);
            if peer == self.me || !presence || last == Some(peer) {
                continue;
            }
            last = Some(peer);
            if !self.has_left(peer) {
                n += 1;
            }
        }
        n
    }

    // ----- outputs -----

    pub(crate) fn emit(&mut self, o: Output) {
        self.out.push(o);
    }

    fn schedule_tick(&mut self) {
        let at = self.now + self.config.tick;
        self.emit(Output::Schedule { at, timer: Timer(TimerKind::Tick) });
    }

    pub(crate) fn reject(&mut self, reason: &'static str) {
        *self.stats.rejected.entry(reason).or_default() += 1;
    }

    /// Queues a frame to a neighbour; `reliable` frames get a link seq and are kept until
    /// acknowledged. Sends at once what the link's pacing allows.
    pub(crate) fn send(&mut self, to: AuthorKey, kind: Kind, class: Priority, reliable: bool) {
        self.send_superseding(to, kind, class, reliable, None, (Vec::new(), false));
    }

    /// As `send`; a frame carrying only the latest-value event of `supersedes` replaces an
    /// older one of the same stream still waiting in the link's queue. `carries`: the events
    /// in the frame and whether it is an eager push (see [`Link::push`]).
    fn send_superseding(
        &mut self,
        to: AuthorKey,
        kind: Kind,
        class: Priority,
        reliable: bool,
        supersedes: Option<StreamKey>,
        (carries, push): (Vec<crate::store::EventKey>, bool),
    ) {
        let max = self.config.max_link_buffer_bytes;
        let Some(link) = self.links.get_mut(&to) else { return };
        let label = kind_label(&kind);
        // The link seq and floor are put in front when the frame leaves.
        let body = unsequenced(kind);
        let counter = self.stats.queued.entry(label).or_default();
        counter.0 += 1;
        counter.1 += body.len() as u64;
        link.push(body, class, max, Meta { reliable, supersedes, carries, push });
        self.pump();
    }

    /// Sends what the pacing allows now: most urgent class first, links served round-robin
    /// within a class, each link within its own bucket and all of them within the node's
    /// uplink bucket (links share the host's uplink or radio).
    pub(crate) fn pump(&mut self) {
        let now = self.now;
        self.uplink.refill(now);
        let host_queue = self.config.host_queue_bytes;
        if host_queue.is_some()
            && self.host_unsent > 0
            && now.saturating_since(self.host_heard) > HOST_SILENT
        {
            // A host that stopped reporting would stall every link: carry on as if it had.
            self.host_unsent = 0;
            self.reject("host_sent_missing");
        }
        let n = self.links.len();
        if n == 0 && self.medium.is_empty() {
            return;
        }
        // Links in round-robin order, starting one further each time (borrowed once: the
        // pump runs after every send).
        let mut links: Vec<(&AuthorKey, &mut Link)> = self.links.iter_mut().collect();
        links.rotate_left(self.round_robin % n.max(1));
        // Room in the host's queue (with back-pressure) or the uplink's bucket, and a frame
        // handed over taking it (the fields are passed in: the links are borrowed).
        let room = |unsent: usize, uplink: &Pacer| match host_queue {
            Some(max) => unsent < max,
            None => uplink.allows(),
        };
        let take = |unsent: &mut usize, heard: &mut Time, uplink: &mut Pacer, bytes: usize| {
            if host_queue.is_some() {
                handed(unsent, heard, now, bytes);
            } else {
                uplink.spend(bytes);
            }
        };
        'classes: for class in Priority::ALL {
            // The shared medium first: one broadcast serves every neighbour on it.
            loop {
                if !room(self.host_unsent, &self.uplink) {
                    break 'classes;
                }
                let Some(frame) = self.medium.pop(class) else { break };
                take(&mut self.host_unsent, &mut self.host_heard, &mut self.uplink, frame.len());
                self.medium.sent += 1;
                self.out.push(Output::Broadcast { frame, class });
            }
            loop {
                let mut sent = false;
                for (peer, link) in &mut links {
                    if !room(self.host_unsent, &self.uplink) {
                        break 'classes;
                    }
                    if let Some(frame) = link.pop(class, now) {
                        let len = frame.len();
                        take(&mut self.host_unsent, &mut self.host_heard, &mut self.uplink, len);
                        self.out.push(Output::Send { to: **peer, frame, class });
                        sent = true;
                    }
                }
                if !sent {
                    break;
                }
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        self.schedule_pace();
    }

    /// `bytes` handed to the host, to be reported sent (with back-pressure; else nothing).
    fn host_took(&mut self, bytes: usize) {
        if self.config.host_queue_bytes.is_some() {
            handed(&mut self.host_unsent, &mut self.host_heard, self.now, bytes);
        }
    }

    /// Frames left waiting for a bucket: wake up when the first of them may leave, rather
    /// than at the next tick (which capped a backlog's drain at a burst per tick: ~2 Mbit/s
    /// on a 10 Mbit/s uplink).
    fn schedule_pace(&mut self) {
        let now = self.now;
        let uplink = match self.config.host_queue_bytes {
            // The host's report of a sent frame wakes the pump.
            Some(max) if self.host_unsent >= max => return,
            Some(_) => Duration::ZERO,
            None => self.uplink.wait(now),
        };
        let medium = (!self.medium.is_empty()).then_some(Duration::ZERO);
        let Some(wait) = self
            .links
            .values()
            .filter_map(|l| l.ready_in(now))
            .chain(medium)
            .map(|w| w.max(uplink))
            .min()
        else {
            return;
        };
        let at = self.now + wait.max(PACE_MIN);
        if self.pace_at.is_some_and(|t| t <= at && t > self.now) {
            return; // an earlier wake-up is already scheduled
        }
        self.pace_at = Some(at);
        self.emit(Output::Schedule { at, timer: Timer(TimerKind::Pace) });
    }

    /// Bytes of events one frame carries at most: 100 ms of the slower of the node's egress
    /// and the link's rate, within [`MIN_FRAME_EVENT_BYTES`, `MAX_FRAME_EVENT_BYTES`]. A
    /// frame leaves whole, and while it does nothing else (no heartbeat, no acknowledgement)
    /// leaves the node: a 20 kB batch on a 51 kbit/s share of a radio silences the node for
    /// 3 s, longer than the neighbours' suspicion delay.
    fn frame_event_bytes(&self, to: AuthorKey) -> usize {
        let link = self.links.get(&to).and_then(Link::rate_bps);
        let rate = match (self.uplink.rate_bps, link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        rate.map_or(MAX_FRAME_EVENT_BYTES, |r| usize::try_from(r / 80).unwrap_or(usize::MAX))
            .clamp(MIN_FRAME_EVENT_BYTES, MAX_FRAME_EVENT_BYTES)
    }

    /// Sends events to one neighbour in frames of at most `max_events_per_frame` and about
    /// `frame_event_bytes` (a single larger event still goes alone); `hops` is this peer's
    /// hop count for them, if known.
    pub(crate) fn send_events(
        &mut self,
        to: AuthorKey,
        events: &[VerifiedEvent],
        sync: bool,
        hops: Option<u32>,
    ) {
        let max_events = self.config.max_events_per_frame.max(1);
        let max_bytes = self.frame_event_bytes(to);
        // Events already on their way to this neighbour are not queued a second time.
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
            let class = chunk.iter().map(|e| class_of(e.stream())).min().unwrap_or(Priority::Post);
            let envelopes = chunk.iter().map(|e| e.envelope().clone()).collect();
            let supersedes = match chunk {
                [e] if e.kind() == vecino_proto::StreamKind::LatestValue => {
                    Some((e.author(), e.stream()))
                }
                _ => None,
            };
            let ids = chunk.iter().map(event_key).collect();
            let kind = Kind::Events(pb::Events { envelopes, sync, hops });
            self.send_superseding(to, kind, class, true, supersedes, (ids, !sync));
        }
    }

    // ----- publishing -----

    fn publish(&mut self, body: Body) -> Option<VerifiedEvent> {
        let stream = vecino_proto::body_stream(&body);
        let seq = self.own_seq.get(&stream).copied().unwrap_or(0) + 1;
        let hlc = self.hlc.tick(self.now.as_millis());
        match self.identity.sign(stream, seq, hlc, body) {
            Ok(ev) => {
                self.own_seq.insert(stream, seq);
                self.accept(None, &ev, Via::Pulled, None);
                Some(ev)
            }
            Err(_) => {
                self.reject("own_event_invalid");
                None
            }
        }
    }

    fn publish_hey_there(&mut self) {
        let body = Body::HeyThere(pb::HeyThere {
            coordinate: Some(coord_to_pb(self.coords.app_coordinate())),
            addrs: self.config.addrs.clone(),
            name: self.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.started.as_millis(),
        });
        self.publish(body);
    }

    fn publish_newspaper(&mut self) {
        let coordinate = *self.coords.app_coordinate();
        let connected = self.links.values().filter(|l| l.status == LinkStatus::Connected).count();
        let body = Body::Newspaper(pb::Newspaper {
            coordinate: Some(coord_to_pb(&coordinate)),
            uptime_s: u32::try_from(self.now.saturating_since(self.started).as_secs())
                .unwrap_or(u32::MAX),
            restarts: 0,
            barrio: 0,
            connected: u32::try_from(connected).unwrap_or(u32::MAX),
            flags: 0,
        });
        self.last_paper = Some((self.now, coordinate));
        self.paper_jitter = self.rng.random_range(1.0..1.5);
        self.publish(body);
    }

    fn maybe_publish_newspaper(&mut self) {
        let Some((at, published)) = self.last_paper else {
            self.publish_newspaper();
            return;
        };
        let moved_ms = published.raw_distance_secs(self.coords.app_coordinate()) * 1e3;
        let age = self.now.saturating_since(at);
        // A fisheye peer's first settled coordinate is news at once: until then, peers
        // beyond its neighbours cannot place it (crate::membership).
        let settled_now = self.fisheye.active
            && published.error > SETTLED_ERROR
            && self.coords.app_coordinate().error <= SETTLED_ERROR
            && age >= SETTLE_PAPER_MIN;
        let spacing = self.newspaper_spacing().mul_f64(self.paper_jitter);
        if (moved_ms > self.config.newspaper_move_ms && age >= spacing)
            || age >= self.config.newspaper_max_interval
            || settled_now
        {
            self.publish_newspaper();
        }
    }

    /// The least time between two newspapers that report a move: `newspaper_min_interval`,
    /// longer for a fisheye peer that holds many members (`Config::newspapers_heard_per_s`).
    pub(crate) fn newspaper_spacing(&self) -> Duration {
        let min = self.config.newspaper_min_interval;
        let rate = self.config.newspapers_heard_per_s;
        if !self.fisheye.active || rate <= 0.0 {
            return min;
        }
        let by_members = Duration::from_secs_f64(self.fisheye.held as f64 / rate);
        min.max(by_members).min(self.config.newspaper_max_interval)
    }

    // ----- accepting events -----

    /// Takes a verified event (own, or from `from`, whose hop count for it was `hops`) into the
    /// store, delivers and forwards it.
    pub(crate) fn accept(
        &mut self,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
        via: Via,
        hops: Option<u32>,
    ) {
        let pushed = via == Via::Pushed;
        if !self.admits(from, ev) {
            // Outside this peer's fisheye: neither kept nor passed on, and the link that
            // pushed it is muted for the author's presence and status. (Pruning the tree
            // itself, as for a duplicate, cut the tree under the posts: on planet 662 k
            // grafts and 3.9 copies per delivery in 180 s with one shared tree.)
            if pushed && let Some(from) = from {
                self.mute_membership(from, &ev.author());
            }
            return;
        }
        let key = (ev.author(), ev.stream());
        self.hlc.observe(ev.hlc(), self.now.as_millis());
        // This peer's hop count for the event: 0 for its own, one more than the sender's.
        let hops = match from {
            None => Some(0),
            Some(_) => hops.map(|h| h.saturating_add(1)),
        };
        match self.store.insert(ev.clone()) {
            Insert::New { superseded, delivered } => {
                self.stats.events_new += 1;
                if from.is_some() {
                    self.last_new_event = Some(self.now);
                }
                if let Some(h) = hops {
                    self.remember_hops((key, ev.seq()), h);
                }
                if pushed && let Some(from) = from {
                    self.note_entry(ev, from);
                }
                if let Some(m) = self.missing.remove(&named(&key, ev.seq()))
                    && pushed
                    && let Some(from) = from
                {
                    let tree = self.travel_tree(&key.0, key.1);
                    if let (Some(h), Some((lazy, a))) = (hops, m.best) {
                        self.maybe_optimize(tree, lazy, a, from, h);
                    }
                    let lead = self.now.saturating_since(m.since);
                    // An author announces its own events to the links beyond its
                    // `root_fanout`, one hop ahead of the relayed push by design: not a faster
                    // path to swap to.
                    if let Some(&lazy) = m.announcers.first()
                        && !(lazy == key.0 && self.config.root_fanout > 0)
                    {
                        self.maybe_swap_faster(tree, lazy, lead, from);
                    }
                }
                self.emit(Output::Persist(StoreOp::Put(ev.clone())));
                if let Some(seq) = superseded {
                    self.emit(Output::Persist(StoreOp::Delete {
                        author: key.0,
                        stream: key.1,
                        seq,
                    }));
                }
                self.on_membership(ev, superseded.is_none());
                if let Some(range) = delivered {
                    self.deliver_posts(key, range);
                } else if ev.kind() == vecino_proto::StreamKind::Log
                    && let Some(from) = from
                {
                    // A gap: what precedes this event is probably on its way by another path;
                    // if it is not by the graft timeout, it is grafted from the sender.
                    let head = self.store.head(&key);
                    let first_missing = head + 1;
                    for seq in (first_missing..ev.seq()).take(MAX_GAP_NOTED) {
                        self.note_missing(key, seq, from, None);
                    }
                }
                self.forward(from, ev, hops, matches!(via, Via::Broadcast { .. }));
            }
            Insert::Duplicate => {
                self.stats.events_duplicate += 1;
                if let (Via::Broadcast { own_queued }, Some(from)) = (via, from) {
                    self.heard_again(from, ev, own_queued);
                }
                if pushed && ev.kind() == vecino_proto::StreamKind::LatestValue {
                    self.stats.events_duplicate_pushed_members += 1;
                }
                // A duplicate pushed by a link that just came back is its outage backlog, not
                // a redundant tree edge: only prune links that have been up for a while.
                let settled = |l: &Link| {
                    l.status == LinkStatus::Connected
                        && l.healed_at.is_none_or(|t| self.now.saturating_since(t) >= PRUNE_GRACE)
                };
                if pushed
                    && let Some(from) = from
                    && self.links.get(&from).is_some_and(settled)
                {
                    self.prune(from, self.travel_tree(&key.0, key.1));
                }
            }
            Insert::Stale => {}
            Insert::Equivocation(other) => {
                self.stats.equivocations += 1;
                if let Some(proof) = FraudProof::from_pair(ev, &other) {
                    self.emit(Output::Deliver(AppEvent::Equivocation(Box::new(proof))));
                }
            }
        }
    }

    fn on_membership(&mut self, ev: &VerifiedEvent, first: bool) {
        let change = match ev.body() {
            Body::HeyThere(_) | Body::Newspaper(_) if ev.author() != self.me => {
                if first && self.store.latest(&(ev.author(), other_presence(ev.stream()))).is_none()
                {
                    self.fisheye.held += 1;
                    if self.fisheye.active {
                        let tree = self.tree(&ev.author());
                        self.fisheye.hold_in_slot(tree, true);
                        self.unmute_membership(&ev.author());
                    }
                    MemberChange::Joined
                } else {
                    MemberChange::Updated
                }
            }
            Body::Chau(_) if ev.author() != self.me => MemberChange::Left,
            _ => return,
        };
        self.emit(Output::Deliver(AppEvent::Member { peer: ev.author(), change }));
    }

    fn deliver_posts(&mut self, key: StreamKey, range: std::ops::RangeInclusive<u64>) {
        for seq in range {
            let Some(ev) = self.store.get(&key, seq) else { continue };
            if let Body::Post(p) = ev.body() {
                let post = DeliveredPost {
                    id: ev.id(),
                    author: ev.author(),
                    seq,
                    hlc: ev.hlc(),
                    topic: p.topic.clone(),
                    body: p.body.clone(),
                    own: ev.author() == self.me,
                };
                self.stats.posts_delivered += 1;
                self.emit(Output::Deliver(AppEvent::Post(post)));
            }
        }
    }

    // ----- frames -----

    fn on_frame(&mut self, from: AuthorKey, bytes: Bytes) {
        self.stats.frames_in += 1;
        let frame = match decode_frame(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.reject(e.reason().as_str());
                return;
            }
        };
        if !self.links.contains_key(&from) {
            if self.held_off(&from) {
                // A link forgotten (a bye, either way) whose last frames are still arriving:
                // not a new neighbour.
                self.reject("after_bye");
                return;
            }
            if self.links.len() >= self.config.max_links {
                self.reject("too_many_links");
                self.refuse(from);
                return;
            }
            self.add_link(from, None);
        }
        let now = self.now;
        let link = self.links.get_mut(&from).expect("inserted above");
        let healed = link.heard(now);
        link.advance_floor(frame.link_floor);
        let fresh = frame.link_seq == 0 || link.received_seq(frame.link_seq, now);
        if let Some(was) = healed {
            self.on_heal(from, was);
        }
        let Some(kind) = frame.kind else { return };
        if !fresh {
            self.stats.frames_again += 1;
            return; // a retransmission of something already processed
        }
        match kind {
            Kind::Events(evs) => self.on_events(from, evs),
            Kind::Ping(p) => {
                // The coordinate rides on every fourth pong (the prober keeps the last one),
                // and on the next one whenever this peer's scope, or whether its coordinate
                // has settled, changed since the neighbour was last told (it decides from
                // them what to pass on here).
                let scope = Scope::to_pb(self.scope());
                let settled = self.coords.coordinate().error <= SETTLED_ERROR;
                let told = (Scope::bucket(scope), settled && scope.is_some());
                let carry = self.links.get_mut(&from).is_some_and(|l| {
                    l.pongs_sent = l.pongs_sent.wrapping_add(1);
                    let carry = l.pongs_sent % 4 == 1 || l.scope_told != Some(told);
                    if carry {
                        l.scope_told = Some(told);
                    }
                    carry
                });
                let coordinate = carry.then(|| coord_to_pb(self.coords.coordinate()));
                let fisheye_radius_us = scope.filter(|_| carry);
                self.send(
                    from,
                    Kind::Pong(pb::Pong { nonce: p.nonce, coordinate, fisheye_radius_us }),
                    Priority::Control,
                    false,
                );
            }
            Kind::Pong(p) => self.on_pong(from, &p),
            Kind::Ack(a) => {
                let now = self.now;
                if let Some(l) = self.links.get_mut(&from)
                    && !l.acked(now, a.cumulative, &a.runs)
                {
                    self.reject("bad_ack");
                }
            }
            Kind::Digest(d) => self.on_digest(from, &d),
            Kind::VersionVector(vv) => self.on_version_vector(from, &vv),
            Kind::Request(r) => self.on_request(from, &r),
            Kind::Ihave(i) => self.on_ihave(from, &i),
            Kind::Graft(g) => self.on_graft(from, &g),
            Kind::Prune(p) => self.on_prune(from, &p),
            Kind::Bye(b) => self.on_bye(from, b.reason),
            Kind::FraudProof(_) => {} // verified and gossiped by a later version
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

    fn on_events(&mut self, from: AuthorKey, evs: pb::Events) {
        for r in self.verify(evs.envelopes) {
            match r {
                Ok(ev) => {
                    // It holds this event: a copy still waiting to go to it is not sent.
                    if let Some(l) = self.links.get_mut(&from) {
                        l.peer_has(event_key(&ev));
                    }
                    let via = if evs.sync { Via::Pulled } else { Via::Pushed };
                    self.accept(Some(from), &ev, via, evs.hops);
                }
                Err(e) => self.reject(e.reason().as_str()),
            }
        }
    }

    fn on_pong(&mut self, from: AuthorKey, pong: &pb::Pong) {
        let now = self.now;
        let Some(link) = self.links.get_mut(&from) else { return };
        let Some((nonce, sent)) = link.ping else { return };
        if nonce != pong.nonce {
            return;
        }
        link.ping = None;
        let rtt = now.saturating_since(sent).max(Duration::from_micros(1));
        link.record_rtt(rtt);
        if let Some(c) = pong.coordinate.as_ref().and_then(coord_from_pb) {
            link.peer_coordinate = Some(c);
            link.peer_scope = Scope::from_pb(pong.fisheye_radius_us);
        }
        if let Some(c) = link.peer_coordinate {
            let _ = self.coords.update(&from, &c, rtt, &mut self.rng);
        }
        self.emit(Output::Deliver(AppEvent::Rtt { peer: from, rtt }));
    }

    fn on_heal(&mut self, peer: AuthorKey, was: LinkStatus) {
        self.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
        self.regraft_from(peer);
        if was == LinkStatus::Disconnected {
            // Buffers were released: catch up by version vectors.
            self.open_sync(peer);
        }
    }

    // ----- inputs -----

    fn on_link_up(&mut self, peer: AuthorKey, info: &LinkInfo) {
        self.dialing.remove(&peer);

        if peer == self.me {
            return;
        }
        let now = self.now;
        if let Some(link) = self.links.get_mut(&peer) {
            // A new transport session: the neighbour may have restarted and numbers its frames
            // from 1 again.
            link.transport_up = true;
            link.on_medium = info.shared_medium && self.config.shared_medium;
            link.reset_receiver();
            link.set_rate(info.rate_bps, now);
            let healed = link.heard(now);
            match healed {
                Some(LinkStatus::Disconnected) => self.on_heal(peer, LinkStatus::Disconnected),
                Some(was) => {
                    self.on_heal(peer, was);
                    self.open_sync(peer); // the neighbour may have restarted with less
                }
                None => self.open_sync(peer),
            }
            return;
        }
        if self.links.len() >= self.config.max_links {
            self.reject("too_many_links");
            self.refuse(peer);
            return;
        }
        self.add_link(peer, info.rate_bps);
        if let Some(l) = self.links.get_mut(&peer) {
            l.on_medium = info.shared_medium && self.config.shared_medium;
        }
        self.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
        // A new neighbour: exchange what each holds, and learn its RTT.
        self.open_sync(peer);
        self.ping(peer);
    }

    fn on_link_down(&mut self, peer: AuthorKey) {
        let now = self.now;
        if self.leaving_links.remove(&peer).is_some() {
            // The neighbour closed the link this peer said bye on.
            self.drop_link(&peer);
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else { return };
        link.transport_up = false;
        if link.status == LinkStatus::Connected {
            link.set_status(LinkStatus::Suspected, now);
            self.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Suspected }));
        }
        // Redial with backoff: a transport that closes again and again (a refusing peer, a
        // flapping path) must not turn into a dial loop.
        let attempts = self.redial.get(&peer).map_or(0, |r| r.0) + 1;
        let wait = crate::time::backoff(REDIAL_FIRST, attempts, REDIAL_MAX);
        if self.redial.len() < MAX_REDIAL || self.redial.contains_key(&peer) {
            self.redial.insert(peer, (attempts, now + wait));
        }
    }

    /// Starts a version-vector exchange with a neighbour. Only the end with the lower key
    /// starts it (the other answers), so the two ends do not both send everything twice.
    fn open_sync(&mut self, peer: AuthorKey) {
        if self.me < peer {
            self.send_version_vector(peer, false);
        }
    }

    pub(crate) fn dial(&mut self, peer: AuthorKey) {
        if self.dialing.len() >= MAX_DIALS || self.dialing.contains_key(&peer) {
            return;
        }
        if self.held_off(&peer) {
            return; // backing off
        }
        self.dialing.insert(peer, self.now);
        let addrs = match self.store.latest(&(peer, Stream::HeyThere)).map(VerifiedEvent::body) {
            Some(Body::HeyThere(h)) => h.addrs.clone(),
            _ => self.fisheye.far.get(&peer).map(|f| f.1.clone()).unwrap_or_default(),
        };
        self.emit(Output::Dial { peer, addrs });
    }

    fn ping(&mut self, peer: AuthorKey) {
        let nonce: u64 = self.rng.random();
        let now = self.now;
        if let Some(l) = self.links.get_mut(&peer) {
            l.ping = Some((nonce, now));
            l.last_ping = now;
        }
        self.send(peer, Kind::Ping(pb::Ping { nonce }), Priority::Control, false);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Post { topic, body } => {
                let body = Body::Post(pb::Post { topic, body, content_type: String::new() });
                self.publish(body);
            }
            Command::Leave { reason } => {
                self.leaving = true;
                self.publish(Body::Chau(pb::Chau { reason }));
            }
        }
    }

    // ----- the tick -----

    fn on_tick(&mut self) {
        self.schedule_tick();
        let now = self.now;
        let peers: Vec<AuthorKey> = self.links.keys().copied().collect();
        for peer in peers {
            self.tick_link(peer, now);
        }
        self.graft_overdue();
        self.update_scope();
        self.pump();
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.maintain_overlay();
            if !self.leaving {
                self.maybe_publish_newspaper();
            }
        }
    }

    /// The heartbeat period: the configured one, stretched on a paced uplink so that a ping
    /// and a pong per link per period stay within [`HEARTBEAT_SHARE`] of it.
    fn heartbeat(&self) -> Duration {
        let base = self.config.heartbeat;
        let Some(bps) = self.config.uplink_bps.filter(|&b| b > 0) else { return base };
        let round_bits = self.links.len().max(1) as f64 * HEARTBEAT_ROUND_BYTES * 8.0;
        base.max(Duration::from_secs_f64(round_bits / (bps as f64 * HEARTBEAT_SHARE)))
    }

    fn tick_link(&mut self, peer: AuthorKey, now: Time) {
        let heartbeat = self.heartbeat();
        let cfg = &self.config;
        let cfg_tick = cfg.tick;
        // A stretched heartbeat stretches the silence that makes a link suspected with it.
        let suspect_floor = cfg
            .suspect_after
            .max(heartbeat.mul_f64(cfg.suspect_after.div_duration_f64(cfg.heartbeat).max(1.0)));
        let timeout = cfg.suspect_timeout;
        let (rto_min, ack_delay) = (cfg.rto_min, cfg.ack_delay);
        let Some(link) = self.links.get_mut(&peer) else { return };
        // RCM status.
        let silent = now.saturating_since(link.last_heard);
        let mut change = None;
        match link.status {
            LinkStatus::Connected if silent >= link.suspect_after(suspect_floor) => {
                link.set_status(LinkStatus::Suspected, now);
                change = Some(LinkStatus::Suspected);
            }
            LinkStatus::Suspected if now.saturating_since(link.status_since) >= timeout => {
                link.set_status(LinkStatus::Disconnected, now);
                change = Some(LinkStatus::Disconnected);
            }
            _ => {}
        }
        if link.status == LinkStatus::Disconnected && !link.transport_up {
            // Nothing left to weather: forget the link; the overlay may dial the peer again.
            self.links.remove(&peer);
            self.coords.forget(&peer);
            if let Some(status) = change {
                self.emit(Output::Deliver(AppEvent::Link { peer, status }));
            }
            return;
        }
        // Retransmissions.
        // The neighbour delays its acknowledgements by up to ack_delay (and its tick).
        let rto = link.rto(rto_min) + ack_delay + cfg_tick;
        self.stats.retransmits += link.retransmit_due(now, rto) as u64;
        // Heartbeat (also the RTT probe).
        // Idle connected links are probed every heartbeat; a silent link twice as often, so
        // that its return is noticed quickly.
        // On an idle connected link the end with the lower key pings, the other answers (and
        // pings only if it has sent nothing for twice as long).
        let interval = match link.status {
            LinkStatus::Connected if self.me < peer => heartbeat,
            LinkStatus::Connected => heartbeat * 2,
            _ => heartbeat / 2,
        };
        let due_ping = now.saturating_since(link.last_sent) >= interval
            || now.saturating_since(link.last_ping) >= heartbeat * 4;
        let ack = link.ack_due(now, ACK_BATCH, ack_delay).then(|| link.ack());
        let ihave = std::mem::take(&mut link.ihave);
        let digest_due = now >= link.next_digest && link.status == LinkStatus::Connected;
        if let Some(status) = change {
            self.emit(Output::Deliver(AppEvent::Link { peer, status }));
        }
        if let Some((cumulative, runs)) = ack {
            self.send(peer, Kind::Ack(pb::Ack { cumulative, runs }), Priority::Control, false);
        }
        if !ihave.is_empty() {
            let prefixed = ihave
                .into_iter()
                .map(|(a, s, seq, hops)| pb::PrefixHead {
                    author_prefix: a.prefix(),
                    stream: s as i32,
                    seq,
                    hops,
                })
                .collect();
            // Reliable: an announcement lost in an outage would leave the gap unnoticed. Lowest
            // class: announcements must not overtake the events they announce.
            let ihave = pb::IHave { prefixed, ..Default::default() };
            self.send(peer, Kind::Ihave(ihave), Priority::Membership, true);
        }
        if digest_due {
            let jitter = self.rng.random_range(0.0..0.2);
            let next = now + self.config.sync_interval.mul_f64(1.0 + jitter);
            if let Some(l) = self.links.get_mut(&peer) {
                l.next_digest = next;
            }
            self.send_digest(peer);
        }
        if due_ping {
            self.ping(peer);
        }
    }

    fn maintain_overlay(&mut self) {
        let now = self.now;
        self.close_leaving_links(now);
        self.dialing.retain(|_, at| now.saturating_since(*at) < DIAL_TIMEOUT);
        // Links that stayed up a while have proven themselves: forget their backoff.
        let links = &self.links;
        self.redial.retain(|p, _| {
            links.get(p).is_none_or(|l| {
                !(l.transport_up
                    && l.status == LinkStatus::Connected
                    && now.saturating_since(l.status_since) >= REDIAL_RESET)
            })
        });
        if self.leaving {
            return;
        }
        // Links whose transport closed are redialled once their backoff is over.
        let due: Vec<AuthorKey> = self
            .links
            .iter()
            .filter(|(p, l)| !l.transport_up && !self.held_off(p))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.dial(peer);
        }
        let leaving = &self.leaving_links;
        let usable = self
            .links
            .iter()
            .filter(|(p, l)| l.status != LinkStatus::Disconnected && !leaving.contains_key(*p))
            .count();
        if usable > 2 * self.config.active_view {
            self.trim_links(now);
            return;
        }
        self.maintain_swaps(now);
        let want = self.config.active_view.saturating_sub(usable + self.dialing.len());
        if want == 0 {
            return;
        }
        let me = *self.coords.app_coordinate();
        let mut candidates: Vec<(f64, AuthorKey)> = self
            .dialable()
            .into_iter()
            .map(|(p, c)| (c.map_or(f64::MAX, |c| me.distance_secs(&c)), p))
            .collect();
        // Far members (fisheye) are candidates too: the random picks make long links of them.
        candidates.extend(
            self.far_candidates().into_iter().filter(|(_, p)| !self.dialing.contains_key(p)),
        );
        if candidates.is_empty() {
            return;
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let random_share = self.config.random_links as f64 / self.config.active_view.max(1) as f64;
        for _ in 0..want {
            if candidates.is_empty() {
                break;
            }
            let i = if self.rng.random_bool(random_share.clamp(0.0, 1.0)) {
                self.rng.random_range(0..candidates.len())
            } else {
                0
            };
            let (_, peer) = candidates.remove(i);
            self.dial(peer);
        }
    }
}

impl<R: Rng> Engine<R> {
    /// A new neighbour link: eager on every tree (Plumtree), or lazy on every tree once the
    /// peer has `Config::lazy_new_links_from` connected links, or probed once it has
    /// `Config::probe_new_links_from` (see there).
    fn add_link(&mut self, peer: AuthorKey, rate_bps: Option<u64>) {
        let connected = self.links.values().filter(|l| l.status == LinkStatus::Connected).count();
        let mut link = Link::new(self.now, rate_bps);
        if connected >= self.config.lazy_new_links_from {
            link.trees.set_all(false);
        } else if self.probes_links() && connected >= self.config.probe_new_links_from {
            link.trees = crate::broadcast::TreeEdges::probed();
        }
        self.links.insert(peer, link);
    }

    /// Drops one surplus link: of the connected links older than a minute, the one eager on
    /// the fewest trees, the slowest of those (inbound links and partitions that healed can
    /// leave more links than the active view needs).
    fn trim_links(&mut self, now: Time) {
        let victim = self
            .links
            .iter()
            .filter(|(p, l)| {
                l.status == LinkStatus::Connected
                    && now.saturating_since(l.status_since) > Duration::from_secs(60)
                    && !self.leaving_links.contains_key(*p)
            })
            .max_by_key(|(p, l)| {
                let rtt = l.rtt().unwrap_or(Duration::MAX);
                (std::cmp::Reverse(l.trees.eager_count()), rtt, **p)
            })
            .map(|(p, _)| *p);
        if let Some(peer) = victim {
            self.say_bye(peer);
        }
    }

    /// Forgets a link dropped on purpose (a bye, either way); whether there was one. With
    /// probing on (`Config::probe_new_links_from`), the author trees it was an edge of are
    /// probed again on every other connected link: the next presence or status event of
    /// their authors re-forms them around the gap by first arrival, instead of leaving them
    /// to whichever announcement a graft follows first.
    fn drop_link(&mut self, peer: &AuthorKey) -> bool {
        let Some(gone) = self.links.remove(peer) else { return false };
        if self.config.probe_new_links_from == usize::MAX || !self.probes_links() {
            return true;
        }
        let leaving = &self.leaving_links;
        let mut reprobed = false;
        for (p, l) in &mut self.links {
            if l.status == LinkStatus::Connected && !leaving.contains_key(p) {
                reprobed |= l.trees.probe_again(&gone.trees);
            }
        }
        if reprobed {
            self.stats.trees_reprobed += 1;
        }
        true
    }

    /// Drops a surplus link. Says why first: the neighbour closes the link and does not dial
    /// back for a while (else it takes the closed transport for a fade and redials at once,
    /// and the new link starts eager on every tree). Until it closes, nothing more is sent on
    /// it.
    pub(crate) fn say_bye(&mut self, peer: AuthorKey) {
        self.send(peer, Kind::Bye(pb::Bye { reason: BYE_SURPLUS }), Priority::Control, false);
        self.declined(peer, BYE_QUIET);
        self.leaving_links.insert(peer, self.now);
    }

    /// The neighbour dropped the link (surplus) or would not take it (full): forget it (so its
    /// closing is not a fade), close it, and do not dial it again for `BYE_QUIET`
    /// (`BYE_FULL_QUIET` when it was full).
    fn on_bye(&mut self, peer: AuthorKey, reason: u32) {
        self.leaving_links.remove(&peer);
        if self.drop_link(&peer) {
            self.declined(peer, if reason == BYE_FULL { BYE_FULL_QUIET } else { BYE_QUIET });
            self.emit(Output::Disconnect { peer });
        }
    }

    /// A peer this one has no room for (`max_links`): told so with a bye outside any link, so
    /// it forgets the link and does not dial back for `BYE_FULL_QUIET`, by when trims may
    /// have made room (a newcomer whose only known peer is a full bootstrap peer must not be
    /// shut out for long). Without it the newcomer pushed into a link this end did not hold,
    /// buffered while the link seemed silent, and dumped that backlog as duplicates when a
    /// slot freed up (a hub at the cap on planet took thousands of duplicate posts at a time,
    /// every half minute). Its later frames are dropped as `after_bye`; the newcomer closes
    /// the transport when the bye arrives.
    fn refuse(&mut self, peer: AuthorKey) {
        if self.held_off(&peer) {
            return; // told already
        }
        self.declined(peer, BYE_FULL_QUIET);
        let frame = unsequenced(Kind::Bye(pb::Bye { reason: BYE_FULL }));
        self.host_took(frame.len());
        self.emit(Output::Send { to: peer, frame, class: Priority::Control });
    }

    /// Whether `peer` is not to be dialled yet: a redial backoff, or a bye either way, whose
    /// wait is not over.
    pub(crate) fn held_off(&self, peer: &AuthorKey) -> bool {
        self.redial.get(peer).is_some_and(|(_, at)| *at > self.now)
    }

    /// Not to be dialled (nor its links kept) for `quiet`.
    fn declined(&mut self, peer: AuthorKey, quiet: Duration) {
        if self.redial.len() < MAX_REDIAL || self.redial.contains_key(&peer) {
            self.redial.insert(peer, (0, self.now + quiet));
        }
    }

    /// Links this peer said bye on that the neighbour has not closed within `BYE_WAIT` (the
    /// bye was lost, or the neighbour is older): closed from this end.
    fn close_leaving_links(&mut self, now: Time) {
        let due: Vec<AuthorKey> = self
            .leaving_links
            .iter()
            .filter(|(_, at)| now.saturating_since(**at) >= BYE_WAIT)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.leaving_links.remove(&peer);
            // Forgotten first, so the LinkDown that follows is not taken for a fade.
            if self.drop_link(&peer) {
                self.emit(Output::Disconnect { peer });
            }
        }
    }
}

/// A frame of `kind` without link seq or floor, encoded (a link puts them in front of a
/// reliable frame as it leaves).
pub(crate) fn unsequenced(kind: Kind) -> Bytes {
    Bytes::from(vecino_proto::encode_frame(&pb::Frame {
        link_seq: 0,
        link_floor: 0,
        kind: Some(kind),
    }))
}

/// Stable label of a frame kind, for counters.
fn kind_label(kind: &Kind) -> &'static str {
    match kind {
        Kind::Events(e) if e.sync => "events_sync",
        Kind::Events(_) => "events_push",
        Kind::Ping(_) => "ping",
        Kind::Pong(_) => "pong",
        Kind::Digest(_) => "digest",
        Kind::VersionVector(_) => "version_vector",
        Kind::Request(_) => "request",
        Kind::Ack(_) => "ack",
        Kind::FraudProof(_) => "fraud_proof",
        Kind::Ihave(_) => "ihave",
        Kind::Graft(_) => "graft",
        Kind::Prune(_) => "prune",
        Kind::Bye(_) => "bye",
    }
}

/// The other presence stream (a member is new only if neither is held).
fn other_presence(s: Stream) -> Stream {
    if s == Stream::HeyThere { Stream::Newspaper } else { Stream::HeyThere }
}

/// How an event reached this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Pushed by a neighbour (an eager tree edge): a duplicate prunes the link.
    Pushed,
    /// Pulled (anti-entropy, a graft's answer), or this peer's own.
    Pulled,
    /// Heard broadcast on the shared medium; `own_queued`: this peer's own broadcast of it
    /// was still waiting, and is dropped.
    Broadcast { own_queued: bool },
}

/// Send class of an event's stream.
pub(crate) fn class_of(s: Stream) -> Priority {
    match s {
        Stream::Post => Priority::Post,
        Stream::Postcard | Stream::PostcardReceipt => Priority::Postcard,
        _ => Priority::Membership,
    }
}

/// A member as this peer knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The peer.
    pub peer: AuthorKey,
    /// Its latest presence.
    pub hey_there: Option<pb::HeyThere>,
    /// Its latest status.
    pub newspaper: Option<pb::Newspaper>,
    /// True if it said chau after its latest presence.
    pub left: bool,
}

impl<R: Rng> Protocol for Engine<R> {
    fn peer(&self) -> AuthorKey {
        self.me
    }

    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        self.now = self.now.max(now);
        // A burst (a pull answered with thousands of events) must not keep its room for
        // good: the outputs of each call are drained, the buffer stays.
        self.out.shrink_to(OUT_KEPT);
        match input {
            Input::Start => {} // the outputs queued by `new` go out below
            Input::Received { from, frame } => self.on_frame(from, frame),
            Input::Broadcast { from, frame } => self.on_broadcast(from, frame),
            Input::LinkUp { peer, info } => self.on_link_up(peer, &info),
            Input::LinkDown { peer } => self.on_link_down(peer),
            Input::Timer(Timer(TimerKind::Tick)) => self.on_tick(),
            Input::Timer(Timer(TimerKind::Pace)) => {
                if self.pace_at.is_some_and(|t| t <= self.now) {
                    self.pace_at = None;
                    self.pump();
                }
            }
            Input::Timer(Timer(TimerKind::Peer(..))) => {}
            Input::Sent { bytes } => {
                self.host_unsent = self.host_unsent.saturating_sub(bytes);
                self.host_heard = self.now;
                self.pump();
            }
            Input::Command(c) => self.on_command(c),
        }
        self.out.drain(..)
    }

    fn digest(&self) -> u64 {
        self.store.digest()
    }

    fn known_peers(&self) -> usize {
        self.known_count()
    }

    fn membership_digest(&self) -> u64 {
        self.store.membership_digest()
    }

    fn fisheye(&self) -> bool {
        self.fisheye.active
    }

    fn log_digest(&self) -> u64 {
        self.store.log_digest()
    }

    fn published_coordinate(&self) -> Option<Coordinate> {
        published_coordinate(&self.store, self.me)
    }

    fn presence_seqs(&self, peer: &AuthorKey) -> (u64, u64) {
        let seq = |s| self.store.latest(&(*peer, s)).map_or(0, VerifiedEvent::seq);
        (seq(Stream::HeyThere), seq(Stream::Newspaper))
    }

    fn in_scope(&self, peer: &AuthorKey, coordinate: Option<&Coordinate>) -> bool {
        self.scope_includes(peer, coordinate)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let dropped: u64 = self.links.values().map(|l| l.dropped).sum();
        let mut counters = vec![
            ("retransmits", s.retransmits),
            ("frames_again", s.frames_again),
            ("grafts", s.grafts),
            ("prunes", s.prunes),
            ("tree_swaps", s.tree_swaps),
            ("tree_refreshes", s.tree_refreshes),
            ("tree_probes", s.tree_probes),
            ("trees_reprobed", s.trees_reprobed),
            ("membership_mutes", s.mutes),
            ("membership_unmutes", s.unmutes),
            ("version_vectors", s.version_vectors),
            ("events_duplicate", s.events_duplicate),
            ("events_duplicate_pushed_members", s.events_duplicate_pushed_members),
            ("link_buffer_drops", dropped),
            ("sends_cancelled", self.links.values().map(|l| l.cancelled).sum()),
            ("broadcasts_sent", self.medium.sent),
            ("broadcasts_heard", self.medium.heard),
            ("proximity_swaps", self.swaps.done),
            ("proximity_swaps_refused", self.swaps.refused),
            ("fisheye_refused", self.fisheye.refused),
            ("fisheye_refused_unplaced", self.fisheye.refused_unplaced),
            ("fisheye_refused_edge", self.fisheye.refused_edge),
            ("fisheye_evicted", self.fisheye.evicted),
            ("fisheye_members_held", self.fisheye.held as u64),
            ("fisheye_active", u64::from(self.fisheye.active)),
        ];
        // Inputs rejected, by reason (each reason a counter of its own).
        counters.extend(s.rejected.iter().map(|(reason, n)| (*reason, *n)));
        counters
    }

    fn neighbours(&self) -> Vec<AuthorKey> {
        self.links
            .iter()
            .filter(|(_, l)| l.transport_up && l.status == LinkStatus::Connected)
            .map(|(p, _)| *p)
            .collect()
    }
}
