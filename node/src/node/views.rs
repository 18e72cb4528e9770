//! What the operator sees: the answers to API requests (status, members, links, RTT between
//! two peers), the coordinate in the API's units, and the Prometheus gauges.

use std::collections::HashMap;

use serde_json::{Value, json};
use vecino_coords::Coordinate;
use vecino_gossip::{Command, Input, LinkStatus};
use vecino_proto::{AuthorKey, Bytes, pb};

use super::Node;
use crate::api::Request;
use crate::peer;
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

impl Node {
    pub(super) fn on_request(&mut self, req: Request) {
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

    pub(super) fn pid(&self, a: &AuthorKey) -> String {
        peer::peer_id_of(a).map(|p| p.to_string()).unwrap_or_else(|| a.to_string())
    }

    pub(super) fn short(&self, a: &AuthorKey) -> String {
        let p = self.pid(a);
        p.get(p.len().saturating_sub(8)..).unwrap_or(&p).to_string()
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
        metrics::gauge!("vecino_transport_connections").set(self.conns.len() as f64);
        let (held, peak) = self.sent.held();
        metrics::gauge!("vecino_transport_unsent_bytes").set(held as f64);
        metrics::gauge!("vecino_transport_unsent_bytes_peak").set(peak as f64);
        metrics::gauge!("vecino_uptime_seconds").set(self.started.elapsed().as_secs_f64());
    }
}
