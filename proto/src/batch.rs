//! Batch verification with bisection.
//!
//! ed25519 batch verification (Bernstein et al., "High-speed high-security signatures", 2012)
//! checks n signatures with one multi-scalar multiplication, about twice as fast per signature
//! as checking them one by one, but only says "all good" or "something is bad". When a batch
//! fails it is split in halves; if the left half verifies, the failure is known to be in the
//! right half, which is then split without being checked as a whole. One forged signature in a
//! batch of 64 thus costs about 64 + 32 + 16 + … ≈ 2·64 batched checks instead of 64 single
//! ones, and an honest batch costs one.
//!
//! Batch verification uses the cofactored equation while single verification is cofactorless;
//! they disagree only on signatures crafted with small-order components, which only the key's
//! owner can make (weak keys are refused before either runs).

use bytes::Bytes;
use ed25519_dalek::ed25519::signature::MultipartVerifier;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::VerifyError;
use crate::verify::{EVENT_DOMAIN, Pending, VerifiedEvent, Verifier, finish};

impl Verifier {
    /// Verifies envelopes received live at `now_ms`, checking their signatures as one batch.
    ///
    /// Returns one result per input, in input order: exactly what [`Verifier::verify`] would
    /// return for each, except for signatures crafted to differ between the cofactored and
    /// cofactorless equations (see the module docs).
    pub fn verify_batch(
        &mut self,
        envelopes: Vec<Bytes>,
        now_ms: u64,
    ) -> Vec<Result<VerifiedEvent, VerifyError>> {
        let mut results: Vec<Option<Result<VerifiedEvent, VerifyError>>> =
            (0..envelopes.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, Pending)> = Vec::with_capacity(envelopes.len());
        for (i, envelope) in envelopes.into_iter().enumerate() {
            match self.precheck(envelope, Some(now_ms)) {
                Ok(p) => pending.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        // Batch verification takes each message whole, so domain || event is laid out once.
        let mut joined = Vec::with_capacity(
            pending.iter().map(|(_, p)| EVENT_DOMAIN.len() + p.event.len()).sum(),
        );
        let mut ends = Vec::with_capacity(pending.len());
        for (_, p) in &pending {
            joined.extend_from_slice(EVENT_DOMAIN);
            joined.extend_from_slice(&p.event);
            ends.push(joined.len());
        }
        let mut start = 0;
        let messages: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let m = &joined[start..end];
                start = end;
                m
            })
            .collect();
        let signatures: Vec<Signature> = pending.iter().map(|(_, p)| p.signature).collect();
        let keys: Vec<VerifyingKey> = pending.iter().map(|(_, p)| p.key).collect();
        let mut good = vec![false; pending.len()];
        let batch = Batch { messages: &messages, signatures: &signatures, keys: &keys };
        batch.bisect(0, pending.len(), false, &mut good);

        for ((i, p), ok) in pending.into_iter().zip(good) {
            results[i] = Some(if ok { finish(p) } else { Err(VerifyError::BadSignature) });
        }
        let results: Vec<_> =
            results.into_iter().map(|r| r.unwrap_or(Err(VerifyError::BadSignature))).collect();
        for r in &results {
            self.count(r);
        }
        results
    }
}

struct Batch<'a> {
    messages: &'a [&'a [u8]],
    signatures: &'a [Signature],
    keys: &'a [VerifyingKey],
}

impl Batch<'_> {
    fn verify(&self, lo: usize, hi: usize) -> bool {
        if hi - lo == 1 {
            return self.keys[lo]
                .multipart_verify(&[self.messages[lo]], &self.signatures[lo])
                .is_ok();
        }
        ed25519_dalek::verify_batch(
            &self.messages[lo..hi],
            &self.signatures[lo..hi],
            &self.keys[lo..hi],
        )
        .is_ok()
    }

    /// Marks `good[lo..hi]`; `known_bad` says the range is already known to hold a bad one.
    fn bisect(&self, lo: usize, hi: usize, known_bad: bool, good: &mut [bool]) {
        if lo == hi {
            return;
        }
        if !known_bad && self.verify(lo, hi) {
            good[lo..hi].fill(true);
            return;
        }
        if hi - lo == 1 {
            return; // the one signature left is the bad one
        }
        let mid = lo + (hi - lo) / 2;
        if self.verify(lo, mid) {
            good[lo..mid].fill(true);
            self.bisect(mid, hi, true, good);
        } else {
            self.bisect(lo, mid, true, good);
            self.bisect(mid, hi, false, good);
        }
    }
}
