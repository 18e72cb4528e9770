//! A raw libp2p peer sends a node garbage, an oversized frame, a forged signature and replays:
//! each is rejected and counted on `/metrics`, and honest traffic carries on. Also checks that
//! `/metrics` exports every documented series.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Peer, wait_converged, wait_until};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use vecino::transport::{PROTOCOL, write_frame};
use vecino_proto::{Bytes, Hlc, Identity, encode_frame, pb};

fn events_frame(envelopes: Vec<Bytes>, link_seq: u64) -> Vec<u8> {
    encode_frame(&pb::Frame {
        link_seq,
        kind: Some(pb::frame::Kind::Events(pb::Events {
            envelopes,
            sync: false,
            hops: None,
            trail: Vec::new(),
            detours: None,
            copies: None,
        })),
        ..Default::default()
    })
}

#[test]
fn bad_frames_are_rejected_and_counted_while_honest_traffic_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Peer::start("a", &tmp.path().join("a"), &[], &[]);
    let b = Peer::start("b", &tmp.path().join("b"), std::slice::from_ref(&a.addr), &[]);
    wait_converged(&[&a, &b]);
    let a_pid: PeerId = a.peer_id.parse().unwrap();
    let a_addr: Multiaddr = a.addr.parse().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let me = Identity::from_seed([42; 32]);
        let mut swarm = common::raw_swarm(&me);
        let mut control = swarm.behaviour().new_control();
        // Take (and ignore) what the node sends us.
        let mut incoming = control.accept(PROTOCOL).unwrap();
        tokio::spawn(async move {
            while let Some((_, mut s)) = incoming.next().await {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = vecino::transport::read_frame(&mut s).await {}
                });
            }
        });
        swarm.dial(a_addr).unwrap();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        // An oversized frame: the node resets that stream. First, and counted before the next
        // stream opens: the bad frames below may get the connection dropped for misbehaving,
        // and an inbound stream arriving while the node has not yet taken the one before is
        // dropped by libp2p-stream (its accept channel holds one).
        let mut big = tokio::time::timeout(common::TIMEOUT, control.open_stream(a_pid, PROTOCOL))
            .await
            .expect("stream opened in time")
            .expect("stream");
        let len = (vecino_proto::limits::MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        big.write_all(&len).await.unwrap();
        let _ = big.write_all(&[0u8; 4096]).await;
        let _ = big.flush().await;
        tokio::task::block_in_place(|| {
            wait_until("the oversized frame counted", || {
                a.metric("vecino_transport_rejected_total", "reason=\"oversized\"") >= 1.0
            });
        });

        let mut s = control.open_stream(a_pid, PROTOCOL).await.expect("second stream");

        // Garbage.
        write_frame(&mut s, b"\x0a\xff\xff\xff\xff\xff not a frame").await.unwrap();
        // A forged signature.
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let post = |seq: u64, text: &'static str| {
            let body = pb::event::Body::Post(pb::Post {
                topic: "raw".into(),
                body: Bytes::from_static(text.as_bytes()),
                content_type: String::new(),
            });
            me.sign(pb::Stream::Post, seq, Hlc { ms: now_ms, counter: 0 }, body).unwrap()
        };
        let mut forged = post(1, "forged").envelope().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 0x40;
        write_frame(&mut s, &events_frame(vec![Bytes::from(forged)], 0)).await.unwrap();
        // A genuine event, then the same again (a replay), in frames of their own.
        let genuine = post(1, "genuine").envelope().clone();
        write_frame(&mut s, &events_frame(vec![genuine.clone()], 0)).await.unwrap();
        write_frame(&mut s, &events_frame(vec![genuine], 0)).await.unwrap();
        s.flush().await.unwrap();

        let rejected = |reason: &str| a.metric("vecino_gossip_rejected_total", reason);
        tokio::task::block_in_place(|| {
            wait_until("garbage, forgery, replay and oversize counted", || {
                rejected("reason=\"bad_signature\"") >= 1.0
                    && rejected("") >= 2.0
                    && a.metric("vecino_gossip_events_duplicate_total", "") >= 1.0
                    && a.metric("vecino_transport_rejected_total", "reason=\"oversized\"") >= 1.0
            });
        });
        drop(s);
    });

    // Honest traffic carries on, and the genuine event from the raw peer was taken once.
    b.post("news", "still here");
    wait_until("the honest post reaches a", || a.post_texts().contains(&"still here".to_string()));
    assert!(a.post_texts().contains(&"genuine".to_string()));
    assert!(!a.post_texts().contains(&"forged".to_string()));

    // Every documented series is exported.
    let text = a.client().get_text("/metrics").unwrap();
    for (name, kind, _) in vecino::telemetry::SERIES {
        let kind = if *kind == "histogram" { "summary" } else { kind };
        assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name} missing:\n{text}");
    }
}
