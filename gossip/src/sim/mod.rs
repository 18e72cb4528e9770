//! A deterministic discrete-event simulator of many peers, for the engine and the baselines.
//!
//! One seed, timed events ordered by (time, what caused them): the same [`Scenario`] and seed
//! give a bit-identical [`Report`], on one thread ([`run`]) or with the peers split into
//! shards that run side by side on several ([`run_parallel`]; conservative windows no longer
//! than the least delay between shards, see `runner` and `shards`). Peers are `Box<dyn Peer>`
//! (driven through [`crate::Protocol`], read through [`Observe`])
//! built by a [`Disseminator`]'s factory and driven exactly as the contract of [`crate::io`]
//! says a host must drive them. The model, after the simulators of iroh-gossip
//! (`proto/sim.rs`) and the convoy study's Chaos Mesh set-up:
//!
//! - **latency**: RTT from a matrix (measured or generated) or a compact Internet-like model
//!   ([`latency`]); propagation = RTT / 2;
//! - **bandwidth**: serialisation delay `bytes × 8 / rate` with FIFO queueing on each medium —
//!   a peer's uplink, a directed pair's line, or a group's **shared radio** where one
//!   transmission occupies the medium for every member ([`network`]); queues are bounded in
//!   bytes and their drops counted;
//! - **loss**: Bernoulli, or Gilbert–Elliott bursts per directed pair;
//! - **faults**: scheduled partitions and link flaps (frames silently dropped: no link-down,
//!   the engine must notice from heartbeats), and crashes with restarts (a crashed peer keeps
//!   only what it persisted; its neighbours see the link go down after a transport timeout).
//!
//! Links: with a disseminator that does not assume a full mesh (vecino), each peer starts with
//! links to a few random lower-index peers; `Output::Dial` brings a link up at both ends one
//! RTT later if the peer is reachable; `Output::Disconnect` takes it down at both ends.
//!
//! Nothing here does IO: the host (`vecino-testnet sim`) reads scenario files and matrices,
//! measures wall time and memory, and writes reports.

pub mod barrios;
pub mod baselines;
pub mod disseminators;
pub mod iroh;
pub mod latency;
pub mod liveness;
mod metrics;
pub mod network;
mod observe;
pub mod opinions;
mod overlay;
pub mod postcards;
pub mod report;
mod runner;
pub mod scenario;
mod shards;
pub mod swim;
#[cfg(test)]
mod tests;
mod verify_cache;
mod wire;

pub use disseminators::{Disseminator, Factory, NodeSpec, PeerDirectory};
pub use latency::{CompactInternet, Latency};
pub use observe::{Observe, Peer};
pub use overlay::OverlaySummary;
pub use postcards::PostcardReport;
pub use report::{Backlog, ClassBytes, Drops, Report, Timeline, Transitions};
pub use runner::{identity, run, run_parallel};
pub use scenario::{
    Arrivals, BarrioSampling, Fault, FaultKind, FlatFlood, LinkModel, Loss, OpinionSampling, Pairs,
    PostcardTraffic, RateScope, Scenario, Traffic, TrafficScope,
};
pub use verify_cache::VerifyCache;

/// Simulated time starts here: 2026-01-01T00:00:00Z, in µs since the Unix epoch.
pub const EPOCH_US: u64 = 1_767_225_600_000_000;

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The seed of one RNG concern (`concern`, item `index`) of a run seeded with `seed`.
pub fn seed_for(seed: u64, concern: u64, index: u64) -> u64 {
    mix(mix(seed ^ mix(concern)) ^ index)
}
