//! Membership: the peers this one knows by their signed presence (`hey-there`), status
//! (`newspaper`) and departure (`chau`), kept as latest-value events in the store (a CRDT map
//! author → newest event: merge = max seq), and this peer's own presence and status.
//!
//! - **Newspaper gating** (MVPS edge delta gating): a peer publishes a newspaper when its
//!   coordinate moved more than `newspaper_move_ms` (and a tenth of its links' median RTT)
//!   since the last one *relative to its neighbours* ([`relative_move_ms`]: Vivaldi
//!   coordinates drift as a whole, and a gate on absolute movement republished every peer
//!   about once a minute for nothing), at most every [`Membership::newspaper_spacing`]
//!   (jittered × U[1, 1.5) so a fleet started together does not publish in step; sooner when
//!   the coordinate is twice as sure as the published one), and otherwise every
//!   `newspaper_max_interval`; and once, early, when its coordinate first settles (the first
//!   newspaper carries the coordinate of a peer that just joined, which says little).
//!   Liveness comes from link heartbeats between neighbours, not from newspaper frequency.
//! - **Fisheye** ([`fisheye`]): past `fisheye_members` members, a peer keeps the members near
//!   it peer by peer and far ones coarsely.

pub(crate) mod fisheye;
pub(crate) mod scope;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, RngExt};
use vecino_coords::Coordinate;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::engine::core::Core;
use crate::io::MemberChange;
use crate::published::{SETTLED_ERROR, coord_to_pb, published_coordinate};
use crate::store::Store;
use crate::time::Time;

use self::fisheye::Fisheye;

/// A newspaper whose coordinate is twice as sure as the last one's waits at least this long.
const SURER_PAPER_MIN: Duration = Duration::from_secs(10);

/// A move is news past this share of the median RTT of the peer's links (and past
/// `Config::newspaper_move_ms`).
const MOVE_SHARE: f64 = 0.1;

/// A peer publishes its first settled coordinate at most this soon after the last
/// newspaper.
const SETTLE_PAPER_MIN: Duration = Duration::from_secs(5);

/// A member as this peer knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The peer.
    pub peer: AuthorKey,
    /// Its latest presence.
    pub hey_there: Option<pb::HeyThere>,
    /// Its latest status.
    pub newspaper: Option<pb::Newspaper>,
    /// The coordinate it last published (its newspaper's, else its hey-there's), decoded.
    pub coordinate: Option<Coordinate>,
    /// True if it said chau after its latest presence.
    pub left: bool,
}

/// The membership machine.
#[derive(Debug)]
pub(crate) struct Membership {
    /// Fisheye scope.
    pub(crate) fisheye: Fisheye,
    /// When this peer's last newspaper was published, and the coordinate it carried.
    last_paper: Option<(Time, Coordinate)>,
    /// The neighbours' coordinates (as their pongs carried them) when the last newspaper
    /// was published: how the fleet has drifted since (bounded by `Config::max_links`).
    paper_neighbours: Vec<(AuthorKey, Coordinate)>,
    /// The next newspaper that reports a move waits [`Membership::newspaper_spacing`] × this,
    /// drawn from U[1, 1.5) at each newspaper, so that a fleet started together does not
    /// publish (and, with `Config::tree_refresh_every`, flood its trees) in step.
    paper_jitter: f64,
}

/// The other presence stream (a member is new only if neither is held).
fn other_presence(s: Stream) -> Stream {
    if s == Stream::HeyThere { Stream::Newspaper } else { Stream::HeyThere }
}

/// Whether `peer` said chau after its latest presence or status.
pub(crate) fn has_left(store: &Store, peer: AuthorKey) -> bool {
    let Some(chau) = store.latest(&(peer, Stream::Chau)) else { return false };
    let alive = [Stream::HeyThere, Stream::Newspaper]
        .iter()
        .filter_map(|s| store.latest(&(peer, *s)))
        .map(VerifiedEvent::hlc)
        .max();
    alive.is_none_or(|h| chau.hlc() > h)
}

/// What a new presence, status or departure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberEvent {
    /// The change, for the application.
    pub(crate) change: MemberChange,
    /// The member is new to a fisheye peer: its membership slot is to be unmuted on the
    /// links (`crate::broadcast`).
    pub(crate) unmute: bool,
}

/// How far (ms) a coordinate moved from `published` to `current` relative to the neighbours:
/// its displacement (Euclidean part, plus the change of height) less the fleet's drift since,
/// estimated as the component-wise median displacement of the neighbours' coordinates from
/// `then` (their coordinates when `published` was) to now (`now_of`). Without a neighbour
/// seen at both times, the absolute displacement.
fn relative_move_ms(
    published: &Coordinate,
    current: &Coordinate,
    then: &[(AuthorKey, Coordinate)],
    now_of: impl Fn(&AuthorKey) -> Option<Coordinate>,
) -> f64 {
    let moves: Vec<_> = then.iter().filter_map(|(p, c0)| Some(now_of(p)?.vec - c0.vec)).collect();
    let mut displacement = current.vec - published.vec;
    if !moves.is_empty() {
        let mut column = Vec::with_capacity(moves.len());
        for (i, d) in displacement.iter_mut().enumerate() {
            column.clear();
            column.extend(moves.iter().map(|m| m[i]));
            column.sort_unstable_by(f64::total_cmp);
            *d -= column[column.len() / 2];
        }
    }
    (displacement.norm() + (current.height - published.height).abs()) * 1e3
}

impl Membership {
    /// A peer's membership at start (fisheye from the start with
    /// `Config::fisheye_from_start`).
    pub(crate) fn new(config: &crate::Config) -> Self {
        let active = config.fisheye_from_start && config.fisheye_members > 0;
        Self {
            fisheye: Fisheye::new(active),
            last_paper: None,
            paper_neighbours: Vec::new(),
            paper_jitter: 1.0,
        }
    }

    /// This peer's presence.
    pub(crate) fn hey_there<R>(core: &Core<R>) -> Body {
        Body::HeyThere(pb::HeyThere {
            coordinate: Some(coord_to_pb(core.coords.app_coordinate())),
            addrs: core.config.addrs.clone(),
            name: core.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: core.started.as_millis(),
        })
    }

    /// This peer's status, now, naming its `barrio` (0: none yet; the gate's clock restarts,
    /// and its jitter is drawn).
    pub(crate) fn newspaper<R: Rng>(&mut self, core: &mut Core<R>, barrio: u64) -> Body {
        let coordinate = *core.coords.app_coordinate();
        let connected = core.links.connected();
        let body = Body::Newspaper(pb::Newspaper {
            coordinate: Some(coord_to_pb(&coordinate)),
            uptime_s: u32::try_from(core.now.saturating_since(core.started).as_secs())
                .unwrap_or(u32::MAX),
            restarts: 0,
            barrio,
            connected: u32::try_from(connected).unwrap_or(u32::MAX),
            flags: 0,
        });
        self.last_paper = Some((core.now, coordinate));
        self.paper_neighbours =
            core.links.iter().filter_map(|(p, l)| Some((*p, l.probe.peer_coordinate()?))).collect();
        self.paper_jitter = core.rng.random_range(1.0..1.5);
        body
    }

    /// This peer's status if the gate lets one out now: the coordinate moved relative to the
    /// neighbours, the longest interval passed, or the coordinate just settled.
    pub(crate) fn newspaper_due<R: Rng>(
        &mut self,
        core: &mut Core<R>,
        barrio: u64,
    ) -> Option<Body> {
        let Some((at, published)) = self.last_paper else {
            return Some(self.newspaper(core, barrio));
        };
        let current = core.coords.app_coordinate();
        let now_of = |p: &AuthorKey| core.links.get(p).and_then(|l| l.probe.peer_coordinate());
        let moved_ms = relative_move_ms(&published, current, &self.paper_neighbours, now_of);
        let age = core.now.saturating_since(at);
        // The first settled coordinate is news at once: until then, the published one is a
        // joining peer's guess (peers beyond the neighbours of a fisheye peer cannot place
        // it, and the radar draws the fleet in one clump).
        let settled_now = published.error > SETTLED_ERROR
            && current.error <= SETTLED_ERROR
            && age >= SETTLE_PAPER_MIN;
        let spacing = self.newspaper_spacing(&core.config).mul_f64(self.paper_jitter);
        let mut rtts: Vec<Duration> = core.links.iter().filter_map(|(_, l)| l.rtt()).collect();
        rtts.sort_unstable();
        let typical_ms = rtts.get(rtts.len() / 2).map_or(0.0, |r| r.as_secs_f64() * 1e3);
        let threshold = core.config.newspaper_move_ms.max(typical_ms * MOVE_SHARE);
        // A coordinate twice as sure as the published one is news sooner: a joining peer's
        // first newspapers carry rough coordinates, and the map others draw of it stays
        // rough for a minute otherwise (20 real peers: 0.23 median error 30 s in, 0.06 later).
        let surer = current.error <= published.error / 2.0 && age >= SURER_PAPER_MIN;
        let due = (moved_ms > threshold && (age >= spacing || surer))
            || age >= core.config.newspaper_max_interval
            || settled_now;
        due.then(|| self.newspaper(core, barrio))
    }

    /// The least time between two newspapers that report a move: `newspaper_min_interval`,
    /// longer for a fisheye peer that holds many members (`Config::newspapers_heard_per_s`).
    pub(crate) fn newspaper_spacing(&self, config: &crate::Config) -> Duration {
        let min = config.newspaper_min_interval;
        let rate = config.newspapers_heard_per_s;
        if !self.fisheye.active() || rate <= 0.0 {
            return min;
        }
        let by_members = Duration::from_secs_f64(self.fisheye.held() as f64 / rate);
        min.max(by_members).min(config.newspaper_max_interval)
    }

    /// A new membership event was stored (`first`: nothing of its stream was held): what it
    /// changed, if it is another peer's presence, status or departure.
    pub(crate) fn on_event<R>(
        &mut self,
        core: &Core<R>,
        ev: &VerifiedEvent,
        first: bool,
    ) -> Option<MemberEvent> {
        let (change, unmute) = match ev.body() {
            Body::HeyThere(_) | Body::Newspaper(_) if ev.author() != core.me => {
                let other = (ev.author(), other_presence(ev.stream()));
                if first && core.store.latest(&other).is_none() {
                    let unmute = self.fisheye.joined(&core.config, &ev.author());
                    (MemberChange::Joined, unmute)
                } else {
                    (MemberChange::Updated, false)
                }
            }
            Body::Chau(_) if ev.author() != core.me => (MemberChange::Left, false),
            _ => return None,
        };
        Some(MemberEvent { change, unmute })
    }

    /// Peers known by their presence or status (this peer excluded), with the latest of each
    /// and whether they said chau since.
    pub(crate) fn members<R>(core: &Core<R>) -> Vec<Member> {
        let mut out: BTreeMap<AuthorKey, Member> = BTreeMap::new();
        for ev in core.store.latest_events() {
            if ev.author() == core.me {
                continue;
            }
            let m = out.entry(ev.author()).or_insert_with(|| Member {
                peer: ev.author(),
                hey_there: None,
                newspaper: None,
                coordinate: None,
                left: false,
            });
            match ev.body() {
                Body::HeyThere(h) => m.hey_there = Some(h.clone()),
                Body::Newspaper(n) => m.newspaper = Some(n.clone()),
                _ => {}
            }
        }
        for m in out.values_mut() {
            m.left = has_left(&core.store, m.peer);
            m.coordinate = published_coordinate(&core.store, m.peer);
        }
        out.into_values().filter(|m| m.hey_there.is_some() || m.newspaper.is_some()).collect()
    }

    /// How many other peers this one knows (presence or status held, not left).
    pub(crate) fn known_count<R>(core: &Core<R>) -> usize {
        let mut last = None;
        let mut n = 0;
        for ev in core.store.latest_events() {
            let peer = ev.author();
            let presence = matches!(ev.stream(), Stream::HeyThere | Stream::Newspaper);
            if peer == core.me || !presence || last == Some(peer) {
                continue;
            }
            last = Some(peer);
            if !has_left(&core.store, peer) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::{at_ms, hey_there, key};

    /// The newspaper gate: the first newspaper at once; then one only when the coordinate
    /// moved more than `newspaper_move_ms` and the (jittered) spacing passed, or when
    /// `newspaper_max_interval` passed.
    #[test]
    fn newspapers_are_gated_on_movement_and_age() {
        let config = crate::Config::default();
        let (min, max) = (config.newspaper_min_interval, config.newspaper_max_interval);
        let mut core = Core::for_test(1, config);
        let mut m = Membership::new(&core.config);
        core.coords.set_coordinate(at_ms(0.0, 0.1)).expect("valid");
        assert!(m.newspaper_due(&mut core, 0).is_some(), "the first one");
        core.advance(min.mul_f64(1.5));
        assert!(m.newspaper_due(&mut core, 0).is_none(), "nothing moved");
        core.coords.set_coordinate(at_ms(50.0, 0.1)).expect("valid");
        assert!(m.newspaper_due(&mut core, 0).is_some(), "moved, and the spacing passed");
        core.coords.set_coordinate(at_ms(100.0, 0.1)).expect("valid");
        core.advance(min / 2);
        assert!(m.newspaper_due(&mut core, 0).is_none(), "moved, but too soon");
        core.coords.set_coordinate(at_ms(50.0, 0.1)).expect("valid");
        core.advance(max);
        assert!(m.newspaper_due(&mut core, 0).is_some(), "too old");
    }

    /// Movement is measured against the neighbours: a fleet drifting together has not
    /// moved (the gate once measured absolute movement plus both heights, and republished
    /// every peer about once a minute); one peer moving away has; without a neighbour seen
    /// at both times, the absolute displacement counts.
    #[test]
    fn a_fleet_drifting_together_has_not_moved() {
        let (published, drifted) = (at_ms(0.0, 0.1), at_ms(30.0, 0.1));
        let then = vec![
            (key(1), at_ms(10.0, 0.1)),
            (key(2), at_ms(-10.0, 0.1)),
            (key(3), at_ms(50.0, 0.1)),
        ];
        let with = |d: f64| move |p: &AuthorKey| then_of(p).map(|c| at_ms(c + d, 0.1));
        fn then_of(p: &AuthorKey) -> Option<f64> {
            [(key(1), 10.0), (key(2), -10.0), (key(3), 50.0)]
                .into_iter()
                .find(|(k, _)| k == p)
                .map(|(_, x)| x)
        }
        let together = relative_move_ms(&published, &drifted, &then, with(30.0));
        assert!(together < 1e-6, "moved {together} ms with the fleet");
        let alone = relative_move_ms(&published, &drifted, &then, with(0.0));
        assert!((alone - 30.0).abs() < 1e-6, "moved {alone} ms alone");
        // One neighbour moving on its own does not move the median.
        let one =
            |p: &AuthorKey| then_of(p).map(|c| at_ms(if *p == key(3) { c + 80.0 } else { c }, 0.1));
        assert!(relative_move_ms(&published, &published, &then, one) < 1e-6);
        let unknown = relative_move_ms(&published, &drifted, &then, |_| None);
        assert!((unknown - 30.0).abs() < 1e-6, "{unknown}");
    }

    /// A member's first presence is a join (and, for a fisheye peer, its slot is to be
    /// unmuted); a later one an update; this peer's own events are not members.
    #[test]
    fn a_members_first_presence_joins_and_the_next_updates() {
        let config =
            crate::Config { fisheye_members: 4, fisheye_from_start: true, ..Default::default() };
        let mut core = Core::for_test(2, config);
        let mut m = Membership::new(&core.config);
        let first = hey_there(1, 1, &at_ms(1.0, 0.1));
        let joined = m.on_event(&core, &first, true);
        assert_eq!(joined, Some(MemberEvent { change: MemberChange::Joined, unmute: true }));
        let _ = core.store.insert(first);
        let next = hey_there(1, 2, &at_ms(2.0, 0.1));
        assert_eq!(m.on_event(&core, &next, false).map(|e| e.change), Some(MemberChange::Updated));
        assert_eq!(m.on_event(&core, &hey_there(0, 1, &at_ms(0.0, 0.1)), true), None);
        assert_eq!(m.fisheye.held(), 1);
        assert_eq!(Membership::known_count(&core), 1);
        let members = Membership::members(&core);
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].peer, key(1));
        assert!(members[0].coordinate.is_some());
    }
}
