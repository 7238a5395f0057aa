//! The API server driven by the Python `kubernetes` client
//! (installed into a virtualenv by scripts/setup; RKUBE_PYTHON names it).

mod support;

use support::Server;

#[test]
fn python_client_core_flows() {
    let s = Server::start();
    let python = std::env::var("RKUBE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/core_flows.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(s.kubeconfig())
        .env("HOME", s.dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (scripts/setup installs the client)"));
    assert!(
        out.status.success(),
        "python client failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
