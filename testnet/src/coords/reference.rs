//! Serf's reference figures, as published in `testnet/data/README.md` (measured there with
//! HashiCorp Serf's `coordinate` package and its defaults, mean of 5 seeds). Printed beside
//! the measured rows so a reader sees at once whether the `serf` profile reproduces them.

use serde::Serialize;

use super::protocol::Noise;

/// One published row: median / p90 at 100, 500 and 2000 updates per node, and the figures
/// the README gives once per row (top-10, nn-loss, movement).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Reference {
    pub(crate) data: &'static str,
    pub(crate) noise: Noise,
    /// `(updates, median, p90)`.
    pub(crate) errors: [(usize, f64, f64); 3],
    pub(crate) top10: f64,
    pub(crate) nn_loss_ms: f64,
    pub(crate) movement_ms: f64,
}

const TABLE: [Reference; 4] = [
    Reference {
        data: "planetlab490",
        noise: Noise::None,
        errors: [(100, 0.106, 0.552), (500, 0.073, 0.302), (2000, 0.067, 0.278)],
        top10: 0.446,
        nn_loss_ms: 10.5,
        movement_ms: 1.98,
    },
    Reference {
        data: "planetlab490",
        noise: Noise::JitterSpikes,
        errors: [(100, 0.191, 1.12), (500, 0.195, 0.812), (2000, 0.100, 0.475)],
        top10: 0.305,
        nn_loss_ms: 14.0,
        movement_ms: 4.49,
    },
    Reference {
        data: "king128",
        noise: Noise::None,
        errors: [(100, 0.127, 0.654), (500, 0.112, 0.493), (2000, 0.126, 0.569)],
        top10: 0.442,
        nn_loss_ms: 10.8,
        movement_ms: 2.17,
    },
    Reference {
        data: "seattle99",
        noise: Noise::None,
        errors: [(100, 0.170, 1.12), (500, 0.152, 0.799), (2000, 0.147, 0.854)],
        top10: 0.460,
        nn_loss_ms: 22.0,
        movement_ms: 6.66,
    },
];

/// The published row for a matrix file stem (`planetlab490`, …) and noise, if any.
pub(crate) fn lookup(stem: &str, noise: Noise) -> Option<Reference> {
    TABLE.iter().find(|r| r.data == stem && r.noise == noise).copied()
}

impl Reference {
    /// Published median and p90 at `updates`, if that checkpoint was published.
    pub(crate) fn at(&self, updates: usize) -> Option<(f64, f64)> {
        self.errors.iter().find(|(u, _, _)| *u == updates).map(|&(_, m, p)| (m, p))
    }
}
