//! Proximity swaps: the near links of the active view made near once coordinates mean
//! something.
//!
//! A peer fills its active view nearest member first, by coordinate. But it fills it while it
//! joins, when no coordinate has settled yet, so the "nearest" links it makes then are as good
//! as random, and a full view never made another. On planet (490 peers) the links ended with a
//! mean RTT of 124 ms, against 134 ms for a random pair, and the shortest paths over them were
//! 1.55 × the direct ones at the median (`Report::overlay`); the nearest 4 plus 2 random per
//! peer would give about 1.03.
//!
//! So every [`Config::swap_interval`] (off by default for now: see there), a peer whose coordinate
//! has settled and whose links are all connected compares its *near set* (the `active_view −
//! random_links` links of lowest measured RTT) with the nearest member it has no link to. When that
//! member's predicted RTT is below [`Config::swap_ratio`] × the measured RTT of the farthest near
//! link, it dials it. Once the new link has measured an RTT below the old one's, the peer says bye
//! to the old link (surplus: the neighbour does not dial back for a while, and dials a member of
//! its own choosing) — when the new link is probed ([`Config::probe_new_links_from`]), only after
//! every author has had time to publish a newspaper over it, so that no tree loses an edge before
//! it has another; if the prediction was wrong, it says bye to the new link instead. One swap is in
//! flight at a time. Links outside the near set (the random long links) are never swapped, and
//! nothing is swapped during a fault, when RTTs and statuses are stale.

use std::time::Duration;

use rand::Rng;
use vecino_coords::Coordinate;
use vecino_proto::AuthorKey;
use vecino_proto::pb::Stream;

use crate::engine::{Engine, published_coordinate};
use crate::io::LinkStatus;
use crate::membership::settled;
use crate::time::Time;

/// A dialled swap that has not connected and measured its RTT within this long is given up.
const SWAP_WAIT: Duration = Duration::from_secs(15);

/// Beyond the longest spacing of an author's newspapers, how long a probed swap waits before
/// it drops the old link (the newspapers' way across the overlay).
const PROBE_SLACK: Duration = Duration::from_secs(10);

/// Proximity-swap state (bounded: one swap in flight).
#[derive(Debug, Default)]
pub(crate) struct Swaps {
    /// The swap in flight: the member dialled, the link it would replace, when it was dialled.
    pending: Option<(AuthorKey, AuthorKey, Time)>,
    /// When the next swap may be looked for (`None` until the first maintenance sets it).
    next: Option<Time>,
    /// Links replaced by a nearer one.
    pub(crate) done: u64,
    /// Dialled members that turned out no nearer than the link they would have replaced.
    pub(crate) refused: u64,
}

impl<R: Rng> Engine<R> {
    /// Looks for a swap, or settles the one in flight (from the overlay's maintenance).
    pub(crate) fn maintain_swaps(&mut self, now: Time) {
        let Some(interval) = self.config.swap_interval.filter(|d| !d.is_zero()) else { return };
        if let Some((new, old, since)) = self.swaps.pending {
            self.settle_swap(new, old, since, now);
            return;
        }
        // Peers spread their swaps over the interval by key, without drawing on the RNG.
        let next = *self.swaps.next.get_or_insert_with(|| {
            let spread = u64::from_le_bytes(self.me.0[..8].try_into().unwrap_or_default());
            let offset = interval.mul_f64((spread % 1_000) as f64 / 1_000.0);
            self.started + interval + offset
        });
        if now < next {
            return;
        }
        self.swaps.next = Some(now + interval);
        if let Some((new, old)) = self.swap_candidate() {
            self.dial(new);
            if self.dialing.contains_key(&new) {
                self.swaps.pending = Some((new, old, now));
            }
        }
    }

    /// The member to dial and the near link it would replace, if one is due.
    fn swap_candidate(&self) -> Option<(AuthorKey, AuthorKey)> {
        if self.leaving || !self.dialing.is_empty() || !settled(self.coords.coordinate()) {
            return None;
        }
        let near_set = self.config.active_view.saturating_sub(self.config.random_links);
        if near_set == 0 || self.links.len() < self.config.active_view {
            return None;
        }
        let mut measured = Vec::with_capacity(self.links.len());
        for (p, l) in &self.links {
            if !l.transport_up || l.status != LinkStatus::Connected {
                return None; // a fault: RTTs and statuses are stale
            }
            if self.leaving_links.contains_key(p) {
                continue;
            }
            measured.push((l.rtt()?, *p));
        }
        measured.sort_unstable();
        let &(worst, old) = measured.get(near_set - 1)?;
        let me = *self.coords.app_coordinate();
        let (predicted, new) = self
            .dialable()
            .into_iter()
            .filter_map(|(p, c)| Some((me.distance_secs(&c.filter(settled)?), p)))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        (predicted < worst.as_secs_f64() * self.config.swap_ratio).then_some((new, old))
    }

    /// Members this peer may dial, with the coordinate each last published: known by presence
    /// or status, not left, and not linked, being dialled or held off.
    pub(crate) fn dialable(&self) -> Vec<(AuthorKey, Option<Coordinate>)> {
        let mut out: Vec<(AuthorKey, Option<Coordinate>)> = Vec::new();
        // Latest-value events come in (author, stream) order: an author's are adjacent.
        let mut last = None;
        for ev in self.store.latest_events() {
            let p = ev.author();
            if !matches!(ev.stream(), Stream::HeyThere | Stream::Newspaper)
                || p == self.me
                || last.replace(p) == Some(p)
                || self.links.contains_key(&p)
                || self.dialing.contains_key(&p)
                || self.held_off(&p)
                || self.has_left(p)
            {
                continue;
            }
            out.push((p, published_coordinate(&self.store, p)));
        }
        out
    }

    /// The swap in flight: once the new link has measured its RTT, drop whichever of the two
    /// is farther; give it up if the new link did not come within [`SWAP_WAIT`].
    fn settle_swap(&mut self, new: AuthorKey, old: AuthorKey, since: Time, now: Time) {
        let measured = |p: &AuthorKey| {
            self.links
                .get(p)
                .filter(|l| l.transport_up && l.status == LinkStatus::Connected)
                .and_then(|l| l.rtt())
        };
        match (measured(&new), measured(&old)) {
            (Some(n), Some(o)) => {
                // A probed link joins the trees it shortens as its authors' presence and
                // status probe it (`Config::probe_new_links_from`): the old link is kept until
                // every author has published a newspaper since, so that no tree loses its
                // edge before it has another.
                let probing = self.links.get(&new).is_some_and(|l| l.trees.probing());
                let window = self.newspaper_spacing().mul_f64(1.5) + PROBE_SLACK;
                if n < o && probing && now.saturating_since(since) < window {
                    return;
                }
                if n < o {
                    self.swaps.done += 1;
                    self.say_bye(old);
                } else {
                    self.swaps.refused += 1;
                    self.say_bye(new);
                }
            }
            // The old link went meanwhile: the new one fills its place.
            (Some(_), None) => {}
            (None, _) if now.saturating_since(since) < SWAP_WAIT => return,
            (None, _) => {}
        }
        self.swaps.pending = None;
    }
}
