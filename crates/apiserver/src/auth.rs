//! Authentication (x509 client certificates, bearer tokens) and the one
//! authorizer interface every request goes through.

use std::collections::HashMap;
use std::path::Path;

use axum::http::{header, HeaderMap};

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> User {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User {
            name: name.into(),
            groups,
        }
    }
}

/// The identity a verified TLS client certificate carries: CN is the user,
/// each O a group (Kubernetes' x509 authenticator).
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(User::new(name, &refs))
}

/// Bearer tokens → users.
#[derive(Clone, Default)]
pub struct Authenticator {
    tokens: HashMap<String, User>,
    service_accounts: Option<std::sync::Arc<crate::sa_token::TokenIssuer>>,
}

impl Authenticator {
    /// Accepts (and lets the server issue) service account tokens.
    pub fn set_service_account_issuer(&mut self, issuer: crate::sa_token::TokenIssuer) {
        self.service_accounts = Some(std::sync::Arc::new(issuer));
    }

    pub fn service_account_issuer(&self) -> Option<&crate::sa_token::TokenIssuer> {
        self.service_accounts.as_deref()
    }

    /// The user of a bearer token, if it is a known static token or a valid
    /// service account token.
    pub fn token_user(&self, token: &str) -> Option<User> {
        if let Some(u) = self.tokens.get(token) {
            return Some(u.clone());
        }
        let issuer = self.service_accounts.as_ref()?;
        let claims = issuer.verify(token, chrono::Utc::now().timestamp())?;
        Some(crate::sa_token::user(&claims))
    }

    /// The claims of a service account token (not a static token).
    pub fn service_account_claims(&self, token: &str) -> Option<crate::sa_token::Claims> {
        if self.tokens.contains_key(token) {
            return None;
        }
        self.service_accounts
            .as_ref()?
            .verify(token, chrono::Utc::now().timestamp())
    }

    pub fn add_token(&mut self, token: impl Into<String>, user: User) {
        self.tokens.insert(token.into(), user);
    }

    /// Reads a static token file as kube-apiserver's --token-auth-file:
    /// CSV lines `token,user,uid[,"group1,group2"]`.
    pub fn load_token_file(&mut self, path: &Path) -> std::io::Result<usize> {
        let text = std::fs::read_to_string(path)?;
        let mut n = 0;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (head, groups) = match line.split_once(",\"") {
                Some((head, rest)) => (head, rest.trim_end_matches('"')),
                None => (line, ""),
            };
            let fields: Vec<&str> = head.split(',').collect();
            let (Some(token), Some(user)) = (fields.first(), fields.get(1)) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: malformed line {line:?}", path.display()),
                ));
            };
            let groups: Vec<&str> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .collect();
            self.add_token(*token, User::new(*user, &groups));
            n += 1;
        }
        Ok(n)
    }

    /// The user of a request: its verified certificate, else its bearer token.
    pub fn authenticate(&self, cert_user: Option<&User>, headers: &HeaderMap) -> Option<User> {
        if let Some(u) = cert_user {
            return Some(u.clone());
        }
        self.token_user(bearer(headers)?)
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(
        auth.strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))?
            .trim(),
    )
}

/// What a request wants to do, for the authorizer.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub path: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &User, attrs: &Attributes<'_>) -> Decision;
}

/// Every authenticated user may do everything. (RBAC replaces this.)
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, _user: &User, _attrs: &Attributes<'_>) -> Decision {
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "# comment\nt1,alice,1\nt2,bob,2,\"dev,ops\"\n").unwrap();
        let mut a = Authenticator::default();
        assert_eq!(a.load_token_file(&path).unwrap(), 2);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer t2".parse().unwrap());
        let u = a.authenticate(None, &h).unwrap();
        assert_eq!(u.name, "bob");
        assert_eq!(u.groups, vec!["dev", "ops", "system:authenticated"]);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(a.authenticate(None, &h), None);
    }
}
