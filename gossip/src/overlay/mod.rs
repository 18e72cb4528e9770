//! The overlay: which neighbours this peer keeps links to, and how links come and go.
//!
//! A peer keeps `active_view` links: the nearest known members by coordinate plus
//! `random_links` random long links (far members of a fisheye peer included), dialled from the
//! membership gossip brings. Every second ([`Overlay::maintain`]) it closes links it said bye
//! on, redials links whose transport closed (with a backoff that doubles per closure, from
//! 1 s to [`REDIAL_MAX`], forgotten once a link stays up [`REDIAL_RESET`]),
//! trims a surplus past twice the view (the slowest link eager on the fewest trees says bye),
//! runs proximity swaps ([`swaps`]) and dials what the view lacks.
//!
//! Links are dropped with a **bye**, so that the neighbour closes the link and does not dial
//! back for a while ([`BYE_QUIET`]; [`BYE_FULL_QUIET`] for a peer refused for want of room at
//! `max_links`): without it a closed transport looks like a fade and is redialled at once.
//! The overlay is the one owner of redials: the host dials what [`crate::Output::Dial`] asks.

pub(crate) mod swaps;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_coords::Coordinate;
use vecino_proto::pb::{self, Stream, event::Body, frame::Kind};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::broadcast::Plumtree;
use crate::engine::core::Core;
use crate::io::{LinkStatus, Output, Priority};
use crate::links::link::Link;
use crate::links::unsequenced;
use crate::membership::fisheye::Fisheye;
use crate::membership::{Membership, has_left};
use crate::published::published_coordinate;
use crate::time::Time;

use self::swaps::{SwapStep, Swaps};

/// Base of the redial wait after a transport closes: the n-th closure in a row waits
/// `REDIAL_FIRST` × 2ⁿ (1 s after the first), up to `REDIAL_MAX`; forgotten once a link stays
/// up for `REDIAL_RESET`.
const REDIAL_FIRST: Duration = Duration::from_millis(500);
const REDIAL_MAX: Duration = Duration::from_secs(60);
const REDIAL_RESET: Duration = Duration::from_secs(30);
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
/// A connected link younger than this is not trimmed.
const TRIM_MIN_AGE: Duration = Duration::from_secs(60);
/// A link that has carried no valid frame (and was not dialled by this peer) this long after
/// it was made is a stranger's: dropped, and the peer held off for [`STRANGER_QUIET`].
pub(crate) const STRANGER_GRACE: Duration = Duration::from_secs(10);
/// A link not proven this long after it was made counts as a stranger's toward the quarter of
/// the table strangers may hold (see [`Overlay::make_room`]).
const STRANGER_SETTLE: Duration = Duration::from_secs(2);
/// A stranger's link dropped is not taken again, nor dialled, for this long.
const STRANGER_QUIET: Duration = Duration::from_secs(60);
/// The longest a misbehaving peer is kept out.
const MISBEHAVING_QUIET_MAX: Duration = Duration::from_secs(3600);

/// A peer not to be dialled before `at`, and how many closures in a row brought it there.
#[derive(Debug, Clone, Copy)]
struct Redial {
    attempts: u32,
    at: Time,
}

/// The overlay machine.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Dials in flight, and when each went out (at most [`MAX_DIALS`]).
    dialing: BTreeMap<AuthorKey, Time>,
    /// Redial backoff per peer (at most [`MAX_REDIAL`]).
    redial: BTreeMap<AuthorKey, Redial>,
    /// Strangers let go, until when they stay out (at most [`MAX_REDIAL`]; expired ones are
    /// swept as new ones come).
    strangers: BTreeMap<AuthorKey, Time>,
    /// Peers dropped for misbehaving, and how often (at most [`MAX_REDIAL`]).
    misbehaving: BTreeMap<AuthorKey, u32>,
    /// This peer is leaving (said chau): no more dials.
    leaving: bool,
    /// Proximity swaps.
    swaps: Swaps,
}

impl Overlay {
    /// Dials in flight (members being dialled are not evicted from the membership).
    pub(crate) fn dialing(&self) -> &BTreeMap<AuthorKey, Time> {
        &self.dialing
    }

    /// Whether this peer is leaving.
    pub(crate) fn leaving(&self) -> bool {
        self.leaving
    }

    /// This peer leaves: it stops dialling.
    pub(crate) fn leave(&mut self) {
        self.leaving = true;
    }

    /// Proximity swaps done and refused.
    pub(crate) fn swap_counters(&self) -> (u64, u64) {
        self.swaps.counters()
    }

    /// A transport to `peer` came up: its dial, if any, is over.
    pub(crate) fn link_up(&mut self, peer: &AuthorKey) {
        self.dialing.remove(peer);
    }

    /// Whether `peer` is not to be dialled yet: a redial backoff, or a bye either way, whose
    /// wait is not over.
    pub(crate) fn held_off(&self, now: Time, peer: &AuthorKey) -> bool {
        held_off(&self.redial, now, peer)
    }

    /// Not to be dialled (nor its links kept) for `quiet`.
    fn declined(&mut self, now: Time, peer: AuthorKey, quiet: Duration) {
        if self.redial.len() < MAX_REDIAL || self.redial.contains_key(&peer) {
            self.redial.insert(peer, Redial { attempts: 0, at: now + quiet });
        }
    }

    /// The transport to `peer` closed (not on purpose): it is redialled after a backoff that
    /// doubles with each closure, so that a refusing peer or a flapping path does not turn
    /// into a dial loop.
    pub(crate) fn transport_closed(&mut self, now: Time, peer: AuthorKey) {
        let attempts = self.redial.get(&peer).map_or(0, |r| r.attempts) + 1;
        let wait = crate::time::backoff(REDIAL_FIRST, attempts, REDIAL_MAX);
        if self.redial.len() < MAX_REDIAL || self.redial.contains_key(&peer) {
            self.redial.insert(peer, Redial { attempts, at: now + wait });
        }
    }

    /// A new neighbour link to `peer`, paced at `rate_bps`, with the tree edges Plumtree
    /// gives a new link.
    pub(crate) fn add_link<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
        rate_bps: Option<u64>,
    ) {
        let edges = Plumtree::new_link_edges(core, fisheye.active());
        core.links.insert(peer, Link::new(core.now, rate_bps, edges));
    }

    /// Room for one more link. A link is earned, not taken: when the table is full, the
    /// oldest stranger's link (one that has not shown it speaks the protocol within
    /// [`STRANGER_SETTLE`]; a younger one may be a neighbour whose first frame is on its way)
    /// is let go to make room, so any number of keys that connect and say nothing (or garbage) cannot shut
    /// out a newcomer, and never displace a neighbour that has been useful. Strangers silent
    /// past [`STRANGER_SETTLE`] also hold at most a quarter of the table: past it, the oldest
    /// stranger goes. False when no room can be made.
    pub(crate) fn make_room<R>(&mut self, core: &mut Core<R>, fisheye: &Fisheye) -> bool {
        let max = core.config.max_links;
        let now = core.now;
        // A member's (its presence is held here) first frame comes within a round trip: its
        // link counts as a stranger's only once silent past STRANGER_SETTLE (bursts of joins
        // on slow paths must not); an unknown key's counts at once.
        let stranger = |p: &AuthorKey, l: &crate::links::link::Link| {
            !l.proven()
                && (now.saturating_since(l.opened()) >= STRANGER_SETTLE || !is_member(core, p))
        };
        let strangers = core.links.iter().filter(|(p, l)| stranger(p, l)).count();
        if core.links.len() < max && strangers < (max / 4).max(1) {
            return true;
        }
        let oldest = core
            .links
            .iter()
            .filter(|(p, l)| stranger(p, l))
            .min_by_key(|(p, l)| (l.opened(), **p))
            .map(|(p, _)| *p);
        if let Some(peer) = oldest {
            core.reject("stranger_room");
            self.drop_stranger(core, fisheye, peer);
        }
        core.links.len() < max
    }

    /// Lets a stranger's link go (see [`Overlay::make_room`], [`STRANGER_GRACE`]): closed
    /// without a word (it does not speak the protocol, or not yet), held off for
    /// [`STRANGER_QUIET`], so it is neither dialled back nor let in again soon.
    pub(crate) fn drop_stranger<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
    ) {
        let silent = core
            .links
            .get(&peer)
            .is_some_and(|l| core.now.saturating_since(l.opened()) >= STRANGER_SETTLE);
        if self.drop_link(core, fisheye, &peer) {
            core.reject("stranger");
            // One silent past STRANGER_SETTLE is kept out; a younger one only had no room
            // (a newcomer whose first frame was on its way may come back).
            if silent {
                self.declined(core.now, peer, STRANGER_QUIET);
                let until = core.now + STRANGER_QUIET;
                self.strangers.retain(|_, t| *t > core.now);
                if self.strangers.len() < MAX_REDIAL {
                    self.strangers.insert(peer, until);
                }
            }
            core.emit(Output::Disconnect { peer });
        }
    }

    /// Drops the link of a peer past the misbehaviour limit (invalid frames, bad signatures:
    /// see `Core::misbehaved`) and keeps it out, for [`STRANGER_QUIET`] the first time and
    /// twice as long each time after, up to [`MISBEHAVING_QUIET_MAX`].
    pub(crate) fn drop_misbehaving<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
    ) {
        core.reject("misbehaving");
        let times = self.misbehaving.get(&peer).copied().unwrap_or(0);
        if self.misbehaving.len() < MAX_REDIAL || self.misbehaving.contains_key(&peer) {
            self.misbehaving.insert(peer, times.saturating_add(1));
        }
        let quiet = STRANGER_QUIET.saturating_mul(1 << times.min(6)).min(MISBEHAVING_QUIET_MAX);
        self.drop_link(core, fisheye, &peer);
        self.declined(core.now, peer, quiet);
        self.strangers.retain(|_, t| *t > core.now);
        if self.strangers.len() < MAX_REDIAL || self.strangers.contains_key(&peer) {
            self.strangers.insert(peer, core.now + quiet);
        }
        core.emit(Output::Disconnect { peer });
    }

    /// Whether `peer` is a stranger let go lately (not to be let in again yet).
    pub(crate) fn stranger(&self, now: Time, peer: &AuthorKey) -> bool {
        self.strangers.get(peer).is_some_and(|t| *t > now)
    }

    /// Whether a dial to `peer` is in flight.
    pub(crate) fn is_dialing(&self, peer: &AuthorKey) -> bool {
        self.dialing.contains_key(peer)
    }

    /// Forgets a link dropped on purpose (a bye, either way); whether there was one. Its
    /// trees are probed again on the other links (see [`Plumtree::reprobe`]).
    pub(crate) fn drop_link<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: &AuthorKey,
    ) -> bool {
        let Some(gone) = core.links.remove(peer) else { return false };
        Plumtree::reprobe(core, fisheye.active(), &gone);
        true
    }

    /// Drops a surplus link. Says why first: the neighbour closes the link and does not dial
    /// back for a while (else it takes the closed transport for a fade and redials at once,
    /// and the new link starts eager on every tree). Until it closes, nothing more is sent on
    /// it.
    pub(crate) fn say_bye<R: Rng>(&mut self, core: &mut Core<R>, peer: AuthorKey) {
        core.send(peer, Kind::Bye(pb::Bye { reason: BYE_SURPLUS }), Priority::Control, false);
        self.declined(core.now, peer, BYE_QUIET);
        core.links.mark_leaving(peer, core.now);
    }

    /// The neighbour dropped the link (surplus) or would not take it (full): forget it (so its
    /// closing is not a fade), close it, and do not dial it again for `BYE_QUIET`
    /// (`BYE_FULL_QUIET` when it was full).
    pub(crate) fn on_bye<R>(
        &mut self,
        core: &mut Core<R>,
        fisheye: &Fisheye,
        peer: AuthorKey,
        reason: u32,
    ) {
        core.links.unmark_leaving(&peer);
        if self.drop_link(core, fisheye, &peer) {
            let quiet = if reason == BYE_FULL { BYE_FULL_QUIET } else { BYE_QUIET };
            self.declined(core.now, peer, quiet);
            core.emit(Output::Disconnect { peer });
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
    pub(crate) fn refuse<R>(&mut self, core: &mut Core<R>, peer: AuthorKey) {
        if self.held_off(core.now, &peer) {
            return; // told already
        }
        self.declined(core.now, peer, BYE_FULL_QUIET);
        let frame = unsequenced(Kind::Bye(pb::Bye { reason: BYE_FULL }));
        core.host_took(frame.len());
        core.emit(Output::Send { to: peer, frame, class: Priority::Control });
    }

    /// Asks the host to dial `peer` (at the addresses its presence advertises, or that a far
    /// member's refused presence did), unless too many dials are out, it is being dialled or
    /// it is held off.
    fn dial<R>(&mut self, core: &mut Core<R>, fisheye: &Fisheye, peer: AuthorKey) {
        if self.dialing.len() >= MAX_DIALS || self.dialing.contains_key(&peer) {
            return;
        }
        if self.held_off(core.now, &peer) {
            return; // backing off
        }
        self.dialing.insert(peer, core.now);
        let addrs = match core.store.latest(&(peer, Stream::HeyThere)).map(VerifiedEvent::body) {
            Some(Body::HeyThere(h)) => h.addrs.clone(),
            _ => fisheye.far_addrs(&peer).unwrap_or_default(),
        };
        core.emit(Output::Dial { peer, addrs });
    }

    /// Links this peer said bye on that the neighbour has not closed within `BYE_WAIT` (the
    /// bye was lost, or the neighbour is older): closed from this end.
    fn close_leaving_links<R>(&mut self, core: &mut Core<R>, fisheye: &Fisheye) {
        for peer in core.links.leaving_since(core.now, BYE_WAIT) {
            core.links.unmark_leaving(&peer);
            // Forgotten first, so the LinkDown that follows is not taken for a fade.
            if self.drop_link(core, fisheye, &peer) {
                core.emit(Output::Disconnect { peer });
            }
        }
    }

    /// Drops one surplus link: of the connected links older than a minute, the one eager on
    /// the fewest trees, the slowest of those (inbound links and partitions that healed can
    /// leave more links than the active view needs).
    fn trim_links<R: Rng>(&mut self, core: &mut Core<R>) {
        let now = core.now;
        let victim = core
            .links
            .iter()
            .filter(|(p, l)| {
                l.connected()
                    && now.saturating_since(l.status_since()) > TRIM_MIN_AGE
                    && !core.links.leaving(p)
            })
            .max_by_key(|(p, l)| {
                let rtt = l.rtt().unwrap_or(Duration::MAX);
                (std::cmp::Reverse(l.tree.edges.eager_count()), rtt, **p)
            })
            .map(|(p, _)| *p);
        if let Some(peer) = victim {
            self.say_bye(core, peer);
        }
    }

    /// Once a second: closes links said bye on, forgets dials that timed out and the backoff
    /// of links that proved themselves, redials links whose transport closed, trims a surplus,
    /// runs proximity swaps and dials what the active view lacks (nearest first, with
    /// `random_links` of the picks at random among all candidates).
    pub(crate) fn maintain<R: Rng>(&mut self, core: &mut Core<R>, membership: &Membership) {
        let now = core.now;
        let fisheye = &membership.fisheye;
        self.close_leaving_links(core, fisheye);
        self.dialing.retain(|_, at| now.saturating_since(*at) < DIAL_TIMEOUT);
        // Links that stayed up a while have proven themselves: forget their backoff.
        let links = &core.links;
        self.redial.retain(|p, _| {
            links.get(p).is_none_or(|l| {
                !(l.transport_up()
                    && l.status() == LinkStatus::Connected
                    && now.saturating_since(l.status_since()) >= REDIAL_RESET)
            })
        });
        if self.leaving {
            return;
        }
        // Links whose transport closed are redialled once their backoff is over.
        let due: Vec<AuthorKey> = core
            .links
            .iter()
            .filter(|(p, l)| !l.transport_up() && !self.held_off(now, p))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.dial(core, fisheye, peer);
        }
        // Strangers' links are not neighbours yet: they neither count toward the view nor
        // make room for themselves by trimming a neighbour.
        let usable = core
            .links
            .iter()
            .filter(|(p, l)| {
                l.proven() && l.status() != LinkStatus::Disconnected && !core.links.leaving(p)
            })
            .count();
        let view = core.config.active_view;
        if usable > 2 * view {
            self.trim_links(core);
            return;
        }
        self.maintain_swaps(core, membership);
        let want = view.saturating_sub(usable + self.dialing.len());
        if want == 0 {
            return;
        }
        let me = *core.coords.app_coordinate();
        let mut candidates: Vec<(f64, AuthorKey)> = dialable(core, &self.dialing, &self.redial)
            .into_iter()
            .map(|(p, c)| (c.map_or(f64::MAX, |c| me.distance_secs(&c)), p))
            .collect();
        // Far members (fisheye) are candidates too: the random picks make long links of them.
        candidates.extend(
            fisheye.far_candidates(core).into_iter().filter(|(_, p)| !self.dialing.contains_key(p)),
        );
        if candidates.is_empty() {
            return;
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let random_share = core.config.random_links as f64 / view.max(1) as f64;
        for _ in 0..want {
            if candidates.is_empty() {
                break;
            }
            let i = if core.rng.random_bool(random_share.clamp(0.0, 1.0)) {
                core.rng.random_range(0..candidates.len())
            } else {
                0
            };
            let (_, peer) = candidates.remove(i);
            self.dial(core, fisheye, peer);
        }
    }

    /// Looks for a proximity swap, or settles the one in flight ([`swaps`]).
    fn maintain_swaps<R: Rng>(&mut self, core: &mut Core<R>, membership: &Membership) {
        let busy = self.leaving || !self.dialing.is_empty();
        let spacing = membership.newspaper_spacing(&core.config);
        let (dialing, redial) = (&self.dialing, &self.redial);
        let step = self.swaps.step(core, busy, || dialable(core, dialing, redial), spacing);
        match step {
            SwapStep::Wait => {}
            SwapStep::Dial { new, old } => {
                self.dial(core, &membership.fisheye, new);
                if self.dialing.contains_key(&new) {
                    self.swaps.dialled(new, old, core.now);
                }
            }
            SwapStep::Bye(peer) => self.say_bye(core, peer),
        }
    }
}

/// Whether `peer`'s presence (or status) is held here: a member, not a mere key.
fn is_member<R>(core: &Core<R>, peer: &AuthorKey) -> bool {
    core.store.latest(&(*peer, Stream::HeyThere)).is_some()
        || core.store.latest(&(*peer, Stream::Newspaper)).is_some()
}

/// Whether `peer` is held off at `now` by `redial` (see [`Overlay::held_off`]).
fn held_off(redial: &BTreeMap<AuthorKey, Redial>, now: Time, peer: &AuthorKey) -> bool {
    redial.get(peer).is_some_and(|r| r.at > now)
}

/// Members this peer may dial, with the coordinate each last published: known by presence or
/// status, not left, and not linked, being dialled or held off.
fn dialable<R>(
    core: &Core<R>,
    dialing: &BTreeMap<AuthorKey, Time>,
    redial: &BTreeMap<AuthorKey, Redial>,
) -> Vec<(AuthorKey, Option<Coordinate>)> {
    let mut out: Vec<(AuthorKey, Option<Coordinate>)> = Vec::new();
    // Latest-value events come in (author, stream) order: an author's are adjacent.
    let mut last = None;
    for ev in core.store.latest_events() {
        let p = ev.author();
        if !matches!(ev.stream(), Stream::HeyThere | Stream::Newspaper)
            || p == core.me
            || last.replace(p) == Some(p)
            || core.links.contains(&p)
            || dialing.contains_key(&p)
            || held_off(redial, core.now, &p)
            || has_left(&core.store, p)
        {
            continue;
        }
        out.push((p, published_coordinate(&core.store, p)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::engine::core::testing::{at_ms, hey_there, key};

    /// A surplus link gets a bye, is not sent anything more, and is closed from this end if
    /// the neighbour has not closed it within `BYE_WAIT`; the peer is not dialled again for
    /// `BYE_QUIET`.
    #[test]
    fn a_bye_closes_the_link_and_holds_the_peer_off() {
        let mut core = Core::for_test(1, Config::default());
        let peer = key(1);
        core.link_to(peer);
        let mut o = Overlay::default();
        let m = Membership::new(&core.config);
        o.say_bye(&mut core, peer);
        assert!(matches!(
            core.sent().as_slice(),
            [(_, Kind::Bye(pb::Bye { reason: BYE_SURPLUS }))]
        ));
        assert!(core.links.leaving(&peer));
        core.advance(BYE_WAIT);
        o.maintain(&mut core, &m);
        assert!(!core.links.contains(&peer));
        assert!(core.take().iter().any(|out| *out == Output::Disconnect { peer }));
        assert!(o.held_off(core.now, &peer));
        assert!(!o.held_off(core.now + BYE_QUIET, &peer));
    }

    /// A peer refused for want of room is told once (a bye outside any link) and held off for
    /// `BYE_FULL_QUIET`.
    #[test]
    fn a_peer_without_room_is_told_once() {
        let mut core = Core::for_test(2, Config::default());
        let mut o = Overlay::default();
        o.refuse(&mut core, key(1));
        o.refuse(&mut core, key(1));
        let byes = core.take().into_iter().filter(|out| matches!(out, Output::Send { .. })).count();
        assert_eq!(byes, 1);
        assert!(o.held_off(core.now + (BYE_FULL_QUIET - Duration::from_micros(1)), &key(1)));
        assert!(!o.held_off(core.now + BYE_FULL_QUIET, &key(1)));
    }

    /// A transport that closes again and again is redialled after a backoff that doubles
    /// (1 s, 2 s, 4 s …).
    #[test]
    fn redials_back_off() {
        let mut o = Overlay::default();
        let (peer, t) = (key(1), Time(1_000_000));
        for (n, wait_ms) in [(1, 1_000), (2, 2_000), (3, 4_000)] {
            o.transport_closed(t, peer);
            let wait = Duration::from_millis(wait_ms);
            assert!(o.held_off(t + (wait - Duration::from_micros(1)), &peer), "closure {n}");
            assert!(!o.held_off(t + wait, &peer), "closure {n}");
        }
    }

    /// The view is filled from the members gossip brought, nearest first (no random links
    /// here), at the addresses their presence advertises, no more than the view lacks.
    #[test]
    fn the_view_is_filled_nearest_first() {
        let config = Config { active_view: 2, random_links: 0, ..Config::default() };
        let mut core = Core::for_test(3, config);
        core.coords.set_coordinate(at_ms(0.0, 0.1)).expect("valid");
        for (n, ms) in [(1, 30.0), (2, 10.0), (3, 20.0)] {
            let _ = core.store.insert(hey_there(n, 1, &at_ms(ms, 0.1)));
        }
        let mut o = Overlay::default();
        let m = Membership::new(&core.config);
        o.maintain(&mut core, &m);
        let dials: Vec<(AuthorKey, Vec<String>)> = core
            .take()
            .into_iter()
            .filter_map(|out| match out {
                Output::Dial { peer, addrs } => Some((peer, addrs)),
                _ => None,
            })
            .collect();
        assert_eq!(
            dials,
            vec![
                (key(2), vec!["/ip4/10.0.0.2/tcp/7301".to_string()]),
                (key(3), vec!["/ip4/10.0.0.3/tcp/7301".to_string()]),
            ]
        );
        assert_eq!(o.dialing().len(), 2);
    }
}
