//! Durable state in one redb file: events, delivered posts, the peer book, metadata.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name (`format`, `schema_version`, `coordinate`) | bytes |
//! | `events` | author (32) ‖ stream (i32 BE) ‖ seq (u64 BE) | the signed envelope, as received |
//! | `posts` | delivery number (u64) | a delivered post (JSON), for `GET /v1/posts` |
//! | `postcards` | record number (u64) | a postcard received or sent here and its status (JSON), for `GET /v1/postcards` |
//! | `peers` | PeerId bytes | known addresses (JSON), for redialling after a restart |
//!
//! Events are the engine's state: on start they are read back, verified again
//! (`Verifier::verify_stored`: a file edited or damaged on disk cannot inject an event) and
//! handed to `Engine::new`. The node's own coordinate is saved beside them (`meta/coordinate`,
//! every half minute when it moved, and on shutdown): newspapers are gated on movement, so the
//! last published one can be minutes old; the saved one is at most half a minute old.
//! [`Store::commit`] applies a batch of engine [`StoreOp`]s and delivered posts in one write
//! transaction with immediate durability (fsync): the node holds every frame the engine emitted
//! after a `Persist` until that commit returned, so nothing is acknowledged before it is on
//! disk, and a `kill -9` loses nothing acknowledged. Batching many inputs per commit (group
//! commit) is what makes that affordable.
//!
//! The custody and outgoing queues are not a table of their own: a neighbour's queue is the
//! set of stored events it has not acknowledged, and after a restart the engine rebuilds it
//! from the store by exchanging version vectors on every new link (each side sends what the
//! other lacks, latest-value events newest first). Postcards in custody are stored events too
//! (until the next hop takes them), and so are postcards delivered here (until they expire, so
//! that a restart still knows them). So what a node held in custody when it was killed is sent
//! again from its durable log, and a queue can never disagree with the log.
//!
//! A file that is not a redb database, or a redb database that is not a vecino store, or a
//! vecino store of another schema version, is refused with an error saying which.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};
use vecino_coords::Coordinate;
use vecino_gossip::{Persist, StoreOp};
use vecino_proto::{AuthorKey, Bytes, VerifiedEvent, Verifier, pb};

/// What this file is.
const FORMAT: &[u8] = b"vecino-node-store";
/// The layout version of the tables above; a newer one is refused, not guessed at, and an
/// older one migrated on open (1 → 2: `POSTS` held each post's JSON, a second, escaped copy of
/// the event log's bodies; it now holds references into `EVENTS`).
pub const SCHEMA_VERSION: u32 = 2;

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Where each delivered post sits in `POSTS`, by `post_index_key`: so that a post the engine
/// forgets leaves the API's table too.
const POST_CURSORS: TableDefinition<'_, &str, u64> = TableDefinition::new("post_cursors");
/// redb's page cache (its default, 1 GiB, let a node's memory grow with its history).
const CACHE_BYTES: usize = 16 << 20;
/// The `META` key of schema 1's byte count of `POSTS` (removed by the migration).
const POSTS_BYTES_V1: &str = "posts_bytes";
const EVENTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("events");
/// Delivered posts by delivery number: a [`PostRef`] each (the post itself is in `EVENTS`, read
/// and verified again when listed), so the API costs no second copy of a post's body.
const POSTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("posts");
const PEERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("peers");
const POSTCARDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("postcards");

/// `meta/coordinate`: a tag, the dimension count, then `vec ‖ height ‖ error ‖ adjustment` as
/// little-endian f64s.
const COORDINATE_TAG: &[u8; 4] = b"vc01";

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the file open.
    #[error("{0} is in use by another vecino process (one node per data directory)")]
    InUse(PathBuf),
    /// Not a redb file, or damaged beyond repair.
    #[error("{path} is not a vecino store or is damaged ({detail}); move it away to start afresh")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// A redb database, but not one of ours.
    #[error("{0} is a database of another program, not a vecino store; refusing to touch it")]
    Foreign(PathBuf),
    /// Ours, but of another layout.
    #[error("{path} has store schema version {found}, this vecino reads version {SCHEMA_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A read or write failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// The database is being opened again after a failed write (see [`Store::reopen`]).
    #[error("the store is being reopened after a failed write; try again")]
    Reopening,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
db_err!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A post as delivered to this node, kept for the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostRecord {
    /// Delivery number on this node (the `since` cursor of `GET /v1/posts`).
    pub cursor: u64,
    /// Event id (hex).
    pub id: String,
    /// Author key (hex).
    pub author: String,
    /// Author's libp2p peer id.
    pub peer_id: String,
    /// Seq in the author's post stream.
    pub seq: u64,
    /// Author's clock when posting (ms since the epoch).
    pub hlc_ms: u64,
    /// Topic.
    pub topic: String,
    /// Body (UTF-8; invalid sequences replaced).
    pub text: String,
    /// This node's own post.
    pub own: bool,
}

impl PostRecord {
    /// The record of post `ev`, delivered here as number `cursor`.
    fn of(cursor: u64, ev: &VerifiedEvent, own: bool) -> Option<Self> {
        let pb::event::Body::Post(p) = ev.body() else { return None };
        Some(PostRecord {
            cursor,
            id: ev.id().to_string(),
            author: ev.author().to_string(),
            peer_id: crate::peer::peer_id_of(&ev.author())
                .map(|x| x.to_string())
                .unwrap_or_default(),
            seq: ev.seq(),
            hlc_ms: ev.hlc().ms,
            topic: p.topic.clone(),
            text: String::from_utf8_lossy(&p.body).into_owned(),
            own,
        })
    }
}

/// A `POSTS` value: a tag, whether the post is this node's own, the post's `EVENTS` key, then
/// its topic (≤ 128 bytes, so that a listing by topic reads only the posts it returns).
const POST_REF_TAG: u8 = b'r';
/// The length of a `POSTS` value before the topic.
const POST_REF_BYTES: usize = 2 + 44;

/// Where a delivered post is: its `EVENTS` key (author, stream, seq), whether it is ours, and
/// its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PostRef {
    key: [u8; 44],
    own: bool,
    topic: String,
}

impl PostRef {
    fn new(author: &AuthorKey, seq: u64, own: bool, topic: &str) -> Self {
        PostRef { key: event_key(author, pb::Stream::Post, seq), own, topic: topic.to_owned() }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(POST_REF_BYTES + self.topic.len());
        b.extend_from_slice(&[POST_REF_TAG, u8::from(self.own)]);
        b.extend_from_slice(&self.key);
        b.extend_from_slice(self.topic.as_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < POST_REF_BYTES || b[0] != POST_REF_TAG || b[1] > 1 {
            return None;
        }
        Some(PostRef {
            key: b[2..POST_REF_BYTES].try_into().ok()?,
            own: b[1] == 1,
            topic: String::from_utf8(b[POST_REF_BYTES..].to_vec()).ok()?,
        })
    }

    /// The `POST_CURSORS` key of this post.
    fn index_key(&self) -> String {
        let author = AuthorKey::from_slice(&self.key[..32]).map(|a| a.to_string());
        let seq = u64::from_be_bytes(self.key[36..].try_into().unwrap_or_default());
        post_index_key(&author.unwrap_or_default(), seq)
    }
}

/// A postcard received here or sent from here, as `GET /v1/postcards` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostcardRecord {
    /// Record number, increasing (a status change keeps it).
    pub cursor: u64,
    /// The postcard's event id (hex).
    pub id: String,
    /// `inbox` (received here) or `sent`.
    #[serde(rename = "box")]
    pub mailbox: String,
    /// The other end's libp2p peer id (its author for the inbox, its destination when sent).
    pub peer_id: String,
    /// The text (UTF-8; invalid sequences replaced).
    pub text: String,
    /// `received`; or, sent: `custody` (held here), `forwarded` (the first hop took it),
    /// `delivered` (its receipt came back), `expired`.
    pub status: String,
    /// When it was sent (its author's clock, ms since the epoch).
    pub sent_ms: u64,
    /// When its status last changed here (ms since the epoch).
    pub updated_ms: u64,
    /// The peers it crossed, author to destination (peer ids, or key prefixes this node could
    /// not name), once known.
    pub path: Vec<String>,
}

/// What one commit writes besides the engine's operations.
#[derive(Debug, Default)]
pub struct Writes<'a> {
    /// Delivered posts, appended.
    pub posts: &'a [PostRecord],
    /// Postcard records, written by their record number (a status change overwrites).
    pub postcards: &'a [PostcardRecord],
}

/// How many posts and postcard records are kept. (The posts' bytes are the event log's,
/// bounded by the engine's budgets: the API's table holds only references.)
#[derive(Debug, Clone, Copy)]
pub struct Kept {
    /// Posts.
    pub posts: u64,
    /// Postcard records.
    pub postcards: u64,
}

/// The store file's size against the pages in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the file.
    pub file: u64,
    /// Bytes of pages allocated (in use, metadata included).
    pub allocated: u64,
}

impl Usage {
    /// At least half the file free, and at least [`COMPACT_SLACK`] of it.
    pub fn worth_compacting(&self) -> bool {
        let free = self.file.saturating_sub(self.allocated);
        free >= COMPACT_SLACK && free >= self.allocated
    }
}

/// Free bytes in the file below which it is not compacted.
pub const COMPACT_SLACK: u64 = 8 << 20;

/// The node's store. Cheap to clone (the database is shared); reads may run on any task.
///
/// After a write fails (a full disk), redb refuses every later operation until the database is
/// opened again: [`Store::reopen`] does that in place, for every clone, so reads go on being
/// served while writes wait for space.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<RwLock<Option<Arc<Database>>>>,
    path: PathBuf,
}

/// What [`Store::load_events`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Events that verified.
    pub events: Vec<VerifiedEvent>,
    /// Stored envelopes that did not verify (skipped and deleted).
    pub rejected: usize,
}

/// The `POST_CURSORS` key of post `seq` of the author whose key is `author` (hex).
fn post_index_key(author: &str, seq: u64) -> String {
    format!("{author}/{seq:020}")
}

fn event_key(author: &AuthorKey, stream: pb::Stream, seq: u64) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(author.as_bytes());
    k[32..36].copy_from_slice(&(stream as i32).to_be_bytes());
    k[36..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The author key of a record's hex `author` field.
fn hex_author(author: &str) -> Option<AuthorKey> {
    AuthorKey::from_slice(&hex::decode(author).ok()?)
}

/// Schema 1 → 2: each `POSTS` row, a post's JSON, becomes a reference into `EVENTS`; a row
/// whose event is gone (or that does not parse) goes, with its index entry.
fn migrate_v1(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut table = tx.open_table(POSTS)?;
    let mut index = tx.open_table(POST_CURSORS)?;
    let events = tx.open_table(EVENTS)?;
    let mut rows = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        rows.push((k.value(), serde_json::from_slice::<PostRecord>(v.value()).ok()));
    }
    for (cursor, record) in rows {
        let r = record.and_then(|p| Some((hex_author(&p.author)?, p)));
        match r {
            Some((author, p)) => {
                let r = PostRef::new(&author, p.seq, p.own, &p.topic);
                if events.get(r.key.as_slice())?.is_some() {
                    table.insert(cursor, r.encode().as_slice())?;
                } else {
                    table.remove(cursor)?;
                    index.remove(r.index_key().as_str())?;
                }
            }
            None => {
                table.remove(cursor)?;
            }
        }
    }
    tx.open_table(META)?.remove(POSTS_BYTES_V1)?;
    Ok(())
}

/// The database behind `shared` once no read holds a handle to it any more (reads end on their
/// own, on other threads: they cannot be woken for): waits up to a second, `None` after.
fn sole_handle(shared: &mut Arc<Database>) -> Option<&mut Database> {
    for _ in 0..100 {
        if Arc::get_mut(shared).is_some() {
            return Arc::get_mut(shared);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Opens (or creates) the redb file at `path`, with the errors told apart.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let exists = path.exists();
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let db = if exists { builder.open(path) } else { builder.create(path) };
    let db = db.map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_owned()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Db(redb::Error::Io(io))
        }
        other => StoreError::Corrupt { path: path.to_owned(), detail: other.to_string() },
    })?;
    Ok(db)
}

impl Store {
    /// The database, unless it is being reopened.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone().ok_or(StoreError::Reopening)
    }

    /// Opens the database again, in place for every clone of this store: after a failed write
    /// redb refuses everything until then. Waits (up to a second) for reads under way to end;
    /// on failure the old handle is kept and the error returned (try again later).
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut old = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if old.as_mut().is_some_and(|shared| sole_handle(shared).is_some()) {
            old = None; // the last handle: dropping it closes the file
        }
        let reopened = if old.is_some() { Err(StoreError::Reopening) } else { open_db(&self.path) };
        let mut slot = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match reopened {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                Ok(())
            }
            Err(e) => {
                *slot = old;
                Err(e)
            }
        }
    }

    /// How big the file is against what it holds.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let stats = tx.stats()?;
        tx.abort()?;
        let file = std::fs::metadata(&self.path).map_err(redb::Error::Io)?.len();
        Ok(Usage { file, allocated: stats.allocated_pages() * stats.page_size() as u64 })
    }

    /// Compacts the file when most of it is free pages (see [`Usage::worth_compacting`]):
    /// redb reuses freed pages but never gives them back, so one flood past the budgets would
    /// otherwise leave its high-water mark on the disk for good. In place for every clone:
    /// waits (up to a second) for reads under way to let go of the handle, and reads started
    /// meanwhile wait for the compaction. Returns the usage before, and after when compacted.
    pub fn compact_if_worth_it(&self) -> Result<(Usage, Option<Usage>), StoreError> {
        let before = self.usage()?;
        if !before.worth_compacting() {
            return Ok((before, None));
        }
        let mut slot = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(shared) = slot.as_mut() else { return Err(StoreError::Reopening) };
        let done = match sole_handle(shared) {
            Some(db) => db.compact().map_err(|e| StoreError::Db(e.into())),
            None => Err(StoreError::Reopening),
        };
        drop(slot);
        done?;
        Ok((before, Some(self.usage()?)))
    }

    /// Opens the store at `path`, creating it if there is no file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        let store = Store { db: Arc::new(RwLock::new(Some(Arc::new(db)))), path: path.to_owned() };
        store.check_or_init()?;
        Ok(store)
    }

    fn check_or_init(&self) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value().to_vec());
            match format {
                Some(f) if f == FORMAT => {
                    let found = meta
                        .get("schema_version")?
                        .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
                        .map_or(0, u32::from_be_bytes);
                    if found == 1 {
                        drop(meta);
                        migrate_v1(&tx)?;
                        meta = tx.open_table(META)?;
                        meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                    } else if found != SCHEMA_VERSION {
                        return Err(StoreError::Version { path: self.path.clone(), found });
                    }
                }
                Some(_) => return Err(StoreError::Foreign(self.path.clone())),
                None => {
                    // A fresh file, or a redb file of someone else's: ours only if empty.
                    if meta.len()? != 0 || tx.list_tables()?.any(|t| t.name() != "meta") {
                        return Err(StoreError::Foreign(self.path.clone()));
                    }
                    meta.insert("format", FORMAT)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
            }
            tx.open_table(EVENTS)?;
            tx.open_table(POSTS)?;
            tx.open_table(PEERS)?;
            tx.open_table(POSTCARDS)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads every stored event back, verifying each; bad ones are counted and deleted.
    pub fn load_events(&self) -> Result<Loaded, StoreError> {
        let mut verifier = Verifier::default();
        let mut loaded = Loaded::default();
        let mut bad = Vec::new();
        {
            let tx = self.db()?.begin_read()?;
            let table = tx.open_table(EVENTS)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let envelope = Bytes::copy_from_slice(v.value());
                match verifier.verify_stored(envelope) {
                    Ok(ev) if event_key(&ev.author(), ev.stream(), ev.seq()) == k.value() => {
                        loaded.events.push(ev);
                    }
                    _ => bad.push(k.value().to_vec()),
                }
            }
        }
        if !bad.is_empty() {
            loaded.rejected = bad.len();
            let tx = self.db()?.begin_write()?;
            {
                let mut table = tx.open_table(EVENTS)?;
                for k in &bad {
                    table.remove(k.as_slice())?;
                }
            }
            tx.commit()?;
        }
        Ok(loaded)
    }

    /// Applies engine operations, appends delivered posts and writes postcard records in one
    /// durable transaction. Posts and postcard records beyond `kept` are forgotten oldest
    /// first.
    pub fn commit(
        &self,
        ops: &[StoreOp],
        writes: &Writes<'_>,
        kept: Kept,
    ) -> Result<(), StoreError> {
        let (posts, posts_kept) = (writes.posts, kept.posts);
        let deletes_posts =
            ops.iter().any(|op| matches!(op, StoreOp::Delete { stream: pb::Stream::Post, .. }));
        let tx = self.db()?.begin_write()?;
        {
            if !posts.is_empty() || deletes_posts {
                // Delivered posts first, so that a post forgotten in the same batch as its
                // delivery goes from the API's table too.
                let mut table = tx.open_table(POSTS)?;
                let mut index = tx.open_table(POST_CURSORS)?;
                for p in posts {
                    let Some(author) = hex_author(&p.author) else { continue };
                    let r = PostRef::new(&author, p.seq, p.own, &p.topic);
                    table.insert(p.cursor, r.encode().as_slice())?;
                    index.insert(post_index_key(&p.author, p.seq).as_str(), p.cursor)?;
                }
                // A post the engine forgot (its retention, its author's share) leaves the
                // API's table with it.
                for op in ops {
                    if let StoreOp::Delete { author, stream: pb::Stream::Post, seq } = op {
                        let k = post_index_key(&author.to_string(), *seq);
                        let cursor = index.remove(k.as_str())?.map(|c| c.value());
                        if let Some(c) = cursor {
                            table.remove(c)?;
                        }
                    }
                }
                // Then within the count: oldest first.
                let first_kept = posts.last().map_or(0, |p| p.cursor).saturating_sub(posts_kept);
                loop {
                    let over = match table.first()? {
                        Some((c, _)) => c.value() <= first_kept,
                        None => false,
                    };
                    if !over {
                        break;
                    }
                    let Some((_, v)) = table.pop_first()? else { break };
                    if let Some(r) = PostRef::decode(v.value()) {
                        index.remove(r.index_key().as_str())?;
                    }
                }
            }
            let mut events = tx.open_table(EVENTS)?;
            for op in ops {
                match op {
                    StoreOp::Put(ev) => {
                        let k = event_key(&ev.author(), ev.stream(), ev.seq());
                        events.insert(k.as_slice(), ev.envelope().as_ref())?;
                    }
                    StoreOp::Delete { author, stream, seq } => {
                        events.remove(event_key(author, *stream, *seq).as_slice())?;
                    }
                }
            }
            if !writes.postcards.is_empty() {
                let mut table = tx.open_table(POSTCARDS)?;
                for p in writes.postcards {
                    let json = serde_json::to_vec(p).unwrap_or_default();
                    table.insert(p.cursor, json.as_slice())?;
                }
                let last = table.last()?.map_or(0, |(k, _)| k.value());
                if last > kept.postcards {
                    let cutoff = last - kept.postcards;
                    table.retain_in(..=cutoff, |_, _| false)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last postcard record number used (0 if none).
    pub fn last_postcard_cursor(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(POSTCARDS)?;
        Ok(table.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Postcard records after `since`, oldest first, at most `limit`, optionally of one box.
    pub fn postcards(
        &self,
        mailbox: Option<&str>,
        since: u64,
        limit: usize,
    ) -> Result<Vec<PostcardRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(POSTCARDS)?;
        let mut out = Vec::new();
        for row in table.range(since.saturating_add(1)..)? {
            let (_, v) = row?;
            let Ok(p) = serde_json::from_slice::<PostcardRecord>(v.value()) else { continue };
            if mailbox.is_none_or(|m| m == p.mailbox) {
                out.push(p);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Sent postcards whose fate is still open (in custody here, or forwarded), newest
    /// `limit` of them: what a restarted node still follows.
    pub fn open_postcards(&self, limit: usize) -> Result<Vec<PostcardRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(POSTCARDS)?;
        let mut out = Vec::new();
        for row in table.iter()?.rev() {
            let (_, v) = row?;
            let Ok(p) = serde_json::from_slice::<PostcardRecord>(v.value()) else { continue };
            if p.mailbox == "sent" && (p.status == "custody" || p.status == "forwarded") {
                out.push(p);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The last delivery number used (0 if none).
    pub fn last_post_cursor(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(POSTS)?;
        Ok(table.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Posts delivered after `since`, oldest first, at most `limit`, optionally of one topic.
    /// Each is read from the event log and verified again (a damaged row is skipped).
    pub fn posts(
        &self,
        topic: Option<&str>,
        since: u64,
        limit: usize,
    ) -> Result<Vec<PostRecord>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(POSTS)?;
        let events = tx.open_table(EVENTS)?;
        let mut verifier = Verifier::default();
        let mut out = Vec::new();
        for row in table.range(since.saturating_add(1)..)? {
            let (cursor, v) = row?;
            let Some(r) = PostRef::decode(v.value()) else { continue };
            if topic.is_some_and(|t| t != r.topic) {
                continue;
            }
            let Some(envelope) = events.get(r.key.as_slice())? else { continue };
            let Ok(ev) = verifier.verify_stored(Bytes::copy_from_slice(envelope.value())) else {
                continue;
            };
            let Some(p) = PostRecord::of(cursor.value(), &ev, r.own) else { continue };
            out.push(p);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        Ok(tx.open_table(EVENTS)?.len()?)
    }

    /// Saves this node's coordinate, replacing the one saved before.
    pub fn put_coordinate(&self, c: &Coordinate) -> Result<(), StoreError> {
        let mut bytes = Vec::with_capacity(8 + 8 * (c.vec.len() + 3));
        bytes.extend_from_slice(COORDINATE_TAG);
        bytes.extend_from_slice(&(c.vec.len() as u32).to_le_bytes());
        for x in c.vec.iter().chain([&c.height, &c.error, &c.adjustment]) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let tx = self.db()?.begin_write()?;
        tx.open_table(META)?.insert("coordinate", bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// The coordinate saved by [`Store::put_coordinate`]: `None` when there is none, or when
    /// what is there is not a valid coordinate of this build's dimension (the node then starts
    /// from its last newspaper; a coordinate is a cache, never a reason to refuse to start).
    pub fn coordinate(&self) -> Result<Option<Coordinate>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let meta = tx.open_table(META)?;
        let Some(v) = meta.get("coordinate")? else { return Ok(None) };
        Ok(decode_coordinate(v.value()))
    }

    /// Saves changes to the peer book in one transaction: each peer of `put` with its
    /// addresses (at most `MAX_ADDRS`, newest first), and `forget` removed.
    pub fn save_peers(
        &self,
        put: &[(Vec<u8>, Vec<String>)],
        forget: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        {
            let mut table = tx.open_table(PEERS)?;
            for (peer, addrs) in put {
                let addrs: Vec<&String> =
                    addrs.iter().take(vecino_proto::limits::MAX_ADDRS).collect();
                let json = serde_json::to_vec(&addrs).unwrap_or_default();
                table.insert(peer.as_slice(), json.as_slice())?;
            }
            for peer in forget {
                table.remove(peer.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The peer book: peer id bytes → addresses.
    pub fn peers(&self) -> Result<BTreeMap<Vec<u8>, Vec<String>>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(PEERS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            if let Ok(a) = serde_json::from_slice::<Vec<String>>(v.value()) {
                out.insert(k.value().to_vec(), a);
            }
        }
        Ok(out)
    }
}

fn decode_coordinate(bytes: &[u8]) -> Option<Coordinate> {
    let rest = bytes.strip_prefix(COORDINATE_TAG.as_slice())?;
    let (dim, rest) = rest.split_first_chunk::<4>()?;
    let n = u32::from_le_bytes(*dim) as usize;
    if Some(rest.len()) != n.checked_add(3).and_then(|m| m.checked_mul(8)) {
        return None;
    }
    let xs: Vec<f64> =
        rest.chunks_exact(8).filter_map(|b| b.try_into().ok().map(f64::from_le_bytes)).collect();
    // Checks the dimension and every value (finite, in range).
    Coordinate::from_parts(&xs[..n], xs[n], xs[n + 1], xs[n + 2]).ok()
}

/// The engine's view of the store (used by tests and tools; the node batches through
/// [`Store::commit`] instead). A failed write panics: the engine's contract has no error path,
/// and acknowledging an event that is not on disk would be worse.
impl Persist for Store {
    fn apply(&mut self, op: &StoreOp) {
        let kept = Kept { posts: u64::MAX, postcards: u64::MAX };
        if let Err(e) = self.commit(std::slice::from_ref(op), &Writes::default(), kept) {
            panic!("store write failed: {e}");
        }
    }

    fn events(&self) -> Vec<VerifiedEvent> {
        self.load_events().map(|l| l.events).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecino_proto::{Hlc, Identity};

    const KEEP_ALL: Kept = Kept { posts: u64::MAX, postcards: u64::MAX };

    fn post(id: &Identity, seq: u64) -> VerifiedEvent {
        let body = pb::event::Body::Post(pb::Post {
            topic: "t".into(),
            body: Bytes::from_static(b"hi"),
            content_type: String::new(),
        });
        id.sign(pb::Stream::Post, seq, Hlc { ms: 1_700_000_000_000 + seq, counter: 0 }, body)
            .unwrap()
    }

    #[test]
    fn events_survive_reopen_and_deletes_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::config::STORE_FILE);
        let id = Identity::from_seed([7; 32]);
        {
            let mut s = Store::open(&path).unwrap();
            s.apply(&StoreOp::Put(post(&id, 1)));
            s.apply(&StoreOp::Put(post(&id, 2)));
            s.apply(&StoreOp::Delete { author: id.public(), stream: pb::Stream::Post, seq: 1 });
        }
        let s = Store::open(&path).unwrap();
        let evs = s.events();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].seq(), 2);
    }

    /// Postcard records are written by number (a status change overwrites), listed by box,
    /// bounded, and the open ones (sent, not yet delivered or expired) found after a reopen.
    #[test]
    fn postcard_records_are_overwritten_listed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let rec = |cursor: u64, mailbox: &str, status: &str| PostcardRecord {
            cursor,
            id: format!("{cursor:064x}"),
            mailbox: mailbox.into(),
            peer_id: String::new(),
            text: "x".into(),
            status: status.into(),
            sent_ms: 0,
            updated_ms: 0,
            path: Vec::new(),
        };
        let kept = Kept { posts: 100, postcards: 4 };
        {
            let s = Store::open(&path).unwrap();
            let first: Vec<PostcardRecord> = (1..=5)
                .map(|i| rec(i, if i % 2 == 0 { "inbox" } else { "sent" }, "custody"))
                .collect();
            s.commit(&[], &Writes { posts: &[], postcards: &first }, kept).unwrap();
            let update = [rec(5, "sent", "delivered")];
            s.commit(&[], &Writes { posts: &[], postcards: &update }, kept).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.last_postcard_cursor().unwrap(), 5);
        let all = s.postcards(None, 0, 100).unwrap();
        assert_eq!(all.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(all[3].status, "delivered");
        let inbox = s.postcards(Some("inbox"), 0, 100).unwrap();
        assert_eq!(inbox.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![2, 4]);
        let open = s.open_postcards(10).unwrap();
        assert_eq!(open.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![3]);
    }

    /// A post of `id` on `topic`, its event and its record as delivered under number `cursor`.
    fn delivered(id: &Identity, seq: u64, topic: &str, text: &str) -> (StoreOp, PostRecord) {
        let body = pb::event::Body::Post(pb::Post {
            topic: topic.into(),
            body: Bytes::copy_from_slice(text.as_bytes()),
            content_type: String::new(),
        });
        let ev = id
            .sign(pb::Stream::Post, seq, Hlc { ms: 1_700_000_000_000 + seq, counter: 0 }, body)
            .unwrap();
        let rec = PostRecord::of(seq, &ev, false).unwrap();
        (StoreOp::Put(ev), rec)
    }

    #[test]
    fn posts_are_bounded_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = Identity::from_seed([5; 32]);
        let (ops, batch): (Vec<StoreOp>, Vec<PostRecord>) = (1..=10)
            .map(|i| delivered(&a, i, if i % 2 == 0 { "even" } else { "odd" }, "x"))
            .unzip();
        let writes = Writes { posts: &batch, postcards: &[] };
        s.commit(&ops, &writes, Kept { posts: 6, postcards: 6 }).unwrap();
        assert_eq!(s.last_post_cursor().unwrap(), 10);
        let all = s.posts(None, 0, 100).unwrap();
        assert_eq!(all.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(all[0], batch[4], "the record is rebuilt from the event log as delivered");
        let even = s.posts(Some("even"), 6, 100).unwrap();
        assert_eq!(even.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![8, 10]);
        // A post the engine forgets is not listed; nor one whose event is missing from the
        // log (a row the API's table kept by mistake is skipped, not an error).
        let forget = StoreOp::Delete { author: a.public(), stream: pb::Stream::Post, seq: 9 };
        s.commit(&[forget], &Writes::default(), KEEP_ALL).unwrap();
        let tx = s.db().unwrap().begin_write().unwrap();
        let tenth = event_key(&a.public(), pb::Stream::Post, 10);
        tx.open_table(EVENTS).unwrap().remove(tenth.as_slice()).unwrap();
        tx.commit().unwrap();
        let all = s.posts(None, 0, 100).unwrap();
        assert_eq!(all.iter().map(|p| p.cursor).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
    }

    /// The API's table costs no copy of a post's body: a thousand 4-KiB NUL-filled posts
    /// delivered take the pages of the same events stored undelivered, and 1 MiB more at most
    /// (their JSON copy would have added 24 MB: six bytes per NUL).
    #[test]
    fn delivered_posts_are_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::from_seed([6; 32]);
        let text = "\0".repeat(4096);
        let size = |name: &str, deliver: bool| {
            let path = dir.path().join(name);
            let s = Store::open(&path).unwrap();
            for chunk in (1..=1000u64).collect::<Vec<_>>().chunks(50) {
                let (ops, batch): (Vec<StoreOp>, Vec<PostRecord>) =
                    chunk.iter().map(|&i| delivered(&a, i, "t", &text)).unzip();
                let posts = if deliver { batch.as_slice() } else { &[] };
                s.commit(&ops, &Writes { posts, postcards: &[] }, KEEP_ALL).unwrap();
            }
            assert_eq!(s.posts(None, 0, 2000).unwrap().len(), if deliver { 1000 } else { 0 });
            // Pages in use: the file itself grows in steps (doubling), so its length says
            // little about a few kilobytes more or less.
            s.usage().unwrap().allocated
        };
        let (events_only, delivered) = (size("events.redb", false), size("posts.redb", true));
        assert!(
            delivered <= events_only + (1 << 20),
            "{delivered} B of pages with the posts delivered, {events_only} B without"
        );
    }

    /// A file left mostly free by forgotten posts is compacted in place: smaller after, every
    /// clone still reads and writes through it; a file with little free space is left alone.
    #[test]
    fn a_mostly_free_file_is_compacted_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Store::open(&path).unwrap();
        let reader = s.clone();
        let a = Identity::from_seed([9; 32]);
        let text = "y".repeat(30_000);
        let (ops, _): (Vec<StoreOp>, Vec<PostRecord>) =
            (1..=1000).map(|i| delivered(&a, i, "t", &text)).unzip();
        for chunk in ops.chunks(100) {
            s.commit(chunk, &Writes::default(), KEEP_ALL).unwrap();
        }
        assert_eq!(s.compact_if_worth_it().unwrap().1, None, "nothing free yet");
        let forget: Vec<StoreOp> = (1..=990)
            .map(|seq| StoreOp::Delete { author: a.public(), stream: pb::Stream::Post, seq })
            .collect();
        s.commit(&forget, &Writes::default(), KEEP_ALL).unwrap();
        let (before, after) = s.compact_if_worth_it().unwrap();
        let after = after.expect("worth compacting");
        assert!(before.file > 30 << 20, "{before:?}");
        assert!(after.file * 4 < before.file, "{before:?} -> {after:?}");
        assert_eq!(after.file, std::fs::metadata(&path).unwrap().len());
        assert_eq!(reader.event_count().unwrap(), 10);
        s.commit(&ops[..1], &Writes::default(), KEEP_ALL).unwrap();
        assert_eq!(reader.event_count().unwrap(), 11);
        assert_eq!(s.compact_if_worth_it().unwrap().1, None, "compact now");
    }

    /// A schema-1 store (each delivered post's JSON in `POSTS`) opens as schema 2: its posts
    /// listed as before, from the event log; a row whose event is gone dropped.
    #[test]
    fn a_schema_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let a = Identity::from_seed([8; 32]);
        let (ops, batch): (Vec<StoreOp>, Vec<PostRecord>) =
            (1..=3).map(|i| delivered(&a, i, "t", "hello")).unzip();
        {
            let db = open_db(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert("format", FORMAT).unwrap();
                meta.insert("schema_version", 1u32.to_be_bytes().as_slice()).unwrap();
                meta.insert(POSTS_BYTES_V1, 1u64.to_be_bytes().as_slice()).unwrap();
                let mut events = tx.open_table(EVENTS).unwrap();
                for op in &ops[..2] {
                    let StoreOp::Put(ev) = op else { unreachable!() };
                    let k = event_key(&ev.author(), ev.stream(), ev.seq());
                    events.insert(k.as_slice(), ev.envelope().as_ref()).unwrap();
                }
                let mut posts = tx.open_table(POSTS).unwrap();
                let mut index = tx.open_table(POST_CURSORS).unwrap();
                for p in &batch {
                    posts.insert(p.cursor, serde_json::to_vec(p).unwrap().as_slice()).unwrap();
                    index.insert(post_index_key(&p.author, p.seq).as_str(), p.cursor).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.posts(None, 0, 10).unwrap(), batch[..2].to_vec());
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.posts(None, 0, 10).unwrap().len(), 2, "opens again as schema 2");
    }

    #[test]
    fn reopening_in_place_serves_every_clone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let reader = s.clone();
        let p = Identity::from_seed([4; 32]);
        s.commit(&[StoreOp::Put(post(&p, 1))], &Writes { posts: &[], postcards: &[] }, KEEP_ALL)
            .unwrap();
        s.reopen().unwrap();
        assert_eq!(reader.event_count().unwrap(), 1, "a clone reads through the new handle");
        s.commit(&[StoreOp::Put(post(&p, 2))], &Writes { posts: &[], postcards: &[] }, KEEP_ALL)
            .unwrap();
        assert_eq!(reader.event_count().unwrap(), 2);
    }

    #[test]
    fn a_post_the_engine_forgets_leaves_the_api_table() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = Identity::from_seed([3; 32]);
        let kept = Kept { posts: 100, postcards: 6 };
        let (ops, batch): (Vec<StoreOp>, Vec<PostRecord>) =
            (1..=4).map(|i| delivered(&a, i, "t", &"x".repeat(100))).unzip();
        s.commit(&ops[..3], &Writes { posts: &batch[..3], postcards: &[] }, kept).unwrap();
        // Forgotten in a later batch, and in the batch of its own delivery.
        let forget = |seq| StoreOp::Delete { author: a.public(), stream: pb::Stream::Post, seq };
        s.commit(&[forget(1)], &Writes { posts: &[], postcards: &[] }, kept).unwrap();
        let last = [ops[3].clone(), forget(4)];
        s.commit(&last, &Writes { posts: &batch[3..], postcards: &[] }, kept).unwrap();
        let all = s.posts(None, 0, 100).unwrap();
        assert_eq!(all.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn foreign_and_garbage_files_are_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, vec![0x5a; 64 * 1024]).unwrap();
        let e = Store::open(&junk).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("not a vecino store"), "{e}");

        let other = dir.path().join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<&str, u64>::new("accounts"))
                .unwrap()
                .insert("alice", 3)
                .unwrap();
            tx.commit().unwrap();
        }
        let e = Store::open(&other).unwrap_err();
        assert!(matches!(e, StoreError::Foreign(_)), "{e}");

        let old = dir.path().join("old.redb");
        drop(Store::open(&old).unwrap());
        {
            let db = Database::open(&old).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 99u32.to_be_bytes().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let e = Store::open(&old).unwrap_err();
        assert!(matches!(e, StoreError::Version { found: 99, .. }), "{e}");
    }

    #[test]
    fn the_coordinate_survives_reopen_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut c = Coordinate::origin(0.0004, 0.21);
        c.vec[0] = 0.012;
        c.vec[7] = -0.003;
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.coordinate().unwrap(), None);
            s.put_coordinate(&c).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.coordinate().unwrap(), Some(c));
        for junk in [&b"vc01"[..], b"garbage", &[0u8; 100]] {
            let tx = s.db().unwrap().begin_write().unwrap();
            tx.open_table(META).unwrap().insert("coordinate", junk).unwrap();
            tx.commit().unwrap();
            assert_eq!(s.coordinate().unwrap(), None);
        }
        c.height = f64::NAN;
        let mut bytes = COORDINATE_TAG.to_vec();
        bytes.extend_from_slice(&8u32.to_le_bytes());
        for x in c.vec.iter().chain([&c.height, &c.error, &c.adjustment]) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(decode_coordinate(&bytes), None, "a non-finite coordinate is not resumed");
    }

    #[test]
    fn a_tampered_event_is_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let id = Identity::from_seed([8; 32]);
        let s = Store::open(&path).unwrap();
        let ev = post(&id, 1);
        let mut bytes = ev.envelope().to_vec();
        let n = bytes.len();
        bytes[n - 1] ^= 1; // flip a signature bit
        {
            let tx = s.db().unwrap().begin_write().unwrap();
            let k = event_key(&id.public(), pb::Stream::Post, 1);
            tx.open_table(EVENTS).unwrap().insert(k.as_slice(), bytes.as_slice()).unwrap();
            tx.commit().unwrap();
        }
        let loaded = s.load_events().unwrap();
        assert_eq!((loaded.events.len(), loaded.rejected), (0, 1));
        assert_eq!(s.event_count().unwrap(), 0);
    }

    #[test]
    fn the_peer_book_saves_and_forgets_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let addrs = |n: usize| (0..n).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")).collect::<Vec<_>>();
        {
            let s = Store::open(&path).unwrap();
            let put = [(vec![1], addrs(2)), (vec![2], addrs(40))];
            s.save_peers(&put, &[]).unwrap();
            s.save_peers(&[(vec![3], addrs(1))], &[vec![1], vec![9]]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let peers = s.peers().unwrap();
        assert_eq!(peers.keys().cloned().collect::<Vec<_>>(), [vec![2], vec![3]]);
        assert_eq!(peers[&vec![2]], addrs(vecino_proto::limits::MAX_ADDRS));
    }
}
