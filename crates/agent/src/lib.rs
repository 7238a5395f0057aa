//! The node agent (kubelet), and simulated nodes for tests and scale runs.
//!
//! The real agent ([`run`], [`Agent`]) runs pods as containers through CRI
//! on containerd: [`containerd`] supervises the agent's own containerd and
//! imports image archives, [`cri`] is the runtime behind a trait (the gRPC
//! client and a recording fake), [`node`] registers the Node and renews its
//! Lease, [`pods`] syncs pods with the runtime and reports their status,
//! [`env`] builds containers' environments, [`volumes`] sets up pod volumes,
//! [`dns`] makes pods' resolv.conf and /etc/hosts, [`probes`] runs liveness,
//! readiness and startup probes, [`lifecycle`] runs postStart and preStop
//! hooks, [`resources`] and [`security`] turn resources and securityContext
//! into the runtime's cgroup and security settings, [`server`] serves logs,
//! exec, attach and port-forward on the kubelet port.

pub mod cgroups;
pub mod container_gc;
pub mod containerd;
pub mod cri;
pub mod dns;
pub mod env;
pub mod eviction;
pub mod image_gc;
pub mod kubelet;
pub mod lifecycle;
pub mod node;
pub mod pods;
pub mod probes;
pub mod pull_secrets;
pub mod registries;
pub mod resources;
pub mod security;
pub mod server;
pub mod simulated;
pub mod static_pods;
pub mod termination;
pub mod volumes;

pub use kubelet::{run, Agent, Config};
