//! Property tests of the barrio centroid CRDT: merge is commutative, associative and
//! idempotent, and replicas that receive the same slots — duplicated, reordered, split
//! across replicas and merged in any order — converge to identical state and centroids.

use proptest::prelude::*;
use vecino_coords::{BarrioId, BarrioSlot, CentroidCrdt, Coordinate};

type Crdt = CentroidCrdt<u8, 2>;

/// Small domains so that collisions (same member, same version, different contents —
/// equivocation) actually happen.
fn slot() -> impl Strategy<Value = (u8, BarrioSlot<2>)> {
    (0u8..12, 0u64..4, 0u64..4, -50i32..50, -50i32..50, prop::collection::vec(-4i16..4, 0..3))
        .prop_map(|(member, barrio, version, x, y, health)| {
            let coordinate = Coordinate::from_parts(
                &[f64::from(x) / 1000.0, f64::from(y) / 1000.0],
                0.001,
                0.2,
                0.0,
            )
            .expect("valid by construction");
            let health = health.into_iter().map(f32::from).collect();
            (member, BarrioSlot { barrio: BarrioId(barrio), version, coordinate, health })
        })
}

fn replica(max: usize) -> impl Strategy<Value = Crdt> {
    prop::collection::vec(slot(), 0..24).prop_map(move |slots| {
        let mut c = Crdt::new(max);
        for (m, s) in slots {
            c.insert(&m, s).expect("valid slot");
        }
        c
    })
}

fn merged(a: &Crdt, b: &Crdt) -> Crdt {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative(max in 3usize..16, a in replica(16), b in replica(16)) {
        let (a, b) = (bounded(&a, max), bounded(&b, max));
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn merge_is_associative(max in 3usize..16, a in replica(16), b in replica(16), c in replica(16)) {
        let (a, b, c) = (bounded(&a, max), bounded(&b, max), bounded(&c, max));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent(a in replica(16)) {
        prop_assert_eq!(merged(&a, &a), a.clone());
    }

    /// Three replicas receive the same multiset of slots, each in its own order with
    /// duplicates, part of them only through gossip (merges) from the others; all end equal,
    /// with identical centroids.
    #[test]
    fn replicas_converge_under_duplication_and_reordering(
        slots in prop::collection::vec(slot(), 1..40),
        perm in prop::collection::vec(any::<prop::sample::Index>(), 3),
        dup in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        max in 3usize..16,
    ) {
        let mut deliveries: Vec<(u8, BarrioSlot<2>)> = slots.clone();
        for d in &dup {
            deliveries.push(d.get(&slots).clone());
        }
        let mut replicas: Vec<Crdt> = Vec::new();
        for (r, p) in perm.iter().enumerate() {
            // Rotate and, for odd replicas, reverse: three different delivery orders.
            let mut order = deliveries.clone();
            let k = p.index(order.len());
            order.rotate_left(k);
            if r % 2 == 1 {
                order.reverse();
            }
            let mut c = Crdt::new(max);
            // Replica r gets directly only the deliveries with index ≡ r (mod 2) or all for 0.
            for (i, (m, s)) in order.into_iter().enumerate() {
                if r == 0 || i % 2 == r % 2 {
                    c.insert(&m, s).expect("valid slot");
                }
            }
            replicas.push(c);
        }
        // Anti-entropy in a ring, twice, then everyone has everything.
        for _ in 0..2 {
            for i in 0..replicas.len() {
                let next = replicas[(i + 1) % replicas.len()].clone();
                replicas[i].merge(&next);
            }
        }
        let mut reference = Crdt::new(max);
        for (m, s) in slots {
            reference.insert(&m, s).expect("valid slot");
        }
        for r in &replicas {
            prop_assert_eq!(r, &reference);
            prop_assert_eq!(r.barrios(), reference.barrios());
        }
    }
}

/// Re-applies a replica's slots under a smaller bound.
fn bounded(c: &Crdt, max: usize) -> Crdt {
    let mut out = Crdt::new(max);
    for (m, s) in c.slots() {
        out.insert(m, s.clone()).expect("valid slot");
    }
    out
}
