//! Container resources as the runtime gets them, computed as the kubelet
//! does:
//!
//! * `cpu_shares` from the CPU request (the limit when there is no
//!   request): milli-CPU × 1024 / 1000, at least 2, at most 262144;
//! * `cpu_quota` / `cpu_period` (100 ms) from the CPU limit: milli-CPU ×
//!   period / 1000, at least 1 ms;
//! * `memory_limit_in_bytes` from the memory limit;
//! * `oom_score_adj` by the pod's QoS class: Guaranteed (and
//!   `system-node-critical` pods) -997, BestEffort 1000, Burstable
//!   `1000 - 1000 × memory request / node memory`, kept within 3..=999.
//!
//! The QoS class itself is [`api::qos`]'s (the API server sets
//! `status.qosClass` with the same code).

use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::cri::LinuxResources;

/// `cpu.cfs_period_us` the kubelet uses.
pub const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA_PERIOD: i64 = 1_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;

pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let v = serde_json::to_value(spec).unwrap_or_default();
    api::qos::spec_qos_class(&v)
}

/// cgroup v1 CPU shares for a CPU request in milli-CPU.
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * SHARES_PER_CPU / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota for a CPU limit in milli-CPU (0: none).
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(MIN_QUOTA_PERIOD)
}

fn quantity(c: &Container, set: &str, name: &str) -> Option<api::quantity::Quantity> {
    let r = c.resources.as_ref()?;
    let m = if set == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }?;
    api::quantity::Quantity::parse(&m.get(name)?.0)
}

/// The container's request for `name`, its limit when it has no request.
fn request(c: &Container, name: &str) -> Option<api::quantity::Quantity> {
    quantity(c, "requests", name).or_else(|| quantity(c, "limits", name))
}

/// The OOM score adjustment of a container of a pod of class `qos` on a
/// node with `memory_capacity` bytes.
pub fn oom_score_adj(spec: &PodSpec, c: &Container, qos: &str, memory_capacity: i64) -> i64 {
    if spec.priority_class_name.as_deref() == Some("system-node-critical") {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos {
        api::qos::GUARANTEED => GUARANTEED_OOM_SCORE_ADJ,
        api::qos::BEST_EFFORT => BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {
            let memory_request = request(c, "memory").map_or(0, |q| q.value() as i64);
            if memory_capacity <= 0 {
                return BEST_EFFORT_OOM_SCORE_ADJ - 1;
            }
            let adj = 1000 - (1000 * memory_request) / memory_capacity;
            // Never below a Guaranteed container using all of the node,
            // never as low a priority as BestEffort.
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// The container's cgroup settings.
pub fn linux_resources(spec: &PodSpec, c: &Container, memory_capacity: i64) -> LinuxResources {
    let qos = qos_class(spec);
    let cpu_request = request(c, "cpu").map_or(0, |q| q.milli as i64);
    let cpu_limit = quantity(c, "limits", "cpu").map_or(0, |q| q.milli as i64);
    let memory_limit = quantity(c, "limits", "memory").map_or(0, |q| q.value() as i64);
    let (cpu_period, cpu_quota) = if cpu_limit > 0 {
        (QUOTA_PERIOD, milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD))
    } else {
        (0, 0)
    };
    LinuxResources {
        cpu_period,
        cpu_quota,
        cpu_shares: milli_cpu_to_shares(cpu_request),
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: oom_score_adj(spec, c, qos, memory_capacity),
    }
}

/// The pod-level cgroup's settings, as the kubelet computes them for
/// `kubepods/<qos>/pod<uid>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: i64,
    /// CFS quota per [`QUOTA_PERIOD`]; None where a container has no CPU
    /// limit.
    pub cpu_quota: Option<i64>,
    /// None where a container has no memory limit.
    pub memory_limit: Option<i64>,
}

/// What the pod as a whole asks for or is limited to, in `milli` (CPU) or
/// bytes (memory): the larger of its app containers (and sidecars) summed
/// and its biggest init container, plus the pod overhead; None for limits
/// when some container has none.
fn pod_total(
    spec: &PodSpec,
    name: &str,
    of: impl Fn(&Container) -> Option<api::quantity::Quantity>,
    all_required: bool,
) -> Option<i128> {
    let unit = |q: api::quantity::Quantity| if name == "cpu" { q.milli } else { q.value() };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let is_sidecar = |c: &&Container| c.restart_policy.as_deref() == Some("Always");
    let mut sum = 0i128;
    for c in spec.containers.iter().chain(init.iter().filter(is_sidecar)) {
        match of(c) {
            Some(q) => sum += unit(q),
            None if all_required => return None,
            None => {}
        }
    }
    let mut biggest_init = 0i128;
    for c in init.iter().filter(|c| !is_sidecar(c)) {
        match of(c) {
            Some(q) => biggest_init = biggest_init.max(unit(q)),
            None if all_required => return None,
            None => {}
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(name))
        .and_then(|q| api::quantity::Quantity::parse(&q.0))
        .map_or(0, unit);
    Some(sum.max(biggest_init) + overhead)
}

/// The pod cgroup of a pod: CPU shares from its requests, and a CPU quota
/// and memory limit where every container is limited.
pub fn pod_resources(spec: &PodSpec) -> PodResources {
    let cpu_request = pod_total(spec, "cpu", |c| request(c, "cpu"), false).unwrap_or(0);
    let cpu_limit = pod_total(spec, "cpu", |c| quantity(c, "limits", "cpu"), true);
    let memory_limit = pod_total(spec, "memory", |c| quantity(c, "limits", "memory"), true);
    let qos = qos_class(spec);
    PodResources {
        cpu_shares: if qos == api::qos::BEST_EFFORT {
            MIN_SHARES
        } else {
            milli_cpu_to_shares(cpu_request as i64)
        },
        cpu_quota: cpu_limit
            .filter(|m| *m > 0)
            .map(|m| milli_cpu_to_quota(m as i64, QUOTA_PERIOD)),
        memory_limit: memory_limit.filter(|b| *b > 0).map(|b| b as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (containers, init containers, overhead, what the pod cgroup gets).
    #[test]
    fn pod_cgroup_settings() {
        let c = |r: serde_json::Value| container(r);
        let lim = |cpu: &str, mem: &str| c(json!({"limits": {"cpu": cpu, "memory": mem}}));
        type Case = (
            Vec<Container>,
            Vec<Container>,
            Option<serde_json::Value>,
            PodResources,
        );
        let cases: Vec<Case> = vec![
            // Guaranteed: sums of the limits.
            (
                vec![lim("200m", "100Mi"), lim("100m", "50Mi")],
                vec![],
                None,
                PodResources {
                    cpu_shares: 307,
                    cpu_quota: Some(30_000),
                    memory_limit: Some(150 << 20),
                },
            ),
            // One container without limits: no quota, no memory limit.
            (
                vec![
                    lim("200m", "100Mi"),
                    c(json!({"requests": {"cpu": "100m"}})),
                ],
                vec![],
                None,
                PodResources {
                    cpu_shares: 307,
                    cpu_quota: None,
                    memory_limit: None,
                },
            ),
            // BestEffort.
            (
                vec![c(json!({}))],
                vec![],
                None,
                PodResources {
                    cpu_shares: 2,
                    cpu_quota: None,
                    memory_limit: None,
                },
            ),
            // A bigger init container sets the pod's size.
            (
                vec![lim("100m", "10Mi")],
                vec![lim("500m", "64Mi")],
                None,
                PodResources {
                    cpu_shares: 512,
                    cpu_quota: Some(50_000),
                    memory_limit: Some(64 << 20),
                },
            ),
            // Overhead is added.
            (
                vec![lim("100m", "10Mi")],
                vec![],
                Some(json!({"cpu": "50m", "memory": "5Mi"})),
                PodResources {
                    cpu_shares: 153,
                    cpu_quota: Some(15_000),
                    memory_limit: Some(15 << 20),
                },
            ),
        ];
        for (i, (containers, init, overhead, want)) in cases.into_iter().enumerate() {
            let mut s = spec(containers);
            s.init_containers = (!init.is_empty()).then_some(init);
            s.overhead = overhead.map(|o| serde_json::from_value(o).unwrap());
            assert_eq!(pod_resources(&s), want, "case {i}");
        }
        // A sidecar counts with the app containers.
        let mut sidecar = lim("100m", "20Mi");
        sidecar.restart_policy = Some("Always".into());
        let mut s = spec(vec![lim("100m", "10Mi")]);
        s.init_containers = Some(vec![sidecar]);
        assert_eq!(pod_resources(&s).memory_limit, Some(30 << 20));
    }

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "resources": resources})).unwrap()
    }

    fn spec(containers: Vec<Container>) -> PodSpec {
        PodSpec {
            containers,
            ..PodSpec::default()
        }
    }

    #[test]
    fn shares_and_quota() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (2500, 2560),
            (1_000_000, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
        }
        for (milli, quota) in [(0, 0), (1, 1000), (5, 1000), (100, 10_000), (1500, 150_000)] {
            assert_eq!(milli_cpu_to_quota(milli, QUOTA_PERIOD), quota, "{milli}m");
        }
    }

    #[test]
    fn container_resources() {
        const GI: i64 = 1 << 30;
        // (resources, period, quota, shares, memory, oom_score_adj) on a
        // node with 4 GiB.
        let cases = [
            (json!({}), 0, 0, 2, 0, 1000),
            (
                json!({"limits": {"cpu": "500m", "memory": "1Gi"}}),
                100_000,
                50_000,
                512,
                GI,
                -997,
            ),
            (
                json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}),
                100_000,
                200_000,
                256,
                2 * GI,
                750,
            ),
            (
                json!({"limits": {"memory": "20Mi"}}),
                0,
                0,
                2,
                20 << 20,
                1000 - 1000 * (20 << 20) / (4 * GI),
            ),
            // A tiny request is still not BestEffort's score.
            (json!({"requests": {"cpu": "100m"}}), 0, 0, 102, 0, 999),
            // Requesting (almost) the whole node: never below 3.
            (json!({"requests": {"memory": "4Gi"}}), 0, 0, 2, 0, 3),
        ];
        for (res, period, quota, shares, memory, oom) in cases {
            let c = container(res.clone());
            let r = linux_resources(&spec(vec![c.clone()]), &c, 4 * GI);
            assert_eq!(
                (
                    r.cpu_period,
                    r.cpu_quota,
                    r.cpu_shares,
                    r.memory_limit_in_bytes,
                    r.oom_score_adj
                ),
                (period, quota, shares, memory, oom),
                "{res}"
            );
        }
    }

    #[test]
    fn qos_from_the_whole_pod() {
        let g = container(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        let b = container(json!({}));
        assert_eq!(qos_class(&spec(vec![g.clone()])), "Guaranteed");
        let mixed = spec(vec![g.clone(), b]);
        assert_eq!(qos_class(&mixed), "Burstable");
        // The Guaranteed-looking container of a Burstable pod gets the
        // Burstable score from its memory request.
        let r = linux_resources(&mixed, &g, 4 << 30);
        assert_eq!(r.oom_score_adj, 750);
        let critical = PodSpec {
            priority_class_name: Some("system-node-critical".into()),
            ..mixed
        };
        assert_eq!(linux_resources(&critical, &g, 4 << 30).oom_score_adj, -997);
    }
}
