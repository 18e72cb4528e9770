//! What the engine's integration tests share: a tiny in-test network, [`Net`] (fixed
//! latency, no bandwidth model, scheduled partitions; the full simulator, with bandwidth,
//! radios, loss and baselines, is the `sim` feature), and helpers that drive one engine by hand
//! and read the frames it sends. `Net::new` prints its seed; a test that drives one engine
//! prints its own.
//!
//! Each test file is a crate of its own and uses only part of this module, so dead code is
//! allowed here rather than in every file.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_gossip::{
    AppEvent, Command, Config, Engine, Input, LinkInfo, LinkStatus, MemoryStore, Output, Persist,
    Protocol, Time,
};
use vecino_proto::{AuthorKey, Bytes, Identity, VerifiedEvent};

pub(crate) const START: Time = Time(1_763_702_400_000_000);
pub(crate) const ONE_WAY: Duration = Duration::from_millis(20);

/// An input on its way to a node.
pub(crate) enum Ev {
    Input(usize, Input),
}

/// Engines (node `i` has identity `i` of the seed) joined by links of one-way latency
/// [`ONE_WAY`], run in time order; it keeps what each node delivered and stored and every
/// link status it reported.
pub(crate) struct Net {
    seed: u64,
    pub(crate) now: Time,
    pub(crate) engines: Vec<Option<Engine<ChaCha8Rng>>>,
    pub(crate) ids: Vec<AuthorKey>,
    index: BTreeMap<AuthorKey, usize>,
    queue: BinaryHeap<Reverse<(Time, u64, usize)>>,
    pending: BTreeMap<u64, Ev>,
    counter: u64,
    /// Pairs that cannot talk (both directions), until `heal`.
    cut: BTreeSet<(usize, usize)>,
    /// Pairs that never talk (a topology: no link between them, ever).
    never: BTreeSet<(usize, usize)>,
    pub(crate) delivered: Vec<Vec<(AuthorKey, u64)>>,
    pub(crate) links: Vec<(Time, usize, AuthorKey, LinkStatus)>,
    /// Every other event each node handed its application (postcards, their statuses,
    /// command answers), with when.
    pub(crate) app: Vec<Vec<(Time, AppEvent)>>,
    /// The id of the next command fed.
    next_command: u64,
    stored: Vec<MemoryStore>,
    config: Config,
}

impl Net {
    pub(crate) fn new(n: usize, seed: u64, config: Config) -> Self {
        eprintln!("seed {seed}");
        let mut net = Net {
            seed,
            now: START,
            engines: Vec::new(),
            ids: Vec::new(),
            index: BTreeMap::new(),
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            counter: 0,
            cut: BTreeSet::new(),
            never: BTreeSet::new(),
            delivered: vec![Vec::new(); n],
            links: Vec::new(),
            app: vec![Vec::new(); n],
            next_command: 1,
            stored: vec![MemoryStore::default(); n],
            config,
        };
        for i in 0..n {
            let id = identity(seed, i);
            net.ids.push(id.public());
            net.index.insert(id.public(), i);
            net.engines.push(None);
            net.start(i);
        }
        net
    }

    pub(crate) fn start(&mut self, i: usize) {
        let stored: Vec<VerifiedEvent> = self.stored[i].events();
        let rng = ChaCha8Rng::seed_from_u64(self.seed ^ (i as u64) << 32 ^ self.now.0);
        self.engines[i] =
            Some(Engine::new(identity(self.seed, i), self.config.clone(), rng, self.now, stored));
        self.feed(i, Input::Start);
    }

    pub(crate) fn push(&mut self, at: Time, node: usize, ev: Ev) {
        self.counter += 1;
        self.pending.insert(self.counter, ev);
        self.queue.push(Reverse((at, self.counter, node)));
    }

    pub(crate) fn connect(&mut self, a: usize, b: usize) {
        let at = self.now + ONE_WAY * 2;
        let info = LinkInfo::default();
        self.push(at, a, Ev::Input(a, Input::LinkUp { peer: self.ids[b], info: info.clone() }));
        self.push(at, b, Ev::Input(b, Input::LinkUp { peer: self.ids[a], info }));
    }

    fn blocked(&self, a: usize, b: usize) -> bool {
        let pair = (a.min(b), a.max(b));
        self.cut.contains(&pair) || self.never.contains(&pair)
    }

    /// Nodes `a` and `b` never link (their dials fail, nothing passes between them).
    pub(crate) fn never_link(&mut self, a: usize, b: usize) {
        self.never.insert((a.min(b), a.max(b)));
    }

    pub(crate) fn feed(&mut self, i: usize, input: Input) {
        let Some(engine) = self.engines[i].as_mut() else { return };
        let outs: Vec<Output> = engine.handle(self.now, input).collect();
        for o in outs {
            match o {
                Output::Send { to, frame, .. } => {
                    let j = self.index[&to];
                    if !self.blocked(i, j) {
                        let from = self.ids[i];
                        self.push(
                            self.now + ONE_WAY,
                            j,
                            Ev::Input(j, Input::Received { from, frame }),
                        );
                    }
                }
                Output::Schedule { at, timer } => {
                    self.push(at, i, Ev::Input(i, Input::Timer(timer)))
                }
                Output::Dial { peer, .. } => {
                    let j = self.index[&peer];
                    if !self.blocked(i, j) && self.engines[j].is_some() {
                        self.connect(i, j);
                    }
                }
                Output::Disconnect { peer } => {
                    let j = self.index[&peer];
                    self.push(self.now, i, Ev::Input(i, Input::LinkDown { peer }));
                    self.push(
                        self.now + ONE_WAY,
                        j,
                        Ev::Input(j, Input::LinkDown { peer: self.ids[i] }),
                    );
                }
                Output::Deliver(AppEvent::Post(p)) => self.delivered[i].push((p.author, p.seq)),
                Output::Deliver(AppEvent::Link { peer, status }) => {
                    self.links.push((self.now, i, peer, status));
                }
                Output::Deliver(ev) => self.app[i].push((self.now, ev)),
                Output::Persist(op) => self.stored[i].apply(&op),
                Output::Broadcast { .. } => panic!("a broadcast without a shared medium"),
            }
        }
    }

    fn run_until(&mut self, until: Time) {
        while let Some(Reverse((at, id, _))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let Some(Ev::Input(i, input)) = self.pending.remove(&id) else { continue };
            self.feed(i, input);
        }
        self.now = until;
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub(crate) fn post(&mut self, i: usize, text: &str) {
        let cmd = Command::Post { topic: "chat".into(), body: Bytes::from(text.to_owned()) };
        self.feed(i, Input::Command { id: 0, cmd });
    }

    /// Feeds `cmd` to node `i`; returns its command id.
    pub(crate) fn command(&mut self, i: usize, cmd: Command) -> u64 {
        let id = self.next_command;
        self.next_command += 1;
        self.feed(i, Input::Command { id, cmd });
        id
    }

    /// Node `i` crashes: it loses everything but what it persisted; inputs on their way to it
    /// are lost.
    pub(crate) fn crash(&mut self, i: usize) {
        self.engines[i] = None;
    }

    pub(crate) fn engine(&self, i: usize) -> &Engine<ChaCha8Rng> {
        self.engines[i].as_ref().expect("running")
    }

    pub(crate) fn digests(&self) -> BTreeSet<u64> {
        self.engines.iter().flatten().map(Engine::digest).collect()
    }

    pub(crate) fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x.min(y), x.max(y)));
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Every node delivered every post of every author exactly once, in order.
    pub(crate) fn assert_all_delivered(&self, posts: &BTreeMap<AuthorKey, u64>) {
        for (i, got) in self.delivered.iter().enumerate() {
            if self.engines[i].is_none() {
                continue;
            }
            let mut per_author: BTreeMap<AuthorKey, Vec<u64>> = BTreeMap::new();
            for (a, s) in got {
                per_author.entry(*a).or_default().push(*s);
            }
            for (a, &n) in posts {
                let seqs = per_author.get(a).cloned().unwrap_or_default();
                assert_eq!(
                    seqs,
                    (1..=n).collect::<Vec<_>>(),
                    "seed {}: node {i}, author {a:?}",
                    self.seed
                );
            }
        }
    }
}

/// Node `i`'s identity in the run of `seed`.
pub(crate) fn identity(seed: u64, i: usize) -> Identity {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_seed(s)
}

/// `n` nodes in a line, each linked to the next.
pub(crate) fn line(n: usize, seed: u64, config: Config) -> Net {
    let mut net = Net::new(n, seed, config);
    for i in 1..n {
        net.connect(i - 1, i);
    }
    net
}

/// The engine under test (identity 100 of `seed`), started at `START`, with nothing stored.
pub(crate) fn engine(seed: u64, config: Config) -> Engine<ChaCha8Rng> {
    Engine::new(identity(seed, 100), config, ChaCha8Rng::seed_from_u64(seed), START, vec![])
}

/// A link to `peer` came up.
pub(crate) fn up(peer: AuthorKey) -> Input {
    Input::LinkUp { peer, info: LinkInfo::default() }
}

/// A frame of `kind` from `from`, with link seq `link_seq` (0: unsequenced).
pub(crate) fn received(
    from: AuthorKey,
    link_seq: u64,
    kind: vecino_proto::pb::frame::Kind,
) -> Input {
    let frame = vecino_proto::pb::Frame { link_seq, link_floor: 0, kind: Some(kind) };
    Input::Received { from, frame: Bytes::from(vecino_proto::encode_frame(&frame)) }
}

/// `ev` pushed by `from` (first frame on the link).
pub(crate) fn pushed(from: AuthorKey, ev: &VerifiedEvent) -> Input {
    received(from, 1, events(ev))
}

/// An events frame pushing `ev` alone.
pub(crate) fn events(ev: &VerifiedEvent) -> vecino_proto::pb::frame::Kind {
    let events = vecino_proto::pb::Events {
        envelopes: vec![ev.envelope().clone()],
        sync: false,
        hops: None,
        trail: Vec::new(),
        detours: None,
        copies: None,
    };
    vecino_proto::pb::frame::Kind::Events(events)
}

/// A signed post (seq 1) by `author`, stamped at `START`.
pub(crate) fn post_by(author: &Identity) -> VerifiedEvent {
    use vecino_proto::pb::{self, Stream, event::Body};
    let hlc = vecino_proto::Hlc { ms: START.as_millis(), counter: 0 };
    let body = Body::Post(pb::Post {
        topic: "t".into(),
        body: Bytes::from_static(b"hi"),
        ..Default::default()
    });
    author.sign(Stream::Post, 1, hlc, body).expect("sign")
}

/// Runs `e` on `inputs` (in time order) and the timers it schedules up to `end`; returns the
/// frames it sent, by neighbour.
pub(crate) fn frames_sent(
    e: &mut Engine<ChaCha8Rng>,
    inputs: Vec<(Time, Input)>,
    end: Time,
) -> Vec<(AuthorKey, vecino_proto::pb::frame::Kind)> {
    frames_sent_answering(e, inputs, end, |_, _, _| None)
}

/// As [`frames_sent`], with `answer(now, to, frame)` giving what the neighbour sends back.
pub(crate) fn frames_sent_answering(
    e: &mut Engine<ChaCha8Rng>,
    mut inputs: Vec<(Time, Input)>,
    end: Time,
    mut answer: impl FnMut(Time, AuthorKey, &vecino_proto::pb::frame::Kind) -> Option<(Time, Input)>,
) -> Vec<(AuthorKey, vecino_proto::pb::frame::Kind)> {
    let mut sent = Vec::new();
    inputs.reverse();
    while let Some((now, input)) = inputs.pop() {
        for o in e.handle(now, input) {
            match o {
                Output::Schedule { at, timer } if at <= end => {
                    inputs.push((at, Input::Timer(timer)));
                }
                Output::Send { to, frame, .. } => {
                    if let Ok(f) = vecino_proto::decode_frame(frame)
                        && let Some(kind) = f.kind
                    {
                        inputs.extend(answer(now, to, &kind).filter(|(at, _)| *at <= end));
                        sent.push((to, kind));
                    }
                }
                _ => {}
            }
        }
        inputs.sort_by_key(|(t, _)| Reverse(*t));
    }
    sent
}

/// What `pick` takes from each frame in `sent` that went to `peer`, in the order sent.
pub(crate) fn sent_to<'a, T>(
    sent: &'a [(AuthorKey, vecino_proto::pb::frame::Kind)],
    peer: AuthorKey,
    pick: impl Fn(&'a vecino_proto::pb::frame::Kind) -> Option<T>,
) -> Vec<T> {
    sent.iter().filter(|(to, _)| *to == peer).filter_map(|(_, k)| pick(k)).collect()
}
