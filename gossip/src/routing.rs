//! Routing by measured latency: the link state peers publish, and the next hop toward a
//! destination.
//!
//! Greedy forwarding on coordinates alone dead-ends on most pairs of a real latency space (it
//! is not greedy-embeddable: on planetlab490 strict greedy over a proximity overlay reaches
//! 35 % of pairs, 54 % even with exact RTTs), and a neighbour-of-neighbour lookahead, though it
//! reaches 95 %, leaves a tail ten times the overlay's own shortest paths. So each peer
//! publishes its links with their measured RTTs (a `LinkState` event: latest-value, scoped by
//! fisheye like presence), and each router holds the link state of the members it keeps: the
//! whole overlay in a full-membership fleet, its fisheye ball in a large one. A route is then
//!
//! - **link state** when the destination is in the graph: the shortest path by measured RTT
//!   (Dijkstra from this peer over its own live links and the links others published), and
//!   its first hop;
//! - **held** when it is in the graph but cut off from this peer (a partition): the custodian
//!   keeps it until a way opens (walking it toward the other side would cost a hop per peer);
//! - **greedy with lookahead** when it is not (a far destination under fisheye): the known
//!   node n minimising (path delay to n) + (predicted delay from n to the destination's
//!   coordinate), provided n is predicted nearer the destination than this peer, and the first
//!   hop toward it. The next router, nearer the destination, knows more.
//!
//! Loops are avoided by construction: a routed event carries its trail (the peers it crossed),
//! and a router leaves those peers out of its graph. The first hop must be a connected link
//! (not suspected, not said bye to); a route through others' links trusts what they published.
//!
//! A peer's own link state is published when its set of links changed and has stayed the same
//! for [`LINK_STATE_SETTLE`] ([`LINK_STATE_SETTLE_LOSS`] when links were only lost; at most every `Config::link_state_min_interval`; its RTTs are
//! those of that moment), and at the latest every `newspaper_max_interval`. RTTs that drift
//! alone are not news: a route needs to know which links exist and roughly how long they are.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use vecino_coords::Coordinate;
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::engine::core::Core;
use crate::published::{published_coordinate, settled};
use crate::time::Time;

/// A set of links must stay the same this long before it is published (a join reshapes a
/// peer's links several times in its first seconds).
const LINK_STATE_SETTLE: Duration = Duration::from_secs(10);

/// The same when links were only lost (suspected, gone): sooner, because until the peers
/// around hear it they route through links that no longer carry (a cut: each hands the
/// postcard on to the next peer that still lists a link across).
const LINK_STATE_SETTLE_LOSS: Duration = Duration::from_secs(2);
/// What one more hop costs on top of its link's one-way delay (a relay's queueing and
/// processing), in microseconds: among paths of about the same delay the one with fewer hops
/// wins.
const HOP_COST_US: u64 = 1_000;
/// The delay assumed for a link whose RTT was not measured yet, microseconds (one way).
const UNMEASURED_US: u64 = 500_000;

/// A node of the routing graph: a peer by the first 8 bytes of its key (as announcements name
/// authors).
type Node = u64;

/// What a router decided for one routed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Hand it to this neighbour, which is the destination.
    Destination(AuthorKey),
    /// Hand it to this neighbour, first hop of the shortest known path to the destination.
    LinkState(AuthorKey),
    /// Hand it to this neighbour, first hop toward the known peer that makes the most progress
    /// toward the destination's coordinate.
    Greedy(AuthorKey),
    /// No neighbour makes progress now: keep it (store-carry-forward).
    Hold,
}

impl Hop {
    /// The neighbour to hand it to, if any.
    pub(crate) fn neighbour(self) -> Option<AuthorKey> {
        match self {
            Hop::Destination(p) | Hop::LinkState(p) | Hop::Greedy(p) => Some(p),
            Hop::Hold => None,
        }
    }
}

/// The routing machine: this peer's link-state gate. The graph is built from the store at
/// each decision (the link-state events it holds are its whole input).
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// The links last published (prefix → RTT in 100 µs), and when.
    published: Option<(Time, BTreeMap<Node, u32>)>,
    /// The set of links as last seen, and since when it has not changed.
    current: Option<(Time, Vec<Node>)>,
}

/// RTT in the wire's unit (100 µs), at least 1.
fn rtt_units(rtt: Duration) -> u32 {
    u32::try_from(rtt.as_micros() / 100).unwrap_or(u32::MAX).max(1)
}

/// This peer's links as it would publish them: connected, not said bye to, by prefix, with
/// the median measured RTT (links not measured yet are left out).
fn own_links<R>(core: &Core<R>) -> BTreeMap<Node, u32> {
    core.links
        .iter()
        .filter(|(p, l)| l.connected() && !core.links.leaving(p))
        .filter_map(|(p, l)| Some((p.prefix(), rtt_units(l.rtt()?))))
        .collect()
}

impl Routing {
    /// This peer's link state, if one is due now (see the module docs).
    pub(crate) fn link_state_due<R>(&mut self, core: &Core<R>) -> Option<Body> {
        let min = core.config.link_state_min_interval;
        if min.is_zero() {
            return None; // no link state: postcards route greedily
        }
        let now = core.now;
        let links = own_links(core);
        let set: Vec<Node> = links.keys().copied().collect();
        match &self.current {
            Some((_, s)) if *s == set => {}
            _ => self.current = Some((now, set.clone())),
        }
        let stable_since = self.current.as_ref().map_or(now, |c| c.0);
        let due = match &self.published {
            None => !links.is_empty(),
            Some((at, old)) => {
                let age = now.saturating_since(*at);
                let only_lost = links.keys().all(|p| old.contains_key(p));
                let settle = if only_lost { LINK_STATE_SETTLE_LOSS } else { LINK_STATE_SETTLE };
                let set_changed = old.keys().ne(links.keys())
                    && now.saturating_since(stable_since) >= settle
                    && age >= min;
                set_changed || age >= core.config.newspaper_max_interval
            }
        };
        if !due {
            return None;
        }
        let body = Body::LinkState(pb::LinkState {
            peers: links.keys().copied().collect(),
            rtt_100us: links.values().copied().collect(),
        });
        self.published = Some((now, links));
        Some(body)
    }

    /// The next hop for an event routed to `to` (whose coordinate, if this peer cannot look
    /// it up, is `hint`), having crossed `trail` (left out of the graph), with `avoid`
    /// neighbours not to be used as first hops (they refused it, or failed to take it).
    pub(crate) fn next_hop<R>(
        &self,
        core: &Core<R>,
        to: &AuthorKey,
        hint: Option<Coordinate>,
        trail: &[Node],
        avoid: &[AuthorKey],
    ) -> Hop {
        let usable = |p: &AuthorKey| usable(core, p) && !avoid.contains(p);
        if usable(to) {
            return Hop::Destination(*to);
        }
        let graph = Graph::build(core, trail, &usable);
        let tree = graph.shortest_paths();
        let dest = to.prefix();
        if let Some(first) = tree.first_hop(dest) {
            return graph.neighbour(first).map_or(Hop::Hold, Hop::LinkState);
        }
        if graph.edges.contains_key(&dest) {
            // In the graph but cut off from this peer (a partition): kept here until a way
            // opens. Steering toward its coordinate would only walk it, hop by hop, to the
            // peer of this side nearest the other (on convoy: 5 hops instead of 1).
            return Hop::Hold;
        }
        // Not in the graph (far, beyond this peer's fisheye): steer toward its coordinate.
        let target = published_coordinate(&core.store, *to).or(hint).filter(settled);
        let Some(target) = target else { return Hop::Hold };
        let me = core.coords.app_coordinate();
        let here = me.distance_secs(&target);
        let mut best: Option<(f64, Node)> = None;
        for (&node, &(cost_us, _)) in &tree.reached {
            if node == graph.me {
                continue;
            }
            let Some(c) = graph.coordinates.get(&node) else { continue };
            let left = c.distance_secs(&target);
            if left >= here {
                continue; // no progress
            }
            let score = cost_us as f64 / 1e6 + left / 2.0;
            if best.is_none_or(|(b, n)| score < b || (score == b && node < n)) {
                best = Some((score, node));
            }
        }
        let Some((_, node)) = best else { return Hop::Hold };
        tree.first_hop(node).and_then(|f| graph.neighbour(f)).map_or(Hop::Hold, Hop::Greedy)
    }
}

/// True when `peer` is a neighbour a routed event can be handed to now: its link connected
/// (not suspected), its transport up, not leaving.
pub(crate) fn usable<R>(core: &Core<R>, peer: &AuthorKey) -> bool {
    core.links.get(peer).is_some_and(|l| l.connected() && l.transport_up())
        && !core.links.leaving(peer)
}

/// The routing graph of one decision: this peer's usable links and the published ones.
struct Graph {
    me: Node,
    /// Edges by node: (neighbour, one-way delay µs + hop cost).
    edges: BTreeMap<Node, Vec<(Node, u64)>>,
    /// This peer's neighbours by prefix (the first hops).
    neighbours: BTreeMap<Node, AuthorKey>,
    /// Published coordinates of the nodes this peer can name.
    coordinates: BTreeMap<Node, Coordinate>,
}

/// Shortest paths from this peer: cost and first hop of every reached node.
struct Tree {
    reached: BTreeMap<Node, (u64, Node)>,
}

impl Tree {
    fn first_hop(&self, node: Node) -> Option<Node> {
        self.reached.get(&node).map(|&(_, first)| first).filter(|_| true)
    }
}

impl Graph {
    fn build<R>(core: &Core<R>, trail: &[Node], usable: &dyn Fn(&AuthorKey) -> bool) -> Self {
        let me = core.me.prefix();
        let mut edges: BTreeMap<Node, Vec<(Node, u64)>> = BTreeMap::new();
        let mut neighbours = BTreeMap::new();
        for (peer, l) in core.links.iter() {
            let node = peer.prefix();
            if !usable(peer) || trail.contains(&node) {
                continue;
            }
            let one_way = l.rtt().map_or(UNMEASURED_US, |r| r.as_micros() as u64 / 2);
            edges.entry(me).or_default().push((node, one_way + HOP_COST_US));
            neighbours.insert(node, *peer);
        }
        let mut coordinates = BTreeMap::new();
        let mut published: BTreeMap<Node, &pb::LinkState> = BTreeMap::new();
        for ev in core.store.latest_events() {
            let author = ev.author();
            if let Some(c) = coordinate_of(core, ev) {
                coordinates.insert(author.prefix(), c);
            }
            if let Body::LinkState(ls) = ev.body() {
                published.insert(author.prefix(), ls);
            }
        }
        // A link counts when both ends list it (OSPF's two-way check), or when the other end
        // published nothing: across a cut each side's newer link state drops the links
        // across, but the other side's older one, which cannot cross, still lists them.
        let listed =
            |by: Node, peer: Node| published.get(&by).is_none_or(|ls| ls.peers.contains(&peer));
        for (&from, ls) in &published {
            if from == me || trail.contains(&from) {
                continue;
            }
            for (&to, &rtt) in ls.peers.iter().zip(&ls.rtt_100us) {
                if to == me || trail.contains(&to) || !listed(to, from) {
                    continue;
                }
                let one_way = u64::from(rtt) * 50 + HOP_COST_US;
                edges.entry(from).or_default().push((to, one_way));
                edges.entry(to).or_default().push((from, one_way));
            }
        }
        Self { me, edges, neighbours, coordinates }
    }

    fn neighbour(&self, node: Node) -> Option<AuthorKey> {
        self.neighbours.get(&node).copied()
    }

    fn shortest_paths(&self) -> Tree {
        let mut reached: BTreeMap<Node, (u64, Node)> = BTreeMap::new();
        let mut heap = BinaryHeap::new();
        reached.insert(self.me, (0, self.me));
        heap.push(Reverse((0u64, self.me, self.me)));
        let mut done = std::collections::BTreeSet::new();
        while let Some(Reverse((cost, node, first))) = heap.pop() {
            if !done.insert(node) {
                continue;
            }
            for &(next, w) in self.edges.get(&node).into_iter().flatten() {
                let c = cost + w;
                let f = if node == self.me { next } else { first };
                if reached.get(&next).is_none_or(|&(old, of)| c < old || (c == old && f < of)) {
                    reached.insert(next, (c, f));
                    heap.push(Reverse((c, next, f)));
                }
            }
        }
        Tree { reached }
    }
}

/// The coordinate a presence or status event carries (the newspaper's, else the
/// hey-there's: a newspaper, later in key order, overwrites).
fn coordinate_of<R>(_core: &Core<R>, ev: &VerifiedEvent) -> Option<Coordinate> {
    match ev.stream() {
        Stream::HeyThere | Stream::Newspaper => crate::published::carried(ev),
        _ => None,
    }
}
