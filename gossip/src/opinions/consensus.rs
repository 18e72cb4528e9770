//! Consensus over the observers' latest claims: a pure function of the latest-value map (the
//! claims, each with its observer's clout), so that any two peers holding the same claims
//! with the same weights agree, whatever order the claims arrived in.
//!
//! - **Fields** (restarts, start, uptime, RTT): the clout-weighted lower median, the start
//!   and uptime over the claims that do not deny the subject's own signed start. Its
//!   breakdown point is half the weight: claims holding less than half of the total weight
//!   cannot move it outside the range of the others (nara's trimmed mean keeps values within
//!   ×5 of the median, so for timestamps it is a plain mean: 10 % of observers claiming
//!   "+1 h" move it by 360 s).
//! - **Online**: a clout-weighted vote. A claim "down" counts only if it is newer than the
//!   subject's own newest word (a peer that spoke after the claim was made is not down); the
//!   subject is *offline* when the weight saying down exceeds the weight saying up (or it said
//!   chau), and no observer this peer cannot reach still says up: a subject that vanished
//!   together with the observers that vouch for it was cut off with them (a partition), not
//!   crashed. (Two linked peers crashing together therefore read unreachable, not offline,
//!   until one of them comes back.) Otherwise it is *online* when this peer can reach it (its own link is connected,
//!   or a path of links that both ends list leads to it) or, when it is outside the known
//!   graph, when the weight saying up exceeds the weight saying down; and *unreachable* when
//!   not: alive by the others' word, cut off from this side (a partition cuts the links
//!   across, and the links the other side lists cannot cross the cut to deny it).

/// One observer's latest claim about one subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Claim {
    /// The observer's clout in this peer's eyes (≥ 0).
    pub(crate) weight: f64,
    /// The observer says the subject is online.
    pub(crate) online: bool,
    /// Restarts the observer saw.
    pub(crate) restarts: u32,
    /// The subject's current run began then (ms since the epoch), 0 if the observer does not
    /// know.
    pub(crate) started_ms: u64,
    /// The subject's uptime as of now (s), projected from the claim's time; `None` for a
    /// claim "down".
    pub(crate) uptime_s: Option<u64>,
    /// RTT the observer measured (µs), 0 if none.
    pub(crate) rtt_us: u32,
    /// Its start (and uptime) deny the subject's own signed start: left out of their medians.
    pub(crate) denies_start: bool,
    /// When the claim was made (ms, its event's HLC).
    pub(crate) at_ms: u64,
    /// This peer can reach the observer (or is it): were it to change its mind, it would
    /// hear.
    pub(crate) heard: bool,
    /// A tie-breaker that orders equal values (the observer's key prefix).
    pub(crate) order: u64,
}

/// What the claims about one subject say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tally {
    /// Weight of the claims "up".
    pub(crate) up: f64,
    /// Of `up`, the weight of observers this peer cannot reach.
    pub(crate) up_cut: f64,
    /// Weight of the claims "down" that stand (newer than the subject's own last word).
    pub(crate) down: f64,
    /// Weighted median of the restarts.
    pub(crate) restarts: Option<u32>,
    /// Weighted median of the start (claims that know it).
    pub(crate) started_ms: Option<u64>,
    /// Weighted median of the uptime (claims "up").
    pub(crate) uptime_s: Option<u64>,
    /// Weighted median of the RTTs measured.
    pub(crate) rtt_us: Option<u32>,
}

impl Tally {
    /// The weight saying down exceeds the weight saying up, and nobody out of reach says up.
    pub(crate) fn down_wins(&self) -> bool {
        self.down > 0.0 && self.down > self.up && self.up_cut <= 0.0
    }
}

/// The clout-weighted lower median of `values` (value, weight, tie-breaker): the least value
/// at which the weight at or below it reaches half the total. `None` when nothing weighs.
pub(crate) fn weighted_median<T: Copy + Ord>(values: &mut Vec<(T, f64, u64)>) -> Option<T> {
    values.retain(|v| v.1 > 0.0 && v.1.is_finite());
    let total: f64 = values.iter().map(|v| v.1).sum();
    if total <= 0.0 {
        return None;
    }
    values.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    let mut acc = 0.0;
    for v in values.iter() {
        acc += v.1;
        if acc * 2.0 >= total {
            return Some(v.0);
        }
    }
    values.last().map(|v| v.0)
}

/// Tallies the claims about one subject whose own newest event was made at `spoke_ms`.
pub(crate) fn tally(claims: &[Claim], spoke_ms: u64) -> Tally {
    let (mut up, mut up_cut, mut down) = (0.0, 0.0, 0.0);
    let (mut restarts, mut started, mut uptime, mut rtt) = (vec![], vec![], vec![], vec![]);
    for c in claims {
        let w = if c.weight.is_finite() { c.weight.max(0.0) } else { 0.0 };
        if c.online {
            up += w;
            if !c.heard {
                up_cut += w;
            }
            if let Some(u) = c.uptime_s.filter(|_| !c.denies_start) {
                uptime.push((u, w, c.order));
            }
        } else if c.at_ms > spoke_ms {
            down += w;
        }
        restarts.push((c.restarts, w, c.order));
        if c.started_ms > 0 && !c.denies_start {
            started.push((c.started_ms, w, c.order));
        }
        if c.rtt_us > 0 {
            rtt.push((c.rtt_us, w, c.order));
        }
    }
    Tally {
        up,
        up_cut,
        down,
        restarts: weighted_median(&mut restarts),
        started_ms: weighted_median(&mut started),
        uptime_s: weighted_median(&mut uptime),
        rtt_us: weighted_median(&mut rtt),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn claim(weight: f64, online: bool, started_ms: u64, order: u64) -> Claim {
        Claim {
            weight,
            online,
            restarts: 0,
            started_ms,
            uptime_s: online.then_some(100),
            rtt_us: 0,
            denies_start: false,
            at_ms: 10,
            heard: true,
            order,
        }
    }

    #[test]
    fn the_weighted_median_needs_half_the_weight_to_move() {
        let mut v = vec![(10u64, 1.0, 1), (20, 1.0, 2), (1_000, 1.9, 3)];
        assert_eq!(weighted_median(&mut v), Some(20), "1.9 of 3.9 is less than half");
        let mut v = vec![(10u64, 1.0, 1), (20, 1.0, 2), (1_000, 2.0, 3)];
        assert_eq!(weighted_median(&mut v), Some(20), "exactly half: the lower median");
        let mut v = vec![(10u64, 1.0, 1), (20, 1.0, 2), (1_000, 2.1, 3)];
        assert_eq!(weighted_median(&mut v), Some(1_000));
        let mut none: Vec<(u64, f64, u64)> = vec![(5, 0.0, 1), (6, f64::NAN, 2)];
        assert_eq!(weighted_median(&mut none), None);
    }

    #[test]
    fn a_start_that_denies_the_subjects_own_is_left_out_even_by_a_majority() {
        // Three liars claim an hour later; one honest observer copies the subject's start.
        let mut claims: Vec<Claim> = (0..3)
            .map(|i| Claim { denies_start: true, ..claim(1.0, true, 3_600_000 + 5, i) })
            .collect();
        claims.push(claim(1.0, true, 5, 9));
        let t = tally(&claims, 0);
        assert_eq!(t.started_ms, Some(5));
        assert_eq!(t.uptime_s, Some(100), "their uptimes are left out with their start");
        assert!(t.up >= 4.0, "their word on liveness still counts");
        let all_liars: Vec<Claim> = claims.iter().take(3).copied().collect();
        assert_eq!(tally(&all_liars, 0).started_ms, None, "unknown, not their start");
    }

    #[test]
    fn a_claim_down_older_than_the_subjects_own_word_does_not_stand() {
        let claims = [claim(1.0, false, 0, 1), claim(0.5, true, 0, 2)];
        assert!(tally(&claims, 5).down_wins(), "made at 10, after the subject spoke at 5");
        assert!(!tally(&claims, 10).down_wins(), "the subject spoke when the claim was made");
    }

    #[test]
    fn an_observer_out_of_reach_that_vouches_for_the_subject_blocks_offline() {
        // A full mesh cut in two: five on this side say down, four out of reach said up.
        let mut claims: Vec<Claim> = (0..5).map(|i| claim(1.0, false, 0, i)).collect();
        claims.extend((5..9).map(|i| Claim { heard: false, ..claim(1.0, true, 0, i) }));
        assert!(!tally(&claims, 0).down_wins(), "cut off with its observers: not offline");
        // A crash: the same four heard, and saying down too.
        let crash: Vec<Claim> = (0..9).map(|i| claim(1.0, false, 0, i)).collect();
        assert!(tally(&crash, 0).down_wins());
    }

    proptest! {
        /// Same claims, same answer, in any order (the consensus is a function of the
        /// latest-value map, not of delivery order).
        #[test]
        fn the_tally_does_not_depend_on_order(
            seed in any::<u64>(),
            raw in prop::collection::vec((0.0f64..3.0, any::<bool>(), 0u32..5, 0u64..1_000, 0u32..100, 0u64..50), 1..40),
        ) {
            println!("seed {seed}");
            let claims: Vec<Claim> = raw.iter().enumerate().map(|(i, &(w, online, r, s, rtt, at))| Claim {
                weight: w, online, restarts: r, started_ms: s, uptime_s: online.then_some(s / 3),
                rtt_us: rtt, denies_start: i % 5 == 0, at_ms: at, heard: i % 3 != 0, order: i as u64,
            }).collect();
            let mut shuffled = claims.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (a, b) = (tally(&claims, 25), tally(&shuffled, 25));
            prop_assert_eq!(a.restarts, b.restarts);
            prop_assert_eq!(a.started_ms, b.started_ms);
            prop_assert_eq!(a.uptime_s, b.uptime_s);
            prop_assert_eq!(a.rtt_us, b.rtt_us);
            prop_assert_eq!(a.down_wins(), b.down_wins());
            prop_assert!((a.up - b.up).abs() < 1e-9 && (a.down - b.down).abs() < 1e-9);
        }

        /// Any minority of weight claiming anything leaves every field within the range of
        /// the honest claims, and cannot make an honest-online subject offline.
        #[test]
        fn a_minority_of_arbitrary_claims_stays_within_the_honest_range(
            honest in prop::collection::vec((0.1f64..2.0, 1_000u64..2_000), 1..20),
            liars in prop::collection::vec((0.0f64..2.0, any::<u64>(), any::<bool>()), 0..20),
        ) {
            let honest_weight: f64 = honest.iter().map(|h| h.0).sum();
            let mut claims: Vec<Claim> = honest.iter().enumerate()
                .map(|(i, &(w, s))| claim(w, true, s, i as u64)).collect();
            // Scale the liars to less than half of the total weight.
            let raw: f64 = liars.iter().map(|l| l.0).sum();
            let scale = if raw > 0.0 { 0.99 * honest_weight / raw } else { 0.0 };
            for (i, &(w, s, online)) in liars.iter().enumerate() {
                claims.push(Claim { started_ms: s.max(1), ..claim(w * scale, online, 0, 1_000 + i as u64) });
            }
            let t = tally(&claims, 0);
            let (lo, hi) = (honest.iter().map(|h| h.1).min().unwrap(), honest.iter().map(|h| h.1).max().unwrap());
            let s = t.started_ms.expect("honest claims weigh");
            prop_assert!(s >= lo && s <= hi, "start {s} outside [{lo}, {hi}]");
            prop_assert!(!t.down_wins(), "a minority made an online subject offline");
        }
    }
}
