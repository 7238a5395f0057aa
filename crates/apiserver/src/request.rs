//! What a request path names, as Kubernetes' RequestInfo reads it:
//! `/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}` and
//! `/apis/{group}/{version}/...`.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a resource path; `None` for paths that name no resource (e.g.
/// `/api`, `/apis/apps`, `/version`): those are served elsewhere.
pub fn parse(path: &str) -> Option<RequestInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut info = RequestInfo {
        group: group.to_owned(),
        version: version.to_owned(),
        ..Default::default()
    };
    let rest = match rest {
        // /namespaces/{ns}/{resource}... — but /namespaces/{name} and
        // /namespaces/{name}/{subresource} are the namespace object itself.
        ["namespaces", ns, resource, tail @ ..]
            if !(group.is_empty() && is_namespace_sub(resource, tail)) =>
        {
            info.namespace = Some((*ns).to_owned());
            let mut v = vec![*resource];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [resource] => info.resource = (*resource).to_owned(),
        [resource, name] => {
            info.resource = (*resource).to_owned();
            info.name = Some((*name).to_owned());
        }
        [resource, name, sub, ..] => {
            info.resource = (*resource).to_owned();
            info.name = Some((*name).to_owned());
            info.subresource = Some((*sub).to_owned());
        }
        _ => return None,
    }
    Some(info)
}

/// `/api/v1/namespaces/{name}/status` and `/finalize` address the
/// namespace, not a resource inside it.
fn is_namespace_sub(segment: &str, tail: &[&str]) -> bool {
    tail.is_empty() && matches!(segment, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        g: &str,
        v: &str,
        ns: Option<&str>,
        r: &str,
        n: Option<&str>,
        s: Option<&str>,
    ) -> Option<RequestInfo> {
        Some(RequestInfo {
            group: g.into(),
            version: v.into(),
            namespace: ns.map(Into::into),
            resource: r.into(),
            name: n.map(Into::into),
            subresource: s.map(Into::into),
        })
    }

    #[test]
    fn paths() {
        let cases = [
            ("/api/v1/pods", info("", "v1", None, "pods", None, None)),
            (
                "/api/v1/namespaces",
                info("", "v1", None, "namespaces", None, None),
            ),
            (
                "/api/v1/namespaces/default",
                info("", "v1", None, "namespaces", Some("default"), None),
            ),
            (
                "/api/v1/namespaces/kube-system/status",
                info(
                    "",
                    "v1",
                    None,
                    "namespaces",
                    Some("kube-system"),
                    Some("status"),
                ),
            ),
            (
                "/api/v1/namespaces/ns1/finalize",
                info("", "v1", None, "namespaces", Some("ns1"), Some("finalize")),
            ),
            (
                "/api/v1/namespaces/default/pods",
                info("", "v1", Some("default"), "pods", None, None),
            ),
            (
                "/api/v1/namespaces/default/pods/web",
                info("", "v1", Some("default"), "pods", Some("web"), None),
            ),
            (
                "/api/v1/namespaces/default/pods/web/log",
                info("", "v1", Some("default"), "pods", Some("web"), Some("log")),
            ),
            (
                "/api/v1/nodes/n1/status",
                info("", "v1", None, "nodes", Some("n1"), Some("status")),
            ),
            (
                "/apis/apps/v1/deployments",
                info("apps", "v1", None, "deployments", None, None),
            ),
            (
                "/apis/apps/v1/namespaces/a/deployments/web/scale",
                info(
                    "apps",
                    "v1",
                    Some("a"),
                    "deployments",
                    Some("web"),
                    Some("scale"),
                ),
            ),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
                info(
                    "rbac.authorization.k8s.io",
                    "v1",
                    None,
                    "clusterroles",
                    Some("admin"),
                    None,
                ),
            ),
            (
                "/apis/example.com/v1/namespaces/status/widgets",
                info("example.com", "v1", Some("status"), "widgets", None, None),
            ),
            (
                "/api/v1/namespaces/x/services/web:http/proxy/a/b",
                info(
                    "",
                    "v1",
                    Some("x"),
                    "services",
                    Some("web:http"),
                    Some("proxy"),
                ),
            ),
            ("/api", None),
            ("/api/v1", None),
            ("/apis/apps", None),
            ("/apis/apps/v1", None),
            ("/version", None),
            ("/api/v1//pods", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
