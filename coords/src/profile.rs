//! Tuning profiles: Serf's reference defaults and vecino's own.
//!
//! Both profiles drive the *same* [`Client`](crate::Client) code; a profile is only a
//! [`Config`]. The `serf` profile reproduces HashiCorp Serf's `coordinate` package
//! (`DefaultConfig`: 8-D + height, CE = CC = 0.25, error max 1.5, height min 10 µs,
//! adjustment window 20, per-peer median-of-3 latency filter, gravity rho 150) so that
//! vecino can be compared with it side by side. The `vecino` profile switches on the levers
//! described on [`Config`]; `docs/BENCHMARKS.md` records what each one buys on real data.

use crate::filter::FilterConfig;

/// The bound on peers tracked by the per-peer latency filter (and by anything else a client
/// keys by peer). An overlay node measures its active view and a sample of others; 4096 is
/// far above either, and evicting the least recently measured costs nothing in accuracy.
pub const DEFAULT_MAX_PEERS: usize = 4096;

/// A named configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// vecino's own tuning (the default).
    #[default]
    Vecino,
    /// HashiCorp Serf's `coordinate.DefaultConfig()`, the reference.
    Serf,
}

impl Profile {
    /// Both profiles, vecino first.
    pub const ALL: [Profile; 2] = [Profile::Vecino, Profile::Serf];

    /// The configuration of this profile.
    pub fn config(self) -> Config {
        match self {
            Profile::Vecino => Config::vecino(),
            Profile::Serf => Config::serf(),
        }
    }

    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Vecino => "vecino",
            Profile::Serf => "serf",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vecino" => Ok(Profile::Vecino),
            "serf" => Ok(Profile::Serf),
            _ => Err(UnknownProfile),
        }
    }
}

/// A profile name that is neither `vecino` nor `serf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile (expected vecino or serf)")]
pub struct UnknownProfile;

/// A robust loss on the relative residual `r = (rtt - predicted) / rtt`.
///
/// The force of one sample is scaled by the Cauchy weight `1 / (1 + (r / (k·s))²)` where the
/// scale `s = max(error, min_scale)` is the client's own error estimate: a sample that
/// disagrees with the model far more than the model usually errs (a spike, a retransmission)
/// barely moves the coordinate, while a real move, which raises the error estimate within a
/// few samples, is followed. The same sample's contribution to the error estimate is clipped
/// at `k·s`, so one spike cannot inflate the error either (but a run of them can).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Robust {
    /// Width of the Cauchy kernel in units of the scale.
    pub k: f64,
    /// Smallest scale, so a very confident client still accepts small corrections.
    pub min_scale: f64,
}

/// Step-size decay: the Vivaldi step is multiplied by `max(floor, 1 / (1 + n / tau))`, `n` =
/// updates since the client started (or was reset, or re-heated because its error rose).
///
/// Vivaldi's adaptive timestep (`cc · e_i / (e_i + e_j)`) stops shrinking once every error
/// estimate has levelled off, so a converged Serf coordinate keeps jittering by ~2 ms per
/// update forever. Decaying the step turns the update into a Robbins–Monro average of the
/// positions the samples vote for; the floor keeps the coordinate able to follow slow change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decay {
    /// Updates over which the step halves.
    pub tau: f64,
    /// Smallest multiplier.
    pub floor: f64,
    /// Re-heat: when the error estimate exceeds `reheat ×` its slow average, `n` restarts
    /// so the client moves quickly again (the network changed, or this peer moved).
    pub reheat: f64,
}

/// Relative weighting of samples by their RTT.
///
/// Vivaldi's spring force is the absolute residual `rtt - predicted`, so it minimises the
/// *absolute* squared error: a 300 ms link pulls a thousand times harder than a 0.3 ms one,
/// and the short links, which decide who is nearest, end up poorly fitted. Accuracy is judged
/// (and proximity decided) on the *relative* error. The step of a sample is therefore
/// multiplied by `min(max_gain, (L / rtt)^power)`, where `L` is a running geometric mean of
/// the RTTs this client measures (so the weighting is scale-free: a LAN and a WAN behave
/// alike). `power = 2` is the gradient of the relative squared error, `power = 0` is
/// Vivaldi.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttWeighting {
    /// Exponent of `L / rtt`.
    pub power: f64,
    /// Largest multiplier, so a very short link cannot throw the coordinate around.
    pub max_gain: f64,
}

/// Every tuning parameter of the client. Lengths in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Error of a fresh coordinate, and cap on the error estimate.
    pub error_max: f64,
    /// Vivaldi `ce`: weight of one sample in the error estimate.
    pub ce: f64,
    /// Vivaldi `cc`: weight of one sample in the position.
    pub cc: f64,
    /// Smallest height.
    pub height_min: f64,
    /// Serf's adjustment window (samples); 0 disables the adjustment term.
    pub adjustment_window: usize,
    /// Per-peer latency filter.
    pub filter: FilterConfig,
    /// Gravity towards the origin, Serf's `rho` (seconds); `f64::INFINITY` disables it.
    pub gravity_rho: f64,
    /// Robust loss; `None` = Vivaldi's squared loss.
    pub robust: Option<Robust>,
    /// Step-size decay; `None` = Vivaldi's steady step.
    pub decay: Option<Decay>,
    /// Relative weighting of samples by RTT; `None` = Vivaldi's absolute force.
    pub weighting: Option<RttWeighting>,
    /// Heavy-ball momentum of the position (0 = none): each step adds this fraction of the
    /// previous one.
    pub momentum: f64,
    /// Height step: `None` = Serf's rule (`Δh = force · (h_i + h_j) / ‖x_i − x_j‖`);
    /// `Some(g)` = the gradient of the stress, `Δh = g · force` (the height is the part of the
    /// residual common to all of a peer's links, so it should absorb the mean residual).
    pub height_gain: Option<f64>,
    /// Smoothing of the application-level coordinate (0 = it is the system coordinate).
    pub app_alpha: f64,
}

impl Config {
    /// HashiCorp Serf's `coordinate.DefaultConfig()`.
    pub fn serf() -> Self {
        Self {
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            height_min: 10.0e-6,
            adjustment_window: 20,
            filter: FilterConfig { window: 3, lower_median: false, max_peers: DEFAULT_MAX_PEERS },
            gravity_rho: 150.0,
            robust: None,
            decay: None,
            weighting: None,
            momentum: 0.0,
            height_gain: None,
            app_alpha: 0.0,
        }
    }

    /// vecino's profile.
    pub fn vecino() -> Self {
        Self {
            error_max: 1.5,
            ce: 0.1,
            cc: 0.7,
            height_min: 10.0e-6,
            adjustment_window: 0,
            filter: FilterConfig { window: 3, lower_median: true, max_peers: DEFAULT_MAX_PEERS },
            gravity_rho: 150.0,
            robust: Some(Robust { k: 2.5, min_scale: 0.02 }),
            decay: Some(Decay { tau: 400.0, floor: 0.05, reheat: 3.0 }),
            weighting: Some(RttWeighting { power: 1.5, max_gain: 16.0 }),
            momentum: 0.3,
            height_gain: Some(0.25),
            app_alpha: 0.02,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::vecino()
    }
}

impl Config {
    /// Sets one parameter by name (`cc`, `decay.tau`, …; see the source for the list), for
    /// ablations and tuning from a command line. A value of `0` for `robust.k`, `decay.tau` or
    /// `weighting.power` switches that lever off; any other value switches it on with
    /// the remaining fields taken from the vecino profile.
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), UnknownKey> {
        let v = Self::vecino();
        let robust = self.robust.or(v.robust).unwrap_or(Robust { k: 3.0, min_scale: 0.02 });
        let decay =
            self.decay.or(v.decay).unwrap_or(Decay { tau: 100.0, floor: 0.05, reheat: 3.0 });
        let weighting =
            self.weighting.or(v.weighting).unwrap_or(RttWeighting { power: 1.0, max_gain: 4.0 });
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let as_usize = value.max(0.0) as usize;
        let on = value != 0.0;
        match key {
            "ce" => self.ce = value,
            "cc" => self.cc = value,
            "error_max" => self.error_max = value,
            "height_min" => self.height_min = value,
            "adjustment_window" => self.adjustment_window = as_usize,
            "filter.window" => self.filter.window = as_usize,
            "filter.lower_median" => self.filter.lower_median = on,
            "gravity_rho" => self.gravity_rho = value,
            "robust.k" => self.robust = on.then_some(Robust { k: value, ..robust }),
            "robust.min_scale" => self.robust = Some(Robust { min_scale: value, ..robust }),
            "decay.tau" => self.decay = on.then_some(Decay { tau: value, ..decay }),
            "decay.floor" => self.decay = Some(Decay { floor: value, ..decay }),
            "decay.reheat" => self.decay = Some(Decay { reheat: value, ..decay }),
            "weighting.power" => {
                self.weighting = on.then_some(RttWeighting { power: value, ..weighting });
            }
            "weighting.max_gain" => {
                self.weighting = Some(RttWeighting { max_gain: value, ..weighting });
            }
            "momentum" => self.momentum = value,
            "app_alpha" => self.app_alpha = value,
            "height_gain" => self.height_gain = (value >= 0.0).then_some(value),
            _ => return Err(UnknownKey),
        }
        Ok(())
    }
}

/// A parameter name [`Config::set`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown config key")]
pub struct UnknownKey;
