//! Postcards: point-to-point messages routed by proximity, carried through partitions.
//!
//! A postcard is a signed event of its author addressed to one peer, its body sealed to that
//! peer's key (`vecino_proto::seal`): relays cannot read it. It travels hop by hop, each hop
//! chosen by [`crate::routing`] (link state near the destination, greedy on coordinates
//! beyond), alone in a reliable frame that carries its trail (the peers it crossed, which a
//! router leaves out: no loops).
//!
//! - **Custody.** A hop keeps the postcard, durably (`Persist`), until the next hop has taken
//!   it: the link's acknowledgement of the frame that carried it is the custody signal,
//!   cumulative like every acknowledgement. A next hop that cannot take it (its custody space
//!   is full) names it in the acknowledgement's `refused` list, and the custodian keeps it and
//!   routes it another way.
//! - **Store-carry-forward.** While no neighbour makes progress (the links toward the
//!   destination are suspected, a partition), the custodian keeps it and tries again every
//!   [`RETRY`] and whenever a link comes up or heals. A postcard handed to a link that turns
//!   suspected is taken back (its frame cancelled) and routed again. Every hop drops it at its
//!   expiry (`expires_ms`), counted.
//! - **Crashes.** A custodian that restarts routes again what it persisted. A copy that comes
//!   back to a peer that handed it on is refused, not dropped (the peer it went to may have
//!   lost it), so its sender keeps it. The author keeps its own postcards stored until their
//!   receipt or expiry (a restarted author orders the next after them), and a routed stream's
//!   seqs follow the clock, so a restarted peer never reuses one while an old copy travels.
//! - **Receipts.** The destination delivers it to its application once (duplicates, after a
//!   custodian's crash or a reroute, are counted and dropped) and in order per author (a
//!   postcard names its author's previous one to the same destination; one whose
//!   predecessor has not come waits at most [`HOLD_MAX`]), and answers with a signed receipt,
//!   routed back to the author's coordinate the same way. A receipt passing a custodian that
//!   still holds the postcard clears it (only a receipt signed by the postcard's destination). The author reports its postcards in custody here,
//!   forwarded (the first hop took it), delivered (the receipt came back) or expired.
//! - **Baselines.** `Config::postcard_router` swaps the router for one the field uses
//!   (direct, epidemic, binary spray-and-wait), so that the simulator measures them on the
//!   same overlay, faults and seed (`PostcardRouter`).
//! - **Bounds.** Custody is bounded in count (`Config::max_custody`), bytes
//!   (`Config::max_custody_bytes`) and per author (`Config::max_custody_per_author`); events
//!   remembered as forwarded or delivered (for deduplication) at most [`MAX_SEEN`], postcards
//!   waiting for their predecessor at most [`MAX_HELD`], own postcards awaiting their receipt at
//!   most `max_custody`.

mod custody;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_coords::Coordinate;
use vecino_proto::limits::{MAX_POSTCARD_BODY_BYTES, MAX_REFUSED_PER_ACK, MAX_ROUTE_HOPS};
use vecino_proto::pb::{self, event::Body, frame::Kind};
use vecino_proto::{AuthorKey, Bytes, EventId, VerifiedEvent};

use crate::config::PostcardRouter;
use crate::engine::core::Core;
use crate::io::{AppEvent, DeliveredPostcard, Output, PostcardStatus, Priority, StoreOp};
use crate::links::link::Meta;
use crate::published::{coord_from_pb, coord_to_pb, published_coordinate};
use crate::routing::{Hop, Routing, usable};
use crate::store::{EventKey, event_key};
use crate::time::Time;

use self::custody::{Custody, Full, State, Table};

/// A held postcard is routed again at least this often.
pub(crate) const RETRY: Duration = Duration::from_secs(1);
/// A postcard handed to a next hop that has not acknowledged it within this long (the link
/// stayed up, yet nothing came back) is taken back and routed another way.
const SENT_TIMEOUT: Duration = Duration::from_secs(60);
/// A postcard whose predecessor from the same author has not come waits this long at most.
pub(crate) const HOLD_MAX: Duration = Duration::from_secs(30);
/// A refusal is repeated in every acknowledgement to the refused peer for this long.
const REFUSAL_MEMORY: Duration = Duration::from_secs(30);
/// Routed events remembered as forwarded or delivered (until their expiry) at most.
pub(crate) const MAX_SEEN: usize = 65_536;
/// Postcards waiting for their predecessor at most.
pub(crate) const MAX_HELD: usize = 4_096;
/// Destinations whose last postcard from this peer is remembered (for `Postcard.prev`).
const MAX_LAST_TO: usize = 4_096;
/// Peers with refusals to report at most.
const MAX_REFUSING: usize = 256;

/// What the frame that carried a routed event says of its way so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Way<'a> {
    /// The peers it crossed, by key prefix, the sender included.
    pub(crate) trail: &'a [u64],
    /// How many of those hops were detours.
    pub(crate) detours: u32,
    /// Under spray-and-wait: the copies the receiver may hand on.
    pub(crate) copies: u32,
}

impl<'a> Way<'a> {
    /// The way an `Events` frame carried (its `trail`, `detours` and `copies`).
    pub(crate) fn of(trail: &'a [u64], detours: Option<u32>, copies: Option<u32>) -> Self {
        Self { trail, detours: detours.unwrap_or(0), copies: copies.unwrap_or(0) }
    }
}

/// The copies an author starts a routed event with under `router`.
fn initial_copies(router: PostcardRouter) -> u32 {
    match router {
        PostcardRouter::Spray { copies } => copies.max(1),
        _ => 0,
    }
}

/// A routed event read: its destination, where it is believed to be, until when it lives.
#[derive(Debug, Clone, Copy)]
struct Routed {
    to: AuthorKey,
    hint: Option<Coordinate>,
    expires: Time,
}

/// Why a postcard could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostcardError {
    /// Addressed to this peer itself.
    #[error("a postcard to oneself")]
    ToSelf,
    /// The body is larger than a postcard carries.
    #[error("body of {0} bytes, at most {MAX_POSTCARD_BODY_BYTES}")]
    TooLarge(usize),
    /// The lifetime asked for is longer than allowed.
    #[error("lifetime {0:?} longer than the {1:?} allowed")]
    Lifetime(Duration, Duration),
    /// The destination's key cannot be sealed to.
    #[error("not a valid destination key")]
    BadDestination,
    /// Nothing says where the destination is (not a member this peer holds, and no
    /// coordinate given).
    #[error("unknown destination: no member of that key, and no coordinate for it")]
    Unknown,
    /// This peer's custody space is full.
    #[error("custody space full")]
    Full,
    /// The event could not be signed.
    #[error("invalid postcard: {0}")]
    Invalid(String),
}

/// An own postcard awaiting its receipt.
#[derive(Debug, Clone)]
struct Sent {
    to: AuthorKey,
    /// Its seq on this peer's postcard stream (the stored copy is kept until the receipt or
    /// the expiry, so that a restart still knows it and orders the next one after it).
    seq: u64,
    expires: Time,
    forwarded: bool,
}

/// A postcard delivered out of order, waiting for its predecessor.
#[derive(Debug, Clone)]
struct Waiting {
    postcard: DeliveredPostcard,
    prev: u64,
    since: Time,
}

/// What this peer knows of a routed event it no longer holds.
#[derive(Debug, Clone, Copy)]
struct Seen {
    expires: Time,
    /// Delivered (here, or its receipt passed): a copy that comes again is dropped. Otherwise
    /// only handed on: a copy that comes again (from a custodian that restarted, or rerouted
    /// it) is refused, so that its sender keeps it.
    done: bool,
}

/// The postcard machine.
#[derive(Debug)]
pub(crate) struct Postcards {
    custody: Table,
    /// Routed events this peer handed on or saw delivered, by id, until their expiry (at most
    /// [`MAX_SEEN`]), and the same by expiry for pruning.
    seen: BTreeMap<EventId, Seen>,
    seen_by_expiry: BTreeMap<(Time, EventId), ()>,
    /// Own postcards awaiting their receipt, by id.
    sent: BTreeMap<EventId, Sent>,
    /// The seq of this peer's last postcard to each destination (at most [`MAX_LAST_TO`]).
    last_to: BTreeMap<AuthorKey, u64>,
    /// Per author: the seq of its last postcard delivered here, and those waiting for their
    /// predecessor (at most [`MAX_HELD`] in all).
    delivered_seq: BTreeMap<AuthorKey, u64>,
    waiting: BTreeMap<(AuthorKey, u64), Waiting>,
    /// Custody refused to each upstream peer lately: repeated in its acknowledgements.
    refusals: BTreeMap<AuthorKey, Vec<(EventId, Time)>>,
}

/// Reads a routed event's destination, location hint and expiry; `None` for other bodies or
/// a destination that is no key.
fn routed(ev: &VerifiedEvent, default_lifetime: Duration) -> Option<Routed> {
    let (to, hint, expires_ms) = match ev.body() {
        Body::Postcard(p) => (&p.to, p.to_coordinate.as_ref(), p.expires_ms),
        Body::PostcardReceipt(r) => (&r.to, r.to_coordinate.as_ref(), r.expires_ms),
        _ => return None,
    };
    let to = AuthorKey::from_slice(to)?;
    let expires = if expires_ms == 0 {
        Time::from_millis(ev.hlc().ms) + default_lifetime
    } else {
        Time::from_millis(expires_ms)
    };
    Some(Routed { to, hint: hint.and_then(coord_from_pb), expires })
}

impl Postcards {
    pub(crate) fn new(config: &crate::Config) -> Self {
        Self {
            custody: Table::new(
                config.max_custody,
                config.max_custody_bytes,
                config.max_custody_per_author,
            ),
            seen: BTreeMap::new(),
            seen_by_expiry: BTreeMap::new(),
            sent: BTreeMap::new(),
            last_to: BTreeMap::new(),
            delivered_seq: BTreeMap::new(),
            waiting: BTreeMap::new(),
            refusals: BTreeMap::new(),
        }
    }

    /// Postcards in custody here, and their bytes.
    pub(crate) fn in_custody(&self) -> (usize, usize) {
        (self.custody.len(), self.custody.bytes())
    }

    /// Remembers routed event `id` as handed on, or delivered (`done`), until `expires`.
    fn see(&mut self, id: EventId, expires: Time, done: bool) {
        if self.seen.len() >= MAX_SEEN
            && !self.seen.contains_key(&id)
            && let Some(((_, old), ())) = self.seen_by_expiry.pop_first()
        {
            self.seen.remove(&old);
        }
        let done = done || self.seen.get(&id).is_some_and(|s| s.done);
        if let Some(was) = self.seen.insert(id, Seen { expires, done }) {
            self.seen_by_expiry.remove(&(was.expires, id));
        }
        self.seen_by_expiry.insert((expires, id), ());
    }

    // ----- sending -----

    /// Seals `body` to `to` and sends it as this peer's next postcard, living `lifetime`
    /// (the default when `None`); `hint` says where `to` is when this peer does not hold it.
    pub(crate) fn send<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        routing: &Routing,
        to: AuthorKey,
        body: &[u8],
        lifetime: Option<Duration>,
        hint: Option<Coordinate>,
    ) -> Result<VerifiedEvent, PostcardError> {
        if to == core.me {
            return Err(PostcardError::ToSelf);
        }
        if body.len() > MAX_POSTCARD_BODY_BYTES {
            return Err(PostcardError::TooLarge(body.len()));
        }
        let max = core.config.max_postcard_lifetime;
        let lifetime = lifetime.unwrap_or(core.config.postcard_lifetime);
        if lifetime > max || lifetime.is_zero() {
            return Err(PostcardError::Lifetime(lifetime, max));
        }
        let hint = published_coordinate(&core.store, to).or(hint);
        if hint.is_none() && !core.links.contains(&to) {
            return Err(PostcardError::Unknown);
        }
        let seed: [u8; 32] = core.rng.random();
        let sealed =
            vecino_proto::seal(&to, body, seed).map_err(|_| PostcardError::BadDestination)?;
        let expires = core.now + lifetime;
        let postcard = pb::Postcard {
            to: Bytes::copy_from_slice(to.as_bytes()),
            body: Bytes::from(sealed),
            expires_ms: expires.as_millis(),
            from: Some(coord_to_pb(core.coords.app_coordinate())),
            to_coordinate: hint.as_ref().map(coord_to_pb),
            prev: self.last_to.get(&to).copied().unwrap_or(0),
        };
        let ev = core
            .sign(Body::Postcard(postcard))
            .map_err(|e| PostcardError::Invalid(e.to_string()))?;
        if self.custody.room_for(&ev, true).is_err() {
            return Err(PostcardError::Full);
        }
        if self.last_to.len() >= MAX_LAST_TO && !self.last_to.contains_key(&to) {
            self.last_to.pop_first();
        }
        self.last_to.insert(to, ev.seq());
        self.sent.insert(ev.id(), Sent { to, seq: ev.seq(), expires, forwarded: false });
        let routed = Routed { to, hint, expires };
        let way = Way { copies: initial_copies(core.config.postcard_router), ..Way::default() };
        self.take(core, routing, ev.clone(), routed, way, None);
        Ok(ev)
    }

    /// Takes `ev` into custody (durably; from `from`, which came `way`) and routes it at once.
    fn take<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        routing: &Routing,
        ev: VerifiedEvent,
        r: Routed,
        way: Way<'_>,
        from: Option<AuthorKey>,
    ) {
        let key = event_key(&ev);
        core.emit(Output::Persist(StoreOp::Put(ev.clone())));
        let mut c = Custody::new(ev, r.to, r.hint, r.expires, way.trail.to_vec(), core.now);
        c.detours = way.detours;
        c.copies = way.copies;
        if let Some(from) = from {
            c.given(from);
        }
        self.custody.insert(key, c);
        self.route(core, routing, &key);
    }

    /// Routes the event of `key` in custody: hands it to the next hop, or keeps it for
    /// [`RETRY`]. Under a baseline router, does what that router does instead.
    fn route<R: Rng>(&mut self, core: &mut Core<R>, routing: &Routing, key: &EventKey) {
        let Some(c) = self.custody.get(key) else { return };
        let hop = match core.config.postcard_router {
            PostcardRouter::Proximity => {
                routing.next_hop(core, &c.to, c.hint, &c.trail, &c.avoided(core.now))
            }
            PostcardRouter::Direct if usable(core, &c.to) => Hop::Destination(c.to),
            PostcardRouter::Direct => Hop::Hold,
            PostcardRouter::Epidemic | PostcardRouter::Spray { .. } => {
                self.replicate(core, key);
                return;
            }
        };
        let Some(peer) = hop.neighbour() else {
            core.stats.postcard_holds += 1;
            if let Some(c) = self.custody.get_mut(key) {
                c.state = State::Held { retry: core.now + RETRY };
            }
            return;
        };
        let mut trail = c.trail.clone();
        trail.push(core.me.prefix());
        // Greedy, or again after a hop refused it or lost it: a detour.
        let detour = matches!(hop, Hop::Greedy(_)) || c.sends > 0;
        let detours = Some(c.detours + u32::from(detour));
        let envelope = c.ev.envelope().clone();
        send_routed(core, peer, key, envelope, (trail, detours, None), Some(*key));
        if matches!(hop, Hop::Greedy(_)) {
            core.stats.postcard_greedy_hops += 1;
        }
        if let Some(c) = self.custody.get_mut(key) {
            c.state = State::Sent { peer, at: core.now };
            c.sends += 1;
        }
    }

    /// Under a replicating router (a baseline): hands a copy of the event of `key` to each
    /// usable neighbour that has not had one (epidemic), or half of its copies to one
    /// (binary spray; with one copy left, only to the destination); keeps its own until its
    /// expiry or its receipt, and tries again when a link comes up (a new neighbour).
    fn replicate<R: Rng>(&mut self, core: &mut Core<R>, key: &EventKey) {
        let router = core.config.postcard_router;
        let Some(c) = self.custody.get(key) else { return };
        let mut peers: Vec<AuthorKey> = core
            .links
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| usable(core, p) && !c.given.contains(p) && !c.trail.contains(&p.prefix()))
            .collect();
        // The destination first: a copy there is the delivery.
        peers.sort_by_key(|p| *p != c.to);
        let (ev, trail_in, to) = (c.ev.envelope().clone(), c.trail.clone(), c.to);
        let mut trail = trail_in;
        trail.push(core.me.prefix());
        for peer in peers {
            let Some(c) = self.custody.get_mut(key) else { return };
            let copies = match router {
                PostcardRouter::Spray { .. } if c.copies > 1 => {
                    let give = c.copies / 2;
                    c.copies -= give;
                    Some(give)
                }
                PostcardRouter::Spray { .. } if peer == to => Some(1),
                PostcardRouter::Spray { .. } => continue,
                _ => None,
            };
            c.given(peer);
            c.sends += 1;
            send_routed(core, peer, key, ev.clone(), (trail.clone(), None, copies), None);
        }
        if let Some(c) = self.custody.get_mut(key) {
            // Nothing changes until a link comes up (`on_link_up` makes it due) or it expires.
            c.state = State::Held { retry: c.expires };
        }
    }

    // ----- receiving -----

    /// A routed event arrived from `from` (its trail and detours as the frame carried them).
    pub(crate) fn on_event<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        routing: &Routing,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
        way: Way<'_>,
    ) {
        let Some(r) = routed(ev, core.config.postcard_lifetime) else {
            core.reject("routed_malformed");
            return;
        };
        if r.expires <= core.now {
            core.reject("postcard_expired");
            return;
        }
        if r.expires > Time::from_millis(ev.hlc().ms) + core.config.max_postcard_lifetime {
            core.reject("postcard_lifetime");
            return;
        }
        let key = event_key(ev);
        let seen = self.seen.get(&ev.id()).copied();
        if self.custody.contains(&key) || seen.is_some_and(|s| s.done) {
            // Back from a loop, sent again after a reroute or a custodian's restart, or
            // delivered already: this copy is not needed.
            core.stats.postcard_duplicates += 1;
            if let (Some(from), Some(c)) = (from, self.custody.get_mut(&key)) {
                c.avoid(from, core.now);
                c.given(from);
            }
            return;
        }
        if seen.is_some() {
            // Handed on from here, and back: the peer it went to may have lost it (a restart
            // with what it persisted; a crash before), so dropping it could lose it. Refused:
            // its sender keeps it and tries another way.
            core.stats.postcard_duplicates += 1;
            if let Some(from) = from {
                self.refuse(core.now, from, ev.id());
            }
            return;
        }
        if way.trail.len() >= MAX_ROUTE_HOPS {
            core.reject("postcard_loop");
            return;
        }
        if let Body::PostcardReceipt(receipt) = ev.body() {
            self.clear_by_receipt(core, ev.author(), receipt);
        }
        if r.to == core.me {
            self.see(ev.id(), r.expires, true);
            match ev.body() {
                Body::Postcard(p) => self.deliver(core, routing, ev, p, &r, way),
                Body::PostcardReceipt(receipt) => self.on_receipt(core, ev, receipt),
                _ => {}
            }
            return;
        }
        if let Err(full) = self.custody.room_for(ev, false) {
            core.reject(match full {
                Full::Author => "postcard_author_share",
                Full::Total => "postcard_custody_full",
            });
            if let Some(from) = from {
                self.refuse(core.now, from, ev.id());
            }
            return;
        }
        self.take(core, routing, ev.clone(), r, way, from);
    }

    /// Refusal of `id` to report to `peer` in its acknowledgements.
    fn refuse(&mut self, now: Time, peer: AuthorKey, id: EventId) {
        if self.refusals.len() >= MAX_REFUSING && !self.refusals.contains_key(&peer) {
            return; // reported to none: the peer retransmits, and is refused again
        }
        let list = self.refusals.entry(peer).or_default();
        list.retain(|(_, at)| now.saturating_since(*at) < REFUSAL_MEMORY);
        if list.len() < MAX_REFUSED_PER_ACK {
            list.push((id, now));
        }
    }

    /// The refusals to put in an acknowledgement to `peer`.
    pub(crate) fn refusals_for(&mut self, now: Time, peer: &AuthorKey) -> Vec<Bytes> {
        let Some(list) = self.refusals.get_mut(peer) else { return Vec::new() };
        list.retain(|(_, at)| now.saturating_since(*at) < REFUSAL_MEMORY);
        let out = list.iter().map(|(id, _)| Bytes::copy_from_slice(&id.0)).collect();
        if list.is_empty() {
            self.refusals.remove(peer);
        }
        out
    }

    /// A postcard addressed to this peer: opened, delivered in order, and answered with a
    /// receipt.
    fn deliver<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        routing: &Routing,
        ev: &VerifiedEvent,
        p: &pb::Postcard,
        r: &Routed,
        way: Way<'_>,
    ) {
        let body = match core.identity.unseal(&p.body) {
            Ok(b) => Bytes::from(b),
            Err(_) => {
                core.reject("postcard_unsealable");
                return;
            }
        };
        // Kept until its expiry, so that a restart still knows it was delivered.
        core.emit(Output::Persist(StoreOp::Put(ev.clone())));
        let mut path = way.trail.to_vec();
        path.push(core.me.prefix());
        let postcard = DeliveredPostcard {
            id: ev.id(),
            from: ev.author(),
            seq: ev.seq(),
            hlc: ev.hlc(),
            body,
            trail: path.clone(),
            detours: way.detours,
        };
        self.deliver_in_order(core, postcard, p.prev);
        // The receipt, routed back to where the author was.
        let receipt = pb::PostcardReceipt {
            postcard_id: Bytes::copy_from_slice(&ev.id().0),
            to: Bytes::copy_from_slice(ev.author().as_bytes()),
            to_coordinate: p.from.clone(),
            expires_ms: r.expires.as_millis(),
            trail: path,
        };
        match core.sign(Body::PostcardReceipt(receipt)) {
            Ok(receipt) => {
                let routed = Routed {
                    to: ev.author(),
                    hint: p.from.as_ref().and_then(coord_from_pb),
                    expires: r.expires,
                };
                if self.custody.room_for(&receipt, true).is_ok() {
                    let copies = initial_copies(core.config.postcard_router);
                    let way = Way { copies, ..Way::default() };
                    self.take(core, routing, receipt, routed, way, None);
                } else {
                    core.reject("receipt_custody_full");
                }
            }
            Err(_) => core.reject("receipt_invalid"),
        }
    }

    /// Delivers `postcard` now if its predecessor (`prev`) from the same author was
    /// delivered (or is unknown), then whatever waited for it; else it waits.
    fn deliver_in_order<R>(&mut self, core: &mut Core<R>, postcard: DeliveredPostcard, prev: u64) {
        let author = postcard.from;
        let last = self.delivered_seq.get(&author).copied().unwrap_or(0);
        if prev != 0 && prev > last && self.waiting.len() < MAX_HELD {
            let since = core.now;
            self.waiting.insert((author, postcard.seq), Waiting { postcard, prev, since });
            return;
        }
        self.hand_over(core, postcard);
        self.release_waiting(core, author);
    }

    fn hand_over<R>(&mut self, core: &mut Core<R>, postcard: DeliveredPostcard) {
        let author = postcard.from;
        let last = self.delivered_seq.entry(author).or_default();
        *last = (*last).max(postcard.seq);
        core.stats.postcards_delivered += 1;
        core.emit(Output::Deliver(AppEvent::Postcard(postcard)));
    }

    /// Delivers the postcards of `author` whose predecessor has now been delivered.
    fn release_waiting<R>(&mut self, core: &mut Core<R>, author: AuthorKey) {
        loop {
            let last = self.delivered_seq.get(&author).copied().unwrap_or(0);
            let ready = self
                .waiting
                .range((author, 0)..=(author, u64::MAX))
                .find(|(_, w)| w.prev <= last)
                .map(|(k, _)| *k);
            let Some(k) = ready else { break };
            if let Some(w) = self.waiting.remove(&k) {
                self.hand_over(core, w.postcard);
            }
        }
    }

    /// A receipt addressed to this peer: one of its postcards was delivered.
    fn on_receipt<R>(&mut self, core: &mut Core<R>, ev: &VerifiedEvent, r: &pb::PostcardReceipt) {
        let Some(id) = <[u8; 32]>::try_from(r.postcard_id.as_ref()).ok().map(EventId) else {
            core.reject("receipt_malformed");
            return;
        };
        let Some(sent) = self.sent.get(&id) else {
            core.reject("receipt_unknown");
            return;
        };
        if sent.to != ev.author() {
            core.reject("receipt_not_from_destination");
            return;
        }
        if let Some(sent) = self.sent.remove(&id) {
            forget_own(core, sent.seq);
        }
        core.stats.receipts += 1;
        let status = PostcardStatus::Delivered { trail: r.trail.clone() };
        core.emit(Output::Deliver(AppEvent::PostcardStatus { id, to: ev.author(), status }));
    }

    /// A receipt signed by `by` passing through: a copy of its postcard still held here, to
    /// `by`, is dropped (a receipt signed by anyone else clears nothing).
    fn clear_by_receipt<R>(&mut self, core: &mut Core<R>, by: AuthorKey, r: &pb::PostcardReceipt) {
        let Ok(id) = <[u8; 32]>::try_from(r.postcard_id.as_ref()) else { return };
        let id = EventId(id);
        let expires = Time::from_millis(r.expires_ms);
        let replicating = matches!(
            core.config.postcard_router,
            PostcardRouter::Epidemic | PostcardRouter::Spray { .. }
        );
        if replicating && expires > core.now && !self.seen.contains_key(&id) {
            // The replicating baselines' immunity: a copy that comes later is not taken
            // (trusting any receipt, as those routers do; vecino's router holds one copy and
            // never needs it).
            self.see(id, expires, true);
        }
        let held = self.custody.keys_where(|c| c.ev.id() == id && c.to == by);
        for key in held {
            if let Some(c) = self.custody.remove(&key) {
                core.stats.postcards_cleared += 1;
                self.see(id, c.expires, true);
                delete(core, &c.ev);
            }
        }
    }

    // ----- custody signals and link changes -----

    /// `peer` acknowledged frames that carried the routed events `keys`, refusing those in
    /// `refused`: the others are its now.
    pub(crate) fn on_acked<R>(
        &mut self,
        core: &mut Core<R>,
        peer: AuthorKey,
        keys: &[EventKey],
        refused: &[Bytes],
    ) {
        for key in keys {
            let Some(c) = self.custody.get_mut(key) else { continue };
            if !matches!(c.state, State::Sent { peer: p, .. } if p == peer) {
                continue;
            }
            if refused.iter().any(|r| r.as_ref() == c.ev.id().0) {
                core.stats.postcards_refused_downstream += 1;
                c.avoid(peer, core.now);
                c.state = State::Held { retry: core.now };
                continue;
            }
            let Some(c) = self.custody.remove(key) else { continue };
            self.see(c.ev.id(), c.expires, false);
            if !self.sent.contains_key(&c.ev.id()) {
                delete(core, &c.ev); // own postcards stay stored until receipt or expiry
            }
            if let Some(sent) = self.sent.get_mut(&c.ev.id())
                && !sent.forwarded
            {
                sent.forwarded = true;
                let status = PostcardStatus::Forwarded { next: peer };
                let id = c.ev.id();
                core.emit(Output::Deliver(AppEvent::PostcardStatus { id, to: sent.to, status }));
            }
        }
    }

    /// The link to `peer` turned suspected or disconnected, or went: what was handed to it
    /// and not acknowledged is taken back (its frame cancelled) and routed again.
    pub(crate) fn on_link_down<R>(&mut self, core: &mut Core<R>, peer: &AuthorKey) {
        let keys = self
            .custody
            .keys_where(|c| matches!(c.state, State::Sent { peer: p, .. } if p == *peer));
        for key in keys {
            if let Some(l) = core.links.get_mut(peer) {
                l.peer_has(key); // cancels the frame
            }
            if let Some(c) = self.custody.get_mut(&key) {
                c.state = State::Held { retry: core.now };
            }
        }
    }

    /// A link came up or healed: everything held is routed again now.
    pub(crate) fn on_link_up(&mut self, now: Time) {
        for key in self.custody.keys_where(|c| matches!(c.state, State::Held { .. })) {
            if let Some(c) = self.custody.get_mut(&key) {
                c.state = State::Held { retry: now };
            }
        }
    }

    // ----- the tick -----

    /// Expires what is past its lifetime, takes back what a next hop left unacknowledged too
    /// long, routes again what is held and due, and lets out postcards that waited too long
    /// for their predecessor.
    pub(crate) fn tick<R: Rng>(&mut self, core: &mut Core<R>, routing: &Routing) {
        let now = core.now;
        while let Some((&(at, id), ())) = self.seen_by_expiry.first_key_value() {
            if at > now {
                break;
            }
            self.seen_by_expiry.pop_first();
            self.seen.remove(&id);
        }
        let stale: Vec<(AuthorKey, u64)> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.saturating_since(w.since) >= HOLD_MAX)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(w) = self.waiting.remove(&k) {
                core.stats.postcard_order_gave_up += 1;
                self.hand_over(core, w.postcard);
                self.release_waiting(core, k.0);
            }
        }
        let expired_sent: Vec<EventId> =
            self.sent.iter().filter(|(_, s)| s.expires <= now).map(|(id, _)| *id).collect();
        for id in expired_sent {
            if let Some(s) = self.sent.remove(&id) {
                forget_own(core, s.seq);
                let status = PostcardStatus::Expired;
                core.emit(Output::Deliver(AppEvent::PostcardStatus { id, to: s.to, status }));
            }
        }
        for key in self.custody.keys_where(|_| true) {
            let Some(c) = self.custody.get_mut(&key) else { continue };
            if c.expires <= now {
                if let Some(c) = self.custody.remove(&key) {
                    core.reject("postcard_expired");
                    delete(core, &c.ev);
                }
                continue;
            }
            match c.state {
                State::Held { retry } if retry <= now => self.route(core, routing, &key),
                State::Held { .. } => {}
                State::Sent { peer, at } => {
                    // Its link went (a bye, a transport gone for good) or stopped taking
                    // frames, or the hop never acknowledged it: taken back.
                    let gone = !core.links.get(&peer).is_some_and(|l| l.connected());
                    let silent = now.saturating_since(at) >= SENT_TIMEOUT;
                    if !gone && !silent {
                        continue;
                    }
                    if silent {
                        c.avoid(peer, now);
                    }
                    c.state = State::Held { retry: now };
                    if let Some(l) = core.links.get_mut(&peer) {
                        l.peer_has(key);
                    }
                    self.route(core, routing, &key);
                }
            }
        }
    }

    // ----- restart -----

    /// An event of a routed stream persisted before a restart: a postcard delivered here
    /// (remembered until its expiry), or one in custody (routed again).
    pub(crate) fn restore(&mut self, me: AuthorKey, config: &crate::Config, ev: VerifiedEvent) {
        let Some(r) = routed(&ev, config.postcard_lifetime) else { return };
        if r.to == me {
            self.see(ev.id(), r.expires, true);
            if let Body::Postcard(_) = ev.body() {
                let last = self.delivered_seq.entry(ev.author()).or_default();
                *last = (*last).max(ev.seq());
            }
            return;
        }
        if ev.author() == me && matches!(ev.body(), Body::Postcard(_)) {
            // Kept until its receipt: perhaps handed on before the restart, perhaps not; it
            // is routed again (a copy that arrives twice is dropped at the destination), and
            // the next postcard to the same destination is ordered after it.
            let (seq, to) = (ev.seq(), r.to);
            self.sent.insert(ev.id(), Sent { to, seq, expires: r.expires, forwarded: false });
            if self.last_to.len() < MAX_LAST_TO || self.last_to.contains_key(&to) {
                let last = self.last_to.entry(to).or_default();
                *last = (*last).max(seq);
            }
        }
        let key = event_key(&ev);
        // The trail is not stored: a relay knows at least that the event left its author.
        let trail = if ev.author() == me { Vec::new() } else { vec![ev.author().prefix()] };
        let c = Custody::new(ev, r.to, r.hint, r.expires, trail, Time(0));
        if self.custody.room_for(&c.ev, c.ev.author() == me).is_ok() {
            self.custody.insert(key, c);
        }
    }
}

/// Sends the routed event of `key` (its `envelope`) to `peer`, alone in a reliable frame
/// that carries its way (trail, detours, copies); `custody`: the acknowledgement hands it
/// over (vecino's router), or only a copy went (the replicating baselines).
fn send_routed<R: Rng>(
    core: &mut Core<R>,
    peer: AuthorKey,
    key: &EventKey,
    envelope: Bytes,
    (trail, detours, copies): (Vec<u64>, Option<u32>, Option<u32>),
    custody: Option<EventKey>,
) {
    let envelopes = vec![envelope];
    let kind =
        Kind::Events(pb::Events { envelopes, sync: false, hops: None, trail, detours, copies });
    let meta = Meta { reliable: true, supersedes: None, carries: vec![*key], push: false, custody };
    core.stats.postcard_sends += 1;
    core.send_with(peer, kind, Priority::Postcard, meta);
}

/// Tells the host to forget this peer's own postcard of `seq` (its receipt came, or it
/// expired).
fn forget_own<R>(core: &mut Core<R>, seq: u64) {
    let (author, stream) = (core.me, vecino_proto::pb::Stream::Postcard);
    core.emit(Output::Persist(StoreOp::Delete { author, stream, seq }));
}

/// Tells the host to forget a routed event.
fn delete<R>(core: &mut Core<R>, ev: &VerifiedEvent) {
    let (author, stream, seq) = (ev.author(), ev.stream(), ev.seq());
    core.emit(Output::Persist(StoreOp::Delete { author, stream, seq }));
}
