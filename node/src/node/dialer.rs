//! The peer book, dials, bootstrap and redials.
//!
//! The book keeps up to `MAX_ADDRS` addresses per peer, newest first, in memory and in the
//! store (for redialling after a restart). At start the node dials its bootstrap peers and up
//! to [`BOOK_DIAL_AT_START`] peers of the book; the housekeeping redials links the engine holds
//! whose transport is gone, and bootstrap peers, with exponential backoff.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;
use vecino_gossip::{Input, LinkStatus};
use vecino_proto::AuthorKey;

use super::Node;
use crate::config::Config;
use crate::peer;
use crate::store::Store;

/// Peers remembered in the peer book and dialled at start, at most.
const BOOK_DIAL_AT_START: usize = 16;
/// Shortest redial backoff.
const REDIAL_MIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub(super) struct Redial {
    attempt: u32,
    next: Instant,
}

/// The peer book from the store, with the bootstrap peers given with a peer id added first;
/// the bootstrap peers by id, and the bootstrap addresses given without one.
#[allow(clippy::type_complexity)]
pub(super) fn peer_book(
    store: &Store,
    cfg: &Config,
    me: PeerId,
) -> anyhow::Result<(HashMap<PeerId, Vec<Multiaddr>>, BTreeSet<PeerId>, Vec<(Multiaddr, Redial)>)> {
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
    Ok((book, bootstrap_named, bootstrap_unnamed))
}

pub(super) fn strip_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
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

impl Node {
    pub(super) fn dial_author(&mut self, peer: AuthorKey, addrs: &[String]) {
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

    pub(super) fn dial(&mut self, pid: PeerId) {
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

    pub(super) fn dial_at_start(&mut self) {
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

    /// Redials links the engine holds whose transport is gone, and bootstrap peers.
    pub(super) fn redial_due(&mut self, now: Instant) {
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
    }

    /// Adds addresses to the peer book (memory and store), newest first.
    pub(super) fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
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
}
