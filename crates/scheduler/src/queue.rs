//! The scheduling queue, as Kubernetes' PriorityQueue: an active queue
//! ordered by priority then arrival, a back-off queue (1 s doubling to
//! 10 s per failed attempt) and an unschedulable set whose pods go back
//! when a cluster event could make them fit, or after 5 minutes at most.
//!
//! Pods live in one map; the heaps hold (key, generation) entries and stale
//! ones are skipped when popped.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::podinfo::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest a pod stays unschedulable without a retry.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Cluster events that can make unschedulable pods schedulable, and the
/// plugins whose rejections they can undo (Kubernetes' EventsToRegister,
/// coarsened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    AssignedPodAdd,
    AssignedPodUpdate,
    AssignedPodDelete,
    NamespaceChange,
    VolumeChange,
    /// Periodic flush and anything else: every pod moves.
    Any,
}

impl ClusterEvent {
    /// Whether a pod rejected by `plugin` may fit after this event.
    pub fn concerns(self, plugin: &str) -> bool {
        use crate::plugins::names::*;
        match self {
            ClusterEvent::Any | ClusterEvent::NodeAdd => true,
            ClusterEvent::NodeUpdate => plugin != NODE_NAME,
            ClusterEvent::AssignedPodAdd | ClusterEvent::AssignedPodUpdate => {
                matches!(plugin, INTER_POD_AFFINITY | POD_TOPOLOGY_SPREAD)
            }
            ClusterEvent::AssignedPodDelete => matches!(
                plugin,
                NODE_RESOURCES_FIT
                    | NODE_PORTS
                    | INTER_POD_AFFINITY
                    | POD_TOPOLOGY_SPREAD
                    | DEFAULT_PREEMPTION
                    | VOLUME_BINDING
            ),
            ClusterEvent::NamespaceChange => plugin == INTER_POD_AFFINITY,
            ClusterEvent::VolumeChange => plugin == VOLUME_BINDING,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Entry {
    info: Arc<PodInfo>,
    state: State,
    gen: u64,
    /// Scheduling attempts so far.
    attempts: u32,
    last_attempt: Option<Instant>,
    since: Instant,
    /// Plugins that rejected the pod in its last attempt.
    rejected_by: Vec<&'static str>,
    /// The pod changed while it was being scheduled.
    updated_in_flight: bool,
}

impl Entry {
    fn backoff_until(&self) -> Option<Instant> {
        let last = self.last_attempt?;
        let shift = self.attempts.saturating_sub(1).min(16);
        let d = INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
        Some(last + d)
    }
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    seq: u64,
    key: String,
    gen: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    gen: u64,
    cycle: u64,
    move_request_cycle: u64,
    unschedulable: usize,
    closed: bool,
    last_flush: Option<Instant>,
    /// node → pods nominated to it by preemption.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
}

/// A pod handed out by [`SchedulingQueue::pop`].
pub struct Popped {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    pub cycle: u64,
    /// When the pod first entered the queue.
    pub since: Instant,
}

/// Queue sizes, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl Inner {
    fn next_gen(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    fn push_active(&mut self, key: &str) {
        let gen = self.next_gen();
        self.seq += 1;
        let seq = self.seq;
        let e = self.pods.get_mut(key).unwrap();
        if e.state == State::Unschedulable {
            self.unschedulable -= 1;
        }
        e.state = State::Active;
        e.gen = gen;
        self.active.push(ActiveItem {
            priority: e.info.priority,
            seq,
            key: key.to_owned(),
            gen,
        });
    }

    fn push_backoff(&mut self, key: &str, until: Instant) {
        let gen = self.next_gen();
        let e = self.pods.get_mut(key).unwrap();
        if e.state == State::Unschedulable {
            self.unschedulable -= 1;
        }
        e.state = State::Backoff;
        e.gen = gen;
        self.backoff.push(Reverse((until, gen, key.to_owned())));
    }

    /// Active, or back-off while the pod's back-off lasts.
    fn requeue(&mut self, key: &str, now: Instant) {
        match self.pods[key].backoff_until() {
            Some(until) if until > now => self.push_backoff(key, until),
            _ => self.push_active(key),
        }
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, gen, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let gen = *gen;
            let Reverse((_, _, key)) = self.backoff.pop().unwrap();
            if self
                .pods
                .get(&key)
                .is_some_and(|e| e.gen == gen && e.state == State::Backoff)
            {
                self.push_active(&key);
            }
        }
    }

    fn flush_unschedulable(&mut self, now: Instant) {
        let old: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                e.state == State::Unschedulable && now.duration_since(e.since) >= MAX_UNSCHEDULABLE
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.requeue(&k, now);
        }
    }
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// A new pending pod (or a pod seen again): into the active queue.
    pub fn add(&self, info: Arc<PodInfo>) {
        let mut q = self.inner.lock().unwrap();
        if q.pods.contains_key(&info.key) {
            drop(q);
            return self.update(info, true);
        }
        let key = info.key.clone();
        q.pods.insert(
            key.clone(),
            Entry {
                info,
                state: State::Active,
                gen: 0,
                attempts: 0,
                last_attempt: None,
                since: Instant::now(),
                rejected_by: Vec::new(),
                updated_in_flight: false,
            },
        );
        q.push_active(&key);
        drop(q);
        self.cond.notify_one();
    }

    /// A pending pod changed. `spec_changed`: something scheduling reads
    /// changed (spec, labels), not only its status.
    pub fn update(&self, info: Arc<PodInfo>, spec_changed: bool) {
        let mut q = self.inner.lock().unwrap();
        let key = info.key.clone();
        let Some(e) = q.pods.get_mut(&key) else {
            drop(q);
            return self.add(info);
        };
        let priority_changed = e.info.priority != info.priority;
        e.info = info;
        match e.state {
            State::InFlight => e.updated_in_flight |= spec_changed,
            State::Active if priority_changed => q.push_active(&key),
            State::Unschedulable if spec_changed => {
                q.requeue(&key, Instant::now());
            }
            _ => {}
        }
        drop(q);
        self.cond.notify_one();
    }

    /// The pod is gone (deleted or bound elsewhere).
    pub fn delete(&self, key: &str) {
        let mut q = self.inner.lock().unwrap();
        if let Some(e) = q.pods.remove(key) {
            if e.state == State::Unschedulable {
                q.unschedulable -= 1;
            }
        }
        for v in q.nominated.values_mut() {
            v.retain(|p| p.key != key);
        }
        q.nominated.retain(|_, v| !v.is_empty());
    }

    /// The next pod to schedule; waits up to `timeout` (None when the
    /// queue is closed or the wait ran out).
    pub fn pop(&self, timeout: Duration) -> Option<Popped> {
        let deadline = Instant::now() + timeout;
        let mut q = self.inner.lock().unwrap();
        loop {
            if q.closed {
                return None;
            }
            let now = Instant::now();
            q.flush_backoff(now);
            if q.last_flush
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30))
            {
                q.last_flush = Some(now);
                q.flush_unschedulable(now);
            }
            while let Some(item) = q.active.pop() {
                let cycle = q.cycle + 1;
                let Some(e) = q.pods.get_mut(&item.key) else {
                    continue;
                };
                if e.gen != item.gen || e.state != State::Active {
                    continue;
                }
                e.state = State::InFlight;
                e.attempts += 1;
                e.last_attempt = Some(now);
                e.updated_in_flight = false;
                let popped = Popped {
                    info: e.info.clone(),
                    attempts: e.attempts,
                    cycle,
                    since: e.since,
                };
                q.cycle = cycle;
                return Some(popped);
            }
            if now >= deadline {
                return None;
            }
            let mut wait = deadline - now;
            if let Some(Reverse((until, _, _))) = q.backoff.peek() {
                wait = wait.min(until.saturating_duration_since(now) + Duration::from_millis(1));
            }
            q = self.cond.wait_timeout(q, wait).unwrap().0;
        }
    }

    /// The pod was placed (assumed): it leaves the queue.
    pub fn done(&self, key: &str) {
        let mut q = self.inner.lock().unwrap();
        if q.pods.get(key).is_some_and(|e| e.state == State::InFlight) {
            q.pods.remove(key);
        }
    }

    /// A scheduling attempt failed. Unschedulable pods wait for an event
    /// (unless one came while they were being scheduled, or they changed);
    /// errors go to back-off.
    pub fn failed(
        &self,
        info: &Arc<PodInfo>,
        cycle: u64,
        rejected_by: Vec<&'static str>,
        error: bool,
    ) {
        let mut q = self.inner.lock().unwrap();
        let move_cycle = q.move_request_cycle;
        let now = Instant::now();
        let Some(e) = q.pods.get_mut(&info.key) else {
            return; // deleted meanwhile
        };
        if e.state != State::InFlight {
            return;
        }
        e.rejected_by = rejected_by;
        if error || e.updated_in_flight || move_cycle >= cycle {
            q.requeue(&info.key, now);
        } else {
            e.state = State::Unschedulable;
            e.since = now;
            q.unschedulable += 1;
        }
        drop(q);
        self.cond.notify_one();
    }

    /// A binding failed after the pod left the queue: back in, with back-off.
    pub fn add_after_error(&self, info: Arc<PodInfo>, attempts: u32) {
        let mut q = self.inner.lock().unwrap();
        let key = info.key.clone();
        if q.pods.contains_key(&key) {
            return;
        }
        q.pods.insert(
            key.clone(),
            Entry {
                info,
                state: State::Backoff,
                gen: 0,
                attempts,
                last_attempt: Some(Instant::now()),
                since: Instant::now(),
                rejected_by: Vec::new(),
                updated_in_flight: false,
            },
        );
        q.requeue(&key, Instant::now());
        drop(q);
        self.cond.notify_one();
    }

    /// A cluster event: unschedulable pods it may help go back (to
    /// back-off while their back-off lasts).
    pub fn move_all(&self, event: ClusterEvent) {
        let mut q = self.inner.lock().unwrap();
        q.move_request_cycle = q.cycle;
        if q.unschedulable == 0 {
            return;
        }
        let keys: Vec<String> = q
            .pods
            .iter()
            .filter(|(_, e)| {
                e.state == State::Unschedulable
                    && (e.rejected_by.is_empty() || e.rejected_by.iter().any(|p| event.concerns(p)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        let now = Instant::now();
        for k in &keys {
            q.requeue(k, now);
        }
        drop(q);
        if !keys.is_empty() {
            self.cond.notify_all();
        }
    }

    /// Preemption nominated `info` to `node` (empty: clears).
    pub fn nominate(&self, info: Arc<PodInfo>, node: &str) {
        let mut q = self.inner.lock().unwrap();
        for v in q.nominated.values_mut() {
            v.retain(|p| p.key != info.key);
        }
        q.nominated.retain(|_, v| !v.is_empty());
        if !node.is_empty() {
            q.nominated.entry(node.to_owned()).or_default().push(info);
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_for(&self, node: &str) -> Vec<Arc<PodInfo>> {
        let q = self.inner.lock().unwrap();
        q.nominated.get(node).cloned().unwrap_or_default()
    }

    /// Every nomination (node → pods).
    pub fn nominated_all(&self) -> HashMap<String, Vec<Arc<PodInfo>>> {
        self.inner.lock().unwrap().nominated.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().unwrap().closed
    }

    pub fn has_nominated(&self) -> bool {
        !self.inner.lock().unwrap().nominated.is_empty()
    }

    pub fn sizes(&self) -> Sizes {
        let q = self.inner.lock().unwrap();
        let mut s = Sizes::default();
        for e in q.pods.values() {
            match e.state {
                State::Active => s.active += 1,
                State::Backoff => s.backoff += 1,
                State::Unschedulable => s.unschedulable += 1,
                State::InFlight => s.in_flight += 1,
            }
        }
        s
    }

    /// Wakes and ends every `pop`.
    pub fn close(&self) {
        self.inner.lock().unwrap().closed = true;
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::names::*;
    use crate::testutil::*;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = pod_info(&pod(name, "0", "0"));
        p.priority = priority;
        Arc::new(p)
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn active_queue_orders_by_priority_then_arrival() {
        let q = SchedulingQueue::new();
        q.add(info("a", 0));
        q.add(info("b", 10));
        q.add(info("c", 0));
        q.add(info("d", 10));
        let order: Vec<String> = (0..4)
            .map(|_| q.pop(NOW).unwrap().info.name.clone())
            .collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
        assert!(q.pop(NOW).is_none());
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event() {
        let q = SchedulingQueue::new();
        q.add(info("a", 0));
        let p = q.pop(NOW).unwrap();
        q.failed(&p.info, p.cycle, vec![NODE_RESOURCES_FIT], false);
        assert_eq!(q.sizes().unschedulable, 1);
        q.move_all(ClusterEvent::AssignedPodAdd); // cannot free resources
        assert_eq!(q.sizes().unschedulable, 1);
        q.move_all(ClusterEvent::NodeAdd);
        let s = q.sizes();
        assert_eq!((s.unschedulable, s.backoff), (0, 1), "still backing off");
        assert!(
            q.pop(Duration::from_millis(1100)).is_some(),
            "after 1 s back-off"
        );
    }

    #[test]
    fn events_during_the_attempt_send_the_pod_to_backoff() {
        let q = SchedulingQueue::new();
        q.add(info("a", 0));
        let p = q.pop(NOW).unwrap();
        q.move_all(ClusterEvent::NodeAdd);
        q.failed(&p.info, p.cycle, vec![NODE_RESOURCES_FIT], false);
        assert_eq!(q.sizes().backoff, 1);
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let now = Instant::now();
        let mut e = Entry {
            info: info("a", 0),
            state: State::Backoff,
            gen: 0,
            attempts: 1,
            last_attempt: Some(now),
            since: now,
            rejected_by: vec![],
            updated_in_flight: false,
        };
        let mut got = vec![];
        for a in 1..=6 {
            e.attempts = a;
            got.push(e.backoff_until().unwrap() - now);
        }
        let secs: Vec<u64> = got.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn deleted_pods_leave_and_updates_requeue_unschedulable_pods() {
        let q = SchedulingQueue::new();
        q.add(info("a", 0));
        q.add(info("b", 0));
        q.delete("default/a");
        let p = q.pop(NOW).unwrap();
        assert_eq!(p.info.name, "b");
        q.failed(&p.info, p.cycle, vec![NODE_AFFINITY], false);
        q.update(info("b", 0), false); // status only: stays
        assert_eq!(q.sizes().unschedulable, 1);
        q.update(info("b", 0), true);
        assert_eq!(q.sizes().unschedulable, 0);
        q.delete("default/b");
        assert_eq!(q.sizes(), Sizes::default());
        // A failure report for a pod deleted in flight is ignored.
        q.add(info("c", 0));
        let p = q.pop(NOW).unwrap();
        q.delete("default/c");
        q.failed(&p.info, p.cycle, vec![], true);
        assert_eq!(q.sizes(), Sizes::default());
    }

    #[test]
    fn pods_rejected_for_an_unknown_reason_move_on_any_event() {
        let q = SchedulingQueue::new();
        q.add(info("a", 0));
        let p = q.pop(NOW).unwrap();
        q.failed(&p.info, p.cycle, vec![], false);
        q.move_all(ClusterEvent::NamespaceChange);
        assert_eq!(q.sizes().unschedulable, 0);
    }
}
