//! Barrios as the operator sees them: `GET /v1/barrios`, the `barrio` of each member and of
//! this peer, the radar's barrios, and the barrio gauges.
//!
//! Everything here reads the engine (`vecino_gossip::barrios`): a member's barrio is the one
//! its newest slot held here names, else the one its newspaper names (a member whose slot
//! this peer does not hold yet), else none. A barrio is listed when this peer holds a slot of
//! one of its members; its centroid is the mean of the members' slotted coordinates, in the
//! same milliseconds as `/v1/members` shows coordinates, and its health the mean of their
//! health vectors, by feature name ([`vecino_gossip::BARRIO_HEALTH`]).

use std::collections::HashMap;

use rand_chacha::ChaCha20Rng;
use serde_json::{Map, Value, json};
use vecino_coords::BarrioId;
use vecino_gossip::{BARRIO_HEALTH, BarrioView, Engine};
use vecino_proto::AuthorKey;

use super::Node;
use super::views::pid;

/// Longest `id` parameter echoed back in an error.
const MAX_ID_ECHO: usize = 64;

/// Why `GET /v1/barrios?id=` has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarriosError {
    /// The parameter is not a barrio id (400).
    #[error("bad barrio id {given:?}: {why}")]
    BadId {
        /// What was given (cut to [`MAX_ID_ECHO`] bytes).
        given: String,
        /// Why it is no id.
        why: &'static str,
    },
    /// Well formed, but no barrio this peer holds a member's slot of (404).
    #[error("unknown barrio {0}: this node holds no member's slot naming it")]
    UnknownBarrio(String),
}

/// A barrio id as the API writes it: 16 hex digits.
pub fn barrio_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses a barrio id as the API writes it (16 hex digits; 0 names no barrio).
pub fn parse_barrio_id(given: &str) -> Result<u64, BarriosError> {
    let bad = |why| BarriosError::BadId {
        given: given
            .chars()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= MAX_ID_ECHO).then_some(c)
            })
            .collect(),
        why,
    };
    if given.len() != 16 {
        return Err(bad("a barrio id is 16 hex digits"));
    }
    if !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not hex"));
    }
    match u64::from_str_radix(given, 16) {
        Ok(0) => Err(bad("0 names no barrio")),
        Ok(id) => Ok(id),
        Err(_) => Err(bad("not hex")),
    }
}

/// A barrio's id, name and emoji as the API shows them (`null`s for none).
fn naming(id: u64) -> (Value, Value, Value) {
    if id == 0 {
        return (Value::Null, Value::Null, Value::Null);
    }
    let b = BarrioId(id);
    (json!(barrio_hex(id)), json!(b.name()), json!(b.emoji()))
}

/// The barrio of every member this peer holds a slot of (itself included once it has one).
pub(super) fn member_barrios(engine: &Engine<ChaCha20Rng>) -> HashMap<AuthorKey, u64> {
    engine.member_barrios().into_iter().filter(|(_, b)| *b != 0).collect()
}

/// A member's barrio: its slot's (`slots`, from [`member_barrios`]), else its newspaper's
/// (`newspaper`: 0 for none), else none (0).
pub(super) fn barrio_of(slots: &HashMap<AuthorKey, u64>, peer: &AuthorKey, newspaper: u64) -> u64 {
    slots.get(peer).copied().unwrap_or(newspaper)
}

/// The `barrio` and `barrio_name` fields of a member (or this peer) in `/v1/members` and
/// `/v1/status`.
pub(super) fn barrio_fields(id: u64) -> (Value, Value) {
    let (hex, name, _) = naming(id);
    (hex, name)
}

/// One barrio as the API shows it.
pub(super) fn barrio_json(b: &BarrioView) -> Value {
    let (id, name, emoji) = naming(b.id.0);
    let c = &b.centroid;
    let health: Map<String, Value> = BARRIO_HEALTH
        .iter()
        .zip(&c.health)
        .map(|(feature, v)| ((*feature).to_string(), finite(f64::from(*v))))
        .collect();
    let centroid = (c.count > 0)
        .then(|| c.coordinate.vec.iter().map(|x| finite(x * 1e3)).collect::<Vec<Value>>());
    json!({
        "id": id,
        "name": name,
        "emoji": emoji,
        "count": b.members.len(),
        "members": b.members.iter().map(pid).collect::<Vec<String>>(),
        "head": b.head.as_ref().map(pid),
        "centroid_ms": centroid,
        "height_ms": (c.count > 0).then(|| finite(c.coordinate.height * 1e3)),
        "health": health,
        "own": b.own,
    })
}

/// A number, or `null` for one that JSON cannot carry.
fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// This peer's barrio (`id` null until it has one), with how often it changed.
fn own_json(engine: &Engine<ChaCha20Rng>) -> Value {
    let (id, changes) = engine.barrio();
    let (hex, name, emoji) = naming(id);
    json!({"id": hex, "name": name, "emoji": emoji, "changes": changes})
}

/// `GET /v1/barrios`: this peer's barrio and every barrio it holds a member's slot of,
/// ordered by id.
pub(super) fn barrios(engine: &Engine<ChaCha20Rng>) -> Value {
    let mut list = engine.barrios();
    list.sort_by_key(|b| b.id.0);
    json!({
        "barrio": own_json(engine),
        "barrios": list.iter().map(barrio_json).collect::<Vec<Value>>(),
    })
}

/// `GET /v1/barrios?id=`: one barrio, by its 16-hex id.
pub(super) fn barrio(engine: &Engine<ChaCha20Rng>, given: &str) -> Result<Value, BarriosError> {
    let id = parse_barrio_id(given)?;
    engine
        .barrios()
        .iter()
        .find(|b| b.id.0 == id)
        .map(barrio_json)
        .ok_or_else(|| BarriosError::UnknownBarrio(barrio_hex(id)))
}

impl Node {
    /// `vecino_barrio_members`, `vecino_barrios_known`, `vecino_barrio_changes_total`.
    pub(super) fn record_barrios(&self) {
        let list = self.engine.barrios();
        let members = list.iter().find(|b| b.own).map_or(0, |b| b.members.len());
        metrics::gauge!("vecino_barrio_members").set(members as f64);
        metrics::gauge!("vecino_barrios_known").set(list.len() as f64);
        metrics::counter!("vecino_barrio_changes_total").absolute(self.engine.barrio().1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_hex_digits_and_never_zero() {
        assert_eq!(parse_barrio_id("00000000000000ff"), Ok(255));
        assert_eq!(parse_barrio_id("ABCDEFabcdef0123"), Ok(0xabcd_efab_cdef_0123));
        let why = |s: &str| match parse_barrio_id(s) {
            Err(BarriosError::BadId { why, .. }) => why,
            other => panic!("{s:?}: {other:?}"),
        };
        assert!(why("").contains("16 hex"));
        assert!(why("ff").contains("16 hex"));
        assert!(why("0x000000000000ff").contains("hex"));
        assert!(why("+00000000000000f").contains("hex"));
        assert!(why("éééééééé").contains("hex"));
        assert!(why("0000000000000000").contains("no barrio"));
        let long = parse_barrio_id(&"é".repeat(500)).unwrap_err().to_string();
        assert!(long.len() < 200, "what was given is cut: {long}");
        assert_eq!(barrio_hex(255), "00000000000000ff");
    }

    #[test]
    fn a_member_without_a_slot_takes_its_newspapers_barrio_or_none() {
        let (a, b) = (AuthorKey::from_slice(&[1; 32]), AuthorKey::from_slice(&[2; 32]));
        let (a, b) = (a.unwrap(), b.unwrap());
        let slots = HashMap::from([(a, 7)]);
        assert_eq!(barrio_of(&slots, &a, 9), 7, "the slot wins over the newspaper");
        assert_eq!(barrio_of(&slots, &b, 9), 9);
        assert_eq!(barrio_of(&slots, &b, 0), 0);
        assert_eq!(barrio_fields(0), (Value::Null, Value::Null));
        let (hex, name) = barrio_fields(7);
        assert_eq!(hex, "0000000000000007");
        assert_eq!(name, BarrioId(7).name());
    }
}
