//! The cluster's certificates, join token and admin kubeconfig, made on
//! first start and reused afterwards (as k3s keeps them under
//! `<data-dir>/server/tls` and `<data-dir>/server/token`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM files of the server's TLS identity.
pub struct ServerPki {
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// Signs service account tokens (PKCS#8 P-256).
    pub service_account_key: String,
    pub token: String,
    /// The API server's client certificate for node agents (logs, exec,
    /// attach, port-forward).
    pub kubelet_client_cert: String,
    pub kubelet_client_key: String,
}

pub struct PkiConfig<'a> {
    pub data_dir: &'a Path,
    /// Extra names and addresses the serving certificate covers.
    pub sans: &'a [String],
    /// The first address of the service range (the `kubernetes` Service).
    pub api_service_ip: Option<IpAddr>,
    /// A join token given on the command line.
    pub token: Option<&'a str>,
}

fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read_or<F>(path: &Path, make: F) -> Result<String>
where
    F: FnOnce() -> Result<String>,
{
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = make()?;
            write_private(path, &s)?;
            Ok(s)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "rkube-server-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    Ok(params)
}

fn leaf_params(
    cn: &str,
    orgs: &[&str],
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    Ok(params)
}

/// Loads the server's certificates, creating what is missing.
pub fn ensure(cfg: &PkiConfig<'_>) -> Result<ServerPki> {
    let dir = tls_dir(cfg.data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key_pem = read_or(&dir.join("server-ca.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("reading server-ca.key")?;
    let ca_cert = read_or(&dir.join("server-ca.crt"), || {
        Ok(ca_params()?.self_signed(&ca_key)?.pem())
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_key).context("reading server-ca.crt")?;

    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::DnsName("kubernetes".try_into()?),
        SanType::DnsName("kubernetes.default".try_into()?),
        SanType::DnsName("kubernetes.default.svc".try_into()?),
        SanType::DnsName("kubernetes.default.svc.cluster.local".try_into()?),
        SanType::IpAddress("127.0.0.1".parse()?),
        SanType::IpAddress("::1".parse()?),
    ];
    if let Some(ip) = cfg.api_service_ip {
        sans.push(SanType::IpAddress(ip));
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        if let Ok(name) = host.trim().to_owned().try_into() {
            sans.push(SanType::DnsName(name));
        }
    }
    for s in cfg.sans {
        match s.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(s.clone().try_into()?)),
        }
    }
    // The serving certificate is remade when the names it must cover change.
    let sans_file = dir.join("serving.sans");
    let sans_text = format!("{sans:?}");
    let stale = std::fs::read_to_string(&sans_file)
        .map(|s| s != sans_text)
        .unwrap_or(true);
    if stale {
        let key = KeyPair::generate()?;
        let cert = leaf_params(
            "kube-apiserver",
            &[],
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?
        .signed_by(&key, &issuer)?;
        write_private(
            &dir.join("serving-kube-apiserver.key"),
            &key.serialize_pem(),
        )?;
        write_private(&dir.join("serving-kube-apiserver.crt"), &cert.pem())?;
        write_private(&sans_file, &sans_text)?;
    }
    let serving_cert = std::fs::read_to_string(dir.join("serving-kube-apiserver.crt"))?;
    let serving_key = std::fs::read_to_string(dir.join("serving-kube-apiserver.key"))?;

    let admin_key = read_or(&dir.join("client-admin.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;
    let admin_kp = KeyPair::from_pem(&admin_key)?;
    let admin_cert = read_or(&dir.join("client-admin.crt"), || {
        Ok(leaf_params(
            "system:admin",
            &["system:masters"],
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?
        .signed_by(&admin_kp, &issuer)?
        .pem())
    })?;

    let kubelet_client_key = read_or(&dir.join("client-kube-apiserver.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;
    let kubelet_kp = KeyPair::from_pem(&kubelet_client_key)?;
    let kubelet_client_cert = read_or(&dir.join("client-kube-apiserver.crt"), || {
        Ok(leaf_params(
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?
        .signed_by(&kubelet_kp, &issuer)?
        .pem())
    })?;

    let service_account_key = read_or(&dir.join("service.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;

    let token_path = cfg.data_dir.join("server").join("token");
    let token = match cfg.token {
        Some(t) => {
            write_private(&token_path, t)?;
            t.to_owned()
        }
        None => read_or(&token_path, || Ok(new_token()))?.trim().to_owned(),
    };
    Ok(ServerPki {
        ca_cert,
        serving_cert,
        serving_key,
        admin_cert,
        admin_key,
        service_account_key,
        token,
        kubelet_client_cert,
        kubelet_client_key,
    })
}

/// The agent's self-signed serving certificate for its streaming server
/// (`<data-dir>/agent/tls/kubelet.{crt,key}`, made once), for the node's
/// name and address. Returns (certificate, key) PEM.
pub fn kubelet_serving(
    data_dir: &Path,
    node_name: &str,
    ip: Option<IpAddr>,
) -> Result<(String, String)> {
    let dir = data_dir.join("agent").join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = read_or(&dir.join("kubelet.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;
    let kp = KeyPair::from_pem(&key).context("reading kubelet.key")?;
    let cert = read_or(&dir.join("kubelet.crt"), || {
        let mut sans = vec![SanType::DnsName("localhost".try_into()?)];
        if let Ok(name) = node_name.to_owned().try_into() {
            sans.push(SanType::DnsName(name));
        }
        if let Some(ip) = ip {
            sans.push(SanType::IpAddress(ip));
        }
        let mut params = leaf_params(
            &format!("{node_name}@kubelet"),
            &[],
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        params.is_ca = IsCa::NoCa;
        Ok(params.self_signed(&kp)?.pem())
    })?;
    Ok((cert, key))
}

/// A random join token (k3s prints `K10<hash>::server:<secret>`; ours is
/// the secret alone).
fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin kubeconfig: client certificate in group system:masters.
pub fn admin_kubeconfig(pki: &ServerPki, server_url: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server_url}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(&pki.ca_cert),
        cert = b64(&pki.admin_cert),
        key = b64(&pki.admin_key),
    )
}

pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PkiConfig {
            data_dir: dir.path(),
            sans: &["10.1.2.3".into(), "api.example".into()],
            api_service_ip: Some("10.43.0.1".parse().unwrap()),
            token: None,
        };
        let a = ensure(&cfg).unwrap();
        let b = ensure(&cfg).unwrap();
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.serving_cert, b.serving_cert);
        assert_eq!(a.token, b.token);
        assert_eq!(a.token.len(), 48);
        let token = std::fs::read_to_string(dir.path().join("server/token")).unwrap();
        assert_eq!(token.trim(), a.token);
        // The admin certificate names system:admin in system:masters.
        let der = rustls_pemfile_der(&a.admin_cert);
        let user = apiserver::auth::user_from_cert(&der).unwrap();
        assert_eq!(user.name, "system:admin");
        assert!(user.groups.contains(&"system:masters".to_owned()));
        // A given token wins and is written down.
        let c = ensure(&PkiConfig {
            token: Some("given"),
            ..cfg
        })
        .unwrap();
        assert_eq!(c.token, "given");
        assert_eq!(c.ca_cert, a.ca_cert);
    }

    #[test]
    fn kubelet_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PkiConfig {
            data_dir: dir.path(),
            sans: &[],
            api_service_ip: None,
            token: None,
        };
        let a = ensure(&cfg).unwrap();
        // The API server's client certificate for agents, from the CA.
        let der = rustls_pemfile_der(&a.kubelet_client_cert);
        let user = apiserver::auth::user_from_cert(&der).unwrap();
        assert_eq!(user.name, "kube-apiserver-kubelet-client");
        assert_eq!(
            ensure(&cfg).unwrap().kubelet_client_cert,
            a.kubelet_client_cert
        );
        // The agent's serving certificate: self-signed, made once.
        let ip = Some("10.1.2.3".parse().unwrap());
        let (cert, key) = kubelet_serving(dir.path(), "node-1", ip).unwrap();
        assert_eq!(
            kubelet_serving(dir.path(), "node-1", ip).unwrap(),
            (cert.clone(), key)
        );
        let der = rustls_pemfile_der(&cert);
        let subject = apiserver::auth::user_from_cert(&der).unwrap();
        assert_eq!(subject.name, "node-1@kubelet");
        assert_ne!(cert, a.serving_cert);
        assert!(dir.path().join("agent/tls/kubelet.key").exists());
    }

    fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}
