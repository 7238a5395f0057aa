//! The embedded backend: one SQLite database file in WAL mode.
//!
//! # Schema
//! One table of revisioned rows, as k3s's kine keeps them: every write is a
//! row whose primary key is its revision. A delete writes a tombstone row
//! that carries the deleted value, so watchers learn what was deleted. The
//! state at revision R is, per key, the newest row at or before R unless it
//! is a tombstone. An index on (key, rev) makes "newest row per key" a seek,
//! lets lists walk keys in order and stop after `limit`, and makes a watch's
//! catch-up read a range scan on the primary key.
//!
//! # Writes and durability
//! A single writer thread owns the write connection and commits in groups:
//! it takes every write that is waiting (up to [`MAX_BATCH`]), applies them
//! in order in one transaction, and commits once. `synchronous=FULL` in WAL
//! mode fsyncs the log on every commit, so a write is acknowledged only once
//! it is on disk, and many concurrent writers share one fsync — which is how
//! etcd reaches its throughput too. A failed compare-and-swap inside a group
//! consumes no revision.
//!
//! # Watches
//! After a commit the writer broadcasts the group's events in revision order.
//! A watch subscribes first, then reads the rows after its start revision
//! from the database, then follows the broadcast, skipping what it already
//! delivered. A watcher that falls behind the broadcast buffer goes back to
//! the database, so no event is lost; one whose history was compacted in the
//! meantime gets [`Error::Compacted`].

mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    check_value_size, prefix_end, Error, EventKind, KeyValue, ListOptions, ListResult, Result,
    Revision, Store, WatchEvent, WatchStream,
};
use writer::{WriteOp, WriteRequest};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Commit groups buffered for watchers before a slow one must re-read.
const BROADCAST_CAPACITY: usize = 4096;
/// Rows a watch's catch-up reads per query.
const CATCH_UP_CHUNK: i64 = 1000;
/// Marks a database as ours (`PRAGMA application_id`): "rkub".
const APPLICATION_ID: i32 = 0x726b_7562;
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    deleted    INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_rev ON kv (key, rev);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compacted', 0);
";

/// Options for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// fsync the log on every commit (`synchronous=FULL`). Only tests of
    /// other components may turn this off.
    pub durable: bool,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            durable: true,
        }
    }
}

/// The embedded SQLite store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    writes: mpsc::UnboundedSender<WriteRequest>,
    events: broadcast::Sender<Arc<[WatchEvent]>>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the database, checks that it is an rkube store
    /// and is readable, and starts the writer thread.
    pub fn open(config: SqliteConfig) -> Result<SqliteStore> {
        let conn = open_connection(&config, true)?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (writes, rx) = mpsc::unbounded_channel();
        writer::spawn(conn, rx, events.clone()).map_err(|e| open_error(&config.path, e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                config,
                writes,
                events,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.config.path
    }

    async fn write(&self, op: WriteOp) -> Result<writer::WriteOutcome> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writes
            .send(WriteRequest { op, reply })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap().pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.config, false)?,
            };
            let out = f(&mut conn);
            inner.readers.lock().unwrap().push(conn);
            out
        })
        .await
        .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
    }
}

fn open_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Open {
        location: path.display().to_string(),
        reason: reason.to_string(),
    }
}

pub(crate) fn backend(e: rusqlite::Error) -> Error {
    Error::Backend(e.to_string())
}

fn open_connection(config: &SqliteConfig, writer: bool) -> Result<Connection> {
    let path = &config.path;
    let err = |e: rusqlite::Error| open_error(path, e);
    let flags = if writer {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(open_error(path, "parent directory does not exist"));
        }
    }
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            format!("cannot use WAL mode (got {mode})"),
        ));
    }
    let sync = if config.durable { "FULL" } else { "OFF" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16000;"
    ))
    .map_err(err)?;
    if writer {
        check_and_init(&conn).map_err(|reason| open_error(path, reason))?;
    }
    Ok(conn)
}

/// Verifies that the file is an intact rkube database (or a new empty one)
/// and creates the schema.
fn check_and_init(conn: &Connection) -> std::result::Result<(), String> {
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| format!("integrity check failed: {e}"))?;
    if check != "ok" {
        return Err(format!("database is corrupt: {check}"));
    }
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if app_id == 0 && tables == 0 {
        conn.execute_batch(&format!(
            "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION};"
        ))
        .map_err(|e| e.to_string())?;
    } else if app_id != APPLICATION_ID {
        return Err("file is an SQLite database but not an rkube datastore".into());
    }
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version != SCHEMA_VERSION {
        return Err(format!(
            "datastore schema version {version} is not supported (this binary reads {SCHEMA_VERSION})"
        ));
    }
    conn.execute_batch(SCHEMA).map_err(|e| e.to_string())
}

fn meta(conn: &Connection, name: &str) -> Result<Revision> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(backend)
}

fn key_string(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// The live row for `key` at the newest revision, if any.
pub(crate) fn get_current(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.query_row(
        "SELECT rev, deleted, create_rev, value FROM kv WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
        [key.as_bytes()],
        |r| {
            let deleted: bool = r.get(1)?;
            Ok((!deleted).then(|| KeyValue {
                key: key.to_owned(),
                mod_revision: r.get(0).unwrap_or_default(),
                create_revision: r.get(2).unwrap_or_default(),
                value: r.get(3).unwrap_or_default(),
            }))
        },
    )
    .optional()
    .map(Option::flatten)
    .map_err(backend)
}

fn range_bounds(prefix: &str, start: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let start = match start {
        Some(s) if s.as_bytes() > prefix.as_bytes() => s.as_bytes().to_vec(),
        _ => prefix.as_bytes().to_vec(),
    };
    // A prefix with no end (empty or all 0xff) ranges to the end of keyspace;
    // keys are UTF-8, so a lone 0xff byte sorts after every one of them.
    let end = prefix_end(prefix).unwrap_or_else(|| vec![0xff]);
    (start, end)
}

/// Rows that are the state at `rev`: the newest row per key at or before it,
/// not a tombstone.
const LIVE_AT: &str = "k.rev <= ?3 AND k.deleted = 0 AND NOT EXISTS (
    SELECT 1 FROM kv n WHERE n.key = k.key AND n.rev > k.rev AND n.rev <= ?3)";

fn list_at(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let tx = conn.transaction().map_err(backend)?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    let revision = if opts.revision <= 0 {
        current
    } else {
        opts.revision
    };
    if revision < compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    let (start, end) = range_bounds(prefix, opts.start.as_deref());
    let limit = if opts.limit > 0 { opts.limit + 1 } else { -1 };
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT k.key, k.rev, k.create_rev, k.value FROM kv k
             WHERE k.key >= ?1 AND k.key < ?2 AND {LIVE_AT}
             ORDER BY k.key LIMIT ?4"
        ))
        .map_err(backend)?;
    let mut items = stmt
        .query_map(params![start, end, revision, limit], |r| {
            Ok(KeyValue {
                key: key_string(r.get(0)?)?,
                mod_revision: r.get(1)?,
                create_revision: r.get(2)?,
                value: r.get(3)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    let more = opts.limit > 0 && items.len() as i64 > opts.limit;
    if more {
        items.truncate(opts.limit as usize);
    }
    Ok(ListResult {
        items,
        revision,
        more,
    })
}

fn count(conn: &mut Connection, prefix: &str) -> Result<i64> {
    let tx = conn.transaction().map_err(backend)?;
    let current = meta(&tx, "revision")?;
    let (start, end) = range_bounds(prefix, None);
    tx.query_row(
        &format!("SELECT count(*) FROM kv k WHERE k.key >= ?1 AND k.key < ?2 AND {LIVE_AT}"),
        params![start, end, current],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Events after `after` (at most [`CATCH_UP_CHUNK`]) and the store's current
/// revision, read in one snapshot.
fn events_after(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<WatchEvent>, Revision)> {
    let tx = conn.transaction().map_err(backend)?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    if after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let (start, end) = range_bounds(prefix, None);
    let mut stmt = tx
        .prepare_cached(
            "SELECT k.rev, k.key, k.deleted, k.create_rev, k.prev_rev, k.value,
                    p.create_rev, p.value
             FROM kv k LEFT JOIN kv p ON p.rev = k.prev_rev AND k.deleted = 0
             WHERE k.rev > ?1 AND k.rev <= ?2 AND k.key >= ?3 AND k.key < ?4
             ORDER BY k.rev LIMIT ?5",
        )
        .map_err(backend)?;
    let events = stmt
        .query_map(params![after, current, start, end, CATCH_UP_CHUNK], |r| {
            let rev: Revision = r.get(0)?;
            let key = key_string(r.get(1)?)?;
            let deleted: bool = r.get(2)?;
            let create_rev: Revision = r.get(3)?;
            let prev_rev: Revision = r.get(4)?;
            let value: Vec<u8> = r.get(5)?;
            Ok(if deleted {
                writer::delete_event(key, rev, create_rev, prev_rev, value)
            } else {
                let prev = match (r.get::<_, Option<Revision>>(6)?, r.get(7)?) {
                    (Some(prev_create), Some(prev_value)) => Some(KeyValue {
                        key: key.clone(),
                        value: prev_value,
                        create_revision: prev_create,
                        mod_revision: prev_rev,
                    }),
                    _ => None,
                };
                WatchEvent {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: create_rev,
                        mod_revision: rev,
                    },
                    prev,
                }
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    // A full chunk may stop short of `current`: report how far it got.
    let reached = if events.len() as i64 == CATCH_UP_CHUNK {
        events.last().map_or(current, WatchEvent::revision)
    } else {
        current
    };
    Ok((events, reached))
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |conn| get_current(conn, &key)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        check_value_size(key, &value)?;
        let out = self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?;
        Ok(out.revision)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        check_value_size(key, &value)?;
        let out = self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?;
        Ok(out.revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let out = self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?;
        let prev = out
            .prev
            .ok_or_else(|| Error::Backend("delete returned no previous value".into()))?;
        Ok((prev, out.revision))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.read(move |conn| list_at(conn, &prefix, &opts)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let prefix = prefix.to_owned();
        self.read(move |conn| count(conn, &prefix)).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.read(|conn| meta(conn, "revision")).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        // Subscribe before reading so nothing committed from here on is missed.
        let rx = self.inner.events.subscribe();
        let from = if from <= 0 {
            self.current_revision().await?
        } else {
            from
        };
        // Fail fast on a compacted start, before handing out a stream.
        let p = prefix.to_owned();
        let (first, reached) = self.read(move |c| events_after(c, &p, from)).await?;
        let state = WatchState {
            store: self.clone(),
            prefix: prefix.to_owned(),
            last: from,
            pending: first.into(),
            caught_up: reached,
            live: false,
            rx,
        };
        Ok(futures::stream::unfold(Some(state), WatchState::next).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }
}

struct WatchState {
    store: SqliteStore,
    prefix: String,
    /// Revision of the last event delivered (or the start revision).
    last: Revision,
    pending: std::collections::VecDeque<WatchEvent>,
    /// How far the database has been read.
    caught_up: Revision,
    /// Whether the database read reached the present and the broadcast is
    /// now the source.
    live: bool,
    rx: broadcast::Receiver<Arc<[WatchEvent]>>,
}

impl WatchState {
    async fn next(state: Option<Self>) -> Option<(Result<WatchEvent>, Option<Self>)> {
        let mut st = state?;
        loop {
            if let Some(ev) = st.pending.pop_front() {
                st.last = ev.revision();
                return Some((Ok(ev), Some(st)));
            }
            if !st.live {
                // Keep reading the database until it has nothing after `last`.
                let (prefix, after) = (st.prefix.clone(), st.caught_up.max(st.last));
                match st
                    .store
                    .read(move |c| events_after(c, &prefix, after))
                    .await
                {
                    Ok((events, reached)) => {
                        let done = events.is_empty();
                        st.caught_up = reached;
                        st.pending.extend(events);
                        if done {
                            st.live = true;
                        }
                        continue;
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
            match st.rx.recv().await {
                Ok(group) => {
                    let floor = st.last.max(st.caught_up);
                    st.pending.extend(
                        group
                            .iter()
                            .filter(|ev| ev.revision() > floor && ev.kv.key.starts_with(&st.prefix))
                            .cloned(),
                    );
                    if let Some(ev) = group.last() {
                        st.caught_up = st.caught_up.max(ev.revision());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed groups are committed: read them from the database.
                    st.caught_up = st.last;
                    st.live = false;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Some((Err(Error::Closed), None));
                }
            }
        }
    }
}
