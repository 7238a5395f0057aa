//! A work queue of keys, as client-go's rate-limited workqueue behaves:
//!
//! - a key added several times before a worker takes it is processed once;
//! - a key being processed is never handed to a second worker; if it is
//!   added meanwhile it is queued again when the first worker is done;
//! - failed keys come back after a per-key exponential back-off (5 ms
//!   doubling up to 1000 s), reset by [`WorkQueue::forget`];
//! - keys can be added after a delay (resyncs, minReadySeconds, deadlines).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

struct Inner<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    /// Delayed adds by due time (a sequence number keeps entries apart).
    delayed: BTreeMap<(Instant, u64), T>,
    seq: u64,
    shut_down: bool,
}

/// A cloneable handle on one queue.
pub struct WorkQueue<T> {
    inner: Arc<Mutex<Inner<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    pub fn new() -> Self {
        WorkQueue {
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                delayed: BTreeMap::new(),
                seq: 0,
                shut_down: false,
            })),
            ready: Arc::new(Notify::new()),
        }
    }

    /// Queues `key` now (once, however often it is added).
    pub fn add(&self, key: T) {
        let mut q = self.inner.lock().unwrap();
        if q.shut_down || !q.dirty.insert(key.clone()) {
            return;
        }
        if !q.processing.contains(&key) {
            q.queue.push_back(key);
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut q = self.inner.lock().unwrap();
        if q.shut_down {
            return;
        }
        q.seq += 1;
        let seq = q.seq;
        q.delayed.insert((Instant::now() + delay, seq), key);
        drop(q);
        // A waiting worker recomputes its sleep.
        self.ready.notify_one();
    }

    /// Queues `key` after its back-off, which doubles with each call until
    /// [`forget`](Self::forget).
    pub fn add_rate_limited(&self, key: T) {
        let delay = {
            let mut q = self.inner.lock().unwrap();
            let n = q.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY
                .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            *n = n.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
    }

    /// How many times `key` has failed since it was last forgotten.
    pub fn failures(&self, key: &T) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .failures
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Resets `key`'s back-off.
    pub fn forget(&self, key: &T) {
        self.inner.lock().unwrap().failures.remove(key);
    }

    /// The number of keys waiting now (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next key; `None` once the queue is shut down. The key
    /// must be handed back with [`done`](Self::done).
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            let wait_until = {
                let mut q = self.inner.lock().unwrap();
                if q.shut_down {
                    return None;
                }
                let now = Instant::now();
                while let Some(entry) = q.delayed.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let key = entry.remove();
                    if q.dirty.insert(key.clone()) && !q.processing.contains(&key) {
                        q.queue.push_back(key);
                    }
                }
                if let Some(key) = q.queue.pop_front() {
                    q.dirty.remove(&key);
                    q.processing.insert(key.clone());
                    if !q.queue.is_empty() {
                        // Let another worker take the next one.
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
                q.delayed.keys().next().map(|(at, _)| *at)
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &T) {
        let mut q = self.inner.lock().unwrap();
        q.processing.remove(key);
        if q.dirty.contains(key) {
            q.queue.push_back(key.clone());
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Stops the queue: waiting and later `get`s return `None`.
    pub fn shut_down(&self) {
        self.inner.lock().unwrap().shut_down = true;
        self.ready.notify_waiters();
    }
}

/// What a reconcile asks of the queue after it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more until something changes.
    Done,
    /// Look again after this long (a deadline, minReadySeconds, ...).
    After(Duration),
}

/// Runs `workers` tasks that take keys from `queue` and reconcile them:
/// success forgets the key's back-off (and re-queues it if asked), failure
/// retries it with back-off. Returns when the queue shuts down.
pub async fn run_workers<T, F, Fut, E>(
    queue: WorkQueue<T>,
    workers: usize,
    name: &'static str,
    f: F,
) where
    T: Hash + Eq + Clone + Send + Sync + std::fmt::Display + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Next, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                tracing::trace!(controller = name, %key, "reconciling");
                match f(key.clone()).await {
                    Ok(next) => {
                        queue.forget(&key);
                        if let Next::After(d) = next {
                            queue.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let n = queue.failures(&key);
                        if n < 3 {
                            tracing::debug!(controller = name, %key, error = %e, "reconcile failed; retrying");
                        } else {
                            tracing::warn!(controller = name, %key, error = %e, failures = n, "reconcile failed; retrying");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse_and_order_is_kept() {
        let q = WorkQueue::new();
        for k in ["a", "b", "a", "c", "b"] {
            q.add(k);
        }
        assert_eq!(q.len(), 3);
        let mut got = Vec::new();
        for _ in 0..3 {
            let k = q.get().await.unwrap();
            q.done(&k);
            got.push(k);
        }
        assert_eq!(got, ["a", "b", "c"]);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_in_process_is_not_handed_out_twice() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.get().await.unwrap();
        q.add("a");
        // Still processing: nothing to get.
        assert!(tokio::time::timeout(Duration::from_millis(20), q.get())
            .await
            .is_err());
        q.done(&k);
        assert_eq!(q.get().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_and_rate_limited_adds() {
        let q = WorkQueue::new();
        q.add_after("late", Duration::from_secs(10));
        q.add("now");
        assert_eq!(q.get().await, Some("now"));
        q.done(&"now");
        let start = Instant::now();
        assert_eq!(q.get().await, Some("late"));
        assert!(start.elapsed() >= Duration::from_secs(10));
        q.done(&"late");

        // Back-off: 5 ms, 10 ms, 20 ms, ... and forget resets it.
        for expected in [5u64, 10, 20, 40] {
            let start = Instant::now();
            q.add_rate_limited("x");
            assert_eq!(q.get().await, Some("x"));
            q.done(&"x");
            assert_eq!(start.elapsed(), Duration::from_millis(expected));
        }
        assert_eq!(q.failures(&"x"), 4);
        q.forget(&"x");
        assert_eq!(q.failures(&"x"), 0);
        for _ in 0..40 {
            q.add_rate_limited("y");
        }
        // Capped at 1000 s.
        let start = Instant::now();
        q.add_rate_limited("y");
        assert_eq!(q.get().await, Some("y"));
        assert!(start.elapsed() <= MAX_DELAY);
    }

    #[tokio::test]
    async fn shut_down_wakes_workers() {
        let q: WorkQueue<&str> = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test]
    async fn workers_retry_failures_and_requeue() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let q = WorkQueue::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let q2 = q.clone();
        q.add("k".to_string());
        let run = tokio::spawn(run_workers(q.clone(), 2, "test", move |_k: String| {
            let c = c.clone();
            let q2 = q2.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                match n {
                    0 | 1 => Err("boom"),
                    2 => Ok(Next::After(Duration::from_millis(5))),
                    _ => {
                        q2.shut_down();
                        Ok(Next::Done)
                    }
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
