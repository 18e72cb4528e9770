//! Opinions on real processes: three peers on loopback publish what they observe of each
//! other; `GET /v1/opinions` shows every observer's claim with its clout, bad parameters get
//! typed errors, `vecino opinions` prints it; a `kill -9`'d peer turns offline at the others,
//! and the event stream (`status`), `/v1/members` (`liveness`), `vecino members` and
//! `/metrics` (`vecino_peers`, `vecino_peer_status_changes_total`) say so.

mod common;
#[path = "common/http.rs"]
mod http;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Peer, wait_converged, wait_until};
use serde_json::Value;

/// The opinion `p` holds about the peer with peer id `of` (`None` while it holds none).
fn opinion(p: &Peer, of: &str) -> Option<Value> {
    let v = p.client().get(&format!("/v1/opinions?peer={of}")).ok()?;
    v["status"].is_string().then_some(v)
}

/// The status `p` gives the peer with peer id `of`.
fn status(p: &Peer, of: &str) -> Option<String> {
    opinion(p, of).and_then(|o| o["status"].as_str().map(str::to_string))
}

fn cli(args: &[&str], api: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(args)
        .args(["--api", api])
        .env_remove("VECINO_API_TOKEN")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn observers_claims_show_and_a_killed_peer_turns_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    let mut c = Peer::start("c", &tmp.path().join("c"), std::slice::from_ref(&a.addr), &[]);
    wait_converged(&[&a, &b, &c]);
    // Each peer publishes its opinion once its set of links has held 10 s; then every peer
    // holds, about each other, its own observation and the third one's claim.
    let started = Instant::now();
    wait_until("a holds its own and the third peer's claims about b and c", || {
        [&b, &c].iter().all(|x| {
            opinion(&a, &x.peer_id).is_some_and(|o| {
                o["status"] == "online" && o["claims"].as_array().is_some_and(|c| c.len() >= 2)
            })
        })
    });
    println!(
        "opinions: a holds two claims about each other peer after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The list, and one peer by name: the consensus and who says what, with clout.
    let list = a.get("/v1/opinions");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let ob = a.get("/v1/opinions?peer=b");
    assert_eq!(ob["peer_id"], b.peer_id.as_str());
    assert_eq!(ob["name"], "b");
    assert!(ob["weight_online"].as_f64().unwrap() > 0.0 && ob["weight_offline"] == 0.0, "{ob:#}");
    let claims = ob["claims"].as_array().unwrap();
    let from_c = claims.iter().find(|x| x["observer"]["name"] == "c").expect("c's claim about b");
    assert_eq!(
        (&from_c["online"], &from_c["observer"]["self"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    for part in ["value", "tenure", "agreement", "proximity"] {
        assert!(from_c["clout"][part].as_f64().is_some(), "{part}: {from_c:#}");
    }
    assert!(from_c["uptime_s"].as_u64().is_some() && from_c["started_ms"].as_u64().is_some());

    // Typed errors: a parameter that cannot name a peer is 400, one nobody knows 404; JSON both.
    for (path, code) in [
        ("/v1/opinions?peer=", 400),
        ("/v1/opinions?peer=QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", 400),
        ("/v1/opinions?peer=%1B%5B2J", 400),
        ("/v1/opinions?nope=1", 400),
        ("/v1/opinions?peer=nobody", 404),
        ("/v1/opinions?peer=12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK", 404),
        (&format!("/v1/opinions?peer={}", a.peer_id), 404),
    ] {
        let r = http::request(&a.api, "GET", path, &[], None);
        assert_eq!(r.status, code, "{path}: {}", r.body);
        assert!(!r.error().is_empty(), "{path}");
    }

    // The CLI: the table, one peer's claims, and --json.
    let (ok, out, err) = cli(&["opinions"], &a.api);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("NAME") && out.contains("OBSERVERS") && out.contains("online"),
        "{out}"
    );
    let (ok, out, err) = cli(&["opinions", "b"], &a.api);
    assert!(ok, "{err}");
    assert!(
        out.contains("status:   online") && out.contains("a (this node)") && out.contains("CLOUT"),
        "{out}"
    );
    let (ok, out, _) = cli(&["opinions", "b", "--json"], &a.api);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["name"], "b");
    let (ok, _, err) = cli(&["opinions", "nobody"], &a.api);
    assert!(!ok && err.contains("unknown peer nobody") && err.contains("404"), "{err}");

    // Follow a's event stream for status changes.
    let (tx, rx) = mpsc::channel();
    let follower = a.client();
    std::thread::spawn(move || {
        let _ = follower.follow(|event, data| match event {
            "ready" => tx.send(None).is_ok(),
            "status" => tx.send(Some(data.clone())).is_ok(),
            _ => true,
        });
    });
    assert_eq!(rx.recv_timeout(common::TIMEOUT).unwrap(), None, "subscribed");

    // kill -9 c: a and b see it offline within a bounded time.
    let gone = c.peer_id.clone();
    let killed = Instant::now();
    c.kill9();
    let mut at = [None, None];
    while at.iter().any(Option::is_none) {
        assert!(killed.elapsed() < common::TIMEOUT, "c not offline everywhere: {at:?}");
        for (i, p) in [&a, &b].iter().enumerate() {
            if at[i].is_none() && status(p, &gone).as_deref() == Some("offline") {
                at[i] = Some(killed.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "kill -9 → offline: at a after {:.2} s, at b after {:.2} s",
        at[0].unwrap(),
        at[1].unwrap()
    );
    let oc = opinion(&a, &gone).unwrap();
    assert!(
        oc["weight_offline"].as_f64().unwrap() > oc["weight_online"].as_f64().unwrap(),
        "{oc:#}"
    );

    // The stream said so.
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx.recv_timeout(left).expect("a status event for c").expect("an event");
        if ev["peer_id"] == gone.as_str() && ev["status"] == "offline" {
            break;
        }
    }
    // Members and `vecino members`.
    let members = a.get("/v1/members");
    let row = members.as_array().unwrap().iter().find(|m| m["peer_id"] == gone.as_str()).unwrap();
    assert_eq!(row["liveness"], "offline", "{row:#}");
    assert!(row["clout"]["value"].as_f64().is_some(), "c observed a and b: {row:#}");
    let (ok, out, err) = cli(&["members"], &a.api);
    assert!(ok, "{err}");
    assert!(out.contains("LIVENESS") && out.contains("offline"), "{out}");
    // Metrics: one peer offline, one online, and the changes counted.
    wait_until("a's metrics count c offline", || {
        a.metric("vecino_peers", "status=\"offline\"") == 1.0
            && a.metric("vecino_peers", "status=\"online\"") == 1.0
    });
    assert!(a.metric("vecino_peer_status_changes_total", "status=\"offline\"") >= 1.0);
    assert!(a.metric("vecino_peer_status_changes_total", "status=\"online\"") >= 2.0);
    assert_eq!(a.metric("vecino_peers", "status=\"unreachable\""), 0.0);
}

#[test]
fn a_node_with_opinions_off_publishes_none_and_still_weighs_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &["--opinions", "false"]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    let c = Peer::start("c", &tmp.path().join("c"), std::slice::from_ref(&a.addr), &[]);
    wait_converged(&[&a, &b, &c]);
    let observers = |p: &Peer, of: &Peer| -> Vec<String> {
        opinion(p, &of.peer_id).map_or_else(Vec::new, |o| {
            o["claims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["observer"]["name"].as_str().unwrap().to_string())
                .collect()
        })
    };
    // a weighs what c publishes about b, beside its own live observation.
    wait_until("c's claim about b reaches a", || observers(&a, &b).contains(&"c".to_string()));
    wait_until("c's claim about a reaches b", || observers(&b, &a).contains(&"c".to_string()));
    // a publishes nothing: b never holds a claim of a's, about c or anyone (given the time c
    // and b took to publish, and more).
    std::thread::sleep(Duration::from_secs(12));
    let about_c = observers(&b, &c);
    assert!(!about_c.contains(&"a".to_string()), "a published an opinion: {about_c:?}");
    assert!(about_c.contains(&"b".to_string()), "b's own observation: {about_c:?}");
}
