//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014).
//!
//! Timestamps are (physical ms, counter) pairs that never go backwards and stay close to
//! physical time. Time comes in as a parameter; nothing here reads a clock.

/// A hybrid logical clock timestamp; also the clock state itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Physical component: milliseconds since the Unix epoch.
    pub ms: u64,
    /// Logical component: orders events within one millisecond.
    pub counter: u32,
}

impl Hlc {
    /// Advances the clock for a local event at physical time `now_ms` and returns the stamp.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.ms {
            *self = Hlc { ms: now_ms, counter: 0 };
        } else {
            self.bump();
        }
        *self
    }

    /// Merges a remote stamp on receipt, so that later local stamps order after it.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        let max = (*self).max(remote);
        if now_ms > max.ms {
            *self = Hlc { ms: now_ms, counter: 0 };
        } else {
            *self = max;
            self.bump();
        }
    }

    fn bump(&mut self) {
        match self.counter.checked_add(1) {
            Some(c) => self.counter = c,
            None => *self = Hlc { ms: self.ms + 1, counter: 0 },
        }
    }
}

impl From<crate::pb::Hlc> for Hlc {
    fn from(h: crate::pb::Hlc) -> Self {
        Hlc { ms: h.ms, counter: h.counter }
    }
}

impl From<Hlc> for crate::pb::Hlc {
    fn from(h: Hlc) -> Self {
        crate::pb::Hlc { ms: h.ms, counter: h.counter }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let mut c = Hlc::default();
        let a = c.tick(100);
        let b = c.tick(90); // wall clock stepped back
        assert!(b > a);
        c.observe(Hlc { ms: 500, counter: 3 }, 120);
        let d = c.tick(130);
        assert!(d > Hlc { ms: 500, counter: 3 });
        let e = c.tick(600);
        assert_eq!(e, Hlc { ms: 600, counter: 0 });
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let mut c = Hlc { ms: 5, counter: u32::MAX };
        assert_eq!(c.tick(5), Hlc { ms: 6, counter: 0 });
    }
}
