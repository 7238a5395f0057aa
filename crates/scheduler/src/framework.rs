//! The scheduling framework: plugin extension points (PreFilter, Filter,
//! PostFilter, PreScore, Score with NormalizeScore), the per-cycle state,
//! profiles (enabled plugins and weights per schedulerName) and one
//! scheduling attempt: filter a sample of nodes, score the feasible ones,
//! pick the best.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rand::Rng;

use crate::cache::{NodeInfo, Snapshot};
use crate::podinfo::PodInfo;

/// Highest score a Score plugin gives after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is scored.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    Error,
    /// The pod does not fit; preemption may help.
    Unschedulable,
    /// The pod does not fit and preemption cannot help.
    UnschedulableAndUnresolvable,
    /// (PreFilter/PreScore) nothing to do for this pod: skip the plugin's
    /// Filter/Score.
    Skip,
}

/// A plugin's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that returned it (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    pub const fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn error(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, reason)
    }

    pub const fn skip() -> Status {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_rejection(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    fn from(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }
}

/// Data plugins keep for the length of one scheduling cycle.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, v: T) {
        self.data.retain(|(k, _)| *k != key);
        self.data.push((key, Box::new(v)));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_ref())
    }

    pub fn skips_filter(&self, plugin: &str) -> bool {
        self.skip_filter.contains(&plugin)
    }
}

pub trait Plugin: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        None
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        None
    }
    fn as_post_filter(self: Arc<Self>) -> Option<Arc<dyn PostFilterPlugin>> {
        None
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        None
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        None
    }
}

/// Runs once per cycle before filtering; may reject the pod outright or
/// say Skip (its Filter then does not run for this pod).
pub trait PreFilterPlugin: Plugin {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status;
}

/// Whether the pod can run on one node.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot)
        -> Status;
}

/// What a PostFilter plugin (preemption) decided.
#[derive(Debug, Default)]
pub struct PostFilterResult {
    /// The node the pod is nominated to, when preemption made room.
    pub nominated_node: Option<String>,
    /// Pods to delete to make that room.
    pub victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods nominated to that node that lose their
    /// nomination.
    pub clear_nominations: Vec<Arc<PodInfo>>,
    /// Appended to the failure message ("preemption: ...").
    pub message: Option<String>,
}

/// Runs when no node fits (preemption).
pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        profile: &Profile,
        pod: &Arc<PodInfo>,
        snap: &Snapshot,
        diagnosis: &Diagnosis,
        nominated: &Nominations,
    ) -> PostFilterResult;
}

/// Runs once per cycle before scoring, with the feasible nodes.
pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snap: &Snapshot,
    ) -> Status;
}

/// Ranks feasible nodes; scores are normalised to 0..=100, then weighted.
pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> i64;
    /// Rescales raw scores (in node order) to 0..=MAX_NODE_SCORE.
    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _scores: &mut [i64],
    ) {
    }
}

/// Kubernetes' DefaultNormalizeScore: scale to 0..=max by the largest
/// score, reversed when a high raw score is bad.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// Pods nominated to nodes by earlier preemptions (node → pods).
pub type Nominations = HashMap<String, Vec<Arc<PodInfo>>>;

/// Why nodes were rejected in one attempt.
#[derive(Debug, Default)]
pub struct Diagnosis {
    /// Rejections per node (snapshot index).
    pub node_statuses: Vec<(usize, Status)>,
    /// A PreFilter rejected the pod for every node.
    pub pre_filter: Option<Status>,
    /// Plugins that rejected the pod.
    pub rejected_by: Vec<&'static str>,
    pub post_filter_msg: Option<String>,
}

impl Diagnosis {
    fn reject(&mut self, idx: usize, st: Status) {
        if !self.rejected_by.contains(&st.plugin) {
            self.rejected_by.push(st.plugin);
        }
        self.node_statuses.push((idx, st));
    }

    /// The status of a node (snapshot index), if it was rejected.
    pub fn status_of(&self, idx: usize) -> Option<&Status> {
        if let Some(s) = &self.pre_filter {
            return Some(s);
        }
        self.node_statuses
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, s)| s)
    }
}

/// No node fits: Kubernetes' FitError, whose message is what users read.
#[derive(Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(pf) = &self.diagnosis.pre_filter {
            write!(f, " {}.", pf.message())?;
        } else {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for (_, st) in &self.diagnosis.node_statuses {
                for r in &st.reasons {
                    *counts.entry(r.as_ref()).or_default() += 1;
                }
            }
            let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            if !parts.is_empty() {
                write!(f, " {}.", parts.join(", "))?;
            }
        }
        if let Some(pf) = &self.diagnosis.post_filter_msg {
            write!(f, " {pf}.")?;
        }
        Ok(())
    }
}

/// Why an attempt failed.
#[derive(Debug)]
pub enum ScheduleError {
    /// Kubernetes' ErrNoNodesAvailable.
    NoNodes,
    Fit(Box<FitError>),
    /// A plugin failed (not a rejection).
    Internal(String),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Fit(e) => e.fmt(f),
            ScheduleError::Internal(e) => f.write_str(e),
        }
    }
}

/// A successful attempt.
#[derive(Debug)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// Enabled plugins per extension point (in order) and score weights.
#[derive(Clone, Default)]
pub struct Profile {
    pub scheduler_name: String,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    /// None or 0: Kubernetes' adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("scheduler_name", &self.scheduler_name)
            .field(
                "pre_filter",
                &self.pre_filter.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "filter",
                &self.filter.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "post_filter",
                &self
                    .post_filter
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "pre_score",
                &self.pre_score.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "score",
                &self
                    .score
                    .iter()
                    .map(|(p, w)| (p.name(), *w))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How many feasible nodes to look for among `all` (Kubernetes'
/// numFeasibleNodesToFind).
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, all: usize) -> usize {
    let pct = percentage.unwrap_or(0) as usize;
    if all < MIN_FEASIBLE_NODES_TO_FIND || pct >= 100 {
        return all;
    }
    let pct = if pct == 0 {
        (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE)
    } else {
        pct
    };
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl Profile {
    /// Runs PreFilter plugins; Err is a rejection (or error) for all nodes.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> Result<(), Status> {
        for p in &self.pre_filter {
            let st = p.pre_filter(state, pod, snap);
            match st.code {
                Code::Success => {}
                Code::Skip => state.skip_filter.push(p.name()),
                _ => return Err(st.from(p.name())),
            }
        }
        Ok(())
    }

    /// Runs Filter plugins on one node, stopping at the first rejection.
    pub fn run_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) -> Status {
        for p in &self.filter {
            if state.skips_filter(p.name()) {
                continue;
            }
            let st = p.filter(state, pod, node, snap);
            if !st.is_success() {
                return st.from(p.name());
            }
        }
        Status::success()
    }

    /// Filters with the pods nominated to this node (of at least the pod's
    /// priority) counted as if they ran there, and without them.
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
        nominated: &Nominations,
    ) -> Status {
        let extra: Vec<&Arc<PodInfo>> = nominated
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .collect();
        if !extra.is_empty() {
            let mut with = node.clone();
            for p in extra {
                with.add_pod(Arc::new(p.with_node(&node.name)));
            }
            let st = self.run_filter(state, pod, &with, snap);
            if !st.is_success() {
                return st;
            }
        }
        self.run_filter(state, pod, node, snap)
    }

    /// One scheduling attempt. `next_start` is where the round-robin over
    /// nodes continues (updated).
    pub fn schedule(
        &self,
        pod: &PodInfo,
        snap: &Snapshot,
        next_start: &mut usize,
        nominated: &Nominations,
    ) -> Result<ScheduleResult, ScheduleError> {
        let n = snap.nodes.len();
        if n == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = CycleState::default();
        if let Err(st) = self.run_pre_filter(&mut state, pod, snap) {
            if st.code == Code::Error {
                return Err(ScheduleError::Internal(st.message()));
            }
            let diagnosis = Diagnosis {
                rejected_by: vec![st.plugin],
                pre_filter: Some(st),
                ..Default::default()
            };
            return Err(ScheduleError::Fit(Box::new(FitError {
                num_all_nodes: n,
                diagnosis,
            })));
        }
        let mut diagnosis = Diagnosis::default();
        // A node preemption nominated this pod to comes first.
        if !pod.nominated_node.is_empty() {
            if let Some(node) = snap.get(&pod.nominated_node) {
                let st = self.run_filter_with_nominated(&state, pod, node, snap, nominated);
                if st.is_success() {
                    return Ok(ScheduleResult {
                        node: node.name.clone(),
                        evaluated: 1,
                        feasible: 1,
                    });
                }
            }
        }
        let want = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let mut feasible: Vec<usize> = Vec::with_capacity(want.min(n));
        let start = *next_start % n;
        let mut processed = 0;
        let check_nominated = !nominated.is_empty();
        // The filters this pod needs (PreFilter skips resolved once).
        let active: Vec<&Arc<dyn FilterPlugin>> = self
            .filter
            .iter()
            .filter(|p| !state.skips_filter(p.name()))
            .collect();
        for i in 0..n {
            let idx = (start + i) % n;
            let node = &snap.nodes[idx];
            processed += 1;
            let st = if check_nominated {
                self.run_filter_with_nominated(&state, pod, node, snap, nominated)
            } else {
                let mut st = Status::success();
                for p in &active {
                    let s = p.filter(&state, pod, node, snap);
                    if !s.is_success() {
                        st = s.from(p.name());
                        break;
                    }
                }
                st
            };
            match st.code {
                Code::Success => {
                    feasible.push(idx);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Code::Error => return Err(ScheduleError::Internal(st.message())),
                _ => diagnosis.reject(idx, st),
            }
        }
        *next_start = (start + processed) % n;
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(Box::new(FitError {
                num_all_nodes: n,
                diagnosis,
            })));
        }
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                node: snap.nodes[feasible[0]].name.clone(),
                evaluated: processed,
                feasible: 1,
            });
        }
        let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| snap.nodes[i].as_ref()).collect();
        let totals = self.run_score(&mut state, pod, &nodes, snap)?;
        // The best score; ties broken uniformly at random.
        let mut best = 0;
        let mut best_score = i64::MIN;
        let mut ties = 0u32;
        let mut rng = rand::rng();
        for (i, &s) in totals.iter().enumerate() {
            if s > best_score {
                best_score = s;
                best = i;
                ties = 1;
            } else if s == best_score {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        Ok(ScheduleResult {
            node: nodes[best].name.clone(),
            evaluated: processed,
            feasible: feasible.len(),
        })
    }

    /// PreScore, Score, NormalizeScore and weights: the total per node.
    pub fn run_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snap: &Snapshot,
    ) -> Result<Vec<i64>, ScheduleError> {
        for p in &self.pre_score {
            let st = p.pre_score(state, pod, nodes, snap);
            match st.code {
                Code::Success => {}
                Code::Skip => state.skip_score.push(p.name()),
                _ => return Err(ScheduleError::Internal(st.message())),
            }
        }
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.score {
            if state.skip_score.contains(&p.name()) {
                continue;
            }
            for (i, n) in nodes.iter().enumerate() {
                scores[i] = p.score(state, pod, n, snap);
            }
            p.normalize(state, pod, nodes, &mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        Ok(totals)
    }

    /// Names of the enabled plugins at one extension point (for tests).
    pub fn filter_names(&self) -> Vec<&'static str> {
        self.filter.iter().map(|p| p.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        let cases = [
            (None, 50, 50),
            (None, 99, 99),
            (None, 100, 100),
            (None, 500, 230),   // 46%
            (None, 1000, 420),  // 42%
            (None, 5000, 500),  // 10%
            (None, 6000, 300),  // 2% -> 5%
            (None, 10000, 500), // 5%
            (Some(30), 1000, 300),
            (Some(1), 1000, 100),
            (Some(100), 5000, 5000),
        ];
        for (pct, all, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(pct, all), want, "{pct:?} {all}");
        }
    }

    fn st(code: Code, r: &'static str) -> Status {
        Status::new(code, r)
    }

    #[test]
    fn fit_error_message_counts_and_sorts_reasons() {
        let mut d = Diagnosis::default();
        for i in 0..3 {
            d.reject(i, st(Code::Unschedulable, "Insufficient cpu"));
        }
        for i in 3..5 {
            d.reject(
                i,
                st(
                    Code::UnschedulableAndUnresolvable,
                    "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
                ),
            );
        }
        d.post_filter_msg = Some(
            "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling"
                .into(),
        );
        let e = FitError {
            num_all_nodes: 5,
            diagnosis: d,
        };
        assert_eq!(
            e.to_string(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 3 Insufficient cpu. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
        );
        let mut multi = Diagnosis::default();
        multi.reject(
            0,
            Status {
                code: Code::Unschedulable,
                reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                plugin: "NodeResourcesFit",
            },
        );
        let e = FitError {
            num_all_nodes: 1,
            diagnosis: multi,
        };
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        );
        let pre = Diagnosis {
            pre_filter: Some(st(
                Code::UnschedulableAndUnresolvable,
                "pod has unbound immediate PersistentVolumeClaims",
            )),
            ..Default::default()
        };
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: pre,
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        );
    }

    #[test]
    fn default_normalize_cases() {
        let cases: [(&[i64], bool, &[i64]); 4] = [
            (&[1, 2, 4], false, &[25, 50, 100]),
            (&[1, 2, 4], true, &[75, 50, 0]),
            (&[0, 0], true, &[100, 100]),
            (&[0, 0], false, &[0, 0]),
        ];
        for (input, rev, want) in cases {
            let mut s = input.to_vec();
            default_normalize(&mut s, rev);
            assert_eq!(s, want, "{input:?} {rev}");
        }
    }
}
