use super::*;
use crate::env::StaticObjects;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, ObjectFieldSelector, PodSpec,
    ProjectedVolumeSource, SecretVolumeSource, ServiceAccountTokenProjection, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::os::unix::fs::PermissionsExt;

struct TokenObjects(StaticObjects, Mutex<u32>);

#[async_trait::async_trait]
impl Objects for TokenObjects {
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, String> {
        self.0.config_map(ns, name).await
    }
    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::Secret>, String> {
        self.0.secret(ns, name).await
    }
    async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        audience: Option<&str>,
        exp: i64,
    ) -> Result<(String, i64), String> {
        let mut n = self.1.lock().unwrap();
        *n += 1;
        Ok((
            format!("tok-{ns}-{name}-{}-{exp}-{n}", audience.unwrap_or("api")),
            exp,
        ))
    }
}

fn vol(name: &str) -> Volume {
    Volume {
        name: name.into(),
        ..Volume::default()
    }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("sa".into()),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn sets_up_each_type() {
    let tmp = tempfile::tempdir().unwrap();
    let pod_dir = tmp.path().join("pod");
    let host = tmp.path().join("host");
    let objects = TokenObjects(StaticObjects::default(), Mutex::new(0));
    objects
        .0
        .put_config_map("ns", "cm", &[("a", "1"), ("b", "2")]);
    objects.0.put_secret("ns", "s", &[("pw", b"hunter2")]);
    let mut v = vec![
        vol("scratch"),
        vol("host"),
        vol("cm"),
        vol("sec"),
        vol("dapi"),
        vol("proj"),
    ];
    v[0].empty_dir = Some(EmptyDirVolumeSource::default());
    v[1].host_path = Some(HostPathVolumeSource {
        path: host.display().to_string(),
        type_: Some("DirectoryOrCreate".into()),
    });
    v[2].config_map = Some(ConfigMapVolumeSource {
        name: "cm".into(),
        items: Some(vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: None,
        }]),
        ..Default::default()
    });
    v[3].secret = Some(SecretVolumeSource {
        secret_name: Some("s".into()),
        default_mode: Some(0o400),
        ..Default::default()
    });
    let name_file = DownwardAPIVolumeFile {
        path: "name".into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: "metadata.name".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    v[4].downward_api = Some(DownwardAPIVolumeSource {
        items: Some(vec![
            name_file.clone(),
            DownwardAPIVolumeFile {
                path: "labels".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    });
    v[5].projected = Some(ProjectedVolumeSource {
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(3607),
                    audience: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: "cm".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![name_file]),
                }),
                ..Default::default()
            },
        ]),
        default_mode: Some(0o420),
    });
    let p = pod(v);
    let tokens = Tokens::default();
    let ctx = PodContext::default();
    let got = setup(&p, &ctx, &objects, &tokens, &pod_dir).await.unwrap();

    let scratch = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch");
    assert_eq!(
        got["scratch"],
        Prepared {
            path: scratch.clone(),
            read_only: false
        }
    );
    assert_eq!(mode(&scratch), 0o777);
    assert!(host.is_dir());
    assert_eq!(got["host"].path, host);
    let cm = &got["cm"].path;
    assert!(got["cm"].read_only);
    assert_eq!(read(&cm.join("dir/b.txt")), "2");
    assert!(!cm.join("a").exists());
    assert_eq!(mode(&got["sec"].path.join("pw")), 0o400);
    assert_eq!(read(&got["sec"].path.join("pw")), "hunter2");
    assert_eq!(read(&got["dapi"].path.join("name")), "p");
    assert_eq!(read(&got["dapi"].path.join("labels")), "app=\"web\"\n");
    let proj = &got["proj"].path;
    assert_eq!(read(&proj.join("token")), "tok-ns-sa-api-3607-1");
    assert_eq!(read(&proj.join("a")), "1");
    assert_eq!(read(&proj.join("name")), "p");
    assert_eq!(mode(&proj.join("a")), 0o420);

    // A later sync follows the ConfigMap and keeps the token.
    objects
        .0
        .put_config_map("ns", "cm", &[("a", "1"), ("b", "3")]);
    setup(&p, &ctx, &objects, &tokens, &pod_dir).await.unwrap();
    assert_eq!(read(&cm.join("dir/b.txt")), "3");
    assert_eq!(read(&proj.join("token")), "tok-ns-sa-api-3607-1");

    // Mounts.
    let c = Container {
        name: "c".into(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "scratch".into(),
                mount_path: "/data".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "host".into(),
                mount_path: "/h".into(),
                read_only: Some(true),
                sub_path_expr: Some("$(POD)".into()),
                ..Default::default()
            },
            VolumeMount {
                name: "cm".into(),
                mount_path: "/etc/cm".into(),
                ..Default::default()
            },
        ]),
        ..Container::default()
    };
    let mounts = container_mounts(&c, &got, &[("POD".into(), "p1".into())]).unwrap();
    assert_eq!(
        mounts,
        [
            Mount {
                container_path: "/data".into(),
                host_path: scratch.display().to_string(),
                readonly: false
            },
            Mount {
                container_path: "/h".into(),
                host_path: host.join("p1").display().to_string(),
                readonly: true
            },
            Mount {
                container_path: "/etc/cm".into(),
                host_path: cm.display().to_string(),
                readonly: true
            },
        ]
    );
    assert!(host.join("p1").is_dir());
    let bad = Container {
        name: "c".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "nope".into(),
            mount_path: "/x".into(),
            ..Default::default()
        }]),
        ..Container::default()
    };
    assert_eq!(
        container_mounts(&bad, &got, &[]).unwrap_err(),
        "cannot find volume \"nope\" to mount into container \"c\""
    );

    teardown(&pod_dir);
    assert!(!pod_dir.exists());
    assert!(host.exists());
}

#[tokio::test]
async fn failures_name_the_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let objects = StaticObjects::default();
    objects.put_config_map("ns", "cm", &[("a", "1")]);
    let cm = |name: &str, key: Option<&str>, optional: Option<bool>| {
        let mut v = vol("v");
        v.config_map = Some(ConfigMapVolumeSource {
            name: name.into(),
            optional,
            items: key.map(|k| {
                vec![KeyToPath {
                    key: k.into(),
                    path: "x".into(),
                    mode: None,
                }]
            }),
            ..Default::default()
        });
        v
    };
    let mut sec = vol("v");
    sec.secret = Some(SecretVolumeSource {
        secret_name: Some("gone".into()),
        ..Default::default()
    });
    let mut hp = vol("v");
    hp.host_path = Some(HostPathVolumeSource {
        path: "/nonexistent-rkube-x".into(),
        type_: Some("Directory".into()),
    });
    let cases: Vec<(Volume, Result<(), &str>)> = vec![
        (cm("gone", None, None), Err("MountVolume.SetUp failed for volume \"v\" : configmap \"gone\" not found")),
        (cm("gone", None, Some(true)), Ok(())),
        (cm("cm", Some("zz"), None), Err("MountVolume.SetUp failed for volume \"v\" : configMap references non-existent config key: zz")),
        (cm("cm", Some("zz"), Some(true)), Ok(())),
        (sec, Err("MountVolume.SetUp failed for volume \"v\" : secret \"gone\" not found")),
        (hp, Err("MountVolume.SetUp failed for volume \"v\" : hostPath type check failed: /nonexistent-rkube-x is not a directory")),
    ];
    for (i, (v, want)) in cases.into_iter().enumerate() {
        let got = setup(
            &pod(vec![v]),
            &PodContext::default(),
            &objects,
            &Tokens::default(),
            &tmp.path().join(i.to_string()),
        )
        .await
        .map(|_| ());
        assert_eq!(got, want.map_err(|e| e.to_owned()), "case {i}");
    }
}
