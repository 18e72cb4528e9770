//! How many bytes memberlist and Serf put on the network for each message, computed the way
//! they encode them: go-msgpack's legacy `MsgpackHandle{}` (structs as maps keyed by field
//! name, strings and byte slices as raw, integers in their shortest form), memberlist's
//! compound packets and CRC, and, for push/pull, the whole state message compressed with
//! Go's `compress/lzw` (LSB, 8-bit literals) as memberlist's `rawSendMsgStream` does when
//! `EnableCompression` is on (the default). Sources: `hashicorp/memberlist` @ 1b4c746
//! (`net.go` message structs, `util.go` `makeCompoundMessage`, `compressPayload`, `net.go`
//! `rawSendMsgPacket`, `sendLocalState`) and `hashicorp/serf` @ a24f620 (`ping_delegate.go`
//! `AckPayload`, `delegate.go` `LocalState`, `messages.go` `messagePushPull`, `serf.go`
//! `encodeTags`, `eventBuffer` of `EventBuffer` = 512 slots).
//!
//! Assumed deployment (the anchors' `notes/next-wave-data/mp.py`): 12-character node names
//! (random: see [`name`]), IPv4, port 7946, one Serf tag (`role`, 3 characters), no
//! encryption, no label, sequence numbers past 65 535 (a cluster up for a day: 5-byte msgpack
//! integers), Lamport times of a few thousand. mp.py left out two things this counts: Serf's
//! push/pull carries its whole event buffer (512 empty slots: 514 bytes), and memberlist
//! compresses every push/pull; and one it counted that is not sent: memberlist's CRC header is
//! not added to pings and acks when node names are not IP addresses (`sendMsg` passes no node
//! to `rawSendMsgPacket`, which then looks the node up by address and misses).

use std::collections::HashMap;

/// Length of every node name.
pub const NAME_LEN: usize = 12;
/// memberlist's default port.
const PORT: u64 = 7946;
/// A sequence number of a long-running node (past 65 535: 5 bytes in msgpack).
const SEQ: u64 = 1 << 20;
/// memberlist's `hasCrcMsg` header: a type byte and a CRC-32, added by `rawSendMsgPacket` when
/// it knows the recipient speaks protocol 5 (gossip and the compound ping + suspect; not the
/// replies `sendMsg` sends, which look the node up by address and miss when names are not IPs).
pub const CRC_BYTES: usize = 5;
/// `compoundHeaderOverhead`: the compound message's type and count bytes.
pub const COMPOUND_HEADER: usize = 2;
/// `compoundOverhead`: each part's 2-byte length in a compound message.
pub const COMPOUND_PART: usize = 2;

/// A msgpack writer (go-msgpack's legacy handle), enough for memberlist's and Serf's structs.
#[derive(Debug, Default)]
pub(crate) struct Mp(pub(crate) Vec<u8>);

impl Mp {
    fn byte(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn map(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.byte(0x80 | n as u8)
        } else {
            self.byte(0xde);
            self.0.extend_from_slice(&(n as u16).to_be_bytes());
            self
        }
    }
    fn array(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.byte(0x90 | n as u8)
        } else {
            self.byte(0xdc);
            self.0.extend_from_slice(&(n as u16).to_be_bytes());
            self
        }
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len();
        if n < 32 {
            self.byte(0xa0 | n as u8);
        } else if n < 65_536 {
            self.byte(0xda);
            self.0.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.byte(0xdb);
            self.0.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self.0.extend_from_slice(b);
        self
    }
    fn key(&mut self, k: &str) -> &mut Self {
        self.raw(k.as_bytes())
    }
    fn uint(&mut self, v: u64) -> &mut Self {
        if v < 128 {
            self.byte(v as u8)
        } else if v < 256 {
            self.byte(0xcc).byte(v as u8)
        } else if v < 65_536 {
            self.byte(0xcd);
            self.0.extend_from_slice(&(v as u16).to_be_bytes());
            self
        } else if v < 1 << 32 {
            self.byte(0xce);
            self.0.extend_from_slice(&(v as u32).to_be_bytes());
            self
        } else {
            self.byte(0xcf);
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
    }
    fn float(&mut self, v: f64) -> &mut Self {
        self.byte(0xcb);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn boolean(&mut self, v: bool) -> &mut Self {
        self.byte(if v { 0xc3 } else { 0xc2 })
    }
    fn nil(&mut self) -> &mut Self {
        self.byte(0xc0)
    }
}

/// Node `i`'s name: 12 characters drawn at random (hostnames share less than a counter would:
/// a push/pull of 20 members compresses to 1.2 kB with these, to 0.8 kB with names like
/// `node00000017`; 2.6 kB uncompressed).
fn name(i: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = crate::sim::mix(i as u64);
    (0..NAME_LEN)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize];
            x /= 36;
            c
        })
        .collect()
}

/// Node `i`'s address, random in 10.0.0.0/8.
fn addr(i: usize) -> [u8; 4] {
    let x = crate::sim::mix(!(i as u64));
    [10, (x >> 8) as u8, (x >> 16) as u8, (x >> 24) as u8]
}

/// A message's bytes as memberlist encodes it: type byte, then the msgpack map.
fn message(kind: u8, body: impl FnOnce(&mut Mp)) -> usize {
    let mut mp = Mp::default();
    mp.byte(kind);
    body(&mut mp);
    mp.0.len()
}

/// `ping` (memberlist `net.go`): SeqNo, Node, SourceAddr, SourcePort, SourceNode.
pub fn ping() -> usize {
    message(0, |m| {
        m.map(5).key("SeqNo").uint(SEQ).key("Node").raw(&name(1)).key("SourceAddr");
        m.raw(&addr(0)).key("SourcePort").uint(PORT).key("SourceNode").raw(&name(0));
    })
}

/// Serf's ack payload: a version byte and the Vivaldi coordinate (8 dimensions, error,
/// adjustment, height, all float64).
pub fn serf_coordinate() -> usize {
    let mut mp = Mp::default();
    mp.byte(1).map(4).key("Vec").array(8);
    for _ in 0..8 {
        mp.float(0.001);
    }
    mp.key("Error").float(0.2).key("Adjustment").float(0.0).key("Height").float(1e-5);
    mp.0.len()
}

/// `ackResp` with Serf's coordinate as payload (a direct probe's answer).
pub fn ack() -> usize {
    let payload = vec![0u8; serf_coordinate()];
    message(2, |m| {
        m.map(2).key("SeqNo").uint(SEQ).key("Payload").raw(&payload);
    })
}

/// `ackResp` without payload (an indirect prober relaying the target's ack).
pub fn ack_relayed() -> usize {
    message(2, |m| {
        m.map(2).key("SeqNo").uint(SEQ).key("Payload").nil();
    })
}

/// `indirectPingReq`: SeqNo, Target, Port, Node, Nack, SourceAddr, SourcePort, SourceNode.
pub fn indirect_ping() -> usize {
    message(1, |m| {
        m.map(8).key("SeqNo").uint(SEQ).key("Target").raw(&addr(1)).key("Port").uint(PORT);
        m.key("Node").raw(&name(1)).key("Nack").boolean(true).key("SourceAddr").raw(&addr(0));
        m.key("SourcePort").uint(PORT).key("SourceNode").raw(&name(0));
    })
}

/// `nackResp`: SeqNo.
pub fn nack() -> usize {
    message(11, |m| {
        m.map(1).key("SeqNo").uint(SEQ);
    })
}

/// `suspect` or `dead` (the same fields): Incarnation, Node, From.
pub fn suspect(incarnation: u32) -> usize {
    message(3, |m| {
        m.map(3).key("Incarnation").uint(u64::from(incarnation)).key("Node").raw(&name(1));
        m.key("From").raw(&name(0));
    })
}

/// Serf's tags as node meta: the magic byte and a msgpack map `{role: "app"}`.
fn meta() -> Vec<u8> {
    let mut mp = Mp::default();
    mp.byte(255).map(1).key("role").raw(b"app");
    mp.0
}

/// memberlist's protocol and delegate versions of a Serf node: min, max, current.
const VSN: [u8; 6] = [1, 5, 2, 2, 5, 4];

/// `alive`: Incarnation, Node, Addr, Port, Meta, Vsn.
pub fn alive(incarnation: u32) -> usize {
    message(4, |m| {
        m.map(6).key("Incarnation").uint(u64::from(incarnation)).key("Node").raw(&name(1));
        m.key("Addr").raw(&addr(1)).key("Port").uint(PORT).key("Meta").raw(&meta());
        m.key("Vsn").raw(&VSN);
    })
}

/// A datagram of `parts` (message sizes): one message as is, several as a compound message;
/// with `crc`, memberlist's CRC header.
pub fn packet(parts: impl IntoIterator<Item = usize>, crc: bool) -> usize {
    let (mut n, mut sum) = (0, 0);
    for p in parts {
        n += 1;
        sum += p;
    }
    let body = if n == 1 { sum } else { COMPOUND_HEADER + COMPOUND_PART * n + sum };
    body + if crc { CRC_BYTES } else { 0 }
}

/// The push/pull message of a node holding `members` members (itself included) as memberlist
/// builds it (`sendLocalState`): type byte, header, each member's state, Serf's user state;
/// uncompressed.
pub(crate) fn push_pull_raw(members: usize, join: bool) -> Vec<u8> {
    let mut serf = Mp::default();
    // Serf's messagePushPull: type byte (messagePushPullType = 2), then the struct.
    // Lamport times of a cluster that has run a while (mp.py's: 5 000, 200, 10).
    serf.byte(2).map(6).key("LTime").uint(5_000).key("StatusLTimes").map(members);
    for i in 0..members {
        serf.raw(&name(i)).uint(5_000);
    }
    serf.key("LeftMembers").array(0).key("EventLTime").uint(200).key("Events").array(512);
    for _ in 0..512 {
        serf.nil(); // the empty slots of an idle node's event buffer
    }
    serf.key("QueryLTime").uint(10);
    let mut mp = Mp::default();
    mp.byte(6); // pushPullMsg
    mp.map(3).key("Nodes").uint(members as u64).key("UserStateLen");
    mp.uint(serf.0.len() as u64).key("Join").boolean(join);
    let meta = meta();
    for i in 0..members {
        mp.map(7).key("Name").raw(&name(i)).key("Addr").raw(&addr(i)).key("Port").uint(PORT);
        mp.key("Meta").raw(&meta).key("Incarnation").uint(1 + (i % 3) as u64);
        mp.key("State").uint(0).key("Vsn").raw(&VSN);
    }
    mp.0.extend_from_slice(&serf.0);
    mp.0
}

/// The bytes Go's `compress/lzw` writer (LSB order, 8-bit literals) produces for `input`,
/// counted code by code as `lzw.Writer` emits them: a clear code first, codes of 9 to 12
/// bits, a clear code and a fresh table when the 4 095th code is reached, then the last code,
/// the end code and the final partial byte.
pub(crate) fn lzw_len(input: &[u8]) -> usize {
    const CLEAR: u32 = 256;
    const MAX_CODE: u32 = 4095;
    let Some((&first, rest)) = input.split_first() else {
        return 3; // clear + eof at 9 bits: 18 bits
    };
    let mut bits: u64 = 9; // the clear code
    let mut width = 9u32;
    let mut hi = CLEAR + 1;
    let mut overflow = 512u32;
    let mut table: HashMap<u32, u32> = HashMap::new();
    let mut code = u32::from(first);
    // Mirrors `Writer.incHi`; true when the table was reset (the key is then not inserted).
    let inc_hi = |hi: &mut u32, width: &mut u32, overflow: &mut u32, bits: &mut u64| {
        *hi += 1;
        if *hi == *overflow {
            *width += 1;
            *overflow <<= 1;
        }
        if *hi == MAX_CODE {
            *bits += u64::from(*width); // clear code
            *width = 9;
            *hi = CLEAR + 1;
            *overflow = 512;
            return true;
        }
        false
    };
    for &b in rest {
        let key = code << 8 | u32::from(b);
        if let Some(&c) = table.get(&key) {
            code = c;
            continue;
        }
        bits += u64::from(width);
        code = u32::from(b);
        if inc_hi(&mut hi, &mut width, &mut overflow, &mut bits) {
            table.clear();
            continue;
        }
        table.insert(key, hi);
    }
    // Close: the saved code, incHi, the end code, the last partial byte.
    bits += u64::from(width);
    inc_hi(&mut hi, &mut width, &mut overflow, &mut bits);
    bits += u64::from(width);
    bits.div_ceil(8) as usize
}

/// What memberlist's `rawSendMsgStream` writes for `raw` with compression on (the default):
/// the type byte and the msgpack `compress{Algo, Buf}` around Go's LZW of it.
fn compressed(raw: &[u8]) -> usize {
    let lzw = lzw_len(raw);
    let mut head = Mp::default();
    head.byte(9).map(2).key("Algo").uint(0).key("Buf");
    // The raw header of `Buf` alone (its bytes follow).
    let raw_head = if lzw < 32 {
        1
    } else if lzw < 65_536 {
        3
    } else {
        5
    };
    head.0.len() + raw_head + lzw
}

/// What memberlist writes on the TCP stream for a push/pull of a node holding `members`
/// members: the state message, compressed.
pub fn push_pull(members: usize, join: bool) -> usize {
    compressed(&push_pull_raw(members, join))
}

/// A TCP fallback ping on its stream (`sendPingAndWaitForAck`: the ping, compressed; an
/// 85-byte message does not shrink, it grows by LZW's 9-bit codes and the wrapper).
pub fn tcp_ping() -> usize {
    let mut mp = Mp::default();
    mp.byte(0).map(5).key("SeqNo").uint(SEQ).key("Node").raw(&name(1)).key("SourceAddr");
    mp.raw(&addr(0)).key("SourcePort").uint(PORT).key("SourceNode").raw(&name(0));
    compressed(&mp.0)
}

/// The answer to a TCP ping on its stream: an `ackResp` without payload, compressed.
pub fn tcp_ack() -> usize {
    let mut mp = Mp::default();
    mp.byte(2).map(2).key("SeqNo").uint(SEQ).key("Payload").nil();
    compressed(&mp.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the anchors computed from the same structs (`mp.py`, memberlist_bytes_out.txt:
    /// ping 85, ack with Serf's coordinate 154, without 22; coordinate payload 130).
    #[test]
    fn message_sizes_match_the_anchors() {
        assert_eq!(ping(), 85);
        assert_eq!(serf_coordinate(), 130);
        assert_eq!(ack(), 154);
        assert_eq!(ack_relayed(), 22);
        assert_eq!(nack(), 13);
        assert_eq!(packet([ping()], false), 85);
        assert_eq!(packet([ping(), suspect(1)], true), 5 + 2 + 4 + 85 + suspect(1));
        // Without Serf's event buffer (which mp.py left out) the push/pull message at 20
        // nodes is mp.py's 2 124 bytes: 85-byte node states, the header, Serf's Lamport times.
        // (Serf's 512 empty event slots: an array16 header and 512 nils, against mp.py's 1.)
        let raw = push_pull_raw(20, false).len();
        assert_eq!(raw - 514, 2_124, "raw {raw}");
    }

    /// Go's LZW: a run of one byte compresses to a handful of codes; random bytes grow by the
    /// code width (9 bits per literal while the table is small).
    #[test]
    fn lzw_counts_codes_as_go_does() {
        assert_eq!(lzw_len(b"a"), 4); // clear, 'a', eof: 27 bits
        assert_eq!(lzw_len(b"TOBEORNOTTOBEORTOBEORNOT"), 21); // clear, 16 codes, eof: 162 bits
        let zeros = lzw_len(&[0u8; 10_000]);
        assert!(zeros < 200, "{zeros}");
        let mut x = 1u64;
        let noise: Vec<u8> = (0..1_000)
            .map(|_| {
                x = crate::sim::mix(x);
                x as u8
            })
            .collect();
        let n = lzw_len(&noise);
        // ~990 codes: 255 of 9 bits, 512 of 10, the rest of 11: about 1 236 bytes.
        assert!((1_200..1_260).contains(&n), "{n}");
    }

    /// Compression roughly halves a push/pull (repeated keys, names, meta).
    #[test]
    fn push_pull_compresses() {
        for n in [20, 490] {
            let raw = push_pull_raw(n, false).len();
            let sent = push_pull(n, false);
            assert!(sent < raw * 7 / 10 && sent > raw / 10, "{n}: {sent} of {raw}");
        }
    }
}
