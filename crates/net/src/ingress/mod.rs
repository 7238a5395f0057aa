//! The ingress controller for `networking.k8s.io/v1` Ingresses of class
//! `rkube`. So far: [`routes`], the pure routing table built from
//! Ingresses, Services and EndpointSlices (the proxy, TLS, status and
//! informer wiring are not written yet).

pub mod proxy;
pub mod routes;

pub use routes::{
    is_served, Decision, RouteTable, CLASS_NAME, CONTROLLER_NAME, DEFAULT_CLASS_ANNOTATION,
};
