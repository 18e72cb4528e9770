//! The swarm side: listening, connections coming and going (reported to the engine as
//! `LinkUp` on a peer's first connection and `LinkDown` when its last one closes), the
//! per-peer writer tasks that frames go out through, and what identify and mDNS tell the
//! peer book.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use vecino_gossip::{Input, LinkInfo};
use vecino_proto::{AuthorKey, Bytes};

use super::Node;
use super::dialer::{Target, strip_p2p};
use crate::config::Config;
use crate::peer;
use crate::transport::{Behaviour, BehaviourEvent, QueueError, Writer};

/// A connected peer: its connections, and the writer task its frames go out through.
#[derive(Debug)]
pub(super) struct PeerConn {
    pub(super) connections: u32,
    /// The IPs its connections came from or went to (at most one per connection: libp2p
    /// caps those at `transport::MAX_CONNECTIONS_PER_PEER`).
    pub(super) observed: Vec<std::net::IpAddr>,
    pub(super) writer: Option<Writer>,
}

/// Listens on `addrs` and waits (briefly) for the bound addresses: the hey-there advertises
/// them.
pub(super) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> anyhow::Result<Vec<Multiaddr>> {
    for addr in addrs {
        exclusive_tcp(addr)?;
        swarm.listen_on(addr.clone()).with_context(|| format!("cannot listen on {addr}"))?;
    }
    let mut listen = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(deadline);
    let mut reported = 0usize;
    while reported < addrs.len() {
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
    Ok(listen)
}

/// Fails when a TCP listen address's port is already bound by another process.
///
/// libp2p's TCP transport sets `SO_REUSEPORT` on its listeners, so a second node (of the same
/// user) could bind a running one's port without an error and take a share of its inbound
/// connections. A plain bind, without `SO_REUSEPORT`, fails on a port anyone listens on:
/// tried and released just before libp2p binds.
fn exclusive_tcp(addr: &Multiaddr) -> anyhow::Result<()> {
    let mut ip = None;
    let mut port = None;
    for p in addr {
        match p {
            MaProto::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            MaProto::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            MaProto::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else { return Ok(()) };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {addr}: TCP port {port} is already in use on {ip} (another vecino \
             on this host? give this one another port with --listen)"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// The addresses to advertise: the configured ones, else the bound ones, routable first.
pub(super) fn advertised(cfg: &Config, listen: &[Multiaddr]) -> Vec<String> {
    if cfg.advertise.is_empty() {
        let mut l = listen.to_vec();
        // Routable addresses first; loopback last (useful on one host only).
        l.sort_by_key(|a| a.iter().any(|p| matches!(p, MaProto::Ip4(ip) if ip.is_loopback())));
        l.iter().take(vecino_proto::limits::MAX_ADDRS).map(ToString::to_string).collect()
    } else {
        cfg.advertise.iter().map(ToString::to_string).collect()
    }
}

impl Node {
    pub(super) fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let Some(author) = peer::author_of(&peer_id) else {
                    metrics::counter!("vecino_transport_rejected_total", "reason" => "unknown_key_type").increment(1);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                let dialed = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => Some(strip_p2p(address).0),
                    ConnectedPoint::Listener { .. } => None,
                };
                self.dialer.connected(peer_id, dialed);
                let conn = self.conns.entry(peer_id).or_insert(PeerConn {
                    connections: 0,
                    observed: Vec::new(),
                    writer: None,
                });
                conn.connections += 1;
                if let Some(ip) = super::reach::ip_of(endpoint.get_remote_address())
                    && !conn.observed.contains(&ip)
                    && conn.observed.len() < crate::transport::MAX_CONNECTIONS_PER_PEER as usize
                {
                    conn.observed.push(ip);
                }
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
                // A bootstrap peer is dialled by the node alone (by address when given without
                // a peer id): an operator wants to know that it cannot be reached, and at most
                // once per redial backoff is what these come at.
                if peer_id.is_none_or(|p| self.dialer.is_bootstrap(&p)) {
                    tracing::warn!(peer = ?peer_id, "cannot reach a bootstrap peer: {error}");
                    metrics::counter!("vecino_transport_bootstrap_unreachable_total").increment(1);
                } else {
                    tracing::debug!(peer = ?peer_id, "dial failed: {error}");
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { .. },
                ..
            } => {
                metrics::counter!("vecino_transport_rejected_total", "reason" => "connection_limit")
                    .increment(1);
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen.contains(&address) => {
                tracing::info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                // Unsigned, so kept only on the IP the peer's connection came from: a
                // stranger cannot point this node's dials at a third party.
                let observed = self.conns.get(&peer_id).map(|c| c.observed.clone());
                let observed = observed.unwrap_or_default();
                let (plausible, implausible): (Vec<Multiaddr>, Vec<Multiaddr>) = info
                    .listen_addrs
                    .iter()
                    .take(vecino_proto::limits::MAX_ADDRS)
                    .map(|a| strip_p2p(a).0)
                    .partition(|a| super::reach::ip_of(a).is_some_and(|ip| observed.contains(&ip)));
                metrics::counter!("vecino_transport_addrs_announced_total")
                    .increment((plausible.len() + implausible.len()) as u64);
                if !implausible.is_empty() {
                    metrics::counter!("vecino_transport_addrs_refused_total", "reason" => "implausible")
                        .increment(implausible.len() as u64);
                }
                self.dialer.remember(peer_id, plausible);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                let mut peers = BTreeSet::new();
                for (p, a) in found {
                    if p != self.peer_id() {
                        self.dialer.remember(p, vec![a]);
                        peers.insert(p);
                    }
                }
                for p in peers {
                    self.dial(Target::Peer(p));
                }
            }
            _ => {}
        }
    }

    pub(super) fn transmit(&mut self, to: AuthorKey, frame: Bytes) {
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

    pub(super) fn link_info(&self, inbound: bool) -> LinkInfo {
        LinkInfo { rate_bps: self.cfg.link_rate_bps, inbound, shared_medium: false }
    }
}
