//! What a simulation run reports, per disseminator (serialisable: `vecino-testnet sim --json`).

use serde::{Deserialize, Serialize};

/// The figures of one disseminator on one scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `vecino`, `fullmesh` or `push`.
    pub disseminator: String,
    /// Peers.
    pub peers: usize,
    /// Simulated time, seconds (duration + drain).
    pub simulated_s: f64,
    /// Posts published (the author's own delivery appeared).
    pub posts_published: u64,
    /// Publications skipped because the chosen author was down or not started.
    pub posts_skipped: u64,
    /// First deliveries to peers alive at the end, authors excluded.
    pub deliveries: u64,
    /// Posts × (peers alive at the end, author excluded).
    pub deliveries_expected: u64,
    /// `deliveries / deliveries_expected` (1 when nothing was expected).
    pub delivery_ratio: f64,
    /// Posts delivered to every peer alive at the end.
    pub posts_fully_delivered: u64,
    /// Median publish-to-delivery latency, seconds.
    pub latency_p50_s: Option<f64>,
    /// 99th percentile latency, seconds.
    pub latency_p99_s: Option<f64>,
    /// Largest latency, seconds.
    pub latency_max_s: Option<f64>,
    /// Median latency of posts published while no fault was active, seconds.
    pub latency_up_p50_s: Option<f64>,
    /// Median of latency ÷ direct one-way propagation delay (author → receiver), over the
    /// deliveries between peers whose RTT was measured (not filled).
    pub stretch_p50: Option<f64>,
    /// 99th percentile stretch.
    pub stretch_p99: Option<f64>,
    /// 99th percentile stretch over deliveries between far peers (RTT ≥ 20 ms): 1 % of
    /// planetlab490's pairs are under 5.8 ms, where any relay makes a large stretch.
    #[serde(default)]
    pub stretch_p99_far: Option<f64>,
    /// Postcards, when the scenario sends any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcards: Option<crate::sim::postcards::PostcardReport>,
    /// Post envelopes received in `Events` frames, all peers (duplicates included).
    pub copies_received: u64,
    /// `copies_received / deliveries` (RMR + 1 in the gossip literature's terms).
    pub copies_per_delivery: f64,
    /// Mean, over posts, of the hop count (overlay hops from the author) at the post's last
    /// delivery.
    pub last_delivery_hop_mean: f64,
    /// Largest hop count at any post's last delivery.
    pub last_delivery_hop_max: u32,
    /// Mean size of a post envelope, bytes.
    pub envelope_bytes_mean: f64,
    /// Bytes handed to the network, by class.
    pub bytes_sent: ClassBytes,
    /// All bytes sent ÷ peers ÷ posts published.
    pub bytes_sent_per_node_per_post: f64,
    /// Bytes on each shared radio ÷ radios ÷ posts published (shared-radio scenarios).
    pub bytes_sent_per_radio_per_post: Option<f64>,
    /// Bytes of `Events` frames sent by a post's author carrying its own posts ÷ posts.
    pub author_egress_bytes_per_post: f64,
    /// Membership and control bytes received per peer per second, in bits per second.
    pub membership_rx_bps_per_peer: f64,
    /// `membership_rx_bps_per_peer` with what the layers below each frame add on the wire,
    /// estimated (`sim::liveness::wire_overhead`: UDP/IPv4 under memberlist's datagrams and
    /// iroh's QUIC packets, TCP/IPv4 under memberlist's push/pull, QUIC/UDP/IPv4 under
    /// vecino's frames).
    #[serde(default)]
    pub membership_wire_rx_bps_per_peer: f64,
    /// Membership and control traffic in the steady state: from 60 s to the first fault
    /// (`sim::liveness::SteadyRate`), when that is at least 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_membership: Option<crate::sim::liveness::SteadyRate>,
    /// How soon crashes were known (scenarios that crash peers; see
    /// `sim::liveness::CrashWatch` for who counts as knowing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_detection: Option<crate::sim::liveness::CrashDetection>,
    /// Of `membership_rx_bps_per_peer`, the announcements of posts (the share of IHAVE
    /// frames' bytes whose heads are of log streams): the lazy half of post dissemination,
    /// sent at the membership class so that it never overtakes the posts it announces.
    #[serde(default)]
    pub post_announcements_rx_bps_per_peer: f64,
    /// Computed, not simulated: what a flat flood of every newspaper to every peer would
    /// make each peer receive, bits per second (scenarios that set `flat_flood`).
    pub flat_flood_rx_bps_per_peer_computed: Option<f64>,
    /// Deliveries of a seq whose predecessor (same author) had not been delivered to that
    /// peer.
    pub fifo_violations: u64,
    /// Deliveries of a post a peer had already delivered.
    pub duplicate_deliveries: u64,
    /// Seconds from the start until all live peers had equal digests (every head, posts
    /// included) and knew each other. While posts are still being published, digests are
    /// rarely equal at one instant: see `membership_converged_s` and `converge_quiet_s`.
    pub converge_from_start_s: Option<f64>,
    /// Seconds from the start until every live peer knew every other live peer. Once any
    /// peer keeps fisheye membership (`Observe::fisheye`): until every live peer knew every
    /// live peer in its scope (as its `Observe::in_scope` judges that peer's published
    /// coordinate: its radius, its links, the landmarks), checked over at most 500 observers.
    #[serde(default)]
    pub members_known_s: Option<f64>,
    /// Seconds from the start until every live peer knew every other and all had equal
    /// membership digests (the latest-value streams: presence, status, departures). Under
    /// fisheye membership: until every live peer held the newest presence and status of every
    /// live peer in its scope (and stores are compared by their log digests, posts only).
    /// The end-of-run fisheye figures are in `counters`: `fisheye_scope_pairs` (observer,
    /// peer-in-its-scope pairs), `fisheye_scope_known` and `fisheye_scope_newest` (of those,
    /// known at all, and known in the newest version).
    #[serde(default)]
    pub membership_converged_s: Option<f64>,
    /// Seconds from the end of publishing (and of every fault) until all live peers had equal
    /// digests, posts included: convergence measured at a quiet point.
    #[serde(default)]
    pub converge_quiet_s: Option<f64>,
    /// Bytes sent, by frame kind (`events_post`, `events_post_sync`, `events_membership`,
    /// `ihave`, `ack`, …), first sends and retransmissions alike.
    #[serde(default)]
    pub bytes_by_kind: std::collections::BTreeMap<String, u64>,
    /// Envelope bytes of the latest-value events sent in membership-class frames (eager pushes
    /// and sync answers; not their frames' own bytes), by stream (`hey-there`, `newspaper`,
    /// `opinion`, …): what membership is made of.
    #[serde(default)]
    pub membership_bytes_by_stream: std::collections::BTreeMap<String, u64>,
    /// Frames sent, by the same kinds.
    #[serde(default)]
    pub frames_by_kind: std::collections::BTreeMap<String, u64>,
    /// Bytes of frames sent by a post's author that carry that post, by frame kind, per post.
    #[serde(default)]
    pub author_egress_by_kind: std::collections::BTreeMap<String, f64>,
    /// What peers believed about each other (scenarios with `opinions`): statuses against
    /// the truth, the consensus per field beside the `median` and `nara` baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opinions: Option<crate::sim::opinions::OpinionReport>,
    /// Barrios (scenarios with `barrios`): how many, their size and spread, churn in the
    /// steady state, and how well peers agree on each other's barrio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrios: Option<crate::sim::barrios::BarrioReport>,
    /// Engine counters summed over the live peers at the end (retransmits, grafts, …).
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Per heal (end of a partition or crash), seconds until all live peers had equal digests
    /// and knew each other; `None` if not before the next fault or the end.
    pub converge_after_heal_s: Vec<Option<f64>>,
    /// Per heal, the backlog it had to drain.
    pub backlog: Vec<Backlog>,
    /// Per link fault, seconds from its start until the last affected connected link was
    /// reported suspected (or disconnected); `None` if one never was during the fault, or no
    /// link was reported at all.
    pub suspect_delay_s: Vec<Option<f64>>,
    /// Per link fault, seconds from its end until the last affected link was reported
    /// connected again; `None` if one never was, or no link was reported at all.
    pub reconnect_delay_s: Vec<Option<f64>>,
    /// Link-status reports, by new status.
    pub link_transitions: Transitions,
    /// Frames that did not arrive, by cause.
    pub drops: Drops,
    /// Largest backlog seen on one medium, bytes.
    pub max_queue_bytes: u64,
    /// The overlay at the end (disseminators that keep one): its shortest paths against the
    /// direct ones, the floor under any tree's stretch on it.
    #[serde(default)]
    pub overlay: Option<crate::sim::OverlaySummary>,
    /// Events the simulator processed.
    pub events: u64,
    /// Shards the peers were split into, run side by side (1: one thread). The only part of
    /// a report that depends on how many threads ran it.
    #[serde(default)]
    pub shards: usize,
    /// With several shards: the least one-way delay between peers of different shards, µs
    /// (the length of the windows the shards run in).
    #[serde(default)]
    pub lookahead_us: Option<u64>,
    /// Filled by the host: peak resident memory during this disseminator's run.
    pub peak_rss_bytes: Option<u64>,
    /// Filled by the host: wall-clock time of this disseminator's run.
    pub wall_s: Option<f64>,
    /// Delivery and traffic over time.
    pub timeline: Timeline,
}

/// Bytes by send class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassBytes {
    /// Heartbeats, acks, version vectors, grafts, prunes.
    pub control: u64,
    /// Postcards.
    pub postcard: u64,
    /// Posts.
    pub post: u64,
    /// Membership.
    pub membership: u64,
}

impl ClassBytes {
    /// All classes.
    pub fn total(&self) -> u64 {
        self.control + self.postcard + self.post + self.membership
    }
}

/// What one heal had to catch up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// When the heal happened, seconds from the start.
    pub heal_s: f64,
    /// Posts published before the heal that some peer alive at the end lacked at the heal.
    pub posts: u64,
    /// Σ envelope bytes × peers lacking it, at the heal.
    pub bytes: u64,
    /// Seconds from the heal until the last of them was delivered everywhere; `None` if one
    /// never was.
    pub drained_s: Option<f64>,
    /// `1.2 × bytes × 8 / link rate + 2 × largest RTT across the healed cut`, seconds (the
    /// convoy target), when the scenario has a link rate.
    pub bound_s: Option<f64>,
}

/// Link-status reports by new status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitions {
    /// To connected.
    pub connected: u64,
    /// To suspected.
    pub suspected: u64,
    /// To disconnected.
    pub disconnected: u64,
}

/// Frames that did not arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    /// The medium's queue was full.
    pub queue: u64,
    /// Lost on the way (loss model).
    pub lost: u64,
    /// Cut by a partition.
    pub partitioned: u64,
    /// The receiver was down (or restarted since the frame was sent).
    pub dead: u64,
    /// Sent without a link to the peer, or the link closed in flight.
    pub no_link: u64,
}

/// Delivery and traffic per time bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Bucket width, seconds.
    pub bucket_s: f64,
    /// Posts published per bucket.
    pub published: Vec<u32>,
    /// Deliveries per bucket.
    pub delivered: Vec<u32>,
    /// Copies received of the posts published in each bucket (over `published` × the peers
    /// other than the author: that bucket's copies per delivery).
    #[serde(default)]
    pub copies: Vec<u32>,
    /// Post-class bytes sent per bucket.
    pub post_bytes: Vec<u64>,
    /// Other bytes (control, membership, postcards) sent per bucket.
    pub other_bytes: Vec<u64>,
    /// Stretch p50 of the deliveries in each bucket (`null`: none), to see whether a run's
    /// stretch is its steady state's or its join's.
    #[serde(default)]
    pub stretch_p50: Vec<Option<f64>>,
    /// Bytes sent per bucket by frame kind (the labels of the report's `sent` breakdown), to
    /// tell a join's cost from the steady state's.
    #[serde(default)]
    pub by_kind: std::collections::BTreeMap<String, Vec<u64>>,
    /// Intervals during which a fault was active, seconds `(start, end)`.
    pub faults: Vec<(f64, f64)>,
}
