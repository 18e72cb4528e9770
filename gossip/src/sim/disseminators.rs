//! Disseminators: how the simulator builds one peer's state machine.
//!
//! A [`Disseminator`] is a name, a transport assumption and a factory from a [`NodeSpec`] to a
//! `Box<dyn Peer>`. They are `vecino` (the engine, built by [`vecino_factory`]) and
//! the two baselines of [`crate::sim::baselines`], `fullmesh` and `push`; and two liveness
//! baselines, `swim` ([`crate::sim::swim`]) and `iroh` ([`crate::sim::iroh`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use vecino_proto::{AuthorKey, Identity, VerifiedEvent};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::sim::Peer;
use crate::sim::baselines::{Baseline, Mode};
use crate::time::Time;
use crate::{Config, Engine, PostcardRouter};

/// Every peer's key and index, shared by all peers of a run.
#[derive(Debug)]
pub struct PeerDirectory {
    keys: Vec<AuthorKey>,
    index: HashMap<AuthorKey, u32>,
}

impl PeerDirectory {
    /// A directory of `keys`, indexed in order.
    pub fn new(keys: Vec<AuthorKey>) -> Self {
        let index = keys.iter().enumerate().map(|(i, k)| (*k, i as u32)).collect();
        Self { keys, index }
    }
    /// Number of peers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True when there are no peers.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// Key of peer `i`.
    pub fn key(&self, i: usize) -> AuthorKey {
        self.keys[i]
    }
    /// Index of a key.
    pub fn index(&self, key: &AuthorKey) -> Option<u32> {
        self.index.get(key).copied()
    }
}

/// Everything a factory needs to build one peer.
#[derive(Debug)]
pub struct NodeSpec {
    /// The peer's index in the scenario.
    pub index: usize,
    /// Its identity (the same for every disseminator and every restart of a run).
    pub identity: Identity,
    /// Seed for the peer's RNG (differs per restart).
    pub rng_seed: u64,
    /// The time the peer starts.
    pub now: Time,
    /// Every peer of the run. Baselines may use it; vecino must not (it learns peers by
    /// gossip from its bootstrap links).
    pub directory: Arc<PeerDirectory>,
    /// What the peer persisted before a crash (empty on first start).
    pub stored: Vec<VerifiedEvent>,
    /// How many times the peer has restarted.
    pub restarts: u32,
    /// The peer's configured link rate, bits per second.
    pub rate_bps: Option<u64>,
    /// The peer's share of an uplink or radio that all its links go through (`None` for
    /// independent point-to-point links): the rate it paces its whole egress to.
    pub uplink_bps: Option<u64>,
    /// Back-pressure: the host reports sent frames and the peer keeps at most this many
    /// bytes in the host's queue (see `LinkModel::host_queue_bytes`).
    pub host_queue_bytes: Option<u64>,
    /// The peer may broadcast on its group's radio (`LinkModel::broadcast`).
    pub shared_medium: bool,
}

/// Builds one peer's state machine.
pub type Factory = Box<dyn Fn(NodeSpec) -> Box<dyn Peer + Send> + Send + Sync>;

/// A disseminator the simulator can run.
pub struct Disseminator {
    /// Name in reports: `vecino`, `fullmesh`, `push`.
    pub name: &'static str,
    /// True when it assumes a full-mesh transport: every pair can exchange frames without
    /// `LinkUp`, and bootstrap links are not given.
    pub full_mesh: bool,
    /// The factory.
    pub factory: Factory,
}

impl fmt::Debug for Disseminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disseminator")
            .field("name", &self.name)
            .field("full_mesh", &self.full_mesh)
            .finish_non_exhaustive()
    }
}

/// The full-mesh baseline: the author sends each post to all N − 1 peers (Matrix
/// federation's shape). No retransmission.
pub fn fullmesh() -> Disseminator {
    Disseminator {
        name: "fullmesh",
        full_mesh: true,
        factory: Box::new(|spec| Box::new(Baseline::new(spec, Mode::FullMesh))),
    }
}

/// The push-gossip baseline: on first receipt forward to ⌈ln N⌉ + 2 random peers. No
/// retransmission.
pub fn push() -> Disseminator {
    Disseminator {
        name: "push",
        full_mesh: true,
        factory: Box::new(|spec| {
            let n = spec.directory.len();
            Box::new(Baseline::new(spec, Mode::Push { fanout: push_fanout(n) }))
        }),
    }
}

/// ⌈ln N⌉ + 2, at most N − 1.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn push_fanout(n: usize) -> usize {
    let f = (n.max(1) as f64).ln().ceil() as usize + 2;
    f.min(n.saturating_sub(1))
}

/// The vecino engine as a disseminator, or `None` while the engine is not available.
///
/// This is the one place where the simulator meets the engine: the factory gives the engine
/// its identity, a `ChaCha8Rng` seeded from `spec.rng_seed`, `spec.now` and `spec.stored`,
/// never `spec.directory`.
pub fn vecino_factory() -> Option<Disseminator> {
    Some(vecino_with(|_| {}))
}

/// The vecino engine with its default settings changed by `tweak` (for experiments:
/// `vecino-testnet sim --engine KEY=VALUE`); the uplink share is set after it.
pub fn vecino_with(tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> Disseminator {
    vecino_named("vecino", tweak)
}

/// The vecino engine under another name (the postcard baselines: the same engine, overlay and
/// faults, another [`PostcardRouter`]), its settings changed by `tweak`.
pub fn vecino_named(
    name: &'static str,
    tweak: impl Fn(&mut Config) + Send + Sync + 'static,
) -> Disseminator {
    // One signature cache for the peers of this run (a simulator optimisation, see
    // `VerifyCache`).
    let cache = crate::sim::VerifyCache::default();
    Disseminator {
        name,
        full_mesh: false,
        factory: Box::new(move |spec| {
            let rng = ChaCha8Rng::seed_from_u64(spec.rng_seed);
            let mut config = Config::default();
            tweak(&mut config);
            config.uplink_bps = spec.uplink_bps;
            config.host_queue_bytes =
                spec.host_queue_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
            config.shared_medium = spec.shared_medium;
            // The run samples statuses itself (`crate::sim::opinions`).
            config.status_events = false;
            let mut engine = Engine::new(spec.identity, config, rng, spec.now, spec.stored);
            engine.share_verification(cache.clone());
            Box::new(engine)
        }),
    }
}

/// Copies a `spray` baseline starts with (binary spray-and-wait, as the field's comparisons
/// run it).
pub const SPRAY_COPIES: u32 = 4;

/// The postcard router of the vecino-engine disseminator called `name`: `vecino`
/// (proximity), and the postcard baselines `direct`, `epidemic` and `spray`; `None` for any
/// other name.
pub fn router_of(name: &str) -> Option<PostcardRouter> {
    match name {
        "vecino" => Some(PostcardRouter::Proximity),
        "direct" => Some(PostcardRouter::Direct),
        "epidemic" => Some(PostcardRouter::Epidemic),
        "spray" => Some(PostcardRouter::Spray { copies: SPRAY_COPIES }),
        _ => None,
    }
}

/// The names of the postcard baselines, in report order.
pub const POSTCARD_BASELINES: [&str; 3] = ["direct", "epidemic", "spray"];

/// The disseminators to run, vecino first when it is available.
pub fn all() -> Vec<Disseminator> {
    vecino_factory().into_iter().chain([fullmesh(), push()]).collect()
}

/// The disseminator called `name`: `vecino`, `fullmesh`, `push`, a liveness baseline (`swim`,
/// `iroh`), or a postcard baseline (`direct`, `epidemic`, `spray`).
pub fn by_name(name: &str) -> Option<Disseminator> {
    match name {
        "fullmesh" => Some(fullmesh()),
        "push" => Some(push()),
        "swim" => Some(crate::sim::swim::disseminator()),
        "iroh" => Some(crate::sim::iroh::disseminator()),
        _ => {
            let router = router_of(name)?;
            let name =
                ["vecino", "direct", "epidemic", "spray"].into_iter().find(|n| *n == name)?;
            Some(vecino_named(name, move |c| c.postcard_router = router))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_is_ln_n_plus_two() {
        assert_eq!(push_fanout(4), 3); // ⌈1.39⌉ + 2 = 4, capped at 3
        assert_eq!(push_fanout(10), 5);
        assert_eq!(push_fanout(490), 9);
        assert_eq!(push_fanout(10_000), 12);
    }
}
