//! The radar page: the files of `radar-ui/`, embedded in the binary, and the one snapshot the
//! page loads before it follows `/v1/events`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page (`radar-ui/www/index.html`) |
//! | `GET /radar/{path}` | its modules and styles, with their content types |
//! | `GET /v1/radar?posts=N&postcards=M` | snapshot: this peer (with its barrio), members with coordinates and barrios, links, the newest `N` posts (default 50, at most 500), the newest `M` postcard records of both boxes (default 100, at most 500; as `GET /v1/postcards` has them), barrios with heads, centroids and health |
//!
//! Barrios are the engine's (`vecino_gossip::barrios`, as `GET /v1/barrios` has them): each
//! member carries the `barrio` `/v1/members` gives it (its slot's held here, else its
//! newspaper's, else `null`), and `barrios` lists every barrio this peer holds a member's
//! slot of, with its head, members, centroid (`centroid_ms`: the mean of the members' slotted
//! coordinates, in the milliseconds of the members' `coordinate.vec_ms`, which the page
//! projects alike) and mean health. A barrio a member's newspaper names but no slot held here
//! does is listed too, with its members and no centroid, so every member's barrio has an
//! entry. The snapshot is built from the answers of `/v1/status`, `/v1/members`,
//! `/v1/links` and `/v1/barrios`, so the actor needs no request of its own for it.
//!
//! The overlay (`/v1/overlay`, the link state peers publish) is not in the snapshot: the page
//! asks for it on its own, less often than it takes snapshots.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde::Deserialize;
use serde_json::{Value, json};
use vecino_coords::BarrioId;

use crate::api::{Request, ask, error};
use crate::node::{Shared, parse_barrio_id};

/// Posts in a snapshot by default.
const DEFAULT_POSTS: u64 = 50;
/// Posts in a snapshot at most.
const MAX_POSTS: u64 = 500;
/// Postcard records in a snapshot by default.
const DEFAULT_POSTCARDS: u64 = 100;
/// Postcard records in a snapshot at most.
const MAX_POSTCARDS: u64 = 500;

/// The page's files (`radar-ui/www/`; the browser test beside it is not shipped).
#[derive(RustEmbed)]
#[folder = "../radar-ui/www/"]
struct Assets;

/// The radar's routes, merged into the API's router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/radar/{*path}", get(asset))
        .route("/v1/radar", get(snapshot))
}

/// The content type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [(header::CONTENT_TYPE, content_type(path)), (header::CACHE_CONTROL, "no-cache")],
            file.data.into_owned(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no radar file {path}")),
    }
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    posts: Option<u64>,
    postcards: Option<u64>,
}

async fn snapshot(
    State(s): State<Shared>,
    query: Result<Query<SnapshotQuery>, QueryRejection>,
) -> Response {
    let (limit, cards) = match query {
        Ok(Query(q)) => (
            q.posts.unwrap_or(DEFAULT_POSTS).min(MAX_POSTS),
            q.postcards.unwrap_or(DEFAULT_POSTCARDS).min(MAX_POSTCARDS),
        ),
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let status = match ask(&s, Request::Status).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let members = match ask(&s, Request::Members).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let links = match ask(&s, Request::Links).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let barrios = match ask(&s, |reply| Request::Barrios { id: None, reply }).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(r) => return r,
    };
    let store = s.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let last = store.last_post_cursor()?;
        // `limit` is at most MAX_POSTS, so it fits every usize.
        let posts =
            store.posts(None, last.saturating_sub(limit), usize::try_from(limit).unwrap_or(500))?;
        // Record numbers are shared by both boxes and kept by a status change: the newest
        // `cards` numbers are the newest records, whichever box they are in.
        let last = store.last_postcard_cursor()?;
        let cards = if cards == 0 {
            Vec::new()
        } else {
            store.postcards(
                None,
                last.saturating_sub(cards),
                usize::try_from(cards).unwrap_or(500),
            )?
        };
        Ok::<_, crate::store::StoreError>((posts, cards))
    })
    .await;
    let (posts, cards) = match read {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let posts = serde_json::to_value(posts).unwrap_or(Value::Null);
    let cards = serde_json::to_value(cards).unwrap_or(Value::Null);
    Json(build(&status, &members, &links, &barrios, &posts, &cards)).into_response()
}

/// Barrios the members' newspapers name that the engine's list lacks (no slot of theirs
/// held here yet): by id, the members naming each. Ids that are not 16 hex digits are skipped.
fn newspaper_barrios(members: &[Value], listed: &[Value]) -> BTreeMap<u64, Vec<String>> {
    let listed: BTreeSet<&str> = listed.iter().filter_map(|b| b["id"].as_str()).collect();
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for m in members {
        let Some(id) = m.get("barrio").and_then(Value::as_str) else { continue };
        if listed.contains(id) {
            continue;
        }
        if let Ok(id) = parse_barrio_id(id) {
            let peer = m.get("peer_id").and_then(Value::as_str).unwrap_or_default();
            out.entry(id).or_default().push(peer.to_string());
        }
    }
    out
}

/// The snapshot, from the node's answers to status, members, links and barrios, the posts
/// and the postcard records.
fn build(
    status: &Value,
    members: &Value,
    links: &Value,
    barrios: &Value,
    posts: &Value,
    postcards: &Value,
) -> Value {
    let members: Vec<Value> = match members {
        Value::Array(m) => m.iter().filter(|m| m.is_object()).cloned().collect(),
        _ => Vec::new(),
    };
    let mut list: Vec<Value> = match barrios.get("barrios") {
        Some(Value::Array(b)) => b.iter().filter(|b| b["id"].is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    for (id, peers) in newspaper_barrios(&members, &list) {
        let b = BarrioId(id);
        list.push(json!({
            "id": format!("{id:016x}"),
            "name": b.name(),
            "emoji": b.emoji(),
            "count": peers.len(),
            "members": peers,
            "head": Value::Null,
            "centroid_ms": Value::Null,
            "height_ms": Value::Null,
            "health": {},
            "own": false,
        }));
    }
    json!({
        "self": {
            "peer_id": status["peer_id"],
            "name": status["name"],
            "uptime_s": status["uptime_s"],
            "links": status["links"],
            "emulate_links": status["emulate_links"],
            "barrio": status["barrio"],
            "barrio_name": status["barrio_name"],
        },
        "members": members,
        "links": links,
        "posts": posts,
        "postcards": postcards,
        "barrios": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, barrio: Option<&str>) -> Value {
        json!({
            "peer_id": id,
            "coordinate": {"vec_ms": [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "height_ms": 0.1, "error": 0.5},
            "barrio": barrio,
        })
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("js/map.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("radar.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn the_page_and_its_modules_are_embedded() {
        assert!(Assets::get("index.html").is_some());
        assert!(Assets::get("js/main.js").is_some());
        assert!(Assets::get("js/postcards.js").is_some());
        assert!(Assets::get("../test/run.sh").is_none());
    }

    #[test]
    fn barrios_are_the_engines_and_every_members_barrio_is_listed() {
        let a = "00000000000000aa";
        let members = json!([
            member("a", Some(a)),
            member("b", Some(a)),
            member("c", Some("0000000000000007")),
            member("d", None),
            member("e", Some("not a barrio")),
        ]);
        let engine = json!({
            "barrio": {"id": a, "changes": 1},
            "barrios": [{
                "id": a, "name": "x", "emoji": "y", "count": 2, "members": ["a", "b"],
                "head": "a", "centroid_ms": [2.0, 0, 0, 0, 0, 0, 0, 0], "height_ms": 0.1,
                "health": {"rtt_ms": 1.5}, "own": true,
            }, {"no": "id"}],
        });
        let status = json!({"peer_id": "a", "barrio": a, "barrio_name": "x"});
        let cards = json!([{"id": "c1", "box": "sent", "status": "delivered", "path": ["a", "b"]}]);
        let v = build(&status, &members, &json!([]), &engine, &json!([]), &cards);
        let barrios = v["barrios"].as_array().unwrap();
        assert_eq!(barrios.len(), 2, "the engine's one, and c's newspaper's: {v:#}");
        assert_eq!(barrios[0], engine["barrios"][0], "the engine's barrio as it is");
        let named = &barrios[1];
        assert_eq!(named["id"], "0000000000000007");
        assert_eq!(named["name"], BarrioId(7).name());
        assert_eq!(named["members"], json!(["c"]));
        assert_eq!(
            (&named["head"], &named["centroid_ms"], &named["own"]),
            (&Value::Null, &Value::Null, &json!(false))
        );
        // No grid: a member with no barrio has none.
        assert_eq!(v["members"][3]["barrio"], Value::Null);
        assert_eq!((&v["self"]["barrio"], &v["self"]["barrio_name"]), (&json!(a), &json!("x")));
        assert!(v.get("barrio_cell_ms").is_none());
        assert_eq!(v["postcards"], cards, "postcard records as the store has them");
    }

    #[test]
    fn members_without_coordinates_or_garbage_do_not_panic() {
        let members =
            json!([{"peer_id": "x", "coordinate": null}, {"coordinate": {"vec_ms": ["no"]}}, 3]);
        for barrios in [json!(null), json!({"barrios": 3}), json!({"barrios": [1, null]})] {
            let v =
                build(&json!(null), &members, &json!(null), &barrios, &json!(null), &json!(null));
            assert_eq!(v["barrios"], json!([]));
            assert_eq!(v["members"].as_array().unwrap().len(), 2, "objects only");
        }
    }
}
