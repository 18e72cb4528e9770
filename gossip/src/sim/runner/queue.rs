//! What is scheduled, when and in which order: peer events ([`Ev`], run by the peer's
//! shard), the run's own events ([`RunEv`], between windows), the min-queue both wait in, and
//! simulated time.
//!
//! Events are ordered by (time, tie). The tie names what caused the event and how many events
//! it had caused before (`cause << 40 | count`; the cause is the peer whose input or outputs
//! made it, or the run itself for publications, faults and checks), so the order does not
//! depend on how the run is split into shards.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    Publish { node: Option<u32> },
    Postcard,
    FaultStart(usize),
    FaultEnd(usize),
    Check,
}

/// A min-queue of events by (time, tie); payloads live in a slab so the heap moves 24-byte
/// keys only.
#[derive(Debug)]
pub(super) struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), slab: Vec::new(), free: Vec::new() }
    }
}

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
        self.heap.push(Reverse((at, tie, slot)));
    }

    /// When the next event happens.
    pub(super) fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    pub(super) fn pop(&mut self) -> Option<(u64, u64, E)> {
        let Reverse((at, tie, slot)) = self.heap.pop()?;
        let ev = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, tie, ev))
    }
}
