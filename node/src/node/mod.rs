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
//! closes. Redials have one owner each: the engine redials its links (with its own backoff,
//! through `Dial`), the node only its bootstrap peers, and only while it has no connection at
//! all (see `dialer.rs`). Time is the wall clock at start plus monotonic elapsed time, so it
//! never goes back.
//!
//! | module | what |
//! |---|---|
//! | `mod.rs` | [`Node`]: start, the actor loop, feeding the engine and carrying out its outputs |
//! | `commit.rs` | the group commit: what is held until the batch is on disk |
//! | `dialer.rs` | the peer book, carrying out `Dial`, bootstrap peers and their redials |
//! | `swarm.rs` | swarm events, connections and the writers |
//! | `views.rs` | operator requests: status, members, links, RTT, opinions, and the gauges |

mod barrios;
mod commit;
mod dialer;
mod mail;
mod reach;
mod swarm;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use vecino_coords::Coordinate;
use vecino_gossip::{Command, Engine, Input, Output, Protocol, Time, Timer};
use vecino_proto::Identity;

use crate::api::{ApiEvent, Request};
use crate::config::Config;
use crate::peer;
use crate::shim::Shim;
use crate::store::Store;
use crate::transport::{self, Behaviour, Inbound, SentMeter};
use commit::Batch;
use dialer::Dialer;
use swarm::PeerConn;

pub use barrios::{BarriosError, barrio_hex, parse_barrio_id};
pub use views::{OpinionsError, coordinate_from_json, coordinate_from_pb, coordinate_json};

/// Inputs handled per loop turn at most before the batch is committed.
pub const MAX_BATCH: usize = 256;
/// Operator requests queued at most.
pub const API_QUEUE: usize = 64;
/// Events buffered per SSE subscriber (a slower one skips ahead).
pub const EVENT_BUFFER: usize = 1024;
/// How often a moved coordinate is saved (a `kill -9` loses at most this much settling).
const COORDINATE_SAVE_EVERY: Duration = Duration::from_secs(30);
/// How often the store file's size is looked at (and the file compacted when mostly free).
const STORE_TIDY_EVERY: Duration = Duration::from_secs(60);
/// API replies waiting for the engine's answer at most (see `Node::replies`).
const MAX_PENDING_REPLIES: usize = 64;
/// While the store cannot be written (a full disk), a write is tried this often.
pub(super) const STORE_RETRY: Duration = Duration::from_secs(5);
/// What an API write is refused with while the store cannot be written.
pub const STORE_DOWN: &str = "the store is not writable";

/// The store could not be written: since when, why, and when to try again.
#[derive(Debug)]
pub(super) struct StoreDown {
    pub(super) since: Instant,
    pub(super) error: String,
    pub(super) retry_at: Instant,
}

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
    /// The peer book and the bootstrap peers.
    dialer: Dialer,
    /// Dials to peers other than the bootstrap ones (see `reach.rs`).
    dial_budget: reach::DialBudget,
    inbound: mpsc::Receiver<Inbound>,
    requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<ApiEvent>,
    shim: Option<Arc<Shim>>,
    /// Frames in the writers' hands; with back-pressure on, what they report sent.
    sent: SentMeter,
    /// The group commit: what is to be written, and what waits for it.
    batch: Batch,
    /// Inputs that outputs gave rise to, fed once those outputs are carried out: at most one
    /// per `Dial`, of which the engine keeps at most 16 pending (its `MAX_DIALS`).
    followups: VecDeque<Input>,
    /// API replies waiting for the engine's answer to their command, by command id: at most
    /// one at a time, since a command is answered among the outputs of the call that feeds it
    /// ([`MAX_PENDING_REPLIES`] bounds it all the same).
    replies: BTreeMap<u64, oneshot::Sender<Result<Value, String>>>,
    /// The id of the next command fed to the engine.
    next_command: u64,
    /// Postcards received and sent, and the fate of those sent.
    mail: mail::Mail,
    next_cursor: u64,
    listen: Vec<Multiaddr>,
    advertised: Vec<String>,
    api_addr: std::net::SocketAddr,
    last_coordinate: Option<Coordinate>,
    /// The coordinate last saved to the store, and when.
    saved_coordinate: (Option<Coordinate>, Instant),
    /// When the store file was last looked at (see [`STORE_TIDY_EVERY`]).
    store_tidied: Instant,
    failed: Option<anyhow::Error>,
    /// Set while the store cannot be written: the node then serves reads and refuses writes,
    /// feeds the engine nothing, and tries the write again every [`STORE_RETRY`].
    store_down: Option<StoreDown>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("peer", &self.engine.id()).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the store, starts the transport and the engine. Returns the node and what the
    /// HTTP side needs.
    pub async fn start(
        cfg: Config,
        identity: Identity,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<(Node, Shared, crate::api::ApiListener)> {
        let clock = Clock::start();
        let store = Store::open(&cfg.store_path())?;
        metrics::gauge!("vecino_store_writable").set(1.0);
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
        let listen = swarm::listen(&mut swarm, &cfg.listen).await?;
        let advertised = swarm::advertised(&cfg, &listen);
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

        // The API's listener: its tokens (created in the data directory when needed), Host
        // rule, connection cap and timeouts (see `api::access` and `api::conn`).
        let api = crate::api::ApiListener::bind(&cfg)
            .await
            .with_context(|| format!("cannot start the API on {}", cfg.api))?;
        let api_addr = api.local_addr()?;

        let (inbound_tx, inbound) = mpsc::channel(transport::INBOUND_QUEUE);
        tokio::spawn(transport::accept_loop(incoming, inbound_tx, shim.clone()));
        let (req_tx, requests) = mpsc::channel(API_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);

        let dialer =
            Dialer::new(store.peers()?, &cfg.bootstrap, me, cfg.redial_max, Instant::now());
        let next_cursor = store.last_post_cursor()? + 1;
        let mail =
            mail::Mail::new(store.last_postcard_cursor()?, store.open_postcards(mail::MAX_OPEN)?);
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
            dialer,
            dial_budget: reach::DialBudget::new(Instant::now()),
            inbound,
            requests,
            events,
            shim,
            sent: node_sent,
            batch: Batch::default(),
            followups: VecDeque::new(),
            replies: BTreeMap::new(),
            next_command: 1,
            mail,
            next_cursor,
            listen,
            advertised,
            api_addr,
            last_coordinate: None,
            saved_coordinate: (saved, Instant::now()),
            store_tidied: Instant::now(),
            failed: None,
            store_down: None,
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
            if let Some(retry) = self.store_down.as_ref().map(|d| d.retry_at) {
                // The store cannot be written: read requests are answered, writes refused;
                // nothing else is taken in (frames wait in the transport), and the write is
                // tried again.
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    Some(req) = self.requests.recv() => self.on_request(req),
                    () = tokio::time::sleep_until(retry) => self.flush(),
                }
                continue;
            }
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
        let id = self.command_id();
        self.feed(Input::Command { id, cmd: Command::Leave { reason: "shutdown".into() } });
        self.flush();
        self.save_coordinate(true);
        self.save_book();
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

    /// The id of the next command (the engine answers it by this id).
    fn command_id(&mut self) -> u64 {
        let id = self.next_command;
        self.next_command = self.next_command.wrapping_add(1);
        id
    }

    /// Sends `text` as a postcard to `to`: the reply is its record once durable (status
    /// `custody`), or the engine's refusal.
    fn postcard(
        &mut self,
        to: vecino_proto::AuthorKey,
        text: String,
        lifetime: Option<Duration>,
        reply: oneshot::Sender<Result<Value, String>>,
    ) {
        let id = self.next_command;
        self.mail.pending(id, views::pid(&to), text.clone());
        let cmd = Command::Postcard { to, body: text.into(), lifetime, coordinate: None };
        self.command(cmd, reply);
        self.mail.forget(id);
    }

    /// Feeds command `cmd`, its answer to go to `reply`; a reply the engine did not answer
    /// among the outputs (it always does) is answered with an error rather than left hanging.
    fn command(&mut self, cmd: Command, reply: oneshot::Sender<Result<Value, String>>) {
        let id = self.command_id();
        if self.replies.len() >= MAX_PENDING_REPLIES {
            let _ = reply.send(Err("too many commands in flight".into()));
            return;
        }
        self.replies.insert(id, reply);
        self.feed(Input::Command { id, cmd });
        if let Some(reply) = self.replies.remove(&id) {
            let _ = reply.send(Err("the engine did not answer the command".into()));
        }
    }

    /// Feeds `input` and carries out its outputs, in order; then the inputs they gave rise
    /// to (a `Dial` of a peer already connected is a `LinkUp`), each in turn. Never feeds the
    /// engine while it is carrying out outputs, as `vecino_gossip::io` requires.
    fn feed(&mut self, input: Input) {
        let mut next = Some(input);
        while let Some(input) = next.take().or_else(|| self.followups.pop_front()) {
            let now = self.clock.now();
            let outputs: Vec<Output> = self.engine.handle(now, input).collect();
            for o in outputs {
                self.execute(o);
            }
        }
    }

    fn execute(&mut self, o: Output) {
        match o {
            Output::Send { to, frame, .. } => {
                if let Some((to, frame)) = self.batch.send(to, frame) {
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
            Output::Persist(op) => self.batch.persist(op),
            // The node has no shared medium (`Config::shared_medium` is off): the engine
            // never asks for a broadcast.
            Output::Broadcast { .. } => tracing::warn!("broadcast asked without a shared medium"),
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

    fn housekeeping(&mut self) {
        let now = Instant::now();
        self.redial_bootstrap(now);
        self.save_book();
        // Live coordinate for the event stream, when it moved.
        let c = self.engine.coordinate();
        if self.last_coordinate.is_none_or(|l| l.raw_distance_secs(&c) > 1e-4) {
            self.last_coordinate = Some(c);
            self.emit(ApiEvent::new("coordinate", views::coordinate(self.peer_id(), &c)));
        }
        self.save_coordinate(false);
        self.record_gauges();
        if now.duration_since(self.store_tidied) >= STORE_TIDY_EVERY {
            self.store_tidied = now;
            self.tidy_store();
        }
    }

    /// Measures the store file, and compacts it when most of it is free pages.
    fn tidy_store(&mut self) {
        let store = &self.store;
        let usage = match tokio::task::block_in_place(|| store.compact_if_worth_it()) {
            Ok((before, Some(after))) => {
                tracing::info!(
                    file_before = before.file,
                    file_after = after.file,
                    in_use = after.allocated,
                    "compacted the store file"
                );
                metrics::counter!("vecino_store_compactions_total").increment(1);
                after
            }
            Ok((usage, None)) => usage,
            Err(e) => {
                tracing::warn!("cannot compact the store: {e}");
                return;
            }
        };
        metrics::gauge!("vecino_store_file_bytes").set(usage.file as f64);
        metrics::gauge!("vecino_store_allocated_bytes").set(usage.allocated as f64);
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
}
