//! The node agent (kubelet), and simulated nodes for tests and scale runs.

pub mod simulated;
