//! What is scheduled, when and in which order: peer events ([`Ev`], run by the peer's
//! shard), the run's own events ([`RunEv`], between windows), the min-queue both wait in, and
//! simulated time.
//!
//! Events are ordered by (time, tie). The tie names what caused the event and how many events
//! it had caused before (`cause << 40 | count`; the cause is the peer whose input or outputs
//! made it, or the run itself for publications, faults and checks), so the order does not
//! depend on how the run is split into shards.

use vecino_proto::Bytes;

use crate::io::{Priority, Timer};
use crate::sim::EPOCH_US;
use crate::time::Time;

/// Simulated time `now_us` (µs since the run began) as the peers' clock reads it.
pub(super) fn time(now_us: u64) -> Time {
    Time(EPOCH_US + now_us)
}

/// A duration in µs of simulated time (saturating).
pub(super) fn us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The cause named in the tie of what the run schedules itself (starts, publications,
/// faults, checks); peers are causes `0 .. RUN`.
pub(super) const RUN: u32 = (1 << 24) - 1;

/// Bits of a tie that count a cause's events.
pub(super) const COUNT_BITS: u32 = 40;

/// What happens at a peer; run by the peer's shard.
#[derive(Debug)]
pub(super) enum Ev {
    /// A frame `from` sent to `to` arrives (`radio`: it was broadcast on their radio, and
    /// `to` overheard it).
    Arrive {
        from: u32,
        to: u32,
        inc: u32,
        class: Priority,
        frame: Bytes,
        radio: bool,
    },
    Timer {
        node: u32,
        inc: u32,
        timer: Timer,
    },
    LinkUp {
        node: u32,
        inc: u32,
        peer: u32,
        inbound: bool,
    },
    LinkDown {
        node: u32,
        inc: u32,
        peer: u32,
    },
    /// A frame of `bytes` from `node` left its medium (back-pressure report).
    Sent {
        node: u32,
        inc: u32,
        bytes: usize,
    },
}

impl Ev {
    /// The peer the event happens at.
    pub(super) fn peer(&self) -> u32 {
        match self {
            Ev::Arrive { to, .. } => *to,
            Ev::Timer { node, .. }
            | Ev::LinkUp { node, .. }
            | Ev::LinkDown { node, .. }
            | Ev::Sent { node, .. } => *node,
        }
    }
}

/// What the run does itself, between windows.
#[derive(Debug)]
pub(super) enum RunEv {
    Start(u32),
    Publish {
        node: Option<u32>,
    },
    Postcard,
    FaultStart(usize),
    FaultEnd(usize),
    Check,
    /// Sample what peers believe about each other.
    Opinions,
    /// Sample barrios.
    Barrios,
}

/// A min-queue of events by (time, tie); payloads live in a slab so the heap moves 24-byte
/// keys only. The heap is 4-ary: half as deep as a binary one, and the four children of a
/// node share a cache line or two, which is what a pop pays for in a queue of 10⁵ events
/// (one per peer's timer and frame in flight). (time, tie) is unique, so the order of pops
/// is the queue's, whatever the heap's shape.
#[derive(Debug)]
pub(super) struct Queue<E> {
    heap: Vec<(u64, u64, u32)>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self { heap: Vec::new(), slab: Vec::new(), free: Vec::new() }
    }
}

/// Children per node of the heap.
const ARITY: usize = 4;

impl<E> Queue<E> {
    pub(super) fn push(&mut self, at: u64, tie: u64, ev: E) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        let key = (at, tie, slot);
        let mut i = self.heap.len();
        self.heap.push(key);
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.heap[parent] <= key {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = key;
    }

    /// When the next event happens.
    pub(super) fn next(&self) -> Option<u64> {
        self.heap.first().map(|(at, _, _)| *at)
    }

    pub(super) fn pop(&mut self) -> Option<(u64, u64, E)> {
        let last = self.heap.pop()?;
        let top = match self.heap.first().copied() {
            None => last,
            Some(top) => {
                self.sift_down(last);
                top
            }
        };
        let (at, tie, slot) = top;
        let ev = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, tie, ev))
    }

    /// Puts `key` in the hole at the root and moves it down to its place.
    fn sift_down(&mut self, key: (u64, u64, u32)) {
        let n = self.heap.len();
        let mut i = 0;
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let end = (first + ARITY).min(n);
            let mut child = first;
            for c in first + 1..end {
                if self.heap[c] < self.heap[child] {
                    child = c;
                }
            }
            if self.heap[child] >= key {
                break;
            }
            self.heap[i] = self.heap[child];
            i = child;
        }
        self.heap[i] = key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pop is the least (time, tie) queued, with pushes and pops interleaved as a run
    /// makes them: checked against a sorted set.
    #[test]
    fn pops_follow_time_then_tie() {
        let mut q = Queue::default();
        let mut reference = std::collections::BTreeSet::new();
        let mut x: u64 = 11;
        for i in 0..5_000u64 {
            x = crate::sim::mix(x);
            if x.is_multiple_of(3) {
                let want = reference.pop_first();
                assert_eq!(q.pop().map(|(at, tie, _)| (at, tie)), want);
            } else {
                let key = (x % 500, i);
                reference.insert(key);
                q.push(key.0, key.1, ());
            }
        }
        while let Some(want) = reference.pop_first() {
            assert_eq!(q.pop().map(|(at, tie, _)| (at, tie)), Some(want));
        }
        assert!(q.pop().is_none());
    }
}
