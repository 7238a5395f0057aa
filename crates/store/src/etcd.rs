//! The etcd backend: etcd v3 through `etcd-client`, for HA (several servers
//! on one etcd cluster).
//!
//! Create is a transaction on `create_revision == 0`, compare-and-swap a
//! transaction on `mod_revision`, watches ask for `prev_kv` and start at
//! `from + 1`, compaction is physical (as kube-apiserver does it).

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    check_value_size, prefix_end, Error, EventKind, KeyValue, ListOptions, ListResult, Result,
    Revision, Store, WatchEvent, WatchStream,
};

/// A store on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

/// `etcd://h1:2379` and bare `h1:2379` as http URLs; http(s) as given.
pub fn normalize_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if let Some(rest) = e.strip_prefix("etcd://") {
        format!("http://{rest}")
    } else if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    }
}

/// The text of an etcd error: the server's message for a gRPC status (e.g.
/// `etcdserver: mvcc: required revision has been compacted`), else the
/// client's description.
fn error_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{} ({:?})", status.message(), status.code())
        }
        other => other.to_string(),
    }
}

fn backend(e: etcd_client::Error) -> Error {
    Error::Backend(error_message(&e))
}

/// etcd's message (gRPC OutOfRange) for a revision older than its
/// compaction. etcd 3.4 says `etcdserver: mvcc: required revision has been
/// compacted` and does not tell which revision it compacted to.
const COMPACTED_MESSAGE: &str = "required revision has been compacted";
/// etcd's message (gRPC OutOfRange) for a revision past its current one:
/// `etcdserver: mvcc: required revision is a future revision`.
const FUTURE_MESSAGE: &str = "required revision is a future revision";

/// Which of etcd's revision errors a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RevisionError {
    Compacted,
    Future,
}

fn revision_error(message: &str) -> Option<RevisionError> {
    if message.contains(COMPACTED_MESSAGE) {
        Some(RevisionError::Compacted)
    } else if message.contains(FUTURE_MESSAGE) {
        Some(RevisionError::Future)
    } else {
        None
    }
}

/// Maps an error of a request at revision `requested` to a typed one. The
/// revisions etcd does not report (the compacted one, the current one) are
/// 0 here; [`EtcdStore::revision_error`] looks them up.
fn range_error(e: etcd_client::Error, requested: Revision) -> Error {
    let message = error_message(&e);
    match revision_error(&message) {
        Some(RevisionError::Compacted) => Error::Compacted {
            requested,
            compacted: 0,
        },
        Some(RevisionError::Future) => Error::FutureRevision {
            requested,
            current: 0,
        },
        None => Error::Backend(message),
    }
}

/// The etcd range `[key, end)` of every key under `prefix`. etcd rejects an
/// empty key, so the empty prefix is `["\0", "\0")`, etcd's "all keys".
fn key_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    match prefix_end(prefix) {
        Some(end) => (prefix.as_bytes().to_vec(), end),
        None if prefix.is_empty() => (vec![0], vec![0]),
        // A prefix of all 0xff bytes (impossible in UTF-8): every key from it.
        None => (prefix.as_bytes().to_vec(), vec![0]),
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec())
            .map_err(|_| Error::Backend("etcd returned a key that is not UTF-8".into()))?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision())
        .ok_or_else(|| Error::Backend("etcd response without header".into()))
}

/// The current value from the `or_else` get of a failed transaction.
fn failed_get(resp: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(g) = op {
            return g.kvs().first().map(to_kv).transpose();
        }
    }
    Ok(None)
}

impl EtcdStore {
    /// Connects and checks that etcd answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        let urls: Vec<String> = endpoints.iter().map(|e| normalize_endpoint(e)).collect();
        let location = urls.join(",");
        let open = |reason: String| Error::Open {
            location: location.clone(),
            reason,
        };
        if urls.is_empty() {
            return Err(open("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let mut client = tokio::time::timeout(
            Duration::from_secs(15),
            Client::connect(&urls, Some(options)),
        )
        .await
        .map_err(|_| open("timed out connecting".into()))?
        .map_err(|e| open(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(15), client.status())
            .await
            .map_err(|_| open("timed out waiting for etcd status".into()))?
            .map_err(|e| open(e.to_string()))?;
        Ok(EtcdStore { client })
    }
}

/// Largest gRPC response accepted: big lists come in one message (tonic's
/// default of 4 MiB would fail a list of a few thousand objects).
const MAX_MESSAGE: usize = 1 << 30;

/// How long a watch may take to be confirmed by etcd.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the look-up of the compacted revision may take (error path only).
const COMPACTED_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl EtcdStore {
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn watch_client(&self) -> etcd_client::WatchClient {
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// [`range_error`], with the revisions etcd leaves out of its message
    /// looked up (best effort: 0 where the look-up fails).
    async fn revision_error(&self, e: etcd_client::Error, requested: Revision) -> Error {
        match range_error(e, requested) {
            Error::Compacted { requested, .. } => Error::Compacted {
                requested,
                compacted: self.compacted_revision().await.unwrap_or(0),
            },
            Error::FutureRevision { requested, .. } => Error::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            other => other,
        }
    }

    /// The revision etcd last compacted to, or `None` when it cannot tell.
    ///
    /// etcd has no request for it; a watch from revision 1 is answered with
    /// the compact revision when history was compacted. Without a compaction
    /// the watch stays open and this gives up after
    /// [`COMPACTED_PROBE_TIMEOUT`], so it is only for error paths.
    async fn compacted_revision(&self) -> Option<Revision> {
        let probe = async {
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = self
                .watch_client()
                .watch("/rkube/compaction-probe", Some(options))
                .await
                .ok()?;
            while let Some(resp) = stream.message().await.ok()? {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if resp.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(COMPACTED_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.kv().get(key, None).await.map_err(backend)?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        check_value_size(key, &value)?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key, value, None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        header_revision(resp.header())
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        check_value_size(key, &value)?;
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then(vec![TxnOp::put(key, value, None)])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if resp.succeeded() {
            return header_revision(resp.header());
        }
        match failed_get(&resp)? {
            None => Err(Error::NotFound(key.to_owned())),
            Some(cur) => Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current: Some(Box::new(cur)),
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let delete = TxnOp::delete(key, Some(etcd_client::DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(rev) => Txn::new().when(vec![Compare::mod_revision(key, CompareOp::Equal, rev)]),
            // Deletes only what exists: a missing key fails the compare.
            None => Txn::new().when(vec![Compare::create_revision(key, CompareOp::Greater, 0)]),
        }
        .and_then(vec![delete])
        .or_else(vec![TxnOp::get(key, None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return match failed_get(&resp)? {
                None => Err(Error::NotFound(key.to_owned())),
                Some(cur) => Err(Error::Conflict {
                    key: key.to_owned(),
                    expected: expected.unwrap_or_default(),
                    current: Some(Box::new(cur)),
                }),
            };
        }
        let revision = header_revision(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op {
                if let Some(prev) = d.prev_kvs().first() {
                    return Ok((to_kv(prev)?, revision));
                }
            }
        }
        Err(Error::NotFound(key.to_owned()))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (key, end) = key_range(prefix);
        let start = match &opts.start {
            Some(s) if s.as_str() > prefix => s.clone().into_bytes(),
            _ => key,
        };
        let mut get = GetOptions::new().with_range(end);
        if opts.limit > 0 {
            get = get.with_limit(opts.limit);
        }
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        let resp = self.kv().get(start, Some(get)).await;
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => return Err(self.revision_error(e, opts.revision).await),
        };
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            header_revision(resp.header())?
        };
        Ok(ListResult {
            items: resp.kvs().iter().map(to_kv).collect::<Result<_>>()?,
            revision,
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let (key, end) = key_range(prefix);
        let resp = self
            .kv()
            .get(
                key,
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await
            .map_err(backend)?;
        Ok(resp.count())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .kv()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend)?;
        header_revision(resp.header())
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let (key, end) = key_range(prefix);
        let mut options = WatchOptions::new().with_range(end).with_prev_key();
        if from > 0 {
            options = options.with_start_revision(from + 1);
        }
        let stream = self
            .watch_client()
            .watch(key, Some(options))
            .await
            .map_err(backend)?;
        let mut state = WatchState {
            stream,
            pending: Default::default(),
            from,
            done: false,
        };
        // Wait until etcd has registered the watch: "from now" then means
        // every write that starts after this returns.
        let created = tokio::time::timeout(WATCH_CREATE_TIMEOUT, state.stream.message())
            .await
            .map_err(|_| Error::Backend("etcd did not confirm the watch in time".into()))?
            .map_err(backend)?
            .ok_or_else(|| Error::Backend("etcd closed the watch before confirming it".into()))?;
        if let Some(err) = state.handle(created) {
            // Compacted or canceled at once: the stream yields the error.
            state.pending.clear();
            return Ok(futures::stream::once(async move { Err(err) }).boxed());
        }
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .kv()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            // Already compacted to `revision` or further.
            Err(e) if revision_error(&error_message(&e)) == Some(RevisionError::Compacted) => {
                Ok(())
            }
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }
}

struct WatchState {
    /// Keeps the etcd watch open; dropping it cancels the watch.
    stream: etcd_client::WatchStream,
    pending: std::collections::VecDeque<WatchEvent>,
    from: Revision,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent>, WatchState)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if self.done {
                return None;
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.done = true;
                    return Some((Err(Error::Closed), self));
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(backend(e)), self));
                }
            };
            if let Some(err) = self.handle(resp) {
                // Events before the error were queued by `handle` but an
                // error ends the stream: the caller restarts from the last
                // revision it saw, so dropping them loses nothing.
                self.pending.clear();
                return Some((Err(err), self));
            }
        }
    }

    /// Queues the events of one response; an error ends the watch.
    fn handle(&mut self, resp: etcd_client::WatchResponse) -> Option<Error> {
        if resp.compact_revision() > 0 {
            self.done = true;
            return Some(Error::Compacted {
                requested: self.from,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            self.done = true;
            let reason = resp.cancel_reason();
            return Some(match revision_error(reason) {
                Some(RevisionError::Compacted) => Error::Compacted {
                    requested: self.from,
                    compacted: 0,
                },
                _ => Error::Backend(format!("etcd canceled the watch: {reason}")),
            });
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let kv = match to_kv(kv) {
                Ok(kv) => kv,
                Err(e) => {
                    self.done = true;
                    return Some(e);
                }
            };
            let prev = match ev.prev_kv().map(to_kv).transpose() {
                Ok(prev) => prev,
                Err(e) => {
                    self.done = true;
                    return Some(e);
                }
            };
            let kind = match ev.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            self.pending.push_back(WatchEvent { kind, kv, prev });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let cases = [
            ("etcd://h1:2379", "http://h1:2379"),
            ("h2:2379", "http://h2:2379"),
            ("https://h3:2379/", "https://h3:2379"),
            ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_endpoint(input), want);
        }
    }

    #[test]
    fn key_ranges() {
        assert_eq!(key_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(key_range(""), (vec![0], vec![0]));
    }

    /// The exact messages of etcd 3.4.23 (gRPC code OutOfRange).
    #[test]
    fn revision_errors_are_recognized() {
        let cases = [
            (
                "etcdserver: mvcc: required revision has been compacted",
                Some(RevisionError::Compacted),
            ),
            (
                "etcdserver: mvcc: required revision is a future revision",
                Some(RevisionError::Future),
            ),
            // Without the `etcdserver:` prefix, as a watch cancel reason
            // would carry it (etcd 3.4 sets only compact_revision).
            (
                "mvcc: required revision has been compacted",
                Some(RevisionError::Compacted),
            ),
            ("etcdserver: request timed out", None),
        ];
        for (message, want) in cases {
            assert_eq!(revision_error(message), want, "{message}");
        }
    }

    #[test]
    fn other_errors_are_backend_errors() {
        let err = range_error(etcd_client::Error::InvalidArgs("bad key".into()), 7);
        assert!(
            matches!(&err, Error::Backend(m) if m.contains("bad key")),
            "{err:?}"
        );
    }
}
