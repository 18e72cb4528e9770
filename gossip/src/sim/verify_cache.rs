//! A simulator-only optimisation: signature checks shared by all simulated peers.
//!
//! In a simulation of N peers every event is verified by each of them: the same ed25519
//! check on the same bytes up to N times, most of the wall time of a large run. Peers of one
//! simulation share this cache, keyed by the envelope's bytes: the first peer to receive an
//! envelope verifies it (with its own `Verifier`, every check included), later ones reuse the
//! result. Only successes are cached, so a bad envelope is rejected (and counted) by each
//! peer as before. What a cache hit skips is the clock check (an event too far ahead of the
//! receiver's clock): simulated peers share one clock, so it passed for the first receiver
//! and passes for the later ones. **The node never uses this**: it verifies every event it
//! receives (the engine field that holds this exists only with feature `sim`).
//!
//! An envelope decoded from a frame is a slice of the frame's buffer (`bytes::Bytes`), and so
//! is everything decoded from it: one event kept by every peer for the whole run would keep
//! the whole frame it first came in. So a miss is verified from a copy of its own bytes,
//! and the event every peer then shares holds only those.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use vecino_proto::{Bytes, VerifiedEvent, Verifier, VerifyError};

/// Envelopes remembered at most; the cache is emptied when it is full.
const MAX_VERIFIED: usize = 1 << 20;

/// Bytes of an envelope's end that its hash reads: the end of its ed25519 signature (the
/// envelope's last field), as good as random, where SipHash over every byte of every
/// envelope every peer received was a few per cent of a large run.
const HASHED_TAIL: usize = 16;

/// Hashes the last [`HASHED_TAIL`] bytes written (equality still compares whole envelopes).
#[derive(Debug, Default)]
struct TailHasher(u64);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(HASHED_TAIL)..];
        for chunk in tail.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = crate::sim::mix(self.0 ^ u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = crate::sim::mix(self.0 ^ n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Envelopes = HashMap<Bytes, VerifiedEvent, BuildHasherDefault<TailHasher>>;

/// Verified envelopes shared by the peers of one simulation.
#[derive(Debug, Default, Clone)]
pub struct VerifyCache(Arc<Mutex<Envelopes>>);

impl VerifyCache {
    /// Verifies `envelopes` with `verifier` where they were not verified before by a peer of
    /// this simulation; results in the order given.
    pub(crate) fn verify(
        &self,
        verifier: &mut Verifier,
        envelopes: Vec<Bytes>,
        now_ms: u64,
    ) -> Vec<Result<VerifiedEvent, VerifyError>> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<Option<Result<VerifiedEvent, VerifyError>>> =
            Vec::with_capacity(envelopes.len());
        let mut misses = Vec::new();
        let mut slots = Vec::new();
        for env in envelopes {
            if let Some(ev) = map.get(&env) {
                out.push(Some(Ok(ev.clone())));
            } else {
                slots.push(out.len());
                out.push(None);
                misses.push(Bytes::copy_from_slice(&env));
            }
        }
        if !misses.is_empty() {
            if map.len() + misses.len() > MAX_VERIFIED {
                map.clear();
            }
            let keys = misses.clone();
            for ((slot, key), r) in
                slots.into_iter().zip(keys).zip(verifier.verify_batch(misses, now_ms))
            {
                if let Ok(ev) = &r {
                    map.insert(key, ev.clone());
                }
                out[slot] = Some(r);
            }
        }
        out.into_iter().flatten().collect()
    }
}
