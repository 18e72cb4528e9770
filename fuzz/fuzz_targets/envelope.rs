//! Arbitrary bytes as a signed envelope: the live, stored and batch verification paths.
#![no_main]

#[path = "alloc_track.rs"]
mod alloc_track;

use libfuzzer_sys::fuzz_target;
use vecino_proto::Bytes;

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

const NOW_MS: u64 = 1_763_702_400_000;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let mut v = alloc_track::shared_verifier().lock().unwrap();
    let (_, stats) = alloc_track::measure(|| {
        let _ = v.verify(input.clone(), NOW_MS);
        let _ = v.verify_stored(input.clone());
    });
    alloc_track::check(data.len(), stats);
    // The batch path must agree with the single path on every input.
    let single = v.verify(input.clone(), NOW_MS);
    let batch = v.verify_batch(vec![input], NOW_MS).pop().unwrap();
    assert_eq!(single, batch);
});
