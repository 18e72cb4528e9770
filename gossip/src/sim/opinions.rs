//! What peers believe about each other, sampled (scenarios with `[opinions]`).
//!
//! Every `OpinionSampling::every`, each sampled observer (honest peers spread evenly over the
//! indexes) is asked what it believes about every peer it holds claims about, and each
//! belief is compared with the truth the simulator knows: a peer that is down is *offline*;
//! one that is up but cut from the observer by a partition is *unreachable*; otherwise
//! *online*. The same claims are also aggregated by two baselines, so the three are compared
//! on exactly the same inputs:
//!
//! - `median`: every observer weighs the same; fields by the plain median, offline when more
//!   observers say down than up;
//! - `nara`: nara's opinion consensus (`../shared/notes/nara.md` §4.2–4.3): start and restarts
//!   by its trimmed mean (values within ×5 of the median, averaged), online by the latest
//!   claim (latest event wins).
//!
//! Fields are judged against the truth: the subject's start (its current run's), restarts
//! (the simulator's count), uptime. Times to agree: from a crash until ≥ 99 % of the sampled
//! live observers say offline, and from a partition's heal until every sampled observer gives
//! every peer its true status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vecino_proto::AuthorKey;

use crate::opinions::{PeerOpinion, PeerStatus};

/// A status as the report names it; `none`: the observer holds no claim about the peer.
fn name(s: Option<PeerStatus>) -> &'static str {
    s.map_or("none", PeerStatus::as_str)
}

/// The figures of one way of aggregating the claims.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodFigures {
    /// (observer, peer) samples where the peer was up (online or unreachable in truth).
    pub alive_samples: u64,
    /// Of those, the peer was called offline.
    pub false_offline: u64,
    /// `false_offline / alive_samples`.
    pub false_offline_share: f64,
    /// Samples whose status was the true one, of all samples.
    pub status_right_share: f64,
    /// Error of the consensus start against the true one, seconds: median and largest.
    pub start_err_s_p50: Option<f64>,
    /// See `start_err_s_p50`.
    pub start_err_s_max: Option<f64>,
    /// Share of samples whose consensus restarts were exact.
    pub restarts_exact_share: Option<f64>,
    /// Relative error of the consensus uptime (live peers), median and largest.
    pub uptime_rel_err_p50: Option<f64>,
    /// See `uptime_rel_err_p50`.
    pub uptime_rel_err_max: Option<f64>,
}

/// The opinions section of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpinionReport {
    /// Observers sampled.
    pub observers: usize,
    /// (observer, peer) samples taken.
    pub samples: u64,
    /// vecino's statuses by truth: truth → status given → samples.
    pub by_truth: BTreeMap<String, BTreeMap<String, u64>>,
    /// By method: `vecino`, `median`, `nara`.
    pub methods: BTreeMap<String, MethodFigures>,
    /// Per crash (each crashed peer), seconds until ≥ 99 % of the sampled live observers
    /// called it offline (vecino); `None` if never while it was down.
    pub crash_offline_s: Vec<Option<f64>>,
    /// Per partition heal, seconds until every sampled observer gave every peer its true
    /// status (vecino); `None` if not before the next fault or the end.
    pub heal_agree_s: Vec<Option<f64>>,
    /// Share of the total clout the sampled honest observers give to liars, mean over
    /// samples taken while liars lied (and at the end: `liar_clout_share_end`).
    pub liar_clout_share: Option<f64>,
    /// The same, at the last sample.
    pub liar_clout_share_end: Option<f64>,
    /// Samples where vecino called a live peer offline, per second of the run (second →
    /// samples): where the false offlines are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub false_offline_by_s: BTreeMap<u64, u64>,
}

/// Counts of errors kept as a histogram (bucket → samples), so a long run's figures cost
/// constant memory.
#[derive(Debug, Default)]
struct Hist {
    counts: BTreeMap<u64, u64>,
    n: u64,
}

impl Hist {
    /// Notes `v` in buckets of `unit`.
    fn add(&mut self, v: f64, unit: f64) {
        let b = (v.abs() / unit).round() as u64;
        *self.counts.entry(b).or_default() += 1;
        self.n += 1;
    }

    fn quantile(&self, q: f64, unit: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let target = ((self.n as f64 * q).ceil() as u64).max(1);
        let mut acc = 0;
        for (b, c) in &self.counts {
            acc += c;
            if acc >= target {
                return Some(*b as f64 * unit);
            }
        }
        self.counts.keys().last().map(|b| *b as f64 * unit)
    }

    fn max(&self, unit: f64) -> Option<f64> {
        self.counts.keys().last().map(|b| *b as f64 * unit)
    }
}

/// Start errors are kept to the 10 ms, uptime errors to the 0.01 %.
const START_UNIT_S: f64 = 0.01;
const UPTIME_UNIT: f64 = 1e-4;

#[derive(Debug, Default)]
struct Method {
    alive: u64,
    false_offline: u64,
    right: u64,
    samples: u64,
    start: Hist,
    restarts_exact: u64,
    restarts_n: u64,
    uptime: Hist,
}

impl Method {
    fn note(&mut self, truth: PeerStatus, got: Option<PeerStatus>) {
        self.samples += 1;
        if truth != PeerStatus::Offline {
            self.alive += 1;
            if got == Some(PeerStatus::Offline) {
                self.false_offline += 1;
            }
        }
        if got == Some(truth) {
            self.right += 1;
        }
    }

    fn fields(
        &mut self,
        t: &Truth,
        start_ms: Option<u64>,
        restarts: Option<u32>,
        uptime: Option<u64>,
    ) {
        if let Some(s) = start_ms {
            self.start.add((s as f64 - t.started_ms as f64) / 1e3, START_UNIT_S);
        }
        if let Some(r) = restarts {
            self.restarts_n += 1;
            if r == t.restarts {
                self.restarts_exact += 1;
            }
        }
        if let (Some(u), true) = (uptime, t.status != PeerStatus::Offline && t.uptime_s >= 10.0) {
            self.uptime.add((u as f64 - t.uptime_s) / t.uptime_s, UPTIME_UNIT);
        }
    }

    fn figures(&self) -> MethodFigures {
        let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        MethodFigures {
            alive_samples: self.alive,
            false_offline: self.false_offline,
            false_offline_share: share(self.false_offline, self.alive),
            status_right_share: share(self.right, self.samples),
            start_err_s_p50: self.start.quantile(0.5, START_UNIT_S),
            start_err_s_max: self.start.max(START_UNIT_S),
            restarts_exact_share: (self.restarts_n > 0)
                .then(|| share(self.restarts_exact, self.restarts_n)),
            uptime_rel_err_p50: self.uptime.quantile(0.5, UPTIME_UNIT),
            uptime_rel_err_max: self.uptime.max(UPTIME_UNIT),
        }
    }
}

/// What the simulator knows of one peer at a sample, as one observer should see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Truth {
    pub(crate) status: PeerStatus,
    /// Its current (or last) run's start, ms.
    pub(crate) started_ms: u64,
    pub(crate) restarts: u32,
    pub(crate) uptime_s: f64,
}

/// The sampler's state through a run.
#[derive(Debug, Default)]
pub(crate) struct OpinionWatch {
    observers: usize,
    samples: u64,
    by_truth: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    vecino: Method,
    median: Method,
    nara: Method,
    /// Crashed peers waiting to be called offline: (peer, crash time µs, result index).
    crashes: Vec<(AuthorKey, u64, usize)>,
    crash_offline_s: Vec<Option<f64>>,
    /// Heals waiting for every status to be right: (heal time µs, result index).
    heals: Vec<(u64, usize)>,
    heal_agree_s: Vec<Option<f64>>,
    liar_share_sum: f64,
    liar_share_n: u64,
    liar_share_last: Option<f64>,
    false_offline_by_s: BTreeMap<u64, u64>,
}

/// One sample of one observer: what it believes about each peer, and the truth.
pub(crate) struct ObserverSample<'a> {
    pub(crate) opinions: &'a [PeerOpinion],
    /// The truth about each peer it should know (every started peer but itself).
    pub(crate) truth: &'a BTreeMap<AuthorKey, Truth>,
    /// Liars (by key), to measure the clout they hold.
    pub(crate) liars: &'a [AuthorKey],
}

/// The plain median of `v` (lower), `None` if empty.
fn median<T: Copy + Ord>(v: &mut [T]) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// nara's `TrimmedMeanPositive`: drop values ≤ 0, keep those within [median/5, median·5],
/// average them; everything filtered → the median.
fn nara_trimmed_mean(values: &[u64]) -> Option<u64> {
    let mut v: Vec<u64> = values.iter().copied().filter(|x| *x > 0).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let m = v[v.len() / 2];
    let kept: Vec<u64> =
        v.iter().copied().filter(|x| *x >= m / 5 && *x <= m.saturating_mul(5)).collect();
    if kept.is_empty() {
        return Some(m);
    }
    Some((kept.iter().map(|x| u128::from(*x)).sum::<u128>() / kept.len() as u128) as u64)
}

impl OpinionWatch {
    pub(crate) fn new(observers: usize) -> Self {
        Self { observers, ..Default::default() }
    }

    /// A peer crashed at `t_us`: its time to be called offline is measured.
    pub(crate) fn crashed(&mut self, peer: AuthorKey, t_us: u64) {
        self.crashes.push((peer, t_us, self.crash_offline_s.len()));
        self.crash_offline_s.push(None);
    }

    /// A crashed peer restarted: if not called offline by then, never.
    pub(crate) fn restarted(&mut self, peer: AuthorKey) {
        self.crashes.retain(|c| c.0 != peer);
    }

    /// A partition healed at `t_us`: every status is to be right again.
    pub(crate) fn healed(&mut self, t_us: u64) {
        self.give_up_heals();
        self.heals.push((t_us, self.heal_agree_s.len()));
        self.heal_agree_s.push(None);
    }

    /// A new fault starts: heals still waiting will not get agreement before it.
    pub(crate) fn give_up_heals(&mut self) {
        self.heals.clear();
    }

    /// One round of samples at `t_us`: every sampled observer's beliefs.
    pub(crate) fn sample(&mut self, t_us: u64, round: &[ObserverSample<'_>]) {
        let mut all_right = true;
        let mut offline_votes: BTreeMap<AuthorKey, (u64, u64)> = BTreeMap::new();
        for obs in round {
            let by_peer: BTreeMap<AuthorKey, &PeerOpinion> =
                obs.opinions.iter().map(|o| (o.peer, o)).collect();
            let (mut liar_clout, mut all_clout) = (0.0, 0.0);
            let mut seen_observers = std::collections::BTreeSet::new();
            for (peer, truth) in obs.truth {
                self.samples += 1;
                let op = by_peer.get(peer).copied();
                let got = op.map(|o| o.status);
                *self
                    .by_truth
                    .entry(truth.status.as_str())
                    .or_default()
                    .entry(name(got))
                    .or_default() += 1;
                if got != Some(truth.status) {
                    all_right = false;
                }
                let e = offline_votes.entry(*peer).or_default();
                e.1 += 1;
                if got == Some(PeerStatus::Offline) {
                    e.0 += 1;
                }
                self.vecino.note(truth.status, got);
                if truth.status != PeerStatus::Offline && got == Some(PeerStatus::Offline) {
                    *self.false_offline_by_s.entry(t_us / 1_000_000).or_default() += 1;
                }
                let Some(op) = op else {
                    self.median.note(truth.status, None);
                    self.nara.note(truth.status, None);
                    continue;
                };
                self.vecino.fields(truth, op.started_ms, op.restarts, op.uptime_s);
                // The baselines, on the same claims.
                let (up, down) = op
                    .claims
                    .iter()
                    .fold((0, 0), |(u, d), c| if c.online { (u + 1, d) } else { (u, d + 1) });
                let median_status =
                    if down > up { PeerStatus::Offline } else { PeerStatus::Online };
                self.median.note(truth.status, Some(median_status));
                let mut starts: Vec<u64> =
                    op.claims.iter().map(|c| c.started_ms).filter(|s| *s > 0).collect();
                let mut restarts: Vec<u32> = op.claims.iter().map(|c| c.restarts).collect();
                let mut uptimes: Vec<u64> = op.claims.iter().filter_map(|c| c.uptime_s).collect();
                self.median.fields(
                    truth,
                    median(&mut starts),
                    median(&mut restarts),
                    median(&mut uptimes),
                );
                let latest = op.claims.iter().max_by_key(|c| (c.at_ms, c.observer.prefix()));
                let nara_status = match latest {
                    Some(c) if !c.online => PeerStatus::Offline,
                    _ => PeerStatus::Online,
                };
                self.nara.note(truth.status, Some(nara_status));
                let distinct_restarters = op.claims.iter().filter(|c| c.restarts > 0).count();
                let nara_restarts = if distinct_restarters <= 1 {
                    op.claims.iter().map(|c| c.restarts).max()
                } else {
                    let r: Vec<u64> = op.claims.iter().map(|c| u64::from(c.restarts)).collect();
                    nara_trimmed_mean(&r).map(|x| u32::try_from(x).unwrap_or(u32::MAX))
                };
                let up_vals: Vec<u64> = op.claims.iter().filter_map(|c| c.uptime_s).collect();
                self.nara.fields(
                    truth,
                    nara_trimmed_mean(&starts),
                    nara_restarts,
                    nara_trimmed_mean(&up_vals),
                );
                for c in &op.claims {
                    if c.observer != op.peer && seen_observers.insert(c.observer) {
                        all_clout += c.clout.value;
                        if obs.liars.contains(&c.observer) {
                            liar_clout += c.clout.value;
                        }
                    }
                }
            }
            if !obs.liars.is_empty() && all_clout > 0.0 {
                let share = liar_clout / all_clout;
                self.liar_share_sum += share;
                self.liar_share_n += 1;
                self.liar_share_last = Some(share);
            }
        }
        // Crashes: called offline by ≥ 99 % of the sampled observers.
        let mut done = Vec::new();
        for (i, (peer, at, slot)) in self.crashes.iter().enumerate() {
            if let Some(&(off, n)) = offline_votes.get(peer)
                && n > 0
                && off as f64 >= 0.99 * n as f64
            {
                self.crash_offline_s[*slot] = Some(t_us.saturating_sub(*at) as f64 / 1e6);
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            self.crashes.remove(i);
        }
        if all_right && !round.is_empty() {
            for (at, slot) in self.heals.drain(..) {
                self.heal_agree_s[slot] = Some(t_us.saturating_sub(at) as f64 / 1e6);
            }
        }
    }

    pub(crate) fn report(&self) -> OpinionReport {
        let by_truth = self
            .by_truth
            .iter()
            .map(|(t, m)| (t.to_string(), m.iter().map(|(g, n)| (g.to_string(), *n)).collect()))
            .collect();
        let methods = [("vecino", &self.vecino), ("median", &self.median), ("nara", &self.nara)]
            .into_iter()
            .map(|(k, m)| (k.to_string(), m.figures()))
            .collect();
        OpinionReport {
            observers: self.observers,
            samples: self.samples,
            by_truth,
            methods,
            crash_offline_s: self.crash_offline_s.clone(),
            heal_agree_s: self.heal_agree_s.clone(),
            liar_clout_share: (self.liar_share_n > 0)
                .then(|| self.liar_share_sum / self.liar_share_n as f64),
            liar_clout_share_end: self.liar_share_last,
            false_offline_by_s: self.false_offline_by_s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naras_trimmed_mean_is_a_plain_mean_for_timestamps() {
        // 9 honest at 1 000 000, one liar an hour later: the mean moves by 360 s.
        let mut v = vec![1_000_000_000u64; 9];
        v.push(1_000_000_000 + 3_600_000);
        assert_eq!(nara_trimmed_mean(&v), Some(1_000_000_000 + 360_000));
        assert_eq!(nara_trimmed_mean(&[0, 0]), None);
        assert_eq!(median(&mut [3u64, 1, 2, 100]), Some(2));
    }

    #[test]
    fn the_histogram_gives_quantiles_in_its_unit() {
        let mut h = Hist::default();
        for v in [0.0, 0.02, 0.02, 5.0] {
            h.add(v, START_UNIT_S);
        }
        assert_eq!(h.quantile(0.5, START_UNIT_S), Some(0.02));
        assert_eq!(h.max(START_UNIT_S), Some(5.0));
    }
}
