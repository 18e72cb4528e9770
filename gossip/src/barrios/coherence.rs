//! Coherence of this peer's barrio: is its members' health still what it was?
//!
//! Each look (`super::LOOK_EVERY`), the barrio's health is the per-feature median of its
//! members' newest slots (this peer's own health measured now in place of its slot): a median,
//! so that one member joining or leaving, or one member's bad link, does not move it. A barrio
//! of fewer than `super::COHERENT_MIN` members is not watched. A
//! [`CoherenceDetector`] (`vecino_coords::coherence`: Mahalanobis D² of a window mean against
//! a baseline frozen after [`MIN_SAMPLES`], χ² thresholds, hysteresis) learns the barrio's
//! baseline from its first [`MIN_SAMPLES`] looks and then watches; an alarm raised or cleared
//! goes to the application as [`AppEvent::Coherence`]. A new barrio starts a new baseline (an
//! alarm raised for the old one is cleared first).
//!
//! Floors ([`FLOORS`]): a feature constant while learning counts a change of its floor as one
//! standard deviation: 2 ms of median RTT, 5 % of links down, 2 % of frames retransmitted.
//! The raise threshold is at α = 10⁻⁶ per evaluation: the baseline is estimated from
//! [`MIN_SAMPLES`] looks, so the χ² law is optimistic (Hotelling's law has a heavier tail);
//! the simulator counts the false alarms that remain.

use vecino_coords::{AlarmChange, CoherenceConfig, CoherenceDetector};

use crate::io::CoherenceAlarm;

/// Floors of the features' standard deviations (see the module docs), in `super::HEALTH` order.
pub(crate) const FLOORS: [f64; 3] = [2.0, 0.05, 0.02];
/// Looks learnt before the baseline freezes (5 min at one look every 2 s).
pub(crate) const MIN_SAMPLES: usize = 150;

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

/// The detector of this peer's barrio.
#[derive(Debug, Default)]
pub(crate) struct Coherence {
    /// The barrio watched, and its detector.
    watched: Option<(u64, CoherenceDetector)>,
    /// Samples refused by the detector (never expected: health is finite by construction).
    pub(crate) refused: u64,
}

impl Coherence {
    /// Whether the barrio watched is alarmed.
    pub(crate) fn alarmed(&self) -> bool {
        self.watched.as_ref().is_some_and(|(_, d)| d.is_alarmed())
    }

    /// One look: `barrio` (0: none) with median health `health`. Returns the alarms raised
    /// or cleared.
    pub(crate) fn sample(&mut self, barrio: u64, health: Option<&[f64]>) -> Vec<CoherenceAlarm> {
        let mut out = Vec::new();
        if self.watched.as_ref().is_some_and(|(b, _)| *b != barrio)
            && let Some((old, d)) = self.watched.take()
            && d.is_alarmed()
        {
            // A new barrio (the old detector was dropped with `take`): its alarm ends.
            out.push(CoherenceAlarm {
                barrio: old,
                raised: false,
                d2: d.d2().unwrap_or(0.0),
                threshold: d.thresholds().clear,
                moved: Vec::new(),
                health: Vec::new(),
                baseline: mean_of(&d),
            });
        }
        let (Some(health), true) = (health, barrio != 0) else { return out };
        if self.watched.is_none() {
            match CoherenceDetector::new(config()) {
                Ok(d) => self.watched = Some((barrio, d)),
                Err(_) => return out,
            }
        }
        let Some((b, d)) = self.watched.as_mut() else { return out };
        let change = match d.observe(health) {
            Ok(c) => c,
            Err(_) => {
                self.refused += 1;
                return out;
            }
        };
        let baseline = mean_of(d);
        let alarm = |raised, d2, threshold, moved| CoherenceAlarm {
            barrio: *b,
            raised,
            d2,
            threshold,
            moved,
            health: health.to_vec(),
            baseline,
        };
        match change {
            Some(AlarmChange::Raised { d2, threshold, moved }) => {
                let moved = moved
                    .into_iter()
                    .filter(|(_, z)| z.abs() >= 3.0)
                    .filter_map(|(i, z)| Some((*super::HEALTH.get(i)?, z)))
                    .collect();
                out.push(alarm(true, d2, threshold, moved));
            }
            Some(AlarmChange::Cleared { d2 }) => {
                out.push(alarm(false, d2, d.thresholds().clear, Vec::new()));
            }
            None => {}
        }
        out
    }
}

/// The baseline's mean (empty while learning).
fn mean_of(d: &CoherenceDetector) -> Vec<f64> {
    d.baseline().map(|b| b.mean().to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Learns, stays quiet while the health stays near its baseline, raises when the RTT
    /// triples (naming the RTT), clears when it comes back, and starts over in a new barrio.
    #[test]
    fn learns_raises_on_a_tripled_rtt_and_clears() {
        let mut c = Coherence::default();
        let calm = |k: usize| [40.0 + (k % 3) as f64, 0.0, 0.01];
        for k in 0..MIN_SAMPLES + 50 {
            assert!(c.sample(7, Some(&calm(k))).is_empty(), "quiet at look {k}");
        }
        let mut raised = None;
        for k in 0..10 {
            if let Some(a) = c.sample(7, Some(&[120.0, 0.0, 0.01])).pop() {
                raised = Some((k, a));
                break;
            }
        }
        let (k, a) = raised.expect("raised");
        assert!(a.raised && k <= 2, "raised at look {k}: {a:?}");
        assert_eq!(a.moved.first().map(|m| m.0), Some("rtt_ms"));
        assert!(c.alarmed());
        let cleared = (0..20).find_map(|k| c.sample(7, Some(&calm(k))).pop());
        assert!(cleared.is_some_and(|a| !a.raised));
        assert!(!c.alarmed());
        // Raised again, then the peer moves to another barrio: the old alarm is cleared.
        let again = (0..10).find_map(|_| c.sample(7, Some(&[120.0, 0.0, 0.01])).pop());
        assert!(again.is_some_and(|a| a.raised));
        let moved = c.sample(9, Some(&calm(0)));
        assert_eq!(moved.len(), 1);
        assert!(!moved[0].raised && moved[0].barrio == 7);
        assert!(!c.alarmed(), "learning the new barrio");
    }
}
