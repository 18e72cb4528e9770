//! The barrio samples (`crate::sim::barrios`), and the members of a barrio a regional fault
//! slows.

use super::Sim;

impl Sim<'_> {
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
                let rtt_ms = p.barrio_health().first().map_or(0.0, |&r| f64::from(r));
                Some(crate::sim::barrios::PeerSample { index: i, barrio, held, alarmed, rtt_ms })
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
}
