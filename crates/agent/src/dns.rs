//! A pod's resolver and hosts file as kubelet makes them.
//!
//! [`pod_dns`]: the sandbox's resolv.conf from `dnsPolicy` (`ClusterFirst`:
//! the cluster DNS, searches `<ns>.svc.<domain> svc.<domain> <domain>` and
//! the host's, `ndots:5`; host-network pods fall back to `Default` unless
//! `ClusterFirstWithHostNet`; `Default`: the host's resolv.conf; `None`:
//! nothing) with `dnsConfig` merged in (nameservers and searches appended
//! without duplicates, options by name), cut to 3 nameservers and 32
//! searches. [`hosts_file`]: the kubelet-managed `/etc/hosts` (localhost
//! lines, the pod's IP with its hostname and, with a subdomain, its FQDN;
//! `hostAliases`), written to `<pod dir>/etc-hosts` and mounted into each
//! container by [`hosts_mount`].

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::cri::{DnsConfig, Mount};

pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;

/// The node's DNS settings.
#[derive(Debug, Clone, Default)]
pub struct NodeDns {
    /// Cluster DNS server addresses (`--cluster-dns`).
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// The host's resolv.conf contents.
    pub host_resolv_conf: String,
}

/// Parses resolv.conf: nameservers, the search list (the last `search`
/// line wins), options.
pub fn parse_resolv_conf(s: &str) -> DnsConfig {
    let mut d = DnsConfig::default();
    for line in s.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => d.servers.extend(f.next().map(str::to_owned)),
            Some("search") => d.searches = f.map(str::to_owned).collect(),
            Some("options") => d.options.extend(f.map(str::to_owned)),
            _ => {}
        }
    }
    d
}

fn push_unique(v: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
}

/// The sandbox DNS config of `pod`; `None` for the runtime's default
/// (not used: every policy gives one).
pub fn pod_dns(pod: &Pod, node: &NodeDns) -> DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host = parse_resolv_conf(&node.host_resolv_conf);
    let kind = match policy {
        "ClusterFirstWithHostNet" => "ClusterFirst",
        "ClusterFirst" if host_network => "Default",
        "None" => "None",
        "Default" => "Default",
        _ => "ClusterFirst",
    };
    let kind = if kind == "ClusterFirst" && node.cluster_dns.is_empty() {
        "Default"
    } else {
        kind
    };
    let mut d = match kind {
        "ClusterFirst" => {
            let domain = &node.cluster_domain;
            let mut searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            push_unique(&mut searches, host.searches.clone());
            DnsConfig {
                servers: node.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".to_owned()],
            }
        }
        "Default" => host,
        _ => DnsConfig::default(),
    };
    if let Some(c) = &spec.dns_config {
        push_unique(&mut d.servers, c.nameservers.clone().unwrap_or_default());
        push_unique(&mut d.searches, c.searches.clone().unwrap_or_default());
        for o in c.options.iter().flatten() {
            let Some(name) = o.name.clone() else { continue };
            let opt = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            let same = |x: &String| x.split(':').next() == Some(name.as_str());
            match d.options.iter_mut().find(|x| same(x)) {
                Some(x) => *x = opt,
                None => d.options.push(opt),
            }
        }
    }
    d.servers.truncate(MAX_NAMESERVERS);
    d.searches.truncate(MAX_SEARCHES);
    d
}

/// The pod's hostname: `spec.hostname`, else the name (at most 63
/// characters, without a trailing `-` or `.`).
pub fn hostname(pod: &Pod) -> String {
    if let Some(h) = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    name[..63].trim_end_matches(['-', '.']).to_owned()
}

/// The kubelet-managed `/etc/hosts` of `pod` at `pod_ip`; for a
/// host-network pod, `host_hosts` (the node's /etc/hosts) is kept.
pub fn hosts_file(pod: &Pod, pod_ip: &str, domain: &str, host_hosts: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = String::new();
    if spec.host_network == Some(true) {
        out.push_str("# Kubernetes-managed hosts file (host network).\n");
        out.push_str(host_hosts);
        if !host_hosts.is_empty() && !host_hosts.ends_with('\n') {
            out.push('\n');
        }
    } else {
        out.push_str(
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n",
        );
        let host = hostname(pod);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{pod_ip}\t{host}.{sub}.{ns}.svc.{domain}\t{host}\n"
            )),
            None => out.push_str(&format!("{pod_ip}\t{host}\n")),
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

/// Writes `<pod_dir>/etc-hosts` and returns its mount, unless a container
/// mounts its own /etc/hosts or the pod has no IP yet.
pub fn hosts_mount(
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: &str,
    domain: &str,
    mounts: &[Mount],
) -> Result<Option<Mount>, String> {
    if pod_ip.is_empty() || mounts.iter().any(|m| m.container_path == "/etc/hosts") {
        return Ok(None);
    }
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let content = hosts_file(pod, pod_ip, domain, &host_hosts);
    std::fs::create_dir_all(pod_dir).map_err(|e| e.to_string())?;
    let path = pod_dir.join("etc-hosts");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        std::fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(Some(Mount {
        container_path: "/etc/hosts".to_owned(),
        host_path: path.display().to_string(),
        readonly: false,
    }))
}

#[cfg(test)]
mod tests;
