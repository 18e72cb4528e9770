//! Postcards (`gossip/src/postcards`, `routing.rs`): routed by link state hop by hop, kept in
//! custody until the next hop takes them, carried through partitions and custodians'
//! crashes, delivered once and in order, answered with receipts; bad ones refused, counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Net, START, identity};
use vecino_gossip::{AppEvent, Command, Config, Input, PostcardStatus};
use vecino_proto::{AuthorKey, Bytes, EventId};

/// A chain 0 - 1 - … - (n-1): each node linked to the next, and to no other ever.
fn chain(n: usize, seed: u64, config: Config) -> Net {
    let mut net = Net::new(n, seed, config);
    for a in 0..n {
        for b in a + 2..n {
            net.never_link(a, b);
        }
    }
    for i in 0..n - 1 {
        net.connect(i, i + 1);
    }
    // Link state and membership spread along the chain.
    net.run_for(Duration::from_secs(40));
    net
}

fn postcard(to: AuthorKey, text: &str) -> Command {
    Command::Postcard { to, body: Bytes::from(text.to_owned()), lifetime: None, coordinate: None }
}

/// The postcards node `i` received: (author, text), in delivery order.
fn inbox(net: &Net, i: usize) -> Vec<(AuthorKey, String)> {
    net.app[i]
        .iter()
        .filter_map(|(_, e)| match e {
            AppEvent::Postcard(p) => Some((p.from, String::from_utf8_lossy(&p.body).into_owned())),
            _ => None,
        })
        .collect()
}

/// The statuses node `i` was told of its postcard `id`, in order.
fn statuses(net: &Net, i: usize, id: EventId) -> Vec<PostcardStatus> {
    net.app[i]
        .iter()
        .filter_map(|(_, e)| match e {
            AppEvent::PostcardStatus { id: x, status, .. } if *x == id => Some(status.clone()),
            _ => None,
        })
        .collect()
}

/// The event id command `cmd` made at node `i`.
fn accepted(net: &Net, i: usize, cmd: u64) -> EventId {
    net.app[i]
        .iter()
        .find_map(|(_, e)| match e {
            AppEvent::Accepted { id, event } if *id == cmd => Some(*event),
            _ => None,
        })
        .unwrap_or_else(|| panic!("command {cmd} not accepted: {:?}", net.app[i]))
}

fn counter(net: &Net, i: usize, name: &str) -> u64 {
    let counters = net.engine(i).counters_by_name();
    counters.iter().find(|c| c.0 == name).map_or(0, |c| c.1)
}

/// A postcard crosses a chain of five peers to its destination, which reads it (the relays
/// could not: it is sealed) and delivers it once; the receipt comes back, and the author hears
/// it forwarded, then delivered, with the path it took.
#[test]
fn a_postcard_crosses_the_chain_and_its_receipt_comes_back() {
    let seed = 11;
    let mut net = chain(5, seed, Config::default());
    let to = net.ids[4];
    let cmd = net.command(0, postcard(to, "hola, vecino"));
    let id = accepted(&net, 0, cmd);
    net.run_for(Duration::from_secs(5));
    assert_eq!(inbox(&net, 4), vec![(net.ids[0], "hola, vecino".to_string())], "seed {seed}");
    for relay in 1..4 {
        assert!(inbox(&net, relay).is_empty(), "seed {seed}");
    }
    // Forwarded is told only if the first hop's acknowledgement beats the receipt.
    let st = statuses(&net, 0, id);
    let Some(PostcardStatus::Delivered { trail }) = st.last() else {
        panic!("seed {seed}: {st:?}")
    };
    let path: Vec<u64> = net.ids.iter().map(AuthorKey::prefix).collect();
    assert_eq!(*trail, path, "seed {seed}: the path, author to destination");
    // Nothing is left in custody anywhere.
    for i in 0..5 {
        assert_eq!(counter(&net, i, "postcards_in_custody"), 0, "seed {seed}: node {i}");
    }
}

/// A postcard sent while the chain is cut is kept by the last custodian before the cut and
/// delivered after the heal; every postcard of the outage arrives, once and in order.
#[test]
fn postcards_wait_out_a_partition_and_arrive_in_order() {
    let seed = 12;
    let mut net =
        chain(4, seed, Config { suspect_timeout: Duration::from_secs(300), ..Config::default() });
    net.partition(&[0, 1], &[2, 3]);
    let to = net.ids[3];
    for n in 0..5 {
        net.command(0, postcard(to, &format!("card {n}")));
        net.run_for(Duration::from_secs(2));
    }
    net.run_for(Duration::from_secs(30));
    assert!(inbox(&net, 3).is_empty(), "seed {seed}: nothing crosses the cut");
    assert!(counter(&net, 1, "postcards_in_custody") >= 1, "seed {seed}: kept before the cut");
    net.heal();
    net.run_for(Duration::from_secs(20));
    let got: Vec<String> = inbox(&net, 3).into_iter().map(|(_, t)| t).collect();
    let want: Vec<String> = (0..5).map(|n| format!("card {n}")).collect();
    assert_eq!(got, want, "seed {seed}");
}

/// A custodian that crashes while it holds postcards (its link to the destination cut) keeps
/// them in its store, takes them back on restart, and delivers them after the heal.
#[test]
fn a_custodian_that_crashes_delivers_what_it_held_after_restart() {
    let seed = 13;
    let mut net = chain(3, seed, Config::default());
    net.partition(&[1], &[2]);
    let to = net.ids[2];
    net.command(0, postcard(to, "before the crash"));
    net.run_for(Duration::from_secs(5));
    assert_eq!(counter(&net, 1, "postcards_in_custody"), 1, "seed {seed}");
    net.crash(1);
    net.run_for(Duration::from_secs(3));
    net.start(1);
    net.connect(0, 1);
    net.connect(1, 2);
    net.heal();
    net.run_for(Duration::from_secs(30));
    assert_eq!(inbox(&net, 2), vec![(net.ids[0], "before the crash".to_string())], "seed {seed}");
}

/// A postcard that cannot reach its destination within its lifetime expires everywhere, and
/// its author hears so.
#[test]
fn a_postcard_expires_when_its_lifetime_passes() {
    let seed = 14;
    let mut net = chain(3, seed, Config::default());
    net.partition(&[1], &[2]);
    let to = net.ids[2];
    let cmd = net.command(
        0,
        Command::Postcard {
            to,
            body: Bytes::from_static(b"late"),
            lifetime: Some(Duration::from_secs(5)),
            coordinate: None,
        },
    );
    let id = accepted(&net, 0, cmd);
    net.run_for(Duration::from_secs(10));
    assert_eq!(statuses(&net, 0, id).last(), Some(&PostcardStatus::Expired), "seed {seed}");
    assert_eq!(counter(&net, 1, "postcards_in_custody"), 0, "seed {seed}");
    assert!(counter(&net, 1, "postcard_expired") >= 1, "seed {seed}");
    net.heal();
    net.run_for(Duration::from_secs(10));
    assert!(inbox(&net, 2).is_empty(), "seed {seed}");
}

/// Postcards that cannot be sent are refused by id, with the reason: to oneself, too large,
/// too long a lifetime, a destination nothing locates.
#[test]
fn bad_postcards_are_refused_with_a_reason() {
    let seed = 15;
    let mut net = chain(2, seed, Config::default());
    let me = net.ids[0];
    let stranger = identity(99, 0).public();
    let big = Bytes::from(vec![0; vecino_proto::limits::MAX_POSTCARD_BODY_BYTES + 1]);
    let cases = [
        postcard(me, "self"),
        Command::Postcard { to: net.ids[1], body: big, lifetime: None, coordinate: None },
        Command::Postcard {
            to: net.ids[1],
            body: Bytes::new(),
            lifetime: Some(Duration::from_secs(10 * 86_400)),
            coordinate: None,
        },
        postcard(stranger, "who?"),
    ];
    let mut reasons = BTreeMap::new();
    for cmd in cases {
        let id = net.command(0, cmd);
        let reason = net.app[0].iter().find_map(|(_, e)| match e {
            AppEvent::Refused { id: x, reason } if *x == id => Some(reason.clone()),
            _ => None,
        });
        reasons.insert(id, reason.unwrap_or_else(|| panic!("seed {seed}: command {id} accepted")));
    }
    assert_eq!(reasons.len(), 4);
    assert!(reasons.values().all(|r| !r.is_empty()));
    assert_eq!(counter(&net, 0, "postcard_refused"), 4);
}

/// A relay whose custody share for an author is full refuses the rest in its
/// acknowledgements; the author keeps them and they still arrive (once there is room).
#[test]
fn a_full_relay_refuses_custody_and_nothing_is_lost() {
    let seed = 16;
    let config = Config { max_custody_per_author: 2, ..Config::default() };
    let mut net = chain(3, seed, config);
    net.partition(&[1], &[2]);
    let to = net.ids[2];
    for n in 0..5 {
        net.command(0, postcard(to, &format!("card {n}")));
    }
    net.run_for(Duration::from_secs(10));
    assert_eq!(counter(&net, 1, "postcards_in_custody"), 2, "seed {seed}: its share");
    assert!(counter(&net, 1, "postcard_author_share") >= 3, "seed {seed}");
    assert!(counter(&net, 0, "postcards_refused_downstream") >= 3, "seed {seed}");
    assert_eq!(counter(&net, 0, "postcards_in_custody"), 3, "seed {seed}: the author keeps them");
    net.heal();
    net.run_for(Duration::from_secs(60));
    assert_eq!(inbox(&net, 2).len(), 5, "seed {seed}");
}

/// The node stays up whatever a neighbour sends: a receipt for a postcard never sent is
/// refused, counted.
#[test]
fn a_receipt_for_a_postcard_never_sent_is_refused() {
    let seed = 17;
    let mut net = chain(2, seed, Config::default());
    let forger = identity(seed, 1);
    let receipt = vecino_proto::pb::PostcardReceipt {
        postcard_id: Bytes::from_static(&[9; 32]),
        to: Bytes::copy_from_slice(net.ids[0].as_bytes()),
        expires_ms: START.as_millis() + 3_600_000,
        ..Default::default()
    };
    let hlc = vecino_proto::Hlc { ms: net.now.as_millis(), counter: 0 };
    let ev = forger
        .sign(
            vecino_proto::pb::Stream::PostcardReceipt,
            1_000,
            hlc,
            vecino_proto::pb::event::Body::PostcardReceipt(receipt),
        )
        .expect("a valid event");
    let frame = vecino_proto::pb::Frame {
        link_seq: 0,
        link_floor: 0,
        kind: Some(vecino_proto::pb::frame::Kind::Events(vecino_proto::pb::Events {
            envelopes: vec![ev.envelope().clone()],
            sync: false,
            hops: None,
            trail: vec![],
            detours: None,
            copies: None,
        })),
    };
    let frame = Bytes::from(vecino_proto::encode_frame(&frame));
    net.feed(0, Input::Received { from: net.ids[1], frame });
    assert_eq!(counter(&net, 0, "receipt_unknown"), 1, "seed {seed}");
}
