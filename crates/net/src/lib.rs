//! rkube's cluster networking: [`dns`], the cluster DNS server;
//! [`ingress`], the ingress controller; [`proxy`], the service proxy
//! (nftables); [`netpol`], NetworkPolicy enforcement (nftables); [`routes`],
//! host-gw routes to other nodes' pod ranges.

pub mod dns;
pub mod ingress;
pub mod netpol;
pub mod proxy;
pub mod routes;
