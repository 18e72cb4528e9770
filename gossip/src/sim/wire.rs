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
    // Fast path: an `Events` frame has field 2 (kind.events) as a length-delimited field; any
    // other frame is skipped without decoding it.
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
        kind: Some(pb::frame::Kind::Events(pb::Events { envelopes: vec![envelope], sync: false })),
    };
    Bytes::from(frame.encode_to_vec())
}
