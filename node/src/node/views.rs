//! What the operator sees: the answers to API requests (status, members, links, RTT between
//! two peers), the coordinate in the API's units, and the Prometheus gauges.
//!
//! The views are functions of the engine and of [`Facts`], what the node knows of itself
//! beyond the engine (its addresses, its transport connections), so they are tested here on
//! engines linked in memory, without a swarm.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use vecino_coords::Coordinate;
use vecino_gossip::{Clout, Command, Engine, LinkStatus, PeerOpinion, PeerStatus, Time};
use vecino_proto::{AuthorKey, Bytes, pb};

use super::Node;
use super::barrios::{barrio_fields, barrio_of, member_barrios};
use super::swarm::PeerConn;
use crate::api::Request;
use crate::peer;
use crate::shim::Shim;
use crate::telemetry;

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

/// What the node knows of itself beyond the engine, for the views.
pub(super) struct Facts<'a> {
    pub(super) peer_id: PeerId,
    pub(super) name: &'a str,
    pub(super) listen: &'a [Multiaddr],
    pub(super) advertised: &'a [String],
    pub(super) api_addr: SocketAddr,
    pub(super) data_dir: &'a Path,
    pub(super) uptime: Duration,
    /// The engine's now.
    pub(super) now: Time,
    /// The peers with a transport connection.
    pub(super) conns: &'a HashMap<PeerId, PeerConn>,
    /// The link shim, when link emulation is on.
    pub(super) shim: Option<&'a Shim>,
}

/// Where other peers dial this one, each a full multiaddr ending in `/p2p/<peer id>` (what
/// `--bootstrap` takes): the advertised addresses when there are any, else the listening ones
/// (an unspecified bind shows as each interface's address).
fn dial_addresses(f: &Facts<'_>) -> Vec<String> {
    let p2p = format!("/p2p/{}", f.peer_id);
    let with_id = |a: &str| if a.contains("/p2p/") { a.to_string() } else { format!("{a}{p2p}") };
    if f.advertised.is_empty() {
        f.listen.iter().map(|a| with_id(&a.to_string())).collect()
    } else {
        f.advertised.iter().map(|a| with_id(a)).collect()
    }
}

/// `GET /v1/status`.
pub(super) fn status(engine: &Engine<ChaCha20Rng>, f: &Facts<'_>) -> Value {
    let members = engine.members();
    let left = members.iter().filter(|m| m.left).count();
    let links = engine.links();
    let count = |s: LinkStatus| links.iter().filter(|l| l.status == s).count();
    let stats = engine.stats();
    let (barrio, barrio_name) = barrio_fields(engine.barrio().0);
    json!({
        "peer_id": f.peer_id.to_string(),
        "author": engine.id().to_string(),
        "name": f.name,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": f.uptime.as_secs(),
        "listen": f.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "advertise": f.advertised,
        "dial": dial_addresses(f),
        "api": f.api_addr.to_string(),
        "data_dir": f.data_dir.display().to_string(),
        "members": {"alive": members.len() - left + 1, "left": left},
        "links": {
            "connected": count(LinkStatus::Connected),
            "suspected": count(LinkStatus::Suspected),
            "disconnected": count(LinkStatus::Disconnected),
            "fast": links.iter().filter(|l| l.fast.0).count(),
        },
        "transport_connections": f.conns.len(),
        "coordinate": coordinate_json(&engine.coordinate()),
        "barrio": barrio,
        "barrio_name": barrio_name,
        "emulate_links": f.shim.is_some(),
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

/// `GET /v1/members`: this peer first, then every member the engine knows. Each with its
/// `liveness` as this peer believes it (online, unreachable, offline; null when nobody
/// observes it, and for this peer) and its `clout` here as an observer (null when it
/// observes nothing this peer holds).
pub(super) fn members(engine: &Engine<ChaCha20Rng>, f: &Facts<'_>) -> Value {
    let links: HashMap<AuthorKey, _> = engine.links().into_iter().map(|l| (l.peer, l)).collect();
    let me = engine.coordinate();
    let opinions = engine.opinions(None);
    let liveness: HashMap<AuthorKey, PeerStatus> =
        opinions.iter().map(|o| (o.peer, o.status)).collect();
    let clouts = clouts(&opinions);
    let slots = member_barrios(engine);
    let (barrio, barrio_name) = barrio_fields(engine.barrio().0);
    let mut out = vec![json!({
        "peer_id": f.peer_id.to_string(),
        "author": engine.id().to_string(),
        "name": f.name,
        "addrs": f.advertised,
        "status": "alive",
        "liveness": Value::Null,
        // This peer trusts itself fully (its own word weighs, per subject, as much as the
        // most trusted other observer of it: `/v1/opinions` shows that weight).
        "clout": clout_json(&engine.clout(&engine.id())),
        "self": true,
        "link": Value::Null,
        "rtt_ms": Value::Null,
        "estimated_rtt_ms": 0.0,
        "coordinate": coordinate_json(&me),
        "barrio": barrio,
        "barrio_name": barrio_name,
        "version": env!("CARGO_PKG_VERSION"),
    })];
    for m in engine.members() {
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
        let newspaper = m.newspaper.as_ref().map_or(0, |n| n.barrio);
        let (barrio, barrio_name) = barrio_fields(barrio_of(&slots, &m.peer, newspaper));
        out.push(json!({
            "peer_id": pid(&m.peer),
            "author": m.peer.to_string(),
            "name": name,
            "addrs": addrs,
            "status": if m.left { "left" } else { "alive" },
            "liveness": liveness.get(&m.peer).map(|s| s.as_str()),
            "clout": clouts.get(&m.peer).map(clout_json),
            "self": false,
            "link": link.map(|l| l.status.name()),
            "rtt_ms": link.and_then(|l| l.rtt).map(|r| r.as_secs_f64() * 1e3),
            "estimated_rtt_ms": coord.map(|c| me.distance_secs(&c) * 1e3),
            "coordinate": coord.as_ref().map(coordinate_json),
            "barrio": barrio,
            "barrio_name": barrio_name,
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

/// `GET /v1/links`: the engine's links, with whether the transport and the shim let them through.
pub(super) fn links(engine: &Engine<ChaCha20Rng>, f: &Facts<'_>) -> Value {
    let names: HashMap<AuthorKey, String> = engine
        .members()
        .into_iter()
        .map(|m| (m.peer, m.hey_there.map(|h| h.name).unwrap_or_default()))
        .collect();
    Value::Array(
        engine
            .links()
            .into_iter()
            .map(|l| {
                let p = peer::peer_id_of(&l.peer);
                json!({
                    "peer_id": pid(&l.peer),
                    "name": names.get(&l.peer).cloned().unwrap_or_default(),
                    "status": l.status.name(),
                    "since_s": f.now.saturating_since(l.since).as_secs_f64(),
                    "rtt_ms": l.rtt.map(|r| r.as_secs_f64() * 1e3),
                    "eager": l.eager(),
                    "eager_trees": l.eager_trees,
                    "liveness": if l.fast.0 { "fast" } else { "slow" },
                    "neighbour_fast": l.fast.1,
                    "queued_bytes": l.buffered.0,
                    "unacked_frames": l.buffered.1,
                    "transport": p.is_some_and(|p| f.conns.contains_key(&p)),
                    "cut": p.is_some_and(|p| f.shim.is_some_and(|s| s.is_cut(&p))),
                })
            })
            .collect(),
    )
}

/// The clout of every observer with a claim among `opinions`, by observer.
fn clouts(opinions: &[PeerOpinion]) -> HashMap<AuthorKey, Clout> {
    let mut out = HashMap::new();
    for c in opinions.iter().flat_map(|o| &o.claims) {
        out.entry(c.observer).or_insert(c.clout);
    }
    out
}

/// A clout with its parts.
fn clout_json(c: &Clout) -> Value {
    json!({
        "value": c.value,
        "tenure": c.tenure,
        "agreement": c.agreement,
        "proximity": c.proximity,
    })
}

/// Longest `peer` parameter looked at (a peer id is 52 characters, a key 64, a name at most
/// 64 bytes as the engine keeps it).
const MAX_PEER_PARAM: usize = 256;

/// Why `GET /v1/opinions?peer=` has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpinionsError {
    /// The parameter cannot name a peer (400).
    #[error("bad peer parameter {given:?}: {why}")]
    BadPeer {
        /// What was given (cut to [`MAX_PEER_PARAM`] bytes).
        given: String,
        /// Why it names no peer.
        why: &'static str,
    },
    /// Well formed, but no peer this node knows (404).
    #[error("unknown peer {0}: this node knows no member by that peer id, key or name")]
    UnknownPeer(String),
    /// This node itself, which holds no opinion of itself (404).
    #[error("{0} is this node, which keeps no opinion of itself: ask another peer")]
    ThisNode(String),
}

/// The key of the peer `who` names for `GET /v1/opinions`: a peer id, an author key (64 hex
/// digits) or a member's name.
pub(super) fn opinion_subject(
    engine: &Engine<ChaCha20Rng>,
    f: &Facts<'_>,
    who: &str,
) -> Result<AuthorKey, OpinionsError> {
    let bad = |why| OpinionsError::BadPeer {
        given: who
            .chars()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= MAX_PEER_PARAM).then_some(c)
            })
            .collect(),
        why,
    };
    if who.is_empty() {
        return Err(bad("empty: give a peer id, an author key or a member's name"));
    }
    if who.len() > MAX_PEER_PARAM {
        return Err(bad("too long for a peer id, a key or a name"));
    }
    if who.chars().any(char::is_control) {
        return Err(bad("control characters"));
    }
    let key = if let Ok(peer) = who.parse::<PeerId>() {
        Some(
            peer::author_of(&peer)
                .ok_or_else(|| bad("a peer id of a key type other than ed25519"))?,
        )
    } else if who.len() == 64 && who.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = hex::decode(who).map_err(|_| bad("not hex"))?;
        Some(AuthorKey::from_slice(&bytes).ok_or_else(|| bad("not a 32-byte key"))?)
    } else {
        None
    };
    let me = engine.id();
    if key == Some(me) || (key.is_none() && !f.name.is_empty() && who == f.name) {
        return Err(OpinionsError::ThisNode(pid(&me)));
    }
    if let Some(key) = key {
        let known = engine.members().iter().any(|m| m.peer == key)
            || !engine.opinions(Some(&key)).is_empty();
        return if known { Ok(key) } else { Err(OpinionsError::UnknownPeer(who.to_string())) };
    }
    engine
        .members()
        .into_iter()
        .find(|m| m.hey_there.as_ref().is_some_and(|h| !h.name.is_empty() && h.name == who))
        .map(|m| m.peer)
        .ok_or_else(|| OpinionsError::UnknownPeer(who.to_string()))
}

/// Names of the members (and this peer), by key, for the opinions views.
fn names(engine: &Engine<ChaCha20Rng>, f: &Facts<'_>) -> HashMap<AuthorKey, String> {
    let mut names: HashMap<AuthorKey, String> = engine
        .members()
        .into_iter()
        .map(|m| (m.peer, m.hey_there.map(|h| h.name).unwrap_or_default()))
        .collect();
    names.insert(engine.id(), f.name.to_string());
    names
}

/// One peer's opinion as the API shows it: the consensus, and each observer's claim with its
/// clout here.
fn opinion_json(o: &PeerOpinion, me: &AuthorKey, names: &HashMap<AuthorKey, String>) -> Value {
    let ms = |d: Option<Duration>| d.map(|r| r.as_secs_f64() * 1e3);
    let name = |k: &AuthorKey| names.get(k).cloned().unwrap_or_default();
    let claims: Vec<Value> = o
        .claims
        .iter()
        .map(|c| {
            json!({
                "observer": {
                    "peer_id": pid(&c.observer),
                    "author": c.observer.to_string(),
                    "name": name(&c.observer),
                    "self": c.observer == *me,
                },
                "online": c.online,
                "stands": c.stands,
                "denies_start": c.denies_start,
                "restarts": c.restarts,
                "started_ms": (c.started_ms > 0).then_some(c.started_ms),
                "uptime_s": c.uptime_s,
                "rtt_ms": ms(c.rtt),
                "at_ms": c.at_ms,
                "clout": clout_json(&c.clout),
            })
        })
        .collect();
    json!({
        "peer_id": pid(&o.peer),
        "author": o.peer.to_string(),
        "name": name(&o.peer),
        "status": o.status.as_str(),
        "reachable": o.reachable,
        "left": o.left,
        "weight_online": o.weight_online,
        "weight_offline": o.weight_offline,
        "restarts": o.restarts,
        "started_ms": o.started_ms,
        "uptime_s": o.uptime_s,
        "rtt_ms": ms(o.rtt),
        "observers": o.claims.len(),
        "claims": claims,
    })
}

/// `GET /v1/opinions`: what this peer believes about every peer it holds claims about, by
/// key.
pub(super) fn opinions(engine: &Engine<ChaCha20Rng>, f: &Facts<'_>) -> Value {
    let names = names(engine, f);
    let me = engine.id();
    Value::Array(engine.opinions(None).iter().map(|o| opinion_json(o, &me, &names)).collect())
}

/// `GET /v1/opinions?peer=`: what this peer believes about the peer `who` names. A member
/// nobody has made a claim about yet has no status (`null`) and no claims.
pub(super) fn opinion(
    engine: &Engine<ChaCha20Rng>,
    f: &Facts<'_>,
    who: &str,
) -> Result<Value, OpinionsError> {
    let key = opinion_subject(engine, f, who)?;
    let names = names(engine, f);
    let me = engine.id();
    Ok(match engine.opinions(Some(&key)).first() {
        Some(o) => opinion_json(o, &me, &names),
        None => json!({
            "peer_id": pid(&key),
            "author": key.to_string(),
            "name": names.get(&key).cloned().unwrap_or_default(),
            "status": Value::Null,
            "reachable": Value::Null,
            "left": engine.members().iter().any(|m| m.peer == key && m.left),
            "weight_online": 0.0,
            "weight_offline": 0.0,
            "restarts": Value::Null,
            "started_ms": Value::Null,
            "uptime_s": Value::Null,
            "rtt_ms": Value::Null,
            "observers": 0,
            "claims": [],
        }),
    })
}

/// Finds a peer by peer id, author key (hex), or name (this peer included): its peer id and
/// coordinate.
pub(super) fn resolve(
    engine: &Engine<ChaCha20Rng>,
    f: &Facts<'_>,
    who: &str,
) -> Result<(String, Coordinate), String> {
    let me_pid = f.peer_id.to_string();
    if who == me_pid || who == engine.id().to_string() || (!f.name.is_empty() && who == f.name) {
        return Ok((me_pid, engine.coordinate()));
    }
    for m in engine.members() {
        let pid = pid(&m.peer);
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

/// Finds a peer's key by peer id, author key (hex) or name, among this peer's members and
/// links (this peer excluded).
pub(super) fn resolve_key(engine: &Engine<ChaCha20Rng>, who: &str) -> Result<AuthorKey, String> {
    if let Ok(peer) = who.parse::<libp2p::PeerId>()
        && let Some(key) = peer::author_of(&peer)
    {
        return Ok(key);
    }
    for m in engine.members() {
        let name = m.hey_there.as_ref().map(|h| h.name.as_str()).unwrap_or("");
        if who == m.peer.to_string() || (!name.is_empty() && who == name) {
            return Ok(m.peer);
        }
    }
    Err(format!("unknown peer {who}: give a peer id, an author key, or a member's name"))
}

/// How the API names a key prefix (a postcard's path): the peer id of the member, link or
/// this peer it names, else the prefix in hex.
pub(super) fn name_prefix(engine: &Engine<ChaCha20Rng>, prefix: u64) -> String {
    if engine.id().prefix() == prefix {
        return pid(&engine.id());
    }
    let known = engine
        .members()
        .into_iter()
        .map(|m| m.peer)
        .chain(engine.links().into_iter().map(|l| l.peer));
    for key in known {
        if key.prefix() == prefix {
            return pid(&key);
        }
    }
    format!("{prefix:016x}")
}

/// `GET /v1/overlay`: the links of the link state this peer holds, by peer id.
pub(super) fn overlay(engine: &Engine<ChaCha20Rng>) -> Value {
    let edges: Vec<Value> = engine
        .overlay()
        .into_iter()
        .map(|(from, to, rtt)| {
            json!({
                "from": pid(&from),
                "to": name_prefix(engine, to),
                "rtt_ms": rtt.as_secs_f64() * 1e3,
            })
        })
        .collect();
    json!({ "edges": edges })
}

/// `GET /v1/rtt`: the RTT between `a` and `b` (this peer if `None`) their coordinates
/// estimate, and the one measured when one of them is this peer and the other a neighbour.
pub(super) fn rtt(
    engine: &Engine<ChaCha20Rng>,
    f: &Facts<'_>,
    a: &str,
    b: Option<&str>,
) -> Result<Value, String> {
    let (pa, ca) = resolve(engine, f, a)?;
    let (pb_, cb) = match b {
        Some(b) => resolve(engine, f, b)?,
        None => (f.peer_id.to_string(), engine.coordinate()),
    };
    let me = f.peer_id.to_string();
    let other = if pa == me {
        Some(&pb_)
    } else if pb_ == me {
        Some(&pa)
    } else {
        None
    };
    let measured = other
        .and_then(|o| engine.links().into_iter().find(|l| &pid(&l.peer) == o).and_then(|l| l.rtt));
    Ok(json!({
        "a": pa,
        "b": pb_,
        "estimated_ms": ca.distance_secs(&cb) * 1e3,
        "measured_ms": measured.map(|r| r.as_secs_f64() * 1e3),
    }))
}

/// `GET /v1/coordinate`, and the `coordinate` event.
pub(super) fn coordinate(peer_id: PeerId, c: &Coordinate) -> Value {
    json!({
        "peer_id": peer_id.to_string(),
        "coordinate": coordinate_json(c),
    })
}

/// Every status, in the order of [`status_index`].
const PEER_STATUSES: [PeerStatus; 3] =
    [PeerStatus::Online, PeerStatus::Unreachable, PeerStatus::Offline];

fn status_index(s: PeerStatus) -> usize {
    match s {
        PeerStatus::Online => 0,
        PeerStatus::Unreachable => 1,
        PeerStatus::Offline => 2,
    }
}

/// A peer as the API names it: its peer id, else its author key.
pub(super) fn pid(a: &AuthorKey) -> String {
    peer::peer_id_of(a).map(|p| p.to_string()).unwrap_or_else(|| a.to_string())
}

/// The end of [`pid`], for logs.
pub(super) fn short(a: &AuthorKey) -> String {
    let p = pid(a);
    p.get(p.len().saturating_sub(8)..).unwrap_or(&p).to_string()
}

impl Node {
    /// What the views need of the node.
    fn facts(&self) -> Facts<'_> {
        Facts {
            peer_id: self.peer_id(),
            name: &self.cfg.name,
            listen: &self.listen,
            advertised: &self.advertised,
            api_addr: self.api_addr,
            data_dir: &self.cfg.data_dir,
            uptime: self.started.elapsed(),
            now: self.clock.now(),
            conns: &self.conns,
            shim: self.shim.as_deref(),
        }
    }

    pub(super) fn on_request(&mut self, req: Request) {
        if let Some(down) = &self.store_down {
            let refusal = format!(
                "{}: {}; writes resume by themselves once it is (reads are served)",
                super::STORE_DOWN,
                down.error
            );
            match req {
                Request::Post { reply, .. } | Request::Postcard { reply, .. } => {
                    metrics::counter!("vecino_store_writes_refused_total").increment(1);
                    let _ = reply.send(Err(refusal));
                    return;
                }
                _ => {}
            }
        }
        match req {
            Request::Status(reply) => {
                let _ = reply.send(status(&self.engine, &self.facts()));
            }
            Request::Members(reply) => {
                let _ = reply.send(members(&self.engine, &self.facts()));
            }
            Request::Links(reply) => {
                let _ = reply.send(links(&self.engine, &self.facts()));
            }
            Request::Overlay(reply) => {
                let _ = reply.send(overlay(&self.engine));
            }
            Request::Opinions { peer, reply } => {
                let f = self.facts();
                let answer = match peer {
                    Some(who) => opinion(&self.engine, &f, &who),
                    None => Ok(opinions(&self.engine, &f)),
                };
                let _ = reply.send(answer);
            }
            Request::Barrios { id, reply } => {
                let answer = match id {
                    Some(id) => super::barrios::barrio(&self.engine, &id),
                    None => Ok(super::barrios::barrios(&self.engine)),
                };
                let _ = reply.send(answer);
            }
            Request::Coordinate(reply) => {
                let _ = reply.send(coordinate(self.peer_id(), &self.engine.coordinate()));
            }
            Request::Rtt { a, b, reply } => {
                let _ = reply.send(rtt(&self.engine, &self.facts(), &a, b.as_deref()));
            }
            Request::Post { topic, text, reply } => {
                self.command(Command::Post { topic, body: Bytes::from(text) }, reply);
            }
            Request::Postcard { to, text, lifetime, reply } => {
                let key = match resolve_key(&self.engine, &to) {
                    Ok(k) => k,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                self.postcard(key, text, lifetime, reply);
            }
            Request::RefreshMetrics(reply) => {
                self.record_gauges();
                self.record_statuses();
                if let Ok(n) = self.store.event_count() {
                    metrics::gauge!("vecino_store_events").set(n as f64);
                }
                let _ = reply.send(());
            }
        }
    }

    /// `vecino_peers{status}`: the peers this one holds claims about, by the status it gives
    /// them (computed at each scrape: it weighs every claim held).
    pub(super) fn record_statuses(&self) {
        let mut counts = [0u64; 3];
        for (_, s) in self.engine.statuses() {
            counts[status_index(s)] += 1;
        }
        for s in PEER_STATUSES {
            metrics::gauge!("vecino_peers", "status" => s.as_str())
                .set(counts[status_index(s)] as f64);
        }
    }

    pub(super) fn record_gauges(&self) {
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
        metrics::gauge!("vecino_postcards_custody").set(self.engine.postcards_in_custody() as f64);
        metrics::gauge!("vecino_transport_connections").set(self.conns.len() as f64);
        let (held, peak) = self.sent.held();
        metrics::gauge!("vecino_transport_unsent_bytes").set(held as f64);
        metrics::gauge!("vecino_transport_unsent_bytes_peak").set(peak as f64);
        metrics::gauge!("vecino_uptime_seconds").set(self.started.elapsed().as_secs_f64());
        self.record_barrios();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rand::SeedableRng;
    use vecino_gossip::{Input, LinkInfo, Output, Protocol};
    use vecino_proto::Identity;

    use super::*;

    fn engine(seed: u8, name: &str) -> Engine<ChaCha20Rng> {
        let config = vecino_gossip::Config { name: name.into(), ..Default::default() };
        let rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
        Engine::new(Identity::from_seed([seed; 32]), config, rng, Time(1_000_000), Vec::new())
    }

    fn pid_of(e: &Engine<ChaCha20Rng>) -> PeerId {
        peer::peer_id_of(&e.id()).expect("an ed25519 key")
    }

    /// Links `a` and `b` in memory and delivers every frame, 1 ms a hop, until both are quiet
    /// (no timers: the link-up exchange alone). Returns the time reached.
    fn link(a: &mut Engine<ChaCha20Rng>, b: &mut Engine<ChaCha20Rng>) -> Time {
        let (ida, idb) = (a.id(), b.id());
        let info = LinkInfo::default();
        let mut queue: VecDeque<(bool, Input)> = VecDeque::from([
            (true, Input::Start),
            (false, Input::Start),
            (true, Input::LinkUp { peer: idb, info: info.clone() }),
            (false, Input::LinkUp { peer: ida, info }),
        ]);
        let mut now = Time(1_000_000);
        let mut hops = 0;
        while let Some((to_a, input)) = queue.pop_front() {
            hops += 1;
            assert!(hops < 10_000, "the engines never went quiet");
            now = now + Duration::from_millis(1);
            let (e, from) = if to_a { (&mut *a, ida) } else { (&mut *b, idb) };
            for o in e.handle(now, input) {
                if let Output::Send { frame, .. } = o {
                    queue.push_back((!to_a, Input::Received { from, frame }));
                }
            }
        }
        now
    }

    fn facts<'a>(
        e: &Engine<ChaCha20Rng>,
        name: &'a str,
        conns: &'a HashMap<PeerId, PeerConn>,
        now: Time,
    ) -> Facts<'a> {
        Facts {
            peer_id: pid_of(e),
            name,
            listen: &[],
            advertised: &[],
            api_addr: "127.0.0.1:7300".parse().unwrap(),
            data_dir: Path::new("/var/lib/vecino"),
            uptime: Duration::from_secs(42),
            now,
            conns,
            shim: None,
        }
    }

    #[test]
    fn status_counts_this_peer_and_shows_the_node_facts() {
        let a = engine(1, "a");
        let conns = HashMap::new();
        let v = status(&a, &facts(&a, "a", &conns, Time(1_000_000)));
        assert_eq!(v["peer_id"], pid_of(&a).to_string());
        assert_eq!(v["author"], a.id().to_string());
        assert_eq!(v["name"], "a");
        assert_eq!(v["uptime_s"], 42);
        assert_eq!(v["api"], "127.0.0.1:7300");
        assert_eq!(v["data_dir"], "/var/lib/vecino");
        assert_eq!(v["members"], json!({"alive": 1, "left": 0}));
        assert_eq!(
            v["links"],
            json!({"connected": 0, "suspected": 0, "disconnected": 0, "fast": 0})
        );
        assert_eq!(v["transport_connections"], 0);
        assert_eq!(v["emulate_links"], false);
        assert!(coordinate_from_json(&v["coordinate"]).is_some(), "{v}");
    }

    #[test]
    fn members_links_and_rtt_show_a_neighbour() {
        let (mut a, mut b) = (engine(1, "a"), engine(2, "b"));
        let now = link(&mut a, &mut b);
        let pb = pid_of(&b);
        let conns =
            HashMap::from([(pb, PeerConn { connections: 1, observed: Vec::new(), writer: None })]);
        let f = facts(&a, "a", &conns, now);

        let m = members(&a, &f);
        let m = m.as_array().unwrap();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            (&m[0]["self"], &m[0]["name"], &m[0]["link"]),
            (&json!(true), &json!("a"), &Value::Null)
        );
        assert_eq!(m[1]["peer_id"], pb.to_string());
        assert_eq!(m[1]["name"], "b");
        assert_eq!(m[1]["status"], "alive");
        assert_eq!(m[1]["link"], "connected");
        assert!(m[1]["rtt_ms"].as_f64().is_some(), "a pinged b on link-up: {}", m[1]);

        let l = links(&a, &f);
        let l = l.as_array().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["name"], "b");
        assert_eq!(l[0]["status"], "connected");
        assert_eq!(l[0]["transport"], true);
        assert_eq!(l[0]["cut"], false);
        let no_conns = HashMap::new();
        let l = links(&a, &facts(&a, "a", &no_conns, now));
        assert_eq!(l[0]["transport"], false);

        // By name, from this peer: the estimate, and the RTT the link measured.
        let r = rtt(&a, &f, "b", None).unwrap();
        assert_eq!(r["a"], pb.to_string());
        assert_eq!(r["b"], pid_of(&a).to_string());
        assert!(r["estimated_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["measured_ms"], m[1]["rtt_ms"]);
    }

    /// Engines linked in memory, every pair: frames take 1 ms, timers fire when due. A dead
    /// engine neither sends nor receives (a crash, as its neighbours see it).
    struct Fleet {
        engines: Vec<Engine<ChaCha20Rng>>,
        now: Time,
        frames: VecDeque<(Time, usize, Input)>,
        timers: std::collections::BTreeSet<(Time, usize, vecino_gossip::Timer)>,
        dead: Vec<bool>,
    }

    impl Fleet {
        fn new(names: &[&str]) -> Fleet {
            let engines: Vec<_> =
                names.iter().enumerate().map(|(i, n)| engine(i as u8 + 1, n)).collect();
            let mut f = Fleet {
                now: Time(1_000_000),
                frames: VecDeque::new(),
                timers: Default::default(),
                dead: vec![false; engines.len()],
                engines,
            };
            for i in 0..f.engines.len() {
                f.feed(i, Input::Start);
            }
            for i in 0..f.engines.len() {
                for j in 0..f.engines.len() {
                    if i != j {
                        let peer = f.engines[j].id();
                        f.feed(i, Input::LinkUp { peer, info: LinkInfo::default() });
                    }
                }
            }
            f
        }

        fn feed(&mut self, i: usize, input: Input) {
            let from = self.engines[i].id();
            let outputs: Vec<Output> = self.engines[i].handle(self.now, input).collect();
            for o in outputs {
                match o {
                    Output::Send { to, frame, .. } => {
                        let j = self.engines.iter().position(|e| e.id() == to).unwrap();
                        if !self.dead[i] && !self.dead[j] {
                            let at = self.now + Duration::from_millis(1);
                            self.frames.push_back((at, j, Input::Received { from, frame }));
                        }
                    }
                    Output::Schedule { at, timer } => {
                        self.timers.insert((at, i, timer));
                    }
                    _ => {}
                }
            }
        }

        /// Runs every engine for `d` of engine time.
        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                let frame = self.frames.front().map(|f| f.0);
                let timer = self.timers.first().map(|t| t.0);
                let next = match (frame, timer) {
                    (Some(f), Some(t)) => f.min(t),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => break,
                };
                if next > end {
                    break;
                }
                self.now = self.now.max(next);
                let (i, input) = if frame == Some(next) {
                    let (_, i, input) = self.frames.pop_front().unwrap();
                    (i, input)
                } else {
                    let (_, i, timer) = self.timers.pop_first().unwrap();
                    (i, Input::Timer(timer))
                };
                if !self.dead[i] {
                    self.feed(i, input);
                }
            }
            self.now = end;
        }

        fn facts<'a>(
            &self,
            i: usize,
            name: &'a str,
            conns: &'a HashMap<PeerId, PeerConn>,
        ) -> Facts<'a> {
            facts(&self.engines[i], name, conns, self.now)
        }
    }

    /// The opinion about the peer named `name` in a `GET /v1/opinions` answer.
    fn about<'a>(list: &'a Value, name: &str) -> &'a Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no opinion about {name} in {list:#}"))
    }

    #[test]
    fn opinions_show_each_observers_claim_and_its_clout() {
        let mut fleet = Fleet::new(&["a", "b", "c"]);
        // The first opinions go out once the set of neighbours held 15 s (30 s at the latest).
        fleet.run(Duration::from_secs(40));
        let conns = HashMap::new();
        let f = fleet.facts(0, "a", &conns);
        let a = &fleet.engines[0];
        let list = opinions(a, &f);
        assert_eq!(list.as_array().unwrap().len(), 2, "about b and c, never itself: {list:#}");
        let b = about(&list, "b");
        let key_b = fleet.engines[1].id();
        assert_eq!(b["peer_id"], pid(&key_b));
        assert_eq!(b["author"], key_b.to_string());
        assert_eq!(
            (&b["status"], &b["reachable"], &b["left"]),
            (&json!("online"), &json!(true), &json!(false))
        );
        assert!(b["weight_online"].as_f64().unwrap() > 0.0, "a's own word, and c's: {b:#}");
        assert_eq!(b["weight_offline"], 0.0);
        assert!(b["started_ms"].as_u64().is_some() && b["uptime_s"].as_u64().is_some(), "{b:#}");
        assert_eq!(b["restarts"], 0);
        let claims = b["claims"].as_array().unwrap();
        assert_eq!(b["observers"], claims.len());
        let by = |name: &str| {
            claims.iter().find(|c| c["observer"]["name"] == name).unwrap_or_else(|| panic!("{b:#}"))
        };
        // a's own live observation: it weighs as much as the most trusted other observer (c).
        let own = by("a");
        assert_eq!(own["observer"]["self"], true);
        assert_eq!(own["observer"]["peer_id"], pid(&a.id()));
        assert_eq!(own["clout"]["value"], by("c")["clout"]["value"], "{b:#}");
        for part in ["tenure", "agreement", "proximity"] {
            assert_eq!(own["clout"][part], 1.0, "{b:#}");
        }
        // c's published claim: online, with c's clout here and its parts.
        let c = by("c");
        assert_eq!(
            (&c["observer"]["self"], &c["online"], &c["stands"]),
            (&json!(false), &json!(true), &json!(false))
        );
        assert_eq!(c["observer"]["author"], fleet.engines[2].id().to_string());
        for field in ["restarts", "started_ms", "uptime_s", "at_ms"] {
            assert!(c[field].is_u64(), "{field}: {c:#}");
        }
        assert!(c["rtt_ms"].as_f64().is_some_and(|r| r > 0.0), "{c:#}");
        let cl = &c["clout"];
        let parts = ["tenure", "agreement", "proximity"].map(|k| cl[k].as_f64().unwrap());
        assert!(parts[0] > 0.0 && parts[0] < 1.0, "a fresh observer's tenure: {cl}");
        assert!(
            (cl["value"].as_f64().unwrap() - parts.iter().product::<f64>()).abs() < 1e-12,
            "{cl}"
        );

        // One peer, by name, peer id or key: the same answer as in the list.
        for who in ["b".to_string(), pid(&key_b), key_b.to_string()] {
            assert_eq!(&opinion(a, &f, &who).unwrap(), b, "{who}");
        }

        // Members: the liveness a gives each, and each one's clout here as an observer.
        let m = members(a, &f);
        let m = m.as_array().unwrap();
        assert_eq!(
            (&m[0]["liveness"], &m[0]["clout"]["value"]),
            (&Value::Null, &json!(1.0)),
            "{:#}",
            m[0]
        );
        for row in &m[1..] {
            assert_eq!(row["liveness"], "online", "{row:#}");
            assert!(row["clout"]["value"].as_f64().is_some_and(|v| v > 0.0 && v < 1.0), "{row:#}");
        }
    }

    #[test]
    fn barrios_converge_and_show_in_barrios_members_and_status() {
        use super::super::barrios::{BarriosError, barrio, barrios};
        let mut fleet = Fleet::new(&["a", "b", "c"]);
        let conns = HashMap::new();
        // Before any coordinate settled: no barrio, and none listed.
        let v = barrios(&fleet.engines[0]);
        assert_eq!(v["barrio"]["id"], Value::Null, "{v:#}");
        assert_eq!(v["barrios"], json!([]));
        let f = fleet.facts(0, "a", &conns);
        assert_eq!(status(&fleet.engines[0], &f)["barrio"], Value::Null);
        // Three engines 2 ms apart (RTT) are within one radius: one barrio, once settled.
        let mut waited = 0;
        loop {
            let one = fleet.engines.iter().all(|e| {
                let list = e.barrios();
                e.barrio().0 != 0 && list.len() == 1 && list[0].members.len() == 3
            });
            if one {
                break;
            }
            assert!(
                waited < 600,
                "no single barrio after {waited} s: {:#}",
                barrios(&fleet.engines[0])
            );
            fleet.run(Duration::from_secs(10));
            waited += 10;
        }
        let f = fleet.facts(0, "a", &conns);
        let a = &fleet.engines[0];
        let v = barrios(a);
        let id = v["barrio"]["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(v["barrio"]["name"], vecino_coords::BarrioId(a.barrio().0).name());
        let list = v["barrios"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{v:#}");
        let b = &list[0];
        assert_eq!((&b["id"], &b["own"], &b["count"]), (&json!(id), &json!(true), &json!(3)));
        let ids: Vec<String> = fleet.engines.iter().map(|e| pid(&e.id())).collect();
        let mut listed: Vec<String> =
            b["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().into()).collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want);
        assert!(ids.contains(&b["head"].as_str().unwrap().to_string()), "{b:#}");
        let centroid = b["centroid_ms"].as_array().unwrap();
        assert_eq!(centroid.len(), vecino_coords::DEFAULT_DIMENSIONS);
        assert!(centroid.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)), "{b:#}");
        let mut health: Vec<&String> = b["health"].as_object().unwrap().keys().collect();
        health.sort();
        assert_eq!(health, ["links_down_share", "retransmit_share", "rtt_ms"]);
        // One barrio by id; bad and unknown ids.
        assert_eq!(&barrio(a, &id).unwrap(), b);
        assert!(matches!(barrio(a, "xyz"), Err(BarriosError::BadId { .. })));
        let other = if id == "00000000000000ff" { "00000000000000fe" } else { "00000000000000ff" };
        assert_eq!(barrio(a, other), Err(BarriosError::UnknownBarrio(other.into())));
        // Members and status carry it.
        let m = members(a, &f);
        for row in m.as_array().unwrap() {
            assert_eq!(
                (&row["barrio"], &row["barrio_name"]),
                (&json!(id), &v["barrio"]["name"]),
                "{row:#}"
            );
        }
        let s = status(a, &f);
        assert_eq!((&s["barrio"], &s["barrio_name"]), (&json!(id), &v["barrio"]["name"]));
    }

    #[test]
    fn a_peer_gone_silent_is_offline_with_the_claims_that_say_so() {
        let mut fleet = Fleet::new(&["a", "b", "c"]);
        fleet.run(Duration::from_secs(20));
        fleet.dead[2] = true; // c crashes
        fleet.run(Duration::from_secs(15));
        let conns = HashMap::new();
        let f = fleet.facts(0, "a", &conns);
        let a = &fleet.engines[0];
        let c = opinion(a, &f, "c").unwrap();
        assert_eq!(c["status"], "offline", "{c:#}");
        assert!(
            c["weight_offline"].as_f64().unwrap() > c["weight_online"].as_f64().unwrap(),
            "{c:#}"
        );
        let own =
            c["claims"].as_array().unwrap().iter().find(|x| x["observer"]["self"] == true).unwrap();
        assert_eq!(
            (&own["online"], &own["stands"], &own["uptime_s"]),
            (&json!(false), &json!(true), &Value::Null)
        );
        let m = members(a, &f);
        let row = m.as_array().unwrap().iter().find(|r| r["name"] == "c").unwrap();
        assert_eq!(
            (&row["status"], &row["liveness"]),
            (&json!("alive"), &json!("offline")),
            "{row:#}"
        );
        // b stays online.
        assert_eq!(opinion(a, &f, "b").unwrap()["status"], "online");
    }

    #[test]
    fn a_bad_peer_parameter_is_refused_and_an_unknown_one_not_found() {
        let (mut a, mut b) = (engine(1, "a"), engine(2, "b"));
        let now = link(&mut a, &mut b);
        let conns = HashMap::new();
        let f = facts(&a, "a", &conns, now);
        let bad = |who: &str| match opinion(&a, &f, who) {
            Err(e @ OpinionsError::BadPeer { .. }) => e.to_string(),
            other => panic!("{who:?}: {other:?}"),
        };
        assert!(bad("").contains("empty"));
        assert!(bad("b\u{1b}[2J").contains("control"));
        assert!(bad(&"x".repeat(300)).contains("too long"));
        // An RSA peer id (a hash: no key inside) cannot be an author.
        assert!(bad("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").contains("ed25519"));
        let long = bad(&"é".repeat(200));
        assert!(long.len() < 600, "what was given is cut: {long}");

        let unknown = engine(9, "z");
        for who in [pid(&unknown.id()), unknown.id().to_string(), "nobody".into()] {
            let e = opinion(&a, &f, &who).unwrap_err();
            assert_eq!(e, OpinionsError::UnknownPeer(who.clone()));
            assert!(e.to_string().contains("unknown peer"), "{e}");
        }
        for who in ["a".to_string(), pid(&a.id()), a.id().to_string()] {
            assert!(matches!(opinion(&a, &f, &who), Err(OpinionsError::ThisNode(_))), "{who}");
        }
        // A member nobody has made a claim about yet (no timer ran: nothing observed): no
        // status, no claims.
        let v = opinion(&a, &f, "b").unwrap();
        assert_eq!(
            (&v["status"], &v["claims"], &v["observers"]),
            (&Value::Null, &json!([]), &json!(0)),
            "{v:#}"
        );
        assert_eq!(v["peer_id"], pid(&b.id()));
        assert_eq!(opinions(&a, &f), json!([]));
    }

    #[test]
    fn resolve_knows_this_peer_and_members_by_id_key_or_name() {
        let (mut a, mut b) = (engine(1, "a"), engine(2, "b"));
        let now = link(&mut a, &mut b);
        let conns = HashMap::new();
        let f = facts(&a, "a", &conns, now);
        let (me, pb) = (pid_of(&a).to_string(), pid_of(&b).to_string());
        for who in [me.clone(), a.id().to_string(), "a".into()] {
            assert_eq!(resolve(&a, &f, &who).unwrap(), (me.clone(), a.coordinate()), "{who}");
        }
        for who in [pb.clone(), b.id().to_string(), "b".into()] {
            assert_eq!(resolve(&a, &f, &who).unwrap().0, pb, "{who}");
        }
        assert_eq!(resolve(&a, &f, "c").unwrap_err(), "unknown peer c");
        // An unnamed node is not found by the empty name.
        assert!(resolve(&a, &facts(&a, "", &conns, now), "").is_err());
        // Unless one end is this peer, nothing is measured.
        let r = rtt(&a, &f, "b", Some("b")).unwrap();
        assert_eq!(r["measured_ms"], Value::Null, "{r}");
        assert!(rtt(&a, &f, "a", None).unwrap()["measured_ms"].is_null());
    }
}
