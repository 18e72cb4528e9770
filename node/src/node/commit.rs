//! The group commit: `Persist` operations and delivered posts gather in a [`Batch`], and every
//! later `Send`, delivery and API reply is held behind it until the batch is on disk, committed
//! once per loop turn. So nothing that could acknowledge an event leaves before the event is
//! durable ("Persist before any Send that acknowledges it", `vecino_gossip::io`), at one fsync
//! per turn rather than one per event. Pings and pongs acknowledge nothing and skip the queue,
//! so RTT samples do not include fsync time.
//!
//! [`Batch`] knows nothing of the store: [`Batch::commit`] is handed the write, so the rule is
//! tested here with a fake one.

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use vecino_gossip::{AppEvent, MemberChange, StoreOp};
use vecino_proto::{AuthorKey, Bytes, pb};

use super::views::{self, pid, short};
use super::{Node, STORE_RETRY, StoreDown};
use crate::api::ApiEvent;
use crate::peer;
use crate::store::{Kept, PostRecord, PostcardRecord, Writes};

/// Milliseconds since the Unix epoch, now (for postcard records).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An output waiting for the batch ahead of it to be on disk.
#[derive(Debug)]
pub(super) enum Held {
    /// A frame for a neighbour (it may acknowledge events in the batch).
    Send(AuthorKey, Bytes),
    /// An event for the stream.
    Event(ApiEvent),
    /// The reply to `POST /v1/posts`: the stored post.
    Reply(oneshot::Sender<Result<Value, String>>, Value),
}

/// Pings and pongs acknowledge nothing; they skip the commit queue so RTT samples exclude fsync.
pub(super) fn is_ping_or_pong(frame: &[u8]) -> bool {
    use prost::Message;
    frame.len() <= 128
        && matches!(
            pb::Frame::decode(frame).map(|f| f.kind),
            Ok(Some(pb::frame::Kind::Ping(_) | pb::frame::Kind::Pong(_)))
        )
}

/// What is to be written, and what waits for it. Bounded by one loop turn: the node commits
/// it after at most `MAX_BATCH` inputs.
#[derive(Debug, Default)]
pub(super) struct Batch {
    ops: Vec<StoreOp>,
    posts: Vec<PostRecord>,
    postcards: Vec<PostcardRecord>,
    held: Vec<Held>,
}

impl Batch {
    /// Whether anything waits: then every later output that could acknowledge waits too.
    fn holding(&self) -> bool {
        !self.ops.is_empty()
            || !self.posts.is_empty()
            || !self.postcards.is_empty()
            || !self.held.is_empty()
    }

    /// A store operation, to be written with the batch.
    pub(super) fn persist(&mut self, op: StoreOp) {
        self.ops.push(op);
    }

    /// A delivered post: written with the batch; its event goes out once it is on disk.
    pub(super) fn post(&mut self, record: PostRecord) {
        let value = serde_json::to_value(&record).unwrap_or(Value::Null);
        self.posts.push(record);
        self.held.push(Held::Event(ApiEvent::new("post", value)));
    }

    /// A postcard record (new or with a new status): written with the batch; its event,
    /// `kind`, goes out once it is on disk, and `reply`, if given, with the record.
    pub(super) fn postcard(
        &mut self,
        record: PostcardRecord,
        kind: &'static str,
        reply: Option<oneshot::Sender<Result<Value, String>>>,
    ) {
        let value = serde_json::to_value(&record).unwrap_or(Value::Null);
        self.postcards.push(record);
        if let Some(reply) = reply {
            self.held.push(Held::Reply(reply, value.clone()));
        }
        self.held.push(Held::Event(ApiEvent::new(kind, value)));
    }

    /// The reply to the command that made event `id`: the post record with that id when it
    /// is in this batch (it goes out once the post is on disk), else the event id alone, held
    /// behind whatever waits.
    pub(super) fn reply(&mut self, id: &str, reply: oneshot::Sender<Result<Value, String>>) {
        let value = self
            .posts
            .iter()
            .rev()
            .find(|p| p.id == id)
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or_else(|| json!({ "id": id }));
        self.held.push(Held::Reply(reply, value));
    }

    /// A frame for `to`: back if it may go now (nothing waits, or it is a ping or a pong),
    /// else held.
    pub(super) fn send(&mut self, to: AuthorKey, frame: Bytes) -> Option<(AuthorKey, Bytes)> {
        if self.holding() && !is_ping_or_pong(&frame) {
            self.held.push(Held::Send(to, frame));
            None
        } else {
            Some((to, frame))
        }
    }

    /// An event for the stream: back if it may go now, else held (events keep their order
    /// with the posts and frames around them).
    pub(super) fn event(&mut self, ev: ApiEvent) -> Option<ApiEvent> {
        if self.holding() {
            self.held.push(Held::Event(ev));
            None
        } else {
            Some(ev)
        }
    }

    /// Writes the batch with `write` (not called when there is nothing to write), then hands
    /// back what was held, in order. When the write fails nothing held is handed back (it
    /// could acknowledge what is not on disk) and the batch is kept whole, to be written again.
    pub(super) fn commit<E>(
        &mut self,
        write: impl FnOnce(&[StoreOp], &Writes<'_>) -> Result<(), E>,
    ) -> Result<Vec<Held>, E> {
        if !self.ops.is_empty() || !self.posts.is_empty() || !self.postcards.is_empty() {
            let writes = Writes { posts: &self.posts, postcards: &self.postcards };
            write(&self.ops, &writes)?;
            self.ops.clear();
            self.posts.clear();
            self.postcards.clear();
        }
        Ok(std::mem::take(&mut self.held))
    }
}

impl Node {
    /// An event for the stream, behind the batch.
    pub(super) fn emit(&mut self, ev: ApiEvent) {
        if let Some(ev) = self.batch.event(ev) {
            let _ = self.events.send(ev);
        }
    }

    pub(super) fn deliver(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Post(p) => {
                let record = PostRecord {
                    cursor: self.next_cursor,
                    id: p.id.to_string(),
                    author: p.author.to_string(),
                    peer_id: peer::peer_id_of(&p.author).map(|x| x.to_string()).unwrap_or_default(),
                    seq: p.seq,
                    hlc_ms: p.hlc.ms,
                    topic: p.topic,
                    text: String::from_utf8_lossy(&p.body).into_owned(),
                    own: p.own,
                };
                self.next_cursor += 1;
                self.batch.post(record);
            }
            AppEvent::Accepted { id, event } => {
                let reply = self.replies.remove(&id);
                if let Some(record) = self.mail.accepted(id, event, now_ms()) {
                    metrics::counter!("vecino_postcards_sent_total").increment(1);
                    self.batch.postcard(record, "postcard_status", reply);
                } else if let Some(reply) = reply {
                    // The reply waits for the post it made to be on disk, like the post's
                    // event.
                    self.batch.reply(&event.to_string(), reply);
                }
            }
            AppEvent::Postcard(p) => {
                let engine = &self.engine;
                let record = self
                    .mail
                    .received(&p, now_ms(), &views::pid, &|x| views::name_prefix(engine, x));
                tracing::info!(from = %short(&p.from), hops = p.trail.len(), "postcard");
                metrics::counter!("vecino_postcards_received_total").increment(1);
                self.batch.postcard(record, "postcard", None);
            }
            AppEvent::PostcardStatus { id, status, .. } => {
                let engine = &self.engine;
                let name = |x| views::name_prefix(engine, x);
                if let Some(record) = self.mail.status(id, &status, now_ms(), &name) {
                    let label = record.status.clone();
                    metrics::counter!("vecino_postcards_status_total", "status" => label)
                        .increment(1);
                    self.batch.postcard(record, "postcard_status", None);
                }
            }
            AppEvent::Refused { id, reason } => {
                tracing::warn!(command = id, %reason, "the engine refused a command");
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(Err(reason));
                }
            }
            AppEvent::Link { peer, status } => {
                tracing::info!(peer = %short(&peer), status = status.name(), "link");
                let v = json!({"peer_id": pid(&peer), "status": status.name()});
                self.emit(ApiEvent::new("link", v));
            }
            AppEvent::Status { peer, status } => {
                tracing::info!(peer = %short(&peer), status = status.as_str(), "status");
                metrics::counter!("vecino_peer_status_changes_total", "status" => status.as_str())
                    .increment(1);
                let v = json!({"peer_id": pid(&peer), "status": status.as_str()});
                self.emit(ApiEvent::new("status", v));
            }
            AppEvent::Coherence(a) => {
                let state = if a.raised { "raised" } else { "cleared" };
                let barrio = vecino_coords::BarrioId(a.barrio);
                tracing::warn!(barrio = %barrio, state, d2 = a.d2, "coherence");
                metrics::counter!("vecino_coherence_alarms_total", "state" => state).increment(1);
                let moved: Vec<Value> =
                    a.moved.iter().map(|(f, z)| json!({"feature": f, "z": z})).collect();
                let v = json!({
                    "barrio": format!("{:016x}", a.barrio), "name": barrio.name(),
                    "emoji": barrio.emoji(), "state": state, "d2": a.d2,
                    "threshold": a.threshold, "moved": moved, "health": a.health,
                    "baseline": a.baseline,
                });
                self.emit(ApiEvent::new("coherence", v));
            }
            AppEvent::Member { peer, change } => {
                let change = match change {
                    MemberChange::Joined => "joined",
                    MemberChange::Updated => "updated",
                    MemberChange::Left => "left",
                };
                if change != "updated" {
                    tracing::info!(peer = %short(&peer), change, "member");
                }
                let v = json!({"peer_id": pid(&peer), "change": change});
                self.emit(ApiEvent::new("member", v));
            }
            AppEvent::Rtt { rtt, .. } => {
                metrics::histogram!("vecino_rtt_seconds").record(rtt.as_secs_f64());
            }
            AppEvent::Equivocation(proof) => {
                tracing::warn!(author = %proof.author(), "equivocation: an author signed two events at one seq");
                self.emit(ApiEvent::new(
                    "equivocation",
                    json!({"author": proof.author().to_string()}),
                ));
            }
        }
    }

    /// Commits the pending batch, then releases what waited for it.
    pub(super) fn flush(&mut self) {
        let store = &self.store;
        let kept = Kept { posts: self.cfg.posts_kept, postcards: self.cfg.postcards_kept };
        let result = self.batch.commit(|ops, writes| {
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| store.commit(ops, writes, kept));
            metrics::histogram!("vecino_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("vecino_store_commits_total").increment(1);
            result
        });
        let released = match result {
            Ok(released) => {
                if let Some(down) = self.store_down.take() {
                    tracing::info!(
                        down_s = down.since.elapsed().as_secs(),
                        "the store is writable again; carrying on"
                    );
                    metrics::gauge!("vecino_store_writable").set(1.0);
                }
                released
            }
            Err(e) => {
                // A full disk (or another write failure): nothing that waited for the write
                // goes out, the batch is kept, reads go on being served, and writes are tried
                // again every STORE_RETRY (see `Node::run`): no exit, no crash loop.
                if self.store_down.is_none() {
                    tracing::error!(
                        "store commit failed: {e}; refusing writes and serving reads until a \
                         write succeeds again (tried every {}s)",
                        STORE_RETRY.as_secs()
                    );
                }
                metrics::counter!("vecino_store_commit_failures_total").increment(1);
                metrics::gauge!("vecino_store_writable").set(0.0);
                let since = self.store_down.as_ref().map_or_else(Instant::now, |d| d.since);
                self.store_down = Some(StoreDown {
                    since,
                    error: e.to_string(),
                    retry_at: Instant::now() + STORE_RETRY,
                });
                // redb refuses everything after a failed write until it is opened again.
                if let Err(e) = tokio::task::block_in_place(|| self.store.reopen()) {
                    tracing::warn!("cannot reopen the store yet: {e}");
                }
                return;
            }
        };
        for h in released {
            match h {
                Held::Send(to, frame) => self.transmit(to, frame),
                Held::Event(ev) => {
                    let _ = self.events.send(ev);
                }
                Held::Reply(reply, v) => {
                    let _ = reply.send(Ok(v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use vecino_proto::Identity;

    use super::*;

    fn key() -> AuthorKey {
        Identity::from_seed([7; 32]).public()
    }

    fn op(seq: u64) -> StoreOp {
        StoreOp::Delete { author: key(), stream: pb::Stream::Post, seq }
    }

    fn frame(kind: pb::frame::Kind) -> Bytes {
        Bytes::from(pb::Frame { kind: Some(kind), ..Default::default() }.encode_to_vec())
    }

    /// A frame that is neither a ping nor a pong (it could acknowledge events).
    fn ack() -> Bytes {
        frame(pb::frame::Kind::Bye(pb::Bye { reason: 1 }))
    }

    fn record(cursor: u64) -> PostRecord {
        PostRecord {
            cursor,
            id: "00".into(),
            author: key().to_string(),
            peer_id: String::new(),
            seq: cursor,
            hlc_ms: 0,
            topic: "t".into(),
            text: "hello".into(),
            own: true,
        }
    }

    /// What the fake store was asked to write.
    #[derive(Default)]
    struct Written(Vec<(usize, usize)>);

    impl Written {
        fn write(&mut self, ops: &[StoreOp], writes: &Writes<'_>) -> Result<(), String> {
            self.0.push((ops.len(), writes.posts.len() + writes.postcards.len()));
            Ok(())
        }
    }

    #[test]
    fn what_follows_a_persist_waits_for_the_write_and_pings_do_not() {
        let mut batch = Batch::default();
        let mut disk = Written::default();
        // Nothing waits: a frame and an event go at once, and nothing is written.
        assert!(batch.send(key(), ack()).is_some());
        assert!(batch.event(ApiEvent::new("link", json!(1))).is_some());
        assert!(batch.commit(|o, p| disk.write(o, p)).unwrap().is_empty());
        assert!(disk.0.is_empty());

        batch.persist(op(1));
        assert!(batch.send(key(), ack()).is_none(), "it may acknowledge op 1");
        let ping = frame(pb::frame::Kind::Ping(pb::Ping { nonce: 2, slow: false }));
        let pong = frame(pb::frame::Kind::Pong(pb::Pong { nonce: 2, ..Default::default() }));
        assert!(batch.send(key(), ping).is_some(), "a ping acknowledges nothing");
        assert!(batch.send(key(), pong).is_some(), "a pong acknowledges nothing");
        assert!(batch.event(ApiEvent::new("link", json!(2))).is_none());
        batch.persist(op(2));
        assert!(batch.send(key(), ack()).is_none());

        let released = batch.commit(|o, p| disk.write(o, p)).unwrap();
        assert_eq!(disk.0, vec![(2, 0)], "one write for the whole batch");
        let kinds: Vec<&str> = released
            .iter()
            .map(|h| match h {
                Held::Send(..) => "send",
                Held::Event(_) => "event",
                Held::Reply(..) => "reply",
            })
            .collect();
        assert_eq!(kinds, ["send", "event", "send"], "in the order they came");
        // Written: the next frame goes at once.
        assert!(batch.send(key(), ack()).is_some());
    }

    #[test]
    fn a_post_is_replied_to_only_once_written() {
        let mut batch = Batch::default();
        let (tx, mut rx) = oneshot::channel();
        batch.post(record(5));
        let id = record(5).id;
        batch.reply(&id, tx);
        assert!(batch.event(ApiEvent::new("member", json!(0))).is_none());
        assert!(rx.try_recv().is_err(), "no reply before the write");
        let mut disk = Written::default();
        let released = batch.commit(|o, p| disk.write(o, p)).unwrap();
        assert_eq!(disk.0, vec![(0, 1)]);
        assert_eq!(released.len(), 3);
        let Some(Held::Reply(reply, v)) = released.into_iter().nth(1) else {
            panic!("the reply after the post's event")
        };
        assert_eq!(v["cursor"], 5);
        reply.send(Ok(v)).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap()["text"], "hello");
    }

    #[test]
    fn a_failed_write_releases_nothing() {
        let mut batch = Batch::default();
        batch.persist(op(1));
        assert!(batch.send(key(), ack()).is_none());
        assert!(batch.event(ApiEvent::new("link", json!(1))).is_none());
        let failed = batch.commit(|_, _| Err("disk full"));
        assert_eq!(failed.unwrap_err(), "disk full");
        // The op is still unwritten: what comes next still waits.
        assert!(batch.send(key(), ack()).is_none());
        // Space returns: the same batch is written whole, and everything held goes out, in
        // order.
        let mut written = Vec::new();
        let released = batch
            .commit(|ops, _| {
                written.extend(ops.iter().cloned());
                Ok::<(), &str>(())
            })
            .unwrap();
        assert_eq!(written, vec![op(1)]);
        assert_eq!(released.len(), 3, "two frames and the event, in order");
        assert!(matches!(released[0], Held::Send(..)) && matches!(released[1], Held::Event(..)));
    }
}
