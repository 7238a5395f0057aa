//! `metrics.k8s.io/v1beta1`, the resource metrics API that `kubectl top`
//! (and an HPA on cpu/memory) reads: what metrics-server adds to a
//! Kubernetes cluster, served here by the API server itself.
//!
//! `nodes` (NodeMetrics) and `pods` (PodMetrics, per container), get and
//! list with label and field selectors. Usage comes from each node agent's
//! Summary API (`/stats/summary` on the kubelet port, over the same client
//! certificate as logs and exec): memory is the working set as reported;
//! CPU is a rate, the growth of cumulative CPU time between two samples of
//! the node over their window. Nodes are scraped when asked, not on a
//! timer: a sample stays the base of the next answer for up to a minute
//! (`window` says how long the rate is over); with none that recent, two
//! samples are taken a second apart. Answers less than a second old are
//! reused. A node that cannot be reached is left out of lists (as
//! metrics-server leaves it out) and not tried again for 10 s; a request
//! answers with the nodes scraped within 10 s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::registry::Resource;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::{json, Value};

use crate::handler::{json_response, Output, Request};

use crate::rest::Scope;
use crate::status::{ApiError, ApiResult};
use crate::State;

pub const GROUP: &str = "metrics.k8s.io";

/// A sample older than this is not the base of a rate.
const MAX_BASE_AGE: Duration = Duration::from_secs(60);
/// With no usable base: the gap between the two samples taken.
const FIRST_WINDOW: Duration = Duration::from_secs(1);
/// An answer younger than this is reused.
const FRESH: Duration = Duration::from_secs(1);
/// A node that could not be scraped is not tried again before this.
const RETRY_FAILED: Duration = Duration::from_secs(10);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SUMMARY: usize = 32 << 20;
/// Nodes scraped at once.
const PARALLEL: usize = 32;
/// How long one request waits for its nodes.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

pub fn is_metrics(res: &Resource) -> bool {
    res.group == GROUP
}

/// Cumulative CPU time and memory of one thing at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Unix nanoseconds.
    pub time: i64,
    pub cpu_ns: u64,
    pub memory: u64,
}

/// A container of a pod: namespace, pod name, pod uid, container name.
pub type ContainerKey = (String, String, String, String);

/// One scrape of a node's Summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub node: Option<Point>,
    pub containers: BTreeMap<ContainerKey, Point>,
}

fn unix_nanos(v: Option<&Value>) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(v?.as_str()?).ok()?;
    // The agent writes the epoch (or just after) for a time it lacks.
    t.timestamp_nanos_opt()
        .filter(|n| *n > 1_000_000_000_000_000_000)
}

fn point(stats: &Value) -> Option<Point> {
    let cpu = stats.get("cpu")?;
    Some(Point {
        time: unix_nanos(cpu.get("time"))?,
        cpu_ns: cpu.get("usageCoreNanoSeconds")?.as_u64()?,
        memory: stats.pointer("/memory/workingSetBytes")?.as_u64()?,
    })
}

/// The points of a Summary API document (stats/v1alpha1). Where the
/// runtime reports a container twice (an exited run beside the running
/// one), the newer sample counts.
pub fn parse_summary(doc: &Value) -> Sample {
    let mut out = Sample {
        node: doc.get("node").and_then(point),
        ..Sample::default()
    };
    for pod in doc
        .get("pods")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = |k: &str| {
            pod.pointer(&format!("/podRef/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (ns, name, uid) = (r("namespace"), r("name"), r("uid"));
        for c in pod
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(cname), Some(p)) = (c.get("name").and_then(Value::as_str), point(c)) else {
                continue;
            };
            let key = (ns.clone(), name.clone(), uid.clone(), cname.to_owned());
            match out.containers.get(&key) {
                Some(old) if old.time >= p.time => {}
                _ => {
                    out.containers.insert(key, p);
                }
            }
        }
    }
    out
}

/// Usage over a window ending at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub time: i64,
    pub window_ns: i64,
    pub nano_cores: u64,
    pub memory: u64,
}

/// One pod's usage: its uid, and its containers' by name.
pub type PodUsage = (String, Vec<(String, Usage)>);

/// What a node's two samples say: the node's usage, and each pod's
/// containers' (by namespace and name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUsage {
    pub node: Option<Usage>,
    pub pods: BTreeMap<(String, String), PodUsage>,
}

fn rate(prev: &Point, cur: &Point) -> Option<Usage> {
    let dt = cur.time - prev.time;
    // A restarted container's counter starts again: no rate from it.
    let dcpu = cur.cpu_ns.checked_sub(prev.cpu_ns)?;
    (dt > 0).then(|| Usage {
        time: cur.time,
        window_ns: dt,
        nano_cores: (u128::from(dcpu) * 1_000_000_000 / dt as u128) as u64,
        memory: cur.memory,
    })
}

/// Rates between two samples of one node.
pub fn usage(prev: &Sample, cur: &Sample) -> NodeUsage {
    let mut out = NodeUsage {
        node: prev.node.zip(cur.node).and_then(|(p, c)| rate(&p, &c)),
        ..NodeUsage::default()
    };
    for (key, c) in &cur.containers {
        let Some(u) = prev.containers.get(key).and_then(|p| rate(p, c)) else {
            continue;
        };
        let (ns, pod, uid, container) = key.clone();
        out.pods
            .entry((ns, pod))
            .or_insert_with(|| (uid, Vec::new()))
            .1
            .push((container, u));
    }
    out
}

/// CPU in cores as Kubernetes writes a nano-scaled quantity: `250m`,
/// `1500u`, `123456789n`, `2`.
pub fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores == 0 {
        return "0".into();
    }
    for (suffix, unit) in [("", 1_000_000_000), ("m", 1_000_000), ("u", 1_000)] {
        if nano_cores.is_multiple_of(unit) {
            return format!("{}{suffix}", nano_cores / unit);
        }
    }
    format!("{nano_cores}n")
}

/// Bytes as a binary-SI quantity: `1234Ki`, `5Mi`, `1000`.
pub fn memory_quantity(bytes: u64) -> String {
    api::quantity::Quantity {
        milli: i128::from(bytes) * 1000,
        binary: true,
    }
    .to_string()
}

/// Go's `time.Duration.String()` for a window.
pub fn window(ns: i64) -> String {
    if ns < 1_000_000_000 {
        // Windows are a second or more; shorter ones print as ms.
        let ms = format!("{:.6}", ns as f64 / 1e6);
        let ms = ms.trim_end_matches('0').trim_end_matches('.');
        return format!("{ms}ms");
    }
    let whole = ns / 1_000_000_000;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    let frac = ns % 1_000_000_000;
    let mut sec = s.to_string();
    if frac != 0 {
        let f = format!("{frac:09}");
        sec = format!("{s}.{}", f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, m) => format!("{m}m{sec}s"),
        (h, m) => format!("{h}h{m}m{sec}s"),
    }
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn labels_of(obj: &Value) -> Value {
    obj.pointer("/metadata/labels")
        .cloned()
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .unwrap_or(Value::Null)
}

fn metadata(name: &str, namespace: Option<&str>, obj: &Value, now: &str) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": now});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    let labels = labels_of(obj);
    if !labels.is_null() {
        m["labels"] = labels;
    }
    m
}

/// A NodeMetrics object.
pub fn node_metrics(node: &Value, u: &Usage, now: &str) -> Value {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata(name, None, node, now),
        "timestamp": rfc3339(u.time),
        "window": window(u.window_ns),
        "usage": {"cpu": cpu_quantity(u.nano_cores), "memory": memory_quantity(u.memory)},
    })
}

/// A PodMetrics object: the pod's containers in its spec's order.
pub fn pod_metrics(pod: &Value, containers: &[(String, Usage)], now: &str) -> Value {
    let meta = |k: &str| {
        pod.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let order: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let mut list: Vec<&(String, Usage)> = containers.iter().collect();
    list.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    let time = list.iter().map(|(_, u)| u.time).max().unwrap_or(0);
    let window_ns = list.iter().map(|(_, u)| u.window_ns).max().unwrap_or(0);
    json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata(meta("name"), Some(meta("namespace")), pod, now),
        "timestamp": rfc3339(time),
        "window": window(window_ns),
        "containers": list.iter().map(|(n, u)| json!({
            "name": n,
            "usage": {"cpu": cpu_quantity(u.nano_cores), "memory": memory_quantity(u.memory)},
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// Scraping

#[derive(Default)]
struct NodeState {
    base: Option<(Instant, Sample)>,
    answer: Option<(Instant, Arc<NodeUsage>)>,
    failed: Option<Instant>,
}

/// The scrape state of every node asked about so far.
#[derive(Default)]
pub struct Scraper {
    nodes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<NodeState>>>>,
}

impl Scraper {
    fn cell(&self, node: &str) -> Arc<tokio::sync::Mutex<NodeState>> {
        self.nodes
            .lock()
            .unwrap()
            .entry(node.to_owned())
            .or_default()
            .clone()
    }

    /// A node's usage, or None where it cannot be had.
    async fn node_usage(&self, state: &State, node: &str) -> Option<Arc<NodeUsage>> {
        let cell = self.cell(node);
        let mut st = cell.lock().await;
        if let Some((at, answer)) = &st.answer {
            if at.elapsed() < FRESH {
                return Some(answer.clone());
            }
        }
        if st.failed.is_some_and(|t| t.elapsed() < RETRY_FAILED) {
            return None;
        }
        let base = match st.base.take() {
            Some((at, s)) if at.elapsed() < MAX_BASE_AGE => s,
            _ => match summary(state, node).await {
                Ok(s) => {
                    tokio::time::sleep(FIRST_WINDOW).await;
                    s
                }
                Err(e) => {
                    tracing::debug!(node, error = %e, "resource metrics: scrape failed");
                    st.failed = Some(Instant::now());
                    return None;
                }
            },
        };
        match summary(state, node).await {
            Ok(cur) => {
                let answer = Arc::new(usage(&base, &cur));
                st.base = Some((Instant::now(), cur));
                st.answer = Some((Instant::now(), answer.clone()));
                st.failed = None;
                Some(answer)
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "resource metrics: scrape failed");
                st.failed = Some(Instant::now());
                None
            }
        }
    }

    /// Usage of several nodes, scraped in parallel; those not answered
    /// within [`ANSWER_WITHIN`] are left out of this answer.
    async fn nodes_usage(
        &self,
        state: &State,
        nodes: Vec<String>,
    ) -> HashMap<String, Arc<NodeUsage>> {
        let mut results = futures::stream::iter(nodes)
            .map(|n| async move {
                let u = self.node_usage(state, &n).await;
                (n, u)
            })
            .buffer_unordered(PARALLEL);
        let mut out = HashMap::new();
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        while let Ok(Some((n, u))) = tokio::time::timeout_at(deadline, results.next()).await {
            if let Some(u) = u {
                out.insert(n, u);
            }
        }
        out
    }
}

/// GET `/stats/summary` from a node's agent.
async fn summary(state: &State, node: &str) -> anyhow::Result<Sample> {
    let addr = crate::streaming::kubelet_address(state, node)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let tls = state
        .kubelet_client
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no kubelet client certificate configured"))?;
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, async {
        let mut sender = crate::streaming::connect_kubelet(&addr, tls).await?;
        let req = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/stats/summary")
            .header("host", &addr)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_SUMMARY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the summary: {e}"))?
            .to_bytes();
        anyhow::ensure!(status == StatusCode::OK, "{status} from {addr}");
        anyhow::Ok(body)
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out scraping {addr}"))??;
    let doc: Value = serde_json::from_slice(&body)?;
    Ok(parse_summary(&doc))
}

// ---------------------------------------------------------------------------
// Serving

fn core(plural: &str) -> &'static Resource {
    api::registry::find("", "v1", plural).expect("core resources are registered")
}

/// The Node or Pod objects a request is about, filtered by its selectors.
async fn objects(state: &State, req: &Request, plural: &str) -> ApiResult<Vec<Arc<Value>>> {
    let res = core(plural);
    let scope = Scope {
        res,
        namespace: req.info.namespace.as_deref(),
        schema: None,
    };
    if let Some(name) = req.info.name.as_deref() {
        return match crate::rest::get(&state.store, scope, name).await {
            Ok(o) => Ok(vec![Arc::new(o)]),
            Err(e) if e.code == 404 => Ok(Vec::new()),
            Err(e) => Err(e),
        };
    }
    let filter = crate::handler::selectors(res, &req.params)?;
    let cache = state
        .caches
        .get(&state.store, &api::registry::storage_prefix(res, None));
    let (objs, _) = cache.snapshot(&scope.prefix()).await;
    Ok(objs.into_iter().filter(|o| filter(o)).collect())
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// GET on `nodes` or `pods` of metrics.k8s.io.
pub async fn serve(
    state: &Arc<State>,
    req: &Request,
    res: &'static Resource,
    out: Output,
) -> ApiResult<Response> {
    let now = rfc3339(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let items: Vec<Value> = if res.plural == "nodes" {
        let nodes = objects(state, req, "nodes").await?;
        let names = nodes.iter().map(|n| name_of(n).to_owned()).collect();
        let usage = state.resource_metrics.nodes_usage(state, names).await;
        nodes
            .iter()
            .filter_map(|n| {
                let u = usage.get(name_of(n))?.node.as_ref()?;
                Some(node_metrics(n, u, &now))
            })
            .collect()
    } else {
        let pods = objects(state, req, "pods").await?;
        let mut on: Vec<String> = pods
            .iter()
            .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        on.sort();
        on.dedup();
        let usage = state.resource_metrics.nodes_usage(state, on).await;
        pods.iter()
            .filter_map(|p| {
                let node = p.pointer("/spec/nodeName").and_then(Value::as_str)?;
                let ns = p.pointer("/metadata/namespace").and_then(Value::as_str)?;
                let uid = p.pointer("/metadata/uid").and_then(Value::as_str)?;
                let (seen_uid, containers) = usage
                    .get(node)?
                    .pods
                    .get(&(ns.to_owned(), name_of(p).to_owned()))?;
                (seen_uid == uid || seen_uid.is_empty()).then(|| pod_metrics(p, containers, &now))
            })
            .collect()
    };
    if let Some(name) = req.info.name.as_deref() {
        let Some(item) = items.into_iter().next() else {
            let (kind, id) = match req.info.namespace.as_deref() {
                Some(ns) => ("podmetrics", format!("{ns}/{name}")),
                None => ("nodemetrics", name.to_owned()),
            };
            return Err(ApiError::not_found(GROUP, kind, &id));
        };
        return Ok(match out {
            Output::Object => json_response(StatusCode::OK, &item),
            Output::Table(include) => json_response(
                StatusCode::OK,
                &crate::handler::make_table(res, None, &[item], include, json!({})),
            ),
        });
    }
    Ok(match out {
        Output::Object => json_response(
            StatusCode::OK,
            &json!({
                "kind": res.list_kind(),
                "apiVersion": res.api_version(),
                "metadata": {},
                "items": items,
            }),
        ),
        Output::Table(include) => json_response(
            StatusCode::OK,
            &crate::handler::make_table(res, None, &items, include, json!({})),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000_000;

    fn summary_doc(t: &str, node_cpu: u64, containers: &[(&str, &str, u64, u64)]) -> Value {
        json!({
            "node": {"nodeName": "n1",
                     "cpu": {"time": t, "usageCoreNanoSeconds": node_cpu},
                     "memory": {"time": t, "workingSetBytes": 512u64 << 20}},
            "pods": [{
                "podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                "containers": containers.iter().map(|(name, ct, cpu, mem)| json!({
                    "name": name,
                    "cpu": {"time": ct, "usageCoreNanoSeconds": cpu},
                    "memory": {"time": ct, "workingSetBytes": mem},
                })).collect::<Vec<_>>(),
            }],
        })
    }

    #[test]
    fn rates_between_samples() {
        let a = parse_summary(&summary_doc(
            "2025-11-24T16:00:00Z",
            10_000_000_000,
            &[
                ("app", "2025-11-24T16:00:00.5Z", 1_000_000_000, 4096),
                ("side", "2025-11-24T16:00:00.5Z", 7_000_000_000, 8192),
            ],
        ));
        let b = parse_summary(&summary_doc(
            "2025-11-24T16:00:02Z",
            11_000_000_000,
            &[
                // 250m over 2 s.
                ("app", "2025-11-24T16:00:02.5Z", 1_500_000_000, 10 << 20),
                // Restarted: its counter went back, no rate.
                ("side", "2025-11-24T16:00:02.5Z", 1_000_000, 8192),
                // New: no earlier sample.
                ("new", "2025-11-24T16:00:02.5Z", 5, 1),
            ],
        ));
        let u = usage(&a, &b);
        let node = u.node.unwrap();
        assert_eq!(
            (node.nano_cores, node.window_ns),
            (500_000_000, 2_000_000_000)
        );
        assert_eq!(node.memory, 512 << 20);
        let (uid, containers) = &u.pods[&("default".into(), "web".into())];
        assert_eq!(uid, "u1");
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert_eq!(containers[0].0, "app");
        assert_eq!(containers[0].1.nano_cores, 250_000_000);
        assert_eq!(containers[0].1.memory, 10 << 20);
        // The same sample twice: no window, no rate.
        assert_eq!(usage(&b, &b).node, None);
        assert!(usage(&b, &b).pods.is_empty());
    }

    #[test]
    fn newer_duplicate_wins_and_bad_points_are_skipped() {
        let doc = json!({"pods": [{
        "podRef": {"name": "p", "namespace": "ns", "uid": "u"},
        "containers": [
            {"name": "c", "cpu": {"time": "2025-11-24T16:00:05Z", "usageCoreNanoSeconds": 5},
             "memory": {"workingSetBytes": 1}},
            {"name": "c", "cpu": {"time": "2025-11-24T16:00:01Z", "usageCoreNanoSeconds": 9},
             "memory": {"workingSetBytes": 1}},
            {"name": "no-time", "cpu": {"time": "1970-01-01T00:00:00Z", "usageCoreNanoSeconds": 9},
             "memory": {"workingSetBytes": 1}},
            {"name": "no-memory", "cpu": {"time": "2025-11-24T16:00:01Z", "usageCoreNanoSeconds": 9}},
        ]}]});
        let s = parse_summary(&doc);
        assert_eq!(s.node, None);
        assert_eq!(s.containers.len(), 1);
        let p = s.containers.values().next().unwrap();
        assert_eq!(p.cpu_ns, 5);
    }

    #[test]
    fn quantities_and_windows() {
        for (n, want) in [
            (0, "0"),
            (250_000_000, "250m"),
            (2_000_000_000, "2"),
            (1_500_000, "1500u"),
            (123_456_789, "123456789n"),
        ] {
            assert_eq!(cpu_quantity(n), want, "{n}");
        }
        for (b, want) in [(0, "0"), (4096, "4Ki"), (10 << 20, "10Mi"), (1000, "1000")] {
            assert_eq!(memory_quantity(b), want, "{b}");
        }
        for (ns, want) in [
            (1_000_000_000, "1s"),
            (1_002_500_000, "1.0025s"),
            (15_000_000_000, "15s"),
            (61_500_000_000, "1m1.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (500_000_000, "500ms"),
        ] {
            assert_eq!(window(ns), want, "{ns}");
        }
    }

    #[test]
    fn objects_as_metrics_server_writes_them() {
        let u = Usage {
            time: T0,
            window_ns: 1_500_000_000,
            nano_cores: 12_000_000,
            memory: 3 << 20,
        };
        let node = json!({"metadata": {"name": "n1", "labels": {"role": "x"}}});
        let m = node_metrics(&node, &u, "2025-11-24T16:00:00Z");
        assert_eq!(m["usage"], json!({"cpu": "12m", "memory": "3Mi"}));
        assert_eq!(m["window"], "1.5s");
        assert_eq!(m["metadata"]["labels"], json!({"role": "x"}));
        assert_eq!(m["timestamp"], rfc3339(T0));

        let pod = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let m = pod_metrics(
            &pod,
            &[("b".into(), u), ("a".into(), Usage { nano_cores: 0, ..u })],
            "2025-11-24T16:00:00Z",
        );
        let names: Vec<&str> = m["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"], "spec order");
        assert_eq!(m["containers"][0]["usage"]["cpu"], "0");
        assert_eq!(m["metadata"]["namespace"], "default");
        assert!(m["metadata"].get("labels").is_none());
    }
}
