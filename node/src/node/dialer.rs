//! The peer book, bootstrap peers, and the dials the node makes of its own accord.
//!
//! Redials have one owner per kind of peer:
//!
//! - **Overlay links are the engine's.** It redials a link whose transport closed once its
//!   backoff is over, keeps away from a peer that said bye, and picks new neighbours
//!   (`Output::Dial`, see `vecino_gossip::io`). The node carries each `Dial` out with the
//!   addresses the engine gave plus those in the book, and never redials a link itself: a
//!   second owner would undo the engine's backoff and its byes (a trimmed link redialled at
//!   once comes back eager on every tree).
//! - **Bootstrap peers are the node's**, the engine knowing nothing of them until they are
//!   linked. They are dialled at start, with up to [`BOOK_DIAL_AT_START`] peers of the book
//!   (peers met before); after that they are redialled only while the node has
//!   no transport connection at all, with exponential backoff from [`REDIAL_MIN`] up to
//!   `--redial-max-secs` (jittered), reset by any connection. A bootstrap address given
//!   without a peer id is dialled by address until a connection names its peer.
//!
//! mDNS discoveries are dialled once, when found (discovery, not redial).
//!
//! The book keeps up to `MAX_ADDRS` addresses per peer, newest first, in memory and in the
//! store (for dialling after a restart); addresses the engine gives for a dial are added in
//! memory, up to twice that. It holds at most [`MAX_BOOK`] peers besides the bootstrap ones:
//! every peer that connects adds itself, so a bound keeps fresh keys from growing it (and its
//! copy on disk) without end. Changes are saved together, once per housekeeping tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;
use vecino_gossip::Input;
use vecino_proto::AuthorKey;
use vecino_proto::limits::MAX_ADDRS;

use super::Node;
use crate::peer;

/// Peers of the peer book dialled at start, at most.
const BOOK_DIAL_AT_START: usize = 16;
/// Peers in the peer book at most, bootstrap peers aside; beyond it, the one heard of
/// longest ago is forgotten.
const MAX_BOOK: usize = 1_024;
/// Shortest bootstrap redial backoff (the first redial waits twice this).
const REDIAL_MIN: Duration = Duration::from_millis(500);
/// A node never connected since it started redials its bootstrap peers at least this often,
/// for [`JOINING_FOR`]: a fleet started at once (containers, pods) has names and listeners
/// that appear seconds apart, and a doubling backoff would let a joiner sleep past them.
const JOINING_REDIAL_MAX: Duration = Duration::from_secs(2);
/// How long after its start a never-connected node keeps to [`JOINING_REDIAL_MAX`].
const JOINING_FOR: Duration = Duration::from_secs(60);

/// Something to dial: a known peer (at its book addresses), or a bare address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Peer(PeerId),
    Addr(Multiaddr),
}

/// A peer in the book.
#[derive(Debug, Default)]
struct Known {
    /// Newest first.
    addrs: Vec<Multiaddr>,
    /// When it was last heard of, on the book's own count.
    heard: u64,
}

/// The peer book and the bootstrap peers, with their redial backoff.
#[derive(Debug)]
pub(super) struct Dialer {
    /// Known addresses per peer (at most `MAX_BOOK` peers besides the bootstrap ones).
    book: HashMap<PeerId, Known>,
    /// Counts what the book heard, for [`Known::heard`].
    heard: u64,
    /// Changes not saved yet: a peer to save (`true`) or to forget (`false`).
    unsaved: BTreeMap<PeerId, bool>,
    /// Bootstrap peers by id (given with one, or named by their first connection).
    bootstrap: BTreeSet<PeerId>,
    /// Bootstrap addresses given without a peer id, until a connection names them.
    unnamed: Vec<Multiaddr>,
    /// Bootstrap redials since the node was last connected, and the earliest next one.
    attempt: u32,
    next: Instant,
    redial_max: Duration,
    /// Until when a node never connected redials at least every [`JOINING_REDIAL_MAX`]
    /// (`None` once it has been connected).
    joining_until: Option<Instant>,
}

impl Dialer {
    /// The book as stored (peer id bytes and address strings; what does not parse is
    /// skipped), with the `bootstrap` addresses added; `me` is never dialled.
    pub(super) fn new(
        stored: impl IntoIterator<Item = (Vec<u8>, Vec<String>)>,
        bootstrap: &[Multiaddr],
        me: PeerId,
        redial_max: Duration,
        now: Instant,
    ) -> Self {
        let mut d = Dialer {
            book: HashMap::new(),
            heard: 0,
            unsaved: BTreeMap::new(),
            bootstrap: BTreeSet::new(),
            unnamed: Vec::new(),
            attempt: 0,
            next: now,
            redial_max,
            joining_until: Some(now + JOINING_FOR),
        };
        for b in bootstrap {
            match strip_p2p(b) {
                (addr, Some(p)) if p != me => {
                    d.bootstrap.insert(p);
                    let known = &mut d.known(p).addrs;
                    if !known.contains(&addr) {
                        known.push(addr);
                    }
                }
                (_, Some(_)) => {}
                (addr, None) => d.unnamed.push(addr),
            }
        }
        for (k, addrs) in stored {
            let Ok(p) = PeerId::from_bytes(&k) else { continue };
            if d.book.len() >= MAX_BOOK + d.bootstrap.len() && !d.book.contains_key(&p) {
                d.unsaved.insert(p, false); // a book saved before the bound, or a larger one
                continue;
            }
            let known = d.known(p);
            for a in addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                if !known.addrs.contains(&a) {
                    known.addrs.push(a);
                }
            }
        }
        d
    }

    /// `peer`'s entry, added (and the peer heard of longest ago forgotten, if the book is
    /// full) if it has none.
    fn known(&mut self, peer: PeerId) -> &mut Known {
        self.heard += 1;
        if !self.book.contains_key(&peer) && self.book.len() >= MAX_BOOK + self.bootstrap.len() {
            let oldest = self
                .book
                .iter()
                .filter(|(p, _)| !self.bootstrap.contains(p))
                .min_by_key(|(p, k)| (k.heard, **p))
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.book.remove(&p);
                self.unsaved.insert(p, false);
            }
        }
        let known = self.book.entry(peer).or_default();
        known.heard = self.heard;
        known
    }

    /// What to dial at start: the bootstrap peers and some of the book. Counts as the first
    /// bootstrap attempt.
    pub(super) fn at_start(&mut self, now: Instant) -> Vec<Target> {
        let mut out = self.bootstrap_targets();
        out.extend(
            self.book
                .keys()
                .filter(|p| !self.bootstrap.contains(p))
                .take(BOOK_DIAL_AT_START)
                .map(|p| Target::Peer(*p)),
        );
        self.attempt = 1;
        self.next = now + self.backoff(1);
        out
    }

    /// The bootstrap peers to redial now: none while the node has a connection (which resets
    /// the backoff), else all of them once the backoff is over.
    pub(super) fn due(&mut self, now: Instant, connected: bool) -> Vec<Target> {
        if connected {
            self.attempt = 0;
            self.next = now;
            self.joining_until = None;
            return Vec::new();
        }
        if self.next > now {
            return Vec::new();
        }
        self.attempt = self.attempt.saturating_add(1);
        let mut wait = self.backoff(self.attempt);
        if self.joining_until.is_some_and(|t| now < t) {
            wait = wait.min(JOINING_REDIAL_MAX);
        }
        self.next = now + wait;
        self.bootstrap_targets()
    }

    fn bootstrap_targets(&self) -> Vec<Target> {
        let named = self.bootstrap.iter().map(|p| Target::Peer(*p));
        named.chain(self.unnamed.iter().cloned().map(Target::Addr)).collect()
    }

    /// `REDIAL_MIN × 2^attempt`, at most `redial_max`, ±20 %.
    fn backoff(&self, attempt: u32) -> Duration {
        let d = REDIAL_MIN.saturating_mul(1u32 << attempt.min(16)).min(self.redial_max);
        d.mul_f64(rand::random_range(0.8..1.2))
    }

    /// A connection to `peer` is up; `dialed` is the address this node dialled, if it did.
    /// A bootstrap address given without a peer id is named by it.
    pub(super) fn connected(&mut self, peer: PeerId, dialed: Option<Multiaddr>) {
        let Some(addr) = dialed else { return };
        if let Some(i) = self.unnamed.iter().position(|a| a == &addr) {
            self.unnamed.swap_remove(i);
            self.bootstrap.insert(peer);
        }
        self.remember(peer, vec![addr]);
    }

    /// True for a peer given with `--bootstrap`.
    pub(super) fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap.contains(peer)
    }

    /// Adds addresses to the book, newest first, keeping [`MAX_ADDRS`].
    pub(super) fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let known = &mut self.known(peer).addrs;
        let mut changed = false;
        for a in addrs.into_iter().rev() {
            if known.first() != Some(&a) {
                known.retain(|b| b != &a);
                known.insert(0, a);
                changed = true;
            }
        }
        known.truncate(MAX_ADDRS);
        if changed {
            self.unsaved.insert(peer, true);
        }
    }

    /// The book's changes since last asked: peers to save with their addresses, and peers to
    /// forget (as peer id bytes, the store's keys).
    #[allow(clippy::type_complexity)]
    pub(super) fn unsaved(&mut self) -> (Vec<(Vec<u8>, Vec<String>)>, Vec<Vec<u8>>) {
        let (mut put, mut forget) = (Vec::new(), Vec::new());
        for (p, keep) in std::mem::take(&mut self.unsaved) {
            match self.book.get(&p) {
                Some(k) if keep => {
                    put.push((p.to_bytes(), k.addrs.iter().map(ToString::to_string).collect()))
                }
                _ => forget.push(p.to_bytes()),
            }
        }
        (put, forget)
    }

    /// Adds the addresses the engine gave for a dial after those known (in memory only, up to
    /// twice [`MAX_ADDRS`]).
    pub(super) fn add_given(&mut self, peer: PeerId, addrs: &[String]) {
        let known = &mut self.known(peer).addrs;
        for a in addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
            let a = strip_p2p(&a).0;
            if !known.contains(&a) && known.len() < MAX_ADDRS * 2 {
                known.push(a);
            }
        }
    }

    /// The addresses known for `peer`.
    pub(super) fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.book.get(peer).map(|k| k.addrs.clone()).unwrap_or_default()
    }
}

/// An address without its trailing `/p2p/<peer id>`, and the peer id.
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
    /// Carries out `Output::Dial`: the engine wants a link to `peer`.
    pub(super) fn dial_author(&mut self, peer: AuthorKey, addrs: &[String]) {
        let Some(pid) = peer::peer_id_of(&peer) else { return };
        if self.conns.contains_key(&pid) {
            // Already connected: the link is up as far as the transport goes (fed once the
            // outputs before and after this one are carried out).
            let info = self.link_info(false);
            self.followups.push_back(Input::LinkUp { peer, info });
            return;
        }
        self.dialer.add_given(pid, addrs);
        self.dial(Target::Peer(pid));
    }

    /// Dials a peer at its book addresses (unless connected or dialling already), or an
    /// address.
    pub(super) fn dial(&mut self, target: Target) {
        let opts = match target {
            Target::Peer(pid) => {
                if pid == self.peer_id() || self.conns.contains_key(&pid) {
                    return;
                }
                let mut addrs = self.dialer.addrs(&pid);
                if !self.dialer.is_bootstrap(&pid) {
                    // Addresses another peer announced: only where this node could be, a few
                    // per dial, and dials within the budget (see `reach.rs`).
                    let before = addrs.len();
                    addrs.retain(|a| super::reach::in_scope(a, &self.listen));
                    if addrs.len() < before {
                        metrics::counter!("vecino_transport_addrs_refused_total", "reason" => "scope")
                            .increment((before - addrs.len()) as u64);
                    }
                    addrs.truncate(super::reach::ADDRS_PER_DIAL);
                    if !addrs.is_empty() && !self.dial_budget.take(Instant::now()) {
                        metrics::counter!("vecino_transport_dials_refused_total").increment(1);
                        return;
                    }
                }
                if addrs.is_empty() {
                    return;
                }
                DialOpts::peer_id(pid)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build()
            }
            Target::Addr(addr) => addr.into(),
        };
        metrics::counter!("vecino_transport_dials_total").increment(1);
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!("dial refused: {e}");
        }
    }

    pub(super) fn dial_at_start(&mut self) {
        for t in self.dialer.at_start(Instant::now()) {
            self.dial(t);
        }
    }

    /// Redials the bootstrap peers if the node has been left without connections.
    pub(super) fn redial_bootstrap(&mut self, now: Instant) {
        for t in self.dialer.due(now, !self.conns.is_empty()) {
            self.dial(t);
        }
    }

    /// Saves what changed in the peer book, in one write. A failed save is logged, not
    /// fatal: the book is a cache (what failed is not tried again).
    pub(super) fn save_book(&mut self) {
        let (put, forget) = self.dialer.unsaved();
        if put.is_empty() && forget.is_empty() {
            return;
        }
        let store = &self.store;
        if let Err(e) = tokio::task::block_in_place(|| store.save_peers(&put, &forget)) {
            tracing::warn!("cannot save the peer book: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(seed: u8) -> PeerId {
        let id = vecino_proto::Identity::from_seed([seed; 32]);
        peer::peer_id_of(&id.public()).unwrap()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    fn with_id(a: &Multiaddr, p: PeerId) -> Multiaddr {
        a.clone().with(MaProto::P2p(p))
    }

    const MAX: Duration = Duration::from_secs(30);

    /// A node that has not been connected since it started redials at least every 2 s for its
    /// first minute (names of a fleet started at once appear seconds apart), then backs off.
    #[test]
    fn a_joining_node_redials_often_for_its_first_minute() {
        let (me, b) = (pid(1), pid(2));
        let t0 = Instant::now();
        let mut d = Dialer::new([], &[with_id(&addr(1), b)], me, MAX, t0);
        assert_eq!(d.at_start(t0), vec![Target::Peer(b)]);
        let mut t = t0;
        let mut waits = Vec::new();
        while t < t0 + JOINING_FOR + MAX * 2 {
            let from = t;
            t += Duration::from_millis(10);
            while d.due(t, false).is_empty() {
                t += Duration::from_millis(10);
            }
            waits.push(((from - t0).as_secs_f64(), (t - from).as_secs_f64()));
        }
        assert!(
            waits.iter().filter(|(at, _)| *at < 58.0).all(|(_, w)| *w <= 2.0 + 0.011),
            "{waits:?}"
        );
        assert!(waits.iter().any(|(_, w)| *w > 10.0), "it backs off after: {waits:?}");
        // Once connected, never again: a later cut backs off from the start.
        let mut d = Dialer::new([], &[with_id(&addr(1), b)], me, MAX, t0);
        d.at_start(t0);
        assert!(d.due(t0, true).is_empty());
        assert_eq!(d.due(t0, false), vec![Target::Peer(b)]);
        let mut t = t0;
        let mut last = 0.0;
        for _ in 0..5 {
            let from = t;
            t += Duration::from_millis(10);
            while d.due(t, false).is_empty() {
                t += Duration::from_millis(10);
            }
            last = (t - from).as_secs_f64();
        }
        assert!(last > 2.5, "the fifth wait after a cut, {last} s, is the backoff's");
    }

    #[test]
    fn bootstrap_peers_are_redialled_only_while_unconnected_with_a_growing_backoff() {
        let (me, b) = (pid(1), pid(2));
        let t0 = Instant::now();
        let boot = [with_id(&addr(1), b), addr(2), with_id(&addr(3), me)];
        let mut d = Dialer::new([], &boot, me, MAX, t0);
        // Past its first minute (a joining node redials more often: the test above).
        d.joining_until = None;
        let both = vec![Target::Peer(b), Target::Addr(addr(2))];
        assert_eq!(d.at_start(t0), both, "never this node");
        assert_eq!(d.addrs(&b), vec![addr(1)]);
        // The start was the first try: the next waits its backoff (1 s ± 20 %).
        assert!(d.due(t0, false).is_empty());
        assert!(d.due(t0 + Duration::from_millis(790), false).is_empty());
        let mut t = t0 + Duration::from_millis(1_210);
        assert_eq!(d.due(t, false), both);
        // Each wait doubles, up to the maximum.
        let mut waits = Vec::new();
        for _ in 0..8 {
            let from = t;
            while d.due(t, false).is_empty() {
                t += Duration::from_millis(10);
            }
            waits.push((t - from).as_secs_f64());
        }
        for w in waits.windows(2) {
            assert!(w[1] > w[0] * 1.3 || w[1] > 0.79 * MAX.as_secs_f64(), "{waits:?}");
        }
        assert!(waits.iter().all(|w| *w <= 1.21 * MAX.as_secs_f64()), "{waits:?}");
        // Connected: nothing to redial, and the backoff starts over.
        assert!(d.due(t, true).is_empty());
        assert!(d.due(t + MAX * 10, true).is_empty());
        assert_eq!(d.due(t + MAX * 10, false), both);
        assert!(d.due(t + MAX * 10 + Duration::from_millis(790), false).is_empty());
    }

    #[test]
    fn a_bootstrap_address_without_a_peer_id_is_named_by_its_connection() {
        let (me, b) = (pid(1), pid(2));
        let t0 = Instant::now();
        let mut d = Dialer::new([], &[addr(2)], me, MAX, t0);
        // An inbound connection names nothing.
        d.connected(b, None);
        assert_eq!(d.unsaved(), (vec![], vec![]));
        assert_eq!(d.at_start(t0), vec![Target::Addr(addr(2))]);
        d.connected(b, Some(addr(2)));
        assert_eq!(d.unsaved(), (vec![(b.to_bytes(), vec![addr(2).to_string()])], vec![]));
        let later = t0 + MAX * 10;
        assert_eq!(d.due(later, false), vec![Target::Peer(b)], "redialled by id from now on");
        assert_eq!(d.addrs(&b), vec![addr(2)]);
    }

    #[test]
    fn the_book_keeps_the_newest_addresses_and_saves_only_changes() {
        let (me, b) = (pid(1), pid(2));
        let stored = [(b.to_bytes(), vec![addr(1).to_string(), "not an address".into()])];
        let mut d = Dialer::new(stored, &[], me, MAX, Instant::now());
        assert_eq!(d.addrs(&b), vec![addr(1)]);
        assert_eq!(d.at_start(Instant::now()), vec![Target::Peer(b)], "the book is dialled");
        d.remember(b, vec![addr(1)]);
        assert_eq!(d.unsaved(), (vec![], vec![]), "unchanged");
        let all: Vec<Multiaddr> = (10..10 + MAX_ADDRS as u16 + 2).map(addr).collect();
        d.remember(b, all.clone());
        d.remember(b, all.clone());
        let (saved, forgotten) = d.unsaved();
        assert_eq!(saved.len(), 1, "saved once");
        assert_eq!(saved[0].1.len(), MAX_ADDRS);
        assert!(forgotten.is_empty());
        assert_eq!(d.addrs(&b), all[..MAX_ADDRS], "newest first, the first given first");
        // The engine's addresses for a dial come after, in memory only, up to twice as many.
        let given: Vec<String> =
            (100..100 + 3 * MAX_ADDRS as u16).map(|p| with_id(&addr(p), b).to_string()).collect();
        d.add_given(b, &given);
        let known = d.addrs(&b);
        assert_eq!(known.len(), 2 * MAX_ADDRS);
        assert_eq!(known[MAX_ADDRS], addr(100), "without the peer id");
    }

    #[test]
    fn the_book_forgets_the_peer_heard_of_longest_ago_but_never_a_bootstrap_peer() {
        let (me, boot) = (pid(1), pid(2));
        let t0 = Instant::now();
        let many: Vec<PeerId> = (0..MAX_BOOK + 2).map(|_| PeerId::random()).collect();
        // A stored book larger than the bound loads up to it; the rest is forgotten on disk.
        let stored: Vec<_> =
            many.iter().map(|p| (p.to_bytes(), vec![addr(1).to_string()])).collect();
        let mut d = Dialer::new(stored, &[with_id(&addr(2), boot)], me, MAX, t0);
        assert_eq!(d.book.len(), MAX_BOOK + 1);
        let (_, forgotten) = d.unsaved();
        assert_eq!(forgotten.len(), 2);

        let in_book: Vec<PeerId> =
            many.iter().copied().filter(|p| d.book.contains_key(p)).collect();
        // Hear from all of them but the first again, then from a newcomer: the first goes.
        for p in &in_book[1..] {
            d.remember(*p, vec![addr(3)]);
        }
        let newcomer = PeerId::random();
        d.remember(newcomer, vec![addr(4)]);
        assert_eq!(d.book.len(), MAX_BOOK + 1);
        assert!(!d.book.contains_key(&in_book[0]) && d.book.contains_key(&newcomer));
        assert_eq!(d.addrs(&boot), vec![addr(2)], "the bootstrap peer stays");
        let (saved, forgotten) = d.unsaved();
        assert_eq!(forgotten, vec![in_book[0].to_bytes()]);
        assert_eq!(saved.len(), MAX_BOOK, "the ones heard again, and the newcomer");
    }
}
