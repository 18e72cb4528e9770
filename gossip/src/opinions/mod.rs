//! Opinions and clout: what this peer observes of its neighbours, what the fleet believes
//! about every peer, and how much this peer trusts each observer for it.
//!
//! - **Observations.** A peer publishes a signed, latest-value `Opinion` about the peers it
//!   observes directly (its links): online (the link connected), restarts it saw, the
//!   subject's start and uptime, link quality, RTT. A link that went away stays in it, down,
//!   for [`DOWN_KEPT_FOR`] (at most [`MAX_DOWN_KEPT`] of them). Gated like newspapers: at once
//!   (past [`FLIP_SPACING`]) when a subject turns up or down, [`SET_SETTLE`] after the set of
//!   subjects changed (at most every [`SET_SPACING`]; a fisheye peer spaces these as its
//!   newspapers, by the members it holds), and otherwise every
//!   `Config::opinion_max_interval`. An entry names its subject by the first 8 bytes of its
//!   key (`OpinionEntry.subject_prefix`), resolved against the neighbours and the members
//!   held; claims about peers not held still draw the graph statuses are computed on. A link let go while connected (a bye, an overlay swap) is
//!   simply no longer observed: only a link that went down says so.
//! - **A claim checked at once.** When another observer says a neighbour of this peer is
//!   down while the link to it is connected, the link is pinged and suspected unless it
//!   answers within three RTTs ([`crate::links::link::Link::check`]): one observer that
//!   notices a crash tells the others, and they confirm it in a round trip, not a slow beat.
//! - **Clout**: this peer's own weighting of each observer, reputation × proximity.
//!   Reputation = tenure × agreement: tenure grows over [`TENURE_FULL`] of knowing the
//!   observer (a fresh identity starts at [`TENURE_FLOOR`]); agreement starts at
//!   [`AGREEMENT_START`], grows slowly ([`AGREEMENT_GAIN`] per review, every [`REVIEW`]) while
//!   the observer's claims agree with the consensus, and halves at each review where a claim
//!   it kept for a whole review contradicts it (slow to earn, quick to lose). Proximity is
//!   [`PROXIMITY_BONUS`] when this peer's own measured RTT to the observer (median of ≥ 3
//!   probes) is under [`NEAR`]: never a claimed coordinate. A claim that gives a subject
//!   another start than the subject's own signed presence counts as a contradiction too
//!   ([`Opinions::denies_own_start`]): that lie is caught even where liars are most of a
//!   subject's observers and so make its consensus.
//! - **Consensus** ([`consensus`]): per subject, at read time, from the latest-value map.
//!   Statuses: online, unreachable, offline.

pub(crate) mod consensus;

use std::collections::BTreeMap;
use std::time::Duration;

use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{AuthorKey, Bytes, VerifiedEvent};

use crate::engine::core::Core;
use crate::membership::has_left;
use crate::time::Time;

use self::consensus::{Claim, Tally, tally};

/// A subject that turned up or down is published at most this often (the first at once: a
/// cut suspects a peer's links one after the other, and each opinion goes to every peer)…
const FLIP_SPACING: Duration = Duration::from_secs(3);
/// …and a subject back up waits this long: for the others a heal brings back, and until most
/// of the heal's backlog has crossed (on a radio every peer's opinion takes airtime from it;
/// convoy's heals drain in 1.5–2.5 s). Not much longer: a peer back from a crash that is cut
/// off again before its observers vouch for it reads offline on the other side (10 s:
/// opinions-convoy called live peers offline in 0.35 % of samples).
const UP_BATCH: Duration = Duration::from_secs(4);
/// A changed set of subjects (links made or let go), or a start or restart seen, is
/// published once the set held this long, and at most every [`SET_SPACING`]: a joining peer
/// reshapes its links for a minute or two, and little of it is news to the others (idle20:
/// opinions doubled the membership bytes of a run with 10 s and no spacing). Not much
/// longer: a peer that no observer on the other side of a cut vouches for reads offline
/// there (4 real peers cut 38 s after they started, with 30 s: all offline).
const SET_SETTLE: Duration = Duration::from_secs(15);
/// See [`SET_SETTLE`].
const SET_SPACING: Duration = Duration::from_secs(30);
/// The first opinion goes out once the set held this long, or this long after the first link
/// at the latest ([`FIRST_AT_MOST`]): a young fleet cut apart needs the other side's word
/// (4 real peers cut 38 s after they started: with 15 s / 30 s, all 8 pairs read offline;
/// with these, all 8 unreachable). Later would save a join's flood (idle20: +50 % instead of
/// +74 % membership + control over the run).
const FIRST_SETTLE: Duration = Duration::from_secs(5);
/// See [`FIRST_SETTLE`].
const FIRST_AT_MOST: Duration = Duration::from_secs(15);
/// A subject's link went away: it stays in the opinion, down, this long…
const DOWN_KEPT_FOR: Duration = Duration::from_secs(3_600);
/// …and at most this many such subjects (the oldest go first).
const MAX_DOWN_KEPT: usize = 32;
/// How often reputations are reviewed against the consensus.
const REVIEW: Duration = Duration::from_secs(30);
/// Tenure reaches 1 after knowing an observer this long.
const TENURE_FULL: Duration = Duration::from_secs(3_600);
/// A fresh identity's tenure.
const TENURE_FLOOR: f64 = 0.02;
/// A new observer's agreement.
const AGREEMENT_START: f64 = 0.5;
/// Share of the way to 1 agreement gains at a review where nothing contradicted.
const AGREEMENT_GAIN: f64 = 0.02;
/// Agreement never falls below this (a reformed observer can earn it back).
const AGREEMENT_FLOOR: f64 = 0.01;
/// An opinion that gives a subject an earlier start than the subject's own presence, made
/// this long after that presence, denies it (see [`Opinions::denies_own_start`]).
const START_GRACE: Duration = Duration::from_secs(30);
/// Starts this close count as the same (an observer copies the subject's exactly).
const START_SLACK_MS: u64 = 1_000;
/// Uptimes this close (s, or 1 % when more) to the one a subject's own start implies agree.
const UPTIME_SLACK_S: u64 = 5;
/// Proximity bonus for an observer measured near.
const PROXIMITY_BONUS: f64 = 1.3;
/// Near: measured RTT under this.
const NEAR: Duration = Duration::from_millis(50);
/// RTT samples needed before proximity counts.
const NEAR_SAMPLES: usize = 3;

/// Why an opinion went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The first one.
    First,
    /// A subject turned up or down.
    Flip,
    /// The set of subjects changed, or a start or restart was seen.
    Set,
    /// None went out for `Config::opinion_max_interval`.
    Age,
}

/// What this peer believes about a peer's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerStatus {
    /// Alive, and reachable from here.
    Online,
    /// Alive by the others' word, but cut off from this side (or this side from it).
    Unreachable,
    /// Crashed or left: the observers agree (or it said chau).
    Offline,
}

impl PeerStatus {
    /// Lowercase name, as the API and the metrics say it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Online => "online",
            PeerStatus::Unreachable => "unreachable",
            PeerStatus::Offline => "offline",
        }
    }
}

/// How much this peer trusts one observer, with its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clout {
    /// tenure × agreement × proximity.
    pub value: f64,
    /// How long this peer has known the observer, 0..=1.
    pub tenure: f64,
    /// How well its claims agreed with the consensus, 0..=1.
    pub agreement: f64,
    /// [`PROXIMITY_BONUS`] when measured near, else 1.
    pub proximity: f64,
}

/// One observer's claim about a peer, as this peer weighs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverClaim {
    /// The observer (this peer itself for its own live observation).
    pub observer: AuthorKey,
    /// It says the peer is online.
    pub online: bool,
    /// A claim "down" that counts (made after the peer's own last word).
    pub stands: bool,
    /// Its start or uptime for the peer denies the start the peer's own signed presence
    /// announces: both are left out of the consensus.
    pub denies_start: bool,
    /// Restarts it saw.
    pub restarts: u32,
    /// The peer's run started then (ms since the epoch), 0 if unknown.
    pub started_ms: u64,
    /// Uptime (s) as of now, projected from when the claim was made.
    pub uptime_s: Option<u64>,
    /// The RTT it measured.
    pub rtt: Option<Duration>,
    /// When the claim was made (ms since the epoch).
    pub at_ms: u64,
    /// Its clout here.
    pub clout: Clout,
}

/// What this peer believes about one peer: the consensus per field, and who says what.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerOpinion {
    /// The peer.
    pub peer: AuthorKey,
    /// Online, unreachable or offline.
    pub status: PeerStatus,
    /// A path of links both ends list leads to it from here.
    pub reachable: bool,
    /// It said chau.
    pub left: bool,
    /// Clout saying online, and saying offline (the claims that stand).
    pub weight_online: f64,
    /// See `weight_online`.
    pub weight_offline: f64,
    /// Clout-weighted median of the restarts claimed.
    pub restarts: Option<u32>,
    /// Clout-weighted median of its start (ms since the epoch).
    pub started_ms: Option<u64>,
    /// Clout-weighted median of its uptime (s).
    pub uptime_s: Option<u64>,
    /// Clout-weighted median of the RTTs its observers measured.
    pub rtt: Option<Duration>,
    /// The claims, by observer key.
    pub claims: Vec<ObserverClaim>,
}

/// What a lying observer claims instead of what it sees (the simulator's liar fault): about
/// every subject it observes, or about every member it holds (`about_all`).
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lie {
    /// Claim every subject down.
    pub offline: bool,
    /// Added to the restarts seen.
    pub restarts_add: u32,
    /// Added to the subject's start (ms; +3 600 000 claims it started an hour later).
    pub start_shift_ms: i64,
    /// The uptime claimed is this times the true one.
    pub uptime_factor: f64,
    /// Claim about every member held, not only the neighbours.
    pub about_all: bool,
}

/// This peer's own observation of one subject.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Observed {
    online: bool,
    /// When `online` last changed.
    since: Time,
    /// The subject's start as its presence says (0: unknown).
    started_ms: u64,
    /// Starts seen to change while observed.
    restarts: u32,
    rtt_us: u32,
    quality: u32,
}

/// This peer's standing of one observer.
#[derive(Debug, Clone, PartialEq)]
struct Standing {
    /// When this peer first held an opinion of it.
    known_since: Time,
    agreement: f64,
    /// Subjects its claims contradicted at the last review (by prefix; a claim contradicting
    /// at two reviews in a row costs it): bounded by the entries of one opinion.
    contradicted: Vec<u64>,
}

/// A subject as last published: its key, online, start and restarts.
type Published = (AuthorKey, bool, u64, u32);

/// Every claim held, by subject: (observer, claim).
type Claims = BTreeMap<AuthorKey, Vec<(AuthorKey, Claim)>>;

/// Where this peer can get to by the claims: a link counts when both ends say it is up (or
/// one does and the other publishes no opinions at all); this peer's own links when
/// connected. The same events that carry a claim "down" cut the links they name, so a
/// partition cuts the links across it in the very claims that say the other side is down:
/// the other side's older claims, which still vouch for each other, are then known to be out
/// of reach. A peer this peer can reach is not offline, whatever the votes say (after a
/// heal, the other side's claims that this side was down arrive before its claims that it
/// is up again).
#[derive(Debug, Default)]
struct Reach {
    /// Reached from this peer, by key prefix.
    reached: std::collections::BTreeSet<u64>,
    /// Named by some claim.
    named: std::collections::BTreeSet<u64>,
}

impl Reach {
    fn of<R>(core: &Core<R>, claims: &Claims, unnamed: &[(u64, u64, bool)]) -> Self {
        let me = core.me.prefix();
        // (a, b) → a says b is up.
        let mut said: BTreeMap<(u64, u64), bool> = BTreeMap::new();
        let mut publishes = std::collections::BTreeSet::from([me]);
        for (subject, list) in claims {
            for (observer, c) in list {
                if observer != &core.me {
                    said.insert((observer.prefix(), subject.prefix()), c.online);
                    publishes.insert(observer.prefix());
                }
            }
        }
        for &(observer, subject, online) in unnamed {
            said.insert((observer, subject), online);
            publishes.insert(observer);
        }
        for (peer, l) in core.links.iter().filter(|(_, l)| l.proven()) {
            said.insert((me, peer.prefix()), l.connected());
        }
        let mut adjacent: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut named = std::collections::BTreeSet::new();
        for (&(a, b), &up) in &said {
            named.insert(a);
            named.insert(b);
            let back = said.get(&(b, a)).copied();
            if up && (back == Some(true) || (back.is_none() && !publishes.contains(&b))) {
                adjacent.entry(a).or_default().push(b);
                adjacent.entry(b).or_default().push(a);
            }
        }
        let mut reached = std::collections::BTreeSet::from([me]);
        let mut todo = vec![me];
        while let Some(n) = todo.pop() {
            for &m in adjacent.get(&n).into_iter().flatten() {
                if reached.insert(m) {
                    todo.push(m);
                }
            }
        }
        Self { reached, named }
    }

    /// This peer can get to `peer`: its own link is connected, or the claims lead there.
    fn reaches<R>(&self, core: &Core<R>, peer: &AuthorKey) -> bool {
        *peer == core.me
            || core.links.get(peer).is_some_and(|l| l.connected())
            || self.reached.contains(&peer.prefix())
    }
}

/// The opinions machine.
#[derive(Debug, Default)]
pub(crate) struct Opinions {
    /// Own observations: the links, and links gone within [`DOWN_KEPT_FOR`] (bounded by
    /// `Config::max_links` + [`MAX_DOWN_KEPT`]).
    observed: BTreeMap<AuthorKey, Observed>,
    /// The last opinion published: when, and its subjects with their online flags, starts
    /// and restarts.
    published: Option<(Time, Vec<Published>)>,
    /// The set of subjects last seen, and since when it has not changed.
    set: (Vec<AuthorKey>, Time),
    /// When this peer first observed anything (before its first opinion).
    first_link: Option<Time>,
    /// Standing of every observer whose opinion is held (bounded by the store's members:
    /// pruned at each review to the observers held).
    standing: BTreeMap<AuthorKey, Standing>,
    next_review: Option<Time>,
    /// The statuses last reported to the application (bounded by the members held).
    reported: BTreeMap<AuthorKey, PeerStatus>,
    /// Something that can change a status happened since the last report.
    dirty: bool,
    /// The simulator's liar fault: what this peer claims instead.
    #[cfg(feature = "sim")]
    pub(crate) lie: Option<Lie>,
}

/// The link quality of a status, permille.
fn quality(l: &crate::links::link::Link) -> u32 {
    match l.status() {
        crate::io::LinkStatus::Connected => 1_000,
        crate::io::LinkStatus::Suspected => 500,
        crate::io::LinkStatus::Disconnected => 0,
    }
}

/// Claims about subjects this peer cannot name kept for the graph, at most (per computation;
/// an opinion has at most `MAX_OPINION_ENTRIES`, and the opinions held are bounded by the
/// members held).
const MAX_UNNAMED: usize = 65_536;

/// The neighbour an opinion names by `prefix`, if one of this peer's links is to it.
fn linked<R>(core: &Core<R>, prefix: u64) -> Option<AuthorKey> {
    core.links.iter().map(|(p, _)| *p).find(|p| p.prefix() == prefix)
}

/// The peer an opinion names by `prefix`: a neighbour, else the one held author whose key
/// it is the prefix of (none when two held keys share it: 2⁻⁶⁴ a pair by chance, and one
/// made to collide with a member's takes ~2⁶⁴ keys tried).
fn named<R>(core: &Core<R>, prefix: u64) -> Option<AuthorKey> {
    if let Some(p) = linked(core, prefix) {
        return Some(p);
    }
    let mut held = core.store.authors_prefixed(prefix);
    let first = held.next()?;
    held.next().is_none().then_some(first)
}

/// A subject's own word on its current run: the start its presence held here announces, and
/// when that presence was made (both ms); `None` without one.
fn own_start<R>(core: &Core<R>, subject: AuthorKey) -> Option<(u64, u64)> {
    let hey = core.store.latest(&(subject, Stream::HeyThere))?;
    match hey.body() {
        Body::HeyThere(h) if h.started_ms > 0 => Some((h.started_ms, hey.hlc().ms)),
        _ => None,
    }
}

/// Whether a claim made at `at_ms` that the subject started at `claimed` denies the subject's
/// own signed start `own` (its start, and when its presence said it): a later start (starts
/// only move forward, and an honest observer copies the subject's), or an earlier one
/// [`START_GRACE`] after that presence (time enough for the observer to have heard it). The
/// subject's word on its own start is evidence every peer holds, so such a claim is left
/// out of the start (and uptime) the fleet agrees on, and counts against its observer at the
/// review, as a contradiction of the consensus does: a subject watched mostly by liars would
/// otherwise read their start, and they would never be contradicted.
fn start_denied((start, said_ms): (u64, u64), at_ms: u64, claimed: u64) -> bool {
    claimed != 0
        && claimed.abs_diff(start) > START_SLACK_MS
        && (claimed > start || at_ms > said_ms.saturating_add(START_GRACE.as_millis() as u64))
}

/// Whether an uptime claimed at `at_ms` (s) disagrees with the subject's own start: an
/// honest observer's is the time since that start, to the second.
fn uptime_denied(start: u64, at_ms: u64, uptime_s: u32) -> bool {
    let implied = at_ms.saturating_sub(start) / 1_000;
    at_ms >= start && u64::from(uptime_s).abs_diff(implied) > UPTIME_SLACK_S.max(implied / 100)
}

/// The start a peer's presence announces (ms), 0 if none held.
fn started_of<R>(core: &Core<R>, peer: AuthorKey) -> u64 {
    match core.store.latest(&(peer, Stream::HeyThere)).map(VerifiedEvent::body) {
        Some(Body::HeyThere(h)) => h.started_ms,
        _ => 0,
    }
}

/// When a peer last spoke for itself (ms): the newest of its presence, status and opinion.
fn spoke_ms<R>(core: &Core<R>, peer: AuthorKey) -> u64 {
    [Stream::HeyThere, Stream::Newspaper, Stream::Opinion, Stream::LinkState]
        .iter()
        .filter_map(|s| core.store.latest(&(peer, *s)))
        .map(|e| e.hlc().ms)
        .max()
        .unwrap_or(0)
}

impl Opinions {
    /// Notes that a status may have changed (an opinion, link state or presence arrived, a
    /// link changed).
    pub(crate) fn touch(&mut self) {
        self.dirty = true;
    }

    /// Publishes at the next maintenance, whatever the gate says.
    #[cfg(feature = "sim")]
    pub(crate) fn republish(&mut self) {
        self.published = None;
        self.set.1 = Time(0);
    }

    /// Brings the own observations up to date with the links; true if a subject turned up
    /// or down.
    fn observe<R>(&mut self, core: &Core<R>) -> bool {
        let now = core.now;
        let mut flipped = false;
        for (peer, link) in core.links.iter().filter(|(_, l)| l.proven()) {
            let started_ms = started_of(core, *peer);
            let online = link.connected();
            let rtt_us = link.rtt().map_or(0, |r| u32::try_from(r.as_micros()).unwrap_or(u32::MAX));
            let o = self.observed.entry(*peer).or_insert(Observed {
                online,
                since: now,
                started_ms,
                restarts: 0,
                rtt_us,
                quality: quality(link),
            });
            if o.online != online {
                o.online = online;
                o.since = now;
                flipped = true;
            }
            if started_ms > o.started_ms {
                if o.started_ms != 0 {
                    o.restarts = o.restarts.saturating_add(1);
                }
                o.started_ms = started_ms;
            }
            if rtt_us > 0 {
                o.rtt_us = rtt_us;
            }
            o.quality = quality(link);
        }
        // Links gone: one that went while connected was let go (a bye, an overlay swap), not
        // lost, and is no longer observed; one that went down first stays, down, a while.
        self.observed.retain(|peer, o| core.links.contains(peer) || !o.online);
        for (peer, o) in self.observed.iter_mut() {
            if !core.links.contains(peer) {
                o.quality = 0;
            }
        }
        let mut gone: Vec<(Time, AuthorKey)> = self
            .observed
            .iter()
            .filter(|(p, o)| !o.online && !core.links.contains(p))
            .map(|(p, o)| (o.since, *p))
            .collect();
        gone.sort_unstable();
        let excess = gone.len().saturating_sub(MAX_DOWN_KEPT);
        for (i, (since, p)) in gone.into_iter().enumerate() {
            if i < excess || now.saturating_since(since) >= DOWN_KEPT_FOR {
                self.observed.remove(&p);
            }
        }
        if flipped {
            self.dirty = true;
        }
        flipped
    }

    /// This peer's opinion if one is due now (see the module docs), and why it is. A changed
    /// set waits at least `set_spacing` after the last opinion ([`SET_SPACING`] or more: a
    /// fisheye peer spaces them as its newspapers, by the members it holds).
    pub(crate) fn opinion_due<R>(
        &mut self,
        core: &Core<R>,
        set_spacing: Duration,
    ) -> Option<(Body, Why)> {
        self.observe(core);
        let now = core.now;
        let subjects: Vec<AuthorKey> = self.observed.keys().copied().collect();
        if subjects != self.set.0 {
            self.set = (subjects, now);
        }
        let due = match &self.published {
            None if self.observed.is_empty() => None,
            None => {
                let first = *self.first_link.get_or_insert(now);
                (now.saturating_since(self.set.1) >= FIRST_SETTLE
                    || now.saturating_since(first) >= FIRST_AT_MOST)
                    .then_some(Why::First)
            }
            Some((at, old)) => {
                let age = now.saturating_since(*at);
                // A subject held in both that turned up or down; anything else that changed
                // (subjects made or forgotten, a start or restart seen).
                let (mut down, mut up_since) = (false, None::<Time>);
                let mut other = old.len() != self.observed.len();
                for (p, on, started, restarts) in old {
                    match self.observed.get(p) {
                        Some(o) => {
                            if o.online != *on && o.online {
                                up_since = Some(up_since.map_or(o.since, |t| t.min(o.since)));
                            }
                            down |= o.online != *on && !o.online;
                            other |= o.started_ms != *started || o.restarts != *restarts;
                        }
                        None => other = true,
                    }
                }
                // A subject gone down is news at once (a crash is confirmed by the others'
                // checks); one back up waits UP_BATCH for the others a heal brings back.
                let up_due = up_since.is_some_and(|t| now.saturating_since(t) >= UP_BATCH);
                if (down || up_due) && age >= FLIP_SPACING {
                    Some(Why::Flip)
                } else if other
                    && now.saturating_since(self.set.1) >= SET_SETTLE
                    && age >= SET_SPACING.max(set_spacing)
                {
                    Some(Why::Set)
                } else {
                    (age >= core.config.opinion_max_interval).then_some(Why::Age)
                }
            }
        };
        let why = due?;
        let now_ms = now.as_millis();
        let entries = self
            .observed
            .iter()
            .map(|(p, o)| pb::OpinionEntry {
                subject_prefix: p.prefix(),
                subject: Bytes::new(),
                online: o.online,
                restarts: o.restarts,
                uptime_s: if o.online && o.started_ms > 0 {
                    u32::try_from(now_ms.saturating_sub(o.started_ms) / 1_000).unwrap_or(u32::MAX)
                } else {
                    0
                },
                link_quality_permille: o.quality,
                rtt_us: o.rtt_us,
                started_ms: o.started_ms,
            })
            .collect();
        let flags =
            self.observed.iter().map(|(p, o)| (*p, o.online, o.started_ms, o.restarts)).collect();
        self.published = Some((now, flags));
        #[cfg(feature = "sim")]
        let entries = match self.lie {
            Some(lie) => self.lies(core, lie, entries),
            None => entries,
        };
        Some((Body::Opinion(pb::Opinion { entries }), why))
    }

    /// `entries` as a liar publishes them (see [`Lie`]).
    #[cfg(feature = "sim")]
    fn lies<R>(
        &self,
        core: &Core<R>,
        lie: Lie,
        mut entries: Vec<pb::OpinionEntry>,
    ) -> Vec<pb::OpinionEntry> {
        if lie.about_all {
            let held: std::collections::BTreeSet<u64> =
                entries.iter().map(AuthorKey::opinion_subject).collect();
            let now_ms = core.now.as_millis();
            for m in crate::membership::Membership::members(core) {
                if held.contains(&m.peer.prefix())
                    || entries.len() >= vecino_proto::limits::MAX_OPINION_ENTRIES
                {
                    continue;
                }
                let started_ms = m.hey_there.as_ref().map_or(0, |h| h.started_ms);
                entries.push(pb::OpinionEntry {
                    subject_prefix: m.peer.prefix(),
                    subject: Bytes::new(),
                    online: true,
                    restarts: 0,
                    uptime_s: u32::try_from(now_ms.saturating_sub(started_ms) / 1_000).unwrap_or(0),
                    link_quality_permille: 1_000,
                    rtt_us: 0,
                    started_ms,
                });
            }
            entries.sort_by_key(|e| e.subject_prefix);
        }
        for e in &mut entries {
            if lie.offline {
                e.online = false;
            }
            e.restarts = e.restarts.saturating_add(lie.restarts_add);
            if e.started_ms > 0 {
                e.started_ms = e.started_ms.saturating_add_signed(lie.start_shift_ms);
            }
            e.uptime_s = (f64::from(e.uptime_s) * lie.uptime_factor) as u32;
        }
        entries
    }

    /// Another peer's opinion arrived: the neighbours it says are down while their links
    /// here are connected, to be checked (pinged, and suspected unless they answer).
    pub(crate) fn on_opinion<R>(
        &mut self,
        core: &mut Core<R>,
        ev: &VerifiedEvent,
    ) -> Vec<AuthorKey> {
        self.dirty = true;
        let Body::Opinion(op) = ev.body() else { return Vec::new() };
        if ev.author() == core.me {
            return Vec::new();
        }
        let now = core.now;
        let mut check = Vec::new();
        for e in op.entries.iter().filter(|e| !e.online) {
            let Some(subject) = linked(core, AuthorKey::opinion_subject(e)) else { continue };
            if let Some(l) = core.links.get_mut(&subject)
                && l.check(now)
            {
                check.push(subject);
            }
        }
        check
    }

    /// The clout of `observer` in this peer's eyes (this peer's own: 1).
    pub(crate) fn clout<R>(&self, core: &Core<R>, observer: &AuthorKey) -> Clout {
        if *observer == core.me {
            return Clout { value: 1.0, tenure: 1.0, agreement: 1.0, proximity: 1.0 };
        }
        let (tenure, agreement) = match self.standing.get(observer) {
            Some(s) => {
                let known = core.now.saturating_since(s.known_since);
                (known.div_duration_f64(TENURE_FULL).clamp(TENURE_FLOOR, 1.0), s.agreement)
            }
            None => (TENURE_FLOOR, AGREEMENT_START),
        };
        let near = core.links.get(observer).is_some_and(|l| {
            l.probe.samples() >= NEAR_SAMPLES && l.rtt().is_some_and(|r| r < NEAR)
        });
        let proximity = if near { PROXIMITY_BONUS } else { 1.0 };
        Clout { value: tenure * agreement * proximity, tenure, agreement, proximity }
    }

    /// Every claim held, by subject: the observers' latest opinions (this peer's own live
    /// observation in place of its published one).
    fn claims<R>(&self, core: &Core<R>) -> (Claims, Reach) {
        let now_ms = core.now.as_millis();
        let mut by_subject: BTreeMap<AuthorKey, Vec<(AuthorKey, Claim)>> = BTreeMap::new();
        // Claims about subjects this peer cannot name (not held, or a prefix two held keys
        // share): (observer, subject, online) by prefix, for the graph only.
        let mut unnamed: Vec<(u64, u64, bool)> = Vec::new();
        let mut clouts: BTreeMap<AuthorKey, Clout> = BTreeMap::new();
        for ev in core.store.latest_events() {
            let observer = ev.author();
            let Body::Opinion(op) = ev.body() else { continue };
            if observer == core.me {
                continue;
            }
            let clout = *clouts.entry(observer).or_insert_with(|| self.clout(core, &observer));
            let at_ms = ev.hlc().ms;
            for e in &op.entries {
                let prefix = AuthorKey::opinion_subject(e);
                if prefix == observer.prefix() {
                    continue; // nobody observes itself
                }
                let Some(subject) = named(core, prefix) else {
                    if unnamed.len() < MAX_UNNAMED {
                        unnamed.push((observer.prefix(), prefix, e.online));
                    }
                    continue;
                };
                let aged = now_ms.saturating_sub(at_ms) / 1_000;
                // Fields that deny the subject's own signed start are left out (the claim's
                // word on liveness still counts).
                let own = own_start(core, subject);
                let denies_start = own.is_some_and(|o| {
                    start_denied(o, at_ms, e.started_ms)
                        || (e.online && uptime_denied(o.0, at_ms, e.uptime_s))
                });
                let claim = Claim {
                    weight: clout.value,
                    online: e.online,
                    restarts: e.restarts,
                    started_ms: e.started_ms,
                    uptime_s: e.online.then(|| u64::from(e.uptime_s) + aged),
                    denies_start,
                    rtt_us: e.rtt_us,
                    at_ms,
                    heard: false,
                    order: observer.prefix(),
                };
                by_subject.entry(subject).or_default().push((observer, claim));
            }
        }
        for (subject, o) in &self.observed {
            // This peer trusts its own eyes as much as the most trusted other observer of the
            // subject (alone, fully): its own link going quiet must not outvote the others.
            let weight = by_subject
                .get(subject)
                .and_then(|l| l.iter().map(|(_, c)| c.weight).max_by(f64::total_cmp))
                .unwrap_or(1.0);
            let claim = Claim {
                weight,
                online: o.online,
                restarts: o.restarts,
                started_ms: o.started_ms,
                uptime_s: (o.online && o.started_ms > 0)
                    .then(|| now_ms.saturating_sub(o.started_ms) / 1_000),
                rtt_us: o.rtt_us,
                denies_start: false,
                at_ms: o.since.as_millis(),
                heard: true,
                order: core.me.prefix(),
            };
            by_subject.entry(*subject).or_default().push((core.me, claim));
        }
        // A claim counts only from an observer the subject itself lists, when the subject
        // publishes opinions: links run both ways, so an honest observer of a peer is one of
        // that peer's own subjects, and a liar can only lie about its real neighbours (not
        // about every member it holds, where it would outnumber the few who observe each).
        let lists: std::collections::BTreeSet<(u64, u64)> = by_subject
            .iter()
            .flat_map(|(s, l)| l.iter().map(move |(o, _)| (o.prefix(), s.prefix())))
            .chain(unnamed.iter().map(|&(o, s, _)| (o, s)))
            .collect();
        let publishes: std::collections::BTreeSet<u64> =
            lists.iter().map(|(o, _)| *o).filter(|o| *o != core.me.prefix()).collect();
        for (subject, list) in by_subject.iter_mut() {
            let s = subject.prefix();
            if publishes.contains(&s) {
                list.retain(|(o, _)| *o == core.me || lists.contains(&(s, o.prefix())));
            }
        }
        by_subject.retain(|_, l| !l.is_empty());
        let reach = Reach::of(core, &by_subject, &unnamed);
        for (observer, claim) in by_subject.values_mut().flatten() {
            claim.heard = reach.reaches(core, observer);
        }
        (by_subject, reach)
    }

    /// The status of a subject from its tally.
    fn status<R>(core: &Core<R>, reach: &Reach, subject: &AuthorKey, t: &Tally) -> PeerStatus {
        let reachable = reach.reaches(core, subject);
        if has_left(&core.store, *subject) || (t.down_wins() && !reachable) {
            return PeerStatus::Offline;
        }
        let node = subject.prefix();
        if reachable || (!reach.named.contains(&node) && t.up > t.down) {
            PeerStatus::Online
        } else {
            PeerStatus::Unreachable
        }
    }

    /// What this peer believes about `only` (every peer it holds claims about, or that it
    /// knows as a member, when `None`).
    pub(crate) fn opinions<R>(&self, core: &Core<R>, only: Option<&AuthorKey>) -> Vec<PeerOpinion> {
        let (claims, reach) = self.claims(core);
        let mut out = Vec::new();
        for (subject, list) in &claims {
            if only.is_some_and(|o| o != subject) || *subject == core.me {
                continue;
            }
            let just: Vec<Claim> = list.iter().map(|(_, c)| *c).collect();
            let spoke = spoke_ms(core, *subject);
            let t = tally(&just, spoke);
            let status = Self::status(core, &reach, subject, &t);
            let claims = list
                .iter()
                .map(|(observer, c)| ObserverClaim {
                    observer: *observer,
                    online: c.online,
                    stands: !c.online && c.at_ms > spoke,
                    denies_start: c.denies_start,
                    restarts: c.restarts,
                    started_ms: c.started_ms,
                    uptime_s: c.uptime_s,
                    rtt: (c.rtt_us > 0).then(|| Duration::from_micros(u64::from(c.rtt_us))),
                    at_ms: c.at_ms,
                    clout: if *observer == core.me {
                        Clout { value: c.weight, ..self.clout(core, observer) }
                    } else {
                        self.clout(core, observer)
                    },
                })
                .collect();
            out.push(PeerOpinion {
                peer: *subject,
                status,
                reachable: reach.reaches(core, subject),
                left: has_left(&core.store, *subject),
                weight_online: t.up,
                weight_offline: t.down,
                restarts: t.restarts,
                started_ms: t.started_ms,
                uptime_s: t.uptime_s,
                rtt: t.rtt_us.map(|r| Duration::from_micros(u64::from(r))),
                claims,
            });
        }
        out
    }

    /// The statuses of every subject, by subject (cheaper than [`Opinions::opinions`]: no
    /// per-claim detail).
    pub(crate) fn statuses<R>(&self, core: &Core<R>) -> BTreeMap<AuthorKey, PeerStatus> {
        let (claims, reach) = self.claims(core);
        let mut out = BTreeMap::new();
        for (subject, list) in claims {
            if subject == core.me {
                continue;
            }
            let just: Vec<Claim> = list.iter().map(|(_, c)| *c).collect();
            let t = tally(&just, spoke_ms(core, subject));
            out.insert(subject, Self::status(core, &reach, &subject, &t));
        }
        out
    }

    /// On the maintenance tick: reviews reputations when due, and returns the statuses that
    /// changed since the last report (when `report`; nothing is computed otherwise unless a
    /// review is due).
    pub(crate) fn maintain<R>(
        &mut self,
        core: &Core<R>,
        report: bool,
    ) -> Vec<(AuthorKey, PeerStatus)> {
        let now = core.now;
        let review = self.next_review.is_none_or(|t| now >= t);
        if !(review || (report && self.dirty)) {
            return Vec::new();
        }
        let statuses = self.statuses(core);
        if review {
            self.next_review = Some(now + REVIEW);
            self.review(core, &statuses);
        }
        if !report || !self.dirty {
            return Vec::new();
        }
        self.dirty = false;
        let mut changed = Vec::new();
        for (peer, status) in &statuses {
            if self.reported.get(peer) != Some(status) {
                changed.push((*peer, *status));
            }
        }
        self.reported = statuses;
        changed
    }

    /// Whether an opinion entry made at `at_ms` gives its subject another start than the
    /// subject's own signed presence held here (see [`start_denied`]).
    fn denies_own_start<R>(core: &Core<R>, at_ms: u64, e: &pb::OpinionEntry) -> bool {
        named(core, AuthorKey::opinion_subject(e))
            .and_then(|subject| own_start(core, subject))
            .is_some_and(|own| start_denied(own, at_ms, e.started_ms))
    }

    /// Updates every observer's standing against `statuses`: a claim that contradicted the
    /// consensus (or denied its subject's own start) at the last review and still does
    /// halves the observer's agreement; an observer with no such claim gains.
    fn review<R>(&mut self, core: &Core<R>, statuses: &BTreeMap<AuthorKey, PeerStatus>) {
        let now = core.now;
        let by_prefix: BTreeMap<u64, PeerStatus> =
            statuses.iter().map(|(k, s)| (k.prefix(), *s)).collect();
        let mut held = std::collections::BTreeSet::new();
        for ev in core.store.latest_events() {
            let observer = ev.author();
            let Body::Opinion(op) = ev.body() else { continue };
            if observer == core.me {
                continue;
            }
            held.insert(observer);
            let standing = self.standing.entry(observer).or_insert(Standing {
                known_since: now,
                agreement: AGREEMENT_START,
                contradicted: Vec::new(),
            });
            let mut now_contradicted = Vec::new();
            for e in &op.entries {
                let subject = AuthorKey::opinion_subject(e);
                let contradicts = match by_prefix.get(&subject) {
                    Some(PeerStatus::Online) => !e.online,
                    Some(PeerStatus::Offline) => e.online,
                    _ => false,
                } || Self::denies_own_start(core, ev.hlc().ms, e);
                if contradicts {
                    now_contradicted.push(subject);
                }
            }
            let kept = now_contradicted.iter().any(|s| standing.contradicted.contains(s));
            standing.agreement = if kept {
                (standing.agreement / 2.0).max(AGREEMENT_FLOOR)
            } else if now_contradicted.is_empty() {
                standing.agreement + (1.0 - standing.agreement) * AGREEMENT_GAIN
            } else {
                standing.agreement
            };
            standing.contradicted = now_contradicted;
        }
        self.standing.retain(|p, _| held.contains(p));
    }
}
