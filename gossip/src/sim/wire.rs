//! Cheap reads of frames for the simulator's accounting and the baselines: which signed events
//! an `Events` frame carries, from their headers only (no signature check, no body decode).

use prost::Message;
use vecino_proto::{AuthorKey, Bytes, Hlc, pb};

/// The header of one event inside an `Events` frame.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) author: AuthorKey,
    pub(crate) stream: i32,
    pub(crate) seq: u64,
    pub(crate) hlc: Hlc,
    /// The envelope's bytes (what a store keeps and a forwarder sends).
    pub(crate) envelope: Bytes,
    /// The signed event's bytes.
    pub(crate) event: Bytes,
}

/// Calls `f` with the header of every well-formed event of `frame` if it is an `Events` frame;
/// returns the number of envelopes seen (0 for any other kind of frame).
pub(crate) fn for_each_event(frame: &Bytes, mut f: impl FnMut(Header)) -> usize {
    // Fast path: an `Events` frame has field 2 (kind.events); any other frame is skipped
    // from its tags, without decoding it.
    if frame_kind(frame).0 != 2 {
        return 0;
    }
    let Ok(decoded) = pb::Frame::decode(frame.clone()) else {
        return 0;
    };
    let Some(pb::frame::Kind::Events(events)) = decoded.kind else {
        return 0;
    };
    let n = events.envelopes.len();
    for envelope in events.envelopes {
        let Ok(env) = pb::Envelope::decode(envelope.clone()) else {
            continue;
        };
        let Ok(header) = pb::EventHeader::decode(env.event.clone()) else {
            continue;
        };
        let Some(author) = AuthorKey::from_slice(&header.author) else {
            continue;
        };
        f(Header {
            author,
            stream: header.stream,
            seq: header.seq,
            hlc: header.hlc.map(Hlc::from).unwrap_or_default(),
            envelope,
            event: env.event,
        });
    }
    n
}

/// Encodes an `Events` frame carrying one envelope (eager push, `sync = false`).
pub(crate) fn events_frame(envelope: Bytes) -> Bytes {
    let frame = pb::Frame {
        link_seq: 0,
        link_floor: 0,
        kind: Some(pb::frame::Kind::Events(pb::Events {
            envelopes: vec![envelope],
            sync: false,
            hops: None,
            trail: Vec::new(),
            detours: None,
            copies: None,
        })),
    };
    Bytes::from(frame.encode_to_vec())
}

/// Reads one protobuf varint at `*at`, advancing it; `None` if truncated (the liveness
/// models read their payloads with it too).
pub(crate) fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Skips one field of wire type `wt` at `*at`; `None` if it cannot.
fn skip(b: &[u8], at: &mut usize, wt: u64) -> Option<()> {
    match wt {
        0 => varint(b, at).map(|_| ()),
        1 => (*at + 8 <= b.len()).then(|| *at += 8),
        2 => {
            let len = usize::try_from(varint(b, at)?).ok()?;
            (*at + len <= b.len()).then(|| *at += len)
        }
        5 => (*at + 4 <= b.len()).then(|| *at += 4),
        _ => None,
    }
}

/// Of the heads an `IHave` frame announces, how many are of log streams (posts, postcards)
/// and how many in all; `None` for any other frame.
pub(crate) fn announced_heads(frame: &Bytes) -> Option<(usize, usize)> {
    if frame_kind(frame).0 != 10 {
        return None;
    }
    let Ok(pb::Frame { kind: Some(pb::frame::Kind::Ihave(ihave)), .. }) =
        pb::Frame::decode(frame.clone())
    else {
        return None;
    };
    let log = |stream: i32| {
        pb::Stream::try_from(stream).is_ok_and(|s| s.kind() == Some(vecino_proto::StreamKind::Log))
    };
    let streams =
        ihave.heads.iter().map(|h| h.stream).chain(ihave.prefixed.iter().map(|h| h.stream));
    let (logs, all) = streams.fold((0, 0), |(l, a), s| (l + usize::from(log(s)), a + 1));
    Some((logs, all))
}

/// The kind of a frame, from its fields' tags only (no decode): the oneof's field number,
/// for `Events` the `sync` flag, and the link seq (0 for frames sent without acknowledgement).
pub(crate) fn frame_kind(frame: &[u8]) -> (u32, bool, u64) {
    let mut at = 0;
    let mut link_seq = 0;
    while at < frame.len() {
        let Some(tag) = varint(frame, &mut at) else { break };
        let (field, wt) = (tag >> 3, tag & 7);
        if tag == 1 << 3 {
            let Some(v) = varint(frame, &mut at) else { break };
            link_seq = v;
            continue;
        }
        if ((2..=12).contains(&field) || crate::sim::liveness::is_model_field(field)) && wt == 2 {
            let Some(len) = varint(frame, &mut at).and_then(|l| usize::try_from(l).ok()) else {
                break;
            };
            let body = &frame[at..(at + len).min(frame.len())];
            let sync = field == 2 && events_sync(body);
            return (field as u32, sync, link_seq);
        }
        if skip(frame, &mut at, wt).is_none() {
            break;
        }
    }
    (0, false, link_seq)
}

fn events_sync(body: &[u8]) -> bool {
    let mut at = 0;
    while at < body.len() {
        let Some(tag) = varint(body, &mut at) else { return false };
        if tag == (2 << 3) {
            return varint(body, &mut at).is_some_and(|v| v != 0);
        }
        if skip(body, &mut at, tag & 7).is_none() {
            return false;
        }
    }
    false
}

/// A stable label for a frame kind as returned by [`frame_kind`]; `Events` frames are told
/// apart by send class and by how they were sent (eager push, or sync: graft answers and
/// anti-entropy).
pub(crate) fn kind_label(field: u32, sync: bool, class: crate::io::Priority) -> &'static str {
    use crate::io::Priority;
    match (field, sync, class) {
        (2, false, Priority::Post) => "events_post",
        (2, true, Priority::Post) => "events_post_sync",
        (2, false, Priority::Membership) => "events_membership",
        (2, true, Priority::Membership) => "events_membership_sync",
        (2, _, _) => "events_other",
        (3, ..) => "ping",
        (4, ..) => "pong",
        (5, ..) => "digest",
        (6, ..) => "version_vector",
        (7, ..) => "request",
        (8, ..) => "ack",
        (9, ..) => "fraud_proof",
        (10, ..) => "ihave",
        (11, ..) => "graft",
        (12, ..) => "prune",
        (14, ..) => "bye",
        _ => crate::sim::liveness::label(field).unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Priority;

    #[test]
    fn frame_kinds_are_read_from_tags() {
        let frame = |kind| {
            Bytes::from(
                pb::Frame { link_seq: 300, link_floor: 7, kind: Some(kind) }.encode_to_vec(),
            )
        };
        let ev = |sync| {
            pb::frame::Kind::Events(pb::Events {
                envelopes: vec![Bytes::from_static(b"abc")],
                sync,
                hops: None,
                trail: Vec::new(),
                detours: None,
                copies: None,
            })
        };
        assert_eq!(frame_kind(&frame(ev(false))), (2, false, 300));
        assert_eq!(frame_kind(&frame(ev(true))), (2, true, 300));
        let ack = pb::frame::Kind::Ack(pb::Ack {
            cumulative: 5,
            runs: Bytes::new(),
            refused: Vec::new(),
        });
        assert_eq!(kind_label(frame_kind(&frame(ack)).0, false, Priority::Control), "ack");
        let ihave = pb::frame::Kind::Ihave(pb::IHave::default());
        assert_eq!(frame_kind(&frame(ihave)).0, 10);
        assert_eq!(frame_kind(b"\xff"), (0, false, 0));
    }

    #[test]
    fn announcements_of_posts_are_told_from_those_of_members() {
        let frame = |kind| {
            Bytes::from(pb::Frame { link_seq: 0, link_floor: 0, kind: Some(kind) }.encode_to_vec())
        };
        let head = |stream: pb::Stream| pb::StreamHead {
            author: Bytes::from(vec![7; 32]),
            stream: stream as i32,
            seq: 1,
            hops: None,
        };
        let heads =
            vec![head(pb::Stream::Post), head(pb::Stream::HeyThere), head(pb::Stream::Newspaper)];
        let prefixed = |stream: pb::Stream| pb::PrefixHead {
            author_prefix: 7,
            stream: stream as i32,
            seq: 1,
            hops: None,
        };
        let prefixed = vec![prefixed(pb::Stream::Post), prefixed(pb::Stream::Newspaper)];
        let ihave = frame(pb::frame::Kind::Ihave(pb::IHave { heads, prefixed }));
        assert_eq!(announced_heads(&ihave), Some((2, 5)));
        let ping = frame(pb::frame::Kind::Ping(pb::Ping { nonce: 1, slow: false }));
        assert_eq!(announced_heads(&ping), None);
        assert_eq!(for_each_event(&ihave, |_| panic!("not an events frame")), 0);
    }
}
