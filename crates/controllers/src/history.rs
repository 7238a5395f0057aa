//! ControllerRevisions, as Kubernetes' StatefulSet and DaemonSet
//! controllers keep them (pkg/controller/history): each revision stores the
//! patch that restores its template (`{"spec":{"template":{...,
//! "$patch":"replace"}}}`, what `kubectl rollout undo` applies), carries the
//! template's labels (so the owner's selector finds it) plus a hash label,
//! is named `{owner}-{hash}` and numbered; a template equal to an older
//! revision renumbers that revision instead of making a new one.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Map, Value};

/// The label holding a ControllerRevision's hash (StatefulSets).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The pod label naming the revision a pod was made from.
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// Kubernetes' rand.SafeEncodeString: each byte mapped onto letters and
/// digits that cannot spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// 32-bit FNV-1 (Go's fnv.New32), what HashControllerRevision uses.
pub fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for part in parts {
        for &b in *part {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(b);
        }
    }
    h
}

/// 32-bit FNV-1a (Go's fnv.New32a), what ComputeHash (DaemonSet) uses.
pub fn fnv1a_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for part in parts {
        for &b in *part {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Compact JSON with sorted keys (as Go marshals maps), so equal values
/// always give the same bytes and hashes.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // serde_json without preserve_order already sorts; sorting again
    // costs little and keeps this true whatever features are on.
    serde_json::to_vec(&sort(v)).unwrap_or_default()
}

/// HashControllerRevision: FNV-1 over the data and the collision count.
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let raw = canonical_json(data);
    let probe = collision_count.map(|c| c.to_string());
    let mut parts: Vec<&[u8]> = vec![&raw];
    if let Some(p) = &probe {
        parts.push(p.as_bytes());
    }
    safe_encode(&fnv1_32(&parts).to_string())
}

/// ComputeHash (used for DaemonSets): FNV-1a over the template and the
/// collision count.
pub fn hash_template(template: &Value, collision_count: Option<i32>) -> String {
    let raw = canonical_json(template);
    let probe = collision_count.map(|c| c.to_string());
    let mut parts: Vec<&[u8]> = vec![&raw];
    if let Some(p) = &probe {
        parts.push(p.as_bytes());
    }
    safe_encode(&fnv1a_32(&parts).to_string())
}

/// ControllerRevisionName: `{prefix}-{hash}` with the prefix cut to 223.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix: String = prefix.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The patch a revision stores: the owner's template, replacing.
/// `owner` is the owner object as JSON.
pub fn template_patch(owner: &Value) -> Value {
    let mut template = owner
        .pointer("/spec/template")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    template["$patch"] = json!("replace");
    json!({ "spec": { "template": template } })
}

/// The template a revision restores (its patch without `$patch`).
pub fn template_of(rev: &ControllerRevision) -> Option<Value> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    Some(t)
}

/// Whether a revision holds `patch` (compared as JSON values, so key
/// order and formatting do not matter).
pub fn data_equals(rev: &ControllerRevision, patch: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == patch)
}

/// The revisions controlled by the owner with `uid` in `namespace`,
/// oldest first (revision, then creation, then name).
pub fn owned(
    all: &[Arc<ControllerRevision>],
    namespace: &str,
    uid: &str,
) -> Vec<Arc<ControllerRevision>> {
    let mut revs: Vec<Arc<ControllerRevision>> = all
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
        .filter(|r| crate::podutil::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .cloned()
        .collect();
    sort(&mut revs);
    revs
}

pub fn sort(revs: &mut [Arc<ControllerRevision>]) {
    revs.sort_by(|a, b| {
        let key = |r: &ControllerRevision| {
            (
                r.revision,
                r.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                r.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// The number the next revision gets.
pub fn next_revision(revs: &[Arc<ControllerRevision>]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// What to do to make the owner's current template a revision.
#[derive(Debug, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds it.
    Latest(String),
    /// An older revision holds it: give it this number (a rollback).
    Renumber(String, i64),
    /// No revision holds it: create one with this number.
    Create(i64),
}

/// Kubernetes' getStatefulSetRevisions decision.
pub fn find_update_revision(revs: &[Arc<ControllerRevision>], patch: &Value) -> UpdateRevision {
    let next = next_revision(revs);
    let equal: Vec<&Arc<ControllerRevision>> =
        revs.iter().filter(|r| data_equals(r, patch)).collect();
    match (equal.last(), revs.last()) {
        (Some(e), Some(last)) if e.metadata.name == last.metadata.name => {
            UpdateRevision::Latest(e.metadata.name.clone().unwrap_or_default())
        }
        (Some(e), _) => UpdateRevision::Renumber(e.metadata.name.clone().unwrap_or_default(), next),
        (None, _) => UpdateRevision::Create(next),
    }
}

/// A new revision (without its name; see [`revision_name`]).
pub fn new_revision(
    owner_meta: &ObjectMeta,
    owner_ref: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    template_labels: Option<std::collections::BTreeMap<String, String>>,
    patch: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            namespace: owner_meta.namespace.clone(),
            labels: Some(template_labels.unwrap_or_default()),
            annotations: owner_meta.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(patch)),
        revision,
    }
}

/// Revisions to delete to keep at most `limit` that are not `live`,
/// oldest first.
pub fn to_truncate(
    revs: &[Arc<ControllerRevision>],
    live: &std::collections::BTreeSet<String>,
    limit: i32,
) -> Vec<String> {
    let history: Vec<String> = revs
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .filter(|n| !live.contains(n))
        .collect();
    let limit = limit.max(0) as usize;
    if history.len() <= limit {
        return vec![];
    }
    history[..history.len() - limit].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

    fn rev(name: &str, revision: i64, image: &str) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(patch(image))),
            revision,
        })
    }

    fn patch(image: &str) -> Value {
        template_patch(
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
        )
    }

    #[test]
    fn hashes_and_names() {
        // Go: fnv.New32() of "" is the offset basis; of "a" is 0x050c5d7e.
        assert_eq!(fnv1_32(&[b""]), 0x811c9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c5d7e);
        assert_eq!(fnv1a_32(&[b"a"]), 0xe40c292c);
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let a = hash_revision(&patch("a"), None);
        assert_eq!(a, hash_revision(&patch("a"), None));
        assert_ne!(a, hash_revision(&patch("a"), Some(1)));
        assert_ne!(a, hash_revision(&patch("b"), None));
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
        let p = patch("a");
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": 2, "c": 3}})),
            br#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    #[test]
    fn update_revision_decisions() {
        let cases: Vec<(&str, Vec<Arc<ControllerRevision>>, &str, UpdateRevision)> = vec![
            ("no history", vec![], "a", UpdateRevision::Create(1)),
            (
                "unchanged",
                vec![rev("r1", 1, "a")],
                "a",
                UpdateRevision::Latest("r1".into()),
            ),
            (
                "changed",
                vec![rev("r1", 1, "a")],
                "b",
                UpdateRevision::Create(2),
            ),
            (
                "rolled back",
                vec![rev("r1", 1, "a"), rev("r2", 2, "b")],
                "a",
                UpdateRevision::Renumber("r1".into(), 3),
            ),
        ];
        for (name, revs, image, want) in cases {
            assert_eq!(find_update_revision(&revs, &patch(image)), want, "{name}");
        }
        let revs = vec![
            rev("r1", 1, "a"),
            rev("r2", 2, "b"),
            rev("r3", 3, "c"),
            rev("r4", 4, "d"),
        ];
        let live = ["r4".to_string(), "r2".to_string()].into();
        assert_eq!(to_truncate(&revs, &live, 1), vec!["r1".to_string()]);
        assert_eq!(
            to_truncate(&revs, &live, 0),
            vec!["r1".to_string(), "r3".to_string()]
        );
        assert!(to_truncate(&revs, &live, 10).is_empty());
        assert_eq!(
            template_of(&revs[0]).unwrap()["spec"]["containers"][0]["image"],
            "a"
        );
    }
}
