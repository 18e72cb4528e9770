//! Arbitrary bytes as a transport frame and as a fraud proof.
#![no_main]

#[path = "alloc_track.rs"]
mod alloc_track;

use libfuzzer_sys::fuzz_target;
use vecino_proto::{Bytes, decode_frame};

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let mut v = alloc_track::shared_verifier().lock().unwrap();
    let (_, stats) = alloc_track::measure(|| {
        let _ = decode_frame(input.clone());
        let _ = v.verify_fraud_proof(input.clone());
    });
    alloc_track::check(data.len(), stats);
});
