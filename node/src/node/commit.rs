//! The group commit: `Persist` operations and delivered posts gather in a batch, and every
//! later `Send`, delivery and API reply is held behind it until the batch is on disk, committed
//! once per loop turn. So nothing that could acknowledge an event leaves before the event is
//! durable ("Persist before any Send that acknowledges it", `vecino_gossip::io`), at one fsync
//! per turn rather than one per event. Pings and pongs acknowledge nothing and skip the queue.

use serde_json::{Value, json};
use tokio::sync::oneshot;
use vecino_gossip::{AppEvent, MemberChange};
use vecino_proto::{AuthorKey, Bytes, pb};

use super::Node;
use super::views::{pid, short};
use crate::api::ApiEvent;
use crate::peer;
use crate::store::PostRecord;

#[derive(Debug)]
pub(super) enum Held {
    Send(AuthorKey, Bytes),
    Event(ApiEvent),
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

impl Node {
    pub(super) fn holding(&self) -> bool {
        !self.ops.is_empty() || !self.posts.is_empty() || !self.held.is_empty()
    }

    pub(super) fn emit(&mut self, ev: ApiEvent) {
        if self.holding() {
            self.held.push(Held::Event(ev));
        } else {
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
                self.posts.push(record.clone());
                let value = serde_json::to_value(&record).unwrap_or(Value::Null);
                if record.own
                    && let Some(reply) = self.post_reply.take()
                {
                    self.held.push(Held::Reply(reply, value.clone()));
                }
                self.held.push(Held::Event(ApiEvent::new("post", value)));
            }
            AppEvent::Link { peer, status } => {
                tracing::info!(peer = %short(&peer), status = status.name(), "link");
                let v = json!({"peer_id": pid(&peer), "status": status.name()});
                self.emit(ApiEvent::new("link", v));
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
        if !self.ops.is_empty() || !self.posts.is_empty() {
            let started = std::time::Instant::now();
            let (store, ops, posts, kept) =
                (&self.store, &self.ops, &self.posts, self.cfg.posts_kept);
            let result = tokio::task::block_in_place(|| store.commit(ops, posts, kept));
            metrics::histogram!("vecino_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("vecino_store_commits_total").increment(1);
            if let Err(e) = result {
                // Nothing held may go out: it could acknowledge what is not on disk.
                tracing::error!("store commit failed: {e}; stopping");
                self.held.clear();
                self.failed = Some(anyhow::anyhow!("store commit failed: {e}"));
                return;
            }
            self.ops.clear();
            self.posts.clear();
        }
        for h in std::mem::take(&mut self.held) {
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
