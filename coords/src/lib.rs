//! vecino-coords: the latency map.
//!
//! Vivaldi network coordinates (Dabek et al., "Vivaldi: A Decentralized Network Coordinate
//! System", SIGCOMM 2004) with the refinements of Ledlie et al., "Network Coordinates in the
//! Wild", NSDI 2007, in two profiles of one [`Client`]: `serf`, HashiCorp Serf's reference
//! algorithm and defaults, and `vecino`, this project's tuning. Also proximity (predicted and
//! measured RTT, the clout proximity factor), barrios and the barrio centroid CRDT,
//! per-barrio coherence alarms (Mahalanobis D² against a frozen baseline, χ² thresholds), and
//! seeded topology generators for tests and simulations.
//!
//! Pure: no IO, no clock, randomness injected by the caller.
#![deny(missing_docs)]

mod barrio;
mod centroid;
mod client;
mod coherence;
mod coordinate;
mod filter;
mod profile;
mod proximity;
pub mod topology;

pub use barrio::{BarrioConfig, BarrioId, BarrioTracker, barrio_of};
pub use centroid::{BarrioSlot, Centroid, CentroidCrdt, DEFAULT_MAX_SLOTS, MAX_HEALTH, SlotError};
pub use proximity::{Proximity, ProximityConfig, RttOutOfRange, predicted_rtt, proximity_factor};

pub use client::{Client, ClientStats, UpdateError};
pub use coherence::{
    AlarmChange, Baseline, CoherenceConfig, CoherenceDetector, CoherenceError, DetectorState,
    FrozenBaseline, MAX_COHERENCE_WINDOW, MAX_DIMS, MAX_FEATURE, Thresholds,
};
pub use coordinate::{
    Coordinate, CoordinateError, DEFAULT_DIMENSIONS, Field, MAX_ERROR, MAX_OFFSET_SECS, MAX_RTT,
    MAX_VECTOR_NORM_SECS,
};
pub use filter::{FilterConfig, LatencyFilter, MAX_WINDOW};
pub use profile::{
    Config, DEFAULT_MAX_PEERS, Decay, Profile, Robust, RttWeighting, UnknownKey, UnknownProfile,
};
