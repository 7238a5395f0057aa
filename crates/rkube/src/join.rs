//! Joining a server as a node: the CA comes from the server's /cacerts and
//! is checked against the join token, as k3s does. The full token
//! (`<data-dir>/server/node-token`) is `K10<sha256 of the CA bundle>::server:<secret>`;
//! the bare secret (`<data-dir>/server/token`) also works but then the CA
//! is trusted as first seen.

use std::path::Path;

/// The full join token for a CA bundle and secret.
pub fn node_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", sha256_hex(ca_pem.as_bytes()))
}

/// Writes `<data-dir>/server/node-token` (mode 0600).
pub fn write_node_token(data_dir: &Path, ca_pem: &str, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("server").join("node-token");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{}", node_token(ca_pem, secret))?;
    Ok(())
}

/// (expected CA hash, secret) of a token.
fn parse(token: &str) -> (Option<&str>, &str) {
    let token = token.trim();
    if let Some(rest) = token.strip_prefix("K10") {
        if let Some((hash, secret)) = rest.split_once("::") {
            let secret = secret.split_once(':').map(|(_, s)| s).unwrap_or(secret);
            return (Some(hash), secret);
        }
    }
    (None, token)
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A client for `server` authenticated with the join token, and the
/// cluster CA (PEM) checked against the token.
pub async fn client(server: &str, token: &str) -> anyhow::Result<(kube::Client, String)> {
    let (hash, secret) = parse(token);
    let ca = fetch_ca(server).await?;
    match hash {
        Some(h) => anyhow::ensure!(
            sha256_hex(ca.as_bytes()) == h,
            "the CA bundle of {server} does not match the join token's hash: refusing to join"
        ),
        None => tracing::warn!(
            server,
            "the join token carries no CA hash (use <data-dir>/server/node-token); trusting the CA the server sent"
        ),
    }
    let client = runtime::client::with_token(server, ca.as_bytes(), secret)?;
    Ok((client, ca))
}

/// GET /cacerts without verifying the server (the hash check follows).
async fn fetch_ca(server: &str) -> anyhow::Result<String> {
    let mut config = kube::Config::new(server.parse()?);
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    let req = http::Request::get("/cacerts").body(Vec::new())?;
    client
        .request_text(req)
        .await
        .map_err(|e| anyhow::anyhow!("fetching the CA from {server}/cacerts: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = node_token("CA", "s3cret");
        assert!(t.starts_with("K10") && t.ends_with("::server:s3cret"));
        assert_eq!(parse(&t), (Some(sha256_hex(b"CA").as_str()), "s3cret"));
        assert_eq!(parse(" plain \n"), (None, "plain"));
    }
}
