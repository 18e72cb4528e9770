//! Fisheye membership: which peers' presence and status (the latest-value streams: hey-there,
//! newspaper, chau, opinion, barrio slot) this peer keeps and passes on.
//!
//! Full membership floods every member's events to every peer: O(N) events per peer, O(N²)
//! network-wide (nara's wall past ~100 peers; 69 kbit/s per peer at 490 in vecino's planet
//! run). Fisheye membership (Pei, Gerla, Chen, "Fisheye State Routing", ICC 2000, in
//! coordinate space instead of hops) keeps near peers peer by peer and far ones coarsely:
//!
//! - A peer that holds fewer than `fisheye_members` (K) members keeps everything, exactly as
//!   full membership: small fleets never notice fisheye.
//! - Past K it becomes a *fisheye peer* (for good). Its **radius** r is the distance, by
//!   Vivaldi coordinate, to the K-th nearest member it holds whose published coordinate is
//!   settled (error ≤ [`SETTLED_ERROR`]); r is unbounded while it holds fewer than K such.
//!   It accepts a latest-value event of author a only if a is itself, a neighbour (linked),
//!   a *landmark* (one key in `fisheye_landmarks`), or a's coordinate (carried by the event,
//!   else the one held) is settled and within r of its own settled coordinate — within
//!   [`KEEP_SLACK`] × r for a member it already holds (hysteresis). Members beyond that are
//!   evicted (beyond [`EVICT_SLACK`] × r, or the farthest past 2K held; checked every
//!   [`SCOPE_PERIOD`]); their posts stay.
//! - Since balls are defined by coordinates, an author's events spread over the peers around
//!   it, which the proximity overlay connects; posts (log streams) are outside all this and
//!   reach everyone.
//! - Passing on: a fisheye peer tells its neighbours its scope on the pongs that carry its
//!   coordinate (no radius yet, or r; `Pong.fisheye_radius_us`), again whenever it changes.
//!   An event is pushed or announced to a neighbour only if that neighbour would keep it:
//!   the author's settled coordinate within [`PUSH_SLACK`] × its radius of its coordinate
//!   (within [`KEEP_SLACK`] × that only in answers to its pulls, for members they list).
//!   A neighbour with no radius yet would keep any settled member, but is pushed none (each
//!   of its neighbours would push it every member it holds: at 1 000 peers that was most of
//!   the join's bytes); it pulls from its nearest neighbours every [`PULL_RADIUSLESS`]
//!   instead, one at a time, nearest first, and their answers carry any settled member.
//!   A member's presence is relayed on at most two of its tree's eager links
//!   (`MEMBER_FANOUT` in `crate::broadcast`). Before a neighbour has told its scope, the
//!   author must be within [`SEND_SLACK`] × this peer's own radius of it. A pushed event
//!   refused all the same (a stale scope, a coordinate that moved) mutes the author's
//!   membership slot on that link (`crate::broadcast`), until the member comes into scope.
//!   Announcements of members it does not hold are not grafted (a graft also turns the link
//!   eager under the posts).
//! - `fisheye_from_start` (a size hint: the fleet is known to be larger than K) makes a peer
//!   fisheye from its first event: it keeps its neighbours and the landmarks until its
//!   coordinate settles, then the settled members its pulls bring, until it can draw r. Without
//!   it, a fleet that starts at once floods every hey-there to every peer before any of them
//!   holds K members.
//! - A fisheye peer spaces its newspapers by the members it holds
//!   (`Config::newspapers_heard_per_s`): each member hears about that many newspapers per
//!   second from its whole ball, however large the fleet.
//! - Anti-entropy covers what peers share: a fisheye peer's digest covers the log streams
//!   only, and its version-vector answers carry members in the other end's presumed scope
//!   only. Membership consistency inside a ball comes from acknowledged delivery on links,
//!   the version-vector exchange on every new or healed link, and a pull (a vector of its
//!   presence and status heads only, `VersionVector.presence_only`) when this peer's
//!   coordinate first settles and every [`PULL_RADIUSLESS`] while it has no radius (to one
//!   neighbour at a time, nearest first), when it first draws its radius and when the
//!   radius doubles (to its [`PULL_FROM`] nearest neighbours), and then every
//!   [`PULL_PERIOD`] to one neighbour in turn (the in-ball anti-entropy: members whose
//!   first events never reached this peer, and newer status of those it holds). A vector
//!   names members by fingerprint (11 bytes a head, `crate::sync`).
//! - Far regions: the landmarks (≈ N / `fisheye_landmarks` peers, known by everyone) and a
//!   bounded sample of far members whose events were refused ([`MAX_FAR`]), which also
//!   serve as candidates for the overlay's random long links.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, RngExt};
use vecino_coords::Coordinate;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{AuthorKey, StreamKind, VerifiedEvent};

use crate::engine::{Engine, coord_from_pb, coordinate_field, published, published_coordinate};
use crate::io::{LinkStatus, Output, StoreOp};
use crate::store::StreamKey;
use crate::time::Time;

/// A coordinate whose error estimate is at most this is *settled*: distances to it mean
/// something (Vivaldi starts every peer at the origin with error 1.5).
pub(crate) const SETTLED_ERROR: f64 = 0.5;
/// A member already held stays in scope up to this multiple of the radius.
pub(crate) const KEEP_SLACK: f64 = 1.25;
/// A member is pushed to a neighbour that told its radius r if it is within this multiple of
/// r of the neighbour (by this peer's view of both coordinates). At 2 000 peers over 5 min:
/// membership + control 11.8 / 13.6 / 14.5 / 15.8 kbit/s per peer at 1.0 / 1.1 / 1.15 /
/// [`KEEP_SLACK`], members known 72.9 / 73.8 / 74.1 / 72.9 %, their newest status held
/// 74.9 / 83.4 / 84.5 / 87.1 %: each refused push also mutes the author's slot on the link,
/// and estimates of two coordinates differ at the edge of a ball, where most of its volume is.
pub(crate) const PUSH_SLACK: f64 = 1.1;
/// Until a neighbour has told its scope, an event is passed to it if its coordinate is within
/// this multiple of this peer's radius from the author (its own radius is similar).
pub(crate) const SEND_SLACK: f64 = 1.5;
/// Members held beyond this multiple of the radius are evicted (between [`KEEP_SLACK`] and
/// this, only when too many are held).
pub(crate) const EVICT_SLACK: f64 = 2.0;
/// Far members remembered (refused events' authors) at most.
pub(crate) const MAX_FAR: usize = 64;
/// Refused heads remembered at most.
pub(crate) const MAX_REFUSED: usize = 4_096;
/// A fisheye peer pulls (version vectors of its presence and status heads to its
/// neighbours) when its own coordinate first settles, when it first draws its radius, or when
/// the radius grew by this factor since the last pull, at most every [`PULL_MIN`]: what it
/// refused while it could not place members (or its neighbours held back while they could
/// not tell it wanted them), or while its radius was smaller, does not come back by itself
/// until each member's next newspaper.
pub(crate) const PULL_GROWTH: f64 = 2.0;
pub(crate) const PULL_MIN: std::time::Duration = std::time::Duration::from_secs(30);
/// A fisheye peer with no radius yet is pushed no members (see `Engine::wants_within`): it
/// pulls this often until it can draw one.
pub(crate) const PULL_RADIUSLESS: std::time::Duration = std::time::Duration::from_secs(10);
/// Once a fisheye peer has a radius it pulls from one connected neighbour in turn, nearest
/// first, this often: what never reached it (a member's first events are pushed on two eager
/// links per relay, and announcements of members it does not hold are not grafted) or went
/// stale comes in. At 2 000 peers over 5 min, against none: membership + control 13.6 →
/// 15.3 kbit/s per peer, members known 73.8 → 78.0 %, their newest status 83.4 → 91.7 %
/// (every 30 s from the 3 nearest: 16.6 kbit/s, 80.6 %, 92.8 %).
pub(crate) const PULL_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);
/// A pull goes to this many connected neighbours, the nearest by RTT: their balls overlap
/// this peer's most (a vector of ~2 × K heads each; to all ~10 neighbours the pull when the
/// radius is first drawn cost as much as the join's pushes at 1 000 peers).
pub(crate) const PULL_FROM: usize = 3;
/// With an unbounded radius, the radius is recomputed once this many members came in.
pub(crate) const RECOMPUTE_AFTER: usize = 16;
/// How often the radius is recomputed and members out of scope are evicted.
pub(crate) const SCOPE_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Fisheye state of one peer.
#[derive(Debug, Default)]
pub(crate) struct Fisheye {
    /// True once this peer held `fisheye_members` members (never false again).
    pub(crate) active: bool,
    /// Radius in seconds of coordinate distance; `None`: unbounded.
    pub(crate) radius: Option<f64>,
    /// Far members: coordinate and listen addresses, at most [`MAX_FAR`].
    pub(crate) far: BTreeMap<AuthorKey, (Coordinate, Vec<String>)>,
    /// When the scope was last recomputed.
    pub(crate) next_update: Option<Time>,
    /// Latest-value events refused as out of scope.
    pub(crate) refused: u64,
    /// Of `refused`: events this peer could not place (its coordinate or the author's not
    /// settled, or the author's unknown), and events of authors just past its radius r
    /// (within [`PUSH_SLACK`] × r, which a push allows for); the rest were farther.
    pub(crate) refused_unplaced: u64,
    pub(crate) refused_edge: u64,
    /// Members evicted.
    pub(crate) evicted: u64,
    /// Members held (presence or status; this peer excluded), kept up to date as members
    /// join and are evicted, recounted at each update.
    pub(crate) held: usize,
    /// Members admitted since the radius was last computed while it was unbounded.
    pub(crate) admitted: usize,
    /// Heads refused, by stream (at most [`MAX_REFUSED`]): announcements of them are not
    /// grafted (the graft would fetch an event refused again, forever).
    pub(crate) refused_heads: BTreeMap<StreamKey, u64>,
    /// The radius at the last pull (`None` before the first).
    pub(crate) pulled: Option<Option<f64>>,
    /// No pull before this.
    pub(crate) next_pull: Option<Time>,
    /// Pulls made to one neighbour at a time (the next goes to the next nearest).
    pub(crate) turns: usize,
    /// With a radius, the next pull to one neighbour in turn is not before this.
    pub(crate) next_turn: Option<Time>,
    /// Members held per tree slot (empty until fisheye; recounted at each scope update): a
    /// refused event mutes its slot on a link only if no member held shares it.
    pub(crate) held_slots: Vec<u16>,
}

/// What a member's event is offered to a neighbour as (see `Engine::wants_within`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Pushed or announced.
    Push,
    /// An answer to its pull; `listed`: its vector lists the author (it holds it).
    Answer { listed: bool },
}

/// A neighbour's fisheye scope, as its pongs tell it (full membership is no scope at all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scope {
    /// Fisheye with no radius drawn yet: keeps members whose coordinate has settled.
    Unbounded,
    /// Keeps members within this coordinate distance (seconds) of itself.
    Radius(f64),
}

impl Scope {
    /// The pong field: `None` for no scope (full membership), 0 unbounded, else µs.
    pub(crate) fn to_pb(scope: Option<Self>) -> Option<u32> {
        scope.map(|s| match s {
            Scope::Unbounded => 0,
            Scope::Radius(r) => {
                let us = (r * 1e6).round().clamp(1.0, f64::from(u32::MAX));
                us as u32
            }
        })
    }

    /// The pong field, coarsely (radii within ~10 % of each other alike): what must be
    /// told again when it changes.
    pub(crate) fn bucket(v: Option<u32>) -> Option<u32> {
        v.map(|us| if us == 0 { 0 } else { (f64::from(us).ln() * 10.0).round() as u32 + 1 })
    }

    pub(crate) fn from_pb(v: Option<u32>) -> Option<Self> {
        v.map(|us| if us == 0 { Scope::Unbounded } else { Scope::Radius(f64::from(us) / 1e6) })
    }
}

impl Fisheye {
    /// Members held whose events follow `tree`.
    pub(crate) fn held_in_slot(&self, tree: u16) -> u16 {
        self.held_slots.get(usize::from(tree)).copied().unwrap_or(0)
    }

    /// One more (or fewer) member held on `tree`.
    pub(crate) fn hold_in_slot(&mut self, tree: u16, more: bool) {
        if self.held_slots.is_empty() {
            self.held_slots = vec![0; vecino_proto::limits::TREE_SLOTS];
        }
        if let Some(n) = self.held_slots.get_mut(usize::from(tree)) {
            *n = if more { n.saturating_add(1) } else { n.saturating_sub(1) };
        }
    }
}

/// Whether a coordinate's error estimate is low enough for its distances to mean something.
pub(crate) fn settled(c: &Coordinate) -> bool {
    c.error <= SETTLED_ERROR
}

/// The coordinate an event carries (hey-there and newspaper do).
fn carried(ev: &VerifiedEvent) -> Option<Coordinate> {
    coordinate_field(ev).and_then(coord_from_pb)
}

/// The streams by which a peer holds a member: its presence and its status.
pub(crate) const PRESENCE: [Stream; 2] = [Stream::HeyThere, Stream::Newspaper];

fn is_presence(s: Stream) -> bool {
    PRESENCE.contains(&s)
}

impl<R: Rng> Engine<R> {
    /// True when `author` is a landmark: kept by every peer (one key in `fisheye_landmarks`).
    pub(crate) fn is_landmark(&self, author: &AuthorKey) -> bool {
        let n = u64::from(self.config.fisheye_landmarks);
        let b = author.as_bytes();
        n > 0
            && u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                .is_multiple_of(n)
    }

    /// True when this peer holds `author`'s presence or status.
    pub(crate) fn holds(&self, author: AuthorKey) -> bool {
        PRESENCE.iter().any(|s| self.store.latest(&(author, *s)).is_some())
    }

    /// Whether a member at coordinate `c` is in this peer's scope (`held`: already held, with
    /// the hysteresis slack). Needs both coordinates settled, else only held members are.
    pub(crate) fn within_radius(&self, c: &Coordinate, held: bool) -> bool {
        let me = self.coords.app_coordinate();
        if !settled(me) || !settled(c) {
            return held;
        }
        match self.fisheye.radius {
            None => true,
            Some(r) => me.distance_secs(c) <= if held { r * KEEP_SLACK } else { r },
        }
    }

    /// Whether `author` is always in scope: this peer, a neighbour, a landmark.
    fn always_in_scope(&self, author: &AuthorKey) -> bool {
        *author == self.me || self.links.contains_key(author) || self.is_landmark(author)
    }

    /// The scope check on receipt: `false` refuses a latest-value event of an author outside
    /// this peer's fisheye (it is then neither stored nor passed on).
    pub(crate) fn admits(&mut self, from: Option<AuthorKey>, ev: &VerifiedEvent) -> bool {
        let k = self.config.fisheye_members;
        if !self.fisheye.active && k > 0 && self.fisheye.held >= k {
            self.fisheye.active = true; // past K members: fisheye from now on
        }
        if !self.fisheye.active
            || from.is_none()
            || ev.kind() != StreamKind::LatestValue
            || self.always_in_scope(&ev.author())
        {
            return true;
        }
        let author = ev.author();
        let held = self.holds(author);
        // The event's own coordinate if settled, else the one held (a hey-there is published
        // once, at start, before the coordinate settles: the newspaper places its author).
        let c = match (carried(ev), published_coordinate(&self.store, author)) {
            (Some(c), _) if settled(&c) => Some(c),
            (_, Some(p)) if settled(&p) => Some(p),
            (c, p) => c.or(p),
        };
        if c.is_some_and(|c| self.within_radius(&c, held)) || (c.is_none() && held) {
            if !held && self.fisheye.radius.is_none() {
                self.fisheye.admitted += 1;
            }
            if !self.fisheye.refused_heads.is_empty() {
                self.fisheye.refused_heads.remove(&(author, ev.stream()));
            }
            return true;
        }
        self.fisheye.refused += 1;
        let me = self.coords.app_coordinate();
        match (c.filter(|c| settled(me) && settled(c)), self.fisheye.radius) {
            (Some(c), Some(r)) if me.distance_secs(&c) <= r * PUSH_SLACK => {
                self.fisheye.refused_edge += 1;
            }
            (Some(_), Some(_)) => {}
            _ => self.fisheye.refused_unplaced += 1,
        }
        let key = (author, ev.stream());
        self.missing.remove(&crate::store::named(&key, ev.seq()));
        if self.fisheye.refused_heads.len() >= MAX_REFUSED {
            self.fisheye.refused_heads.pop_first();
        }
        self.fisheye.refused_heads.insert(key, ev.seq());
        if let (Some(c), Body::HeyThere(h)) = (c, ev.body())
            && settled(&c)
        {
            self.note_far(author, c, h.addrs.clone());
        }
        false
    }

    /// Whether this peer keeps a stream of this author at all (see `on_version_vector`).
    pub(crate) fn would_keep(&self, key: &StreamKey) -> bool {
        !self.fisheye.active
            || key.1.kind() != Some(StreamKind::LatestValue)
            || self.always_in_scope(&key.0)
            || self.holds(key.0)
    }

    /// False for an announced head this peer refused (do not graft it).
    /// Once fisheye, members this peer does not hold (nor neighbours, nor landmarks) are not
    /// grafted either: it cannot place them before it has their event, and a graft turns the
    /// link eager under the posts too (on planet, 551 k grafts and 3.95 copies per delivered
    /// post in 180 s with them); version vectors bring what is in scope.
    pub(crate) fn may_want(&self, key: &StreamKey, seq: u64) -> bool {
        if self.fisheye.active
            && key.1.kind() == Some(StreamKind::LatestValue)
            && !self.always_in_scope(&key.0)
            && !self.holds(key.0)
        {
            return false;
        }
        self.fisheye.refused_heads.get(key).is_none_or(|&s| s < seq)
    }

    fn note_far(&mut self, author: AuthorKey, c: Coordinate, addrs: Vec<String>) {
        if self.fisheye.far.len() >= MAX_FAR && !self.fisheye.far.contains_key(&author) {
            let i = self.rng.random_range(0..self.fisheye.far.len());
            if let Some(old) = self.fisheye.far.keys().nth(i).copied() {
                self.fisheye.far.remove(&old);
            }
        }
        self.fisheye.far.insert(author, (c, addrs));
    }

    /// This peer's scope, as its pongs tell it (`None`: full membership).
    pub(crate) fn scope(&self) -> Option<Scope> {
        if !self.fisheye.active {
            return None;
        }
        Some(self.fisheye.radius.map_or(Scope::Unbounded, Scope::Radius))
    }

    /// Whether neighbour `peer` presumably keeps `author`'s latest-value events, offered as
    /// `offer`: pass them on only then (pushes, announcements, answers to pulls). `place` is
    /// the author's published coordinate ([`published_coordinate`]), which a caller asking
    /// about several neighbours looks up once. When the neighbour's scope is
    /// known (its pongs tell it), it gets what it would keep: a member within its radius r
    /// (within [`PUSH_SLACK`] × r for a push; within [`KEEP_SLACK`] × r, its hysteresis, only
    /// in an answer to a pull that lists the member: pushed that far, a member was refused
    /// as often as kept, and each refusal mutes the author's slot on the link).
    /// A neighbour with no radius yet would keep any settled member, but is pushed none
    /// (every neighbour would push it every member it holds, the cost of a join at scale): it
    /// pulls from its nearest neighbours instead, until it can draw its radius. Scope not
    /// known: the author within [`SEND_SLACK`] (a push) or 1 (an answer) × this peer's radius
    /// of the neighbour.
    pub(crate) fn wants_within(
        &self,
        peer: AuthorKey,
        author: &AuthorKey,
        place: Option<Coordinate>,
        offer: Offer,
    ) -> bool {
        if let Some(l) = self.links.get(&peer)
            && let Some(scope) = l.peer_scope
        {
            if *author == peer || *author == self.me || self.is_landmark(author) {
                return true;
            }
            return match (scope, l.peer_coordinate, place) {
                // It pulls once its coordinate settled: the pong telling it may come later.
                (Scope::Unbounded, _, Some(c)) => offer != Offer::Push && settled(&c),
                (Scope::Radius(r), Some(t), Some(c)) if settled(&t) && settled(&c) => {
                    let slack = match offer {
                        Offer::Push => PUSH_SLACK,
                        Offer::Answer { listed: true } => KEEP_SLACK,
                        Offer::Answer { listed: false } => 1.0,
                    };
                    t.distance_secs(&c) <= r * slack
                }
                // It cannot place the author: it keeps it only if it holds it already.
                _ => false,
            };
        }
        let Some(r) = self.fisheye.radius.filter(|_| self.fisheye.active) else { return true };
        if *author == peer || *author == self.me || self.is_landmark(author) {
            return true; // a neighbour's own events, and ours, go to the neighbour
        }
        let theirs = self
            .links
            .get(&peer)
            .and_then(|l| l.peer_coordinate)
            .or_else(|| published_coordinate(&self.store, peer));
        match (theirs, place) {
            (Some(t), Some(c)) if settled(&t) && settled(&c) => {
                let slack = if offer == Offer::Push { SEND_SLACK } else { 1.0 };
                t.distance_secs(&c) <= r * slack
            }
            _ => true,
        }
    }

    /// A neighbour's radius, inferred from the members its version vector lists (the K-th
    /// nearest to it of those this peer can place), as it computes its own; `None` when it
    /// lists fewer (or fisheye is off here).
    pub(crate) fn radius_of(
        &self,
        peer: AuthorKey,
        listed: &BTreeMap<StreamKey, u64>,
    ) -> Option<f64> {
        let k = self.config.fisheye_members;
        if !self.fisheye.active || k == 0 {
            return None;
        }
        let theirs = self
            .links
            .get(&peer)
            .and_then(|l| l.peer_coordinate)
            .or_else(|| published_coordinate(&self.store, peer))
            .filter(settled)?;
        let mut d: Vec<f64> = listed
            .keys()
            .filter(|(a, s)| *s == Stream::Newspaper && *a != peer && !self.is_landmark(a))
            .filter_map(|(a, _)| published_coordinate(&self.store, *a))
            .filter(settled)
            .map(|c| theirs.distance_secs(&c))
            .collect();
        if d.len() < k {
            return None;
        }
        let (_, kth, _) = d.select_nth_unstable_by(k - 1, f64::total_cmp);
        Some(*kth)
    }

    /// Whether to answer `peer`'s version vector with `author`'s latest-value events: within
    /// this peer's radius of it and within the radius its vector implies (`theirs`);
    /// `listed`: the vector lists the author (the other end holds it).
    pub(crate) fn answers(
        &self,
        peer: AuthorKey,
        author: &AuthorKey,
        theirs: Option<f64>,
        listed: bool,
    ) -> bool {
        let place = published_coordinate(&self.store, *author);
        if !self.wants_within(peer, author, place, Offer::Answer { listed }) {
            return false;
        }
        let Some(r) = theirs else { return true };
        if *author == peer || *author == self.me || self.is_landmark(author) {
            return true;
        }
        let t = self.links.get(&peer).and_then(|l| l.peer_coordinate);
        match (t, place) {
            (Some(t), Some(c)) => t.distance_secs(&c) <= r,
            _ => true,
        }
    }

    /// Members held (presence or status), this peer excluded, each with the coordinate it
    /// last published (as [`published_coordinate`]), in one pass over the store: the
    /// latest-value streams are ordered by author.
    fn held_members(&self) -> Vec<(AuthorKey, Option<Coordinate>)> {
        // An author, its newspaper's coordinate and its hey-there's.
        type Fields<'a> = (AuthorKey, Option<&'a pb::Coordinate>, Option<&'a pb::Coordinate>);
        let decode = |(a, paper, hey): Fields<'_>| (a, published(paper, hey));
        let mut out = Vec::new();
        let mut current: Option<Fields<'_>> = None;
        for ev in self.store.latest_events() {
            let a = ev.author();
            if a == self.me || !is_presence(ev.stream()) {
                continue;
            }
            if current.is_some_and(|c| c.0 != a) {
                out.extend(current.take().map(decode));
            }
            let c = current.get_or_insert((a, None, None));
            let field = coordinate_field(ev);
            if ev.stream() == Stream::Newspaper { c.1 = field } else { c.2 = field }
        }
        out.extend(current.map(decode));
        out
    }

    /// Every [`SCOPE_PERIOD`]: becomes a fisheye peer past `fisheye_members` members,
    /// recomputes the radius and evicts members out of scope.
    /// Called on every tick: cheap unless an update is due, or the radius is unbounded and
    /// [`RECOMPUTE_AFTER`] members came in since (a join wave must not flood past K).
    pub(crate) fn update_scope(&mut self) {
        let k = self.config.fisheye_members;
        if k == 0 {
            return;
        }
        if !self.fisheye.active && self.fisheye.held >= k {
            self.fisheye.active = true;
        }
        if self.next_scope_update_pending() && self.fisheye.admitted < RECOMPUTE_AFTER {
            return;
        }
        self.fisheye.admitted = 0;
        self.fisheye.next_update = Some(self.now + SCOPE_PERIOD);
        let held = self.held_members();
        self.fisheye.held = held.len();
        if !self.fisheye.active && held.len() < k {
            return;
        }
        self.fisheye.active = true;
        self.fisheye.held_slots.fill(0);
        for (a, _) in &held {
            let tree = self.tree(a);
            self.fisheye.hold_in_slot(tree, true);
        }
        let me = *self.coords.app_coordinate();
        if !settled(&me) {
            return;
        }
        let mut dist: Vec<(AuthorKey, Option<f64>)> = held
            .into_iter()
            .map(|(a, c)| (a, c.filter(settled).map(|c| me.distance_secs(&c))))
            .collect();
        let mut known: Vec<f64> = dist.iter().filter_map(|(_, d)| *d).collect();
        self.fisheye.radius = if known.len() < k {
            None
        } else {
            let (_, kth, _) = known.select_nth_unstable_by(k - 1, f64::total_cmp);
            Some(*kth)
        };
        // Evict members far out of scope (beyond EVICT_SLACK × r, or unsettled), and past 2K
        // members held (memory) the farthest beyond the keep slack, down to 1.5K. Evicting
        // whatever leaves the ball at once churns: coordinates still move, and what comes
        // back must be sent again.
        let radius = self.fisheye.radius;
        let over = dist.len().saturating_sub(k * 3 / 2).min(if dist.len() > 2 * k {
            usize::MAX
        } else {
            0
        });
        dist.retain(|(a, d)| {
            !self.always_in_scope(a)
                && !self.dialing.contains_key(a)
                && match (radius, d) {
                    (None, _) => false,
                    (Some(r), Some(d)) => *d > r * KEEP_SLACK,
                    (Some(_), None) => true,
                }
        });
        dist.sort_by(|x, y| y.1.unwrap_or(f64::MAX).total_cmp(&x.1.unwrap_or(f64::MAX)));
        let far = dist
            .iter()
            .filter(|(_, d)| d.is_none_or(|d| radius.is_some_and(|r| d > r * EVICT_SLACK)))
            .count();
        dist.truncate(far.max(over));
        for (a, _) in dist {
            self.fisheye.evicted += 1;
            self.fisheye.held = self.fisheye.held.saturating_sub(1);
            let tree = self.tree(&a);
            self.fisheye.hold_in_slot(tree, false);
            for (stream, seq) in self.store.forget_latest(a) {
                self.emit(Output::Persist(StoreOp::Delete { author: a, stream, seq }));
            }
        }
        self.maybe_pull(radius);
    }

    /// Pulls when this peer's coordinate first settled, every [`PULL_RADIUSLESS`] while it
    /// has no radius (it is pushed no members then: one neighbour at a time, nearest first),
    /// when it draws one and when it grew by [`PULL_GROWTH`] (see there), from the
    /// [`PULL_FROM`] nearest connected neighbours; and with a radius, from one neighbour in
    /// turn every [`PULL_PERIOD`].
    fn maybe_pull(&mut self, radius: Option<f64>) {
        if self.fisheye.next_pull.is_some_and(|t| self.now < t) {
            return;
        }
        // Never pulled; or the radius is drawn (what the neighbours did not pass on while
        // they could not tell whether it was wanted here comes now); or there is none yet
        // (nothing is pushed here: pull again).
        let grew = match (self.fisheye.pulled, radius) {
            (Some(Some(b)), Some(r)) => r > b * PULL_GROWTH,
            _ => true,
        };
        // Once it has a radius: one neighbour in turn every PULL_PERIOD.
        let turn =
            !grew && radius.is_some() && self.fisheye.next_turn.is_none_or(|t| self.now >= t);
        if !grew && !turn {
            return;
        }
        let nearest: Vec<AuthorKey> = self
            .links
            .iter()
            .filter(|(p, l)| {
                l.status == LinkStatus::Connected && !self.leaving_links.contains_key(*p)
            })
            .map(|(p, l)| (l.rtt().unwrap_or(std::time::Duration::MAX), *p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if nearest.is_empty() {
            return; // nobody to ask: again at the next scope update
        }
        self.fisheye.next_turn = Some(self.now + PULL_PERIOD);
        if grew {
            self.fisheye.pulled = Some(radius);
            let wait = if radius.is_some() { PULL_MIN } else { PULL_RADIUSLESS };
            self.fisheye.next_pull = Some(self.now + wait);
        }
        // A drawn or doubled radius asks the nearest few; otherwise (no radius yet, or in
        // turn) one neighbour at a time, nearest first: each pull lists what the ones before
        // brought (three at once were answered with the same members thrice).
        let peers: Vec<AuthorKey> = if grew && radius.is_some() {
            nearest.into_iter().take(PULL_FROM).collect()
        } else {
            let i = self.fisheye.turns % nearest.len();
            self.fisheye.turns = self.fisheye.turns.wrapping_add(1);
            vec![nearest[i]]
        };
        for p in peers {
            self.send_heads(p, false, true); // members only: posts are not what it missed
        }
    }

    fn next_scope_update_pending(&self) -> bool {
        self.fisheye.next_update.is_some_and(|t| self.now < t)
    }

    /// Far members for random long links: (distance, key), addresses in [`Fisheye::far`].
    pub(crate) fn far_candidates(&self) -> Vec<(f64, AuthorKey)> {
        let me = self.coords.app_coordinate();
        self.fisheye
            .far
            .iter()
            .filter(|(p, _)| !self.links.contains_key(*p) && !self.holds(**p))
            .map(|(p, (c, _))| (me.distance_secs(c), *p))
            .collect()
    }

    /// For the simulator's metrics: whether this peer's scope includes `peer` when it
    /// publishes `c` (the strict radius: such a peer must be known).
    pub(crate) fn scope_includes(&self, peer: &AuthorKey, c: Option<&Coordinate>) -> bool {
        !self.fisheye.active
            || self.links.get(peer).is_some_and(|l| l.status != LinkStatus::Disconnected)
            || *peer == self.me
            || self.is_landmark(peer)
            || c.is_some_and(|c| self.within_radius(c, false))
    }
}
