//! Pod and pod template defaults (SetDefaults_Pod, _PodSpec, _Container,
//! _Probe, _HTTPGetAction, _Volume and the volume sources,
//! _ObjectFieldSelector): what `kubectl get pod -o yaml` shows against
//! Kubernetes for a manifest that leaves them out.

use serde_json::{json, Value};

use super::{default, each_in, object_at};

/// A Pod: its spec; requests taken from limits where a container sets a
/// limit without a request, and on the host's network container ports as
/// host ports (pods only: templates keep what they say).
pub(super) fn pod(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    pod_spec(spec);
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    for key in ["containers", "initContainers"] {
        each_in(spec, key, |c| {
            requests_from_limits(c);
            if host_network {
                each_in(c, "ports", |p| {
                    if p.get("hostPort").is_none_or(|h| h == 0) {
                        if let Some(port) = p.get("containerPort").cloned() {
                            p["hostPort"] = port;
                        }
                    }
                });
            }
        });
    }
}

pub(super) fn template(template: &mut Value) {
    pod_spec(object_at(template, "spec"));
}

fn pod_spec(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    if let Some(sa) = spec.get("serviceAccount").cloned() {
        default(spec, "serviceAccountName", sa);
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_in(spec, key, container);
    }
    each_in(spec, "volumes", volume);
}

fn container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    default(
        c,
        "imagePullPolicy",
        json!(api::image::default_pull_policy(&image)),
    );
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    each_in(c, "ports", |p| default(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            http_get(p);
        }
    }
    if let Some(l) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get_mut(hook).filter(|h| h.is_object()) {
                http_get(h);
            }
        }
    }
    each_in(c, "env", |e| {
        if let Some(from) = e.get_mut("valueFrom") {
            field_selectors(from);
        }
    });
}

fn http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

/// ObjectFieldSelector's apiVersion; a resourceFieldRef's divisor, which
/// Kubernetes always writes out (`"0"` when unset).
fn field_selectors(src: &mut Value) {
    if let Some(f) = src.get_mut("fieldRef").filter(|f| f.is_object()) {
        default(f, "apiVersion", json!("v1"));
    }
    if let Some(r) = src.get_mut("resourceFieldRef").filter(|r| r.is_object()) {
        default(r, "divisor", json!("0"));
    }
}

/// A volume without a source is an emptyDir; the sources' modes and
/// types as Kubernetes defaults them.
fn volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    if !api::spec_validation::VOLUME_SOURCES
        .iter()
        .any(|s| m.get(*s).is_some_and(|x| !x.is_null()))
    {
        m.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(x) = v.get_mut(src).filter(|x| x.is_object()) {
            default(x, "defaultMode", json!(0o644));
        }
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        default(h, "type", json!(""));
    }
    if let Some(d) = v.get_mut("downwardAPI") {
        each_in(d, "items", field_selectors);
    }
    if let Some(p) = v.get_mut("projected") {
        each_in(p, "sources", |s| {
            if let Some(t) = s.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = s.get_mut("downwardAPI") {
                each_in(d, "items", field_selectors);
            }
        });
    }
}

/// A container's requests default to its limits, resource by resource.
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let resources = object_at(c, "resources");
    let requests = object_at(resources, "requests");
    for (k, v) in limits {
        default(requests, &k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (what a manifest says, the parts of the defaulted pod checked).
    #[test]
    fn pod_defaults() {
        let c = |extra: Value| {
            let mut c = json!({"name": "c", "image": "i:1"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let cases: Vec<(Value, &str, Value)> = vec![
            (
                json!({"containers": [c(json!({"readinessProbe": {"httpGet": {"port": 80}}}))]}),
                "/spec/containers/0/readinessProbe",
                json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                    "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
            ),
            (
                json!({"containers": [c(json!({"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2}}))]}),
                "/spec/containers/0/livenessProbe",
                json!({"exec": {"command": ["true"]}, "timeoutSeconds": 1, "periodSeconds": 2,
                    "successThreshold": 1, "failureThreshold": 3}),
            ),
            (
                json!({"containers": [c(json!({"lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}}}))]}),
                "/spec/containers/0/lifecycle/preStop/httpGet",
                json!({"port": 80, "path": "/stop", "scheme": "HTTP"}),
            ),
            (
                json!({"containers": [c(json!({"env": [
                    {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}))]}),
                "/spec/containers/0/env",
                json!([
                    {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}},
                    {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}}}]),
            ),
            (
                json!({"containers": [c(json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}))]}),
                "/spec/containers/0/resources",
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}),
            ),
            (
                json!({"hostNetwork": true, "containers": [c(json!({"ports": [{"containerPort": 8080}]}))]}),
                "/spec/containers/0/ports",
                json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]),
            ),
            (
                json!({"containers": [c(json!({}))], "volumes": [
                    {"name": "scratch"},
                    {"name": "s", "secret": {"secretName": "s"}},
                    {"name": "h", "hostPath": {"path": "/x"}},
                    {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
                "/spec/volumes",
                json!([
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "s", "secret": {"secretName": "s", "defaultMode": 420}},
                    {"name": "h", "hostPath": {"path": "/x", "type": ""}},
                    {"name": "d", "downwardAPI": {"defaultMode": 420, "items": [
                        {"path": "n", "fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}]}},
                    {"name": "p", "projected": {"defaultMode": 420, "sources": [
                        {"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}]}}]),
            ),
        ];
        for (spec, at, want) in cases {
            let mut p = json!({"spec": spec.clone()});
            pod(&mut p);
            assert_eq!(p.pointer(at), Some(&want), "{spec}");
        }
        // Templates keep limits without requests, and ports without host
        // ports.
        let mut t = json!({"spec": {"hostNetwork": true, "containers": [c(json!({
            "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}))]}});
        template(&mut t);
        assert_eq!(
            t.pointer("/spec/containers/0/resources"),
            Some(&json!({"limits": {"cpu": "1"}}))
        );
        assert_eq!(
            t.pointer("/spec/containers/0/ports"),
            Some(&json!([{"containerPort": 80, "protocol": "TCP"}]))
        );
    }
}
