//! Durable storage as the engine sees it: a sink for [`StoreOp`]s and a source of events on
//! restart. The node implements [`Persist`] on its embedded database; the simulator and tests
//! use [`MemoryStore`], which survives a simulated crash because it lives in the host.

use std::collections::BTreeMap;

use vecino_proto::{AuthorKey, VerifiedEvent};

use crate::io::StoreOp;

/// Where a host keeps a peer's events.
pub trait Persist {
    /// Applies one operation, durably before returning where the store is durable.
    fn apply(&mut self, op: &StoreOp);
    /// Every event held, for [`crate::Engine::new`] after a restart.
    fn events(&self) -> Vec<VerifiedEvent>;
}

/// An in-memory [`Persist`].
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    events: BTreeMap<(AuthorKey, i32, u64), VerifiedEvent>,
}

impl MemoryStore {
    /// Number of events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Persist for MemoryStore {
    fn apply(&mut self, op: &StoreOp) {
        match op {
            StoreOp::Put(ev) => {
                self.events.insert((ev.author(), ev.stream() as i32, ev.seq()), ev.clone());
            }
            StoreOp::Delete { author, stream, seq } => {
                self.events.remove(&(*author, *stream as i32, *seq));
            }
        }
    }

    fn events(&self) -> Vec<VerifiedEvent> {
        self.events.values().cloned().collect()
    }
}
