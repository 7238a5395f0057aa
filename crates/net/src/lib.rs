//! rkube's cluster networking. So far: [`dns`], the cluster DNS server.

pub mod dns;
pub mod ingress;
