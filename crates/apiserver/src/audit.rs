//! Auditing, as kube-apiserver does it with `--audit-policy-file` and
//! `--audit-log-path`: an `audit.k8s.io/v1` Policy picks a level per
//! request (the first rule that matches: users, groups, verbs, resources
//! with subresources and names, namespaces, non-resource URLs; no match:
//! `None`), and each audited request writes `audit.k8s.io/v1` Events, one
//! JSON object per line: `RequestReceived` when it comes in and
//! `ResponseComplete` (long-running requests — watches, streams, proxies —
//! `ResponseStarted`) when the answer goes out, with the request body at
//! level `Request` and the response body too at `RequestResponse`, unless
//! the policy omits those stages. The log file rotates by size, keeping
//! a number of backups for an age (`rotate`); events also go, batched, to
//! a webhook (`webhook`). A request whose handler panicked ends with a
//! `Panic` stage. Not done: the webhook's blocking modes.

mod rotate;
pub mod webhook;

use std::io::Write;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::User;
pub use rotate::Rotation;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    #[default]
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// What a request is, for matching.
#[derive(Clone, Debug, Default)]
pub struct Attrs<'a> {
    pub verb: &'a str,
    pub path: &'a str,
    /// None for non-resource requests.
    pub resource: Option<ResourceAttrs<'a>>,
}

#[derive(Clone, Debug, Default)]
pub struct ResourceAttrs<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// What the policy decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<String>,
    pub omit_managed_fields: bool,
}

fn any_or(list: &[String], f: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|s| f(s))
}

fn resource_matches(gr: &GroupResources, r: &ResourceAttrs) -> bool {
    if gr.group != r.group {
        return false;
    }
    if !gr.resource_names.is_empty() && !gr.resource_names.iter().any(|n| n == r.name) {
        return false;
    }
    if gr.resources.is_empty() {
        return true;
    }
    let combined = if r.subresource.is_empty() {
        r.resource.to_owned()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    gr.resources.iter().any(|want| {
        want == "*"
            || *want == combined
            || (want.ends_with("/*") && want.trim_end_matches("/*") == r.resource)
            || (want.starts_with("*/") && !r.subresource.is_empty() && &want[2..] == r.subresource)
    })
}

impl Rule {
    fn matches(&self, user: &User, a: &Attrs) -> bool {
        if !any_or(&self.verbs, |v| v == a.verb)
            || !any_or(&self.users, |u| u == user.name)
            || !any_or(&self.user_groups, |g| user.groups.iter().any(|ug| ug == g))
        {
            return false;
        }
        match &a.resource {
            Some(r) => {
                self.non_resource_urls.is_empty()
                    && any_or(&self.namespaces, |n| n == r.namespace)
                    && (self.resources.is_empty()
                        || self.resources.iter().any(|gr| resource_matches(gr, r)))
            }
            None => {
                self.resources.is_empty()
                    && self.namespaces.is_empty()
                    && any_or(&self.non_resource_urls, |u| match u.strip_suffix('*') {
                        Some(prefix) => a.path.starts_with(prefix),
                        None => u == a.path,
                    })
            }
        }
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        match (
            v.get("apiVersion").and_then(Value::as_str),
            v.get("kind").and_then(Value::as_str),
        ) {
            (Some("audit.k8s.io/v1"), Some("Policy")) => {}
            (a, k) => {
                return Err(format!(
                    "not an audit.k8s.io/v1 Policy (apiVersion {a:?}, kind {k:?})"
                ))
            }
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// The level and stages for a request: the first matching rule's.
    pub fn decide(&self, user: &User, a: &Attrs) -> Decision {
        match self.rules.iter().find(|r| r.matches(user, a)) {
            Some(r) => {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().cloned());
                Decision {
                    level: r.level,
                    omit_stages: omit,
                    omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                }
            }
            None => Decision {
                level: Level::None,
                omit_stages: Vec::new(),
                omit_managed_fields: false,
            },
        }
    }
}

/// The policy and where events go.
pub struct Auditor {
    policy: Policy,
    out: Option<Mutex<Box<dyn Write + Send>>>,
    webhook: Option<webhook::Webhook>,
}

/// One request's event, built at the start and completed at the end.
pub struct Event {
    decision: Decision,
    body: Value,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Auditor {
    /// Reads the policy file, opens the log (`-`: standard output; else
    /// appended to, rotating as `rotation` says) and starts the webhook
    /// sender (in a Tokio runtime).
    pub fn open(
        policy_file: &std::path::Path,
        log: Option<(&str, Rotation)>,
        hook: Option<(webhook::Target, webhook::Batching)>,
    ) -> Result<Auditor, String> {
        let text = std::fs::read_to_string(policy_file)
            .map_err(|e| format!("{}: {e}", policy_file.display()))?;
        let policy = Policy::parse(&text).map_err(|e| format!("{}: {e}", policy_file.display()))?;
        let out = match log {
            None => None,
            Some(("-", _)) => Some(Box::new(std::io::stdout()) as Box<dyn Write + Send>),
            Some((path, rotation)) => {
                let f = rotate::RotatingFile::open(std::path::Path::new(path), rotation)
                    .map_err(|e| format!("{path}: {e}"))?;
                Some(Box::new(f) as Box<dyn Write + Send>)
            }
        };
        Ok(Auditor {
            policy,
            out: out.map(Mutex::new),
            webhook: hook.map(|(target, batching)| webhook::Webhook::start(target, batching)),
        })
    }

    /// Starts the event of a request (and writes its RequestReceived
    /// stage); None when the policy says `None`.
    pub fn begin(
        &self,
        user: &User,
        a: &Attrs,
        request_uri: &str,
        source_ip: Option<String>,
        user_agent: Option<&str>,
    ) -> Option<Event> {
        let decision = self.policy.decide(user, a);
        if decision.level == Level::None {
            return None;
        }
        let mut body = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": format!("{:?}", decision.level),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "requestURI": request_uri,
            "verb": a.verb,
            "user": {"username": user.name, "groups": user.groups},
            "sourceIPs": source_ip.into_iter().collect::<Vec<_>>(),
            "requestReceivedTimestamp": now(),
        });
        if let Some(ua) = user_agent {
            body["userAgent"] = json!(ua);
        }
        if let Some(r) = &a.resource {
            let mut obj = json!({"resource": r.resource});
            for (k, v) in [
                ("namespace", r.namespace),
                ("name", r.name),
                ("apiGroup", r.group),
                ("subresource", r.subresource),
            ] {
                if !v.is_empty() {
                    obj[k] = json!(v);
                }
            }
            body["objectRef"] = obj;
        }
        let ev = Event { decision, body };
        self.write(&ev, "RequestReceived");
        Some(ev)
    }

    /// Whether the request body belongs in the event.
    pub fn wants_request(ev: &Event) -> bool {
        ev.decision.level >= Level::Request
    }

    /// Whether the response body belongs in the event.
    pub fn wants_response(ev: &Event) -> bool {
        ev.decision.level >= Level::RequestResponse
    }

    /// Writes the final stage: `code` and `status` (the Status of a
    /// failure), the request and response objects where the level has
    /// them.
    pub fn finish(
        &self,
        mut ev: Event,
        long_running: bool,
        code: u16,
        request: Option<&[u8]>,
        response: Option<&[u8]>,
    ) {
        let parse = |b: &[u8]| -> Option<Value> {
            let mut v: Value = serde_json::from_slice(b).ok()?;
            if ev.decision.omit_managed_fields {
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("managedFields");
                }
            }
            Some(v)
        };
        let mut status = json!({"metadata": {}, "code": code});
        if let Some(resp) = response.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
            if resp.get("kind") == Some(&json!("Status")) {
                for k in ["status", "message", "reason"] {
                    if let Some(v) = resp.get(k) {
                        status[k] = v.clone();
                    }
                }
            }
        }
        ev.body["responseStatus"] = status;
        if Self::wants_request(&ev) {
            if let Some(v) = request.filter(|b| !b.is_empty()).and_then(parse) {
                // As kube-apiserver does, what the URL does not say about
                // the object (a create's name) comes from its body.
                if let Some(r) = ev.body.get_mut("objectRef").and_then(Value::as_object_mut) {
                    for k in ["namespace", "name", "uid", "resourceVersion"] {
                        let given = v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str);
                        if let Some(given) = given.filter(|g| !g.is_empty()) {
                            r.entry(k).or_insert_with(|| json!(given));
                        }
                    }
                }
                ev.body["requestObject"] = v;
            }
        }
        if Self::wants_response(&ev) {
            if let Some(v) = response.and_then(parse) {
                ev.body["responseObject"] = v;
            }
        }
        let stage = if long_running {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        self.write(&ev, stage);
    }

    /// Writes the `Panic` stage of a request whose handler panicked.
    pub fn panicked(&self, mut ev: Event, message: &str) {
        ev.body["responseStatus"] = json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("APIServer panic'd: {message}"),
            "code": 500,
        });
        self.write(&ev, "Panic");
    }

    fn write(&self, ev: &Event, stage: &str) {
        if ev.decision.omit_stages.iter().any(|s| s == stage) {
            return;
        }
        let mut body = ev.body.clone();
        body["stage"] = json!(stage);
        body["stageTimestamp"] = json!(now());
        if stage == "RequestReceived" {
            if let Some(m) = body.as_object_mut() {
                m.remove("responseStatus");
            }
        }
        if let Some(out) = &self.out {
            let mut line = body.to_string();
            line.push('\n');
            let mut out = out.lock().unwrap();
            if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
                tracing::warn!(error = %e, "writing the audit log");
            }
        }
        if let Some(hook) = &self.webhook {
            hook.send(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-scheduler"]
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps/status"]
- level: RequestResponse
  verbs: [create, update, patch, delete]
  namespaces: [prod]
  resources:
  - group: apps
    resources: ["deployments", "deployments/*"]
- level: Request
  resources:
  - group: ""
    resources: ["pods"]
    resourceNames: ["special"]
- level: Metadata
  omitStages: [ResponseStarted]
"#;

    fn res<'a>(
        g: &'a str,
        r: &'a str,
        sub: &'a str,
        ns: &'a str,
        name: &'a str,
    ) -> Option<ResourceAttrs<'a>> {
        Some(ResourceAttrs {
            group: g,
            resource: r,
            subresource: sub,
            namespace: ns,
            name,
        })
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = Policy::parse(POLICY).unwrap();
        let admin = User::new("admin", &["system:masters"]);
        let sched = User::new("system:kube-scheduler", &[]);
        let cases: Vec<(&User, &str, &str, Option<ResourceAttrs>, Level)> = vec![
            (
                &sched,
                "create",
                "",
                res("", "pods", "binding", "d", "p"),
                Level::None,
            ),
            (&admin, "get", "/healthz/ping", None, Level::None),
            (&admin, "get", "/version", None, Level::None),
            (&admin, "get", "/apis", None, Level::Metadata),
            (
                &admin,
                "get",
                "",
                res("", "secrets", "", "d", "s"),
                Level::Metadata,
            ),
            (
                &admin,
                "update",
                "",
                res("", "configmaps", "status", "d", "c"),
                Level::Metadata,
            ),
            (
                &admin,
                "patch",
                "",
                res("apps", "deployments", "scale", "prod", "web"),
                Level::RequestResponse,
            ),
            (
                &admin,
                "create",
                "",
                res("apps", "deployments", "", "prod", "web"),
                Level::RequestResponse,
            ),
            (
                &admin,
                "create",
                "",
                res("apps", "deployments", "", "dev", "web"),
                Level::Metadata,
            ),
            (
                &admin,
                "get",
                "",
                res("apps", "deployments", "", "prod", "web"),
                Level::Metadata,
            ),
            (
                &admin,
                "get",
                "",
                res("", "pods", "", "d", "special"),
                Level::Request,
            ),
            (
                &admin,
                "get",
                "",
                res("", "pods", "", "d", "other"),
                Level::Metadata,
            ),
        ];
        for (user, verb, path, resource, want) in cases {
            let what = format!("{verb} {path} {resource:?}");
            let a = Attrs {
                verb,
                path,
                resource,
            };
            assert_eq!(p.decide(user, &a).level, want, "{what}");
        }
        let d = p.decide(
            &admin,
            &Attrs {
                verb: "get",
                path: "/apis",
                resource: None,
            },
        );
        assert_eq!(d.omit_stages, ["RequestReceived", "ResponseStarted"]);
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            "apiVersion: v1\nkind: ConfigMap\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
            "not: [yaml",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_panicked_request_ends_with_a_panic_stage() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )
        .unwrap();
        let log = dir.path().join("audit.log");
        let auditor = Auditor::open(
            &policy,
            Some((log.to_str().unwrap(), Rotation::default())),
            None,
        )
        .unwrap();
        let admin = User::new("admin", &["system:masters"]);
        let ev = auditor
            .begin(
                &admin,
                &Attrs {
                    verb: "get",
                    path: "",
                    resource: res("", "pods", "", "d", "p"),
                },
                "/api/v1/namespaces/d/pods/p",
                None,
                None,
            )
            .unwrap();
        auditor.panicked(ev, "boom");
        let text = std::fs::read_to_string(&log).unwrap();
        let ev: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(ev["stage"], "Panic", "{ev}");
        assert_eq!(
            ev["responseStatus"],
            json!({"metadata": {}, "status": "Failure", "message": "APIServer panic'd: boom", "code": 500})
        );
        assert_eq!(ev["objectRef"]["name"], "p");
    }
}
