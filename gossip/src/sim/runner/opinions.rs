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

    /// The live peers whose barrio is `around`'s now (`around` included).
    pub(super) fn barrio_members(&self, around: u32) -> Vec<u32> {
        let barrio = |i: u32| self.node(i).proto.as_ref().and_then(|p| p.barrio()).map(|b| b.0);
        let Some(b) = barrio(around).filter(|b| *b != 0) else { return vec![around] };
        (0..self.world.sc.peers as u32)
            .filter(|&i| self.world.life[i as usize].alive && barrio(i) == Some(b))
            .collect()
    }

    /// One round of barrio samples: every live peer's barrio and what it holds of the others'.
    pub(super) fn sample_barrios(&mut self) {
        if self.barrios.is_none() {
            return;
        }
        let dir = &self.world.dir;
        let n = self.world.sc.peers;
        let samples: Vec<crate::sim::barrios::PeerSample> = (0..n as u32)
            .filter(|&i| self.world.life[i as usize].alive)
            .filter_map(|i| {
                let p = self.node(i).proto.as_ref()?;
                let barrio = p.barrio()?;
                let held = p
                    .member_barrios()
                    .into_iter()
                    .filter_map(|(k, b)| Some((dir.index(&k)?, b)))
                    .collect();
                let alarmed = p.barrio_alarmed();
                Some(crate::sim::barrios::PeerSample { index: i, barrio, held, alarmed })
            })
            .collect();
        let by_prefix: std::collections::HashMap<u64, u32> =
            (0..n as u32).map(|i| (dir.key(i as usize).prefix(), i)).collect();
        let latency = &self.world.sc.latency;
        let rtt_ms = |a: u32, b: u32| latency.rtt_us(a as usize, b as usize) as f64 / 1e3;
        let now = self.now;
        if let Some(w) = &mut self.barrios {
            w.sample(now, &samples, rtt_ms, |b| by_prefix.get(&b).copied());
        }
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
