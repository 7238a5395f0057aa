use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use super::{host_matches, load_pem, CertTable, Certs, KeyCache, TLS_SECRET_TYPE};

#[test]
fn host_patterns() {
    let cases: &[(&str, &str, bool)] = &[
        ("foo.com", "foo.com", true),
        ("foo.com", "FOO.com", true),
        ("foo.com", "foo.com.", true),
        ("Foo.COM", "foo.com", true),
        ("foo.com", "www.foo.com", false),
        ("*.foo.com", "www.foo.com", true),
        ("*.foo.com", "WWW.Foo.com", true),
        // Exactly one label.
        ("*.foo.com", "foo.com", false),
        ("*.foo.com", "a.b.foo.com", false),
        ("*.foo.com", ".foo.com", false),
        ("*.foo.com", "www.foo.co", false),
        ("*.foo.com", "www.xfoo.com", false),
        ("foo.com", "", false),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(host_matches(pattern, name), *want, "{pattern} ~ {name}");
    }
}

/// A self-signed certificate for `names` (PEM cert, PEM key).
fn cert(cn: &str, names: &[&str]) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn secret(name: &str, ty: &str, crt: Option<&str>, key: Option<&str>) -> Secret {
    let mut data = std::collections::BTreeMap::new();
    if let Some(c) = crt {
        data.insert("tls.crt".to_string(), ByteString(c.as_bytes().to_vec()));
    }
    if let Some(k) = key {
        data.insert("tls.key".to_string(), ByteString(k.as_bytes().to_vec()));
    }
    Secret {
        metadata: kube::api::ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(ty.into()),
        data: Some(data),
        ..Default::default()
    }
}

fn tls_secret(name: &str, pem: &(String, String)) -> Secret {
    secret(name, TLS_SECRET_TYPE, Some(&pem.0), Some(&pem.1))
}

fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name, "creationTimestamp": created},
        "spec": spec,
    }))
    .unwrap()
}

fn rule(host: &str) -> Value {
    json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}})
}

#[test]
fn load_pem_checks_certificate_and_key() {
    let a = cert("a", &["a.test", "*.wild.test"]);
    let b = cert("b", &["b.test"]);
    let loaded = load_pem(a.0.as_bytes(), a.1.as_bytes()).unwrap();
    assert_eq!(loaded.dns_names, vec!["a.test", "*.wild.test"]);
    let cases: &[(&str, &str, &str)] = &[
        ("", &a.1, "no PEM certificate"),
        ("garbage", &a.1, "no PEM certificate"),
        (&a.0, "", "no PEM private key"),
        // A key that is not the certificate's.
        (&a.0, &b.1, "tls.crt/tls.key"),
        // A PEM block that is not a certificate.
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &a.1,
            "tls.crt",
        ),
    ];
    for (crt, key, want) in cases {
        let err = load_pem(crt.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(err.contains(want), "{crt:?}: {err}");
    }
}

#[test]
fn table_from_ingresses_and_secrets() {
    let one = cert("one", &["one.test"]);
    let two = cert("two", &["two.test"]);
    let wild = cert("wild", &["*.wild.test"]);
    let sans = cert("sans", &["san.test", "*.sanwild.test"]);
    let later = cert("later", &["one.test"]);
    let secrets = vec![
        tls_secret("one", &one),
        tls_secret("two", &two),
        tls_secret("wild", &wild),
        tls_secret("sans", &sans),
        tls_secret("later", &later),
        secret("opaque", "Opaque", Some(&one.0), Some(&one.1)),
        secret("nokey", TLS_SECRET_TYPE, Some(&one.0), None),
        secret("mismatch", TLS_SECRET_TYPE, Some(&one.0), Some(&two.1)),
    ];
    let ings = vec![
        ingress(
            "web",
            "2024-01-01T00:00:00Z",
            json!({"ingressClassName": "rkube",
                "tls": [
                    {"hosts": ["one.test", "ONE-alias.test"], "secretName": "one"},
                    {"hosts": ["two.test"], "secretName": "two"},
                    {"hosts": ["*.wild.test"], "secretName": "wild"},
                    {"hosts": ["gone.test"], "secretName": "missing"},
                    {"hosts": ["opaque.test"], "secretName": "opaque"},
                    {"hosts": ["nokey.test"], "secretName": "nokey"},
                    {"hosts": ["mismatch.test"], "secretName": "mismatch"},
                    {"hosts": ["nosecret.test"]},
                    // No hosts: covers the rule hosts its certificate names.
                    {"secretName": "sans"},
                ],
                "rules": [rule("one.test"), rule("san.test"), rule("x.sanwild.test"),
                          rule("other.test"), rule("nosecret.test")]}),
        ),
        // Younger: its claim on one.test loses; its own host is served;
        // a broken entry for two.test there does not matter.
        ingress(
            "young",
            "2025-01-01T00:00:00Z",
            json!({"ingressClassName": "rkube",
                "tls": [{"hosts": ["one.test", "later.test"], "secretName": "later"},
                        {"hosts": ["two.test"], "secretName": "missing"}]}),
        ),
        // Not ours.
        ingress(
            "nginx",
            "2020-01-01T00:00:00Z",
            json!({"ingressClassName": "nginx",
                "tls": [{"hosts": ["two.test", "nginx.test"], "secretName": "one"}]}),
        ),
    ];
    let mut cache = KeyCache::default();
    let (table, problems) = CertTable::build(&ings, &[], &secrets, &mut cache);
    let cases: &[(&str, Option<&str>)] = &[
        ("one.test", Some("default/one")),
        ("One.Test.", Some("default/one")),
        ("one-alias.test", Some("default/one")),
        ("two.test", Some("default/two")),
        ("a.wild.test", Some("default/wild")),
        ("a.b.wild.test", None),
        ("wild.test", None),
        ("later.test", Some("default/later")),
        // Skipped entries: the default certificate.
        ("gone.test", None),
        ("opaque.test", None),
        ("nokey.test", None),
        ("mismatch.test", None),
        ("nosecret.test", None),
        // By the certificate's names, for rule hosts no entry lists.
        ("san.test", Some("default/sans")),
        ("x.sanwild.test", Some("default/sans")),
        ("y.sanwild.test", None),
        ("other.test", None),
        ("nginx.test", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(
            table.lookup(name).map(|e| e.secret.as_str()),
            *want,
            "{name}"
        );
    }
    let mut problems = problems;
    problems.sort();
    let want = [
        ("web", "default/mismatch", "tls.crt/tls.key"),
        ("web", "default/missing", "not found"),
        ("web", "default/nokey", "missing tls.crt or tls.key"),
        ("web", "default/opaque", "not \"kubernetes.io/tls\""),
        ("young", "default/missing", "not found"),
    ];
    assert_eq!(problems.len(), want.len(), "{problems:#?}");
    for (p, (ing, secret, what)) in problems.iter().zip(want) {
        assert!(
            p.starts_with(&format!("ingress default/{ing}: secret {secret}: ")) && p.contains(what),
            "{p}"
        );
    }
}

#[test]
fn exact_host_beats_wildcard_and_secret_updates_apply() {
    let wild = cert("wild", &["*.x.test"]);
    let exact = cert("exact", &["www.x.test"]);
    let ings = vec![ingress(
        "w",
        "2024-01-01T00:00:00Z",
        json!({"ingressClassName": "rkube", "tls": [
            {"hosts": ["*.x.test"], "secretName": "wild"},
            {"hosts": ["www.x.test"], "secretName": "exact"},
        ]}),
    )];
    let mut cache = KeyCache::default();
    let mut secrets = vec![tls_secret("wild", &wild), tls_secret("exact", &exact)];
    let (table, _) = CertTable::build(&ings, &[], &secrets, &mut cache);
    assert_eq!(table.lookup("www.x.test").unwrap().secret, "default/exact");
    assert_eq!(table.lookup("api.x.test").unwrap().secret, "default/wild");

    // Same content: the cached key is reused.
    let before = table.lookup("www.x.test").unwrap().key.clone();
    let (again, _) = CertTable::build(&ings, &[], &secrets, &mut cache);
    assert!(Arc::ptr_eq(
        &before,
        &again.lookup("www.x.test").unwrap().key
    ));

    // New content: the new certificate.
    let renewed = cert("renewed", &["www.x.test"]);
    secrets[1] = tls_secret("exact", &renewed);
    let (after, _) = CertTable::build(&ings, &[], &secrets, &mut cache);
    let got = after.lookup("www.x.test").unwrap().key.cert[0].clone();
    let want = load_pem(renewed.0.as_bytes(), renewed.1.as_bytes()).unwrap();
    assert_eq!(got, want.key.cert[0]);

    // Broken now: that host falls back to the wildcard entry.
    secrets[1] = secret("exact", TLS_SECRET_TYPE, Some("nope"), Some(&renewed.1));
    let (broken, problems) = CertTable::build(&ings, &[], &secrets, &mut cache);
    assert_eq!(broken.lookup("www.x.test").unwrap().secret, "default/wild");
    assert_eq!(problems.len(), 1, "{problems:?}");

    // A deleted Ingress leaves nothing.
    let (empty, problems) = CertTable::build(&[], &[], &secrets, &mut cache);
    assert!(empty.lookup("www.x.test").is_none() && problems.is_empty());
}

#[test]
fn default_certificate_is_the_fake_one() {
    let certs = Arc::new(Certs::new().unwrap());
    let (_, parsed) = x509_parser::parse_x509_certificate(&certs.default.cert[0]).unwrap();
    let cn: Vec<&str> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    assert_eq!(cn, vec![super::FAKE_CERT_CN]);
    assert!(certs.table().lookup("anything.test").is_none());
    assert!(certs.server_config().is_ok());
}
