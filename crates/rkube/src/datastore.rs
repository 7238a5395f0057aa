//! `--datastore-endpoint`: which store backend the server uses. This is the
//! only place in the workspace that names a concrete backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use store::etcd::EtcdStore;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::Store;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datastore {
    /// The embedded SQLite database file.
    Sqlite(PathBuf),
    /// etcd client URLs (http:// or https://).
    Etcd(Vec<String>),
}

impl Datastore {
    /// Parses the flag as k3s does: empty means SQLite in the data dir;
    /// `sqlite://PATH` names the file; `etcd://h1:2379,h2:2379` or a list of
    /// `http(s)://` URLs means etcd.
    pub fn parse(endpoint: &str, data_dir: &Path) -> anyhow::Result<Datastore> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Ok(Datastore::Sqlite(default_sqlite_path(data_dir)));
        }
        if let Some(path) = endpoint.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Ok(Datastore::Sqlite(default_sqlite_path(data_dir)));
            }
            return Ok(Datastore::Sqlite(PathBuf::from(path)));
        }
        let mut urls = Vec::new();
        for part in endpoint.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let url = if let Some(hosts) = part.strip_prefix("etcd://") {
                format!("http://{hosts}")
            } else if part.starts_with("http://") || part.starts_with("https://") {
                part.to_owned()
            } else if part.contains("://") {
                bail!(
                    "unsupported datastore endpoint {part:?}: use sqlite://PATH, \
                     etcd://HOST:PORT[,HOST:PORT] or http(s)://HOST:PORT[,...]"
                );
            } else {
                // The later hosts of `etcd://h1:2379,h2:2379`.
                format!("http://{part}")
            };
            urls.push(url.trim_end_matches('/').to_owned());
        }
        Ok(Datastore::Etcd(urls))
    }

    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Datastore::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                Arc::new(SqliteStore::open(SqliteConfig::new(path))?)
            }
            Datastore::Etcd(urls) => Arc::new(EtcdStore::connect(urls).await?),
        })
    }
}

fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_endpoints() {
        let dir = Path::new("/var/lib/rkube");
        let sqlite = |p: &str| Ok(Datastore::Sqlite(PathBuf::from(p)));
        let etcd = |u: &[&str]| Ok(Datastore::Etcd(u.iter().map(|s| s.to_string()).collect()));
        let cases: Vec<(&str, Result<Datastore, ()>)> = vec![
            ("", sqlite("/var/lib/rkube/server/db/state.db")),
            ("sqlite://", sqlite("/var/lib/rkube/server/db/state.db")),
            ("sqlite:///tmp/x.db", sqlite("/tmp/x.db")),
            ("sqlite:///tmp/x.db?_journal=WAL", sqlite("/tmp/x.db")),
            ("etcd://h1:2379", etcd(&["http://h1:2379"])),
            (
                "etcd://h1:2379,h2:2379,h3:2379",
                etcd(&["http://h1:2379", "http://h2:2379", "http://h3:2379"]),
            ),
            ("http://127.0.0.1:2379", etcd(&["http://127.0.0.1:2379"])),
            (
                "https://a:2379/, https://b:2379",
                etcd(&["https://a:2379", "https://b:2379"]),
            ),
            ("mysql://root@tcp(db:3306)/k", Err(())),
            ("postgres://db/k", Err(())),
        ];
        for (input, want) in cases {
            let got = Datastore::parse(input, dir).map_err(|_| ());
            assert_eq!(got, want, "endpoint {input:?}");
        }
    }
}
