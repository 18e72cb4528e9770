//! Input hygiene of the client, as property tests: whatever a peer sends (NaN, infinities,
//! absurd magnitudes, errors out of range, impossible RTTs), an update either applies and
//! leaves a valid coordinate, or is refused with a typed error and leaves the state exactly
//! as it was; coordinates never become NaN; a client whose state turns invalid resets itself
//! and counts it. Both profiles.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_coords::{Client, Coordinate, Profile, UpdateError};

/// Floats that are mostly sane but often NaN, infinite, huge or negative.
fn wild() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -0.5f64..0.5,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => -1e12f64..1e12,
        1 => Just(0.0),
    ]
}

fn wild_coordinate() -> impl Strategy<Value = Coordinate<8>> {
    (prop::array::uniform8(wild()), wild(), wild(), wild()).prop_map(|(v, h, e, a)| {
        let mut c = Coordinate::<8>::origin(0.0, 0.0);
        c.vec = v.into();
        c.height = h;
        c.error = e;
        c.adjustment = a;
        c
    })
}

fn valid_coordinate() -> impl Strategy<Value = Coordinate<8>> {
    (prop::array::uniform8(-0.3f64..0.3), 0.0f64..0.05, 0.0f64..1.5, -0.01f64..0.01).prop_map(
        |(v, h, e, a)| Coordinate::from_parts(&v, h, e, a).expect("in range by construction"),
    )
}

fn rtt() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0001f64..0.6,
        1 => Just(0.0),
        1 => -1.0f64..0.0,
        1 => 10.0f64..1e9,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn profile() -> impl Strategy<Value = Profile> {
    prop_oneof![Just(Profile::Vecino), Just(Profile::Serf)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn refused_updates_leave_state_untouched(
        profile in profile(),
        seed in any::<u64>(),
        warmup in prop::collection::vec((0u8..6, valid_coordinate(), 0.001f64..0.4), 0..20),
        peer in 0u8..6,
        other in wild_coordinate(),
        rtt in rtt(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut c: Client<u8> = Client::new(profile.config());
        for (p, o, r) in &warmup {
            c.update_secs(p, o, *r, &mut rng).expect("valid input");
        }
        let before = c.clone();
        let before_coord = *c.coordinate();
        let before_app = *c.app_coordinate();
        let stats = c.stats();
        match c.update_secs(&peer, &other, rtt, &mut rng) {
            Ok(new) => {
                prop_assert!(new.is_valid());
                prop_assert!(other.is_valid());
                prop_assert!(rtt > 0.0 && rtt <= 10.0);
            }
            Err(e) => {
                match e {
                    UpdateError::InvalidCoordinate(_) => prop_assert!(!other.is_valid()),
                    UpdateError::RttOutOfRange(_) => prop_assert!(!(rtt > 0.0 && rtt <= 10.0)),
                }
                prop_assert_eq!(*c.coordinate(), before_coord);
                prop_assert_eq!(*c.app_coordinate(), before_app);
                prop_assert_eq!(c.stats().rejected, stats.rejected + 1);
                prop_assert_eq!(c.stats().updates, stats.updates);
                // And the next valid update behaves as if the refused one never happened.
                let mut r1 = ChaCha8Rng::seed_from_u64(seed ^ 1);
                let mut r2 = ChaCha8Rng::seed_from_u64(seed ^ 1);
                let o = Coordinate::from_parts(&[0.01; 8], 0.001, 0.5, 0.0).unwrap();
                let mut b = before;
                let x = *c.update_secs(&peer, &o, 0.05, &mut r1).unwrap();
                let y = *b.update_secs(&peer, &o, 0.05, &mut r2).unwrap();
                prop_assert_eq!(x, y);
            }
        }
    }

    #[test]
    fn coordinates_stay_valid_under_any_valid_input(
        profile in profile(),
        seed in any::<u64>(),
        steps in prop::collection::vec((0u8..8, valid_coordinate(), 0.000_01f64..10.0), 1..200),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut c: Client<u8> = Client::new(profile.config());
        for (p, o, r) in &steps {
            let new = *c.update_secs(p, o, *r, &mut rng).expect("valid input");
            prop_assert!(new.is_valid(), "{:?}", new);
            prop_assert!(c.app_coordinate().is_valid());
        }
        prop_assert_eq!(c.stats().rejected, 0);
    }
}

#[test]
fn invalid_state_resets_and_counts() {
    let seed = 5;
    println!("seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for profile in Profile::ALL {
        let mut c: Client<u8> = Client::new(profile.config());
        // Near the edge of the accepted space, uncertain, and told that a peer 0.9 s away
        // is 10 s away: the step pushes it past the largest accepted norm.
        let mut me = Coordinate::<8>::origin(0.0, 1.5);
        me.vec[0] = 19.9;
        me.height = 0.001;
        c.set_coordinate(me).unwrap();
        let mut peer = Coordinate::<8>::origin(0.0, 0.01);
        peer.vec[0] = 19.0;
        c.update_secs(&1, &peer, 10.0, &mut rng).unwrap();
        assert_eq!(c.stats().resets, 1, "{profile:?}");
        assert_eq!(c.coordinate().vec.norm(), 0.0, "{profile:?} back at the origin");
        assert!(c.coordinate().is_valid());
    }
}
