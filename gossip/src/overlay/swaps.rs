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
//! So every `Config::swap_interval` (off by default for now: see there), a peer whose coordinate
//! has settled and whose links are all connected compares its *near set* (the `active_view −
//! random_links` links of lowest measured RTT) with the nearest member it has no link to. When that
//! member's predicted RTT is below `Config::swap_ratio` × the measured RTT of the farthest near
//! link, it dials it. Once the new link has measured an RTT below the old one's, the peer says bye
//! to the old link (surplus: the neighbour does not dial back for a while, and dials a member of
//! its own choosing) — when the new link is probed (`Config::probe_new_links_from`), only after
//! every author has had time to publish a newspaper over it, so that no tree loses an edge before
//! it has another; if the prediction was wrong, it says bye to the new link instead. One swap is in
//! flight at a time. Links outside the near set (the random long links) are never swapped, and
//! nothing is swapped during a fault, when RTTs and statuses are stale.

use std::time::Duration;

use vecino_coords::Coordinate;
use vecino_proto::AuthorKey;

use crate::engine::core::Core;
use crate::published::settled;
use crate::time::Time;

/// A dialled swap that has not connected and measured its RTT within this long is given up.
const SWAP_WAIT: Duration = Duration::from_secs(15);

/// Beyond the longest spacing of an author's newspapers, how long a probed swap waits before
/// it drops the old link (the newspapers' way across the overlay).
const PROBE_SLACK: Duration = Duration::from_secs(10);

/// The swap in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The member dialled.
    new: AuthorKey,
    /// The near link it would replace.
    old: AuthorKey,
    /// When it was dialled.
    since: Time,
}

/// Proximity-swap state (bounded: one swap in flight).
#[derive(Debug, Default)]
pub(crate) struct Swaps {
    pending: Option<Pending>,
    /// When the next swap may be looked for (`None` until the first maintenance sets it).
    next: Option<Time>,
    /// Links replaced by a nearer one.
    done: u64,
    /// Dialled members that turned out no nearer than the link they would have replaced.
    refused: u64,
}

/// What the overlay does for a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwapStep {
    /// Nothing now.
    Wait,
    /// Dial `new` to replace `old` (then report it with [`Swaps::dialled`]).
    Dial {
        /// The member to dial.
        new: AuthorKey,
        /// The near link it would replace.
        old: AuthorKey,
    },
    /// Say bye to this link (the farther of the two).
    Bye(AuthorKey),
}

impl Swaps {
    /// Links replaced by a nearer one, and dialled members that were not nearer.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.done, self.refused)
    }

    /// From the overlay's maintenance: settles the swap in flight, or looks for one when one
    /// is due. `busy`: the peer is leaving or dialling; `dialable`: the members it may dial,
    /// with their published coordinates (asked only when a swap is looked for); `spacing`:
    /// the newspaper spacing (a probed link waits for every author's newspaper).
    pub(crate) fn step<R>(
        &mut self,
        core: &Core<R>,
        busy: bool,
        dialable: impl FnOnce() -> Vec<(AuthorKey, Option<Coordinate>)>,
        spacing: Duration,
    ) -> SwapStep {
        let Some(interval) = core.config.swap_interval.filter(|d| !d.is_zero()) else {
            return SwapStep::Wait;
        };
        let now = core.now;
        if let Some(p) = self.pending {
            return self.settle(core, p, spacing);
        }
        // Peers spread their swaps over the interval by key, without drawing on the RNG.
        let next = *self.next.get_or_insert_with(|| {
            let spread = u64::from_le_bytes(core.me.0[..8].try_into().unwrap_or_default());
            let offset = interval.mul_f64((spread % 1_000) as f64 / 1_000.0);
            core.started + interval + offset
        });
        if now < next {
            return SwapStep::Wait;
        }
        self.next = Some(now + interval);
        match candidate(core, busy, dialable) {
            Some((new, old)) => SwapStep::Dial { new, old },
            None => SwapStep::Wait,
        }
    }

    /// The dial of [`SwapStep::Dial`] went out at `now`: the swap is in flight.
    pub(crate) fn dialled(&mut self, new: AuthorKey, old: AuthorKey, now: Time) {
        self.pending = Some(Pending { new, old, since: now });
    }

    /// The swap in flight: once the new link has measured its RTT, drop whichever of the two
    /// is farther; give it up if the new link did not come within [`SWAP_WAIT`].
    fn settle<R>(&mut self, core: &Core<R>, p: Pending, spacing: Duration) -> SwapStep {
        let now = core.now;
        let measured = |peer: &AuthorKey| {
            core.links.get(peer).filter(|l| l.transport_up() && l.connected()).and_then(|l| l.rtt())
        };
        let mut step = SwapStep::Wait;
        match (measured(&p.new), measured(&p.old)) {
            (Some(n), Some(o)) => {
                // A probed link joins the trees it shortens as its authors' presence and
                // status probe it (`Config::probe_new_links_from`): the old link is kept until
                // every author has published a newspaper since, so that no tree loses its
                // edge before it has another.
                let probing = core.links.get(&p.new).is_some_and(|l| l.tree.edges.probing());
                let window = spacing.mul_f64(1.5) + PROBE_SLACK;
                if n < o && probing && now.saturating_since(p.since) < window {
                    return SwapStep::Wait;
                }
                if n < o {
                    self.done += 1;
                    step = SwapStep::Bye(p.old);
                } else {
                    self.refused += 1;
                    step = SwapStep::Bye(p.new);
                }
            }
            // The old link went meanwhile: the new one fills its place.
            (Some(_), None) => {}
            (None, _) if now.saturating_since(p.since) < SWAP_WAIT => return SwapStep::Wait,
            (None, _) => {}
        }
        self.pending = None;
        step
    }
}

/// The member to dial and the near link it would replace, if one is due.
fn candidate<R>(
    core: &Core<R>,
    busy: bool,
    dialable: impl FnOnce() -> Vec<(AuthorKey, Option<Coordinate>)>,
) -> Option<(AuthorKey, AuthorKey)> {
    if busy || !settled(core.coords.coordinate()) {
        return None;
    }
    let config = &core.config;
    let near_set = config.active_view.saturating_sub(config.random_links);
    if near_set == 0 || core.links.len() < config.active_view {
        return None;
    }
    let mut measured = Vec::with_capacity(core.links.len());
    for (p, l) in core.links.iter() {
        if !l.transport_up() || !l.connected() {
            return None; // a fault: RTTs and statuses are stale
        }
        if core.links.leaving(p) {
            continue;
        }
        measured.push((l.rtt()?, *p));
    }
    measured.sort_unstable();
    let &(worst, old) = measured.get(near_set - 1)?;
    let me = *core.coords.app_coordinate();
    let (predicted, new) = dialable()
        .into_iter()
        .filter_map(|(p, c)| Some((me.distance_secs(&c.filter(settled)?), p)))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
    (predicted < worst.as_secs_f64() * config.swap_ratio).then_some((new, old))
}
