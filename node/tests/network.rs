//! Real processes on loopback: discovery and membership, posts to every peer, the event stream
//! and the CLI, `kill -9` and restart with nothing lost, and a partition cut through the link
//! shim and healed with nothing lost, and a burst over a slow link held back by back-pressure.

mod common;

use std::process::Command;
use std::sync::mpsc;

use common::{Peer, wait_converged, wait_until};
use serde_json::Value;

#[test]
fn three_peers_find_each_other_and_every_post_reaches_all() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    let c = Peer::start("c", &tmp.path().join("c"), std::slice::from_ref(&a.addr), &[]);
    wait_converged(&[&a, &b, &c]);

    // Follow c's event stream while posting.
    let (tx, rx) = mpsc::channel();
    let follower = c.client();
    std::thread::spawn(move || {
        let _ = follower.follow(|event, data| match event {
            "ready" => tx.send(String::new()).is_ok(),
            "post" => tx.send(data["text"].as_str().unwrap_or("").to_string()).is_ok(),
            _ => true,
        });
    });
    let ready = rx.recv_timeout(common::TIMEOUT).expect("the event stream is subscribed");
    assert_eq!(ready, "");
    for (p, text) in [(&a, "from a"), (&b, "from b"), (&c, "from c")] {
        let stored = p.post("news", text);
        assert_eq!(stored["own"], true);
    }
    let want = vec!["from a".to_string(), "from b".into(), "from c".into()];
    wait_until("every post at every peer", || [&a, &b, &c].iter().all(|p| p.post_texts() == want));
    let mut streamed: Vec<String> = (0..3)
        .map(|_| rx.recv_timeout(common::TIMEOUT).expect("a post event on the stream"))
        .collect();
    streamed.sort();
    assert_eq!(streamed, want);

    // Topic filter and cursor.
    let page = a.get("/v1/posts?topic=news&since=1");
    assert_eq!(page["posts"].as_array().unwrap().len(), 2);
    assert_eq!(a.get("/v1/posts?topic=other")["posts"].as_array().unwrap().len(), 0);

    // The CLI, as an operator would use it.
    let out = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(["members", "--json", "--api", &a.api])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let members: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(members.as_array().unwrap().len(), 3);
    let out = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(["rtt", "b", "c", "--api", &a.api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("rtt:"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(["links", "--api", &b.api])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("connected"));
    let rtt = a.get(&format!("/v1/rtt?a={}", b.peer_id));
    assert!(rtt["estimated_ms"].as_f64().unwrap() >= 0.0);
    assert!(rtt["measured_ms"].as_f64().is_some(), "a and b are neighbours: {rtt}");
    assert_eq!(a.get("/v1/coordinate")["peer_id"], a.peer_id.as_str());
    let health = a.client().get_text("/healthz").unwrap();
    assert_eq!(health.trim(), "ok");
}

#[test]
fn kill_9_and_restart_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let mut b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    wait_converged(&[&a, &b]);
    // Every post b acknowledged (HTTP 201 after the durable commit)...
    let sent: Vec<String> = (0..40).map(|i| format!("b{i:02}")).collect();
    for t in &sent {
        b.post("log", t);
    }
    b.kill9();
    // ...is there after a kill -9, and a's posts made meanwhile arrive by anti-entropy.
    let mine: Vec<String> = (0..10).map(|i| format!("a{i:02}")).collect();
    for t in &mine {
        a.post("log", t);
    }
    b.restart(std::slice::from_ref(&a.addr));
    let mut all: Vec<String> = sent.iter().chain(&mine).cloned().collect();
    all.sort();
    wait_until("both peers hold all 50 posts", || a.post_texts() == all && b.post_texts() == all);
    wait_converged(&[&a, &b]);
    // A graceful stop says chau: the other side lists the peer as left.
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    let gone = b.peer_id.clone();
    wait_until("b listed as left", || {
        a.get("/v1/members")
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["peer_id"] == gone.as_str() && m["status"] == "left")
    });
}

#[test]
fn a_partition_cut_through_the_shim_heals_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links.toml");
    std::fs::write(&links, "[default]\nrtt_ms = 10.0\n").unwrap();
    let links = links.to_str().unwrap().to_string();
    let args = ["--emulate-links", &links, "--suspect-timeout-secs", "4"];
    let a = Peer::start("a", &tmp.path().join("a"), &[], &args);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &args);
    let c = Peer::start("c", &tmp.path().join("c"), std::slice::from_ref(&a.addr), &args);
    wait_converged(&[&a, &b, &c]);

    // Cut a off from b and c (a's shim drops both directions).
    let cut = serde_json::json!({"peers": [b.peer_id, c.peer_id]});
    a.client().post("/v1/shim/cut", &cut).unwrap();
    wait_until("a's links suspected", || {
        a.link(&b.peer_id).as_deref() == Some("suspected")
            && a.link(&c.peer_id).as_deref() == Some("suspected")
    });
    a.post("p", "a during the cut");
    b.post("p", "b during the cut");
    wait_until("b's post reaches c inside its side", || {
        c.post_texts().contains(&"b during the cut".to_string())
    });
    // Past the suspect timeout the buffers are released: only anti-entropy can catch up.
    wait_until("a's links disconnected", || {
        a.link(&b.peer_id).as_deref() == Some("disconnected")
            && a.link(&c.peer_id).as_deref() == Some("disconnected")
    });
    a.post("p", "a after the timeout");
    c.post("p", "c after the timeout");
    assert!(!b.post_texts().iter().any(|t| t.starts_with("a ")), "the cut leaked");

    a.client().post("/v1/shim/restore", &serde_json::json!({})).unwrap();
    let mut want: Vec<String> =
        ["a during the cut", "b during the cut", "a after the timeout", "c after the timeout"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    want.sort();
    wait_until("every post at every peer after the heal", || {
        [&a, &b, &c].iter().all(|p| p.post_texts() == want)
    });
    wait_converged(&[&a, &b, &c]);
    assert!(a.metric("vecino_transport_dropped_total", "reason=\"shim_cut\"") > 0.0);
}

/// The coordinate as `/v1/coordinate` shows it: the vector and height, in milliseconds.
fn coordinate_ms(p: &Peer) -> Vec<f64> {
    let c = &p.get("/v1/coordinate")["coordinate"];
    let mut v: Vec<f64> =
        c["vec_ms"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    v.push(c["height_ms"].as_f64().unwrap());
    v
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn a_restarted_peer_resumes_its_coordinate() {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links.toml");
    std::fs::write(&links, "[default]\nrtt_ms = 60.0\n").unwrap();
    let links = links.to_str().unwrap().to_string();
    let args = ["--emulate-links", &links];
    let a = Peer::start("a", &tmp.path().join("a"), &[], &args);
    let mut b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &args);
    wait_converged(&[&a, &b]);
    // Settled well away from the origin: a and b are 60 ms apart.
    wait_until("b's coordinate away from the origin", || {
        distance(&coordinate_ms(&b), &[0.0; 9]) > 15.0
    });
    let before = coordinate_ms(&b);
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    // Restarted alone (a is stopped), so nothing moves it: it is the coordinate saved at stop.
    drop(a);
    b.restart(&[]);
    let after = coordinate_ms(&b);
    let moved = distance(&before, &after);
    assert!(
        moved < 0.25 * distance(&before, &[0.0; 9]),
        "coordinate not resumed: before {before:?}, after {after:?}"
    );
}

/// What one burst over a slow link cost: the most bytes a's writers held at once, the longest
/// round trip a measured, a's retransmissions, and the seconds until b had every post.
struct Burst {
    peak: f64,
    rtt_max: f64,
    retransmits: f64,
    secs: f64,
}

/// Two peers on a 256 kbit/s emulated link whose rate the nodes are not told (no
/// `--link-rate-kbps`, so the engine does not pace); a posts `posts` × `body` bytes at once.
fn burst_over_a_slow_link(host_queue: Option<usize>, posts: usize, body: usize) -> Burst {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links.toml");
    std::fs::write(&links, "[default]\nrtt_ms = 20.0\nrate_kbps = 256\n").unwrap();
    let links = links.to_str().unwrap().to_string();
    let queue = host_queue.unwrap_or(0).to_string();
    let args = ["--emulate-links", &links, "--host-queue-bytes", &queue];
    let a = Peer::start("a", &tmp.path().join("a"), &[], &args);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &args);
    wait_converged(&[&a, &b]);
    let started = std::time::Instant::now();
    let text = "x".repeat(body);
    for i in 0..posts {
        a.post("burst", &format!("{i} {text}"));
    }
    wait_until("every post at b", || b.post_texts().len() == posts);
    let secs = started.elapsed().as_secs_f64();
    // The gauges are refreshed together (every 500 ms): wait for a refresh after the drain.
    let uptime = a.metric("vecino_uptime_seconds", "");
    wait_until("a's gauges refreshed", || a.metric("vecino_uptime_seconds", "") > uptime);
    Burst {
        peak: a.metric("vecino_transport_unsent_bytes_peak", ""),
        rtt_max: a.metric("vecino_rtt_seconds", "quantile=\"1\""),
        retransmits: a.metric("vecino_gossip_retransmits_total", ""),
        secs,
    }
}

#[test]
fn back_pressure_keeps_a_burst_in_the_engine_not_the_transport() {
    const HOST_QUEUE: usize = 4096;
    // The largest frame the engine builds from small events (a single larger event goes alone).
    const LARGEST_FRAME: usize = 16 * 1024 + 1024;
    let (posts, body) = (20, 10_000);
    let off = burst_over_a_slow_link(None, posts, body);
    let on = burst_over_a_slow_link(Some(HOST_QUEUE), posts, body);
    for (name, r) in [("off", &off), ("on (4096 B)", &on)] {
        println!(
            "back-pressure {name:12}: writers held at most {:>7.0} B, longest RTT {:>5.2} s, \
             {:>3.0} retransmissions, {posts} × {body} B delivered in {:.1} s",
            r.peak, r.rtt_max, r.retransmits, r.secs
        );
    }
    // The engine hands the transport at most the bound plus the frame that crossed it.
    assert!(
        on.peak < (HOST_QUEUE + LARGEST_FRAME) as f64,
        "with back-pressure the writers held {} B",
        on.peak
    );
    // Without it the burst sits in the transport, out of reach of the engine's priorities.
    assert!(off.peak > 2.0 * on.peak, "without back-pressure: {} B, with: {} B", off.peak, on.peak);
}
