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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vecino_proto::{Bytes, VerifiedEvent, Verifier, VerifyError};

/// Envelopes remembered at most; the cache is emptied when it is full.
const MAX_VERIFIED: usize = 1 << 20;

/// Verified envelopes shared by the peers of one simulation.
#[derive(Debug, Default, Clone)]
pub struct VerifyCache(Arc<Mutex<HashMap<Bytes, VerifiedEvent>>>);

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
                misses.push(env);
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
