//! The missing pairs of an RTT matrix as reports give them: how many, and how they were
//! filled to give every link a delay (filled pairs are never scored).

use serde::Serialize;
use vecino_coords::topology::{Fill, RttMatrix};

/// A matrix's missing pairs and how they were filled (in `sim` and `local` reports).
#[derive(Debug, Serialize)]
pub(crate) struct MatrixFill {
    /// Unordered pairs of the matrix without a measurement.
    pairs_missing: usize,
    /// Unordered pairs of the matrix.
    pairs: usize,
    /// How they were filled.
    method: &'static str,
    /// Filled by a two-hop path through a host measured to both.
    two_hop: usize,
    /// Filled by longer paths, in further rounds.
    longer: usize,
}

impl MatrixFill {
    /// `None` when `m` has no missing pair.
    pub(crate) fn of(m: &RttMatrix) -> Option<Self> {
        let f = m.fill()?;
        Some(Self {
            pairs_missing: f.missing,
            pairs: m.pairs(),
            method: Fill::METHOD_NAME,
            two_hop: f.two_hop,
            longer: f.longer,
        })
    }
}
