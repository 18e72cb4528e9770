//! The node: a few lines of tokio driver around the engine.
//!
//! One actor task owns the engine, the swarm and the store's write side. Its `select!` is
//! biased towards local work: shutdown, then operator requests, then due timers, then frames
//! reported sent (back-pressure), then swarm events, then frames from neighbours (drained up
//! to [`MAX_BATCH`] at a time). Every input is fed to `Engine::handle` and its outputs are
//! carried out in order, as `vecino_gossip::io` requires:
//!
//! - `Persist` operations (and delivered posts) gather in a pending batch; every later `Send`,
//!   delivery and API reply is *held* behind the batch, which is committed durably once per
//!   loop turn (group commit), then released. So an event is on disk before any frame that
//!   could acknowledge it leaves, at one fsync per turn rather than per event. Pings and pongs
//!   acknowledge nothing and skip the queue, so RTT samples do not include fsync time.
//! - `Send` goes to the peer's writer task (bounded queue); with back-pressure on
//!   (`--host-queue-bytes`), the bytes that left the writers are reported back as
//!   `Input::Sent` once per loop turn, so the engine keeps what the medium cannot take yet in
//!   its own priority queues. `Dial` goes to the swarm with the addresses the engine gave
//!   plus those the peer book knows; `Schedule` to a timer set.
//!
//! The host reports `LinkUp` on a peer's first connection and `LinkDown` when its last one
//! closes; links the engine still holds and bootstrap peers are redialled with exponential
//! backoff. Time is the wall clock at start plus monotonic elapsed time, so it never goes back.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use vecino_coords::Coordinate;
use vecino_gossip::{
    AppEvent, Command, Engine, Input, LinkInfo, LinkStatus, MemberChange, Output, Protocol,
    StoreOp, Time, Timer,
};
use vecino_proto::{AuthorKey, Bytes, Identity, pb};

use crate::api::{ApiEvent, Request};
use crate::config::Config;
use crate::peer;
use crate::shim::Shim;
use crate::store::{PostRecord, Store};
use crate::telemetry;
use crate::transport::{self, Behaviour, BehaviourEvent, Inbound, QueueError, SentMeter, Writer};

/// Inputs handled per loop turn at most before the batch is committed.
pub const MAX_BATCH: usize = 256;
/// Operator requests queued at most.
pub const API_QUEUE: usize = 64;
/// Events buffered per SSE subscriber (a slower one skips ahead).
pub const EVENT_BUFFER: usize = 1024;
/// Peers remembered in the peer book and dialled at start, at most.
const BOOK_DIAL_AT_START: usize = 16;
/// Shortest redial backoff.
const REDIAL_MIN: Duration = Duration::from_millis(500);
/// How often a moved coordinate is saved (a `kill -9` loses at most this much settling).
const COORDINATE_SAVE_EVERY: Duration = Duration::from_secs(30);

/// Engine time: wall clock at start plus monotonic elapsed.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall0_us: u64,
    mono0: Instant,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { wall0_us: u64::try_from(wall.as_micros()).unwrap_or(0), mono0: Instant::now() }
    }
    /// The engine's now.
    pub fn now(&self) -> Time {
        Time(self.wall0_us + u64::try_from(self.mono0.elapsed().as_micros()).unwrap_or(0))
    }
    /// The monotonic instant of an engine time.
    pub fn instant(&self, t: Time) -> Instant {
        self.mono0 + Duration::from_micros(t.0.saturating_sub(self.wall0_us))
    }
}

/// What the HTTP side shares with the actor.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Requests to the actor.
    pub requests: mpsc::Sender<Request>,
    /// Live events (SSE).
    pub events: broadcast::Sender<ApiEvent>,
    /// The store, for reads.
    pub store: Store,
    /// The shim, when link emulation is on.
    pub shim: Option<Arc<Shim>>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
}

#[derive(Debug)]
struct PeerConn {
    connections: u32,
    writer: Option<Writer>,
}

#[derive(Debug, Clone)]
struct Redial {
    attempt: u32,
    next: Instant,
}

#[derive(Debug)]
enum Held {
    Send(AuthorKey, Bytes),
    Event(ApiEvent),
    Reply(oneshot::Sender<Result<Value, String>>, Value),
}

/// The running node.
pub struct Node {
    cfg: Config,
    engine: Engine<ChaCha20Rng>,
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    store: Store,
    clock: Clock,
    started: Instant,
    timers: BTreeSet<(Time, Timer)>,
    conns: HashMap<PeerId, PeerConn>,
    book: HashMap<PeerId, Vec<Multiaddr>>,
    redial: HashMap<PeerId, Redial>,
    bootstrap_unnamed: Vec<(Multiaddr, Redial)>,
    bootstrap_named: BTreeSet<PeerId>,
    inbound: mpsc::Receiver<Inbound>,
    requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<ApiEvent>,
    shim: Option<Arc<Shim>>,
    /// Frames in the writers' hands; with back-pressure on, what they report sent.
    sent: SentMeter,
    ops: Vec<StoreOp>,
    posts: Vec<PostRecord>,
    held: Vec<Held>,
    post_reply: Option<oneshot::Sender<Result<Value, String>>>,
    next_cursor: u64,
    listen: Vec<Multiaddr>,
    advertised: Vec<String>,
    api_addr: std::net::SocketAddr,
    last_coordinate: Option<Coordinate>,
    /// The coordinate last saved to the store, and when.
    saved_coordinate: (Option<Coordinate>, Instant),
    failed: Option<anyhow::Error>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("peer", &self.engine.id()).finish_non_exhaustive()
    }
}

/// Pings and pongs acknowledge nothing; they skip the commit queue so RTT samples exclude fsync.
fn is_ping_or_pong(frame: &[u8]) -> bool {
    use prost::Message;
    frame.len() <= 128
        && matches!(
            pb::Frame::decode(frame).map(|f| f.kind),
            Ok(Some(pb::frame::Kind::Ping(_) | pb::frame::Kind::Pong(_)))
        )
}

fn strip_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut a = addr.clone();
    match a.pop() {
        Some(MaProto::P2p(id)) => (a, Some(id)),
        Some(other) => {
            a.push(other);
            (a, None)
        }
        None => (a, None),
    }
}

/// A coordinate as the API shows it (milliseconds).
pub fn coordinate_json(c: &Coordinate) -> Value {
    json!({
        "vec_ms": c.vec.iter().map(|x| x * 1e3).collect::<Vec<f64>>(),
        "height_ms": c.height * 1e3,
        "error": c.error,
        "adjustment_ms": c.adjustment * 1e3,
    })
}

/// A coordinate as [`coordinate_json`] shows it, back in seconds: `None` unless every field is
/// there and the coordinate checks (a missing adjustment counts as zero).
pub fn coordinate_from_json(c: &Value) -> Option<Coordinate> {
    let vec: Vec<f64> = c
        .get("vec_ms")?
        .as_array()?
        .iter()
        .map(|x| x.as_f64().map(|ms| ms / 1e3))
        .collect::<Option<_>>()?;
    let height = c.get("height_ms")?.as_f64()? / 1e3;
    let error = c.get("error")?.as_f64()?;
    let adjustment = c.get("adjustment_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1e3;
    Coordinate::from_parts(&vec, height, error, adjustment).ok()
}

/// A published (wire) coordinate, which travels in milliseconds.
pub fn coordinate_from_pb(c: &pb::Coordinate) -> Option<Coordinate> {
    let vec: Vec<f32> = c.vec.iter().map(|x| x / 1e3).collect();
    Coordinate::from_f32_parts(&vec, c.height / 1e3, c.error, c.adjustment / 1e3).ok()
}

impl Node {
    /// Opens the store, starts the transport and the engine. Returns the node and what the
    /// HTTP side needs.
    pub async fn start(
        cfg: Config,
        identity: Identity,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<(Node, Shared, tokio::net::TcpListener)> {
        let clock = Clock::start();
        let store = Store::open(&cfg.store_path())?;
        let loaded = store.load_events()?;
        if loaded.rejected > 0 {
            tracing::warn!(
                rejected = loaded.rejected,
                "stored events failed verification and were dropped"
            );
        }
        let me = peer::peer_id(&identity);
        let shim = match &cfg.emulate_links {
            Some(path) => {
                tracing::warn!(file = %path.display(), "link emulation is ON (test only)");
                Some(Arc::new(Shim::load(path, &me)?))
            }
            None => None,
        };
        let mut swarm = transport::build_swarm(peer::keypair(&identity), &cfg)?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(transport::PROTOCOL)
            .map_err(|_| anyhow::anyhow!("frame protocol registered twice"))?;
        for addr in &cfg.listen {
            swarm.listen_on(addr.clone()).with_context(|| format!("cannot listen on {addr}"))?;
        }
        // Wait (briefly) for the bound addresses: the hey-there advertises them.
        let mut listen = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        let mut reported = 0usize;
        while reported < cfg.listen.len() {
            tokio::select! {
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        tracing::info!(%address, "listening");
                        listen.push(address);
                        reported += 1;
                    }
                    SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
                    SwarmEvent::ListenerClosed { reason: Err(e), .. } => anyhow::bail!("listener failed: {e}"),
                    _ => {}
                },
                () = &mut deadline => break,
            }
        }
        let advertised: Vec<String> = if cfg.advertise.is_empty() {
            let mut l = listen.clone();
            // Routable addresses first; loopback last (useful on one host only).
            l.sort_by_key(|a| a.iter().any(|p| matches!(p, MaProto::Ip4(ip) if ip.is_loopback())));
            l.iter().take(vecino_proto::limits::MAX_ADDRS).map(ToString::to_string).collect()
        } else {
            cfg.advertise.iter().map(ToString::to_string).collect()
        };
        let mut gossip = cfg.gossip.clone();
        gossip.addrs = advertised.clone();
        let rng = ChaCha20Rng::from_rng(&mut rand::rng());
        let stored = loaded.events.len();
        let mut engine = Engine::new(identity, gossip, rng, clock.now(), loaded.events);
        let saved = store.coordinate()?;
        if let Some(c) = saved
            && let Err(e) = engine.resume_coordinate(c)
        {
            tracing::warn!("saved coordinate not resumed: {e}");
        }
        tracing::info!(peer = %me, stored, coordinate_resumed = saved.is_some(), "engine started");

        let api = tokio::net::TcpListener::bind(cfg.api)
            .await
            .with_context(|| format!("cannot bind the API on {}", cfg.api))?;
        let api_addr = api.local_addr()?;
        if !api_addr.ip().is_loopback() {
            tracing::warn!(%api_addr, "the API has no authentication and is not on loopback");
        }

        let (inbound_tx, inbound) = mpsc::channel(transport::INBOUND_QUEUE);
        tokio::spawn(transport::accept_loop(incoming, inbound_tx, shim.clone()));
        let (req_tx, requests) = mpsc::channel(API_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);

        let mut book = HashMap::new();
        for (k, addrs) in store.peers()? {
            if let Ok(p) = PeerId::from_bytes(&k) {
                book.insert(p, addrs.iter().filter_map(|a| a.parse().ok()).collect());
            }
        }
        let mut bootstrap_named = BTreeSet::new();
        let mut bootstrap_unnamed = Vec::new();
        for b in &cfg.bootstrap {
            match strip_p2p(b) {
                (addr, Some(p)) if p != me => {
                    let e: &mut Vec<Multiaddr> = book.entry(p).or_default();
                    if !e.contains(&addr) {
                        e.insert(0, addr);
                    }
                    bootstrap_named.insert(p);
                }
                (_, Some(_)) => {}
                (addr, None) => {
                    bootstrap_unnamed.push((addr, Redial { attempt: 0, next: Instant::now() }))
                }
            }
        }
        let next_cursor = store.last_post_cursor()? + 1;
        let shared = Shared {
            requests: req_tx,
            events: events.clone(),
            store: store.clone(),
            shim: shim.clone(),
            metrics,
        };
        let node_sent = SentMeter::new(cfg.gossip.host_queue_bytes.is_some());
        let node = Node {
            cfg,
            engine,
            swarm,
            control,
            store,
            clock,
            started: Instant::now(),
            timers: BTreeSet::new(),
            conns: HashMap::new(),
            book,
            redial: HashMap::new(),
            bootstrap_unnamed,
            bootstrap_named,
            inbound,
            requests,
            events,
            shim,
            sent: node_sent,
            ops: Vec::new(),
            posts: Vec::new(),
            held: Vec::new(),
            post_reply: None,
            next_cursor,
            listen,
            advertised,
            api_addr,
            last_coordinate: None,
            saved_coordinate: (saved, Instant::now()),
            failed: None,
        };
        Ok((node, shared, api))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until `shutdown` resolves, then leaves (`chau`) and flushes.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        // The contract's first input: the engine answers with its hey-there, newspaper, tick.
        self.feed(Input::Start);
        self.dial_at_start();
        self.flush();
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sent = self.sent.clone();
        loop {
            let next_timer = self.timers.first().map(|(t, _)| self.clock.instant(*t));
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(req) = self.requests.recv() => self.on_request(req),
                () = async { tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)).await }, if next_timer.is_some() => {
                    self.fire_timers();
                }
                () = sent.reported() => {
                    let bytes = sent.take();
                    if bytes > 0 {
                        self.feed(Input::Sent { bytes });
                    }
                }
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(first) = self.inbound.recv() => {
                    self.feed(Input::Received { from: first.from, frame: first.frame });
                    for _ in 1..MAX_BATCH {
                        let Ok(more) = self.inbound.try_recv() else { break };
                        self.feed(Input::Received { from: more.from, frame: more.frame });
                    }
                }
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.flush();
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        self.leave().await;
        Ok(())
    }

    async fn leave(&mut self) {
        tracing::info!("leaving: sending chau and flushing the store");
        self.feed(Input::Command(Command::Leave { reason: "shutdown".into() }));
        self.flush();
        self.save_coordinate(true);
        // Let the writers send what is queued (the chau), while the swarm keeps running.
        let tasks: Vec<_> =
            self.conns.values_mut().filter_map(|c| c.writer.take()).map(|w| w.task).collect();
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut all => break,
                () = &mut deadline => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
        tracing::info!("stopped");
    }

    // ----- driving the engine -----

    fn feed(&mut self, input: Input) {
        let now = self.clock.now();
        let outputs: Vec<Output> = self.engine.handle(now, input).collect();
        for o in outputs {
            self.execute(o);
        }
    }

    fn holding(&self) -> bool {
        !self.ops.is_empty() || !self.posts.is_empty() || !self.held.is_empty()
    }

    fn execute(&mut self, o: Output) {
        match o {
            Output::Send { to, frame, .. } => {
                if self.holding() && !is_ping_or_pong(&frame) {
                    self.held.push(Held::Send(to, frame));
                } else {
                    self.transmit(to, frame);
                }
            }
            Output::Deliver(ev) => self.deliver(ev),
            Output::Schedule { at, timer } => {
                self.timers.insert((at, timer));
            }
            Output::Dial { peer, addrs } => self.dial_author(peer, &addrs),
            Output::Disconnect { peer } => {
                if let Some(p) = peer::peer_id_of(&peer) {
                    let _ = self.swarm.disconnect_peer_id(p);
                }
            }
            Output::Persist(op) => self.ops.push(op),
            // The node has no shared medium (`Config::shared_medium` is off): the engine
            // never asks for a broadcast.
            Output::Broadcast { .. } => tracing::warn!("broadcast asked without a shared medium"),
        }
    }

    fn emit(&mut self, ev: ApiEvent) {
        if self.holding() {
            self.held.push(Held::Event(ev));
        } else {
            let _ = self.events.send(ev);
        }
    }

    fn deliver(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Post(p) => {
                let record = PostRecord {
                    cursor: self.next_cursor,
                    id: p.id.to_string(),
                    author: p.author.to_string(),
                    peer_id: peer::peer_id_of(&p.author).map(|x| x.to_string()).unwrap_or_default(),
                    seq: p.seq,
                    hlc_ms: p.hlc.ms,
                    topic: p.topic,
                    text: String::from_utf8_lossy(&p.body).into_owned(),
                    own: p.own,
                };
                self.next_cursor += 1;
                self.posts.push(record.clone());
                let value = serde_json::to_value(&record).unwrap_or(Value::Null);
                if record.own
                    && let Some(reply) = self.post_reply.take()
                {
                    self.held.push(Held::Reply(reply, value.clone()));
                }
                self.held.push(Held::Event(ApiEvent::new("post", value)));
            }
            AppEvent::Link { peer, status } => {
                tracing::info!(peer = %self.short(&peer), status = status.name(), "link");
                let v = json!({"peer_id": self.pid(&peer), "status": status.name()});
                self.emit(ApiEvent::new("link", v));
            }
            AppEvent::Member { peer, change } => {
                let change = match change {
                    MemberChange::Joined => "joined",
                    MemberChange::Updated => "updated",
                    MemberChange::Left => "left",
                };
                if change != "updated" {
                    tracing::info!(peer = %self.short(&peer), change, "member");
                }
                let v = json!({"peer_id": self.pid(&peer), "change": change});
                self.emit(ApiEvent::new("member", v));
            }
            AppEvent::Rtt { rtt, .. } => {
                metrics::histogram!("vecino_rtt_seconds").record(rtt.as_secs_f64());
            }
            AppEvent::Equivocation(proof) => {
                tracing::warn!(author = %proof.author(), "equivocation: an author signed two events at one seq");
                self.emit(ApiEvent::new(
                    "equivocation",
                    json!({"author": proof.author().to_string()}),
                ));
            }
        }
    }

    fn pid(&self, a: &AuthorKey) -> String {
        peer::peer_id_of(a).map(|p| p.to_string()).unwrap_or_else(|| a.to_string())
    }

    fn short(&self, a: &AuthorKey) -> String {
        let p = self.pid(a);
        p.get(p.len().saturating_sub(8)..).unwrap_or(&p).to_string()
    }

    /// Commits the pending batch, then releases what waited for it.
    fn flush(&mut self) {
        if !self.ops.is_empty() || !self.posts.is_empty() {
            let started = std::time::Instant::now();
            let (store, ops, posts, kept) =
                (&self.store, &self.ops, &self.posts, self.cfg.posts_kept);
            let result = tokio::task::block_in_place(|| store.commit(ops, posts, kept));
            metrics::histogram!("vecino_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("vecino_store_commits_total").increment(1);
            if let Err(e) = result {
                // Nothing held may go out: it could acknowledge what is not on disk.
                tracing::error!("store commit failed: {e}; stopping");
                self.held.clear();
                self.failed = Some(anyhow::anyhow!("store commit failed: {e}"));
                return;
            }
            self.ops.clear();
            self.posts.clear();
        }
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Send(to, frame) => self.transmit(to, frame),
                Held::Event(ev) => {
                    let _ = self.events.send(ev);
                }
                Held::Reply(reply, v) => {
                    let _ = reply.send(Ok(v));
                }
            }
        }
    }

    fn transmit(&mut self, to: AuthorKey, frame: Bytes) {
        // From here on every path that loses the frame reports it (dropping it does).
        let frame = self.sent.track(frame);
        let Some(pid) = peer::peer_id_of(&to) else { return };
        let Some(conn) = self.conns.get_mut(&pid) else {
            metrics::counter!("vecino_transport_dropped_total", "reason" => "not_connected")
                .increment(1);
            return;
        };
        let writer = conn
            .writer
            .get_or_insert_with(|| Writer::spawn(pid, self.control.clone(), self.shim.clone()));
        match writer.send(frame) {
            Ok(()) => {}
            Err((QueueError::Full, _)) => {
                metrics::counter!("vecino_transport_dropped_total", "reason" => "queue_full")
                    .increment(1);
            }
            Err((QueueError::Closed, frame)) => {
                // The writer gave up on its stream: start another while the peer is connected.
                let w = Writer::spawn(pid, self.control.clone(), self.shim.clone());
                let _ = w.send(frame);
                conn.writer = Some(w);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let (_, timer) = self.timers.pop_first().expect("checked");
            self.feed(Input::Timer(timer));
        }
    }

    // ----- dialling -----

    fn dial_author(&mut self, peer: AuthorKey, addrs: &[String]) {
        let Some(pid) = peer::peer_id_of(&peer) else { return };
        if self.conns.contains_key(&pid) {
            // Already connected: the link is up as far as the transport goes.
            self.feed(Input::LinkUp { peer, info: self.link_info(false) });
            return;
        }
        let given: Vec<Multiaddr> = addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .map(|a| strip_p2p(&a).0)
            .collect();
        let book = self.book.entry(pid).or_default();
        for a in given {
            if !book.contains(&a) && book.len() < vecino_proto::limits::MAX_ADDRS * 2 {
                book.push(a);
            }
        }
        self.dial(pid);
    }

    fn dial(&mut self, pid: PeerId) {
        if pid == self.peer_id() || self.conns.contains_key(&pid) {
            return;
        }
        let addrs = self.book.get(&pid).cloned().unwrap_or_default();
        if addrs.is_empty() {
            return;
        }
        metrics::counter!("vecino_transport_dials_total").increment(1);
        let opts = DialOpts::peer_id(pid)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(peer = %pid, "dial refused: {e}");
        }
    }

    fn dial_at_start(&mut self) {
        let mut peers: Vec<PeerId> = self.bootstrap_named.iter().copied().collect();
        peers.extend(
            self.book.keys().filter(|p| !self.bootstrap_named.contains(p)).take(BOOK_DIAL_AT_START),
        );
        for p in peers {
            self.dial(p);
        }
        for (addr, _) in self.bootstrap_unnamed.clone() {
            metrics::counter!("vecino_transport_dials_total").increment(1);
            let _ = self.swarm.dial(addr);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let d = REDIAL_MIN.saturating_mul(1u32 << attempt.min(16)).min(self.cfg.redial_max);
        d.mul_f64(rand::random_range(0.8..1.2))
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        // Redial: links the engine holds whose transport is gone, and bootstrap peers.
        let mut want: BTreeSet<PeerId> = self.bootstrap_named.clone();
        for l in self.engine.links() {
            if l.status != LinkStatus::Disconnected
                && let Some(p) = peer::peer_id_of(&l.peer)
            {
                want.insert(p);
            }
        }
        want.retain(|p| !self.conns.contains_key(p));
        self.redial.retain(|p, _| want.contains(p));
        for p in want {
            let attempt = {
                let r = self.redial.entry(p).or_insert(Redial { attempt: 0, next: now });
                if r.next > now {
                    continue;
                }
                r.attempt += 1;
                r.attempt
            };
            let wait = self.backoff(attempt);
            if let Some(r) = self.redial.get_mut(&p) {
                r.next = now + wait;
            }
            self.dial(p);
        }
        if self.conns.is_empty() {
            let mut redials = Vec::new();
            for i in 0..self.bootstrap_unnamed.len() {
                let attempt = self.bootstrap_unnamed[i].1.attempt;
                if self.bootstrap_unnamed[i].1.next <= now {
                    let wait = self.backoff(attempt + 1);
                    let r = &mut self.bootstrap_unnamed[i].1;
                    r.attempt += 1;
                    r.next = now + wait;
                    redials.push(self.bootstrap_unnamed[i].0.clone());
                }
            }
            for a in redials {
                metrics::counter!("vecino_transport_dials_total").increment(1);
                let _ = self.swarm.dial(a);
            }
        }
        // Live coordinate for the event stream, when it moved.
        let c = self.engine.coordinate();
        if self.last_coordinate.is_none_or(|l| l.raw_distance_secs(&c) > 1e-4) {
            self.last_coordinate = Some(c);
            self.emit(ApiEvent::new(
                "coordinate",
                json!({
                    "peer_id": self.peer_id().to_string(),
                    "coordinate": coordinate_json(&c),
                }),
            ));
        }
        self.save_coordinate(false);
        self.record_gauges();
    }

    /// Saves the coordinate when it moved, at most every [`COORDINATE_SAVE_EVERY`] unless
    /// `now` (shutdown). A failed save is logged, not fatal: the coordinate is a cache.
    fn save_coordinate(&mut self, now: bool) {
        let (last, at) = self.saved_coordinate;
        let c = self.engine.coordinate();
        let moved =
            last.is_none_or(|l| l.raw_distance_secs(&c) > 1e-4 || (l.error - c.error).abs() > 0.01);
        if !moved || (!now && at.elapsed() < COORDINATE_SAVE_EVERY) {
            return;
        }
        let store = &self.store;
        match tokio::task::block_in_place(|| store.put_coordinate(&c)) {
            Ok(()) => self.saved_coordinate = (Some(c), Instant::now()),
            Err(e) => tracing::warn!("cannot save the coordinate: {e}"),
        }
    }

    fn record_gauges(&self) {
        telemetry::record_engine(self.engine.stats());
        let mut counts = [0u64; 3];
        for l in self.engine.links() {
            counts[l.status as usize] += 1;
        }
        for (i, s) in [LinkStatus::Connected, LinkStatus::Suspected, LinkStatus::Disconnected]
            .iter()
            .enumerate()
        {
            metrics::gauge!("vecino_links", "status" => s.name()).set(counts[i] as f64);
        }
        let members = self.engine.members();
        let left = members.iter().filter(|m| m.left).count();
        metrics::gauge!("vecino_members", "state" => "alive").set((members.len() - left) as f64);
        metrics::gauge!("vecino_members", "state" => "left").set(left as f64);
        metrics::gauge!("vecino_coordinate_error").set(self.engine.coordinate().error);
        metrics::gauge!("vecino_transport_connections").set(self.conns.len() as f64);
        let (held, peak) = self.sent.held();
        metrics::gauge!("vecino_transport_unsent_bytes").set(held as f64);
        metrics::gauge!("vecino_transport_unsent_bytes_peak").set(peak as f64);
        metrics::gauge!("vecino_uptime_seconds").set(self.started.elapsed().as_secs_f64());
    }

    fn link_info(&self, inbound: bool) -> LinkInfo {
        LinkInfo { rate_bps: self.cfg.link_rate_bps, inbound, shared_medium: false }
    }

    // ----- swarm events -----

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let Some(author) = peer::author_of(&peer_id) else {
                    metrics::counter!("vecino_transport_rejected_total", "reason" => "unknown_key_type").increment(1);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let (addr, _) = strip_p2p(address);
                    self.bootstrap_unnamed.retain(|(a, _)| a != &addr);
                    self.remember(peer_id, vec![addr]);
                }
                self.redial.remove(&peer_id);
                let conn =
                    self.conns.entry(peer_id).or_insert(PeerConn { connections: 0, writer: None });
                conn.connections += 1;
                if num_established.get() == 1 || conn.connections == 1 {
                    tracing::debug!(peer = %peer_id, "connected");
                    conn.writer =
                        Some(Writer::spawn(peer_id, self.control.clone(), self.shim.clone()));
                    let info = self.link_info(endpoint.is_listener());
                    self.feed(Input::LinkUp { peer: author, info });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                if let Some(conn) = self.conns.get_mut(&peer_id) {
                    conn.connections = conn.connections.saturating_sub(1);
                    if num_established == 0 {
                        self.conns.remove(&peer_id);
                        tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                        if let Some(author) = peer::author_of(&peer_id) {
                            self.feed(Input::LinkDown { peer: author });
                        }
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, "dial failed: {error}");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen.contains(&address) => {
                tracing::info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .iter()
                    .take(vecino_proto::limits::MAX_ADDRS)
                    .map(|a| strip_p2p(a).0)
                    .collect();
                self.remember(peer_id, addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                let mut peers = BTreeSet::new();
                for (p, a) in found {
                    if p != self.peer_id() {
                        self.remember(p, vec![a]);
                        peers.insert(p);
                    }
                }
                for p in peers {
                    self.dial(p);
                }
            }
            _ => {}
        }
    }

    /// Adds addresses to the peer book (memory and store), newest first.
    fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let book = self.book.entry(peer).or_default();
        let mut changed = false;
        for a in addrs.into_iter().rev() {
            if book.first() != Some(&a) {
                book.retain(|b| b != &a);
                book.insert(0, a);
                changed = true;
            }
        }
        book.truncate(vecino_proto::limits::MAX_ADDRS);
        if changed {
            let strings: Vec<String> = book.iter().map(ToString::to_string).collect();
            if let Err(e) = self.store.put_peer(&peer.to_bytes(), &strings) {
                tracing::warn!("cannot save the peer book: {e}");
            }
        }
    }

    // ----- operator requests -----

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Request::Links(reply) => {
                let _ = reply.send(self.links());
            }
            Request::Coordinate(reply) => {
                let c = self.engine.coordinate();
                let _ = reply.send(json!({
                    "peer_id": self.peer_id().to_string(),
                    "coordinate": coordinate_json(&c),
                }));
            }
            Request::Rtt { a, b, reply } => {
                let _ = reply.send(self.rtt(&a, b.as_deref()));
            }
            Request::Post { topic, text, reply } => {
                self.post_reply = Some(reply);
                self.feed(Input::Command(Command::Post { topic, body: Bytes::from(text) }));
                if let Some(reply) = self.post_reply.take() {
                    let _ = reply.send(Err("the engine refused the post".into()));
                }
            }
            Request::RefreshMetrics(reply) => {
                self.record_gauges();
                if let Ok(n) = self.store.event_count() {
                    metrics::gauge!("vecino_store_events").set(n as f64);
                }
                let _ = reply.send(());
            }
        }
    }

    fn status(&self) -> Value {
        let members = self.engine.members();
        let left = members.iter().filter(|m| m.left).count();
        let links = self.engine.links();
        let count = |s: LinkStatus| links.iter().filter(|l| l.status == s).count();
        let stats = self.engine.stats();
        json!({
            "peer_id": self.peer_id().to_string(),
            "author": self.engine.id().to_string(),
            "name": self.cfg.name,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "listen": self.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "advertise": self.advertised,
            "api": self.api_addr.to_string(),
            "data_dir": self.cfg.data_dir.display().to_string(),
            "members": {"alive": members.len() - left + 1, "left": left},
            "links": {
                "connected": count(LinkStatus::Connected),
                "suspected": count(LinkStatus::Suspected),
                "disconnected": count(LinkStatus::Disconnected),
            },
            "transport_connections": self.conns.len(),
            "coordinate": coordinate_json(&self.engine.coordinate()),
            "emulate_links": self.shim.is_some(),
            "stats": {
                "frames_in": stats.frames_in,
                "events_new": stats.events_new,
                "events_duplicate": stats.events_duplicate,
                "posts_delivered": stats.posts_delivered,
                "retransmits": stats.retransmits,
                "rejected": stats.rejected,
            },
        })
    }

    fn members(&self) -> Value {
        let links: HashMap<AuthorKey, _> =
            self.engine.links().into_iter().map(|l| (l.peer, l)).collect();
        let me = self.engine.coordinate();
        let mut out = vec![json!({
            "peer_id": self.peer_id().to_string(),
            "author": self.engine.id().to_string(),
            "name": self.cfg.name,
            "addrs": self.advertised,
            "status": "alive",
            "self": true,
            "link": Value::Null,
            "rtt_ms": Value::Null,
            "estimated_rtt_ms": 0.0,
            "coordinate": coordinate_json(&me),
            "version": env!("CARGO_PKG_VERSION"),
        })];
        for m in self.engine.members() {
            let (name, addrs, version) = m
                .hey_there
                .as_ref()
                .map(|h| (h.name.clone(), h.addrs.clone(), h.version.clone()))
                .unwrap_or_default();
            let coord = m
                .newspaper
                .as_ref()
                .and_then(|n| n.coordinate.as_ref())
                .or_else(|| m.hey_there.as_ref().and_then(|h| h.coordinate.as_ref()))
                .and_then(coordinate_from_pb);
            let link = links.get(&m.peer);
            out.push(json!({
                "peer_id": self.pid(&m.peer),
                "author": m.peer.to_string(),
                "name": name,
                "addrs": addrs,
                "status": if m.left { "left" } else { "alive" },
                "self": false,
                "link": link.map(|l| l.status.name()),
                "rtt_ms": link.and_then(|l| l.rtt).map(|r| r.as_secs_f64() * 1e3),
                "estimated_rtt_ms": coord.map(|c| me.distance_secs(&c) * 1e3),
                "coordinate": coord.as_ref().map(coordinate_json),
                "version": version,
                "uptime_s": m.newspaper.as_ref().map(|n| n.uptime_s),
                "newspaper": m.newspaper.as_ref().map(|n| json!({
                    "uptime_s": n.uptime_s, "restarts": n.restarts, "barrio": n.barrio,
                    "connected": n.connected, "flags": n.flags,
                })),
            }));
        }
        Value::Array(out)
    }

    fn links(&self) -> Value {
        let names: HashMap<AuthorKey, String> = self
            .engine
            .members()
            .into_iter()
            .map(|m| (m.peer, m.hey_there.map(|h| h.name).unwrap_or_default()))
            .collect();
        let now = self.clock.now();
        Value::Array(
            self.engine
                .links()
                .into_iter()
                .map(|l| {
                    let pid = peer::peer_id_of(&l.peer);
                    json!({
                        "peer_id": self.pid(&l.peer),
                        "name": names.get(&l.peer).cloned().unwrap_or_default(),
                        "status": l.status.name(),
                        "since_s": now.saturating_since(l.since).as_secs_f64(),
                        "rtt_ms": l.rtt.map(|r| r.as_secs_f64() * 1e3),
                        "eager": l.eager(),
                        "eager_trees": l.eager_trees,
                        "queued_bytes": l.buffered.0,
                        "unacked_frames": l.buffered.1,
                        "transport": pid.is_some_and(|p| self.conns.contains_key(&p)),
                        "cut": pid.is_some_and(|p| self.shim.as_ref().is_some_and(|s| s.is_cut(&p))),
                    })
                })
                .collect(),
        )
    }

    /// Finds a peer by peer id, author key (hex), or name; `None` for this node.
    fn resolve(&self, who: &str) -> Result<(String, Coordinate), String> {
        let me_pid = self.peer_id().to_string();
        if who == me_pid
            || who == self.engine.id().to_string()
            || (!self.cfg.name.is_empty() && who == self.cfg.name)
        {
            return Ok((me_pid, self.engine.coordinate()));
        }
        for m in self.engine.members() {
            let pid = self.pid(&m.peer);
            let name = m.hey_there.as_ref().map(|h| h.name.as_str()).unwrap_or("");
            if who == pid || who == m.peer.to_string() || (!name.is_empty() && who == name) {
                let coord = m
                    .newspaper
                    .as_ref()
                    .and_then(|n| n.coordinate.as_ref())
                    .or_else(|| m.hey_there.as_ref().and_then(|h| h.coordinate.as_ref()))
                    .and_then(coordinate_from_pb)
                    .ok_or_else(|| format!("{who} has published no coordinate yet"))?;
                return Ok((pid, coord));
            }
        }
        Err(format!("unknown peer {who}"))
    }

    fn rtt(&self, a: &str, b: Option<&str>) -> Result<Value, String> {
        let (pa, ca) = self.resolve(a)?;
        let (pb_, cb) = match b {
            Some(b) => self.resolve(b)?,
            None => (self.peer_id().to_string(), self.engine.coordinate()),
        };
        let me = self.peer_id().to_string();
        let other = if pa == me {
            Some(&pb_)
        } else if pb_ == me {
            Some(&pa)
        } else {
            None
        };
        let measured = other.and_then(|o| {
            self.engine.links().into_iter().find(|l| &self.pid(&l.peer) == o).and_then(|l| l.rtt)
        });
        Ok(json!({
            "a": pa,
            "b": pb_,
            "estimated_ms": ca.distance_secs(&cb) * 1e3,
            "measured_ms": measured.map(|r| r.as_secs_f64() * 1e3),
        }))
    }
}
