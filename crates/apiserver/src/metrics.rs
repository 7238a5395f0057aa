//! /metrics: request counts and latency histograms by verb, resource and
//! code, in the Prometheus text format (the names kube-apiserver uses).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds in seconds (a subset of kube-apiserver's).
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 60.0,
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Labels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    code: u16,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<BTreeMap<Labels, Histogram>>,
}

impl Metrics {
    pub fn observe(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        code: u16,
        took: Duration,
    ) {
        let labels = Labels {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            code,
        };
        let secs = took.as_secs_f64();
        let mut map = self.inner.lock().unwrap();
        let h = map.entry(labels).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn render(&self) -> String {
        let map = self.inner.lock().unwrap();
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for (l, h) in map.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{}\",group=\"{}\",resource=\"{}\",subresource=\"{}\",verb=\"{}\"}} {}",
                l.code, l.group, l.resource, l.subresource, l.verb, h.count
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, resource and subresource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        // The duration histogram is not split by code.
        let mut merged: BTreeMap<(String, String, String, String), Histogram> = BTreeMap::new();
        for (l, h) in map.iter() {
            let m = merged
                .entry((
                    l.verb.clone(),
                    l.group.clone(),
                    l.resource.clone(),
                    l.subresource.clone(),
                ))
                .or_default();
            for i in 0..BUCKETS.len() {
                m.counts[i] += h.counts[i];
            }
            m.sum += h.sum;
            m.count += h.count;
        }
        for ((verb, group, resource, sub), h) in merged {
            let labels = format!(
                "group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",verb=\"{verb}\""
            );
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.observe("get", "", "pods", "", 200, Duration::from_millis(3));
        m.observe("get", "", "pods", "", 404, Duration::from_millis(30));
        m.observe(
            "create",
            "apps",
            "deployments",
            "",
            201,
            Duration::from_millis(700),
        );
        let text = m.render();
        assert!(text.contains(r#"apiserver_request_total{code="200",group="",resource="pods",subresource="",verb="get"} 1"#), "{text}");
        assert!(text.contains(r#"apiserver_request_total{code="404",group="",resource="pods",subresource="",verb="get"} 1"#));
        assert!(text.contains(r#"apiserver_request_duration_seconds_bucket{group="",resource="pods",subresource="",verb="get",le="0.005"} 1"#));
        assert!(text.contains(r#"apiserver_request_duration_seconds_bucket{group="",resource="pods",subresource="",verb="get",le="0.05"} 2"#));
        assert!(text.contains(r#"apiserver_request_duration_seconds_count{group="apps",resource="deployments",subresource="",verb="create"} 1"#));
    }
}
