//! Size and count limits for everything that crosses the wire.
//!
//! Every limit here is checked before the bytes it guards are decoded: the total size first,
//! then (after the signature) the shape of the body, so that decoding never allocates more than
//! a small multiple of the input (see `wire`). Raising a limit is a protocol change: peers with
//! lower limits reject what peers with higher ones send.

/// Largest signed envelope accepted, in bytes (event bytes + signature + framing).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Largest transport frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Length of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Length of a raw ed25519 public key (the only author key format of v1).
pub const AUTHOR_KEY_BYTES: usize = 32;
/// Length of an event id (SHA-256).
pub const EVENT_ID_BYTES: usize = 32;

/// Largest post body, in bytes.
pub const MAX_POST_BODY_BYTES: usize = 48 * 1024;
/// Largest postcard body (the message before sealing), in bytes.
pub const MAX_POSTCARD_BODY_BYTES: usize = 48 * 1024;
/// What sealing adds to a postcard body: the ephemeral X25519 key and the Poly1305 tag.
pub const SEAL_OVERHEAD_BYTES: usize = 32 + 16;
/// Largest sealed postcard body on the wire.
pub const MAX_SEALED_POSTCARD_BYTES: usize = MAX_POSTCARD_BODY_BYTES + SEAL_OVERHEAD_BYTES;
/// Most links in one link-state event (above any `max_links` a node runs with).
pub const MAX_LINK_STATE_ENTRIES: usize = 64;
/// Most peers a routed event (postcard, receipt) may cross: past it, it is dropped as a loop.
pub const MAX_ROUTE_HOPS: usize = 64;
/// Most routed events refused in one acknowledgement.
pub const MAX_REFUSED_PER_ACK: usize = 64;
/// Longest post topic, in bytes of UTF-8.
pub const MAX_TOPIC_BYTES: usize = 128;
/// Longest content type string.
pub const MAX_CONTENT_TYPE_BYTES: usize = 64;
/// Longest free-text field (names, versions, chau reasons).
pub const MAX_TEXT_BYTES: usize = 128;
/// Most listen addresses in one hey-there.
pub const MAX_ADDRS: usize = 16;
/// Shortest listen address (a multiaddr in text form is never shorter).
pub const MIN_ADDR_BYTES: usize = 8;
/// Longest listen address.
pub const MAX_ADDR_BYTES: usize = 256;
/// Most dimensions of a coordinate on the wire.
pub const MAX_DIMENSIONS: usize = 32;
/// Most entries in one opinion event.
pub const MAX_OPINION_ENTRIES: usize = 256;
/// Most health features in one barrio slot.
pub const MAX_HEALTH_FEATURES: usize = 32;

/// Most envelopes in one `Events` frame.
pub const MAX_EVENTS_PER_FRAME: usize = 512;
/// Most stream heads in one `VersionVector` frame.
pub const MAX_HEADS_PER_FRAME: usize = 4096;
/// Most ranges in one `RequestRanges` frame.
pub const MAX_RANGES_PER_FRAME: usize = 1024;
/// Most bytes of runs (packed varints) in one `Ack` frame.
pub const MAX_ACK_RUN_BYTES: usize = 2048;
/// Plumtree tree slots: events are disseminated on one tree per slot, the slot taken from the
/// author key (so each author's events follow a tree of their own, shared at most with the
/// few authors hashed to the same slot). Prunes and grafts also name the membership slot of
/// each (`TREE_SLOTS` + slot) and the post tree a fisheye fleet shares (2 × `TREE_SLOTS`).
pub const TREE_SLOTS: usize = 4096;
/// Most tree slots named in one `Graft` or `Prune` frame.
pub const MAX_TREES_PER_FRAME: usize = TREE_SLOTS;

/// How far ahead of the receiver's clock an event's HLC may be, by default (ms).
pub const DEFAULT_MAX_CLOCK_AHEAD_MS: u64 = 120_000;
