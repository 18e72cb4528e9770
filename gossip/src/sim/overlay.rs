//! What the overlay a run ended with allows: the shortest paths over its links, against the
//! direct path between the same two peers.
//!
//! A post can reach a peer no faster than the shortest path between its author and that peer
//! over the links that exist, so the stretch of those paths is a floor under the stretch of
//! any tree built on the overlay (queueing aside). Measuring it apart tells the overlay's
//! share of a run's stretch from the trees' share.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::sim::latency::Latency;

/// Sources at most for the shortest paths (evenly spread over the peers): all pairs of a
/// 10 000-peer overlay would be 10⁸ paths; 128 sources give the percentiles to about 1 %.
pub(crate) const SOURCES: usize = 128;

/// The overlay at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlaySummary {
    /// Mean connected links per live peer (each link counted at both ends).
    pub degree_mean: f64,
    /// Mean RTT of the links, ms.
    pub link_rtt_ms_mean: f64,
    /// Median, over (source, peer) pairs, of the shortest path's one-way delay over the
    /// overlay ÷ the direct one-way delay.
    pub path_stretch_p50: f64,
    /// 99th percentile of the same.
    pub path_stretch_p99: f64,
    /// Mean hops on those shortest paths.
    pub path_hops_mean: f64,
    /// (source, peer) pairs the overlay does not connect.
    pub unreachable_pairs: u64,
}

/// Summarises the overlay `links` (the neighbours of each peer, by index; a link held at one
/// end counts as a link) over the live peers, or `None` when there are no links.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn summarize(
    latency: &Latency,
    links: &[Vec<u32>],
    alive: &[bool],
) -> Option<OverlaySummary> {
    let n = links.len();
    let mut adj: Vec<Vec<(u32, u64)>> = vec![Vec::new(); n];
    let mut ends = 0u64;
    let mut rtt_sum = 0f64;
    for (a, ns) in links.iter().enumerate() {
        for &b in ns {
            let b = b as usize;
            if b == a || !alive[a] || !alive[b] || adj[a].iter().any(|&(p, _)| p as usize == b) {
                continue;
            }
            let w = latency.one_way_us(a, b);
            adj[a].push((b as u32, w));
            adj[b].push((a as u32, w));
            ends += 2;
            rtt_sum += latency.rtt_us(a, b) as f64 / 1e3;
        }
    }
    let live: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
    if ends == 0 || live.len() < 2 {
        return None;
    }
    let step = live.len().div_ceil(SOURCES).max(1);
    let mut stretches: Vec<f64> = Vec::new();
    let mut hops_sum = 0u64;
    let mut unreachable = 0u64;
    let mut dist = vec![u64::MAX; n];
    let mut hops = vec![0u32; n];
    let mut heap = BinaryHeap::new();
    for &s in live.iter().step_by(step) {
        dist.fill(u64::MAX);
        dist[s] = 0;
        hops[s] = 0;
        heap.push(Reverse((0u64, s as u32)));
        while let Some(Reverse((d, u))) = heap.pop() {
            let u = u as usize;
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &adj[u] {
                let v = v as usize;
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    hops[v] = hops[u] + 1;
                    heap.push(Reverse((nd, v as u32)));
                }
            }
        }
        for &t in &live {
            if t == s {
                continue;
            }
            if dist[t] == u64::MAX {
                unreachable += 1;
                continue;
            }
            hops_sum += u64::from(hops[t]);
            let direct = latency.one_way_us(s, t);
            if direct > 0 {
                stretches.push(dist[t] as f64 / direct as f64);
            }
        }
    }
    let reached = stretches.len().max(1);
    stretches.sort_by(f64::total_cmp);
    let at = |q: f64| stretches.get(((stretches.len() as f64 - 1.0) * q).round() as usize);
    Some(OverlaySummary {
        degree_mean: ends as f64 / live.len() as f64,
        link_rtt_ms_mean: rtt_sum / (ends / 2) as f64,
        path_stretch_p50: at(0.5).copied().unwrap_or(0.0),
        path_stretch_p99: at(0.99).copied().unwrap_or(0.0),
        path_hops_mean: hops_sum as f64 / reached as f64,
        unreachable_pairs: unreachable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three peers on a line (RTTs 10 + 10 = 20 ms end to end, direct 30 ms) linked a–b–c:
    /// the a–c path goes through b at 20 / 30 of the direct delay.
    #[test]
    fn a_relay_shorter_than_the_direct_path_has_stretch_below_one() {
        let m = vecino_coords::topology::RttMatrix::from_ms(
            3,
            vec![0.0, 10.0, 30.0, 10.0, 0.0, 10.0, 30.0, 10.0, 0.0],
        )
        .unwrap();
        let lat = Latency::Matrix(std::sync::Arc::new(m));
        let links = vec![vec![1], vec![2], vec![]];
        let s = summarize(&lat, &links, &[true; 3]).unwrap();
        assert!((s.degree_mean - 4.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert!((s.link_rtt_ms_mean - 10.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.unreachable_pairs, 0);
        // Pairs (all sources): a-b, b-a, b-c, c-b at 1; a-c, c-a at 20 / 30.
        assert!((s.path_stretch_p50 - 1.0).abs() < 1e-9, "{s:?}");
        assert!((s.path_stretch_p99 - 1.0).abs() < 1e-9, "{s:?}");
        assert!((s.path_hops_mean - 8.0 / 6.0).abs() < 1e-9, "{s:?}");
        // Without b the overlay has no links among the living.
        assert_eq!(summarize(&lat, &links, &[true, false, true]), None);
        // a-b only: c is unreachable from a and b, and a, b from c.
        let s = summarize(&lat, &[vec![1], vec![], vec![]], &[true; 3]).unwrap();
        assert_eq!(s.unreachable_pairs, 4, "{s:?}");
    }
}
