//! vecino-gossip: the sans-IO protocol engine.
//!
//! Membership, RCM-style links, anti-entropy sync and Plumtree-style broadcast, driven through
//! the [`Protocol`] contract in [`io`]: the host feeds inputs with the current [`Time`] and
//! carries out the outputs. No IO, no clock, no global RNG: the same engine runs in the node and,
//! reproducibly from a seed, in the simulator (feature `sim`).
#![deny(missing_docs)]

mod broadcast;
mod config;
mod engine;
pub mod io;
mod link;
mod medium;
mod membership;
mod overlay;
mod persist;
#[cfg(feature = "sim")]
pub mod sim;
mod store;
mod sync;
mod time;

pub use config::Config;
pub use engine::{Engine, EngineStats, LinkView, Member};
pub use persist::{MemoryStore, Persist};

pub use io::{
    AppEvent, Command, DeliveredPost, Input, LinkInfo, LinkStatus, MemberChange, Output, Priority,
    Protocol, StoreOp, Timer,
};
pub use time::Time;
