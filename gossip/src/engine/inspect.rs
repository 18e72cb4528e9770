//! What a host reads from the engine between inputs: its identity and coordinate, its links
//! and members, its counters.

use std::time::Duration;

use rand::Rng;
use vecino_coords::{Coordinate, CoordinateError};
use vecino_proto::AuthorKey;
use vecino_proto::pb::Stream;

use crate::broadcast::tree::travel_tree;
use crate::io::LinkStatus;
use crate::membership::{Member, Membership};
use crate::opinions::{PeerOpinion, PeerStatus};
use crate::time::Time;

use super::Engine;
use super::core::EngineStats;

/// A peer's view of one neighbour, for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    /// The neighbour.
    pub peer: AuthorKey,
    /// RCM status.
    pub status: LinkStatus,
    /// Since when.
    pub since: Time,
    /// Median measured RTT.
    pub rtt: Option<Duration>,
    /// Plumtree: the trees (of [`vecino_proto::limits::TREE_SLOTS`]) this link is eager on.
    pub eager_trees: u32,
    /// Bytes queued and frames unacknowledged.
    pub buffered: (usize, usize),
    /// Held to fast failure detection (`Config::fast_links`), and whether the neighbour holds
    /// it fast too.
    pub fast: (bool, bool),
}

impl LinkView {
    /// Plumtree: eager on at least one tree (else lazy on all).
    pub fn eager(&self) -> bool {
        self.eager_trees > 0
    }
}

impl<R: Rng> Engine<R> {
    /// This peer's key.
    pub fn id(&self) -> AuthorKey {
        self.core.me
    }

    /// This peer's current (application-level) coordinate.
    pub fn coordinate(&self) -> Coordinate {
        *self.core.coords.app_coordinate()
    }

    /// Resumes this peer's coordinate from one the host saved before a restart (fresher than
    /// the last published newspaper, which is gated on movement). Refused if it does not check.
    pub fn resume_coordinate(&mut self, c: Coordinate) -> Result<(), CoordinateError> {
        self.core.coords.set_coordinate(c)
    }

    /// Simulator only: shares signature checks with the other peers of a simulation (see
    /// `sim::VerifyCache`; the node verifies every event itself).
    #[cfg(feature = "sim")]
    pub fn share_verification(&mut self, cache: crate::sim::VerifyCache) {
        self.core.share_verification(cache);
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.core.stats
    }

    /// The neighbour links.
    pub fn links(&self) -> Vec<LinkView> {
        self.core
            .links
            .iter()
            .map(|(p, l)| LinkView {
                peer: *p,
                status: l.status(),
                since: l.status_since(),
                rtt: l.rtt(),
                eager_trees: l.tree.edges.eager_count(),
                buffered: l.buffered(),
                fast: (l.fast(), l.probe.peer_fast()),
            })
            .collect()
    }

    /// Whether the link to `peer` pushes `author`'s posts eagerly (an edge of the tree they
    /// travel on); `None` without a link.
    pub fn eager_on(&self, peer: &AuthorKey, author: &AuthorKey) -> Option<bool> {
        let tree = travel_tree(author, Stream::Post, &self.core.config);
        self.core.links.get(peer).map(|l| l.tree.edges.eager(tree))
    }

    /// A summary of what this peer holds (the heads of every stream): peers holding the same
    /// have equal digests.
    pub fn digest(&self) -> u64 {
        self.core.store.digest()
    }

    /// How many other peers this one knows (presence or status held, not left), without
    /// copying them as [`Engine::members`] does.
    pub fn member_count(&self) -> usize {
        Membership::known_count(&self.core)
    }

    /// Peers known by their presence or status (this peer excluded), with the latest of each,
    /// the coordinate each published, and whether they said chau since.
    pub fn members(&self) -> Vec<Member> {
        Membership::members(&self.core)
    }

    /// What this peer believes about `peer` (every peer it holds claims about when `None`):
    /// status, the clout-weighted consensus per field, and each observer's claim and clout
    /// (`crate::opinions`).
    pub fn opinions(&self, peer: Option<&AuthorKey>) -> Vec<PeerOpinion> {
        self.opinions.opinions(&self.core, peer)
    }

    /// The clout this peer gives `observer` (tenure × agreement × proximity), without
    /// computing any consensus.
    pub fn clout(&self, observer: &AuthorKey) -> crate::Clout {
        self.opinions.clout(&self.core, observer)
    }

    /// The status this peer gives every peer it holds claims about (cheaper than
    /// [`Engine::opinions`]).
    pub fn statuses(&self) -> Vec<(AuthorKey, PeerStatus)> {
        self.opinions.statuses(&self.core).into_iter().collect()
    }

    /// This peer's barrio id (its head's key prefix; 0 until its coordinate settled or with
    /// barrios off), and how many times it changed after the first (`crate::barrios`).
    pub fn barrio(&self) -> (u64, u64) {
        (self.barrios.barrio(), self.barrios.changes())
    }

    /// Whether this peer's barrio is alarmed: its members' health moved far from the baseline
    /// learnt while it was calm (`AppEvent::Coherence` says when and why).
    pub fn barrio_alarmed(&self) -> bool {
        self.barrios.alarmed()
    }

    /// This peer's own health at its last look (`crate::BARRIO_HEALTH`: the median RTT of its
    /// links inside its barrio in ms, the share of its links not connected, the share of frames
    /// retransmitted); empty before the first look.
    pub fn barrio_health(&self) -> Vec<f32> {
        self.barrios.health().to_vec()
    }

    /// Every barrio this peer holds a member's slot of: id, head, members, centroid.
    pub fn barrios(&self) -> Vec<crate::BarrioView> {
        self.barrios.views(&self.core)
    }

    /// The barrio each member's newest slot held here names (this peer's own included).
    pub fn member_barrios(&self) -> Vec<(AuthorKey, u64)> {
        self.barrios.member_barrios().map(|(m, b)| (m, b.0)).collect()
    }

    /// The simulator's liar fault: from now on this peer publishes `lie` instead of what it
    /// observes (`None`: the truth again). Its next opinion goes out at its next maintenance.
    #[cfg(feature = "sim")]
    pub fn set_lie(&mut self, lie: Option<crate::opinions::Lie>) {
        self.opinions.lie = lie;
        self.opinions.republish();
    }

    /// The overlay as this peer knows it from the link state it holds (its own links
    /// included, as published): each peer's links, the neighbour named by key prefix, with
    /// the RTT it measured.
    pub fn overlay(&self) -> Vec<(AuthorKey, u64, Duration)> {
        let mut out = Vec::new();
        for ev in self.core.store.latest_events() {
            if let vecino_proto::pb::event::Body::LinkState(ls) = ev.body() {
                for (&peer, &rtt) in ls.peers.iter().zip(&ls.rtt_100us) {
                    out.push((ev.author(), peer, Duration::from_micros(u64::from(rtt) * 100)));
                }
            }
        }
        out
    }

    /// Postcards and receipts in custody here.
    pub fn postcards_in_custody(&self) -> usize {
        self.postcards.in_custody().0
    }

    /// Every counter by name (the simulator's report lists them; [`Engine::stats`] has most
    /// of them typed).
    pub fn counters_by_name(&self) -> Vec<(&'static str, u64)> {
        let s = &self.core.stats;
        let (dropped, cancelled) = self
            .core
            .links
            .iter()
            .map(|(_, l)| l.drops())
            .fold((0, 0), |(d, c), (ld, lc)| (d + ld, c + lc));
        let (swaps_done, swaps_refused) = self.overlay.swap_counters();
        let f = self.membership.fisheye.counters();
        let why = self.barrios.changes_by_why();
        let slots = self.barrios.slots_by_why();
        let mut counters = vec![
            ("retransmits", s.retransmits),
            ("frames_again", s.frames_again),
            ("link_restarts", s.link_restarts),
            ("grafts", s.grafts),
            ("prunes", s.prunes),
            ("tree_swaps", s.tree_swaps),
            ("tree_refreshes", s.tree_refreshes),
            ("tree_probes", s.tree_probes),
            ("trees_reprobed", s.trees_reprobed),
            ("membership_mutes", s.mutes),
            ("membership_unmutes", s.unmutes),
            ("version_vectors", s.version_vectors),
            ("opinions_published", s.opinions_published),
            ("links_checked", s.links_checked),
            ("opinion_entries", s.opinion_entries),
            ("opinion_entries_down", s.opinion_entries_down),
            ("opinions_for_flips", s.opinions_for_flips),
            ("opinions_for_set", s.opinions_for_set),
            ("opinions_for_age", s.opinions_for_age),
            ("barrio_changes", self.barrios.changes()),
            ("barrio_changes_head_gone", why.head_gone),
            ("barrio_changes_head_far", why.head_far),
            ("barrio_changes_lower_head", why.lower_head),
            ("barrio_slots_for_barrio", slots[0]),
            ("barrio_slots_for_health", slots[1]),
            ("barrio_slots_for_move", slots[2]),
            ("barrio_slots_for_age", slots[3]),
            ("events_duplicate", s.events_duplicate),
            ("events_duplicate_pushed_members", s.events_duplicate_pushed_members),
            ("link_buffer_drops", dropped),
            ("sends_cancelled", cancelled),
            ("broadcasts_sent", self.core.links.broadcasts.sent()),
            ("broadcasts_heard", self.medium.heard()),
            ("proximity_swaps", swaps_done),
            ("proximity_swaps_refused", swaps_refused),
            ("fisheye_refused", f.refused),
            ("fisheye_refused_unplaced", f.refused_unplaced),
            ("fisheye_refused_edge", f.refused_edge),
            ("fisheye_evicted", f.evicted),
            ("fisheye_members_held", f.held as u64),
            ("fisheye_active", u64::from(f.active)),
            ("postcard_sends", s.postcard_sends),
            ("postcard_greedy_hops", s.postcard_greedy_hops),
            ("postcard_holds", s.postcard_holds),
            ("routed_retransmits", s.routed_retransmits),
            ("postcard_duplicates", s.postcard_duplicates),
            ("postcards_delivered", s.postcards_delivered),
            ("receipts", s.receipts),
            ("postcards_cleared", s.postcards_cleared),
            ("postcards_refused_downstream", s.postcards_refused_downstream),
            ("postcard_order_gave_up", s.postcard_order_gave_up),
            ("postcards_in_custody", self.postcards.in_custody().0 as u64),
        ];
        // Inputs rejected, by reason (each reason a counter of its own).
        counters.extend(s.rejected.iter().map(|(reason, n)| (*reason, *n)));
        counters
    }

    /// Tests: whether `peer` is a landmark, linked, or remembered as a far member.
    #[cfg(all(test, feature = "sim"))]
    pub(crate) fn scope_facts(&self, peer: &AuthorKey) -> (bool, bool, bool) {
        let landmark = crate::membership::fisheye::is_landmark(&self.core.config, peer);
        let far = self.membership.fisheye.far_addrs(peer).is_some();
        (landmark, self.core.links.contains(peer), far)
    }
}

#[cfg(feature = "sim")]
impl<R: Rng> crate::sim::Observe for Engine<R> {
    fn digest(&self) -> u64 {
        Engine::digest(self)
    }

    fn known_peers(&self) -> usize {
        self.member_count()
    }

    fn membership_digest(&self) -> u64 {
        self.core.store.membership_digest()
    }

    fn fisheye(&self) -> bool {
        self.membership.fisheye.active()
    }

    fn log_digest(&self) -> u64 {
        self.core.store.log_digest()
    }

    fn published_coordinate(&self) -> Option<vecino_coords::Coordinate> {
        crate::published::published_coordinate(&self.core.store, self.core.me)
    }

    fn presence_seqs(&self, peer: &AuthorKey) -> (u64, u64) {
        let seq =
            |s| self.core.store.latest(&(*peer, s)).map_or(0, vecino_proto::VerifiedEvent::seq);
        (seq(Stream::HeyThere), seq(Stream::Newspaper))
    }

    fn in_scope(&self, peer: &AuthorKey, coordinate: Option<&vecino_coords::Coordinate>) -> bool {
        self.membership.fisheye.scope_includes(&self.core, peer, coordinate)
    }

    fn opinions(&self) -> Vec<PeerOpinion> {
        Engine::opinions(self, None)
    }

    fn set_lie(&mut self, lie: Option<crate::opinions::Lie>) {
        Engine::set_lie(self, lie);
    }

    fn barrio(&self) -> Option<(u64, u64)> {
        Some(Engine::barrio(self))
    }

    fn member_barrios(&self) -> Vec<(AuthorKey, u64)> {
        Engine::member_barrios(self)
    }

    fn barrio_alarmed(&self) -> bool {
        self.barrios.alarmed()
    }

    fn barrio_health(&self) -> Vec<f32> {
        Engine::barrio_health(self)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.counters_by_name()
    }

    fn neighbours(&self) -> Vec<AuthorKey> {
        self.core
            .links
            .iter()
            .filter(|(_, l)| l.transport_up() && l.connected())
            .map(|(p, _)| *p)
            .collect()
    }
}
