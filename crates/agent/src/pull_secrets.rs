//! Registry credentials from a pod's `imagePullSecrets`, as the kubelet's
//! credential keyring reads them: Secrets of type
//! `kubernetes.io/dockerconfigjson` (`{"auths": {REGISTRY: ENTRY}}`) or the
//! legacy `kubernetes.io/dockercfg` (`{REGISTRY: ENTRY}`), where ENTRY has
//! `username`/`password` and/or `auth` (base64 of `user:password`).
//!
//! A REGISTRY key matches an image when its host (with `*` globbing one
//! label each, port exact) is the image's registry and its path, if any, is
//! a prefix of the image's repository; `https://index.docker.io/v1/` and
//! friends stand for Docker Hub. The credentials that match are tried in
//! order (most specific key first); with none, the image is pulled
//! anonymously.

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

pub use crate::cri::Auth;

const DOCKER_HUB: &str = "docker.io";

/// The registry host (with port) and repository path of an image
/// reference, Docker's normalisation: `busybox` is
/// `docker.io` + `library/busybox`.
pub fn registry_of(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (first, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_ascii_lowercase(), rest.to_owned())
        }
        _ if !name.contains('/') => (DOCKER_HUB.to_owned(), format!("library/{name}")),
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    // The tag belongs to the last path element only.
    let repo = match rest.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r.to_owned(),
        _ => rest,
    };
    (canonical_host(&first), repo)
}

fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        h => h.to_owned(),
    }
}

/// A registry key as host (lowercase, canonical) and path prefix.
fn parse_key(key: &str) -> (String, String) {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let path = path.trim_matches('/');
    // Docker's API version suffixes are not part of the repository.
    let path = match path {
        "v1" | "v2" => "",
        p => p,
    };
    (canonical_host(&host.to_ascii_lowercase()), path.to_owned())
}

/// Whether `pattern` (labels, `*` matching one label) matches `host`;
/// ports must be equal.
fn host_matches(pattern: &str, host: &str) -> bool {
    let split = |h: &str| -> (String, Option<String>) {
        match h.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                (name.to_owned(), Some(port.to_owned()))
            }
            _ => (h.to_owned(), None),
        }
    };
    let ((pname, pport), (hname, hport)) = (split(pattern), split(host));
    if pport != hport {
        return false;
    }
    let (pl, hl): (Vec<&str>, Vec<&str>) = (pname.split('.').collect(), hname.split('.').collect());
    pl.len() == hl.len()
        && pl
            .iter()
            .zip(&hl)
            .all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

/// Whether registry key `key` covers `image`.
pub fn key_matches(key: &str, image: &str) -> bool {
    let (khost, kpath) = parse_key(key);
    let (ihost, irepo) = registry_of(image);
    if !host_matches(&khost, &ihost) {
        return false;
    }
    kpath.is_empty() || irepo == kpath || irepo.starts_with(&format!("{kpath}/"))
}

fn entry_auth(key: &str, entry: &serde_json::Value) -> Option<Auth> {
    let s = |f: &str| {
        entry
            .get(f)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut a = Auth {
        username: s("username"),
        password: s("password"),
        auth: s("auth"),
        registry: key.to_owned(),
    };
    if a.username.is_empty() && !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        a.username = u.to_owned();
        a.password = p.to_owned();
    }
    (!a.username.is_empty() || !a.password.is_empty()).then_some(a)
}

/// The credentials a pull secret holds, by registry key; a secret of
/// another type, or that does not parse, holds none.
pub fn from_secret(secret: &Secret) -> Vec<Auth> {
    let data = |k: &str| -> Option<serde_json::Value> {
        let bytes = secret.data.as_ref()?.get(k)?;
        serde_json::from_slice(&bytes.0).ok()
    };
    let entries = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => {
            data(".dockerconfigjson").and_then(|v| v.get("auths").cloned())
        }
        Some("kubernetes.io/dockercfg") => data(".dockercfg"),
        _ => None,
    };
    let Some(serde_json::Value::Object(entries)) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(key, entry)| entry_auth(key, entry))
        .collect()
}

/// The credentials among `all` that apply to `image`, the most specific
/// key (longest path, then fewest wildcards) first.
pub fn for_image(all: &[Auth], image: &str) -> Vec<Auth> {
    let mut found: Vec<&Auth> = all
        .iter()
        .filter(|a| key_matches(&a.registry, image))
        .collect();
    found.sort_by_key(|a| {
        let (host, path) = parse_key(&a.registry);
        (std::cmp::Reverse(path.len()), host.matches('*').count())
    });
    found.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn image_registries() {
        let cases = [
            ("busybox", "docker.io", "library/busybox"),
            ("busybox:1.36", "docker.io", "library/busybox"),
            ("library/busybox@sha256:abc", "docker.io", "library/busybox"),
            ("me/app:v1", "docker.io", "me/app"),
            ("index.docker.io/me/app", "docker.io", "me/app"),
            ("127.0.0.1:5000/busybox:pull", "127.0.0.1:5000", "busybox"),
            ("localhost/team/app", "localhost", "team/app"),
            (
                "Registry.Example.com/a/b/c:tag",
                "registry.example.com",
                "a/b/c",
            ),
        ];
        for (image, host, repo) in cases {
            assert_eq!(
                registry_of(image),
                (host.to_owned(), repo.to_owned()),
                "{image}"
            );
        }
    }

    #[test]
    fn keys_match_images() {
        let cases = [
            ("127.0.0.1:5000", "127.0.0.1:5000/busybox", true),
            ("http://127.0.0.1:5000", "127.0.0.1:5000/busybox:x", true),
            ("127.0.0.1:5000", "127.0.0.1:5001/busybox", false),
            ("127.0.0.1", "127.0.0.1:5000/busybox", false),
            ("https://index.docker.io/v1/", "busybox", true),
            ("docker.io", "me/app", true),
            ("registry-1.docker.io", "me/app", true),
            ("docker.io", "quay.io/me/app", false),
            ("*.example.com", "reg.example.com/app", true),
            ("*.example.com", "a.reg.example.com/app", false),
            ("reg.example.com/team", "reg.example.com/team/app", true),
            ("reg.example.com/team", "reg.example.com/teamx/app", false),
            (
                "reg.example.com/team/app",
                "reg.example.com/team/app:1",
                true,
            ),
        ];
        for (key, image, want) in cases {
            assert_eq!(key_matches(key, image), want, "{key} vs {image}");
        }
    }

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(type_.to_owned()),
            data: Some([(key.to_owned(), ByteString(json.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn secrets_and_order() {
        // `auth` alone is decoded; explicit fields win.
        let s = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths": {"127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"},
                          "127.0.0.1:5000/team": {"username": "bob", "password": "pw"},
                          "empty.example.com": {}}}"#,
        );
        let all = from_secret(&s);
        assert_eq!(all.len(), 2, "{all:?}");
        let got = for_image(&all, "127.0.0.1:5000/team/app:1");
        let users: Vec<&str> = got.iter().map(|a| a.username.as_str()).collect();
        assert_eq!(users, ["bob", "alice"], "most specific first");
        assert_eq!(got[1].password, "s3cret");
        assert_eq!(for_image(&all, "127.0.0.1:5000/other").len(), 1);
        assert!(for_image(&all, "busybox").is_empty());

        let legacy = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"https://index.docker.io/v1/": {"username": "u", "password": "p", "email": "e"}}"#,
        );
        assert_eq!(for_image(&from_secret(&legacy), "busybox").len(), 1);
        // Other types, bad JSON, bad base64: nothing.
        for bad in [
            secret(
                "Opaque",
                ".dockerconfigjson",
                r#"{"auths": {"a": {"auth": "dTpw"}}}"#,
            ),
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                "{not json",
            ),
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                r#"{"auths": {"a": {"auth": "!!"}}}"#,
            ),
        ] {
            assert!(from_secret(&bad).is_empty(), "{bad:?}");
        }
    }
}
