//! Coordinates as peers publish them: the wire form, and the coordinate a member last
//! published (its newspaper's, else its hey-there's).
//!
//! Coordinates travel in milliseconds on the wire (`pb::Coordinate`); the Vivaldi client works
//! in seconds. A coordinate is *settled* once its error estimate is at most [`SETTLED_ERROR`]:
//! only then do distances to it mean something (Vivaldi starts every peer at the origin with
//! error 1.5).

use vecino_coords::Coordinate;
use vecino_proto::VerifiedEvent;
use vecino_proto::pb::{self, Stream, event::Body};

use crate::store::Store;

/// A coordinate whose error estimate is at most this is *settled*.
pub(crate) const SETTLED_ERROR: f64 = 0.5;

/// Whether a coordinate's error estimate is low enough for its distances to mean something.
pub(crate) fn settled(c: &Coordinate) -> bool {
    c.error <= SETTLED_ERROR
}

/// The wire form of a coordinate (milliseconds).
pub(crate) fn coord_to_pb(c: &Coordinate) -> pb::Coordinate {
    let (vec, height, error, adjustment) = c.to_f32_parts();
    pb::Coordinate {
        vec: vec.into_iter().map(|x| x * 1e3).collect(),
        height: height * 1e3,
        error,
        adjustment: adjustment * 1e3,
    }
}

/// A coordinate from its wire form; `None` if it has the wrong dimension or does not check.
pub(crate) fn coord_from_pb(c: &pb::Coordinate) -> Option<Coordinate> {
    // On the stack: this runs for every scope check of every member.
    let mut vec = [0f32; vecino_coords::DEFAULT_DIMENSIONS];
    if c.vec.len() != vec.len() {
        return None;
    }
    for (v, x) in vec.iter_mut().zip(&c.vec) {
        *v = x / 1e3;
    }
    Coordinate::from_f32_parts(&vec, c.height / 1e3, c.error, c.adjustment / 1e3).ok()
}

/// The coordinate a hey-there or newspaper carries, not decoded.
pub(crate) fn coordinate_field(ev: &VerifiedEvent) -> Option<&pb::Coordinate> {
    match ev.body() {
        Body::HeyThere(h) => h.coordinate.as_ref(),
        Body::Newspaper(n) => n.coordinate.as_ref(),
        _ => None,
    }
}

/// The coordinate an event carries (hey-there and newspaper do), decoded.
pub(crate) fn carried(ev: &VerifiedEvent) -> Option<Coordinate> {
    coordinate_field(ev).and_then(coord_from_pb)
}

/// The coordinate a member published: its newspaper's, else its hey-there's.
pub(crate) fn published(
    paper: Option<&pb::Coordinate>,
    hey: Option<&pb::Coordinate>,
) -> Option<Coordinate> {
    paper.or(hey).and_then(coord_from_pb)
}

/// The coordinate a member last published (see [`published`]).
pub(crate) fn published_coordinate(
    store: &Store,
    peer: vecino_proto::AuthorKey,
) -> Option<Coordinate> {
    let field = |stream| store.latest(&(peer, stream)).and_then(coordinate_field);
    published(field(Stream::Newspaper), field(Stream::HeyThere))
}
