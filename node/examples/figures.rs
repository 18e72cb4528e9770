//! The node's figures, measured on real `vecino` processes on loopback (docs/BENCHMARKS.md).
//!
//! ```text
//! cargo build --release -p vecino --examples
//! target/release/examples/figures mesh   [--n 20] [--matrix PATH] [--settle-secs 180] [--peer-args "FLAGS"] [--nft]
//! target/release/examples/figures ingest [--events 200000]
//! target/release/examples/figures flood  [--secs 60] [--bytes 49152] [--nul] [--baseline-secs 15]
//! target/release/examples/figures eclipse [--keys 500] [--rate 100] [--hold-secs 20]
//! target/release/examples/figures sigflood [--secs 5]
//! target/release/examples/figures reflect [--keys 120] [--rate 4] [--hold-secs 3] [--watch-secs 60]
//! target/release/examples/figures conns [--n 2000] [--hold-secs 20]
//! target/release/examples/figures fds [--n 1000] [--nofile 256] [--hold-secs 20]
//! ```
//!
//! `mesh`: N peers with link-shim latencies from an RTT matrix (rows spread over the file;
//! default `testnet/data/planetlab490.txt`, run from the repository root; missing pairs are
//! filled by the shim and left out of the coordinate error):
//! membership convergence after the last start, one post per peer delivered to all, idle
//! traffic (vecino frames, and bytes on the wire by the node's own counters: `node/src/wire.rs`
//! says what they hold) and RSS per peer, each peer's coordinate error against the matrix after the settle
//! time, then a `kill -9` of one peer under post load, its restart, and its catch-up. With
//! `--nft` (root, nftables) the kernel counts every peer's bytes on loopback by port over the
//! same idle window, to check the node's wire counters against (`support/nft.rs`).
//!
//! `ingest`: one peer and a load generator (a raw libp2p peer in this process) sending signed
//! posts from 16 authors in frames of 64 on one acknowledged stream; the rate is events whose
//! frames the peer acknowledged (acknowledgement follows the durable commit) per second.
//!
//! `flood`: one peer posts as fast as its API takes posts (four posting threads, `--bytes` of
//! `x` each, or of NUL with `--nul`: six times the bytes once JSON-escaped) for `--secs`;
//! a second peer receives them. Prints the receiver's peak RSS, its store file, the posts it
//! holds and what its budgets forgot, with the default budgets and then, as the baseline of
//! the same run, with budgets out of reach (`--baseline-secs`, 0 to skip).
//!
//! `eclipse`: four honest peers; `--keys` fresh libp2p keys connect to the first at `--rate` a
//! second and hold their connections silent for `--hold-secs`; two seconds in, a newcomer
//! joins through it. Prints the most links the strangers held at once, the honest links that
//! left connected, and how long the newcomer took to join (the probe of 2026-12 measured, on
//! the code before: 50 keys filled the table 48/48, an honest link trimmed and kept apart
//! ≥ 8 min, a newcomer shut out 60 s).
//!
//! `sigflood`: a raw peer writes frames of 64 events with bad signatures to a node as fast as
//! it can for `--secs`; prints how long and how many frames until the node dropped it, the
//! node's CPU meanwhile, and an honest peer's post latency (p50/p99 of 30 posts polled every
//! 5 ms) before and during the attack.
//!
//! `reflect`: `--keys` fresh keys connect to a node one after another, each announcing in
//! identify 16 addresses of a sink (TCP listeners on 127.0.0.1 that count connects), holding
//! `--hold-secs` and hanging up; the sink counts what the node dials there until
//! `--watch-secs` after the last (the probe: 120 keys made a node open 17 808 connections).
//!
//! `conns`: one key opens `--n` connections (TCP + noise + yamux) to a node and holds them
//! `--hold-secs`; prints how many the node kept, its peak RSS and the slowest `GET /v1/status`
//! meanwhile (the probe: 2 000 held, 90 MiB).
//!
//! `fds`: the probe's low file limit. Two nodes start with a soft open-file limit of
//! `--nofile`: one keeps its raised hard limit (what a shell's `ulimit -Sn` leaves), the
//! other has both lowered to `--nofile` once up (`prlimit`: nothing to raise to); `--n`
//! bare TCP connections (no handshake) are opened to each and held `--hold-secs`. Prints each
//! node's limit, its most open files, and the slowest `GET /v1/status` meanwhile (the probe,
//! under `ulimit -n 256` and 1 000 connections: 9.0 s).
//! Every loop here is bounded in count and time and stops by itself.
#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/nft.rs"]
mod nft;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Peer, wait_until};
use serde_json::Value;
use vecino_coords::topology::RttMatrix;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size and peak, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The matrix (missing pairs stay missing: the shim fills them, the error skips them).
fn read_matrix(path: &Path) -> RttMatrix {
    let text = std::fs::read_to_string(path).expect("matrix");
    RttMatrix::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The median relative error of the RTTs predicted between every two peers by their
/// published coordinates as `p` holds them (its own current one for itself); peers are named
/// `p{i}` and sit on `rows[i]` of the matrix.
fn published_error(p: &Peer, matrix: &RttMatrix, rows: &[usize]) -> f64 {
    let mut at: Vec<(usize, vecino_coords::Coordinate)> = Vec::new();
    for m in p.get("/v1/members").as_array().unwrap() {
        let i = m["name"].as_str().and_then(|n| n.strip_prefix('p')?.parse::<usize>().ok());
        let c = vecino::node::coordinate_from_json(&m["coordinate"]);
        if let (Some(i), Some(c)) = (i, c) {
            at.push((i, c));
        }
    }
    let mut errs = Vec::new();
    for (a, (i, ci)) in at.iter().enumerate() {
        for (j, cj) in &at[a + 1..] {
            if let Some(actual) = matrix.measured(rows[*i], rows[*j]) {
                errs.push((ci.distance_secs(cj) * 1e3 - actual).abs() / actual);
            }
        }
    }
    if errs.is_empty() { f64::NAN } else { median(errs) }
}

fn alive(p: &Peer) -> usize {
    p.get("/v1/members").as_array().unwrap().iter().filter(|m| m["status"] == "alive").count()
}

fn coord(v: &Value) -> vecino_coords::Coordinate {
    vecino::node::coordinate_from_json(&v["coordinate"]).expect("a valid coordinate")
}

fn mesh(args: &[String]) {
    let n: usize = arg(args, "--n", 20);
    let settle: u64 = arg(args, "--settle-secs", 180);
    let matrix_path: PathBuf =
        arg(args, "--matrix", PathBuf::from("testnet/data/planetlab490.txt"));
    let matrix_path = std::fs::canonicalize(&matrix_path).expect("matrix file");
    let matrix = read_matrix(&matrix_path);
    let step = matrix.len() / n;
    let rows: Vec<usize> = (0..n).map(|i| i * step).collect();
    let tmp = tempfile::tempdir().unwrap();
    // Keys first: the shim file maps peer ids to matrix rows.
    let mut nodes_toml = String::from("[nodes]\n");
    for (i, row) in rows.iter().enumerate() {
        let id = vecino::keyfile::create(&tmp.path().join(format!("p{i}/identity.pem"))).unwrap();
        let pid = vecino::peer::peer_id(&id).to_string();
        nodes_toml.push_str(&format!("\"{pid}\" = {row}\n"));
    }
    let links = tmp.path().join("links.toml");
    std::fs::write(&links, format!("matrix = \"{}\"\n{nodes_toml}", matrix_path.display()))
        .unwrap();
    let links = links.to_str().unwrap().to_string();
    // `--peer-args "--heartbeat-ms 2000 …"`: more flags for every peer (to measure profiles).
    let peer_args: String = arg(args, "--peer-args", String::new());
    let mut extra = vec!["--emulate-links", links.as_str()];
    extra.extend(peer_args.split_whitespace());
    println!(
        "mesh: {n} peers, matrix {} rows {rows:?}, peer flags {extra:?}",
        matrix_path.display()
    );

    let mut peers = vec![Peer::start("p0", &tmp.path().join("p0"), &[], &extra)];
    let boot = vec![peers[0].addr.clone()];
    for i in 1..n {
        peers.push(Peer::start(&format!("p{i}"), &tmp.path().join(format!("p{i}")), &boot, &extra));
    }
    let last_started = Instant::now();
    wait_until("every peer lists all as alive", || peers.iter().all(|p| alive(p) == n));
    let converged = last_started.elapsed();
    let linked: Vec<f64> =
        peers.iter().map(|p| p.get("/v1/status")["links"]["connected"].as_f64().unwrap()).collect();
    println!(
        "membership converged {:.2} s after the last start (neighbour links per peer: median {}, min {}, max {})",
        converged.as_secs_f64(),
        median(linked.clone()),
        pct(&linked, 0.0),
        pct(&linked, 1.0)
    );
    // The map a new user sees: what the published coordinates (newspapers and hey-theres, as
    // peer 0 holds them) predict, 30 s after the last start and again at the end.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(last_started.elapsed()));
    let map_early = published_error(&peers[0], &matrix, &rows);

    // One post per peer, delivered to all.
    let t = Instant::now();
    for (i, p) in peers.iter().enumerate() {
        p.post("mesh", &format!("post from p{i}"));
    }
    wait_until("every post at every peer", || {
        peers.iter().all(|p| p.get("/v1/posts?limit=1000")["posts"].as_array().unwrap().len() == n)
    });
    println!("{n} posts delivered to all {n} peers in {:.2} s", t.elapsed().as_secs_f64());

    // Idle: traffic and memory over the last minute of the settle window, once the overlay has
    // trimmed its surplus links (a link is kept at least 60 s) and the coordinates have settled.
    let window = (settle / 3).clamp(30, 60);
    std::thread::sleep(Duration::from_secs(settle.saturating_sub(window)));
    let nft = args.iter().any(|a| a == "--nft").then(|| {
        let ports: Vec<nft::Ports> = peers
            .iter()
            .map(|p| nft::ports_of(&p.get("/v1/status")).expect("a peer's TCP and QUIC ports"))
            .collect();
        nft::Nft::install(&ports).unwrap_or_else(|e| panic!("--nft: {e}"))
    });
    let nft0 = nft.as_ref().map(|t| t.read().expect("nft counters"));
    let traffic0: Vec<Traffic> = peers.iter().map(Traffic::of).collect();
    let kinds0: Vec<Vec<(String, f64)>> = peers.iter().map(queued_by_kind).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(window));
    let dt = t0.elapsed().as_secs_f64();
    let traffic: Vec<Traffic> =
        peers.iter().zip(&traffic0).map(|(p, t0)| Traffic::of(p).minus(t0)).collect();
    let nft1 = nft.as_ref().map(|t| t.read().expect("nft counters"));
    let kbps = |bytes: f64| bytes * 8.0 / dt / 1e3;
    let stats = |v: Vec<f64>| {
        format!(
            "mean {:.2}, median {:.2}, max {:.2}",
            v.iter().sum::<f64>() / v.len() as f64,
            median(v.clone()),
            pct(&v, 1.0)
        )
    };
    let rss: Vec<f64> = peers.iter().map(|p| rss_kib(p.pid().unwrap()).0 as f64 / 1024.0).collect();
    println!(
        "idle over {dt:.0} s: sent kbit/s per peer {}; RSS MiB median {:.1}, max {:.1}",
        stats(traffic.iter().map(|t| kbps(t.frames)).collect()),
        median(rss.clone()),
        pct(&rss, 1.0)
    );
    let mean_of = |f: fn(&Traffic) -> f64| kbps(traffic.iter().map(f).sum::<f64>()) / n as f64;
    println!(
        "idle on the wire (the node's counters: TCP at the socket with modelled headers, QUIC its \
         streams only), kbit/s per peer: sent {}; received {}; sent by transport, mean: tcp {:.2}, \
         quic {:.2}",
        stats(traffic.iter().map(|t| kbps(t.wire_sent[0] + t.wire_sent[1])).collect()),
        stats(traffic.iter().map(|t| kbps(t.wire_received[0] + t.wire_received[1])).collect()),
        mean_of(|t| t.wire_sent[0]),
        mean_of(|t| t.wire_sent[1]),
    );
    if let (Some(a), Some(b)) = (nft0, nft1) {
        let d: Vec<[f64; 4]> = b
            .peers
            .iter()
            .zip(&a.peers)
            .map(|(b, a)| std::array::from_fn(|k| b[k] - a[k]))
            .collect();
        let col = |k: usize| d.iter().map(|x| x[k]).sum::<f64>();
        println!(
            "idle on the wire (nftables on lo, IP bytes by port), kbit/s per peer: sent {}; \
             received {}; sent by transport, mean: tcp {:.2}, quic {:.2}; TCP from ephemeral \
             ports (unattributed) {:.2} kbit/s in all",
            stats(d.iter().map(|x| kbps(x[0] + x[1])).collect()),
            stats(d.iter().map(|x| kbps(x[2] + x[3])).collect()),
            kbps(col(0)) / n as f64,
            kbps(col(1)) / n as f64,
            kbps(b.unattributed - a.unattributed),
        );
        // Every TCP packet between peers leaves a listening port or reaches one from an
        // ephemeral port, and every QUIC packet leaves a listening port: the totals of each.
        let tcp_all = col(0) + (b.unattributed - a.unattributed);
        let ours = |f: fn(&Traffic) -> f64| traffic.iter().map(f).sum::<f64>();
        let ratio = |ours: f64, theirs: f64| if theirs > 0.0 { ours / theirs } else { f64::NAN };
        println!(
            "node counters / nftables, all peers' bytes: sent tcp {:.3}, quic {:.3}; received \
             tcp {:.3}, quic {:.3}",
            ratio(ours(|t| t.wire_sent[0]), tcp_all),
            ratio(ours(|t| t.wire_sent[1]), col(1)),
            ratio(ours(|t| t.wire_received[0]), tcp_all),
            ratio(ours(|t| t.wire_received[1]), col(1)),
        );
    }
    drop(nft);

    // Liveness classes (`fast_links`): how many links each peer holds fast, and its coordinate's
    // error estimate (every link is fast until it is at most 0.5).
    let status: Vec<Value> = peers.iter().map(|p| p.get("/v1/status")).collect();
    let fast: Vec<f64> =
        status.iter().map(|s| s["links"]["fast"].as_f64().unwrap_or(f64::NAN)).collect();
    let error: Vec<f64> =
        status.iter().map(|s| s["coordinate"]["error"].as_f64().unwrap_or(f64::NAN)).collect();
    println!(
        "fast links per peer: median {}, min {}, max {}; coordinate error estimate: median {:.2}, max {:.2}",
        median(fast.clone()),
        pct(&fast, 0.0),
        pct(&fast, 1.0),
        median(error.clone()),
        pct(&error, 1.0)
    );

    // Where the idle bytes go: the engine's queued frame bytes by kind, summed over peers.
    let mut by_kind: std::collections::BTreeMap<String, f64> = Default::default();
    for (p, k0) in peers.iter().zip(&kinds0) {
        for (kind, b) in queued_by_kind(p) {
            let before = k0.iter().find(|(k, _)| *k == kind).map_or(0.0, |(_, b)| *b);
            *by_kind.entry(kind).or_default() += b - before;
        }
    }
    let per_node = |b: f64| b * 8.0 / dt / 1e3 / n as f64;
    let total: f64 = by_kind.values().map(|&b| per_node(b)).sum();
    let parts: Vec<String> =
        by_kind.iter().map(|(k, &b)| format!("{k} {:.2}", per_node(b))).collect();
    println!("idle engine frames queued, kbit/s per peer: {total:.2} ({})", parts.join(", "));

    // Coordinates against the matrix.
    let coords: Vec<vecino_coords::Coordinate> =
        peers.iter().map(|p| coord(&p.get("/v1/coordinate"))).collect();
    let mut medians = Vec::new();
    for i in 0..n {
        let errs: Vec<f64> = (0..n)
            .filter(|&j| j != i)
            .filter_map(|j| {
                let actual = matrix.measured(rows[i], rows[j])?;
                let est = coords[i].distance_secs(&coords[j]) * 1e3;
                Some((est - actual).abs() / actual)
            })
            .collect();
        medians.push(median(errs));
    }
    println!(
        "coordinates after {:.0} s: per-peer median relative error: median {:.3}, p90 {:.3}, max {:.3}",
        last_started.elapsed().as_secs_f64(),
        median(medians.clone()),
        pct(&medians, 0.9),
        pct(&medians, 1.0)
    );

    let map_late = published_error(&peers[0], &matrix, &rows);
    println!(
        "published coordinates (peer 0's members): median relative error of the RTTs they \
         predict {map_early:.3} at 30 s after the last start, {map_late:.3} at {:.0} s",
        last_started.elapsed().as_secs_f64()
    );

    // kill -9 under load, restart, catch up.
    let victim = n / 2;
    let loader_api = peers[1].api.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let load = std::thread::spawn(move || {
        let c = vecino::client::Client::new(&loader_api);
        let mut sent = 0u64;
        let start = Instant::now();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(120)
        {
            let body = serde_json::json!({"topic": "load", "text": format!("load {sent}")});
            if c.post("/v1/posts", &body).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    std::thread::sleep(Duration::from_secs(3));
    peers[victim].kill9();
    std::thread::sleep(Duration::from_secs(3));
    let restarted = Instant::now();
    peers[victim].restart(&boot);
    let vid = peers[victim].peer_id.clone();
    wait_until("the restarted peer is back in membership", || {
        alive(&peers[victim]) == n
            && peers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != victim)
                .any(|(_, p)| p.link(&vid).as_deref() == Some("connected"))
    });
    let back = restarted.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.join().unwrap();
    let want = n as u64 + sent;
    wait_until("the restarted peer holds every post", || {
        peers[victim].get("/v1/posts?limit=10000")["posts"].as_array().unwrap().len() as u64 == want
    });
    let complete = restarted.elapsed();
    let count = |p: &Peer| p.get("/v1/posts?limit=10000")["posts"].as_array().unwrap().len() as u64;
    let everywhere = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("every peer holds every post", || peers.iter().all(|p| count(p) == want));
    }))
    .is_ok();
    let counts: Vec<u64> = peers.iter().map(count).collect();
    println!(
        "restart after kill -9 under load ({sent} posts at ~50/s): back in membership {:.2} s after the restart, all {want} posts held {:.2} s after; every peer complete: {everywhere} at {:.2} s (counts {counts:?})",
        back.as_secs_f64(),
        complete.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );
}

async fn ingest_load(peer: &Peer, events: usize) -> (f64, u64) {
    use futures::{AsyncWriteExt, StreamExt};
    use vecino_proto::{Bytes, Hlc, Identity, encode_frame, pb};

    let me = Identity::from_seed([77; 32]);
    let mut swarm = common::raw_swarm(&me);
    let mut control = swarm.behaviour().new_control();
    let mut incoming = control.accept(vecino::transport::PROTOCOL).unwrap();
    let (ack_tx, mut ack_rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            let ack_tx = ack_tx.clone();
            tokio::spawn(async move {
                use prost::Message;
                while let Ok(Some(f)) = vecino::transport::read_frame(&mut s).await {
                    if let Ok(pb::Frame { kind: Some(pb::frame::Kind::Ack(a)), .. }) =
                        pb::Frame::decode(f)
                    {
                        ack_tx.send_modify(|c| *c = (*c).max(a.cumulative));
                    }
                }
            });
        }
    });
    let target: libp2p::PeerId = peer.peer_id.parse().unwrap();
    swarm.dial(peer.addr.parse::<libp2p::Multiaddr>().unwrap()).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    // Pre-sign: 16 authors, posts in order.
    let authors: Vec<Identity> = (0..16u8).map(|i| Identity::from_seed([i + 1; 32])).collect();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let per = events / authors.len();
    let mut envs: Vec<Bytes> = Vec::with_capacity(events);
    for seq in 1..=per as u64 {
        for a in &authors {
            let body = pb::event::Body::Post(pb::Post {
                topic: "load".into(),
                body: Bytes::from_static(
                    b"a signed event of about a hundred bytes on the wire, to be stored",
                ),
                content_type: String::new(),
            });
            envs.push(
                a.sign(pb::Stream::Post, seq, Hlc { ms: now_ms + seq, counter: 0 }, body)
                    .unwrap()
                    .envelope()
                    .clone(),
            );
        }
    }
    let mut s = control.open_stream(target, vecino::transport::PROTOCOL).await.expect("stream");
    let frames: Vec<Vec<u8>> = envs
        .chunks(64)
        .enumerate()
        .map(|(i, c)| {
            encode_frame(&pb::Frame {
                link_seq: i as u64 + 1,
                link_floor: 1,
                kind: Some(pb::frame::Kind::Events(pb::Events {
                    envelopes: c.to_vec(),
                    sync: false,
                    hops: None,
                    trail: Vec::new(),
                    detours: None,
                    copies: None,
                })),
            })
        })
        .collect();
    let last = frames.len() as u64;
    let t0 = Instant::now();
    for f in &frames {
        vecino::transport::write_frame(&mut s, f).await.unwrap();
    }
    s.flush().await.unwrap();
    let deadline = Duration::from_secs(300);
    while *ack_rx.borrow() < last && t0.elapsed() < deadline {
        let _ = tokio::time::timeout(Duration::from_secs(1), ack_rx.changed()).await;
    }
    let acked = *ack_rx.borrow();
    (t0.elapsed().as_secs_f64(), acked.min(last) * 64)
}

fn ingest(args: &[String]) {
    let events: usize = arg(args, "--events", 200_000);
    let tmp = tempfile::tempdir().unwrap();
    let peer = Peer::start("sink", &tmp.path().join("sink"), &[], &[]);
    let pid = peer.pid().unwrap();
    let cpu0 = cpu_secs(pid);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (secs, acked) = rt.block_on(ingest_load(&peer, events));
    let cpu = cpu_secs(pid) - cpu0;
    let (rss, peak) = rss_kib(pid);
    let stored = peer.get("/v1/status")["stats"]["events_new"].as_u64().unwrap_or(0);
    println!(
        "ingest: {acked} events acknowledged in {secs:.2} s = {:.0} events/s; node CPU {cpu:.1} s ({:.0}% of one core), RSS {:.1} MiB (peak {:.1} MiB), events_new {stored}",
        acked as f64 / secs,
        cpu / secs * 100.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("mesh") => mesh(&args),
        Some("ingest") => ingest(&args),
        Some("flood") => flood(&args),
        Some("eclipse") => eclipse(&args),
        Some("sigflood") => sigflood(&args),
        Some("reflect") => reflect(&args),
        Some("conns") => conns(&args),
        Some("fds") => fds(&args),
        _ => eprintln!(
            "usage: figures mesh [--n 20] [--matrix PATH] [--settle-secs 180] [--peer-args FLAGS] [--nft] | ingest [--events N] | flood [--secs 60] [--bytes N] [--nul] [--baseline-secs 15] | eclipse [--keys 500] [--rate 100] [--hold-secs 20] | sigflood [--secs 5] | reflect [--keys 120] [--rate 4] [--hold-secs 3] [--watch-secs 60] | conns [--n 2000] [--hold-secs 20] | fds [--n 1000] [--nofile 256] [--hold-secs 20]"
        ),
    }
}

/// A peer's byte counters at one moment: frames sent (vecino frames and length prefixes), and
/// bytes on the wire sent and received, [tcp, quic].
#[derive(Debug, Clone, Copy)]
struct Traffic {
    frames: f64,
    wire_sent: [f64; 2],
    wire_received: [f64; 2],
}

impl Traffic {
    fn of(p: &Peer) -> Traffic {
        let text = p.client().get_text("/metrics").expect("metrics");
        let m = |name: &str, labels: &str| common::metric_in(&text, name, labels);
        let (sent, received) = (
            "vecino_transport_wire_bytes_sent_total",
            "vecino_transport_wire_bytes_received_total",
        );
        let (tcp, quic) = ("transport=\"tcp\"", "transport=\"quic\"");
        Traffic {
            frames: m("vecino_transport_bytes_sent_total", ""),
            wire_sent: [m(sent, tcp), m(sent, quic)],
            wire_received: [m(received, tcp), m(received, quic)],
        }
    }

    fn minus(self, before: &Traffic) -> Traffic {
        Traffic {
            frames: self.frames - before.frames,
            wire_sent: std::array::from_fn(|k| self.wire_sent[k] - before.wire_sent[k]),
            wire_received: std::array::from_fn(|k| self.wire_received[k] - before.wire_received[k]),
        }
    }
}

/// The engine's queued frame bytes by kind (`vecino_gossip_frame_bytes_queued_total{kind}`).
fn queued_by_kind(p: &Peer) -> Vec<(String, f64)> {
    let text = p.client().get_text("/metrics").expect("metrics");
    let prefix = "vecino_gossip_frame_bytes_queued_total{kind=\"";
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (kind, rest) = rest.split_once('"')?;
            let value = rest.rsplit_once(' ')?.1.parse().ok()?;
            Some((kind.to_string(), value))
        })
        .collect()
}

/// `flood` (see the module docs).
fn flood(args: &[String]) {
    let secs = arg(args, "--secs", 60u64);
    let bytes = arg(args, "--bytes", 48 * 1024usize);
    let nul = args.iter().any(|a| a == "--nul");
    let baseline_secs = arg(args, "--baseline-secs", 15u64);
    let fill = if nul { "NUL" } else { "x" };
    println!("flood: one author posting {bytes}-byte posts of {fill} at full rate");
    println!(
        "| run | secs | posts accepted | received | receiver peak RSS MiB | receiver store file MiB: peak / end / after its next tidy (pages in use) | posts held (API) | forgotten (author_share / total / gap given up) | receiver up |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    flood_run("budgets (defaults)", secs, bytes, nul, &[]);
    if baseline_secs > 0 {
        let off = ["--posts-share-mib", "1000000", "--posts-total-mib", "1000000"];
        flood_run("baseline: budgets off", baseline_secs, bytes, nul, &off);
    }
}

fn flood_run(label: &str, secs: u64, bytes: usize, nul: bool, extra: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Peer::start("author", &tmp.path().join("author"), &[], extra);
    let b =
        Peer::start("receiver", &tmp.path().join("receiver"), std::slice::from_ref(&a.addr), extra);
    common::wait_converged(&[&a, &b]);
    let text: String = if nul { "\0".repeat(bytes) } else { "x".repeat(bytes) };
    let b_pid = b.pid().expect("receiver running");
    let end = Instant::now() + Duration::from_secs(secs);
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let mut peak_kib = 0;
    let store_len = || std::fs::metadata(b.dir.join("vecino.redb")).map_or(0, |m| m.len());
    let mut peak_store = 0;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let c = a.client();
                let body = serde_json::json!({"topic": "flood", "text": text});
                while Instant::now() < end {
                    if c.post("/v1/posts", &body).is_ok_and(|v| v.get("id").is_some()) {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        while Instant::now() < end {
            peak_kib = peak_kib.max(rss_kib(b_pid).1);
            peak_store = peak_store.max(store_len());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Let the receiver catch up (bounded), then read it.
    let accepted = accepted.into_inner();
    let received = |p: &Peer| {
        let m = p.client().get_text("/metrics").unwrap_or_default();
        common::metric_in(&m, "vecino_gossip_posts_delivered_total", "")
    };
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle && received(&b) < accepted as f64 {
        peak_kib = peak_kib.max(rss_kib(b_pid).1);
        peak_store = peak_store.max(store_len());
        std::thread::sleep(Duration::from_millis(500));
    }
    peak_kib = peak_kib.max(rss_kib(b_pid).1);
    let m = b.client().get_text("/metrics").unwrap_or_default();
    let forgot = |why: &str| {
        common::metric_in(&m, "vecino_gossip_posts_forgotten_total", &format!("reason=\"{why}\""))
    };
    let mut held = 0;
    let mut since = 0u64;
    for _ in 0..10_000 {
        let page = b.get(&format!("/v1/posts?since={since}&limit=10"));
        let n = page["posts"].as_array().map_or(0, Vec::len);
        if n == 0 {
            break;
        }
        held += n;
        since = page["next"].as_u64().unwrap_or(u64::MAX);
    }
    let store = store_len();
    // The node looks at its file every minute (compacting it when mostly free): wait for the
    // next look, seen as the in-use gauge changing (bounded).
    let gauge = |name: &str| {
        let m = b.client().get_text("/metrics").unwrap_or_default();
        common::metric_in(&m, name, "")
    };
    let in_use_before = gauge("vecino_store_allocated_bytes");
    let compactions_before = gauge("vecino_store_compactions_total");
    let tidy_by = Instant::now() + Duration::from_secs(65);
    while Instant::now() < tidy_by
        && gauge("vecino_store_allocated_bytes") == in_use_before
        && gauge("vecino_store_compactions_total") == compactions_before
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (tidied, in_use) = (store_len(), gauge("vecino_store_allocated_bytes"));
    let compacted = gauge("vecino_store_compactions_total");
    let up = b.client().get("/v1/status").is_ok();
    if std::env::var_os("FLOOD_DEBUG").is_some() {
        eprintln!("receiver links: {}", b.get("/v1/links"));
        eprintln!("author links: {}", a.get("/v1/links"));
        for l in m
            .lines()
            .filter(|l| l.contains("rejected") || l.contains("forgotten") || l.contains("dropped"))
        {
            eprintln!("receiver {l}");
        }
        let am = a.client().get_text("/metrics").unwrap_or_default();
        for l in am.lines().filter(|l| {
            l.contains("rejected")
                || l.contains("forgotten")
                || l.contains("dropped")
                || l.contains("queued")
        }) {
            eprintln!("author {l}");
        }
    }
    println!(
        "| {label} | {secs} | {accepted} | {} | {:.0} | {:.1} / {:.1} / {:.1} ({:.1}; {compacted} compactions) | {held} | {:.0} / {:.0} / {:.0} | {} |",
        received(&b),
        peak_kib as f64 / 1024.0,
        peak_store as f64 / f64::from(1 << 20),
        store as f64 / f64::from(1 << 20),
        tidied as f64 / f64::from(1 << 20),
        in_use / f64::from(1 << 20),
        forgot("author_share"),
        forgot("total"),
        forgot("gap_given_up"),
        if up { "yes" } else { "NO" },
    );
}

/// `eclipse` (see the module docs).
fn eclipse(args: &[String]) {
    let keys = arg(args, "--keys", 500usize);
    let rate = arg(args, "--rate", 100.0f64);
    let hold = Duration::from_secs(arg(args, "--hold-secs", 20u64));
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let others: Vec<Peer> = ["b", "c", "d"]
        .iter()
        .map(|n| Peer::start(n, &tmp.path().join(n), std::slice::from_ref(&a.addr), &[]))
        .collect();
    let mut all: Vec<&Peer> = vec![&a];
    all.extend(others.iter());
    common::wait_converged(&all);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let target: libp2p::Multiaddr = a.addr.parse().expect("addr");
    let attack_secs = keys as f64 / rate + hold.as_secs_f64();
    let attack = rt.spawn(common::attack::strangers(target, keys, rate, hold));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let f = Peer::start("f", &tmp.path().join("f"), std::slice::from_ref(&a.addr), &[]);
    let f_started = Instant::now();
    let mut honest: Vec<String> = others.iter().map(|p| p.peer_id.clone()).collect();
    honest.push(f.peer_id.clone());
    let mut joined = None;
    let (mut most_strangers, mut most_links, mut most_share) = (0usize, 0usize, 0.0f64);
    let mut dropped = std::collections::BTreeSet::new();
    while t0.elapsed().as_secs_f64() < attack_secs + 2.0 {
        let links = a.get("/v1/links");
        let links = links.as_array().cloned().unwrap_or_default();
        let strangers =
            links.iter().filter(|l| !honest.iter().any(|h| l["peer_id"] == h.as_str())).count();
        most_strangers = most_strangers.max(strangers);
        most_links = most_links.max(links.len());
        if !links.is_empty() {
            most_share = most_share.max(strangers as f64 / links.len() as f64);
        }
        for p in &others {
            let status = links.iter().find(|l| l["peer_id"] == p.peer_id.as_str());
            if status.is_none_or(|l| l["status"] != "connected") {
                dropped.insert(p.name.clone());
            }
        }
        if joined.is_none() && alive(&f) >= 5 && f.link(&a.peer_id).as_deref() == Some("connected")
        {
            joined = Some(f_started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let stats = rt.block_on(attack).expect("attack");
    let m = a.client().get_text("/metrics").unwrap_or_default();
    let rejected =
        |r: &str| common::metric_in(&m, "vecino_gossip_rejected_total", &format!("reason=\"{r}\""));
    println!(
        "eclipse: {keys} fresh keys at {rate}/s, each holding a silent connection {}s",
        hold.as_secs()
    );
    println!(
        "| keys connected | most links held by strangers | most links | strangers' largest share | honest links that left connected | newcomer joined (5 alive, linked) | let go as strangers / kept out / table full |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {most_strangers} | {most_links} | {:.0} % | {} {:?} | {} | {:.0} / {:.0} / {:.0} |",
        stats.connected.load(std::sync::atomic::Ordering::Relaxed),
        most_share * 100.0,
        dropped.len(),
        dropped,
        joined.map_or_else(|| "NOT within the attack".to_string(), |s| format!("{s:.1} s")),
        rejected("stranger"),
        rejected("stranger_again"),
        rejected("too_many_links"),
    );
}

/// `sigflood` (see the module docs).
fn sigflood(args: &[String]) {
    use futures::{AsyncWriteExt, StreamExt};
    use vecino_proto::{Bytes, Hlc, Identity, encode_frame, pb};
    let secs = arg(args, "--secs", 5u64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    common::wait_converged(&[&a, &b]);
    let latencies = |tag: &str| -> Vec<f64> {
        (0..30)
            .map(|i| {
                let text = format!("{tag}-{i}");
                let t = Instant::now();
                b.post("lat", &text);
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until {
                    let v = a.get("/v1/posts?topic=lat&limit=10000");
                    if v["posts"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["text"] == text.as_str()))
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect()
    };
    let before = latencies("before");
    let a_pid: libp2p::PeerId = a.peer_id.parse().expect("peer id");
    let a_addr: libp2p::Multiaddr = a.addr.parse().expect("addr");
    let pid = a.pid().expect("running");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let attack = rt.spawn(async move {
        let me = Identity::from_seed([99; 32]);
        let mut swarm = common::raw_swarm(&me);
        let mut control = swarm.behaviour().new_control();
        swarm.dial(a_addr).expect("dial");
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let body = pb::event::Body::Post(pb::Post {
            topic: "x".into(),
            body: Bytes::from_static(b"forged"),
            content_type: String::new(),
        });
        let mut forged = me
            .sign(pb::Stream::Post, 1, Hlc { ms: 1, counter: 0 }, body)
            .expect("sign")
            .envelope()
            .to_vec();
        let n = forged.len();
        forged[n - 1] ^= 0x40;
        let frame = encode_frame(&pb::Frame {
            kind: Some(pb::frame::Kind::Events(pb::Events {
                envelopes: vec![Bytes::from(forged); 64],
                ..Default::default()
            })),
            ..Default::default()
        });
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(10),
            control.open_stream(a_pid, vecino::transport::PROTOCOL),
        )
        .await
        else {
            return (0u64, None);
        };
        let started = Instant::now();
        let mut frames = 0u64;
        while started.elapsed() < Duration::from_secs(secs) {
            if vecino::transport::write_frame(&mut s, &frame).await.is_err()
                || s.flush().await.is_err()
            {
                return (frames, Some(started.elapsed()));
            }
            frames += 1;
        }
        (frames, None)
    });
    let during = latencies("during");
    let (frames, dropped_after) = rt.block_on(attack).expect("attack");
    let cpu = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();
    let m = a.client().get_text("/metrics").unwrap_or_default();
    let bad = common::metric_in(&m, "vecino_gossip_rejected_total", "reason=\"bad_signature\"");
    let mis = common::metric_in(&m, "vecino_gossip_rejected_total", "reason=\"misbehaving\"");
    println!(
        "sigflood: frames of 64 events with bad signatures, as fast as the stream takes them, for up to {secs} s"
    );
    println!(
        "| frames written | bad signatures verified | dropped after | dropped (misbehaving) | node CPU (cores) over the run | honest p50 / p99 before | during |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {frames} | {bad:.0} | {} | {mis:.0} | {cpu:.2} | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
        dropped_after.map_or_else(
            || format!("NOT within {secs} s"),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        ),
        pct(&before, 0.5),
        pct(&before, 0.99),
        pct(&during, 0.5),
        pct(&during, 0.99),
    );
}

/// `reflect` (see the module docs).
fn reflect(args: &[String]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let keys = arg(args, "--keys", 120usize);
    let rate = arg(args, "--rate", 4.0f64);
    let hold = Duration::from_secs(arg(args, "--hold-secs", 3u64));
    let watch = Duration::from_secs(arg(args, "--watch-secs", 60u64));
    // The sink: 16 listeners, every connect counted and closed.
    let connects = std::sync::Arc::new(AtomicU64::new(0));
    let mut announce = Vec::new();
    for _ in 0..16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("sink");
        let port = l.local_addr().expect("sink addr").port();
        announce
            .push(format!("/ip4/127.0.0.1/tcp/{port}").parse::<libp2p::Multiaddr>().expect("addr"));
        let n = connects.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    common::wait_converged(&[&a, &b]);
    let dials0 = common::metric_in(
        &a.client().get_text("/metrics").unwrap_or_default(),
        "vecino_transport_dials_total",
        "",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let target: libp2p::Multiaddr = a.addr.parse().expect("addr");
    let t0 = Instant::now();
    rt.block_on(common::attack::announcers(target, announce, keys, rate, hold));
    let attack_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(watch);
    let m = a.client().get_text("/metrics").unwrap_or_default();
    let dials = common::metric_in(&m, "vecino_transport_dials_total", "") - dials0;
    let refused = common::metric_in(&m, "vecino_transport_addrs_refused_total", "");
    // That the node heard the sink's addresses at all (else 0 connects proves nothing).
    let announced = common::metric_in(&m, "vecino_transport_addrs_announced_total", "");
    let total_s = t0.elapsed().as_secs_f64();
    let n = connects.load(Ordering::Relaxed);
    println!(
        "reflect: {keys} keys at {rate}/s, each announcing 16 sink addresses and holding {}s; counted until {}s after the last",
        hold.as_secs(),
        watch.as_secs()
    );
    println!(
        "| connects at the sink | per key | per minute | dials by the node (all) | addresses announced to it (identify) | announced addresses not kept | attack / watched |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {:.2} | {:.1} | {dials:.0} | {announced:.0} | {refused:.0} | {attack_s:.0} s / {total_s:.0} s |",
        n as f64 / keys as f64,
        n as f64 / (total_s / 60.0),
    );
    drop(b);
}

/// `conns` (see the module docs).
fn conns(args: &[String]) {
    use libp2p::swarm::SwarmEvent;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
    let n = arg(args, "--n", 2000usize);
    let hold = Duration::from_secs(arg(args, "--hold-secs", 20u64));
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let pid = a.pid().expect("running");
    let a_pid: libp2p::PeerId = a.peer_id.parse().expect("peer id");
    let a_addr: libp2p::Multiaddr = a.addr.parse().expect("addr");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let me = vecino_proto::Identity::from_seed([77; 32]);
        let mut swarm = common::raw_swarm(&me);
        for _ in 0..n {
            let opts = DialOpts::peer_id(a_pid)
                .addresses(vec![a_addr.clone()])
                .condition(PeerCondition::Always)
                .build();
            let _ = swarm.dial(opts);
        }
        let (mut open, mut most, mut refused) = (0i64, 0i64, 0u64);
        common::attack::drive(&mut swarm, hold, |ev| {
            match ev {
                SwarmEvent::ConnectionEstablished { .. } => {
                    open += 1;
                    most = most.max(open);
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    open -= 1;
                    refused += 1;
                }
                SwarmEvent::OutgoingConnectionError { .. } => refused += 1,
                _ => {}
            }
            true
        })
        .await;
        let _ = tx.send((most, open, refused));
    });
    let t0 = Instant::now();
    let (mut worst_ms, mut peak) = (0.0f64, 0u64);
    while t0.elapsed() < hold {
        let t = Instant::now();
        let _ = a.client().get("/v1/status");
        worst_ms = worst_ms.max(t.elapsed().as_secs_f64() * 1000.0);
        peak = peak.max(rss_kib(pid).1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (most, open, refused) = rx.recv_timeout(Duration::from_secs(30)).unwrap_or((-1, -1, 0));
    let m = a.client().get_text("/metrics").unwrap_or_default();
    let denied =
        common::metric_in(&m, "vecino_transport_rejected_total", "reason=\"connection_limit\"");
    println!("conns: one key dials a node {n} times and holds what it gets {}s", hold.as_secs());
    println!(
        "| most open at once | open at the end | refused or closed | counted connection_limit | node peak RSS MiB | slowest GET /v1/status |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {most} | {open} | {refused} | {denied:.0} | {:.0} | {worst_ms:.0} ms |",
        peak as f64 / 1024.0
    );
}

/// A process's open-file limit (soft, hard) and its open files, from /proc.
fn files_of(pid: u32) -> (String, usize) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let limit = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (limit, open)
}

/// `fds` (see the module docs).
fn fds(args: &[String]) {
    use rlimit::Resource;
    let n = arg(args, "--n", 1000usize);
    let nofile = arg(args, "--nofile", 256u64);
    let hold = Duration::from_secs(arg(args, "--hold-secs", 20u64));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (soft, hard) = Resource::NOFILE.get().expect("getrlimit");
    // Both nodes inherit a soft limit of `nofile`; this process takes its own back after.
    Resource::NOFILE.set(nofile, hard).expect("setrlimit");
    let raised = Peer::start("raised", &tmp.path().join("raised"), &[], &[]);
    let capped = Peer::start("capped", &tmp.path().join("capped"), &[], &[]);
    Resource::NOFILE.set(soft.max(4 * n as u64 + 256).min(hard), hard).expect("setrlimit");
    let capped_pid = capped.pid().expect("running");
    let limit = format!("--nofile={nofile}:{nofile}");
    let pid = capped_pid.to_string();
    let lowered = std::process::Command::new("prlimit").args(["--pid", &pid, &limit]).status();
    assert!(lowered.is_ok_and(|s| s.success()), "prlimit failed (util-linux)");
    println!(
        "fds: {n} bare TCP connections held {}s against nodes started under a soft open-file limit of {nofile}",
        hold.as_secs()
    );
    println!(
        "| node | open-file limit soft / hard | connects that succeeded | most open files | slowest GET /v1/status | up after |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, p) in
        [("raised (hard limit left high)", &raised), ("capped (hard limit lowered)", &capped)]
    {
        let pid = p.pid().expect("running");
        let port: u16 = p
            .addr
            .split("/tcp/")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|x| x.parse().ok())
            .expect("tcp port");
        let (limit, _) = files_of(pid);
        let mut held = Vec::with_capacity(n);
        let t0 = Instant::now();
        let (mut worst_ms, mut most) = (0.0f64, 0usize);
        for _ in 0..n {
            if let Ok(c) = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(500),
            ) {
                held.push(c);
            }
        }
        let connected = held.len();
        while t0.elapsed() < hold {
            let t = Instant::now();
            let _ = p.client().get("/v1/status");
            worst_ms = worst_ms.max(t.elapsed().as_secs_f64() * 1000.0);
            most = most.max(files_of(pid).1);
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(held);
        let up = p.client().get("/v1/status").is_ok();
        println!(
            "| {label} | {limit} | {connected} of {n} | {most} | {worst_ms:.0} ms | {} |",
            if up { "yes" } else { "NO" }
        );
    }
}
