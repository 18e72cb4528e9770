//! The contract between the engine and its host (the node, or the simulator).
//!
//! The host owns sockets, clocks, disk and timers; the engine owns every protocol decision. The
//! host feeds one [`Input`] at a time to [`Protocol::handle`] together with the current
//! [`Time`], and must then carry out every [`Output`] returned, in order, before feeding the
//! next input:
//!
//! | output | what the host must do |
//! |---|---|
//! | [`Output::Send`] | send `frame` to `to` over the link reported by [`Input::LinkUp`]; if the link is gone, drop it (the engine retransmits what matters). A peer refused for want of room (`max_links`) gets one such frame, a bye, though the engine holds no link for it |
//! | [`Output::Deliver`] | hand the event to the application (API, event stream, metrics) |
//! | [`Output::Schedule`] | call `handle(Input::Timer(timer))` at or after `at`; timers are not cancelled, a stale one is ignored by the engine |
//! | [`Output::Dial`] | try to open a transport connection to `peer` (at `addrs` if known) and report [`Input::LinkUp`] on success; failure needs no report |
//! | [`Output::Disconnect`] | close the transport connection to `peer`, then report [`Input::LinkDown`] |
//! | [`Output::Persist`] | apply the store operation durably *before* sending any later `Send` that acknowledges it (the engine emits them in that order) |
//! | [`Output::Broadcast`] | only with `Config::shared_medium`: transmit `frame` once on the shared medium (a radio), where every peer on it hears it and is fed [`Input::Broadcast`]; nothing is retransmitted (reported by [`Input::Sent`] as a `Send` is) |
//!
//! Inputs the host reports:
//!
//! | input | when |
//! |---|---|
//! | [`Input::Start`] | once, first, right after constructing the state machine: it answers with its initial outputs (its first timer, its presence) |
//! | [`Input::Received`] | a frame arrived from an authenticated neighbour (the transport proved it is `from`) |
//! | [`Input::Broadcast`] | a frame `from` broadcast on this peer's shared medium arrived (`from` need not be a neighbour) |
//! | [`Input::LinkUp`] | a transport connection to `peer` is established (inbound or after a dial) |
//! | [`Input::LinkDown`] | the transport connection to `peer` closed (the engine decides what that means for the link's status) |
//! | [`Input::Timer`] | a scheduled timer is due |
//! | [`Input::Sent`] | only with `Config::host_queue_bytes`: frames the host was handed have left it (written to the radio or the wire), or were dropped; every `Send` must be reported once |
//! | [`Input::Command`] | the application asks for something; the outputs of that call answer it by its id ([`AppEvent::Accepted`] or [`AppEvent::Refused`]) |

use std::time::Duration;

use vecino_proto::{AuthorKey, Bytes, EventId, FraudProof, Hlc};

use crate::time::Time;

/// One thing that happened to the engine's peer.
#[derive(Debug, Clone)]
pub enum Input {
    /// The state machine was just constructed: emit the initial outputs.
    Start,
    /// A frame (`vecino.v1.Frame` bytes) arrived from neighbour `from`.
    Received {
        /// The neighbour, as authenticated by the transport.
        from: AuthorKey,
        /// The frame's bytes, untrusted.
        frame: Bytes,
    },
    /// A frame (`vecino.v1.Frame` bytes) that `from` broadcast on this peer's shared medium
    /// (see `Config::shared_medium`). `from` need not be a neighbour; only the signed events
    /// in the frame are taken, and nothing is acknowledged.
    Broadcast {
        /// The peer that broadcast it, as the medium's transport authenticated it.
        from: AuthorKey,
        /// The frame's bytes, untrusted.
        frame: Bytes,
    },
    /// A transport connection to `peer` is up.
    LinkUp {
        /// The neighbour.
        peer: AuthorKey,
        /// What the host knows of the link.
        info: LinkInfo,
    },
    /// The transport connection to `peer` closed.
    LinkDown {
        /// The neighbour.
        peer: AuthorKey,
    },
    /// A timer the engine scheduled is due.
    Timer(Timer),
    /// Frames of `bytes` (their lengths summed) handed to the host with [`Output::Send`] have
    /// left the host's queue: transmitted, or dropped. Reported only when
    /// `Config::host_queue_bytes` is set; then every `Send` must be reported once.
    Sent {
        /// Bytes that left.
        bytes: usize,
    },
    /// A request from the application, with the id the host gave it: the engine answers it
    /// with [`AppEvent::Accepted`] or [`AppEvent::Refused`] for that id, among the outputs of
    /// this call.
    Command {
        /// The host's id for the command (the engine only echoes it).
        id: u64,
        /// What is asked.
        cmd: Command,
    },
}

/// What the host knows about a link when it comes up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link's rate in bits per second, if configured or known; the engine paces what it
    /// sends on the link to this rate (control first). `None`: unpaced.
    pub rate_bps: Option<u64>,
    /// True when the neighbour dialled us.
    pub inbound: bool,
    /// True when the neighbour is on this peer's shared medium (`Config::shared_medium`): it
    /// hears this peer's broadcasts, so events are not sent to it link by link.
    pub shared_medium: bool,
}

/// A request from the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Broadcast a post on `topic` to every peer.
    Post {
        /// Topic, 1..=128 bytes of UTF-8.
        topic: String,
        /// Body, at most `vecino_proto::limits::MAX_POST_BODY_BYTES`.
        body: Bytes,
    },
    /// Send a postcard: `body` sealed to `to`, routed to it by proximity, kept in custody
    /// hop by hop until delivered or `lifetime` (`Config::postcard_lifetime` when `None`)
    /// passes. `coordinate` says where `to` is when this peer does not hold it as a member.
    Postcard {
        /// The destination.
        to: AuthorKey,
        /// The message, at most `vecino_proto::limits::MAX_POSTCARD_BODY_BYTES`.
        body: Bytes,
        /// How long it lives.
        lifetime: Option<Duration>,
        /// Where the destination is, if known to the application and not to this peer.
        coordinate: Option<vecino_coords::Coordinate>,
    },
    /// Leave on purpose: publish a `chau` and stop reconnecting.
    Leave {
        /// Why, for the others' logs.
        reason: String,
    },
}

/// A timer: opaque to the host, which only schedules it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer(pub(crate) TimerKind);

/// What a timer is for (engine-internal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// The engine's periodic housekeeping tick.
    Tick,
    /// Frames wait for the pacing buckets to refill: send what they allow then.
    Pace,
    /// A routed frame to this neighbour may be due for retransmission (see
    /// `Link::routed_rto`).
    Routed(AuthorKey),
    /// Timers keyed by peer (the simulator's baselines use them; the engine sets none).
    #[allow(dead_code)]
    Peer(AuthorKey, u8),
}

/// Send classes, most urgent first: a link's queue always drains a more urgent class first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Heartbeats, acks, version vectors, grafts and prunes.
    Control,
    /// Point-to-point postcards.
    Postcard,
    /// Broadcast posts.
    Post,
    /// Membership: hey-there, newspapers, opinions, barrio slots.
    Membership,
}

impl Priority {
    /// Every class, most urgent first.
    pub const ALL: [Priority; 4] =
        [Priority::Control, Priority::Postcard, Priority::Post, Priority::Membership];
}

/// Status of the link to one neighbour (RCM's three states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkStatus {
    /// Heartbeats arrive in time.
    Connected,
    /// Heartbeats stopped; traffic for the neighbour is buffered, nothing is dropped.
    Suspected,
    /// Silent for longer than `suspect_timeout`; buffers for the neighbour are released and
    /// anti-entropy will catch it up when it returns.
    Disconnected,
}

impl LinkStatus {
    /// Lowercase name for logs and the API.
    pub const fn name(self) -> &'static str {
        match self {
            LinkStatus::Connected => "connected",
            LinkStatus::Suspected => "suspected",
            LinkStatus::Disconnected => "disconnected",
        }
    }
}

/// A post delivered to the application.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredPost {
    /// The post's event id.
    pub id: EventId,
    /// Its author.
    pub author: AuthorKey,
    /// Its seq in the author's post stream (delivery is gapless and in order per author).
    pub seq: u64,
    /// The author's clock when posting.
    pub hlc: Hlc,
    /// The topic.
    pub topic: String,
    /// The body.
    pub body: Bytes,
    /// True for this peer's own post, delivered as it is published.
    pub own: bool,
}

/// A postcard delivered to the application (this peer is its destination).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredPostcard {
    /// The postcard's event id.
    pub id: EventId,
    /// Its author.
    pub from: AuthorKey,
    /// Its seq in the author's postcard stream.
    pub seq: u64,
    /// The author's clock when sending.
    pub hlc: Hlc,
    /// The message, opened.
    pub body: Bytes,
    /// The peers it crossed, by key prefix, from its author to this peer.
    pub trail: Vec<u64>,
    /// How many of its hops were detours (greedy hops, or hops taken again after one refused
    /// or lost it).
    pub detours: u32,
}

/// Where one of this peer's own postcards stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostcardStatus {
    /// Its first hop took custody of it.
    Forwarded {
        /// That hop.
        next: AuthorKey,
    },
    /// Its destination's receipt came back.
    Delivered {
        /// The peers it crossed, by key prefix, from this peer to the destination.
        trail: Vec<u64>,
    },
    /// Its lifetime passed without a receipt.
    Expired,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// A post, exactly once per peer, in per-author order.
    Post(DeliveredPost),
    /// A neighbour's link changed status.
    Link {
        /// The neighbour.
        peer: AuthorKey,
        /// Its new status.
        status: LinkStatus,
    },
    /// A peer appeared in, updated, or left the membership.
    Member {
        /// The peer.
        peer: AuthorKey,
        /// What changed.
        change: MemberChange,
    },
    /// This peer's belief about a peer's liveness changed (`Config::status_events`).
    Status {
        /// The peer.
        peer: AuthorKey,
        /// Its new status.
        status: crate::PeerStatus,
    },
    /// This peer's barrio turned incoherent (its members' health moved far from the baseline
    /// learnt while it was calm), or calm again (`crate::barrios`, `Config::coherence`).
    Coherence(Box<CoherenceAlarm>),
    /// A new measured round-trip time to a neighbour.
    Rtt {
        /// The neighbour.
        peer: AuthorKey,
        /// The sample.
        rtt: Duration,
    },
    /// A peer was caught signing two different events at one (author, stream, seq).
    Equivocation(Box<FraudProof>),
    /// A postcard addressed to this peer, once, in order per author.
    Postcard(DeliveredPostcard),
    /// One of this peer's postcards moved on (see [`PostcardStatus`]).
    PostcardStatus {
        /// The postcard's event id.
        id: EventId,
        /// Its destination.
        to: AuthorKey,
        /// What happened.
        status: PostcardStatus,
    },
    /// The command `id` was carried out: its event (a post, a chau) is this peer's, stored
    /// and on its way (emitted after the event's own `Persist` and `Deliver`).
    Accepted {
        /// The command's id.
        id: u64,
        /// The event it made.
        event: EventId,
    },
    /// The command `id` was refused, and nothing of it was kept or sent.
    Refused {
        /// The command's id.
        id: u64,
        /// Why, for the application (lowercase, as the errors of `vecino_proto` read).
        reason: String,
    },
}

/// How a peer's membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// First heard of.
    Joined,
    /// Newer presence or status.
    Updated,
    /// Said chau.
    Left,
}

/// A durable-storage operation for the host.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // `Put` is by far the most frequent: no box per event
pub enum StoreOp {
    /// Store this event (its envelope bytes are what to keep).
    Put(vecino_proto::VerifiedEvent),
    /// Forget an event (a superseded latest-value event, or an expired log event).
    Delete {
        /// The event's author.
        author: AuthorKey,
        /// Its stream.
        stream: vecino_proto::pb::Stream,
        /// Its seq.
        seq: u64,
    },
}

/// One thing the host must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `frame` to neighbour `to`.
    Send {
        /// The neighbour.
        to: AuthorKey,
        /// `vecino.v1.Frame` bytes.
        frame: Bytes,
        /// What kind of traffic it is (for the host's accounting; the engine already paced it).
        class: Priority,
    },
    /// Hand an event to the application.
    Deliver(AppEvent),
    /// Call back with `timer` at `at`.
    Schedule {
        /// When.
        at: Time,
        /// What to feed back.
        timer: Timer,
    },
    /// Open a connection to `peer`.
    Dial {
        /// The peer.
        peer: AuthorKey,
        /// Its advertised addresses (multiaddrs), possibly empty.
        addrs: Vec<String>,
    },
    /// Close the connection to `peer`.
    Disconnect {
        /// The peer.
        peer: AuthorKey,
    },
    /// Apply a durable-storage operation.
    Persist(StoreOp),
    /// Transmit `frame` once on the shared medium, for every peer on it (only with
    /// `Config::shared_medium`). Unacknowledged: a lost broadcast is repaired by gap grafts
    /// and anti-entropy.
    Broadcast {
        /// `vecino.v1.Frame` bytes.
        frame: Bytes,
        /// What kind of traffic it is (for the host's accounting).
        class: Priority,
    },
}

/// A peer's protocol state machine, as a host drives it: the engine, or a baseline
/// disseminator in the simulator. What a simulator reads of a peer besides is
/// `sim::Observe` (feature `sim`).
pub trait Protocol {
    /// The peer this state machine runs as.
    fn peer(&self) -> AuthorKey;
    /// Feeds one input at `now`; the host must carry out the returned outputs in order.
    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output>;
}

/// A coherence alarm of this peer's barrio, raised or cleared ([`AppEvent::Coherence`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CoherenceAlarm {
    /// The barrio (its head's key prefix).
    pub barrio: u64,
    /// True when raised, false when cleared.
    pub raised: bool,
    /// The Mahalanobis D² of the last window against the baseline, and the threshold it
    /// passed (raised) or fell under (cleared).
    pub d2: f64,
    /// See `d2`.
    pub threshold: f64,
    /// The features that moved, by name ([`crate::BARRIO_HEALTH`]), with their standardised
    /// deviation, largest first (raised only).
    pub moved: Vec<(&'static str, f64)>,
    /// The barrio's mean health now and the baseline's mean, in feature order.
    pub health: Vec<f64>,
    /// See `health`.
    pub baseline: Vec<f64>,
}
