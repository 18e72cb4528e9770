//! vecino-gossip: the sans-IO protocol engine.
//!
//! Membership, RCM-style links, anti-entropy sync and Plumtree-style broadcast, driven through
//! the [`Protocol`] contract in [`io`]: the host feeds inputs with the current [`Time`] and
//! carries out the outputs. No IO, no clock, no global RNG: the same engine runs in the node and,
//! reproducibly from a seed, in the simulator (feature `sim`).
//!
//! Inside, the engine is a set of machines, each a type with private state in its own module,
//! joined by one coordinator ([`Engine`], whose module docs give the order in which it routes
//! frames, events, ticks and link changes to them); each stream's handling is one row of a
//! policy table (`streams`). `docs/ARCHITECTURE.md` in the repository walks through them.
#![deny(missing_docs)]

mod barrios;
mod broadcast;
mod config;
mod engine;
pub mod io;
mod links;
mod medium;
mod membership;
mod opinions;
mod overlay;
mod persist;
mod postcards;
mod published;
mod routing;
#[cfg(feature = "sim")]
pub mod sim;
mod store;
mod streams;
mod sync;
mod time;

pub use barrios::{BarrioView, HEALTH as BARRIO_HEALTH};
pub use config::{Config, PostcardRouter};
pub use engine::inspect::LinkView;
pub use engine::{Engine, EngineStats};
pub use membership::Member;
#[cfg(feature = "sim")]
pub use opinions::Lie;
pub use opinions::{Clout, ObserverClaim, PeerOpinion, PeerStatus};
pub use persist::{MemoryStore, Persist};

pub use io::{
    AppEvent, CoherenceAlarm, Command, DeliveredPost, DeliveredPostcard, Input, LinkInfo,
    LinkStatus, MemberChange, Output, PostcardStatus, Priority, Protocol, StoreOp, Timer,
};
pub use postcards::PostcardError;
pub use time::Time;
