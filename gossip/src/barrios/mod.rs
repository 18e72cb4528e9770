//! Barrios: neighbourhoods of nearby peers, each named after its *head*, and the centroid
//! CRDT of their members' slots.
//!
//! **Which barrio.** A fixed grid over the coordinate space (`vecino_coords::barrio_of`) cuts
//! clusters at arbitrary faces: in eight dimensions a ball of peers a few ms across straddles
//! some face of a 30-ms cube almost always (the API's grid drew 11 barrios for 12 peers on
//! loopback), and the whole grid moves under the fleet as Vivaldi coordinates drift together.
//! Barrios here are defined by distances between peers instead, which drift does not change
//! (a translation or rotation of the whole map keeps every barrio):
//!
//! - a peer is a *head* when its own slot names itself; every peer's rank is its key's
//!   prefix (lower ranks lead);
//! - a peer whose coordinate has settled takes, as its head, the lowest-ranked head within
//!   [`TAKE`] × `Config::barrio_radius` of it (by the RTT measured to the head when they are
//!   linked or were within [`MEASURED_FOR`]: the map can fold a cluster whose parts are not
//!   linked to each other, and the overlay swaps links, so a head judged by the RTT while
//!   linked and by the map after would come and go; else by the settled coordinate of the
//!   head's newest slot, unless every member of the head's barrio this peer measured is out
//!   of reach: a fold the measures contradict),
//!   unless that is no lower than its current head: it keeps its head while the head is still
//!   a head, still known, and within [`KEEP`] × the radius (hysteresis against coordinate
//!   noise); with no head to take it heads its own barrio;
//! - so a fleet starts with every peer heading itself and converges, by strictly falling
//!   ranks, to barrios of peers within about one radius of a head that leads itself. After
//!   that a barrio changes only when its head leaves, moves away, or a lower-ranked head
//!   comes within reach.
//!
//! A barrio's id is its head's key prefix (`BarrioId`), so its name and emoji are stable.
//!
//! **Slots.** A peer publishes a signed latest-value `BarrioSlot` (its barrio, its
//! coordinate, a health vector: [`HEALTH`]) when its barrio changes (at once), when its
//! health moved past the gate ([`health_moved`], at most every [`SLOT_SPACING`]) or its
//! coordinate moved past half the radius (at most every [`MOVE_SPACING`], or as far apart as
//! its newspapers when it is a fisheye peer holding many members), and otherwise every
//! `Config::newspaper_max_interval`. Newspapers carry the barrio id.
//!
//! **The CRDT.** Every peer holds the newest slot of each member it keeps
//! (`vecino_coords::CentroidCrdt`: per member the highest seq, a join-semilattice, bounded by
//! `Config::max_members`); a barrio's centroid (members, mean coordinate, mean health) is
//! computed at read time. A member this peer no longer holds (it left, or fisheye let it go)
//! leaves the index at the next look; its slot comes back if it is delivered again.
//!
//! **Bad input**, refused before it is stored, counted by reason: a slot whose coordinate
//! fails its checks (`barrio_slot_invalid`), a slot of a member newer than the one held by
//! less than [`FLOOD_GAP`] of its own clock (`barrio_slot_flood`), a slot naming a head this
//! peer holds but placed farther from it than any member could be ([`SPAN`] radii:
//! `barrio_slot_mismatch`).

mod coherence;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use vecino_coords::{BarrioId, BarrioSlot, Centroid, CentroidCrdt, Coordinate, DEFAULT_DIMENSIONS};
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::engine::core::Core;
use crate::io::{AppEvent, Output};
use crate::membership::has_left;
use crate::published::{coord_from_pb, coord_to_pb, published_coordinate, settled};
use crate::time::Time;

/// RTTs measured to peers once linked, remembered at most (the oldest measure goes first).
const MAX_MEASURED: usize = 256;
/// A remembered RTT stands in for the coordinate distance this long after the link went.
const MEASURED_FOR: Duration = Duration::from_secs(30 * 60);
/// A head farther than [`KEEP`] radii is left only once it stayed that far this long: a
/// regional fault or a burst of delay stretches RTTs for a while, and the barrio should not
/// break up (and restart its baseline) before its coherence alarm can tell.
const FAR_FOR: Duration = Duration::from_secs(30);
/// A lower-ranked head is taken when within this many radii.
pub(crate) const TAKE: f64 = 0.8;
/// The current head is kept while within this many radii.
pub(crate) const KEEP: f64 = 1.25;
/// A slot naming a head held here is refused if its coordinate is farther than this many
/// radii from the head's. A member is within [`KEEP`] radii of its head by its own view, but
/// by the RTT it measured when they are linked, and the map can fold a cluster by tens of ms
/// (planet, at 3 radii: 1 038 honest slots refused in 10 min, 0.8 % of the pairs disagreeing
/// for minutes): this only refuses claims no fold explains.
const SPAN: f64 = 8.0;
/// The mismatch check is made only between coordinates whose error estimates are at most this
/// (a settled coordinate may still be off by half its distances: planet refused 251–301 honest
/// slots over 18 min at 8 radii and any settled error, and a refused slot stays stale until its
/// author's next one).
const MISMATCH_ERROR: f64 = 0.25;
/// A barrio's coherence is watched only with at least this many members' health (a smaller
/// one's "health" is one or two peers' own links, and their noise is not a regional fault:
/// planet's one-member barrios raised 3 false alarms per barrio-day).
const COHERENT_MIN: usize = 3;
/// How often the barrio is looked at (members gone leave the index, its coherence is
/// sampled).
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Slots that report a health change are at least this far apart.
const SLOT_SPACING: Duration = Duration::from_secs(10);
/// Slots that report a move (of half a radius) are at least this far apart: Vivaldi
/// coordinates jitter by a few ms, and on planet every peer republished its slot every 10 s
/// for a quarter-radius gate (144 kbit/s of membership per peer).
const MOVE_SPACING: Duration = Duration::from_secs(120);
/// A member's slot newer than the one held by less than this (by the HLC of both) is a flood.
const FLOOD_GAP: Duration = Duration::from_secs(1);
/// The retransmission share is measured over windows of at least this many frames sent (an
/// idle peer's few frames would make it jump, and every jump past the gate is a slot).
const RETRANSMIT_WINDOW: u64 = 500;
/// The health features, in slot order.
pub const HEALTH: [&str; 3] = ["rtt_ms", "links_down_share", "retransmit_share"];

/// A peer's rank: the lower leads.
fn rank(peer: &AuthorKey) -> u64 {
    peer.prefix()
}

/// Whether health `now` moved from the published `then` enough to be news: the median RTT
/// by a third and 5 ms, the share of links not connected by a quarter, the retransmission
/// share by 10 points (each well past the coherence floors, `coherence::FLOORS`, so that a
/// fault is news and noise is not).
fn health_moved(then: &[f32], now: &[f32]) -> bool {
    let get = |v: &[f32], i: usize| v.get(i).copied().unwrap_or(0.0);
    let (r0, r1) = (get(then, 0), get(now, 0));
    (r1 - r0).abs() > (r0.max(r1) / 3.0).max(5.0)
        || (get(now, 1) - get(then, 1)).abs() > 0.25
        || (get(now, 2) - get(then, 2)).abs() > 0.1
}

/// Barrio changes by why (see `Barrios::changes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) head_gone: u64,
    pub(crate) head_far: u64,
    pub(crate) lower_head: u64,
}

/// Why the head changed.
#[derive(Debug, Clone, Copy)]
enum Why {
    Gone,
    Far,
    Lower,
}

/// One barrio as this peer knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BarrioView {
    /// Its id (its head's key prefix).
    pub id: BarrioId,
    /// Its head, if this peer holds a member with that prefix.
    pub head: Option<AuthorKey>,
    /// Members (whose newest slot names it), their mean coordinate and mean health.
    pub centroid: Centroid<DEFAULT_DIMENSIONS>,
    /// The members, in key order (this peer included when it is one).
    pub members: Vec<AuthorKey>,
    /// This peer's own barrio.
    pub own: bool,
}

/// The barrios machine.
#[derive(Debug)]
pub(crate) struct Barrios {
    /// This peer's head (itself when it heads its barrio); `None` until its coordinate settled.
    head: Option<AuthorKey>,
    /// Times the barrio changed after the first, by why: the head stopped heading, left or
    /// is no longer held; it is farther than [`KEEP`] radii; a lower-ranked head came within
    /// [`TAKE`] radii.
    changes: Changes,
    /// Slots published after the first, by why: [barrio changed, health moved, coordinate
    /// moved, none for `newspaper_max_interval`].
    slots_by_why: [u64; 4],
    /// The RTT last measured to peers this peer was linked to, and when (bounded by
    /// [`MAX_MEASURED`]).
    measured: BTreeMap<AuthorKey, (Duration, Time)>,
    /// Since when the head has been farther than [`KEEP`] radii.
    far_since: Option<Time>,
    /// When the barrio is next looked at.
    next_look: Option<Time>,
    /// The last slot published: when, its barrio, coordinate and health.
    last_slot: Option<(Time, BarrioId, Coordinate, Vec<f32>)>,
    /// Health at the last look.
    health: Vec<f32>,
    /// Retransmissions and first sends at the start of the current retransmission window, and
    /// the share measured over the last full window.
    sent_then: (u64, u64),
    /// See `sent_then`.
    retransmit_share: f64,
    /// Members' newest slots, by seq (bounded by `Config::max_members`).
    slots: CentroidCrdt<AuthorKey, DEFAULT_DIMENSIONS>,
    /// The coherence of this peer's barrio.
    coherence: coherence::Coherence,
}

impl Barrios {
    /// No barrio yet; the slots of `stored` events (a restart) indexed.
    pub(crate) fn new<R>(core: &Core<R>) -> Self {
        let mut b = Self {
            head: None,
            changes: Changes::default(),
            slots_by_why: [0; 4],
            measured: BTreeMap::new(),
            far_since: None,
            next_look: None,
            last_slot: None,
            health: Vec::new(),
            sent_then: (0, 0),
            retransmit_share: 0.0,
            slots: CentroidCrdt::new(core.config.max_members.max(1)),
            coherence: coherence::Coherence::default(),
        };
        for ev in core.store.latest_events().filter(|ev| ev.stream() == Stream::BarrioSlot) {
            b.on_event(ev);
        }
        // This peer's own barrio before the restart: kept if its head is still held.
        if let Some(own) = b.slots.slot(&core.me) {
            let id = own.barrio;
            b.head = if id.0 == rank(&core.me) {
                Some(core.me)
            } else {
                core.store.authors_prefixed(id.0).next()
            };
        }
        b
    }

    /// This peer's barrio id (0: none yet).
    pub(crate) fn barrio(&self) -> u64 {
        self.head.map_or(0, |h| rank(&h))
    }

    /// Times this peer's barrio changed after the first.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.head_gone + self.changes.head_far + self.changes.lower_head
    }

    /// This peer's health at its last look.
    pub(crate) fn health(&self) -> &[f32] {
        &self.health
    }

    /// The changes by why.
    pub(crate) fn changes_by_why(&self) -> Changes {
        self.changes
    }

    /// Slots published after the first, by why: barrio changed, health moved, coordinate
    /// moved, age.
    pub(crate) fn slots_by_why(&self) -> [u64; 4] {
        self.slots_by_why
    }

    /// Whether this peer's barrio is alarmed (incoherent with its baseline).
    pub(crate) fn alarmed(&self) -> bool {
        self.coherence.alarmed()
    }

    /// The per-feature median health of this peer's barrio: its members' newest slots, this
    /// peer's health measured now in place of its own.
    fn barrio_health(&self, me: &AuthorKey) -> Option<Vec<f64>> {
        let barrio = BarrioId(self.barrio());
        if barrio.0 == 0 || self.health.is_empty() {
            return None;
        }
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); HEALTH.len()];
        let others = self.slots.slots().filter(|(m, s)| *m != me && s.barrio == barrio);
        let rows: Vec<&[f32]> =
            others.map(|(_, s)| s.health.as_slice()).chain([self.health.as_slice()]).collect();
        if rows.len() < COHERENT_MIN {
            return None;
        }
        for row in rows {
            for (col, x) in columns.iter_mut().zip(row) {
                col.push(f64::from(*x));
            }
        }
        columns
            .into_iter()
            .map(|mut col| {
                col.sort_unstable_by(f64::total_cmp);
                col.get(col.len() / 2).copied()
            })
            .collect()
    }

    /// Checks a slot of another peer before it is stored: `Err(reason)` refuses it.
    pub(crate) fn admits<R>(&self, core: &Core<R>, ev: &VerifiedEvent) -> Result<(), &'static str> {
        let Body::BarrioSlot(s) = ev.body() else { return Ok(()) };
        let Some(c) = s.coordinate.as_ref().and_then(coord_from_pb) else {
            return Err("barrio_slot_invalid");
        };
        if let Some(held) = core.store.latest(&(ev.author(), Stream::BarrioSlot))
            && ev.seq() > held.seq()
            && ev.hlc().ms < held.hlc().ms.saturating_add(FLOOD_GAP.as_millis() as u64)
        {
            return Err("barrio_slot_flood");
        }
        let radius = core.config.barrio_radius.as_secs_f64();
        if s.barrio != 0 && s.barrio != rank(&ev.author()) && radius > 0.0 {
            // Far from every place the head said it was (its slot, its newest newspaper), by
            // coordinates that both claim to be good.
            let sure = |x: &Coordinate| x.error <= MISMATCH_ERROR;
            let far = sure(&c)
                && core.store.authors_prefixed(s.barrio).any(|head| {
                    let places = [
                        self.slots.slot(&head).map(|s| s.coordinate),
                        published_coordinate(&core.store, head),
                    ];
                    let places = places.into_iter().flatten();
                    let mut places = places.peekable();
                    places.peek().is_some()
                        && places.all(|h| sure(&h) && h.distance_secs(&c) > radius * SPAN)
                });
            if far {
                return Err("barrio_slot_mismatch");
            }
        }
        Ok(())
    }

    /// A slot was stored (own or another's): indexed.
    pub(crate) fn on_event(&mut self, ev: &VerifiedEvent) {
        let Body::BarrioSlot(s) = ev.body() else { return };
        let Some(coordinate) = s.coordinate.as_ref().and_then(coord_from_pb) else { return };
        let slot = BarrioSlot {
            barrio: BarrioId(s.barrio),
            version: ev.seq(),
            coordinate,
            health: s.health.clone(),
        };
        // A slot that fails the checks was refused on receipt; own ones pass them.
        let _ = self.slots.insert(&ev.author(), slot);
    }

    /// Every [`LOOK_EVERY`]: members gone leave the index, the barrio is chosen again, health
    /// measured; a slot to publish if the gate lets one out. Slots that report a move are
    /// at least `move_spacing` apart ([`MOVE_SPACING`] or more: a fisheye peer spaces them
    /// as its newspapers, which report the same moves, by the members it holds).
    pub(crate) fn look<R>(&mut self, core: &mut Core<R>, move_spacing: Duration) -> Option<Body> {
        let now = core.now;
        if self.next_look.is_some_and(|t| now < t) {
            return None;
        }
        self.next_look = Some(now + LOOK_EVERY);
        let store = &core.store;
        let me = core.me;
        self.slots.retain(|m| {
            *m == me || (crate::membership::fisheye::holds(store, *m) && !has_left(store, *m))
        });
        for (peer, link) in core.links.iter() {
            if let Some(rtt) = link.rtt() {
                self.measured.insert(*peer, (rtt, now));
            }
        }
        while self.measured.len() > MAX_MEASURED {
            let oldest = self.measured.iter().min_by_key(|(_, (_, at))| *at).map(|(p, _)| *p);
            let Some(p) = oldest else { break };
            self.measured.remove(&p);
        }
        let before = self.head;
        let (head, why) = self.choose(core);
        if head != self.head {
            self.far_since = None;
        }
        self.head = head;
        if before.is_some() && self.head != before {
            match why {
                Why::Gone => self.changes.head_gone += 1,
                Why::Far => self.changes.head_far += 1,
                Why::Lower => self.changes.lower_head += 1,
            }
        }
        self.health = self.measure(core);
        let health = self.barrio_health(&core.me);
        let own = BarrioId(self.barrio());
        let members: BTreeSet<AuthorKey> = self
            .slots
            .slots()
            .filter(|(m, s)| **m != me && s.barrio == own)
            .map(|(m, _)| *m)
            .chain([me])
            .collect();
        for alarm in self.coherence.sample(now, own.0, &members, health.as_deref()) {
            core.emit(Output::Deliver(AppEvent::Coherence(Box::new(alarm))));
        }
        self.slot_due(core, move_spacing)
    }

    /// This peer's head now (see the module docs), and why it is not the one before (when
    /// it is not).
    fn choose<R>(&mut self, core: &Core<R>) -> (Option<AuthorKey>, Why) {
        let me = *core.coords.app_coordinate();
        let radius = core.config.barrio_radius.as_secs_f64();
        if !settled(&me) || radius <= 0.0 {
            return (self.head, Why::Gone);
        }
        let mut keep = self.head == Some(core.me);
        // The head before is still a head and held, but too far.
        let mut far = false;
        // While this peer's barrio is alarmed it stays, whatever its head's distance or
        // slot: the alarm is about it (a fault moves coordinates and slows links).
        let hold = self.coherence.alarmed();
        if hold && self.head.is_some_and(|h| keep || self.slots.slot(&h).is_some()) {
            return (self.head, Why::Gone);
        }
        let mut best = core.me;
        let fresh = |at: &Time| core.now.saturating_since(*at) <= MEASURED_FOR;
        // By barrio: the nearest member this peer measured (see below).
        let mut vouched: BTreeMap<BarrioId, f64> = BTreeMap::new();
        for (peer, (rtt, _)) in self.measured.iter().filter(|(_, (_, at))| fresh(at)) {
            if let Some(s) = self.slots.slot(peer) {
                let d = vouched.entry(s.barrio).or_insert(f64::INFINITY);
                *d = d.min(rtt.as_secs_f64());
            }
        }
        // Heads, placed by the RTT measured to them when linked (or lately), else by their
        // newest slot (a slot follows a move of half a radius within two minutes).
        let heads = self.slots.slots().filter(|(p, s)| **p != core.me && s.barrio.0 == rank(p));
        for (peer, slot) in heads {
            // A head this peer is (or was lately) linked to is as far as the RTT measured to
            // it: the map can fold a cluster whose parts are not linked to each other, a
            // measure cannot.
            let measured =
                self.measured.get(peer).filter(|(_, at)| fresh(at)).map(|(r, _)| r.as_secs_f64());
            if measured.is_none() && !settled(&slot.coordinate) {
                continue;
            }
            let d = measured.unwrap_or_else(|| me.distance_secs(&slot.coordinate));
            if self.head == Some(*peer) {
                if d > radius * KEEP {
                    let since = *self.far_since.get_or_insert(core.now);
                    if !hold && core.now.saturating_since(since) >= FAR_FOR {
                        far = true;
                        continue;
                    }
                } else {
                    self.far_since = None;
                }
                keep = true;
                if hold {
                    return (self.head, Why::Gone);
                }
            } else if d > radius * KEEP {
                continue;
            }
            // A head placed by the map alone is not taken if the members of its barrio this
            // peer measured are all out of reach: the map folds groups that are not linked to
            // each other on top of one another (6 sites 80 ms apart: barrios of two sites,
            // members 80 ms from their head), and a measure across the fold says so.
            let vouched = || vouched.get(&slot.barrio).is_none_or(|&v| v <= radius * TAKE);
            if d <= radius * TAKE && rank(peer) < rank(&best) && (measured.is_some() || vouched()) {
                best = *peer;
            }
        }
        match self.head {
            Some(h) if keep && rank(&h) <= rank(&best) => (Some(h), Why::Gone),
            _ if keep => (Some(best), Why::Lower),
            _ if far => (Some(best), Why::Far),
            _ => (Some(best), Why::Gone),
        }
    }

    /// This peer's health: the median RTT of its links inside its barrio (ms), the share of its links
    /// not connected, the share of the frames sent over the last [`RETRANSMIT_WINDOW`] frames
    /// (at least) that were retransmissions.
    fn measure<R>(&mut self, core: &Core<R>) -> Vec<f32> {
        // The RTT inside the barrio: a fault elsewhere slows the links that leave it, and
        // that is the other barrio's alarm (all links while none stays inside).
        let own = BarrioId(self.barrio());
        let inside = |p: &AuthorKey| self.slots.slot(p).is_some_and(|s| s.barrio == own);
        let mut rtts: Vec<Duration> =
            core.links.iter().filter(|(p, _)| inside(p)).filter_map(|(_, l)| l.rtt()).collect();
        if rtts.is_empty() {
            rtts = core.links.iter().filter_map(|(_, l)| l.rtt()).collect();
        }
        rtts.sort_unstable();
        let rtt_ms = rtts.get(rtts.len() / 2).map_or(0.0, |r| r.as_secs_f64() * 1e3);
        let links = core.links.len();
        let down = links - core.links.connected();
        let down_share = if links == 0 { 0.0 } else { down as f64 / links as f64 };
        let sent: u64 = core.stats.queued.values().map(|(n, _)| n).sum();
        let again = core.stats.retransmits;
        let (again0, sent0) = self.sent_then;
        let (first, re) = (sent.saturating_sub(sent0), again.saturating_sub(again0));
        if first + re >= RETRANSMIT_WINDOW {
            self.retransmit_share = re as f64 / (first + re) as f64;
            self.sent_then = (again, sent);
        }
        [rtt_ms, down_share, self.retransmit_share].map(|x| x as f32).to_vec()
    }

    /// This peer's slot if the gate lets one out (see the module docs).
    fn slot_due<R>(&mut self, core: &Core<R>, move_spacing: Duration) -> Option<Body> {
        let head = self.head?;
        let barrio = BarrioId(rank(&head));
        let coordinate = *core.coords.app_coordinate();
        let why = match &self.last_slot {
            None => None,
            Some((at, b, c, h)) => {
                let age = core.now.saturating_since(*at);
                let radius = core.config.barrio_radius.as_secs_f64();
                let whys = [
                    *b != barrio,
                    age >= SLOT_SPACING && health_moved(h, &self.health),
                    age >= MOVE_SPACING.max(move_spacing)
                        && c.distance_secs(&coordinate) > radius / 2.0,
                    age >= core.config.newspaper_max_interval,
                ];
                Some(whys.iter().position(|w| *w)?)
            }
        };
        if let Some(i) = why {
            self.slots_by_why[i] += 1;
        }
        self.last_slot = Some((core.now, barrio, coordinate, self.health.clone()));
        Some(Body::BarrioSlot(pb::BarrioSlot {
            barrio: barrio.0,
            version: core.now.as_millis(),
            coordinate: Some(coord_to_pb(&coordinate)),
            health: self.health.clone(),
        }))
    }

    /// Every barrio this peer knows a member of, by id, with its members and centroid.
    pub(crate) fn views<R>(&self, core: &Core<R>) -> Vec<BarrioView> {
        let mut members: BTreeMap<BarrioId, Vec<AuthorKey>> = BTreeMap::new();
        for (m, s) in self.slots.slots() {
            members.entry(s.barrio).or_default().push(*m);
        }
        let own = BarrioId(self.barrio());
        self.slots
            .barrios()
            .into_iter()
            .map(|(id, centroid)| {
                let head = if id.0 == rank(&core.me) {
                    Some(core.me)
                } else {
                    core.store.authors_prefixed(id.0).next()
                };
                BarrioView {
                    id,
                    head,
                    centroid,
                    members: members.remove(&id).unwrap_or_default(),
                    own: id == own && self.head.is_some(),
                }
            })
            .collect()
    }

    /// The barrio each member's newest slot held here names.
    pub(crate) fn member_barrios(&self) -> impl Iterator<Item = (AuthorKey, BarrioId)> + '_ {
        self.slots.slots().map(|(m, s)| (*m, s.barrio))
    }
}

#[cfg(test)]
mod tests {
    use vecino_proto::Hlc;

    use super::*;
    use crate::engine::core::testing::{at_ms, hey_there, identity, key};

    /// A slot of peer `n` (its `seq`th, stamped `ms` after the test epoch) naming `barrio`.
    fn slot(n: u8, seq: u64, ms: u64, barrio: u64, c: &Coordinate) -> VerifiedEvent {
        let body = Body::BarrioSlot(pb::BarrioSlot {
            barrio,
            version: seq,
            coordinate: Some(coord_to_pb(c)),
            health: vec![1.0, 0.0, 0.0],
        });
        let hlc = Hlc { ms: 1_763_702_400_000 + ms, counter: 0 };
        identity(n).sign(Stream::BarrioSlot, seq, hlc, body).expect("a valid event")
    }

    fn core_at(x_ms: f64) -> Core<rand_chacha::ChaCha8Rng> {
        let mut core = Core::for_test(1, crate::Config::default());
        core.coords.set_coordinate(at_ms(x_ms, 0.1)).expect("valid");
        core
    }

    /// Stores peer `n` at `x_ms`, heading its own barrio.
    fn add_head<R>(core: &mut Core<R>, b: &mut Barrios, n: u8, x_ms: f64) {
        let c = at_ms(x_ms, 0.1);
        let _ = core.store.insert(hey_there(n, 1, &c));
        let ev = slot(n, 1, 1_000, key(n).prefix(), &c);
        assert_eq!(b.admits(core, &ev), Ok(()));
        let _ = core.store.insert(ev.clone());
        b.on_event(&ev);
    }

    /// A peer alone heads its own barrio and says so at once, then not again until something
    /// changes; a lower-ranked head within reach is taken (and said at once), a higher-ranked
    /// one is not; the head is kept out to 1.25 radii.
    #[test]
    fn heads_itself_then_takes_the_lowest_ranked_head_within_reach() {
        let mut core = core_at(0.0);
        let mut b = Barrios::new(&core);
        assert_eq!(b.barrio(), 0, "no barrio before the first look");
        let Some(Body::BarrioSlot(first)) = b.look(&mut core, Duration::ZERO) else {
            panic!("a first slot")
        };
        assert_eq!(first.barrio, key(0).prefix());
        assert_eq!(first.health.len(), HEALTH.len());
        core.advance(LOOK_EVERY);
        assert!(b.look(&mut core, Duration::ZERO).is_none(), "nothing changed");
        // Peers 1..=6 heading themselves 10 ms away: the lowest rank among them and this peer
        // leads; a lower-ranked head 40 ms away (beyond reach) changes nothing.
        let mut near: Vec<u8> = (1..=6).collect();
        for &n in &near {
            add_head(&mut core, &mut b, n, 10.0);
        }
        let far = (7..=40).min_by_key(|n| key(*n).prefix()).expect("some");
        add_head(&mut core, &mut b, far, 40.0);
        near.push(0);
        let lowest = near.iter().copied().min_by_key(|n| key(*n).prefix()).expect("some");
        core.advance(LOOK_EVERY);
        let out = b.look(&mut core, Duration::ZERO);
        assert_eq!(b.barrio(), key(lowest).prefix());
        if lowest == 0 {
            assert!(out.is_none(), "still its own head");
            return;
        }
        let Some(Body::BarrioSlot(s)) = out else { panic!("a slot at the change") };
        assert_eq!(s.barrio, key(lowest).prefix());
        assert_eq!(b.changes(), 1);
        // Hysteresis: 22 ms from the head (past 0.8 radii, within 1.25) keeps it (beyond:
        // `a_head_that_went_far_is_let_go_only_after_a_while`).
        core.coords.set_coordinate(at_ms(-12.0, 0.1)).expect("valid");
        core.advance(LOOK_EVERY);
        let _ = b.look(&mut core, Duration::ZERO);
        assert_eq!(b.barrio(), key(lowest).prefix(), "kept within 1.25 radii");
    }

    /// Barrios are defined by distances between peers: moving the whole map (the drift of a
    /// Vivaldi system) changes no one's barrio.
    #[test]
    fn a_drifting_map_keeps_its_barrios() {
        let choose_at = |shift: f64| {
            let mut core = core_at(shift);
            let mut b = Barrios::new(&core);
            for (n, x) in [(1, 5.0), (2, 12.0), (3, 18.0), (4, 60.0)] {
                add_head(&mut core, &mut b, n, x + shift);
            }
            let _ = b.look(&mut core, Duration::ZERO);
            b.barrio()
        };
        let here = choose_at(0.0);
        assert_ne!(here, 0);
        for shift in [7.5, -30.0, 250.0] {
            assert_eq!(choose_at(shift), here, "shifted {shift} ms");
        }
    }

    /// Refused before they are stored, by reason: a slot too soon after the one held (a
    /// flood), a slot naming a head it is nowhere near, a slot with no coordinate.
    #[test]
    fn refuses_floods_mismatches_and_slots_without_a_coordinate() {
        let mut core = core_at(0.0);
        let mut b = Barrios::new(&core);
        add_head(&mut core, &mut b, 1, 10.0);
        let c = at_ms(10.0, 0.1);
        let soon = slot(1, 2, 1_500, key(1).prefix(), &c);
        assert_eq!(b.admits(&core, &soon), Err("barrio_slot_flood"));
        let later = slot(1, 2, 2_500, key(1).prefix(), &c);
        assert_eq!(b.admits(&core, &later), Ok(()));
        // Peer 2 at 300 ms claims peer 1's barrio (peer 1 sits at 10 ms).
        let _ = core.store.insert(hey_there(2, 1, &at_ms(300.0, 0.1)));
        let lie = slot(2, 1, 1_000, key(1).prefix(), &at_ms(300.0, 0.1));
        assert_eq!(b.admits(&core, &lie), Err("barrio_slot_mismatch"));
        let honest = slot(2, 1, 1_000, key(1).prefix(), &at_ms(30.0, 0.1));
        assert_eq!(b.admits(&core, &honest), Ok(()));
        let body = Body::BarrioSlot(pb::BarrioSlot { barrio: 1, ..Default::default() });
        let hlc = Hlc { ms: 1_763_702_400_000, counter: 0 };
        let bare = identity(3).sign(Stream::BarrioSlot, 1, hlc, body).expect("valid");
        assert_eq!(b.admits(&core, &bare), Err("barrio_slot_invalid"));
    }

    /// A head that went past 1.25 radii is kept for [`FAR_FOR`] (a burst of delay, a regional
    /// fault: the barrio should not break up before its alarm can tell), then let go.
    #[test]
    fn a_head_that_went_far_is_let_go_only_after_a_while() {
        let mut core = core_at(0.0);
        let mut b = Barrios::new(&core);
        let me = key(0).prefix();
        let lower = (1..=60).find(|n| key(*n).prefix() < me).expect("a lower-ranked key");
        add_head(&mut core, &mut b, lower, 10.0);
        let _ = b.look(&mut core, Duration::ZERO);
        assert_eq!(b.barrio(), key(lower).prefix(), "took the lower-ranked head 10 ms away");
        // 35 ms from the head now.
        core.coords.set_coordinate(at_ms(-25.0, 0.1)).expect("valid");
        let looks = (FAR_FOR.as_secs() / LOOK_EVERY.as_secs()) as usize;
        for k in 0..looks {
            core.advance(LOOK_EVERY);
            let _ = b.look(&mut core, Duration::ZERO);
            assert_eq!(b.barrio(), key(lower).prefix(), "kept at look {k}");
        }
        core.advance(LOOK_EVERY);
        let _ = b.look(&mut core, Duration::ZERO);
        assert_eq!(b.barrio(), me, "let go after {FAR_FOR:?}: heads itself");
        assert_eq!(b.changes_by_why().head_far, 1);
        // Back within reach and away again: the wait starts over.
        core.coords.set_coordinate(at_ms(0.0, 0.1)).expect("valid");
        core.advance(LOOK_EVERY);
        let _ = b.look(&mut core, Duration::ZERO);
        assert_eq!(b.barrio(), key(lower).prefix());
        assert_eq!(b.changes_by_why().lower_head, 1);
    }
}
