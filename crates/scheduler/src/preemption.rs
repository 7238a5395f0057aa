//! DefaultPreemption (PostFilter): when no node fits, find nodes where
//! removing lower-priority pods would make room, keep as many of them as
//! still fit (pods protected by a PodDisruptionBudget first), and pick the
//! node with the fewest budget violations, then the lowest and fewest
//! victims. The scheduler then nominates the pod there
//! (status.nominatedNodeName) and deletes the victims.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use api::selector::LabelSelector;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::Rng;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    Code, CycleState, Diagnosis, FitError, Nominations, Plugin, PostFilterPlugin, PostFilterResult,
    Profile, Status,
};
use crate::podinfo::{label_selector, PodInfo};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// At least this share of the candidate nodes is tried...
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// ...and at least this many.
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        crate::plugins::names::DEFAULT_PREEMPTION
    }
    fn as_post_filter(self: Arc<Self>) -> Option<Arc<dyn PostFilterPlugin>> {
        Some(self)
    }
}

/// One node where preemption would make room.
#[derive(Debug)]
pub struct Candidate {
    pub node: usize,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// A disruption budget as preemption reads it.
pub struct Pdb {
    namespace: String,
    selector: LabelSelector,
    allowed: i32,
}

pub fn pdbs(snap: &Snapshot) -> Vec<Pdb> {
    snap.listers
        .pdbs
        .state()
        .iter()
        .map(|p: &Arc<PodDisruptionBudget>| Pdb {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            selector: match p.spec.as_ref().and_then(|s| s.selector.as_ref()) {
                // An empty selector selects nothing for budgets.
                Some(s)
                    if s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                        && s.match_expressions.as_ref().is_none_or(|m| m.is_empty()) =>
                {
                    LabelSelector::nothing()
                }
                s => label_selector(s),
            },
            allowed: p
                .status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0),
        })
        .collect()
}

/// Higher priority first, then the earlier started.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.start_time().cmp(&b.start_time()))
}

fn fits(
    profile: &Profile,
    pod: &PodInfo,
    snap: &Snapshot,
    idx: usize,
    nominated: &Nominations,
) -> Status {
    let mut state = CycleState::default();
    if let Err(st) = profile.run_pre_filter(&mut state, pod, snap) {
        return st;
    }
    profile.run_filter_with_nominated(&state, pod, &snap.nodes[idx], snap, nominated)
}

/// The fewest victims on one node that make room for `pod`, reprieving
/// budget-protected pods first; Err when removing every lower-priority pod
/// is not enough.
pub fn select_victims_on_node(
    profile: &Profile,
    pod: &PodInfo,
    snap: &Snapshot,
    idx: usize,
    budgets: &[Pdb],
    nominated: &Nominations,
) -> Result<Candidate, Status> {
    let original = &snap.nodes[idx];
    let mut lower: Vec<Arc<PodInfo>> = original
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    lower.sort_by(|a, b| more_important(a, b));
    let mut work = snap.clone();
    let mut node: NodeInfo = (**original).clone();
    for p in &lower {
        node.remove_pod(&p.key);
    }
    work.nodes[idx] = Arc::new(node.clone());
    let st = fits(profile, pod, &work, idx, nominated);
    if !st.is_success() {
        return Err(st);
    }
    // Pods whose eviction would break a budget.
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut safe) = (Vec::new(), Vec::new());
    for p in lower {
        let mut breaks = false;
        for (i, b) in budgets.iter().enumerate() {
            if b.namespace == p.namespace && b.selector.matches(p.labels()) {
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    breaks = true;
                }
            }
        }
        if breaks {
            violating.push(p);
        } else {
            safe.push(p);
        }
    }
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, is_violating) in [(violating, true), (safe, false)] {
        for p in group {
            node.add_pod(p.clone());
            work.nodes[idx] = Arc::new(node.clone());
            if !fits(profile, pod, &work, idx, nominated).is_success() {
                node.remove_pod(&p.key);
                work.nodes[idx] = Arc::new(node.clone());
                if is_violating {
                    pdb_violations += 1;
                }
                victims.push(p);
            }
        }
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok(Candidate {
        node: idx,
        victims,
        pdb_violations,
    })
}

/// Kubernetes' pickOneNodeForPreemption order.
pub fn pick_best(candidates: &[Candidate]) -> Option<&Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
            .sum();
        // Latest start among the highest-priority victims is better.
        let earliest_high = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .filter_map(|v| v.start_time())
            .min();
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest_high),
        )
    };
    candidates.iter().min_by(|a, b| key(a).cmp(&key(b)))
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        profile: &Profile,
        pod: &Arc<PodInfo>,
        snap: &Snapshot,
        diagnosis: &Diagnosis,
        nominated: &Nominations,
    ) -> PostFilterResult {
        let msg = |m: String| PostFilterResult {
            message: Some(format!("preemption: {m}")),
            ..Default::default()
        };
        if pod.preemption_never() {
            return msg("not eligible due to preemptionPolicy=Never.".into());
        }
        if !pod.nominated_node.is_empty() {
            let unresolvable = snap.index.get(&pod.nominated_node).is_some_and(|&i| {
                diagnosis
                    .status_of(i)
                    .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
            });
            if !unresolvable {
                if let Some(n) = snap.get(&pod.nominated_node) {
                    if n.pods
                        .iter()
                        .any(|p| p.priority < pod.priority && p.terminating)
                    {
                        return msg(
                            "not eligible due to a terminating pod on the nominated node.".into(),
                        );
                    }
                }
            }
        }
        let all = snap.nodes.len();
        let potential: Vec<usize> = (0..all)
            .filter(|&i| {
                diagnosis
                    .status_of(i)
                    .is_some_and(|s| s.code == Code::Unschedulable)
            })
            .collect();
        let mut statuses: Vec<(usize, Status)> = Vec::new();
        let mut candidates = Vec::new();
        if !potential.is_empty() {
            let budgets = pdbs(snap);
            let want = (potential.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
                .max(MIN_CANDIDATE_NODES_ABSOLUTE)
                .min(potential.len());
            let offset = rand::rng().random_range(0..potential.len());
            for k in 0..potential.len() {
                let idx = potential[(offset + k) % potential.len()];
                match select_victims_on_node(profile, pod, snap, idx, &budgets, nominated) {
                    Ok(c) => {
                        candidates.push(c);
                        if candidates.len() >= want {
                            break;
                        }
                    }
                    Err(st) => statuses.push((idx, st)),
                }
            }
        }
        let Some(best) = pick_best(&candidates) else {
            // Nodes not tried (or rejected for good) count as "not helpful".
            let mut d = Diagnosis::default();
            for i in 0..all {
                let st = statuses
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| Status::unresolvable(NOT_HELPFUL));
                d.node_statuses.push((i, st));
            }
            let fit = FitError {
                num_all_nodes: all,
                diagnosis: d,
            };
            let text = fit.to_string();
            return msg(text.trim_end_matches('.').to_owned());
        };
        let node = snap.nodes[best.node].name.clone();
        let clear_nominations = nominated
            .get(&node)
            .into_iter()
            .flatten()
            .filter(|p| p.priority < pod.priority && p.key != pod.key)
            .cloned()
            .collect();
        PostFilterResult {
            nominated_node: Some(node),
            victims: best.victims.clone(),
            clear_nominations,
            message: None,
        }
    }
}

/// Victims keyed by node name, for tests and logs.
pub fn victims_by_node(snap: &Snapshot, candidates: &[Candidate]) -> HashMap<String, Vec<String>> {
    candidates
        .iter()
        .map(|c| {
            (
                snap.nodes[c.node].name.clone(),
                c.victims.iter().map(|v| v.name.clone()).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_profile;
    use crate::framework::ScheduleError;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn prio(p: Pod, priority: i32) -> Pod {
        with(&p, json!({"spec": {"priority": priority}}))
    }

    fn run(snap: &Snapshot, p: &Pod) -> (Result<String, String>, PostFilterResult) {
        let profile = default_profile();
        let info = Arc::new(pod_info(p));
        let mut start = 0;
        match profile.schedule(&info, snap, &mut start, &Nominations::new()) {
            Ok(r) => (Ok(r.node), PostFilterResult::default()),
            Err(ScheduleError::Fit(mut fe)) => {
                let r = profile.post_filter[0].post_filter(
                    &profile,
                    &info,
                    snap,
                    &fe.diagnosis,
                    &Nominations::new(),
                );
                fe.diagnosis.post_filter_msg = r.message.clone();
                (Err(fe.to_string()), r)
            }
            Err(e) => (Err(e.to_string()), PostFilterResult::default()),
        }
    }

    fn names(r: &PostFilterResult) -> Vec<String> {
        r.victims.iter().map(|v| v.name.clone()).collect()
    }

    #[test]
    fn picks_the_node_with_the_lowest_priority_victims() {
        let snap = snapshot(&[
            (
                node("a", "2", "4Gi", 10),
                vec![
                    prio(pod("a-mid", "1", "0"), 50),
                    prio(pod("a-low", "1", "0"), 20),
                ],
            ),
            (
                node("b", "2", "4Gi", 10),
                vec![
                    prio(pod("b-low1", "1", "0"), 10),
                    prio(pod("b-low2", "1", "0"), 10),
                ],
            ),
        ]);
        let (res, r) = run(&snap, &prio(pod("hi", "1", "0"), 100));
        assert!(res.is_err());
        assert_eq!(r.nominated_node.as_deref(), Some("b"), "{res:?}");
        assert_eq!(names(&r).len(), 1, "one victim is enough");
    }

    #[test]
    fn fewest_victims_and_reprieve() {
        let snap = snapshot(&[
            (
                node("a", "2", "4Gi", 10),
                vec![prio(pod("a1", "1", "0"), 10), prio(pod("a2", "1", "0"), 10)],
            ),
            (
                node("b", "2", "4Gi", 10),
                vec![prio(pod("b1", "2", "0"), 10)],
            ),
        ]);
        // Needs 2 cores: a loses two pods, b one.
        let (_, r) = run(&snap, &prio(pod("hi", "2", "0"), 100));
        assert_eq!(r.nominated_node.as_deref(), Some("b"));
        assert_eq!(names(&r), ["b1"]);
    }

    #[test]
    fn budgets_are_respected_where_possible() {
        let mut snap = snapshot(&[
            (
                node("a", "1", "4Gi", 10),
                vec![prio(
                    with(
                        &pod("guarded", "1", "0"),
                        json!({"metadata": {"labels": {"app": "db"}}}),
                    ),
                    10,
                )],
            ),
            (
                node("b", "1", "4Gi", 10),
                vec![prio(pod("free", "1", "0"), 20)],
            ),
        ]);
        let mut w = Writer::<PodDisruptionBudget>::default();
        w.apply_watcher_event(&Event::Apply(
            serde_json::from_value(json!({
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}},
                "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
            }))
            .unwrap(),
        ));
        snap.listers.pdbs = w.as_reader();
        let (_, r) = run(&snap, &prio(pod("hi", "1", "0"), 100));
        assert_eq!(
            names(&r),
            ["free"],
            "the budget moves preemption to b despite the higher priority"
        );
    }

    #[test]
    fn failure_messages() {
        let snap = snapshot(&[
            (
                node("a", "1", "4Gi", 10),
                vec![prio(pod("same", "1", "0"), 100)],
            ),
            (
                with(
                    &node("t", "8", "4Gi", 10),
                    json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
                ),
                vec![],
            ),
        ]);
        let (res, r) = run(&snap, &prio(pod("hi", "1", "0"), 100));
        assert!(r.nominated_node.is_none());
        assert_eq!(
            res.unwrap_err(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let never = with(
            &prio(pod("hi", "1", "0"), 1000),
            json!({"spec": {"preemptionPolicy": "Never"}}),
        );
        let (res, _) = run(&snap, &never);
        assert_eq!(
            res.unwrap_err(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: }. preemption: not eligible due to preemptionPolicy=Never.."
        );
        let (res, r) = run(&snap, &never.clone());
        assert!(res.is_err() && r.victims.is_empty());
        // Too big even with every pod gone: the filter's reason.
        let (res, _) = run(&snap, &prio(pod("huge", "4", "0"), 1000));
        assert_eq!(
            res.unwrap_err(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: }. preemption: 0/2 nodes are available: 1 Insufficient cpu, 1 Preemption is not helpful for scheduling."
        );
    }
}
