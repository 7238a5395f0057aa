//! The writer thread: applies writes in groups, one transaction and one
//! fsync per group, then acknowledges them and broadcasts their events.

use std::sync::Arc;

use rusqlite::{params, Connection};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{backend, get_current, MAX_BATCH};
use crate::{Error, EventKind, KeyValue, Result, Revision, WatchEvent};

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

#[derive(Debug)]
pub(super) struct WriteOutcome {
    pub revision: Revision,
    /// For a delete: the key as it was.
    pub prev: Option<KeyValue>,
}

pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::UnboundedReceiver<WriteRequest>,
    events: broadcast::Sender<Arc<[WatchEvent]>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("rkube-sqlite-writer".into())
        .spawn(move || run(conn, rx, events))
        .map(|_| ())
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<WriteRequest>,
    events: broadcast::Sender<Arc<[WatchEvent]>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        match apply_group(&mut conn, &batch) {
            Ok((results, group_events)) => {
                if !group_events.is_empty() {
                    // No receivers is fine: nobody watches.
                    let _ = events.send(group_events.into());
                }
                for (req, result) in batch.drain(..).zip(results) {
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "datastore commit failed");
                for req in batch.drain(..) {
                    let _ = req
                        .reply
                        .send(Err(Error::Backend(format!("commit failed: {e}"))));
                }
            }
        }
    }
}

type GroupResult = (Vec<Result<WriteOutcome>>, Vec<WatchEvent>);

/// Applies a group in one transaction. A logical failure (conflict, missing
/// key) fails only its own request; a database error fails the group.
fn apply_group(conn: &mut Connection, batch: &[WriteRequest]) -> Result<GroupResult> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let start = super::meta(&tx, "revision")?;
    let mut revision = start;
    let mut results = Vec::with_capacity(batch.len());
    let mut group_events = Vec::new();
    for req in batch {
        let result = match &req.op {
            WriteOp::Compact { revision: target } => {
                compact(&tx, *target, revision).map(|()| WriteOutcome {
                    revision,
                    prev: None,
                })
            }
            op => match apply(&tx, op, revision + 1)? {
                Ok(event) => {
                    revision += 1;
                    let prev = (event.kind == EventKind::Delete)
                        .then(|| event.prev.clone())
                        .flatten();
                    group_events.push(event);
                    Ok(WriteOutcome { revision, prev })
                }
                Err(e) => Err(e),
            },
        };
        results.push(result);
    }
    if revision != start {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'revision'",
            [revision],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok((results, group_events))
}

/// One write at revision `rev`. The outer error is a database failure; the
/// inner one a logical failure of this write alone.
fn apply(tx: &Connection, op: &WriteOp, rev: Revision) -> Result<Result<WatchEvent>> {
    let insert = |key: &str, deleted: bool, create_rev, prev_rev, value: &[u8]| {
        tx.prepare_cached(
            "INSERT INTO kv (rev, key, deleted, create_rev, prev_rev, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                rev,
                key.as_bytes(),
                deleted,
                create_rev,
                prev_rev,
                value
            ])
        })
        .map_err(backend)
    };
    Ok(match op {
        WriteOp::Create { key, value } => match get_current(tx, key)? {
            Some(_) => Err(Error::AlreadyExists(key.clone())),
            None => {
                insert(key, false, rev, 0, value)?;
                Ok(put_event(key, value, rev, rev, None))
            }
        },
        WriteOp::Update {
            key,
            value,
            expected,
        } => match get_current(tx, key)? {
            None => Err(Error::NotFound(key.clone())),
            Some(cur) if cur.mod_revision != *expected => Err(Error::Conflict {
                key: key.clone(),
                expected: *expected,
                current: Some(Box::new(cur)),
            }),
            Some(cur) => {
                insert(key, false, cur.create_revision, cur.mod_revision, value)?;
                Ok(put_event(key, value, cur.create_revision, rev, Some(cur)))
            }
        },
        WriteOp::Delete { key, expected } => match get_current(tx, key)? {
            None => Err(Error::NotFound(key.clone())),
            Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => Err(Error::Conflict {
                key: key.clone(),
                expected: expected.unwrap_or_default(),
                current: Some(Box::new(cur)),
            }),
            Some(cur) => {
                // The tombstone carries the deleted value for watchers.
                insert(key, true, cur.create_revision, cur.mod_revision, &cur.value)?;
                Ok(delete_event(
                    key.clone(),
                    rev,
                    cur.create_revision,
                    cur.mod_revision,
                    cur.value,
                ))
            }
        },
        WriteOp::Compact { .. } => unreachable!("compaction is applied by apply_group"),
    })
}

/// Drops history before `target`: superseded rows and tombstones that no
/// read at `target` or later, and no watch from `target - 1`, can see.
fn compact(tx: &Connection, target: Revision, current: Revision) -> Result<()> {
    if target > current {
        return Err(Error::FutureRevision {
            requested: target,
            current,
        });
    }
    let compacted = super::meta(tx, "compacted")?;
    if target <= compacted {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM kv WHERE rev < ?1 AND (deleted = 1 OR EXISTS (
             SELECT 1 FROM kv s WHERE s.key = kv.key AND s.rev > kv.rev AND s.rev <= ?1))",
        [target],
    )
    .map_err(backend)?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
        [target],
    )
    .map_err(backend)?;
    Ok(())
}

fn put_event(
    key: &str,
    value: &[u8],
    create_rev: Revision,
    rev: Revision,
    prev: Option<KeyValue>,
) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Put,
        kv: KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: create_rev,
            mod_revision: rev,
        },
        prev,
    }
}

pub(super) fn delete_event(
    key: String,
    rev: Revision,
    create_rev: Revision,
    prev_rev: Revision,
    value: Vec<u8>,
) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.clone(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
        },
        prev: Some(KeyValue {
            key,
            value,
            create_revision: create_rev,
            mod_revision: prev_rev,
        }),
    }
}
