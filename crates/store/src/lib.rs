//! The cluster datastore: a revisioned, watchable key/value store with the
//! semantics the Kubernetes API server needs from etcd.
//!
//! * One global revision that grows by exactly one per successful write.
//! * Every key remembers the revision that created it and the revision that
//!   last modified it; updates and deletes may be compare-and-swap on the
//!   latter (that is how `resourceVersion` conflicts are detected).
//! * Lists are consistent at one revision and paginate by key.
//! * Watches deliver every change strictly after a revision, in order, with
//!   the previous value, or fail with [`Error::Compacted`] when that history
//!   is gone.
//!
//! Backends live in their own modules ([`sqlite`], [`etcd`]) and are checked
//! by one conformance suite (`tests/conformance.rs`). Nothing here knows what
//! the values mean: they are opaque bytes.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub mod compactor;
pub mod etcd;
pub mod sqlite;
#[cfg(feature = "test-util")]
pub mod testutil;

pub use compactor::{Compactor, CompactorConfig};

/// A store revision. Revisions start at 1 and grow by one per write.
pub type Revision = i64;

/// The largest value a store accepts: etcd's default request limit (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key at one revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (in its current life:
    /// a key deleted and created again gets a new create revision).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// How a list is cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many keys; 0 means no limit.
    pub limit: i64,
    /// Start at this key (inclusive) instead of at the prefix. Used to
    /// continue a paginated list: pass the last key seen plus a `\0`.
    pub start: Option<String>,
    /// Read the state as of this revision; 0 means the current revision.
    pub revision: Revision,
}

/// A page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub items: Vec<KeyValue>,
    /// The revision the list is consistent at.
    pub revision: Revision,
    /// Whether keys past the last returned one remain under the prefix.
    pub more: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a put: the new value. For a delete: the key with an empty value,
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A watch: events in revision order. An error ends the stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap failed: the key's mod revision is not the one
    /// expected. `current` is the key as it is now, if it still exists.
    #[error("revision conflict on key {key:?}: expected {expected}, found {}", current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the oldest kept history.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("value for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// The database could not be opened or is not a valid store.
    #[error("cannot open datastore {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("datastore backend error: {0}")]
    Backend(String),
    #[error("datastore is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cluster datastore. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key at the current revision, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    /// Returns the revision of the write.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Replaces the value of `key` if its mod revision is `expected`.
    /// Fails with [`Error::NotFound`] or [`Error::Conflict`].
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes `key`, if `expected` is given only when its mod revision is
    /// that. Returns the deleted key and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Keys under `prefix` in ascending order, consistent at one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// How many keys are under `prefix` now.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// The revision of the last write. An empty new store is at revision 1
    /// (as etcd is), so the first write is revision 2.
    async fn current_revision(&self) -> Result<Revision>;

    /// Every change under `prefix` strictly after revision `from`, in order,
    /// followed by changes as they happen. `from` = 0 means "from now".
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// Forgets history before `revision`: lists at an older revision and
    /// watches from before `revision - 1` fail with [`Error::Compacted`];
    /// the state at `revision` and after is kept (etcd's semantics).
    /// Compacting to a revision already compacted is not an error.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// The first key past every key that starts with `prefix`, as etcd computes
/// range ends. `None` when there is no such key (prefix of all 0xff bytes).
pub fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Rejects values over [`MAX_VALUE_BYTES`]; shared by every backend.
pub(crate) fn check_value_size(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_cases() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("/registry/pods/", Some(b"/registry/pods0")),
            ("a", Some(b"b")),
            ("", None),
        ];
        for (prefix, want) in cases {
            assert_eq!(prefix_end(prefix).as_deref(), *want, "prefix {prefix:?}");
        }
    }

    #[test]
    fn oversized_value_is_a_typed_error() {
        assert!(check_value_size("k", &vec![0; MAX_VALUE_BYTES]).is_ok());
        let err = check_value_size("k", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(matches!(err, Error::ValueTooLarge { size, .. } if size == MAX_VALUE_BYTES + 1));
    }
}
