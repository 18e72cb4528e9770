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
