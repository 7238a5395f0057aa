use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSpec, ResourceRequirements, SecretEnvSource, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ctx() -> PodContext {
    PodContext {
        host_ip: "192.168.1.2".into(),
        pod_ip: "10.1.0.5".into(),
        allocatable: BTreeMap::from([
            ("cpu".into(), "4".into()),
            ("memory".into(), "8Gi".into()),
            ("ephemeral-storage".into(), "100Gi".into()),
        ]),
    }
}

fn pod(c: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            service_account_name: Some("sa".into()),
            containers: vec![c],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn objects() -> StaticObjects {
    let o = StaticObjects::default();
    o.put_config_map("ns", "cm", &[("k", "v"), ("A", "1"), ("bad key", "x")]);
    o.put_secret("ns", "s", &[("pw", b"hunter2")]);
    o
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn from(name: &str, src: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(src),
        ..EnvVar::default()
    }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }),
        ..Default::default()
    }
}

fn secret_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }),
        ..Default::default()
    }
}

fn resource(res: &str, divisor: Option<&str>) -> EnvVarSource {
    EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector {
            resource: res.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            container_name: None,
        }),
        ..Default::default()
    }
}

fn env_from_cm(name: &str, prefix: Option<&str>, optional: Option<bool>) -> EnvFromSource {
    EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: name.into(),
            optional,
        }),
        prefix: prefix.map(Into::into),
        secret_ref: None,
    }
}

fn env_from_secret(name: &str, optional: Option<bool>) -> EnvFromSource {
    EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.into(),
            optional,
        }),
        ..Default::default()
    }
}

fn container(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
    Container {
        name: "c".into(),
        env: Some(env),
        env_from: Some(env_from),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("250m".into())),
                ("memory".into(), Quantity("64Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("1500m".into()))])),
            ..Default::default()
        }),
        ..Container::default()
    }
}

type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;

#[tokio::test]
async fn builds_env_like_kubelet() {
    let cases: Vec<(&str, Vec<EnvVar>, Vec<EnvFromSource>, Want)> = vec![
        (
            "plain values expand earlier ones",
            vec![var("A", "x"), var("B", "$(A)-$(C)-$$(A)")],
            vec![],
            Ok(vec![("A", "x"), ("B", "x-$(C)-$(A)")]),
        ),
        (
            "field refs",
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.uid",
                "metadata.labels['app']",
                "metadata.annotations['a']",
                "spec.nodeName",
                "spec.serviceAccountName",
                "status.hostIP",
                "status.hostIPs",
                "status.podIP",
                "status.podIPs",
            ]
            .iter()
            .enumerate()
            .map(|(i, p)| from(&format!("F{i}"), field(p)))
            .collect(),
            vec![],
            Ok(vec![
                ("F0", "p"),
                ("F1", "ns"),
                ("F2", "u1"),
                ("F3", "web"),
                ("F4", "b"),
                ("F5", "n1"),
                ("F6", "sa"),
                ("F7", "192.168.1.2"),
                ("F8", "192.168.1.2"),
                ("F9", "10.1.0.5"),
                ("F10", "10.1.0.5"),
            ]),
        ),
        (
            "configmap and secret keys",
            vec![
                from("K", cm_key("cm", "k", None)),
                from("P", secret_key("s", "pw", None)),
                from("O", cm_key("cm", "nope", Some(true))),
                from("Q", secret_key("gone", "x", Some(true))),
                var("R", "$(K)$(P)"),
            ],
            vec![],
            Ok(vec![("K", "v"), ("P", "hunter2"), ("R", "vhunter2")]),
        ),
        (
            "missing configmap",
            vec![from("K", cm_key("gone", "k", None))],
            vec![],
            Err("configmap \"gone\" not found"),
        ),
        (
            "missing configmap key",
            vec![from("K", cm_key("cm", "nope", Some(false)))],
            vec![],
            Err("couldn't find key nope in ConfigMap ns/cm"),
        ),
        (
            "missing secret",
            vec![from("K", secret_key("gone", "k", None))],
            vec![],
            Err("secret \"gone\" not found"),
        ),
        (
            "missing secret key",
            vec![from("K", secret_key("s", "nope", None))],
            vec![],
            Err("couldn't find key nope in Secret ns/s"),
        ),
        (
            "envFrom with prefix, invalid keys skipped, env overrides in place",
            vec![var("X_A", "override"), var("Y", "$(X_k)")],
            vec![
                env_from_cm("cm", Some("X_"), None),
                env_from_secret("s", None),
                env_from_cm("gone", None, Some(true)),
            ],
            Ok(vec![
                ("X_A", "override"),
                ("X_k", "v"),
                ("pw", "hunter2"),
                ("Y", "v"),
            ]),
        ),
        (
            "envFrom missing secret",
            vec![],
            vec![env_from_secret("gone", None)],
            Err("secret \"gone\" not found"),
        ),
        (
            "resources with divisors; a missing limit is the node's allocatable",
            vec![
                from("RC", resource("requests.cpu", None)),
                from("RCM", resource("requests.cpu", Some("1m"))),
                from("LC", resource("limits.cpu", None)),
                from("RM", resource("requests.memory", Some("1Mi"))),
                from("RMB", resource("requests.memory", None)),
                from("LM", resource("limits.memory", Some("1Gi"))),
                from("LE", resource("limits.ephemeral-storage", Some("1Gi"))),
                from("RE", resource("requests.ephemeral-storage", None)),
            ],
            vec![],
            Ok(vec![
                ("RC", "1"),
                ("RCM", "250"),
                ("LC", "2"),
                ("RM", "64"),
                ("RMB", "67108864"),
                ("LM", "8"),
                ("LE", "100"),
                ("RE", "0"),
            ]),
        ),
    ];
    let o = objects();
    for (name, env, env_from, want) in cases {
        let c = container(env, env_from);
        let got = container_env(&pod(c.clone()), &c, &ctx(), &o).await;
        let want = want
            .map(|v| {
                v.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_owned());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn env_var_names() {
    for (s, ok) in [
        ("A", true),
        ("_a.b-c9", true),
        ("-x", true),
        ("9a", false),
        ("bad key", false),
        ("", false),
        ("a=b", false),
    ] {
        assert_eq!(is_env_var_name(s), ok, "{s}");
    }
}

fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": ports},
    }))
    .unwrap()
}

/// The kubelet's Service variables: the `kubernetes` Service's always,
/// the namespace's unless enableServiceLinks is false; headless ones have
/// none; declared variables win and may refer to them.
#[tokio::test]
async fn service_links() {
    let objects = StaticObjects::default();
    *objects.services.lock().unwrap() = vec![
        service(
            "default",
            "kubernetes",
            "10.43.0.1",
            serde_json::json!([{"name": "https", "port": 443}]),
        ),
        service(
            "ns",
            "web-front",
            "10.43.0.20",
            serde_json::json!([
            {"name": "http", "port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]),
        ),
        service("ns", "headless", "None", serde_json::json!([{"port": 80}])),
        service(
            "other",
            "elsewhere",
            "10.43.0.30",
            serde_json::json!([{"port": 80}]),
        ),
    ];
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            EnvVar {
                name: "WEB_FRONT_SERVICE_PORT".into(),
                value: Some("8080".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "URL".into(),
                value: Some(
                    "http://$(WEB_FRONT_SERVICE_HOST):$(WEB_FRONT_SERVICE_PORT_HTTP)".into(),
                ),
                ..EnvVar::default()
            },
        ]),
        ..Container::default()
    };
    let env: BTreeMap<String, String> = container_env(&pod(c.clone()), &c, &ctx(), &objects)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let want = [
        ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
        ("WEB_FRONT_SERVICE_HOST", "10.43.0.20"),
        // Declared: it wins.
        ("WEB_FRONT_SERVICE_PORT", "8080"),
        ("WEB_FRONT_SERVICE_PORT_DNS_UDP", "53"),
        ("WEB_FRONT_PORT_53_UDP", "udp://10.43.0.20:53"),
        ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
        ("URL", "http://10.43.0.20:80"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(
        !env.keys()
            .any(|k| k.starts_with("HEADLESS_") || k.starts_with("ELSEWHERE_")),
        "{env:?}"
    );

    // enableServiceLinks: false leaves only the master service's.
    let mut p = pod(c.clone());
    p.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env: BTreeMap<String, String> = container_env(&p, &c, &ctx(), &objects)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        env.get("KUBERNETES_SERVICE_HOST").map(String::as_str),
        Some("10.43.0.1")
    );
    assert!(!env.contains_key("WEB_FRONT_SERVICE_HOST"), "{env:?}");
}
