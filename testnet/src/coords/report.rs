//! The side-by-side report: a text table (default) or JSON (`--json`).

use std::fmt::Write as _;

use serde::Serialize;
use vecino_coords::topology::RttMatrix;

use super::metrics::Metrics;
use super::protocol::{Checkpoint, Noise};
use super::reference::{self, Reference};

/// Everything one `coords` run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) data: String,
    pub(crate) hosts: usize,
    pub(crate) seeds: Vec<u64>,
    pub(crate) noise: Noise,
    pub(crate) dims: usize,
    pub(crate) updates: Vec<usize>,
    pub(crate) definitions: &'static str,
    /// Only for a matrix with missing pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) missing: Option<MissingReport>,
    pub(crate) profiles: Vec<ProfileReport>,
    pub(crate) offline: Option<OfflineReport>,
    pub(crate) serf_reference: Option<Reference>,
}

/// The pairs of the matrix without a measurement: never sampled, never scored.
#[derive(Debug, Serialize)]
pub(crate) struct MissingReport {
    /// Unordered pairs without a measurement.
    pub(crate) pairs_missing: usize,
    /// Unordered pairs.
    pub(crate) pairs: usize,
    /// Hosts measured to no other host: they never update and are left out of the figures.
    pub(crate) hosts_excluded: Vec<usize>,
}

/// One profile, all checkpoints.
#[derive(Debug, Serialize)]
pub(crate) struct ProfileReport {
    pub(crate) profile: &'static str,
    pub(crate) config: String,
    pub(crate) resets: u64,
    pub(crate) rejected: u64,
    pub(crate) checkpoints: Vec<CheckpointReport>,
}

/// One checkpoint: mean over seeds, and every seed's figures.
#[derive(Debug, Serialize)]
pub(crate) struct CheckpointReport {
    pub(crate) updates: usize,
    pub(crate) mean: Metrics,
    pub(crate) per_seed: Vec<Metrics>,
}

/// The offline best fit.
#[derive(Debug, Serialize)]
pub(crate) struct OfflineReport {
    pub(crate) start: &'static str,
    pub(crate) epochs: usize,
    pub(crate) metrics: Metrics,
}

const DEFINITIONS: &str = "median/p90: relative error |pred-actual|/actual over all pairs vs the \
noise-free matrix; top-10: mean over nodes of |true 10 nearest ∩ predicted 10 nearest|/10; \
nn-loss: median over nodes of true RTT to predicted nearest minus true RTT to true nearest (ms); \
move: mean of ‖Δvec‖+|Δheight|+|Δadjustment| per update over the last 10% of updates before the checkpoint (ms); \
all figures are means over the seeds";

impl CheckpointReport {
    /// Aggregates per-seed runs (each a list of checkpoints in `updates` order).
    pub(crate) fn from_seeds(updates: &[usize], per_seed: &[Vec<Checkpoint>]) -> Vec<Self> {
        updates
            .iter()
            .enumerate()
            .map(|(k, &u)| {
                let all: Vec<Metrics> = per_seed.iter().map(|run| run[k].metrics).collect();
                Self { updates: u, mean: mean(&all), per_seed: all }
            })
            .collect()
    }
}

#[allow(clippy::cast_precision_loss)]
fn mean(all: &[Metrics]) -> Metrics {
    let n = all.len().max(1) as f64;
    let sum = |f: fn(&Metrics) -> f64| all.iter().map(f).sum::<f64>() / n;
    Metrics {
        median: sum(|m| m.median),
        p90: sum(|m| m.p90),
        top10: sum(|m| m.top10),
        nn_loss_ms: sum(|m| m.nn_loss_ms),
        movement_ms: sum(|m| m.movement_ms),
    }
}

impl Report {
    pub(crate) fn new(
        data: &str,
        matrix: &RttMatrix,
        seeds: &[u64],
        noise: Noise,
        dims: usize,
        updates: &[usize],
    ) -> Self {
        Self {
            data: data.to_owned(),
            hosts: matrix.len(),
            seeds: seeds.to_vec(),
            noise,
            dims,
            updates: updates.to_vec(),
            definitions: DEFINITIONS,
            missing: (!matrix.is_complete()).then(|| MissingReport {
                pairs_missing: matrix.missing_pairs(),
                pairs: matrix.pairs(),
                hosts_excluded: matrix.isolated_hosts(),
            }),
            profiles: Vec::new(),
            offline: None,
            serf_reference: reference::lookup(data, noise),
        }
    }

    /// One line naming the run (and, for a matrix with missing pairs, a second saying so).
    pub(crate) fn header(&self) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let mut s = format!(
            "coords: data {} ({} hosts), seeds {}, noise {}, {}-D + height, checkpoints {:?} updates/node",
            self.data,
            self.hosts,
            seeds.join(","),
            self.noise.name(),
            self.dims,
            self.updates
        );
        if let Some(m) = &self.missing {
            let _ = write!(
                s,
                "\nmissing: {} of {} pairs have no measurement: never sampled, never scored",
                m.pairs_missing, m.pairs
            );
            if !m.hosts_excluded.is_empty() {
                let _ = write!(
                    s,
                    "; {} hosts measured to none, excluded: {:?}",
                    m.hosts_excluded.len(),
                    m.hosts_excluded
                );
            }
        }
        s
    }

    /// The text table.
    pub(crate) fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.header());
        let _ = writeln!(
            s,
            "{:>8}  {:<24} {:>7} {:>7} {:>7} {:>10} {:>10}",
            "upd/node", "profile", "median", "p90", "top-10", "nn-loss ms", "move ms/up"
        );
        for &u in &self.updates {
            for p in &self.profiles {
                if let Some(c) = p.checkpoints.iter().find(|c| c.updates == u) {
                    let m = &c.mean;
                    let _ = writeln!(
                        s,
                        "{:>8}  {:<24} {:>7.3} {:>7.3} {:>7.3} {:>10.2} {:>10.3}",
                        u, p.profile, m.median, m.p90, m.top10, m.nn_loss_ms, m.movement_ms
                    );
                }
            }
            if let Some(r) = &self.serf_reference
                && let Some((med, p90)) = r.at(u)
            {
                let last = r.errors[2].0 == u;
                let (top, nn, mv) = if last {
                    (
                        format!("{:.3}", r.top10),
                        format!("{:.2}", r.nn_loss_ms),
                        format!("{:.3}", r.movement_ms),
                    )
                } else {
                    ("-".into(), "-".into(), "-".into())
                };
                let _ = writeln!(
                    s,
                    "{:>8}  {:<24} {:>7.3} {:>7.3} {:>7} {:>10} {:>10}",
                    u, "serf (README reference)", med, p90, top, nn, mv
                );
            }
        }
        if let Some(o) = &self.offline {
            let m = &o.metrics;
            let _ = writeln!(
                s,
                "{:>8}  {:<24} {:>7.3} {:>7.3} {:>7.3} {:>10.2} {:>10}",
                "all", "offline best fit (floor)", m.median, m.p90, m.top10, m.nn_loss_ms, "-"
            );
        }
        for p in &self.profiles {
            if p.resets > 0 || p.rejected > 0 {
                let _ = writeln!(
                    s,
                    "note: {} had {} resets and {} rejected updates",
                    p.profile, p.resets, p.rejected
                );
            }
        }
        let _ = writeln!(s, "({DEFINITIONS})");
        s
    }
}
