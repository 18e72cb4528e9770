//! The engine: one peer's whole protocol state, driven by [`Protocol::handle`], as a set of
//! machines joined by this coordinator.
//!
//! Each machine is a type with private state in its own module, and takes the shared
//! [`core::Core`] (time, configuration, the one RNG, the store, the Vivaldi client, the send
//! path, the outputs, the counters) and the siblings it reads as parameters:
//!
//! | machine | module | owns |
//! |---|---|---|
//! | links (send path, RCM, acknowledged delivery, pacing, probe) | `crate::links` | the links and their slots |
//! | overlay | `crate::overlay` | dials, redial backoff, byes, proximity swaps |
//! | Plumtree | `crate::broadcast` | missing events and grafts, hop counts (the tree edges are a link slot) |
//! | shared medium | `crate::medium` | where events entered the medium |
//! | membership, fisheye | `crate::membership` | the newspaper gate, the fisheye scope |
//! | anti-entropy | `crate::sync` | nothing (the digests are a link slot) |
//! | opinions and clout | `crate::opinions` | own observations, observers' standing, statuses reported |
//! | barrios | `crate::barrios` | this peer's head, the members' slots (the centroid CRDT), the slot gate |
//!
//! The engine keeps only the routing between them, in the orders written here. They are part
//! of the contract: a change to one is a deliberate, benchmarked change (the simulator's
//! reports are bit-identical across refactors that keep them).
//!
//! **A frame** ([`frames`]) is bounded and pre-scanned (`vecino_proto::decode_frame`; every
//! rejection counted by reason); a frame from a peer without a link takes a link (the overlay
//! refuses it past `max_links`); the link hears it (RCM: a suspected link heals, which
//! regrafts from it and, from disconnected, opens anti-entropy), then its kind goes to one
//! machine: events to [`Engine::accept`], ping and pong to the probe, ack to the link,
//! digest, version vector and request to anti-entropy, IHAVE, GRAFT and PRUNE to Plumtree,
//! bye to the overlay.
//!
//! **`accept`**, for every event (own, pushed, pulled or heard broadcast):
//! 1. the stream policy (`crate::streams`): a routed stream (postcards) goes to its machine;
//!    a barrio slot from another peer is checked by `barrios.admits` (refused, counted);
//! 2. `membership.fisheye.admits`: refused → Plumtree forgets its graft and mutes the
//!    author's membership slot on the link that pushed it; stop;
//! 3. the HLC observes it; the store inserts it;
//! 4. new: Plumtree `on_new` (hop count, the graft it ends, the tree optimisation, which may
//!    send a GRAFT and a PRUNE) → the medium notes its entry → `Persist` (put, and the delete
//!    of what it superseded) → membership `on_event` (a member joining a fisheye peer unmutes
//!    its slot: GRAFTs) and `Deliver(Member)` → posts delivered in order, or the gap before
//!    it noted as missing (log streams) → Plumtree `forward` (the medium's broadcast, then
//!    pushes and announcements);
//! 5. duplicate: the medium's prune (heard broadcast again), the Plumtree prune of a
//!    settled link that pushed it;
//!    A barrio slot is indexed by `barrios.on_event`.
//!    Last, for a latest-value event, opinions note that statuses may have moved, and an
//!    opinion saying a neighbour of this peer is down has that link checked (pinged, and
//!    suspected unless it answers within three RTTs);
//! 6. equivocation: a fraud proof to the application.
//!
//! **The tick**, every `Config::tick`: for each link in key order, `tick_link` (below); then
//! Plumtree's overdue grafts → the fisheye scope update and its pulls (anti-entropy vectors)
//! → the pump; then once a second the overlay's maintenance, the barrios' look (every 5 s:
//! this peer's barrio, its health, the slot gate), the newspaper gate (carrying the barrio),
//! the link state and the opinion gate (each may publish), and the opinions' review of reputations
//! and status report (`AppEvent::Status`).
//! `tick_link` takes every decision about the link *before* any send (a send moves the
//! link's `last_sent`): RCM status (a disconnected link whose transport is gone is forgotten
//! here), retransmissions, whether a ping is due, the acknowledgement, the announcements
//! waiting, whether a digest is due; then it emits the status change and sends the ack, the
//! announcements, the digest (which draws its jitter) and the ping (which draws its nonce).
//!
//! **Link lifecycle.** Up (new link): `Deliver(Link connected)` → anti-entropy opens → ping.
//! Up (a known link's new transport): heal as below, and anti-entropy opens unless it came
//! back from disconnected (healing opens it then). Heal: `Deliver(Link connected)` →
//! Plumtree regrafts from it → from disconnected, anti-entropy opens. Down: a link said bye
//! on is dropped (its trees reprobed); otherwise connected turns suspected
//! (`Deliver(Link)`) and the overlay backs off its redial.
//!
//! **Publishing.** A machine that wants to publish (the newspaper gate) returns a body; the
//! engine signs it and runs it through `accept` at once, as an event of its own.

pub(crate) mod core;
mod frames;
pub(crate) mod inspect;

use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_proto::pb::{self, event::Body, frame::Kind};
use vecino_proto::{AuthorKey, FraudProof, Identity, VerifiedEvent};

use crate::barrios::Barrios;
use crate::broadcast::Plumtree;
use crate::config::Config;
use crate::io::{
    AppEvent, Command, DeliveredPost, Input, LinkInfo, LinkStatus, Output, Priority, Protocol,
    StoreOp, Timer, TimerKind,
};
use crate::medium::Medium;
use crate::membership::Membership;
use crate::opinions::Opinions;
use crate::overlay::{Overlay, STRANGER_GRACE};
use crate::postcards::{Postcards, Way};
use crate::published::{SETTLED_ERROR, published_coordinate};
use crate::routing::Routing;
use crate::store::{Insert, StreamKey};
use crate::streams::{self, Keep, Travel};
use crate::sync::AntiEntropy;
use crate::time::Time;

use self::core::Core;

pub use self::core::EngineStats;

/// Acknowledge at once when this many reliable frames wait for an acknowledgement.
const ACK_BATCH: u32 = 8;
/// Seqs of one gap noted as missing at once (the rest follow as the gap closes).
const MAX_GAP_NOTED: usize = 256;
/// A link stays fast for this many slow heartbeats after a postcard or post frame last left
/// on it (`Config::fast_links`).
const CARRYING_FAST: u32 = 2;
/// Every link is fast for this many slow heartbeats after one was suspected.
const ALERT_BEATS: u32 = 2;
/// Housekeeping period (overlay maintenance, newspapers, link state).
const MAINTENANCE: Duration = Duration::from_secs(1);
/// How often posts past the retention are looked for.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

/// One peer's protocol engine. See the module docs and [`crate::io`] for how to drive it.
#[derive(Debug)]
pub struct Engine<R> {
    core: Core<R>,
    overlay: Overlay,
    plumtree: Plumtree,
    medium: Medium,
    membership: Membership,
    sync: AntiEntropy,
    routing: Routing,
    postcards: Postcards,
    opinions: Opinions,
    barrios: Barrios,
    /// When the overlay and the newspaper are next looked after.
    next_maintenance: Time,
    /// When posts past the retention are next looked for.
    next_expiry: Time,
    /// Every link is fast until then: one of them was just suspected, and what cut it (a
    /// partition, a fading radio) may be cutting the others (`Config::fast_links`).
    alert_until: Time,
}

/// How an event reached this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// This peer's own.
    Own,
    /// Pushed by a neighbour (an eager tree edge): a duplicate prunes the link.
    Pushed,
    /// Pulled: anti-entropy, or a graft's answer.
    Pulled,
    /// Heard broadcast on the shared medium; `own_queued`: this peer's own broadcast of it
    /// was still waiting, and is dropped.
    Broadcast {
        /// This peer's own broadcast of it was still waiting.
        own_queued: bool,
    },
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
        let mut core = Core::new(identity, config, rng, now);
        let mut postcards = Postcards::new(&core.config);
        for ev in stored {
            if streams::of(ev.stream()).keep == Keep::Custody {
                postcards.restore(core.me, &core.config, ev);
            } else {
                core.restore(ev);
            }
        }
        if let Some(c) = published_coordinate(&core.store, core.me) {
            let _ = core.coords.set_coordinate(c);
        }
        let membership = Membership::new(&core.config);
        let barrios = Barrios::new(&core);
        let mut engine = Self {
            core,
            overlay: Overlay::default(),
            plumtree: Plumtree::default(),
            medium: Medium::default(),
            membership,
            sync: AntiEntropy,
            routing: Routing::default(),
            postcards,
            opinions: Opinions::default(),
            barrios,
            next_maintenance: now,
            next_expiry: now + EXPIRY_EVERY,
            alert_until: now,
        };
        // Our own presence and status are valid events: a failure is counted, never fatal.
        let _ = engine.publish(Membership::hey_there(&engine.core));
        let barrio = engine.barrios.barrio();
        let paper = engine.membership.newspaper(&mut engine.core, barrio);
        let _ = engine.publish(paper);
        engine.core.schedule_tick();
        engine
    }

    // ----- publishing and accepting -----

    /// Signs `body` as this peer's next event of its stream and takes it in as its own.
    fn publish(&mut self, body: Body) -> Result<VerifiedEvent, vecino_proto::VerifyError> {
        let ev = self.core.sign(body)?;
        self.accept(None, &ev, Via::Own, None, Way::default());
        Ok(ev)
    }

    /// Takes a verified event (own, or from `from`, whose hop count for it was `hops`, and
    /// for a routed event the trail and detours its frame carried) into the store, delivers
    /// and forwards it: the router whose order the module docs give.
    fn accept(
        &mut self,
        from: Option<AuthorKey>,
        ev: &VerifiedEvent,
        via: Via,
        hops: Option<u32>,
        way: Way<'_>,
    ) {
        let core = &mut self.core;
        let policy = streams::of(ev.stream());
        if policy.travel == Travel::Routed {
            // Routed (postcards, receipts): custody and routing, never the trees.
            core.hlc.observe(ev.hlc(), core.now.as_millis());
            self.postcards.on_event(core, &self.routing, from, ev, way);
            return;
        }
        if from.is_some()
            && let Err(why) = self.barrios.admits(core, ev)
        {
            core.reject(why);
            self.plumtree.forget(ev);
            return;
        }
        let pushed = via == Via::Pushed;
        let fisheye = &mut self.membership.fisheye;
        if !fisheye.admits(core, from, ev) {
            // Outside this peer's fisheye: neither kept nor passed on, and the link that
            // pushed it is muted for the author's presence and status. (Pruning the tree
            // itself, as for a duplicate, cut the tree under the posts: on planet 662 k
            // grafts and 3.9 copies per delivery in 180 s with one shared tree.)
            self.plumtree.forget(ev);
            if pushed && let Some(from) = from {
                Plumtree::mute_membership(core, fisheye, from, &ev.author());
            }
            return;
        }
        let key = (ev.author(), ev.stream());
        core.hlc.observe(ev.hlc(), core.now.as_millis());
        // This peer's hop count for the event: 0 for its own, one more than the sender's.
        let hops = match from {
            None => Some(0),
            Some(_) => hops.map(|h| h.saturating_add(1)),
        };
        match core.store.insert(ev.clone()) {
            Insert::New { superseded, delivered } => {
                core.stats.events_new += 1;
                self.plumtree.on_new(core, ev, from, pushed, hops);
                if pushed && let Some(from) = from {
                    self.medium.note_entry(core, ev, from);
                }
                core.emit(Output::Persist(StoreOp::Put(ev.clone())));
                if let Some(seq) = superseded {
                    core.emit(Output::Persist(StoreOp::Delete {
                        author: key.0,
                        stream: key.1,
                        seq,
                    }));
                }
                if let Some(m) = self.membership.on_event(core, ev, superseded.is_none()) {
                    if m.unmute {
                        Plumtree::unmute_membership(core, &ev.author());
                    }
                    let member = AppEvent::Member { peer: ev.author(), change: m.change };
                    core.emit(Output::Deliver(member));
                }
                let fisheye = &self.membership.fisheye;
                if let Some(range) = delivered {
                    deliver_posts(core, key, range);
                } else if policy.keep == Keep::Log
                    && let Some(from) = from
                {
                    // A gap: what precedes this event is probably on its way by another path;
                    // if it is not by the graft timeout, it is grafted from the sender.
                    let first_missing = core.store.head(&key) + 1;
                    for seq in (first_missing..ev.seq()).take(MAX_GAP_NOTED) {
                        self.plumtree.note_missing(core, fisheye, key, seq, from, None);
                    }
                }
                let broadcast = matches!(via, Via::Broadcast { .. });
                self.plumtree.forward(core, fisheye, from, ev, hops, broadcast);
                if policy.keep == Keep::Log {
                    for (key, range) in core.store.enforce_budget(key.0, true) {
                        deliver_posts(core, key, range);
                    }
                    core.forget_evicted();
                }
                if ev.stream() == vecino_proto::pb::Stream::BarrioSlot {
                    self.barrios.on_event(ev);
                }
                if policy.keep == Keep::Latest {
                    // Presence, link state and opinions move statuses; an opinion saying a
                    // neighbour is down has it checked at once.
                    self.opinions.touch();
                    if ev.stream() == vecino_proto::pb::Stream::Opinion {
                        for peer in self.opinions.on_opinion(&mut self.core, ev) {
                            self.core.stats.links_checked += 1;
                            self.ping(peer);
                        }
                    }
                }
            }
            Insert::Duplicate => {
                core.stats.events_duplicate += 1;
                if let (Via::Broadcast { own_queued }, Some(from)) = (via, from)
                    && let Some((entry, tree)) = self.medium.heard_again(core, from, ev, own_queued)
                {
                    self.plumtree.prune(core, entry, tree);
                }
                if pushed && policy.keep == Keep::Latest {
                    core.stats.events_duplicate_pushed_members += 1;
                }
                if pushed && let Some(from) = from {
                    self.plumtree.on_duplicate(core, ev, from);
                }
            }
            Insert::Stale => {}
            Insert::Equivocation(other) => {
                core.stats.equivocations += 1;
                if let Some(proof) = FraudProof::from_pair(ev, &other) {
                    core.emit(Output::Deliver(AppEvent::Equivocation(Box::new(proof))));
                }
            }
        }
    }

    // ----- commands -----

    /// Carries out command `id` and answers it: [`AppEvent::Accepted`] with the event it
    /// made (after the event's own outputs), or [`AppEvent::Refused`] with why.
    fn on_command(&mut self, id: u64, cmd: Command) {
        let made = match cmd {
            Command::Post { topic, body } => {
                let body = Body::Post(pb::Post { topic, body, content_type: String::new() });
                self.publish(body)
            }
            Command::Leave { reason } => {
                self.overlay.leave();
                self.publish(Body::Chau(pb::Chau { reason }))
            }
            Command::Postcard { to, body, lifetime, coordinate } => {
                let core = &mut self.core;
                let sent =
                    self.postcards.send(core, &self.routing, to, &body, lifetime, coordinate);
                let answer = match sent {
                    Ok(ev) => AppEvent::Accepted { id, event: ev.id() },
                    Err(e) => {
                        core.reject("postcard_refused");
                        AppEvent::Refused { id, reason: e.to_string() }
                    }
                };
                core.emit(Output::Deliver(answer));
                return;
            }
        };
        let answer = match made {
            Ok(ev) => AppEvent::Accepted { id, event: ev.id() },
            Err(e) => AppEvent::Refused { id, reason: e.to_string() },
        };
        self.core.emit(Output::Deliver(answer));
    }

    // ----- the link lifecycle -----

    fn on_link_up(&mut self, peer: AuthorKey, info: &LinkInfo) {
        // A link this peer dialled is to a member it chose: a neighbour from the start.
        let dialled = self.overlay.is_dialing(&peer);
        self.overlay.link_up(&peer);
        let core = &mut self.core;
        if peer == core.me {
            return;
        }
        let now = core.now;
        let on_medium = info.shared_medium && core.config.shared_medium;
        if let Some(link) = core.links.get_mut(&peer) {
            // A new transport session: the neighbour may have restarted and numbers its frames
            // from 1 again.
            link.transport_opened(info.rate_bps, now);
            link.set_on_medium(on_medium);
            match link.heard(now) {
                Some(LinkStatus::Disconnected) => self.on_heal(peer, LinkStatus::Disconnected),
                Some(was) => {
                    self.on_heal(peer, was);
                    self.sync.open(&mut self.core, peer); // it may have restarted with less
                }
                None => self.sync.open(core, peer),
            }
            return;
        }
        if self.overlay.stranger(now, &peer) && !dialled {
            // A stranger let go lately: not let in again yet.
            core.reject("stranger_again");
            core.emit(Output::Disconnect { peer });
            return;
        }
        if !self.overlay.make_room(core, &self.membership.fisheye) {
            core.reject("too_many_links");
            self.overlay.refuse(core, peer);
            return;
        }
        self.overlay.add_link(core, &self.membership.fisheye, peer, info.rate_bps);
        if let Some(l) = core.links.get_mut(&peer) {
            l.set_on_medium(on_medium);
            if dialled {
                l.prove();
            }
        }
        core.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
        // A new neighbour: exchange what each holds, and learn its RTT.
        self.sync.open(core, peer);
        self.ping(peer);
        self.postcards.on_link_up(self.core.now);
    }

    fn on_link_down(&mut self, peer: AuthorKey) {
        let core = &mut self.core;
        if core.links.unmark_leaving(&peer) {
            // The neighbour closed the link this peer said bye on.
            self.overlay.drop_link(core, &self.membership.fisheye, &peer);
            return;
        }
        let now = core.now;
        let Some(link) = core.links.get_mut(&peer) else { return };
        if !link.proven() {
            // A stranger's link (never dialled by this peer, nothing from it decoded): not
            // weathered nor redialled, so a key that connects and hangs up cannot point this
            // peer's dials at the addresses it announced.
            core.reject("stranger_gone");
            self.overlay.drop_link(core, &self.membership.fisheye, &peer);
            return;
        }
        link.transport_closed();
        if link.suspect(now) {
            self.alert_until = now + core.config.slow_heartbeat * ALERT_BEATS;
            core.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Suspected }));
        }
        // Redial with backoff: a transport that closes again and again (a refusing peer, a
        // flapping path) must not turn into a dial loop.
        self.overlay.transport_closed(now, peer);
        self.postcards.on_link_down(core, &peer);
    }

    /// A link came back to connected from `was`.
    fn on_heal(&mut self, peer: AuthorKey, was: LinkStatus) {
        let core = &mut self.core;
        core.emit(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
        self.plumtree.regraft_from(core, peer);
        if was == LinkStatus::Disconnected {
            // Buffers were released: catch up by version vectors.
            self.sync.open(core, peer);
        }
        self.postcards.on_link_up(core.now);
    }

    /// Pings `peer` (a heartbeat and an RTT probe).
    fn ping(&mut self, peer: AuthorKey) {
        let core = &mut self.core;
        let nonce: u64 = core.rng.random();
        let now = core.now;
        let mut slow = false;
        if let Some(l) = core.links.get_mut(&peer) {
            l.probe.pinged(nonce, now);
            slow = !l.fast();
        }
        core.send(peer, Kind::Ping(pb::Ping { nonce, slow }), Priority::Control, false);
    }

    // ----- the tick -----

    fn on_tick(&mut self) {
        self.core.schedule_tick();
        let now = self.core.now;
        let fast = self.fast_links();
        for peer in self.core.links.peers() {
            self.tick_link(peer, now, fast.as_deref().is_none_or(|f| f.contains(&peer)));
        }
        let core = &mut self.core;
        self.plumtree.graft_overdue(core);
        let pulls = self.membership.fisheye.update_scope(core, self.overlay.dialing());
        for peer in pulls {
            // Members only: posts are not what it missed.
            self.sync.send_heads(core, peer, false, true);
        }
        core.pump();
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.overlay.maintain(core, &self.membership);
            if !self.overlay.leaving()
                && !core.config.barrio_radius.is_zero()
                && let Some(slot) =
                    self.barrios.look(core, self.membership.newspaper_spacing(&core.config))
            {
                let _ = self.publish(slot);
            }
            let core = &mut self.core;
            let barrio = self.barrios.barrio();
            if !self.overlay.leaving()
                && let Some(paper) = self.membership.newspaper_due(core, barrio)
            {
                let _ = self.publish(paper);
            }
            if !self.overlay.leaving()
                && let Some(links) = self.routing.link_state_due(&self.core)
            {
                let _ = self.publish(links);
            }
            if !self.overlay.leaving()
                && self.core.config.opinions
                && let Some((opinion, why)) = self
                    .opinions
                    .opinion_due(&self.core, self.membership.newspaper_spacing(&self.core.config))
            {
                let stats = &mut self.core.stats;
                stats.opinions_published += 1;
                if let Body::Opinion(o) = &opinion {
                    stats.opinion_entries += o.entries.len() as u64;
                    stats.opinion_entries_down +=
                        o.entries.iter().filter(|e| !e.online).count() as u64;
                }
                match why {
                    crate::opinions::Why::First => {}
                    crate::opinions::Why::Flip => stats.opinions_for_flips += 1,
                    crate::opinions::Why::Set => stats.opinions_for_set += 1,
                    crate::opinions::Why::Age => stats.opinions_for_age += 1,
                }
                let _ = self.publish(opinion);
            }
            let report = self.core.config.status_events;
            for (peer, status) in self.opinions.maintain(&self.core, report) {
                self.core.emit(Output::Deliver(AppEvent::Status { peer, status }));
            }
        }
        self.postcards.tick(&mut self.core, &self.routing);
        if now >= self.next_expiry {
            self.next_expiry = now + EXPIRY_EVERY;
            let core = &mut self.core;
            core.store.expire(core.now.as_millis());
            core.forget_evicted();
        }
    }

    /// Acknowledges what `peer` sent, now (when due on the tick, and at once for a routed
    /// frame: its sender keeps custody and times its retransmission by the RTT until this
    /// arrives).
    pub(super) fn ack_now(&mut self, peer: AuthorKey) {
        let core = &mut self.core;
        let Some(link) = core.links.get_mut(&peer) else { return };
        let (cumulative, runs) = link.ack();
        let refused = self.postcards.refusals_for(core.now, &peer);
        let ack = pb::Ack { cumulative, runs, refused };
        core.send(peer, Kind::Ack(ack), Priority::Control, false);
    }

    /// A routed frame to `peer` may be overdue: retransmit those that are, and wake up again
    /// for the next one still in flight (the timeout is computed anew, from an RTT that may
    /// have moved since the timer was set: a frame not due yet must not be left to the tick's
    /// far longer timeout).
    fn on_routed_timer(&mut self, peer: AuthorKey) {
        let core = &mut self.core;
        let now = core.now;
        let uplink_bps = core.links.uplink_bps();
        let Some(link) = core.links.get_mut(&peer) else { return };
        let timeout = crate::links::routed_timeout(link, &core.config, uplink_bps);
        let n = link.retransmit_routed_due(now, &timeout);
        let next = link.routed_deadline(&timeout).filter(|at| *at > now && link.connected());
        if let Some(at) = next {
            core.emit(Output::Schedule { at, timer: Timer(TimerKind::Routed(peer)) });
        }
        if n > 0 {
            core.stats.retransmits += n as u64;
            core.stats.routed_retransmits += n as u64;
            core.pump();
        }
    }

    /// The links held to fast failure detection (`Config::fast_links`), chosen so that few
    /// links are fast in all: the farthest connected link by RTT (the kind a partition cuts
    /// and postcards to far peers take), then the links the neighbours already hold fast
    /// (their pings or pongs say so; nearest first), then the nearest; a link not measured
    /// yet is fast as well, so it is probed quickly. `None`: all of them, while this peer's
    /// coordinate has not settled (its Vivaldi client wants the samples), for a while after
    /// a link was suspected, or when the configuration makes every link fast.
    fn fast_links(&self) -> Option<Vec<AuthorKey>> {
        let core = &self.core;
        let k = core.config.fast_links;
        let all = core.config.slow_heartbeat <= core.config.heartbeat
            || core.now < self.alert_until
            || core.coords.coordinate().error > SETTLED_ERROR
            || k >= core.links.len();
        if all {
            return None;
        }
        // Equal RTTs are ordered by a mix of both keys, not by key alone (which would make
        // the same few peers everyone's farthest and nearest).
        let mine = u64::from_le_bytes(core.me.as_bytes()[..8].try_into().unwrap_or_default());
        let mut by_rtt: Vec<(Duration, u64, AuthorKey, bool)> = Vec::new();
        let mut fast = Vec::with_capacity(k + 1);
        for (p, l) in core.links.iter().filter(|(_, l)| l.connected() && l.proven()) {
            let theirs = u64::from_le_bytes(p.as_bytes()[..8].try_into().unwrap_or_default());
            let tie = (mine ^ theirs).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            match l.rtt() {
                Some(rtt) => by_rtt.push((rtt, tie, *p, l.probe.peer_fast())),
                None => fast.push(*p),
            }
        }
        by_rtt.sort_unstable();
        let farthest = by_rtt.iter().rev().take(1);
        let held = by_rtt.iter().filter(|(.., peer_fast)| *peer_fast);
        let mut taken = 0;
        for (_, _, p, _) in farthest.chain(held).chain(by_rtt.iter()) {
            if taken == k {
                break;
            }
            if !fast.contains(p) {
                fast.push(*p);
                taken += 1;
            }
        }
        Some(fast)
    }

    fn tick_link(&mut self, peer: AuthorKey, now: Time, fast: bool) {
        let core = &mut self.core;
        let heartbeat = core.heartbeat();
        let cfg = &core.config;
        let me_first = core.me < peer;
        let timeout = cfg.suspect_timeout;
        let ack_delay = cfg.ack_delay;
        // How much longer the silence before suspicion is than the heartbeat, and the slow
        // class's heartbeat than the fast one's.
        let stretch = cfg.suspect_after.div_duration_f64(cfg.heartbeat).max(1.0);
        let slow = cfg.slow_heartbeat.div_duration_f64(cfg.heartbeat).max(1.0);
        let suspect_after = cfg.suspect_after;
        let Some(link) = core.links.get_mut(&peer) else { return };
        if !link.proven() && now.saturating_since(link.opened()) >= STRANGER_GRACE {
            core.reject("stranger_grace");
            self.overlay.drop_stranger(core, &self.membership.fisheye, peer);
            return;
        }
        // Liveness class: a link that carries traffic needing delivery is fast (its
        // acknowledgements are its heartbeat), for two slow beats after it last did.
        let slow_beat = heartbeat.mul_f64(slow);
        link.set_fast(fast || link.carrying(now, slow_beat * CARRYING_FAST), now);
        let beat = if link.fast() { heartbeat } else { slow_beat };
        // A longer heartbeat (stretched on a paced uplink, or slow) stretches the silence
        // that makes a link suspected with it.
        let suspect_floor = suspect_after.max(beat.mul_f64(stretch));
        let change = link.rcm_tick(now, suspect_floor, timeout);
        if change == Some(LinkStatus::Suspected) {
            self.alert_until = now + core.config.slow_heartbeat * ALERT_BEATS;
        }
        if link.status() == LinkStatus::Disconnected && !link.transport_up() {
            // Nothing left to weather: forget the link; the overlay may dial the peer again.
            core.links.remove(&peer);
            core.coords.forget(&peer);
            if let Some(status) = change {
                core.emit(Output::Deliver(AppEvent::Link { peer, status }));
            }
            self.postcards.on_link_down(core, &peer);
            return;
        }
        // Retransmissions. The neighbour delays its acknowledgements by up to ack_delay (and
        // its tick).
        let rto = crate::links::rto(link, cfg);
        core.stats.retransmits += link.retransmit_due(now, rto) as u64;
        // Heartbeat (also the RTT probe). Any frame heard counts. On a connected link the end
        // with the lower key pings once nothing was heard for a beat, again every half beat
        // while the silence lasts; the other end waits half a beat and an RTT longer, so
        // that the first one's pings keep it from pinging too. Each end still probes every
        // four beats (RTT samples for its Vivaldi client on a busy link). A suspected or
        // disconnected link is pinged whenever nothing was sent to it for half a heartbeat,
        // so that its return is noticed quickly.
        let since_ping = now.saturating_since(link.probe.last_ping());
        let due_ping = match link.status() {
            LinkStatus::Connected => {
                let quiet =
                    if me_first { beat } else { beat + beat / 2 + link.rtt().unwrap_or_default() };
                (now.saturating_since(link.last_heard()) >= quiet && since_ping >= beat / 2)
                    || since_ping >= beat * 4
            }
            _ => {
                now.saturating_since(link.last_sent()) >= heartbeat / 2
                    || since_ping >= heartbeat * 4
            }
        };
        let ack_due = link.ack_due(now, ACK_BATCH, ack_delay);
        let ihave = link.tree.take_announcements();
        let digest_due = link.sync.digest_due(now) && link.connected();
        if let Some(status) = change {
            core.emit(Output::Deliver(AppEvent::Link { peer, status }));
            self.postcards.on_link_down(core, &peer);
        }
        if ack_due {
            self.ack_now(peer);
        }
        let core = &mut self.core;
        Plumtree::flush_announcements(core, peer, ihave);
        if digest_due {
            self.sync.digest_due(core, &self.membership.fisheye, peer);
        }
        if due_ping {
            self.ping(peer);
        }
    }
}

/// Delivers the posts of `key` in `range` (which just became contiguous) to the application.
fn deliver_posts<R>(core: &mut Core<R>, key: StreamKey, range: std::ops::RangeInclusive<u64>) {
    // The posts held in the range (a gap given up leaves seqs that never came).
    let me = core.me;
    let posts: Vec<DeliveredPost> = core
        .store
        .held(&key, range)
        .filter_map(|ev| match ev.body() {
            Body::Post(p) => Some(DeliveredPost {
                id: ev.id(),
                author: ev.author(),
                seq: ev.seq(),
                hlc: ev.hlc(),
                topic: p.topic.clone(),
                body: p.body.clone(),
                own: ev.author() == me,
            }),
            _ => None,
        })
        .collect();
    for post in posts {
        core.stats.posts_delivered += 1;
        core.emit(Output::Deliver(AppEvent::Post(post)));
    }
}

impl<R: Rng> Protocol for Engine<R> {
    fn peer(&self) -> AuthorKey {
        self.core.me
    }

    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        self.core.now = self.core.now.max(now);
        self.core.shrink_outputs();
        match input {
            Input::Start => {} // the outputs queued by `new` go out below
            Input::Received { from, frame } => self.on_frame(from, frame),
            Input::Broadcast { from, frame } => self.on_broadcast(from, frame),
            Input::LinkUp { peer, info } => self.on_link_up(peer, &info),
            Input::LinkDown { peer } => self.on_link_down(peer),
            Input::Timer(Timer(TimerKind::Tick)) => self.on_tick(),
            Input::Timer(Timer(TimerKind::Pace)) => {
                if self.core.links.pace_due(self.core.now) {
                    self.core.pump();
                }
            }
            Input::Timer(Timer(TimerKind::Routed(peer))) => self.on_routed_timer(peer),
            // Keyed timers are the baselines' (the simulator's); the engine sets none.
            Input::Timer(Timer(TimerKind::Peer(..))) => {}
            Input::Sent { bytes } => {
                self.core.links.host_sent(bytes, self.core.now);
                self.core.pump();
            }
            Input::Command { id, cmd } => self.on_command(id, cmd),
        }
        self.core.outputs()
    }
}
