//! The send path: the neighbour links, the node-wide uplink bucket, the host's queue and the
//! shared medium's broadcasts.
//!
//! Every machine sends through here (by `Core::send`): a frame is queued on its link in its
//! class, then [`Links::pump`] hands the host what the pacing allows, most urgent class first,
//! links served round-robin within a class, each link within its own bucket and all of them
//! within the node's uplink bucket (links share the host's uplink or radio) or, with
//! `Config::host_queue_bytes`, within the host's queue. Frames left waiting schedule a pacing
//! wake-up for when the first of them may leave.
//!
//! Links said bye on ([`Links::leaving`]) stay here until the neighbour closes them; nothing
//! more is sent on them.

pub(crate) mod broadcasts;
pub(crate) mod link;
pub(crate) mod pacer;
pub(crate) mod probe;

use std::collections::BTreeMap;
use std::time::Duration;

use vecino_proto::pb::{self, frame::Kind};
use vecino_proto::{AuthorKey, Bytes};

use crate::config::Config;
use crate::io::{Output, Priority, Timer, TimerKind};
use crate::time::Time;

use self::broadcasts::Broadcasts;
use self::link::{Link, Meta, RoutedTimeout};
use self::pacer::Pacer;

/// With host back-pressure, how long the host may go without reporting a sent frame while
/// some are outstanding before the engine stops waiting for it.
const HOST_SILENT: Duration = Duration::from_secs(30);
/// Shortest wait of a pacing wake-up (bounds the timers a backlog costs).
const PACE_MIN: Duration = Duration::from_millis(2);
/// Bounds of the event bytes one frame carries (see [`Links::frame_event_bytes`]).
const MIN_FRAME_EVENT_BYTES: usize = 1_024;
const MAX_FRAME_EVENT_BYTES: usize = 16_384;

/// The neighbour links and what they share.
#[derive(Debug)]
pub(crate) struct Links {
    /// Bounded by `Config::max_links` (a peer past it is refused).
    map: BTreeMap<AuthorKey, Link>,
    /// Links this peer said bye on, and when; nothing more is sent on them (bounded by the
    /// links said bye on, each closed within `BYE_WAIT`).
    leaving: BTreeMap<AuthorKey, Time>,
    /// Node-wide egress pacing.
    uplink: Pacer,
    /// When the pacing wake-up is due, if one is scheduled.
    pace_at: Option<Time>,
    /// Bytes handed to the host and not reported sent yet (with `host_queue_bytes`), and
    /// when the host last reported.
    host_unsent: usize,
    host_heard: Time,
    round_robin: usize,
    /// Broadcasts waiting for the shared medium.
    pub(crate) broadcasts: Broadcasts,
}

/// Counts `bytes` handed to the host at `now` (`unsent`, and since when it was last heard).
fn handed(unsent: &mut usize, heard: &mut Time, now: Time, bytes: usize) {
    if *unsent == 0 {
        *heard = now;
    }
    *unsent += bytes;
}

impl Links {
    pub(crate) fn new(uplink_bps: Option<u64>, now: Time) -> Self {
        Self {
            map: BTreeMap::new(),
            leaving: BTreeMap::new(),
            uplink: Pacer::new(uplink_bps, now),
            pace_at: None,
            host_unsent: 0,
            host_heard: now,
            round_robin: 0,
            broadcasts: Broadcasts::default(),
        }
    }

    // ----- the map -----

    pub(crate) fn get(&self, peer: &AuthorKey) -> Option<&Link> {
        self.map.get(peer)
    }

    pub(crate) fn get_mut(&mut self, peer: &AuthorKey) -> Option<&mut Link> {
        self.map.get_mut(peer)
    }

    pub(crate) fn contains(&self, peer: &AuthorKey) -> bool {
        self.map.contains_key(peer)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Links in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&AuthorKey, &Link)> + '_ {
        self.map.iter()
    }

    /// Links in key order, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&AuthorKey, &mut Link)> + '_ {
        self.map.iter_mut()
    }

    /// The neighbours, in key order.
    pub(crate) fn peers(&self) -> Vec<AuthorKey> {
        self.map.keys().copied().collect()
    }

    /// Neighbours whose keys lie in `lo..=hi`.
    pub(crate) fn in_range(
        &self,
        lo: AuthorKey,
        hi: AuthorKey,
    ) -> impl Iterator<Item = AuthorKey> + '_ {
        self.map.range(lo..=hi).map(|(a, _)| *a)
    }

    pub(crate) fn insert(&mut self, peer: AuthorKey, link: Link) {
        self.map.insert(peer, link);
    }

    pub(crate) fn remove(&mut self, peer: &AuthorKey) -> Option<Link> {
        self.map.remove(peer)
    }

    /// Links currently connected.
    pub(crate) fn connected(&self) -> usize {
        self.map.values().filter(|l| l.connected()).count()
    }

    // ----- links said bye on -----

    /// Whether this peer said bye on the link to `peer` (nothing more is sent on it).
    pub(crate) fn leaving(&self, peer: &AuthorKey) -> bool {
        self.leaving.contains_key(peer)
    }

    /// This peer said bye on the link to `peer` at `now`.
    pub(crate) fn mark_leaving(&mut self, peer: AuthorKey, now: Time) {
        self.leaving.insert(peer, now);
    }

    /// Forgets that this peer said bye to `peer`; whether it had.
    pub(crate) fn unmark_leaving(&mut self, peer: &AuthorKey) -> bool {
        self.leaving.remove(peer).is_some()
    }

    /// Links said bye on at least `wait` before `now`, in key order.
    pub(crate) fn leaving_since(&self, now: Time, wait: Duration) -> Vec<AuthorKey> {
        self.leaving
            .iter()
            .filter(|(_, at)| now.saturating_since(**at) >= wait)
            .map(|(p, _)| *p)
            .collect()
    }

    // ----- the send path -----

    /// Queues a frame of `kind` to `to`, counting it in `queued` by label; the link seq and
    /// floor are put in front when it leaves. False (nothing queued) without a link.
    pub(crate) fn push(
        &mut self,
        to: AuthorKey,
        kind: Kind,
        class: Priority,
        meta: Meta,
        max_bytes: usize,
        queued: &mut BTreeMap<&'static str, (u64, u64)>,
    ) -> bool {
        let Some(link) = self.map.get_mut(&to) else { return false };
        let label = kind_label(&kind);
        let body = unsequenced(kind);
        let counter = queued.entry(label).or_default();
        counter.0 += 1;
        counter.1 += body.len() as u64;
        link.push(body, class, max_bytes, meta);
        true
    }

    /// Sends what the pacing allows now: most urgent class first, the shared medium's
    /// broadcasts before the links in each class, links served round-robin within a class,
    /// each link within its own bucket and all of them within the node's uplink bucket (or the
    /// host's queue, with back-pressure). Returns whether the host stopped reporting sent
    /// frames and was taken as having sent them (a `host_sent_missing` rejection).
    pub(crate) fn pump(&mut self, now: Time, config: &Config, out: &mut Vec<Output>) -> bool {
        self.uplink.refill(now);
        let host_queue = config.host_queue_bytes;
        let mut host_missing = false;
        if host_queue.is_some()
            && self.host_unsent > 0
            && now.saturating_since(self.host_heard) > HOST_SILENT
        {
            // A host that stopped reporting would stall every link: carry on as if it had.
            self.host_unsent = 0;
            host_missing = true;
        }
        let n = self.map.len();
        if n == 0 && self.broadcasts.is_empty() {
            return host_missing;
        }
        // Links in round-robin order, starting one further each time (borrowed once: the
        // pump runs after every send).
        let uplink_bps = self.uplink.rate_bps();
        let mut links: Vec<(&AuthorKey, &mut Link)> = self.map.iter_mut().collect();
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
                let Some(frame) = self.broadcasts.pop(class) else { break };
                take(&mut self.host_unsent, &mut self.host_heard, &mut self.uplink, frame.len());
                out.push(Output::Broadcast { frame, class });
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
                        out.push(Output::Send { to: **peer, frame, class });
                        sent = true;
                        // A routed frame is retransmitted on its own timer, not the tick's.
                        if class == Priority::Postcard
                            && let Some(at) =
                                link.routed_deadline(&routed_timeout(link, config, uplink_bps))
                        {
                            out.push(Output::Schedule {
                                at,
                                timer: Timer(TimerKind::Routed(**peer)),
                            });
                        }
                    }
                }
                if !sent {
                    break;
                }
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        self.schedule_pace(now, config, out);
        host_missing
    }

    /// `bytes` handed to the host at `now`, to be reported sent (with back-pressure; else
    /// nothing).
    pub(crate) fn host_took(&mut self, bytes: usize, now: Time, config: &Config) {
        if config.host_queue_bytes.is_some() {
            handed(&mut self.host_unsent, &mut self.host_heard, now, bytes);
        }
    }

    /// The host reports `bytes` sent at `now` (`Input::Sent`).
    pub(crate) fn host_sent(&mut self, bytes: usize, now: Time) {
        self.host_unsent = self.host_unsent.saturating_sub(bytes);
        self.host_heard = now;
    }

    /// A pacing wake-up arrived at `now`: whether it is the one scheduled (then the pump
    /// runs).
    pub(crate) fn pace_due(&mut self, now: Time) -> bool {
        if self.pace_at.is_some_and(|t| t <= now) {
            self.pace_at = None;
            return true;
        }
        false
    }

    /// Frames left waiting for a bucket: wake up when the first of them may leave, rather
    /// than at the next tick (which capped a backlog's drain at a burst per tick: ~2 Mbit/s
    /// on a 10 Mbit/s uplink).
    fn schedule_pace(&mut self, now: Time, config: &Config, out: &mut Vec<Output>) {
        let uplink = match config.host_queue_bytes {
            // The host's report of a sent frame wakes the pump.
            Some(max) if self.host_unsent >= max => return,
            Some(_) => Duration::ZERO,
            None => self.uplink.wait(now),
        };
        let medium = (!self.broadcasts.is_empty()).then_some(Duration::ZERO);
        let Some(wait) = self
            .map
            .values()
            .filter_map(|l| l.ready_in(now))
            .chain(medium)
            .map(|w| w.max(uplink))
            .min()
        else {
            return;
        };
        let at = now + wait.max(PACE_MIN);
        if self.pace_at.is_some_and(|t| t <= at && t > now) {
            return; // an earlier wake-up is already scheduled
        }
        self.pace_at = Some(at);
        out.push(Output::Schedule { at, timer: Timer(TimerKind::Pace) });
    }

    /// The node's uplink rate, if paced.
    pub(crate) fn uplink_bps(&self) -> Option<u64> {
        self.uplink.rate_bps()
    }

    /// Bytes of events one frame to `to` carries at most: 100 ms of the slower of the node's
    /// egress and the link's rate, within [`MIN_FRAME_EVENT_BYTES`,
    /// `MAX_FRAME_EVENT_BYTES`]. A frame leaves whole, and while it does nothing else (no
    /// heartbeat, no acknowledgement) leaves the node: a 20 kB batch on a 51 kbit/s share of
    /// a radio silences the node for 3 s, longer than the neighbours' suspicion delay.
    pub(crate) fn frame_event_bytes(&self, to: &AuthorKey) -> usize {
        let link = self.map.get(to).and_then(Link::rate_bps);
        slower(self.uplink.rate_bps(), link)
            .map_or(MAX_FRAME_EVENT_BYTES, |r| usize::try_from(r / 80).unwrap_or(usize::MAX))
            .clamp(MIN_FRAME_EVENT_BYTES, MAX_FRAME_EVENT_BYTES)
    }
}

/// Retransmission timeout of `link`'s frames before backoff: its smoothed acknowledgement
/// time, plus the delayed acknowledgement the neighbour may add and a tick of the
/// neighbour's timers.
pub(crate) fn rto(link: &Link, config: &Config) -> Duration {
    link.rto(config.rto_min) + config.ack_delay + config.tick
}

/// The timeout of `link`'s routed frames (see [`RoutedTimeout`]), on a node whose uplink
/// is paced at `uplink_bps`.
pub(crate) fn routed_timeout(
    link: &Link,
    config: &Config,
    uplink_bps: Option<u64>,
) -> RoutedTimeout {
    let cap = rto(link, config);
    RoutedTimeout { base: link.routed_rto(cap), rate_bps: slower(uplink_bps, link.rate_bps()), cap }
}

/// The slower of two rates (either unpaced: the other).
fn slower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
pub(crate) fn kind_label(kind: &Kind) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::tree::TreeEdges;

    fn key(n: u8) -> AuthorKey {
        AuthorKey([n; 32])
    }

    fn ping() -> Kind {
        Kind::Ping(pb::Ping { nonce: 1, slow: false })
    }

    /// The pump serves the most urgent class first and the links in turn within a class.
    #[test]
    fn the_pump_serves_control_first_and_links_in_turn() {
        let config = Config::default();
        let t = Time(1_000_000);
        let mut links = Links::new(None, t);
        let mut queued = BTreeMap::new();
        for n in [1, 2] {
            links.insert(key(n), Link::new(t, None, TreeEdges::all_eager()));
        }
        for _ in 0..2 {
            for n in [1, 2] {
                links.push(key(n), ping(), Priority::Post, Meta::default(), 1 << 20, &mut queued);
            }
        }
        links.push(key(2), ping(), Priority::Control, Meta::default(), 1 << 20, &mut queued);
        assert!(!links.push(
            key(3),
            ping(),
            Priority::Control,
            Meta::default(),
            1 << 20,
            &mut queued
        ));
        let mut out = Vec::new();
        assert!(!links.pump(t, &config, &mut out));
        let order: Vec<(u8, Priority)> = out
            .iter()
            .map(|o| match o {
                Output::Send { to, class, .. } => (to.0[0], *class),
                other => panic!("{other:?}"),
            })
            .collect();
        use Priority::{Control, Post};
        assert_eq!(order, [(2, Control), (1, Post), (2, Post), (1, Post), (2, Post)]);
        let len = unsequenced(ping()).len() as u64;
        assert_eq!(queued.get("ping"), Some(&(5, 5 * len)), "counted as queued, once each");
    }

    /// On a paced uplink, what the bucket does not allow waits, and a pacing wake-up is
    /// scheduled for when it may leave.
    #[test]
    fn a_paced_uplink_schedules_a_wake_up() {
        let config = Config { uplink_bps: Some(80_000), ..Config::default() };
        let t = Time(1_000_000);
        let mut links = Links::new(config.uplink_bps, t);
        let mut queued = BTreeMap::new();
        links.insert(key(1), Link::new(t, None, TreeEdges::all_eager()));
        for _ in 0..3 {
            links.push(key(1), ping(), Priority::Post, Meta::default(), 1 << 20, &mut queued);
        }
        let mut out = Vec::new();
        links.pump(t + Duration::from_millis(1), &config, &mut out);
        let sent = out.iter().filter(|o| matches!(o, Output::Send { .. })).count();
        let wake = out.iter().find_map(|o| match o {
            Output::Schedule { at, .. } => Some(*at),
            _ => None,
        });
        assert!((1..3).contains(&sent), "{sent} sent");
        let wake = wake.expect("a wake-up");
        assert!(links.pace_due(wake));
        assert!(!links.pace_due(wake), "once");
    }
}
