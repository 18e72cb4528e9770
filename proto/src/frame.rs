//! Transport frames: the per-link messages between neighbours.
//!
//! Frames are not signed (the transport authenticates the link); the signed events inside an
//! `Events` frame are verified one by one, or as a batch, by the receiver.

use bytes::Bytes;
use prost::Message;

use crate::error::FrameError;
use crate::limits::MAX_FRAME_BYTES;
use crate::pb;
use crate::wire;

/// Decodes a frame received from a neighbour: size, then shape and limits, then prost.
pub fn decode_frame(bytes: Bytes) -> Result<pb::Frame, FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { size: bytes.len(), max: MAX_FRAME_BYTES });
    }
    wire::check(&bytes, &wire::FRAME)?;
    let frame = pb::Frame::decode(bytes)?;
    if frame.kind.is_none() {
        return Err(FrameError::Empty);
    }
    Ok(frame)
}

/// Encodes a frame for sending.
pub fn encode_frame(frame: &pb::Frame) -> Vec<u8> {
    frame.encode_to_vec()
}

/// A frame from the encoding of its kind alone (`encode_frame` of a frame whose `link_seq`
/// and `link_floor` are 0) with its link seq and floor put in front, as a frame that waited
/// in a queue gets its seq when it leaves. The result decodes as the frame with both set.
pub fn frame_with_seq(link_seq: u64, link_floor: u64, kind: &[u8]) -> Vec<u8> {
    // A frame with no kind encodes as its seq and floor fields alone; the kind's field
    // follows (protobuf fields may come in any order).
    let header = pb::Frame { link_seq, link_floor, kind: None };
    let mut buf = Vec::with_capacity(header.encoded_len() + kind.len());
    header.encode_raw(&mut buf);
    buf.extend_from_slice(kind);
    buf
}
