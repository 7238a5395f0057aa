//! Resource quantities and the requests of a pod, as Kubernetes'
//! resourcehelper computes them (containers, init containers incl.
//! sidecars, overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// What scoring assumes for a container that requests no CPU (100m).
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// What scoring assumes for a container that requests no memory (200 MiB).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of each resource: CPU in millicores, the rest in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pods: i64,
    /// Extended resources, hugepages, ... (name, value), few.
    pub scalar: Vec<(String, i64)>,
}

impl Resource {
    /// From a ResourceList (allocatable, requests, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            CPU => self.milli_cpu = milli_value(q),
            MEMORY => self.memory = value(q),
            EPHEMERAL_STORAGE => self.ephemeral_storage = value(q),
            PODS => self.allowed_pods = value(q),
            _ => self.set_scalar(name, value(q)),
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    pub fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = v,
            None => self.scalar.push((name.to_owned(), v)),
        }
    }

    /// The amount of one resource by its API name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pods,
            _ => self.scalar(name),
        }
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pods += o.allowed_pods;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur + v);
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pods -= o.allowed_pods;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur - v);
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn set_max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(o.allowed_pods);
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur.max(*v));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Parses a quantity ("100m", "1.5Gi", "2", "1e3", "500Mi") into
/// thousandths of a unit, rounding up as Kubernetes' MilliValue does.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let mut mantissa: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    let mut dec_exp: i32 = -(frac.len() as i32);
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        s if s.starts_with(['e', 'E']) => dec_exp += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    // milli: times 1000.
    dec_exp += 3;
    let mut v = mantissa.checked_mul(1i128.checked_shl(bin_exp)?)?;
    if dec_exp >= 0 {
        v = v.checked_mul(10i128.checked_pow(dec_exp as u32)?)?;
    } else {
        let d = 10i128.checked_pow((-dec_exp) as u32).unwrap_or(i128::MAX);
        v = (v + d - 1) / d;
    }
    Some(if neg { -v } else { v })
}

/// A quantity in thousandths (CPU millicores), 0 when unreadable.
pub fn milli_value(q: &Quantity) -> i64 {
    parse_milli(&q.0)
        .map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        .unwrap_or(0)
}

/// A quantity in units, rounded up.
pub fn value(q: &Quantity) -> i64 {
    parse_milli(&q.0)
        .map(|v| {
            let u = if v >= 0 { (v + 999) / 1000 } else { v / 1000 };
            u.clamp(i64::MIN as i128, i64::MAX as i128) as i64
        })
        .unwrap_or(0)
}

/// A container's requests; a resource with a limit but no request
/// requests its limit (the API server's defaulting). With `non_zero`,
/// missing CPU and memory requests count as 100m and 200 MiB.
fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let mut r = Resource::default();
    let (mut cpu_set, mut mem_set) = (false, false);
    if let Some(res) = &c.resources {
        if let Some(limits) = &res.limits {
            for (n, q) in limits {
                r.set(n, q);
            }
        }
        if let Some(requests) = &res.requests {
            for (n, q) in requests {
                r.set(n, q);
            }
        }
        let has = |name: &str| {
            res.requests.as_ref().is_some_and(|m| m.contains_key(name))
                || res.limits.as_ref().is_some_and(|m| m.contains_key(name))
        };
        cpu_set = has(CPU);
        mem_set = has(MEMORY);
    }
    if non_zero {
        if !cpu_set {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !mem_set {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// What a pod requests: the sum of its containers and sidecars, or the
/// largest init container step when larger, plus overhead.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = &pod.spec else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut s = r;
            s.add(&sidecars);
            s
        };
        init_max.set_max(&step);
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resource::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases: &[(&str, Option<i128>)] = &[
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("2k", Some(2_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1Gi", Some(1_073_741_824_000)),
            ("1e3", Some(1_000_000)),
            ("0.1m", Some(1)),
            ("1n", Some(1)),
            ("-1", Some(-1000)),
            ("abc", None),
            ("", None),
            ("1Qi", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_milli(s), *want, "{s}");
        }
        assert_eq!(value(&Quantity("1.5Ki".into())), 1536);
        assert_eq!(value(&Quantity("100m".into())), 1);
        assert_eq!(milli_value(&Quantity("2".into())), 2000);
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pod_requests_cases() {
        let cases = vec![
            (
                "containers sum",
                serde_json::json!({"spec": {"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m"}}}]}}),
                (300, 1 << 30),
            ),
            (
                "init larger than containers",
                serde_json::json!({"spec": {"initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "2"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Ki"}}}]}}),
                (2000, 1024),
            ),
            (
                "sidecar adds to containers and later init",
                serde_json::json!({"spec": {"initContainers": [
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "i", "resources": {"requests": {"cpu": "1"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
                (1500, 0),
            ),
            (
                "overhead and limits as requests",
                serde_json::json!({"spec": {"overhead": {"cpu": "50m"},
                    "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "10"}}}]}}),
                (1050, 10),
            ),
        ];
        for (name, p, (cpu, mem)) in cases {
            let r = pod_requests(&pod(p), false);
            assert_eq!((r.milli_cpu, r.memory), (cpu, mem), "{name}");
        }
        let r = pod_requests(
            &pod(serde_json::json!({"spec": {"containers": [{"name": "a"}]}})),
            true,
        );
        assert_eq!((r.milli_cpu, r.memory), (DEFAULT_MILLI_CPU, DEFAULT_MEMORY));
        let r = pod_requests(
            &pod(
                serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"example.com/gpu": "2"}}}]}}),
            ),
            false,
        );
        assert_eq!(r.scalar("example.com/gpu"), 2);
    }
}
