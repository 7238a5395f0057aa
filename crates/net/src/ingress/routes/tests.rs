use super::{is_served, rkube_is_default, Decision, RouteTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{json, Value};

fn ingress(name: &str, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn service(name: &str, ports: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"ports": ports},
    }))
    .unwrap()
}

/// A slice for `svc` with one port `port_name`=`port` and endpoints
/// `(ip, ready)`.
fn slice(svc: &str, port_name: &str, port: i32, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, ready)| match ready {
            Some(r) => json!({"addresses": [ip], "conditions": {"ready": r}}),
            None => json!({"addresses": [ip]}),
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{svc}-x"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn backend(svc: &str, port: i32) -> Value {
    json!({"service": {"name": svc, "port": {"number": port}}})
}

fn path(path_type: &str, p: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": path_type, "backend": backend(svc, 80)})
}

fn to(svc: &str, addr: &str) -> Decision {
    Decision::Backend {
        key: format!("default/{svc}:80"),
        endpoints: vec![addr.parse().unwrap()],
    }
}

/// Services a..e on port 80 (target 8080), each with one ready endpoint
/// 10.0.0.<n>; `down` has no ready endpoint.
fn world() -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (n, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        services.push(service(
            name,
            json!([{"name": "http", "port": 80, "targetPort": 8080}]),
        ));
        let ip = format!("10.0.0.{}", n + 1);
        slices.push(slice(name, "http", 8080, &[(ip.as_str(), Some(true))]));
    }
    services.push(service("down", json!([{"name": "http", "port": 80}])));
    slices.push(slice("down", "http", 8080, &[("10.0.9.9", Some(false))]));
    (services, slices)
}

#[test]
fn routes_hosts_paths_and_defaults() {
    let (services, slices) = world();
    let ings = vec![
        ingress(
            "one",
            json!({"ingressClassName": "rkube", "rules": [
                {"host": "foo.com", "http": {"paths": [path("Prefix", "/", "a")]}},
                {"host": "bar.com", "http": {"paths": [
                    path("Prefix", "/", "b"),
                    path("Prefix", "/api", "c"),
                    path("Exact", "/api", "d"),
                    path("Exact", "/api/v1/exact", "e"),
                ]}},
            ]}),
        ),
        // Merged with "one": another path for foo.com, a wildcard, a
        // hostless rule, a down backend.
        ingress(
            "two",
            json!({"ingressClassName": "rkube", "rules": [
                {"host": "foo.com", "http": {"paths": [path("ImplementationSpecific", "/docs/", "c")]}},
                {"host": "*.wild.com", "http": {"paths": [path("Prefix", "/", "d")]}},
                {"host": "deep.wild.com", "http": {"paths": [path("Prefix", "/", "e")]}},
                {"host": "down.com", "http": {"paths": [path("Prefix", "/", "down")]}},
                {"host": "gone.com", "http": {"paths": [path("Prefix", "/", "missing")]}},
                {"http": {"paths": [path("Exact", "/healthz", "e")]}},
            ]}),
        ),
        // Not ours: ignored entirely.
        ingress(
            "other",
            json!({"ingressClassName": "nginx", "rules": [
                {"host": "nginx.com", "http": {"paths": [path("Prefix", "/", "a")]}},
            ]}),
        ),
    ];
    let table = RouteTable::build(&ings, &[], &services, &slices);
    let a = to("a", "10.0.0.1:8080");
    let b = to("b", "10.0.0.2:8080");
    let c = to("c", "10.0.0.3:8080");
    let d = to("d", "10.0.0.4:8080");
    let e = to("e", "10.0.0.5:8080");
    let cases: &[(&str, &str, Decision)] = &[
        ("foo.com", "/", a.clone()),
        ("FOO.com:8080", "/x?y=1", a.clone()),
        ("foo.com", "/docs", c.clone()),
        ("foo.com", "/docs/page", c.clone()),
        ("foo.com", "/docsy", a.clone()),
        ("bar.com", "/", b.clone()),
        // Exact before Prefix on the same path.
        ("bar.com", "/api", d.clone()),
        // Element-wise prefix: /api/ and /api/v1 are under /api, /apis not.
        ("bar.com", "/api/", c.clone()),
        ("bar.com", "/api/v1", c.clone()),
        ("bar.com", "/apis", b.clone()),
        // Longest path wins.
        ("bar.com", "/api/v1/exact", e.clone()),
        ("bar.com", "/api/v1/exact/more", c.clone()),
        // Wildcard: exactly one label; an exact host beats it.
        ("x.wild.com", "/", d.clone()),
        ("a.b.wild.com", "/", Decision::NotFound),
        ("wild.com", "/", Decision::NotFound),
        ("deep.wild.com", "/", e.clone()),
        // Hostless rule applies to any host, after host rules.
        ("whatever.org", "/healthz", e.clone()),
        ("whatever.org", "/healthz/x", Decision::NotFound),
        ("foo.com", "/healthz", a.clone()),
        // Not ours.
        ("nginx.com", "/", Decision::NotFound),
        // 503s.
        (
            "down.com",
            "/",
            Decision::Unavailable {
                key: "default/down:80".into(),
            },
        ),
        (
            "gone.com",
            "/",
            Decision::Unavailable {
                key: "default/missing:80".into(),
            },
        ),
    ];
    for (host, p, want) in cases {
        assert_eq!(&table.route(host, p), want, "{host} {p}");
    }
}

#[test]
fn default_backend_when_nothing_matches() {
    let (services, slices) = world();
    let ings = vec![ingress(
        "d",
        json!({"ingressClassName": "rkube", "defaultBackend": backend("b", 80), "rules": [
            {"host": "foo.com", "http": {"paths": [path("Exact", "/only", "a")]}},
        ]}),
    )];
    let table = RouteTable::build(&ings, &[], &services, &slices);
    assert_eq!(table.route("foo.com", "/only"), to("a", "10.0.0.1:8080"));
    assert_eq!(table.route("foo.com", "/other"), to("b", "10.0.0.2:8080"));
    assert_eq!(table.route("nohost", "/"), to("b", "10.0.0.2:8080"));
}

#[test]
fn backend_ports_by_number_and_name_and_endpoint_readiness() {
    let services = vec![service(
        "multi",
        json!([{"name": "http", "port": 80, "targetPort": 8080},
               {"name": "admin", "port": 9000, "targetPort": "adm"}]),
    )];
    let slices = vec![
        slice(
            "multi",
            "http",
            8080,
            &[
                ("10.1.0.1", Some(true)),
                ("10.1.0.2", None),
                ("10.1.0.3", Some(false)),
            ],
        ),
        {
            let mut s = slice("multi", "admin", 9999, &[("10.1.0.1", Some(true))]);
            s.metadata.name = Some("multi-y".into());
            s
        },
    ];
    let ings = vec![ingress(
        "p",
        json!({"ingressClassName": "rkube", "rules": [
            {"host": "num.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "multi", "port": {"number": 80}}}}]}},
            {"host": "name.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "multi", "port": {"name": "admin"}}}}]}},
            {"host": "noport.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "multi", "port": {"number": 81}}}}]}},
        ]}),
    )];
    let table = RouteTable::build(&ings, &[], &services, &slices);
    assert_eq!(
        table.route("num.com", "/"),
        Decision::Backend {
            key: "default/multi:80".into(),
            endpoints: vec![
                "10.1.0.1:8080".parse().unwrap(),
                "10.1.0.2:8080".parse().unwrap()
            ],
        }
    );
    assert_eq!(
        table.route("name.com", "/"),
        Decision::Backend {
            key: "default/multi:admin".into(),
            endpoints: vec!["10.1.0.1:9999".parse().unwrap()],
        }
    );
    assert_eq!(
        table.route("noport.com", "/"),
        Decision::Unavailable {
            key: "default/multi:81".into()
        }
    );
}

#[test]
fn class_selection() {
    let class = |annotation: Option<&str>| -> IngressClass {
        let mut v =
            json!({"metadata": {"name": "rkube"}, "spec": {"controller": "rkube.io/ingress"}});
        if let Some(a) = annotation {
            v["metadata"]["annotations"] =
                json!({"ingressclass.kubernetes.io/is-default-class": a});
        }
        serde_json::from_value(v).unwrap()
    };
    let cases: &[(Option<&str>, Vec<IngressClass>, bool)] = &[
        (Some("rkube"), vec![], true),
        (Some("nginx"), vec![class(Some("true"))], false),
        (None, vec![], false),
        (None, vec![class(None)], false),
        (None, vec![class(Some("false"))], false),
        (None, vec![class(Some("true"))], true),
    ];
    for (name, classes, want) in cases {
        let spec = match name {
            Some(n) => json!({"ingressClassName": n}),
            None => json!({}),
        };
        let ing = ingress("x", spec);
        assert_eq!(
            is_served(&ing, rkube_is_default(classes)),
            *want,
            "{name:?}"
        );
    }
    // And through the table: a classless Ingress is served only when rkube
    // is the default class.
    let (services, slices) = world();
    let ings = vec![ingress(
        "nocls",
        json!({"rules": [{"host": "foo.com", "http": {"paths": [path("Prefix", "/", "a")]}}]}),
    )];
    let off = RouteTable::build(&ings, &[class(None)], &services, &slices);
    assert_eq!(off.route("foo.com", "/"), Decision::NotFound);
    let on = RouteTable::build(&ings, &[class(Some("true"))], &services, &slices);
    assert_eq!(on.route("foo.com", "/"), to("a", "10.0.0.1:8080"));
}
