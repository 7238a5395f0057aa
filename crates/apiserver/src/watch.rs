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
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use store::{EventKind, Revision};

use crate::handler::{self, Output, OwnedScope};
use crate::registry::CustomVersion;
use crate::rest::{self, Params};
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

    // Initial state, when asked for (or implied by an unset/0 version).
    let initial = match (rv.as_deref(), send_initial) {
        (_, Some(true)) | (None | Some("0"), None) => true,
        _ => false,
    };
    let mut events: Vec<Value> = Vec::new();
    let from: Revision;
    if initial {
        let mut list_params = params.clone();
        list_params
            .0
            .retain(|k, _| k == "labelSelector" || k == "fieldSelector");
        let page = rest::list(&store, scope.scope(), &list_params, &|o| filter(o)).await?;
        from = page.revision;
        for obj in page.items {
            events.push(event("ADDED", obj));
        }
        if send_initial == Some(true) {
            events.push(bookmark(res, from, true));
        }
    } else {
        let rv = rv.unwrap_or_default();
        from = rv
            .parse::<Revision>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
    }

    let stream = match store.watch(&prefix, from).await {
        Ok(s) => s,
        Err(store::Error::Compacted { .. }) => {
            // As Kubernetes: a 200 stream carrying one ERROR event.
            let status = ApiError::gone(format!("too old resource version: {from}")).to_status();
            let body = format!("{}\n", json!({"type": "ERROR", "object": status}));
            return Ok(watch_response(
                futures::stream::once(async move { body }).boxed(),
            ));
        }
        Err(e) => return Err(from_store(e, res.group, res.plural, "")),
    };

    let table = match out {
        Output::Table(include) => Some(include),
        Output::Object => None,
    };
    let encode = move |ev: Value| -> String {
        let ev = match table {
            Some(include) => to_table_event(res, custom.as_ref(), ev, include),
            None => ev,
        };
        let mut line = serde_json::to_string(&ev).expect("JSON values serialize");
        line.push('\n');
        line
    };
    let initial_lines: Vec<String> = events.into_iter().map(&encode).collect();

    let deadline = tokio::time::Instant::now() + timeout;
    let live = live_events(stream, filter, res, bookmarks, deadline, from).map(encode);
    let body = futures::stream::iter(initial_lines).chain(live).boxed();
    Ok(watch_response(body))
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

/// Store events → watch events, with selector transitions, bookmarks and
/// the deadline.
fn live_events(
    stream: store::WatchStream,
    filter: impl Fn(&Value) -> bool + Send + Sync + 'static,
    res: &'static api::registry::Resource,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    from: Revision,
) -> impl Stream<Item = Value> + Send {
    struct St<F> {
        stream: store::WatchStream,
        filter: F,
        last: Revision,
        done: bool,
        bookmark_at: tokio::time::Instant,
    }
    let st = St {
        stream,
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
                ev = st.stream.next() => Some(ev),
                _ = tokio::time::sleep_until(deadline) => None,
                _ = tokio::time::sleep_until(st.bookmark_at), if bookmarks => {
                    st.bookmark_at = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    return Some((bookmark(res, st.last, false), st));
                }
            };
            let Some(ev) = next else { return None };
            let ev = match ev {
                None => return None,
                Some(Err(store::Error::Compacted { .. })) => {
                    st.done = true;
                    let status = ApiError::gone(format!("too old resource version: {}", st.last))
                        .to_status();
                    return Some((event("ERROR", status), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    let status = ApiError::internal(e.to_string()).to_status();
                    return Some((event("ERROR", status), st));
                }
                Some(Ok(ev)) => ev,
            };
            st.last = ev.revision();
            let decode = |kv: &store::KeyValue, rev: Revision| -> Option<Value> {
                let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
                crate::object::set_meta(&mut obj, "resourceVersion", rev.to_string());
                Some(obj)
            };
            let cur = match ev.kind {
                EventKind::Put => decode(&ev.kv, ev.kv.mod_revision),
                EventKind::Delete => None,
            };
            let prev = ev.prev.as_ref().and_then(|p| decode(p, ev.kv.mod_revision));
            let cur_match = cur.as_ref().is_some_and(|o| (st.filter)(o));
            let prev_match = prev.as_ref().is_some_and(|o| (st.filter)(o));
            let out = match (ev.kind, cur, prev) {
                (EventKind::Put, Some(cur), None) if cur_match => event("ADDED", cur),
                (EventKind::Put, Some(cur), Some(_)) if cur_match && prev_match => {
                    event("MODIFIED", cur)
                }
                (EventKind::Put, Some(cur), Some(_)) if cur_match => event("ADDED", cur),
                (EventKind::Put, Some(cur), Some(_)) if prev_match => {
                    // Stopped matching: a DELETED of the new state.
                    event("DELETED", cur)
                }
                (EventKind::Delete, _, Some(prev)) if prev_match => event("DELETED", prev),
                _ => continue,
            };
            return Some((out, st));
        }
    })
}
