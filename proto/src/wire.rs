//! A schema-aware pre-scan of protobuf bytes, run before prost decodes them.
//!
//! prost decodes whatever a buffer describes: a run of empty repeated sub-messages two bytes
//! each becomes a `Vec` of structs fifty times larger, and a singular field sent twice is merged.
//! Untrusted bytes therefore pass through [`check`] first. It walks the wire format against a
//! static description of each message and rejects, with a typed error:
//! truncation, malformed varints and wire types, groups, duplicate singular fields, more than one
//! member of a oneof, strings and bytes over their limit, repeated fields over their count limit
//! or with elements shorter than the smallest valid one. Unknown fields are skipped (they are
//! how the schema evolves) but must be well formed.
//!
//! With every repeated field bounded in count and with a minimum encoded element size no smaller
//! than about half its decoded struct, no single allocation made by the decode that follows is
//! larger than a small multiple of the input; the fuzz targets measure it.

use crate::limits::*;

/// Why a buffer failed the pre-scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a field.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// The bytes are not a valid encoding of the expected message.
    #[error("malformed {message}: {what}")]
    Malformed {
        /// Message being scanned.
        message: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// A field exceeds its size or count limit.
    #[error("limit exceeded: {field} has {got}, at most {max} allowed")]
    Limit {
        /// `Message.field` that exceeded its limit.
        field: &'static str,
        /// Size or count seen (a lower bound when scanning stopped early).
        got: usize,
        /// The limit.
        max: usize,
    },
}

/// How one field must look on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Wire type 0 (ints, bools, enums).
    Varint,
    /// Wire type 5 (float, fixed32).
    Fixed32,
    /// Wire type 1 (double, fixed64).
    Fixed64,
    /// Singular `bytes` or `string` of at most `max` bytes.
    Bytes { max: usize },
    /// Singular nested message.
    Msg(&'static Schema),
    /// Repeated nested message: each element's encoding at least `min` bytes, at most `count`.
    RepeatedMsg { schema: &'static Schema, min: usize, count: usize },
    /// Repeated string or bytes: each between `min` and `max` bytes, at most `count` of them.
    RepeatedLen { min: usize, max: usize, count: usize },
    /// Repeated 4-byte scalar (packed or not), at most `count` values.
    Repeated32 { count: usize },
    /// Repeated 8-byte scalar (packed or not), at most `count` values.
    Repeated64 { count: usize },
    /// Repeated varint scalar (packed or not), at most `count` values.
    RepeatedVarint { count: usize },
}

/// One field of a message description.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Member of the message's (single) oneof.
    pub(crate) oneof: bool,
}

/// A message description: its fields, at most 64.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

const fn f(number: u32, name: &'static str, kind: Kind) -> Field {
    Field { number, name, kind, oneof: false }
}
const fn one(number: u32, name: &'static str, kind: Kind) -> Field {
    Field { number, name, kind, oneof: true }
}

/// Room for author key formats this version does not know, so they are named as such.
const MAX_AUTHOR_FIELD_BYTES: usize = 64;

/// Smallest encoding of a message holding a 32-byte key field: tag + length + 32.
const MIN_KEYED: usize = 2 + AUTHOR_KEY_BYTES;

pub(crate) static ENVELOPE: Schema = Schema {
    name: "Envelope",
    fields: &[
        f(1, "Envelope.event", Kind::Bytes { max: MAX_ENVELOPE_BYTES }),
        f(2, "Envelope.signature", Kind::Bytes { max: SIGNATURE_BYTES }),
    ],
};

pub(crate) static HLC: Schema = Schema {
    name: "Hlc",
    fields: &[f(1, "Hlc.ms", Kind::Varint), f(2, "Hlc.counter", Kind::Varint)],
};

pub(crate) static COORDINATE: Schema = Schema {
    name: "Coordinate",
    fields: &[
        f(1, "Coordinate.vec", Kind::Repeated32 { count: MAX_DIMENSIONS }),
        f(2, "Coordinate.height", Kind::Fixed32),
        f(3, "Coordinate.error", Kind::Fixed32),
        f(4, "Coordinate.adjustment", Kind::Fixed32),
    ],
};

pub(crate) static HEY_THERE: Schema = Schema {
    name: "HeyThere",
    fields: &[
        f(1, "HeyThere.coordinate", Kind::Msg(&COORDINATE)),
        f(
            2,
            "HeyThere.addrs",
            Kind::RepeatedLen { min: MIN_ADDR_BYTES, max: MAX_ADDR_BYTES, count: MAX_ADDRS },
        ),
        f(3, "HeyThere.name", Kind::Bytes { max: MAX_TEXT_BYTES }),
        f(4, "HeyThere.version", Kind::Bytes { max: MAX_TEXT_BYTES }),
        f(5, "HeyThere.started_ms", Kind::Varint),
    ],
};

pub(crate) static NEWSPAPER: Schema = Schema {
    name: "Newspaper",
    fields: &[
        f(1, "Newspaper.coordinate", Kind::Msg(&COORDINATE)),
        f(2, "Newspaper.uptime_s", Kind::Varint),
        f(3, "Newspaper.restarts", Kind::Varint),
        f(4, "Newspaper.barrio", Kind::Fixed64),
        f(5, "Newspaper.connected", Kind::Varint),
        f(6, "Newspaper.flags", Kind::Varint),
    ],
};

pub(crate) static CHAU: Schema =
    Schema { name: "Chau", fields: &[f(1, "Chau.reason", Kind::Bytes { max: MAX_TEXT_BYTES })] };

pub(crate) static OPINION_ENTRY: Schema = Schema {
    name: "OpinionEntry",
    fields: &[
        f(1, "OpinionEntry.subject", Kind::Bytes { max: AUTHOR_KEY_BYTES }),
        f(8, "OpinionEntry.subject_prefix", Kind::Fixed64),
        f(2, "OpinionEntry.online", Kind::Varint),
        f(3, "OpinionEntry.restarts", Kind::Varint),
        f(4, "OpinionEntry.uptime_s", Kind::Varint),
        f(5, "OpinionEntry.link_quality_permille", Kind::Varint),
        f(6, "OpinionEntry.rtt_us", Kind::Varint),
        f(7, "OpinionEntry.started_ms", Kind::Varint),
    ],
};

pub(crate) static OPINION: Schema = Schema {
    name: "Opinion",
    fields: &[f(
        1,
        "Opinion.entries",
        Kind::RepeatedMsg { schema: &OPINION_ENTRY, min: MIN_PREFIXED, count: MAX_OPINION_ENTRIES },
    )],
};

pub(crate) static BARRIO_SLOT: Schema = Schema {
    name: "BarrioSlot",
    fields: &[
        f(1, "BarrioSlot.barrio", Kind::Fixed64),
        f(2, "BarrioSlot.version", Kind::Varint),
        f(3, "BarrioSlot.coordinate", Kind::Msg(&COORDINATE)),
        f(4, "BarrioSlot.health", Kind::Repeated32 { count: MAX_HEALTH_FEATURES }),
    ],
};

pub(crate) static POST: Schema = Schema {
    name: "Post",
    fields: &[
        f(1, "Post.topic", Kind::Bytes { max: MAX_TOPIC_BYTES }),
        f(2, "Post.body", Kind::Bytes { max: MAX_POST_BODY_BYTES }),
        f(3, "Post.content_type", Kind::Bytes { max: MAX_CONTENT_TYPE_BYTES }),
    ],
};

pub(crate) static POSTCARD: Schema = Schema {
    name: "Postcard",
    fields: &[
        f(1, "Postcard.to", Kind::Bytes { max: AUTHOR_KEY_BYTES }),
        f(2, "Postcard.body", Kind::Bytes { max: MAX_SEALED_POSTCARD_BYTES }),
        f(3, "Postcard.expires_ms", Kind::Varint),
        f(4, "Postcard.from", Kind::Msg(&COORDINATE)),
        f(5, "Postcard.to_coordinate", Kind::Msg(&COORDINATE)),
        f(6, "Postcard.prev", Kind::Varint),
    ],
};

pub(crate) static POSTCARD_RECEIPT: Schema = Schema {
    name: "PostcardReceipt",
    fields: &[
        f(1, "PostcardReceipt.postcard_id", Kind::Bytes { max: EVENT_ID_BYTES }),
        f(2, "PostcardReceipt.to", Kind::Bytes { max: AUTHOR_KEY_BYTES }),
        f(3, "PostcardReceipt.to_coordinate", Kind::Msg(&COORDINATE)),
        f(4, "PostcardReceipt.expires_ms", Kind::Varint),
        f(5, "PostcardReceipt.trail", Kind::Repeated64 { count: MAX_ROUTE_HOPS }),
    ],
};

pub(crate) static LINK_STATE: Schema = Schema {
    name: "LinkState",
    fields: &[
        f(1, "LinkState.peers", Kind::Repeated64 { count: MAX_LINK_STATE_ENTRIES }),
        f(2, "LinkState.rtt_100us", Kind::RepeatedVarint { count: MAX_LINK_STATE_ENTRIES }),
    ],
};

/// The event with its body: scanned after the signature has been checked.
pub(crate) static EVENT: Schema = Schema {
    name: "Event",
    fields: &[
        f(1, "Event.author", Kind::Bytes { max: MAX_AUTHOR_FIELD_BYTES }),
        f(2, "Event.stream", Kind::Varint),
        f(3, "Event.seq", Kind::Varint),
        f(4, "Event.hlc", Kind::Msg(&HLC)),
        one(10, "Event.hey_there", Kind::Msg(&HEY_THERE)),
        one(11, "Event.newspaper", Kind::Msg(&NEWSPAPER)),
        one(12, "Event.chau", Kind::Msg(&CHAU)),
        one(13, "Event.opinion", Kind::Msg(&OPINION)),
        one(14, "Event.barrio_slot", Kind::Msg(&BARRIO_SLOT)),
        one(15, "Event.post", Kind::Msg(&POST)),
        one(16, "Event.postcard", Kind::Msg(&POSTCARD)),
        one(17, "Event.postcard_receipt", Kind::Msg(&POSTCARD_RECEIPT)),
        one(18, "Event.link_state", Kind::Msg(&LINK_STATE)),
    ],
};

pub(crate) static FRAUD_PROOF: Schema = Schema {
    name: "FraudProof",
    fields: &[
        f(1, "FraudProof.first", Kind::Msg(&ENVELOPE)),
        f(2, "FraudProof.second", Kind::Msg(&ENVELOPE)),
    ],
};

/// Smallest plausible envelope: a signature plus an event holding at least an author key.
const MIN_ENVELOPE: usize = 2 + SIGNATURE_BYTES + 2 + MIN_KEYED;

static EVENTS: Schema = Schema {
    name: "Events",
    fields: &[
        f(
            1,
            "Events.envelopes",
            Kind::RepeatedLen {
                min: MIN_ENVELOPE,
                max: MAX_ENVELOPE_BYTES,
                count: MAX_EVENTS_PER_FRAME,
            },
        ),
        f(2, "Events.sync", Kind::Varint),
        f(3, "Events.hops", Kind::Varint),
        f(4, "Events.trail", Kind::Repeated64 { count: MAX_ROUTE_HOPS }),
        f(5, "Events.detours", Kind::Varint),
        f(6, "Events.copies", Kind::Varint),
    ],
};
static PING: Schema = Schema { name: "Ping", fields: &[f(1, "Ping.nonce", Kind::Fixed64)] };
static PONG: Schema = Schema {
    name: "Pong",
    fields: &[f(1, "Pong.nonce", Kind::Fixed64), f(2, "Pong.coordinate", Kind::Msg(&COORDINATE))],
};
static DIGEST: Schema = Schema {
    name: "Digest",
    fields: &[f(1, "Digest.hash", Kind::Bytes { max: 64 }), f(2, "Digest.heads", Kind::Varint)],
};
static STREAM_HEAD: Schema = Schema {
    name: "StreamHead",
    fields: &[
        f(1, "StreamHead.author", Kind::Bytes { max: AUTHOR_KEY_BYTES }),
        f(2, "StreamHead.stream", Kind::Varint),
        f(3, "StreamHead.seq", Kind::Varint),
        f(4, "StreamHead.hops", Kind::Varint),
    ],
};
static PREFIX_HEAD: Schema = Schema {
    name: "PrefixHead",
    fields: &[
        f(1, "PrefixHead.author_prefix", Kind::Fixed64),
        f(2, "PrefixHead.stream", Kind::Varint),
        f(3, "PrefixHead.seq", Kind::Varint),
        f(4, "PrefixHead.hops", Kind::Varint),
    ],
};
/// Smallest encoding of a head named by author prefix: tag + 8 bytes.
const MIN_PREFIXED: usize = 1 + 8;
/// Smallest encoding of a head named by fingerprint: tag + 4 bytes.
const MIN_FINGERPRINTED: usize = 1 + 4;
static MEMBER_HEAD: Schema = Schema {
    name: "MemberHead",
    fields: &[
        f(1, "MemberHead.member", Kind::Fixed32),
        f(2, "MemberHead.stream", Kind::Varint),
        f(3, "MemberHead.seq", Kind::Varint),
    ],
};
static VERSION_VECTOR: Schema = Schema {
    name: "VersionVector",
    fields: &[
        f(
            1,
            "VersionVector.heads",
            Kind::RepeatedMsg { schema: &STREAM_HEAD, min: MIN_KEYED, count: MAX_HEADS_PER_FRAME },
        ),
        f(2, "VersionVector.partial", Kind::Varint),
        f(3, "VersionVector.reply", Kind::Varint),
        f(4, "VersionVector.presence_only", Kind::Varint),
        f(
            5,
            "VersionVector.members",
            Kind::RepeatedMsg {
                schema: &MEMBER_HEAD,
                min: MIN_FINGERPRINTED,
                count: MAX_HEADS_PER_FRAME,
            },
        ),
        f(6, "VersionVector.member_salt", Kind::Fixed64),
    ],
};
static SEQ_RANGE: Schema = Schema {
    name: "SeqRange",
    fields: &[
        f(1, "SeqRange.author", Kind::Bytes { max: AUTHOR_KEY_BYTES }),
        f(2, "SeqRange.stream", Kind::Varint),
        f(3, "SeqRange.from_seq", Kind::Varint),
        f(4, "SeqRange.to_seq", Kind::Varint),
    ],
};
static REQUEST_RANGES: Schema = Schema {
    name: "RequestRanges",
    fields: &[f(
        1,
        "RequestRanges.ranges",
        Kind::RepeatedMsg { schema: &SEQ_RANGE, min: MIN_KEYED, count: MAX_RANGES_PER_FRAME },
    )],
};
static ACK: Schema = Schema {
    name: "Ack",
    fields: &[
        f(1, "Ack.cumulative", Kind::Varint),
        f(3, "Ack.runs", Kind::Bytes { max: MAX_ACK_RUN_BYTES }),
        f(
            4,
            "Ack.refused",
            Kind::RepeatedLen {
                min: EVENT_ID_BYTES,
                max: EVENT_ID_BYTES,
                count: MAX_REFUSED_PER_ACK,
            },
        ),
    ],
};

static IHAVE: Schema = Schema {
    name: "IHave",
    fields: &[
        f(
            1,
            "IHave.heads",
            Kind::RepeatedMsg { schema: &STREAM_HEAD, min: MIN_KEYED, count: MAX_HEADS_PER_FRAME },
        ),
        f(
            2,
            "IHave.prefixed",
            Kind::RepeatedMsg {
                schema: &PREFIX_HEAD,
                min: MIN_PREFIXED,
                count: MAX_HEADS_PER_FRAME,
            },
        ),
    ],
};
static GRAFT: Schema = Schema {
    name: "Graft",
    fields: &[
        f(
            1,
            "Graft.heads",
            Kind::RepeatedMsg { schema: &STREAM_HEAD, min: MIN_KEYED, count: MAX_HEADS_PER_FRAME },
        ),
        f(2, "Graft.trees", Kind::Repeated32 { count: MAX_TREES_PER_FRAME }),
        f(
            3,
            "Graft.prefixed",
            Kind::RepeatedMsg {
                schema: &PREFIX_HEAD,
                min: MIN_PREFIXED,
                count: MAX_HEADS_PER_FRAME,
            },
        ),
    ],
};
static BYE: Schema = Schema { name: "Bye", fields: &[f(1, "Bye.reason", Kind::Varint)] };
static PRUNE: Schema = Schema {
    name: "Prune",
    fields: &[f(1, "Prune.trees", Kind::Repeated32 { count: MAX_TREES_PER_FRAME })],
};

pub(crate) static FRAME: Schema = Schema {
    name: "Frame",
    fields: &[
        f(1, "Frame.link_seq", Kind::Varint),
        f(13, "Frame.link_floor", Kind::Varint),
        one(2, "Frame.events", Kind::Msg(&EVENTS)),
        one(3, "Frame.ping", Kind::Msg(&PING)),
        one(4, "Frame.pong", Kind::Msg(&PONG)),
        one(5, "Frame.digest", Kind::Msg(&DIGEST)),
        one(6, "Frame.version_vector", Kind::Msg(&VERSION_VECTOR)),
        one(7, "Frame.request", Kind::Msg(&REQUEST_RANGES)),
        one(8, "Frame.ack", Kind::Msg(&ACK)),
        one(9, "Frame.fraud_proof", Kind::Msg(&FRAUD_PROOF)),
        one(10, "Frame.ihave", Kind::Msg(&IHAVE)),
        one(11, "Frame.graft", Kind::Msg(&GRAFT)),
        one(12, "Frame.prune", Kind::Msg(&PRUNE)),
        one(14, "Frame.bye", Kind::Msg(&BYE)),
    ],
};

/// A cursor over protobuf wire-format bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

impl<'a> Reader<'a> {
    fn varint(&mut self, message: &'static str) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated("varint runs past the end"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(WireError::Malformed { message, what: "varint overflows 64 bits" });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::Malformed { message, what: "varint longer than 10 bytes" })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated("field runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// One field as found on the wire.
enum Value<'a> {
    Varint,
    I64,
    I32,
    Len(&'a [u8]),
}

/// Scans `buf` as an encoding of `schema`; see the module docs for what is checked.
pub(crate) fn check(buf: &[u8], schema: &'static Schema) -> Result<(), WireError> {
    scan(buf, schema, true)
}

/// As [`check`], for the top level only: nested messages are bounded by the buffer but not
/// looked into. The event's header is read this way before the signature; its body is checked
/// deeply after.
pub(crate) fn check_shallow(buf: &[u8], schema: &'static Schema) -> Result<(), WireError> {
    scan(buf, schema, false)
}

fn scan(buf: &[u8], schema: &'static Schema, deep: bool) -> Result<(), WireError> {
    let message = schema.name;
    debug_assert!(schema.fields.len() <= 64);
    let mut seen = 0u64;
    let mut counts = [0usize; 64];
    let mut oneof_seen = false;
    let mut r = Reader { buf, pos: 0 };
    while r.pos < buf.len() {
        let key = r.varint(message)?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError::Malformed { message, what: "invalid field number" });
        }
        let value = match (key & 7) as u8 {
            VARINT => {
                r.varint(message)?;
                Value::Varint
            }
            I64 => {
                r.take(8)?;
                Value::I64
            }
            I32 => {
                r.take(4)?;
                Value::I32
            }
            LEN => {
                let len = r.varint(message)?;
                let len = usize::try_from(len)
                    .map_err(|_| WireError::Truncated("length larger than the buffer"))?;
                Value::Len(r.take(len)?)
            }
            3 | 4 => {
                return Err(WireError::Malformed { message, what: "groups are not used" });
            }
            _ => {
                return Err(WireError::Malformed { message, what: "invalid wire type" });
            }
        };
        let Some(idx) = schema.fields.iter().position(|fl| u64::from(fl.number) == number) else {
            continue; // unknown field: well formed, skipped
        };
        let field = &schema.fields[idx];
        let repeated = matches!(
            field.kind,
            Kind::RepeatedMsg { .. }
                | Kind::RepeatedLen { .. }
                | Kind::Repeated32 { .. }
                | Kind::Repeated64 { .. }
                | Kind::RepeatedVarint { .. }
        );
        if !repeated {
            if seen & (1 << idx) != 0 {
                return Err(WireError::Malformed { message, what: "singular field repeated" });
            }
            seen |= 1 << idx;
        }
        if field.oneof {
            if oneof_seen {
                return Err(WireError::Malformed { message, what: "more than one oneof member" });
            }
            oneof_seen = true;
        }
        check_field(field, value, &mut counts[idx], message, deep)?;
    }
    Ok(())
}

fn check_field(
    field: &Field,
    value: Value<'_>,
    count: &mut usize,
    message: &'static str,
    deep: bool,
) -> Result<(), WireError> {
    let nested = |b: &[u8], schema| if deep { scan(b, schema, true) } else { Ok(()) };
    let wrong = WireError::Malformed { message, what: "wrong wire type for field" };
    let limit = |got: usize, max: usize| {
        if got > max { Err(WireError::Limit { field: field.name, got, max }) } else { Ok(()) }
    };
    match (field.kind, value) {
        (Kind::Varint, Value::Varint)
        | (Kind::Fixed32, Value::I32)
        | (Kind::Fixed64, Value::I64) => Ok(()),
        (Kind::Bytes { max }, Value::Len(b)) => limit(b.len(), max),
        (Kind::Msg(schema), Value::Len(b)) => nested(b, schema),
        (Kind::RepeatedMsg { schema, min, count: max }, Value::Len(b)) => {
            *count += 1;
            limit(*count, max)?;
            if b.len() < min {
                return Err(WireError::Malformed { message, what: "repeated element too short" });
            }
            nested(b, schema)
        }
        (Kind::RepeatedLen { min, max, count: max_count }, Value::Len(b)) => {
            *count += 1;
            limit(*count, max_count)?;
            limit(b.len(), max)?;
            if b.len() < min {
                return Err(WireError::Malformed { message, what: "repeated element too short" });
            }
            Ok(())
        }
        (Kind::Repeated32 { count: max }, Value::I32) => {
            *count += 1;
            limit(*count, max)
        }
        (Kind::Repeated32 { count: max }, Value::Len(b)) => {
            packed(b, 4, count, max, field, message)
        }
        (Kind::Repeated64 { count: max }, Value::I64)
        | (Kind::RepeatedVarint { count: max }, Value::Varint) => {
            *count += 1;
            limit(*count, max)
        }
        (Kind::Repeated64 { count: max }, Value::Len(b)) => {
            packed(b, 8, count, max, field, message)
        }
        (Kind::RepeatedVarint { count: max }, Value::Len(b)) => {
            packed_varints(b, count, max, field, message)
        }
        _ => Err(wrong),
    }
}

fn packed(
    b: &[u8],
    width: usize,
    count: &mut usize,
    max: usize,
    field: &Field,
    message: &'static str,
) -> Result<(), WireError> {
    if !b.len().is_multiple_of(width) {
        return Err(WireError::Malformed {
            message,
            what: "packed field not a whole number of values",
        });
    }
    *count += b.len() / width;
    if *count > max {
        return Err(WireError::Limit { field: field.name, got: *count, max });
    }
    Ok(())
}

/// Counts the varints of a packed field (each ends with a byte below 0x80; at most 10 bytes).
fn packed_varints(
    b: &[u8],
    count: &mut usize,
    max: usize,
    field: &Field,
    message: &'static str,
) -> Result<(), WireError> {
    let mut run = 0;
    for &byte in b {
        run += 1;
        if run > 10 {
            return Err(WireError::Malformed { message, what: "varint longer than 10 bytes" });
        }
        if byte < 0x80 {
            *count += 1;
            run = 0;
            if *count > max {
                return Err(WireError::Limit { field: field.name, got: *count, max });
            }
        }
    }
    if run != 0 {
        return Err(WireError::Truncated("packed varint cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_repeated_messages_are_rejected_before_decoding() {
        // 1000 empty OpinionEntry elements: 2 bytes each on the wire.
        let buf: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 1000).flatten().collect();
        assert_eq!(
            check(&buf, &OPINION),
            Err(WireError::Malformed { message: "Opinion", what: "repeated element too short" })
        );
    }

    #[test]
    fn member_heads_need_their_fingerprint_and_are_counted() {
        use prost::Message;
        let head = crate::pb::MemberHead { member: u32::MAX, stream: 2, seq: 300 };
        let vv = crate::pb::VersionVector { members: vec![head; 3], ..Default::default() };
        assert_eq!(check(&vv.encode_to_vec(), &VERSION_VECTOR), Ok(()));
        // Elements shorter than a fingerprint (here empty): rejected before decoding.
        let buf: Vec<u8> = std::iter::repeat_n([0x2a, 0x00], 1000).flatten().collect();
        assert!(matches!(check(&buf, &VERSION_VECTOR), Err(WireError::Malformed { .. })));
        let many = crate::pb::VersionVector {
            members: vec![head; MAX_HEADS_PER_FRAME + 1],
            ..Default::default()
        };
        assert!(matches!(
            check(&many.encode_to_vec(), &VERSION_VECTOR),
            Err(WireError::Limit { field: "VersionVector.members", .. })
        ));
    }

    #[test]
    fn prefixed_heads_need_their_prefix_and_are_counted() {
        use prost::Message;
        let head =
            crate::pb::PrefixHead { author_prefix: u64::MAX, stream: 2, seq: 300, hops: Some(4) };
        let ihave = crate::pb::IHave { prefixed: vec![head; 3], ..Default::default() };
        assert_eq!(check(&ihave.encode_to_vec(), &IHAVE), Ok(()));
        let graft = crate::pb::Graft { prefixed: vec![head; 3], ..Default::default() };
        assert_eq!(check(&graft.encode_to_vec(), &GRAFT), Ok(()));
        // Elements shorter than a prefix (here 2 bytes): rejected before decoding.
        let buf: Vec<u8> = std::iter::repeat_n([0x12, 0x02, 0x10, 0x01], 1000).flatten().collect();
        assert!(matches!(check(&buf, &IHAVE), Err(WireError::Malformed { .. })));
        let many = crate::pb::IHave {
            prefixed: vec![head; MAX_HEADS_PER_FRAME + 1],
            ..Default::default()
        };
        assert!(matches!(
            check(&many.encode_to_vec(), &IHAVE),
            Err(WireError::Limit { field: "IHave.prefixed", .. })
        ));
    }

    #[test]
    fn too_many_repeated_elements_hit_the_count_limit() {
        let mut buf = Vec::new();
        for _ in 0..=MAX_ADDRS {
            buf.extend_from_slice(&[0x12, 10]);
            buf.extend_from_slice(b"/ip4/1.2.3");
        }
        assert!(matches!(
            check(&buf, &HEY_THERE),
            Err(WireError::Limit { field: "HeyThere.addrs", got, max: MAX_ADDRS }) if got == MAX_ADDRS + 1
        ));
    }

    #[test]
    fn packed_floats_count_towards_the_dimension_limit() {
        let n = 4 * (MAX_DIMENSIONS + 1);
        assert!((128..16384).contains(&n));
        let mut buf = vec![0x0a, (n as u8) | 0x80, (n >> 7) as u8];
        buf.resize(3 + n, 0);
        assert!(matches!(check(&buf, &COORDINATE), Err(WireError::Limit { .. })));
        let ok = [0x0a, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(check(&ok, &COORDINATE), Ok(()));
        let ragged = [0x0a, 6, 0, 0, 0, 0, 0, 0];
        assert!(matches!(check(&ragged, &COORDINATE), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn ack_runs_are_bounded_bytes() {
        assert_eq!(check(&[0x1a, 4, 1, 0x80, 1, 0], &ACK), Ok(()));
        let n = MAX_ACK_RUN_BYTES + 1;
        let mut many = vec![0x1a, (n as u8) | 0x80, (n >> 7) as u8];
        many.resize(3 + n, 0);
        assert!(matches!(
            check(&many, &ACK),
            Err(WireError::Limit { field: "Ack.runs", got, .. }) if got == n
        ));
    }

    #[test]
    fn truncation_groups_and_duplicates_are_typed() {
        assert_eq!(
            check(&[0x0a, 5, 1, 2], &ENVELOPE),
            Err(WireError::Truncated("field runs past the end"))
        );
        assert_eq!(check(&[0x08], &HLC), Err(WireError::Truncated("varint runs past the end")));
        assert!(matches!(
            check(&[0x0b], &HLC),
            Err(WireError::Malformed { what: "groups are not used", .. })
        ));
        assert!(matches!(
            check(&[0x08, 1, 0x08, 2], &HLC),
            Err(WireError::Malformed { what: "singular field repeated", .. })
        ));
        assert!(matches!(
            check(&[0x00, 1], &HLC),
            Err(WireError::Malformed { what: "invalid field number", .. })
        ));
        assert!(matches!(
            check(&[0x0a, 0], &HLC),
            Err(WireError::Malformed { what: "wrong wire type for field", .. })
        ));
        let long = [0xff; 11];
        assert!(matches!(check(&long, &HLC), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn unknown_fields_are_skipped_but_must_be_well_formed() {
        assert_eq!(check(&[0x08, 1, 0xf8, 0x01, 7], &HLC), Ok(())); // field 31 varint
        assert!(check(&[0xfa, 0x01, 9, 1], &HLC).is_err()); // field 31 len 9, truncated
    }

    #[test]
    fn two_oneof_members_are_rejected() {
        // Event with both a chau (12) and a post (15), each empty.
        let buf = [0x62, 0x00, 0x7a, 0x00];
        assert!(matches!(
            check(&buf, &EVENT),
            Err(WireError::Malformed { what: "more than one oneof member", .. })
        ));
    }
}
