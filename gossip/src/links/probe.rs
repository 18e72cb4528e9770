//! The ping/pong exchange on one link: the heartbeat that is also the RTT probe, and the
//! coordinate and fisheye scope that ride on pongs.
//!
//! A ping carries a nonce; the pong echoes it, so an RTT sample is taken only for the
//! outstanding ping (a late pong of an older one is ignored). The RTT is the median of the last
//! [`RTT_SAMPLES`] samples (robust to one queued or lost pong). Every fourth pong carries the
//! answering peer's coordinate (the prober keeps the last one), and so does the next pong
//! whenever the answering peer's fisheye scope, or whether its coordinate has settled, changed
//! since the neighbour was last told: the neighbour decides from them what to pass on.
//!
//! This slot is pure state; the engine draws the nonce, sends the frames and feeds the samples
//! to the Vivaldi client (`crate::engine`).

use std::collections::VecDeque;
use std::time::Duration;

use vecino_coords::Coordinate;
use vecino_proto::pb;

use crate::membership::scope::Scope;
use crate::published::coord_from_pb;
use crate::time::Time;

/// RTT samples kept for the median.
const RTT_SAMPLES: usize = 5;

/// What a pong tells about its sender's scope: the scope's pong field, coarsely
/// ([`Scope::bucket`]), and whether its coordinate has settled (with a scope).
pub(crate) type Told = (Option<u32>, bool);

/// Probe state of one link.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Outstanding ping: nonce and send time.
    ping: Option<(u64, Time)>,
    /// When the last ping left.
    last_ping: Time,
    rtts: VecDeque<Duration>,
    /// The median of `rtts`.
    rtt_median: Option<Duration>,
    /// Pongs sent to the neighbour (every fourth carries our coordinate).
    pongs_sent: u32,
    /// The scope the neighbour was last told (a change is carried on the next pong).
    told: Option<Told>,
    /// The neighbour's coordinate as last carried by its pong.
    peer_coordinate: Option<Coordinate>,
    /// The neighbour's fisheye scope as last carried by its pong (`None`: full membership, or
    /// not heard yet).
    peer_scope: Option<Scope>,
    /// The neighbour holds the link to fast failure detection, as its last ping or pong said.
    peer_fast: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            ping: None,
            last_ping: Time(0),
            rtts: VecDeque::new(),
            rtt_median: None,
            pongs_sent: 0,
            told: None,
            peer_coordinate: None,
            peer_scope: None,
            peer_fast: false,
        }
    }
}

impl Probe {
    /// Median of the recent RTT samples.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt_median
    }

    /// How many RTT samples the median is over (at most 5).
    pub(crate) fn samples(&self) -> usize {
        self.rtts.len()
    }

    /// When the last ping left (`Time(0)` before the first).
    pub(crate) fn last_ping(&self) -> Time {
        self.last_ping
    }

    /// The neighbour's coordinate, as its pongs last carried it.
    pub(crate) fn peer_coordinate(&self) -> Option<Coordinate> {
        self.peer_coordinate
    }

    /// The neighbour's fisheye scope, as its pongs last told it.
    pub(crate) fn peer_scope(&self) -> Option<Scope> {
        self.peer_scope
    }

    /// Whether the neighbour holds the link to fast failure detection (its last ping or pong
    /// said so).
    pub(crate) fn peer_fast(&self) -> bool {
        self.peer_fast
    }

    /// The neighbour's last ping or pong said whether it holds the link fast.
    pub(crate) fn set_peer_fast(&mut self, fast: bool) {
        self.peer_fast = fast;
    }

    /// A ping with `nonce` leaves at `now`.
    pub(crate) fn pinged(&mut self, nonce: u64, now: Time) {
        self.ping = Some((nonce, now));
        self.last_ping = now;
    }

    /// A pong arrived at `now`: if it answers the outstanding ping, records the RTT sample
    /// (and the coordinate and scope it carries) and returns the sample.
    pub(crate) fn on_pong(&mut self, now: Time, pong: &pb::Pong) -> Option<Duration> {
        let (nonce, sent) = self.ping?;
        if nonce != pong.nonce {
            return None;
        }
        self.ping = None;
        let rtt = now.saturating_since(sent).max(Duration::from_micros(1));
        self.record_rtt(rtt);
        if let Some(c) = pong.coordinate.as_ref().and_then(coord_from_pb) {
            self.peer_coordinate = Some(c);
            self.peer_scope = Scope::from_pb(pong.fisheye_radius_us);
        }
        Some(rtt)
    }

    pub(crate) fn record_rtt(&mut self, rtt: Duration) {
        if self.rtts.len() == RTT_SAMPLES {
            self.rtts.pop_front();
        }
        self.rtts.push_back(rtt);
        // Kept rather than computed on every call: the engine asks for it on every send.
        let mut v = [Duration::ZERO; RTT_SAMPLES];
        for (v, r) in v.iter_mut().zip(&self.rtts) {
            *v = *r;
        }
        let v = &mut v[..self.rtts.len()];
        v.sort_unstable();
        self.rtt_median = Some(v[v.len() / 2]);
    }

    /// A pong is about to answer a ping, this peer's scope being `told`: whether it carries
    /// the coordinate and scope (every fourth pong, and the first after `told` changed).
    pub(crate) fn pong_carries(&mut self, told: Told) -> bool {
        self.pongs_sent = self.pongs_sent.wrapping_add(1);
        let carry = self.pongs_sent % 4 == 1 || self.told != Some(told);
        if carry {
            self.told = Some(told);
        }
        carry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(nonce: u64, coordinate: Option<pb::Coordinate>, radius: Option<u32>) -> pb::Pong {
        pb::Pong { nonce, coordinate, fisheye_radius_us: radius, slow: false }
    }

    /// Only the pong of the outstanding ping gives a sample; the RTT is the median of the
    /// last five, so one slow sample does not move it.
    #[test]
    fn the_rtt_is_the_median_of_answered_pings() {
        let mut p = Probe::default();
        assert_eq!(p.on_pong(Time(5), &pong(1, None, None)), None, "no ping out");
        let mut t = 0;
        for (i, ms) in [10u64, 12, 11, 500, 13].into_iter().enumerate() {
            p.pinged(i as u64, Time(t));
            assert_eq!(p.on_pong(Time(t + 1), &pong(i as u64 + 100, None, None)), None);
            let got = p.on_pong(Time(t + ms * 1_000), &pong(i as u64, None, None));
            assert_eq!(got, Some(Duration::from_millis(ms)));
            t += 1_000_000;
        }
        assert_eq!(p.rtt(), Some(Duration::from_millis(12)));
        assert_eq!((p.rtts.len(), p.last_ping()), (5, Time(4_000_000)));
    }

    /// A pong carrying a coordinate tells the neighbour's coordinate and scope; one without
    /// keeps the last ones.
    #[test]
    fn pongs_carry_the_neighbours_coordinate_and_scope() {
        let mut p = Probe::default();
        let c = crate::published::coord_to_pb(&Coordinate::origin(1e-5, 1.5));
        p.pinged(7, Time(0));
        p.on_pong(Time(10), &pong(7, Some(c), Some(250_000)));
        assert_eq!(p.peer_scope(), Some(Scope::Radius(0.25)));
        assert!(p.peer_coordinate().is_some());
        p.pinged(8, Time(20));
        p.on_pong(Time(30), &pong(8, None, None));
        assert_eq!(p.peer_scope(), Some(Scope::Radius(0.25)), "kept");
    }

    /// Every fourth pong carries the coordinate, and the first after the scope changed.
    #[test]
    fn a_pong_carries_the_coordinate_every_fourth_time_and_on_change() {
        let mut p = Probe::default();
        let same = (Some(3), true);
        let carried: Vec<bool> = (0..8).map(|_| p.pong_carries(same)).collect();
        assert_eq!(carried, [true, false, false, false, true, false, false, false]);
        assert!(p.pong_carries((Some(4), true)), "a changed scope is told at once");
        assert!(!p.pong_carries((Some(4), true)));
    }
}
