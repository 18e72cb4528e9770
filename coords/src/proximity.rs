//! Proximity: predicted RTT between any two peers, and the proximity factor of clout.
//!
//! Predictions come from coordinates, which anyone can claim. Trust does not: the clout
//! proximity factor (DESIGN §4, after nara) boosts peers that are *measured* to be near, from
//! RTT samples this peer took itself (the median of at least [`ProximityConfig::min_samples`]),
//! and never boosts a peer known only by the coordinate it claims: its factor falls back to
//! [`ProximityConfig::unmeasured_factor`] (≤ 1).

use std::time::Duration;

use crate::coordinate::{Coordinate, MAX_RTT};
use crate::filter::{FilterConfig, LatencyFilter, MAX_WINDOW};

/// Predicted RTT between two peers from their coordinates.
pub fn predicted_rtt<const D: usize>(a: &Coordinate<D>, b: &Coordinate<D>) -> Duration {
    a.distance_to(b)
}

/// Parameters of the proximity factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProximityConfig {
    /// Peers whose measured RTT is below this are "near".
    pub near: Duration,
    /// Factor of a near peer (nara's 1.3).
    pub boost: f64,
    /// Factor of a peer measured but not near.
    pub far_factor: f64,
    /// Factor of a peer never measured often enough (known only by its claimed coordinate);
    /// clamped to at most 1.
    pub unmeasured_factor: f64,
    /// Samples needed before a measurement counts (at least 3).
    pub min_samples: usize,
    /// Samples kept per peer (the median is over these).
    pub window: usize,
    /// Bound on the peers tracked; the least recently measured is evicted.
    pub max_peers: usize,
}

impl Default for ProximityConfig {
    fn default() -> Self {
        Self {
            near: Duration::from_millis(50),
            boost: 1.3,
            far_factor: 1.0,
            unmeasured_factor: 1.0,
            min_samples: 3,
            window: 5,
            max_peers: crate::profile::DEFAULT_MAX_PEERS,
        }
    }
}

/// The proximity factor for a peer with measured median RTT `measured` (`None`: not measured
/// often enough).
pub fn proximity_factor(measured: Option<Duration>, config: &ProximityConfig) -> f64 {
    match measured {
        Some(rtt) if rtt < config.near => config.boost,
        Some(_) => config.far_factor,
        None => config.unmeasured_factor.min(1.0),
    }
}

/// Why an RTT sample was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rtt out of range: {0:?}")]
pub struct RttOutOfRange(pub Duration);

/// Measured RTTs per peer, for the proximity factor. Bounded by
/// [`ProximityConfig::max_peers`].
#[derive(Debug, Clone)]
pub struct Proximity<K> {
    config: ProximityConfig,
    samples: LatencyFilter<K>,
}

impl<K: Ord + Clone> Proximity<K> {
    /// Empty. `min_samples` is raised to 3 and `window` clamped to `[min_samples, 16]`.
    pub fn new(config: ProximityConfig) -> Self {
        let min_samples = config.min_samples.clamp(3, MAX_WINDOW);
        let config = ProximityConfig {
            min_samples,
            window: config.window.clamp(min_samples, MAX_WINDOW),
            ..config
        };
        Self {
            config,
            samples: LatencyFilter::new(FilterConfig {
                window: config.window,
                lower_median: true,
                max_peers: config.max_peers,
            }),
        }
    }

    /// Records one measured RTT to `peer` (zero or above [`MAX_RTT`] is refused).
    pub fn record(&mut self, peer: &K, rtt: Duration) -> Result<(), RttOutOfRange> {
        if rtt.is_zero() || rtt > MAX_RTT {
            return Err(RttOutOfRange(rtt));
        }
        self.samples.push(peer, rtt.as_secs_f64());
        Ok(())
    }

    /// The median measured RTT to `peer`, once at least `min_samples` are held.
    pub fn measured(&self, peer: &K) -> Option<Duration> {
        let (median, n) = self.samples.current(peer)?;
        (n >= self.config.min_samples).then(|| Duration::from_secs_f64(median))
    }

    /// The clout proximity factor of `peer`.
    pub fn factor(&self, peer: &K) -> f64 {
        proximity_factor(self.measured(peer), &self.config)
    }

    /// Forgets `peer`.
    pub fn forget(&mut self, peer: &K) {
        self.samples.forget(peer);
    }

    /// Peers tracked (at most `max_peers`).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// `true` when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn boost_needs_three_measured_samples_under_50ms() {
        let mut p = Proximity::new(ProximityConfig::default());
        assert_eq!(p.factor(&1u8), 1.0);
        p.record(&1, MS(20)).unwrap();
        p.record(&1, MS(30)).unwrap();
        assert_eq!(p.factor(&1), 1.0, "two samples are not a measurement");
        p.record(&1, MS(400)).unwrap(); // a spike: the median stays near
        assert_eq!(p.measured(&1), Some(MS(30)));
        assert_eq!(p.factor(&1), 1.3);
        for _ in 0..3 {
            p.record(&2, MS(80)).unwrap();
        }
        assert_eq!(p.factor(&2), 1.0);
        assert!(p.record(&3, Duration::ZERO).is_err());
        assert!(p.record(&3, Duration::from_secs(11)).is_err());
        assert!(p.measured(&3).is_none());
    }

    #[test]
    fn claimed_coordinates_never_boost() {
        let cfg = ProximityConfig { unmeasured_factor: 1.5, ..ProximityConfig::default() };
        assert_eq!(proximity_factor(None, &cfg), 1.0);
        let cfg = ProximityConfig { unmeasured_factor: 0.8, ..ProximityConfig::default() };
        assert_eq!(proximity_factor(None, &cfg), 0.8);
    }

    #[test]
    fn predicted_is_coordinate_distance() {
        let a = Coordinate::<2>::from_parts(&[0.0, 0.0], 0.001, 0.5, 0.0).unwrap();
        let b = Coordinate::<2>::from_parts(&[0.030, 0.040], 0.001, 0.5, 0.0).unwrap();
        assert_eq!(predicted_rtt(&a, &b), MS(52));
    }
}
