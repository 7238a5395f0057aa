//! Service account tokens: ES256 JWTs signed with the server's
//! service-account key, with Kubernetes' claims (`sub:
//! system:serviceaccount:NS:NAME`, `kubernetes.io` namespace/serviceaccount),
//! issued through serviceaccounts/token (TokenRequest) and accepted as
//! bearer tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};

use crate::auth::User;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub struct TokenIssuer {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    rng: SystemRandom,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub audiences: Vec<String>,
}

impl TokenIssuer {
    /// From a PKCS#8 P-256 private key in PEM.
    pub fn from_pem(pem: &str) -> Result<TokenIssuer, String> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| format!("service account key: {e}"))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("service account key: {e}"))?;
        let public = key.public_key().as_ref().to_vec();
        Ok(TokenIssuer { key, public, rng })
    }

    /// A token for a service account, valid for `seconds`.
    pub fn issue(&self, claims: &Claims, seconds: i64, now: i64) -> Result<String, String> {
        let header = json!({"alg": "ES256", "typ": "JWT"});
        let aud = if claims.audiences.is_empty() {
            vec![ISSUER.to_owned()]
        } else {
            claims.audiences.clone()
        };
        let body = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "kubernetes.io": {
                "namespace": claims.namespace,
                "serviceaccount": {"name": claims.name, "uid": claims.uid},
            },
        });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(body.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "signing failed".to_owned())?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this issuer signed that is valid at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let mut parts = token.split('.');
        let (h, b, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(format!("{h}.{b}").as_bytes(), &sig)
            .ok()?;
        let body: Value = serde_json::from_slice(&B64.decode(b).ok()?).ok()?;
        let exp = body["exp"].as_i64()?;
        let nbf = body["nbf"].as_i64().unwrap_or(0);
        if now >= exp || now < nbf || body["iss"] != ISSUER {
            return None;
        }
        let k = &body["kubernetes.io"];
        Some(Claims {
            namespace: k["namespace"].as_str()?.to_owned(),
            name: k.pointer("/serviceaccount/name")?.as_str()?.to_owned(),
            uid: k
                .pointer("/serviceaccount/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            audiences: body["aud"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The user a service account token stands for.
pub fn user(claims: &Claims) -> User {
    let ns_group = format!("system:serviceaccounts:{}", claims.namespace);
    User::new(
        format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
        &["system:serviceaccounts", &ns_group],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        TokenIssuer::from_pem(&pem).unwrap()
    }

    #[test]
    fn issue_verify_expire_and_tamper() {
        let i = issuer();
        let c = Claims {
            namespace: "ns".into(),
            name: "robot".into(),
            uid: "u1".into(),
            audiences: vec![],
        };
        let t = i.issue(&c, 3600, 1000).unwrap();
        let got = i.verify(&t, 1001).unwrap();
        assert_eq!(
            (got.namespace.as_str(), got.name.as_str(), got.uid.as_str()),
            ("ns", "robot", "u1")
        );
        assert_eq!(got.audiences, vec![ISSUER.to_owned()]);
        assert_eq!(user(&got).name, "system:serviceaccount:ns:robot");
        assert!(i.verify(&t, 4600).is_none(), "expired");
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap() + 2, 'x');
        assert!(i.verify(&tampered, 1001).is_none());
        assert!(issuer().verify(&t, 1001).is_none(), "another key");
    }
}
