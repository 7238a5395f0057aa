//! Clients for components.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client authenticated as the kubeconfig's current context says.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    // Components keep long watches open; the default 295 s read timeout
    // would cut them, and the watcher re-lists anyway.
    config.read_timeout = None;
    http2_client(config)
}

/// A client that multiplexes every request and watch over one HTTP/2
/// connection (kube-rs's default client opens an HTTP/1.1 connection per
/// concurrent watch: a controller manager with ~60 informers would hold
/// ~60 TLS connections).
pub fn http2_client(config: kube::Config) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt;
    // The builder sets ALPN (h2) itself.
    let tls = config.rustls_client_config()?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .build();
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .timer(hyper_util::rt::TokioTimer::new())
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(
            |e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(e)
            },
        )
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A client for `url` trusting `ca_pem` and sending a bearer token.
pub fn with_token(url: &str, ca_pem: &[u8], token: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(url.parse()?);
    let ders = pem_certificates(ca_pem);
    anyhow::ensure!(!ders.is_empty(), "no certificate in the server's CA bundle");
    config.root_cert = Some(ders);
    config.auth_info.token = Some(token.to_owned().into());
    config.read_timeout = None;
    http2_client(config)
}

/// The DER bodies of the PEM CERTIFICATE blocks in `pem`.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b) = body.take() {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b) {
                    out.push(der);
                }
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_blocks() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBA==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            super::pem_certificates(pem),
            vec![vec![0, 1, 2, 3], vec![4]]
        );
        assert!(super::pem_certificates(b"nothing").is_empty());
    }
}
