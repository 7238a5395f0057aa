//! rkube's cluster networking: [`dns`], the cluster DNS server;
//! [`ingress`], the ingress controller; [`proxy`], the service proxy
//! (nftables); [`netpol`], NetworkPolicy enforcement (nftables).

pub mod dns;
pub mod ingress;
pub mod netpol;
pub mod proxy;
