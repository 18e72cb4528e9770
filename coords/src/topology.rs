//! RTT matrices: parsing the shared text format, and seeded generators for tests and
//! simulations.
//!
//! The generators follow Serf's test kit (`coordinate/phantom.go`: line, grid, split, circle,
//! random) and add a clustered Internet-like model: peers grouped around a few "continents"
//! on a plane (core latency ∝ distance), each behind an access link of its own (a height, so
//! the model is *not* Euclidean), with a few percent of multiplicative per-pair noise so the
//! triangle inequality is sometimes violated, as on the real Internet (PlanetLab: 5.6 % of
//! triples). All generators are pure functions of their arguments and RNG.

use rand::Rng;
use thiserror::Error;

use crate::client::unit_f64;

/// A symmetric matrix of round-trip times in milliseconds, diagonal zero.
#[derive(Debug, Clone, PartialEq)]
pub struct RttMatrix {
    n: usize,
    ms: Vec<f64>,
}

/// Why a matrix text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatrixError {
    /// The first token is not a size, or the size is below 2.
    #[error("bad size line")]
    BadSize,
    /// Fewer or more than `n × n` values follow.
    #[error("expected {expected} values, found {found}")]
    WrongCount {
        /// `n × n`.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// A value is not a number.
    #[error("bad value at row {row}, column {col}")]
    BadValue {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
    },
    /// An off-diagonal value is missing (`-1`), zero or negative, or the matrix is not
    /// symmetric.
    #[error("unusable value at row {row}, column {col}")]
    Unusable {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
    },
}

impl RttMatrix {
    /// Parses the format of `shared/data/rtt`: `n`, then `n` rows of `n` RTTs in ms.
    /// Off-diagonal entries must be positive and the matrix symmetric.
    pub fn parse(text: &str) -> Result<Self, MatrixError> {
        let mut tokens = text.split_ascii_whitespace();
        let n: usize = tokens
            .next()
            .and_then(|t| t.parse().ok())
            .filter(|&n| n >= 2)
            .ok_or(MatrixError::BadSize)?;
        let mut ms = Vec::with_capacity(n * n);
        for (k, t) in tokens.enumerate() {
            if k >= n * n {
                return Err(MatrixError::WrongCount { expected: n * n, found: k + 1 });
            }
            let v: f64 = t.parse().map_err(|_| MatrixError::BadValue { row: k / n, col: k % n })?;
            ms.push(v);
        }
        if ms.len() != n * n {
            return Err(MatrixError::WrongCount { expected: n * n, found: ms.len() });
        }
        Self::from_ms(n, ms)
    }

    /// Builds a matrix from row-major milliseconds, checking it as [`RttMatrix::parse`] does.
    pub fn from_ms(n: usize, mut ms: Vec<f64>) -> Result<Self, MatrixError> {
        if n < 2 {
            return Err(MatrixError::BadSize);
        }
        if ms.len() != n * n {
            return Err(MatrixError::WrongCount { expected: n * n, found: ms.len() });
        }
        for i in 0..n {
            ms[i * n + i] = 0.0;
            for j in 0..n {
                let v = ms[i * n + j];
                if i != j && !(v.is_finite() && v > 0.0 && v == ms[j * n + i]) {
                    return Err(MatrixError::Unusable { row: i, col: j });
                }
            }
        }
        Ok(Self { n, ms })
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always `false`: a matrix has at least two hosts.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// RTT between `i` and `j` in milliseconds.
    #[inline]
    pub fn ms(&self, i: usize, j: usize) -> f64 {
        self.ms[i * self.n + j]
    }

    /// Row `i`, milliseconds.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.ms[i * self.n..(i + 1) * self.n]
    }

    fn build(n: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let mut ms = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let v = f(i, j).max(MIN_GENERATED_MS);
                ms[i * n + j] = v;
                ms[j * n + i] = v;
            }
        }
        Self { n, ms }
    }
}

/// Smallest RTT a generator produces (co-located hosts still take some time).
pub const MIN_GENERATED_MS: f64 = 0.05;

/// A named generated topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Serf's line: neighbours 10 ms apart.
    Line,
    /// Serf's grid: a square grid, neighbours 10 ms apart.
    Grid,
    /// Serf's split: two LANs (1 ms) joined by a 10 ms WAN.
    Split,
    /// Serf's circle: a ring of radius 100 ms with one "hub" 200 ms from everyone.
    Circle,
    /// Serf's random: i.i.d. normal RTTs, mean 50 ms, deviation 10 ms (not a metric at all).
    Random,
    /// Clustered Internet-like model with access-link heights; see the module docs.
    Internet,
}

impl Topology {
    /// Every topology.
    pub const ALL: [Topology; 6] = [
        Topology::Line,
        Topology::Grid,
        Topology::Split,
        Topology::Circle,
        Topology::Random,
        Topology::Internet,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Line => "line",
            Topology::Grid => "grid",
            Topology::Split => "split",
            Topology::Circle => "circle",
            Topology::Random => "random",
            Topology::Internet => "internet",
        }
    }

    /// Parses a lower-case name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Generates `n ≥ 2` hosts of this topology with the default parameters.
    pub fn generate<R: Rng + ?Sized>(self, n: usize, rng: &mut R) -> RttMatrix {
        let n = n.max(2);
        match self {
            Topology::Line => line(n, 10.0),
            Topology::Grid => grid(n, 10.0),
            Topology::Split => split(n, 1.0, 10.0),
            Topology::Circle => circle(n, 100.0),
            Topology::Random => random(n, 50.0, 10.0, rng),
            Topology::Internet => internet(n, &InternetModel::default(), rng),
        }
    }
}

/// Hosts on a line, `spacing_ms` apart.
#[allow(clippy::cast_precision_loss)]
pub fn line(n: usize, spacing_ms: f64) -> RttMatrix {
    RttMatrix::build(n, |i, j| (j - i) as f64 * spacing_ms)
}

/// Hosts on a `⌊√n⌋`-wide grid, neighbours `spacing_ms` apart.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn grid(n: usize, spacing_ms: f64) -> RttMatrix {
    let w = ((n as f64).sqrt() as usize).max(1);
    RttMatrix::build(n, |i, j| {
        let (x1, y1) = ((i % w) as f64, (i / w) as f64);
        let (x2, y2) = ((j % w) as f64, (j / w) as f64);
        (x2 - x1).hypot(y2 - y1) * spacing_ms
    })
}

/// Two halves, `lan_ms` within each, `lan_ms + wan_ms` across (Serf's split, same boundary).
pub fn split(n: usize, lan_ms: f64, wan_ms: f64) -> RttMatrix {
    let half = n / 2;
    RttMatrix::build(n, |i, j| if (i <= half) == (j <= half) { lan_ms } else { lan_ms + wan_ms })
}

/// Host 0 at `2 × radius` from all; the others evenly on a circle of `radius_ms`.
#[allow(clippy::cast_precision_loss)]
pub fn circle(n: usize, radius_ms: f64) -> RttMatrix {
    RttMatrix::build(n, |i, j| {
        if i == 0 {
            return 2.0 * radius_ms;
        }
        let t = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / n as f64;
        let (x1, y1) = (t(i).cos(), t(i).sin());
        let (x2, y2) = (t(j).cos(), t(j).sin());
        (x2 - x1).hypot(y2 - y1) * radius_ms
    })
}

/// I.i.d. normal RTTs (clamped to [`MIN_GENERATED_MS`]).
pub fn random<R: Rng + ?Sized>(n: usize, mean_ms: f64, dev_ms: f64, rng: &mut R) -> RttMatrix {
    RttMatrix::build(n, |_, _| mean_ms + dev_ms * normal(rng))
}

/// Parameters of [`internet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InternetModel {
    /// Number of clusters ("continents").
    pub clusters: usize,
    /// Side of the square the cluster centres are drawn in, ms of RTT.
    pub world_ms: f64,
    /// Standard deviation of hosts around their centre, ms.
    pub spread_ms: f64,
    /// Median access-link height (one way of the RTT budget), ms; log-normal.
    pub height_median_ms: f64,
    /// Log-normal sigma of the heights.
    pub height_sigma: f64,
    /// Per-pair multiplicative noise: uniform in `[1 - noise, 1 + noise]`.
    pub pair_noise: f64,
}

impl Default for InternetModel {
    fn default() -> Self {
        Self {
            clusters: 6,
            world_ms: 250.0,
            spread_ms: 15.0,
            height_median_ms: 2.0,
            height_sigma: 1.0,
            pair_noise: 0.05,
        }
    }
}

/// The clustered Internet-like model (see the module docs).
pub fn internet<R: Rng + ?Sized>(n: usize, m: &InternetModel, rng: &mut R) -> RttMatrix {
    let clusters: Vec<(f64, f64)> = (0..m.clusters.max(1))
        .map(|_| (unit_f64(rng) * m.world_ms, unit_f64(rng) * m.world_ms))
        .collect();
    let hosts: Vec<(f64, f64, f64)> = (0..n)
        .map(|k| {
            let (cx, cy) = clusters[k % clusters.len()];
            let x = cx + m.spread_ms * normal(rng);
            let y = cy + m.spread_ms * normal(rng);
            let h = m.height_median_ms * (m.height_sigma * normal(rng)).exp();
            (x, y, h)
        })
        .collect();
    RttMatrix::build(n, |i, j| {
        let (a, b) = (hosts[i], hosts[j]);
        let core = (a.0 - b.0).hypot(a.1 - b.1);
        let jitter = 1.0 + m.pair_noise * (2.0 * unit_f64(rng) - 1.0);
        (core + a.2 + b.2) * jitter
    })
}

/// A standard normal sample (Box–Muller).
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - unit_f64(rng); // (0, 1]
    let u2 = unit_f64(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn parse_round_trip_and_errors() {
        let m = RttMatrix::parse("3\n0 1 2\n1 0 3\n2 3 0\n").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.ms(1, 2), 3.0);
        assert_eq!(RttMatrix::parse("1\n0"), Err(MatrixError::BadSize));
        assert_eq!(
            RttMatrix::parse("2\n0 1 1"),
            Err(MatrixError::WrongCount { expected: 4, found: 3 })
        );
        assert_eq!(RttMatrix::parse("2\n0 x 1 0"), Err(MatrixError::BadValue { row: 0, col: 1 }));
        assert_eq!(RttMatrix::parse("2\n0 -1 -1 0"), Err(MatrixError::Unusable { row: 0, col: 1 }));
        assert_eq!(RttMatrix::parse("2\n0 1 2 0"), Err(MatrixError::Unusable { row: 0, col: 1 }));
    }

    #[test]
    fn generators_are_symmetric_positive_and_seeded() {
        let seed = 7;
        println!("seed {seed}");
        for t in Topology::ALL {
            let a = t.generate(25, &mut ChaCha8Rng::seed_from_u64(seed));
            let b = t.generate(25, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(a, b, "{} not deterministic", t.name());
            let checked = RttMatrix::from_ms(25, a.ms.clone()).unwrap();
            assert_eq!(checked, a);
        }
        let g = grid(16, 10.0);
        assert!((g.ms(0, 5) - 10.0 * 2f64.sqrt()).abs() < 1e-9);
        let s = split(10, 1.0, 10.0);
        assert_eq!(s.ms(0, 5), 1.0);
        assert_eq!(s.ms(0, 6), 11.0);
    }
}
