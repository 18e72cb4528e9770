//! The opinion samples (`crate::sim::opinions`): which observers, and the truth each is
//! judged against.

use std::collections::BTreeMap;

use vecino_proto::AuthorKey;

use crate::opinions::PeerStatus;
use crate::sim::opinions::{ObserverSample, Truth};

use super::Sim;

impl Sim<'_> {
    /// The observers sampled now: `observers` honest live peers spread evenly over the
    /// indexes (from each even spot, the next live peer that does not lie).
    fn sampled_observers(&self, observers: usize) -> Vec<u32> {
        let n = self.world.sc.peers;
        let mut out: Vec<u32> = Vec::with_capacity(observers);
        for k in 0..observers {
            let from = k * n / observers.max(1);
            let pick = (0..n).map(|d| ((from + d) % n) as u32).find(|&i| {
                let life = &self.world.life[i as usize];
                life.alive && !self.liars.contains(&i) && !out.contains(&i)
            });
            if let Some(i) = pick {
                out.push(i);
            }
        }
        out
    }

    /// The truth about every started peer but `observer`, as `observer` should see it.
    fn truth_for(&self, observer: u32) -> BTreeMap<AuthorKey, Truth> {
        let sc = self.world.sc;
        let mut out = BTreeMap::new();
        for j in 0..sc.peers as u32 {
            let life = &self.world.life[j as usize];
            if j == observer || !life.started {
                continue;
            }
            let status = if !life.alive {
                PeerStatus::Offline
            } else if self.world.is_cut(observer as usize, j as usize) {
                PeerStatus::Unreachable
            } else {
                PeerStatus::Online
            };
            let started = self.started_us[j as usize];
            out.insert(
                self.world.dir.key(j as usize),
                Truth {
                    status,
                    started_ms: super::queue::time(started).as_millis(),
                    restarts: self.node(j).restarts,
                    uptime_s: self.now.saturating_sub(started) as f64 / 1e6,
                },
            );
        }
        out
    }

    /// One round of opinion samples.
    pub(super) fn sample_opinions(&mut self) {
        let Some(sampling) = self.world.sc.opinions else { return };
        let observers = self.sampled_observers(sampling.observers);
        let liars: Vec<AuthorKey> =
            self.liars.iter().map(|&i| self.world.dir.key(i as usize)).collect();
        let taken: Vec<_> = observers
            .iter()
            .filter_map(|&i| {
                let ops = self.node(i).proto.as_ref()?.opinions();
                Some((ops, self.truth_for(i)))
            })
            .collect();
        let round: Vec<ObserverSample<'_>> = taken
            .iter()
            .map(|(opinions, truth)| ObserverSample { opinions, truth, liars: &liars })
            .collect();
        let now = self.now;
        if let Some(w) = &mut self.opinions {
            w.sample(now, &round);
        }
    }
}
