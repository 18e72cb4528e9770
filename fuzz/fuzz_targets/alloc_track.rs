//! A global allocator that records, while a measurement is active, the largest single
//! allocation and the peak of live bytes: the fuzz targets check that decoding untrusted bytes
//! never makes an allocation larger than a small multiple of the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

pub struct Tracking;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static MAX_SINGLE: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static WORST_RATIO_X100: AtomicUsize = AtomicUsize::new(0);

fn grow(size: usize) {
    MAX_SINGLE.fetch_max(size, Relaxed);
    let live = LIVE.fetch_add(size as isize, Relaxed) + size as isize;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.load(Relaxed) {
            grow(layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ACTIVE.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ACTIVE.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
            grow(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What one measured call allocated.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub max_single: usize,
    pub peak_live: usize,
}

/// Runs `f` with tracking on.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Stats) {
    MAX_SINGLE.store(0, Relaxed);
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    ACTIVE.store(true, Relaxed);
    let out = f();
    ACTIVE.store(false, Relaxed);
    let stats = Stats {
        max_single: MAX_SINGLE.load(Relaxed),
        peak_live: PEAK.load(Relaxed).max(0) as usize,
    };
    (out, stats)
}

/// Fixed allowance for error values and small fixed-size decodes, independent of input size.
pub const SLACK: usize = 256;

/// Panics (a libFuzzer crash) if a single allocation exceeded 4 × input + SLACK; prints the
/// worst ratio seen so far for inputs of at least 64 bytes.
pub fn check(input_len: usize, stats: Stats) {
    let budget = 4 * input_len + SLACK;
    assert!(
        stats.max_single <= budget,
        "allocation of {} bytes for {} bytes of input (budget {budget})",
        stats.max_single,
        input_len
    );
    if input_len >= 64 {
        let ratio = stats.max_single * 100 / input_len;
        if ratio > WORST_RATIO_X100.fetch_max(ratio, Relaxed) {
            eprintln!(
                "alloc-track: new worst single allocation {:.2}x input ({} B for {} B; peak live {} B)",
                ratio as f64 / 100.0,
                stats.max_single,
                input_len,
                stats.peak_live
            );
        }
    }
}

/// The process's verifier, warmed (see [`warmed_verifier`]), shared by every input.
#[allow(dead_code)] // the event target keeps its own verifier beside its signing key
pub fn shared_verifier() -> &'static std::sync::Mutex<vecino_proto::Verifier> {
    static V: std::sync::OnceLock<std::sync::Mutex<vecino_proto::Verifier>> =
        std::sync::OnceLock::new();
    V.get_or_init(|| std::sync::Mutex::new(warmed_verifier()))
}

/// A verifier whose key cache is already allocated (it is allocated whole on first use, once
/// per process, and is not part of what decoding one input costs).
pub fn warmed_verifier() -> vecino_proto::Verifier {
    use vecino_proto::pb::{Chau, Stream, event::Body};
    let mut v = vecino_proto::Verifier::default();
    let id = vecino_proto::Identity::from_seed([1; 32]);
    let ev = id
        .sign(Stream::Chau, 1, vecino_proto::Hlc::default(), Body::Chau(Chau { reason: "warm".into() }))
        .unwrap();
    v.verify_stored(ev.envelope().clone()).unwrap();
    v
}
