//! Streams and their kinds.
//!
//! Every event belongs to one (author, stream). A stream's *kind* is fixed by the stream itself,
//! through an exhaustive match here, never by a convention of the caller:
//! - [`StreamKind::LatestValue`]: only the newest seq per (author, stream) matters; queues and
//!   stores supersede older ones, so what a partition leaves to catch up is bounded by the
//!   number of peers, not by the outage length.
//! - [`StreamKind::Log`]: every seq matters, gapless per author, kept until its lifetime ends.
//!
//! Each body variant belongs to exactly one stream ([`body_stream`]); an event whose body does
//! not belong to its stream is rejected.

use crate::pb::{Stream, event::Body};

/// How a stream keeps its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// Only the newest seq per (author, stream) matters.
    LatestValue,
    /// Every seq matters, gapless per author.
    Log,
}

impl Stream {
    /// The stream's kind; `None` for `STREAM_UNSPECIFIED`, which no valid event carries.
    pub const fn kind(self) -> Option<StreamKind> {
        match self {
            Stream::Unspecified => None,
            Stream::HeyThere
            | Stream::Newspaper
            | Stream::Chau
            | Stream::Opinion
            | Stream::BarrioSlot
            | Stream::LinkState => Some(StreamKind::LatestValue),
            Stream::Post | Stream::Postcard | Stream::PostcardReceipt => Some(StreamKind::Log),
        }
    }

    /// Short lowercase name, for logs, metrics labels and the API.
    pub const fn name(self) -> &'static str {
        match self {
            Stream::Unspecified => "unspecified",
            Stream::HeyThere => "hey-there",
            Stream::Newspaper => "newspaper",
            Stream::Chau => "chau",
            Stream::Opinion => "opinion",
            Stream::BarrioSlot => "barrio-slot",
            Stream::LinkState => "link-state",
            Stream::Post => "post",
            Stream::Postcard => "postcard",
            Stream::PostcardReceipt => "postcard-receipt",
        }
    }
}

/// The stream a body belongs to.
pub const fn body_stream(body: &Body) -> Stream {
    match body {
        Body::HeyThere(_) => Stream::HeyThere,
        Body::Newspaper(_) => Stream::Newspaper,
        Body::Chau(_) => Stream::Chau,
        Body::Opinion(_) => Stream::Opinion,
        Body::BarrioSlot(_) => Stream::BarrioSlot,
        Body::LinkState(_) => Stream::LinkState,
        Body::Post(_) => Stream::Post,
        Body::Postcard(_) => Stream::Postcard,
        Body::PostcardReceipt(_) => Stream::PostcardReceipt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbering_matches_kinds() {
        // The .proto documents 1..=15 as latest-value and 16..=31 as log; keep both in step.
        for v in 0..64 {
            let Ok(stream) = Stream::try_from(v) else {
                continue;
            };
            let expected = match v {
                0 => None,
                1..=15 => Some(StreamKind::LatestValue),
                _ => Some(StreamKind::Log),
            };
            assert_eq!(stream.kind(), expected, "{stream:?}");
        }
    }
}
