use super::*;
use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig, PodDNSConfigOption, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn node() -> NodeDns {
    NodeDns {
        cluster_dns: vec!["10.43.0.10".into()],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: "# comment\nnameserver 192.168.0.1\nnameserver 192.168.0.2\nsearch example.com corp\noptions edns0\n".into(),
    }
}

fn pod(policy: Option<&str>, host_network: bool, cfg: Option<PodDNSConfig>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-0".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            dns_policy: policy.map(Into::into),
            host_network: Some(host_network),
            dns_config: cfg,
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
    DnsConfig {
        servers: v(servers),
        searches: v(searches),
        options: v(options),
    }
}

#[test]
fn policies() {
    let cluster = dns(
        &["10.43.0.10"],
        &[
            "ns.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "example.com",
            "corp",
        ],
        &["ndots:5"],
    );
    let host = dns(
        &["192.168.0.1", "192.168.0.2"],
        &["example.com", "corp"],
        &["edns0"],
    );
    let extra = PodDNSConfig {
        nameservers: Some(vec![
            "1.1.1.1".into(),
            "10.43.0.10".into(),
            "8.8.8.8".into(),
            "9.9.9.9".into(),
        ]),
        searches: Some(vec!["corp".into(), "extra".into()]),
        options: Some(vec![
            PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            },
            PodDNSConfigOption {
                name: Some("single-request".into()),
                value: None,
            },
        ]),
    };
    let cases = [
        ("default policy", pod(None, false, None), cluster.clone()),
        (
            "ClusterFirst",
            pod(Some("ClusterFirst"), false, None),
            cluster.clone(),
        ),
        (
            "host network falls back",
            pod(Some("ClusterFirst"), true, None),
            host.clone(),
        ),
        (
            "ClusterFirstWithHostNet",
            pod(Some("ClusterFirstWithHostNet"), true, None),
            cluster.clone(),
        ),
        ("Default", pod(Some("Default"), false, None), host.clone()),
        ("None", pod(Some("None"), false, None), DnsConfig::default()),
        (
            "dnsConfig merged",
            pod(None, false, Some(extra.clone())),
            dns(
                &["10.43.0.10", "1.1.1.1", "8.8.8.8"],
                &[
                    "ns.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "example.com",
                    "corp",
                    "extra",
                ],
                &["ndots:2", "single-request"],
            ),
        ),
        (
            "None with dnsConfig",
            pod(Some("None"), false, Some(extra)),
            dns(
                &["1.1.1.1", "10.43.0.10", "8.8.8.8"],
                &["corp", "extra"],
                &["ndots:2", "single-request"],
            ),
        ),
    ];
    for (name, p, want) in cases {
        assert_eq!(pod_dns(&p, &node()), want, "{name}");
    }
    let no_cluster = NodeDns {
        cluster_dns: vec![],
        ..node()
    };
    assert_eq!(pod_dns(&pod(None, false, None), &no_cluster), host);
}

#[test]
fn hosts() {
    let base = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
    let mut p = pod(None, false, None);
    assert_eq!(
        hosts_file(&p, "10.1.0.5", "cluster.local", ""),
        format!("{base}10.1.0.5\tweb-0\n")
    );
    let spec = p.spec.as_mut().unwrap();
    spec.hostname = Some("h".into());
    spec.subdomain = Some("sub".into());
    spec.host_aliases = Some(vec![HostAlias {
        ip: "1.2.3.4".into(),
        hostnames: Some(vec!["a".into(), "b".into()]),
    }]);
    assert_eq!(
        hosts_file(&p, "10.1.0.5", "cluster.local", ""),
        format!("{base}10.1.0.5\th.sub.ns.svc.cluster.local\th\n\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")
    );
    p.spec.as_mut().unwrap().host_network = Some(true);
    p.spec.as_mut().unwrap().host_aliases = None;
    assert_eq!(
        hosts_file(&p, "192.168.0.9", "cluster.local", "127.0.0.1 localhost"),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
    );
}

#[test]
fn hosts_mount_is_skipped_when_the_container_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = pod(None, false, None);
    let m = hosts_mount(&p, dir.path(), "10.1.0.5", "cluster.local", &[])
        .unwrap()
        .unwrap();
    assert_eq!(m.container_path, "/etc/hosts");
    assert!(std::fs::read_to_string(&m.host_path)
        .unwrap()
        .ends_with("10.1.0.5\tweb-0\n"));
    assert_eq!(
        hosts_mount(&p, dir.path(), "", "cluster.local", &[]).unwrap(),
        None
    );
    assert_eq!(
        hosts_mount(&p, dir.path(), "10.1.0.5", "cluster.local", &[m]).unwrap(),
        None
    );
}
