//! The scheduler: binds pods without a node to a node (issue 5), built as
//! kube-scheduler is.
//!
//! - [`queue`]: active / back-off / unschedulable sub-queues.
//! - [`cache`]: nodes and pods from informers, with assumed pods, and the
//!   per-cycle [`cache::Snapshot`].
//! - [`framework`]: plugin extension points, cycle state, profiles, one
//!   scheduling attempt (filter a sample of nodes, score, pick).
//! - [`plugins`]: the in-tree plugins; [`preemption`]: DefaultPreemption.
//! - [`binder`]: the scheduling loop (one thread), asynchronous binding,
//!   events and pod conditions; [`metrics`]: Prometheus text.
//! - [`config`]: profiles from a KubeSchedulerConfiguration file.

pub mod binder;
pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod resources;
#[doc(hidden)]
pub mod testutil;

pub use config::Config;

/// The schedulerName pods get when they name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Runs the scheduler until the returned future is dropped (leadership
/// lost) or the process ends.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    binder::run(client, config).await
}
