//! InterPodAffinity: required pod affinity and anti-affinity of the pod
//! (by topologyKey, namespaces and namespaceSelector) and the required
//! anti-affinity of the pods already placed (filter); preferred terms of
//! both sides, and existing pods' required affinity, score.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
    MAX_NODE_SCORE,
};
use crate::podinfo::{AffinityTerm, PodInfo};

pub const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The weight existing pods' required affinity terms get in scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const NAME: &str = super::names::INTER_POD_AFFINITY;
const SCORE_KEY: &str = "InterPodAffinity/score";

pub struct InterPodAffinity;

/// topology key → value → count.
type Counts = HashMap<String, HashMap<String, i64>>;

fn add(c: &mut Counts, key: &str, value: &str, n: i64) {
    if let Some(m) = c.get_mut(key) {
        match m.get_mut(value) {
            Some(x) => *x += n,
            None => {
                m.insert(value.to_owned(), n);
            }
        }
        return;
    }
    c.entry(key.to_owned())
        .or_default()
        .insert(value.to_owned(), n);
}

fn get(c: &Counts, key: &str, value: &str) -> i64 {
    c.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
}

#[derive(Default)]
struct FilterState {
    /// Where existing pods' anti-affinity forbids this pod.
    existing_anti: Counts,
    /// Where pods matching the pod's affinity terms run.
    affinity: Counts,
    /// Where pods matching the pod's anti-affinity terms run.
    anti: Counts,
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        let has_own = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let any_existing = snap.nodes_with_required_anti_affinity_pods > 0;
        if !has_own && !any_existing {
            return Status::skip();
        }
        let ns = |n: &str| snap.namespace_labels(n);
        let mut s = FilterState::default();
        for node in &snap.nodes {
            let labels = node.labels();
            for ep in &node.pods_with_required_anti_affinity {
                for t in &ep.required_anti_affinity {
                    if let Some(v) = labels.get(&t.topology_key) {
                        if t.matches(pod, &ns) {
                            add(&mut s.existing_anti, &t.topology_key, v, 1);
                        }
                    }
                }
            }
            if !has_own {
                continue;
            }
            for (terms, counts) in [
                (&pod.required_affinity, &mut s.affinity),
                (&pod.required_anti_affinity, &mut s.anti),
            ] {
                for t in terms {
                    let Some(v) = labels.get(&t.topology_key) else {
                        continue;
                    };
                    let n = node.pods.iter().filter(|ep| t.matches(ep, &ns)).count() as i64;
                    if n > 0 {
                        add(counts, &t.topology_key, v, n);
                    }
                }
            }
        }
        state.write(NAME, s);
        Status::success()
    }
}

fn matches_all_own(terms: &[AffinityTerm], pod: &PodInfo, snap: &Snapshot) -> bool {
    let ns = |n: &str| snap.namespace_labels(n);
    terms.iter().all(|t| t.matches(pod, &ns))
}

impl FilterPlugin for InterPodAffinity {
    fn filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) -> Status {
        let Some(s) = state.read::<FilterState>(NAME) else {
            return Status::success();
        };
        let labels = node.labels();
        // Affinity: every term's topology has a matching pod, unless no pod
        // anywhere matches and the pod matches its own terms (the first of
        // a group).
        if !pod.required_affinity.is_empty() {
            let mut all_found = true;
            for t in &pod.required_affinity {
                match labels.get(&t.topology_key) {
                    None => return Status::unresolvable(AFFINITY_REASON),
                    Some(v) if get(&s.affinity, &t.topology_key, v) <= 0 => all_found = false,
                    _ => {}
                }
            }
            if !all_found
                && (!s.affinity.is_empty() || !matches_all_own(&pod.required_affinity, pod, snap))
            {
                return Status::unresolvable(AFFINITY_REASON);
            }
        }
        for t in &pod.required_anti_affinity {
            if let Some(v) = labels.get(&t.topology_key) {
                if get(&s.anti, &t.topology_key, v) > 0 {
                    return Status::unschedulable(ANTI_AFFINITY_REASON);
                }
            }
        }
        for (k, values) in &s.existing_anti {
            if let Some(v) = labels.get(k) {
                if values.get(v).is_some_and(|c| *c > 0) {
                    return Status::unschedulable(EXISTING_ANTI_AFFINITY_REASON);
                }
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        snap: &Snapshot,
    ) -> Status {
        let has_preferred =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !has_preferred && snap.nodes_with_affinity_pods == 0 {
            return Status::skip();
        }
        let ns = |n: &str| snap.namespace_labels(n);
        let mut scores = Counts::new();
        for node in &snap.nodes {
            let labels = node.labels();
            let pods = if has_preferred {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for ep in pods {
                // The pod's preferences about existing pods.
                for (terms, sign) in [
                    (&pod.preferred_affinity, 1),
                    (&pod.preferred_anti_affinity, -1),
                ] {
                    for t in terms {
                        if let Some(v) = labels.get(&t.topology_key) {
                            if t.matches(ep, &ns) {
                                add(&mut scores, &t.topology_key, v, sign * t.weight as i64);
                            }
                        }
                    }
                }
                // Existing pods' terms about the pod.
                let theirs = [
                    (&ep.required_affinity, Some(HARD_POD_AFFINITY_WEIGHT)),
                    (&ep.preferred_affinity, None),
                    (&ep.preferred_anti_affinity, None),
                ];
                for (i, (terms, fixed)) in theirs.into_iter().enumerate() {
                    let sign = if i == 2 { -1 } else { 1 };
                    for t in terms {
                        if let Some(v) = labels.get(&t.topology_key) {
                            if t.matches(pod, &ns) {
                                add(
                                    &mut scores,
                                    &t.topology_key,
                                    v,
                                    sign * fixed.unwrap_or(t.weight as i64),
                                );
                            }
                        }
                    }
                }
            }
        }
        state.write(SCORE_KEY, scores);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let Some(scores) = state.read::<Counts>(SCORE_KEY) else {
            return 0;
        };
        let labels = node.labels();
        scores
            .iter()
            .filter_map(|(k, values)| labels.get(k).and_then(|v| values.get(v)))
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, _: &[&NodeInfo], scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                MAX_NODE_SCORE * (*s - min) / diff
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::{json, Value};

    fn zoned(name: &str, zone: &str) -> Node {
        with(
            &node(name, "4", "8Gi", 10),
            json!({"metadata": {"labels": {"zone": zone}}}),
        )
    }

    fn labelled(name: &str, labels: Value) -> Pod {
        with(
            &pod(name, "0", "0"),
            json!({"metadata": {"labels": labels}}),
        )
    }

    fn in_ns(p: Pod, ns: &str) -> Pod {
        with(&p, json!({"metadata": {"namespace": ns}}))
    }

    fn affinity(kind: &str, mode: &str, terms: Value) -> Pod {
        let field = if mode == "required" {
            "requiredDuringSchedulingIgnoredDuringExecution"
        } else {
            "preferredDuringSchedulingIgnoredDuringExecution"
        };
        with(
            &labelled("p", json!({"app": "web"})),
            json!({"spec": {"affinity": {kind: {field: terms}}}}),
        )
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    /// a, b in zone z1; c in z2; d without zone label; db runs on b.
    fn snap() -> Snapshot {
        let mut s = snapshot(&[
            (zoned("a", "z1"), vec![]),
            (
                zoned("b", "z1"),
                vec![labelled("db-0", json!({"app": "db"}))],
            ),
            (
                zoned("c", "z2"),
                vec![in_ns(labelled("cache-0", json!({"app": "cache"})), "other")],
            ),
            (node("d", "4", "8Gi", 10), vec![]),
        ]);
        let mut w = Writer::<Namespace>::default();
        for (n, team) in [("default", "a"), ("other", "b")] {
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": n, "labels": {"team": team}}}))
                    .unwrap();
            w.apply_watcher_event(&Event::Apply(ns));
        }
        s.listers.namespaces = w.as_reader();
        s
    }

    #[test]
    fn filter_table() {
        let (aff, anti) = (AFFINITY_REASON, ANTI_AFFINITY_REASON);
        let cases = [
            (
                "no terms",
                labelled("p", json!({})),
                vec!["ok", "ok", "ok", "ok"],
            ),
            (
                "affinity to db by zone",
                affinity("podAffinity", "required", json!([term("db", "zone")])),
                vec!["ok", "ok", aff, aff],
            ),
            (
                "affinity by hostname",
                affinity(
                    "podAffinity",
                    "required",
                    json!([term("db", "kubernetes.io/hostname")]),
                ),
                vec![aff, "ok", aff, aff],
            ),
            (
                "affinity to nothing",
                affinity("podAffinity", "required", json!([term("nothing", "zone")])),
                vec![aff, aff, aff, aff],
            ),
            (
                "first pod of a self-affine group",
                affinity("podAffinity", "required", json!([term("web", "zone")])),
                vec!["ok", "ok", "ok", aff],
            ),
            (
                "anti-affinity to db by zone",
                affinity("podAntiAffinity", "required", json!([term("db", "zone")])),
                vec![anti, anti, "ok", "ok"],
            ),
            (
                "cache is in another namespace",
                affinity("podAffinity", "required", json!([term("cache", "zone")])),
                vec![aff, aff, aff, aff],
            ),
            (
                "namespaces lists it",
                affinity(
                    "podAffinity",
                    "required",
                    json!([{"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone", "namespaces": ["other"]}]),
                ),
                vec![aff, aff, "ok", aff],
            ),
            (
                "namespaceSelector selects it",
                affinity(
                    "podAffinity",
                    "required",
                    json!([{"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone", "namespaceSelector": {"matchLabels": {"team": "b"}}}]),
                ),
                vec![aff, aff, "ok", aff],
            ),
            (
                "empty namespaceSelector: all namespaces",
                affinity(
                    "podAntiAffinity",
                    "required",
                    json!([{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, "topologyKey": "zone", "namespaceSelector": {}}]),
                ),
                vec![anti, anti, anti, "ok"],
            ),
        ];
        let s = snap();
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&InterPodAffinity, &pod_info(&p), &s)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn existing_pods_anti_affinity() {
        let guard = with(
            &labelled("guard", json!({"app": "guard"})),
            json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}}}),
        );
        let s = snapshot(&[
            (zoned("a", "z1"), vec![guard]),
            (zoned("b", "z1"), vec![]),
            (zoned("c", "z2"), vec![]),
        ]);
        let e = EXISTING_ANTI_AFFINITY_REASON;
        let cases = [
            (
                "web is kept out of z1",
                labelled("p", json!({"app": "web"})),
                vec![e, e, "ok"],
            ),
            (
                "others are not",
                labelled("p", json!({"app": "api"})),
                vec!["ok", "ok", "ok"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&InterPodAffinity, &pod_info(&p), &s)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn score_table() {
        let weighted =
            |app: &str, w: i32| json!([{"weight": w, "podAffinityTerm": term(app, "zone")}]);
        let cases = [
            (
                "prefer db's zone",
                affinity("podAffinity", "preferred", weighted("db", 10)),
                vec![100, 100, 0, 0],
            ),
            (
                "avoid db's zone",
                affinity("podAntiAffinity", "preferred", weighted("db", 10)),
                vec![0, 0, 100, 100],
            ),
            ("no preferences", labelled("p", json!({})), vec![0, 0, 0, 0]),
        ];
        let s = snap();
        for (name, p, want) in cases {
            assert_eq!(
                score_all(&InterPodAffinity, &pod_info(&p), &s),
                want,
                "{name}"
            );
        }
        // An existing pod's preference for web pods attracts them.
        let fan = with(
            &labelled("fan", json!({"app": "fan"})),
            json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("web", "zone")}]}}}}),
        );
        let s = snapshot(&[(zoned("a", "z1"), vec![]), (zoned("c", "z2"), vec![fan])]);
        assert_eq!(
            score_all(
                &InterPodAffinity,
                &pod_info(&labelled("p", json!({"app": "web"}))),
                &s
            ),
            vec![0, 100]
        );
    }
}
