//! The controller manager: one module per controller, each reconciling
//! observed state towards desired state through the API.

/// Runs every controller until the returned future is dropped (leadership
/// lost) or the process ends.
pub fn run(client: kube::Client) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let _ = client;
        futures::future::pending::<()>().await
    }
}
