//! Barrios, sampled (scenarios with `[barrios]`).
//!
//! Every `BarrioSampling::every`, every live peer is asked its barrio (`crate::barrios`) and
//! the barrio each member's newest slot held there names. A peer's barrio is what its own
//! slot says, so agreement is a question of spread: a pair (observer, member) agrees when the
//! observer holds the member's current barrio; a pair that does not is aged from the member's
//! last change. Churn is counted from `steady_from` on, outside a regional fault and the
//! minute after it. The barrios themselves are judged by
//! the true RTT from each member to its head (the peer the barrio is named after).
//!
//! Coherence: each sample also reads whether the peer's barrio is alarmed. A regional fault
//! (`FaultKind::Degrade`) slows every link of one barrio's members; the figures are the time
//! until 99 % of those members are alarmed, the time after the fault until none is, and the
//! alarms raised anywhere else (or before the fault): false alarms.
//!
//! Beside it, the baseline the issue names: a *per-peer threshold*. Each peer's own health RTT
//! (the median RTT of its links inside its barrio) is learnt as the median of its samples
//! before `steady_from` (a median: the join's first samples are of links to anywhere); after
//! that the peer is alarmed while its RTT is over [`THRESHOLD_FACTOR`] × that median (a peer
//! first measured in the steady state is not watched). Its alarms are judged as the barrios' are.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The barrios section of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarrioReport {
    /// Samples taken.
    pub samples: u64,
    /// At the last sample: live peers, and those with a barrio.
    pub peers: usize,
    /// See `peers`.
    pub peers_placed: usize,
    /// At the last sample: barrios (distinct ids among live peers), members per barrio (median,
    /// largest), share of barrios with one member.
    pub barrios: usize,
    /// See `barrios`.
    pub members_p50: f64,
    /// See `barrios`.
    pub members_max: usize,
    /// See `barrios`.
    pub singleton_share: f64,
    /// At the last sample: true RTT (ms) from each member to its barrio's head, median, 99th
    /// percentile and largest (heads themselves left out).
    pub head_rtt_ms_p50: Option<f64>,
    /// See `head_rtt_ms_p50`.
    pub head_rtt_ms_p99: Option<f64>,
    /// See `head_rtt_ms_p50`.
    pub head_rtt_ms_max: Option<f64>,
    /// Barrio changes from `steady_from` on (live peers' own counts; not during a regional
    /// fault nor in the minute after it), the peer-hours they
    /// were counted over, and changes per peer per hour (mean, and the most of any peer).
    pub steady_changes: u64,
    /// See `steady_changes`.
    pub steady_peer_hours: f64,
    /// See `steady_changes`.
    pub changes_per_peer_hour: Option<f64>,
    /// See `steady_changes`.
    pub changes_per_peer_hour_max: Option<f64>,
    /// Barrio changes over the whole run (the join's included).
    pub changes_total: u64,
    /// (observer, member) pairs sampled from `steady_from` on, and the share where the
    /// observer held the member's current barrio.
    pub pairs: u64,
    /// See `pairs`.
    pub agree_share: Option<f64>,
    /// Of the pairs that disagreed, seconds since the member's last change: 99th percentile
    /// and largest (a member that never changed counts from its first barrio).
    pub disagree_age_s_p99: Option<f64>,
    /// See `disagree_age_s_p99`.
    pub disagree_age_s_max: Option<f64>,
    /// Coherence alarms raised (a peer's barrio turning alarmed between two samples), in all.
    pub alarms_raised: u64,
    /// Of those, false: raised by a peer outside the degraded barrio, or before the fault.
    pub false_alarms: u64,
    /// False alarms per barrio per simulated day (over the barrios at the last sample).
    pub false_alarms_per_barrio_day: Option<f64>,
    /// The degraded barrio's members (at the fault's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_members: Option<usize>,
    /// Seconds from the fault's start until ≥ 99 % of those alive were alarmed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_99_s: Option<f64>,
    /// The largest share of them alarmed at once during the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_share_max: Option<f64>,
    /// Seconds from the fault's end until none of them was alarmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_s: Option<f64>,
    /// During the fault, (seconds since its start, share of its members alarmed) at each
    /// sample where the share changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarm_during: Vec<(f64, f64)>,
    /// The first false alarms: (seconds into the run, peer index, peers alarmed then, of
    /// which degraded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub false_alarms_at: Vec<(f64, u32, usize, usize)>,
    /// The per-peer threshold baseline's alarms, judged alike (see the module docs).
    #[serde(default)]
    pub threshold: AlarmFigures,
}

/// Alarms raised, how many were false, and the regional fault's timings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmFigures {
    /// Alarms raised (a peer turning alarmed between two samples).
    pub raised: u64,
    /// Of those, raised by a peer outside the degraded barrio, or before the fault.
    pub false_alarms: u64,
    /// False alarms per barrio per simulated day (over the barrios at the last sample).
    pub false_alarms_per_barrio_day: Option<f64>,
    /// Seconds from the fault's start until ≥ 99 % of the degraded members alive were
    /// alarmed at once.
    pub alarm_99_s: Option<f64>,
    /// The largest share of them alarmed at once during the fault.
    pub alarm_share_max: Option<f64>,
    /// Seconds from the fault's end until none of them was alarmed.
    pub clear_s: Option<f64>,
    /// During the fault, (seconds since its start, share of them alarmed) at each sample
    /// where the share changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub during: Vec<(f64, f64)>,
    /// The first [`FALSE_LISTED`] false alarms: (seconds into the run, peer index, peers
    /// alarmed at that sample, of which degraded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub false_at: Vec<(f64, u32, usize, usize)>,
}

/// False alarms listed in a report at most.
pub const FALSE_LISTED: usize = 100;

/// A peer is alarmed by the per-peer threshold while its RTT is over this multiple of its
/// median before the steady state.
pub const THRESHOLD_FACTOR: f64 = 2.0;

/// One live peer, as sampled.
#[derive(Debug, Clone)]
pub struct PeerSample {
    /// Its index.
    pub index: u32,
    /// Its barrio (0: none) and its change count.
    pub barrio: (u64, u64),
    /// What it holds of each member's barrio, by member index.
    pub held: Vec<(u32, u64)>,
    /// Its barrio is alarmed (incoherent).
    pub alarmed: bool,
    /// Its own health RTT (ms; the median RTT of its links inside its barrio), 0 unmeasured.
    pub rtt_ms: f64,
}

/// The samples and their running figures.
#[derive(Debug, Clone, Default)]
pub struct BarrioWatch {
    steady_from_us: u64,
    samples: u64,
    /// By peer index: its barrio as last sampled, since when (µs), its change count then, and
    /// the changes counted in the steady state.
    last: BTreeMap<u32, (u64, u64, u64, u64)>,
    /// Live time (µs) of peers sampled from `steady_from` on.
    steady_us: u64,
    pairs: u64,
    agree: u64,
    disagree_ages_s: Vec<f64>,
    /// Set at each sample, kept from the last.
    end: BarrioReport,
    prev_us: Option<u64>,
    /// The last sample was in the calm steady state.
    prev_calm: bool,
    first_us: Option<u64>,
    /// The barrios' alarms.
    coherence: AlarmTrack,
    /// The per-peer threshold's alarms, and each peer's RTTs sampled before the steady state
    /// (replaced by their median once it begins).
    threshold: AlarmTrack,
    /// See `threshold`.
    learnt: BTreeMap<u32, Learnt>,
    /// The regional fault: its members, when it started and ended.
    degraded: Option<(Vec<u32>, u64, Option<u64>)>,
}

/// A peer's RTTs before the steady state, then their median.
#[derive(Debug, Clone)]
enum Learnt {
    Samples(Vec<f64>),
    Median(f64),
}

/// The peers alarmed at the last sample, and the figures so far.
#[derive(Debug, Clone, Default)]
struct AlarmTrack {
    alarmed: BTreeSet<u32>,
    figures: AlarmFigures,
}

impl AlarmTrack {
    /// One sample: `now` alarmed among `live`; the regional fault, if any.
    fn sample(
        &mut self,
        now_us: u64,
        now: BTreeSet<u32>,
        live: &BTreeSet<u32>,
        degraded: Option<&(Vec<u32>, u64, Option<u64>)>,
    ) {
        let f = &mut self.figures;
        for p in now.difference(&self.alarmed) {
            f.raised += 1;
            let honest = degraded.is_some_and(|(m, start, _)| m.contains(p) && now_us >= *start);
            if !honest {
                f.false_alarms += 1;
                if f.false_at.len() < FALSE_LISTED {
                    let with = degraded
                        .map_or(0, |(m, _, _)| now.iter().filter(|q| m.contains(q)).count());
                    f.false_at.push((now_us as f64 / 1e6, *p, now.len(), with));
                }
            }
        }
        if let Some((members, start, end)) = degraded {
            let on_live: Vec<u32> = members.iter().copied().filter(|m| live.contains(m)).collect();
            let on = on_live.iter().filter(|m| now.contains(m)).count();
            let share = if on_live.is_empty() { 0.0 } else { on as f64 / on_live.len() as f64 };
            let secs = |from: u64| now_us.saturating_sub(from) as f64 / 1e6;
            match end {
                None => {
                    if f.during.last().is_none_or(|(_, s)| *s != share) {
                        f.during.push((secs(*start), share));
                    }
                    let max = f.alarm_share_max.get_or_insert(0.0);
                    *max = max.max(share);
                    if share >= 0.99 && f.alarm_99_s.is_none() {
                        f.alarm_99_s = Some(secs(*start));
                    }
                }
                Some(end) if on == 0 && f.clear_s.is_none() => f.clear_s = Some(secs(*end)),
                Some(_) => {}
            }
        }
        self.alarmed = now;
    }

    /// The figures, with the false-alarm rate over `barrio_days`.
    fn report(&self, barrio_days: f64) -> AlarmFigures {
        let mut f = self.figures.clone();
        if barrio_days > 0.0 {
            f.false_alarms_per_barrio_day = Some(f.false_alarms as f64 / barrio_days);
        }
        f
    }
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

impl BarrioWatch {
    /// A watch counting changes from `steady_from_us`.
    pub fn new(steady_from_us: u64) -> Self {
        Self { steady_from_us, ..Self::default() }
    }

    /// A regional fault started: `members` degraded.
    pub fn degraded(&mut self, now_us: u64, members: Vec<u32>) {
        self.end.degraded_members = Some(members.len());
        self.degraded = Some((members, now_us, None));
    }

    /// The regional fault ended.
    pub fn restored(&mut self, now_us: u64) {
        if let Some(d) = &mut self.degraded {
            d.2 = Some(now_us);
        }
    }

    /// One round: `peers` (every live peer), `rtt_ms(a, b)` the true RTT between two
    /// indexes, `index_of(barrio)` the index of the peer a barrio id is named after.
    pub fn sample(
        &mut self,
        now_us: u64,
        peers: &[PeerSample],
        rtt_ms: impl Fn(u32, u32) -> f64,
        index_of: impl Fn(u64) -> Option<u32>,
    ) {
        self.samples += 1;
        self.first_us.get_or_insert(now_us);
        let steady = now_us >= self.steady_from_us;
        let live: BTreeSet<u32> = peers.iter().map(|p| p.index).collect();
        let on = peers.iter().filter(|p| p.alarmed).map(|p| p.index).collect();
        self.coherence.sample(now_us, on, &live, self.degraded.as_ref());
        let mut on = BTreeSet::new();
        for p in peers.iter().filter(|p| p.rtt_ms > 0.0) {
            let learnt = self.learnt.entry(p.index).or_insert(Learnt::Samples(Vec::new()));
            if let (Learnt::Samples(v), true) = (&mut *learnt, steady) {
                match quantile(v, 0.5) {
                    Some(m) => *learnt = Learnt::Median(m),
                    None => continue,
                }
            }
            match learnt {
                Learnt::Samples(v) => v.push(p.rtt_ms),
                Learnt::Median(m) if p.rtt_ms > THRESHOLD_FACTOR * *m => {
                    on.insert(p.index);
                }
                Learnt::Median(_) => {}
            }
        }
        self.threshold.sample(now_us, on, &live, self.degraded.as_ref());
        // Churn is the steady state's: not while a regional fault moves coordinates, nor in
        // the minute after it ends.
        let calm = steady
            && self.degraded.as_ref().is_none_or(|(_, start, end)| {
                now_us < *start || end.is_some_and(|e| now_us >= e + 60_000_000)
            });
        // A change between two calm samples is the steady state's.
        let counted = calm && self.prev_calm;
        self.prev_calm = calm;
        if counted && let Some(prev) = self.prev_us {
            let dt = now_us - prev.max(self.steady_from_us);
            self.steady_us += dt * peers.len() as u64;
        }
        self.prev_us = Some(now_us);
        for p in peers {
            let e = self.last.entry(p.index).or_insert((p.barrio.0, now_us, p.barrio.1, 0));
            if counted {
                e.3 += p.barrio.1.saturating_sub(e.2);
            }
            if e.0 != p.barrio.0 {
                (e.0, e.1) = (p.barrio.0, now_us);
            }
            e.2 = p.barrio.1;
        }
        if steady {
            for p in peers {
                for &(m, b) in &p.held {
                    let Some(&(current, since, _, _)) = self.last.get(&m) else { continue };
                    if m == p.index || current == 0 {
                        continue;
                    }
                    self.pairs += 1;
                    if b == current {
                        self.agree += 1;
                    } else {
                        self.disagree_ages_s.push(now_us.saturating_sub(since) as f64 / 1e6);
                    }
                }
            }
        }
        // The barrios now.
        let mut members: BTreeMap<u64, usize> = BTreeMap::new();
        let mut head_rtts = Vec::new();
        for p in peers.iter().filter(|p| p.barrio.0 != 0) {
            *members.entry(p.barrio.0).or_default() += 1;
            if let Some(h) = index_of(p.barrio.0)
                && h != p.index
            {
                head_rtts.push(rtt_ms(p.index, h));
            }
        }
        let mut sizes: Vec<f64> = members.values().map(|&n| n as f64).collect();
        let singles = members.values().filter(|&&n| n == 1).count();
        self.end.peers = peers.len();
        self.end.peers_placed = peers.iter().filter(|p| p.barrio.0 != 0).count();
        self.end.barrios = members.len();
        self.end.members_max = members.values().copied().max().unwrap_or(0);
        self.end.members_p50 = quantile(&mut sizes, 0.5).unwrap_or(0.0);
        self.end.singleton_share =
            if members.is_empty() { 0.0 } else { singles as f64 / members.len() as f64 };
        self.end.head_rtt_ms_p50 = quantile(&mut head_rtts, 0.5);
        self.end.head_rtt_ms_p99 = quantile(&mut head_rtts, 0.99);
        self.end.head_rtt_ms_max = head_rtts.last().copied();
        self.end.changes_total = peers.iter().map(|p| p.barrio.1).sum();
    }

    /// The figures so far.
    pub fn report(&self) -> BarrioReport {
        let mut r = self.end.clone();
        r.samples = self.samples;
        let per_peer: Vec<u64> = self.last.values().map(|e| e.3).collect();
        r.steady_changes = per_peer.iter().sum();
        r.steady_peer_hours = self.steady_us as f64 / 3.6e9;
        if r.steady_peer_hours > 0.0 {
            r.changes_per_peer_hour = Some(r.steady_changes as f64 / r.steady_peer_hours);
            let hours = r.steady_peer_hours / self.last.len().max(1) as f64;
            r.changes_per_peer_hour_max =
                per_peer.iter().max().map(|&m| m as f64 / hours.max(1e-9));
        }
        r.pairs = self.pairs;
        r.agree_share = (self.pairs > 0).then(|| self.agree as f64 / self.pairs as f64);
        let mut ages = self.disagree_ages_s.clone();
        r.disagree_age_s_p99 = quantile(&mut ages, 0.99);
        r.disagree_age_s_max = ages.last().copied();
        let days =
            self.prev_us.unwrap_or(0).saturating_sub(self.first_us.unwrap_or(0)) as f64 / 86_400e6;
        let c = self.coherence.report(days * r.barrios as f64);
        r.alarms_raised = c.raised;
        r.false_alarms = c.false_alarms;
        r.false_alarms_per_barrio_day = c.false_alarms_per_barrio_day;
        r.alarm_99_s = c.alarm_99_s;
        r.alarm_share_max = c.alarm_share_max;
        r.clear_s = c.clear_s;
        r.alarm_during = c.during;
        r.false_alarms_at = c.false_at;
        r.threshold = self.threshold.report(days * r.barrios as f64);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Churn counts from the steady time; agreement and the age of disagreements.
    #[test]
    fn counts_steady_churn_and_agreement() {
        let mut w = BarrioWatch::new(10_000_000);
        let s = |index, barrio: (u64, u64), held: Vec<(u32, u64)>| PeerSample {
            index,
            barrio,
            held,
            alarmed: false,
            rtt_ms: 0.0,
        };
        let rtt = |a: u32, b: u32| f64::from(a.abs_diff(b));
        let idx = |b: u64| Some(b as u32);
        w.sample(0, &[s(1, (1, 0), vec![]), s(2, (2, 0), vec![])], rtt, idx);
        w.sample(10_000_000, &[s(1, (1, 0), vec![(2, 2)]), s(2, (1, 1), vec![(1, 1)])], rtt, idx);
        w.sample(20_000_000, &[s(1, (1, 0), vec![(2, 1)]), s(2, (1, 2), vec![(1, 1)])], rtt, idx);
        let r = w.report();
        assert_eq!(r.samples, 3);
        assert_eq!(r.barrios, 1);
        assert_eq!(r.members_max, 2);
        assert_eq!(r.head_rtt_ms_p50, Some(1.0));
        assert_eq!(r.steady_changes, 1, "peer 2 changed once after t = 10 s");
        assert!((r.steady_peer_hours - 20.0 / 3600.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.pairs, 4);
        assert_eq!(r.agree_share, Some(0.75));
        assert_eq!(r.disagree_age_s_max, Some(0.0), "peer 1 held 2's old barrio at its change");
        assert_eq!(r.changes_total, 2);
    }

    /// The per-peer threshold: learnt before the steady state, alarmed past twice that; a
    /// peer outside the degraded barrio raises a false alarm, a member an honest one.
    #[test]
    fn the_per_peer_threshold_is_judged_like_the_barrios() {
        let mut w = BarrioWatch::new(10_000_000);
        let s = |index, rtt_ms: f64, alarmed| PeerSample {
            index,
            barrio: (1, 0),
            held: vec![],
            alarmed,
            rtt_ms,
        };
        let (rtt, idx) = (|_: u32, _: u32| 1.0, |b: u64| Some(b as u32));
        w.sample(0, &[s(1, 9.0, false), s(2, 10.0, false)], rtt, idx);
        w.sample(5_000_000, &[s(1, 11.0, false), s(2, 10.0, false)], rtt, idx);
        // Steady: peer 1 at 25 ms (over 2 × 10): a false alarm.
        w.sample(10_000_000, &[s(1, 25.0, false), s(2, 12.0, false)], rtt, idx);
        w.degraded(12_000_000, vec![2]);
        w.sample(14_000_000, &[s(1, 25.0, false), s(2, 30.0, true)], rtt, idx);
        w.restored(16_000_000);
        w.sample(18_000_000, &[s(1, 10.0, false), s(2, 10.0, false)], rtt, idx);
        let r = w.report();
        let t = &r.threshold;
        assert_eq!((t.raised, t.false_alarms), (2, 1), "{t:?}");
        assert_eq!(t.alarm_99_s, Some(2.0));
        assert_eq!(t.clear_s, Some(2.0));
        assert_eq!((r.alarms_raised, r.false_alarms, r.alarm_99_s), (1, 0, Some(2.0)));
    }
}
