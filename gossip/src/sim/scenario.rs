//! What a simulation runs: peers, latencies, links, traffic and a fault schedule.
//!
//! A [`Scenario`] is plain data, already resolved (a matrix is parsed, a topology generated):
//! reading files is the host's business (`vecino-testnet sim` reads TOML and matrices). Every
//! random choice of a run is drawn from the seed given to [`crate::sim::run`], never from here.

use std::sync::Arc;
use std::time::Duration;

use crate::sim::latency::Latency;

/// A resolved simulation scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, for reports.
    pub name: String,
    /// Number of peers, indexed `0..peers`.
    pub peers: usize,
    /// Group of each peer (`groups.len() == peers`); groups name sites, convoys or radios, and
    /// faults refer to them. Without groups every peer is its own group.
    pub groups: Arc<Vec<u32>>,
    /// Latency between peers.
    pub latency: Latency,
    /// Link rates, radios, queues and loss.
    pub link: LinkModel,
    /// Posts to publish.
    pub traffic: Traffic,
    /// Postcards to send, if any.
    pub postcards: Option<PostcardTraffic>,
    /// Scheduled partitions and crashes, expanded into single occurrences.
    pub faults: Vec<Fault>,
    /// Traffic and faults happen in `[0, duration)`.
    pub duration: Duration,
    /// After `duration`, every fault is healed, nothing is published, and the run goes on this
    /// long so that what is in flight can arrive.
    pub drain: Duration,
    /// Peers start at random times in `[0, start_spread)`, in index order.
    pub start_spread: Duration,
    /// Links each starting peer gets to random lower-index peers (disseminators that assume a
    /// full-mesh transport ignore it).
    pub bootstrap: usize,
    /// A crashed peer's neighbours see its link go down this long after the crash.
    pub transport_timeout: Duration,
    /// How often convergence is checked while a heal is waiting for it, and progress reported.
    pub check_interval: Duration,
    /// Whether to measure convergence from the start (all peers joined, equal digests).
    pub converge_from_start: bool,
    /// Width of a timeline bucket in the report.
    pub bucket: Duration,
    /// Newspaper size and period for the computed flat-flood comparison line, if any.
    pub flat_flood: Option<FlatFlood>,
    /// Sample what peers believe about each other (`crate::sim::opinions`), if set.
    pub opinions: Option<OpinionSampling>,
    /// Sample every peer's barrio and what the others hold of it (`crate::sim::barrios`), if
    /// set.
    pub barrios: Option<BarrioSampling>,
}

/// How the run samples barrios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarrioSampling {
    /// A sample every this long.
    pub every: Duration,
    /// Barrio changes are counted from this time on (the steady state).
    pub steady_from: Duration,
}

/// How the run samples what peers believe about each other (statuses and the consensus per
/// field, with the `median` and `nara` baselines over the same claims).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpinionSampling {
    /// A sample every this long.
    pub every: Duration,
    /// Observers sampled (honest peers spread evenly over the indexes), each about every
    /// other peer.
    pub observers: usize,
}

/// The parameters of the computed flat-flood line: every peer's newspaper to every peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatFlood {
    /// One newspaper, bytes.
    pub newspaper_bytes: u32,
    /// One newspaper per peer per this period.
    pub period: Duration,
}

impl FlatFlood {
    /// Bits per second each peer would receive: `peers × bytes × 8 / period` (every other
    /// peer's newspaper, plus its own echoed, as the flat flood does not filter).
    pub fn per_peer_bps(&self, peers: usize) -> f64 {
        peers as f64 * f64::from(self.newspaper_bytes) * 8.0 / self.period.as_secs_f64()
    }
}

/// How frames travel.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkModel {
    /// Rate in bits per second; `None`: no serialisation delay at all.
    pub rate_bps: Option<u64>,
    /// What the rate applies to.
    pub scope: RateScope,
    /// Bound on the bytes waiting for one medium (uplink, directed pair or radio); a frame that
    /// would exceed it is dropped (tail drop) and counted.
    pub queue_bytes: u64,
    /// Per-frame loss.
    pub loss: Loss,
    /// Bytes added to every frame on the medium (transport headers); 0 by default.
    pub frame_overhead_bytes: u32,
    /// Back-pressure: each peer's host reports when a frame it was handed has left on the
    /// medium, and vecino hands it at most this many bytes not yet sent (`Config::
    /// host_queue_bytes`); its own bucket then does not pace. `None`: paced by buckets.
    pub host_queue_bytes: Option<u64>,
    /// On shared radios only: a peer may broadcast a frame that every other member of its
    /// group hears, in one transmission (vecino's `Config::shared_medium`; the baselines
    /// send point to point). Each member loses it independently.
    pub broadcast: bool,
    /// Per-frame delay noise on point-to-point frames (none by default).
    pub noise: DelayNoise,
}

/// Per-frame delay noise: each point-to-point frame's one-way delay is multiplied by a
/// uniform draw in [1 − `jitter`, 1 + `jitter`], and by `spike_factor` with probability
/// `spike_share`. A directed pair stays FIFO (as a TCP or QUIC stream is): a frame never
/// arrives before the one sent before it, so a spike delays what follows it. Radio
/// broadcasts have none.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DelayNoise {
    /// See the type.
    pub jitter: f64,
    /// See the type.
    pub spike_share: f64,
    /// See the type.
    pub spike_factor: f64,
}

impl DelayNoise {
    /// Whether any noise is drawn.
    pub fn is_on(&self) -> bool {
        self.jitter > 0.0 || (self.spike_share > 0.0 && self.spike_factor != 1.0)
    }
}

/// What a link rate applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Each peer has one uplink: all it sends queues there.
    Uplink,
    /// Each directed pair of peers has its own line (point-to-point links, RCM's test bed).
    Pair,
    /// Each group shares one radio: a transmission by any member occupies the medium for all.
    SharedRadio,
}

/// Frame loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// No loss.
    None,
    /// Each frame is lost independently with probability `p`.
    Bernoulli {
        /// Loss probability.
        p: f64,
    },
    /// Gilbert–Elliott: each directed pair is in a good or a bad state; per frame it moves
    /// good → bad with `p_bad`, bad → good with `p_good`, then loses the frame with `loss_good`
    /// or `loss_bad`.
    Bursty {
        /// Per-frame probability of entering the bad state.
        p_bad: f64,
        /// Per-frame probability of leaving the bad state.
        p_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// The long-run loss rate.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli { p } => p,
            Loss::Bursty { p_bad, p_good, loss_good, loss_bad } => {
                let bad = if p_bad + p_good > 0.0 { p_bad / (p_bad + p_good) } else { 0.0 };
                (1.0 - bad) * loss_good + bad * loss_bad
            }
        }
    }
}

/// Who publishes posts, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Posts per second: per peer, or fleet-wide.
    pub rate_per_s: f64,
    /// Per peer or fleet-wide.
    pub per: TrafficScope,
    /// Body size of each post.
    pub body_bytes: usize,
    /// Topic of every post.
    pub topic: String,
    /// First publication not before this time.
    pub start: Duration,
    /// Periodic (with a random phase) or Poisson arrivals.
    pub arrivals: Arrivals,
}

/// Postcards: point-to-point messages between pairs of peers, fleet-wide.
#[derive(Debug, Clone, PartialEq)]
pub struct PostcardTraffic {
    /// Postcards per second, fleet-wide (each from a random live peer).
    pub rate_per_s: f64,
    /// Body size of each postcard (before sealing).
    pub body_bytes: usize,
    /// Lifetime of each postcard.
    pub lifetime: Duration,
    /// First postcard not before this time.
    pub start: Duration,
    /// Who sends to whom.
    pub pairs: Pairs,
    /// The sender's application gives the destination's coordinate (as one replying to a
    /// peer it heard from would): for fleets too large for every peer to hold every member.
    pub hint: bool,
}

/// Who sends postcards to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// A random destination other than the sender.
    Random,
    /// A random destination in another group (a convoy's postcards to the other convoy).
    AcrossGroups,
}

/// Who publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficScope {
    /// Every peer publishes at the rate.
    PerPeer,
    /// The fleet publishes at the rate, each post by a random live peer.
    Fleet,
}

/// How publication times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Every `1 / rate`, from a random phase.
    Periodic,
    /// Exponential gaps of mean `1 / rate`.
    Poisson,
}

/// One occurrence of a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When it starts (offset from the run's start).
    pub start: Duration,
    /// When it ends; `None`: never (until the drain heals everything).
    pub end: Option<Duration>,
    /// What it is.
    pub kind: FaultKind,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Frames between peers on different sides are silently dropped (no link-down: the
    /// engine notices from missing heartbeats). Side of each peer: 0 = not involved, 1.. = a
    /// side; a link flap is a partition with two sides of one group each.
    Partition {
        /// Side of each peer (`len == peers`).
        side: Arc<Vec<u8>>,
    },
    /// The peers stop (state lost except what they persisted) and restart at the fault's end.
    Crash {
        /// Peer indexes.
        peers: Vec<u32>,
    },
    /// The peers publish `lie` instead of what they observe, until the fault's end (cuts
    /// nothing).
    Lie {
        /// Peer indexes.
        peers: Vec<u32>,
        /// What they claim.
        lie: crate::opinions::Lie,
    },
    /// A regional fault: every link of the members of one barrio (the barrio peer `around` is
    /// in when the fault starts) gets `rtt_factor` times slower (both ways), until the
    /// fault's end (cuts nothing).
    Degrade {
        /// The peer whose barrio degrades.
        around: u32,
        /// Latency multiplier (≥ 1).
        rtt_factor: f64,
    },
}

impl Fault {
    /// Whether the fault cuts the pair (a, b) while active.
    pub fn affects(&self, a: usize, b: usize) -> bool {
        match &self.kind {
            FaultKind::Partition { side } => {
                let (x, y) = (side[a], side[b]);
                x != 0 && y != 0 && x != y
            }
            FaultKind::Crash { peers } => peers.iter().any(|&p| p as usize == a || p as usize == b),
            FaultKind::Lie { .. } | FaultKind::Degrade { .. } => false,
        }
    }
}

impl Scenario {
    /// A small clean scenario (uniform latency, no loss, no faults): the base of tests.
    pub fn small(name: &str, peers: usize) -> Self {
        Scenario {
            name: name.to_string(),
            peers,
            groups: Arc::new((0..peers as u32).collect()),
            latency: Latency::Uniform { rtt_ms: 40.0 },
            link: LinkModel {
                rate_bps: Some(1_000_000),
                scope: RateScope::Uplink,
                queue_bytes: 1 << 20,
                loss: Loss::None,
                frame_overhead_bytes: 0,
                host_queue_bytes: None,
                broadcast: false,
                noise: DelayNoise::default(),
            },
            traffic: Traffic {
                rate_per_s: 1.0,
                per: TrafficScope::PerPeer,
                body_bytes: 100,
                topic: "sim".to_string(),
                start: Duration::from_secs(1),
                arrivals: Arrivals::Periodic,
            },
            postcards: None,
            faults: Vec::new(),
            duration: Duration::from_secs(20),
            drain: Duration::from_secs(10),
            start_spread: Duration::ZERO,
            bootstrap: 3,
            transport_timeout: Duration::from_secs(20),
            check_interval: Duration::from_millis(250),
            converge_from_start: true,
            bucket: Duration::from_secs(1),
            flat_flood: None,
            opinions: None,
            barrios: None,
        }
    }

    /// Peers in group `g`.
    pub fn group_members(&self, g: u32) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().enumerate().filter(move |(_, x)| **x == g).map(|(i, _)| i)
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.iter().max().map_or(0, |&g| g as usize + 1)
    }
}
