use super::*;
use crate::cri::FakeRuntime;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo $(GREETING) $$(X)".into(),
        ]),
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "GREETING".into(),
            value: Some("hi".into()),
            ..Default::default()
        }]),
        // As the API server defaults a tagged image; tests of the pull
        // policies set their own.
        image_pull_policy: Some("IfNotPresent".into()),
        ..Container::default()
    }
}

fn pod(policy: &str, containers: Vec<Container>, init: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n".into()),
            restart_policy: Some(policy.into()),
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn setup(images: &[&str]) -> (Arc<FakeRuntime>, PodSyncer) {
    let fake = Arc::new(FakeRuntime::with_images(images));
    let dir = std::env::temp_dir().join(format!("rkube-pods-test-{}", std::process::id()));
    let syncer = PodSyncer::new(fake.clone(), "fake", dir, "10.0.0.1".into());
    (fake, syncer)
}

/// Syncs and stores the status in the pod, as the API would.
async fn sync(s: &PodSyncer, p: &mut Pod) -> Synced {
    let r = s.sync(p).await.unwrap();
    p.status = Some(r.status.clone());
    r
}

fn cs(p: &Pod, i: usize) -> &ContainerStatus {
    &p.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[i]
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().unwrap().phase.as_deref().unwrap()
}

fn cond<'a>(p: &'a Pod, t: &str) -> &'a PodCondition {
    p.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[test]
fn expansion() {
    let env = HashMap::from([("A".to_owned(), "1".to_owned())]);
    assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "1-$(B)-$(A)-$");
    assert_eq!(expand("é$(A)", &env), "é1");
}

#[tokio::test]
async fn a_pod_runs() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("Always", vec![container("c", "busybox")], vec![]);
    let r = sync(&s, &mut p).await;
    assert_eq!(
        fake.calls(),
        [
            "run_pod_sandbox p",
            "create_container c",
            "start_container c2"
        ]
    );
    assert_eq!(phase(&p), "Running");
    assert_eq!(r.requeue_after, Some(RESYNC));
    let c = cs(&p, 0);
    assert_eq!(c.container_id.as_deref(), Some("fake://c2"));
    assert_eq!(c.image_id, "sha256:sha256:busybox");
    assert!(c.ready && c.state.as_ref().unwrap().running.is_some());
    assert_eq!(c.restart_count, 0);
    let st = p.status.as_ref().unwrap();
    assert_eq!(st.pod_ip.as_deref(), Some("10.42.0.9"));
    assert_eq!(st.host_ip.as_deref(), Some("10.0.0.1"));
    assert!(st.start_time.is_some());
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(cond(&p, t).status, "True", "{t}");
    }
    // Nothing more to do.
    fake.clear_calls();
    sync(&s, &mut p).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn exit_codes_by_restart_policy() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("Never", vec![container("c", "busybox")], vec![]);
    sync(&s, &mut p).await;
    fake.exit("c2", 3);
    let r = sync(&s, &mut p).await;
    assert_eq!(phase(&p), "Failed");
    assert_eq!(r.requeue_after, None);
    let t = cs(&p, 0)
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(cond(&p, "Ready").reason.as_deref(), Some("PodCompleted"));

    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("OnFailure", vec![container("c", "busybox")], vec![]);
    sync(&s, &mut p).await;
    fake.exit("c2", 0);
    sync(&s, &mut p).await;
    assert_eq!(phase(&p), "Succeeded");
}

#[tokio::test]
async fn crash_loop_back_off() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("Always", vec![container("c", "busybox")], vec![]);
    sync(&s, &mut p).await;
    fake.exit("c2", 1);
    fake.clear_calls();
    // The first restart is immediate.
    sync(&s, &mut p).await;
    assert_eq!(fake.calls(), ["create_container c", "start_container c3"]);
    let c = cs(&p, 0);
    assert_eq!(c.restart_count, 1);
    assert_eq!(
        c.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert_eq!(phase(&p), "Running");
    // It fails again: back-off.
    fake.exit("c3", 2);
    fake.clear_calls();
    let r = sync(&s, &mut p).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let c = cs(&p, 0);
    let w = c.state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(w
        .message
        .unwrap()
        .starts_with("back-off 10s restarting failed container=c pod=p_default(u1)"));
    assert_eq!(
        c.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        2
    );
    assert_eq!(phase(&p), "Running");
    assert_eq!(cond(&p, "Ready").status, "False");
    assert!(r.requeue_after.is_some());
}

/// imagePullPolicy: Always pulls before a start even when the image is
/// there, and a failed pull stops the start (the kubelet does not fall back
/// to the present image); IfNotPresent and Never use what is there; with
/// none given, the tag decides (`latest` pulls).
#[tokio::test]
async fn pull_policies() {
    let cases = [
        ("app:1", Some("Always"), true),
        ("app:1", Some("IfNotPresent"), false),
        ("app:1", Some("Never"), false),
        ("app:1", None, false),
        ("app", None, true),
        ("app:latest", None, true),
    ];
    for (image, policy, pulls) in cases {
        let (fake, s) = setup(&[image]);
        let mut c = container("c", image);
        c.image_pull_policy = policy.map(Into::into);
        let mut p = pod("Always", vec![c], vec![]);
        sync(&s, &mut p).await;
        let pulled = fake.calls().contains(&format!("pull_image {image}"));
        assert_eq!(pulled, pulls, "{image} {policy:?}");
        assert!(
            cs(&p, 0).state.as_ref().unwrap().running.is_some(),
            "{image} {policy:?}"
        );
    }
    let (fake, s) = setup(&["app:1"]);
    fake.take_registry_down();
    let mut c = container("c", "app:1");
    c.image_pull_policy = Some("Always".into());
    let mut p = pod("Always", vec![c], vec![]);
    sync(&s, &mut p).await;
    let waiting = cs(&p, 0).state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.starts_with("create_container")));
}

#[tokio::test]
async fn missing_images() {
    let (fake, s) = setup(&[]);
    let mut p = pod("Always", vec![container("c", "nothing:1")], vec![]);
    sync(&s, &mut p).await;
    assert!(fake.calls().contains(&"pull_image nothing:1".to_owned()));
    let w = |p: &Pod| {
        cs(p, 0)
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .clone()
            .unwrap()
    };
    assert_eq!(w(&p), "ErrImagePull");
    assert_eq!(phase(&p), "Pending");
    fake.clear_calls();
    sync(&s, &mut p).await;
    assert_eq!(w(&p), "ImagePullBackOff");
    assert!(!fake.calls().iter().any(|c| c.starts_with("pull_image")));

    let mut c = container("c", "nothing:1");
    c.image_pull_policy = Some("Never".into());
    let mut p = pod("Always", vec![c], vec![]);
    p.metadata.uid = Some("u2".into());
    sync(&s, &mut p).await;
    assert_eq!(w(&p), "ErrImageNeverPull");
}

#[tokio::test]
async fn init_containers_run_in_order() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod(
        "Always",
        vec![container("main", "busybox")],
        vec![container("one", "busybox"), container("two", "busybox")],
    );
    sync(&s, &mut p).await;
    assert_eq!(
        fake.calls(),
        [
            "run_pod_sandbox p",
            "create_container one",
            "start_container c2"
        ]
    );
    assert_eq!(phase(&p), "Pending");
    assert_eq!(cond(&p, "Initialized").status, "False");
    assert_eq!(
        cs(&p, 0)
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    fake.exit("c2", 0);
    fake.clear_calls();
    sync(&s, &mut p).await;
    assert_eq!(fake.calls(), ["create_container two", "start_container c3"]);
    fake.exit("c3", 0);
    fake.clear_calls();
    sync(&s, &mut p).await;
    assert_eq!(
        fake.calls(),
        ["create_container main", "start_container c4"]
    );
    assert_eq!(phase(&p), "Running");
    assert_eq!(cond(&p, "Initialized").status, "True");
    let init = p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(
        init[1]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );

    // A failing init container under Never fails the pod.
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod(
        "Never",
        vec![container("main", "busybox")],
        vec![container("one", "busybox")],
    );
    sync(&s, &mut p).await;
    fake.exit("c2", 1);
    sync(&s, &mut p).await;
    assert_eq!(phase(&p), "Failed");
}

#[tokio::test]
async fn kill_stops_with_the_grace_period_and_removes_the_sandbox() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("Always", vec![container("c", "busybox")], vec![]);
    sync(&s, &mut p).await;
    fake.clear_calls();
    let n = s.kill(&PodSyncer::uid_labels("u1"), 7, None).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        fake.calls(),
        [
            "stop_container c2 7",
            "stop_pod_sandbox s1",
            "remove_pod_sandbox s1"
        ]
    );
    assert_eq!(fake.sandbox_count(), 0);
    // Kept: sandboxes of the pod's current uid.
    let mut p = pod("Always", vec![container("c", "busybox")], vec![]);
    sync(&s, &mut p).await;
    let n = s
        .kill(&PodSyncer::name_labels("default", "p"), 0, Some("u1"))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(fake.sandbox_count(), 1);
}

#[tokio::test]
async fn env_from_config_map_waits_for_it() {
    let (fake, mut s) = setup(&["busybox"]);
    let objects = Arc::new(crate::env::StaticObjects::default());
    s.objects = objects.clone();
    let mut c = container("c", "busybox");
    c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "K".into(),
        value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
            config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                name: "cm".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let mut p = pod("Always", vec![c], vec![]);
    let r = sync(&s, &mut p).await;
    let w = cs(&p, 0).state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(w.message.as_deref(), Some("configmap \"cm\" not found"));
    assert_eq!(phase(&p), "Pending");
    assert!(r.requeue_after.is_some());
    assert!(fake.containers().is_empty());

    objects.put_config_map("default", "cm", &[("k", "v")]);
    sync(&s, &mut p).await;
    assert_eq!(phase(&p), "Running");
    let (id, _, _) = fake.containers().remove(0);
    let cfg = fake.container_config(&id).unwrap();
    assert_eq!(cfg.envs, [("K".to_owned(), "v".to_owned())]);
}

#[tokio::test]
async fn volumes_are_set_up_before_containers_and_mounted() {
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, Volume, VolumeMount};
    let (fake, mut s) = setup(&["busybox"]);
    let objects = Arc::new(crate::env::StaticObjects::default());
    s.objects = objects.clone();
    s.dns.cluster_dns = vec!["10.43.0.10".into()];
    let mut c = container("c", "busybox");
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cfg".into(),
        mount_path: "/etc/cfg".into(),
        ..Default::default()
    }]);
    let mut p = pod("Always", vec![c], vec![]);
    p.metadata.uid = Some(format!("vol-{}", std::process::id()));
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "cm".into(),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    // The ConfigMap is missing: nothing runs, the container is still being created.
    sync(&s, &mut p).await;
    let w = cs(&p, 0).state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    assert!(fake.containers().is_empty());

    objects.put_config_map("default", "cm", &[("k", "v")]);
    sync(&s, &mut p).await;
    assert_eq!(phase(&p), "Running");
    let (id, _, _) = fake.containers().remove(0);
    let cfg = fake.container_config(&id).unwrap();
    let pod_dir = s.pod_dir(p.metadata.uid.as_deref().unwrap());
    let vol = pod_dir.join("volumes/kubernetes.io~configmap/cfg");
    assert_eq!(
        cfg.mounts,
        [
            cri::Mount {
                container_path: "/etc/cfg".into(),
                host_path: vol.display().to_string(),
                readonly: true,
            },
            cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: pod_dir.join("etc-hosts").display().to_string(),
                readonly: false,
            },
            // The run's termination message file.
            cri::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: pod_dir.join("containers/c/0").display().to_string(),
                readonly: false,
            },
        ]
    );
    assert_eq!(std::fs::read_to_string(vol.join("k")).unwrap(), "v");
    // The sandbox got the ClusterFirst resolver.
    let dns = fake.sandbox_configs()[0].dns.clone().unwrap();
    assert_eq!(dns.servers, ["10.43.0.10"]);
    assert_eq!(
        dns.searches[..3],
        [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    assert_eq!(dns.options, ["ndots:5"]);

    // Killing the pod removes its volumes.
    s.kill(
        &PodSyncer::uid_labels(p.metadata.uid.as_deref().unwrap()),
        0,
        None,
    )
    .await
    .unwrap();
    assert!(!pod_dir.exists());
}

type Events = Arc<Mutex<Vec<(String, String, String)>>>;

/// Records the syncer's events as (container, reason, message).
fn capture_events(s: &PodSyncer) -> Events {
    let events: Events = Arc::default();
    let e = events.clone();
    s.prober
        .set_event_sink(Arc::new(move |_pod, c, reason, message| {
            e.lock()
                .unwrap()
                .push((c.to_owned(), reason.to_owned(), message))
        }));
    events
}

fn with(c: Container, v: serde_json::Value) -> Container {
    let mut j = serde_json::to_value(&c).unwrap();
    j.as_object_mut()
        .unwrap()
        .extend(v.as_object().unwrap().clone());
    serde_json::from_value(j).unwrap()
}

#[tokio::test]
async fn post_start_runs_after_start() {
    let (fake, s) = setup(&["busybox"]);
    let c = with(
        container("c", "busybox"),
        serde_json::json!({"lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}),
    );
    let mut p = pod("Always", vec![c], vec![]);
    sync(&s, &mut p).await;
    assert_eq!(
        fake.calls(),
        [
            "run_pod_sandbox p",
            "create_container c",
            "start_container c2",
            "exec_sync c2 true"
        ]
    );
    assert!(cs(&p, 0).state.as_ref().unwrap().running.is_some());
}

#[tokio::test]
async fn a_failed_post_start_kills_the_container() {
    let (fake, s) = setup(&["busybox"]);
    let events = capture_events(&s);
    let c = with(
        container("c", "busybox"),
        serde_json::json!({"lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 1"]}}}}),
    );
    let mut p = pod("Always", vec![c], vec![]);
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(5);
    sync(&s, &mut p).await;
    assert_eq!(
        fake.calls(),
        [
            "run_pod_sandbox p",
            "create_container c",
            "start_container c2",
            "exec_sync c2 sh -c exit 1",
            "stop_container c2 5"
        ]
    );
    let st = cs(&p, 0);
    let w = st.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("PostStartHookError"));
    assert_eq!(
        w.message.as_deref(),
        Some("Exec lifecycle hook ([sh -c exit 1]) for Container \"c\" in Pod \"p_default(u1)\" failed - error: command 'sh -c exit 1' exited with 1: , message: \"\"")
    );
    assert!(st.last_state.as_ref().unwrap().terminated.is_some());
    let got: Vec<(String, String)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r, m)| (r.clone(), m.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "Pulled".into(),
                "Container image \"busybox\" already present on machine".into()
            ),
            ("Created".into(), "Created container: c".into()),
            ("Started".into(), "Started container c".into()),
            ("FailedPostStartHook".into(), "PostStartHook failed".into()),
            ("Killing".into(), "FailedPostStartHook".into())
        ]
    );
    // Restarted by its policy on the next sync.
    fake.clear_calls();
    sync(&s, &mut p).await;
    assert!(
        fake.calls().contains(&"create_container c".to_owned()),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn kill_runs_pre_stop_hooks_from_the_container_annotations() {
    let (fake, s) = setup(&["busybox"]);
    let events = capture_events(&s);
    let c = with(
        container("c", "busybox"),
        serde_json::json!({"lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "true"]}}}}),
    );
    let mut p = pod("Always", vec![c, container("d", "busybox")], vec![]);
    sync(&s, &mut p).await;
    fake.clear_calls();
    // Only the uid: the pod spec is not needed.
    s.kill(&PodSyncer::uid_labels("u1"), 7, None).await.unwrap();
    let calls = fake.calls();
    let hook = calls.iter().position(|c| c == "exec_sync c2 sh -c true");
    let stop = calls.iter().position(|c| c == "stop_container c2 7");
    assert!(hook.is_some() && hook < stop, "{calls:?}");
    assert!(
        calls.contains(&"stop_container c3 7".to_owned()),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("exec_sync c3")));
    let mut killing: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, r, _)| r == "Killing")
        .map(|(_, _, m)| m.clone())
        .collect();
    killing.sort();
    assert_eq!(killing, ["Stopping container c", "Stopping container d"]);
}

#[tokio::test]
async fn run_as_non_root_is_checked_against_the_image_user() {
    let (fake, s) = setup(&["busybox"]);
    let mut p = pod("Always", vec![container("c", "busybox")], vec![]);
    p.spec.as_mut().unwrap().security_context =
        Some(serde_json::from_value(serde_json::json!({"runAsNonRoot": true})).unwrap());
    sync(&s, &mut p).await;
    let w = cs(&p, 0).state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(
        w.message.as_deref(),
        Some("container has runAsNonRoot and image will run as root (pod: \"p_default(u1)\", container: c)")
    );
    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.starts_with("create_container")));
    // An image running as 1000 passes, and runs as its user.
    fake.set_image_user("busybox", Some(1000), "");
    sync(&s, &mut p).await;
    assert!(cs(&p, 0).state.as_ref().unwrap().running.is_some());
    let id = fake.containers()[0].0.clone();
    let config = fake.container_config(&id).unwrap();
    assert_eq!(config.security.run_as_user, Some(1000));
}

#[tokio::test]
async fn resources_and_security_reach_the_runtime() {
    let (fake, mut s) = setup(&["busybox"]);
    s.memory_capacity = 1 << 30;
    let c = with(
        container("c", "busybox"),
        serde_json::json!({
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "20Mi", "cpu": "250m"}},
            "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                                "privileged": true},
        }),
    );
    let mut p = pod("Always", vec![c], vec![]);
    sync(&s, &mut p).await;
    let id = fake.containers()[0].0.clone();
    let config = fake.container_config(&id).unwrap();
    assert_eq!(
        config.resources,
        Some(cri::LinuxResources {
            cpu_period: 100_000,
            cpu_quota: 25_000,
            cpu_shares: 102,
            memory_limit_in_bytes: 20 << 20,
            oom_score_adj: 1000 - 1000 * (20 << 20) / (1 << 30),
        })
    );
    assert_eq!(config.security.run_as_user, Some(1000));
    assert!(config.security.readonly_rootfs && config.security.privileged);
    assert!(fake.sandbox_configs()[0].privileged);
    assert_eq!(
        p.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
}

#[tokio::test]
async fn pulls_with_the_image_pull_secrets_that_match() {
    let (fake, mut s) = setup(&[]);
    let objects = Arc::new(crate::env::StaticObjects::default());
    s.objects = objects.clone();
    let config = r#"{"auths": {"reg.example.com:5000": {"username": "alice", "password": "a"},
                              "other.example.com": {"username": "eve", "password": "e"}}}"#;
    objects.put_secret(
        "default",
        "regcred",
        &[(".dockerconfigjson", config.as_bytes())],
    );
    objects
        .secrets
        .lock()
        .unwrap()
        .get_mut("default/regcred")
        .unwrap()
        .type_ = Some("kubernetes.io/dockerconfigjson".into());
    let mut p = pod(
        "Always",
        vec![
            container("c", "reg.example.com:5000/app:1"),
            container("d", "busybox:1"),
        ],
        vec![],
    );
    p.spec.as_mut().unwrap().image_pull_secrets = Some(vec![
        k8s_openapi::api::core::v1::LocalObjectReference {
            name: "missing".into(),
        },
        k8s_openapi::api::core::v1::LocalObjectReference {
            name: "regcred".into(),
        },
    ]);
    sync(&s, &mut p).await;
    let pulls: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("pull_image"))
        .collect();
    // The matching credential for the private registry, none for the other
    // image; the missing secret is skipped.
    assert_eq!(
        pulls,
        [
            "pull_image reg.example.com:5000/app:1 as alice",
            "pull_image busybox:1"
        ]
    );
}

#[test]
fn host_ports_become_port_mappings() {
    use k8s_openapi::api::core::v1::ContainerPort;
    let port = |c: i32, h: Option<i32>, proto: Option<&str>, ip: Option<&str>| ContainerPort {
        container_port: c,
        host_port: h,
        protocol: proto.map(Into::into),
        host_ip: ip.map(Into::into),
        ..Default::default()
    };
    let mut a = container("a", "busybox");
    a.ports = Some(vec![
        port(80, Some(8080), None, None),
        port(53, Some(5353), Some("UDP"), Some("10.0.0.1")),
        port(9000, None, None, None),
    ]);
    let mut b = container("b", "busybox");
    b.ports = Some(vec![port(443, Some(0), None, None)]);
    let p = pod("Always", vec![a, b], vec![]);
    let got = super::port_mappings(p.spec.as_ref().unwrap());
    assert_eq!(
        got,
        [
            crate::cri::PortMapping {
                protocol: "TCP".into(),
                container_port: 80,
                host_port: 8080,
                host_ip: String::new()
            },
            crate::cri::PortMapping {
                protocol: "UDP".into(),
                container_port: 53,
                host_port: 5353,
                host_ip: "10.0.0.1".into()
            },
        ]
    );
    // Host-network pods map nothing (they use the host's ports).
    let (_fake, s) = setup(&[]);
    let mut hn = p.clone();
    hn.spec.as_mut().unwrap().host_network = Some(true);
    assert!(s.sandbox_config(&hn, 0).port_mappings.is_empty());
    assert_eq!(s.sandbox_config(&p, 0).port_mappings, got);
}

#[test]
fn fresh_sigkill_exits_wait_for_the_oom_reason() {
    let now = 10_000_000_000i64;
    let st = |state, exit_code, reason: &str, finished_at| cri::ContainerStatus {
        id: "c1".into(),
        name: "hog".into(),
        attempt: 0,
        state,
        created_at: 1,
        started_at: 1,
        finished_at,
        exit_code,
        image: String::new(),
        image_ref: String::new(),
        reason: reason.to_owned(),
        message: String::new(),
        labels: Default::default(),
        annotations: Default::default(),
        log_path: String::new(),
    };
    let exited = cri::ContainerState::Exited;
    let cases = [
        (
            "just killed, runtime says Error",
            st(exited, 137, "Error", now - 100_000_000),
            true,
        ),
        (
            "just killed, no reason yet",
            st(exited, 137, "", now - 5_900_000_000),
            true,
        ),
        (
            "already OOMKilled",
            st(exited, 137, "OOMKilled", now),
            false,
        ),
        (
            "killed long ago",
            st(exited, 137, "Error", now - 6_000_000_000),
            false,
        ),
        ("another exit code", st(exited, 1, "Error", now), false),
        (
            "still running",
            st(cri::ContainerState::Running, 0, "", 0),
            false,
        ),
        ("no finish time", st(exited, 137, "Error", 0), false),
    ];
    for (what, s, want) in cases {
        assert_eq!(super::oom_unsettled(&s, now), want, "{what}");
    }
}

#[test]
fn terminated_pods_settle_containers_that_never_ran_or_were_lost() {
    fn cs(name: &str, state: &str) -> ContainerStatus {
        let state = match state {
            "waiting" => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "running" => ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            },
            code => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code.parse().unwrap(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..Default::default()
        }
    }
    fn shown(s: &ContainerStatus) -> String {
        let st = s.state.clone().unwrap_or_default();
        match (st.waiting, st.running, st.terminated) {
            (Some(_), _, _) => "waiting".into(),
            (_, Some(_), _) => "running".into(),
            (_, _, Some(t)) => match t.reason.as_deref() {
                Some("ContainerStatusUnknown") => {
                    assert_eq!(t.exit_code, 137);
                    assert_eq!(
                        t.message.as_deref(),
                        Some("The container could not be located when the pod was terminated")
                    );
                    "unknown".into()
                }
                _ => t.exit_code.to_string(),
            },
            _ => "none".into(),
        }
    }
    // (init containers, app containers) before → after.
    type Before<'a> = &'a [(&'a str, &'a str)];
    let table: &[(Before, Before, &[&str], &[&str])] = &[
        // Never created, and running until the runtime lost it.
        (
            &[],
            &[("a", "waiting"), ("b", "running"), ("c", "0")],
            &[],
            &["unknown", "unknown", "0"],
        ),
        // Stopped in the second init container: the third never ran,
        // and neither did the app container.
        (
            &[("i1", "0"), ("i2", "running"), ("i3", "waiting")],
            &[("a", "waiting")],
            &["0", "unknown", "waiting"],
            &["waiting"],
        ),
        // Initialized: every app container is settled.
        (
            &[("i1", "0")],
            &[("a", "waiting"), ("b", "137")],
            &["0"],
            &["unknown", "137"],
        ),
    ];
    for (inits, apps, want_inits, want_apps) in table {
        let p = pod(
            "Always",
            apps.iter().map(|(n, _)| container(n, "busybox")).collect(),
            inits.iter().map(|(n, _)| container(n, "busybox")).collect(),
        );
        let mut st = PodStatus {
            init_container_statuses: (!inits.is_empty())
                .then(|| inits.iter().map(|(n, s)| cs(n, s)).collect()),
            container_statuses: Some(apps.iter().map(|(n, s)| cs(n, s)).collect()),
            ..Default::default()
        };
        settle_terminated(p.spec.as_ref().unwrap(), &mut st);
        let got_inits: Vec<String> = st
            .init_container_statuses
            .iter()
            .flatten()
            .map(shown)
            .collect();
        let got_apps: Vec<String> = st.container_statuses.iter().flatten().map(shown).collect();
        assert_eq!(got_inits, *want_inits, "{inits:?} {apps:?}");
        assert_eq!(got_apps, *want_apps, "{inits:?} {apps:?}");
    }
}

/// In-place resize: new limits reach the running container through CRI,
/// without a restart, and the status says what it runs with; a memory
/// change under `resizePolicy: RestartContainer` restarts it; more than
/// the node has waits as PodResizePending.
#[tokio::test]
async fn in_place_resize() {
    let (fake, mut s) = setup(&["busybox"]);
    s.allocatable = BTreeMap::from([("cpu".into(), "2".into()), ("memory".into(), "1Gi".into())]);
    let resources = |cpu: &str, mem: &str| {
        serde_json::json!({"resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                                         "limits": {"cpu": cpu, "memory": mem}},
                           "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]})
    };
    let mut p = pod(
        "Always",
        vec![with(container("c", "busybox"), resources("200m", "64Mi"))],
        vec![],
    );
    sync(&s, &mut p).await;
    let st = cs(&p, 0).clone();
    assert_eq!(
        st.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"].0,
        "200m"
    );
    assert_eq!(st.allocated_resources.as_ref().unwrap()["memory"].0, "32Mi");

    // CPU: in place.
    fake.clear_calls();
    p.spec.as_mut().unwrap().containers[0] =
        with(container("c", "busybox"), resources("300m", "64Mi"));
    sync(&s, &mut p).await;
    let calls = fake.calls();
    assert!(
        calls.contains(&format!(
            "update_container_resources c2 quota=30000 memory={}",
            64 << 20
        )),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("stop_container")),
        "{calls:?}"
    );
    let st = cs(&p, 0).clone();
    assert_eq!(st.restart_count, 0);
    assert_eq!(
        st.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"].0,
        "300m"
    );

    // Memory, whose policy restarts: a new run with the new limit.
    fake.clear_calls();
    p.spec.as_mut().unwrap().containers[0] =
        with(container("c", "busybox"), resources("300m", "128Mi"));
    sync(&s, &mut p).await;
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("stop_container c2")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"create_container c".to_owned()),
        "{calls:?}"
    );
    assert_eq!(cs(&p, 0).restart_count, 1);

    // Past the node: waits.
    p.spec.as_mut().unwrap().containers[0] = with(
        container("c", "busybox"),
        serde_json::json!({"resources": {"requests": {"cpu": "3", "memory": "32Mi"},
                                         "limits": {"cpu": "4", "memory": "128Mi"}}}),
    );
    sync(&s, &mut p).await;
    let pending = cond(&p, "PodResizePending");
    assert_eq!(pending.reason.as_deref(), Some("Infeasible"));
    assert!(
        pending
            .message
            .as_deref()
            .unwrap()
            .contains("cpu, requested: 3000, capacity: 2000"),
        "{pending:?}"
    );
}
