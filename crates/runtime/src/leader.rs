//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's
//! leaderelection package does it: the holder renews the Lease every retry
//! period; a candidate takes it over once the holder has not renewed for a
//! lease duration *as measured by the candidate's own clock* (it notes when
//! it last saw the Lease change, so clock skew between hosts does not
//! matter); a leader that cannot renew within the renew deadline steps down.
//! Writes are compare-and-swap on resourceVersion, so two candidates never
//! both win.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElection {
    /// Kubernetes' defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElection {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Runs for ever: waits to become leader, runs `lead()` while leading,
    /// drops it (cancelling everything it owns) when leadership is lost,
    /// and tries again. `lead` must own the tasks it starts (a JoinSet)
    /// so that dropping it stops them.
    pub async fn run<F, Fut>(self, client: kube::Client, mut lead: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut observed: Option<(String, Instant)> = None;
        loop {
            match self.try_acquire_or_renew(&api, &mut observed).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::time::sleep(jitter(self.retry_period)).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(lease = %self.name, error = %e, "leader election: lease not acquired");
                    tokio::time::sleep(jitter(self.retry_period)).await;
                    continue;
                }
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            let mut leading = tokio::spawn(lead());
            let mut last_renew = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.retry_period) => {}
                    r = &mut leading => {
                        if let Err(e) = r {
                            tracing::error!(lease = %self.name, error = %e, "leader task ended");
                        }
                        // The leader's work ended by itself: release by
                        // letting the lease run out and try again.
                        leading = tokio::spawn(futures::future::pending());
                    }
                }
                match self.try_acquire_or_renew(&api, &mut observed).await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed");
                        if last_renew.elapsed() >= self.renew_deadline {
                            break;
                        }
                    }
                }
            }
            leading.abort();
            tracing::warn!(lease = %self.name, identity = %self.identity, "lost leadership");
        }
    }

    /// One attempt: Ok(true) when we hold the lease afterwards.
    async fn try_acquire_or_renew(
        &self,
        api: &Api<Lease>,
        observed: &mut Option<(String, Instant)>,
    ) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let secs = self.lease_duration.as_secs() as i32;
        let current = match api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if crate::is_conflict(&e) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Some(l) => l,
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // What we saw of the record: when it changed last, by our clock.
        let record = format!(
            "{holder}/{:?}",
            spec.renew_time.as_ref().map(|t| t.0.as_microsecond())
        );
        match observed {
            Some((r, _)) if *r == record => {}
            _ => *observed = Some((record, Instant::now())),
        }
        let held_by_other = !holder.is_empty() && holder != self.identity;
        let duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
        if held_by_other && observed.as_ref().unwrap().1.elapsed() < duration {
            return Ok(false);
        }
        let mut lease = current;
        let mut new_spec = spec.clone();
        if holder != self.identity {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(secs);
        new_spec.renew_time = Some(now);
        lease.spec = Some(new_spec);
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if crate::is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(rand::random::<f64>() * 0.2)
}
