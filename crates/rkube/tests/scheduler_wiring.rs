//! The scheduler as `rkube server` runs it: profiles from
//! --scheduler-config, and its metrics on the API server's /metrics.

mod support;

use std::time::{Duration, Instant};

use support::Server;

#[test]
fn profiles_from_a_config_file_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: bin-packing\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated}}\n",
    )
    .unwrap();
    let flag = format!("--scheduler-config={}", config.display());
    let s = Server::start_with(&["--disable-controller-manager", &flag]);
    let _agent = s.start_simulated_agent(2, "n");
    s.ok(&[
        "run",
        "packed",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"schedulerName":"bin-packing"}}"#,
    ]);
    s.ok(&[
        "run",
        "other",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"schedulerName":"nobody"}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = s.json(&["get", "pod", "packed", "-o", "json"]);
        if p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("n-"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bin-packing profile did not schedule: {p}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A pod for a scheduler nobody runs stays unscheduled.
    assert!(s.json(&["get", "pod", "other", "-o", "json"])["spec"]["nodeName"].is_null());
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scheduler_schedule_attempts_total{")
                && l.contains("profile=\"bin-packing\"")
                && l.contains("result=\"scheduled\"")
                && l.ends_with(" 1")),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("scheduler_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A bad file stops the server with a clear error.
    std::fs::write(&config, "profiles: [{schedulerName: 3, plugins: nope}]").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["server", "--disable-agent", "--https-listen-port=1", &flag])
        .arg(format!("--data-dir={}", dir.path().join("d").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--scheduler-config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
