//! The barrio centroid CRDT (DESIGN §4).
//!
//! Every member publishes a latest-value *slot*: `(barrio, version, coordinate, health)`. The
//! replicated state is the map member → slot, and merging two states keeps, per member, the
//! slot with the larger version (ties between different slots of one version, which only an
//! equivocating member can produce, go to the larger slot in a fixed total order). That is a
//! join-semilattice, so merge is commutative, associative and idempotent: replicas that have
//! seen the same slots, in any order and any number of times, hold identical state. A
//! barrio's centroid (member count, mean position, mean health) is computed *at read time*
//! from the slots that name it; it is never merged itself. (An averaging merge, or summing
//! `(sum, count)` pairs, is not a CRDT: re-delivering a message changes the result.)
//!
//! The map is keyed by remote input, so it is bounded: at most `max_slots` members, keeping
//! the smallest member ids. Truncating by a fixed order on keys commutes with the per-key
//! maximum, so the bound keeps every law above (the property tests check it).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use nalgebra::SVector;

use crate::barrio::BarrioId;
use crate::coordinate::{Coordinate, CoordinateError};

/// The most health values a slot may carry.
pub const MAX_HEALTH: usize = 16;

/// Default bound on members tracked.
pub const DEFAULT_MAX_SLOTS: usize = 65_536;

/// One member's latest-value slot.
#[derive(Debug, Clone, PartialEq)]
pub struct BarrioSlot<const D: usize> {
    /// The barrio the member says it is in.
    pub barrio: BarrioId,
    /// Latest-value version (the member's sequence number for its slot stream).
    pub version: u64,
    /// The member's coordinate.
    pub coordinate: Coordinate<D>,
    /// The member's health vector (application-defined, e.g. load, loss).
    pub health: Vec<f32>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SlotError {
    /// The coordinate failed its checks.
    #[error("invalid coordinate: {0}")]
    Coordinate(#[from] CoordinateError),
    /// More than [`MAX_HEALTH`] health values.
    #[error("health vector too long: {0}")]
    HealthTooLong(usize),
    /// A health value is NaN or infinite.
    #[error("non-finite health value")]
    HealthNonFinite,
}

impl<const D: usize> BarrioSlot<D> {
    /// Checks the slot's contents.
    pub fn check(&self) -> Result<(), SlotError> {
        self.coordinate.check()?;
        if self.health.len() > MAX_HEALTH {
            return Err(SlotError::HealthTooLong(self.health.len()));
        }
        if !self.health.iter().all(|h| h.is_finite()) {
            return Err(SlotError::HealthNonFinite);
        }
        Ok(())
    }

    /// The total order deciding which of two slots of one member wins: version first, then
    /// the contents bit by bit (only equivocation reaches that far).
    fn precedence(&self, other: &Self) -> Ordering {
        let c = &self.coordinate;
        let o = &other.coordinate;
        self.version
            .cmp(&other.version)
            .then(self.barrio.cmp(&other.barrio))
            .then_with(|| {
                let a = c.vec.iter().chain([&c.height, &c.error, &c.adjustment]);
                let b = o.vec.iter().chain([&o.height, &o.error, &o.adjustment]);
                a.map(|x| x.to_bits()).cmp(b.map(|x| x.to_bits()))
            })
            .then_with(|| {
                let a = self.health.iter().map(|x| x.to_bits());
                a.cmp(other.health.iter().map(|x| x.to_bits()))
            })
    }
}

/// A barrio's aggregate, computed at read time.
#[derive(Debug, Clone, PartialEq)]
pub struct Centroid<const D: usize> {
    /// Members whose newest slot names this barrio.
    pub count: usize,
    /// Mean vector and mean height of their coordinates (error: mean error; adjustment 0).
    pub coordinate: Coordinate<D>,
    /// Per-index mean of their health vectors (over the members that report that index).
    pub health: Vec<f32>,
}

/// The replicated map member → newest slot.
#[derive(Debug, Clone, PartialEq)]
pub struct CentroidCrdt<M, const D: usize> {
    /// Bounded by `max_slots` (the smallest member ids are kept).
    slots: BTreeMap<M, BarrioSlot<D>>,
    max_slots: usize,
}

impl<M: Ord + Clone, const D: usize> CentroidCrdt<M, D> {
    /// Empty, keeping at most `max_slots` (≥ 1) members.
    pub fn new(max_slots: usize) -> Self {
        Self { slots: BTreeMap::new(), max_slots: max_slots.max(1) }
    }

    /// Applies one member's slot (received or local). Returns whether the state changed.
    pub fn insert(&mut self, member: &M, slot: BarrioSlot<D>) -> Result<bool, SlotError> {
        slot.check()?;
        Ok(self.join(member, slot))
    }

    fn join(&mut self, member: &M, slot: BarrioSlot<D>) -> bool {
        let changed = match self.slots.get_mut(member) {
            Some(held) => {
                if slot.precedence(held) == Ordering::Greater {
                    *held = slot;
                    true
                } else {
                    false
                }
            }
            None => {
                self.slots.insert(member.clone(), slot);
                true
            }
        };
        self.truncate();
        changed && self.slots.contains_key(member)
    }

    fn truncate(&mut self) {
        while self.slots.len() > self.max_slots {
            self.slots.pop_last();
        }
    }

    /// Merges another replica's state into this one (per-member maximum).
    pub fn merge(&mut self, other: &Self) {
        for (m, s) in &other.slots {
            self.join(m, s.clone());
        }
    }

    /// Keeps only the members `keep` says to: a replica's local forgetting of members it no
    /// longer follows (they left, or are out of its scope), not a merge operation; a
    /// forgotten member's slot comes back if it is inserted again.
    pub fn retain(&mut self, mut keep: impl FnMut(&M) -> bool) {
        self.slots.retain(|m, _| keep(m));
    }

    /// The newest slot of `member`.
    pub fn slot(&self, member: &M) -> Option<&BarrioSlot<D>> {
        self.slots.get(member)
    }

    /// Every (member, slot), in member order.
    pub fn slots(&self) -> impl Iterator<Item = (&M, &BarrioSlot<D>)> {
        self.slots.iter()
    }

    /// Members held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// `true` when no member is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The centroid of `barrio`, if any member's newest slot names it.
    pub fn centroid(&self, barrio: BarrioId) -> Option<Centroid<D>> {
        self.barrios().remove(&barrio)
    }

    /// Every barrio's centroid, in id order. Sums run in member order, so equal states give
    /// bit-identical centroids.
    #[allow(clippy::cast_precision_loss)]
    pub fn barrios(&self) -> BTreeMap<BarrioId, Centroid<D>> {
        struct Acc<const D: usize> {
            n: usize,
            vec: SVector<f64, D>,
            height: f64,
            error: f64,
            health: Vec<(f64, usize)>,
        }
        let mut acc: BTreeMap<BarrioId, Acc<D>> = BTreeMap::new();
        for slot in self.slots.values() {
            let a = acc.entry(slot.barrio).or_insert_with(|| Acc {
                n: 0,
                vec: SVector::zeros(),
                height: 0.0,
                error: 0.0,
                health: Vec::new(),
            });
            a.n += 1;
            a.vec += slot.coordinate.vec;
            a.height += slot.coordinate.height;
            a.error += slot.coordinate.error;
            if a.health.len() < slot.health.len() {
                a.health.resize(slot.health.len(), (0.0, 0));
            }
            for (h, &x) in a.health.iter_mut().zip(&slot.health) {
                h.0 += f64::from(x);
                h.1 += 1;
            }
        }
        acc.into_iter()
            .map(|(id, a)| {
                let n = a.n as f64;
                let mut coordinate = Coordinate::origin(a.height / n, a.error / n);
                coordinate.vec = a.vec / n;
                #[allow(clippy::cast_possible_truncation)]
                let health = a.health.iter().map(|&(sum, k)| (sum / k as f64) as f32).collect();
                let c = Centroid { count: a.n, coordinate, health };
                (id, c)
            })
            .collect()
    }
}

impl<M: Ord + Clone, const D: usize> Default for CentroidCrdt<M, D> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(barrio: u64, version: u64, x: f64, health: &[f32]) -> BarrioSlot<2> {
        BarrioSlot {
            barrio: BarrioId(barrio),
            version,
            coordinate: Coordinate::from_parts(&[x, 0.0], 0.001, 0.2, 0.0).unwrap(),
            health: health.to_vec(),
        }
    }

    #[test]
    fn newest_version_wins_and_centroid_is_read_time() {
        let mut c = CentroidCrdt::<u8, 2>::default();
        assert!(c.insert(&1, slot(7, 1, 0.010, &[1.0])).unwrap());
        assert!(c.insert(&2, slot(7, 1, 0.030, &[3.0, 5.0])).unwrap());
        assert!(!c.insert(&1, slot(9, 0, 0.5, &[])).unwrap(), "older version ignored");
        let cen = c.centroid(BarrioId(7)).unwrap();
        assert_eq!(cen.count, 2);
        assert!((cen.coordinate.vec[0] - 0.020).abs() < 1e-12);
        assert_eq!(cen.health, vec![2.0, 5.0]);
        // Member 1 moves to barrio 9: it leaves 7's centroid.
        assert!(c.insert(&1, slot(9, 2, 0.100, &[])).unwrap());
        assert_eq!(c.centroid(BarrioId(7)).unwrap().count, 1);
        assert_eq!(c.centroid(BarrioId(9)).unwrap().count, 1);
        // Re-delivery changes nothing.
        let before = c.clone();
        assert!(!c.insert(&1, slot(9, 2, 0.100, &[])).unwrap());
        assert_eq!(before, c);
    }

    #[test]
    fn refuses_bad_slots() {
        let mut c = CentroidCrdt::<u8, 2>::default();
        let mut s = slot(1, 1, 0.0, &[f32::NAN]);
        assert_eq!(c.insert(&1, s.clone()), Err(SlotError::HealthNonFinite));
        s.health = vec![0.0; MAX_HEALTH + 1];
        assert_eq!(c.insert(&1, s.clone()), Err(SlotError::HealthTooLong(17)));
        s.health.clear();
        s.coordinate.height = f64::INFINITY;
        assert!(matches!(c.insert(&1, s), Err(SlotError::Coordinate(_))));
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_keeps_smallest_members() {
        let mut c = CentroidCrdt::<u8, 2>::new(2);
        for m in [5, 3, 9, 1] {
            c.insert(&m, slot(1, 1, 0.0, &[])).unwrap();
        }
        let members: Vec<u8> = c.slots().map(|(m, _)| *m).collect();
        assert_eq!(members, vec![1, 3]);
    }
}
