//! Expectations, as Kubernetes' ReplicaSet controller keeps them: after a
//! controller creates or deletes N objects for a key it waits until its
//! cache has seen those N changes (or a timeout passed) before it counts
//! again, so a stale cache never makes it create or delete twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long unmet expectations are given up (the watch may have
/// missed an event; the controller then trusts its cache again).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy)]
struct Pending {
    adds: i64,
    dels: i64,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the controller may act on `key` from its cache: nothing is
    /// pending, everything pending was observed, or it timed out.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.map.lock().unwrap().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.dels <= 0) || p.at.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }

    /// Records that `adds` creations and `dels` deletions are on their way.
    pub fn expect(&self, key: &str, adds: i64, dels: i64) {
        self.map.lock().unwrap().insert(
            key.to_owned(),
            Pending {
                adds,
                dels,
                at: Instant::now(),
            },
        );
    }

    /// A creation for `key` was seen (or will never come: a create failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(p) = self.map.lock().unwrap().get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A deletion for `key` was seen (or will never come).
    pub fn deletion_observed(&self, key: &str) {
        if let Some(p) = self.map.lock().unwrap().get_mut(key) {
            p.dels -= 1;
        }
    }

    /// Forgets `key` (its owner was deleted).
    pub fn forget(&self, key: &str) {
        self.map.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("a"));
        e.expect("a", 2, 1);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        e.deletion_observed("a");
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        // Observations for unknown keys are ignored.
        e.creation_observed("b");
        assert!(e.satisfied("b"));
        e.expect("a", 1, 0);
        e.forget("a");
        assert!(e.satisfied("a"));
    }
}
