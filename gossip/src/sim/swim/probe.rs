//! The failure detector: memberlist's `probe`, `probeNode` and `resetNodes` (`state.go`), and
//! the indirect probes a member runs for others (`net.go` `handleIndirectPing`).

use super::*;

/// The probe running.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) target: u32,
    pub(super) seq: u32,
    pub(super) timeout_at: Time,
    pub(super) deadline: Time,
    pub(super) expected_nacks: u32,
    pub(super) nacks: u32,
    pub(super) tcp_ok: bool,
}

/// An indirect probe run for another member.
#[derive(Debug, Clone)]
pub(super) struct Helping {
    pub(super) requester: u32,
    pub(super) their_seq: u32,
    pub(super) my_seq: u32,
    /// When the ack handler expires (a nack is then sent).
    pub(super) until: Time,
}

impl Swim {
    pub(super) fn probe_tick(&mut self, now: Time) {
        let key = self.key;
        self.schedule(now + PROBE_INTERVAL, key, tag::PROBE);
        if self.probe.is_some() {
            self.tick_pending = true;
            return;
        }
        self.probe_next(now);
    }

    /// memberlist's `probe`: the next member of the list that is not this one or dead.
    pub(super) fn probe_next(&mut self, now: Time) {
        let mut checked = 0;
        loop {
            if checked >= self.order.len() {
                return;
            }
            if self.probe_index >= self.order.len() {
                self.reset_nodes(now);
                self.probe_index = 0;
                checked += 1;
                continue;
            }
            let i = self.order[self.probe_index];
            self.probe_index += 1;
            let dead = self.members[i as usize].as_ref().is_none_or(|m| m.state == State::Dead);
            if i == self.me || dead {
                checked += 1;
                continue;
            }
            self.probe_node(now, i);
            return;
        }
    }

    /// memberlist's `resetNodes`: reap members dead for longer than
    /// [`GOSSIP_TO_THE_DEAD`], shuffle the rest.
    pub(super) fn reset_nodes(&mut self, now: Time) {
        let members = &mut self.members;
        self.order.retain(|&i| {
            let reap = members[i as usize].as_ref().is_some_and(|m| {
                m.state == State::Dead && now.saturating_since(m.changed) > GOSSIP_TO_THE_DEAD
            });
            if reap {
                members[i as usize] = None;
            }
            !reap
        });
        let mut order = std::mem::take(&mut self.order);
        shuffle(&mut self.rng, &mut order);
        self.order = order;
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub(super) fn probe_node(&mut self, now: Time, target: u32) {
        self.counters.probes += 1;
        let interval = PROBE_INTERVAL * (self.awareness + 1);
        let seq = self.next_seq();
        let Some(m) = self.members[target as usize].clone() else { return };
        if m.state == State::Alive {
            self.send_msg(target, Part::Ping { seq });
        } else {
            let s = Msg::Suspect { node: target, inc: m.incarnation, from: self.me };
            self.send_parts(target, &[Part::Ping { seq }, Part::Broadcast(s)], true);
        }
        let probe = Probe {
            target,
            seq,
            timeout_at: now + PROBE_TIMEOUT,
            deadline: now + interval,
            expected_nacks: 0,
            nacks: 0,
            tcp_ok: false,
        };
        let key = self.key;
        self.schedule(probe.timeout_at, key, tag::PROBE_TIMEOUT);
        self.schedule(probe.deadline, key, tag::PROBE_DEADLINE);
        self.probe = Some(probe);
    }

    /// The direct ping timed out: indirect pings and a TCP ping.
    pub(super) fn probe_timeout(&mut self, now: Time) {
        let Some(p) = self.probe.clone().filter(|p| p.timeout_at == now) else { return };
        let target = p.target;
        let helpers =
            self.random_members(INDIRECT_CHECKS, |i, m| i != target && m.state == State::Alive);
        for &h in &helpers {
            self.send_msg(h, Part::Indirect { seq: p.seq, target });
        }
        self.send_tcp(target, Kind::SwimTcpPing, p.seq);
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = helpers.len() as u32;
        }
    }

    /// The probe interval is over without an ack over UDP: a TCP ack saves it, else the target
    /// is suspected.
    pub(super) fn probe_deadline(&mut self, now: Time) {
        let Some(p) = self.probe.clone().filter(|p| p.deadline == now) else { return };
        if p.tcp_ok {
            self.probe_done(now, -1);
            return;
        }
        self.counters.probes_failed += 1;
        let delta = if p.expected_nacks > 0 { p.expected_nacks.saturating_sub(p.nacks) } else { 1 };
        let inc = self.members[p.target as usize].as_ref().map_or(0, |m| m.incarnation);
        self.probe_done(now, i64::from(delta));
        self.suspect_node(now, p.target, inc, self.me);
    }

    /// The probe is over; `delta` goes to the awareness score; a tick that came meanwhile
    /// starts the next probe.
    pub(super) fn probe_done(&mut self, now: Time, delta: i64) {
        self.probe = None;
        self.awareness =
            (i64::from(self.awareness) + delta).clamp(0, i64::from(AWARENESS_MAX) - 1) as u32;
        if std::mem::take(&mut self.tick_pending) {
            self.probe_next(now);
        }
    }

    pub(super) fn on_ack(&mut self, now: Time, seq: u32) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe_done(now, -1);
            return;
        }
        if let Some(i) = self.helping.iter().position(|h| h.my_seq == seq && now <= h.until) {
            let h = self.helping.swap_remove(i);
            self.send_msg(h.requester, Part::Ack { seq: h.their_seq, payload: false });
        }
    }

    pub(super) fn nack_due(&mut self, now: Time) {
        let due: Vec<Helping> = self.helping.iter().filter(|h| h.until <= now).cloned().collect();
        self.helping.retain(|h| h.until > now);
        for h in due {
            self.send_msg(h.requester, Part::Nack { seq: h.their_seq });
        }
    }
}
