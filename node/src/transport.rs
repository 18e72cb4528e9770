//! libp2p: the swarm, the thin Behaviour, and the vecino frame protocol.
//!
//! The Behaviour only carries bytes and discovers addresses: identify (listen addresses),
//! mDNS (peers on the LAN) and `libp2p-stream` for [`PROTOCOL`]. Every decision about whom to
//! talk to and what to send is the engine's.
//!
//! Frames travel on one long-lived stream per direction and peer, each prefixed by its length
//! as a big-endian `u32`. A reader task per inbound stream bounds the length before allocating
//! (more than `MAX_FRAME_BYTES` resets the stream, counted) and hands frames to the node through
//! a bounded channel, so a fast sender is slowed by backpressure rather than buffered without
//! limit. A writer task per connected peer owns the outbound stream, fed by a bounded queue; a
//! full queue drops the frame (counted) and the engine's acknowledged delivery retransmits
//! what matters. With link emulation on, the writer also delays, paces and drops frames
//! ([`crate::shim`]).
//!
//! Every frame handed to a writer is an [`Outgoing`]: when it leaves the writer's hands —
//! written and flushed to the stream, or dropped on any path (full queue, no stream, failed
//! stream, shim loss, writer gone) — its length leaves a [`SentMeter`], which the node reports
//! to the engine as `Input::Sent` when back-pressure (`--host-queue-bytes`) is on and exports as
//! `vecino_transport_unsent_bytes` (now and peak). Counting in `Drop` means no path can forget
//! to report.
//!
//! Addresses may name hosts by DNS (`/dns4/vecino-0.vecino.ns.svc.cluster.local/tcp/7301`, the
//! stable names a Kubernetes headless Service gives): they are resolved when dialled, through
//! the system's resolver configuration (`/etc/resolv.conf`). A host without one still starts,
//! resolving through `/etc/hosts` only.
//!
//! Timeouts ride out fades: QUIC's idle timeout and the swarm's idle-connection timeout are
//! `idle_timeout_secs` (default 120 s, longer than the engine's 60 s suspect timeout), with QUIC
//! keep-alives every 5 s, so a short fade makes the link *suspected* in the engine while the
//! transport stays up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    PeerId, StreamProtocol, Swarm, Transport, identify, identity::Keypair, mdns, noise, ping, tcp,
    yamux,
};
use rand::{RngExt, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use vecino_proto::limits::MAX_FRAME_BYTES;
use vecino_proto::{AuthorKey, Bytes};

use crate::config::Config;
use crate::peer;
use crate::shim::Shim;
use crate::wire;

/// The vecino frame protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/vecino/frames/1");
/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/vecino/1";
/// Frames queued per peer for the writer at most.
pub const WRITER_QUEUE: usize = 1024;
/// Frames (or shim-delayed frames) a writer holds at most.
const SHIM_QUEUE: usize = 8192;
/// Inbound streams per peer at most (one per connection is normal); a newer one replaces the
/// oldest.
const MAX_STREAMS_PER_PEER: usize = 4;
/// Frames received and not yet taken by the node, across all peers, at most.
pub const INBOUND_QUEUE: usize = 1024;

pub use behaviour::{Behaviour, BehaviourEvent};

/// Connections one peer may hold to this node at once: TCP and QUIC, each way.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Handshakes under way at once, each way.
pub const MAX_PENDING_CONNECTIONS: u32 = 64;

/// Established connections at most for `max_links` link slots: four per slot, and 64 more.
pub fn max_established(max_links: usize) -> usize {
    max_links.saturating_mul(4).saturating_add(64)
}

/// The caps on connections: per peer, pending, and established in all (four per link slot,
/// plus room for newcomers and strangers on their way out). Past a cap libp2p refuses the
/// connection before any engine work.
pub fn connection_limits(max_links: usize) -> libp2p::connection_limits::ConnectionLimits {
    let total = u32::try_from(max_established(max_links)).unwrap_or(u32::MAX);
    libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_CONNECTIONS))
        .with_max_pending_outgoing(Some(MAX_PENDING_CONNECTIONS))
        .with_max_established(Some(total))
}

/// How often this node pings a connection with the libp2p ping protocol itself: seldom, since
/// the engine's own heartbeats already measure every link; it is served for other tools.
pub const LIBP2P_PING_EVERY: Duration = Duration::from_secs(3600);

/// The thin Behaviour (in a module of its own: the derive generates an undocumented event enum).
mod behaviour {
    #![allow(missing_docs, missing_debug_implementations)]
    use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
    use libp2p::{connection_limits, identify, mdns, ping};

    /// Address discovery and a byte pipe.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Connections per peer and in all, pending and established (see
        /// [`super::connection_limits`]).
        pub limits: connection_limits::Behaviour,
        /// Learns peers' listen addresses.
        pub identify: identify::Behaviour,
        /// Answers `/ipfs/ping/1.0.0`, so standard libp2p tools can check a vecino peer; its own
        /// pings are rare ([`super::LIBP2P_PING_EVERY`]): the engine measures RTTs itself.
        pub ping: ping::Behaviour,
        /// Finds peers on the local network (off with `--mdns false`).
        pub mdns: Toggle<mdns::tokio::Behaviour>,
        /// The frame streams.
        pub stream: libp2p_stream::Behaviour,
    }
}

/// The longest a "no such name" answer is believed. Names of peers appear late: a Kubernetes
/// headless service lists a pod once it is ready, a container network's DNS once the container
/// is up; the resolver's default believes an early "no records" for as long as the answer's SOA
/// says (a day when the query escaped to an upstream server), and a bootstrap peer named too
/// early was then never dialled again (seen in CI's podman testnet). Retries of the bootstrap
/// come seconds apart, so each one asks again.
const DNS_NEGATIVE_MAX_TTL: Duration = Duration::from_secs(2);

/// The resolver of `/dns*` addresses: the system's, else one with no name server (it still
/// reads `/etc/hosts`), so that a host without DNS, or a container without a network, starts.
fn dns_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    let (conf, mut opts) = match hickory_resolver::system_conf::read_system_conf() {
        Ok(conf) => conf,
        Err(e) => {
            tracing::warn!(
                "no usable /etc/resolv.conf ({e}): /dns addresses resolve through /etc/hosts only"
            );
            let none = libp2p::dns::ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            (none, libp2p::dns::ResolverOpts::default())
        }
    };
    opts.negative_max_ttl = Some(DNS_NEGATIVE_MAX_TTL);
    (conf, opts)
}

/// Builds the swarm: QUIC, and TCP with noise and yamux, both dialling `/dns*` addresses.
pub fn build_swarm(keypair: Keypair, cfg: &Config) -> anyhow::Result<Swarm<Behaviour>> {
    let idle = cfg.idle_timeout;
    let idle_ms = u32::try_from(idle.as_millis()).unwrap_or(u32::MAX);
    let mdns_on = cfg.mdns;
    let max_links = cfg.gossip.max_links;
    let (dns_cfg, dns_opts) = dns_config();
    // TCP + noise + yamux and QUIC as `SwarmBuilder::with_tcp` and `with_quic_config` build
    // them, with the counters of bytes on the wire inside ([`crate::wire`]).
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            let noise = noise::Config::new(key)?;
            Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .map(|stream, point| {
                    let ipv6 = point
                        .get_remote_address()
                        .iter()
                        .any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip6(_)));
                    wire::CountedTcp::new(stream, ipv6)
                })
                .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default()))
        })?
        .with_other_transport(|key| {
            let mut q = libp2p::quic::Config::new(key);
            q.max_idle_timeout = idle_ms;
            q.keep_alive_interval = Duration::from_secs(5);
            libp2p::quic::tokio::Transport::new(q)
                .map(|(peer, conn), _| (peer, wire::CountedQuic::new(conn)))
        })?
        .with_dns_config(dns_cfg, dns_opts)
        .with_behaviour(|key| {
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    .with_agent_version(format!("vecino/{}", env!("CARGO_PKG_VERSION"))),
            );
            let mdns = if mdns_on {
                match mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                ) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!("mDNS unavailable, continuing without: {e}");
                        None
                    }
                }
            } else {
                None
            };
            let ping = ping::Behaviour::new(ping::Config::new().with_interval(LIBP2P_PING_EVERY));
            let limits = libp2p::connection_limits::Behaviour::new(connection_limits(max_links));
            Behaviour {
                limits,
                identify,
                ping,
                mdns: mdns.into(),
                stream: libp2p_stream::Behaviour::new(),
            }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// A frame from a neighbour, as the transport authenticated it.
#[derive(Debug)]
pub struct Inbound {
    /// The neighbour.
    pub from: AuthorKey,
    /// The frame bytes (untrusted).
    pub frame: Bytes,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The length prefix is over the limit.
    #[error("frame of {0} bytes exceeds the limit")]
    Oversized(usize),
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one length-prefixed frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Bytes>, ReadError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(ReadError::Oversized(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// Writes one length-prefixed frame (not flushed), prefix and body in one write: written apart
/// they left as two yamux frames, two noise frames and two TCP segments, each answered by a
/// bare ACK, whenever the connection task flushed between them, as at idle it does (two idle
/// peers: 2.1 data segments and 1.2 ACKs per heartbeat frame). One copy of the frame is the
/// price.
pub async fn write_frame<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + frame.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(frame);
    w.write_all(&buf).await
}

/// Accepts inbound frame streams and runs a reader per stream, until the node stops.
pub async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    tx: mpsc::Sender<Inbound>,
    shim: Option<Arc<Shim>>,
) {
    let mut readers: HashMap<PeerId, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
    while let Some((peer, stream)) = incoming.next().await {
        let Some(author) = peer::author_of(&peer) else {
            metrics::counter!("vecino_transport_rejected_total", "reason" => "unknown_key_type")
                .increment(1);
            continue;
        };
        readers.retain(|_, hs| {
            hs.retain(|h| !h.is_finished());
            !hs.is_empty()
        });
        let running = readers.entry(peer).or_default();
        if running.len() >= MAX_STREAMS_PER_PEER {
            // The newest stream wins: a peer opens a new one when its writer finds the old one
            // failed, so the oldest reader is the likeliest to be stale (its connection dead on
            // the far side but not yet noticed here). Refusing the newcomer instead left links
            // deaf in one direction for minutes after a partition healed. A peer that opens
            // streams in a loop only churns its own.
            let oldest = running.remove(0);
            oldest.abort();
            metrics::counter!("vecino_transport_streams_replaced_total").increment(1);
        }
        let (tx, shim) = (tx.clone(), shim.clone());
        running.push(tokio::spawn(read_loop(peer, author, stream, tx, shim)));
    }
}

async fn read_loop(
    peer: PeerId,
    author: AuthorKey,
    mut stream: libp2p::Stream,
    tx: mpsc::Sender<Inbound>,
    shim: Option<Arc<Shim>>,
) {
    loop {
        match read_frame(&mut stream).await {
            Ok(Some(frame)) => {
                metrics::counter!("vecino_transport_frames_received_total").increment(1);
                metrics::counter!("vecino_transport_bytes_received_total")
                    .increment(frame.len() as u64 + 4);
                if shim.as_ref().is_some_and(|s| s.is_cut(&peer)) {
                    metrics::counter!("vecino_transport_dropped_total", "reason" => "shim_cut")
                        .increment(1);
                    continue;
                }
                if tx.send(Inbound { from: author, frame }).await.is_err() {
                    return; // the node is stopping
                }
            }
            Ok(None) => return,
            Err(ReadError::Oversized(len)) => {
                tracing::debug!(%peer, len, "oversized frame; resetting the stream");
                metrics::counter!("vecino_transport_rejected_total", "reason" => "oversized")
                    .increment(1);
                return; // dropping the stream resets it
            }
            Err(ReadError::Io(e)) => {
                tracing::trace!(%peer, "frame stream ended: {e}");
                return;
            }
        }
    }
}

/// Frames handed to the writers: the bytes still in their hands (and the most there ever
/// were), and — with back-pressure on — the bytes that left them and are not yet reported to
/// the engine. Shared by the node and every writer task.
#[derive(Debug, Clone)]
pub struct SentMeter(Arc<SentInner>);

#[derive(Debug, Default)]
struct SentInner {
    /// Wake the node when frames leave (back-pressure on).
    report: bool,
    unreported: AtomicUsize,
    held: AtomicUsize,
    peak: AtomicUsize,
    notify: Notify,
}

impl SentMeter {
    /// A meter; `report`: wake [`SentMeter::reported`] whenever frames leave.
    pub fn new(report: bool) -> Self {
        SentMeter(Arc::new(SentInner { report, ..SentInner::default() }))
    }

    /// Wraps a frame so that its length is counted here until it leaves the writer.
    pub fn track(&self, frame: Bytes) -> Outgoing {
        let held = self.0.held.fetch_add(frame.len(), Ordering::AcqRel) + frame.len();
        self.0.peak.fetch_max(held, Ordering::AcqRel);
        Outgoing { frame, meter: self.clone() }
    }

    /// Bytes that left the writers since the last call.
    pub fn take(&self) -> usize {
        self.0.unreported.swap(0, Ordering::AcqRel)
    }

    /// Bytes in the writers' hands now, and the most there ever were.
    pub fn held(&self) -> (usize, usize) {
        (self.0.held.load(Ordering::Acquire), self.0.peak.load(Ordering::Acquire))
    }

    /// Resolves once frames left the writers since the last call (a report made while no one
    /// waited is kept, so none is missed). Never resolves unless the meter reports.
    pub async fn reported(&self) {
        if self.0.report {
            self.0.notify.notified().await;
        } else {
            std::future::pending::<()>().await;
        }
    }
}

/// A frame on its way to a neighbour. Dropping it — after it was written and flushed, or on
/// any path that loses it — counts it as gone from the writers.
#[derive(Debug)]
pub struct Outgoing {
    frame: Bytes,
    meter: SentMeter,
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let m = &self.meter.0;
        m.held.fetch_sub(self.frame.len(), Ordering::AcqRel);
        if m.report {
            m.unreported.fetch_add(self.frame.len(), Ordering::AcqRel);
            m.notify.notify_one();
        }
    }
}

/// The sending side of one peer's writer task.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Outgoing>,
    /// The task, awaited at shutdown so queued frames (the `chau`) go out.
    pub task: tokio::task::JoinHandle<()>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The writer's queue is full.
    Full,
    /// The writer stopped (its stream failed for good).
    Closed,
}

impl Writer {
    /// Starts the writer for `peer`.
    pub fn spawn(peer: PeerId, control: libp2p_stream::Control, shim: Option<Arc<Shim>>) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let task = tokio::spawn(write_loop(peer, control, rx, shim));
        Writer { tx, task }
    }

    /// Queues a frame; on failure the frame comes back (dropping it counts it as gone).
    pub fn send(&self, frame: Outgoing) -> Result<(), (QueueError, Outgoing)> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => (QueueError::Full, f),
            mpsc::error::TrySendError::Closed(f) => (QueueError::Closed, f),
        })
    }
}

/// The shim's state for one destination: frames waiting for their release time.
#[derive(Debug)]
struct Shaper {
    shim: Arc<Shim>,
    queue: VecDeque<(Instant, Outgoing)>,
    next_free: Instant,
    rng: rand_chacha::ChaCha8Rng,
}

impl Shaper {
    fn push(&mut self, peer: &PeerId, frame: Outgoing) {
        let shape = self.shim.shape(peer);
        let drop_reason = if self.shim.is_cut(peer) {
            Some("shim_cut")
        } else if shape.loss > 0.0 && self.rng.random_bool(shape.loss) {
            Some("shim_loss")
        } else if self.queue.len() >= SHIM_QUEUE {
            Some("shim_queue")
        } else {
            None
        };
        if let Some(reason) = drop_reason {
            metrics::counter!("vecino_transport_dropped_total", "reason" => reason).increment(1);
            return;
        }
        let now = Instant::now();
        let start = self.next_free.max(now);
        let wire = shape.rate_bps.map_or(Duration::ZERO, |bps| {
            Duration::from_secs_f64((frame.frame.len() as f64 + 4.0) * 8.0 / bps as f64)
        });
        self.next_free = start + wire;
        self.queue.push_back((self.next_free + shape.delay, frame));
    }
}

async fn next_frame(
    rx: &mut mpsc::Receiver<Outgoing>,
    shaper: Option<&mut Shaper>,
    peer: &PeerId,
) -> Option<Outgoing> {
    let Some(sh) = shaper else { return rx.recv().await };
    loop {
        let due = sh.queue.front().map(|(t, _)| *t);
        tokio::select! {
            biased;
            () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                let (_, frame) = sh.queue.pop_front()?;
                if sh.shim.is_cut(peer) {
                    metrics::counter!("vecino_transport_dropped_total", "reason" => "shim_cut").increment(1);
                    continue;
                }
                return Some(frame);
            }
            got = rx.recv() => match got {
                Some(frame) => sh.push(peer, frame),
                None => return None,
            },
        }
    }
}

async fn write_loop(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut rx: mpsc::Receiver<Outgoing>,
    shim: Option<Arc<Shim>>,
) {
    let mut shaper = shim.map(|shim| Shaper {
        shim,
        queue: VecDeque::new(),
        next_free: Instant::now(),
        rng: rand_chacha::ChaCha8Rng::from_rng(&mut rand::rng()),
    });
    let mut stream: Option<libp2p::Stream> = None;
    let mut failures = 0u32;
    while let Some(frame) = next_frame(&mut rx, shaper.as_mut(), &peer).await {
        if stream.is_none() {
            match tokio::time::timeout(Duration::from_secs(10), control.open_stream(peer, PROTOCOL))
                .await
            {
                Ok(Ok(s)) => stream = Some(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "cannot open a frame stream: {e}");
                    failures += 1;
                }
                Err(_) => failures += 1,
            }
            if stream.is_none() {
                metrics::counter!("vecino_transport_dropped_total", "reason" => "no_stream")
                    .increment(1);
                if failures >= 3 {
                    return; // the node sees the writer closed and starts another if connected
                }
                continue;
            }
        }
        let s = stream.as_mut().expect("opened above");
        let mut result = write_frame(s, &frame.frame).await;
        let mut bytes = frame.frame.len() as u64 + 4;
        // Held until flushed: dropping them reports them sent.
        let mut batch = vec![frame];
        // Batch whatever is already queued (unshaped only) before flushing.
        if shaper.is_none() {
            while result.is_ok() {
                let Ok(more) = rx.try_recv() else { break };
                bytes += more.frame.len() as u64 + 4;
                result = write_frame(s, &more.frame).await;
                batch.push(more);
            }
        }
        if result.is_ok() {
            result = s.flush().await;
        }
        let frames = batch.len() as u64;
        drop(batch);
        match result {
            Ok(()) => {
                failures = 0;
                metrics::counter!("vecino_transport_frames_sent_total").increment(frames);
                metrics::counter!("vecino_transport_bytes_sent_total").increment(bytes);
            }
            Err(e) => {
                tracing::debug!(%peer, "frame stream failed: {e}");
                metrics::counter!("vecino_transport_dropped_total", "reason" => "stream_failed")
                    .increment(frames);
                stream = None;
                failures += 1;
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
}
