//! The Job and CronJob controllers against the real binary, driven by
//! kubectl. Pods are bound to a node no agent runs (`spec.nodeName`), and
//! the test moves them to Succeeded/Failed itself through the status
//! subresource, as a kubelet would.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{eventually, Server};

/// Pods of a job that are neither finished nor being deleted.
fn running_pods(s: &Server, job: &str) -> Vec<Value> {
    let v = s.json(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            !matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            )
        })
        .cloned()
        .collect()
}

/// What a kubelet reports when the pod's only container exits with `code`.
fn finish(s: &Server, pod: &str, code: i32) {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": "c", "image": "busybox:stable", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                                     "startedAt": now, "finishedAt": now}}
        }]
    }});
    s.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap().to_owned()
}

fn job_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      nodeName: nowhere
      restartPolicy: Never
      containers:
      - name: c
        image: busybox:stable
"#
    )
}

#[test]
fn job_runs_to_completion_with_parallelism() {
    let s = Server::start_with(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &job_yaml("pi", "  completions: 3\n  parallelism: 2"),
    );
    let first = eventually(30, "2 pods", || {
        let p = running_pods(&s, "pi");
        (p.len() == 2).then_some(p)
    });
    for p in &first {
        let n = name(p);
        assert!(n.starts_with("pi-"), "{n}");
        let meta = &p["metadata"];
        assert_eq!(meta["ownerReferences"][0]["kind"], "Job");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        assert_eq!(meta["finalizers"][0], "batch.kubernetes.io/job-tracking");
        assert_eq!(meta["labels"]["job-name"], "pi");
        assert_eq!(meta["labels"]["app"], "pi");
        assert!(meta["labels"]["batch.kubernetes.io/controller-uid"].is_string());
    }
    let job = s.json(&["get", "job", "pi"]);
    assert!(job["status"]["startTime"].is_string(), "{job}");
    for p in &first {
        finish(&s, &name(p), 0);
    }
    // Two done: one more pod for the third completion.
    let third = eventually(30, "the third pod", || {
        let p = running_pods(&s, "pi");
        (p.len() == 1).then_some(p)
    });
    eventually(30, "succeeded 2", || {
        let job = s.json(&["get", "job", "pi"]);
        (job["status"]["succeeded"] == 2).then_some(())
    });
    finish(&s, &name(&third[0]), 0);
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=60s",
    ]);
    let job = s.json(&["get", "job", "pi"]);
    let st = &job["status"];
    assert_eq!(st["succeeded"], 3, "{st}");
    assert!(st["completionTime"].is_string(), "{st}");
    assert!(st["active"].is_null(), "{st}");
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"], "{st}");
    assert_eq!(st["conditions"][1]["reason"], "CompletionsReached");
    // Every pod has lost its tracking finalizer.
    eventually(30, "finalizers removed", || {
        let v = s.json(&["get", "pods", "-l", "job-name=pi"]);
        let items = v["items"].as_array().unwrap();
        (items.len() == 3 && items.iter().all(|p| p["metadata"]["finalizers"].is_null()))
            .then_some(())
    });
    let out = s.ok(&["get", "job", "pi"]);
    assert!(out.contains("Complete") && out.contains("3/3"), "{out}");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pi",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Completed"),
        "{events}"
    );
}

#[test]
fn job_fails_past_backoff_limit() {
    let s = Server::start_with(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &job_yaml("boom", "  backoffLimit: 1"),
    );
    let p = eventually(30, "a pod", || running_pods(&s, "boom").pop());
    let t0 = Instant::now();
    finish(&s, &name(&p), 1);
    // The replacement comes after the 10 s back-off.
    let p2 = eventually(40, "a second pod", || running_pods(&s, "boom").pop());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "replaced after {waited:?}"
    );
    eventually(30, "failed 1", || {
        (s.json(&["get", "job", "boom"])["status"]["failed"] == 1).then_some(())
    });
    finish(&s, &name(&p2), 1);
    s.ok(&[
        "wait",
        "--for=condition=failed",
        "job/boom",
        "--timeout=60s",
    ]);
    let job = s.json(&["get", "job", "boom"]);
    let st = &job["status"];
    assert_eq!(st["failed"], 2, "{st}");
    let failed = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "FailureTarget"));
    // No new pods after failing.
    std::thread::sleep(Duration::from_secs(1));
    assert!(running_pods(&s, "boom").is_empty());
}

#[test]
fn indexed_job_reports_completed_indexes() {
    let s = Server::start_with(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &job_yaml(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        ),
    );
    let pods = eventually(30, "3 pods", || {
        let p = running_pods(&s, "idx");
        (p.len() == 3).then_some(p)
    });
    let mut by_index = std::collections::BTreeMap::new();
    for p in &pods {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            ix.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("idx-{ix}"));
        assert!(name(p).starts_with(&format!("idx-{ix}-")), "{}", name(p));
        by_index.insert(ix, name(p));
    }
    assert_eq!(
        by_index.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    finish(&s, &by_index["0"], 0);
    finish(&s, &by_index["2"], 0);
    eventually(30, "completedIndexes 0,2", || {
        let job = s.json(&["get", "job", "idx"]);
        (job["status"]["completedIndexes"] == "0,2" && job["status"]["succeeded"] == 2)
            .then_some(())
    });
    // A failed index is retried with a new pod for the same index.
    finish(&s, &by_index["1"], 3);
    let retry = eventually(40, "a retry of index 1", || running_pods(&s, "idx").pop());
    assert_eq!(
        retry["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"],
        "1"
    );
    finish(&s, &name(&retry), 0);
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    let job = s.json(&["get", "job", "idx"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    assert_eq!(job["status"]["failed"], 1);
}

#[test]
fn suspended_job_and_active_deadline() {
    let s = Server::start_with(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &job_yaml(
            "later",
            "  suspend: true\n  parallelism: 2\n  completions: 2",
        ),
    );
    eventually(30, "Suspended condition", || {
        let job = s.json(&["get", "job", "later"]);
        let conds = job["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds
            .iter()
            .any(|c| {
                c["type"] == "Suspended" && c["status"] == "True" && c["reason"] == "JobSuspended"
            })
            .then_some(())
    });
    assert!(running_pods(&s, "later").is_empty());
    s.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    eventually(30, "2 pods after resume", || {
        (running_pods(&s, "later").len() == 2).then_some(())
    });
    let job = s.json(&["get", "job", "later"]);
    let c = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("JobResumed"))
    );
    // Suspending again deletes the active pods.
    s.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    eventually(30, "pods deleted on suspend", || {
        running_pods(&s, "later").is_empty().then_some(())
    });

    // activeDeadlineSeconds: the job fails with DeadlineExceeded, its pods go.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &job_yaml("slow", "  activeDeadlineSeconds: 3"),
    );
    let pod = eventually(30, "a pod", || running_pods(&s, "slow").pop());
    // First the interim FailureTarget while the pod terminates...
    s.ok(&[
        "wait",
        "--for=condition=FailureTarget",
        "job/slow",
        "--timeout=60s",
    ]);
    let p = s.json(&["get", "pod", &name(&pod)]);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    let job = s.json(&["get", "job", "slow"]);
    assert_eq!(job["status"]["terminating"], 1, "{job}");
    assert!(job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["type"] != "Failed"));
    // ...then Failed once it is gone (no kubelet here: remove it as one would).
    s.ok(&["delete", "pod", &name(&pod), "--grace-period=0", "--force"]);
    s.ok(&[
        "wait",
        "--for=condition=failed",
        "job/slow",
        "--timeout=60s",
    ]);
    let job = s.json(&["get", "job", "slow"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert!(running_pods(&s, "slow").is_empty());
}

#[test]
fn pod_failure_policy_fails_the_job_and_ttl_deletes_it() {
    let s = Server::start_with(&[]);
    let extra = r#"  backoffLimit: 6
  ttlSecondsAfterFinished: 2
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes:
        operator: In
        values: [42]"#;
    s.ok_stdin(&["apply", "-f", "-"], &job_yaml("policy", extra));
    let p = eventually(30, "a pod", || running_pods(&s, "policy").pop());
    finish(&s, &name(&p), 42);
    s.ok(&[
        "wait",
        "--for=condition=failed",
        "job/policy",
        "--timeout=60s",
    ]);
    let job = s.json(&["get", "job", "policy"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let msg = failed["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Container c for pod default/policy-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{msg}"
    );
    // ttlSecondsAfterFinished: 2 → the job goes.
    eventually(30, "the job deleted after its TTL", || {
        let out = s.kubectl(&["get", "job", "policy"]);
        (!out.status.success()).then_some(())
    });
}

fn cronjob_yaml(name: &str, policy: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "*/1 * * * *"
  concurrencyPolicy: {policy}
  jobTemplate:
    spec:
      template:
        spec:
          nodeName: nowhere
          restartPolicy: Never
          containers:
          - name: c
            image: busybox:stable
"#
    )
}

fn jobs_of(s: &Server, cronjob_uid: &str) -> Vec<Value> {
    let v = s.json(&["get", "jobs"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["ownerReferences"][0]["uid"] == cronjob_uid)
        .cloned()
        .collect()
}

#[test]
fn cronjob_catches_up_runs_and_cascades() {
    let s = Server::start_with(&[]);
    s.ok_stdin(&["apply", "-f", "-"], &cronjob_yaml("tick", "Forbid"));
    let cj = s.json(&["get", "cronjob", "tick"]);
    let uid = cj["metadata"]["uid"].as_str().unwrap().to_owned();
    // A last run five minutes ago: the controller runs the missed schedule
    // now (only the most recent one), as Kubernetes does after downtime.
    let old = k8s_openapi::jiff::Timestamp::from_second(
        k8s_openapi::jiff::Timestamp::now().as_second() / 60 * 60 - 300,
    )
    .unwrap()
    .to_string();
    s.ok(&[
        "patch",
        "cronjob",
        "tick",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"lastScheduleTime":"{old}"}}}}"#),
    ]);
    let job = eventually(30, "a job", || jobs_of(&s, &uid).pop());
    let jname = name(&job);
    let minutes: i64 = jname.strip_prefix("tick-").unwrap().parse().unwrap();
    let scheduled = job["metadata"]["annotations"]
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    let ts: k8s_openapi::jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(ts.as_second(), minutes * 60, "{scheduled}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
    eventually(30, "status.active", || {
        let cj = s.json(&["get", "cronjob", "tick"]);
        (cj["status"]["active"][0]["name"] == jname.as_str()
            && cj["status"]["lastScheduleTime"]
                .as_str()
                .map(|t| t.parse::<k8s_openapi::jiff::Timestamp>().unwrap())
                == Some(ts))
        .then_some(())
    });
    // The job's pod succeeds: the job completes, leaves status.active, and
    // sets lastSuccessfulTime.
    let pod = eventually(30, "the job's pod", || running_pods(&s, &jname).pop());
    finish(&s, &name(&pod), 0);
    eventually(60, "lastSuccessfulTime", || {
        let cj = s.json(&["get", "cronjob", "tick"]);
        (cj["status"]["active"].is_null() && cj["status"]["lastSuccessfulTime"].is_string())
            .then_some(())
    });
    // Cascading delete: the CronJob's jobs (and their pods) go with it.
    s.ok(&["delete", "cronjob", "tick"]);
    eventually(60, "jobs deleted with their cronjob", || {
        jobs_of(&s, &uid).is_empty().then_some(())
    });
}

/// Waits for a real minute boundary (at most ~70 s).
#[test]
fn cronjob_fires_on_a_one_minute_schedule() {
    let s = Server::start_with(&[]);
    s.ok_stdin(&["apply", "-f", "-"], &cronjob_yaml("minute", "Allow"));
    let uid = s.json(&["get", "cronjob", "minute"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(75, "a job within a minute", || jobs_of(&s, &uid).pop());
}
