//! A writer process for the datastore's crash tests: writes keys as fast as
//! it can from several tasks and prints `KEY REVISION` for every
//! acknowledged write, until it is killed.
//!
//! Usage: rkube-store-writer sqlite:PATH|etcd:ENDPOINT PREFIX TASKS

use std::io::Write;
use std::sync::Arc;

use store::etcd::EtcdStore;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::Store;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, prefix, tasks] = &args[..] else {
        eprintln!("usage: rkube-store-writer sqlite:PATH|etcd:ENDPOINT PREFIX TASKS");
        std::process::exit(2);
    };
    let store: Arc<dyn Store> = if let Some(path) = target.strip_prefix("sqlite:") {
        Arc::new(SqliteStore::open(SqliteConfig::new(path)).expect("open sqlite"))
    } else if let Some(endpoint) = target.strip_prefix("etcd:") {
        Arc::new(
            EtcdStore::connect(&[endpoint.to_owned()])
                .await
                .expect("connect etcd"),
        )
    } else {
        panic!("unknown target {target}");
    };
    let tasks: usize = tasks.parse().expect("TASKS is a number");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64)>();
    for t in 0..tasks {
        let (store, tx, prefix) = (store.clone(), tx.clone(), prefix.clone());
        tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("{prefix}{t:03}/{i:08}");
                let rev = store
                    .create(&key, key.as_bytes().to_vec())
                    .await
                    .expect("write");
                if tx.send((key, rev)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some((key, rev)) = rx.recv().await {
        writeln!(out, "{key} {rev}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}
