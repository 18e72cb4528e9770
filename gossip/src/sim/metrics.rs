//! What the simulator measures while it runs, and how it becomes a [`Report`].
//!
//! Per post it keeps the author, the publish time, the envelope size, and per peer the time of
//! first delivery (ms) and the hop count of first receipt: FIFO, backlogs and hops are all
//! derived from those arrays, so per-peer maps are not needed. Latency and stretch samples are
//! kept as `f32` for the percentiles.

use std::collections::{BTreeMap, HashMap, HashSet};

use vecino_proto::{Bytes, pb};

use crate::io::{LinkStatus, Priority};
use crate::sim::disseminators::PeerDirectory;
use crate::sim::liveness::{self, CrashWatch};
use crate::sim::postcards::{FAR_RTT_US, PostcardMetrics};
use crate::sim::report::{Backlog, ClassBytes, Drops, Report, Timeline, Transitions};
use crate::sim::scenario::{Fault, FaultKind, Scenario};
use crate::sim::wire::{announced_heads, for_each_event, frame_kind, kind_label};

const NEVER: u32 = u32::MAX;
const NO_HOP: u8 = u8::MAX;

#[derive(Debug)]
struct PostRec {
    author: u32,
    published_us: u64,
    envelope: u32,
    during_fault: bool,
    /// First delivery per peer, ms from the start (+1, so 0 is never used); `NEVER` if none.
    at_ms: Box<[u32]>,
    /// Hop count at first receipt per peer (author 0).
    hop: Box<[u8]>,
}

/// Per link fault: the detection measurements.
#[derive(Debug, Default, Clone)]
struct LinkFault {
    suspect_max_us: Option<u64>,
    suspect_missing: u32,
    reconnect_max_us: Option<u64>,
    reconnect_missing: u32,
    affected: u32,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    peers: usize,
    posts: Vec<PostRec>,
    by_key: HashMap<(u32, u64), u32>,
    latencies: Vec<f32>,
    latencies_up: Vec<f32>,
    stretches: Vec<f32>,
    /// Stretches of deliveries between far peers (RTT ≥ `FAR_RTT_US`).
    stretches_far: Vec<f32>,
    /// Postcards.
    postcards: PostcardMetrics,
    /// The timeline bucket of each of `stretches` (its delivery's).
    stretch_buckets: Vec<u16>,
    copies: u64,
    duplicates: u64,
    fifo_violations: u64,
    sent: ClassBytes,
    author_egress: f64,
    membership_rx: u64,
    /// `membership_rx` with the layers below each frame (`liveness::wire_overhead`).
    membership_wire_rx: u64,
    crash_watch: CrashWatch,
    /// Membership and control bytes sent per timeline bucket, and with the layers below.
    steady_sent: Vec<u64>,
    steady_wire: Vec<u64>,
    /// The share of `membership_rx` that announced posts (IHAVE heads of log streams).
    post_announcements_rx: u64,
    pub(crate) drops: Drops,
    bucket_us: u64,
    timeline: Timeline,
    status: HashMap<(u32, u32), LinkStatus>,
    transitions: Transitions,
    link_faults: Vec<LinkFault>,
    /// Pairs waiting to be reported suspected: fault index and its start.
    pending_suspect: HashMap<(u32, u32), (usize, u64)>,
    pending_reconnect: HashMap<(u32, u32), (usize, u64)>,
    heals: Vec<u64>,
    pub(crate) converge_after_heal: Vec<Option<f64>>,
    pub(crate) converge_from_start: Option<f64>,
    pub(crate) posts_skipped: u64,
    pub(crate) active_faults: usize,
    pub(crate) members_known: Option<f64>,
    pub(crate) membership_converged: Option<f64>,
    pub(crate) converge_quiet: Option<f64>,
    /// Frames and bytes sent, by frame kind.
    sent_by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// Envelope bytes of the latest-value events sent in membership-class frames, by stream
    /// (index = the stream's wire number, 1..=6).
    membership_by_stream: [u64; MEMBERSHIP_STREAMS],
    author_by_kind: BTreeMap<&'static str, f64>,
    /// Reliable frames carrying an author's own post, by (author, neighbour, link seq): a
    /// frame seen again is a retransmission.
    author_frames: HashSet<(u32, u32, u64)>,
}

/// The latest-value streams are numbered 1..=6 on the wire (`event.proto`); index 0 is unused.
const MEMBERSHIP_STREAMS: usize = 7;

/// What the accounting needs of a sent frame, read off it where it was sent (on the thread of
/// its shard), so that applying it to [`Metrics`] is cheap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentFrame {
    len: u64,
    label: &'static str,
    class: Priority,
    /// Post events by the sender itself, of `events` in the frame.
    own: usize,
    events: usize,
    link_seq: u64,
    /// A routed event's frame: `Some(true)` a receipt, `Some(false)` a postcard.
    routed: Option<bool>,
    /// Membership-class frames: envelope bytes by latest-value stream.
    by_stream: [u32; MEMBERSHIP_STREAMS],
}

impl SentFrame {
    pub(crate) fn read(from: u32, class: Priority, frame: &Bytes, dir: &PeerDirectory) -> Self {
        let (field, sync, link_seq) = frame_kind(frame);
        let label = kind_label(field, sync, class);
        let (mut own, mut events, mut routed) = (0, 0, None);
        let mut by_stream = [0u32; MEMBERSHIP_STREAMS];
        if class == Priority::Membership {
            for_each_event(frame, |h| {
                if let Some(b) = usize::try_from(h.stream).ok().and_then(|i| by_stream.get_mut(i)) {
                    *b = b.saturating_add(h.envelope.len() as u32);
                }
            });
        } else if class == Priority::Post {
            events = for_each_event(frame, |h| {
                if h.stream == pb::Stream::Post as i32 && dir.index(&h.author) == Some(from) {
                    own += 1;
                }
            });
        } else if class == Priority::Postcard {
            for_each_event(frame, |h| {
                if h.stream == pb::Stream::Postcard as i32 {
                    routed = Some(false);
                } else if h.stream == pb::Stream::PostcardReceipt as i32 {
                    routed = Some(true);
                }
            });
        }
        Self { len: frame.len() as u64, label, class, own, events, link_seq, routed, by_stream }
    }
}

/// What the accounting needs of an arrived frame, read off it where it arrived.
#[derive(Debug, Clone)]
pub(crate) struct ArrivedFrame {
    len: u64,
    /// `len` and the layers below it on the wire (estimated).
    wire: u64,
    class: Priority,
    /// The share of the frame's bytes that announces posts.
    post_announcements: u64,
    /// The posts it carries: (author, seq, envelope bytes).
    posts: Vec<(u32, u64, u32)>,
}

impl ArrivedFrame {
    pub(crate) fn read(class: Priority, frame: &Bytes, dir: &PeerDirectory) -> Self {
        let mut post_announcements = 0;
        if matches!(class, Priority::Membership | Priority::Control)
            && let Some((posts, all)) = announced_heads(frame).filter(|&(p, _)| p > 0)
        {
            post_announcements = (frame.len() * posts / all) as u64;
        }
        let mut posts = Vec::new();
        for_each_event(frame, |h| {
            if h.stream != pb::Stream::Post as i32 {
                return;
            }
            if let Some(author) = dir.index(&h.author) {
                posts.push((author, h.seq, h.envelope.len() as u32));
            }
        });
        let len = frame.len() as u64;
        let wire = len + liveness::wire_overhead(frame_kind(frame).0, len);
        Self { len, wire, class, post_announcements, posts }
    }
}

impl Metrics {
    pub(crate) fn new(peers: usize, bucket_us: u64, total_us: u64) -> Self {
        let buckets = total_us.div_ceil(bucket_us.max(1)) as usize + 1;
        Self {
            peers,
            posts: Vec::new(),
            by_key: HashMap::new(),
            latencies: Vec::new(),
            latencies_up: Vec::new(),
            stretches: Vec::new(),
            stretches_far: Vec::new(),
            postcards: PostcardMetrics::default(),
            stretch_buckets: Vec::new(),
            copies: 0,
            duplicates: 0,
            fifo_violations: 0,
            sent: ClassBytes::default(),
            author_egress: 0.0,
            membership_rx: 0,
            membership_wire_rx: 0,
            crash_watch: CrashWatch::new(peers),
            steady_sent: vec![0; buckets],
            steady_wire: vec![0; buckets],
            post_announcements_rx: 0,
            drops: Drops::default(),
            bucket_us: bucket_us.max(1),
            timeline: Timeline {
                bucket_s: bucket_us as f64 / 1e6,
                published: vec![0; buckets],
                delivered: vec![0; buckets],
                copies: vec![0; buckets],
                post_bytes: vec![0; buckets],
                other_bytes: vec![0; buckets],
                stretch_p50: Vec::new(),
                by_kind: BTreeMap::new(),
                faults: Vec::new(),
            },
            status: HashMap::new(),
            transitions: Transitions::default(),
            link_faults: Vec::new(),
            pending_suspect: HashMap::new(),
            pending_reconnect: HashMap::new(),
            heals: Vec::new(),
            converge_after_heal: Vec::new(),
            converge_from_start: None,
            posts_skipped: 0,
            active_faults: 0,
            members_known: None,
            membership_converged: None,
            converge_quiet: None,
            sent_by_kind: BTreeMap::new(),
            membership_by_stream: [0; MEMBERSHIP_STREAMS],
            author_by_kind: BTreeMap::new(),
            author_frames: HashSet::new(),
        }
    }

    fn bucket(&self, t_us: u64) -> usize {
        ((t_us / self.bucket_us) as usize).min(self.timeline.published.len() - 1)
    }

    /// The stretch p50 of each timeline bucket's deliveries (`None`: none delivered).
    fn stretch_by_bucket(&self) -> Vec<Option<f64>> {
        let mut by: Vec<Vec<f32>> = vec![Vec::new(); self.timeline.delivered.len()];
        for (&st, &b) in self.stretches.iter().zip(&self.stretch_buckets) {
            if let Some(v) = by.get_mut(usize::from(b)) {
                v.push(st);
            }
        }
        by.iter_mut().map(|v| percentiles(v).map(|p| p.0)).collect()
    }

    /// Every post's arrivals so far (for [`crate::sim::overlay::summarize`]).
    pub(crate) fn arrivals(&self) -> impl Iterator<Item = crate::sim::overlay::Arrivals<'_>> {
        self.posts.iter().map(|p| crate::sim::overlay::Arrivals {
            author: p.author,
            published_us: p.published_us,
            at_ms: &p.at_ms,
            hop: &p.hop,
        })
    }

    /// The author's own delivery: the post is published.
    pub(crate) fn published(&mut self, t_us: u64, author: u32, seq: u64) {
        let idx = self.posts.len() as u32;
        let mut hop = vec![NO_HOP; self.peers].into_boxed_slice();
        hop[author as usize] = 0;
        let mut at_ms = vec![NEVER; self.peers].into_boxed_slice();
        at_ms[author as usize] = ms(t_us);
        self.posts.push(PostRec {
            author,
            published_us: t_us,
            envelope: 0,
            during_fault: self.active_faults > 0,
            at_ms,
            hop,
        });
        self.by_key.insert((author, seq), idx);
        let b = self.bucket(t_us);
        self.timeline.published[b] += 1;
    }

    /// A peer's first (or repeated) delivery of another author's post.
    pub(crate) fn delivered(
        &mut self,
        t_us: u64,
        node: u32,
        author: u32,
        seq: u64,
        one_way_us: u64,
    ) {
        let Some(&idx) = self.by_key.get(&(author, seq)) else {
            return;
        };
        let fifo_ok = seq <= 1
            || self
                .by_key
                .get(&(author, seq - 1))
                .is_some_and(|&p| self.posts[p as usize].at_ms[node as usize] != NEVER);
        let post = &mut self.posts[idx as usize];
        if post.at_ms[node as usize] != NEVER {
            self.duplicates += 1;
            return;
        }
        post.at_ms[node as usize] = ms(t_us);
        if !fifo_ok {
            self.fifo_violations += 1;
        }
        let latency = t_us.saturating_sub(post.published_us) as f64 / 1e6;
        self.latencies.push(latency as f32);
        if !post.during_fault {
            self.latencies_up.push(latency as f32);
        }
        let b = self.bucket(t_us);
        if one_way_us > 0 {
            let stretch = (latency * 1e6 / one_way_us as f64) as f32;
            self.stretches.push(stretch);
            self.stretch_buckets.push(u16::try_from(b).unwrap_or(u16::MAX));
            if one_way_us * 2 >= FAR_RTT_US {
                self.stretches_far.push(stretch);
            }
        }
        self.timeline.delivered[b] += 1;
    }

    /// Whether command `id` is a postcard of the run's traffic.
    pub(crate) fn is_postcard(id: u64) -> bool {
        PostcardMetrics::is_postcard(id)
    }

    /// The run sends a postcard (see [`PostcardMetrics::planned`]); its command id.
    /// Postcard `cmd` was sent while a partition cut its pair, healing at `heal_us`.
    pub(crate) fn postcard_cut(&mut self, cmd: u64, heal_us: u64) {
        self.postcards.cut(cmd, heal_us);
    }

    pub(crate) fn postcard_planned(
        &mut self,
        t_us: u64,
        author: u32,
        dest: u32,
        direct_us: Option<u64>,
        oracle_us: Option<u64>,
    ) -> u64 {
        self.postcards.planned(t_us, author, dest, direct_us, oracle_us)
    }

    pub(crate) fn postcard_accepted(&mut self, cmd: u64, key: u64) {
        self.postcards.accepted(cmd, key);
    }

    pub(crate) fn postcard_delivered(
        &mut self,
        t_us: u64,
        node: u32,
        key: u64,
        hops: u32,
        detours: u32,
    ) {
        self.postcards.delivered(t_us, node, key, hops, detours);
    }

    pub(crate) fn postcard_receipt(&mut self, t_us: u64, key: u64) {
        self.postcards.receipt(t_us, key);
    }

    pub(crate) fn postcard_expired(&mut self, key: u64) {
        self.postcards.expired(key);
    }

    /// A frame handed to the network by `from` (read by [`SentFrame::read`]).
    pub(crate) fn sent(&mut self, t_us: u64, (from, to): (u32, u32), frame: &SentFrame) {
        let SentFrame { len, label, class, own, events, link_seq, routed, by_stream } = *frame;
        for (total, b) in self.membership_by_stream.iter_mut().zip(by_stream) {
            *total += u64::from(b);
        }
        if let Some(receipt) = routed {
            self.postcards.frame(receipt, len);
        }
        let kind = self.sent_by_kind.entry(label).or_default();
        kind.0 += 1;
        kind.1 += len;
        let b = self.bucket(t_us);
        let buckets = self.timeline.published.len();
        match self.timeline.by_kind.get_mut(label) {
            Some(v) => v[b] += len,
            None => {
                let mut v = vec![0; buckets];
                v[b] = len;
                self.timeline.by_kind.insert(label.to_owned(), v);
            }
        }
        match class {
            Priority::Control => self.sent.control += len,
            Priority::Postcard => self.sent.postcard += len,
            Priority::Post => self.sent.post += len,
            Priority::Membership => self.sent.membership += len,
        }
        if matches!(class, Priority::Membership | Priority::Control) {
            self.steady_sent[b] += len;
            self.steady_wire[b] += len + liveness::label_wire_overhead(label, len);
        }
        if class == Priority::Post {
            self.timeline.post_bytes[b] += len;
            if own > 0 {
                let share = len as f64 * own as f64 / events as f64;
                self.author_egress += share;
                let again = link_seq != 0 && !self.author_frames.insert((from, to, link_seq));
                let label = if again { "retransmit" } else { label };
                *self.author_by_kind.entry(label).or_default() += share;
            }
        } else {
            self.timeline.other_bytes[b] += len;
        }
    }

    /// A frame arrived at a live peer (read by [`ArrivedFrame::read`]).
    pub(crate) fn arrived(&mut self, from: u32, to: u32, frame: &ArrivedFrame) {
        if matches!(frame.class, Priority::Membership | Priority::Control) {
            self.membership_rx += frame.len;
            self.membership_wire_rx += frame.wire;
            self.post_announcements_rx += frame.post_announcements;
        }
        for &(author, seq, envelope) in &frame.posts {
            let Some(&idx) = self.by_key.get(&(author, seq)) else {
                continue;
            };
            self.copies += 1;
            let b = self.bucket(self.posts[idx as usize].published_us);
            self.timeline.copies[b] += 1;
            let post = &mut self.posts[idx as usize];
            if post.envelope == 0 {
                post.envelope = envelope;
            }
            let before = post.hop[from as usize];
            if post.hop[to as usize] == NO_HOP && before != NO_HOP {
                post.hop[to as usize] = before.saturating_add(1).min(NO_HOP - 1);
            }
        }
    }

    /// A peer reported a neighbour's link status.
    pub(crate) fn link(&mut self, t_us: u64, node: u32, peer: u32, status: LinkStatus) {
        match status {
            LinkStatus::Connected => self.transitions.connected += 1,
            LinkStatus::Suspected => self.transitions.suspected += 1,
            LinkStatus::Disconnected => self.transitions.disconnected += 1,
        }
        self.status.insert((node, peer), status);
        self.crash_watch.link(t_us, node, peer, status);
        if status != LinkStatus::Connected {
            if let Some((f, start)) = self.pending_suspect.remove(&(node, peer)) {
                let d = t_us.saturating_sub(start);
                let m = &mut self.link_faults[f].suspect_max_us;
                *m = Some(m.map_or(d, |x| x.max(d)));
            }
        } else if let Some((f, end)) = self.pending_reconnect.remove(&(node, peer)) {
            let d = t_us.saturating_sub(end);
            let m = &mut self.link_faults[f].reconnect_max_us;
            *m = Some(m.map_or(d, |x| x.max(d)));
        }
    }

    /// Fault `f` starts: connected links it cuts wait to be reported suspected.
    pub(crate) fn fault_started(&mut self, t_us: u64, f: usize, fault: &Fault) {
        self.active_faults += 1;
        if let FaultKind::Crash { peers } = &fault.kind {
            self.crash_watch.crashed(t_us, f, peers, &self.status);
        }
        if self.link_faults.len() <= f {
            self.link_faults.resize(f + 1, LinkFault::default());
        }
        // Heals still waiting for convergence will not get it before this fault.
        self.waiting_heals_give_up();
        let mut affected = 0;
        for (&(a, b), &s) in &self.status {
            if s == LinkStatus::Connected && fault.affects(a as usize, b as usize) {
                self.pending_suspect.insert((a, b), (f, t_us));
                affected += 1;
            }
        }
        self.link_faults[f].affected = affected;
    }

    fn waiting_heals_give_up(&mut self) {
        while self.converge_after_heal.len() < self.heals.len() {
            self.converge_after_heal.push(None);
        }
    }

    /// Fault `f` ends (a heal): links it cut and that are not connected wait to be reported
    /// connected.
    pub(crate) fn fault_ended(&mut self, t_us: u64, start_us: u64, f: usize, fault: &Fault) {
        self.active_faults = self.active_faults.saturating_sub(1);
        if let FaultKind::Crash { peers } = &fault.kind {
            self.crash_watch.restarted(f, peers);
        }
        self.timeline.faults.push((start_us as f64 / 1e6, t_us as f64 / 1e6));
        let missing = self.pending_suspect.iter().filter(|(_, (g, _))| *g == f).count() as u32;
        self.pending_suspect.retain(|_, (g, _)| *g != f);
        self.link_faults[f].suspect_missing = missing;
        for (&(a, b), &s) in &self.status {
            if s != LinkStatus::Connected && fault.affects(a as usize, b as usize) {
                self.pending_reconnect.insert((a, b), (f, t_us));
            }
        }
        self.heals.push(t_us);
    }

    /// Whether a heal is waiting for convergence (or the start is).
    pub(crate) fn waiting_for_convergence(&self, from_start: bool) -> bool {
        self.converge_after_heal.len() < self.heals.len()
            || (from_start && self.converge_from_start.is_none())
    }

    /// Whether any from-start membership measure is still open.
    pub(crate) fn waiting_for_membership(&self) -> bool {
        self.members_known.is_none() || self.membership_converged.is_none()
    }

    /// Every live peer knows every other now; `agree`: with equal membership digests.
    pub(crate) fn members(&mut self, t_us: u64, agree: bool) {
        let t = t_us as f64 / 1e6;
        self.members_known.get_or_insert(t);
        if agree {
            self.membership_converged.get_or_insert(t);
        }
    }

    /// All live peers hold the same, `quiet_us` after publishing and faults ended.
    pub(crate) fn converged_quiet(&mut self, since_quiet_us: u64) {
        self.converge_quiet.get_or_insert(since_quiet_us as f64 / 1e6);
    }

    /// All live peers agree now.
    pub(crate) fn converged(&mut self, t_us: u64) {
        if self.converge_from_start.is_none() {
            self.converge_from_start = Some(t_us as f64 / 1e6);
        }
        while self.converge_after_heal.len() < self.heals.len() {
            let heal = self.heals[self.converge_after_heal.len()];
            self.converge_after_heal.push(Some(t_us.saturating_sub(heal) as f64 / 1e6));
        }
    }

    /// Builds the report. `alive` = peers alive at the end; `link_rate` and `cut_rtt_us`
    /// give the backlog bound.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        mut self,
        scenario: &Scenario,
        name: &str,
        alive: &[bool],
        total_us: u64,
        net_medium_bytes: &[u64],
        max_queue_bytes: u64,
        events: u64,
        heal_cut_rtt_us: &[u64],
        counters: BTreeMap<String, u64>,
        overlay: Option<crate::sim::OverlaySummary>,
    ) -> Report {
        self.waiting_heals_give_up();
        for (_, (f, _)) in self.pending_reconnect.drain() {
            self.link_faults[f].reconnect_missing += 1;
        }
        let live = alive.iter().filter(|a| **a).count() as u64;
        let mut deliveries = 0u64;
        let mut expected = 0u64;
        let mut full = 0u64;
        let mut hop_sum = 0f64;
        let mut hop_max = 0u32;
        let mut env_sum = 0f64;
        for p in &self.posts {
            let receivers = live - u64::from(alive[p.author as usize]);
            expected += receivers;
            let mut got = 0;
            let mut last = (0u32, 0u8);
            for (i, &at) in p.at_ms.iter().enumerate() {
                if i as u32 != p.author && alive[i] && at != NEVER {
                    got += 1;
                    if at >= last.0 {
                        last = (at, p.hop[i]);
                    }
                }
            }
            deliveries += got;
            if got == receivers {
                full += 1;
            }
            if got > 0 && last.1 != NO_HOP {
                hop_sum += f64::from(last.1);
                hop_max = hop_max.max(u32::from(last.1));
            }
            env_sum += f64::from(p.envelope);
        }
        let posts = self.posts.len() as u64;
        let postsf = posts.max(1) as f64;
        let peers = scenario.peers as f64;
        let backlog = self
            .heals
            .iter()
            .zip(heal_cut_rtt_us)
            .map(|(&heal, &rtt)| self.backlog_at(heal, alive, scenario.link.rate_bps, rtt))
            .collect();
        let radios = net_medium_bytes.len();
        let per_radio = (scenario.link.scope == crate::sim::scenario::RateScope::SharedRadio
            && radios > 0)
            .then(|| net_medium_bytes.iter().sum::<u64>() as f64 / radios as f64 / postsf);
        let secs = total_us as f64 / 1e6;
        let (suspect, reconnect) = self
            .link_faults
            .iter()
            .map(|f| {
                let s = (f.affected > 0 && f.suspect_missing == 0)
                    .then_some(f.suspect_max_us)
                    .flatten()
                    .map(|us| us as f64 / 1e6);
                let r = (f.reconnect_missing == 0)
                    .then_some(f.reconnect_max_us)
                    .flatten()
                    .map(|us| us as f64 / 1e6);
                (s, r)
            })
            .unzip();
        let lat = percentiles(&mut self.latencies);
        let up = percentiles(&mut self.latencies_up);
        self.timeline.stretch_p50 = self.stretch_by_bucket();
        let st = percentiles(&mut self.stretches);
        let far = percentiles(&mut self.stretches_far);
        let postcards = self.postcards.report();
        Report {
            opinions: None,
            barrios: None,
            disseminator: name.to_string(),
            peers: scenario.peers,
            simulated_s: secs,
            posts_published: posts,
            posts_skipped: self.posts_skipped,
            deliveries,
            deliveries_expected: expected,
            delivery_ratio: if expected == 0 { 1.0 } else { deliveries as f64 / expected as f64 },
            posts_fully_delivered: full,
            latency_p50_s: lat.map(|p| p.0),
            latency_p99_s: lat.map(|p| p.1),
            latency_max_s: lat.map(|p| p.2),
            latency_up_p50_s: up.map(|p| p.0),
            stretch_p50: st.map(|p| p.0),
            stretch_p99: st.map(|p| p.1),
            stretch_p99_far: far.map(|p| p.1),
            postcards,
            copies_received: self.copies,
            copies_per_delivery: self.copies as f64 / deliveries.max(1) as f64,
            last_delivery_hop_mean: hop_sum / postsf,
            last_delivery_hop_max: hop_max,
            envelope_bytes_mean: env_sum / postsf,
            bytes_sent: self.sent,
            bytes_sent_per_node_per_post: self.sent.total() as f64 / peers / postsf,
            bytes_sent_per_radio_per_post: per_radio,
            author_egress_bytes_per_post: self.author_egress / postsf,
            membership_rx_bps_per_peer: self.membership_rx as f64 * 8.0 / peers / secs,
            membership_wire_rx_bps_per_peer: self.membership_wire_rx as f64 * 8.0 / peers / secs,
            steady_membership: liveness::steady(
                self.bucket_us,
                &self.steady_sent,
                &self.steady_wire,
                scenario,
            ),
            crash_detection: {
                let (fleet_wide, scope) = liveness::crash_scope(name);
                self.crash_watch.report(fleet_wide, scope)
            },
            post_announcements_rx_bps_per_peer: self.post_announcements_rx as f64 * 8.0
                / peers
                / secs,
            flat_flood_rx_bps_per_peer_computed: scenario
                .flat_flood
                .map(|f| f.per_peer_bps(scenario.peers)),
            fifo_violations: self.fifo_violations,
            duplicate_deliveries: self.duplicates,
            converge_from_start_s: self.converge_from_start,
            members_known_s: self.members_known,
            membership_converged_s: self.membership_converged,
            converge_quiet_s: self.converge_quiet,
            bytes_by_kind: self.sent_by_kind.iter().map(|(k, v)| ((*k).to_string(), v.1)).collect(),
            membership_bytes_by_stream: self
                .membership_by_stream
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b > 0)
                .filter_map(|(i, &b)| {
                    let stream = pb::Stream::try_from(i32::try_from(i).ok()?).ok()?;
                    Some((stream.name().to_string(), b))
                })
                .collect(),
            frames_by_kind: self
                .sent_by_kind
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.0))
                .collect(),
            author_egress_by_kind: self
                .author_by_kind
                .iter()
                .map(|(k, v)| ((*k).to_string(), v / postsf))
                .collect(),
            counters,
            overlay,
            converge_after_heal_s: self.converge_after_heal,
            backlog,
            suspect_delay_s: suspect,
            reconnect_delay_s: reconnect,
            link_transitions: self.transitions,
            drops: self.drops,
            max_queue_bytes,
            events,
            shards: 1,
            lookahead_us: None,
            peak_rss_bytes: None,
            wall_s: None,
            timeline: self.timeline,
        }
    }

    fn backlog_at(&self, heal_us: u64, alive: &[bool], rate: Option<u64>, rtt_us: u64) -> Backlog {
        let heal_ms = ms(heal_us);
        let mut posts = 0;
        let mut bytes = 0;
        let mut last = Some(heal_ms);
        for p in self.posts.iter().take_while(|p| p.published_us < heal_us) {
            let mut missing = 0u64;
            for (i, &at) in p.at_ms.iter().enumerate() {
                if i as u32 != p.author && alive[i] && (at == NEVER || at > heal_ms) {
                    missing += 1;
                    last = match (last, at) {
                        (_, NEVER) | (None, _) => None,
                        (Some(l), a) => Some(l.max(a)),
                    };
                }
            }
            if missing > 0 {
                posts += 1;
                bytes += missing * u64::from(p.envelope);
            }
        }
        Backlog {
            heal_s: heal_us as f64 / 1e6,
            posts,
            bytes,
            drained_s: last.map(|l| f64::from(l - heal_ms) / 1e3),
            bound_s: rate
                .filter(|r| *r > 0)
                .map(|r| 1.2 * bytes as f64 * 8.0 / r as f64 + 2.0 * rtt_us as f64 / 1e6),
        }
    }
}

/// ms from the start, +1 so that a delivery at time 0 is not confused with none.
fn ms(t_us: u64) -> u32 {
    u32::try_from(t_us / 1000 + 1).unwrap_or(NEVER - 1)
}

/// (p50, p99, max) of samples, sorted in place.
fn percentiles(v: &mut [f32]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f32::total_cmp);
    let at = |q: f64| {
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        f64::from(v[i])
    };
    Some((at(0.5), at(0.99), f64::from(v[v.len() - 1])))
}
