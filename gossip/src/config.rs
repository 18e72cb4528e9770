//! Engine settings, with the defaults a deployment starts from.

use std::time::Duration;

/// Settings of one engine. Every bound on remote-driven state is here.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Period of the housekeeping tick (heartbeats, retransmissions, lazy pushes are checked on
    /// it): the resolution of every engine timer.
    pub tick: Duration,
    /// The heartbeat of a *fast* link (see `fast_links`): its end with the lower key pings it
    /// when nothing was heard on it for this long, the other end after half as long again
    /// (any frame heard counts, so a link that carries traffic is not pinged); a suspected or
    /// disconnected link is pinged every half heartbeat, so its return is noticed quickly.
    pub heartbeat: Duration,
    /// Links per peer held to fast failure detection (suspected after `suspect_after` of
    /// silence): the farthest by RTT (the kind a partition cuts), then those the neighbours
    /// hold fast (pings and pongs say so, and one fast link serves both ends), then the
    /// nearest. Also fast: every link with frames awaiting acknowledgement, or that carried
    /// a postcard or post within two slow heartbeats (its acknowledgements are its heartbeat), every link while this peer's
    /// coordinate has not settled (its Vivaldi client wants the samples), and every link for
    /// two slow heartbeats after one was suspected (what cut it may be cutting the others).
    /// The others are *slow*: heartbeat `slow_heartbeat`, suspected after `suspect_after`
    /// scaled by `slow_heartbeat / heartbeat`. Each idle link costs a ping and a pong per
    /// heartbeat (about 40 B), the bulk of an idle fleet's traffic (docs/BENCHMARKS.md,
    /// "Node").
    pub fast_links: usize,
    /// The heartbeat of a slow link (see `fast_links`); at most `heartbeat` makes every link
    /// fast.
    pub slow_heartbeat: Duration,
    /// Acknowledge received frames at the latest this long after the first unacknowledged
    /// one (or at once when 8 wait).
    pub ack_delay: Duration,
    /// A link becomes *suspected* when nothing was heard for `max(suspect_after, 3 × RTT)`.
    pub suspect_after: Duration,
    /// A suspected link becomes *disconnected* after this long: the longest outage weathered
    /// with per-link buffers (RCM's suspect timeout).
    pub suspect_timeout: Duration,
    /// Neighbours to keep in the active view (eager or lazy broadcast links). Dialled nearest
    /// first while the peer joins, before coordinates mean much, so the overlay's shortest
    /// paths are longer than the direct ones, less so the more links a peer holds (on planet,
    /// 490 peers: 1.52 × at 6, 1.33 at 8, 1.18 at 10). Each link costs heartbeats,
    /// acknowledgements and announcements, so a fleet of thousands on a membership budget
    /// keeps fewer (scale's 10 000 fisheye peers keep 6). Figures: docs/BENCHMARKS.md,
    /// "planet" and "scale".
    pub active_view: usize,
    /// Of the active view, how many are random long links rather than the nearest peers.
    pub random_links: usize,
    /// Proximity swaps (`overlay`): this often, a peer whose coordinate has settled dials the
    /// nearest member it has no link to when that member is predicted nearer than
    /// `swap_ratio` × its farthest near link, and keeps the nearer of the two links. The view
    /// a peer fills while it joins is chosen before coordinates mean anything. `None` (the
    /// default, for now): the view keeps the links it was filled with. Swaps shorten paths
    /// but each new link starts eager on every tree until duplicates prune it, which costs
    /// copies and membership bytes (docs/BENCHMARKS.md, "planet").
    pub swap_interval: Option<Duration>,
    /// See `swap_interval`: how much nearer (by coordinate) a member must be predicted than
    /// the near link it would replace.
    pub swap_ratio: f64,
    /// Most neighbour links held at once (inbound beyond this are refused).
    pub max_links: usize,
    /// Graft after this multiple of the announcing link's RTT (ping or acknowledgement time,
    /// whichever is larger) without the event.
    pub graft_rtt_factor: f64,
    /// Lower bound of the graft timeout.
    pub graft_min: Duration,
    /// Plumtree's tree optimisation (Leitão et al. §3.8): when a lazy neighbour announced an
    /// event, before it arrived by eager push, with a hop count at least this much lower than
    /// the eager path's, the lazy link is grafted and the eager one pruned. 0 (the default)
    /// turns it off and hop counts are not sent: on planet (490 peers, one tree shared by all
    /// authors over a proximity overlay) thresholds 3 and 5 shortened the tree (7.3 -> 5.9
    /// hops) but raised stretch and copies (docs/BENCHMARKS.md, Simulation, planet).
    pub optimization_threshold: u32,
    /// One Plumtree tree per author (slot of the author key; see `broadcast`), so each
    /// author's events follow the lowest-delay tree from it; false: one tree shared by all
    /// authors (Plumtree as published), deep and slow for most of them on a proximity overlay.
    pub per_author_trees: bool,
    /// A new link starts lazy on every tree when the peer already has this many connected
    /// links (which bring it what it needs): it becomes an edge of a tree only when the
    /// neighbour's announcement beats the tree and is grafted. Below it — joining, or cut
    /// off — new links start eager on every tree, as in Plumtree, which costs one duplicate
    /// per tree per new link (with one tree per author, many on a churning overlay).
    /// `usize::MAX`: always eager.
    pub lazy_new_links_from: usize,
    /// A new link starts lazy on every tree, *probed*, when the peer already has this many
    /// connected links, in a full-membership fleet (with one tree per author): the first
    /// presence or status event of each author the peer passes on after the link came is
    /// pushed on it, and the link turns eager on that author's tree, as in a refresh
    /// (`tree_refresh_every`). The neighbour prunes it if the event was a duplicate; if it
    /// came first, the neighbour's older path is pruned instead. So a link made once the
    /// trees have formed (a proximity swap's) joins only the trees it shortens, and learns
    /// it from membership events rather than from duplicate posts. A swapped-out link is
    /// kept until the new one has been probed by every author's newspaper (see
    /// `swap_interval`). The links a peer makes while it joins stay eager (Plumtree's
    /// first flood forms the trees over them): on planet the links of the churn after the
    /// join (a hub trimming its inbound surplus, its neighbours dialling others) took copies
    /// per delivery to 1.45 with the view at 10 when eager, 1.17 probed from the 8th link.
    /// `usize::MAX`: new links are never probed (see `lazy_new_links_from`).
    pub probe_new_links_from: usize,
    /// Every this many newspapers (its 2nd, then every `tree_refresh_every`-th after it) an
    /// author's newspaper floods its tree: each peer that takes it pushes it on every
    /// connected link and turns them eager on the author's tree, and the duplicates prune
    /// them back to the first-arrival tree of that moment. Trees are otherwise shaped once,
    /// by the first floods of the join, when every uplink is queued behind the join's
    /// presence (planet: posts took 1.5× the delay of the overlay's shortest paths at 10
    /// Mbit/s, 1.16× at 1 Gbit/s) and changed only by repairs. The 2nd newspaper comes at
    /// least `newspaper_min_interval` after the start, once the join is quiet. Peers of a
    /// fleet need not agree. Full-membership fleets only (a fisheye fleet's posts ride one
    /// shared tree, and its presence stays within balls); 0: never.
    pub tree_refresh_every: u64,
    /// Members a peer holds at least before it floods trees (`tree_refresh_every`). A small
    /// fleet's trees are two or three hops deep and its join queues little, so a flood buys
    /// little; where links come and go (rcm's outages, a convoy's radio) the links it makes
    /// eager wait for duplicates to prune them: with no floor, copies per delivery rose 3–8 %
    /// on rcm, convoy and convoy70.
    pub tree_refresh_min_members: usize,
    /// An author pushes its own events eagerly on at most this many links (its nearest
    /// tree edges); its other neighbours are sent announcements and get the event relayed.
    /// Bounds the author's egress per event (the fan-out tax) at this many copies; 0: no
    /// bound (the author's first-arrival tree is a star of all its links).
    pub root_fanout: usize,
    /// Each event is announced on at most this many of the links lazy for its tree, chosen
    /// at random per event, besides the links owed it (tree edges not pushed on, links
    /// pruned on the tree in the last 5 s); 0: on all of them (Plumtree as published).
    /// Eager pushes are acknowledged and retransmitted per link, so announcements only repair
    /// a tree whose edge failed (and anti-entropy catches up whatever they miss); on every
    /// lazy link they cost about as many bytes as the events themselves on a shared radio.
    pub ihave_fanout: usize,
    /// Plumtree's optimisation by time: when a lazy neighbour's announcement of an event
    /// arrived at least this long before the event's eager push, the lazy link is grafted on
    /// the author's tree and the eager one pruned from it. `None`: only repairs change trees.
    pub swap_lead: Option<Duration>,
    /// Lower bound of the retransmission timeout (which is otherwise srtt + 4 × rttvar of
    /// the link's acknowledgements, doubled at each retransmission of a frame).
    pub rto_min: Duration,
    /// Node-wide egress rate (bits/s) shared by all links, for hosts whose links share one
    /// uplink or radio (set it to the host's share of the medium); `None`: each link is paced
    /// alone at the rate its `LinkInfo` gave.
    pub uplink_bps: Option<u64>,
    /// Back-pressure from the host: when set, the host reports every frame that left its
    /// queue (`Input::Sent`) and the engine hands it at most this many bytes not yet sent,
    /// holding the rest in its own priority queues. The node-wide bucket then does not pace
    /// (`uplink_bps` still budgets heartbeats and frame sizes): the medium does, so a peer on
    /// a shared radio may use what the others leave idle, and its queue at the radio stays a
    /// frame or two long. `None`: the buckets alone pace.
    pub host_queue_bytes: Option<usize>,
    /// The host can broadcast on a shared medium (a radio) that the neighbours marked
    /// `LinkInfo::shared_medium`, and others, hear ([`crate::Output::Broadcast`]). An event
    /// then enters the medium once, broadcast by the first peer on it to hold it (its author,
    /// or the end of a link from off the medium), and travels the trees only on links off
    /// the medium: on a radio of n vehicles a post costs one transmission instead of about
    /// n − 1 (convoy70). False (the default): every link is point to point.
    pub shared_medium: bool,
    /// Bytes of unacknowledged and queued frames kept per link; past it the oldest are dropped
    /// (counted) and anti-entropy catches up instead.
    pub max_link_buffer_bytes: usize,
    /// Period of the digest exchange with each neighbour (anti-entropy).
    pub sync_interval: Duration,
    /// Publish a newspaper at least this often.
    pub newspaper_max_interval: Duration,
    /// Publish opinions about the neighbours (`crate::opinions`): online, restarts, start,
    /// uptime, RTT. False: none are published (others' are still kept and weighed).
    pub opinions: bool,
    /// Publish an opinion at least this often (sooner when a neighbour turns up or down).
    pub opinion_max_interval: Duration,
    /// Barrios (`crate::barrios`): a peer heads its own barrio or joins the lowest-ranked head
    /// within 0.8 × this (by coordinate distance), keeps its head within 1.25 × this, and
    /// publishes a barrio slot. Zero: no barrios (no slots published; others' still kept).
    pub barrio_radius: Duration,
    /// Report peers' status changes (online, unreachable, offline) to the application
    /// (`AppEvent::Status`): the consensus is computed once a second when something changed.
    /// The simulator samples statuses itself and turns this off.
    pub status_events: bool,
    /// Publish a newspaper early when the coordinate moved, relative to the neighbours', more
    /// than this (ms) and more than a tenth of the median RTT of this peer's links (a smaller
    /// move is within the map's own error: a median 5–8 % on planetlab RTTs)…
    pub newspaper_move_ms: f64,
    /// …but not more often than this.
    pub newspaper_min_interval: Duration,
    /// Most members (authors) tracked.
    pub max_members: usize,
    /// Fisheye membership (`crate::membership`): once this peer holds this many members, it
    /// keeps and passes on the presence and status of the members nearest it (about this
    /// many, by coordinate), of its neighbours and of the landmarks, and no others. Fleets
    /// smaller than this keep full membership. 0 (the default) turns fisheye off (full
    /// membership always). With it on, posts travel on one tree shared by all authors
    /// ([`Config::shares_post_tree`]): an author's own tree is pruned by its presence and
    /// status events only inside its fisheye ball, and its posts flooded the rest (scale,
    /// 1 000 peers: 6.1 copies per delivery; shared: 1.1, but twice the latency; see
    /// docs/BENCHMARKS.md, scale). 128 is the value it was measured with.
    pub fisheye_members: usize,
    /// Be a fisheye peer from the start instead of after holding `fisheye_members` members:
    /// for a peer that joins a fleet known to be larger (a deployment's size hint). Without
    /// it every peer of a fleet that starts at once keeps and passes on every hey-there it
    /// hears until it holds `fisheye_members`, and the join is a flood of all N presences to
    /// all N peers (scale, 1 000 peers: 196 kbit/s per peer in the first 10 s). With it a
    /// peer keeps only its neighbours and the landmarks until its coordinate settles, then
    /// the settled members that come, until it can draw its radius.
    pub fisheye_from_start: bool,
    /// A fisheye peer publishes its newspapers at least `held / newspapers_heard_per_s`
    /// seconds apart (and never more often than `newspaper_min_interval`), `held` being the
    /// members it holds: the peers that hold it are about as many, so each of them hears
    /// about this many newspapers per second from its whole ball, whatever the fleet's size.
    /// Full-membership peers are not affected. 0: no spacing by members.
    pub newspapers_heard_per_s: f64,
    /// One author in this many (by key) is a *landmark*, whose membership every peer keeps:
    /// a fleet-wide sample of far regions. 0: no landmarks.
    pub fisheye_landmarks: u32,
    /// How long a postcard lives when its author does not say (`Command::Postcard`).
    pub postcard_lifetime: Duration,
    /// The longest lifetime a postcard may ask for; longer ones are refused, by their author
    /// and by every hop.
    pub max_postcard_lifetime: Duration,
    /// Routed events (postcards, receipts) kept in custody here at most; past it, custody is
    /// refused (counted `postcard_custody_full`) and the previous hop routes them elsewhere.
    pub max_custody: usize,
    /// Bytes of routed events kept in custody at most.
    pub max_custody_bytes: usize,
    /// Routed events of one author kept in custody at most (its share: one author cannot
    /// fill a relay; counted `postcard_author_share`).
    pub max_custody_per_author: usize,
    /// This peer's link state (`crate::routing`: its links and their RTTs, what postcards are
    /// routed on) is published at most this often when its links change, and every
    /// `newspaper_max_interval` otherwise. Zero: no link state (postcards route greedily on
    /// coordinates alone).
    pub link_state_min_interval: Duration,
    /// How postcards and receipts travel: by proximity (the default), or one of the
    /// baselines the simulator measures it against.
    pub postcard_router: PostcardRouter,
    /// Most log events (posts) kept per author; older ones are forgotten first.
    pub max_log_per_author: usize,
    /// Bytes of one author's posts held at most (in memory and on disk): past it, its oldest
    /// delivered ones are forgotten; a post that cannot fit is refused (`author_share`).
    pub max_log_bytes_per_author: usize,
    /// Bytes of all posts held at most: past it, the oldest delivered posts of whoever holds
    /// most are forgotten.
    pub max_log_bytes: usize,
    /// Delivered posts older than this (by their HLC) are forgotten.
    pub log_retention: Duration,
    /// Events sent per `Events` frame at most.
    pub max_events_per_frame: usize,
    /// This peer's listen addresses, advertised in hey-there.
    pub addrs: Vec<String>,
    /// Human name, advertised in hey-there.
    pub name: String,
    /// Vivaldi settings.
    pub coords: vecino_coords::Config,
}

impl Config {
    /// Whether posts (log streams) travel on one tree shared by all authors rather than on
    /// their authors' trees: in a fisheye fleet (`fisheye_members` > 0) with `per_author_trees`.
    /// Presence and status still follow their authors' trees, inside the authors' balls.
    /// Every peer of a fleet must agree: a duplicate prunes the tree its receiver would
    /// push it on.
    #[must_use]
    pub fn shares_post_tree(&self) -> bool {
        self.per_author_trees && self.fisheye_members > 0
    }

    /// The store's budgets for posts.
    pub(crate) fn log_budget(&self) -> crate::store::LogBudget {
        crate::store::LogBudget {
            per_author: self.max_log_bytes_per_author,
            total: self.max_log_bytes,
            retention_ms: u64::try_from(self.log_retention.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            heartbeat: Duration::from_secs(1),
            fast_links: 3,
            slow_heartbeat: Duration::from_secs(5),
            ack_delay: Duration::from_millis(200),
            suspect_after: Duration::from_millis(2_500),
            suspect_timeout: Duration::from_secs(60),
            active_view: 10,
            random_links: 2,
            max_links: 48,
            swap_interval: None,
            swap_ratio: 0.5,
            graft_rtt_factor: 2.0,
            graft_min: Duration::from_millis(150),
            optimization_threshold: 0,
            per_author_trees: true,
            lazy_new_links_from: usize::MAX,
            probe_new_links_from: 8,
            root_fanout: 2,
            tree_refresh_every: 4,
            tree_refresh_min_members: 128,
            ihave_fanout: 0,
            swap_lead: None,
            rto_min: Duration::from_millis(300),
            uplink_bps: None,
            host_queue_bytes: None,
            shared_medium: false,
            max_link_buffer_bytes: 8 << 20,
            sync_interval: Duration::from_secs(10),
            newspaper_max_interval: Duration::from_secs(600),
            opinions: true,
            opinion_max_interval: Duration::from_secs(900),
            barrio_radius: Duration::from_millis(25),
            status_events: true,
            newspaper_move_ms: 5.0,
            newspaper_min_interval: Duration::from_secs(60),
            max_members: 20_000,
            fisheye_members: 0,
            fisheye_from_start: false,
            newspapers_heard_per_s: 1.0,
            fisheye_landmarks: 256,
            postcard_lifetime: Duration::from_secs(600),
            max_postcard_lifetime: Duration::from_secs(86_400),
            max_custody: 10_000,
            max_custody_bytes: 16 << 20,
            max_custody_per_author: 1_000,
            link_state_min_interval: Duration::from_secs(30),
            postcard_router: PostcardRouter::Proximity,
            max_log_per_author: 100_000,
            max_log_bytes_per_author: 4 << 20,
            max_log_bytes: 64 << 20,
            log_retention: Duration::from_secs(7 * 86_400),
            max_events_per_frame: 64,
            addrs: Vec::new(),
            name: String::new(),
            coords: vecino_coords::Config::vecino(),
        }
    }
}

/// How postcards and receipts travel (`Config::postcard_router`).
///
/// `Proximity` is vecino's router (`crate::routing`: one custodian at a time, each hop the
/// neighbour nearest the destination). The others are the baselines of the field, kept in the
/// engine so that the simulator measures them on the same overlay, faults and seed:
/// - `Direct`: the author keeps the postcard until the destination is its neighbour (as a
///   federation server or Tox holds a message until the destination is reachable).
/// - `Epidemic`: every holder hands a copy to every neighbour that has not had one from it
///   (dtn7-rs's epidemic router); copies are kept until expiry or until the receipt passes.
/// - `Spray { copies }`: binary spray-and-wait: the author starts with `copies`; a holder of
///   `n > 1` hands `n / 2` to a neighbour without one and keeps the rest; a holder of one
///   waits to meet the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostcardRouter {
    /// Proximity routing with custody transfer (vecino's).
    #[default]
    Proximity,
    /// Held until the destination is a neighbour.
    Direct,
    /// A copy to every neighbour.
    Epidemic,
    /// Binary spray-and-wait with this many copies.
    Spray {
        /// Copies the author starts with.
        copies: u32,
    },
}

impl PostcardRouter {
    /// Its name in reports and flags: `proximity`, `direct`, `epidemic`, `spray`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proximity => "proximity",
            Self::Direct => "direct",
            Self::Epidemic => "epidemic",
            Self::Spray { .. } => "spray",
        }
    }
}
