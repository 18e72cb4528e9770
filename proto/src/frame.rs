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
