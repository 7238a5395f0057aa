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

fn backend(e: etcd_client::Error) -> Error {
    Error::Backend(e.to_string())
}

/// Maps etcd's revision errors (gRPC OutOfRange) to typed ones.
fn range_error(e: etcd_client::Error, requested: Revision) -> Error {
    let msg = e.to_string();
    if msg.contains("required revision has been compacted") {
        Error::Compacted {
            requested,
            compacted: 0,
        }
    } else if msg.contains("required revision is a future revision") {
        Error::FutureRevision {
            requested,
            current: 0,
        }
    } else {
        Error::Backend(msg)
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

impl EtcdStore {
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
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
        let start = match &opts.start {
            Some(s) if s.as_str() > prefix => s.clone(),
            _ => prefix.to_owned(),
        };
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let mut get = GetOptions::new().with_range(end);
        if opts.limit > 0 {
            get = get.with_limit(opts.limit);
        }
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        let resp = self
            .kv()
            .get(start, Some(get))
            .await
            .map_err(|e| range_error(e, opts.revision))?;
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
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let resp = self
            .kv()
            .get(
                prefix,
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
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let mut options = WatchOptions::new().with_range(end).with_prev_key();
        if from > 0 {
            options = options.with_start_revision(from + 1);
        }
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(prefix, Some(options))
            .await
            .map_err(backend)?;
        let state = WatchState {
            stream,
            pending: Default::default(),
            from,
            done: false,
        };
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .kv()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(range_error(e, revision)),
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
            if resp.compact_revision() > 0 {
                self.done = true;
                let err = Error::Compacted {
                    requested: self.from,
                    compacted: resp.compact_revision(),
                };
                return Some((Err(err), self));
            }
            if resp.canceled() {
                self.done = true;
                let reason = resp.cancel_reason().to_owned();
                return Some((
                    Err(Error::Backend(format!("etcd canceled the watch: {reason}"))),
                    self,
                ));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let prev = ev.prev_kv().map(to_kv).transpose();
                let kv = to_kv(kv);
                let (kv, prev) = match (kv, prev) {
                    (Ok(kv), Ok(prev)) => (kv, prev),
                    (Err(e), _) | (_, Err(e)) => {
                        self.done = true;
                        self.pending.clear();
                        return Some((Err(e), self));
                    }
                };
                let kind = match ev.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                };
                self.pending.push_back(WatchEvent { kind, kv, prev });
            }
        }
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
}
