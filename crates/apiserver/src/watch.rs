//! Watch: a stream of `{"type": ..., "object": ...}` lines (JSON framing,
//! one event per line, as Kubernetes sends them).
//!
//! resourceVersion semantics, as Kubernetes:
//! * unset or "0": ADDED for every existing object, then changes after the
//!   list's revision;
//! * N: every change after N; 410 Gone (as an ERROR event) when compacted;
//! * sendInitialEvents=true: the initial ADDED events followed by a BOOKMARK
//!   annotated `k8s.io/initial-events-end`.
//!
//! Label/field selectors turn a change into ADDED or DELETED when the object
//! starts or stops matching, as Kubernetes' watch filter does.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use store::{EventKind, Revision};

use crate::cache;
use crate::handler::{self, Output, OwnedScope};
use crate::registry::CustomVersion;
use crate::rest::Params;
use crate::status::{from_store, ApiError, ApiResult};
use crate::State;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Longest watch when the client gives no timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub async fn serve(
    state: Arc<State>,
    scope: OwnedScope,
    custom: Option<CustomVersion>,
    params: Params,
    out: Output,
) -> ApiResult<Response> {
    let res = scope.res;
    let filter = handler::selectors(res, &params)?;
    let timeout = params
        .i64("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = params.flag("allowWatchBookmarks");
    let send_initial = params.get("sendInitialEvents").map(|v| v == "true");
    let rv = params.get("resourceVersion").map(str::to_owned);
    if send_initial == Some(true) && params.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![crate::status::Cause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: \"\": sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
                field: "resourceVersionMatch".into(),
            }],
        ));
    }
    let store = state.store.clone();
    let prefix = scope.scope().prefix();
    let cache = state
        .caches
        .get(&store, &api::registry::storage_prefix(res, None));

    // Initial state, when asked for (or implied by an unset/0 version).
    let initial = matches!(
        (rv.as_deref(), send_initial),
        (_, Some(true)) | (None | Some("0"), None)
    );
    let from = if initial {
        None
    } else {
        let rv = rv.unwrap_or_default();
        Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        )
    };

    let table = match out {
        Output::Table(include) => Some(include),
        Output::Object => None,
    };
    let encode = move |out: Out| -> String {
        let ev = match out {
            // The common case: the object as stored, to a JSON watcher. Its
            // serialization is shared with every other watcher of the event.
            Out::Shared(kind, ev) if table.is_none() && handler::in_version(&ev.object, res) => {
                let json = ev.object_json();
                let mut line = String::with_capacity(json.len() + 32);
                line.push_str("{\"type\":\"");
                line.push_str(kind);
                line.push_str("\",\"object\":");
                line.push_str(json);
                line.push_str("}\n");
                return line;
            }
            Out::Shared(kind, ev) => event(kind, handler::served(res, (*ev.object).clone())),
            Out::Event(ev) => ev,
        };
        let ev = match table {
            Some(include) => to_table_event(res, custom.as_ref(), ev, include),
            None => ev,
        };
        let mut line = serde_json::to_string(&ev).expect("JSON values serialize");
        line.push('\n');
        line
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let filter = Arc::new(filter);

    // A version beyond the store's is refused as Kubernetes does, before the
    // cache takes it as "everything after it".
    if let Some(n) = from {
        let current = store
            .current_revision()
            .await
            .map_err(|e| from_store(e, res.group, res.plural, ""))?;
        if n > current {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {n}, current: {current}"
            )));
        }
    }
    let mut first: Vec<Value> = Vec::new();
    let live: BoxStream<'static, Change> = match cache.watch(&prefix, from).await {
        cache::Start::Snapshot {
            objects,
            revision,
            rx,
        } => {
            first.extend(
                objects
                    .iter()
                    .filter(|o| filter(o))
                    .map(|o| event("ADDED", handler::served(res, (**o).clone()))),
            );
            if send_initial == Some(true) {
                first.push(bookmark(res, revision, true));
            }
            cached_changes(Vec::new(), rx, revision)
        }
        cache::Start::Resume { events, rx } => cached_changes(events, rx, from.unwrap_or(0)),
        cache::Start::Miss => {
            let from = from.unwrap_or(0);
            match store.watch(&prefix, from).await {
                Ok(s) => store_changes(s),
                Err(store::Error::Compacted { .. }) => {
                    // As Kubernetes: a 200 stream carrying one ERROR event.
                    let status =
                        ApiError::gone(format!("too old resource version: {from}")).to_status();
                    let body = format!("{}\n", json!({"type": "ERROR", "object": status}));
                    return Ok(watch_response(
                        futures::stream::once(async move { body }).boxed(),
                    ));
                }
                Err(e) => return Err(from_store(e, res.group, res.plural, "")),
            }
        }
    };
    let start_rv = from.unwrap_or(0);
    let initial_lines: Vec<String> = first.into_iter().map(Out::Event).map(&encode).collect();
    let live = watch_events(live, filter, res, bookmarks, deadline, start_rv).map(encode);
    let body = futures::stream::iter(initial_lines).chain(live).boxed();
    Ok(watch_response(body))
}

/// One change, from the cache or the store: what the object is now (None
/// after a delete) and was before.
struct Change {
    revision: Revision,
    kind: EventKind,
    object: Option<Arc<Value>>,
    prev: Option<Arc<Value>>,
    /// An error that ends the watch.
    error: Option<Value>,
    /// The watch cache's event this change is, whose JSON watchers share.
    cached: Option<Arc<cache::CachedEvent>>,
}

/// What a watch sends: an event made for this watcher, or a cached change
/// whose object's JSON is shared by every watcher.
enum Out {
    Event(Value),
    Shared(&'static str, Arc<cache::CachedEvent>),
}

fn cached_changes(
    history: Vec<Arc<cache::CachedEvent>>,
    rx: tokio::sync::broadcast::Receiver<Arc<cache::CachedEvent>>,
    after: Revision,
) -> BoxStream<'static, Change> {
    let to_change = |e: &Arc<cache::CachedEvent>| Change {
        revision: e.revision,
        kind: e.kind,
        object: Some(e.object.clone()),
        prev: e.prev.clone(),
        error: None,
        cached: Some(e.clone()),
    };
    let replay: Vec<Change> = history.iter().map(&to_change).collect();
    let last = history.last().map_or(after, |e| e.revision);
    let live = futures::stream::unfold((rx, last), move |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.revision <= last => continue,
                Ok(e) => return Some((to_change(&e), (rx, e.revision))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow to follow: end the watch; the client resumes
                    // from its last resourceVersion.
                    let status = ApiError::gone(
                        "the watch fell behind; resume from the last resourceVersion",
                    )
                    .to_status();
                    let c = Change {
                        revision: last,
                        kind: EventKind::Put,
                        object: None,
                        prev: None,
                        error: Some(status),
                        cached: None,
                    };
                    let (closed_tx, closed_rx) = tokio::sync::broadcast::channel(1);
                    drop(closed_tx);
                    return Some((c, (closed_rx, last)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::stream::iter(replay).chain(live).boxed()
}

fn store_changes(stream: store::WatchStream) -> BoxStream<'static, Change> {
    let decode = |kv: &store::KeyValue, rev: Revision| -> Option<Arc<Value>> {
        let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
        crate::object::set_meta(&mut obj, "resourceVersion", rev.to_string());
        Some(Arc::new(obj))
    };
    stream
        .map(move |ev| match ev {
            Ok(ev) => {
                let rev = ev.revision();
                let prev = ev.prev.as_ref().and_then(|p| {
                    decode(
                        p,
                        if ev.kind == EventKind::Delete {
                            rev
                        } else {
                            p.mod_revision
                        },
                    )
                });
                let object = match ev.kind {
                    EventKind::Put => decode(&ev.kv, rev),
                    EventKind::Delete => prev.clone(),
                };
                Change {
                    revision: rev,
                    kind: ev.kind,
                    object,
                    prev,
                    error: None,
                    cached: None,
                }
            }
            Err(e) => {
                let status = match e {
                    store::Error::Compacted { requested, .. } => {
                        ApiError::gone(format!("too old resource version: {requested}")).to_status()
                    }
                    other => ApiError::internal(other.to_string()).to_status(),
                };
                Change {
                    revision: 0,
                    kind: EventKind::Put,
                    object: None,
                    prev: None,
                    error: Some(status),
                    cached: None,
                }
            }
        })
        .boxed()
}

fn watch_response(lines: futures::stream::BoxStream<'static, String>) -> Response {
    let body =
        Body::from_stream(lines.map(|l| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(l))));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        body,
    )
        .into_response()
}

fn event(kind: &str, obj: Value) -> Value {
    json!({"type": kind, "object": obj})
}

fn bookmark(res: &api::registry::Resource, rv: Revision, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event(
        "BOOKMARK",
        json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta}),
    )
}

fn to_table_event(
    res: &api::registry::Resource,
    custom: Option<&CustomVersion>,
    mut ev: Value,
    include: api::table::IncludeObject,
) -> Value {
    let kind = ev["type"].as_str().unwrap_or("").to_owned();
    if kind == "ERROR" {
        return ev;
    }
    let obj = ev["object"].take();
    let rv = crate::object::meta_str(&obj, "resourceVersion")
        .unwrap_or("")
        .to_owned();
    if kind == "BOOKMARK" {
        let mut t = handler::make_table(res, custom, &[], include, json!({"resourceVersion": rv}));
        t["columnDefinitions"] = Value::Null;
        return event(&kind, t);
    }
    let table = handler::make_table(
        res,
        custom,
        std::slice::from_ref(&obj),
        include,
        json!({"resourceVersion": rv}),
    );
    event(&kind, table)
}

/// Changes → watch events, with selector transitions, bookmarks and the
/// deadline.
fn watch_events(
    changes: BoxStream<'static, Change>,
    filter: Arc<impl Fn(&Value) -> bool + Send + Sync + 'static>,
    res: &'static api::registry::Resource,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    from: Revision,
) -> impl Stream<Item = Out> + Send {
    struct St<F> {
        changes: BoxStream<'static, Change>,
        filter: Arc<F>,
        last: Revision,
        done: bool,
        bookmark_at: tokio::time::Instant,
    }
    let st = St {
        changes,
        filter,
        last: from,
        done: false,
        bookmark_at: tokio::time::Instant::now() + BOOKMARK_INTERVAL,
    };
    futures::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let next = tokio::select! {
                c = st.changes.next() => c,
                _ = tokio::time::sleep_until(deadline) => None,
                _ = tokio::time::sleep_until(st.bookmark_at), if bookmarks => {
                    st.bookmark_at = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    return Some((Out::Event(bookmark(res, st.last, false)), st));
                }
            };
            let c = next?;
            if let Some(status) = c.error {
                st.done = true;
                return Some((Out::Event(event("ERROR", status)), st));
            }
            st.last = c.revision;
            let matches = |o: &Option<Arc<Value>>| o.as_ref().is_some_and(|o| (st.filter)(o));
            let (cur_match, prev_match) = match c.kind {
                EventKind::Put => (matches(&c.object), matches(&c.prev)),
                EventKind::Delete => (false, matches(&c.prev) || matches(&c.object)),
            };
            let kind = match c.kind {
                EventKind::Put if cur_match && c.prev.is_some() && prev_match => "MODIFIED",
                EventKind::Put if cur_match => "ADDED",
                // Stopped matching: a DELETED of the new state.
                EventKind::Put if prev_match => "DELETED",
                EventKind::Delete if prev_match => "DELETED",
                _ => continue,
            };
            let out = match c.cached {
                Some(cached) => Out::Shared(kind, cached),
                None => {
                    let obj = c
                        .object
                        .map(|o| handler::served(res, (*o).clone()))
                        .unwrap_or(Value::Null);
                    Out::Event(event(kind, obj))
                }
            };
            return Some((out, st));
        }
    })
}
