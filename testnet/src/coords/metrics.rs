//! Accuracy figures of a set of coordinates against the noise-free matrix, as defined in
//! `testnet/data/README.md`.
//!
//! - relative error of a pair = |predicted − actual| / actual, over all measured pairs i < j;
//!   median and p90 (nearest-rank on the sorted errors);
//! - top-10 = mean over nodes of |true 10 nearest ∩ predicted 10 nearest| / 10, both among
//!   the nodes it has a measurement to (fewer than 10 if it has fewer);
//! - nn-loss = median over nodes of (true RTT to the predicted nearest − true RTT to the true
//!   nearest), ms, again among the nodes it has a measurement to;
//! - a node measured to no other node is left out of all three;
//! - movement = mean over updates of the coordinate's displacement,
//!   ‖Δvec‖ + |Δheight| + |Δadjustment| in ms (the most any predicted RTT can change by in one
//!   update), over the last 10 % of the updates before the checkpoint. Filled in by the
//!   protocol, not here. (This definition reproduces Serf's reference figures in
//!   `testnet/data/README.md`: 1.97 ms on planetlab490 clean at 2000 updates/node; without
//!   the adjustment term it would be 1.58.)

use serde::Serialize;
use vecino_coords::{Coordinate, topology::RttMatrix};

/// Figures of one set of coordinates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Metrics {
    pub(crate) median: f64,
    pub(crate) p90: f64,
    pub(crate) top10: f64,
    pub(crate) nn_loss_ms: f64,
    pub(crate) movement_ms: f64,
}

/// How many nearest neighbours the recall figure compares.
const TOP_K: usize = 10;

/// Displacement of one update, ms: ‖Δvec‖ + |Δheight| + |Δadjustment|.
pub(crate) fn displacement_ms<const D: usize>(a: &Coordinate<D>, b: &Coordinate<D>) -> f64 {
    ((a.vec - b.vec).norm() + (a.height - b.height).abs() + (a.adjustment - b.adjustment).abs())
        * 1000.0
}

/// The `q`-quantile of `v` by nearest rank (sorts `v` in place).
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    *x
}

/// Evaluates `coords` (in matrix order) against the measured pairs of `matrix`. Movement is
/// left at zero.
pub(crate) fn evaluate<const D: usize>(matrix: &RttMatrix, coords: &[Coordinate<D>]) -> Metrics {
    let n = matrix.len();
    assert_eq!(coords.len(), n, "one coordinate per matrix host");
    let predicted = |i: usize, j: usize| coords[i].distance_secs(&coords[j]) * 1000.0;
    let mut errors = Vec::with_capacity(matrix.pairs() - matrix.missing_pairs());
    let mut pred_row = vec![0.0; n];
    let mut top_sum = 0.0;
    let mut nn_losses = Vec::with_capacity(n);
    let mut nodes = 0usize;
    let partners = super::protocol::partners(matrix);
    for (i, mine) in partners.iter().enumerate() {
        for (j, p) in pred_row.iter_mut().enumerate() {
            *p = if i == j { 0.0 } else { predicted(i, j) };
        }
        let actual_row = matrix.row(i);
        for (j, (p, a)) in pred_row.iter().zip(actual_row).enumerate().skip(i + 1) {
            if matrix.is_measured(i, j) {
                errors.push((p - a).abs() / a);
            }
        }
        if mine.is_empty() {
            continue;
        }
        nodes += 1;
        let k = TOP_K.min(mine.len());
        let true_near = nearest(actual_row, mine, k);
        let pred_near = nearest(&pred_row, mine, k);
        let hits = pred_near.iter().filter(|j| true_near.contains(j)).count();
        #[allow(clippy::cast_precision_loss)]
        {
            top_sum += hits as f64 / k as f64;
        }
        nn_losses.push(matrix.ms(i, pred_near[0]) - matrix.ms(i, true_near[0]));
    }
    #[allow(clippy::cast_precision_loss)]
    let top10 = top_sum / nodes as f64;
    Metrics {
        median: quantile(&mut errors, 0.5),
        p90: quantile(&mut errors, 0.9),
        top10,
        nn_loss_ms: quantile(&mut nn_losses, 0.5),
        movement_ms: 0.0,
    }
}

/// The `k` indices among `among` with the smallest values in `row`, nearest first; ties by
/// index.
fn nearest(row: &[f64], among: &[usize], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = among.to_vec();
    let cmp = |a: &usize, b: &usize| row[*a].total_cmp(&row[*b]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra_free::*;

    /// Builds 1-D coordinates (as 2-D with y = 0) without heights.
    mod nalgebra_free {
        use vecino_coords::Coordinate;
        pub(super) fn at(xs_ms: &[f64]) -> Vec<Coordinate<2>> {
            xs_ms
                .iter()
                .map(|&x| Coordinate::from_parts(&[x / 1000.0, 0.0], 0.0, 0.5, 0.0).unwrap())
                .collect()
        }
    }

    #[test]
    fn perfect_embedding_scores_perfectly() {
        let m = vecino_coords::topology::line(15, 10.0);
        let xs: Vec<f64> = (0..15).map(|i| f64::from(i) * 10.0).collect();
        let r = evaluate(&m, &at(&xs));
        assert!(r.median < 1e-9 && r.p90 < 1e-9);
        assert_eq!(r.nn_loss_ms, 0.0);
        // Ties at the ends of the line are broken by index on both sides.
        assert!(r.top10 > 0.99, "top10 {}", r.top10);
    }

    #[test]
    fn scaled_embedding_has_the_scale_error() {
        let m = vecino_coords::topology::line(12, 10.0);
        let xs: Vec<f64> = (0..12).map(|i| f64::from(i) * 12.0).collect();
        let r = evaluate(&m, &at(&xs));
        assert!((r.median - 0.2).abs() < 1e-9);
        assert!((r.p90 - 0.2).abs() < 1e-9);
    }

    #[test]
    fn nn_loss_counts_a_wrong_nearest() {
        // True line 0, 10, 30; predicted puts host 2 next to host 0.
        let m = vecino_coords::topology::RttMatrix::from_ms(
            3,
            vec![0.0, 10.0, 30.0, 10.0, 0.0, 20.0, 30.0, 20.0, 0.0],
        )
        .unwrap();
        let r = evaluate(&m, &at(&[0.0, 10.0, 5.0]));
        // Host 0: predicted nearest 2 (30 ms) instead of 1 (10 ms): loss 20.
        // Host 1: predicted nearest 2 (20) = true nearest 2 (20): 0. Host 2: nearest 0 vs 1: 10.
        assert_eq!(r.nn_loss_ms, 10.0);
    }

    #[test]
    fn missing_pairs_and_isolated_hosts_are_not_scored() {
        // A line 0, 10, …, 110 ms; (0, 1) and (5, 6) missing; host 11 measured to nobody.
        let n = 12;
        let line = vecino_coords::topology::line(n, 10.0);
        let mut ms = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let hole = i != j
                    && ((i.min(j), i.max(j)) == (0, 1)
                        || (i.min(j), i.max(j)) == (5, 6)
                        || i == 11
                        || j == 11);
                ms.push(if hole { -1.0 } else { line.ms(i, j) });
            }
        }
        let m = vecino_coords::topology::RttMatrix::from_ms(n, ms).unwrap();
        // Exact on every measured pair; host 11 put anywhere (here on top of host 0).
        let mut xs: Vec<f64> = (0..12).map(|i| f64::from(i) * 10.0).collect();
        xs[11] = 0.0;
        let r = evaluate(&m, &at(&xs));
        assert!(r.median < 1e-9 && r.p90 < 1e-9, "{r:?}");
        // Host 0's nearest measured host is 2 (20 ms): predicted and true alike.
        assert_eq!(r.nn_loss_ms, 0.0);
        assert!(r.top10 > 0.99, "top10 {}", r.top10);
        // Scored as if measured, host 11's pairs would be far off.
        let r_all = evaluate(&line, &at(&xs));
        assert!(r_all.p90 > 0.5, "{r_all:?}");
    }

    #[test]
    fn quantile_nearest_rank() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.9), 5.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
    }
}
