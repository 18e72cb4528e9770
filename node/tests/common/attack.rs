//! Attackers for tests and figures: many fresh libp2p keys that connect to a node and then
//! say nothing, or send it frames no honest peer sends. Every loop is bounded in count and
//! time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::Multiaddr;
use libp2p::swarm::SwarmEvent;
use rand::RngExt;
use vecino_proto::Identity;

/// Polls `swarm` for `hold`, handing `on` each event, until `on` returns false.
pub async fn drive<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut libp2p::Swarm<B>,
    hold: Duration,
    mut on: impl FnMut(SwarmEvent<B::ToSwarm>) -> bool,
) {
    let until = tokio::time::sleep(hold);
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return,
            ev = swarm.select_next_some() => if !on(ev) { return },
        }
    }
}

/// How a strangers' attack went.
#[derive(Debug, Default)]
pub struct Strangers {
    /// Keys that got a connection.
    pub connected: AtomicUsize,
    /// Keys whose connection the node closed.
    pub closed: AtomicUsize,
}

/// `n` fresh keys connect to `target` at `per_sec` a second, each holding its connection
/// (silent: no stream opened) for `hold`. Returns once the last one has let go.
pub async fn strangers(
    target: Multiaddr,
    n: usize,
    per_sec: f64,
    hold: Duration,
) -> Arc<Strangers> {
    let stats = Arc::new(Strangers::default());
    let mut tasks = Vec::with_capacity(n);
    let gap = Duration::from_secs_f64(1.0 / per_sec.max(0.001));
    for _ in 0..n {
        let seed: [u8; 32] = rand::rng().random();
        let me = Identity::from_seed(seed);
        let target = target.clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut swarm = super::raw_swarm(&me);
            if swarm.dial(target).is_err() {
                return;
            }
            drive(&mut swarm, hold, |ev| match ev {
                SwarmEvent::ConnectionEstablished { .. } => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    true
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    stats.closed.fetch_add(1, Ordering::Relaxed);
                    false
                }
                _ => true,
            })
            .await;
        }));
        tokio::time::sleep(gap).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    stats
}

/// `n` fresh keys, one after another at `per_sec` a second, each connecting to `target`,
/// announcing in identify the addresses `announce` (where a reflection would land), holding
/// the connection `hold` and hanging up. Returns once the last one has let go.
pub async fn announcers(
    target: Multiaddr,
    announce: Vec<Multiaddr>,
    n: usize,
    per_sec: f64,
    hold: Duration,
) {
    let gap = Duration::from_secs_f64(1.0 / per_sec.max(0.001));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let seed: [u8; 32] = rand::rng().random();
        let me = Identity::from_seed(seed);
        let (target, announce) = (target.clone(), announce.clone());
        tasks.push(tokio::spawn(async move {
            let key = vecino::peer::keypair(&me);
            let Ok(builder) =
                libp2p::SwarmBuilder::with_existing_identity(key).with_tokio().with_tcp(
                    libp2p::tcp::Config::default(),
                    libp2p::noise::Config::new,
                    libp2p::yamux::Config::default,
                )
            else {
                return;
            };
            let mut swarm = builder
                .with_behaviour(|k| {
                    libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
                        vecino::transport::IDENTIFY_VERSION.into(),
                        k.public(),
                    ))
                })
                .expect("an identify behaviour")
                .build();
            for a in announce {
                swarm.add_external_address(a);
            }
            if swarm.dial(target).is_err() {
                return;
            }
            drive(&mut swarm, hold, |_| true).await;
        }));
        tokio::time::sleep(gap).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}
