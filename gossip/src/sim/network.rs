//! The network model: serialisation delay and FIFO queueing on each medium, propagation, loss.
//!
//! A frame sent at `now` on a medium that is busy until `busy` starts at `max(now, busy)`,
//! occupies the medium for `bytes × 8 / rate` and arrives one propagation delay (RTT / 2) after
//! its last bit left. The medium is a peer's uplink, a directed pair's line, or a group's shared
//! radio (one transmission occupies it for every member). Since frames enter a medium in time
//! order, keeping `busy` per medium is an exact FIFO queue: no event per dequeue is needed.
//! The backlog is bounded in bytes (tail drop). A lost frame still occupies the medium: it was
//! transmitted, and vanished on the way. Partitions are checked by the simulator on arrival.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::scenario::{LinkModel, Loss, RateScope};

/// What happened to a frame handed to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transmit {
    /// It arrives at this time (µs).
    Arrives(u64),
    /// The medium's queue was full: dropped before transmission.
    QueueFull,
    /// Transmitted, and lost on the way.
    Lost,
}

/// Counters of the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetStats {
    pub(crate) queue_drops: u64,
    pub(crate) lost: u64,
    /// Largest backlog seen on any medium, bytes (including the frame being queued).
    pub(crate) max_backlog_bytes: u64,
}

/// The state of every medium.
#[derive(Debug)]
pub(crate) struct Network {
    model: LinkModel,
    /// Busy-until (µs) per uplink (by peer) or radio (by group).
    busy: Vec<u64>,
    /// Busy-until (µs) per directed pair, for [`RateScope::Pair`].
    pair_busy: HashMap<(u32, u32), u64>,
    /// Bytes transmitted per uplink or radio.
    pub(crate) medium_bytes: Vec<u64>,
    /// Directed pairs in the bad Gilbert–Elliott state.
    bad: HashMap<(u32, u32), bool>,
    /// Loss draws: one stream per sender (made on its first draw), so that a sender's
    /// losses do not depend on what other senders drew before (or on another thread).
    rngs: Vec<Option<ChaCha8Rng>>,
    seed: u64,
    pub(crate) stats: NetStats,
    /// When the last frame handed to `transmit` finished leaving its medium (µs; the time
    /// it was handed if it was dropped before).
    pub(crate) last_done: u64,
    /// With delay noise, when the last frame of each directed pair arrives (µs; FIFO). One
    /// entry per pair that ever carried a frame: bounded by the links the scenario makes.
    arrivals: HashMap<(u32, u32), u64>,
}

impl Network {
    /// A network of `media` uplinks or radios.
    pub(crate) fn new(model: LinkModel, media: usize, seed: u64) -> Self {
        Self {
            model,
            busy: vec![0; media],
            pair_busy: HashMap::new(),
            medium_bytes: vec![0; media],
            bad: HashMap::new(),
            rngs: Vec::new(),
            seed,
            stats: NetStats::default(),
            last_done: 0,
            arrivals: HashMap::new(),
        }
    }

    /// Serialisation time of `bytes` on the link, µs (rounded up).
    pub(crate) fn serialisation_us(&self, bytes: u64) -> u64 {
        match self.model.rate_bps {
            Some(rate) if rate > 0 => {
                let bits = (bytes + u64::from(self.model.frame_overhead_bytes)) * 8;
                (bits * 1_000_000).div_ceil(rate)
            }
            _ => 0,
        }
    }

    /// Hands a frame of `bytes` from `from` to `to` to the network at `now` (µs); `medium` is
    /// the sender's uplink or radio index, `prop_us` the one-way delay.
    pub(crate) fn transmit(
        &mut self,
        now: u64,
        from: u32,
        to: u32,
        medium: usize,
        bytes: u64,
        prop_us: u64,
    ) -> Transmit {
        let busy = match self.model.scope {
            RateScope::Pair => *self.pair_busy.entry((from, to)).or_insert(0),
            RateScope::Uplink | RateScope::SharedRadio => self.busy[medium],
        };
        let Some(done) = self.occupy(now, busy, medium, bytes) else {
            return Transmit::QueueFull;
        };
        match self.model.scope {
            RateScope::Pair => {
                self.pair_busy.insert((from, to), done);
            }
            RateScope::Uplink | RateScope::SharedRadio => self.busy[medium] = done,
        }
        if self.lost(from, to) {
            return Transmit::Lost;
        }
        let noise = self.model.noise;
        if !noise.is_on() {
            return Transmit::Arrives(done + prop_us);
        }
        let mut factor = 1.0 + noise.jitter * (2.0 * self.unit(from) - 1.0);
        if self.unit(from) < noise.spike_share {
            factor *= noise.spike_factor;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let at = done + (prop_us as f64 * factor.max(0.0)).round() as u64;
        let last = self.arrivals.entry((from, to)).or_insert(0);
        *last = (*last).max(at);
        Transmit::Arrives(*last)
    }

    /// Hands a broadcast of `bytes` to the radio `medium` at `now` (µs): it occupies the
    /// medium once. Returns when its last bit left, or `None` if the queue was full; each
    /// listener then draws its own loss ([`Self::lost`]).
    pub(crate) fn broadcast(&mut self, now: u64, medium: usize, bytes: u64) -> Option<u64> {
        let busy = *self.busy.get(medium)?;
        let done = self.occupy(now, busy, medium, bytes)?;
        self.busy[medium] = done;
        Some(done)
    }

    /// A frame of `bytes` enters a medium busy until `busy` at `now`: when its last bit
    /// leaves, or `None` if it would overflow the medium's queue (counted). The caller keeps
    /// the medium busy until then.
    fn occupy(&mut self, now: u64, busy: u64, medium: usize, bytes: u64) -> Option<u64> {
        let start = busy.max(now);
        if let Some(rate) = self.model.rate_bps.filter(|&r| r > 0) {
            let waiting = (start - now).saturating_mul(rate) / 8_000_000;
            let backlog = waiting + bytes;
            if backlog > self.model.queue_bytes {
                self.stats.queue_drops += 1;
                self.last_done = now;
                return None;
            }
            self.stats.max_backlog_bytes = self.stats.max_backlog_bytes.max(backlog);
        }
        let done = start + self.serialisation_us(bytes);
        self.last_done = done;
        if let Some(b) = self.medium_bytes.get_mut(medium) {
            *b += bytes + u64::from(self.model.frame_overhead_bytes);
        }
        Some(done)
    }

    /// Whether a frame from `from` is lost on its way to `to` (counted).
    pub(crate) fn lost(&mut self, from: u32, to: u32) -> bool {
        let lost = self.lose(from, to);
        if lost {
            self.stats.lost += 1;
        }
        lost
    }

    fn lose(&mut self, from: u32, to: u32) -> bool {
        match self.model.loss {
            Loss::None => false,
            Loss::Bernoulli { p } => p > 0.0 && self.unit(from) < p,
            Loss::Bursty { p_bad, p_good, loss_good, loss_bad } => {
                let u = self.unit(from);
                let v = self.unit(from);
                let bad = self.bad.entry((from, to)).or_insert(false);
                *bad = if *bad { u >= p_good } else { u < p_bad };
                v < if *bad { loss_bad } else { loss_good }
            }
        }
    }

    /// A uniform draw in [0, 1) from `from`'s stream.
    fn unit(&mut self, from: u32) -> f64 {
        let i = from as usize;
        if self.rngs.len() <= i {
            self.rngs.resize_with(i + 1, || None);
        }
        let seed = self.seed;
        let rng = self.rngs[i].get_or_insert_with(|| {
            ChaCha8Rng::seed_from_u64(crate::sim::mix(seed ^ u64::from(from)))
        });
        (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(rate: u64, scope: RateScope, loss: Loss) -> LinkModel {
        LinkModel {
            rate_bps: Some(rate),
            scope,
            queue_bytes: 10_000,
            loss,
            frame_overhead_bytes: 0,
            host_queue_bytes: None,
            broadcast: false,
            noise: crate::sim::scenario::DelayNoise::default(),
        }
    }

    #[test]
    fn serialisation_and_queueing_arithmetic() {
        // 1000 B at 80 kbit/s = 100 ms on the wire; 20 ms propagation.
        let mut net = Network::new(model(80_000, RateScope::Uplink, Loss::None), 2, 1);
        assert_eq!(net.serialisation_us(1000), 100_000);
        assert_eq!(net.transmit(0, 0, 1, 0, 1000, 20_000), Transmit::Arrives(120_000));
        // Queued behind the first: starts at 100 ms.
        assert_eq!(net.transmit(10_000, 0, 1, 0, 1000, 20_000), Transmit::Arrives(220_000));
        // Another uplink is independent.
        assert_eq!(net.transmit(10_000, 1, 0, 1, 1000, 20_000), Transmit::Arrives(130_000));
        // After the medium went idle, no queueing.
        assert_eq!(net.transmit(500_000, 0, 1, 0, 500, 0), Transmit::Arrives(550_000));
        // Rounded up: 1 B at 3 bit/s.
        let net = Network::new(model(3, RateScope::Uplink, Loss::None), 1, 1);
        assert_eq!(net.serialisation_us(1), 2_666_667);
    }

    #[test]
    fn queue_bound_drops_the_tail() {
        let mut net = Network::new(model(80_000, RateScope::Uplink, Loss::None), 1, 1);
        let mut arrived = 0;
        for _ in 0..20 {
            if let Transmit::Arrives(_) = net.transmit(0, 0, 1, 0, 1000, 0) {
                arrived += 1;
            }
        }
        // 10 000 B of queue: ten frames (the one on the wire counts).
        assert_eq!(arrived, 10);
        assert_eq!(net.stats.queue_drops, 10);
        assert!(net.stats.max_backlog_bytes <= 10_000);
    }

    #[test]
    fn pair_lines_are_independent_and_radio_is_shared() {
        let mut net = Network::new(model(80_000, RateScope::Pair, Loss::None), 0, 1);
        assert_eq!(net.transmit(0, 0, 1, 0, 1000, 0), Transmit::Arrives(100_000));
        assert_eq!(net.transmit(0, 0, 2, 0, 1000, 0), Transmit::Arrives(100_000));
        assert_eq!(net.transmit(0, 0, 1, 0, 1000, 0), Transmit::Arrives(200_000));
        // A radio shared by peers 0 and 1 (medium 0): 1's frame waits for 0's.
        let mut net = Network::new(model(80_000, RateScope::SharedRadio, Loss::None), 1, 1);
        assert_eq!(net.transmit(0, 0, 2, 0, 1000, 0), Transmit::Arrives(100_000));
        assert_eq!(net.transmit(0, 1, 3, 0, 1000, 0), Transmit::Arrives(200_000));
        assert_eq!(net.medium_bytes[0], 2000);
    }

    #[test]
    fn loss_rates_within_bounds() {
        let n = 100_000u32;
        let unpaced = |loss| LinkModel { rate_bps: None, ..model(1, RateScope::Uplink, loss) };
        let mut net = Network::new(unpaced(Loss::Bernoulli { p: 0.05 }), 1, 7);
        let lost = (0..n).filter(|_| net.transmit(0, 0, 1, 0, 1, 0) == Transmit::Lost).count();
        let rate = lost as f64 / f64::from(n);
        assert!((0.045..0.055).contains(&rate), "bernoulli loss {rate}");

        let bursty = Loss::Bursty { p_bad: 0.01, p_good: 0.1, loss_good: 0.0, loss_bad: 0.5 };
        let mean = bursty.mean();
        let mut net = Network::new(unpaced(bursty), 1, 7);
        let outcomes: Vec<bool> =
            (0..n).map(|_| net.transmit(0, 0, 1, 0, 1, 0) == Transmit::Lost).collect();
        let rate = outcomes.iter().filter(|l| **l).count() as f64 / f64::from(n);
        assert!((mean * 0.8..mean * 1.2).contains(&rate), "bursty loss {rate}, mean {mean}");
        // Bursty: a loss is far more likely right after a loss than on average.
        let after_loss = outcomes.windows(2).filter(|w| w[0]).count() as f64;
        let both = outcomes.windows(2).filter(|w| w[0] && w[1]).count() as f64;
        assert!(both / after_loss > 3.0 * rate, "no bursts: {}", both / after_loss);
    }

    /// Delay noise: delays within ±jitter, a share of spikes at the factor, and a directed
    /// pair stays FIFO.
    #[test]
    fn delay_noise_jitters_spikes_and_keeps_each_pair_in_order() {
        let noise =
            crate::sim::scenario::DelayNoise { jitter: 0.1, spike_share: 0.05, spike_factor: 3.0 };
        let noisy = LinkModel { rate_bps: None, noise, ..model(1, RateScope::Uplink, Loss::None) };
        let mut net = Network::new(noisy, 1, 7);
        let n = 20_000u64;
        let (mut spikes, mut last) = (0u64, 0);
        for k in 0..n {
            let sent = k * 1_000_000; // far apart: FIFO never holds one back
            let Transmit::Arrives(at) = net.transmit(sent, 0, 1, 0, 1, 10_000) else {
                panic!("no loss configured")
            };
            let delay = at - sent;
            assert!(at >= last, "out of order");
            last = at;
            if delay > 20_000 {
                spikes += 1;
                assert!((27_000..=33_000).contains(&delay), "spike {delay}");
            } else {
                assert!((9_000..=11_000).contains(&delay), "jitter {delay}");
            }
        }
        let share = spikes as f64 / n as f64;
        assert!((0.04..0.06).contains(&share), "spikes {share}");
        // Back to back: a spike holds back the frame after it.
        let mut held = 0;
        for k in 0..1_000u64 {
            let (a, b) = (
                net.transmit(k * 1_000_000, 0, 1, 0, 1, 10_000),
                net.transmit(k * 1_000_000 + 1, 0, 1, 0, 1, 10_000),
            );
            let (Transmit::Arrives(a), Transmit::Arrives(b)) = (a, b) else { panic!() };
            assert!(b >= a);
            held += u64::from(b == a);
        }
        assert!(held > 0, "no frame was held behind a slower one");
    }
}
