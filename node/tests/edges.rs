//! The node's edges toward other programs on the host and the network: an exclusive p2p port,
//! and the libp2p ping protocol served for standard tools.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Peer;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, ping};
use vecino_proto::Identity;

/// The TCP port of a peer's dial address (`/ip4/…/tcp/PORT/p2p/…`).
fn tcp_port(addr: &str) -> u16 {
    let parts: Vec<&str> = addr.split('/').collect();
    let i = parts.iter().position(|p| *p == "tcp").expect("a tcp address");
    parts[i + 1].parse().expect("a port")
}

#[test]
fn a_second_node_on_a_running_nodes_port_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let port = tcp_port(&a.addr);
    let dir = tmp.path().join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let mut second = Command::new(common::vecino_bin())
        .args(["run", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--api", "127.0.0.1:0", "--mdns", "false", "--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vecino runs");
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = second.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = exited else {
        second.kill().unwrap();
        panic!("a second node on port {port} started and ran");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the second node must not start: {stderr}");
    assert!(
        stderr.contains(&format!("TCP port {port} is already in use")),
        "the error names the port: {stderr}"
    );
    // The first node is unharmed.
    assert_eq!(a.get("/v1/status")["peer_id"], a.peer_id.as_str());
}

#[test]
fn the_libp2p_ping_protocol_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let a_pid: PeerId = a.peer_id.parse().unwrap();
    let a_addr: Multiaddr = a.addr.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rtt = rt.block_on(async {
        let me = Identity::from_seed([7; 32]);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(vecino::peer::keypair(&me))
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(100)))
            })
            .unwrap()
            .build();
        swarm.dial(a_addr).unwrap();
        tokio::time::timeout(common::TIMEOUT, async {
            loop {
                if let SwarmEvent::Behaviour(ping::Event { peer, result, .. }) =
                    swarm.select_next_some().await
                {
                    assert_eq!(peer, a_pid);
                    match result {
                        Ok(rtt) => return rtt,
                        Err(e) => panic!("ping failed: {e}"),
                    }
                }
            }
        })
        .await
        .expect("a ping answered in time")
    });
    assert!(rtt < common::TIMEOUT, "a ping round trip: {rtt:?}");
}

/// Peer ids of `p`'s links that are not among `honest`, and whether `peer` is a connected link.
fn links_of(p: &Peer, honest: &[&str]) -> (usize, usize, Vec<(String, String)>) {
    let links = p.get("/v1/links");
    let links = links.as_array().cloned().unwrap_or_default();
    let strangers =
        links.iter().filter(|l| !honest.contains(&l["peer_id"].as_str().unwrap_or(""))).count();
    let named = links
        .iter()
        .map(|l| {
            (
                l["peer_id"].as_str().unwrap_or("").to_string(),
                l["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (links.len(), strangers, named)
}

/// The probe's eclipse (issue 29, finding 1d): a burst of fresh keys that connect and say
/// nothing used to fill the link table for a minute, trim an honest neighbour (then kept away
/// for ten) and shut a newcomer out. Now strangers hold at most a quarter of the table, the
/// neighbour stays connected, and a newcomer joins through the node while they still hold on.
#[test]
fn strangers_cannot_crowd_out_a_neighbour_or_a_newcomer() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    common::wait_converged(&[&a, &b]);
    let target: Multiaddr = a.addr.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hold = Duration::from_secs(25);
    let attack = rt.spawn(common::attack::strangers(target, 60, 200.0, hold));
    std::thread::sleep(Duration::from_secs(1));
    let f = Peer::start("f", &tmp.path().join("f"), std::slice::from_ref(&a.addr), &[]);
    let started = std::time::Instant::now();
    let mut joined = None;
    let mut most_strangers = 0;
    while started.elapsed() < hold - Duration::from_secs(3) {
        let honest = [a.peer_id.as_str(), b.peer_id.as_str(), f.peer_id.as_str()];
        let (_, strangers, named) = links_of(&a, &honest);
        most_strangers = most_strangers.max(strangers);
        let b_link = named.iter().find(|(p, _)| *p == b.peer_id).map(|(_, s)| s.clone());
        assert_eq!(b_link.as_deref(), Some("connected"), "a's link to its neighbour b: {named:?}");
        let f_members = f.get("/v1/members").as_array().map_or(0, Vec::len);
        if joined.is_none() && f_members >= 3 && f.link(&a.peer_id).as_deref() == Some("connected")
        {
            joined = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let stats = rt.block_on(attack).unwrap();
    let connected = stats.connected.load(std::sync::atomic::Ordering::Relaxed);
    assert!(connected >= 30, "the attack got through to the node: {connected} keys connected");
    assert!(joined.is_some(), "the newcomer joined through the node while strangers held on");
    // max_links 48: strangers at most a quarter (12), plus one let in to make room.
    assert!(most_strangers <= 13, "strangers held {most_strangers} of a's links");
    let m = a.client().get_text("/metrics").unwrap();
    assert!(common::metric_in(&m, "vecino_gossip_rejected_total", "reason=\"stranger\"") > 0.0);
}
