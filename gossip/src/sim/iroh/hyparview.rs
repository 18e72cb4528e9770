//! HyParView as iroh-gossip runs it, ported message for message from
//! `n0-computer/iroh-gossip` @ 2ce78af `src/proto/hyparview.rs` (Leitão, Pereira, Rodrigues,
//! "HyParView: a membership protocol for reliable gossip-based broadcast", DSN 2007), with
//! peers as indexes and without peer data (its bytes are counted in [`sizes`]).
//!
//! The active view (≤ [`ACTIVE_VIEW`]) are the peers this one holds a connection to; the
//! passive view (≤ [`PASSIVE_VIEW`]) the peers it knows of. A joining peer sends `Join`; the
//! contact adds it (evicting a random active peer if full) and sends `ForwardJoin` random walks
//! ([`ACTIVE_RWL`] hops; added to passive views at [`PASSIVE_RWL`]). A peer whose connection to
//! an active peer closes replaces it with a random passive peer (`Neighbor`, high priority when
//! the active view is empty; unanswered after [`NEIGHBOR_TIMEOUT`]: the next one). Every
//! [`SHUFFLE_INTERVAL`] a peer sends [`SHUFFLE_ACTIVE`] active and [`SHUFFLE_PASSIVE`] passive
//! peers and itself on a random walk of [`SHUFFLE_RWL`] hops; the end of the walk answers
//! with as many of its own, directly (a connection of its own, closed when the answer is in).

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// `active_view_capacity` ("from the paper (p9)").
pub const ACTIVE_VIEW: usize = 5;
/// `passive_view_capacity`.
pub const PASSIVE_VIEW: usize = 30;
/// `active_random_walk_length`.
pub const ACTIVE_RWL: u16 = 6;
/// `passive_random_walk_length`.
pub const PASSIVE_RWL: u16 = 3;
/// `shuffle_random_walk_length`.
pub const SHUFFLE_RWL: u16 = 6;
/// `shuffle_active_view_count`.
pub const SHUFFLE_ACTIVE: usize = 3;
/// `shuffle_passive_view_count`.
pub const SHUFFLE_PASSIVE: usize = 4;
/// `shuffle_interval` ("wild guess").
pub const SHUFFLE_INTERVAL: Duration = Duration::from_secs(60);
/// `neighbor_request_timeout` ("wild guess").
pub const NEIGHBOR_TIMEOUT: Duration = Duration::from_millis(500);

/// A HyParView message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    Join,
    ForwardJoin { peer: u32, ttl: u16 },
    Shuffle { origin: u32, nodes: Vec<u32>, ttl: u16 },
    ShuffleReply { nodes: Vec<u32> },
    Neighbor { high: bool },
    Disconnect { alive: bool },
}

/// Sizes of iroh-gossip's messages on their QUIC stream, postcard-encoded behind a 4-byte
/// length (`net/util.rs` `write_frame`): `MessageKind::Swarm` and variant tags (1 byte each),
/// endpoint ids (32 bytes), peer data as iroh-gossip fills it (`net.rs` `AddrInfo`: no relay
/// URL, two direct IPv4 addresses: 20 bytes with its option and length bytes), TTLs as 1-byte
/// varints.
pub mod sizes {
    /// The length prefix and the two enum tags.
    const HEAD: usize = 4 + 1 + 1;
    /// `Option<PeerData>` of a peer with two direct IPv4 addresses.
    pub const PEER_DATA: usize = 20;
    /// `PeerInfo`: id and data.
    pub const PEER_INFO: usize = 32 + PEER_DATA;

    pub(crate) fn of(m: &super::Message) -> usize {
        HEAD + match m {
            super::Message::Join => PEER_DATA,
            super::Message::ForwardJoin { .. } => PEER_INFO + 1,
            super::Message::Shuffle { nodes, .. } => 32 + 1 + nodes.len() * PEER_INFO + 1,
            super::Message::ShuffleReply { nodes } => 1 + nodes.len() * PEER_INFO,
            super::Message::Neighbor { .. } => 1 + PEER_DATA,
            super::Message::Disconnect { .. } => 2,
        }
    }
}

/// What HyParView asks of the layer below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    Send(u32, Message),
    /// Close the connection to the peer.
    Disconnect(u32),
    NeighborUp(u32),
    NeighborDown(u32),
    /// Run [`State::shuffle_timer`] after the delay.
    ShuffleTimer(Duration),
    /// Run [`State::neighbor_timer`] for the peer after the delay.
    NeighborTimer(Duration, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Random,
    DisconnectReceived { alive: bool },
    ConnectionClosed,
}

/// An insertion-ordered set with iroh-gossip's `IndexSet` operations (its `remove` swaps the
/// last element in; `remove_random` shifts).
#[derive(Debug, Default, Clone)]
pub(crate) struct View(Vec<u32>);

impl View {
    pub(crate) fn contains(&self, p: u32) -> bool {
        self.0.contains(&p)
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    fn insert(&mut self, p: u32) -> bool {
        if self.contains(p) {
            return false;
        }
        self.0.push(p);
        true
    }
    fn remove(&mut self, p: u32) -> bool {
        match self.0.iter().position(|&x| x == p) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }
    fn remove_index(&mut self, i: usize) -> Option<u32> {
        (i < self.0.len()).then(|| self.0.swap_remove(i))
    }
    fn remove_random(&mut self, rng: &mut ChaCha8Rng) -> Option<u32> {
        if self.0.is_empty() {
            return None;
        }
        let i = below(rng, self.0.len());
        Some(self.0.remove(i))
    }
    fn pick_random_without(&self, without: &[u32], rng: &mut ChaCha8Rng) -> Option<u32> {
        let pool: Vec<u32> = self.iter().filter(|p| !without.contains(p)).collect();
        (!pool.is_empty()).then(|| pool[below(rng, pool.len())])
    }
    fn shuffled_without_and_capped(
        &self,
        without: &[u32],
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u32> {
        let mut v: Vec<u32> = self.iter().filter(|p| !without.contains(p)).collect();
        for i in (1..v.len()).rev() {
            v.swap(i, below(rng, i + 1));
        }
        v.truncate(n);
        v
    }
}

fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One peer's HyParView state.
#[derive(Debug)]
pub(crate) struct State {
    me: u32,
    pub(crate) active: View,
    pub(crate) passive: View,
    shuffle_scheduled: bool,
    /// Neighbor requests sent and not answered: at most the active view's free slots, and
    /// the requests a full view refills.
    pending: BTreeSet<u32>,
    /// Peers that disconnected alive: kept in the passive view when their connection closes.
    alive_disconnect: BTreeSet<u32>,
    pub(crate) out: Vec<Out>,
}

impl State {
    pub(crate) fn new(me: u32) -> Self {
        Self {
            me,
            active: View::default(),
            passive: View::default(),
            shuffle_scheduled: false,
            pending: BTreeSet::new(),
            alive_disconnect: BTreeSet::new(),
            out: Vec::new(),
        }
    }

    /// After each input (iroh-gossip's `handle`): the shuffle timer on the first one.
    fn after(&mut self) {
        if !self.shuffle_scheduled {
            self.out.push(Out::ShuffleTimer(SHUFFLE_INTERVAL));
            self.shuffle_scheduled = true;
        }
    }

    pub(crate) fn request_join(&mut self, peer: u32) {
        self.out.push(Out::Send(peer, Message::Join));
        self.after();
    }

    pub(crate) fn message(&mut self, from: u32, m: Message, rng: &mut ChaCha8Rng) {
        let is_disconnect = matches!(m, Message::Disconnect { .. });
        match m {
            Message::Join => self.on_join(from, rng),
            Message::ForwardJoin { peer, ttl } => self.on_forward_join(from, peer, ttl, rng),
            Message::Shuffle { origin, nodes, ttl } => {
                self.on_shuffle(from, origin, nodes, ttl, rng)
            }
            Message::ShuffleReply { nodes } => {
                for n in nodes {
                    self.add_passive(n, rng);
                }
                self.refill(&[], rng);
            }
            Message::Neighbor { high } => {
                let is_reply = self.pending.remove(&from);
                if !self.add_active(from, high, !is_reply, rng) {
                    self.send_disconnect(from, true, rng);
                }
            }
            Message::Disconnect { alive } => {
                self.pending.remove(&from);
                if self.active.contains(from) {
                    self.remove_active(from, Removal::DisconnectReceived { alive }, rng);
                } else if alive && self.passive.contains(from) {
                    self.alive_disconnect.insert(from);
                }
            }
        }
        // "Disconnect from passive nodes right after receiving a message."
        if !is_disconnect && !self.active.contains(from) {
            self.out.push(Out::Disconnect(from));
        }
        self.after();
    }

    pub(crate) fn connection_closed(&mut self, peer: u32, rng: &mut ChaCha8Rng) {
        self.pending.remove(&peer);
        if self.active.contains(peer) {
            self.remove_active(peer, Removal::ConnectionClosed, rng);
        } else if !self.alive_disconnect.remove(&peer) {
            self.passive.remove(peer);
        }
        self.after();
    }

    pub(crate) fn shuffle_timer(&mut self, rng: &mut ChaCha8Rng) {
        if let Some(node) = self.active.pick_random_without(&[], rng) {
            let mut nodes = self.active.shuffled_without_and_capped(&[node], SHUFFLE_ACTIVE, rng);
            nodes.extend(self.passive.shuffled_without_and_capped(&[node], SHUFFLE_PASSIVE, rng));
            nodes.push(self.me);
            let m = Message::Shuffle { origin: self.me, nodes, ttl: SHUFFLE_RWL };
            self.out.push(Out::Send(node, m));
        }
        self.out.push(Out::ShuffleTimer(SHUFFLE_INTERVAL));
    }

    pub(crate) fn neighbor_timer(&mut self, peer: u32, rng: &mut ChaCha8Rng) {
        if self.pending.remove(&peer) {
            self.passive.remove(peer);
            self.refill(&[], rng);
        }
    }

    fn on_join(&mut self, peer: u32, rng: &mut ChaCha8Rng) {
        self.add_active(peer, true, true, rng);
        let others: Vec<u32> = self.active.iter().filter(|&p| p != peer).collect();
        for node in others {
            self.out.push(Out::Send(node, Message::ForwardJoin { peer, ttl: ACTIVE_RWL }));
        }
    }

    fn on_forward_join(&mut self, sender: u32, peer: u32, ttl: u16, rng: &mut ChaCha8Rng) {
        // Already a neighbour (renew), or the walk ends here: ask it to be one.
        if self.active.contains(peer) || ttl == 0 || self.active.len() <= 1 {
            self.send_neighbor(peer, true);
            return;
        }
        if ttl == PASSIVE_RWL {
            self.add_passive(peer, rng);
        }
        if !self.active.contains(peer)
            && !self.pending.contains(&peer)
            && let Some(next) = self.active.pick_random_without(&[sender], rng)
        {
            self.out.push(Out::Send(next, Message::ForwardJoin { peer, ttl: ttl - 1 }));
        }
    }

    fn on_shuffle(
        &mut self,
        from: u32,
        origin: u32,
        nodes: Vec<u32>,
        ttl: u16,
        rng: &mut ChaCha8Rng,
    ) {
        if ttl == 0 || self.active.len() <= 1 {
            let len = nodes.len();
            for n in nodes {
                self.add_passive(n, rng);
            }
            self.send_shuffle_reply(origin, len, rng);
        } else if let Some(node) = self.active.pick_random_without(&[origin, from], rng) {
            let m = Message::Shuffle { origin, nodes, ttl: ttl - 1 };
            self.out.push(Out::Send(node, m));
        }
    }

    fn send_shuffle_reply(&mut self, to: u32, len: usize, rng: &mut ChaCha8Rng) {
        let mut nodes = self.passive.shuffled_without_and_capped(&[], len, rng);
        if nodes.len() < len {
            nodes.extend(self.active.shuffled_without_and_capped(&[], len - nodes.len(), rng));
        }
        self.out.push(Out::Send(to, Message::ShuffleReply { nodes }));
    }

    fn send_disconnect(&mut self, peer: u32, alive: bool, rng: &mut ChaCha8Rng) {
        self.send_shuffle_reply(peer, SHUFFLE_ACTIVE + SHUFFLE_PASSIVE, rng);
        self.out.push(Out::Send(peer, Message::Disconnect { alive }));
        self.out.push(Out::Disconnect(peer));
    }

    fn add_passive(&mut self, peer: u32, rng: &mut ChaCha8Rng) {
        if self.active.contains(peer) || self.passive.contains(peer) || peer == self.me {
            return;
        }
        if self.passive.len() >= PASSIVE_VIEW {
            self.passive.remove_random(rng);
        }
        self.passive.insert(peer);
    }

    fn remove_active(&mut self, peer: u32, reason: Removal, rng: &mut ChaCha8Rng) {
        let index = self.active.iter().position(|p| p == peer);
        if let Some(removed) = index.and_then(|i| self.remove_active_index(i, reason, rng)) {
            self.refill(&[removed], rng);
        }
    }

    fn refill(&mut self, skip: &[u32], rng: &mut ChaCha8Rng) {
        if self.active.len() + self.pending.len() >= ACTIVE_VIEW {
            return;
        }
        let mut skip = skip.to_vec();
        skip.extend(self.pending.iter().copied());
        if let Some(node) = self.passive.pick_random_without(&skip, rng) {
            let high = self.active.is_empty();
            self.send_neighbor(node, high);
            self.out.push(Out::NeighborTimer(NEIGHBOR_TIMEOUT, node));
        }
    }

    fn remove_active_index(
        &mut self,
        i: usize,
        reason: Removal,
        rng: &mut ChaCha8Rng,
    ) -> Option<u32> {
        let peer = self.active.remove_index(i)?;
        self.out.push(Out::NeighborDown(peer));
        match reason {
            Removal::Random => self.send_disconnect(peer, true, rng),
            Removal::DisconnectReceived { .. } | Removal::ConnectionClosed => {
                self.out.push(Out::Disconnect(peer));
            }
        }
        let keep = match reason {
            Removal::ConnectionClosed => self.alive_disconnect.remove(&peer),
            Removal::DisconnectReceived { alive } => alive,
            Removal::Random => true,
        };
        if keep {
            self.add_passive(peer, rng);
            if reason != Removal::ConnectionClosed {
                self.alive_disconnect.insert(peer);
            }
        }
        Some(peer)
    }

    /// Adds `peer` to the active view (a high-priority request evicts a random peer from a full
    /// one; a low-priority one is refused); `reply`: answer with a `Neighbor`.
    fn add_active(&mut self, peer: u32, high: bool, reply: bool, rng: &mut ChaCha8Rng) -> bool {
        if peer == self.me {
            return false;
        }
        if self.active.contains(peer) {
            if reply {
                self.send_neighbor(peer, high);
            }
            return true;
        }
        let full = self.active.len() >= ACTIVE_VIEW;
        if !high && full {
            return false;
        }
        if full {
            let i = below(rng, self.active.len());
            self.remove_active_index(i, Removal::Random, rng);
        }
        self.passive.remove(peer);
        if self.active.insert(peer) {
            self.out.push(Out::NeighborUp(peer));
            if reply {
                self.send_neighbor(peer, high);
            }
        }
        true
    }

    fn send_neighbor(&mut self, peer: u32, high: bool) {
        if self.pending.insert(peer) {
            self.out.push(Out::Send(peer, Message::Neighbor { high }));
        }
    }
}
