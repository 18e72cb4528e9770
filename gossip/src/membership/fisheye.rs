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
//!   (`Config::newspapers_heard_per_s`, `crate::membership`): each member hears about that
//!   many newspapers per second from its whole ball, however large the fleet.
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
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::broadcast::tree::tree_of;
use crate::config::Config;
use crate::engine::core::Core;
use crate::io::{Output, StoreOp};
use crate::membership::scope::Scope;
use crate::published::{carried, coordinate_field, published, settled};
use crate::store::{Store, StreamKey};
use crate::streams;
use crate::time::Time;

/// A member already held stays in scope up to this multiple of the radius.
const KEEP_SLACK: f64 = 1.25;
/// A member is pushed to a neighbour that told its radius r if it is within this multiple of
/// r of the neighbour (by this peer's view of both coordinates). At 2 000 peers over 5 min:
/// membership + control 11.8 / 13.6 / 14.5 / 15.8 kbit/s per peer at 1.0 / 1.1 / 1.15 /
/// [`KEEP_SLACK`], members known 72.9 / 73.8 / 74.1 / 72.9 %, their newest status held
/// 74.9 / 83.4 / 84.5 / 87.1 %: each refused push also mutes the author's slot on the link,
/// and estimates of two coordinates differ at the edge of a ball, where most of its volume is.
const PUSH_SLACK: f64 = 1.1;
/// Until a neighbour has told its scope, an event is passed to it if its coordinate is within
/// this multiple of this peer's radius from the author (its own radius is similar).
const SEND_SLACK: f64 = 1.5;
/// Members held beyond this multiple of the radius are evicted (between [`KEEP_SLACK`] and
/// this, only when too many are held).
const EVICT_SLACK: f64 = 2.0;
/// Far members remembered (refused events' authors) at most.
const MAX_FAR: usize = 64;
/// Refused heads remembered at most.
const MAX_REFUSED: usize = 4_096;
/// A fisheye peer pulls (version vectors of its presence and status heads to its
/// neighbours) when its own coordinate first settles, when it first draws its radius, or when
/// the radius grew by this factor since the last pull, at most every [`PULL_MIN`]: what it
/// refused while it could not place members (or its neighbours held back while they could
/// not tell it wanted them), or while its radius was smaller, does not come back by itself
/// until each member's next newspaper.
const PULL_GROWTH: f64 = 2.0;
const PULL_MIN: std::time::Duration = std::time::Duration::from_secs(30);
/// A fisheye peer with no radius yet is pushed no members (see [`Fisheye::wants_within`]): it
/// pulls this often until it can draw one.
const PULL_RADIUSLESS: std::time::Duration = std::time::Duration::from_secs(10);
/// Once a fisheye peer has a radius it pulls from one connected neighbour in turn, nearest
/// first, this often: what never reached it (a member's first events are pushed on two eager
/// links per relay, and announcements of members it does not hold are not grafted) or went
/// stale comes in. At 2 000 peers over 5 min, against none: membership + control 13.6 →
/// 15.3 kbit/s per peer, members known 73.8 → 78.0 %, their newest status 83.4 → 91.7 %
/// (every 30 s from the 3 nearest: 16.6 kbit/s, 80.6 %, 92.8 %).
const PULL_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);
/// A pull goes to this many connected neighbours, the nearest by RTT: their balls overlap
/// this peer's most (a vector of ~2 × K heads each; to all ~10 neighbours the pull when the
/// radius is first drawn cost as much as the join's pushes at 1 000 peers).
const PULL_FROM: usize = 3;
/// With an unbounded radius, the radius is recomputed once this many members came in.
const RECOMPUTE_AFTER: usize = 16;
/// How often the radius is recomputed and members out of scope are evicted.
const SCOPE_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The streams by which a peer holds a member: its presence and its status.
pub(crate) const PRESENCE: [Stream; 2] = [Stream::HeyThere, Stream::Newspaper];

/// A far member: its coordinate and listen addresses (a candidate for a random long link).
#[derive(Debug, Clone)]
struct Far {
    coordinate: Coordinate,
    addrs: Vec<String>,
}

/// Fisheye state of one peer.
#[derive(Debug, Default)]
pub(crate) struct Fisheye {
    /// True once this peer held `fisheye_members` members (never false again).
    active: bool,
    /// Radius in seconds of coordinate distance; `None`: unbounded.
    radius: Option<f64>,
    /// Far members, at most [`MAX_FAR`].
    far: BTreeMap<AuthorKey, Far>,
    /// When the scope is next recomputed.
    next_update: Option<Time>,
    /// Latest-value events refused as out of scope.
    refused: u64,
    /// Of `refused`: events this peer could not place (its coordinate or the author's not
    /// settled, or the author's unknown), and events of authors just past its radius r
    /// (within [`PUSH_SLACK`] × r, which a push allows for); the rest were farther.
    refused_unplaced: u64,
    refused_edge: u64,
    /// Members evicted.
    evicted: u64,
    /// Members held (presence or status; this peer excluded), kept up to date as members
    /// join and are evicted, recounted at each update.
    held: usize,
    /// Members admitted since the radius was last computed while it was unbounded.
    admitted: usize,
    /// Heads refused, by stream (at most [`MAX_REFUSED`]): announcements of them are not
    /// grafted (the graft would fetch an event refused again, forever).
    refused_heads: BTreeMap<StreamKey, u64>,
    /// The radius at the last pull (`None` before the first).
    pulled: Option<Option<f64>>,
    /// No pull before this.
    next_pull: Option<Time>,
    /// Pulls made to one neighbour at a time (the next goes to the next nearest).
    turns: usize,
    /// With a radius, the next pull to one neighbour in turn is not before this.
    next_turn: Option<Time>,
    /// Members held per tree slot, slots holding none left out (empty until fisheye;
    /// recounted at each scope update): a refused event mutes its slot on a link only if no
    /// member held shares it. Bounded by the members held (and by `TREE_SLOTS`); a map, as
    /// the array of every slot was 8 KiB per peer for the few hundred slots in use.
    held_slots: BTreeMap<u16, u16>,
}

/// What a member's event is offered to a neighbour as (see [`Fisheye::wants_within`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Pushed or announced.
    Push,
    /// An answer to its pull; `listed`: its vector lists the author (it holds it).
    Answer {
        /// The pull's vector lists the author.
        listed: bool,
    },
}

/// Fisheye counters, for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FisheyeCounters {
    pub(crate) refused: u64,
    pub(crate) refused_unplaced: u64,
    pub(crate) refused_edge: u64,
    pub(crate) evicted: u64,
    pub(crate) held: usize,
    pub(crate) active: bool,
}

/// True when `author` is a landmark: kept by every peer (one key in `fisheye_landmarks`).
pub(crate) fn is_landmark(config: &Config, author: &AuthorKey) -> bool {
    let n = u64::from(config.fisheye_landmarks);
    let b = author.as_bytes();
    n > 0 && u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).is_multiple_of(n)
}

/// True when `store` holds `author`'s presence or status.
pub(crate) fn holds(store: &Store, author: AuthorKey) -> bool {
    let (hey, paper) = store.presence(author);
    hey.is_some() || paper.is_some()
}

/// The coordinate `author` last published, as
/// [`published_coordinate`](crate::published::published_coordinate) reads it, from one
/// look-up of the store instead of two (every member event and answer asks).
pub(crate) fn placed(store: &Store, author: AuthorKey) -> Option<Coordinate> {
    let (hey, paper) = store.presence(author);
    published(paper.and_then(coordinate_field), hey.and_then(coordinate_field))
}

/// Whether `author` is always in scope: this peer, a neighbour, a landmark.
fn always_in_scope<R>(core: &Core<R>, author: &AuthorKey) -> bool {
    *author == core.me || core.links.contains(author) || is_landmark(&core.config, author)
}

/// Members held (presence or status), `me` excluded, each with the coordinate it last
/// published (as [`placed`]), in one pass over the store: the latest-value
/// streams are ordered by author.
pub(crate) fn held_members(store: &Store, me: AuthorKey) -> Vec<(AuthorKey, Option<Coordinate>)> {
    // An author, its newspaper's coordinate and its hey-there's.
    type Fields<'a> = (AuthorKey, Option<&'a pb::Coordinate>, Option<&'a pb::Coordinate>);
    let decode = |(a, paper, hey): Fields<'_>| (a, published(paper, hey));
    let mut out = Vec::new();
    let mut current: Option<Fields<'_>> = None;
    for ev in store.latest_events() {
        let a = ev.author();
        if a == me || !PRESENCE.contains(&ev.stream()) {
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

impl Fisheye {
    /// A fisheye peer from the start (`Config::fisheye_from_start`), or not yet.
    pub(crate) fn new(active: bool) -> Self {
        Self { active, ..Self::default() }
    }

    /// True once this peer keeps fisheye membership.
    pub(crate) fn active(&self) -> bool {
        self.active
    }

    /// Members held (presence or status; this peer excluded).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Members held whose events follow `tree`.
    pub(crate) fn held_in_slot(&self, tree: u16) -> u16 {
        self.held_slots.get(&tree).copied().unwrap_or(0)
    }

    /// One more (or fewer) member held on `tree` (an author tree's slot; others are not
    /// counted).
    fn hold_in_slot(&mut self, tree: u16, more: bool) {
        if usize::from(tree) >= vecino_proto::limits::TREE_SLOTS {
            return;
        }
        if more {
            let n = self.held_slots.entry(tree).or_insert(0);
            *n = n.saturating_add(1);
        } else if let Some(n) = self.held_slots.get_mut(&tree) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held_slots.remove(&tree);
            }
        }
    }

    /// A member joined (its first presence or status): counted, and held in its slot once
    /// fisheye. Returns whether fisheye is active (its membership slot is then unmuted).
    pub(crate) fn joined(&mut self, config: &Config, author: &AuthorKey) -> bool {
        self.held += 1;
        if self.active {
            self.hold_in_slot(tree_of(author, config.per_author_trees), true);
        }
        self.active
    }

    /// The counters.
    pub(crate) fn counters(&self) -> FisheyeCounters {
        FisheyeCounters {
            refused: self.refused,
            refused_unplaced: self.refused_unplaced,
            refused_edge: self.refused_edge,
            evicted: self.evicted,
            held: self.held,
            active: self.active,
        }
    }

    /// A far member's listen addresses, if remembered.
    pub(crate) fn far_addrs(&self, peer: &AuthorKey) -> Option<Vec<String>> {
        self.far.get(peer).map(|f| f.addrs.clone())
    }

    /// Whether a member at coordinate `c` is in this peer's scope (`held`: already held, with
    /// the hysteresis slack). Needs both coordinates settled, else only held members are.
    fn within_radius<R>(&self, core: &Core<R>, c: &Coordinate, held: bool) -> bool {
        let me = core.coords.app_coordinate();
        if !settled(me) || !settled(c) {
            return held;
        }
        match self.radius {
            None => true,
            Some(r) => me.distance_secs(c) <= if held { r * KEEP_SLACK } else { r },
        }
    }

    /// The scope check on receipt: `false` refuses a latest-value event of an author outside
    /// this peer's fisheye (it is then neither stored nor passed on, and the caller forgets
    /// any graft of it).
    pub(crate) fn admits<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
    ) -> bool {
        let k = core.config.fisheye_members;
        if !self.active && k > 0 && self.held >= k {
            self.active = true; // past K members: fisheye from now on
        }
        if !self.active
            || from.is_none()
            || !streams::scoped(ev.stream())
            || always_in_scope(core, &ev.author())
        {
            return true;
        }
        let author = ev.author();
        let (hey, paper) = core.store.presence(author);
        let held = hey.is_some() || paper.is_some();
        // The event's own coordinate if settled, else the one held (a hey-there is published
        // once, at start, before the coordinate settles: the newspaper places its author; as
        // `published_coordinate`, from the one look-up).
        let held_at = published(paper.and_then(coordinate_field), hey.and_then(coordinate_field));
        let c = match (carried(ev), held_at) {
            (Some(c), _) if settled(&c) => Some(c),
            (_, Some(p)) if settled(&p) => Some(p),
            (c, p) => c.or(p),
        };
        if c.is_some_and(|c| self.within_radius(core, &c, held)) || (c.is_none() && held) {
            if !held && self.radius.is_none() {
                self.admitted += 1;
            }
            if !self.refused_heads.is_empty() {
                self.refused_heads.remove(&(author, ev.stream()));
            }
            return true;
        }
        self.refused += 1;
        let me = core.coords.app_coordinate();
        match (c.filter(|c| settled(me) && settled(c)), self.radius) {
            (Some(c), Some(r)) if me.distance_secs(&c) <= r * PUSH_SLACK => {
                self.refused_edge += 1;
            }
            (Some(_), Some(_)) => {}
            _ => self.refused_unplaced += 1,
        }
        let key = (author, ev.stream());
        if self.refused_heads.len() >= MAX_REFUSED {
            self.refused_heads.pop_first();
        }
        self.refused_heads.insert(key, ev.seq());
        if let (Some(c), Body::HeyThere(h)) = (c, ev.body())
            && settled(&c)
        {
            self.note_far(&mut core.rng, author, c, h.addrs.clone());
        }
        false
    }

    /// Whether this peer keeps a stream of this author at all (see
    /// `AntiEntropy::on_version_vector`).
    pub(crate) fn would_keep<R>(&self, core: &Core<R>, key: &StreamKey) -> bool {
        !self.active
            || !streams::scoped(key.1)
            || always_in_scope(core, &key.0)
            || holds(&core.store, key.0)
    }

    /// False for an announced head this peer refused (do not graft it).
    /// Once fisheye, members this peer does not hold (nor neighbours, nor landmarks) are not
    /// grafted either: it cannot place them before it has their event, and a graft turns the
    /// link eager under the posts too (on planet, 551 k grafts and 3.95 copies per delivered
    /// post in 180 s with them); version vectors bring what is in scope.
    pub(crate) fn may_want<R>(&self, core: &Core<R>, key: &StreamKey, seq: u64) -> bool {
        if self.active
            && streams::scoped(key.1)
            && !always_in_scope(core, &key.0)
            && !holds(&core.store, key.0)
        {
            return false;
        }
        self.refused_heads.get(key).is_none_or(|&s| s < seq)
    }

    fn note_far<R: Rng>(
        &mut self,
        rng: &mut R,
        author: AuthorKey,
        c: Coordinate,
        addrs: Vec<String>,
    ) {
        if self.far.len() >= MAX_FAR && !self.far.contains_key(&author) {
            let i = rng.random_range(0..self.far.len());
            if let Some(old) = self.far.keys().nth(i).copied() {
                self.far.remove(&old);
            }
        }
        self.far.insert(author, Far { coordinate: c, addrs });
    }

    /// This peer's scope, as its pongs tell it (`None`: full membership).
    pub(crate) fn scope(&self) -> Option<Scope> {
        if !self.active {
            return None;
        }
        Some(self.radius.map_or(Scope::Unbounded, Scope::Radius))
    }

    /// Whether neighbour `peer` presumably keeps `author`'s latest-value events, offered as
    /// `offer`: pass them on only then (pushes, announcements, answers to pulls). `place` is
    /// the author's published coordinate ([`placed`]), which a caller asking
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
    pub(crate) fn wants_within<R>(
        &self,
        core: &Core<R>,
        peer: AuthorKey,
        author: &AuthorKey,
        place: Option<Coordinate>,
        offer: Offer,
    ) -> bool {
        let landmark = |a: &AuthorKey| is_landmark(&core.config, a);
        let link = core.links.get(&peer);
        if let Some(l) = link
            && let Some(scope) = l.probe.peer_scope()
        {
            if *author == peer || *author == core.me || landmark(author) {
                return true;
            }
            return match (scope, l.probe.peer_coordinate(), place) {
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
        let Some(r) = self.radius.filter(|_| self.active) else { return true };
        if *author == peer || *author == core.me || landmark(author) {
            return true; // a neighbour's own events, and ours, go to the neighbour
        }
        let theirs =
            link.and_then(|l| l.probe.peer_coordinate()).or_else(|| placed(&core.store, peer));
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
    pub(crate) fn radius_of<R>(
        &self,
        core: &Core<R>,
        peer: AuthorKey,
        listed: &BTreeMap<StreamKey, u64>,
    ) -> Option<f64> {
        let k = core.config.fisheye_members;
        if !self.active || k == 0 {
            return None;
        }
        let theirs = core
            .links
            .get(&peer)
            .and_then(|l| l.probe.peer_coordinate())
            .or_else(|| placed(&core.store, peer))
            .filter(settled)?;
        let mut d: Vec<f64> = listed
            .keys()
            .filter(|(a, s)| *s == Stream::Newspaper && *a != peer && !is_landmark(&core.config, a))
            .filter_map(|(a, _)| placed(&core.store, *a))
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
    pub(crate) fn answers<R>(
        &self,
        core: &Core<R>,
        peer: AuthorKey,
        author: &AuthorKey,
        theirs: Option<f64>,
        listed: bool,
    ) -> bool {
        let place = placed(&core.store, *author);
        if !self.wants_within(core, peer, author, place, Offer::Answer { listed }) {
            return false;
        }
        let Some(r) = theirs else { return true };
        if *author == peer || *author == core.me || is_landmark(&core.config, author) {
            return true;
        }
        let t = core.links.get(&peer).and_then(|l| l.probe.peer_coordinate());
        match (t, place) {
            (Some(t), Some(c)) => t.distance_secs(&c) <= r,
            _ => true,
        }
    }

    /// Every [`SCOPE_PERIOD`]: becomes a fisheye peer past `fisheye_members` members,
    /// recomputes the radius and evicts members out of scope (not those being dialled).
    /// Called on every tick: cheap unless an update is due, or the radius is unbounded and
    /// [`RECOMPUTE_AFTER`] members came in since (a join wave must not flood past K).
    /// Returns the neighbours to pull from (see [`Fisheye::pulls`]), in order.
    pub(crate) fn update_scope<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        dialing: &BTreeMap<AuthorKey, Time>,
    ) -> Vec<AuthorKey> {
        let k = core.config.fisheye_members;
        if k == 0 {
            return Vec::new();
        }
        if !self.active && self.held >= k {
            self.active = true;
        }
        if self.next_update.is_some_and(|t| core.now < t) && self.admitted < RECOMPUTE_AFTER {
            return Vec::new();
        }
        self.admitted = 0;
        self.next_update = Some(core.now + SCOPE_PERIOD);
        let held = held_members(&core.store, core.me);
        self.held = held.len();
        if !self.active && held.len() < k {
            return Vec::new();
        }
        self.active = true;
        self.held_slots.clear();
        let per_author = core.config.per_author_trees;
        for (a, _) in &held {
            self.hold_in_slot(tree_of(a, per_author), true);
        }
        let me = *core.coords.app_coordinate();
        if !settled(&me) {
            return Vec::new();
        }
        let mut dist: Vec<(AuthorKey, Option<f64>)> = held
            .into_iter()
            .map(|(a, c)| (a, c.filter(settled).map(|c| me.distance_secs(&c))))
            .collect();
        let mut known: Vec<f64> = dist.iter().filter_map(|(_, d)| *d).collect();
        self.radius = if known.len() < k {
            None
        } else {
            let (_, kth, _) = known.select_nth_unstable_by(k - 1, f64::total_cmp);
            Some(*kth)
        };
        // Evict members far out of scope (beyond EVICT_SLACK × r, or unsettled), and past 2K
        // members held (memory) the farthest beyond the keep slack, down to 1.5K. Evicting
        // whatever leaves the ball at once churns: coordinates still move, and what comes
        // back must be sent again.
        let radius = self.radius;
        let over = dist.len().saturating_sub(k * 3 / 2).min(if dist.len() > 2 * k {
            usize::MAX
        } else {
            0
        });
        dist.retain(|(a, d)| {
            !always_in_scope(core, a)
                && !dialing.contains_key(a)
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
            self.evicted += 1;
            self.held = self.held.saturating_sub(1);
            self.hold_in_slot(tree_of(&a, per_author), false);
            for (stream, seq) in core.store.forget_latest(a) {
                core.emit(Output::Persist(StoreOp::Delete { author: a, stream, seq }));
            }
        }
        self.pulls(core, radius)
    }

    /// The neighbours to pull from (version vectors of this peer's presence and status
    /// heads): when this peer's coordinate first settled, every [`PULL_RADIUSLESS`] while it
    /// has no radius (it is pushed no members then: one neighbour at a time, nearest first),
    /// when it draws one and when it grew by [`PULL_GROWTH`] (see there), from the
    /// [`PULL_FROM`] nearest connected neighbours; and with a radius, from one neighbour in
    /// turn every [`PULL_PERIOD`].
    fn pulls<R>(&mut self, core: &Core<R>, radius: Option<f64>) -> Vec<AuthorKey> {
        let now = core.now;
        if self.next_pull.is_some_and(|t| now < t) {
            return Vec::new();
        }
        // Never pulled; or the radius is drawn (what the neighbours did not pass on while
        // they could not tell whether it was wanted here comes now); or there is none yet
        // (nothing is pushed here: pull again).
        let grew = match (self.pulled, radius) {
            (Some(Some(b)), Some(r)) => r > b * PULL_GROWTH,
            _ => true,
        };
        // Once it has a radius: one neighbour in turn every PULL_PERIOD.
        let turn = !grew && radius.is_some() && self.next_turn.is_none_or(|t| now >= t);
        if !grew && !turn {
            return Vec::new();
        }
        let nearest: Vec<AuthorKey> = core
            .links
            .iter()
            .filter(|(p, l)| l.connected() && !core.links.leaving(p))
            .map(|(p, l)| (l.rtt().unwrap_or(std::time::Duration::MAX), *p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if nearest.is_empty() {
            return Vec::new(); // nobody to ask: again at the next scope update
        }
        self.next_turn = Some(now + PULL_PERIOD);
        if grew {
            self.pulled = Some(radius);
            let wait = if radius.is_some() { PULL_MIN } else { PULL_RADIUSLESS };
            self.next_pull = Some(now + wait);
        }
        // A drawn or doubled radius asks the nearest few; otherwise (no radius yet, or in
        // turn) one neighbour at a time, nearest first: each pull lists what the ones before
        // brought (three at once were answered with the same members thrice).
        if grew && radius.is_some() {
            nearest.into_iter().take(PULL_FROM).collect()
        } else {
            let i = self.turns % nearest.len();
            self.turns = self.turns.wrapping_add(1);
            vec![nearest[i]]
        }
    }

    /// Far members for random long links: (distance, key), addresses by
    /// [`Fisheye::far_addrs`].
    pub(crate) fn far_candidates<R>(&self, core: &Core<R>) -> Vec<(f64, AuthorKey)> {
        let me = core.coords.app_coordinate();
        self.far
            .iter()
            .filter(|(p, _)| !core.links.contains(p) && !holds(&core.store, **p))
            .map(|(p, f)| (me.distance_secs(&f.coordinate), *p))
            .collect()
    }

    /// For the simulator's metrics: whether this peer's scope includes `peer` when it
    /// publishes `c` (the strict radius: such a peer must be known).
    #[cfg(feature = "sim")]
    pub(crate) fn scope_includes<R>(
        &self,
        core: &Core<R>,
        peer: &AuthorKey,
        c: Option<&Coordinate>,
    ) -> bool {
        !self.active
            || core
                .links
                .get(peer)
                .is_some_and(|l| l.status() != crate::io::LinkStatus::Disconnected)
            || *peer == core.me
            || is_landmark(&core.config, peer)
            || c.is_some_and(|c| self.within_radius(core, c, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::{at_ms, hey_there, key};

    fn fisheye_config() -> Config {
        Config {
            fisheye_members: 4,
            fisheye_from_start: true,
            fisheye_landmarks: 0,
            ..Config::default()
        }
    }

    /// A fisheye peer whose own coordinate has not settled cannot place anyone: it refuses a
    /// stranger's presence (counted as unplaced, and its head not grafted again), but always
    /// admits a neighbour's and its own.
    #[test]
    fn an_unplaced_stranger_is_refused_and_a_neighbour_admitted() {
        let mut core = Core::for_test(1, fisheye_config());
        let mut f = Fisheye::new(true);
        let stranger = hey_there(1, 1, &at_ms(10.0, 0.1));
        assert!(!f.admits(&mut core, Some(key(3)), &stranger));
        let c = f.counters();
        assert_eq!((c.refused, c.refused_unplaced), (1, 1));
        assert!(!f.may_want(&core, &(key(1), Stream::HeyThere), 1), "not grafted again");
        assert!(f.admits(&mut core, None, &stranger), "own events are always admitted");
        core.link_to(key(1));
        assert!(f.admits(&mut core, Some(key(1)), &stranger), "a neighbour is always in scope");
        // Not fisheye at all: everything is admitted.
        let mut full = Fisheye::new(false);
        let mut core = Core::for_test(1, Config::default());
        assert!(full.admits(&mut core, Some(key(3)), &stranger));
    }

    /// A neighbour that told its radius r on a pong is pushed a member only within
    /// `PUSH_SLACK` × r of itself; an answer to its pull that lists the member goes up to
    /// `KEEP_SLACK` × r (its hysteresis); a member it cannot place goes nowhere.
    #[test]
    fn a_neighbour_is_offered_what_its_told_radius_keeps() {
        let mut core = Core::for_test(2, fisheye_config());
        let peer = key(1);
        core.link_to(peer);
        let l = core.links.get_mut(&peer).expect("linked");
        l.probe.pinged(7, core.now);
        let pong = pb::Pong {
            nonce: 7,
            coordinate: Some(crate::published::coord_to_pb(&at_ms(0.0, 0.1))),
            fisheye_radius_us: Some(10_000), // 10 ms
            slow: false,
        };
        l.probe.on_pong(core.now, &pong);
        let f = Fisheye::new(true);
        let offer =
            |ms: f64, offer| f.wants_within(&core, peer, &key(2), Some(at_ms(ms, 0.1)), offer);
        assert!(offer(10.9, Offer::Push));
        assert!(!offer(11.1, Offer::Push));
        assert!(offer(12.4, Offer::Answer { listed: true }));
        assert!(!offer(12.4, Offer::Answer { listed: false }));
        assert!(offer(5.0, Offer::Push));
        let unsettled = f.wants_within(&core, peer, &key(2), Some(at_ms(1.0, 1.5)), Offer::Push);
        assert!(!unsettled, "a member it cannot place");
        assert!(f.wants_within(&core, peer, &peer, None, Offer::Push), "its own events");
    }

    /// Past K members the scope update turns a peer fisheye, draws the radius at the K-th
    /// nearest settled member and evicts members far beyond it (telling the host to delete
    /// them), then asks its nearest neighbour to pull from.
    #[test]
    fn the_scope_update_draws_the_radius_and_evicts_far_members() {
        let config = Config { fisheye_from_start: false, ..fisheye_config() };
        let mut core = Core::for_test(3, config);
        core.coords.set_coordinate(at_ms(0.0, 0.1)).expect("a valid coordinate");
        for (n, ms) in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 100.0)] {
            let _ = core.store.insert(hey_there(n, 1, &at_ms(ms, 0.1)));
        }
        core.link_to(key(9));
        let mut f = Fisheye::new(false);
        let pulls = f.update_scope(&mut core, &BTreeMap::new());
        assert!(f.active());
        // The 4th nearest, 4 ms away (plus the two heights of 10 µs).
        let Some(Scope::Radius(r)) = f.scope() else { panic!("no radius: {:?}", f.scope()) };
        assert!((r - 0.004_02).abs() < 1e-6, "radius {r}");
        assert_eq!(f.counters().evicted, 1, "the member 100 ms away");
        assert!(!holds(&core.store, key(5)) && holds(&core.store, key(4)));
        let deleted = core
            .take()
            .into_iter()
            .filter(|o| matches!(o, Output::Persist(StoreOp::Delete { .. })));
        assert_eq!(deleted.count(), 1);
        assert_eq!(pulls, vec![key(9)]);
    }
}
