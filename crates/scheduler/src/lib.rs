//! The scheduler: binds pods without a node to a node (issue 5).

/// Scheduler settings.
#[derive(Clone, Debug, Default)]
pub struct Config {}

/// Runs the scheduler until the process ends.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let _ = (client, config);
    futures::future::pending::<()>().await;
    Ok(())
}
