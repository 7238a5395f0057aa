//! HTTPS for the ingress controller: the SNI certificate table built from
//! the served Ingresses' `spec.tls` entries and their `kubernetes.io/tls`
//! Secrets, and [`Certs`], the rustls certificate resolver over it.
//!
//! Each `spec.tls` entry's Secret (in the Ingress's namespace, PEM keys
//! `tls.crt` and `tls.key`) serves the entry's `hosts`; a wildcard host
//! (`*.foo.com`) matches exactly one more label, and an exact host beats a
//! wildcard. When several entries claim a host, the oldest Ingress (then
//! namespace/name) and its first entry win. A host of the Ingress's rules
//! that no entry lists is served by an entry whose certificate names it
//! (a DNS subjectAltName, wildcards included), as ingress-nginx does for
//! entries without `hosts`. A Secret that is missing, of another type, or
//! whose certificate or key does not parse or match is skipped and
//! reported; its hosts get the default certificate. Every other name, and
//! a ClientHello without SNI, gets the default certificate: a self-signed
//! "Kubernetes Ingress Controller Fake Certificate" (as ingress-nginx
//! serves) generated at start.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::routes::served_in_order;

/// The Secret type whose certificates the controller serves.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The subject common name of the default certificate (ingress-nginx's).
pub const FAKE_CERT_CN: &str = "Kubernetes Ingress Controller Fake Certificate";
/// The DNS name the default certificate is issued for (ingress-nginx's).
pub const FAKE_CERT_HOST: &str = "ingress.local";

/// Whether a host pattern (`foo.com` or `*.foo.com`) matches `name`: a
/// wildcard stands for exactly one non-empty label. Case-insensitive;
/// a trailing dot on `name` is ignored.
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = normalize(name);
    match pattern.strip_prefix('*') {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && format!(".{rest}") == suffix),
        None => pattern == name,
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A parsed certificate chain with its key, and the DNS names the leaf
/// certificate is issued for.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub dns_names: Vec<String>,
}

/// Parses a PEM certificate chain and private key (the `tls.crt` and
/// `tls.key` of a TLS Secret) into a certified key whose key matches the
/// leaf certificate.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt: no PEM certificate found".into());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("tls.key: {e}"))?
        .ok_or("tls.key: no PEM private key found")?;
    let dns_names = dns_names(&certs[0])?;
    let key = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("tls.crt/tls.key: {e}"))?;
    Ok(Loaded {
        key: Arc::new(key),
        dns_names,
    })
}

/// The DNS subjectAltNames of a DER certificate, lowercased.
fn dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("tls.crt: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("tls.crt: subjectAltName: {e}"))?;
    Ok(san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Parsed Secrets by `namespace/name`, reused while their `tls.crt` and
/// `tls.key` stay the same (parsing keys on every table rebuild would be
/// wasted work: most rebuilds are endpoint changes).
#[derive(Default)]
pub struct KeyCache {
    entries: HashMap<String, Cached>,
}

struct Cached {
    crt: Vec<u8>,
    key: Vec<u8>,
    loaded: Result<Loaded, String>,
}

impl KeyCache {
    fn load(&mut self, id: &str, crt: &[u8], key: &[u8]) -> Result<Loaded, String> {
        if let Some(c) = self.entries.get(id) {
            if c.crt == crt && c.key == key {
                return c.loaded.clone();
            }
        }
        let loaded = load_pem(crt, key);
        let cached = Cached {
            crt: crt.to_vec(),
            key: key.to_vec(),
            loaded: loaded.clone(),
        };
        self.entries.insert(id.to_string(), cached);
        loaded
    }

    /// Forgets Secrets not used by the last build.
    fn retain(&mut self, used: &std::collections::HashSet<String>) {
        self.entries.retain(|id, _| used.contains(id));
    }
}

/// The certificate a host gets and where it comes from.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `namespace/name` of the Secret.
    pub secret: String,
    pub key: Arc<CertifiedKey>,
}

/// A loaded entry of one Ingress with its certificate's DNS names.
type Candidate = (Entry, Vec<String>);

/// Which certificate each TLS host gets.
#[derive(Clone, Debug, Default)]
pub struct CertTable {
    exact: BTreeMap<String, Entry>,
    /// Keyed by the suffix after `*` (e.g. `.foo.com`).
    wildcard: BTreeMap<String, Entry>,
}

impl CertTable {
    /// Builds the table from the served Ingresses' `spec.tls` and the
    /// Secrets; returns it with one message per skipped entry.
    pub fn build(
        ingresses: &[Ingress],
        classes: &[IngressClass],
        secrets: &[Secret],
        cache: &mut KeyCache,
    ) -> (CertTable, Vec<String>) {
        let served = served_in_order(ingresses, classes);
        let by_id: HashMap<String, &Secret> = secrets
            .iter()
            .map(|s| {
                let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                let name = s.metadata.name.as_deref().unwrap_or_default();
                (format!("{ns}/{name}"), s)
            })
            .collect();
        let mut table = CertTable::default();
        let mut problems = Vec::new();
        let mut used = std::collections::HashSet::new();
        // Rule hosts not listed by their Ingress's entries, with the
        // loaded entries of that Ingress: claimed after all listed hosts.
        let mut by_san: Vec<(String, Rc<[Candidate]>)> = Vec::new();
        for ing in served {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let name = ing.metadata.name.as_deref().unwrap_or_default();
            let Some(spec) = &ing.spec else { continue };
            let mut loaded_entries = Vec::new();
            let mut listed = Vec::new();
            for tls in spec.tls.iter().flatten() {
                let hosts: Vec<String> = tls.hosts.iter().flatten().map(|h| normalize(h)).collect();
                listed.extend(hosts.iter().cloned());
                let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                    // No Secret: these hosts get the default certificate.
                    continue;
                };
                let id = format!("{ns}/{secret_name}");
                used.insert(id.clone());
                let loaded = match by_id.get(&id) {
                    None => Err("not found".to_string()),
                    Some(s) if s.type_.as_deref() != Some(TLS_SECRET_TYPE) => Err(format!(
                        "type is {:?}, not {TLS_SECRET_TYPE:?}",
                        s.type_.as_deref().unwrap_or_default()
                    )),
                    Some(s) => {
                        let data = s.data.as_ref();
                        let field = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.as_slice());
                        match (field("tls.crt"), field("tls.key")) {
                            (Some(crt), Some(key)) => cache.load(&id, crt, key),
                            _ => Err("missing tls.crt or tls.key".to_string()),
                        }
                    }
                };
                let loaded = match loaded {
                    Ok(l) => l,
                    Err(e) => {
                        problems.push(format!(
                            "ingress {ns}/{name}: secret {id}: {e}; its hosts get the default certificate"
                        ));
                        continue;
                    }
                };
                let entry = Entry {
                    secret: id,
                    key: loaded.key.clone(),
                };
                for host in &hosts {
                    table.claim(host, &entry);
                }
                loaded_entries.push((entry, loaded.dns_names));
            }
            let unlisted: Vec<String> = spec
                .rules
                .iter()
                .flatten()
                .filter_map(|r| r.host.as_deref().filter(|h| !h.is_empty()))
                .map(normalize)
                .filter(|h| !listed.contains(h))
                .collect();
            if !loaded_entries.is_empty() {
                let loaded_entries: Rc<[Candidate]> = loaded_entries.into();
                for host in unlisted {
                    by_san.push((host, loaded_entries.clone()));
                }
            }
        }
        for (host, entries) in by_san {
            let covering = entries.iter().find(|(_, names)| {
                names.iter().any(|n| match host.strip_prefix('*') {
                    // A wildcard rule host is covered by the same wildcard.
                    Some(_) => *n == host,
                    None => host_matches(n, &host),
                })
            });
            if let Some((entry, _)) = covering {
                table.claim(&host, entry);
            }
        }
        cache.retain(&used);
        (table, problems)
    }

    /// Records `entry` for `host` unless the host is taken.
    fn claim(&mut self, host: &str, entry: &Entry) {
        let map = match host.strip_prefix('*') {
            Some(suffix) => self.wildcard.entry(suffix.to_string()),
            None => self.exact.entry(host.to_string()),
        };
        map.or_insert_with(|| entry.clone());
    }

    /// The entry serving `name` (an SNI name or a Host without port), if
    /// any: exact hosts before wildcards.
    pub fn lookup(&self, name: &str) -> Option<&Entry> {
        let name = normalize(name);
        self.exact.get(&name).or_else(|| {
            let (label, rest) = name.split_once('.')?;
            if label.is_empty() {
                return None;
            }
            self.wildcard.get(&format!(".{rest}"))
        })
    }
}

/// The certificates the HTTPS listener serves: the current [`CertTable`]
/// (swapped whole on changes) and the default certificate.
pub struct Certs {
    table: RwLock<Arc<CertTable>>,
    default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.table.read().unwrap();
        f.debug_struct("Certs")
            .field("exact", &table.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &table.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Certs {
    /// An empty table and a freshly generated self-signed default
    /// certificate.
    pub fn new() -> anyhow::Result<Certs> {
        let mut params = rcgen::CertificateParams::new(vec![FAKE_CERT_HOST.to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme Co");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, FAKE_CERT_CN);
        let key_pair = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key_pair)?;
        let loaded = load_pem(cert.pem().as_bytes(), key_pair.serialize_pem().as_bytes())
            .map_err(|e| anyhow::anyhow!("default certificate: {e}"))?;
        Ok(Certs {
            table: RwLock::new(Arc::default()),
            default: loaded.key,
        })
    }

    /// Replaces the table; handshakes already done are unaffected.
    pub fn set_table(&self, table: CertTable) {
        *self.table.write().unwrap() = Arc::new(table);
    }

    /// The current table.
    pub fn table(&self) -> Arc<CertTable> {
        self.table.read().unwrap().clone()
    }

    /// The rustls server configuration resolving certificates through
    /// `self` (HTTP/1.1 only, as the proxy speaks).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.read().unwrap();
        let found = hello
            .server_name()
            .and_then(|n| table.lookup(n))
            .map(|e| e.key.clone());
        Some(found.unwrap_or_else(|| self.default.clone()))
    }
}

#[cfg(test)]
mod tests;
