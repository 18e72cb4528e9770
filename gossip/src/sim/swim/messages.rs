//! What memberlist sends: members' states, the broadcasts about them and the parts of a
//! datagram (their sizes from [`super::sizes`], their encoding inside the model's frames), and
//! the transmit-limited queue broadcasts wait in (`queue.go`: least transmitted first, then
//! longest, then newest; a newer message about a member replacing an older one; dropped after
//! [`super::retransmit_limit`] sends).

use std::sync::OnceLock;

use super::*;

/// The sizes of memberlist's messages, computed once.
#[derive(Debug)]
pub(super) struct Sizes {
    pub(super) ping: usize,
    pub(super) ack: usize,
    pub(super) ack_relayed: usize,
    pub(super) indirect: usize,
    pub(super) nack: usize,
    pub(super) tcp_ping: usize,
    pub(super) tcp_ack: usize,
}

pub(super) fn known() -> &'static Sizes {
    static SIZES: OnceLock<Sizes> = OnceLock::new();
    SIZES.get_or_init(|| Sizes {
        ping: sizes::ping(),
        ack: sizes::ack(),
        ack_relayed: sizes::ack_relayed(),
        indirect: sizes::indirect_ping(),
        nack: sizes::nack(),
        tcp_ping: sizes::tcp_ping(),
        tcp_ack: sizes::tcp_ack(),
    })
}

/// A member's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Alive,
    Suspect,
    Dead,
}

impl State {
    pub(super) fn code(self) -> u64 {
        match self {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead => 2,
        }
    }
    pub(super) fn of(code: u64) -> Option<State> {
        Some(match code {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Dead,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) state: State,
    pub(super) incarnation: u32,
    /// Last state change (memberlist's `StateChange`).
    pub(super) changed: Time,
}

/// A broadcast about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Msg {
    Alive { node: u32, inc: u32 },
    Suspect { node: u32, inc: u32, from: u32 },
    Dead { node: u32, inc: u32, from: u32 },
}

impl Msg {
    pub(super) fn node(self) -> u32 {
        match self {
            Msg::Alive { node, .. } | Msg::Suspect { node, .. } | Msg::Dead { node, .. } => node,
        }
    }
    pub(super) fn size(self) -> usize {
        match self {
            Msg::Alive { inc, .. } => sizes::alive(inc),
            Msg::Suspect { inc, .. } | Msg::Dead { inc, .. } => sizes::suspect(inc),
        }
    }
}

/// One message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// A ping of the datagram's recipient.
    Ping {
        seq: u32,
    },
    /// An ack; `payload`: with Serf's coordinate (a direct answer), else relayed.
    Ack {
        seq: u32,
        payload: bool,
    },
    /// Please ping `target` for me.
    Indirect {
        seq: u32,
        target: u32,
    },
    Nack {
        seq: u32,
    },
    Broadcast(Msg),
}

impl Part {
    pub(super) fn size(self) -> usize {
        let s = known();
        match self {
            Part::Ping { .. } => s.ping,
            Part::Ack { payload: true, .. } => s.ack,
            Part::Ack { payload: false, .. } => s.ack_relayed,
            Part::Indirect { .. } => s.indirect,
            Part::Nack { .. } => s.nack,
            Part::Broadcast(m) => m.size(),
        }
    }

    pub(super) fn encode(self, out: &mut Vec<u8>) {
        let put = liveness::push_varint;
        match self {
            Part::Ping { seq } => {
                out.push(0);
                put(out, u64::from(seq));
            }
            Part::Ack { seq, payload } => {
                out.push(if payload { 1 } else { 2 });
                put(out, u64::from(seq));
            }
            Part::Indirect { seq, target } => {
                out.push(3);
                put(out, u64::from(seq));
                put(out, u64::from(target));
            }
            Part::Nack { seq } => {
                out.push(4);
                put(out, u64::from(seq));
            }
            Part::Broadcast(m) => {
                let (t, node, inc, from) = match m {
                    Msg::Alive { node, inc } => (5, node, inc, node),
                    Msg::Suspect { node, inc, from } => (6, node, inc, from),
                    Msg::Dead { node, inc, from } => (7, node, inc, from),
                };
                out.push(t);
                put(out, u64::from(node));
                put(out, u64::from(inc));
                put(out, u64::from(from));
            }
        }
    }

    pub(super) fn decode(b: &[u8], at: &mut usize) -> Option<Part> {
        let t = *b.get(*at)?;
        *at += 1;
        let mut v = || crate::sim::wire::varint(b, at).and_then(|x| u32::try_from(x).ok());
        Some(match t {
            0 => Part::Ping { seq: v()? },
            1 | 2 => Part::Ack { seq: v()?, payload: t == 1 },
            3 => Part::Indirect { seq: v()?, target: v()? },
            4 => Part::Nack { seq: v()? },
            5..=7 => {
                let (node, inc, from) = (v()?, v()?, v()?);
                Part::Broadcast(match t {
                    5 => Msg::Alive { node, inc },
                    6 => Msg::Suspect { node, inc, from },
                    _ => Msg::Dead { node, inc, from },
                })
            }
            _ => return None,
        })
    }
}

/// A queued broadcast (memberlist's `limitedBroadcast`).
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) msg: Msg,
    pub(super) len: usize,
    pub(super) transmits: u32,
    pub(super) id: u64,
}

impl Swim {
    /// Sends a datagram of `parts` to `to`.
    pub(super) fn send_parts(&mut self, to: u32, parts: &[Part], crc: bool) {
        let Some(&first) = parts.first() else { return };
        let size = sizes::packet(parts.iter().map(|p| p.size()), crc);
        let mut payload = Vec::with_capacity(1 + parts.len() * 8);
        liveness::push_varint(&mut payload, parts.len() as u64);
        for p in parts {
            p.encode(&mut payload);
        }
        let (kind, class) = match first {
            Part::Ping { .. } => (Kind::SwimPing, Priority::Control),
            Part::Ack { .. } => (Kind::SwimAck, Priority::Control),
            Part::Indirect { .. } => (Kind::SwimIndirect, Priority::Control),
            Part::Nack { .. } => (Kind::SwimNack, Priority::Control),
            Part::Broadcast(_) => (Kind::SwimGossip, Priority::Membership),
        };
        let frame = liveness::frame(kind, &payload, size);
        self.out.push(Output::Send { to: self.dir.key(to as usize), frame, class });
    }

    /// memberlist's `sendMsg`: `part` with as many queued broadcasts as fit piggybacked.
    pub(super) fn send_msg(&mut self, to: u32, part: Part) {
        let avail = UDP_BUFFER.saturating_sub(part.size() + sizes::COMPOUND_HEADER);
        let mut parts = vec![part];
        parts.extend(
            self.get_broadcasts(sizes::COMPOUND_PART, avail).into_iter().map(Part::Broadcast),
        );
        self.send_parts(to, &parts, false);
    }

    pub(super) fn send_push_pull(&mut self, to: u32, join: bool, response: bool) {
        let n = self.member_count();
        let size = sizes::push_pull(n, join);
        let mut payload = Vec::with_capacity(2 + n * 4);
        payload.push(u8::from(join) | u8::from(response) << 1);
        liveness::push_varint(&mut payload, n as u64);
        for &i in &self.order {
            if let Some(m) = &self.members[i as usize] {
                liveness::push_varint(&mut payload, u64::from(i));
                liveness::push_varint(&mut payload, u64::from(m.incarnation));
                liveness::push_varint(&mut payload, m.state.code());
            }
        }
        let frame = liveness::frame(Kind::SwimPushPull, &payload, size);
        self.out.push(Output::Send {
            to: self.dir.key(to as usize),
            frame,
            class: Priority::Membership,
        });
    }

    pub(super) fn send_tcp(&mut self, to: u32, kind: Kind, seq: u32) {
        let mut payload = Vec::new();
        liveness::push_varint(&mut payload, u64::from(seq));
        let size = if kind == Kind::SwimTcpPing { known().tcp_ping } else { known().tcp_ack };
        let frame = liveness::frame(kind, &payload, size);
        self.out.push(Output::Send {
            to: self.dir.key(to as usize),
            frame,
            class: Priority::Control,
        });
    }

    pub(super) fn broadcast(&mut self, msg: Msg) {
        self.queue.retain(|q| q.msg.node() != msg.node());
        self.next_id += 1;
        self.queue.push(Queued { msg, len: msg.size(), transmits: 0, id: self.next_id });
    }

    /// Takes the broadcasts that fit in `limit` bytes, `overhead` each, least transmitted
    /// first (then longest, then newest), and drops those sent [`retransmit_limit`] times.
    pub(super) fn get_broadcasts(&mut self, overhead: usize, limit: usize) -> Vec<Msg> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        let max = retransmit_limit(RETRANSMIT_MULT, self.member_count());
        self.queue.sort_by(|a, b| {
            a.transmits.cmp(&b.transmits).then(b.len.cmp(&a.len)).then(b.id.cmp(&a.id))
        });
        let mut used = 0;
        let mut picked = Vec::new();
        for q in &mut self.queue {
            if used + overhead + q.len > limit {
                continue;
            }
            used += overhead + q.len;
            picked.push(q.msg);
            q.transmits += 1;
        }
        self.queue.retain(|q| q.transmits < max);
        picked
    }
}
