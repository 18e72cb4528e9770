//! Broadcasts waiting to leave on the shared medium (`Config::shared_medium`, `crate::medium`):
//! per-class queues served before the links in each class, within the host's queue or the
//! uplink's bucket like any frame.

use std::collections::VecDeque;

use vecino_proto::Bytes;

use crate::io::Priority;
use crate::store::EventKey;

/// Bytes of broadcasts waiting for the host, all classes together; past it a broadcast is
/// dropped (counted `medium_queue_full`) and its event reaches the medium's peers by
/// anti-entropy.
pub(crate) const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// The broadcast queues.
#[derive(Debug, Default)]
pub(crate) struct Broadcasts {
    /// Per class (the order of [`Priority::ALL`]): each broadcast with the event it carries.
    queue: [VecDeque<(EventKey, Bytes)>; 4],
    queued_bytes: usize,
    /// Broadcasts handed to the host.
    sent: u64,
}

fn class_index(class: Priority) -> usize {
    Priority::ALL.iter().position(|c| *c == class).unwrap_or(0)
}

impl Broadcasts {
    pub(crate) fn is_empty(&self) -> bool {
        self.queued_bytes == 0
    }

    /// Broadcasts handed to the host so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Queues `frame`, the broadcast of `key`; false (nothing queued) past
    /// [`MAX_QUEUED_BYTES`].
    pub(crate) fn push(&mut self, key: EventKey, frame: Bytes, class: Priority) -> bool {
        if self.queued_bytes + frame.len() > MAX_QUEUED_BYTES {
            return false;
        }
        self.queued_bytes += frame.len();
        self.queue[class_index(class)].push_back((key, frame));
        true
    }

    /// The next broadcast of `class`, if any, handed to the host.
    pub(crate) fn pop(&mut self, class: Priority) -> Option<Bytes> {
        let (_, frame) = self.queue[class_index(class)].pop_front()?;
        self.queued_bytes -= frame.len();
        self.sent += 1;
        Some(frame)
    }

    /// Drops the queued broadcast of `key`; true if there was one.
    pub(crate) fn cancel(&mut self, key: &EventKey) -> bool {
        for q in &mut self.queue {
            if let Some(i) = q.iter().position(|(k, _)| k == key) {
                let (_, frame) = q.remove(i).expect("position found");
                self.queued_bytes -= frame.len();
                return true;
            }
        }
        false
    }

    /// Whether a broadcast of `key` waits.
    pub(crate) fn queued(&self, key: &EventKey) -> bool {
        self.queue.iter().any(|q| q.iter().any(|(k, _)| k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::AuthorKey;
    use vecino_proto::pb::Stream;

    fn key(n: u64) -> EventKey {
        ((AuthorKey([1; 32]), Stream::Post), n)
    }

    /// Queues are bounded in bytes, served by class, and a cancelled broadcast never leaves.
    #[test]
    fn broadcasts_are_bounded_served_by_class_and_cancellable() {
        let mut b = Broadcasts::default();
        assert!(b.push(key(1), Bytes::from(vec![0; 1_000]), Priority::Membership));
        assert!(b.push(key(2), Bytes::from(vec![0; 1_000]), Priority::Post));
        assert!(!b.push(key(3), Bytes::from(vec![0; MAX_QUEUED_BYTES]), Priority::Post));
        assert!(b.queued(&key(2)) && !b.queued(&key(3)));
        assert_eq!(b.pop(Priority::Control), None);
        assert!(b.cancel(&key(2)));
        assert_eq!(b.pop(Priority::Post), None);
        assert_eq!(b.pop(Priority::Membership).map(|f| f.len()), Some(1_000));
        assert!(b.is_empty());
        assert_eq!(b.sent(), 1);
    }
}
