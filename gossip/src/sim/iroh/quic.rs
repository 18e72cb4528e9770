//! QUIC as iroh runs it under iroh-gossip, per connection: handshake, 1-RTT packets of one
//! HyParView message each, ACKs, loss recovery, keep-alive and idle timers (see the module
//! docs of [`super`] for what is modelled and the sources).

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

/// `HEARTBEAT_INTERVAL`: a path silent this long sends a PING.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// `PATH_MAX_IDLE_TIMEOUT`: a path silent this long is abandoned (its connection with it).
pub const PATH_IDLE: Duration = Duration::from_secs(15);
/// noq's default `max_idle_timeout` (30 s): a handshake unanswered this long fails.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// QUIC's default `max_ack_delay`.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(25);
/// noq's `initial_rtt` (RFC 9002's 333 ms): the first probe timeout of a handshake is 3 × it.
pub const INITIAL_RTT: Duration = Duration::from_millis(333);
/// iroh-gossip's per-connection send queue (`SEND_QUEUE_CAP`): messages waiting for a
/// connection beyond it are dropped.
pub(super) const SEND_QUEUE_CAP: usize = 64;

/// A 1-RTT packet's short header: flags, an 8-byte connection id, a 2-byte packet number.
pub const SHORT_HEADER: usize = 1 + 8 + 2;
/// The AEAD tag of every packet.
pub const AEAD_TAG: usize = 16;
/// A PING packet: header, PING and one PADDING byte (header protection samples 16 bytes from
/// 4 bytes after the packet number, RFC 9001 §5.4.2), tag. 57 bytes with UDP/IPv4.
pub const PING_BYTES: usize = SHORT_HEADER + 2 + AEAD_TAG;
/// An ACK frame: type, largest, delay, range count, first range.
pub const ACK_FRAME: usize = 6;
/// An ACK-only packet.
pub const ACK_BYTES: usize = SHORT_HEADER + ACK_FRAME + AEAD_TAG;
/// A STREAM frame's header (type, stream id, offset, length).
pub const STREAM_FRAME: usize = 6;
/// The topic header a peer writes first on the uni stream it opens to another
/// (`net/util.rs` `StreamHeader`: 32-byte topic id behind a 4-byte length).
pub const STREAM_HEADER: usize = 4 + 32;
/// CONNECTION_CLOSE with iroh-gossip's reason "close from disconnect".
pub const CLOSE_BYTES: usize = SHORT_HEADER + 3 + 21 + AEAD_TAG;
/// The handshake's four flights: client Initial, server Initial + Handshake, client Finished
/// (with new connection ids and ACKs), server HANDSHAKE_DONE (with new connection ids).
pub const HANDSHAKE_BYTES: [usize; 4] = [1_200, 1_200, 150, 140];

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// This end dialled: Initial sent, `tries` times.
    Dialing {
        since: Time,
        tries: u32,
    },
    /// The other end dialled: our flight sent, waiting for its Finished.
    Accepting,
    Open,
}

/// A packet sent and not yet acknowledged.
#[derive(Debug, Clone)]
pub(super) struct Unacked {
    pub(super) pn: u64,
    pub(super) at: Time,
    /// The message it carries (retransmitted if lost), `None` for a PING.
    pub(super) msg: Option<(u64, Message)>,
}

#[derive(Debug, Clone)]
pub(super) struct Conn {
    pub(super) phase: Phase,
    /// The dialler's connection id (a retried Initial repeats it; a restarted peer's is new).
    pub(super) id: u64,
    /// Messages waiting for the handshake (bounded by [`SEND_QUEUE_CAP`]).
    pub(super) queue: Vec<Message>,
    pub(super) last_rx: Time,
    pub(super) srtt: Duration,
    pub(super) next_pn: u64,
    pub(super) next_mid: u64,
    /// Bounded by the packets in flight: acknowledged or declared lost within a few RTTs.
    pub(super) unacked: Vec<Unacked>,
    pub(super) pto_count: u32,
    /// Packet numbers received and not yet acknowledged (bounded: an ACK goes out every
    /// second one).
    pub(super) to_ack: Vec<u64>,
    pub(super) ack_at: Option<Time>,
    /// Message ids received: the highest and a window of 64 below it.
    pub(super) rx_mid: Option<u64>,
    pub(super) rx_window: u64,
    pub(super) stream_open: bool,
    /// A keep-alive PING went out since the last packet arrived (the timer re-arms only on
    /// receipt).
    pub(super) ka_sent: bool,
    /// Wake-ups scheduled for this connection.
    pub(super) wakes: BTreeSet<Time>,
}

impl Conn {
    pub(super) fn new(phase: Phase, id: u64, now: Time) -> Self {
        Self {
            phase,
            id,
            queue: Vec::new(),
            last_rx: now,
            srtt: INITIAL_RTT,
            next_pn: 0,
            next_mid: 0,
            unacked: Vec::new(),
            pto_count: 0,
            to_ack: Vec::new(),
            ack_at: None,
            rx_mid: None,
            rx_window: 0,
            stream_open: false,
            ka_sent: false,
            wakes: BTreeSet::new(),
        }
    }

    /// The probe timeout before backoff: smoothed RTT + 4 × its variation (taken as RTT / 4)
    /// + the peer's ack delay.
    pub(super) fn pto_base(&self) -> Duration {
        self.srtt * 2 + MAX_ACK_DELAY
    }

    /// The probe timeout, doubled for each probe unanswered.
    pub(super) fn pto(&self) -> Duration {
        self.pto_base() * (1 << self.pto_count.min(10))
    }

    /// The next time something is due on this connection.
    pub(super) fn next_due(&self) -> Time {
        match self.phase {
            Phase::Dialing { since, tries } => {
                let retry = since + INITIAL_RTT * 3 * ((1 << tries.min(10)) - 1);
                retry.min(since + DIAL_TIMEOUT)
            }
            Phase::Accepting => self.last_rx + DIAL_TIMEOUT,
            Phase::Open => {
                let mut due = self.idle_at();
                if !self.ka_sent {
                    due = due.min(self.last_rx + KEEP_ALIVE);
                }
                if let Some(u) = self.unacked.first() {
                    due = due.min(u.at + self.pto());
                }
                if let Some(a) = self.ack_at {
                    due = due.min(a);
                }
                due
            }
        }
    }

    /// When the path is abandoned: [`PATH_IDLE`] after the last packet received, at least
    /// 3 probe timeouts (RFC 9000 §10.1).
    pub(super) fn idle_at(&self) -> Time {
        self.last_rx + PATH_IDLE.max(self.pto_base() * 3)
    }

    /// A message id received: whether it is new (delivered once).
    pub(super) fn fresh(&mut self, mid: u64) -> bool {
        match self.rx_mid {
            None => {
                self.rx_mid = Some(mid);
                self.rx_window = 1;
                true
            }
            Some(top) if mid > top => {
                let shift = mid - top;
                self.rx_window = if shift >= 64 { 1 } else { self.rx_window << shift | 1 };
                self.rx_mid = Some(mid);
                true
            }
            Some(top) => {
                let back = top - mid;
                if back >= 64 || self.rx_window & (1 << back) != 0 {
                    return false;
                }
                self.rx_window |= 1 << back;
                true
            }
        }
    }
}

/// What a packet of the model carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Packet {
    /// Handshake flight `step` (0–3) of connection `id`.
    Handshake {
        step: u8,
        id: u64,
    },
    Ping {
        pn: u64,
    },
    /// Acknowledges `pns`.
    Ack {
        pns: Vec<u64>,
    },
    /// HyParView message `mid` in packet `pn`, acknowledging `acks` on the way.
    Data {
        pn: u64,
        mid: u64,
        msg: Message,
        acks: Vec<u64>,
    },
    Close,
}

pub(super) fn put(out: &mut Vec<u8>, v: u64) {
    liveness::push_varint(out, v);
}

pub(super) fn put_list(out: &mut Vec<u8>, v: &[u64]) {
    put(out, v.len() as u64);
    for &x in v {
        put(out, x);
    }
}

pub(super) fn encode_msg(out: &mut Vec<u8>, m: &Message) {
    match m {
        Message::Join => out.push(0),
        Message::ForwardJoin { peer, ttl } => {
            out.push(1);
            put(out, u64::from(*peer));
            put(out, u64::from(*ttl));
        }
        Message::Shuffle { origin, nodes, ttl } => {
            out.push(2);
            put(out, u64::from(*origin));
            put(out, u64::from(*ttl));
            put_list(out, &nodes.iter().map(|&n| u64::from(n)).collect::<Vec<_>>());
        }
        Message::ShuffleReply { nodes } => {
            out.push(3);
            put_list(out, &nodes.iter().map(|&n| u64::from(n)).collect::<Vec<_>>());
        }
        Message::Neighbor { high } => out.extend([4, u8::from(*high)]),
        Message::Disconnect { alive } => out.extend([5, u8::from(*alive)]),
    }
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) at: usize,
}

impl Reader<'_> {
    pub(super) fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    pub(super) fn var(&mut self) -> Option<u64> {
        crate::sim::wire::varint(self.b, &mut self.at)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.var()?).ok()
    }
    pub(super) fn list(&mut self) -> Option<Vec<u64>> {
        let n = self.var()?.min(64);
        (0..n).map(|_| self.var()).collect()
    }
    pub(super) fn msg(&mut self) -> Option<Message> {
        Some(match self.byte()? {
            0 => Message::Join,
            1 => Message::ForwardJoin { peer: self.u32()?, ttl: u16::try_from(self.var()?).ok()? },
            2 => {
                let origin = self.u32()?;
                let ttl = u16::try_from(self.var()?).ok()?;
                let nodes =
                    self.list()?.into_iter().map(u32::try_from).collect::<Result<_, _>>().ok()?;
                Message::Shuffle { origin, nodes, ttl }
            }
            3 => {
                let nodes =
                    self.list()?.into_iter().map(u32::try_from).collect::<Result<_, _>>().ok()?;
                Message::ShuffleReply { nodes }
            }
            4 => Message::Neighbor { high: self.byte()? != 0 },
            5 => Message::Disconnect { alive: self.byte()? != 0 },
            _ => return None,
        })
    }
}

impl Packet {
    pub(super) fn encode(&self) -> (Kind, Vec<u8>) {
        let mut out = Vec::new();
        let kind = match self {
            Packet::Handshake { step, id } => {
                out.push(*step);
                put(&mut out, *id);
                Kind::IrohHandshake
            }
            Packet::Ping { pn } => {
                put(&mut out, *pn);
                Kind::IrohPing
            }
            Packet::Ack { pns } => {
                put_list(&mut out, pns);
                Kind::IrohAck
            }
            Packet::Data { pn, mid, msg, acks } => {
                put(&mut out, *pn);
                put(&mut out, *mid);
                put_list(&mut out, acks);
                encode_msg(&mut out, msg);
                Kind::IrohData
            }
            Packet::Close => Kind::IrohClose,
        };
        (kind, out)
    }

    pub(super) fn decode(kind: Kind, b: &[u8]) -> Option<Packet> {
        let mut r = Reader { b, at: 0 };
        Some(match kind {
            Kind::IrohHandshake => Packet::Handshake { step: r.byte()?, id: r.var()? },
            Kind::IrohPing => Packet::Ping { pn: r.var()? },
            Kind::IrohAck => Packet::Ack { pns: r.list()? },
            Kind::IrohData => {
                let (pn, mid, acks) = (r.var()?, r.var()?, r.list()?);
                Packet::Data { pn, mid, msg: r.msg()?, acks }
            }
            Kind::IrohClose => Packet::Close,
            _ => return None,
        })
    }
}

impl Iroh {
    pub(super) fn transmit(&mut self, to: u32, packet: &Packet, size: usize, class: Priority) {
        let (kind, payload) = packet.encode();
        let frame = liveness::frame(kind, &payload, size);
        self.out.push(Output::Send { to: self.dir.key(to as usize), frame, class });
    }

    /// Makes sure a wake-up is scheduled no later than the connection's next due time.
    pub(super) fn arm(&mut self, peer: u32) {
        let Some(c) = self.conns.get_mut(&peer) else { return };
        let due = c.next_due();
        if c.wakes.first().is_some_and(|&w| w <= due) {
            return;
        }
        c.wakes.insert(due);
        let key = self.dir.key(peer as usize);
        self.schedule(due, key, tag::CONN);
    }

    pub(super) fn send_msg(&mut self, now: Time, to: u32, m: Message) {
        if to == self.me {
            return;
        }
        match self.conns.get_mut(&to) {
            Some(c) if c.phase == Phase::Open => self.send_data(now, to, None, m),
            Some(c) => {
                if c.queue.len() < SEND_QUEUE_CAP {
                    c.queue.push(m);
                }
            }
            None => {
                self.counters.dials += 1;
                let id = self.rng.next_u64();
                let mut c = Conn::new(Phase::Dialing { since: now, tries: 1 }, id, now);
                c.queue.push(m);
                self.conns.insert(to, c);
                self.transmit(
                    to,
                    &Packet::Handshake { step: 0, id },
                    HANDSHAKE_BYTES[0],
                    Priority::Control,
                );
                self.arm(to);
            }
        }
    }

    /// Sends HyParView message `m` (a retransmission of `mid` if given) in a 1-RTT packet,
    /// with any ACK due piggybacked.
    pub(super) fn send_data(&mut self, now: Time, to: u32, mid: Option<u64>, m: Message) {
        let Some(c) = self.conns.get_mut(&to) else { return };
        let pn = c.next_pn;
        c.next_pn += 1;
        let mid = mid.unwrap_or_else(|| {
            c.next_mid += 1;
            c.next_mid
        });
        let acks = std::mem::take(&mut c.to_ack);
        c.ack_at = None;
        let mut size = SHORT_HEADER + STREAM_FRAME + hyparview::sizes::of(&m) + AEAD_TAG;
        if !acks.is_empty() {
            size += ACK_FRAME;
        }
        if !c.stream_open {
            c.stream_open = true;
            size += STREAM_HEADER;
        }
        c.unacked.push(Unacked { pn, at: now, msg: Some((mid, m.clone())) });
        self.transmit(to, &Packet::Data { pn, mid, msg: m, acks }, size, Priority::Membership);
        self.arm(to);
    }

    pub(super) fn send_ping(&mut self, now: Time, to: u32) {
        let Some(c) = self.conns.get_mut(&to) else { return };
        let pn = c.next_pn;
        c.next_pn += 1;
        c.unacked.push(Unacked { pn, at: now, msg: None });
        self.transmit(to, &Packet::Ping { pn }, PING_BYTES, Priority::Control);
    }

    pub(super) fn send_ack(&mut self, to: u32) {
        let Some(c) = self.conns.get_mut(&to) else { return };
        let pns = std::mem::take(&mut c.to_ack);
        c.ack_at = None;
        if !pns.is_empty() {
            self.transmit(to, &Packet::Ack { pns }, ACK_BYTES, Priority::Control);
        }
    }

    /// Closes the connection to `p`: with a CONNECTION_CLOSE when `notify`, silently when it
    /// went idle. HyParView hears of it unless it asked for it.
    pub(super) fn close(&mut self, now: Time, p: u32, asked: bool) {
        if self.conns.remove(&p).is_none() {
            return;
        }
        if asked {
            self.transmit(p, &Packet::Close, CLOSE_BYTES, Priority::Control);
        } else {
            let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
            self.hv.connection_closed(p, &mut rng);
            self.rng = rng;
            self.run_hv(now);
        }
    }

    /// The connection to `p` opened: what waited goes out.
    pub(super) fn opened(&mut self, now: Time, p: u32) {
        let Some(c) = self.conns.get_mut(&p) else { return };
        c.phase = Phase::Open;
        c.last_rx = now;
        let queue = std::mem::take(&mut c.queue);
        for m in queue {
            self.send_data(now, p, None, m);
        }
        self.arm(p);
    }

    pub(super) fn received(&mut self, now: Time, from: u32, frame: &Bytes) {
        let Some(packet) = liveness::parse(frame).and_then(|(k, b)| Packet::decode(k, b)) else {
            return;
        };
        if let Packet::Handshake { step, id } = packet {
            self.handshake(now, from, step, id);
            return;
        }
        if packet == Packet::Close {
            if self.conns.contains_key(&from) {
                self.close(now, from, false);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&from) else { return };
        if c.phase == Phase::Accepting {
            // The client's Finished was lost but its 1-RTT packets arrive: the handshake is
            // complete.
            self.opened(now, from);
        }
        let Some(c) = self.conns.get_mut(&from) else { return };
        if !matches!(c.phase, Phase::Open) {
            return;
        }
        c.last_rx = now;
        c.ka_sent = false;
        let mut deliver = None;
        let acks = match packet {
            Packet::Ping { pn } => {
                c.to_ack.push(pn);
                Vec::new()
            }
            Packet::Ack { pns } => pns,
            Packet::Data { pn, mid, msg, acks } => {
                c.to_ack.push(pn);
                if c.fresh(mid) {
                    deliver = Some(msg);
                }
                acks
            }
            Packet::Handshake { .. } | Packet::Close => Vec::new(),
        };
        self.acked(now, from, &acks);
        if let Some(c) = self.conns.get_mut(&from)
            && !c.to_ack.is_empty()
        {
            if c.to_ack.len() >= 2 {
                self.send_ack(from);
            } else if c.ack_at.is_none() {
                c.ack_at = Some(now + MAX_ACK_DELAY);
            }
        }
        self.arm(from);
        if let Some(m) = deliver {
            self.hv_message(now, from, m);
        }
    }

    /// Packets `pns` were acknowledged: RTT sample, loss detection (RFC 9002's time threshold).
    pub(super) fn acked(&mut self, now: Time, from: u32, pns: &[u64]) {
        let Some(c) = self.conns.get_mut(&from) else { return };
        let Some(&largest) = pns.iter().max() else { return };
        if let Some(u) = c.unacked.iter().find(|u| u.pn == largest) {
            let sample = now.saturating_since(u.at);
            c.srtt = (c.srtt * 7 + sample) / 8;
        }
        c.unacked.retain(|u| !pns.contains(&u.pn));
        c.pto_count = 0;
        let threshold = c.srtt * 9 / 8;
        let (lost, kept): (Vec<Unacked>, Vec<Unacked>) = std::mem::take(&mut c.unacked)
            .into_iter()
            .partition(|u| u.pn < largest && now.saturating_since(u.at) > threshold);
        c.unacked = kept;
        for u in lost {
            if let Some((mid, m)) = u.msg {
                self.counters.retransmits += 1;
                self.send_data(now, from, Some(mid), m);
            }
        }
    }

    pub(super) fn handshake(&mut self, now: Time, from: u32, step: u8, id: u64) {
        let same = self.conns.get(&from).is_some_and(|c| c.id == id);
        match step {
            0 => {
                match self.conns.get(&from).map(|c| c.phase) {
                    // Both dialled: the lower index stays the client.
                    Some(Phase::Dialing { .. }) if self.me < from => return,
                    // A retried Initial of the connection already open.
                    Some(Phase::Open) if same => return,
                    _ => {}
                }
                // A new connection (a dial, or the peer restarted): it replaces any other.
                let queue = match self.conns.remove(&from) {
                    Some(c) if !matches!(c.phase, Phase::Open) => c.queue,
                    _ => Vec::new(),
                };
                let mut c = Conn::new(Phase::Accepting, id, now);
                c.queue = queue;
                self.conns.insert(from, c);
                let p = Packet::Handshake { step: 1, id };
                self.transmit(from, &p, HANDSHAKE_BYTES[1], Priority::Control);
                self.arm(from);
            }
            1 if same => {
                let Some(c) = self.conns.get_mut(&from) else { return };
                if let Phase::Dialing { since, .. } = c.phase {
                    c.srtt = now.saturating_since(since).max(Duration::from_millis(1));
                    let p = Packet::Handshake { step: 2, id };
                    self.transmit(from, &p, HANDSHAKE_BYTES[2], Priority::Control);
                    self.opened(now, from);
                }
            }
            2 if same && self.conns.get(&from).is_some_and(|c| c.phase == Phase::Accepting) => {
                let p = Packet::Handshake { step: 3, id };
                self.transmit(from, &p, HANDSHAKE_BYTES[3], Priority::Control);
                self.opened(now, from);
            }
            3 if same => {
                if let Some(c) = self.conns.get_mut(&from) {
                    c.last_rx = now;
                    c.ka_sent = false;
                }
            }
            _ => {}
        }
    }

    /// A connection's wake-up: handshake retries and failures, ACKs, probes, keep-alive, idle.
    pub(super) fn wake(&mut self, now: Time, p: u32) {
        let Some(c) = self.conns.get_mut(&p) else { return };
        c.wakes.remove(&now);
        match c.phase {
            Phase::Dialing { since, tries } => {
                if now >= since + DIAL_TIMEOUT {
                    self.counters.dials_failed += 1;
                    self.close(now, p, false);
                    return;
                }
                if now >= c.next_due() {
                    c.phase = Phase::Dialing { since, tries: tries + 1 };
                    let packet = Packet::Handshake { step: 0, id: c.id };
                    self.transmit(p, &packet, HANDSHAKE_BYTES[0], Priority::Control);
                }
            }
            Phase::Accepting => {
                if now >= c.last_rx + DIAL_TIMEOUT {
                    self.close(now, p, false);
                    return;
                }
            }
            Phase::Open => {
                if now >= c.idle_at() {
                    self.counters.idle_closes += 1;
                    self.close(now, p, false);
                    return;
                }
                if c.ack_at.is_some_and(|a| a <= now) {
                    self.send_ack(p);
                }
                let Some(c) = self.conns.get_mut(&p) else { return };
                let probe = c.unacked.first().is_some_and(|u| u.at + c.pto() <= now);
                if probe {
                    c.pto_count += 1;
                    let oldest = c.unacked.remove(0);
                    match oldest.msg {
                        Some((mid, m)) => {
                            self.counters.retransmits += 1;
                            self.send_data(now, p, Some(mid), m);
                        }
                        None => self.send_ping(now, p),
                    }
                } else if !c.ka_sent && now >= c.last_rx + KEEP_ALIVE {
                    c.ka_sent = true;
                    self.send_ping(now, p);
                }
            }
        }
        self.arm(p);
    }
}
