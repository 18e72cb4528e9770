//! The radar page: the files of `radar-ui/`, embedded in the binary, and the one snapshot the
//! page loads before it follows `/v1/events`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page (`radar-ui/www/index.html`) |
//! | `GET /radar/{path}` | its modules and styles, with their content types |
//! | `GET /v1/radar?posts=N&postcards=M` | snapshot: this peer, members with coordinates and barrios, links, the newest `N` posts (default 50, at most 500), the newest `M` postcard records of both boxes (default 100, at most 500; as `GET /v1/postcards` has them), barrios with centroids |
//!
//! Barrios: a member's barrio is the one its newspaper names when it names one, else the cell
//! of its coordinate on the default grid ([`vecino_coords::barrio_of`], no hysteresis: the page
//! has no history). A barrio's centroid is the mean of its members' coordinates, computed at
//! read time as in the centroid CRDT. The snapshot is built from the answers of
//! `/v1/members` and `/v1/links`, so the actor needs no request of its own for it.
//!
//! The overlay (`/v1/overlay`, the link state peers publish) is not in the snapshot: the page
//! asks for it on its own, less often than it takes snapshots.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde::Deserialize;
use serde_json::{Value, json};
use vecino_coords::{BarrioConfig, BarrioId, Coordinate, barrio_of};

use crate::api::{Request, ask, error};
use crate::node::{Shared, coordinate_from_json};

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
    Json(build(&status, members, &links, &posts, &cards)).into_response()
}

/// A member's coordinate (as `/v1/members` shows it, in ms) back in seconds.
fn coordinate_of(member: &Value) -> Option<Coordinate> {
    member.get("coordinate").and_then(coordinate_from_json)
}

/// The barrio a member is in: its newspaper's, else its coordinate's cell.
fn barrio_of_member(member: &Value, config: &BarrioConfig) -> Option<BarrioId> {
    let named = member.pointer("/newspaper/barrio").and_then(Value::as_u64).filter(|b| *b != 0);
    named.map(BarrioId).or_else(|| coordinate_of(member).map(|c| barrio_of(&c, config)))
}

#[derive(Default)]
struct Sum {
    members: Vec<String>,
    vec_ms: Vec<f64>,
    with_coordinate: u32,
}

/// The snapshot, from the node's answers to status, members and links, the posts and the
/// postcard records.
fn build(status: &Value, members: Value, links: &Value, posts: &Value, postcards: &Value) -> Value {
    let config = BarrioConfig::default();
    let mut members = match members {
        Value::Array(m) => m,
        _ => Vec::new(),
    };
    let mut barrios: BTreeMap<BarrioId, Sum> = BTreeMap::new();
    for m in members.iter_mut().filter(|m| m.is_object()) {
        let Some(id) = barrio_of_member(m, &config) else { continue };
        let sum = barrios.entry(id).or_default();
        sum.members.push(m["peer_id"].as_str().unwrap_or_default().to_string());
        if let Some(v) = m.pointer("/coordinate/vec_ms").and_then(Value::as_array) {
            if sum.vec_ms.len() < v.len() {
                sum.vec_ms.resize(v.len(), 0.0);
            }
            for (acc, x) in sum.vec_ms.iter_mut().zip(v) {
                *acc += x.as_f64().unwrap_or(0.0);
            }
            sum.with_coordinate += 1;
        }
        m["barrio"] = json!(format!("{:016x}", id.0));
    }
    let barrios: Vec<Value> = barrios
        .into_iter()
        .map(|(id, sum)| {
            let n = f64::from(sum.with_coordinate.max(1));
            json!({
                "id": format!("{:016x}", id.0),
                "name": id.name(),
                "emoji": id.emoji(),
                "members": sum.members,
                "centroid_ms": sum.vec_ms.iter().map(|x| x / n).collect::<Vec<f64>>(),
            })
        })
        .collect();
    json!({
        "self": {
            "peer_id": status["peer_id"],
            "name": status["name"],
            "uptime_s": status["uptime_s"],
            "links": status["links"],
            "emulate_links": status["emulate_links"],
        },
        "members": members,
        "links": links,
        "posts": posts,
        "postcards": postcards,
        "barrios": barrios,
        "barrio_cell_ms": config.cell.as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, x_ms: f64, barrio: u64) -> Value {
        json!({
            "peer_id": id,
            "coordinate": {"vec_ms": [x_ms, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "height_ms": 0.1, "error": 0.5},
            "newspaper": {"barrio": barrio},
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
    fn nearby_members_share_a_barrio_with_their_centroid() {
        let members = json!([
            member("a", 1.0, 0),
            member("b", 3.0, 0),
            member("c", 200.0, 0),
            member("d", 0.0, 7)
        ]);
        let cards = json!([{"id": "c1", "box": "sent", "status": "delivered", "path": ["a", "b"]}]);
        let v = build(&json!({"peer_id": "a"}), members, &json!([]), &json!([]), &cards);
        let barrios = v["barrios"].as_array().unwrap();
        assert_eq!(barrios.len(), 3, "{v}");
        let ab = barrios.iter().find(|b| b["members"].as_array().unwrap().len() == 2).unwrap();
        assert_eq!(ab["centroid_ms"][0], 2.0);
        assert!(!ab["name"].as_str().unwrap().is_empty());
        let named = barrios.iter().find(|b| b["id"] == format!("{:016x}", 7)).unwrap();
        assert_eq!(named["members"], json!(["d"]));
        assert_eq!(v["members"][0]["barrio"], ab["id"]);
        assert_eq!(v["postcards"], cards, "postcard records as the store has them");
    }

    #[test]
    fn members_without_coordinates_or_garbage_do_not_panic() {
        let members =
            json!([{"peer_id": "x", "coordinate": null}, {"coordinate": {"vec_ms": ["no"]}}, 3]);
        let v = build(&json!(null), members, &json!(null), &json!(null), &json!(null));
        assert_eq!(v["barrios"], json!([]));
    }
}
