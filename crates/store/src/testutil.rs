//! Helpers for tests and benchmarks: a throwaway real etcd.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary (Debian's etcd-server).
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("RKUBE_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/etcd".into())
}

pub fn etcd_available() -> bool {
    etcd_binary().exists()
}

/// Two distinct free loopback ports (both held while picking, so they
/// differ); another process may still take them before etcd binds them,
/// which [`EtcdServer::start`] survives by trying again.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Why etcd did not come up.
enum StartError {
    /// It exited; `address_in_use` when a port was taken meanwhile.
    Exited {
        log: String,
        address_in_use: bool,
    },
    TimedOut {
        log: String,
    },
}

/// A single-member etcd on loopback ports in a temporary directory, killed
/// when dropped.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers; panics (with etcd's log)
    /// when it does not within 20 s.
    pub async fn start() -> EtcdServer {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (client_port, peer_port) = free_ports();
            let mut s = EtcdServer {
                dir: tempfile::tempdir().expect("temp dir"),
                client_port,
                peer_port,
                child: None,
            };
            match s.spawn().await {
                Ok(()) => return s,
                // A port was taken between picking and binding: new ports.
                Err(StartError::Exited {
                    address_in_use: true,
                    ..
                }) if attempt < 5 => continue,
                Err(e) => e.panic(),
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// etcd's stdout and stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) -> Result<(), StartError> {
        assert!(etcd_available(), "etcd is not installed: run scripts/setup");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the etcd log");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(etcd_binary())
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the etcd log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = format!("etcd exited with {status}: {}", self.log());
                let address_in_use = log.contains("address already in use");
                return Err(StartError::Exited {
                    log,
                    address_in_use,
                });
            }
            let ready = async {
                let mut c = etcd_client::Client::connect([client.as_str()], None).await?;
                c.status().await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), ready).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(StartError::TimedOut {
                    log: format!("etcd did not start in 20s: {}", self.log()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data dir and ports (after [`kill`],
    /// or killing it first).
    ///
    /// [`kill`]: EtcdServer::kill
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn().await {
            e.panic();
        }
    }
}

impl StartError {
    fn panic(self) -> ! {
        match self {
            StartError::Exited { log, .. } | StartError::TimedOut { log } => panic!("{log}"),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
