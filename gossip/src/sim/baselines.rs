//! The baseline disseminators vecino is measured against, in the same simulator.
//!
//! - `fullmesh`: the author signs the post and sends it to every other peer, one `Events`
//!   frame each (N − 1 copies: the shape of Matrix federation, the convoy study's fan-out tax).
//! - `push`: random push gossip ("infect and die"): the author, and every peer on first
//!   receipt, forwards the frame byte for byte to ⌈ln N⌉ + 2 random other peers.
//!
//! Both know every peer from the start (the run's [`PeerDirectory`]), assume a full-mesh
//! transport, deliver in per-author FIFO order through a reorder buffer, and **never
//! retransmit**: a frame lost to loss, a full queue, a crash or a partition is gone. That is
//! the point of the comparison. So that one lost post does not block its author's later posts
//! forever, a gap in the reorder buffer is skipped after [`GAP_TIMEOUT`] (each skip shows up as
//! a FIFO violation in the report, and the skipped posts as missing deliveries). They trust
//! the simulated transport and read event headers without checking signatures (the engine
//! verifies; the baselines would only add CPU time, not change a figure).

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_proto::{AuthorKey, Bytes, EventId, Hlc, Identity, pb};

use std::sync::Arc;
use std::time::Duration;

use crate::io::{
    AppEvent, Command, DeliveredPost, Input, Output, Priority, Protocol, Timer, TimerKind,
};
use crate::sim::disseminators::{NodeSpec, PeerDirectory};
use crate::sim::wire::{events_frame, for_each_event};
use crate::time::Time;

/// How long a baseline waits for a missing post before delivering past the gap.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a baseline spreads a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The author sends to all N − 1.
    FullMesh,
    /// Forward on first receipt to `fanout` random peers.
    Push {
        /// Peers per forward.
        fanout: usize,
    },
}

/// Received, not yet deliverable (a gap before it in its author's order).
#[derive(Debug)]
struct Pending {
    hlc: Hlc,
    event: Bytes,
}

/// One author's posts at this peer.
#[derive(Debug, Default)]
struct AuthorLog {
    /// Next seq to deliver (everything below was delivered).
    next: u64,
    pending: BTreeMap<u64, Pending>,
    /// A gap timer is scheduled.
    armed: bool,
}

/// A baseline peer.
#[derive(Debug)]
pub(crate) struct Baseline {
    identity: Identity,
    me: u32,
    mode: Mode,
    directory: Arc<PeerDirectory>,
    rng: ChaCha8Rng,
    hlc: Hlc,
    seq: u64,
    /// Per author index. Bounded by the number of peers; pending entries by the posts in
    /// flight (a baseline has no flow control, which is also part of the comparison).
    logs: HashMap<u32, AuthorLog>,
    digest: u64,
    out: Vec<Output>,
}

impl Baseline {
    pub(crate) fn new(spec: NodeSpec, mode: Mode) -> Self {
        Self {
            me: spec.index as u32,
            identity: spec.identity,
            mode,
            directory: spec.directory,
            rng: ChaCha8Rng::seed_from_u64(spec.rng_seed),
            hlc: Hlc::default(),
            seq: 0,
            logs: HashMap::new(),
            digest: 0,
            out: Vec::new(),
        }
    }

    fn post(&mut self, now: Time, topic: String, body: Bytes) {
        self.seq += 1;
        let hlc = self.hlc.tick(now.as_millis());
        let post =
            pb::Post { topic: topic.clone(), body: body.clone(), content_type: String::new() };
        let Ok(event) =
            self.identity.sign(pb::Stream::Post, self.seq, hlc, pb::event::Body::Post(post))
        else {
            self.seq -= 1;
            return;
        };
        self.digest = self.digest.wrapping_add(crate::sim::mix(key(self.me, self.seq)));
        self.logs.entry(self.me).or_default().next = self.seq + 1;
        self.out.push(Output::Deliver(AppEvent::Post(DeliveredPost {
            id: event.id(),
            author: self.identity.public(),
            seq: self.seq,
            hlc,
            topic,
            body,
            own: true,
        })));
        let frame = events_frame(event.envelope().clone());
        match self.mode {
            Mode::FullMesh => {
                for i in 0..self.directory.len() {
                    if i as u32 != self.me {
                        self.send(i, frame.clone());
                    }
                }
            }
            Mode::Push { fanout } => self.forward(fanout, None, &frame),
        }
    }

    fn send(&mut self, i: usize, frame: Bytes) {
        self.out.push(Output::Send { to: self.directory.key(i), frame, class: Priority::Post });
    }

    /// Sends `frame` to `fanout` distinct random peers other than this one and `except`.
    fn forward(&mut self, fanout: usize, except: Option<u32>, frame: &Bytes) {
        let n = self.directory.len() as u64;
        let others = n - 1 - u64::from(except.is_some());
        let mut chosen: Vec<u32> = Vec::with_capacity(fanout);
        while (chosen.len() as u64) < (fanout as u64).min(others) {
            let i = (self.rng.next_u64() % n) as u32;
            if i != self.me && Some(i) != except && !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        for i in chosen {
            self.send(i as usize, frame.clone());
        }
    }

    fn receive(&mut self, now: Time, from: AuthorKey, frame: &Bytes) {
        let mut fresh: Vec<(u32, u64, Pending)> = Vec::new();
        for_each_event(frame, |h| {
            if h.stream != pb::Stream::Post as i32 || h.seq == 0 {
                return;
            }
            let Some(author) = self.directory.index(&h.author) else {
                return;
            };
            let log = self
                .logs
                .entry(author)
                .or_insert_with(|| AuthorLog { next: 1, ..Default::default() });
            if h.seq < log.next
                || log.pending.contains_key(&h.seq)
                || fresh.iter().any(|(a, s, _)| *a == author && *s == h.seq)
            {
                return;
            }
            fresh.push((author, h.seq, Pending { hlc: h.hlc, event: h.event }));
        });
        if fresh.is_empty() {
            return;
        }
        if let Mode::Push { fanout } = self.mode {
            let except = self.directory.index(&from);
            self.forward(fanout, except, frame);
        }
        for (author, seq, p) in fresh {
            self.digest = self.digest.wrapping_add(crate::sim::mix(key(author, seq)));
            let log = self.logs.entry(author).or_default();
            if seq == log.next {
                // In order: deliver at once (no reorder-buffer node is allocated).
                log.next += 1;
                self.deliver(author, seq, &p);
            } else {
                log.pending.insert(seq, p);
            }
            self.deliver_ready(now, author);
        }
    }

    /// The gap timer of `author` fired: deliver past the first gap.
    fn skip_gap(&mut self, now: Time, author: u32) {
        let Some(log) = self.logs.get_mut(&author) else {
            return;
        };
        log.armed = false;
        if let Some((&first, _)) = log.pending.first_key_value() {
            log.next = first;
        }
        self.deliver_ready(now, author);
    }

    /// Delivers what the reorder buffer of `author` holds in order, and arms the gap timer
    /// if a gap remains.
    fn deliver_ready(&mut self, now: Time, author: u32) {
        let Some(log) = self.logs.get_mut(&author) else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(p) = log.pending.remove(&log.next) {
            ready.push((log.next, p));
            log.next += 1;
        }
        let arm = !log.pending.is_empty() && !log.armed;
        if log.pending.is_empty() {
            log.pending = BTreeMap::new(); // free the emptied node
        }
        log.armed |= arm;
        for (seq, p) in ready {
            self.deliver(author, seq, &p);
        }
        if arm {
            let key = self.directory.key(author as usize);
            self.out.push(Output::Schedule {
                at: now + GAP_TIMEOUT,
                timer: Timer(TimerKind::Peer(key, 0)),
            });
        }
    }

    fn deliver(&mut self, author: u32, seq: u64, p: &Pending) {
        let Ok(event) = pb::Event::decode(p.event.clone()) else {
            return;
        };
        let Some(pb::event::Body::Post(post)) = event.body else {
            return;
        };
        self.out.push(Output::Deliver(AppEvent::Post(DeliveredPost {
            id: EventId::of(&p.event),
            author: self.directory.key(author as usize),
            seq,
            hlc: p.hlc,
            topic: post.topic,
            body: post.body,
            own: false,
        })));
    }
}

fn key(author: u32, seq: u64) -> u64 {
    (u64::from(author) << 40) ^ seq
}

impl Protocol for Baseline {
    fn peer(&self) -> AuthorKey {
        self.identity.public()
    }

    fn handle(&mut self, now: Time, input: Input) -> std::vec::Drain<'_, Output> {
        if self.out.capacity() > 1024 {
            self.out = Vec::new(); // a full-mesh author's N - 1 sends: do not keep the space
        }
        match input {
            Input::Start => {}
            Input::Received { from, frame } => self.receive(now, from, &frame),
            Input::Command { cmd: Command::Post { topic, body }, .. } => {
                self.post(now, topic, body)
            }
            Input::Timer(Timer(TimerKind::Peer(author, _))) => {
                if let Some(a) = self.directory.index(&author) {
                    self.skip_gap(now, a);
                }
            }
            Input::LinkUp { .. }
            | Input::LinkDown { .. }
            | Input::Timer(_)
            | Input::Sent { .. }
            | Input::Broadcast { .. } => {}
            Input::Command { cmd: Command::Leave { .. } | Command::Postcard { .. }, .. } => {}
        }
        self.out.drain(..)
    }
}

impl crate::sim::Observe for Baseline {
    fn digest(&self) -> u64 {
        self.digest
    }

    fn known_peers(&self) -> usize {
        self.directory.len() - 1
    }
}
