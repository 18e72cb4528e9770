//! Per-peer latency filters: what RTT an update actually uses.
//!
//! A single RTT sample is noisy (queueing, scheduling, a retransmission turns 80 ms into
//! 300 ms). Serf keeps the last three samples per peer and feeds Vivaldi their median
//! ("moving percentile" filter, Ledlie et al., "Network Coordinates in the Wild", NSDI 2007,
//! §5.1). That only helps a peer that is sampled often: in a large overlay a given peer is
//! pinged rarely, so the first sample passes unfiltered and the second is the *larger* of two.
//! The `vecino` profile therefore adds a second line of defence in the client (a robust loss
//! scaled by the client's own error, see `client.rs`) and uses a filter that never returns a
//! value biased upward by a short history: the median of an odd window, or the *lower* middle
//! of an even one.
//!
//! The map is keyed by remote input (peer ids), so it is bounded: at most
//! [`FilterConfig::max_peers`] entries; when full, the peer updated least recently is evicted
//! (a linear scan, paid only when a new peer arrives at a full table).

use std::collections::BTreeMap;

/// How many samples a filter keeps per peer, and for how many peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterConfig {
    /// Samples kept per peer (Serf: 3). 1 disables filtering.
    pub window: usize,
    /// `true`: the even-length median takes the lower middle; `false`: Serf's `len / 2`, the
    /// upper middle.
    pub lower_median: bool,
    /// Bound on the number of peers tracked; the least recently updated is evicted first.
    pub max_peers: usize,
}

/// The most samples kept per peer, whatever the config says (keeps the median cheap).
pub const MAX_WINDOW: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    /// Ring of the last `len` samples, seconds.
    samples: [f64; MAX_WINDOW],
    len: usize,
    next: usize,
    /// Logical time of the last update, for eviction.
    touched: u64,
}

/// A bounded per-peer moving-median filter.
#[derive(Debug, Clone)]
pub struct LatencyFilter<K> {
    config: FilterConfig,
    /// Bounded by `config.max_peers`.
    peers: BTreeMap<K, Entry>,
    tick: u64,
    evictions: u64,
}

impl<K: Ord + Clone> LatencyFilter<K> {
    /// An empty filter. `window` is clamped to `1..=MAX_WINDOW`, `max_peers` to at least 1.
    pub fn new(config: FilterConfig) -> Self {
        let config = FilterConfig {
            window: config.window.clamp(1, MAX_WINDOW),
            max_peers: config.max_peers.max(1),
            ..config
        };
        Self { config, peers: BTreeMap::new(), tick: 0, evictions: 0 }
    }

    /// Records `rtt_secs` for `peer` and returns the filtered value and the number of samples
    /// it was computed from.
    pub fn push(&mut self, peer: &K, rtt_secs: f64) -> (f64, usize) {
        self.tick += 1;
        let tick = self.tick;
        let window = self.config.window;
        if window == 1 {
            return (rtt_secs, 1);
        }
        if self.peers.len() >= self.config.max_peers && !self.peers.contains_key(peer) {
            self.evict_oldest();
        }
        let entry = self.peers.entry(peer.clone()).or_insert(Entry {
            samples: [0.0; MAX_WINDOW],
            len: 0,
            next: 0,
            touched: tick,
        });
        entry.touched = tick;
        entry.samples[entry.next] = rtt_secs;
        entry.next = (entry.next + 1) % window;
        entry.len = (entry.len + 1).min(window);
        let len = entry.len;
        let mut sorted = [0.0f64; MAX_WINDOW];
        sorted[..len].copy_from_slice(&entry.samples[..len]);
        let sorted = &mut sorted[..len];
        sorted.sort_unstable_by(f64::total_cmp);
        let mid = if self.config.lower_median { (len - 1) / 2 } else { len / 2 };
        (sorted[mid], len)
    }

    /// The filtered value for `peer` without adding a sample, if any sample is held.
    pub fn current(&self, peer: &K) -> Option<(f64, usize)> {
        let e = self.peers.get(peer)?;
        let mut sorted = e.samples[..e.len].to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        let mid = if self.config.lower_median { (e.len - 1) / 2 } else { e.len / 2 };
        Some((sorted[mid], e.len))
    }

    /// Forgets everything about `peer` (it left, or was distrusted).
    pub fn forget(&mut self, peer: &K) {
        self.peers.remove(peer);
    }

    /// Number of peers tracked (never more than the configured bound).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// `true` when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// How many peers were evicted to respect the bound.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn evict_oldest(&mut self) {
        let victim = self.peers.iter().min_by_key(|(_, e)| e.touched).map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            self.peers.remove(&victim);
            self.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window: usize, lower: bool, max_peers: usize) -> FilterConfig {
        FilterConfig { window, lower_median: lower, max_peers }
    }

    #[test]
    fn serf_median_of_three() {
        let mut f = LatencyFilter::new(cfg(3, false, 8));
        assert_eq!(f.push(&1u32, 0.010), (0.010, 1));
        // Serf's median of two is the larger one.
        assert_eq!(f.push(&1, 0.030), (0.030, 2));
        assert_eq!(f.push(&1, 0.020), (0.020, 3));
        // Oldest (0.010) leaves the window.
        assert_eq!(f.push(&1, 0.100), (0.030, 3));
        assert_eq!(f.current(&1), Some((0.030, 3)));
    }

    #[test]
    fn lower_median_is_not_biased_up() {
        let mut f = LatencyFilter::new(cfg(3, true, 8));
        f.push(&1u32, 0.010);
        assert_eq!(f.push(&1, 0.030), (0.010, 2));
    }

    #[test]
    fn bounded_with_lru_eviction() {
        let mut f = LatencyFilter::new(cfg(3, false, 2));
        f.push(&1u32, 0.01);
        f.push(&2, 0.01);
        f.push(&1, 0.01);
        f.push(&3, 0.01); // evicts 2, the least recently updated
        assert_eq!(f.len(), 2);
        assert_eq!(f.evictions(), 1);
        assert!(f.current(&2).is_none());
        assert!(f.current(&1).is_some());
        f.forget(&1);
        assert_eq!(f.len(), 1);
    }
}
