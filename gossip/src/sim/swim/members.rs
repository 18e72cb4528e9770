//! Membership: memberlist's `suspectNode`, `deadNode`, `aliveNode`, `refute` and `mergeState`
//! (`state.go`), with Lifeguard's suspicion timer (`suspicion.go`).

use super::*;

/// memberlist's `remainingSuspicionTime`: the timeout after `n` of `k` confirmations,
/// `max − log(n + 1) / log(k + 1) × (max − min)` in whole ms, at least `min`, less `elapsed`
/// (`None` when already due).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(super) fn remaining_suspicion(
    n: u32,
    k: u32,
    elapsed: Duration,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let frac = f64::from(n + 1).ln() / f64::from(k + 1).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    let timeout = Duration::from_millis((1_000.0 * raw).floor().max(0.0) as u64).max(min);
    timeout.checked_sub(elapsed).filter(|d| !d.is_zero())
}

/// A suspicion timer (memberlist's `suspicion`).
#[derive(Debug, Clone)]
pub(super) struct Suspicion {
    pub(super) k: u32,
    pub(super) n: u32,
    pub(super) confirmations: Vec<u32>,
    pub(super) min: Duration,
    pub(super) max: Duration,
    pub(super) start: Time,
    pub(super) deadline: Time,
    /// The member's `StateChange` when suspected: a later change cancels the timer.
    pub(super) changed: Time,
}

impl Swim {
    pub(super) fn set_state(&mut self, now: Time, node: u32, state: State, inc: u32) {
        let Some(m) = self.members[node as usize].as_mut() else { return };
        let before = m.state;
        m.incarnation = inc;
        if before != state {
            m.state = state;
            m.changed = now;
        }
        let peer = self.dir.key(node as usize);
        match (before, state) {
            (State::Alive | State::Suspect, State::Dead) => {
                self.failed.insert(node);
                self.counters.declared_dead += 1;
                self.out.push(Output::Deliver(AppEvent::Link {
                    peer,
                    status: LinkStatus::Disconnected,
                }));
            }
            (State::Dead, State::Alive) => {
                self.failed.remove(&node);
                self.out
                    .push(Output::Deliver(AppEvent::Link { peer, status: LinkStatus::Connected }));
            }
            _ => {}
        }
    }

    pub(super) fn refute(&mut self, accused: u32) {
        let mut inc = self.incarnation + 1;
        if accused >= inc {
            inc = accused + 1;
        }
        self.incarnation = inc;
        if let Some(m) = self.members[self.me as usize].as_mut() {
            m.incarnation = inc;
            m.state = State::Alive;
        }
        self.counters.refuted += 1;
        self.awareness = (self.awareness + 1).min(AWARENESS_MAX - 1);
        self.broadcast(Msg::Alive { node: self.me, inc });
    }

    /// memberlist's `suspectNode`.
    pub(super) fn suspect_node(&mut self, now: Time, node: u32, inc: u32, from: u32) {
        let Some(m) = self.members[node as usize].clone() else { return };
        if inc < m.incarnation {
            return;
        }
        if let Some(s) = self.suspicions.get_mut(&node) {
            if s.n >= s.k || s.confirmations.contains(&from) {
                return;
            }
            s.confirmations.push(from);
            s.n += 1;
            let remaining = remaining_suspicion(s.n, s.k, now - s.start, s.min, s.max);
            s.deadline = now + remaining.unwrap_or_default();
            let at = s.deadline;
            self.broadcast(Msg::Suspect { node, inc, from });
            let key = self.dir.key(node as usize);
            self.schedule(at, key, tag::SUSPECT);
            return;
        }
        if m.state != State::Alive {
            return;
        }
        if node == self.me {
            self.refute(inc);
            return;
        }
        self.counters.suspected += 1;
        self.broadcast(Msg::Suspect { node, inc, from });
        self.set_state(now, node, State::Suspect, inc);
        let n = self.member_count();
        let mut k = SUSPICION_MULT - 2;
        if n.saturating_sub(2) < k as usize {
            k = 0;
        }
        let min = suspicion_timeout(SUSPICION_MULT, n, PROBE_INTERVAL);
        let max = min * SUSPICION_MAX_TIMEOUT_MULT;
        let deadline = now + if k < 1 { min } else { max };
        self.suspicions.insert(
            node,
            Suspicion {
                k,
                n: 0,
                confirmations: vec![from],
                min,
                max,
                start: now,
                deadline,
                changed: now,
            },
        );
        let key = self.dir.key(node as usize);
        self.schedule(deadline, key, tag::SUSPECT);
    }

    pub(super) fn suspicion_due(&mut self, now: Time, node: u32) {
        let Some(s) = self.suspicions.get(&node).filter(|s| s.deadline == now) else { return };
        let changed = s.changed;
        let Some(m) = self.members[node as usize].as_ref() else { return };
        if m.state == State::Suspect && m.changed == changed {
            let inc = m.incarnation;
            self.dead_node(now, node, inc, self.me);
        }
    }

    /// memberlist's `deadNode`.
    pub(super) fn dead_node(&mut self, now: Time, node: u32, inc: u32, from: u32) {
        let Some(m) = self.members[node as usize].as_ref() else { return };
        if inc < m.incarnation {
            return;
        }
        self.suspicions.remove(&node);
        if m.state == State::Dead {
            return;
        }
        if node == self.me {
            self.refute(inc);
            return;
        }
        self.broadcast(Msg::Dead { node, inc, from });
        self.set_state(now, node, State::Dead, inc);
    }

    /// memberlist's `aliveNode`.
    pub(super) fn alive_node(&mut self, now: Time, node: u32, inc: u32) {
        if self.members[node as usize].is_none() {
            // A reaped member comes back: inserted at a random place in the probe list.
            self.members[node as usize] =
                Some(Member { state: State::Dead, incarnation: 0, changed: now });
            let at = self.below(self.order.len() + 1);
            self.order.push(node);
            let last = self.order.len() - 1;
            self.order.swap(at, last);
        }
        let Some(m) = self.members[node as usize].as_ref() else { return };
        let local = node == self.me;
        if (inc <= m.incarnation && !local) || (inc < m.incarnation && local) {
            return;
        }
        self.suspicions.remove(&node);
        if local {
            if inc != m.incarnation {
                self.refute(inc);
            }
            return;
        }
        self.broadcast(Msg::Alive { node, inc });
        self.set_state(now, node, State::Alive, inc);
    }

    pub(super) fn apply(&mut self, now: Time, msg: Msg) {
        match msg {
            Msg::Alive { node, inc } => self.alive_node(now, node, inc),
            Msg::Suspect { node, inc, from } => self.suspect_node(now, node, inc, from),
            Msg::Dead { node, inc, from } => self.dead_node(now, node, inc, from),
        }
    }

    /// memberlist's `mergeState`: a remote dead or suspect member is suspected, not declared.
    pub(super) fn merge(&mut self, now: Time, remote: &[(u32, u32, State)]) {
        for &(node, inc, state) in remote {
            if node as usize >= self.members.len() {
                continue;
            }
            match state {
                State::Alive => self.alive_node(now, node, inc),
                State::Suspect | State::Dead => self.suspect_node(now, node, inc, self.me),
            }
        }
    }
}
