//! RTT matrices: parsing the shared text format (with missing pairs), filling the missing
//! pairs, and seeded generators for tests and simulations.
//!
//! The generators follow Serf's test kit (`coordinate/phantom.go`: line, grid, split, circle,
//! random) and add a clustered Internet-like model: peers grouped around a few "continents"
//! on a plane (core latency ∝ distance), each behind an access link of its own (a height, so
//! the model is *not* Euclidean), with a few percent of multiplicative per-pair noise so the
//! triangle inequality is sometimes violated, as on the real Internet (PlanetLab: 5.6 % of
//! triples). All generators are pure functions of their arguments and RNG.
//!
//! Measured data sets have holes (King's 1 740 hosts, Meridian's 2 500): the text marks a
//! missing pair `-1`. A matrix keeps which pairs were measured ([`RttMatrix::measured`]);
//! what scores predictions against the matrix must skip the others. What needs a delay for
//! every pair (a simulated or emulated link) fills them first ([`RttMatrix::filled`]: the
//! shortest two-hop path through a host measured to both), and the filled matrix still says
//! which pairs were measured.

use rand::Rng;
use thiserror::Error;

use crate::client::unit_f64;

/// State of a pair in [`RttMatrix::holes`]: measured.
const MEASURED: u8 = 0;
/// State of a pair in [`RttMatrix::holes`]: missing and not filled.
const UNFILLED: u8 = u8::MAX;

/// A symmetric matrix of round-trip times in milliseconds, diagonal zero, in which pairs may
/// be missing (not measured).
///
/// [`RttMatrix::ms`] is the RTT to use for a pair: the measurement, the fill of a missing pair
/// once [`RttMatrix::filled`] filled it, NaN for a missing pair not filled.
/// [`RttMatrix::measured`] is the measurement only, `None` for a missing pair, filled or not.
#[derive(Debug, Clone)]
pub struct RttMatrix {
    n: usize,
    /// Row-major RTTs, ms: NaN at a missing pair until it is filled.
    ms: Vec<f64>,
    /// Row-major state of each pair: [`MEASURED`], [`UNFILLED`], or the round of the closure
    /// that filled it (1: a two-hop path). Empty when every pair was measured.
    holes: Vec<u8>,
    /// Unordered pairs not measured.
    missing: usize,
}

impl PartialEq for RttMatrix {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
            && self.missing == other.missing
            && self.holes == other.holes
            && self.ms.iter().zip(&other.ms).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
    }
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
    /// An off-diagonal value is zero, negative (other than `-1`, missing) or not finite.
    #[error(
        "unusable value at row {row}, column {col} (RTTs are positive; -1 marks a missing pair)"
    )]
    Unusable {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
    },
    /// The values at (row, col) and (col, row) differ, or one is missing and the other not.
    #[error("asymmetric pair at row {row}, column {col}: (row, col) and (col, row) differ")]
    Asymmetric {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
    },
}

/// Why the missing pairs of a matrix could not all be filled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FillError {
    /// A host has no measured RTT to any other host.
    #[error(
        "host {host} has no measured RTT to any other host, so none of its pairs can be filled"
    )]
    Isolated {
        /// The host (0-based).
        host: usize,
    },
    /// No path of measured pairs joins two hosts (the measured pairs split the hosts into
    /// groups).
    #[error("no path of measured pairs joins hosts {a} and {b}, so their pair cannot be filled")]
    Unreachable {
        /// One host (0-based).
        a: usize,
        /// The other.
        b: usize,
    },
}

/// How the missing pairs of a matrix were filled ([`RttMatrix::fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Unordered pairs not measured, all filled.
    pub missing: usize,
    /// Of those, filled with the shortest two-hop path through a host measured to both.
    pub two_hop: usize,
    /// Filled in later rounds, through pairs filled before (longer paths).
    pub longer: usize,
    /// Rounds the closure took (1: every missing pair had a two-hop path).
    pub rounds: u8,
}

impl Fill {
    /// The method, in words (for logs).
    pub const METHOD: &'static str =
        "the shortest two-hop path through a host measured to both (one step of metric closure)";

    /// A short name of the method (for JSON reports).
    pub const METHOD_NAME: &'static str = "shortest two-hop path (metric closure)";

    /// "N of M pairs missing, filled by …", for a matrix of `pairs` unordered pairs.
    pub fn describe(&self, pairs: usize) -> String {
        let mut s =
            format!("{} of {} pairs missing, filled by {}", self.missing, pairs, Self::METHOD);
        if self.longer > 0 {
            s.push_str(&format!(
                "; {} of them, without such a host, by longer paths through pairs filled before \
                 ({} rounds)",
                self.longer, self.rounds
            ));
        }
        s
    }
}

impl RttMatrix {
    /// Parses the shared text format: `n`, then `n` rows of `n` RTTs in ms, whitespace
    /// separated; `-1` marks a missing pair, the diagonal is ignored (taken as 0).
    /// Off-diagonal entries must be positive or `-1`, and the matrix symmetric (a pair missing
    /// on one side only is refused).
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

    /// Builds a matrix from row-major milliseconds (`-1`: missing), checking it as
    /// [`RttMatrix::parse`] does.
    pub fn from_ms(n: usize, mut ms: Vec<f64>) -> Result<Self, MatrixError> {
        if n < 2 {
            return Err(MatrixError::BadSize);
        }
        if ms.len() != n * n {
            return Err(MatrixError::WrongCount { expected: n * n, found: ms.len() });
        }
        let usable = |v: f64| v.is_finite() && v > 0.0;
        for i in 0..n {
            ms[i * n + i] = 0.0;
        }
        let mut holes = Vec::new();
        let mut missing = 0;
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let (v, mirror) = (ms[i * n + j], ms[j * n + i]);
                if v == -1.0 {
                    if mirror != -1.0 {
                        return Err(MatrixError::Asymmetric { row: i, col: j });
                    }
                    if holes.is_empty() {
                        holes = vec![MEASURED; n * n];
                    }
                    holes[i * n + j] = UNFILLED;
                    if i < j {
                        missing += 1;
                    }
                    continue;
                }
                if !usable(v) {
                    return Err(MatrixError::Unusable { row: i, col: j });
                }
                // A mirror that is itself unusable is reported at its own position.
                if v != mirror && (mirror == -1.0 || usable(mirror)) {
                    return Err(MatrixError::Asymmetric { row: i, col: j });
                }
            }
        }
        for (v, &h) in ms.iter_mut().zip(&holes) {
            if h == UNFILLED {
                *v = f64::NAN;
            }
        }
        Ok(Self { n, ms, holes, missing })
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always `false`: a matrix has at least two hosts.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// RTT between `i` and `j` in milliseconds: the measurement, or the fill of a missing pair
    /// once [`RttMatrix::filled`] filled it; NaN for a missing pair not filled.
    #[inline]
    pub fn ms(&self, i: usize, j: usize) -> f64 {
        self.ms[i * self.n + j]
    }

    /// Row `i`, milliseconds, as [`RttMatrix::ms`] gives them.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.ms[i * self.n..(i + 1) * self.n]
    }

    /// The measured RTT between `i` and `j` in milliseconds (`Some(0.0)` for `i == j`);
    /// `None` for a missing pair, filled or not.
    #[inline]
    pub fn measured(&self, i: usize, j: usize) -> Option<f64> {
        self.is_measured(i, j).then(|| self.ms(i, j))
    }

    /// Whether the pair was measured (always for `i == j`).
    #[inline]
    pub fn is_measured(&self, i: usize, j: usize) -> bool {
        self.holes.is_empty() || self.holes[i * self.n + j] == MEASURED
    }

    /// Unordered pairs `i < j` not measured (filled or not).
    pub fn missing_pairs(&self) -> usize {
        self.missing
    }

    /// Unordered pairs `i < j`: `n (n − 1) / 2`.
    pub fn pairs(&self) -> usize {
        self.n * (self.n - 1) / 2
    }

    /// Whether every pair was measured.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Whether every pair has an RTT to use ([`RttMatrix::ms`] is never NaN): complete, or
    /// filled.
    pub fn is_usable_everywhere(&self) -> bool {
        !self.holes.contains(&UNFILLED)
    }

    /// The hosts measured to no other host.
    pub fn isolated_hosts(&self) -> Vec<usize> {
        if self.holes.is_empty() {
            return Vec::new();
        }
        (0..self.n).filter(|&i| (0..self.n).all(|j| j == i || !self.is_measured(i, j))).collect()
    }

    /// How the missing pairs were filled: `None` when every pair was measured, or some
    /// missing pair is not filled.
    pub fn fill(&self) -> Option<Fill> {
        if self.missing == 0 || !self.is_usable_everywhere() {
            return None;
        }
        let mut f = Fill { missing: self.missing, two_hop: 0, longer: 0, rounds: 0 };
        for i in 0..self.n {
            for &h in &self.holes[i * self.n + i + 1..(i + 1) * self.n] {
                match h {
                    MEASURED => {}
                    1 => f.two_hop += 1,
                    _ => f.longer += 1,
                }
                f.rounds = f.rounds.max(h);
            }
        }
        Some(f)
    }

    /// This matrix with every missing pair filled (the pairs stay not [measured]), by a
    /// one-step metric closure: a missing pair (i, j) gets the shortest two-hop path
    /// `min over k of ms(i, k) + ms(k, j)` through the hosts `k` measured to both. Pairs that
    /// have none are filled in further rounds, each the same step over the pairs known after
    /// the previous round (measured or filled), until none is left. Every round reads only
    /// the previous round's values, so the result does not depend on the order of the pairs.
    /// A complete matrix is returned as it is.
    ///
    /// [measured]: RttMatrix::measured
    pub fn filled(&self) -> Result<Self, FillError> {
        if self.is_usable_everywhere() {
            return Ok(self.clone());
        }
        if let Some(&host) = self.isolated_hosts().first() {
            return Err(FillError::Isolated { host });
        }
        let n = self.n;
        let mut out = self.clone();
        let mut round: u8 = 0;
        loop {
            let pending: Vec<(usize, usize)> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .filter(|&(i, j)| out.holes[i * n + j] == UNFILLED)
                .collect();
            let Some(&(a, b)) = pending.first() else { break };
            round = round.saturating_add(1).min(UNFILLED - 1);
            let mut found = Vec::new();
            for &(i, j) in &pending {
                // Symmetric: ms(k, j) = ms(j, k), so both rows are read in order.
                let best = out
                    .row(i)
                    .iter()
                    .zip(out.row(j))
                    .map(|(x, y)| x + y)
                    .filter(|s| !s.is_nan())
                    .fold(f64::INFINITY, f64::min);
                if best.is_finite() {
                    found.push((i, j, best));
                }
            }
            if found.is_empty() {
                return Err(FillError::Unreachable { a, b });
            }
            for (i, j, v) in found {
                out.ms[i * n + j] = v;
                out.ms[j * n + i] = v;
                out.holes[i * n + j] = round;
                out.holes[j * n + i] = round;
            }
        }
        Ok(out)
    }

    /// The matrix of the hosts `hosts` (in that order, each an index of this matrix): their
    /// RTTs, which pairs were measured and what filled the others.
    ///
    /// # Panics
    /// If fewer than two hosts are given, or one is out of range.
    pub fn subset(&self, hosts: &[usize]) -> Self {
        let m = hosts.len();
        assert!(m >= 2, "a matrix has at least two hosts");
        let ms = hosts.iter().flat_map(|&a| hosts.iter().map(move |&b| self.ms(a, b))).collect();
        let holes: Vec<u8> = if self.holes.is_empty() {
            Vec::new()
        } else {
            hosts
                .iter()
                .flat_map(|&a| {
                    hosts
                        .iter()
                        .map(move |&b| if a == b { MEASURED } else { self.holes[a * self.n + b] })
                })
                .collect()
        };
        let missing = (0..m)
            .map(|i| {
                (i + 1..m).filter(|&j| holes.get(i * m + j).is_some_and(|&h| h != MEASURED)).count()
            })
            .sum();
        let holes = if missing == 0 { Vec::new() } else { holes };
        Self { n: m, ms, holes, missing }
    }

    /// The matrix in the text format [`RttMatrix::parse`] reads, each RTT with `decimals`
    /// decimals: the RTTs to use ([`RttMatrix::ms`], fills included) with `fills = true`,
    /// else the measurements with `-1` for every missing pair.
    pub fn to_text(&self, decimals: usize, fills: bool) -> String {
        let n = self.n;
        let mut s = format!("{n}\n");
        for i in 0..n {
            let row: Vec<String> = (0..n)
                .map(|j| {
                    let v = if fills { Some(self.ms(i, j)) } else { self.measured(i, j) };
                    match v {
                        Some(v) if !v.is_nan() => format!("{v:.decimals$}"),
                        _ => "-1".to_string(),
                    }
                })
                .collect();
            s.push_str(&row.join(" "));
            s.push('\n');
        }
        s
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
        Self { n, ms, holes: Vec::new(), missing: 0 }
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

    use proptest::prelude::*;

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
        assert_eq!(RttMatrix::parse("2\n0 1 2 0"), Err(MatrixError::Asymmetric { row: 0, col: 1 }));
        assert_eq!(RttMatrix::parse("2\n0 0 0 0"), Err(MatrixError::Unusable { row: 0, col: 1 }));
        assert_eq!(RttMatrix::parse("2\n0 -2 -2 0"), Err(MatrixError::Unusable { row: 0, col: 1 }));
        assert_eq!(
            RttMatrix::parse("2\n0 inf inf 0"),
            Err(MatrixError::Unusable { row: 0, col: 1 })
        );
        assert_eq!(
            RttMatrix::parse("2\n0 NaN NaN 0"),
            Err(MatrixError::Unusable { row: 0, col: 1 })
        );
        // An unusable mirror is reported where it is.
        assert_eq!(RttMatrix::parse("2\n0 5 0 0"), Err(MatrixError::Unusable { row: 1, col: 0 }));
        // Missing on one side only.
        assert_eq!(
            RttMatrix::parse("2\n0 5 -1 0"),
            Err(MatrixError::Asymmetric { row: 0, col: 1 })
        );
        assert_eq!(
            RttMatrix::parse("2\n0 -1 5 0"),
            Err(MatrixError::Asymmetric { row: 0, col: 1 })
        );
        assert_eq!(
            RttMatrix::parse("3\n0 1 2\n1 0 3\n2 3"),
            Err(MatrixError::WrongCount { expected: 9, found: 8 })
        );
        // A complete matrix has no holes.
        assert!(m.is_complete() && m.is_usable_everywhere());
        assert_eq!((m.missing_pairs(), m.pairs()), (0, 3));
        assert_eq!(m.measured(1, 2), Some(3.0));
        assert_eq!(m.measured(2, 2), Some(0.0));
        assert_eq!(m.fill(), None);
        assert_eq!(m.filled().unwrap(), m);
    }

    #[test]
    fn missing_pairs_are_kept_apart() {
        let m = RttMatrix::parse("3\n0 10 -1\n10 0 20\n-1.0 20 0\n").unwrap();
        assert_eq!((m.missing_pairs(), m.pairs()), (1, 3));
        assert!(!m.is_complete() && !m.is_usable_everywhere());
        assert_eq!(m.measured(0, 2), None);
        assert_eq!(m.measured(2, 0), None);
        assert!(m.ms(0, 2).is_nan());
        assert_eq!(m.measured(0, 1), Some(10.0));
        assert_eq!(m.fill(), None);
        assert!(m.isolated_hosts().is_empty());
        assert_eq!(m.to_text(0, false), "3\n0 10 -1\n10 0 20\n-1 20 0\n");
        assert_eq!(RttMatrix::parse(&m.to_text(3, false)).unwrap(), m);
        // Two holes in one row, one host isolated.
        let iso = RttMatrix::parse("3\n0 -1 -1\n-1 0 5\n-1 5 0").unwrap();
        assert_eq!(iso.isolated_hosts(), vec![0]);
        assert_eq!(iso.filled(), Err(FillError::Isolated { host: 0 }));
    }

    #[test]
    fn fill_takes_the_shortest_two_hop_path_and_says_so() {
        // 0–1 10, 1–2 20, 0–3 5, 3–2 40, 0–2 missing: via 1 is 30, via 3 is 45.
        let text = "4\n0 10 -1 5\n10 0 20 100\n-1 20 0 40\n5 100 40 0\n";
        let m = RttMatrix::parse(text).unwrap();
        let f = m.filled().unwrap();
        assert_eq!(f.ms(0, 2), 30.0);
        assert_eq!(f.ms(2, 0), 30.0);
        assert_eq!(f.measured(0, 2), None, "a fill is never a measurement");
        assert_eq!(f.measured(0, 1), Some(10.0));
        assert!(f.is_usable_everywhere() && !f.is_complete());
        assert_eq!(f.fill(), Some(Fill { missing: 1, two_hop: 1, longer: 0, rounds: 1 }));
        assert_eq!(f.to_text(0, true), "4\n0 10 30 5\n10 0 20 100\n30 20 0 40\n5 100 40 0\n");
        assert_eq!(f.to_text(0, false), text);
        // Refilling changes nothing.
        assert_eq!(f.filled().unwrap(), f);
    }

    #[test]
    fn fill_goes_on_where_no_two_hop_path_exists_and_refuses_split_hosts() {
        // A path 0 – 1 – 2 – 3 (10 ms each): 0–3 has no two-hop path of measured pairs.
        let m = RttMatrix::parse("4\n0 10 -1 -1\n10 0 10 -1\n-1 10 0 10\n-1 -1 10 0\n").unwrap();
        let f = m.filled().unwrap();
        assert_eq!((f.ms(0, 2), f.ms(1, 3), f.ms(0, 3)), (20.0, 20.0, 30.0));
        assert_eq!(f.fill(), Some(Fill { missing: 3, two_hop: 2, longer: 1, rounds: 2 }));
        // Two groups {0, 1} and {2, 3} without a measured pair between them.
        let split =
            RttMatrix::parse("4\n0 10 -1 -1\n10 0 -1 -1\n-1 -1 0 10\n-1 -1 10 0\n").unwrap();
        assert_eq!(split.filled(), Err(FillError::Unreachable { a: 0, b: 2 }));
        assert!(split.filled().unwrap_err().to_string().contains("hosts 0 and 2"));
    }

    #[test]
    fn subsets_keep_measurements_holes_and_fills() {
        let m = RttMatrix::parse("4\n0 10 -1 5\n10 0 20 100\n-1 20 0 40\n5 100 40 0\n").unwrap();
        let s = m.subset(&[0, 2, 3]);
        assert_eq!((s.len(), s.missing_pairs()), (3, 1));
        assert_eq!(s.measured(0, 1), None);
        assert_eq!(s.measured(1, 2), Some(40.0));
        let f = m.filled().unwrap().subset(&[0, 2]);
        assert_eq!((f.ms(0, 1), f.measured(0, 1)), (30.0, None));
        assert_eq!(f.fill(), Some(Fill { missing: 1, two_hop: 1, longer: 0, rounds: 1 }));
        let whole = m.subset(&[1, 3]);
        assert!(whole.is_complete());
        assert_eq!(whole, RttMatrix::from_ms(2, vec![0.0, 100.0, 100.0, 0.0]).unwrap());
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

    /// A symmetric matrix of `n` hosts with RTTs in (0.5, 500) ms and a symmetric mask of
    /// holes (`true`: missing), both row-major.
    fn holey() -> impl Strategy<Value = (usize, Vec<f64>, Vec<bool>)> {
        (2usize..12).prop_flat_map(|n| {
            let pairs = n * (n - 1) / 2;
            (
                Just(n),
                proptest::collection::vec(0.5f64..500.0, pairs),
                proptest::collection::vec(proptest::bool::weighted(0.3), pairs),
            )
                .prop_map(|(n, vals, gaps)| {
                    let mut ms = vec![0.0; n * n];
                    let mut holes = vec![false; n * n];
                    let mut k = 0;
                    for i in 0..n {
                        for j in i + 1..n {
                            ms[i * n + j] = vals[k];
                            ms[j * n + i] = vals[k];
                            holes[i * n + j] = gaps[k];
                            holes[j * n + i] = gaps[k];
                            k += 1;
                        }
                    }
                    (n, ms, holes)
                })
        })
    }

    proptest! {
        /// The text of a matrix with random holes parses back to the same RTTs; holes are
        /// never reported as measured, and are counted.
        #[test]
        fn parse_of_a_matrix_with_holes_round_trips((n, ms, holes) in holey()) {
            let mut text = format!("{n}\n");
            for i in 0..n {
                let row: Vec<String> = (0..n)
                    .map(|j| if holes[i * n + j] { "-1".to_string() } else { format!("{}", ms[i * n + j]) })
                    .collect();
                text.push_str(&row.join(" "));
                text.push('\n');
            }
            let m = RttMatrix::parse(&text).unwrap();
            prop_assert_eq!(m.len(), n);
            let gaps = (0..n).map(|i| (i + 1..n).filter(|&j| holes[i * n + j]).count()).sum::<usize>();
            prop_assert_eq!(m.missing_pairs(), gaps);
            for i in 0..n {
                for j in 0..n {
                    if holes[i * n + j] {
                        prop_assert_eq!(m.measured(i, j), None);
                        prop_assert!(!m.is_measured(i, j));
                        prop_assert!(m.ms(i, j).is_nan());
                    } else {
                        prop_assert_eq!(m.measured(i, j), Some(ms[i * n + j]));
                    }
                }
            }
            prop_assert_eq!(&RttMatrix::parse(&m.to_text(17, false)).unwrap(), &m);
            // Filled: every pair usable, the measurements untouched, holes still not measured,
            // a first-round fill exactly the best two-hop path over measured pairs; refused
            // only when a host is isolated or two hosts have no path of measured pairs.
            match m.filled() {
                Ok(f) => {
                    prop_assert!(f.is_usable_everywhere());
                    prop_assert_eq!(f.fill().map_or(0, |x| x.missing), gaps);
                    for i in 0..n {
                        for j in 0..n {
                            prop_assert_eq!(f.measured(i, j), m.measured(i, j));
                            prop_assert_eq!(f.ms(i, j), f.ms(j, i));
                            if i != j {
                                prop_assert!(f.ms(i, j) > 0.0);
                            }
                            if holes[i * n + j] && f.holes[i * n + j] == 1 {
                                let best = (0..n)
                                    .filter_map(|k| Some(m.measured(i, k)? + m.measured(k, j)?))
                                    .fold(f64::INFINITY, f64::min);
                                prop_assert_eq!(f.ms(i, j), best);
                            }
                        }
                    }
                }
                Err(FillError::Isolated { host }) => {
                    prop_assert!((0..n).all(|j| j == host || holes[host * n + j]));
                }
                Err(FillError::Unreachable { a, b }) => {
                    // No path of measured pairs from a to b.
                    let mut seen = vec![false; n];
                    let mut stack = vec![a];
                    seen[a] = true;
                    while let Some(u) = stack.pop() {
                        for v in 0..n {
                            if v != u && !holes[u * n + v] && !seen[v] {
                                seen[v] = true;
                                stack.push(v);
                            }
                        }
                    }
                    prop_assert!(!seen[b]);
                }
            }
        }
    }
}
