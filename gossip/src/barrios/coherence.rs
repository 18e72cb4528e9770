//! Coherence of this peer's barrio: is its members' health still what it was?
//!
//! Each look (`super::LOOK_EVERY`), the barrio's health is the per-feature median of its
//! members' newest slots (this peer's own health measured now in place of its slot): a median,
//! so that one member joining or leaving, or one member's bad link, does not move it. A barrio
//! of fewer than `super::COHERENT_MIN` members is not watched. A
//! [`CoherenceDetector`] (`vecino_coords::coherence`: Mahalanobis D² of a window mean against
//! a baseline frozen after [`MIN_SAMPLES`], χ² thresholds, hysteresis) learns the barrio's
//! baseline from its first [`MIN_SAMPLES`] looks and then watches; an alarm raised or cleared
//! goes to the application as [`AppEvent::Coherence`].
//!
//! **Features.** The RTT is watched as ln(RTT + [`RTT_OFFSET_MS`]): latency noise is
//! multiplicative (a barrio 3 ms across jitters by tenths of a ms, one 60 ms across by ms), and
//! a regional fault that triples RTTs should read alike in both (with the RTT in ms and a 2-ms
//! floor, planet's slowed barrio went from 3.2 to 9.5 ms for a D² of 9.2 against a threshold
//! of 30.7); the offset keeps sub-ms RTTs on loopback from turning tenths of a ms into alarms.
//! The link shares are watched as they are.
//!
//! **Which baseline.** The baseline belongs to the members it was learnt on (the *basis*), not
//! to the barrio's name: a barrio renamed (its head stopped heading, and the same members now
//! follow another) keeps its baseline, and its alarm moves to the new name (cleared under the
//! old, raised under the new). Only when the members overlap the basis by less than half
//! (Jaccard) for [`APART_FOR`] does the baseline start over (a member's move takes a few looks
//! to show in everyone's slots, and looks in between are skipped), and never while alarmed
//! (an alarmed barrio holds together: `super::Barrios` keeps its head). On planet, peer 0's barrio
//! was renamed three times in the 5 min before the regional fault, and its baseline, restarted
//! each time, froze only as the fault began.
//!
//! Floors ([`FLOORS`]): a feature constant while learning counts a change of its floor as one
//! standard deviation: 0.2 of ln RTT (a change of the RTT by a fifth), 5 % of links down, 2 %
//! of frames retransmitted. The raise threshold is at α = 10⁻⁶ per evaluation: the baseline is
//! estimated from [`MIN_SAMPLES`] looks, so the χ² law is optimistic (Hotelling's law has a
//! heavier tail); the simulator counts the false alarms that remain.

use std::collections::BTreeSet;
use std::time::Duration;

use vecino_coords::{AlarmChange, CoherenceConfig, CoherenceDetector};
use vecino_proto::AuthorKey;

use crate::io::CoherenceAlarm;
use crate::time::Time;

/// Floors of the features' standard deviations (see the module docs), in `super::HEALTH` order
/// (the RTT's of ln(RTT + [`RTT_OFFSET_MS`])).
pub(crate) const FLOORS: [f64; 3] = [0.2, 0.05, 0.02];
/// Added to the RTT (ms) before its logarithm.
pub(crate) const RTT_OFFSET_MS: f64 = 2.0;
/// Looks learnt before the baseline freezes (5 min at one look every 2 s).
pub(crate) const MIN_SAMPLES: usize = 150;
/// Members overlapping the basis by less than half this long start the baseline over.
pub(crate) const APART_FOR: Duration = Duration::from_secs(30);

/// The detector's settings.
fn config() -> CoherenceConfig {
    CoherenceConfig {
        min_samples: MIN_SAMPLES,
        window: 5,
        alpha_raise: 1e-6,
        alpha_clear: 1e-2,
        raise_after: 2,
        clear_after: 5,
        ..CoherenceConfig::new(FLOORS.to_vec())
    }
}

/// Health as the detector sees it (see the module docs).
fn features(health: &[f64]) -> Vec<f64> {
    let mut f = health.to_vec();
    if let Some(rtt) = f.first_mut() {
        *rtt = (rtt.max(0.0) + RTT_OFFSET_MS).ln();
    }
    f
}

/// Health in its own units from the detector's features.
fn unfeatures(f: &[f64]) -> Vec<f64> {
    let mut h = f.to_vec();
    if let Some(rtt) = h.first_mut() {
        *rtt = (rtt.exp() - RTT_OFFSET_MS).max(0.0);
    }
    h
}

/// The barrio watched.
#[derive(Debug)]
struct Watched {
    /// Its name now (the alarm's barrio).
    barrio: u64,
    /// The members the baseline is learnt on.
    basis: BTreeSet<AuthorKey>,
    /// Since when the members overlap the basis by less than half.
    apart_since: Option<Time>,
    detector: CoherenceDetector,
}

/// The detector of this peer's barrio.
#[derive(Debug, Default)]
pub(crate) struct Coherence {
    watched: Option<Watched>,
    /// Samples refused by the detector (never expected: health is finite by construction).
    pub(crate) refused: u64,
    /// Baselines carried over to a renamed barrio.
    pub(crate) renamed: u64,
    /// Baselines started over because the members changed.
    pub(crate) restarted: u64,
}

/// |a ∩ b| / |a ∪ b|.
fn jaccard(a: &BTreeSet<AuthorKey>, b: &BTreeSet<AuthorKey>) -> f64 {
    let both = a.intersection(b).count();
    let any = a.len() + b.len() - both;
    if any == 0 { 1.0 } else { both as f64 / any as f64 }
}

impl Coherence {
    /// Whether the barrio watched is alarmed.
    pub(crate) fn alarmed(&self) -> bool {
        self.watched.as_ref().is_some_and(|w| w.detector.is_alarmed())
    }

    /// One look at `now`: `barrio` (0: none), its `members` as held here (this peer
    /// included), and their median health (`None`: too few to watch). Returns the alarms
    /// raised or cleared.
    pub(crate) fn sample(
        &mut self,
        now: Time,
        barrio: u64,
        members: &BTreeSet<AuthorKey>,
        health: Option<&[f64]>,
    ) -> Vec<CoherenceAlarm> {
        let mut out = Vec::new();
        if let Some(w) = &mut self.watched {
            // An alarmed barrio is not another population: a fault moves coordinates and
            // slows links, and members' slots come and go with them.
            let apart =
                barrio == 0 || (jaccard(&w.basis, members) < 0.5 && !w.detector.is_alarmed());
            if !apart {
                w.apart_since = None;
                if w.barrio != barrio {
                    // Renamed: the same members follow another head; the alarm moves.
                    self.renamed += 1;
                    if w.detector.is_alarmed() {
                        out.push(ended(w));
                        let d2 = w.detector.d2().unwrap_or(0.0);
                        let threshold = w.detector.thresholds().raise;
                        w.barrio = barrio;
                        out.push(alarm(w, true, d2, threshold, Vec::new(), health));
                    }
                    w.barrio = barrio;
                }
            } else {
                let since = *w.apart_since.get_or_insert(now);
                if barrio != 0 && now.saturating_since(since) < APART_FOR {
                    // The members may still be telling their move: wait.
                    return out;
                }
                // Another population: its baseline starts over (an alarm ends first).
                if w.detector.is_alarmed() {
                    out.push(ended(w));
                }
                self.watched = None;
                self.restarted += 1;
            }
        }
        let (Some(health), true) = (health, barrio != 0) else { return out };
        if self.watched.is_none() {
            match CoherenceDetector::new(config()) {
                Ok(detector) => {
                    let basis = members.clone();
                    self.watched = Some(Watched { barrio, basis, apart_since: None, detector });
                }
                Err(_) => return out,
            }
        }
        let Some(w) = self.watched.as_mut() else { return out };
        let change = match w.detector.observe(&features(health)) {
            Ok(c) => c,
            Err(_) => {
                self.refused += 1;
                return out;
            }
        };
        match change {
            Some(AlarmChange::Raised { d2, threshold, moved }) => {
                let moved = moved
                    .into_iter()
                    .filter(|(_, z)| z.abs() >= 3.0)
                    .filter_map(|(i, z)| Some((*super::HEALTH.get(i)?, z)))
                    .collect();
                out.push(alarm(w, true, d2, threshold, moved, Some(health)));
            }
            Some(AlarmChange::Cleared { d2 }) => {
                let threshold = w.detector.thresholds().clear;
                out.push(alarm(w, false, d2, threshold, Vec::new(), Some(health)));
            }
            None => {}
        }
        out
    }
}

/// An alarm of the barrio watched.
fn alarm(
    w: &Watched,
    raised: bool,
    d2: f64,
    threshold: f64,
    moved: Vec<(&'static str, f64)>,
    health: Option<&[f64]>,
) -> CoherenceAlarm {
    CoherenceAlarm {
        barrio: w.barrio,
        raised,
        d2,
        threshold,
        moved,
        health: health.map(<[f64]>::to_vec).unwrap_or_default(),
        baseline: mean_of(&w.detector),
    }
}

/// The end of the watched barrio's alarm (it is renamed, or watched no more).
fn ended(w: &Watched) -> CoherenceAlarm {
    let (d2, threshold) = (w.detector.d2().unwrap_or(0.0), w.detector.thresholds().clear);
    alarm(w, false, d2, threshold, Vec::new(), None)
}

/// The baseline's mean in the health's own units (empty while learning).
fn mean_of(d: &CoherenceDetector) -> Vec<f64> {
    d.baseline().map(|b| unfeatures(b.mean())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::testing::key;

    fn members(ns: std::ops::Range<u8>) -> BTreeSet<AuthorKey> {
        ns.map(key).collect()
    }

    fn at(look: usize) -> Time {
        Time(look as u64 * 2_000_000)
    }

    /// Learns, stays quiet while the health stays near its baseline, raises within a few
    /// looks when the RTT triples (naming the RTT), clears when it comes back, and ends the
    /// alarm when the peer's barrio becomes other members'.
    #[test]
    fn learns_raises_on_a_tripled_rtt_and_clears() {
        let mut c = Coherence::default();
        let m = members(0..5);
        let mut look = 0;
        let mut sample = |c: &mut Coherence, barrio: u64, m: &BTreeSet<AuthorKey>, h: &[f64]| {
            look += 1;
            c.sample(at(look), barrio, m, Some(h))
        };
        let calm = |k: usize| [3.0 + (k % 3) as f64 * 0.2, 0.0, 0.01];
        for k in 0..MIN_SAMPLES + 50 {
            assert!(sample(&mut c, 7, &m, &calm(k)).is_empty(), "quiet at look {k}");
        }
        let raised =
            (0..15).find_map(|k| sample(&mut c, 7, &m, &[9.6, 0.0, 0.01]).pop().map(|a| (k, a)));
        let (k, a) = raised.expect("raised");
        assert!(a.raised && k <= 6, "raised at look {k}: {a:?}");
        assert_eq!(a.moved.first().map(|m| m.0), Some("rtt_ms"));
        assert!((a.baseline[0] - 3.2).abs() < 0.1, "baseline in ms: {:?}", a.baseline);
        assert!(c.alarmed());
        let cleared = (0..20).find_map(|k| sample(&mut c, 7, &m, &calm(k)).pop());
        assert!(cleared.is_some_and(|a| !a.raised));
        assert!(!c.alarmed());
        // Raised again; then the peer's barrio is other members' (its head went): while the
        // alarm is up the baseline stays (the alarm moves to the new name); once it clears,
        // after APART_FOR of other members, the baseline starts over.
        let again = (0..15).find_map(|_| sample(&mut c, 7, &m, &[9.6, 0.0, 0.01]).pop());
        assert!(again.is_some_and(|a| a.raised));
        let other = members(10..15);
        let moved = sample(&mut c, 9, &other, &calm(0));
        let names: Vec<(u64, bool)> = moved.iter().map(|a| (a.barrio, a.raised)).collect();
        assert_eq!(names, vec![(7, false), (9, true)]);
        let cleared = (0..20).find_map(|k| sample(&mut c, 9, &other, &calm(k)).pop());
        assert!(cleared.is_some_and(|a| !a.raised && a.barrio == 9));
        let looks = (APART_FOR.as_secs() / 2) as usize;
        for k in 0..=looks {
            assert!(sample(&mut c, 9, &other, &calm(k)).is_empty(), "quiet at look {k}");
        }
        assert!(!c.alarmed(), "learning the new barrio");
        assert_eq!(c.restarted, 1);
        assert_eq!(c.restarted, 1);
    }

    /// A barrio renamed with the same members keeps its baseline: watching goes on, and an
    /// alarm moves to the new name.
    #[test]
    fn a_renamed_barrio_keeps_its_baseline_and_its_alarm() {
        let mut c = Coherence::default();
        let m = members(0..6);
        let calm = [20.0, 0.0, 0.0];
        for k in 0..MIN_SAMPLES + 5 {
            c.sample(at(k), 7, &m, Some(&calm));
        }
        // Renamed, one member fewer (5 of 6 overlap): no new baseline.
        let m2 = members(0..5);
        assert!(c.sample(at(200), 9, &m2, Some(&calm)).is_empty());
        assert_eq!((c.renamed, c.restarted), (1, 0));
        let raised =
            (0..15).find_map(|k| c.sample(at(201 + k), 9, &m2, Some(&[60.0, 0.0, 0.0])).pop());
        assert!(raised.as_ref().is_some_and(|a| a.raised && a.barrio == 9), "{raised:?}");
        // Renamed while alarmed: cleared under the old name, raised under the new.
        let moved = c.sample(at(300), 11, &m2, Some(&[60.0, 0.0, 0.0]));
        let names: Vec<(u64, bool)> = moved.iter().map(|a| (a.barrio, a.raised)).collect();
        assert_eq!(names, vec![(9, false), (11, true)]);
        assert!(c.alarmed());
    }

    /// Sub-ms RTTs (loopback) jittering by tenths of a ms raise nothing.
    #[test]
    fn loopback_jitter_is_not_an_alarm() {
        let mut c = Coherence::default();
        let m = members(0..4);
        for k in 0..MIN_SAMPLES + 300 {
            let rtt = 0.2 + ((k * 7) % 11) as f64 * 0.08;
            assert!(c.sample(at(k), 3, &m, Some(&[rtt, 0.0, 0.0])).is_empty(), "look {k}");
        }
    }
}
