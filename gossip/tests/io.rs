//! The host contract (`crate::io`, driven through `Protocol::handle`): a command is answered
//! by its id, and frames that do not parse are counted and ignored.

mod common;

use std::time::Duration;

use vecino_gossip::{AppEvent, Command, Config, Input, Output, Protocol, StoreOp};
use vecino_proto::Bytes;

use common::{START, engine, line};

#[test]
fn garbage_frames_are_counted_and_ignored() {
    let mut net = line(2, 5, Config::default());
    net.run_for(Duration::from_secs(2));
    let from = net.ids[1];
    net.feed(0, Input::Received { from, frame: Bytes::from_static(&[0xff, 0xff, 0xff]) });
    net.feed(0, Input::Received { from, frame: Bytes::from(vec![0u8; 2 << 20]) });
    let rejected = &net.engine(0).stats().rejected;
    assert_eq!(
        rejected.get("malformed").copied().unwrap_or(0)
            + rejected.get("truncated").copied().unwrap_or(0),
        1,
        "{rejected:?}"
    );
    assert_eq!(rejected.get("too_large"), Some(&1));
    net.post(1, "still works");
    net.run_for(Duration::from_secs(2));
    assert!(net.delivered[0].iter().any(|(a, _)| *a == from));
}

/// A command is answered by its id: a post with the event it made, after the post's own
/// `Persist` and `Deliver`; an invalid one refused with why, with nothing kept or sent.
#[test]
fn commands_are_answered_by_their_id() {
    let mut e = engine(1, Config::default());
    let _ = e.handle(START, Input::Start).count();
    let post = |topic: &str| Command::Post { topic: topic.into(), body: Bytes::from_static(b"hi") };
    let ok: Vec<Output> = e.handle(START, Input::Command { id: 7, cmd: post("t") }).collect();
    let put = ok.iter().position(|o| matches!(o, Output::Persist(StoreOp::Put(_))));
    let delivered = ok.iter().position(|o| matches!(o, Output::Deliver(AppEvent::Post(_))));
    let accepted = ok.iter().position(|o| matches!(o, Output::Deliver(AppEvent::Accepted { .. })));
    assert!(put < delivered && delivered < accepted, "{ok:?}");
    let (
        Some(Output::Persist(StoreOp::Put(ev))),
        Some(Output::Deliver(AppEvent::Accepted { id, event })),
    ) = (put.map(|i| &ok[i]), accepted.map(|i| &ok[i]))
    else {
        panic!("{ok:?}")
    };
    assert_eq!((*id, *event), (7, ev.id()));
    let bad: Vec<Output> = e.handle(START, Input::Command { id: 8, cmd: post("") }).collect();
    match bad.as_slice() {
        [Output::Deliver(AppEvent::Refused { id: 8, reason })] => assert!(!reason.is_empty()),
        other => panic!("expected one refusal, got {other:?}"),
    }
}
