//! rkube's cluster networking: [`dns`], the cluster DNS server;
//! [`ingress`], the ingress controller; [`proxy`], the service proxy
//! (nftables).

pub mod dns;
pub mod ingress;
pub mod proxy;
