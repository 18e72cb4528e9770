//! A token bucket that paces what leaves a link, or the node's uplink.
//!
//! Whatever leaves waits in the host's (or the network's) FIFO queue, where priorities no longer
//! apply, so a pacer lets out only a short burst at once; frames beyond it wait in the engine's
//! priority queues. The balance is an integer, so pacing is exact and deterministic: refilling
//! in several steps or in one gives the same balance.

use std::time::Duration;

use crate::time::Time;

/// Microseconds of rate a pacer lets leave at once. Whatever leaves waits in the host's (or
/// the network's) FIFO queue, where priorities no longer apply: a post sent after a 200 ms
/// burst of membership waits 200 ms at every hop.
const BURST_US: i128 = 20_000;
/// Smallest burst, bytes (so a slow link still sends a full frame at once).
pub(crate) const MIN_BURST_BYTES: i128 = 2_048;
/// A pacer's unit of balance: a byte is this many (bits × µs), so that `rate_bps` adds
/// exactly one unit per bit/s per µs and the balance is kept in integers.
const UNITS_PER_BYTE: i128 = 8_000_000;

/// A token bucket: `rate_bps` refills it, bursts up to `BURST_US` of rate (at least
/// `MIN_BURST_BYTES`) leave at once, and a frame may leave while the balance is positive (it
/// may go negative by one frame). The balance is an integer, so refilling in several steps
/// or in one gives the same balance: a pacer need not be refilled while nothing waits.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    rate_bps: Option<u64>,
    /// Balance in [`UNITS_PER_BYTE`] units.
    tokens: i128,
    at: Time,
}

impl Pacer {
    pub(crate) fn new(rate_bps: Option<u64>, now: Time) -> Self {
        Self { rate_bps, tokens: 0, at: now }
    }

    /// The balance at `now` (not before the last refill).
    fn balance(&self, now: Time) -> i128 {
        let Some(rate) = self.rate_bps else { return self.tokens };
        let rate = i128::from(rate);
        let cap = (rate * BURST_US).max(MIN_BURST_BYTES * UNITS_PER_BYTE);
        let dt = i128::try_from(now.saturating_since(self.at).as_micros()).unwrap_or(i128::MAX);
        self.tokens.saturating_add(dt.saturating_mul(rate)).min(cap).max(self.tokens)
    }

    /// The rate, if paced.
    pub(crate) fn rate_bps(&self) -> Option<u64> {
        self.rate_bps
    }

    pub(crate) fn refill(&mut self, now: Time) {
        self.tokens = self.balance(now);
        self.at = self.at.max(now);
    }

    /// Sets the rate from `now` on (what was earned before at the old rate is kept).
    pub(crate) fn set_rate(&mut self, rate_bps: Option<u64>, now: Time) {
        self.refill(now);
        self.rate_bps = rate_bps;
    }

    pub(crate) fn allows(&self) -> bool {
        self.rate_bps.is_none() || self.tokens > 0
    }

    pub(crate) fn spend(&mut self, bytes: usize) {
        if self.rate_bps.is_some() {
            let bytes = i128::try_from(bytes).unwrap_or(i128::MAX);
            self.tokens = self.tokens.saturating_sub(bytes.saturating_mul(UNITS_PER_BYTE));
        }
    }

    /// How long after `now` the bucket holds a byte again (zero if a frame may leave now),
    /// rounded up to the microsecond.
    pub(crate) fn wait(&self, now: Time) -> Duration {
        let tokens = self.balance(now);
        match self.rate_bps {
            Some(rate) if rate > 0 && tokens <= 0 => {
                // Positive: the balance is at most zero.
                let short = u128::try_from(UNITS_PER_BYTE - tokens).unwrap_or(u128::MAX);
                let us = short.div_ceil(u128::from(rate));
                Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The balance is exact: refilled in many small steps or once, a bucket holds the same,
    /// and a frame waits exactly as long as its bytes take at the rate.
    #[test]
    fn refilling_in_steps_or_at_once_gives_the_same_balance() {
        let mut steps = Pacer::new(Some(1_000_000), Time(0));
        let mut once = Pacer::new(Some(1_000_000), Time(0));
        for p in [&mut steps, &mut once] {
            p.spend(10_000); // 80 ms of rate owed
        }
        for t in (0..=40_000).step_by(7) {
            steps.refill(Time(t));
        }
        steps.refill(Time(40_000));
        once.refill(Time(40_000));
        assert_eq!(steps.wait(Time(40_000)), once.wait(Time(40_000)));
        assert!(!once.allows());
        // 10 000 B at 1 Mbit/s is 80 ms; 40 ms paid back, 40 ms and one byte's worth to go.
        assert_eq!(once.wait(Time(40_000)), Duration::from_micros(40_008));
        once.refill(Time(80_008));
        assert!(once.allows());
    }

    /// An unpaced bucket always allows; a burst is capped, so a long idle spell does not let
    /// a flood out at once.
    #[test]
    fn unpaced_always_allows_and_bursts_are_capped() {
        let mut free = Pacer::new(None, Time(0));
        free.spend(1 << 30);
        assert!(free.allows());
        assert_eq!(free.wait(Time(0)), Duration::ZERO);
        let mut p = Pacer::new(Some(8_000), Time(0)); // 1 000 B/s: the 2 048 B floor applies
        p.refill(Time(3_600_000_000));
        p.spend(2_048);
        assert!(!p.allows(), "an hour idle still lets out one burst only");
    }
}
