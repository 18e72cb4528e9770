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
    /// overlay ÷ the direct one-way delay (pairs whose direct delay was filled, missing in
    /// the matrix, are left out of this and of the hops).
    pub path_stretch_p50: f64,
    /// 99th percentile of the same.
    pub path_stretch_p99: f64,
    /// Mean hops on those shortest paths.
    pub path_hops_mean: f64,
    /// (source, peer) pairs the overlay does not connect.
    pub unreachable_pairs: u64,
    /// Median, over the deliveries of posts (of up to [`SOURCES`] authors), of the post's
    /// latency ÷ the shortest path's one-way delay from its author over this overlay: how
    /// much slower than the overlay allows the trees and the queues carried it (1: as fast).
    #[serde(default)]
    pub posts_over_paths_p50: f64,
    /// 99th percentile of the same.
    #[serde(default)]
    pub posts_over_paths_p99: f64,
    /// Mean hops those deliveries took from their author…
    #[serde(default)]
    pub post_hops_mean: f64,
    /// …and the mean hops of the shortest paths to the same peers.
    #[serde(default)]
    pub post_path_hops_mean: f64,
}

/// One post's arrivals, as the metrics keep them: its author, when it was published, and
/// when each peer first held it (ms from the start + 1; `u32::MAX`: never).
pub(crate) struct Arrivals<'a> {
    pub author: u32,
    pub published_us: u64,
    pub at_ms: &'a [u32],
    pub hop: &'a [u8],
}

/// The overlay's links among the live peers, weighted by one-way delay (µs).
struct Graph {
    adj: Vec<Vec<(u32, u64)>>,
    ends: u64,
    rtt_ms_sum: f64,
}

impl Graph {
    fn new(latency: &Latency, links: &[Vec<u32>], alive: &[bool]) -> Self {
        let n = links.len();
        let mut g = Self { adj: vec![Vec::new(); n], ends: 0, rtt_ms_sum: 0.0 };
        for (a, ns) in links.iter().enumerate() {
            for &b in ns {
                let b = b as usize;
                if b == a
                    || !alive[a]
                    || !alive[b]
                    || g.adj[a].iter().any(|&(p, _)| p as usize == b)
                {
                    continue;
                }
                let w = latency.one_way_us(a, b);
                g.adj[a].push((b as u32, w));
                g.adj[b].push((a as u32, w));
                g.ends += 2;
                g.rtt_ms_sum += latency.rtt_us(a, b) as f64 / 1e3;
            }
        }
        g
    }

    /// Dijkstra from `s`: the least one-way delay to every peer (`u64::MAX`: unreachable) and
    /// the hops of that path.
    fn shortest(&self, s: usize, dist: &mut Vec<u64>, hops: &mut Vec<u32>) {
        dist.clear();
        dist.resize(self.adj.len(), u64::MAX);
        hops.clear();
        hops.resize(self.adj.len(), 0);
        dist[s] = 0;
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0u64, s as u32)));
        while let Some(Reverse((d, u))) = heap.pop() {
            let u = u as usize;
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &self.adj[u] {
                let v = v as usize;
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    hops[v] = hops[u] + 1;
                    heap.push(Reverse((nd, v as u32)));
                }
            }
        }
    }
}

/// Summarises the overlay `links` (the neighbours of each peer, by index; a link held at one
/// end counts as a link) over the live peers, or `None` when there are no links. `posts`
/// (up to [`SOURCES`] authors of them) are measured against the same shortest paths: how
/// much slower than the overlay allows they arrived (the trees' and the queues' share).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn summarize<'a>(
    latency: &Latency,
    links: &[Vec<u32>],
    alive: &[bool],
    posts: impl Iterator<Item = Arrivals<'a>>,
) -> Option<OverlaySummary> {
    let n = links.len();
    let g = Graph::new(latency, links, alive);
    let live: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
    if g.ends == 0 || live.len() < 2 {
        return None;
    }
    let step = live.len().div_ceil(SOURCES).max(1);
    let mut stretches: Vec<f64> = Vec::new();
    let mut hops_sum = 0u64;
    let mut unreachable = 0u64;
    let (mut dist, mut hops) = (Vec::new(), Vec::new());
    for &s in live.iter().step_by(step) {
        g.shortest(s, &mut dist, &mut hops);
        for &t in &live {
            if t == s {
                continue;
            }
            if dist[t] == u64::MAX {
                unreachable += 1;
                continue;
            }
            // A pair whose direct delay was filled (missing in the matrix) is not scored.
            if !latency.is_measured(s, t) {
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
    let (p50, p99) = percentiles(&mut stretches);
    let posts = posts_over_paths(&g, alive, posts);
    Some(OverlaySummary {
        degree_mean: g.ends as f64 / live.len() as f64,
        link_rtt_ms_mean: g.rtt_ms_sum / (g.ends / 2) as f64,
        path_stretch_p50: p50,
        path_stretch_p99: p99,
        path_hops_mean: hops_sum as f64 / reached as f64,
        unreachable_pairs: unreachable,
        posts_over_paths_p50: posts.0,
        posts_over_paths_p99: posts.1,
        post_hops_mean: posts.2,
        post_path_hops_mean: posts.3,
    })
}

/// Each delivery of the posts of up to [`SOURCES`] authors, against the shortest path from
/// its author over the overlay: (p50, p99 of latency ÷ path delay, mean hops the post took,
/// mean hops of those paths). Paths under 1 ms are left out (latencies are kept to the ms).
#[allow(clippy::cast_precision_loss)]
fn posts_over_paths<'a>(
    g: &Graph,
    alive: &[bool],
    posts: impl Iterator<Item = Arrivals<'a>>,
) -> (f64, f64, f64, f64) {
    let mut by_author: std::collections::BTreeMap<u32, Vec<Arrivals<'a>>> = Default::default();
    for p in posts {
        if alive[p.author as usize]
            && (by_author.len() < SOURCES || by_author.contains_key(&p.author))
        {
            by_author.entry(p.author).or_default().push(p);
        }
    }
    let mut ratios = Vec::new();
    let (mut hops_taken, mut hops_path, mut counted) = (0u64, 0u64, 0u64);
    let (mut dist, mut hops) = (Vec::new(), Vec::new());
    for (&author, posts) in &by_author {
        g.shortest(author as usize, &mut dist, &mut hops);
        for p in posts {
            for (t, &at) in p.at_ms.iter().enumerate() {
                if t == author as usize || !alive[t] || at == u32::MAX || dist[t] == u64::MAX {
                    continue;
                }
                if dist[t] >= 1_000 {
                    let latency_us = (u64::from(at) - 1) * 1_000;
                    let latency_us = latency_us.saturating_sub(p.published_us);
                    ratios.push(latency_us as f64 / dist[t] as f64);
                }
                if let Some(&h) = p.hop.get(t).filter(|&&h| h != u8::MAX) {
                    hops_taken += u64::from(h);
                    hops_path += u64::from(hops[t]);
                    counted += 1;
                }
            }
        }
    }
    let (p50, p99) = percentiles(&mut ratios);
    let c = counted.max(1) as f64;
    (p50, p99, hops_taken as f64 / c, hops_path as f64 / c)
}

/// (p50, p99) of `v` (0 when empty).
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn percentiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied();
    (at(0.5).unwrap_or(0.0), at(0.99).unwrap_or(0.0))
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
        let s = summarize(&lat, &links, &[true; 3], std::iter::empty()).unwrap();
        assert!((s.degree_mean - 4.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert!((s.link_rtt_ms_mean - 10.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.unreachable_pairs, 0);
        // Pairs (all sources): a-b, b-a, b-c, c-b at 1; a-c, c-a at 20 / 30.
        assert!((s.path_stretch_p50 - 1.0).abs() < 1e-9, "{s:?}");
        assert!((s.path_stretch_p99 - 1.0).abs() < 1e-9, "{s:?}");
        assert!((s.path_hops_mean - 8.0 / 6.0).abs() < 1e-9, "{s:?}");
        // Without b the overlay has no links among the living.
        assert_eq!(summarize(&lat, &links, &[true, false, true], std::iter::empty()), None);
        // a-b only: c is unreachable from a and b, and a, b from c.
        let s =
            summarize(&lat, &[vec![1], vec![], vec![]], &[true; 3], std::iter::empty()).unwrap();
        assert_eq!(s.unreachable_pairs, 4, "{s:?}");
    }
}
