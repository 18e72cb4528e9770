//! A link's anti-entropy slot (see `crate::sync`): when its next digest is due, the digests
//! last exchanged on it, and a version vector arriving in parts.

use std::collections::BTreeMap;

use crate::store::StreamKey;
use crate::time::Time;

/// Anti-entropy state of one link.
#[derive(Debug, Clone)]
pub(crate) struct LinkSync {
    /// When to send the next anti-entropy digest.
    next_digest: Time,
    /// Last digest heard from the neighbour (to spot one that stopped changing).
    their_digest: Option<u64>,
    /// Our own digest when their last digest arrived.
    my_digest: Option<u64>,
    /// A version vector arriving in parts (bounded by the caller's `max_heads`).
    vv_in: BTreeMap<StreamKey, u64>,
    /// The vector arriving named members this peer could not resolve (does not hold).
    vv_unresolved: bool,
}

impl LinkSync {
    /// A new link's slot: its first digest is due at once.
    pub(crate) fn new(now: Time) -> Self {
        Self {
            next_digest: now,
            their_digest: None,
            my_digest: None,
            vv_in: BTreeMap::new(),
            vv_unresolved: false,
        }
    }

    /// Whether a digest is due at `now`.
    pub(crate) fn digest_due(&self, now: Time) -> bool {
        now >= self.next_digest
    }

    /// The next digest is due at `at`.
    pub(crate) fn next_digest_at(&mut self, at: Time) {
        self.next_digest = at;
    }

    /// A digest `theirs` arrived while ours was `mine`: whether neither moved since the last
    /// one (the two ends are not catching up by themselves).
    pub(crate) fn digest_heard(&mut self, theirs: u64, mine: u64) -> bool {
        let stuck = self.their_digest == Some(theirs) && self.my_digest == Some(mine);
        self.their_digest = Some(theirs);
        self.my_digest = Some(mine);
        stuck
    }

    /// Adds one part of a vector: `heads`, and whether it named members this peer could not
    /// resolve. At most `max_heads` distinct heads are kept (a head already held is updated).
    pub(crate) fn vector_part(
        &mut self,
        heads: impl Iterator<Item = (StreamKey, u64)>,
        unresolved: bool,
        max_heads: usize,
    ) {
        for (key, seq) in heads {
            if self.vv_in.len() < max_heads || self.vv_in.contains_key(&key) {
                self.vv_in.insert(key, seq);
            }
        }
        self.vv_unresolved |= unresolved;
    }

    /// The whole vector, once its last part came: its heads and whether some were
    /// unresolved.
    pub(crate) fn take_vector(&mut self) -> (BTreeMap<StreamKey, u64>, bool) {
        (std::mem::take(&mut self.vv_in), std::mem::take(&mut self.vv_unresolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::AuthorKey;
    use vecino_proto::pb::Stream;

    /// A digest is "stuck" only when both ends' digests stayed the same over an interval.
    #[test]
    fn a_digest_is_stuck_only_when_neither_end_moved() {
        let mut s = LinkSync::new(Time(0));
        assert!(s.digest_due(Time(0)));
        s.next_digest_at(Time(10));
        assert!(!s.digest_due(Time(9)));
        assert!(!s.digest_heard(1, 2), "first");
        assert!(s.digest_heard(1, 2));
        assert!(!s.digest_heard(1, 3), "ours moved");
    }

    /// A vector arriving in parts is bounded in heads, and taken whole.
    #[test]
    fn vector_parts_are_bounded_and_taken_whole() {
        let mut s = LinkSync::new(Time(0));
        let head = |n: u8| ((AuthorKey([n; 32]), Stream::Post), u64::from(n));
        s.vector_part((0..5).map(head), false, 3);
        s.vector_part([head(1), head(9)].into_iter(), true, 3);
        let (heads, unresolved) = s.take_vector();
        assert_eq!(heads.len(), 3);
        assert!(unresolved);
        assert_eq!(s.take_vector(), (BTreeMap::new(), false));
    }
}
