//! The Vivaldi client: one peer's coordinate, updated from (peer coordinate, measured RTT).
//!
//! Vivaldi (Dabek et al., "Vivaldi: A Decentralized Network Coordinate System", SIGCOMM 2004)
//! treats the overlay as a system of springs whose rest length is the measured RTT. Each
//! sample pulls or pushes this peer along the line to the other one, by a step proportional
//! to the spring's tension (`rtt - predicted`) and to the adaptive timestep
//! `cc · e_i / (e_i + e_j)`, where `e` are the two peers' error estimates: an uncertain peer
//! moves a lot towards a certain one and a certain one barely moves. The error estimate is an
//! exponentially weighted average of the samples' relative error. Heights grow and shrink
//! with the same force (§5.4 of the paper).
//!
//! On top of that, following HashiCorp Serf (which follows Ledlie et al., "Network
//! Coordinates in the Wild", NSDI 2007), samples go through a per-peer median filter, a
//! small gravity pulls the frame towards the origin, and an adjustment term (Lee et al.,
//! ToN 2010) averages the residuals of the last few samples. That is the `serf` profile.
//!
//! The `vecino` profile, on the same code path, drops the adjustment term and adds (see
//! [`Config`](crate::Config)): a step weighted by `(L / rtt)^1.5` so that the error is
//! minimised in *relative* terms and short links (the ones that decide who is nearest) are
//! fitted, capped at [`MAX_STEP`] of the residual; a Cauchy kernel on the relative residual,
//! scaled by the client's own error, so a spike barely moves it; heights moved by the stress
//! gradient; heavy-ball momentum; step-size decay with re-heat; and an *application*
//! coordinate (Ledlie et al. §6): a smoothed copy of the system coordinate that the host
//! publishes and predicts with, while the system coordinate (the one sent in ping replies
//! and fed to peers' updates) keeps learning. `docs/BENCHMARKS.md` has what each buys.
//!
//! The client is pure: it reads no clock and owns no randomness. The only random choice,
//! the direction to move when two peers share a position, comes from the caller's RNG.

use std::time::Duration;

use nalgebra::SVector;
use rand::Rng;
use thiserror::Error;

use crate::coordinate::{Coordinate, CoordinateError, DEFAULT_DIMENSIONS, MAX_RTT};
use crate::filter::LatencyFilter;
use crate::profile::Config;

/// The application coordinate's smoothing starts at `APP_WARMUP / (n + APP_WARMUP)`.
const APP_WARMUP: f64 = 8.0;

/// Largest step of one sample, as a fraction of its residual (vecino levers only; Serf's
/// own step, `cc · w ≤ 0.25`, never reaches it).
const MAX_STEP: f64 = 0.3;

/// `since_reset` of a restored coordinate: past any warm-up.
const SETTLED: u64 = 1 << 20;

/// Below this many seconds two positions, an RTT or an error sum count as zero (Serf's).
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// Why an update was refused. The client's state is untouched when this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum UpdateError {
    /// The peer's coordinate failed [`Coordinate::check`].
    #[error("invalid peer coordinate: {0}")]
    InvalidCoordinate(#[from] CoordinateError),
    /// The RTT is not in `(0, MAX_RTT]` (or not a number).
    #[error("rtt out of range: {0} s")]
    RttOutOfRange(f64),
}

/// Counters a host exports as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Updates applied.
    pub updates: u64,
    /// Updates refused with an [`UpdateError`].
    pub rejected: u64,
    /// Times the coordinate became invalid and was reset to the origin.
    pub resets: u64,
    /// Times step-size decay was re-heated because the error estimate jumped.
    pub reheats: u64,
}

/// One peer's Vivaldi state. `K` names other peers (for the per-peer latency filter).
#[derive(Debug, Clone)]
pub struct Client<K, const D: usize = DEFAULT_DIMENSIONS> {
    config: Config,
    coord: Coordinate<D>,
    app: Coordinate<D>,
    filter: LatencyFilter<K>,
    /// Serf's adjustment ring (`config.adjustment_window` samples).
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    /// Updates since start, reset or re-heat (step-size decay).
    age: f64,
    /// Slow average of the error estimate (re-heat detection).
    slow_error: f64,
    /// Running mean of ln(rtt in seconds) (RTT weighting's reference length).
    log_rtt: f64,
    /// Samples folded into `log_rtt`, saturating.
    log_rtt_n: f64,
    /// Updates since start or reset (app-coordinate warm-up).
    since_reset: u64,
    /// Last position step (momentum).
    velocity: SVector<f64, D>,
    stats: ClientStats,
}

impl<K: Ord + Clone, const D: usize> Client<K, D> {
    /// A client at the origin, with the largest error.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            coord: Self::fresh(&config),
            app: Self::fresh(&config),
            filter: LatencyFilter::new(config.filter),
            adjustment_samples: vec![0.0; config.adjustment_window],
            adjustment_index: 0,
            age: 0.0,
            slow_error: config.error_max,
            log_rtt: 0.0,
            log_rtt_n: 0.0,
            velocity: SVector::zeros(),
            since_reset: 0,
            stats: ClientStats::default(),
        }
    }

    fn fresh(config: &Config) -> Coordinate<D> {
        Coordinate::origin(config.height_min, config.error_max)
    }

    /// The system coordinate: what this peer sends in ping replies, for the other side's
    /// [`Client::update`].
    pub fn coordinate(&self) -> &Coordinate<D> {
        &self.coord
    }

    /// The application-level coordinate: what the host publishes (newspapers, barrio slots)
    /// and predicts RTTs with. A smoothed copy of [`Client::coordinate`] when the profile
    /// sets `app_alpha`, else the same.
    pub fn app_coordinate(&self) -> &Coordinate<D> {
        if self.config.app_alpha > 0.0 { &self.app } else { &self.coord }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Forces the coordinate to a known state (for example one persisted before a restart).
    ///
    /// Both the system and the application coordinate take it, and the client treats it as
    /// settled: the step starts half-decayed and the application coordinate does not re-run
    /// its warm-up (so a restart does not publish a coordinate travelling from the origin).
    pub fn set_coordinate(&mut self, coord: Coordinate<D>) -> Result<(), CoordinateError> {
        coord.check()?;
        self.coord = coord;
        self.app = coord;
        self.velocity = SVector::zeros();
        self.age = self.config.decay.map_or(0.0, |d| d.tau);
        self.since_reset = SETTLED;
        Ok(())
    }

    /// Forgets the filter state kept for `peer` (it left the overlay).
    pub fn forget(&mut self, peer: &K) {
        self.filter.forget(peer);
    }

    /// Predicted RTT from this client to `other`, in seconds.
    pub fn distance_secs(&self, other: &Coordinate<D>) -> f64 {
        self.coord.distance_secs(other)
    }

    /// Updates from one RTT sample to `peer`, whose coordinate is `other`.
    ///
    /// Returns the new coordinate. On error nothing changes except the `rejected` counter.
    pub fn update<R: Rng + ?Sized>(
        &mut self,
        peer: &K,
        other: &Coordinate<D>,
        rtt: Duration,
        rng: &mut R,
    ) -> Result<&Coordinate<D>, UpdateError> {
        self.update_secs(peer, other, rtt.as_secs_f64(), rng)
    }

    /// As [`Client::update`], with the RTT in seconds (any `f64`: NaN, zero, negative or above
    /// [`MAX_RTT`] is refused).
    pub fn update_secs<R: Rng + ?Sized>(
        &mut self,
        peer: &K,
        other: &Coordinate<D>,
        rtt_secs: f64,
        rng: &mut R,
    ) -> Result<&Coordinate<D>, UpdateError> {
        if let Err(e) = other.check() {
            self.stats.rejected += 1;
            return Err(e.into());
        }
        // NaN fails the comparison and lands here too.
        if !(rtt_secs > 0.0 && rtt_secs <= MAX_RTT.as_secs_f64()) {
            self.stats.rejected += 1;
            return Err(UpdateError::RttOutOfRange(rtt_secs));
        }
        let (rtt, _samples) = self.filter.push(peer, rtt_secs);
        self.update_vivaldi(other, rtt, rng);
        self.update_adjustment(other, rtt);
        self.update_gravity(rng);
        self.stats.updates += 1;
        self.since_reset += 1;
        if !self.coord.is_valid() {
            self.reset();
        }
        if self.config.app_alpha > 0.0 {
            // While the system coordinate is young it is still travelling from the origin:
            // follow it closely, then average over ~1/alpha updates.
            #[allow(clippy::cast_precision_loss)]
            let n = self.since_reset as f64;
            let a = self.config.app_alpha.max(APP_WARMUP / (n + APP_WARMUP));
            self.app.vec += (self.coord.vec - self.app.vec) * a;
            self.app.height += (self.coord.height - self.app.height) * a;
            self.app.error = self.coord.error;
        }
        Ok(&self.coord)
    }

    /// Returns to the origin with the largest error (after the state turned invalid).
    fn reset(&mut self) {
        self.stats.resets += 1;
        self.coord = Self::fresh(&self.config);
        self.adjustment_samples.fill(0.0);
        self.adjustment_index = 0;
        self.age = 0.0;
        self.slow_error = self.config.error_max;
        self.velocity = SVector::zeros();
        self.since_reset = 0;
        self.app = self.coord;
    }

    fn update_vivaldi<R: Rng + ?Sized>(&mut self, other: &Coordinate<D>, rtt: f64, rng: &mut R) {
        let cfg = self.config;
        let rtt = rtt.max(ZERO_THRESHOLD);
        let dist = self.coord.distance_secs(other);
        let mut wrongness = (rtt - dist).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        if let Some(r) = cfg.robust {
            // One sample cannot raise the error estimate by more than the kernel's width.
            wrongness = wrongness.min(r.k * self.coord.error.max(r.min_scale));
        }
        let e = cfg.ce * weight * wrongness + self.coord.error * (1.0 - cfg.ce * weight);
        self.coord.error = e.min(cfg.error_max);

        let mut step = cfg.cc * weight;
        if let Some(d) = cfg.decay {
            self.slow_error += 0.02 * (self.coord.error - self.slow_error);
            if self.coord.error > d.reheat * self.slow_error && self.age > d.tau {
                self.age = 0.0;
                self.stats.reheats += 1;
            }
            step *= (1.0 / (1.0 + self.age / d.tau)).max(d.floor);
            self.age += 1.0;
        }
        if cfg.weighting.is_some() {
            // Running mean of ln(rtt): a plain average for the first samples, then an
            // exponential one with a window of 64.
            self.log_rtt_n = (self.log_rtt_n + 1.0).min(64.0);
            self.log_rtt += (rtt.ln() - self.log_rtt) / self.log_rtt_n;
        }
        self.spring(other, rtt, step, true, rng);
    }

    /// One spring step of size `step` (a fraction of the residual) towards the rest length
    /// `rtt` from `other`, through the robust kernel and the RTT weighting.
    fn spring<R: Rng + ?Sized>(
        &mut self,
        other: &Coordinate<D>,
        rtt: f64,
        mut step: f64,
        momentum: bool,
        rng: &mut R,
    ) {
        let cfg = self.config;
        let dist = self.coord.distance_secs(other);
        let residual = rtt - dist;
        if let Some(r) = cfg.robust {
            let z = residual.abs() / rtt / (r.k * self.coord.error.max(r.min_scale));
            step /= 1.0 + z * z;
        }
        if let Some(wt) = cfg.weighting {
            let gain = ((self.log_rtt - rtt.ln()) * wt.power).exp();
            step *= gain.min(wt.max_gain);
        }
        // Never more than half-way to the rest length: with RTT weighting a short link's
        // gain could otherwise overshoot, and a run of overshoots diverges.
        let force = step.min(MAX_STEP) * residual;
        let (unit, mag) = unit_vector_at(&self.coord.vec, &other.vec, rng);
        let mut delta = unit * force;
        if momentum && cfg.momentum > 0.0 {
            delta += self.velocity * cfg.momentum;
            self.velocity = delta;
        }
        self.coord.vec += delta;
        let h = match cfg.height_gain {
            Some(g) => self.coord.height + g * force,
            None if mag > ZERO_THRESHOLD => {
                (self.coord.height + other.height) * force / mag + self.coord.height
            }
            None => self.coord.height,
        };
        self.coord.height = h.max(cfg.height_min);
    }

    /// Moves `force` seconds along the line from `other` to this coordinate (negative: towards
    /// `other`), scaling the height with it.
    fn apply_force<R: Rng + ?Sized>(&mut self, force: f64, other: &Coordinate<D>, rng: &mut R) {
        let (unit, mag) = unit_vector_at(&self.coord.vec, &other.vec, rng);
        self.coord.vec += unit * force;
        if mag > ZERO_THRESHOLD {
            let h = (self.coord.height + other.height) * force / mag + self.coord.height;
            self.coord.height = h.max(self.config.height_min);
        }
    }

    fn update_adjustment(&mut self, other: &Coordinate<D>, rtt: f64) {
        let window = self.adjustment_samples.len();
        if window == 0 {
            return;
        }
        // As Serf: the raw distance (adjustments left out), after the Vivaldi step.
        let dist = self.coord.raw_distance_secs(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        #[allow(clippy::cast_precision_loss)]
        let denom = 2.0 * window as f64;
        self.coord.adjustment = sum / denom;
    }

    fn update_gravity<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        if !self.config.gravity_rho.is_finite() {
            return;
        }
        let origin = Coordinate::<D>::origin(self.config.height_min, self.config.error_max);
        let dist = origin.distance_secs(&self.coord);
        let force = -(dist / self.config.gravity_rho).powi(2);
        self.apply_force(force, &origin, rng);
    }
}

/// Unit vector pointing from `to` towards `from`, and the distance between them. When the two
/// coincide, a random direction (and distance 0).
fn unit_vector_at<R: Rng + ?Sized, const D: usize>(
    from: &SVector<f64, D>,
    to: &SVector<f64, D>,
    rng: &mut R,
) -> (SVector<f64, D>, f64) {
    let diff = from - to;
    let mag = diff.norm();
    if mag > ZERO_THRESHOLD {
        return (diff / mag, mag);
    }
    let random: SVector<f64, D> = SVector::from_fn(|_, _| unit_f64(rng) - 0.5);
    let rmag = random.norm();
    if rmag > ZERO_THRESHOLD {
        return (random / rmag, 0.0);
    }
    let mut first = SVector::zeros();
    if D > 0 {
        first[0] = 1.0;
    }
    (first, 0.0)
}

/// A uniform `f64` in `[0, 1)` from 53 random bits.
#[inline]
#[allow(clippy::cast_precision_loss)]
pub(crate) fn unit_f64<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::topology::{RttMatrix, Topology};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Serf's `Simulate`: every round every node updates against a random other node.
    fn simulate(m: &RttMatrix, profile: Profile, rounds: usize, seed: u64) -> Vec<Coordinate> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = m.len();
        let mut clients: Vec<Client<usize>> =
            (0..n).map(|_| Client::new(profile.config())).collect();
        for _ in 0..rounds {
            for i in 0..n {
                #[allow(clippy::cast_possible_truncation)]
                let mut j = (rng.next_u64() % (n as u64 - 1)) as usize;
                if j >= i {
                    j += 1;
                }
                let other = *clients[j].coordinate();
                clients[i].update_secs(&j, &other, m.ms(i, j) / 1000.0, &mut rng).unwrap();
            }
        }
        clients.iter().map(|c| *c.app_coordinate()).collect()
    }

    fn mean_error(m: &RttMatrix, c: &[Coordinate]) -> f64 {
        let n = m.len();
        let mut sum = 0.0;
        let mut k = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let a = m.ms(i, j);
                sum += (c[i].distance_secs(&c[j]) * 1000.0 - a).abs() / a;
                k += 1.0;
            }
        }
        sum / k
    }

    #[test]
    fn both_profiles_embed_serf_topologies() {
        let seed = 1;
        println!("seed {seed}");
        for t in [Topology::Line, Topology::Grid, Topology::Split, Topology::Internet] {
            let m = t.generate(25, &mut ChaCha8Rng::seed_from_u64(seed));
            for p in Profile::ALL {
                let err = mean_error(&m, &simulate(&m, p, 300, seed));
                // Serf's own tests accept a mean error of 0.2 (split, line) and below.
                assert!(err < 0.2, "{} on {}: mean error {err}", p.name(), t.name());
            }
        }
    }

    #[test]
    fn restored_coordinate_is_published_at_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut c: Client<u8> = Client::new(Profile::Vecino.config());
        let saved = Coordinate::from_parts(&[0.05; 8], 0.002, 0.1, 0.0).unwrap();
        c.set_coordinate(saved).unwrap();
        assert_eq!(*c.app_coordinate(), saved);
        let peer = Coordinate::from_parts(&[0.06; 8], 0.002, 0.1, 0.0).unwrap();
        let truth = saved.distance_secs(&peer);
        c.update_secs(&1, &peer, truth * 1.05, &mut rng).unwrap();
        let drift = (c.app_coordinate().vec - saved.vec).norm();
        assert!(drift < 0.000_1, "app coordinate jumped {drift} s after a restore");
    }

    #[test]
    fn a_spike_moves_vecino_far_less_than_serf() {
        let seed = 2;
        println!("seed {seed}");
        let m = Topology::Grid.generate(25, &mut ChaCha8Rng::seed_from_u64(seed));
        let mut moved = Vec::new();
        for p in Profile::ALL {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let n = m.len();
            let mut clients: Vec<Client<usize>> = (0..n).map(|_| Client::new(p.config())).collect();
            for _ in 0..300 {
                for i in 0..n {
                    let j = (i + 1 + (rng.next_u64() % 24) as usize) % n;
                    let other = *clients[j].coordinate();
                    clients[i].update_secs(&j, &other, m.ms(i, j) / 1000.0, &mut rng).unwrap();
                }
            }
            // A fresh peer id (no filter history) answers 3× slower than it is.
            let other = *clients[1].coordinate();
            let before = *clients[0].app_coordinate();
            clients[0].update_secs(&99, &other, 3.0 * m.ms(0, 1) / 1000.0, &mut rng).unwrap();
            let after = *clients[0].app_coordinate();
            moved.push((before.vec - after.vec).norm() + (before.height - after.height).abs());
        }
        assert!(moved[0] * 10.0 < moved[1], "vecino moved {} s, serf {} s", moved[0], moved[1]);
    }
}
