//! The operator API: JSON over HTTP (axum; on 127.0.0.1 by default), a live event stream (SSE) and
//! Prometheus `/metrics`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `ok` while the node's loop answers |
//! | `GET /v1/status` | peer id, name, addresses, counts of members and links, coordinate, counters |
//! | `GET /v1/members` | every known peer (this one first): name, addresses, alive/left, liveness (online/unreachable/offline) and clout as an observer, link status, measured and estimated RTT, coordinate |
//! | `GET /v1/opinions?peer=` | what this peer believes about every peer it holds claims about (or about `peer`: peer id, key or name; 400 when it cannot name one, 404 when unknown): status, the weights online and offline, the consensus restarts, start, uptime and RTT, and each observer's claim with its clout here |
//! | `GET /v1/barrios?id=` | this peer's barrio (id, name, emoji, changes) and every barrio it holds a member's slot of (or the one `id` names: 16 hex digits; 400 when it is none, 404 when unknown): id, name, emoji, count, members, head, centroid (ms), mean health by feature, `own` |
//! | `GET /v1/coordinate` | this peer's Vivaldi coordinate (ms) |
//! | `GET /v1/rtt?a=&b=` | RTT between two peers estimated from their coordinates (`b` defaults to this peer; peers by peer id, key or name), plus the measured RTT when one is this peer's neighbour |
//! | `GET /v1/links` | neighbours: connected / suspected / disconnected, since, RTT, queues |
//! | `GET /v1/overlay` | the overlay as this peer knows it from the link state peers publish (what postcards are routed on): `edges` of `{from, to, rtt_ms}` by peer id |
//! | `POST /v1/posts` | `{"topic": …, "text": …}`: broadcast a post; answers once it is stored |
//! | `GET /v1/posts?topic=&since=&limit=` | posts delivered here after cursor `since` (exclusive), oldest first, with `next` to pass as `since` |
//! | `POST /v1/postcards` | `{"to": peer id, key or name, "text": …, "lifetime_s": optional}`: send a postcard (sealed to `to`, routed by proximity, held in custody hop by hop); answers at once with its record (status `custody`); the receipt comes later |
//! | `GET /v1/postcards?box=inbox|sent&since=&limit=` | postcards received here (`inbox`) or sent from here (`sent`) with their status: `received`; `custody` (held here), `forwarded`, `delivered` (with the path), `expired` |
//! | `GET /v1/events` | Server-Sent Events: `ready` (subscribed), then `member`, `link`, `status` (this peer's belief about a peer's liveness changed), `post`, `postcard` (one received), `postcard_status` (one sent moved on), `coordinate`, `coherence` (a barrio's coherence alarm raised or cleared) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /`, `/radar/…`, `/v1/radar` | the radar page and its snapshot (see [`crate::radar`]) |
//! | `POST /v1/shim/cut`, `/v1/shim/restore`, `GET /v1/shim` | link emulation only: `{"peers": [peer ids]}` (restore with no peers: all) |
//!
//! Handlers never touch the engine: they send a request to the node's loop through a bounded
//! queue and await its answer (503 when the queue is full or the node stopped). Posts are read
//! from the store directly.
//!
//! Access (see [`access`] and [`conn`]): on loopback with no token set the API is open; else
//! every route but `/healthz` needs a token (`Authorization: Bearer`, or `?token=` on a
//! browser page), the *read* one for `GET` only. The `Host` must name the API (421 else). At
//! most `api_max_subscribers` event streams (503) and `api_max_connections` connections, with
//! header-read, idle and stalled-reader timeouts. Every error is a JSON body `{"error": …}`
//! (404 and 405 included), and every refusal counts in `vecino_api_rejected_total{reason}`.
//!
//! | module | what |
//! |---|---|
//! | `mod.rs` | the routes and their handlers |
//! | `access.rs` | tokens, scopes, the `Host` check, the refusals, errors as JSON |
//! | `conn.rs` | the listener: the connection cap and the timeouts |

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use libp2p::PeerId;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_stream::wrappers::BroadcastStream;

use crate::node::{BarriosError, OpinionsError, STORE_DOWN, Shared};

pub mod access;
pub mod conn;

pub use access::{Access, Secret};
pub use conn::{ApiListener, Conn};

/// A request to the node's loop.
#[derive(Debug)]
pub enum Request {
    /// `/v1/status`.
    Status(oneshot::Sender<Value>),
    /// `/v1/members`.
    Members(oneshot::Sender<Value>),
    /// `/v1/links`.
    Links(oneshot::Sender<Value>),
    /// `/v1/coordinate`.
    Coordinate(oneshot::Sender<Value>),
    /// `/v1/overlay`.
    Overlay(oneshot::Sender<Value>),
    /// `/v1/opinions`.
    Opinions {
        /// Only this peer (peer id, key or name); every peer held when `None`.
        peer: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<Value, OpinionsError>>,
    },
    /// `/v1/barrios`.
    Barrios {
        /// Only this barrio (16 hex digits, unparsed); every barrio known when `None`.
        id: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<Value, BarriosError>>,
    },
    /// `/v1/rtt`.
    Rtt {
        /// First peer.
        a: String,
        /// Second peer (default: this one).
        b: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<Value, String>>,
    },
    /// `POST /v1/posts`.
    Post {
        /// Topic.
        topic: String,
        /// Text.
        text: String,
        /// The stored post, once durable.
        reply: oneshot::Sender<Result<Value, String>>,
    },
    /// `POST /v1/postcards`.
    Postcard {
        /// The destination: peer id, author key or name.
        to: String,
        /// Text.
        text: String,
        /// Lifetime (the node's default when `None`).
        lifetime: Option<Duration>,
        /// The postcard's record, once durable.
        reply: oneshot::Sender<Result<Value, String>>,
    },
    /// Copy the engine's counters into the metrics facade (before a scrape).
    RefreshMetrics(oneshot::Sender<()>),
}

/// One event of the live stream.
#[derive(Debug, Clone)]
pub struct ApiEvent {
    /// SSE event name.
    pub kind: &'static str,
    /// JSON data.
    pub data: Value,
}

impl ApiEvent {
    /// An event.
    pub fn new(kind: &'static str, data: Value) -> Self {
        ApiEvent { kind, data }
    }
}

/// The API's routes, with the access rules and the connection tracking, to serve with
/// `axum::serve` on an [`ApiListener`] (the rules come with each connection).
pub fn router(shared: Shared) -> IntoMakeServiceWithConnectInfo<Router, Conn> {
    routes(shared).into_make_service_with_connect_info::<Conn>()
}

/// The routes, behind the gate (outermost first: connection tracking, errors as JSON, the
/// access gate).
pub fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/v1/links", get(links))
        .route("/v1/coordinate", get(coordinate))
        .route("/v1/overlay", get(overlay))
        .route("/v1/rtt", get(rtt))
        .route("/v1/opinions", get(opinions))
        .route("/v1/barrios", get(barrios))
        .route("/v1/posts", post(create_post).get(list_posts))
        .route("/v1/postcards", post(create_postcard).get(list_postcards))
        .route("/v1/events", get(events))
        .route("/v1/shim", get(shim_state))
        .route("/v1/shim/cut", post(shim_cut))
        .route("/v1/shim/restore", post(shim_restore))
        .route("/metrics", get(metrics))
        .merge(crate::radar::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(access::gate))
        .layer(axum::middleware::from_fn(access::json_errors))
        .layer(axum::middleware::from_fn(conn::track))
        .with_state(shared)
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route {method} {}", uri.path()))
}

/// A query string's rejection as a JSON error.
fn bad_query(e: &QueryRejection) -> Response {
    error(e.status(), e.body_text())
}

/// A JSON body's rejection as a JSON error, with its status (413 over the body limit, 415
/// without `content-type: application/json`, 400 or 422 for bad JSON).
fn bad_body(e: &JsonRejection) -> Response {
    error(e.status(), e.body_text())
}

pub(crate) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

pub(crate) async fn ask<T>(
    s: &Shared,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    s.requests
        .try_send(make(tx))
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "node busy or stopping"))?;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "node did not answer"))?
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "node stopping"))
}

async fn healthz(State(s): State<Shared>) -> Response {
    match ask(&s, Request::Status).await {
        Ok(_) => "ok\n".into_response(),
        Err(r) => r,
    }
}

async fn status(State(s): State<Shared>) -> Response {
    ask(&s, Request::Status).await.map(Json).into_response()
}

async fn members(State(s): State<Shared>) -> Response {
    ask(&s, Request::Members).await.map(Json).into_response()
}

async fn links(State(s): State<Shared>) -> Response {
    ask(&s, Request::Links).await.map(Json).into_response()
}

async fn overlay(State(s): State<Shared>) -> Response {
    ask(&s, Request::Overlay).await.map(Json).into_response()
}

async fn coordinate(State(s): State<Shared>) -> Response {
    ask(&s, Request::Coordinate).await.map(Json).into_response()
}

#[derive(Debug, Deserialize)]
struct RttQuery {
    a: String,
    b: Option<String>,
}

async fn rtt(State(s): State<Shared>, q: Result<Query<RttQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let b = q.b.filter(|b| !b.is_empty());
    match ask(&s, |reply| Request::Rtt { a: q.a, b, reply }).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpinionsQuery {
    peer: Option<String>,
}

async fn opinions(
    State(s): State<Shared>,
    q: Result<Query<OpinionsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    match ask(&s, |reply| Request::Opinions { peer: q.peer, reply }).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e @ OpinionsError::BadPeer { .. })) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BarriosQuery {
    id: Option<String>,
}

/// Longest `id` parameter sent to the node's loop (an id is 16 characters; a longer one is
/// refused there, cut to this).
const MAX_BARRIO_PARAM: usize = 64;

async fn barrios(
    State(s): State<Shared>,
    q: Result<Query<BarriosQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let id = q.id.map(|id| id.chars().take(MAX_BARRIO_PARAM).collect::<String>());
    barrios_answer(ask(&s, |reply| Request::Barrios { id, reply }).await)
}

/// The node's answer to `/v1/barrios` as a response: 400 for an id that is none, 404 for one
/// this peer does not know.
fn barrios_answer(answer: Result<Result<Value, BarriosError>, Response>) -> Response {
    match answer {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e @ BarriosError::BadId { .. })) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ BarriosError::UnknownBarrio(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPost {
    topic: String,
    text: String,
}

async fn create_post(
    State(s): State<Shared>,
    body: Result<Json<NewPost>, JsonRejection>,
) -> Response {
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return bad_body(&e),
    };
    if p.topic.is_empty() || p.topic.len() > vecino_proto::limits::MAX_TOPIC_BYTES {
        return error(StatusCode::BAD_REQUEST, "topic must be 1 to 128 bytes");
    }
    if p.text.len() > vecino_proto::limits::MAX_POST_BODY_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "text is over 48 KiB");
    }
    match ask(&s, |reply| Request::Post { topic: p.topic, text: p.text, reply }).await {
        Ok(Ok(v)) => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(Err(e)) if e.starts_with(STORE_DOWN) => error(StatusCode::INSUFFICIENT_STORAGE, e),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct PostsQuery {
    topic: Option<String>,
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn list_posts(
    State(s): State<Shared>,
    q: Result<Query<PostsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let store = s.store.clone();
    let topic = q.topic.filter(|t| !t.is_empty());
    let read =
        tokio::task::spawn_blocking(move || store.posts(topic.as_deref(), q.since, limit)).await;
    match read {
        Ok(Ok(posts)) => {
            let next = posts.last().map_or(q.since, |p| p.cursor);
            Json(json!({"posts": posts, "next": next})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPostcard {
    to: String,
    text: String,
    lifetime_s: Option<u64>,
}

async fn create_postcard(
    State(s): State<Shared>,
    body: Result<Json<NewPostcard>, JsonRejection>,
) -> Response {
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return bad_body(&e),
    };
    if p.to.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "to: a peer id, key or name");
    }
    if p.text.len() > vecino_proto::limits::MAX_POSTCARD_BODY_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "text is over 48 KiB");
    }
    let lifetime = match p.lifetime_s {
        Some(0) => return error(StatusCode::BAD_REQUEST, "lifetime_s must be greater than 0"),
        Some(n) if n > 86_400 => {
            return error(StatusCode::BAD_REQUEST, "lifetime_s is at most 86400 (a day)");
        }
        n => n.map(Duration::from_secs),
    };
    let to = p.to.trim().to_string();
    match ask(&s, |reply| Request::Postcard { to, text: p.text, lifetime, reply }).await {
        Ok(Ok(v)) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Ok(Err(e)) if e.starts_with("unknown peer") => error(StatusCode::NOT_FOUND, e),
        Ok(Err(e)) if e.starts_with(STORE_DOWN) => error(StatusCode::INSUFFICIENT_STORAGE, e),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct PostcardsQuery {
    #[serde(rename = "box")]
    mailbox: Option<String>,
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn list_postcards(
    State(s): State<Shared>,
    q: Result<Query<PostcardsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let mailbox = match q.mailbox.as_deref() {
        None | Some("") => None,
        Some(b @ ("inbox" | "sent")) => Some(b.to_string()),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("box must be inbox or sent, not {other}"),
            );
        }
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let store = s.store.clone();
    let read =
        tokio::task::spawn_blocking(move || store.postcards(mailbox.as_deref(), q.since, limit))
            .await;
    match read {
        Ok(Ok(cards)) => {
            let next = cards.last().map_or(q.since, |p| p.cursor);
            Json(json!({"postcards": cards, "next": next})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn events(State(s): State<Shared>, ConnectInfo(conn): ConnectInfo<Conn>) -> Response {
    match conn.access().subscribe() {
        Some(place) => subscribed(&s, place).into_response(),
        None => access::too_many_subscribers(conn.access()),
    }
}

/// The event stream, holding its place among the subscribers while it lasts.
fn subscribed(
    s: &Shared,
    place: access::Subscription,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    use tokio_stream::StreamExt as _;
    // A first `ready` event tells the client it is subscribed: nothing after it is missed.
    let ready = Event::default().event("ready").data("{}");
    let live = BroadcastStream::new(s.events.subscribe()).filter_map(|ev| match ev {
        Ok(ev) => Some(Ok(Event::default().event(ev.kind).data(ev.data.to_string()))),
        // A slow reader skipped some events: tell it, and go on.
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(Event::default().event("lagged").data(json!({"skipped": n}).to_string())))
        }
    });
    let stream = tokio_stream::once(Ok(ready)).chain(live).map(move |ev| {
        let _held = &place;
        ev
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics(State(s): State<Shared>) -> Response {
    let _ = ask(&s, Request::RefreshMetrics).await;
    s.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShimPeers {
    #[serde(default)]
    peers: Vec<String>,
}

fn parse_peers(p: &ShimPeers) -> Result<Vec<PeerId>, String> {
    p.peers.iter().map(|s| s.parse::<PeerId>().map_err(|e| format!("{s}: {e}"))).collect()
}

fn no_shim() -> Response {
    error(StatusCode::NOT_FOUND, "link emulation is off (start with --emulate-links FILE)")
}

async fn shim_state(State(s): State<Shared>) -> Response {
    match &s.shim {
        Some(shim) => Json(json!({"cut": shim.cut_peers()})).into_response(),
        None => no_shim(),
    }
}

async fn shim_cut(
    State(s): State<Shared>,
    body: Result<Json<ShimPeers>, JsonRejection>,
) -> Response {
    let Some(shim) = &s.shim else { return no_shim() };
    let p = match body {
        Ok(Json(p)) => p,
        Err(e) => return bad_body(&e),
    };
    match parse_peers(&p) {
        Ok(peers) => {
            shim.cut(&peers);
            tracing::warn!(peers = peers.len(), "link emulation: links cut");
            Json(json!({"cut": shim.cut_peers()})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn shim_restore(
    State(s): State<Shared>,
    body: Result<Option<Json<ShimPeers>>, JsonRejection>,
) -> Response {
    let Some(shim) = &s.shim else { return no_shim() };
    let p = match body {
        Ok(b) => b.map(|Json(p)| p).unwrap_or_default(),
        Err(e) => return bad_body(&e),
    };
    match parse_peers(&p) {
        Ok(peers) => {
            shim.restore(if peers.is_empty() { None } else { Some(&peers) });
            tracing::warn!("link emulation: links restored");
            Json(json!({"cut": shim.cut_peers()})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, Value) {
        let code = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn barrios_errors_are_typed_400_and_404() {
        let bad = crate::node::parse_barrio_id("nope").unwrap_err();
        let (code, v) = body(barrios_answer(Ok(Err(bad)))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("bad barrio id \"nope\""), "{v}");

        let unknown = BarriosError::UnknownBarrio(crate::node::barrio_hex(7));
        let (code, v) = body(barrios_answer(Ok(Err(unknown)))).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(v["error"].as_str().unwrap().contains("unknown barrio 0000000000000007"), "{v}");

        let (code, v) = body(barrios_answer(Ok(Ok(json!({"barrios": []}))))).await;
        assert_eq!((code, v), (StatusCode::OK, json!({"barrios": []})));
    }
}
