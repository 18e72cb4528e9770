//! The node's postcards: what it received (its inbox) and what it sent, with where each sent
//! one stands, as records for `GET /v1/postcards` and the event stream.
//!
//! [`Mail`] turns the engine's answers into records: `Accepted` for a postcard command makes
//! a `sent` record "custody" (held here), `PostcardStatus` moves it to "forwarded",
//! "delivered" (with the path its receipt reported) or "expired", and `Postcard` makes an
//! `inbox` record "received". Records are written with the group commit, so a reply or an
//! event about one never leaves before it is on disk. It knows nothing of the store or the
//! swarm, so it is tested alone.

use std::collections::BTreeMap;

use vecino_gossip::{DeliveredPostcard, PostcardStatus};
use vecino_proto::{AuthorKey, EventId};

use crate::store::PostcardRecord;

/// Sent postcards whose fate is followed at most (older ones are forgotten: their record
/// keeps its last status).
pub(super) const MAX_OPEN: usize = 10_000;
/// Postcard commands waiting for the engine's answer at most.
const MAX_PENDING: usize = 64;

/// A postcard command fed to the engine, not answered yet.
#[derive(Debug, Clone)]
struct Pending {
    to: String,
    text: String,
}

/// The node's postcard records.
#[derive(Debug, Default)]
pub(super) struct Mail {
    pending: BTreeMap<u64, Pending>,
    /// Sent postcards not yet delivered or expired (at most [`MAX_OPEN`]).
    open: BTreeMap<EventId, PostcardRecord>,
    next_cursor: u64,
}

impl Mail {
    /// The mail of a node whose last record number is `last`, following `open` (its sent
    /// postcards still in custody or forwarded, from the store).
    pub(super) fn new(last: u64, open: Vec<PostcardRecord>) -> Self {
        let open = open
            .into_iter()
            .filter_map(|r| Some((EventId(hex_id(&r.id)?), r)))
            .take(MAX_OPEN)
            .collect();
        Self { pending: BTreeMap::new(), open, next_cursor: last + 1 }
    }

    fn cursor(&mut self) -> u64 {
        let c = self.next_cursor;
        self.next_cursor += 1;
        c
    }

    /// Command `cmd` asks the engine to send `text` to `to` (a peer id).
    pub(super) fn pending(&mut self, cmd: u64, to: String, text: String) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_first();
        }
        self.pending.insert(cmd, Pending { to, text });
    }

    /// The engine refused command `cmd` (or it was not a postcard).
    pub(super) fn forget(&mut self, cmd: u64) {
        self.pending.remove(&cmd);
    }

    /// The engine sent command `cmd` as postcard `event` at `now_ms`: its record, "custody".
    pub(super) fn accepted(
        &mut self,
        cmd: u64,
        event: EventId,
        now_ms: u64,
    ) -> Option<PostcardRecord> {
        let p = self.pending.remove(&cmd)?;
        let record = PostcardRecord {
            cursor: self.cursor(),
            id: event.to_string(),
            mailbox: "sent".into(),
            peer_id: p.to,
            text: p.text,
            status: "custody".into(),
            sent_ms: now_ms,
            updated_ms: now_ms,
            path: Vec::new(),
        };
        if self.open.len() >= MAX_OPEN {
            self.open.pop_first();
        }
        self.open.insert(event, record.clone());
        Some(record)
    }

    /// A postcard for this node arrived: its inbox record; `name` names a peer (peer id) by
    /// key, or a key prefix when it cannot.
    pub(super) fn received(
        &mut self,
        p: &DeliveredPostcard,
        now_ms: u64,
        name: &dyn Fn(&AuthorKey) -> String,
        name_prefix: &dyn Fn(u64) -> String,
    ) -> PostcardRecord {
        PostcardRecord {
            cursor: self.cursor(),
            id: p.id.to_string(),
            mailbox: "inbox".into(),
            peer_id: name(&p.from),
            text: String::from_utf8_lossy(&p.body).into_owned(),
            status: "received".into(),
            sent_ms: p.hlc.ms,
            updated_ms: now_ms,
            path: p.trail.iter().map(|x| name_prefix(*x)).collect(),
        }
    }

    /// A sent postcard moved on: its record updated (the same record number), if followed.
    pub(super) fn status(
        &mut self,
        id: EventId,
        status: &PostcardStatus,
        now_ms: u64,
        name_prefix: &dyn Fn(u64) -> String,
    ) -> Option<PostcardRecord> {
        let r = self.open.get_mut(&id)?;
        r.updated_ms = now_ms;
        let done = match status {
            PostcardStatus::Forwarded { .. } => {
                r.status = "forwarded".into();
                false
            }
            PostcardStatus::Delivered { trail } => {
                r.status = "delivered".into();
                r.path = trail.iter().map(|x| name_prefix(*x)).collect();
                true
            }
            PostcardStatus::Expired => {
                r.status = "expired".into();
                true
            }
        };
        let r = r.clone();
        if done {
            self.open.remove(&id);
        }
        Some(r)
    }
}

/// An event id from its hex form.
fn hex_id(s: &str) -> Option<[u8; 32]> {
    let bytes = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok());
    bytes.collect::<Option<Vec<u8>>>()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::{Bytes, Hlc};

    fn id(n: u8) -> EventId {
        EventId([n; 32])
    }

    /// A sent postcard's record goes custody → forwarded → delivered (with its path) under
    /// one record number, and is no longer followed after.
    #[test]
    fn a_sent_postcard_moves_from_custody_to_delivered() {
        let mut m = Mail::new(7, Vec::new());
        m.pending(1, "peer-b".into(), "hola".into());
        let r = m.accepted(1, id(1), 100).expect("a record");
        assert_eq!((r.cursor, r.status.as_str(), r.mailbox.as_str()), (8, "custody", "sent"));
        let name = |p: u64| format!("p{p}");
        let fwd = PostcardStatus::Forwarded { next: AuthorKey([2; 32]) };
        assert_eq!(m.status(id(1), &fwd, 200, &name).expect("followed").status, "forwarded");
        let done = PostcardStatus::Delivered { trail: vec![1, 2, 3] };
        let r = m.status(id(1), &done, 300, &name).expect("followed");
        assert_eq!((r.cursor, r.status.as_str()), (8, "delivered"));
        assert_eq!(r.path, ["p1", "p2", "p3"]);
        assert!(m.status(id(1), &PostcardStatus::Expired, 400, &name).is_none(), "done");
        assert!(m.accepted(2, id(2), 100).is_none(), "not a postcard command");
    }

    /// A received postcard is an inbox record with its text and path; a restarted node
    /// still follows the postcards its store says are open.
    #[test]
    fn the_inbox_and_a_restart() {
        let mut m = Mail::new(0, Vec::new());
        let p = DeliveredPostcard {
            id: id(3),
            from: AuthorKey([9; 32]),
            seq: 1,
            hlc: Hlc { ms: 50, counter: 0 },
            body: Bytes::from_static(b"hola"),
            trail: vec![9, 0],
            detours: 0,
        };
        let r = m.received(&p, 60, &|_| "author".into(), &|x| format!("p{x}"));
        assert_eq!(
            (r.mailbox.as_str(), r.text.as_str(), r.peer_id.as_str()),
            ("inbox", "hola", "author")
        );
        assert_eq!(r.path, ["p9", "p0"]);
        let mut open = r.clone();
        open.mailbox = "sent".into();
        open.status = "forwarded".into();
        let mut again = Mail::new(5, vec![open]);
        let st = again.status(id(3), &PostcardStatus::Expired, 70, &|x| format!("p{x}"));
        assert_eq!(st.map(|r| r.status), Some("expired".to_string()));
    }
}
