//! The resources this server serves: the built-in ones from
//! `api::registry` plus those CustomResourceDefinitions define, kept current
//! by a watch on CRDs.
//!
//! Custom resources are described by the same `api::registry::Resource`
//! (with `'static` strings) as built-in ones, so the REST storage handles
//! both alike. A definition is interned: the same definition maps to the
//! same entry, so CRDs that are re-read or re-applied unchanged allocate
//! nothing; only a changed definition allocates a new (small) entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use api::registry::{Resource, Subresource};
use futures::StreamExt;
use serde_json::Value;
use store::Store;

/// A served version of a custom resource, with what validation needs.
#[derive(Clone)]
pub struct CustomVersion {
    pub res: &'static Resource,
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    /// `.spec.replicas`-style paths of the scale subresource.
    pub scale: Option<Value>,
    pub storage: bool,
}

#[derive(Default)]
pub struct Registry {
    custom: RwLock<HashMap<(String, String, String), CustomVersion>>,
    interned: Mutex<Vec<&'static Resource>>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_list(items: &[String]) -> &'static [&'static str] {
    Box::leak(
        items
            .iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

const CUSTOM_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];
const SUB_VERBS: &[&str] = &["get", "patch", "update"];

impl Registry {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        api::registry::find(group, version, plural).or_else(|| {
            self.custom
                .read()
                .unwrap()
                .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
                .map(|c| c.res)
        })
    }

    pub fn custom(&self, group: &str, version: &str, plural: &str) -> Option<CustomVersion> {
        self.custom
            .read()
            .unwrap()
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// Every served resource, built-in first.
    pub fn all(&self) -> Vec<&'static Resource> {
        let mut out: Vec<&'static Resource> = api::registry::all().iter().collect();
        let custom = self.custom.read().unwrap();
        let mut extra: Vec<&'static Resource> = custom.values().map(|c| c.res).collect();
        extra.sort_by_key(|r| (r.group, r.version, r.plural));
        out.extend(extra);
        out
    }

    /// Groups with their versions, built-in groups in Kubernetes' order, then
    /// custom groups by name.
    pub fn groups(&self) -> Vec<api::registry::Group> {
        let mut groups = api::registry::groups();
        let custom = self.custom.read().unwrap();
        let mut by_group: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for c in custom.values() {
            let versions = by_group.entry(c.res.group).or_default();
            if !versions.contains(&c.res.version) {
                versions.push(c.res.version);
            }
        }
        for (name, mut versions) in by_group {
            if groups.iter().any(|g| g.name == name) {
                continue;
            }
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            let preferred = versions[0];
            groups.push(api::registry::Group {
                name,
                versions,
                preferred,
            });
        }
        groups
    }

    fn intern(&self, r: Resource) -> &'static Resource {
        let mut interned = self.interned.lock().unwrap();
        if let Some(existing) = interned.iter().find(|e| same(e, &r)) {
            return existing;
        }
        let leaked: &'static Resource = Box::leak(Box::new(r));
        interned.push(leaked);
        leaked
    }

    /// Replaces everything CRDs define with what `crds` define now.
    pub fn set_crds(&self, crds: &[Value]) {
        let mut next = HashMap::new();
        for crd in crds {
            for cv in self.versions_of(crd) {
                next.insert(
                    (
                        cv.res.group.to_owned(),
                        cv.res.version.to_owned(),
                        cv.res.plural.to_owned(),
                    ),
                    cv,
                );
            }
        }
        *self.custom.write().unwrap() = next;
    }

    fn versions_of(&self, crd: &Value) -> Vec<CustomVersion> {
        if crate::object::is_deleting(crd) && crd.pointer("/status/conditions").is_none() {
            return Vec::new();
        }
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let names = &spec["names"];
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let plural = names["plural"].as_str().unwrap_or("");
        let kind = names["kind"].as_str().unwrap_or("");
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Vec::new();
        }
        let singular = names["singular"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_lowercase());
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let mut out = Vec::new();
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"].as_bool() != Some(true) {
                continue;
            }
            let version = v["name"].as_str().unwrap_or("");
            let mut subs: Vec<Subresource> = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subs.push(Subresource {
                    name: "status",
                    group: leak(group),
                    version: leak(version),
                    kind: leak(kind),
                    verbs: SUB_VERBS,
                });
            }
            if v.pointer("/subresources/scale").is_some() {
                subs.push(Subresource {
                    name: "scale",
                    group: "autoscaling",
                    version: "v1",
                    kind: "Scale",
                    verbs: SUB_VERBS,
                });
            }
            let r = Resource {
                group: leak(group),
                version: leak(version),
                kind: leak(kind),
                plural: leak(plural),
                singular: leak(&singular),
                namespaced,
                short_names: leak_list(&strs(&names["shortNames"])),
                categories: leak_list(&strs(&names["categories"])),
                verbs: CUSTOM_VERBS,
                subresources: Box::leak(subs.into_boxed_slice()),
            };
            out.push(CustomVersion {
                res: self.intern(r),
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                scale: v.pointer("/subresources/scale").cloned(),
                storage: v["storage"].as_bool() == Some(true),
            });
        }
        out
    }

    /// Keeps the custom resources in step with the CRDs in the store.
    pub async fn follow_crds(self: Arc<Self>, store: Arc<dyn Store>) {
        let crd_res =
            api::registry::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                .expect("CRDs are registered");
        let prefix = api::registry::storage_prefix(crd_res, None);
        loop {
            let listed = match store.list(&prefix, Default::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listing CRDs");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut crds: BTreeMap<String, Value> = listed
                .items
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), serde_json::from_slice(&kv.value).ok()?)))
                .collect();
            self.set_crds(&crds.values().cloned().collect::<Vec<_>>());
            let mut watch = match store.watch(&prefix, listed.revision).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watching CRDs");
                    continue;
                }
            };
            while let Some(ev) = watch.next().await {
                let Ok(ev) = ev else { break };
                match ev.kind {
                    store::EventKind::Put => {
                        if let Ok(v) = serde_json::from_slice(&ev.kv.value) {
                            crds.insert(ev.kv.key.clone(), v);
                        }
                    }
                    store::EventKind::Delete => {
                        crds.remove(&ev.kv.key);
                    }
                }
                self.set_crds(&crds.values().cloned().collect::<Vec<_>>());
            }
        }
    }
}

fn same(a: &Resource, b: &Resource) -> bool {
    a.group == b.group
        && a.version == b.version
        && a.kind == b.kind
        && a.plural == b.plural
        && a.singular == b.singular
        && a.namespaced == b.namespaced
        && a.short_names == b.short_names
        && a.categories == b.categories
        && a.subresources.len() == b.subresources.len()
        && a.subresources
            .iter()
            .zip(b.subresources)
            .all(|(x, y)| x.name == y.name && x.kind == y.kind)
}

/// Kubernetes' version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2), ("alpha", 1)] {
        if let Some(n) = tail.strip_prefix(prefix) {
            if let Ok(minor) = n.parse::<u32>() {
                return (rank, major, minor);
            }
        }
    }
    (0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo", "v10"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn crds_become_resources_and_are_interned() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1beta1", "served": false, "storage": false}
                ]}
        });
        let reg = Registry::default();
        reg.set_crds(std::slice::from_ref(&crd));
        let r = reg.find("example.com", "v1", "widgets").unwrap();
        assert_eq!(
            (r.kind, r.namespaced, r.short_names),
            ("Widget", true, &["wd"][..])
        );
        assert_eq!(
            r.subresources.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["status"]
        );
        assert!(reg.find("example.com", "v1beta1", "widgets").is_none());
        reg.set_crds(std::slice::from_ref(&crd));
        assert!(
            std::ptr::eq(r, reg.find("example.com", "v1", "widgets").unwrap()),
            "unchanged CRDs are interned"
        );
        assert!(reg
            .groups()
            .iter()
            .any(|g| g.name == "example.com" && g.preferred == "v1"));
        reg.set_crds(&[]);
        assert!(reg.find("example.com", "v1", "widgets").is_none());
    }
}
