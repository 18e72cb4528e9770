//! A peer's fisheye scope as its pongs tell it to its neighbours (see `crate::membership`).

/// A neighbour's fisheye scope, as its pongs tell it (full membership is no scope at all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scope {
    /// Fisheye with no radius drawn yet: keeps members whose coordinate has settled.
    Unbounded,
    /// Keeps members within this coordinate distance (seconds) of itself.
    Radius(f64),
}

impl Scope {
    /// The pong field: `None` for no scope (full membership), 0 unbounded, else µs.
    pub(crate) fn to_pb(scope: Option<Self>) -> Option<u32> {
        scope.map(|s| match s {
            Scope::Unbounded => 0,
            Scope::Radius(r) => {
                let us = (r * 1e6).round().clamp(1.0, f64::from(u32::MAX));
                us as u32
            }
        })
    }

    /// The pong field, coarsely (radii within ~10 % of each other alike): what must be
    /// told again when it changes.
    pub(crate) fn bucket(v: Option<u32>) -> Option<u32> {
        v.map(|us| if us == 0 { 0 } else { (f64::from(us).ln() * 10.0).round() as u32 + 1 })
    }

    pub(crate) fn from_pb(v: Option<u32>) -> Option<Self> {
        v.map(|us| if us == 0 { Scope::Unbounded } else { Scope::Radius(f64::from(us) / 1e6) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pong field round-trips (to the microsecond), and the buckets tell radii apart
    /// only when they differ by more than about a tenth.
    #[test]
    fn the_pong_field_round_trips_and_buckets_are_coarse() {
        for s in [None, Some(Scope::Unbounded), Some(Scope::Radius(0.123_456))] {
            assert_eq!(Scope::from_pb(Scope::to_pb(s)), s);
        }
        let b = |r: f64| Scope::bucket(Scope::to_pb(Some(Scope::Radius(r))));
        assert_eq!(b(0.100), b(0.102));
        assert_ne!(b(0.100), b(0.125));
        assert_ne!(Scope::bucket(Some(0)), b(1e-6));
    }
}
