//! What the simulator measures of postcards: each one's plan (author, destination, direct and
//! oracle delays at send time), its delivery (once? in order? how many hops and detours?), its
//! receipt back at the author, and the frames that carried postcards and receipts.
//!
//! The oracle is the shortest path on the live overlay by true delay at the moment the
//! postcard is sent (computed by the run, no traffic): the latency no router on that overlay
//! can beat. Stretch is latency ÷ the direct one-way delay, scored only between peers whose RTT
//! was measured (not filled); "far" pairs are those with an RTT of at least [`FAR_RTT_US`]
//! (1 % of planetlab490's pairs are under 5.8 ms, where any relay is a large stretch).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Pairs at least this far apart (RTT, µs) count as far.
pub(crate) const FAR_RTT_US: u64 = 20_000;
/// A command id with this bit set is a postcard of the run's traffic; the rest numbers it.
const POSTCARD_COMMAND: u64 = 1 << 62;

/// One postcard of the run's traffic.
#[derive(Debug, Clone)]
struct Plan {
    author: u32,
    dest: u32,
    sent_us: u64,
    /// Direct one-way delay (`None`: the pair's RTT was filled, not measured).
    direct_us: Option<u64>,
    /// The oracle's one-way delay (`None`: unreachable on the overlay when sent).
    oracle_us: Option<u64>,
    delivered_us: Option<u64>,
    deliveries: u32,
    hops: u32,
    detours: u32,
    receipt_us: Option<u64>,
    expired: bool,
    /// Sent while a partition cut the pair: when that cut heals.
    heal_us: Option<u64>,
}

/// Postcard measurements of one run.
#[derive(Debug, Default)]
pub(crate) struct PostcardMetrics {
    plans: Vec<Plan>,
    /// Plan index by event key (the first 8 bytes of its id).
    by_key: BTreeMap<u64, u32>,
    /// Per (author, destination): the plan index of the last postcard delivered.
    last_delivered: BTreeMap<(u32, u32), u32>,
    fifo_violations: u64,
    /// Frames that carried a postcard, and a receipt, and their bytes (retransmissions
    /// included).
    postcard_frames: (u64, u64),
    receipt_frames: (u64, u64),
}

/// The postcard figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostcardReport {
    /// Postcards the run asked to send.
    pub planned: u64,
    /// Postcards the authors' engines took (signed and in custody).
    pub sent: u64,
    /// Postcards delivered to their destination.
    pub delivered: u64,
    /// `delivered / sent`.
    pub delivery_ratio: f64,
    /// Deliveries of a postcard already delivered (exactly-once: 0).
    pub duplicate_deliveries: u64,
    /// Deliveries of a postcard before an earlier one of the same author to the same
    /// destination.
    pub fifo_violations: u64,
    /// Postcards their authors were told expired.
    pub expired: u64,
    /// Share of delivered postcards whose every hop followed the link-state shortest path
    /// (no greedy hop, no hop taken again).
    pub without_detours: f64,
    /// Hops of delivered postcards: mean, p50, p99.
    pub hops_mean: f64,
    /// See `hops_mean`.
    pub hops_p50: Option<f64>,
    /// See `hops_mean`.
    pub hops_p99: Option<f64>,
    /// Latency, seconds: p50, p99.
    pub latency_p50_s: Option<f64>,
    /// See `latency_p50_s`.
    pub latency_p99_s: Option<f64>,
    /// Stretch (latency ÷ direct one-way delay) over all measured pairs: p50, p90, p99.
    pub stretch: Option<[f64; 3]>,
    /// The same over far pairs (RTT ≥ 20 ms).
    pub stretch_far: Option<[f64; 3]>,
    /// The oracle's stretch (shortest path on the live overlay by true delay, at send time)
    /// over the same postcards: p50, p90, p99; and over far pairs.
    pub oracle_stretch: Option<[f64; 3]>,
    /// See `oracle_stretch`.
    pub oracle_stretch_far: Option<[f64; 3]>,
    /// Frames that carried postcards (every transmission, retransmissions included) ÷ the
    /// hops of the delivered postcards' paths.
    pub transmissions_per_hop: f64,
    /// Frames and bytes that carried postcards.
    pub postcard_frames: u64,
    /// See `postcard_frames`.
    pub postcard_bytes: u64,
    /// Frames and bytes that carried receipts.
    pub receipt_frames: u64,
    /// See `receipt_frames`.
    pub receipt_bytes: u64,
    /// Receipts back at their authors ÷ postcards sent.
    pub receipt_ratio: f64,
    /// Postcards sent while a partition cut their pair (a convoy's outage).
    pub sent_during_cut: u64,
    /// Of those delivered: delivery after the heal, seconds: p50, p90, p99 and max.
    pub after_heal_s: Option<[f64; 4]>,
    /// Of those whose receipt came back: the receipt after the heal, seconds: p50, p90, p99
    /// and max.
    pub receipt_after_heal_s: Option<[f64; 4]>,
    /// Receipt latency (send to receipt at the author) ÷ direct one-way delay: p50, p99.
    pub receipt_stretch_p50: Option<f64>,
    /// See `receipt_stretch_p50`.
    pub receipt_stretch_p99: Option<f64>,
    /// The five far postcards of largest stretch (what the tail is made of).
    #[serde(default)]
    pub slowest_far: Vec<SlowPostcard>,
}

/// One delivered postcard, for the report's tail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowPostcard {
    /// Author and destination (peer indexes).
    pub author: u32,
    /// See `author`.
    pub dest: u32,
    /// Sent at (s of the run).
    pub sent_s: f64,
    /// Direct one-way delay and the oracle's, ms.
    pub direct_ms: f64,
    /// See `direct_ms` (`None`: no path on the overlay when sent).
    pub oracle_ms: Option<f64>,
    /// Its latency, ms.
    pub latency_ms: f64,
    /// Hops and detours of its path.
    pub hops: u32,
    /// See `hops`.
    pub detours: u32,
}

/// (p50, p90, p99, max) of samples, sorted in place.
fn p4(v: &mut [f64]) -> Option<[f64; 4]> {
    let [a, b, c] = p3(v)?;
    Some([a, b, c, v[v.len() - 1]])
}

/// (p50, p90, p99) of samples, sorted in place.
fn p3(v: &mut [f64]) -> Option<[f64; 3]> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some([at(0.5), at(0.9), at(0.99)])
}

impl PostcardMetrics {
    /// Whether command `id` is a postcard of the run's traffic.
    pub(crate) fn is_postcard(id: u64) -> bool {
        id & POSTCARD_COMMAND != 0
    }

    /// The run sends a postcard from `author` to `dest` at `t_us`: its command id.
    pub(crate) fn planned(
        &mut self,
        t_us: u64,
        author: u32,
        dest: u32,
        direct_us: Option<u64>,
        oracle_us: Option<u64>,
    ) -> u64 {
        let i = self.plans.len() as u64;
        self.plans.push(Plan {
            author,
            dest,
            sent_us: t_us,
            direct_us,
            oracle_us,
            delivered_us: None,
            deliveries: 0,
            hops: 0,
            detours: 0,
            receipt_us: None,
            expired: false,
            heal_us: None,
        });
        POSTCARD_COMMAND | i
    }

    /// Postcard `cmd` was sent while a partition cut its pair, which heals at `heal_us`.
    pub(crate) fn cut(&mut self, cmd: u64, heal_us: u64) {
        let i = (cmd & !POSTCARD_COMMAND) as usize;
        if let Some(p) = self.plans.get_mut(i) {
            p.heal_us = Some(heal_us);
        }
    }

    /// The author's engine took command `cmd` as the event of `key`.
    pub(crate) fn accepted(&mut self, cmd: u64, key: u64) {
        let i = cmd & !POSTCARD_COMMAND;
        if (i as usize) < self.plans.len() {
            self.by_key.insert(key, i as u32);
        }
    }

    /// The postcard of `key` was delivered at `node`.
    pub(crate) fn delivered(&mut self, t_us: u64, node: u32, key: u64, hops: u32, detours: u32) {
        let Some(&i) = self.by_key.get(&key) else { return };
        let p = &mut self.plans[i as usize];
        if p.dest != node {
            return;
        }
        p.deliveries += 1;
        if p.deliveries > 1 {
            return;
        }
        p.delivered_us = Some(t_us);
        p.hops = hops;
        p.detours = detours;
        let last = self.last_delivered.entry((p.author, p.dest)).or_insert(i);
        if i < *last {
            self.fifo_violations += 1;
        } else {
            *last = i;
        }
    }

    /// The receipt of the postcard of `key` came back to its author.
    pub(crate) fn receipt(&mut self, t_us: u64, key: u64) {
        if let Some(&i) = self.by_key.get(&key) {
            self.plans[i as usize].receipt_us.get_or_insert(t_us);
        }
    }

    /// The author of the postcard of `key` was told it expired.
    pub(crate) fn expired(&mut self, key: u64) {
        if let Some(&i) = self.by_key.get(&key) {
            self.plans[i as usize].expired = true;
        }
    }

    /// A frame carrying a postcard (`receipt` false) or a receipt, of `len` bytes, was sent.
    pub(crate) fn frame(&mut self, receipt: bool, len: u64) {
        let c = if receipt { &mut self.receipt_frames } else { &mut self.postcard_frames };
        c.0 += 1;
        c.1 += len;
    }

    /// The report (`None` when the run sent no postcards).
    pub(crate) fn report(&self) -> Option<PostcardReport> {
        if self.plans.is_empty() {
            return None;
        }
        let sent = self.by_key.len() as u64;
        let done: Vec<&Plan> = self.plans.iter().filter(|p| p.delivered_us.is_some()).collect();
        let delivered = done.len() as u64;
        let mut hops: Vec<f64> = done.iter().map(|p| f64::from(p.hops)).collect();
        let hop_sum: f64 = hops.iter().sum();
        let mut latency: Vec<f64> =
            done.iter().map(|p| (p.delivered_us.unwrap_or(0) - p.sent_us) as f64 / 1e6).collect();
        let (mut stretch, mut far, mut oracle, mut oracle_far) = (vec![], vec![], vec![], vec![]);
        for p in &done {
            let Some(direct) = p.direct_us.filter(|d| *d > 0) else { continue };
            let s = (p.delivered_us.unwrap_or(0) - p.sent_us) as f64 / direct as f64;
            let o = p.oracle_us.map(|o| o as f64 / direct as f64);
            stretch.push(s);
            oracle.extend(o);
            if direct * 2 >= FAR_RTT_US {
                far.push(s);
                oracle_far.extend(o);
            }
        }
        let mut receipt: Vec<f64> = self
            .plans
            .iter()
            .filter_map(|p| {
                let direct = p.direct_us.filter(|d| *d > 0)?;
                Some((p.receipt_us? - p.sent_us) as f64 / direct as f64)
            })
            .collect();
        let receipts = self.plans.iter().filter(|p| p.receipt_us.is_some()).count() as f64;
        let after = |at: fn(&Plan) -> Option<u64>| -> Vec<f64> {
            self.plans
                .iter()
                .filter_map(|p| Some(at(p)?.saturating_sub(p.heal_us?) as f64 / 1e6))
                .collect()
        };
        let mut after_heal = after(|p| p.delivered_us);
        let mut receipt_after_heal = after(|p| p.receipt_us);
        let mut slowest: Vec<(f64, SlowPostcard)> = done
            .iter()
            .filter_map(|p| {
                let direct = p.direct_us.filter(|d| *d > 0 && *d * 2 >= FAR_RTT_US)?;
                let latency = p.delivered_us? - p.sent_us;
                let slow = SlowPostcard {
                    author: p.author,
                    dest: p.dest,
                    sent_s: p.sent_us as f64 / 1e6,
                    direct_ms: direct as f64 / 1e3,
                    oracle_ms: p.oracle_us.map(|o| o as f64 / 1e3),
                    latency_ms: latency as f64 / 1e3,
                    hops: p.hops,
                    detours: p.detours,
                };
                Some((latency as f64 / direct as f64, slow))
            })
            .collect();
        slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        slowest.truncate(5);
        let hop_p = p3(&mut hops);
        let lat = p3(&mut latency);
        let rec = p3(&mut receipt);
        Some(PostcardReport {
            planned: self.plans.len() as u64,
            sent,
            delivered,
            delivery_ratio: delivered as f64 / sent.max(1) as f64,
            duplicate_deliveries: done.iter().map(|p| u64::from(p.deliveries - 1)).sum(),
            fifo_violations: self.fifo_violations,
            expired: self.plans.iter().filter(|p| p.expired).count() as u64,
            without_detours: done.iter().filter(|p| p.detours == 0).count() as f64
                / delivered.max(1) as f64,
            hops_mean: hop_sum / delivered.max(1) as f64,
            hops_p50: hop_p.map(|p| p[0]),
            hops_p99: hop_p.map(|p| p[2]),
            latency_p50_s: lat.map(|p| p[0]),
            latency_p99_s: lat.map(|p| p[2]),
            stretch: p3(&mut stretch),
            stretch_far: p3(&mut far),
            oracle_stretch: p3(&mut oracle),
            oracle_stretch_far: p3(&mut oracle_far),
            transmissions_per_hop: self.postcard_frames.0 as f64 / hop_sum.max(1.0),
            postcard_frames: self.postcard_frames.0,
            postcard_bytes: self.postcard_frames.1,
            receipt_frames: self.receipt_frames.0,
            receipt_bytes: self.receipt_frames.1,
            receipt_ratio: receipts / sent.max(1) as f64,
            sent_during_cut: self.plans.iter().filter(|p| p.heal_us.is_some()).count() as u64,
            after_heal_s: p4(&mut after_heal),
            receipt_after_heal_s: p4(&mut receipt_after_heal),
            receipt_stretch_p50: rec.map(|p| p[0]),
            receipt_stretch_p99: rec.map(|p| p[2]),
            slowest_far: slowest.into_iter().map(|(_, s)| s).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deliveries are counted once, out-of-order ones and duplicates counted, far pairs
    /// separated, and transmissions divided by the hops of delivered postcards.
    #[test]
    fn postcard_figures_follow_their_plans() {
        let mut m = PostcardMetrics::default();
        let a = m.planned(0, 0, 1, Some(50_000), Some(55_000));
        let b = m.planned(10, 0, 1, Some(2_000), Some(2_000));
        let c = m.planned(20, 2, 3, Some(20_000), None);
        assert!(PostcardMetrics::is_postcard(a) && !PostcardMetrics::is_postcard(0));
        for (cmd, key) in [(a, 1), (b, 2), (c, 3)] {
            m.accepted(cmd, key);
        }
        m.delivered(100_010, 1, 2, 1, 0); // b first
        m.delivered(60_000, 1, 1, 2, 1); // then a: out of order
        m.delivered(70_000, 1, 1, 2, 1); // a again
        m.delivered(1, 9, 3, 1, 0); // not its destination
        m.receipt(120_000, 1);
        for _ in 0..6 {
            m.frame(false, 300);
        }
        m.frame(true, 200);
        let r = m.report().expect("postcards were sent");
        assert_eq!((r.planned, r.sent, r.delivered), (3, 3, 2));
        assert_eq!((r.duplicate_deliveries, r.fifo_violations), (1, 1));
        assert_eq!(r.without_detours, 0.5);
        assert_eq!(r.transmissions_per_hop, 2.0);
        assert_eq!(r.stretch_far.map(|s| s[0]), Some(1.2), "a: 60 ms over 50 ms");
        assert_eq!(r.oracle_stretch_far.map(|s| s[0]), Some(1.1));
        assert_eq!(r.receipt_stretch_p50, Some(2.4));
        assert_eq!((r.receipt_frames, r.receipt_bytes), (1, 200));
    }
}
