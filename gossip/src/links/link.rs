//! One neighbour link: RCM status, acknowledged delivery and paced queues, plus the slots the
//! machines keep per link (the probe's RTT and pongs, the Plumtree edges, the anti-entropy
//! digests), composed as quinn composes a path of an RTT estimator, a congestion controller
//! and a pacer.
//!
//! Status follows RCM (Lincoln Laboratory's Robust Collaborative Multicast): a link is
//! *connected* while something is heard from the neighbour in time, *suspected* once nothing
//! was heard for `max(suspect_after, 3 × RTT)`, and *disconnected* after `suspect_timeout` of
//! suspicion. Anything heard makes it connected again. While connected or suspected, every
//! frame that needs delivery is kept until the neighbour acknowledges it and retransmitted
//! after an RTT-scaled timeout (held, not retransmitted, while suspected); when the link
//! turns disconnected those buffers are released and anti-entropy catches the neighbour up
//! when it returns.
//!
//! Outgoing frames wait in four priority queues (control > postcards > posts > membership) and
//! leave through a token bucket at the link's rate, so a healing link bursts its backlog without
//! starving heartbeats and acknowledgements. A frame gets its link seq when it first leaves, so
//! seqs follow the order of sending and the neighbour's acknowledgement (a cumulative point and
//! a few runs above it) has gaps only where frames were lost. A kept frame lists the events it
//! carries: once the neighbour is known to hold them all (it sent or announced them), the frame
//! is dropped unsent, or not retransmitted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use vecino_proto::pb::Stream;
use vecino_proto::{AuthorKey, Bytes};

use crate::broadcast::tree::{LinkTree, TreeEdges};
use crate::io::{LinkStatus, Priority};
use crate::links::pacer::Pacer;
use crate::links::probe::Probe;
use crate::store::{EventKey, StreamKey};
use crate::sync::slot::LinkSync;

/// The least a check waits for an answer ([`Link::check`]): a tick and a queued pong.
const CHECK_MIN: Duration = Duration::from_millis(500);
use crate::time::Time;

/// Selective acknowledgements remembered above the cumulative point.
const MAX_ACK_SET: usize = 1024;
/// Ranges of selective acknowledgement sent in one ack at most.
const MAX_ACK_RANGES: usize = 64;
/// Retransmission timeout before any acknowledgement was timed.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Added to a routed frame's retransmission timeout (see [`Link::routed_rto`]): the
/// neighbour's processing and the host's queue.
const ROUTED_RTO_SLACK: Duration = Duration::from_millis(10);
/// Longest retransmission timeout after backoff.
const MAX_RTO: Duration = Duration::from_secs(60);

/// How long a routed frame waits for its acknowledgement: `base` ([`Link::routed_rto`]) plus,
/// at `rate_bps`, twice its own serialisation and that of a pacer's smallest burst (what the
/// neighbour may have handed its line ahead of the acknowledgement: on RCM's 56 kbit/s lines
/// a 540-B postcard takes 77 ms to leave and a burst 290 ms, and a timeout of the RTT alone
/// retransmitted one postcard in four), at most `cap`, doubled per retransmission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoutedTimeout {
    pub(crate) base: Duration,
    pub(crate) rate_bps: Option<u64>,
    pub(crate) cap: Duration,
}

impl RoutedTimeout {
    fn of(&self, len: usize, tries: u32) -> Duration {
        let burst = crate::links::pacer::MIN_BURST_BYTES as u64;
        let bytes = (len as u64).saturating_mul(2).saturating_add(burst);
        let serialise = self
            .rate_bps
            .filter(|r| *r > 0)
            .map_or(Duration::ZERO, |r| Duration::from_micros(bytes.saturating_mul(8_000_000) / r));
        crate::time::backoff((self.base + serialise).min(self.cap), tries, MAX_RTO)
    }
}

/// What the engine says about a frame it queues.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    /// Kept until acknowledged (and numbered when it first leaves).
    pub(crate) reliable: bool,
    /// The frame carries only the newest latest-value event of this stream: an older such
    /// frame that has not left yet is dropped.
    pub(crate) supersedes: Option<StreamKey>,
    /// The events in it.
    pub(crate) carries: Vec<EventKey>,
    /// An eager push (not a repair).
    pub(crate) push: bool,
    /// The routed event whose custody the frame hands over (it travels alone): reported by
    /// [`Link::acked`] once the neighbour acknowledges the frame.
    pub(crate) custody: Option<EventKey>,
}

#[cfg(test)]
impl Meta {
    pub(crate) const UNRELIABLE: Meta =
        Meta { reliable: false, supersedes: None, carries: Vec::new(), push: false, custody: None };
    pub(crate) const RELIABLE: Meta =
        Meta { reliable: true, supersedes: None, carries: Vec::new(), push: false, custody: None };
}

/// A frame kept until acknowledged, by its local id (its order of queueing).
#[derive(Debug, Clone)]
struct Unacked {
    /// The frame's kind, encoded; the link seq and floor are put in front as it leaves.
    body: Bytes,
    class: Priority,
    /// Link seq, given when it first leaves (so seqs follow the order of sending, whatever
    /// the priorities and whatever was dropped unsent: the neighbour's acknowledgement sees
    /// gaps only where frames were lost).
    seq: Option<u64>,
    /// Events the frame carries that the neighbour is not known to hold yet; when the last
    /// of them turns out to be there (the neighbour sent or announced it), the frame is
    /// dropped unsent (or not retransmitted).
    unknown: Vec<EventKey>,
    /// The latest-value stream whose newest event it alone carries (its entry in
    /// `Link::superseding` goes with it).
    supersedes: Option<StreamKey>,
    /// An eager push (not a repair): after a prune of its trees it becomes an announcement.
    push: bool,
    /// The routed event whose custody it hands over.
    custody: Option<EventKey>,
    /// Waiting in a queue (so a requeue must not queue it twice).
    queued: bool,
    /// Retransmissions so far (each doubles the timeout; only first sends give RTT samples).
    tries: u32,
    /// When it last left the queue; `None` while queued.
    sent_at: Option<Time>,
}

/// What an acknowledgement did (see [`Link::acked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acked {
    /// The runs were well formed.
    pub(crate) well_formed: bool,
    /// Routed events whose custody the acknowledged frames handed over.
    pub(crate) custody: Vec<EventKey>,
}

/// State of the link to one neighbour.
#[derive(Debug)]
pub(crate) struct Link {
    status: LinkStatus,
    status_since: Time,
    /// When the link last came back from suspected or disconnected.
    healed_at: Option<Time>,
    transport_up: bool,
    /// The neighbour is on this peer's shared medium (`LinkInfo::shared_medium`, only with
    /// `Config::shared_medium`).
    on_medium: bool,
    last_heard: Time,
    last_sent: Time,
    /// Liveness class: a *fast* link is suspected after the engine's `suspect_after` of
    /// silence, a slow one after the slow class's longer floor (`crate::engine`, the tick);
    /// and since when the link is fast (its silence counts from then, so a link turning fast
    /// is not suspected for the quiet it was allowed while slow).
    fast: bool,
    fast_since: Time,
    /// When a reliable postcard or post frame last left on the link (first sends and
    /// retransmissions).
    last_urgent: Option<Time>,
    /// Another observer said the neighbour is down (`crate::opinions`): since then it was
    /// pinged, and unless something is heard within [`Link::check_wait`] the link turns
    /// suspected, whatever its liveness class allowed (one observer that notices a crash
    /// tells the others, which confirm it in a round trip instead of a slow beat).
    checking: Option<Time>,
    /// Heartbeats and RTT (the ping/pong exchange).
    pub(crate) probe: Probe,
    /// Plumtree: the tree edges on this link, recent prunes, announcements waiting.
    pub(crate) tree: LinkTree,
    /// Anti-entropy: digests and a version vector arriving in parts.
    pub(crate) sync: LinkSync,
    /// Smoothed time from sending a reliable frame to its acknowledgement (Jacobson/Karels),
    /// which includes queueing on the path, unlike the ping RTT.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Local id of the queued frame holding each (author, stream)'s latest-value event, so a
    /// newer one replaces it in the queue (bounded by `unacked`: an entry goes with its
    /// frame; kept for every stream ever sent, it was the largest map of a 1 000-peer run).
    superseding: BTreeMap<StreamKey, u64>,
    // Reliable delivery, sender side.
    /// The next link seq given to a frame as it first leaves.
    next_seq: u64,
    /// The next local id of a reliable frame.
    next_id: u64,
    /// Frames kept until acknowledged, by local id.
    unacked: BTreeMap<u64, Unacked>,
    /// No frame in `unacked` left before this (`None`: none has left since the last scan
    /// for retransmissions), so that a scan is skipped while none can be due.
    sent_floor: Option<Time>,
    /// Local id of each unacknowledged frame that has left, by link seq.
    by_seq: BTreeMap<u64, u64>,
    /// The unacknowledged frame (local id) carrying each event (bounded by `unacked`).
    carrying: BTreeMap<EventKey, u64>,
    /// Frames dropped unsent or not retransmitted because the neighbour held their events.
    cancelled: u64,
    /// Bytes in the queues.
    buffered_bytes: usize,
    /// Bytes of frames kept until acknowledged (queued or in flight).
    unacked_bytes: usize,
    /// Bytes of queued frames that need no acknowledgement.
    unreliable_bytes: usize,
    // Reliable delivery, receiver side.
    recv_cumulative: u64,
    recv_above: BTreeSet<u64>,
    /// The highest floor the neighbour sent in this session (its floors never go down
    /// within one: a lower one means it numbers from 1 again).
    recv_floor: u64,
    /// Reliable frames received and not yet acknowledged, and since when.
    ack_pending: u32,
    ack_pending_since: Option<Time>,
    // Pacing.
    /// Queued frames as (local id, body); id 0 for frames that need no acknowledgement.
    queues: [VecDeque<(u64, Bytes)>; 4],
    pacer: Pacer,
    /// Frames dropped because the link's buffer bound was reached.
    dropped: u64,
    /// The neighbour has shown it speaks the protocol: this peer dialled it (a member it
    /// chose), or a frame from it decoded. A link that is not is a stranger's, and holds its
    /// slot only briefly (see `crate::overlay`).
    proven: bool,
    /// When the link was made.
    opened: Time,
}

impl Link {
    /// A new link at `now`, paced at `rate_bps` if set, with these Plumtree edges.
    pub(crate) fn new(now: Time, rate_bps: Option<u64>, edges: TreeEdges) -> Self {
        Self {
            status: LinkStatus::Connected,
            status_since: now,
            healed_at: None,
            transport_up: true,
            on_medium: false,
            last_heard: now,
            last_sent: now,
            fast: true,
            fast_since: now,
            last_urgent: None,
            checking: None,
            probe: Probe::default(),
            tree: LinkTree::new(edges),
            sync: LinkSync::new(now),
            srtt: None,
            rttvar: Duration::ZERO,
            superseding: BTreeMap::new(),
            next_seq: 1,
            next_id: 1,
            unacked: BTreeMap::new(),
            sent_floor: None,
            by_seq: BTreeMap::new(),
            carrying: BTreeMap::new(),
            cancelled: 0,
            buffered_bytes: 0,
            unacked_bytes: 0,
            unreliable_bytes: 0,
            recv_cumulative: 0,
            recv_floor: 0,
            recv_above: BTreeSet::new(),
            ack_pending: 0,
            ack_pending_since: None,
            queues: Default::default(),
            pacer: Pacer::new(rate_bps, now),
            dropped: 0,
            proven: false,
            opened: now,
        }
    }

    /// Whether the neighbour has shown it speaks the protocol (see the field).
    pub(crate) fn proven(&self) -> bool {
        self.proven
    }

    /// The neighbour has shown it speaks the protocol.
    pub(crate) fn prove(&mut self) {
        self.proven = true;
    }

    /// When the link was made.
    pub(crate) fn opened(&self) -> Time {
        self.opened
    }

    /// RCM status.
    pub(crate) fn status(&self) -> LinkStatus {
        self.status
    }

    /// Connected (heard from in time).
    pub(crate) fn connected(&self) -> bool {
        self.status == LinkStatus::Connected
    }

    /// Since when the status holds.
    pub(crate) fn status_since(&self) -> Time {
        self.status_since
    }

    /// When the link last came back from suspected or disconnected.
    pub(crate) fn healed_at(&self) -> Option<Time> {
        self.healed_at
    }

    /// Whether the host's transport connection is up.
    pub(crate) fn transport_up(&self) -> bool {
        self.transport_up
    }

    /// Whether the neighbour is on this peer's shared medium.
    pub(crate) fn on_medium(&self) -> bool {
        self.on_medium
    }

    /// Marks whether the neighbour is on this peer's shared medium.
    pub(crate) fn set_on_medium(&mut self, on: bool) {
        self.on_medium = on;
    }

    /// The transport connection closed (the status is the caller's to change).
    pub(crate) fn transport_closed(&mut self) {
        self.transport_up = false;
    }

    /// A new transport session at `now`, at `rate_bps`: the neighbour may have restarted and
    /// numbers its frames from 1 again.
    pub(crate) fn transport_opened(&mut self, rate_bps: Option<u64>, now: Time) {
        self.transport_up = true;
        self.reset_receiver();
        self.set_rate(rate_bps, now);
    }

    /// When a frame last left for the neighbour.
    pub(crate) fn last_sent(&self) -> Time {
        self.last_sent
    }

    /// Frames dropped for the buffer bound, and frames cancelled because the neighbour held
    /// their events.
    pub(crate) fn drops(&self) -> (u64, u64) {
        (self.dropped, self.cancelled)
    }

    pub(crate) fn set_rate(&mut self, rate_bps: Option<u64>, now: Time) {
        self.pacer.set_rate(rate_bps, now);
    }

    /// The rate this link is paced at alone, if any.
    pub(crate) fn rate_bps(&self) -> Option<u64> {
        self.pacer.rate_bps()
    }

    /// Median of the recent RTT samples (the probe's).
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.probe.rtt()
    }

    /// Silence after which the link is suspected.
    pub(crate) fn suspect_after(&self, floor: Duration) -> Duration {
        self.rtt().map_or(floor, |r| floor.max(r * 3))
    }

    /// When something was last heard from the neighbour.
    pub(crate) fn last_heard(&self) -> Time {
        self.last_heard
    }

    /// Whether the link is in the fast liveness class.
    pub(crate) fn fast(&self) -> bool {
        self.fast
    }

    /// Puts the link in the fast or the slow liveness class at `now`.
    pub(crate) fn set_fast(&mut self, fast: bool, now: Time) {
        if fast && !self.fast {
            self.fast_since = now;
        }
        self.fast = fast;
    }

    /// Silence that counts toward suspicion: since the last frame heard, and for a fast link
    /// at most since it turned fast.
    pub(crate) fn silence(&self, now: Time) -> Duration {
        let from = if self.fast { self.last_heard.max(self.fast_since) } else { self.last_heard };
        now.saturating_since(from)
    }

    /// Whether the link carries traffic that needs delivery: reliable frames have left and
    /// wait for their acknowledgement (due soon, so the link's silence says more than an idle
    /// one's), or a postcard or post frame left within `recently` (the machines route over
    /// it, and a cut must be noticed before they hand it more; membership is no such hurry,
    /// and a fleet's newspapers would otherwise keep every link fast).
    pub(crate) fn carrying(&self, now: Time, recently: Duration) -> bool {
        !self.by_seq.is_empty()
            || self.last_urgent.is_some_and(|t| now.saturating_since(t) < recently)
    }

    /// Starts checking a connected link at `now` (see [`Link::checking`]): true if it was
    /// not being checked already (the caller pings it then).
    pub(crate) fn check(&mut self, now: Time) -> bool {
        if self.status != LinkStatus::Connected || self.checking.is_some() {
            return false;
        }
        self.checking = Some(now);
        true
    }

    /// How long a check waits for the neighbour to answer: three RTTs, at least
    /// [`CHECK_MIN`].
    fn check_wait(&self) -> Duration {
        self.rtt().map_or(CHECK_MIN * 2, |r| (r * 3).max(CHECK_MIN))
    }

    /// RCM on the tick: a connected link silent past [`Link::suspect_after`] (or unanswered
    /// past a check) turns suspected, a link suspected for `timeout` turns disconnected.
    /// Returns the new status if it changed.
    pub(crate) fn rcm_tick(
        &mut self,
        now: Time,
        suspect_floor: Duration,
        timeout: Duration,
    ) -> Option<LinkStatus> {
        let silent = self.silence(now);
        let unanswered = match self.checking {
            Some(at) if self.last_heard > at || self.status != LinkStatus::Connected => {
                self.checking = None;
                false
            }
            Some(at) => now.saturating_since(at) >= self.check_wait(),
            None => false,
        };
        let next = match self.status {
            LinkStatus::Connected if silent >= self.suspect_after(suspect_floor) || unanswered => {
                LinkStatus::Suspected
            }
            LinkStatus::Suspected if now.saturating_since(self.status_since) >= timeout => {
                LinkStatus::Disconnected
            }
            _ => return None,
        };
        self.set_status(next, now);
        Some(next)
    }

    /// The transport went down: a connected link turns suspected at once (true if it was
    /// connected).
    pub(crate) fn suspect(&mut self, now: Time) -> bool {
        if self.status != LinkStatus::Connected {
            return false;
        }
        self.set_status(LinkStatus::Suspected, now);
        true
    }

    /// Something arrived: returns the previous status if this changes it to connected.
    pub(crate) fn heard(&mut self, now: Time) -> Option<LinkStatus> {
        self.last_heard = now;
        if self.status == LinkStatus::Connected {
            return None;
        }
        let was = self.status;
        self.set_status(LinkStatus::Connected, now);
        self.healed_at = Some(now);
        // Frames queued while suspected go out now; those in flight when the silence began
        // are retransmitted by their timeout, not all at once (their acknowledgements may be
        // on the way: a congested radio is silent for seconds without losing anything).
        Some(was)
    }

    pub(crate) fn set_status(&mut self, status: LinkStatus, now: Time) {
        self.status = status;
        self.status_since = now;
        if status == LinkStatus::Disconnected {
            // RCM: past the suspect timeout, buffers are released; anti-entropy takes over.
            self.dropped += self.unacked.len() as u64;
            self.unacked.clear();
            self.by_seq.clear();
            self.carrying.clear();
            self.superseding.clear();
            self.unacked_bytes = 0;
            for q in &mut self.queues {
                q.retain(|(id, _)| *id == 0); // unreliable frames stay
            }
            self.unreliable_bytes = self.queues.iter().flatten().map(|(_, f)| f.len()).sum();
            self.buffered_bytes = self.queues.iter().flatten().map(|(_, f)| f.len()).sum();
            self.tree.on_disconnected();
        }
    }

    /// Queues a frame: `body` is the encoding of its kind (the link seq and floor are added
    /// as it leaves), `meta` what the engine knows of it. Past `max_bytes` kept, the oldest
    /// frames of the least urgent class are dropped.
    pub(crate) fn push(&mut self, body: Bytes, class: Priority, max_bytes: usize, meta: Meta) {
        let mut id = 0;
        if meta.reliable {
            id = self.next_id;
            self.next_id += 1;
            if let Some(key) = meta.supersedes {
                self.supersede(key, id);
            }
            self.unacked_bytes += body.len();
            for event in &meta.carries {
                self.carrying.insert(*event, id);
            }
            let unacked = Unacked {
                body: body.clone(),
                class,
                seq: None,
                unknown: meta.carries,
                supersedes: meta.supersedes,
                push: meta.push,
                custody: meta.custody,
                queued: true,
                tries: 0,
                sent_at: None,
            };
            self.unacked.insert(id, unacked);
        } else {
            self.unreliable_bytes += body.len();
        }
        self.buffered_bytes += body.len();
        self.queues[class as usize].push_back((id, body));
        while self.retained() > max_bytes && self.drop_oldest() {}
    }

    /// Bytes this link keeps: unacknowledged frames and queued unreliable ones. Bounded by
    /// `max_bytes` at every push.
    pub(crate) fn retained(&self) -> usize {
        self.unacked_bytes + self.unreliable_bytes
    }

    fn remove_unacked(&mut self, id: u64) -> Option<Unacked> {
        let u = self.unacked.remove(&id)?;
        self.forget(id, &u);
        Some(u)
    }

    /// Bookkeeping of a frame that left the unacknowledged set.
    fn forget(&mut self, id: u64, u: &Unacked) {
        self.unacked_bytes -= u.body.len();
        if let Some(seq) = u.seq {
            self.by_seq.remove(&seq);
        }
        for event in &u.unknown {
            if self.carrying.get(event) == Some(&id) {
                self.carrying.remove(event);
            }
        }
        if let Some(key) = u.supersedes
            && self.superseding.get(&key) == Some(&id)
        {
            self.superseding.remove(&key);
        }
    }

    /// True if a frame kept for the neighbour (queued, or sent and not acknowledged yet)
    /// carries event `id`: sending it again would only add a copy behind the first.
    pub(crate) fn carries(&self, id: &EventKey) -> bool {
        self.carrying.contains_key(id)
    }

    /// The neighbour holds event `id` (it sent or announced it): a frame still carrying it
    /// to the neighbour is dropped once nothing else in it is news there. True if one was.
    pub(crate) fn peer_has(&mut self, event: EventKey) -> bool {
        let Some(id) = self.carrying.remove(&event) else { return false };
        let Some(u) = self.unacked.get_mut(&id) else { return false };
        u.unknown.retain(|e| *e != event);
        if !u.unknown.is_empty() {
            return false;
        }
        self.remove_unacked(id);
        self.cancelled += 1;
        true
    }

    /// After a prune: eager pushes not sent yet whose events are all on trees now lazy on
    /// this link (`tree` maps an author to its tree) are dropped; their events are returned
    /// to be announced instead, as Plumtree does on a lazy link.
    pub(crate) fn unpush_lazy(
        &mut self,
        tree: impl Fn(&AuthorKey, Stream) -> u16,
    ) -> Vec<EventKey> {
        let lazy: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| {
                u.push
                    && u.tries == 0
                    && u.sent_at.is_none()
                    && !u.unknown.is_empty()
                    && u.unknown.iter().all(|((a, s), _)| !self.tree.edges.pushes(tree(a, *s), *s))
            })
            .map(|(id, _)| *id)
            .collect();
        let mut events = Vec::new();
        for id in lazy {
            if let Some(u) = self.remove_unacked(id) {
                self.cancelled += 1;
                events.extend(u.unknown);
            }
        }
        events
    }

    /// Drops the oldest reliable frame of the least urgent class; false if there is none.
    fn drop_oldest(&mut self) -> bool {
        for q in self.queues.iter_mut().rev() {
            if let Some(pos) = q.iter().position(|(id, _)| *id != 0) {
                let (id, f) = q.remove(pos).expect("position is in range");
                self.buffered_bytes -= f.len();
                self.remove_unacked(id);
                self.dropped += 1;
                return true;
            }
        }
        // Only unacknowledged frames in flight, or unreliable ones, are left.
        if let Some((&id, _)) = self.unacked.iter().next() {
            self.remove_unacked(id);
            self.dropped += 1;
            return true;
        }
        for q in self.queues.iter_mut().rev() {
            if let Some((id, f)) = q.pop_front() {
                self.buffered_bytes -= f.len();
                if id == 0 {
                    self.unreliable_bytes -= f.len();
                }
                self.dropped += 1;
                return true;
            }
        }
        false
    }

    /// Frame `id` carries the newest latest-value event of `key`: an older frame for the
    /// same key that has not left the queue yet is dropped (it would only be superseded on
    /// arrival). The dropped frame's queue entry is skipped when drained.
    fn supersede(&mut self, key: StreamKey, id: u64) {
        if let Some(old) = self.superseding.insert(key, id)
            && self.unacked.get(&old).is_some_and(|u| u.sent_at.is_none())
        {
            self.remove_unacked(old);
        }
    }

    /// Records a received reliable frame's seq; false if it was seen before.
    pub(crate) fn received_seq(&mut self, seq: u64, now: Time) -> bool {
        self.ack_pending += 1;
        self.ack_pending_since.get_or_insert(now);
        if seq <= self.recv_cumulative || self.recv_above.contains(&seq) {
            return false;
        }
        if seq == self.recv_cumulative + 1 {
            self.recv_cumulative = seq;
            while self.recv_above.remove(&(self.recv_cumulative + 1)) {
                self.recv_cumulative += 1;
            }
        } else {
            if self.recv_above.len() >= MAX_ACK_SET {
                self.recv_above.pop_first();
            }
            self.recv_above.insert(seq);
        }
        true
    }

    /// The lowest seq sent and still awaiting acknowledgement, or the next seq: what the
    /// neighbour may treat as delivered-or-abandoned below.
    pub(crate) fn floor(&self) -> u64 {
        self.by_seq.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// The neighbour says every seq below `floor` is delivered or abandoned. A floor below
    /// one it sent before (frames arrive in order) means it restarted and numbers its frames
    /// from 1 again over a connection this side still took for the old one (a crash behind
    /// a cut, a half-open connection): what was received is forgotten, or its new frames
    /// would be taken for retransmissions, acknowledged and dropped. True when so.
    pub(crate) fn advance_floor(&mut self, floor: u64) -> bool {
        let restarted = floor > 0 && floor < self.recv_floor;
        if restarted {
            self.reset_receiver();
        }
        self.recv_floor = self.recv_floor.max(floor);
        if floor <= self.recv_cumulative + 1 {
            return restarted;
        }
        self.recv_cumulative = floor - 1;
        self.recv_above = self.recv_above.split_off(&floor);
        while self.recv_above.remove(&(self.recv_cumulative + 1)) {
            self.recv_cumulative += 1;
        }
        restarted
    }

    /// Forgets which frame seqs were received (the neighbour's numbering restarts with a new
    /// transport session).
    pub(crate) fn reset_receiver(&mut self) {
        self.recv_cumulative = 0;
        self.recv_above.clear();
        self.recv_floor = 0;
    }

    /// True when an acknowledgement should go out: `batch` frames wait for one, or the oldest
    /// has waited `delay` (delayed acknowledgement, as TCP's).
    pub(crate) fn ack_due(&self, now: Time, batch: u32, delay: Duration) -> bool {
        self.ack_pending >= batch
            || self.ack_pending_since.is_some_and(|t| now.saturating_since(t) >= delay)
    }

    /// The acknowledgement to send: the cumulative point, and the runs of seqs held above it
    /// (the runs nearest the cumulative point, at most `MAX_ACK_RANGES`) as `(gap, extra)`
    /// pairs, each relative to the end of the previous run: see [`runs_to_ranges`].
    pub(crate) fn ack(&mut self) -> (u64, Bytes) {
        self.ack_pending = 0;
        self.ack_pending_since = None;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &s in &self.recv_above {
            let full = ranges.len() >= MAX_ACK_RANGES;
            match ranges.last_mut() {
                Some(last) if last.1 + 1 == s => last.1 = s,
                _ if full => break,
                _ => ranges.push((s, s)),
            }
        }
        let mut runs = Vec::with_capacity(ranges.len() * 2);
        let mut end = self.recv_cumulative;
        for (first, last) in ranges {
            prost::encoding::encode_varint(first - end - 1, &mut runs);
            prost::encoding::encode_varint(last - first, &mut runs);
            end = last;
        }
        (self.recv_cumulative, Bytes::from(runs))
    }

    /// Applies an acknowledgement from the neighbour (`runs` as [`Link::ack`] makes them)
    /// received at `now`, and times the frames it acknowledges that were sent only once (Karn's
    /// rule). Returns whether the runs were well formed (an odd count, or past the largest seq,
    /// is not; the cumulative part is applied regardless) and the routed events whose custody
    /// the acknowledged frames handed over.
    pub(crate) fn acked(&mut self, now: Time, cumulative: u64, runs: &[u8]) -> Acked {
        let ranges = runs_to_ranges(cumulative, runs);
        let mut seqs: Vec<u64> = self.by_seq.range(..=cumulative).map(|(s, _)| *s).collect();
        for &(lo, hi) in ranges.as_deref().unwrap_or_default() {
            if hi - lo <= MAX_ACK_SET as u64 {
                seqs.extend(self.by_seq.range(lo..=hi).map(|(s, _)| *s));
            }
        }
        let mut custody = Vec::new();
        for seq in seqs {
            let Some(&id) = self.by_seq.get(&seq) else { continue };
            let Some(u) = self.remove_unacked(id) else { continue };
            custody.extend(u.custody);
            if u.tries == 0
                && let Some(at) = u.sent_at
            {
                self.time_ack(now.saturating_since(at));
            }
        }
        Acked { well_formed: ranges.is_some(), custody }
    }

    fn time_ack(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// Retransmission timeout of a routed frame before backoff. The neighbour acknowledges
    /// routed frames at once, so their timeout follows the link's RTT rather than
    /// `rto_min` plus the delayed acknowledgement (≥ 600 ms, which on a 1 %-loss path of
    /// four 20-ms hops made one postcard in twenty arrive ten times later than its path):
    /// 1.5 × the ping RTT (the median of the last pings) plus [`ROUTED_RTO_SLACK`]; never
    /// above `rto` (the timeout of every other frame), and that alone before the link's RTT
    /// is known. Not timed by routed frames' own acknowledgements: a link carries one now and
    /// then (on planet, one per link every few minutes), and one whose acknowledgement was
    /// lost is timed by the next, delayed one — a sample of 300 ms that stayed, and left the
    /// next loss to the ≥ 600-ms timeout. A spurious retransmission costs one small frame.
    pub(crate) fn routed_rto(&self, rto: Duration) -> Duration {
        match self.rtt() {
            Some(rtt) => (rtt * 3 / 2 + ROUTED_RTO_SLACK).min(rto),
            None => rto,
        }
    }

    /// When the first routed frame in flight is due for retransmission (see
    /// [`RoutedTimeout`]).
    pub(crate) fn routed_deadline(&self, timeout: &RoutedTimeout) -> Option<Time> {
        self.unacked
            .values()
            .filter(|u| u.class == Priority::Postcard)
            .filter_map(|u| Some(u.sent_at? + timeout.of(u.body.len(), u.tries)))
            .min()
    }

    /// Re-queues the routed frames whose acknowledgement is overdue (only while connected),
    /// as [`Link::retransmit_due`] does for every frame on the tick.
    pub(crate) fn retransmit_routed_due(&mut self, now: Time, timeout: &RoutedTimeout) -> usize {
        let routed = |u: &Unacked| {
            (u.class == Priority::Postcard).then(|| timeout.of(u.body.len(), u.tries))
        };
        self.requeue_overdue(now, routed).0
    }

    /// Smoothed send-to-acknowledgement time (queueing included), if timed yet.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Retransmission timeout before backoff: srtt + 4 × rttvar, at least `min`.
    pub(crate) fn rto(&self, min: Duration) -> Duration {
        self.srtt.map_or(INITIAL_RTO, |s| s + self.rttvar * 4).max(min).min(MAX_RTO)
    }

    /// Re-queues frames whose acknowledgement is overdue (only while connected); each
    /// retransmission of a frame doubles its timeout.
    pub(crate) fn retransmit_due(&mut self, now: Time, rto: Duration) -> usize {
        // Every frame's timeout is at least min(rto, MAX_RTO): none is due before then.
        match self.sent_floor {
            None => return 0,
            Some(floor) if now.saturating_since(floor) < rto.min(MAX_RTO) => return 0,
            Some(_) => {}
        }
        if self.status != LinkStatus::Connected {
            return 0;
        }
        let every = |u: &Unacked| Some(crate::time::backoff(rto, u.tries, MAX_RTO));
        let (n, floor) = self.requeue_overdue(now, every);
        self.sent_floor = floor;
        n
    }

    /// While connected: marks the frames in flight whose `timeout` (backoff included; `None`:
    /// not this frame) has passed at `now` and re-queues them. Returns how many, and when the
    /// earliest of the others `timeout` covers left.
    fn requeue_overdue(
        &mut self,
        now: Time,
        timeout: impl Fn(&Unacked) -> Option<Duration>,
    ) -> (usize, Option<Time>) {
        if self.status != LinkStatus::Connected {
            return (0, None);
        }
        let mut n = 0;
        let mut floor = None;
        for u in self.unacked.values_mut() {
            let (Some(at), Some(timeout)) = (u.sent_at, timeout(u)) else { continue };
            if now.saturating_since(at) >= timeout {
                u.sent_at = None;
                u.tries += 1;
                n += 1;
            } else {
                floor = Some(floor.map_or(at, |f: Time| f.min(at)));
            }
        }
        if n > 0 {
            self.requeue_unsent();
        }
        (n, floor)
    }

    /// Puts every unacked frame that is neither queued nor in flight back in its queue.
    fn requeue_unsent(&mut self) {
        for (id, u) in &mut self.unacked {
            if u.sent_at.is_none() && !u.queued {
                u.queued = true;
                self.buffered_bytes += u.body.len();
                self.queues[u.class as usize].push_back((*id, u.body.clone()));
            }
        }
    }

    /// The next frame of `class` that may leave now, within this link's token bucket (the
    /// caller also checks its own, node-wide one). While the link is suspected or
    /// disconnected only control frames leave.
    pub(crate) fn pop(&mut self, class: Priority, now: Time) -> Option<Bytes> {
        if (class != Priority::Control && self.status != LinkStatus::Connected)
            || self.queues[class as usize].is_empty()
        {
            return None;
        }
        // Exact in integers: a bucket refilled only when something waits holds what one
        // refilled at every pump would.
        self.pacer.refill(now);
        loop {
            if !self.pacer.allows() {
                return None;
            }
            let (id, body) = self.queues[class as usize].pop_front()?;
            self.buffered_bytes -= body.len();
            let frame = if id == 0 {
                self.unreliable_bytes -= body.len();
                vecino_proto::frame_with_seq(0, self.floor(), &body)
            } else {
                let Some(u) = self.unacked.get_mut(&id) else {
                    continue; // acknowledged, superseded or cancelled while queued
                };
                u.sent_at = Some(now);
                if matches!(class, Priority::Postcard | Priority::Post) {
                    self.last_urgent = Some(now);
                }
                self.sent_floor = Some(self.sent_floor.map_or(now, |f| f.min(now)));
                u.queued = false;
                let seq = match u.seq {
                    Some(seq) => seq, // a retransmission keeps its seq
                    None => {
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        u.seq = Some(seq);
                        self.by_seq.insert(seq, id);
                        seq
                    }
                };
                vecino_proto::frame_with_seq(seq, self.floor(), &body)
            };
            let frame = Bytes::from(frame);
            self.pacer.spend(frame.len());
            self.last_sent = now;
            return Some(frame);
        }
    }

    /// Every frame that may leave now, most urgent class first (for a link paced alone).
    #[cfg(test)]
    pub(crate) fn drain(&mut self, now: Time, out: &mut Vec<(Bytes, Priority)>) {
        for class in Priority::ALL {
            while let Some(f) = self.pop(class, now) {
                out.push((f, class));
            }
        }
    }

    /// True when frames wait in the queues.
    #[cfg(test)]
    pub(crate) fn backlog(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// When frames wait that may leave once this link's bucket allows: how long that is;
    /// `None` when nothing waits that could leave (empty queues, or only data on a link that
    /// is not connected).
    pub(crate) fn ready_in(&self, now: Time) -> Option<Duration> {
        let control = !self.queues[Priority::Control as usize].is_empty();
        let any = self.queues.iter().any(|q| !q.is_empty());
        let waiting = if self.status == LinkStatus::Connected { any } else { control };
        waiting.then(|| self.pacer.wait(now))
    }

    /// Bytes waiting or unacknowledged on this link.
    pub(crate) fn buffered(&self) -> (usize, usize) {
        (self.buffered_bytes, self.unacked.len())
    }
}

/// Inclusive `[first, last]` seq ranges from an acknowledgement's `(gap, extra)` runs above
/// `cumulative` (varints one after the other); `None` if they are malformed (a bad varint,
/// an odd count, or past `u64::MAX`).
pub(crate) fn runs_to_ranges(cumulative: u64, mut runs: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut ranges = Vec::new();
    let mut end = cumulative;
    while !runs.is_empty() {
        let gap = prost::encoding::decode_varint(&mut runs).ok()?;
        let extra = prost::encoding::decode_varint(&mut runs).ok()?;
        let first = end.checked_add(1)?.checked_add(gap)?;
        let last = first.checked_add(extra)?;
        ranges.push((first, last));
        end = last;
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    fn id(author: u8, seq: u64) -> EventKey {
        ((AuthorKey([author; 32]), vecino_proto::pb::Stream::Post), seq)
    }

    #[test]
    fn acked_frames_leave_and_overdue_ones_return() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        for _ in 0..3 {
            l.push(f(10), Priority::Post, 1 << 20, Meta::RELIABLE);
        }
        let mut out = Vec::new();
        l.drain(Time(1), &mut out);
        assert_eq!(out.len(), 3);
        assert!(l.acked(Time(2), 1, &[1, 0]).well_formed);
        assert_eq!(l.buffered().1, 1);
        assert_eq!(l.retransmit_due(Time(1_000_000), Duration::from_millis(300)), 1);
        // Backed off: the next retransmission of that frame waits twice as long.
        let mut out = Vec::new();
        l.drain(Time(1_000_001), &mut out);
        assert_eq!(l.retransmit_due(Time(1_400_000), Duration::from_millis(300)), 0);
        assert_eq!(l.retransmit_due(Time(1_700_000), Duration::from_millis(300)), 1);
        out.clear();
        l.drain(Time(1_700_001), &mut out);
        assert_eq!(out.len(), 1);
    }

    /// A slow link is suspected only past its longer floor; a link turning fast counts its
    /// silence from then, not from the quiet it was allowed while slow.
    #[test]
    fn liveness_classes_set_the_silence_before_suspicion() {
        let s = |x: u64| Time(x * 1_000_000);
        let (fast, slow, timeout) =
            (Duration::from_millis(2_500), Duration::from_millis(12_500), Duration::from_secs(60));
        let mut l = Link::new(s(0), None, TreeEdges::all_eager());
        l.set_fast(false, s(0));
        assert_eq!(l.rcm_tick(s(10), slow, timeout), None, "slow: 10 s of quiet is allowed");
        l.set_fast(true, s(10));
        assert_eq!(l.rcm_tick(s(11), fast, timeout), None, "just turned fast");
        assert_eq!(l.rcm_tick(s(13), fast, timeout), Some(LinkStatus::Suspected));
        let mut l = Link::new(s(0), None, TreeEdges::all_eager());
        l.set_fast(false, s(0));
        assert_eq!(l.rcm_tick(s(13), slow, timeout), Some(LinkStatus::Suspected));
        assert!(!l.carrying(s(13), Duration::from_secs(10)));
    }

    #[test]
    fn suspected_links_hold_data_and_release_it_on_heal() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        l.set_status(LinkStatus::Suspected, Time(5));
        l.push(f(10), Priority::Post, 1 << 20, Meta::RELIABLE);
        l.push(f(5), Priority::Control, 1 << 20, Meta::UNRELIABLE);
        let mut out = Vec::new();
        l.drain(Time(6), &mut out);
        assert_eq!(out.len(), 1, "only control leaves while suspected");
        assert_eq!(l.heard(Time(7)), Some(LinkStatus::Suspected));
        out.clear();
        l.drain(Time(8), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Priority::Post);
    }

    /// A paced link says when its next frame may leave (the engine wakes up then instead of
    /// at its next tick), and nothing when no frame waits.
    #[test]
    fn a_paced_link_says_when_it_may_send_again() {
        let mut l = Link::new(Time(0), Some(8_000), TreeEdges::all_eager()); // 1000 B/s
        assert_eq!(l.ready_in(Time(0)), None);
        for _ in 0..2 {
            l.push(f(1_500), Priority::Post, 1 << 20, Meta::RELIABLE);
        }
        let mut out = Vec::new();
        l.drain(Time(0), &mut out); // an empty bucket
        assert!(out.is_empty());
        assert_eq!(l.ready_in(Time(0)), Some(Duration::from_millis(1))); // one byte's worth
        l.drain(Time(1_000), &mut out);
        assert_eq!(out.len(), 1, "a frame leaves once the balance is positive");
        // 1 504 B (with the 4-byte seq and floor) spent from a balance of 1 B: 1.504 s.
        assert_eq!(l.ready_in(Time(1_000)), Some(Duration::from_millis(1_504)));
        // Asked later, the wait is what is left of it.
        assert_eq!(l.ready_in(Time(501_000)), Some(Duration::from_millis(1_004)));
        l.drain(Time(1_000 + 1_503_000), &mut out);
        assert_eq!(out.len(), 1, "not before");
        l.drain(Time(1_000 + 1_504_000), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(l.ready_in(Time(1_000 + 1_504_000)), None);
    }

    #[test]
    fn pacing_respects_the_rate_and_priority() {
        let mut l = Link::new(Time(0), Some(8_000), TreeEdges::all_eager()); // 1000 B/s, bucket 2048 B
        for _ in 0..10 {
            l.push(f(500), Priority::Membership, 1 << 20, Meta::RELIABLE);
        }
        l.push(f(20), Priority::Control, 1 << 20, Meta::UNRELIABLE);
        let mut out = Vec::new();
        l.drain(Time(2_000_000), &mut out); // 2 s of tokens, capped at 2048
        assert_eq!(out[0].1, Priority::Control);
        let bytes: usize = out.iter().map(|(b, _)| b.len()).sum();
        assert!(bytes <= 2_048 + 500, "{bytes}");
        assert!(l.backlog());
    }

    #[test]
    fn buffers_are_bounded_and_released_on_disconnect() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        for _ in 0..100 {
            l.push(f(100), Priority::Post, 1_000, Meta::RELIABLE);
        }
        assert!(l.retained() <= 1_000);
        assert!(l.dropped >= 90);
        l.set_status(LinkStatus::Disconnected, Time(1));
        assert_eq!(l.buffered(), (0, 0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Whatever is pushed, acked, drained or suspended, the queued bytes stay within bound.
        #[test]
        fn queued_bytes_never_exceed_the_bound(
            ops in proptest::collection::vec((0u8..6, 1usize..400, 0u8..4), 1..300),
        ) {
            const MAX: usize = 2_000;
            let mut l = Link::new(Time(0), Some(64_000), TreeEdges::all_eager());
            let mut t = 0;
            for (op, size, class) in ops {
                t += 10_000;
                let class = [Priority::Control, Priority::Postcard, Priority::Post, Priority::Membership][class as usize];
                match op {
                    0 | 1 => {
                        let carries = vec![id(size as u8 % 3, size as u64 % 8)];
                        // Some frames carry a newspaper of one of two authors (superseding).
                        let supersedes = (size % 3 == 0).then_some((AuthorKey([size as u8 % 2; 32]), vecino_proto::pb::Stream::Newspaper));
                        let meta = Meta { reliable: op == 0, carries, push: size % 2 == 0, supersedes, custody: None };
                        l.push(f(size), class, MAX, meta);
                    }
                    4 if size % 2 == 0 => { l.peer_has(id(size as u8 % 3, size as u64 % 8)); }
                    2 => l.drain(Time(t), &mut Vec::new()),
                    3 => { l.acked(Time(t), size as u64 / 4, &[]); }
                    _ => l.set_status(LinkStatus::Suspected, Time(t)),
                }
                proptest::prop_assert!(l.retained() <= MAX, "{} bytes retained", l.retained());
                let unacked: usize = l.unacked.values().map(|u| u.body.len()).sum();
                proptest::prop_assert_eq!(unacked, l.unacked_bytes);
                // The index of carried events points only at frames still kept that carry them.
                for (event, id) in &l.carrying {
                    proptest::prop_assert!(l.unacked.get(id).is_some_and(|u| u.unknown.contains(event)));
                }
                // So does the index of superseding frames: it lives no longer than they do.
                for (key, id) in &l.superseding {
                    proptest::prop_assert!(l.unacked.get(id).is_some_and(|u| u.supersedes == Some(*key)));
                }
                // Seqs are given to frames that left, each once; the floor is the lowest.
                for (seq, id) in &l.by_seq {
                    proptest::prop_assert_eq!(l.unacked.get(id).and_then(|u| u.seq), Some(*seq));
                }
                proptest::prop_assert!(l.floor() <= l.next_seq);
            }
        }
    }

    #[test]
    fn newer_latest_value_replaces_the_queued_one() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        l.set_status(LinkStatus::Suspected, Time(1));
        let key = (vecino_proto::AuthorKey([1; 32]), vecino_proto::pb::Stream::Newspaper);
        for _ in 0..5 {
            let meta = Meta { supersedes: Some(key), ..Meta::RELIABLE };
            l.push(f(100), Priority::Membership, 1 << 20, meta);
        }
        assert_eq!(l.buffered().1, 1, "only the newest newspaper is kept");
        l.heard(Time(2));
        let mut out = Vec::new();
        l.drain(Time(3), &mut out);
        assert_eq!(out.len(), 1);
    }

    fn decoded(frame: &Bytes) -> (u64, u64) {
        let f = vecino_proto::decode_frame(frame.clone()).expect("a whole frame");
        (f.link_seq, f.link_floor)
    }

    fn ping() -> Bytes {
        let kind = Some(vecino_proto::pb::frame::Kind::Ping(vecino_proto::pb::Ping {
            nonce: 9,
            slow: false,
        }));
        let frame = vecino_proto::pb::Frame { link_seq: 0, link_floor: 0, kind };
        Bytes::from(vecino_proto::encode_frame(&frame))
    }

    /// Link seqs are given as frames leave: in sending order whatever the priorities, and
    /// none to a frame superseded or cancelled before it left; so the neighbour sees gaps
    /// only where frames were lost, and its acknowledgement stays one cumulative number.
    #[test]
    fn seqs_follow_the_order_of_sending() {
        let mut tx = Link::new(Time(0), None, TreeEdges::all_eager());
        let mut rx = Link::new(Time(0), None, TreeEdges::all_eager());
        let key = (vecino_proto::AuthorKey([1; 32]), vecino_proto::pb::Stream::Newspaper);
        tx.set_status(LinkStatus::Suspected, Time(1));
        for _ in 0..3 {
            let meta = Meta { supersedes: Some(key), ..Meta::RELIABLE };
            tx.push(ping(), Priority::Membership, 1 << 20, meta);
        }
        tx.push(
            ping(),
            Priority::Post,
            1 << 20,
            Meta { carries: vec![id(1, 1)], ..Meta::RELIABLE },
        );
        tx.push(ping(), Priority::Post, 1 << 20, Meta::RELIABLE);
        tx.push(ping(), Priority::Control, 1 << 20, Meta::UNRELIABLE);
        assert!(tx.peer_has(id(1, 1)));
        tx.heard(Time(2));
        let mut out = Vec::new();
        tx.drain(Time(3), &mut out);
        let sent: Vec<(u64, u64)> = out.iter().map(|(b, _)| decoded(b)).collect();
        // Control (no seq, the next seq as floor), the post, then the one newspaper left.
        assert_eq!(sent, vec![(0, 1), (1, 1), (2, 1)]);
        for (seq, _) in &sent[1..] {
            assert!(rx.received_seq(*seq, Time(4)));
        }
        assert_eq!(rx.ack(), (2, Bytes::new()));
        assert!(tx.acked(Time(5), 1, &[]).well_formed);
        assert_eq!(tx.floor(), 2);
        // A retransmission keeps its seq.
        assert_eq!(tx.retransmit_due(Time(10_000_000), Duration::from_millis(300)), 1);
        out.clear();
        tx.drain(Time(10_000_001), &mut out);
        assert_eq!(out.iter().map(|(b, _)| decoded(b)).collect::<Vec<_>>(), vec![(2, 2)]);
    }

    #[test]
    fn receiver_tracks_seqs_for_acks() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        assert!(l.received_seq(1, Time(0)));
        assert!(l.received_seq(3, Time(0)));
        assert!(!l.received_seq(1, Time(0)));
        assert!(l.received_seq(4, Time(0)));
        assert!(l.received_seq(7, Time(0)));
        // Runs [3, 4] and [7, 7]: gap 1 after 1, one more; gap 2 after 4, none more.
        assert_eq!(l.ack(), (1, Bytes::from_static(&[1, 1, 2, 0])));
        assert_eq!(runs_to_ranges(1, &[1, 1, 2, 0]), Some(vec![(3, 4), (7, 7)]));
        assert!(l.received_seq(2, Time(0)));
        assert_eq!(l.ack(), (4, Bytes::from_static(&[2, 0])));
        // Far seqs take longer varints.
        assert!(l.received_seq(1_000, Time(0)));
        let (cumulative, runs) = l.ack();
        assert_eq!(runs_to_ranges(cumulative, &runs), Some(vec![(7, 7), (1_000, 1_000)]));
    }

    #[test]
    fn a_neighbour_that_numbers_from_1_again_is_heard_as_restarted() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        for seq in 1..=5 {
            assert!(!l.advance_floor(seq), "floors that rise are one session");
            assert!(l.received_seq(seq, Time(0)));
        }
        assert!(!l.advance_floor(5), "the same floor again is the same session");
        assert!(!l.received_seq(5, Time(0)), "a retransmission");
        // It restarted behind the old connection: floor 1, seqs from 1 again.
        assert!(l.advance_floor(1));
        assert!(l.received_seq(1, Time(0)), "its first frame is new, not a retransmission");
        assert!(!l.advance_floor(1));
        assert!(l.received_seq(2, Time(0)));
        assert_eq!(l.ack().0, 2);
        // Unsequenced frames (floor 0) say nothing of the session.
        assert!(!l.advance_floor(0));
    }

    #[test]
    fn malformed_ack_runs_are_refused() {
        assert_eq!(runs_to_ranges(1, &[1]), None, "odd count");
        assert_eq!(runs_to_ranges(1, &[1, 0x80]), None, "a varint cut short");
        assert_eq!(runs_to_ranges(u64::MAX - 2, &[1, 5]), None, "past the largest seq");
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        l.push(f(10), Priority::Post, 1 << 20, Meta::RELIABLE);
        l.drain(Time(1), &mut Vec::new());
        assert!(!l.acked(Time(1), 1, &[7]).well_formed, "reported");
        assert_eq!(l.buffered().1, 0, "the cumulative part still applies");
    }

    /// A frame whose events the neighbour turns out to hold (it sent or announced them) is
    /// not sent, or not retransmitted; one with another event still news is.
    #[test]
    fn frames_the_neighbour_no_longer_needs_are_dropped() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        l.push(
            f(10),
            Priority::Post,
            1 << 20,
            Meta { carries: vec![id(1, 1)], push: true, ..Meta::RELIABLE },
        );
        l.push(
            f(20),
            Priority::Post,
            1 << 20,
            Meta { carries: vec![id(1, 2), id(2, 1)], push: true, ..Meta::RELIABLE },
        );
        assert!(l.peer_has(id(1, 1)));
        assert!(!l.peer_has(id(1, 2)), "id(2, 1) is still news");
        assert!(!l.peer_has(id(9, 9)), "not carried");
        let mut out = Vec::new();
        l.drain(Time(1), &mut out);
        // The 20-byte one, with its seq and floor in front.
        assert_eq!(out.iter().map(|(b, _)| b.len()).collect::<Vec<_>>(), vec![24]);
        // In flight, then held by the neighbour: no retransmission.
        assert!(l.peer_has(id(2, 1)));
        assert_eq!(l.retransmit_due(Time(10_000_000), Duration::from_millis(300)), 0);
        assert_eq!((l.cancelled, l.buffered().1, l.carrying.len()), (2, 0, 0));
    }

    /// After a prune, pushes of the pruned trees still waiting become announcements; repairs
    /// (not pushes) and pushes of other trees stay.
    #[test]
    fn a_prune_turns_waiting_pushes_into_announcements() {
        let tree = |a: &AuthorKey, _| u16::from(a.0[0]);
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        for (event, push) in [(id(1, 1), true), (id(1, 2), false), (id(2, 1), true)] {
            l.push(
                f(10),
                Priority::Post,
                1 << 20,
                Meta { carries: vec![event], push, ..Meta::RELIABLE },
            );
        }
        l.tree.edges.set(1, false);
        assert_eq!(l.unpush_lazy(tree), vec![id(1, 1)]);
        let mut out = Vec::new();
        l.drain(Time(1), &mut out);
        assert_eq!(out.len(), 2);
    }

    /// An acknowledgement reports the routed events whose custody the acknowledged frames
    /// handed over; a frame cancelled before it was acknowledged reports nothing.
    #[test]
    fn acknowledged_frames_report_the_custody_they_handed_over() {
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        for seq in 1..=2 {
            let meta =
                Meta { custody: Some(id(1, seq)), carries: vec![id(1, seq)], ..Meta::RELIABLE };
            l.push(f(10), Priority::Postcard, 1 << 20, meta);
        }
        let mut out = Vec::new();
        l.drain(Time(1), &mut out);
        assert!(l.peer_has(id(1, 2)), "cancelled");
        let acked = l.acked(Time(2), 2, &[]);
        assert_eq!(acked, Acked { well_formed: true, custody: vec![id(1, 1)] });
    }

    /// A routed frame's timeout follows the link's RTT (and its own acknowledgements, which
    /// come at once), not the delayed-acknowledgement timeout of the rest; it doubles per
    /// retransmission, only routed frames are retransmitted on it, and never above `rto`.
    #[test]
    fn routed_frames_are_retransmitted_on_an_rtt_timeout() {
        let ms = Duration::from_millis;
        let rto = ms(700);
        let mut l = Link::new(Time(0), None, TreeEdges::all_eager());
        assert_eq!(l.routed_rto(rto), rto, "no RTT known yet");
        for _ in 0..3 {
            l.probe.record_rtt(ms(40));
        }
        assert_eq!(l.routed_rto(rto), ms(70), "1.5 x 40 ms + 10 ms");
        assert_eq!(l.routed_rto(ms(50)), ms(50), "never above the other frames' timeout");
        // A frame's own serialisation counts twice, and a burst's once (100 B and 2 048 B
        // at 80 kbit/s: 10 and 204.8 ms), up to the cap.
        let slow = RoutedTimeout { base: ms(70), rate_bps: Some(80_000), cap: rto };
        let want = ms(70) + ms(20) + Duration::from_micros(204_800);
        assert_eq!((slow.of(100, 0), slow.of(100, 1), slow.of(10_000, 0)), (want, want * 2, rto));
        let t = RoutedTimeout { base: ms(70), rate_bps: None, cap: rto };
        l.push(f(10), Priority::Postcard, 1 << 20, Meta::RELIABLE);
        l.push(f(10), Priority::Post, 1 << 20, Meta::RELIABLE);
        let mut out = Vec::new();
        l.drain(Time(0), &mut out);
        assert_eq!(l.routed_deadline(&t), Some(Time(70_000)));
        assert_eq!(l.retransmit_routed_due(Time(69_000), &t), 0);
        assert_eq!(l.retransmit_routed_due(Time(70_000), &t), 1, "the routed frame only");
        out.clear();
        l.drain(Time(80_000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Priority::Postcard);
        assert_eq!(l.routed_deadline(&t), Some(Time(80_000 + 140_000)), "backed off");
        let _ = l.acked(Time(100_000), 2, &[]);
        assert_eq!(l.routed_deadline(&t), None, "acknowledged");
        // Its acknowledgement does not move the timeout (the pings' RTT does).
        l.push(f(10), Priority::Postcard, 1 << 20, Meta::RELIABLE);
        l.drain(Time(200_000), &mut out);
        let _ = l.acked(Time(560_000), 3, &[]);
        assert_eq!(l.routed_rto(rto), ms(70));
    }
}
