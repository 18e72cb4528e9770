//! The evaluation protocol of `testnet/data/README.md`, exactly:
//!
//! every node starts at the origin; in each round every node, in index order, picks a
//! uniformly random *other* node, "measures" the matrix RTT (times the noise factor) and
//! updates its coordinate with the other node's current coordinate. Updates take effect at
//! once (node 7 in round r sees node 3's coordinate of round r).
//!
//! A matrix with missing pairs: a node picks among the nodes it has a measurement to (a pair
//! without one is never sampled), and a node measured to none never updates (it is left out
//! of the figures too, see [`super::metrics`]). On a complete matrix this is the very same
//! draw as "any other node", so the figures do not change.
//!
//! Two RNG streams per seed keep the comparison fair: the *schedule* stream (who pings whom,
//! and the noise) depends only on the seed, so every profile sees the very same sequence of
//! measurements; the *client* stream feeds the clients' own random choices.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_coords::{Client, Config, Coordinate, topology::RttMatrix};

use super::metrics::{self, Metrics};

/// Measurement noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Noise {
    /// The matrix RTT itself.
    None,
    /// × uniform [0.9, 1.1].
    Jitter,
    /// × uniform [0.9, 1.1], and with probability 0.05 × 3.
    #[value(name = "jitter+spikes")]
    #[serde(rename = "jitter+spikes")]
    JitterSpikes,
}

impl Noise {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Noise::None => "none",
            Noise::Jitter => "jitter",
            Noise::JitterSpikes => "jitter+spikes",
        }
    }

    #[inline]
    fn factor<R: Rng>(self, rng: &mut R) -> f64 {
        match self {
            Noise::None => 1.0,
            Noise::Jitter => rng.random_range(0.9..1.1),
            Noise::JitterSpikes => {
                let f = rng.random_range(0.9..1.1);
                if rng.random_bool(0.05) { 3.0 * f } else { f }
            }
        }
    }
}

/// The seed of the client stream, derived from the run seed.
fn client_seed(seed: u64) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15
}

/// Figures at one checkpoint of one run (checkpoints in the order asked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    pub(crate) metrics: Metrics,
}

/// One run: one profile, one seed.
#[derive(Debug)]
pub(crate) struct Run<const D: usize> {
    pub(crate) checkpoints: Vec<Checkpoint>,
    pub(crate) coords: Vec<Coordinate<D>>,
    pub(crate) resets: u64,
    pub(crate) rejected: u64,
}

/// Runs the protocol up to the last checkpoint, evaluating at each. `checkpoints` must be
/// sorted ascending. `progress` is called after each checkpoint.
pub(crate) fn run<const D: usize>(
    matrix: &RttMatrix,
    config: Config,
    checkpoints: &[usize],
    seed: u64,
    noise: Noise,
    mut progress: impl FnMut(usize),
) -> Run<D> {
    let n = matrix.len();
    let mut schedule = ChaCha8Rng::seed_from_u64(seed);
    let mut client_rng = ChaCha8Rng::seed_from_u64(client_seed(seed));
    let mut clients: Vec<Client<usize, D>> = (0..n).map(|_| Client::new(config)).collect();
    let partners = partners(matrix);
    let mut out = Vec::with_capacity(checkpoints.len());
    let mut round = 0;
    for &target in checkpoints {
        // Movement is averaged over the last 10 % of the rounds before this checkpoint.
        let late_from = target - target / 10;
        let mut moved = 0.0;
        let mut moves = 0u64;
        while round < target {
            round += 1;
            let late = round > late_from;
            for (i, mine) in partners.iter().enumerate() {
                if mine.is_empty() {
                    continue;
                }
                let j = mine[schedule.random_range(0..mine.len())];
                let rtt_secs = matrix.ms(i, j) * noise.factor(&mut schedule) / 1000.0;
                let other = *clients[j].coordinate();
                let before = *clients[i].app_coordinate();
                // The matrix is checked and the coordinates come from clients, so errors
                // only count (they are reported), they cannot occur on valid data.
                if clients[i].update_secs(&j, &other, rtt_secs, &mut client_rng).is_ok() && late {
                    moved += metrics::displacement_ms(&before, clients[i].app_coordinate());
                    moves += 1;
                }
            }
        }
        let coords: Vec<Coordinate<D>> = clients.iter().map(|c| *c.app_coordinate()).collect();
        let mut m = metrics::evaluate(matrix, &coords);
        #[allow(clippy::cast_precision_loss)]
        if moves > 0 {
            m.movement_ms = moved / moves as f64;
        }
        out.push(Checkpoint { metrics: m });
        progress(target);
    }
    Run {
        checkpoints: out,
        coords: clients.iter().map(|c| *c.app_coordinate()).collect(),
        resets: clients.iter().map(|c| c.stats().resets).sum(),
        rejected: clients.iter().map(|c| c.stats().rejected).sum(),
    }
}

/// For each node, the other nodes it has a measurement to, in index order (on a complete
/// matrix: every other node, so that drawing an index among them is drawing `0..n - 1` and
/// skipping the node itself).
pub(crate) fn partners(matrix: &RttMatrix) -> Vec<Vec<usize>> {
    let n = matrix.len();
    (0..n).map(|i| (0..n).filter(|&j| j != i && matrix.is_measured(i, j)).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_coords::topology::Topology;

    #[test]
    fn noise_factors_in_range_and_spikes_at_five_percent() {
        let seed = 11;
        println!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(Noise::None.factor(&mut rng), 1.0);
        let mut spikes = 0;
        for _ in 0..20_000 {
            let f = Noise::JitterSpikes.factor(&mut rng);
            assert!((0.9..3.3).contains(&f));
            if f > 2.0 {
                spikes += 1;
            }
            let j = Noise::Jitter.factor(&mut rng);
            assert!((0.9..1.1).contains(&j));
        }
        assert!((800..1200).contains(&spikes), "{spikes} spikes");
    }

    #[test]
    fn same_seed_same_run_and_profiles_converge_on_a_grid() {
        let seed = 3;
        println!("seed {seed}");
        let m = Topology::Grid.generate(25, &mut ChaCha8Rng::seed_from_u64(seed));
        for profile in vecino_coords::Profile::ALL {
            let a = run::<8>(&m, profile.config(), &[50, 200], seed, Noise::None, |_| {});
            let b = run::<8>(&m, profile.config(), &[50, 200], seed, Noise::None, |_| {});
            assert_eq!(a.coords, b.coords);
            let last = a.checkpoints[1].metrics;
            assert!(last.median < 0.1, "{}: median {}", profile.name(), last.median);
            assert_eq!(a.resets, 0);
        }
    }

    /// A 25-host grid with about 30 % of its pairs missing and host 24 measured to nobody.
    fn holey_grid() -> RttMatrix {
        let g = Topology::Grid.generate(25, &mut ChaCha8Rng::seed_from_u64(1));
        let mut ms = Vec::with_capacity(625);
        for i in 0..25 {
            for j in 0..25 {
                let (a, b) = (i.min(j), i.max(j));
                let hole = i != j && (a == 24 || b == 24 || (a * 7 + b * 3) % 10 < 3);
                ms.push(if hole { -1.0 } else { g.ms(i, j) });
            }
        }
        RttMatrix::from_ms(25, ms).unwrap()
    }

    #[test]
    fn missing_pairs_are_never_sampled_and_isolated_hosts_never_move() {
        let seed = 4;
        println!("seed {seed}");
        let m = holey_grid();
        assert!(m.missing_pairs() > 70, "{}", m.missing_pairs());
        assert_eq!(m.isolated_hosts(), vec![24]);
        let p = partners(&m);
        assert!(p[24].is_empty());
        assert!(p.iter().enumerate().all(|(i, js)| js.iter().all(|&j| m.is_measured(i, j))));
        for profile in vecino_coords::Profile::ALL {
            let r = run::<8>(&m, profile.config(), &[50, 300], seed, Noise::JitterSpikes, |_| {});
            // A sampled hole has no RTT (NaN): the client would reject the update.
            assert_eq!((r.rejected, r.resets), (0, 0), "{}", profile.name());
            let fresh = *Client::<usize, 8>::new(profile.config()).app_coordinate();
            assert_eq!(r.coords[24], fresh, "{}: host 24 moved", profile.name());
            let last = r.checkpoints[1].metrics;
            assert!(
                last.median.is_finite() && last.top10.is_finite() && last.nn_loss_ms.is_finite()
            );
            assert!(last.median < 0.2, "{}: median {}", profile.name(), last.median);
        }
    }
}
