//! The frame demux: a frame from a neighbour (or heard on the shared medium) is decoded, taken
//! by its link, and its kind handed to the machine that owns it (see the order in the module
//! docs of `crate::engine`).

use rand::Rng;
use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, Bytes, decode_frame};

use crate::io::{AppEvent, Output, Priority};
use crate::membership::scope::Scope;
use crate::published::{SETTLED_ERROR, coord_to_pb};
use crate::store::event_key;

use super::{Engine, Via, Way};

impl<R: Rng> Engine<R> {
    pub(super) fn on_frame(&mut self, from: AuthorKey, bytes: Bytes) {
        let core = &mut self.core;
        core.stats.frames_in += 1;
        let frame = match decode_frame(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.penalise(from, e.reason());
                return;
            }
        };
        if !core.links.contains(&from) {
            if self.overlay.held_off(core.now, &from) {
                // A link forgotten (a bye, either way) whose last frames are still arriving:
                // not a new neighbour.
                core.reject("after_bye");
                return;
            }
            if !self.overlay.make_room(core, &self.membership.fisheye) {
                core.reject("too_many_links");
                self.overlay.refuse(core, from);
                return;
            }
            self.overlay.add_link(core, &self.membership.fisheye, from, None);
        }
        let now = core.now;
        let Some(link) = core.links.get_mut(&from) else { return };
        // It decoded: the neighbour speaks the protocol.
        link.prove();
        let healed = link.heard(now);
        let restarted = link.advance_floor(frame.link_floor);
        let fresh = frame.link_seq == 0 || link.received_seq(frame.link_seq, now);
        if restarted {
            core.stats.link_restarts += 1;
        }
        if let Some(was) = healed {
            self.on_heal(from, was);
        }
        let Some(kind) = frame.kind else { return };
        // A reliable routed frame (it carries a trail) is acknowledged at once, even again:
        // its sender holds custody until then, on a timer of about one RTT.
        let ack_now =
            frame.link_seq != 0 && matches!(&kind, Kind::Events(e) if !e.trail.is_empty());
        if !fresh {
            self.core.stats.frames_again += 1;
            if ack_now {
                self.ack_now(from);
            }
            return; // a retransmission of something already processed
        }
        let core = &mut self.core;
        let fisheye = &self.membership.fisheye;
        match kind {
            Kind::Events(evs) => self.on_events(from, evs),
            Kind::Ping(p) => {
                if let Some(l) = core.links.get_mut(&from) {
                    l.probe.set_peer_fast(!p.slow);
                }
                self.answer_ping(from, p.nonce);
            }
            Kind::Pong(p) => self.on_pong(from, &p),
            Kind::Ack(a) => {
                let Some(l) = core.links.get_mut(&from) else { return };
                let acked = l.acked(now, a.cumulative, &a.runs);
                if !acked.well_formed {
                    core.reject("bad_ack");
                }
                if !acked.custody.is_empty() {
                    self.postcards.on_acked(core, from, &acked.custody, &a.refused);
                }
            }
            Kind::Digest(d) => self.sync.on_digest(core, from, &d),
            Kind::VersionVector(vv) => self.sync.on_version_vector(core, fisheye, from, &vv),
            Kind::Request(r) => self.sync.on_request(core, from, &r),
            Kind::Ihave(i) => self.plumtree.on_ihave(core, fisheye, from, &i),
            Kind::Graft(g) => self.plumtree.on_graft(core, from, &g),
            Kind::Prune(p) => self.plumtree.on_prune(core, from, &p),
            Kind::Bye(b) => self.overlay.on_bye(core, fisheye, from, b.reason),
            Kind::FraudProof(_) => {} // verified and gossiped by a later version
        }
        if ack_now {
            self.ack_now(from);
        }
    }

    /// Counts what `from` sent against it (see [`Core::misbehaved`]); past the limit, its
    /// link goes and it is held off.
    fn penalise(&mut self, from: AuthorKey, reason: vecino_proto::Reason) {
        if self.core.misbehaved(from, reason) {
            self.overlay.drop_misbehaving(&mut self.core, &self.membership.fisheye, from);
        }
    }

    /// Events pushed or pulled by `from`: verified as a batch, each taken in.
    fn on_events(&mut self, from: AuthorKey, evs: pb::Events) {
        for r in self.core.verify(evs.envelopes) {
            match r {
                Ok(ev) => {
                    // It holds this event: a copy still waiting to go to it is not sent.
                    if let Some(l) = self.core.links.get_mut(&from) {
                        l.peer_has(event_key(&ev));
                    }
                    let via = if evs.sync { Via::Pulled } else { Via::Pushed };
                    let way = Way::of(&evs.trail, evs.detours, evs.copies);
                    self.accept(Some(from), &ev, via, evs.hops, way);
                }
                Err(e) => self.penalise(from, e.reason()),
            }
        }
    }

    /// A ping: answered with a pong that carries this peer's coordinate and fisheye scope
    /// every fourth time, and whenever the scope (or whether the coordinate settled) changed
    /// since the neighbour was last told (it decides from them what to pass on here).
    fn answer_ping(&mut self, from: AuthorKey, nonce: u64) {
        let core = &mut self.core;
        let scope = Scope::to_pb(self.membership.fisheye.scope());
        let settled = core.coords.coordinate().error <= SETTLED_ERROR;
        let told = (Scope::bucket(scope), settled && scope.is_some());
        let Some(link) = core.links.get_mut(&from) else { return };
        let carry = link.probe.pong_carries(told);
        let slow = !link.fast();
        let coordinate = carry.then(|| coord_to_pb(core.coords.coordinate()));
        let fisheye_radius_us = scope.filter(|_| carry);
        let pong = pb::Pong { nonce, coordinate, fisheye_radius_us, slow };
        core.send(from, Kind::Pong(pong), Priority::Control, false);
    }

    /// A pong: an RTT sample for the probe and the Vivaldi client, and for the application.
    fn on_pong(&mut self, from: AuthorKey, pong: &pb::Pong) {
        let core = &mut self.core;
        let now = core.now;
        let Some(link) = core.links.get_mut(&from) else { return };
        link.probe.set_peer_fast(!pong.slow);
        let Some(rtt) = link.probe.on_pong(now, pong) else { return };
        if let Some(c) = link.probe.peer_coordinate() {
            let _ = core.coords.update(&from, &c, rtt, &mut core.rng);
        }
        core.emit(Output::Deliver(AppEvent::Rtt { peer: from, rtt }));
    }

    /// A frame `from` broadcast on the shared medium: its events are taken as pushed by it,
    /// but passed on only off the medium (`crate::medium`).
    pub(super) fn on_broadcast(&mut self, from: AuthorKey, bytes: Bytes) {
        let core = &mut self.core;
        core.stats.frames_in += 1;
        if !core.config.shared_medium || from == core.me {
            core.reject("broadcast_without_medium");
            return;
        }
        let frame = match decode_frame(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.penalise(from, e.reason());
                return;
            }
        };
        let Some(Kind::Events(evs)) = frame.kind else {
            core.reject("broadcast_not_events");
            return;
        };
        self.medium.note_heard();
        for r in self.core.verify(evs.envelopes) {
            match r {
                Ok(ev) => {
                    let key = event_key(&ev);
                    if let Some(l) = self.core.links.get_mut(&from) {
                        l.peer_has(key);
                    }
                    let own_queued = self.core.links.broadcasts.cancel(&key);
                    let via = Via::Broadcast { own_queued };
                    let way = Way::of(&evs.trail, evs.detours, evs.copies);
                    self.accept(Some(from), &ev, via, evs.hops, way);
                }
                Err(e) => self.penalise(from, e.reason()),
            }
        }
    }
}
