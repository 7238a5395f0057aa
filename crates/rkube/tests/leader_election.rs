//! Two `rkube server`s on one etcd: only one runs the controllers; when it
//! dies the other takes over within the lease duration.

mod support;

use std::time::{Duration, Instant};

use support::Server;

fn holder(s: &Server) -> Option<String> {
    let out = s.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        .filter(|h| !h.is_empty())
}

#[test]
fn a_second_server_takes_over_the_controllers() {
    if !store::testutil::etcd_available() {
        eprintln!("etcd not installed: skipping");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(store::testutil::EtcdServer::start());
    let endpoint = format!("--datastore-endpoint={}", etcd.endpoint());
    let a = Server::start_with(&[&endpoint, "--node-name=a", "--disable-scheduler"]);
    let b = Server::start_with(&[&endpoint, "--node-name=b", "--disable-scheduler"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(h) = holder(&b) {
            break h;
        }
        assert!(Instant::now() < deadline, "nobody took the lease");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        first.starts_with("a_") || first.starts_with("b_"),
        "{first}"
    );
    let (mut dead, alive, survivor) = if first.starts_with("a_") {
        (a, b, "b_")
    } else {
        (b, a, "a_")
    };
    dead.stop(true);

    // The survivor takes over (lease 15 s) and its controllers work.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(h) = holder(&alive) {
            if h.starts_with(survivor) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{survivor} did not take over:\n{}",
            alive.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    alive.ok(&[
        "create",
        "deployment",
        "after",
        "--image=nginx",
        "--replicas=2",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = alive.json(&["get", "pods", "-l", "app=after", "-o", "json"]);
        if v["items"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controllers on the survivor do not work"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(etcd);
}
