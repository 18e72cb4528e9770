//! Per-barrio coherence alarms: is a barrio's latency still what it was?
//!
//! A barrio has a small vector of latency features (d ≤ [`MAX_DIMS`]): say its members' mean
//! RTT to their in-barrio neighbours in ms, the loss share, the share of links suspected. During
//! a window the operator trusts, a [`Baseline`] learns their mean μ and covariance Σ; frozen
//! ([`FrozenBaseline`]), it scores the mean x̄ of each later window of w samples by the
//! Mahalanobis distance (Mahalanobis, "On the generalised distance in statistics", Proc. Nat.
//! Inst. Sci. India 2, 1936)
//!
//! D² = w · (x̄ − μ)ᵀ Σ⁻¹ (x̄ − μ).
//!
//! For independent N(μ, Σ) samples x̄ ~ N(μ, Σ/w), so D² is the squared norm of d independent
//! standard normals: D² ~ χ²_d (e.g. Anderson, *An Introduction to Multivariate Statistical
//! Analysis*, ch. 3). A threshold at the (1 − α) quantile of χ²_d is then passed with
//! probability α per evaluation. [`CoherenceDetector`] raises after `raise_after` consecutive
//! evaluations over the α_raise quantile and clears after `clear_after` consecutive ones under
//! the lower α_clear quantile (hysteresis).
//!
//! Learning: Welford's running mean (Technometrics 4(3), 1962) and the inverse of the ridged
//! scatter A = λF + Σ(xᵢ − x̄)(xᵢ − x̄)ᵀ, F = diag(min_std²), kept by one Sherman–Morrison
//! rank-one update per sample (Sherman & Morrison, Ann. Math. Statist. 21(1), 1950): Welford's
//! scatter step is S += uuᵀ with u = √((n−1)/n)·(x − x̄_old), so
//! A⁻¹ ← A⁻¹ − (A⁻¹u)(A⁻¹u)ᵀ / (1 + uᵀA⁻¹u). Updates only, never downdates (which lose
//! positive-definiteness to rounding). At freezing Σ = A/(n−1), and each variance below its
//! floor min_stdᵢ² is raised to it by one more rank-one update (a diagonal addition keeps Σ
//! positive definite), so a feature that was constant while learning does not turn every tiny
//! wiggle into an alarm.
//!
//! Limits, plainly: μ and Σ are estimates from n samples, so the law of D² is rather
//! (1 + w/n)·(n−1)d/(n−d)·F(d, n−d) (Hotelling, "The generalization of Student's ratio", Ann.
//! Math. Statist. 2(3), 1931; ridge and floor aside), with a heavier tail than χ²_d. For d = 3,
//! w = 5, α = 10⁻⁴ the χ² threshold is passed 40× too often after n = 30 samples, 4.4× after
//! 100, 1.7× after 300 (the default) and 1.2× after 1000 (statrs' F CDF; cf.
//! shared/notes/reliability.md §6). Windows overlap, so consecutive D² are correlated. Latency
//! features are skewed, not Gaussian: the χ² rate is nominal. The baseline never adapts while
//! watching (no frog-boiling), and never relearns while alarmed. The MVPS draft this comes from
//! reports detection figures; those are its claims, not results, and nothing here relies on
//! them.

use std::collections::VecDeque;

use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use thiserror::Error;

/// The most features a barrio's vector may have.
pub const MAX_DIMS: usize = 8;
/// The longest sliding window ([`CoherenceConfig::window`]) accepted.
pub const MAX_COHERENCE_WINDOW: usize = 256;
/// The largest |feature| accepted; beyond it a sample is rejected (keeps every sum finite).
pub const MAX_FEATURE: f64 = 1e9;

/// Why a config, a sample or a request was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoherenceError {
    /// d = 0 or d > [`MAX_DIMS`].
    #[error("{0} features: need 1..=8")]
    Dimensions(usize),
    /// A sample with another number of features than the detector's.
    #[error("sample has {got} features, expected {expected}")]
    WrongDimension {
        /// The detector's d.
        expected: usize,
        /// The sample's length.
        got: usize,
    },
    /// NaN, ±∞, or beyond ±[`MAX_FEATURE`].
    #[error("feature {index} is not finite or beyond ±1e9")]
    BadValue {
        /// Which feature.
        index: usize,
    },
    /// A config field out of range; the message names it.
    #[error("bad config: {0}")]
    BadConfig(&'static str),
    /// Freezing a baseline that has not seen more samples than features.
    #[error("baseline has {have} samples, needs at least {need}")]
    TooFewSamples {
        /// Samples learnt.
        have: usize,
        /// Samples needed (d + 1).
        need: usize,
    },
    /// The learnt samples spread over too many floors (~10⁷ and more) for double precision:
    /// the inverse came out non-finite or not positive definite. The detector learns again.
    #[error("baseline too ill-conditioned to invert")]
    IllConditioned,
    /// Relearning was asked while alarmed: the baseline would learn the anomaly as normal.
    #[error("alarm raised: the baseline does not learn while alarmed")]
    Alarmed,
}

/// Detector settings. Build with [`CoherenceConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CoherenceConfig {
    /// Floor on each feature's standard deviation, in feature units (its length is d). A
    /// variance learnt below min_stdᵢ² is raised to it, so a feature constant while learning
    /// counts a change of min_stdᵢ as one σ. Set it to the smallest change that matters (e.g.
    /// 0.5 ms for an RTT, 0.005 for a share). In [1e-6, 1e6].
    pub min_std: Vec<f64>,
    /// Ridge λ, in units of the floors: the scatter starts at λ·diag(min_std²) (λ·I for features
    /// divided by their floors), which keeps A invertible from the first sample and adds
    /// λ·min_stdᵢ²/(n−1) to each variance. Default 1; in (0, 1e6].
    pub ridge: f64,
    /// Samples learnt before freezing (default 300; more than d, at most 10⁶). Fewer make the
    /// χ² thresholds optimistic: at d = 3, w = 5 the α = 10⁻⁴ threshold is passed 1.7× too
    /// often after 300 samples, 40× after 30 (module docs).
    pub min_samples: usize,
    /// Samples averaged per evaluation, w (default 5: a sustained 3σ shift in one feature gives
    /// D² ≥ 45, twice the raise threshold, while one outlier is diluted). 1..=256.
    pub window: usize,
    /// False-alarm probability per evaluation of the raise threshold (default 10⁻⁴).
    pub alpha_raise: f64,
    /// Probability per evaluation of D² above the clear threshold under the null (default
    /// 10⁻²); must exceed `alpha_raise`, so the clear threshold is lower (hysteresis).
    pub alpha_clear: f64,
    /// Consecutive evaluations over the raise threshold that raise (default 2).
    pub raise_after: u32,
    /// Consecutive evaluations under the clear threshold that clear (default 3).
    pub clear_after: u32,
}

impl CoherenceConfig {
    /// Defaults for features with floors `min_std` (one per feature).
    pub fn new(min_std: Vec<f64>) -> Self {
        Self {
            min_std,
            ridge: 1.0,
            min_samples: 300,
            window: 5,
            alpha_raise: 1e-4,
            alpha_clear: 1e-2,
            raise_after: 2,
            clear_after: 3,
        }
    }

    /// Checks every field and returns the thresholds it implies.
    pub fn validate(&self) -> Result<Thresholds, CoherenceError> {
        check_floors(&self.min_std, self.ridge)?;
        let bad = |ok: bool, what| if ok { Ok(()) } else { Err(CoherenceError::BadConfig(what)) };
        let d = self.min_std.len();
        bad((d + 1..=1_000_000).contains(&self.min_samples), "min_samples outside d+1..=1e6")?;
        bad((1..=MAX_COHERENCE_WINDOW).contains(&self.window), "window outside 1..=256")?;
        bad(self.raise_after >= 1 && self.clear_after >= 1, "raise_after or clear_after is 0")?;
        Thresholds::chi_squared(d, self.alpha_raise, self.alpha_clear)
    }
}

/// χ²_d quantiles at which an alarm is raised and cleared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The (1 − α_raise) quantile of χ²_d.
    pub raise: f64,
    /// The (1 − α_clear) quantile of χ²_d (below `raise`).
    pub clear: f64,
}

impl Thresholds {
    /// Quantiles of χ²_`dims`; needs 0 < α_raise < α_clear < 1.
    pub fn chi_squared(
        dims: usize,
        alpha_raise: f64,
        alpha_clear: f64,
    ) -> Result<Self, CoherenceError> {
        check_dims(dims)?;
        if !(alpha_raise > 0.0 && alpha_raise < alpha_clear && alpha_clear < 1.0) {
            return Err(CoherenceError::BadConfig("need 0 < alpha_raise < alpha_clear < 1"));
        }
        let chi = ChiSquared::new(dims as f64).map_err(|_| CoherenceError::Dimensions(dims))?;
        let t = Self {
            raise: chi.inverse_cdf(1.0 - alpha_raise),
            clear: chi.inverse_cdf(1.0 - alpha_clear),
        };
        if t.raise.is_finite() && t.clear < t.raise {
            Ok(t)
        } else {
            Err(CoherenceError::BadConfig("alpha_raise too small"))
        }
    }
}

/// A baseline being learnt: Welford mean and Sherman–Morrison inverse of the ridged scatter.
#[derive(Debug, Clone)]
pub struct Baseline {
    ridge: f64,
    min_std: Vec<f64>,
    n: usize,
    mean: DVector<f64>,
    /// Σ(xᵢ − x̄)² per feature: the scatter's diagonal (Welford's M2).
    m2: DVector<f64>,
    /// (λ·diag(min_std²) + S)⁻¹.
    a_inv: DMatrix<f64>,
}

impl Baseline {
    /// An empty baseline for `min_std.len()` features (see [`CoherenceConfig`] for both).
    pub fn new(min_std: &[f64], ridge: f64) -> Result<Self, CoherenceError> {
        check_floors(min_std, ridge)?;
        let d = min_std.len();
        let start = DVector::from_iterator(d, min_std.iter().map(|s| 1.0 / (ridge * s * s)));
        Ok(Self {
            ridge,
            min_std: min_std.to_vec(),
            n: 0,
            mean: DVector::zeros(d),
            m2: DVector::zeros(d),
            a_inv: DMatrix::from_diagonal(&start),
        })
    }

    /// Learns one sample; a bad one is refused and changes nothing.
    pub fn push(&mut self, sample: &[f64]) -> Result<(), CoherenceError> {
        check_sample(sample, self.mean.len())?;
        self.n += 1;
        let n = self.n as f64;
        let delta = DVector::from_column_slice(sample) - &self.mean;
        self.mean += &delta / n;
        let u = delta * ((n - 1.0) / n).sqrt();
        self.m2 += u.component_mul(&u);
        sherman_morrison(&mut self.a_inv, &u, 1.0);
        Ok(())
    }

    /// Samples learnt.
    pub fn count(&self) -> usize {
        self.n
    }

    /// The running mean.
    pub fn mean(&self) -> &[f64] {
        self.mean.as_slice()
    }

    /// μ and the floored Σ⁻¹ of the samples so far; needs more samples than features.
    pub fn freeze(&self) -> Result<FrozenBaseline, CoherenceError> {
        let d = self.mean.len();
        if self.n <= d {
            return Err(CoherenceError::TooFewSamples { have: self.n, need: d + 1 });
        }
        let dof = (self.n - 1) as f64;
        let mut inv_cov = &self.a_inv * dof;
        let mut std = DVector::zeros(d);
        for i in 0..d {
            let floor = self.min_std[i] * self.min_std[i];
            let var = (self.ridge * floor + self.m2[i]) / dof;
            if var < floor {
                sherman_morrison(
                    &mut inv_cov,
                    &DVector::from_fn(d, |j, _| if j == i { 1.0 } else { 0.0 }),
                    floor - var,
                );
            }
            std[i] = var.max(floor).sqrt();
        }
        // Any SPD Σ has (Σ⁻¹)ᵢᵢ·Σᵢᵢ ≥ 1; rounding that broke this also broke D².
        let spd = (0..d).all(|i| inv_cov[(i, i)] * std[i] * std[i] >= 1.0 - 1e-6);
        if !(spd && inv_cov.iter().all(|v| v.is_finite())) {
            return Err(CoherenceError::IllConditioned);
        }
        Ok(FrozenBaseline { mean: self.mean.clone(), inv_cov, std, samples: self.n })
    }
}

/// A frozen baseline: μ, Σ⁻¹ and the per-feature σ (floored) no longer change.
#[derive(Debug, Clone)]
pub struct FrozenBaseline {
    mean: DVector<f64>,
    inv_cov: DMatrix<f64>,
    std: DVector<f64>,
    samples: usize,
}

impl FrozenBaseline {
    /// μ.
    pub fn mean(&self) -> &[f64] {
        self.mean.as_slice()
    }

    /// Each feature's σ, floored at its min_std.
    pub fn std_dev(&self) -> &[f64] {
        self.std.as_slice()
    }

    /// Samples it was learnt from.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// D² = w·(x̄ − μ)ᵀΣ⁻¹(x̄ − μ) of the mean of a window of `w` ≥ 1 samples (≈ χ²_d under
    /// the null; clamped at 0 against rounding).
    pub fn d2(&self, window_mean: &[f64], w: usize) -> Result<f64, CoherenceError> {
        let r = self.residual(window_mean, w)?;
        Ok((w as f64 * r.dot(&(&self.inv_cov * &r))).max(0.0))
    }

    /// Standardised deviations zᵢ = √w·(x̄ᵢ − μᵢ)/σᵢ as (feature, zᵢ), largest |zᵢ| first.
    pub fn deviations(
        &self,
        window_mean: &[f64],
        w: usize,
    ) -> Result<Vec<(usize, f64)>, CoherenceError> {
        let r = self.residual(window_mean, w)?;
        let mut z: Vec<_> =
            r.iter().zip(&self.std).map(|(r, s)| (w as f64).sqrt() * r / s).enumerate().collect();
        z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        Ok(z)
    }

    fn residual(&self, window_mean: &[f64], w: usize) -> Result<DVector<f64>, CoherenceError> {
        check_sample(window_mean, self.mean.len())?;
        if w == 0 {
            return Err(CoherenceError::BadConfig("window must be at least 1"));
        }
        Ok(DVector::from_column_slice(window_mean) - &self.mean)
    }
}

/// Where a [`CoherenceDetector`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorState {
    /// Learning the baseline; `samples` learnt so far.
    Learning {
        /// Samples learnt.
        samples: usize,
    },
    /// Baseline frozen; windows are scored.
    Watching,
}

/// A change of alarm, returned by [`CoherenceDetector::observe`].
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmChange {
    /// The barrio is no longer coherent with its baseline.
    Raised {
        /// D² of the evaluation that raised.
        d2: f64,
        /// The raise threshold it passed.
        threshold: f64,
        /// (feature, zᵢ) of that window, largest |zᵢ| first.
        moved: Vec<(usize, f64)>,
    },
    /// Back under the clear threshold for `clear_after` evaluations.
    Cleared {
        /// D² of the evaluation that cleared.
        d2: f64,
    },
}

/// Learns a barrio's baseline, then watches its window means and raises or clears an alarm.
#[derive(Debug, Clone)]
pub struct CoherenceDetector {
    config: CoherenceConfig,
    thresholds: Thresholds,
    learning: Baseline,
    frozen: Option<FrozenBaseline>,
    /// The last `config.window` samples, oldest first: at most 256 rows of 8 floats.
    window: VecDeque<[f64; MAX_DIMS]>,
    over: u32,
    under: u32,
    alarmed: bool,
    last_d2: Option<f64>,
}

impl CoherenceDetector {
    /// A detector in `Learning`; the config is validated and the thresholds computed here.
    pub fn new(config: CoherenceConfig) -> Result<Self, CoherenceError> {
        let thresholds = config.validate()?;
        let learning = Baseline::new(&config.min_std, config.ridge)?;
        let window = VecDeque::with_capacity(config.window);
        Ok(Self {
            config,
            thresholds,
            learning,
            frozen: None,
            window,
            over: 0,
            under: 0,
            alarmed: false,
            last_d2: None,
        })
    }

    /// Takes one sample: learns it while `Learning` (freezing after `min_samples`), otherwise
    /// slides the window and, once it is full, scores its mean. A refused sample changes nothing;
    /// [`CoherenceError::IllConditioned`] at freezing restarts learning.
    pub fn observe(&mut self, sample: &[f64]) -> Result<Option<AlarmChange>, CoherenceError> {
        let Some(frozen) = &self.frozen else {
            self.learning.push(sample)?;
            if self.learning.count() >= self.config.min_samples {
                match self.learning.freeze() {
                    Ok(frozen) => self.frozen = Some(frozen),
                    Err(e) => {
                        self.learning = Baseline::new(&self.config.min_std, self.config.ridge)?;
                        return Err(e);
                    }
                }
            }
            return Ok(None);
        };
        let d = frozen.mean.len();
        check_sample(sample, d)?;
        if self.window.len() == self.config.window {
            self.window.pop_front();
        }
        let mut row = [0.0; MAX_DIMS];
        row[..d].copy_from_slice(sample);
        self.window.push_back(row);
        let w = self.window.len();
        if w < self.config.window {
            return Ok(None);
        }
        let mean: Vec<f64> =
            (0..d).map(|i| self.window.iter().map(|r| r[i]).sum::<f64>() / w as f64).collect();
        let d2 = frozen.d2(&mean, w)?;
        self.last_d2 = Some(d2);
        if !self.alarmed {
            self.over = if d2 > self.thresholds.raise { self.over.saturating_add(1) } else { 0 };
            if self.over >= self.config.raise_after {
                let moved = frozen.deviations(&mean, w)?;
                (self.alarmed, self.over, self.under) = (true, 0, 0);
                return Ok(Some(AlarmChange::Raised {
                    d2,
                    threshold: self.thresholds.raise,
                    moved,
                }));
            }
        } else {
            self.under = if d2 < self.thresholds.clear { self.under.saturating_add(1) } else { 0 };
            if self.under >= self.config.clear_after {
                (self.alarmed, self.over, self.under) = (false, 0, 0);
                return Ok(Some(AlarmChange::Cleared { d2 }));
            }
        }
        Ok(None)
    }

    /// Learning or watching.
    pub fn state(&self) -> DetectorState {
        match self.frozen {
            Some(_) => DetectorState::Watching,
            None => DetectorState::Learning { samples: self.learning.count() },
        }
    }

    /// D² of the last evaluation, if any since the baseline was frozen.
    pub fn d2(&self) -> Option<f64> {
        self.last_d2
    }

    /// Whether the alarm is raised.
    pub fn is_alarmed(&self) -> bool {
        self.alarmed
    }

    /// The raise and clear thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The frozen baseline, once `Watching`.
    pub fn baseline(&self) -> Option<&FrozenBaseline> {
        self.frozen.as_ref()
    }

    /// Drops the baseline and learns again from the next sample. Refused while alarmed (it
    /// would learn the anomaly as normal); to accept a lasting change, build a new detector.
    pub fn rebaseline(&mut self) -> Result<(), CoherenceError> {
        if self.alarmed {
            return Err(CoherenceError::Alarmed);
        }
        self.learning = Baseline::new(&self.config.min_std, self.config.ridge)?;
        (self.frozen, self.over, self.under, self.last_d2) = (None, 0, 0, None);
        self.window.clear();
        Ok(())
    }
}

/// (A + c·uuᵀ)⁻¹ from A⁻¹ (Sherman–Morrison), for A symmetric positive definite and c ≥ 0, so
/// uᵀA⁻¹u ≥ 0 and the denominator is at least 1 (clamped so, should rounding say otherwise).
/// The update is symmetric, so A⁻¹ stays exactly symmetric.
fn sherman_morrison(inv: &mut DMatrix<f64>, u: &DVector<f64>, c: f64) {
    let v = &*inv * u;
    let denom = 1.0 + c * u.dot(&v).max(0.0);
    *inv -= (&v * v.transpose()) * (c / denom);
}

fn check_dims(d: usize) -> Result<(), CoherenceError> {
    if (1..=MAX_DIMS).contains(&d) { Ok(()) } else { Err(CoherenceError::Dimensions(d)) }
}

fn check_floors(min_std: &[f64], ridge: f64) -> Result<(), CoherenceError> {
    check_dims(min_std.len())?;
    if !min_std.iter().all(|s| (1e-6..=1e6).contains(s)) {
        return Err(CoherenceError::BadConfig("min_std outside [1e-6, 1e6]"));
    }
    if !(ridge > 0.0 && ridge <= 1e6) {
        return Err(CoherenceError::BadConfig("ridge outside (0, 1e6]"));
    }
    Ok(())
}

fn check_sample(sample: &[f64], d: usize) -> Result<(), CoherenceError> {
    if sample.len() != d {
        return Err(CoherenceError::WrongDimension { expected: d, got: sample.len() });
    }
    match sample.iter().position(|x| !x.is_finite() || x.abs() > MAX_FEATURE) {
        Some(index) => Err(CoherenceError::BadValue { index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::unit_f64;
    use CoherenceError::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A correlated barrio (RTT ms, loss share, suspected share): mean and Cholesky factor.
    const MU: [f64; 3] = [40.0, 0.05, 0.10];
    const L: [[f64; 3]; 3] = [[5.0, 0.0, 0.0], [0.012, 0.016, 0.0], [0.015, 0.010, 0.046]];
    const FLOORS: [f64; 3] = [0.5, 0.005, 0.01];

    /// Box–Muller.
    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        let u1 = 1.0 - unit_f64(rng);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * unit_f64(rng)).cos()
    }

    fn sample(rng: &mut ChaCha8Rng) -> Vec<f64> {
        let z: Vec<f64> = (0..3).map(|_| normal(rng)).collect();
        (0..3).map(|i| MU[i] + (0..3).map(|j| L[i][j] * z[j]).sum::<f64>()).collect()
    }

    fn detector(tune: impl FnOnce(&mut CoherenceConfig)) -> CoherenceDetector {
        let mut config = CoherenceConfig::new(FLOORS.to_vec());
        tune(&mut config);
        CoherenceDetector::new(config).expect("valid config")
    }

    /// Relative errors of the Sherman–Morrison (λF + S)⁻¹ and frozen Σ⁻¹ against nalgebra's
    /// inverses of the same matrices built directly (two-pass mean, floored diagonal).
    fn inverse_errors(xs: &[Vec<f64>], floors: &[f64]) -> (f64, f64) {
        let mut b = Baseline::new(floors, 1.0).unwrap();
        xs.iter().for_each(|x| b.push(x).unwrap());
        let (n, d) = (xs.len() as f64, floors.len());
        let mean = xs.iter().fold(DVector::zeros(d), |m, x| m + DVector::from_column_slice(x)) / n;
        let mut a =
            DMatrix::from_diagonal(&DVector::from_iterator(d, floors.iter().map(|s| s * s)));
        for x in xs {
            let r = DVector::from_column_slice(x) - &mean;
            a += &r * r.transpose();
        }
        let mut cov = &a / (n - 1.0);
        (0..d).for_each(|i| cov[(i, i)] = cov[(i, i)].max(floors[i] * floors[i]));
        let (a_inv, cov_inv) = (a.try_inverse().unwrap(), cov.try_inverse().unwrap());
        let err = |x: &DMatrix<f64>, y: &DMatrix<f64>| (x - y).norm() / y.norm();
        (err(&b.a_inv, &a_inv), err(&b.freeze().unwrap().inv_cov, &cov_inv))
    }

    #[test]
    fn sherman_morrison_matches_direct_inverse() {
        let seed = 11;
        eprintln!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // the suspected share is constant: its variance is floored at freezing
        let xs: Vec<_> = (0..200).map(|_| [&sample(&mut rng)[..2], &[0.1]].concat()).collect();
        let (scatter, cov) = inverse_errors(&xs, &FLOORS);
        assert!(scatter < 1e-10 && cov < 1e-10, "relative errors {scatter:e} {cov:e}");
    }

    #[test]
    fn chi_squared_thresholds_match_tables() {
        // χ²_d quantiles at 0.999 (d = 3, 5, 8) and 0.9999 (d = 3), from published tables
        for (d, alpha, want) in
            [(3, 1e-3, 16.266), (5, 1e-3, 20.515), (8, 1e-3, 26.124), (3, 1e-4, 21.108)]
        {
            let t = Thresholds::chi_squared(d, alpha, 0.5).unwrap();
            assert!((t.raise - want).abs() < 1e-3, "d {d} α {alpha}: {} vs {want}", t.raise);
        }
    }

    #[test]
    fn null_rate_over_the_raise_threshold_is_alpha() {
        let seed = 5;
        eprintln!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // overlapping windows are correlated: fewer effective evaluations, a wider tolerance
        for (window, evals, tolerance) in [(1, 20_000u32, 0.003), (5, 40_000, 0.004)] {
            let mut det = detector(|c| {
                (c.min_samples, c.window, c.raise_after) = (5_000, window, 1);
                (c.alpha_raise, c.alpha_clear) = (0.01, 0.05);
            });
            (0..5_000 + window - 1).for_each(|_| drop(det.observe(&sample(&mut rng)).unwrap()));
            let (mut over, mut sum) = (0, 0.0);
            for _ in 0..evals {
                det.observe(&sample(&mut rng)).unwrap();
                let d2 = det.d2().expect("window full");
                over += usize::from(d2 > det.thresholds().raise);
                sum += d2;
            }
            let (rate, mean) = (over as f64 / f64::from(evals), sum / f64::from(evals));
            eprintln!("window {window}: rate {rate} mean D² {mean}");
            assert!((rate - 0.01).abs() < tolerance, "window {window}: rate {rate}");
            assert!((mean - 3.0).abs() < 0.15, "window {window}: mean D² {mean}, χ²_3 has 3");
        }
    }

    #[test]
    fn three_sigma_shift_raises_within_a_few_samples_naming_the_feature() {
        let mut slowest = 0;
        for (seed, feature) in (0..20).flat_map(|s| (0..3).map(move |f| (s, f))) {
            eprintln!("seed {seed} feature {feature}");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut det = detector(|_| {});
            for _ in 0..350 {
                assert_eq!(det.observe(&sample(&mut rng)), Ok(None), "false alarm");
            }
            let sigma = L[feature].iter().map(|l| l * l).sum::<f64>().sqrt();
            let raised = (1..=10).find_map(|k| {
                let mut x = sample(&mut rng);
                x[feature] += 3.0 * sigma;
                match det.observe(&x) {
                    Ok(Some(AlarmChange::Raised { moved, .. })) => Some((k, moved)),
                    _ => None,
                }
            });
            let (k, moved) = raised.expect("a 3σ shift raises within 10 samples");
            assert_eq!(moved[0].0, feature, "{moved:?}");
            assert!(moved[0].1 > 3.0 && moved[1].1.abs() < moved[0].1, "{moved:?}");
            slowest = slowest.max(k);
        }
        eprintln!("slowest raise: {slowest} samples");
        assert!(slowest <= 7, "slowest raise {slowest}");
    }

    #[test]
    fn hysteresis_between_thresholds_neither_raises_nor_clears() {
        let mut config = CoherenceConfig::new(vec![0.01]);
        (config.min_samples, config.window, config.raise_after, config.clear_after) = (30, 1, 2, 3);
        let mut det = CoherenceDetector::new(config).unwrap();
        (0..30).for_each(|i| drop(det.observe(&[if i % 2 == 0 { 9.0 } else { 11.0 }])));
        let (b, t) = (det.baseline().expect("frozen").clone(), det.thresholds());
        // one feature, w = 1: D² = ((x − μ)/σ)²
        let at = |d2: f64| [b.mean()[0] + d2.sqrt() * b.std_dev()[0]];
        let (low, mid, high) = (at(0.0), at((t.clear + t.raise) / 2.0), at(1.5 * t.raise));
        for x in [mid; 10].into_iter().chain([high, mid, high]) {
            assert_eq!(det.observe(&x), Ok(None));
        }
        assert!(det.d2().is_some_and(|d2| d2 > t.raise) && !det.is_alarmed());
        assert!(matches!(det.observe(&high), Ok(Some(AlarmChange::Raised { .. }))));
        for x in [mid; 10].into_iter().chain([low, low, mid, low, low]) {
            assert_eq!(det.observe(&x), Ok(None));
        }
        assert!(det.is_alarmed());
        assert_eq!(det.rebaseline(), Err(Alarmed));
        assert!(matches!(det.observe(&low), Ok(Some(AlarmChange::Cleared { d2 })) if d2 < t.clear));
        assert_eq!(
            (det.rebaseline(), det.state()),
            (Ok(()), DetectorState::Learning { samples: 0 })
        );
    }

    #[test]
    fn bad_input_is_a_typed_error_and_changes_nothing() {
        let seed = 3;
        eprintln!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut det = detector(|c| c.min_samples = 30);
        for learnt in [10, 25] {
            (0..learnt).for_each(|_| drop(det.observe(&sample(&mut rng)).unwrap()));
            let before = format!("{det:?}");
            assert_eq!(det.observe(&[1.0, 2.0]), Err(WrongDimension { expected: 3, got: 2 }));
            assert_eq!(det.observe(&[1.0, f64::NAN, 0.0]), Err(BadValue { index: 1 }));
            assert_eq!(det.observe(&[f64::INFINITY, 0.0, 0.0]), Err(BadValue { index: 0 }));
            assert_eq!(det.observe(&[0.0, 0.0, -1e300]), Err(BadValue { index: 2 }));
            assert_eq!(format!("{det:?}"), before);
        }
        assert!(det.state() == DetectorState::Watching && det.d2().is_some());
        let bad = |tune: fn(&mut CoherenceConfig)| {
            let mut config = CoherenceConfig::new(FLOORS.to_vec());
            tune(&mut config);
            CoherenceDetector::new(config).err()
        };
        assert_eq!(bad(|c| c.min_std.clear()), Some(Dimensions(0)));
        assert_eq!(bad(|c| c.min_std = vec![1.0; 9]), Some(Dimensions(9)));
        let configs: [fn(&mut CoherenceConfig); 13] = [
            |c| c.alpha_raise = 0.0,
            |c| c.alpha_raise = f64::NAN,
            |c| c.alpha_raise = 1e-300,
            |c| c.alpha_clear = 1.0,
            |c| c.alpha_clear = c.alpha_raise,
            |c| c.window = 0,
            |c| c.window = MAX_COHERENCE_WINDOW + 1,
            |c| c.raise_after = 0,
            |c| c.clear_after = 0,
            |c| c.min_samples = 3,
            |c| c.ridge = 0.0,
            |c| c.min_std[0] = 0.0,
            |c| c.min_std[1] = f64::NAN,
        ];
        for (i, tune) in configs.into_iter().enumerate() {
            assert!(matches!(bad(tune), Some(BadConfig(_))), "config {i}");
        }
        let empty = Baseline::new(&FLOORS, 1.0).unwrap();
        assert_eq!(empty.freeze().err(), Some(TooFewSamples { have: 0, need: 4 }));
    }

    #[test]
    fn constant_feature_is_floored_so_a_wiggle_stays_small() {
        let seed = 9;
        eprintln!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut det = CoherenceDetector::new(CoherenceConfig::new(vec![0.5, 0.005])).unwrap();
        (0..300).for_each(|_| drop(det.observe(&[40.0, 0.05 + 0.02 * normal(&mut rng)]).unwrap()));
        let b = det.baseline().expect("frozen").clone();
        assert_eq!(b.std_dev()[0], 0.5);
        assert!(b.inv_cov.iter().all(|v| v.is_finite()));
        // 0.1 ms off over a window of 5: D² = 5 · (0.1 / 0.5)² = 0.2
        let wiggle = [40.1, b.mean()[1]];
        let d2 = b.d2(&wiggle, 5).unwrap();
        assert!((d2 - 0.2).abs() < 1e-6, "D² {d2}");
        (0..5).for_each(|_| assert_eq!(det.observe(&wiggle), Ok(None)));
        assert!(det.d2().is_some_and(|d2| d2 < det.thresholds().clear));
        // three floors off still alarms: D² = 5 · 3² = 45
        assert!(b.d2(&[41.5, b.mean()[1]], 5).unwrap() > det.thresholds().raise);
    }

    proptest! {
        #[test]
        fn sherman_morrison_matches_direct_for_any_shape(
            seed in any::<u64>(), d in 1usize..=MAX_DIMS, extra in 0usize..100,
        ) {
            eprintln!("seed {seed} d {d} extra {extra}");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // scales 0.01..100 per feature, floors 1..100% of them, one common factor
            let scales: Vec<f64> =
                (0..d).map(|_| 10f64.powf(4.0 * unit_f64(&mut rng) - 2.0)).collect();
            let floors: Vec<f64> =
                scales.iter().map(|s| s * 10f64.powf(-2.0 * unit_f64(&mut rng))).collect();
            let xs: Vec<Vec<f64>> = (0..d + 1 + extra)
                .map(|_| {
                    let common = normal(&mut rng);
                    scales.iter().map(|s| s * (normal(&mut rng) + 0.8 * common)).collect()
                })
                .collect();
            let (scatter, cov) = inverse_errors(&xs, &floors);
            prop_assert!(scatter < 1e-8 && cov < 1e-8, "relative errors {scatter:e} {cov:e}");
        }

        #[test]
        fn observe_never_panics_and_d2_stays_finite(
            seed in any::<u64>(),
            values in proptest::collection::vec(prop_oneof![any::<f64>(), -1e9f64..1e9], 80),
        ) {
            eprintln!("seed {seed}");
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut det = detector(|c| c.min_samples = 10);
            for (i, v) in values.into_iter().enumerate() {
                let mut x = sample(&mut rng);
                if i % 2 == 1 {
                    x[i % 3] = v;
                }
                let ok = x.iter().all(|x| x.abs() <= MAX_FEATURE);
                match det.observe(&x) {
                    Err(IllConditioned) => {
                        prop_assert_eq!(det.state(), DetectorState::Learning { samples: 0 })
                    }
                    r => prop_assert_eq!(r.is_ok(), ok),
                }
                prop_assert!(det.d2().is_none_or(|d2| d2.is_finite() && d2 >= 0.0));
                let b = det.baseline();
                prop_assert!(b.is_none_or(|b| (0..3).all(|i| b.inv_cov[(i, i)] > 0.0)));
            }
        }
    }
}
