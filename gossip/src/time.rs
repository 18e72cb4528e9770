//! Time as the engine sees it: a number handed in by the host, never read from a clock.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// An instant, in microseconds since the Unix epoch as the host sees it.
///
/// The node passes its start wall-clock time plus monotonic elapsed time (so `Time` never goes
/// backwards); the simulator passes virtual time. The engine uses differences for timers and
/// the millisecond value for its hybrid logical clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// From whole milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms.saturating_mul(1_000))
    }
    /// Whole milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
    /// Seconds since the epoch, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// `base` doubled for each of `tries` (at most six doublings), at most `max`: the wait
/// before the next retransmission, graft or redial.
pub(crate) fn backoff(base: Duration, tries: u32, max: Duration) -> Duration {
    (base * (1u32 << tries.min(6))).min(max)
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
