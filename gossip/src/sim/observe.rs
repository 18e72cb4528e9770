//! What the simulator reads of a peer besides driving it: digests and views for convergence,
//! counters and neighbours for the report. The engine and the baselines implement it; the
//! node does not need it (it drives a peer through [`crate::Protocol`] alone).

use vecino_coords::Coordinate;
use vecino_proto::AuthorKey;

use crate::io::Protocol;

/// The simulator's probes of one peer.
pub trait Observe {
    /// A summary of what this peer holds (its events and, where it has one, its membership
    /// view): two peers holding the same have equal digests. The simulator compares digests to
    /// tell when peers have converged.
    fn digest(&self) -> u64;
    /// How many other peers this peer knows of (its membership view).
    fn known_peers(&self) -> usize;
    /// A summary of this peer's membership view alone (the latest-value streams: presence,
    /// status, departures), without the posts: peers that know the same members in the same
    /// versions have equal membership digests, however many posts are still in flight. Peers
    /// without a membership view of their own (the baselines) return a constant.
    fn membership_digest(&self) -> u64 {
        0
    }
    /// True when this peer keeps fisheye membership (`crate::membership`): it knows the
    /// peers in its scope, not every peer, and its membership digest is its own.
    fn fisheye(&self) -> bool {
        false
    }
    /// A summary of the log streams held (posts), which every peer must hold whatever its
    /// membership scope.
    fn log_digest(&self) -> u64 {
        self.digest()
    }
    /// The coordinate this peer last published, if it publishes one.
    fn published_coordinate(&self) -> Option<Coordinate> {
        None
    }
    /// The (hey-there, newspaper) seqs this peer holds of `peer` (its own, for itself); 0
    /// where none.
    fn presence_seqs(&self, peer: &AuthorKey) -> (u64, u64) {
        let _ = peer;
        (0, 0)
    }
    /// Whether `peer`, publishing `coordinate`, is in this peer's membership scope (must be
    /// known to it). Always, without fisheye.
    fn in_scope(&self, peer: &AuthorKey, coordinate: Option<&Coordinate>) -> bool {
        let _ = (peer, coordinate);
        true
    }
    /// Engine counters by name (retransmissions, grafts, prunes, …) for the simulator's
    /// report; empty for state machines that keep none.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The neighbours this peer holds a connected link to (its overlay links); empty for
    /// state machines without an overlay of their own (the baselines).
    fn neighbours(&self) -> Vec<AuthorKey> {
        Vec::new()
    }
    /// What this peer believes about every peer it holds claims about (`crate::opinions`);
    /// empty for state machines without opinions.
    fn opinions(&self) -> Vec<crate::PeerOpinion> {
        Vec::new()
    }
    /// This peer's barrio id (0: none) and how many times it changed after the first
    /// (`crate::barrios`); `None` for state machines without barrios.
    fn barrio(&self) -> Option<(u64, u64)> {
        None
    }
    /// The barrio each member's newest slot held here names (this peer's own included).
    fn member_barrios(&self) -> Vec<(AuthorKey, u64)> {
        Vec::new()
    }
    /// Whether this peer's barrio is alarmed (incoherent with its baseline).
    fn barrio_alarmed(&self) -> bool {
        false
    }
    /// This peer's own health at its last look, in `crate::BARRIO_HEALTH` order (empty for
    /// state machines without barrios).
    fn barrio_health(&self) -> Vec<f32> {
        Vec::new()
    }
    /// The liar fault: from now on the peer claims `lie` instead of what it observes (`None`:
    /// the truth again). Ignored by state machines without opinions.
    fn set_lie(&mut self, lie: Option<crate::opinions::Lie>) {
        let _ = lie;
    }
}

/// A simulated peer: driven as a host drives it, and observed.
pub trait Peer: Protocol + Observe {}

impl<T: Protocol + Observe> Peer for T {}
