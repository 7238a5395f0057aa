// Data tables: their row types are spelled out where they are used.
#![allow(clippy::type_complexity)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::observe::{memory_available, pid_available, MemorySource};
use super::*;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

#[test]
fn thresholds_parse_as_kubelet_flags() {
    let grace: BTreeMap<Signal, Duration> =
        [(Signal::MemoryAvailable, Duration::from_secs(90))].into();
    let ok: Vec<(&str, bool, Vec<(Signal, Value)>)> = vec![
        (
            DEFAULT_HARD,
            true,
            vec![
                (Signal::MemoryAvailable, Value::Quantity(100 << 20)),
                (Signal::NodeFsAvailable, Value::Percentage(5.0)),
                (Signal::ImageFsAvailable, Value::Percentage(5.0)),
                (Signal::NodeFsInodesFree, Value::Percentage(5.0)),
            ],
        ),
        ("", true, vec![]),
        (
            " nodefs.available < 40% , pid.available<1k",
            true,
            vec![
                (Signal::NodeFsAvailable, Value::Percentage(40.0)),
                (Signal::PidAvailable, Value::Quantity(1000)),
            ],
        ),
        // 0% turns the signal off.
        ("imagefs.available<0%", true, vec![]),
        (
            "memory.available<1.5Gi",
            false,
            vec![(Signal::MemoryAvailable, Value::Quantity(1536 << 20))],
        ),
    ];
    for (s, hard, want) in ok {
        let got = parse_thresholds("--eviction-hard", s, hard, &grace).unwrap();
        let got: Vec<(Signal, Value)> = got.into_iter().map(|t| (t.signal, t.value)).collect();
        assert_eq!(got, want, "{s}");
    }
    let bad: Vec<(&str, bool, &str)> = vec![
        ("memory.available>100Mi", true, "unsupported operator >"),
        ("memory.available=100Mi", true, "unsupported operator ="),
        ("disk.available<1Gi", true, "unsupported eviction signal"),
        (
            "memory.available<100Mi,memory.available<1Gi",
            true,
            "duplicate",
        ),
        ("nodefs.available<101%", true, "between 0% and 100%"),
        ("nodefs.available<-1%", true, "between 0% and 100%"),
        ("nodefs.available<x%", true, "invalid percentage"),
        ("memory.available<lots", true, "invalid quantity"),
        ("memory.available<0", true, "must be positive"),
        ("memory.available<-1Mi", true, "must be positive"),
        ("nodefs.available<10%", false, "no grace period"),
    ];
    for (s, hard, want) in bad {
        let e = parse_thresholds("--eviction-hard", s, hard, &grace).unwrap_err();
        assert!(e.contains(want), "{s}: {e}");
        assert!(e.starts_with("--eviction-hard"), "{e}");
    }
}

#[test]
fn grace_periods_and_config() {
    let cases: Vec<(&str, Result<Vec<(Signal, u64)>, &str>)> = vec![
        (
            "memory.available=1m30s",
            Ok(vec![(Signal::MemoryAvailable, 90)]),
        ),
        (
            "memory.available=90s, nodefs.available=2h",
            Ok(vec![
                (Signal::MemoryAvailable, 90),
                (Signal::NodeFsAvailable, 7200),
            ]),
        ),
        ("", Ok(vec![])),
        ("memory.available", Err("expected signal=duration")),
        ("memory.available=-1s", Err("must not be negative")),
        ("memory.available=soon", Err("memory.available=soon")),
        ("cpu.available=1s", Err("unsupported eviction signal")),
        ("memory.available=1s,memory.available=2s", Err("duplicate")),
    ];
    for (s, want) in cases {
        let got = parse_grace_periods(s).map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.as_secs()))
                .collect::<Vec<_>>()
        });
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{s}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{s}: {e}"),
            (g, w) => panic!("{s}: got {g:?}, want {w:?}"),
        }
    }
    let c = Config::new(
        "memory.available<100Mi",
        "memory.available<1Gi",
        "memory.available=1m30s",
        "",
        Duration::from_secs(5),
        0,
    )
    .unwrap();
    assert_eq!(c.thresholds.len(), 2);
    assert!(c.thresholds[0].hard && !c.thresholds[1].hard);
    assert_eq!(c.thresholds[1].grace_period, Duration::from_secs(90));
    let e = Config::new("", "", "nodefs.available=1m", "", Duration::ZERO, 0).unwrap_err();
    assert!(e.contains("no --eviction-soft threshold"), "{e}");
    assert_eq!(Config::default().thresholds.len(), 4);
}

#[test]
fn memory_and_pid_signals_parse() {
    let meminfo = "MemTotal:       1000 kB\nMemFree:         300 kB\nMemAvailable:    600 kB\n";
    let v1_stat = "cache 5\ntotal_inactive_file 102400\n";
    let v2_stat = "anon 1\ninactive_file 204800\n";
    let cases: Vec<(Option<(&str, &str)>, Option<&str>, i128, MemorySource)> = vec![
        // v1: 1000k - (512000 - 102400) bytes.
        (
            Some(("512000\n", v1_stat)),
            None,
            1_024_000 - (512_000 - 102_400),
            MemorySource::CgroupV1,
        ),
        // v2: working set = (1000k - 300k) - 200k.
        (
            None,
            Some(v2_stat),
            1_024_000 - (700 * 1024 - 204_800),
            MemorySource::CgroupV2,
        ),
        // Unreadable cgroup files: MemAvailable.
        (
            Some(("x", v1_stat)),
            None,
            600 * 1024,
            MemorySource::MemAvailable,
        ),
        (None, None, 600 * 1024, MemorySource::MemAvailable),
    ];
    for (v1, v2, available, source) in cases {
        let (o, s) = memory_available(meminfo, v1, v2).unwrap();
        assert_eq!((o.available, o.capacity, s), (available, 1_024_000, source));
    }
    assert!(memory_available("", None, None).is_none());
    let p = pid_available("4194304\n", "190000\n", "0.10 0.20 0.30 2/350 999\n").unwrap();
    assert_eq!((p.available, p.capacity), (190_000 - 350, 190_000));
    assert_eq!(
        pid_available("32768", "999999", "0 0 0 1/100 1")
            .unwrap()
            .available,
        32768 - 100
    );
    assert!(pid_available("32768", "", "garbage").is_none());
}

fn obs(list: &[(Signal, i128, i128)]) -> Observations {
    list.iter()
        .map(|(s, available, capacity)| {
            (
                *s,
                Observation {
                    available: *available,
                    capacity: *capacity,
                },
            )
        })
        .collect()
}

#[test]
fn conditions_grace_periods_and_transition() {
    let config = Config::new(
        "memory.available<100,nodefs.available<10%",
        "memory.available<500",
        "memory.available=30s",
        "",
        Duration::from_secs(60),
        0,
    )
    .unwrap();
    let mut m = Manager::new(config);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    use Condition::*;
    use Signal::*;
    // (seconds, observations, pressure, signals to act on (hard?))
    let steps: Vec<(u64, Observations, Vec<Condition>, Vec<(Signal, bool)>)> = vec![
        (
            0,
            obs(&[(MemoryAvailable, 1000, 2000), (NodeFsAvailable, 50, 100)]),
            vec![],
            vec![],
        ),
        // Soft memory threshold met: condition at once, no action yet.
        (
            10,
            obs(&[(MemoryAvailable, 400, 2000), (NodeFsAvailable, 50, 100)]),
            vec![MemoryPressure],
            vec![],
        ),
        (
            30,
            obs(&[(MemoryAvailable, 400, 2000), (NodeFsAvailable, 50, 100)]),
            vec![MemoryPressure],
            vec![],
        ),
        // 30 s since first met: act on the soft threshold.
        (
            40,
            obs(&[(MemoryAvailable, 400, 2000), (NodeFsAvailable, 50, 100)]),
            vec![MemoryPressure],
            vec![(MemoryAvailable, false)],
        ),
        // Hard disk threshold (9 < 10% of 100) acts at once; memory first.
        (
            50,
            obs(&[(MemoryAvailable, 50, 2000), (NodeFsAvailable, 9, 100)]),
            vec![MemoryPressure, DiskPressure],
            vec![
                (MemoryAvailable, true),
                (MemoryAvailable, false),
                (NodeFsAvailable, true),
            ],
        ),
        // Relieved: conditions stay for the transition period (60 s).
        (
            60,
            obs(&[(MemoryAvailable, 1000, 2000), (NodeFsAvailable, 50, 100)]),
            vec![MemoryPressure, DiskPressure],
            vec![],
        ),
        (
            109,
            obs(&[(MemoryAvailable, 1000, 2000), (NodeFsAvailable, 50, 100)]),
            vec![MemoryPressure, DiskPressure],
            vec![],
        ),
        (
            110,
            obs(&[(MemoryAvailable, 1000, 2000), (NodeFsAvailable, 50, 100)]),
            vec![],
            vec![],
        ),
        // Met again: the soft grace period starts over.
        (
            120,
            obs(&[(MemoryAvailable, 400, 2000), (NodeFsAvailable, 10, 100)]),
            vec![MemoryPressure],
            vec![],
        ),
        (
            149,
            obs(&[(MemoryAvailable, 400, 2000)]),
            vec![MemoryPressure],
            vec![],
        ),
        (
            150,
            obs(&[(MemoryAvailable, 400, 2000)]),
            vec![MemoryPressure],
            vec![(MemoryAvailable, false)],
        ),
    ];
    for (s, o, pressure, act) in steps {
        let out = m.synchronize(&o, at(s));
        assert_eq!(out.pressure, pressure.into_iter().collect(), "at {s}s");
        let got: Vec<(Signal, bool)> = out.act_on.iter().map(|t| (t.signal, t.hard)).collect();
        assert_eq!(got, act, "at {s}s");
    }
}

fn usage(containers: &[(&str, u64, u64, u64)], volumes: u64) -> PodUsage {
    PodUsage {
        containers: containers
            .iter()
            .map(|(name, memory, rootfs, logs)| ContainerUsage {
                name: (*name).into(),
                memory: Some(*memory),
                rootfs: Some(FsUse {
                    bytes: *rootfs,
                    inodes: 1,
                }),
                logs: Some(FsUse {
                    bytes: *logs,
                    inodes: 1,
                }),
            })
            .collect(),
        volumes: FsUse {
            bytes: volumes,
            inodes: 1,
        },
        empty_dirs: BTreeMap::new(),
    }
}

fn ranked(name: &str, priority: i32, memory_request: &str, disk_request: &str) -> Pod {
    let mut requests = serde_json::Map::new();
    if !memory_request.is_empty() {
        requests.insert("memory".into(), json!(memory_request));
    }
    if !disk_request.is_empty() {
        requests.insert("ephemeral-storage".into(), json!(disk_request));
    }
    pod(json!({
        "metadata": {"name": name},
        "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": requests}}]}
    }))
}

#[test]
fn pods_rank_as_the_kubelet_ranks_them() {
    // (pod, its usage: memory, rootfs, logs, volumes)
    let pods = [
        (
            ranked("within-request", 0, "1000", "1000"),
            Some(usage(&[("c", 900, 100, 0)], 500)),
        ),
        (
            ranked("over-low-prio", -10, "100", ""),
            Some(usage(&[("c", 200, 10, 0)], 10)),
        ),
        (
            ranked("over-big", 0, "100", "10"),
            Some(usage(&[("c", 900, 10, 10)], 900)),
        ),
        (
            ranked("over-small", 0, "100", "10"),
            Some(usage(&[("c", 300, 10, 10)], 30)),
        ),
        (
            ranked("high-prio-over", 1000, "", ""),
            Some(usage(&[("c", 5000, 5000, 0)], 0)),
        ),
        (ranked("no-stats", 5000, "", ""), None),
    ];
    let refs: Vec<(&Pod, Option<&PodUsage>)> = pods.iter().map(|(p, u)| (p, u.as_ref())).collect();
    let names = |order: Vec<usize>| -> Vec<String> {
        order
            .into_iter()
            .map(|i| refs[i].0.metadata.name.clone().unwrap())
            .collect()
    };
    let cases: Vec<(Signal, bool, Vec<&str>)> = vec![
        (
            Signal::MemoryAvailable,
            false,
            vec![
                "no-stats",
                "over-low-prio",
                "over-big",
                "over-small",
                "high-prio-over",
                "within-request",
            ],
        ),
        // Disk, one filesystem: rootfs + logs + volumes above the request.
        // within-request uses 600 of 1000; over-small 50 of 10.
        (
            Signal::NodeFsAvailable,
            false,
            vec![
                "no-stats",
                "over-low-prio",
                "over-big",
                "over-small",
                "high-prio-over",
                "within-request",
            ],
        ),
        // With an image filesystem, nodefs counts logs and volumes only:
        // high-prio-over's 5000 of writable layer does not count there
        // (0 of 0: not over, and it ranks after within-request by
        // priority).
        (
            Signal::NodeFsAvailable,
            true,
            vec![
                "no-stats",
                "over-low-prio",
                "over-big",
                "over-small",
                "within-request",
                "high-prio-over",
            ],
        ),
        // And imagefs the writable layers: over-big and over-small use
        // 10 of 10 (not over, 0 above: before within-request's -900);
        // high-prio-over is over.
        (
            Signal::ImageFsAvailable,
            true,
            vec![
                "no-stats",
                "over-low-prio",
                "high-prio-over",
                "over-big",
                "over-small",
                "within-request",
            ],
        ),
        // PID pressure: priority alone.
        (
            Signal::PidAvailable,
            false,
            vec![
                "over-low-prio",
                "within-request",
                "over-big",
                "over-small",
                "high-prio-over",
                "no-stats",
            ],
        ),
    ];
    for (signal, separate, want) in cases {
        assert_eq!(
            names(rank(&refs, signal, separate)),
            want,
            "{signal:?} separate={separate}"
        );
    }
}

#[test]
fn critical_pods_and_grace_periods() {
    let cases: Vec<(serde_json::Value, bool)> = vec![
        (json!({"metadata": {}, "spec": {"containers": []}}), false),
        (
            json!({"metadata": {"annotations": {"kubernetes.io/config.source": "file"}}}),
            true,
        ),
        (
            json!({"metadata": {"annotations": {"kubernetes.io/config.source": "api"}}}),
            false,
        ),
        (
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
            true,
        ),
        (
            json!({"metadata": {}, "spec": {"priority": 2000000000, "containers": []}}),
            true,
        ),
        (
            json!({"metadata": {}, "spec": {"priority": 1999999999, "containers": []}}),
            false,
        ),
    ];
    for (p, want) in cases {
        assert_eq!(is_critical(&pod(p.clone())), want, "{p}");
    }
    let hard = Threshold {
        signal: Signal::MemoryAvailable,
        value: Value::Quantity(1),
        grace_period: Duration::ZERO,
        hard: true,
        min_reclaim: None,
    };
    let soft = Threshold {
        hard: false,
        ..hard.clone()
    };
    let p = |g: Option<i64>| {
        pod(json!({"spec": {"terminationGracePeriodSeconds": g, "containers": []}}))
    };
    let cases = [
        (&hard, None, 0, 1),
        (&hard, Some(60), 10, 1),
        (&soft, Some(60), 10, 10),
        (&soft, Some(5), 10, 5),
        (&soft, Some(60), 0, 60),
        (&soft, None, 0, 30),
        (&soft, None, -1, 30),
    ];
    for (t, g, max, want) in cases {
        assert_eq!(grace_period(t, &p(g), max), want, "{} {g:?} {max}", t.hard);
    }
}

#[test]
fn eviction_messages_are_the_kubelets() {
    let threshold = Threshold {
        signal: Signal::NodeFsAvailable,
        value: Value::Percentage(10.0),
        grace_period: Duration::ZERO,
        hard: true,
        min_reclaim: None,
    };
    let p = pod(json!({"spec": {"containers": [
        {"name": "x", "resources": {"requests": {"ephemeral-storage": "10Mi"}}},
        {"name": "y"}
    ]}}));
    let o = Observation {
        available: 3 << 20,
        capacity: 100 << 20,
    };
    let u = usage(&[("x", 0, 30 << 20, 10 << 20), ("y", 0, 1 << 20, 0)], 0);
    assert_eq!(
        message(Signal::NodeFsAvailable, &threshold, Some(&o), &p, Some(&u)),
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, available: 3Mi. \
         Container x was using 40Mi, request is 10Mi, has larger consumption of ephemeral-storage. \
         Container y was using 1Mi, request is 0, has larger consumption of ephemeral-storage. "
    );
    let mem = Threshold {
        signal: Signal::MemoryAvailable,
        value: Value::Quantity(100 << 20),
        ..threshold.clone()
    };
    let u = usage(&[("x", 5 << 20, 0, 0), ("y", 1000, 0, 0)], 0);
    let o = Observation {
        available: 1536 << 20,
        capacity: 8 << 30,
    };
    assert_eq!(
        message(Signal::MemoryAvailable, &mem, Some(&o), &p, Some(&u)),
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 1536Mi. \
         Container x was using 5Mi, request is 0, has larger consumption of memory. \
         Container y was using 1000, request is 0, has larger consumption of memory. "
    );
    assert_eq!(
        message(Signal::MemoryAvailable, &mem, None, &p, None),
        "The node was low on resource: memory. "
    );
}

#[test]
fn admission_under_pressure() {
    use Condition::*;
    let best_effort = json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}});
    let burstable = json!({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "10Mi"}}}]}});
    let tolerating = json!({"metadata": {}, "spec": {"containers": [{"name": "c"}],
        "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}});
    let critical =
        json!({"metadata": {}, "spec": {"priority": 2000001000, "containers": [{"name": "c"}]}});
    let cases: Vec<(&serde_json::Value, Vec<Condition>, Option<&str>)> = vec![
        (&best_effort, vec![], None),
        (
            &best_effort,
            vec![MemoryPressure],
            Some("The node had condition: [MemoryPressure]. "),
        ),
        (&burstable, vec![MemoryPressure], None),
        (&tolerating, vec![MemoryPressure], None),
        (
            &burstable,
            vec![DiskPressure],
            Some("The node had condition: [DiskPressure]. "),
        ),
        (
            &tolerating,
            vec![MemoryPressure, DiskPressure],
            Some("The node had condition: [MemoryPressure DiskPressure]. "),
        ),
        (
            &burstable,
            vec![PIDPressure],
            Some("The node had condition: [PIDPressure]. "),
        ),
        (&critical, vec![MemoryPressure, DiskPressure], None),
    ];
    for (p, pressure, want) in cases {
        let got = admit(&pod(p.clone()), &pressure.iter().copied().collect());
        assert_eq!(got.err().as_deref(), want, "{p} {pressure:?}");
    }
}

#[test]
fn disk_use_is_counted_like_du() {
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("volumes/kubernetes.io~empty-dir");
    std::fs::create_dir_all(ed.join("scratch/sub")).unwrap();
    std::fs::write(ed.join("scratch/sub/f"), vec![1u8; 64 << 10]).unwrap();
    std::fs::write(ed.join("scratch/g"), vec![1u8; 8 << 10]).unwrap();
    let u = observe::volumes(dir.path());
    assert!(u.bytes >= 72 << 10, "{u:?}");
    assert_eq!(u.inodes, 4, "scratch, sub, f and g: {u:?}");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("c1")).unwrap();
    std::fs::write(logs.join("c1/0.log"), vec![1u8; 16 << 10]).unwrap();
    let l = observe::logs(&logs);
    assert!(l["c1"].bytes >= 16 << 10);
    assert_eq!(
        observe::volumes(&dir.path().join("missing")),
        FsUse::default()
    );
}

#[test]
fn this_host_has_every_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (obs, separate) = observe::node(dir.path(), Some(dir.path()));
    assert!(!separate, "one directory is one filesystem");
    for s in Signal::ALL {
        let o = obs.get(&s).unwrap_or_else(|| panic!("{s:?} not measured"));
        assert!(o.capacity > 0 && o.available <= o.capacity, "{s:?}: {o:?}");
    }
    assert_eq!(
        obs[&Signal::NodeFsAvailable],
        obs[&Signal::ImageFsAvailable]
    );
}

#[test]
fn pods_over_their_own_local_storage_limits() {
    let spec = |containers: serde_json::Value, volumes: serde_json::Value| {
        pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers, "volumes": volumes}}),
        )
    };
    let limited = |name: &str, l: &str| json!({"name": name, "resources": {"limits": {"ephemeral-storage": l}}});
    let plain = |name: &str| json!({"name": name});
    let scratch = json!([
        {"name": "scratch", "emptyDir": {"sizeLimit": "10Mi"}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "free", "emptyDir": {}}
    ]);
    const MI: u64 = 1 << 20;
    // (pod, container usage (name, rootfs, logs), node-fs volumes, emptyDir sizes, message)
    let cases: Vec<(
        Pod,
        Vec<(&str, u64, u64)>,
        u64,
        Vec<(&str, u64)>,
        Option<&str>,
    )> = vec![
        (
            spec(json!([plain("c")]), json!([])),
            vec![("c", 900 * MI, 0)],
            0,
            vec![],
            None,
        ),
        (
            spec(json!([plain("c")]), scratch.clone()),
            vec![("c", 0, 0)],
            10 * MI,
            vec![("scratch", 10 * MI), ("cache", MI)],
            None,
        ),
        (
            spec(json!([plain("c")]), scratch.clone()),
            vec![("c", 0, 0)],
            11 * MI,
            vec![("scratch", 11 * MI), ("free", 500 * MI)],
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"10Mi\". "),
        ),
        // A Memory emptyDir counts against its sizeLimit too.
        (
            spec(json!([plain("c")]), scratch.clone()),
            vec![("c", 0, 0)],
            0,
            vec![("cache", 2 * MI)],
            Some("Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". "),
        ),
        // Pod total: containers' layers and logs plus local volumes over
        // the summed limits (the sum printed as Kubernetes sums).
        (
            spec(
                json!([limited("a", "10Mi"), limited("b", "10Mi"), plain("c")]),
                json!([{"name": "free", "emptyDir": {}}]),
            ),
            vec![("a", MI, MI), ("b", MI, 0), ("c", 0, 0)],
            18 * MI,
            vec![("free", 18 * MI)],
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 20Mi. "),
        ),
        (
            spec(
                json!([limited("a", "10Mi"), limited("b", "10Mi")]),
                json!([]),
            ),
            vec![("a", 5 * MI, 0), ("b", 9 * MI, MI)],
            0,
            vec![],
            None,
        ),
        // One container over its own limit, the pod within its total.
        (
            spec(
                json!([limited("a", "10Mi"), limited("b", "100Mi")]),
                json!([]),
            ),
            vec![("a", 10 * MI, 1), ("b", 0, 0)],
            0,
            vec![],
            Some("Container a exceeded its local ephemeral storage limit \"10Mi\". "),
        ),
    ];
    for (p, containers, volumes, dirs, want) in cases {
        let mut u = usage(
            &containers
                .iter()
                .map(|(n, r, l)| (*n, 0, *r, *l))
                .collect::<Vec<_>>(),
            volumes,
        );
        u.empty_dirs = dirs.iter().map(|(n, b)| (n.to_string(), *b)).collect();
        assert_eq!(
            local_storage_violation(&p, &u).as_deref(),
            want,
            "{containers:?} {dirs:?}"
        );
        let declared = has_local_storage_limits(&p);
        if want.is_some() {
            assert!(declared);
        }
    }
    assert!(!has_local_storage_limits(&spec(
        json!([plain("c")]),
        json!([{"name": "v", "emptyDir": {}}])
    )));
}

#[test]
fn minimum_reclaims_parse_and_hold_a_threshold_until_reclaimed() {
    let ok = parse_minimum_reclaims(
        " memory.available=0Mi, nodefs.available=500Mi,imagefs.available=2%",
    )
    .unwrap();
    assert_eq!(
        ok.into_iter().collect::<Vec<_>>(),
        vec![
            (Signal::MemoryAvailable, Value::Quantity(0)),
            (Signal::NodeFsAvailable, Value::Quantity(500 << 20)),
            (Signal::ImageFsAvailable, Value::Percentage(2.0)),
        ]
    );
    for (bad, want) in [
        ("memory.available<1Gi", "expected signal=value"),
        ("disk.available=1Gi", "unsupported eviction signal"),
        (
            "memory.available=-1Mi",
            "negative reclaim defined for signal memory.available",
        ),
        ("nodefs.available=120%", "percentage must be between"),
        ("nodefs.available=1Gi,nodefs.available=2Gi", "duplicate"),
    ] {
        let e = parse_minimum_reclaims(bad).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }

    // nodefs.available<10 with a minimum reclaim of 20: once met, held
    // until 30 are available.
    let config = Config::new(
        "nodefs.available<10",
        "",
        "",
        "nodefs.available=20",
        Duration::ZERO,
        0,
    )
    .unwrap();
    assert_eq!(config.thresholds[0].min_reclaim, Some(Value::Quantity(20)));
    let mut m = Manager::new(config);
    let t0 = Instant::now();
    use Signal::*;
    // (available, acted on)
    for (i, (available, acting)) in [
        (50, false),
        (25, false), // Below 30 but never met: nothing.
        (9, true),
        (15, true), // Above the threshold, not above threshold + reclaim.
        (29, true),
        (30, false),
        (15, false), // Resolved: back to the plain threshold.
    ]
    .into_iter()
    .enumerate()
    {
        let out = m.synchronize(
            &obs(&[(NodeFsAvailable, available, 100)]),
            t0 + Duration::from_secs(i as u64 * 10),
        );
        assert_eq!(
            !out.act_on.is_empty(),
            acting,
            "step {i}: {available} available"
        );
    }
}
