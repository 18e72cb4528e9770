//! What the liveness baselines (`swim`, `iroh`) share with the simulator: their frames, the
//! on-the-wire estimate of membership and control traffic, and the crash-detection figure.
//!
//! **Frames.** A model's frame is a protobuf-shaped envelope the simulator's accounting can
//! read without knowing the model: one length-delimited field whose number (40 and up, unused by
//! `vecino.v1.Frame`) names the kind (`swim_ping`, `iroh_quic_ping`, …), holding the model's
//! own compact encoding of the message, zero-padded to the size the modelled system would put
//! on its transport (memberlist's msgpack datagram, a QUIC packet). The report's byte figures
//! therefore count the modelled system's bytes, not the model's encoding.
//!
//! **Wire estimate.** The report's membership + control figure counts what each protocol hands
//! to its transport: vecino's frames, memberlist's UDP datagrams and TCP stream bytes, iroh's
//! QUIC packets. [`wire_overhead`] adds what the layers below add per frame, so that the three
//! can also be compared on the wire (see its docs for what is assumed).
//!
//! **Steady state.** The report's membership + control figures average over the whole run,
//! joins included; [`SteadyRate`] gives the bytes sent between [`STEADY_FROM`] and the first
//! fault, where an idle scenario is idle.
//!
//! **Crash detection.** [`CrashWatch`] notes, when a crash fault starts, who counts as an
//! observer of each crashed peer and, from the link statuses peers report (`AppEvent::Link`),
//! when each observer first reported it not connected. Who observes depends on what the
//! protocol can know ([`crash_scope`]): in SWIM every live member declares a crashed one
//! *failed*; vecino and iroh have no fleet-wide failure notion, so there the observers are the
//! crashed peer's neighbours at the crash (vecino: the link *suspected*; iroh: the QUIC
//! connection closed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vecino_proto::Bytes;

use crate::io::LinkStatus;
use crate::sim::scenario::Scenario;

/// The first field number of the models' frames (`vecino.v1.Frame` uses 1–14).
const FIRST_FIELD: u32 = 40;

/// The kinds of the liveness models' frames, by field number from [`FIRST_FIELD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// memberlist: a ping (alone or with piggybacked broadcasts, or with a suspect message).
    SwimPing,
    /// memberlist: an ack (with Serf's coordinate), or an indirect probe's relayed ack.
    SwimAck,
    /// memberlist: an indirect ping request.
    SwimIndirect,
    /// memberlist: a nack from an indirect prober.
    SwimNack,
    /// memberlist: a gossip packet (broadcasts only).
    SwimGossip,
    /// memberlist: a push/pull state exchange over TCP (one direction).
    SwimPushPull,
    /// memberlist: the fallback TCP ping of a failed probe.
    SwimTcpPing,
    /// memberlist: the answer to a TCP ping.
    SwimTcpAck,
    /// QUIC: a PING packet (keep-alive or loss probe).
    IrohPing,
    /// QUIC: an ACK-only packet.
    IrohAck,
    /// QUIC: a 1-RTT packet carrying one HyParView message.
    IrohData,
    /// QUIC: a handshake flight.
    IrohHandshake,
    /// QUIC: a CONNECTION_CLOSE packet.
    IrohClose,
}

const KINDS: [(Kind, &str); 13] = [
    (Kind::SwimPing, "swim_ping"),
    (Kind::SwimAck, "swim_ack"),
    (Kind::SwimIndirect, "swim_indirect_ping"),
    (Kind::SwimNack, "swim_nack"),
    (Kind::SwimGossip, "swim_gossip"),
    (Kind::SwimPushPull, "swim_push_pull"),
    (Kind::SwimTcpPing, "swim_tcp_ping"),
    (Kind::SwimTcpAck, "swim_tcp_ack"),
    (Kind::IrohPing, "iroh_quic_ping"),
    (Kind::IrohAck, "iroh_quic_ack"),
    (Kind::IrohData, "iroh_hyparview"),
    (Kind::IrohHandshake, "iroh_quic_handshake"),
    (Kind::IrohClose, "iroh_quic_close"),
];

impl Kind {
    fn field(self) -> u32 {
        FIRST_FIELD + KINDS.iter().position(|(k, _)| *k == self).unwrap_or(0) as u32
    }

    fn of(field: u32) -> Option<Kind> {
        let i = field.checked_sub(FIRST_FIELD)? as usize;
        KINDS.get(i).map(|(k, _)| *k)
    }

    /// Sent over TCP (memberlist's streams) rather than in a datagram.
    fn tcp(self) -> bool {
        matches!(self, Kind::SwimPushPull | Kind::SwimTcpPing | Kind::SwimTcpAck)
    }
}

/// Whether `field` is the field number of a model's frame (for `wire::frame_kind`).
pub(crate) fn is_model_field(field: u64) -> bool {
    u32::try_from(field).ok().and_then(Kind::of).is_some()
}

/// The report label of a model frame's field number, if it is one.
pub(crate) fn label(field: u32) -> Option<&'static str> {
    let i = field.checked_sub(FIRST_FIELD)? as usize;
    KINDS.get(i).map(|(_, l)| *l)
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A model frame of `kind` carrying `payload`, zero-padded to `size` bytes in all (or as long
/// as the payload needs, if that is longer: never for the sizes the models use).
pub(crate) fn frame(kind: Kind, payload: &[u8], size: usize) -> Bytes {
    let tag = u64::from(kind.field() << 3 | 2);
    let head = varint_len(tag);
    // The body's length such that head + varint(body) + body = size.
    let mut body = size.saturating_sub(head + 1).max(payload.len());
    while head + varint_len(body as u64) + body > size && body > payload.len() {
        body -= 1;
    }
    let mut out = Vec::with_capacity(head + varint_len(body as u64) + body);
    put_varint(&mut out, tag);
    put_varint(&mut out, body as u64);
    out.extend_from_slice(payload);
    out.resize(out.len() + body - payload.len(), 0);
    Bytes::from(out)
}

/// The kind and body (payload and padding) of a model frame; `None` for any other frame.
pub(crate) fn parse(frame: &[u8]) -> Option<(Kind, &[u8])> {
    let mut at = 0;
    let tag = crate::sim::wire::varint(frame, &mut at)?;
    if tag & 7 != 2 {
        return None;
    }
    let kind = Kind::of(u32::try_from(tag >> 3).ok()?)?;
    let len = usize::try_from(crate::sim::wire::varint(frame, &mut at)?).ok()?;
    Some((kind, frame.get(at..at.checked_add(len)?)?))
}

/// Writes a varint (for the models' payloads).
pub(crate) fn push_varint(out: &mut Vec<u8>, v: u64) {
    put_varint(out, v);
}

/// UDP and IPv4 headers on every datagram.
pub const UDP_IPV4_BYTES: u64 = 28;
/// IPv4 and TCP headers with the timestamp option (Linux's default) on every segment.
pub const TCP_IPV4_BYTES: u64 = 52;
/// TCP's maximum segment size on a 1 500-byte path with timestamps.
pub const TCP_MSS: u64 = 1_448;
/// What a vecino frame costs on the wire beyond its own bytes, estimated: the node's 4-byte
/// length prefix; a QUIC short-header packet of its own (1 flags byte, an 8-byte connection
/// id as quinn issues, a 2-byte packet number, a 6-byte STREAM frame header, a 16-byte AEAD
/// tag); UDP/IPv4; and half an ACK-only packet (61 B on the wire), as QUIC acknowledges every
/// second ack-eliciting packet or an isolated one after its ack delay (RFC 9000 §13.2). A
/// lower bound where frames share packets less than that, an upper one where they share more.
pub const VECINO_FRAME_WIRE_BYTES: u64 = 4 + 1 + 8 + 2 + 6 + 16 + UDP_IPV4_BYTES + 30;

/// Bytes below a frame of `len` bytes with field number `field` on the wire:
/// - memberlist datagrams and QUIC packets (the models' frames are those): UDP/IPv4;
/// - memberlist over TCP (push/pull, fallback pings; one frame per direction of a
///   connection): 52-byte headers on each segment and on one ACK per segment, and half of the
///   connection's five header-only packets (SYN, SYN-ACK, ACK, FIN, ACK each way: the
///   computation behind the 3.77 kbit/s anchor, `notes/next-wave-data/mp.py`);
/// - vecino's frames: [`VECINO_FRAME_WIRE_BYTES`].
pub(crate) fn wire_overhead(field: u32, len: u64) -> u64 {
    match Kind::of(field) {
        Some(k) if k.tcp() => 5 * TCP_IPV4_BYTES + 2 * TCP_IPV4_BYTES * len.div_ceil(TCP_MSS),
        Some(_) => UDP_IPV4_BYTES,
        None => VECINO_FRAME_WIRE_BYTES,
    }
}

/// [`wire_overhead`] of a frame sent with report label `label`.
pub(crate) fn label_wire_overhead(label: &str, len: u64) -> u64 {
    let field = KINDS.iter().position(|(_, l)| *l == label).map_or(0, |i| FIRST_FIELD + i as u32);
    wire_overhead(field, len)
}

/// The steady state starts here (joins are over).
pub const STEADY_FROM: Duration = Duration::from_secs(60);

/// Membership and control traffic between [`STEADY_FROM`] and the first fault (or the end of
/// the traffic), when that is at least 30 s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyRate {
    /// Start of the window, seconds from the start of the run (a timeline bucket's).
    pub from_s: f64,
    /// End of the window.
    pub to_s: f64,
    /// Membership and control bytes sent in it per peer per second, in bits per second.
    pub sent_bps_per_peer: f64,
    /// The same with the layers below each frame ([`wire_overhead`]).
    pub wire_bps_per_peer: f64,
}

/// The [`SteadyRate`] of a run of `sc` from the membership and control bytes sent per timeline
/// bucket of `bucket_us` (`sent`, and `wire` with the layers below).
pub(crate) fn steady(
    bucket_us: u64,
    sent: &[u64],
    wire: &[u64],
    sc: &Scenario,
) -> Option<SteadyRate> {
    let first_fault = sc.faults.iter().map(|f| f.start).min().unwrap_or(sc.duration);
    let to_us = first_fault.min(sc.duration).as_micros() as u64;
    let from_us = STEADY_FROM.as_micros() as u64;
    let (first, last) = (from_us.div_ceil(bucket_us), to_us / bucket_us);
    if last <= first || (last - first) * bucket_us < 30_000_000 {
        return None;
    }
    let range = first as usize..(last as usize).min(sent.len());
    let secs = (range.len() as u64 * bucket_us) as f64 / 1e6;
    let rate =
        |v: &[u64]| v[range.clone()].iter().sum::<u64>() as f64 * 8.0 / sc.peers as f64 / secs;
    Some(SteadyRate {
        from_s: (first * bucket_us) as f64 / 1e6,
        to_s: (first * bucket_us) as f64 / 1e6 + secs,
        sent_bps_per_peer: rate(sent),
        wire_bps_per_peer: rate(wire),
    })
}

/// How quickly peers knew of crashed peers (scenarios with `kind = "crash"` faults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CrashDetection {
    /// Who had to know, and what knowing means for this disseminator: `live peers, failed`
    /// (SWIM: every live member declared it failed), `neighbours, closed` (iroh: every
    /// neighbour's connection closed), `neighbours, suspected` (vecino: every neighbour reported
    /// the link suspected; vecino has no fleet-wide failure notion yet).
    pub scope: String,
    /// Crashes (one per crashed peer per fault).
    pub crashes: u32,
    /// Per crash: seconds from the crash until the last observer knew; `None` if one never
    /// did before the peer restarted or the run ended (or it had no observer).
    pub known_by_all_s: Vec<Option<f64>>,
    /// Median and largest of `known_by_all_s` over the crashes known by all.
    pub known_by_all_p50_s: Option<f64>,
    /// Largest of `known_by_all_s`.
    pub known_by_all_max_s: Option<f64>,
    /// Observers, summed over crashes.
    pub observers: u64,
    /// Of them, those that knew before the restart or the end.
    pub knew: u64,
    /// Of them, those that knew within 5 s of the crash.
    pub within_5s: u64,
    /// Median, over (crash, observer) pairs that knew, of the time until the observer knew.
    pub observer_p50_s: Option<f64>,
}

/// The deadline of [`CrashDetection::within_5s`], µs.
const WITHIN_US: u64 = 5_000_000;

/// Who counts as knowing of a crash under disseminator `name`, and whether that is every live
/// peer (`true`) or the crashed peer's neighbours.
pub(crate) fn crash_scope(name: &str) -> (bool, &'static str) {
    match name {
        "swim" => (true, "live peers, failed"),
        "iroh" => (false, "neighbours, closed"),
        _ => (false, "neighbours, suspected"),
    }
}

#[derive(Debug)]
struct Crash {
    peer: u32,
    fault: usize,
    at_us: u64,
    open: bool,
    /// Peers reporting the crashed peer connected at the crash.
    neighbours: Vec<u32>,
    /// Peers not crashed at the crash.
    live: Vec<u32>,
    /// Each peer's first report of the crashed peer as not connected, µs after the crash.
    first: BTreeMap<u32, u64>,
}

/// Follows crashes and the link statuses reported about the crashed peers (see the module
/// docs). Bounded by the scenario's crashes × peers.
#[derive(Debug, Default)]
pub(crate) struct CrashWatch {
    peers: u32,
    crashes: Vec<Crash>,
    down: BTreeSet<u32>,
}

impl CrashWatch {
    pub(crate) fn new(peers: usize) -> Self {
        Self { peers: peers as u32, ..Self::default() }
    }

    /// Crash fault `fault` starts at `t_us`, crashing `crashed`; `status` holds the last link
    /// status each peer reported of each other.
    pub(crate) fn crashed(
        &mut self,
        t_us: u64,
        fault: usize,
        crashed: &[u32],
        status: &HashMap<(u32, u32), LinkStatus>,
    ) {
        for &peer in crashed {
            let mut neighbours: Vec<u32> = status
                .iter()
                .filter(|((a, b), s)| {
                    *b == peer
                        && *a != peer
                        && **s == LinkStatus::Connected
                        && !self.down.contains(a)
                })
                .map(|((a, _), _)| *a)
                .filter(|a| !crashed.contains(a))
                .collect();
            neighbours.sort_unstable();
            let live = (0..self.peers)
                .filter(|a| !crashed.contains(a) && !self.down.contains(a))
                .collect();
            self.crashes.push(Crash {
                peer,
                fault,
                at_us: t_us,
                open: true,
                neighbours,
                live,
                first: BTreeMap::new(),
            });
        }
        self.down.extend(crashed.iter().copied());
    }

    /// Crash fault `fault` ends: its peers restart.
    pub(crate) fn restarted(&mut self, fault: usize, peers: &[u32]) {
        for c in self.crashes.iter_mut().filter(|c| c.fault == fault) {
            c.open = false;
        }
        for p in peers {
            self.down.remove(p);
        }
    }

    /// `node` reported its link to `peer` as `status` at `t_us`.
    pub(crate) fn link(&mut self, t_us: u64, node: u32, peer: u32, status: LinkStatus) {
        if status == LinkStatus::Connected {
            return;
        }
        for c in self.crashes.iter_mut().filter(|c| c.open && c.peer == peer && node != peer) {
            c.first.entry(node).or_insert(t_us.saturating_sub(c.at_us));
        }
    }

    /// The figure, observers being every live peer (`fleet_wide`) or the neighbours; `None`
    /// without crashes.
    pub(crate) fn report(&self, fleet_wide: bool, scope: &str) -> Option<CrashDetection> {
        if self.crashes.is_empty() {
            return None;
        }
        let mut d = CrashDetection {
            scope: scope.to_string(),
            crashes: self.crashes.len() as u32,
            ..CrashDetection::default()
        };
        let mut each: Vec<u64> = Vec::new();
        for c in &self.crashes {
            let observers = if fleet_wide { &c.live } else { &c.neighbours };
            let mut last = Some(0u64);
            for o in observers {
                d.observers += 1;
                match c.first.get(o) {
                    Some(&us) => {
                        d.knew += 1;
                        d.within_5s += u64::from(us <= WITHIN_US);
                        each.push(us);
                        last = last.map(|l| l.max(us));
                    }
                    None => last = None,
                }
            }
            let all = if observers.is_empty() { None } else { last };
            d.known_by_all_s.push(all.map(|us| us as f64 / 1e6));
        }
        let mut all: Vec<f64> = d.known_by_all_s.iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        d.known_by_all_p50_s = all.get(all.len().saturating_sub(1) / 2).copied();
        d.known_by_all_max_s = all.last().copied();
        each.sort_unstable();
        d.observer_p50_s = each.get(each.len().saturating_sub(1) / 2).map(|&us| us as f64 / 1e6);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_modelled_size_and_parse_back() {
        for size in [29usize, 33, 85, 154, 1_200, 40_000] {
            let f = frame(Kind::SwimAck, &[1, 2, 3], size);
            assert_eq!(f.len(), size, "size {size}");
            let (kind, body) = parse(&f).expect("parses");
            assert_eq!(kind, Kind::SwimAck);
            assert_eq!(&body[..3], &[1, 2, 3]);
            let (field, _, _) = crate::sim::wire::frame_kind(&f);
            assert_eq!(
                crate::sim::wire::kind_label(field, false, crate::io::Priority::Control),
                "swim_ack"
            );
        }
        // A payload longer than the size asked for is kept whole.
        assert!(frame(Kind::IrohAck, &[7; 40], 20).len() > 40);
        assert!(parse(b"\x12\x00").is_none(), "an Events frame is not a model frame");
    }

    #[test]
    fn crash_watch_counts_observers_by_scope() {
        let mut w = CrashWatch::new(4);
        let mut status = HashMap::new();
        status.insert((1, 0), LinkStatus::Connected);
        status.insert((2, 0), LinkStatus::Connected);
        status.insert((0, 1), LinkStatus::Connected);
        w.crashed(1_000_000, 0, &[0], &status);
        w.link(4_000_000, 1, 0, LinkStatus::Suspected); // 3 s
        w.link(8_000_000, 2, 0, LinkStatus::Disconnected); // 7 s
        w.link(9_000_000, 1, 0, LinkStatus::Disconnected); // later report ignored
        w.restarted(0, &[0]);
        w.link(9_500_000, 3, 0, LinkStatus::Disconnected); // after the restart: ignored
        let n = w.report(false, "n").unwrap();
        assert_eq!((n.observers, n.knew, n.within_5s), (2, 2, 1));
        assert_eq!(n.known_by_all_s, vec![Some(7.0)]);
        assert_eq!(n.observer_p50_s, Some(3.0));
        let all = w.report(true, "all").unwrap();
        assert_eq!((all.observers, all.knew), (3, 2));
        assert_eq!(all.known_by_all_s, vec![None]);
        assert_eq!(all.known_by_all_max_s, None);
    }
}
