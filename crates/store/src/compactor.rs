//! Periodic compaction, as the Kubernetes API server does it: at every tick,
//! compact to the revision that was current at the previous tick. History
//! therefore reaches back between one and two intervals (5 to 10 minutes
//! with the default), which is what watchers resuming after a short
//! disconnect need, and no further.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Revision, Store};

#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// Time between compactions; history kept is at least this long.
    pub interval: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            interval: Duration::from_secs(5 * 60),
        }
    }
}

/// Compacts a store in the background until dropped.
pub struct Compactor {
    task: tokio::task::JoinHandle<()>,
}

impl Compactor {
    pub fn start(store: Arc<dyn Store>, config: CompactorConfig) -> Compactor {
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(config.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut previous: Option<Revision> = None;
            loop {
                ticker.tick().await;
                if let Some(rev) = previous {
                    match store.compact(rev).await {
                        Ok(()) => tracing::debug!(revision = rev, "compacted datastore"),
                        // Another server on the same etcd compacted further.
                        Err(Error::Compacted { .. }) => {}
                        Err(e) => tracing::warn!(error = %e, "datastore compaction failed"),
                    }
                }
                previous = match store.current_revision().await {
                    Ok(rev) => Some(rev),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read datastore revision");
                        previous
                    }
                };
            }
        });
        Compactor { task }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
