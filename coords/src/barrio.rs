//! Barrios: cells of nearby peers, derived by each peer from its own coordinate.
//!
//! The coordinate space is cut into a fixed grid of cubes of side [`BarrioConfig::cell`]
//! (on the Euclidean part; the height is the access link and says nothing about *where* a
//! peer is). A barrio's id is a hash of its integer cell indices, so every peer computes the
//! same id for the same cell with no coordination, and the id survives restarts. A peer near
//! a border would flap between two cells with every jitter of its coordinate; hysteresis
//! prevents that: a peer stays in its current cell until its coordinate leaves that cell
//! *expanded by* [`BarrioConfig::hysteresis`] × side on every face, and only then takes the
//! cell it is in. Names and emoji (after nara's naming of peers) are derived from the id, so
//! they are stable too.
//!
//! The grid lives in the coordinate frame, which is only defined up to a slow drift of the
//! whole system; that is one more reason to use the smoothed application coordinate (see
//! [`Client::app_coordinate`](crate::Client::app_coordinate)) as input.

use std::time::Duration;

use nalgebra::SVector;

use crate::coordinate::Coordinate;

/// Parameters of the barrio grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarrioConfig {
    /// Side of a cell (in RTT units).
    pub cell: Duration,
    /// Margin, as a fraction of the side, by which a peer may stray outside its cell before
    /// it changes barrio. In `[0, 0.5]`.
    pub hysteresis: f64,
}

impl Default for BarrioConfig {
    fn default() -> Self {
        Self { cell: Duration::from_millis(30), hysteresis: 0.25 }
    }
}

/// A barrio id: a stable hash of a grid cell (`fixed64 barrio` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BarrioId(pub u64);

const ADJECTIVES: [&str; 32] = [
    "sunny", "quiet", "lively", "breezy", "golden", "misty", "cozy", "windy", "shady", "sandy",
    "rocky", "leafy", "salty", "dusty", "starry", "rainy", "mellow", "bright", "hidden", "sleepy",
    "humble", "merry", "brave", "gentle", "silver", "amber", "coral", "velvet", "crimson",
    "frosty", "jolly", "tidy",
];
const NOUNS: [&str; 32] = [
    "plaza",
    "corner",
    "market",
    "harbor",
    "alley",
    "garden",
    "bakery",
    "terrace",
    "fountain",
    "bridge",
    "orchard",
    "pier",
    "courtyard",
    "kiosk",
    "cantina",
    "mercado",
    "placita",
    "rambla",
    "patio",
    "bodega",
    "arcade",
    "square",
    "lane",
    "hill",
    "meadow",
    "grove",
    "wharf",
    "steps",
    "tower",
    "gate",
    "well",
    "barrio",
];
const EMOJI: [&str; 32] = [
    "🌵", "🌮", "🎸", "🌻", "🐙", "🦜", "🍋", "🌶", "🐢", "🦊", "🍉", "🌈", "🚲", "🎈", "🐝", "🍄",
    "🌙", "⭐", "🔥", "🌊", "🪴", "🦉", "🐳", "🍩", "🎨", "🧉", "🪁", "🦔", "🐌", "🍊", "🎺", "🦩",
];

impl BarrioId {
    /// A friendly name such as `sunny-plaza`, derived from the id.
    pub fn name(self) -> String {
        let a = ADJECTIVES[(self.0 & 31) as usize];
        let n = NOUNS[((self.0 >> 5) & 31) as usize];
        format!("{a}-{n}")
    }

    /// An emoji derived from the id.
    pub fn emoji(self) -> &'static str {
        EMOJI[((self.0 >> 10) & 31) as usize]
    }
}

impl std::fmt::Display for BarrioId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:016x})", self.emoji(), self.name(), self.0)
    }
}

/// Grid cell indices of a position.
#[allow(clippy::cast_possible_truncation)]
fn cell_of<const D: usize>(vec: &SVector<f64, D>, side: f64) -> [i64; D] {
    // Checked coordinates have |x| ≤ 20 s, so the quotient fits an i64 for any side ≥ 1 ns.
    std::array::from_fn(|d| (vec[d] / side).floor() as i64)
}

/// The id of a cell: FNV-1a over the indices, finished with SplitMix64's mixer.
#[allow(clippy::cast_sign_loss)]
fn id_of<const D: usize>(cell: &[i64; D]) -> BarrioId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ D as u64;
    for &c in cell {
        for b in c.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    BarrioId(h ^ (h >> 31))
}

/// The barrio of a coordinate with no history (no hysteresis).
pub fn barrio_of<const D: usize>(coord: &Coordinate<D>, config: &BarrioConfig) -> BarrioId {
    id_of(&cell_of(&coord.vec, side_secs(config)))
}

fn side_secs(config: &BarrioConfig) -> f64 {
    config.cell.as_secs_f64().max(1e-6)
}

/// One peer's barrio, with hysteresis.
#[derive(Debug, Clone)]
pub struct BarrioTracker<const D: usize> {
    config: BarrioConfig,
    current: Option<[i64; D]>,
    changes: u64,
}

impl<const D: usize> BarrioTracker<D> {
    /// No barrio yet; the first [`BarrioTracker::observe`] sets one.
    pub fn new(config: BarrioConfig) -> Self {
        let config = BarrioConfig { hysteresis: config.hysteresis.clamp(0.0, 0.5), ..config };
        Self { config, current: None, changes: 0 }
    }

    /// The current barrio, if any coordinate was observed.
    pub fn current(&self) -> Option<BarrioId> {
        self.current.as_ref().map(id_of)
    }

    /// Times the barrio changed after the first observation.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Feeds this peer's coordinate; returns its barrio (changed only when the coordinate
    /// left the current cell by more than the hysteresis margin).
    #[allow(clippy::cast_precision_loss)]
    pub fn observe(&mut self, coord: &Coordinate<D>) -> BarrioId {
        let side = side_secs(&self.config);
        let margin = self.config.hysteresis * side;
        if let Some(cell) = &self.current {
            let inside = (0..D).all(|d| {
                let lo = cell[d] as f64 * side - margin;
                let hi = (cell[d] + 1) as f64 * side + margin;
                (lo..hi).contains(&coord.vec[d])
            });
            if inside {
                return id_of(cell);
            }
            self.changes += 1;
        }
        let cell = cell_of(&coord.vec, side);
        self.current = Some(cell);
        id_of(&cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, y: f64) -> Coordinate<2> {
        Coordinate::from_parts(&[x, y], 0.001, 0.2, 0.0).unwrap()
    }

    #[test]
    fn same_cell_same_id_everywhere() {
        let cfg = BarrioConfig::default();
        assert_eq!(barrio_of(&at(0.001, 0.002), &cfg), barrio_of(&at(0.029, 0.010), &cfg));
        assert_ne!(barrio_of(&at(0.001, 0.002), &cfg), barrio_of(&at(0.031, 0.002), &cfg));
        assert_ne!(barrio_of(&at(-0.001, 0.002), &cfg), barrio_of(&at(0.001, 0.002), &cfg));
        let id = barrio_of(&at(0.001, 0.002), &cfg);
        assert_eq!(id.name(), barrio_of(&at(0.002, 0.003), &cfg).name());
        assert!(id.name().contains('-'));
        assert!(!id.emoji().is_empty());
    }

    #[test]
    fn border_jitter_does_not_flap() {
        let mut t = BarrioTracker::new(BarrioConfig::default());
        let first = t.observe(&at(0.029, 0.015));
        // Jitter across the border at 30 ms, within the 7.5 ms margin.
        for k in 0..100 {
            let x = if k % 2 == 0 { 0.0305 } else { 0.0295 };
            assert_eq!(t.observe(&at(x + 0.005, 0.015)), first);
        }
        assert_eq!(t.changes(), 0);
        // A real move changes it, once.
        let moved = t.observe(&at(0.045, 0.015));
        assert_ne!(moved, first);
        assert_eq!(t.observe(&at(0.029, 0.015)), moved, "margin applies the other way too");
        assert_eq!(t.changes(), 1);
        assert_eq!(t.current(), Some(moved));
    }
}
