//! The stream policy table: for every stream, how the engine keeps it, how it travels, whether
//! anti-entropy carries it, whether fisheye membership scopes it, and its send class.
//!
//! Every decision that depends on a stream's nature is answered here, by one row per stream,
//! instead of by branches on [`vecino_proto::StreamKind`] spread over the machines: a new
//! stream is one new row, and a machine that asks "is this kept as a log?" or "does this
//! travel down the trees?" gets the same answer everywhere.
//!
//! | stream | keep | travel | anti-entropy | fisheye-scoped | class |
//! |---|---|---|---|---|---|
//! | hey-there, newspaper, chau, opinion, barrio slot, link state | latest value | trees | yes | yes | membership |
//! | post | log | trees | yes | no | post |
//! | postcard, postcard receipt | custody | routed | no | no | postcard |
//!
//! Postcards and their receipts are kept by their custodians until the next hop acknowledges
//! them and are routed hop by hop toward their destination, never flooded
//! (`crate::postcards`).

use vecino_proto::pb::Stream;

use crate::io::Priority;

/// How the engine keeps a stream's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Only the newest seq per (author, stream); a newer one supersedes the older.
    Latest,
    /// Every seq, gapless per author (posts): delivered in order as the contiguous head moves.
    Log,
    /// Held in custody until handed on (postcards): neither gossiped nor version-vectored.
    Custody,
}

/// How a stream's events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Travel {
    /// Down the Plumtree trees: pushed on eager links, announced on lazy ones.
    Tree,
    /// Routed hop by hop toward one destination.
    Routed,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamPolicy {
    /// How events are kept.
    pub(crate) keep: Keep,
    /// How events travel.
    pub(crate) travel: Travel,
    /// Whether digests and version vectors cover it (a neighbour is caught up on it).
    pub(crate) anti_entropy: bool,
    /// Whether fisheye membership scopes it: kept and passed on only for authors in scope,
    /// and muted per membership slot on a link (`crate::broadcast`).
    pub(crate) scoped: bool,
    /// The send class of a frame carrying it.
    pub(crate) class: Priority,
}

const MEMBERSHIP: StreamPolicy = StreamPolicy {
    keep: Keep::Latest,
    travel: Travel::Tree,
    anti_entropy: true,
    scoped: true,
    class: Priority::Membership,
};

const POST: StreamPolicy = StreamPolicy {
    keep: Keep::Log,
    travel: Travel::Tree,
    anti_entropy: true,
    scoped: false,
    class: Priority::Post,
};

const POSTCARD: StreamPolicy = StreamPolicy {
    keep: Keep::Custody,
    travel: Travel::Routed,
    anti_entropy: false,
    scoped: false,
    class: Priority::Postcard,
};

/// The policy of `stream`; `None` for `STREAM_UNSPECIFIED`, which no valid event carries.
pub(crate) const fn policy(stream: Stream) -> Option<StreamPolicy> {
    match stream {
        Stream::Unspecified => None,
        Stream::HeyThere
        | Stream::Newspaper
        | Stream::Chau
        | Stream::Opinion
        | Stream::BarrioSlot
        | Stream::LinkState => Some(MEMBERSHIP),
        Stream::Post => Some(POST),
        Stream::Postcard | Stream::PostcardReceipt => Some(POSTCARD),
    }
}

/// The policy of a stream that verification or parsing already checked (a verified event's,
/// a valid head's); an unspecified stream reads as a post, which no such caller passes.
pub(crate) const fn of(stream: Stream) -> StreamPolicy {
    match policy(stream) {
        Some(p) => p,
        None => POST,
    }
}

/// Whether `stream` keeps only its latest value (presence, status and the like).
pub(crate) const fn latest_value(stream: Stream) -> bool {
    matches!(of(stream).keep, Keep::Latest)
}

/// Whether fisheye membership scopes `stream` (see [`StreamPolicy::scoped`]).
pub(crate) const fn scoped(stream: Stream) -> bool {
    of(stream).scoped
}

/// The send class of `stream`.
pub(crate) const fn class_of(stream: Stream) -> Priority {
    of(stream).class
}

/// Reads a stream from a wire field; `None` unless it is a stream with a policy.
pub(crate) fn from_wire(stream: i32) -> Option<Stream> {
    Stream::try_from(stream).ok().filter(|s| policy(*s).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::StreamKind;

    /// The table agrees with the wire's kinds: latest-value streams are kept as latest
    /// values, log streams as logs or in custody; and only tree streams are scoped or
    /// version-vectored.
    #[test]
    fn the_table_agrees_with_the_wire_kinds() {
        for v in 0..64 {
            let Ok(stream) = Stream::try_from(v) else { continue };
            let Some(p) = policy(stream) else {
                assert_eq!(stream.kind(), None);
                continue;
            };
            match stream.kind() {
                Some(StreamKind::LatestValue) => assert_eq!(p.keep, Keep::Latest, "{stream:?}"),
                Some(StreamKind::Log) => assert_ne!(p.keep, Keep::Latest, "{stream:?}"),
                None => panic!("{stream:?} has a policy but no kind"),
            }
            if p.travel == Travel::Routed {
                assert!(!p.anti_entropy && !p.scoped, "{stream:?}");
                assert_eq!(p.keep, Keep::Custody, "{stream:?}");
            }
            assert_eq!(p.scoped, p.keep == Keep::Latest, "{stream:?}");
        }
    }

    #[test]
    fn postcards_are_routed_in_custody_and_never_flooded() {
        for s in [Stream::Postcard, Stream::PostcardReceipt] {
            let p = of(s);
            assert_eq!(
                (p.keep, p.travel, p.class),
                (Keep::Custody, Travel::Routed, Priority::Postcard)
            );
        }
        assert_eq!(of(Stream::Post).travel, Travel::Tree);
        assert_eq!(from_wire(0), None);
        assert_eq!(from_wire(Stream::Post as i32), Some(Stream::Post));
    }
}
