//! Scheduler metrics in Prometheus' text format (names as kube-scheduler's).
//! [`render`] returns the text; the binary decides where to serve it.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// A histogram with fixed upper bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let wrap = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            wrap(labels),
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", wrap(labels));
    }
}

const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    30.0, 60.0,
];

pub struct Metrics {
    /// Attempts by profile (schedulerName) and result.
    attempts: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    pub attempt_duration: Histogram,
    /// From first entering the queue to binding.
    pub e2e_duration: Histogram,
    pub binding_duration: Histogram,
    pub preemption_attempts: AtomicU64,
    pub preemption_victims: AtomicU64,
    pub queue_active: AtomicU64,
    pub queue_backoff: AtomicU64,
    pub queue_unschedulable: AtomicU64,
    pub cache_nodes: AtomicU64,
    pub cache_pods: AtomicU64,
    pub cache_assumed: AtomicU64,
}

/// Results of a scheduling attempt, as kube-scheduler labels them.
pub const SCHEDULED: &str = "scheduled";
pub const UNSCHEDULABLE: &str = "unschedulable";
pub const ERROR: &str = "error";

impl Metrics {
    /// Counts one attempt of `profile` with `result`.
    pub fn attempt(&self, profile: &str, result: &'static str) {
        *self
            .attempts
            .lock()
            .unwrap()
            .entry((profile.to_owned(), result))
            .or_default() += 1;
    }

    /// Attempts of `profile` with `result` so far.
    pub fn attempts(&self, profile: &str, result: &'static str) -> u64 {
        self.attempts
            .lock()
            .unwrap()
            .get(&(profile.to_owned(), result))
            .copied()
            .unwrap_or(0)
    }
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        attempts: Default::default(),
        attempt_duration: Histogram::new(BUCKETS),
        e2e_duration: Histogram::new(BUCKETS),
        binding_duration: Histogram::new(BUCKETS),
        preemption_attempts: AtomicU64::new(0),
        preemption_victims: AtomicU64::new(0),
        queue_active: AtomicU64::new(0),
        queue_backoff: AtomicU64::new(0),
        queue_unschedulable: AtomicU64::new(0),
        cache_nodes: AtomicU64::new(0),
        cache_pods: AtomicU64::new(0),
        cache_assumed: AtomicU64::new(0),
    })
}

/// Every scheduler metric in Prometheus' text exposition format.
pub fn render() -> String {
    let m = get();
    let mut o = String::new();
    o.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.\n# TYPE scheduler_schedule_attempts_total counter\n");
    for ((profile, r), v) in m.attempts.lock().unwrap().iter() {
        let _ = writeln!(
            o,
            "scheduler_schedule_attempts_total{{profile=\"{profile}\",result=\"{r}\"}} {v}"
        );
    }
    o.push_str("# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency (algorithm only).\n# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
    m.attempt_duration
        .render(&mut o, "scheduler_scheduling_attempt_duration_seconds", "");
    o.push_str("# HELP scheduler_pod_scheduling_sli_duration_seconds From a pod entering the queue to its binding.\n# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram\n");
    m.e2e_duration
        .render(&mut o, "scheduler_pod_scheduling_sli_duration_seconds", "");
    o.push_str("# HELP scheduler_binding_duration_seconds Binding API call latency.\n# TYPE scheduler_binding_duration_seconds histogram\n");
    m.binding_duration
        .render(&mut o, "scheduler_binding_duration_seconds", "");
    o.push_str("# HELP scheduler_preemption_attempts_total Preemption attempts.\n# TYPE scheduler_preemption_attempts_total counter\n");
    let _ = writeln!(
        o,
        "scheduler_preemption_attempts_total {}",
        m.preemption_attempts.load(Relaxed)
    );
    o.push_str("# HELP scheduler_preemption_victims_total Pods preempted.\n# TYPE scheduler_preemption_victims_total counter\n");
    let _ = writeln!(
        o,
        "scheduler_preemption_victims_total {}",
        m.preemption_victims.load(Relaxed)
    );
    o.push_str("# HELP scheduler_pending_pods Pending pods, by queue.\n# TYPE scheduler_pending_pods gauge\n");
    for (q, v) in [
        ("active", &m.queue_active),
        ("backoff", &m.queue_backoff),
        ("unschedulable", &m.queue_unschedulable),
    ] {
        let _ = writeln!(
            o,
            "scheduler_pending_pods{{queue=\"{q}\"}} {}",
            v.load(Relaxed)
        );
    }
    o.push_str("# HELP scheduler_cache_size Nodes, pods and assumed pods in the scheduler cache.\n# TYPE scheduler_cache_size gauge\n");
    for (t, v) in [
        ("nodes", &m.cache_nodes),
        ("pods", &m.cache_pods),
        ("assumed_pods", &m.cache_assumed),
    ] {
        let _ = writeln!(
            o,
            "scheduler_cache_size{{type=\"{t}\"}} {}",
            v.load(Relaxed)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::get();
        m.attempt_duration
            .observe(std::time::Duration::from_millis(3));
        let t = super::render();
        assert!(
            t.contains("scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.005\"}"),
            "{t}"
        );
        assert!(t.contains("scheduler_pending_pods{queue=\"active\"}"));
    }
}
