//! Bodies real kubectl sent (testdata/, captured by testdata/capture.sh)
//! compared with the JSON kubectl prints for the same objects, and bodies
//! encoded the way client-go encodes them (prost types generated from
//! Kubernetes' own .proto files), decoded and compared field by field.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

use super::{decode_to_json, go_duration, is_protobuf, message_for};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn decode(api_version: &str, kind: &str, msg: &impl Message) -> Value {
    decode_to_json(&envelope(api_version, kind, msg.encode_to_vec())).unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.into())
}

fn time(seconds: i64) -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    })
}

/// ObjectMeta as Go writes it: every non-pointer string, set or not.
fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    })
}

fn int_or_string(v: Value) -> Option<IntOrString> {
    Some(match v {
        Value::String(s) => IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: Some(s),
        },
        v => IntOrString {
            r#type: Some(0),
            int_val: Some(v.as_i64().unwrap() as i32),
            str_val: Some(String::new()),
        },
    })
}

fn quantity(q: &str) -> Quantity {
    Quantity { string: s(q) }
}

/// Go's JSON with its nulls (zero times) left out, as the decoder does.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        v => v,
    }
}

macro_rules! captured {
    ($name:literal) => {
        (
            $name,
            &include_bytes!(concat!("testdata/", $name, ".pb"))[..],
            include_str!(concat!("testdata/", $name, ".json")),
        )
    };
}

#[test]
fn real_kubectl_bodies_decode_to_the_json_kubectl_prints() {
    let cases = [
        captured!("configmap"),
        captured!("namespace"),
        captured!("deployment"),
        captured!("deployment-zero"),
        captured!("secret"),
        captured!("secret-docker"),
        captured!("service"),
        captured!("service-nodeport"),
        captured!("service-headless"),
        captured!("job"),
        captured!("cronjob"),
        captured!("quota"),
        captured!("priorityclass"),
        captured!("pdb"),
        captured!("serviceaccount"),
        captured!("ingress"),
        captured!("role"),
        captured!("clusterrole"),
        captured!("rolebinding"),
        captured!("clusterrolebinding"),
        captured!("hpa"),
    ];
    for (name, body, expected) in cases {
        let got = decode_to_json(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = without_nulls(serde_json::from_str(expected).unwrap());
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn real_kubectl_requests_without_a_printed_form() {
    let token = decode_to_json(include_bytes!("testdata/token.pb")).unwrap();
    assert_eq!(
        token,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "metadata": {}, "spec": {"audiences": ["api"], "expirationSeconds": 600},
               "status": {"token": ""}})
    );
    let review = decode_to_json(include_bytes!("testdata/selfsubjectaccessreview.pb")).unwrap();
    assert_eq!(
        review["spec"],
        json!({"resourceAttributes": {"verb": "create", "group": "apps",
                                       "resource": "deployments", "subresource": "scale",
                                       "namespace": "default"}})
    );
    assert_eq!(review["status"], json!({"allowed": false}));
    let whoami = decode_to_json(include_bytes!("testdata/selfsubjectreview.pb")).unwrap();
    assert_eq!(
        whoami,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
               "metadata": {}, "status": {"userInfo": {}}})
    );
    // `kubectl certificate approve` writes back the CSR it read, with the
    // Approved condition: bytes, ExtraValue lists, a pointer int, times.
    let csr = decode_to_json(include_bytes!("testdata/csr-approve.pb")).unwrap();
    assert_eq!(csr["metadata"]["creationTimestamp"], "2025-01-02T03:04:05Z");
    assert_eq!(
        csr["spec"],
        json!({"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
               "signerName": "kubernetes.io/kube-apiserver-client",
               "expirationSeconds": 86400, "usages": ["client auth"], "username": "alice",
               "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["a", "b"]}})
    );
    let cond = &csr["status"]["conditions"][0];
    assert_eq!(cond["type"], "Approved");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "KubectlApprove");
    assert!(cond["lastUpdateTime"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn configmap_with_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: meta("cfg"),
        data: [("a".to_owned(), "1".to_owned()), ("e".into(), "".into())].into(),
        binary_data: [("b".to_owned(), vec![0u8, 1, 2])].into(),
        immutable: Some(false),
    };
    assert_eq!(
        decode("v1", "ConfigMap", &cm),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cfg", "labels": {"app": "web"}},
               "data": {"a": "1", "e": ""}, "binaryData": {"b": "AAEC"}, "immutable": false})
    );
}

#[test]
fn namespace() {
    let ns = core::Namespace {
        metadata: meta("team-a"),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("v1", "Namespace", &ns),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "team-a", "labels": {"app": "web"}},
               "spec": {}, "status": {}})
    );
}

fn deployment(replicas: i32) -> apps::Deployment {
    apps::Deployment {
        metadata: meta("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: int_or_string(json!("25%")),
                    max_unavailable: int_or_string(json!(0)),
                }),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: meta(""),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("nginx"),
                        image: s("nginx:1.25"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            replicas: Some(0),
            observed_generation: Some(0),
            ..Default::default()
        }),
    }
}

#[test]
fn deployment_with_int_or_string_and_replicas() {
    let v = decode("apps/v1", "Deployment", &deployment(3));
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(
        v["spec"],
        json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
               "strategy": {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
               "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}})
    );
    // Non-pointer zeros are Go's "unset" and left out, as Go's JSON does.
    assert_eq!(v["status"], json!({}));
    // A pointer's zero is a value.
    let v = decode("apps/v1", "Deployment", &deployment(0));
    assert_eq!(v["spec"]["replicas"], 0);
}

#[test]
fn pod_with_quantities_times_and_inlined_structs() {
    let container = core::Container {
        name: s("app"),
        image: s("busybox"),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(8080),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_owned(), quantity("500m"))].into(),
            requests: [
                ("cpu".to_owned(), quantity("100m")),
                ("memory".to_owned(), quantity("64Mi")),
            ]
            .into(),
            ..Default::default()
        }),
        env_from: vec![core::EnvFromSource {
            prefix: s(""),
            config_map_ref: Some(core::ConfigMapEnvSource {
                local_object_reference: Some(core::LocalObjectReference { name: s("cfg") }),
                optional: Some(false),
            }),
            secret_ref: None,
        }],
        env: vec![core::EnvVar {
            name: s("KEY"),
            value: s(""),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    key: s("pw"),
                    optional: None,
                }),
                ..Default::default()
            }),
        }],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_or_string(json!("http")),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            termination_grace_period_seconds: None,
        }),
        tty: Some(false),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("shell"),
            namespace: s("default"),
            creation_timestamp: time(1_700_000_000),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-1"),
                uid: s("u-1"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("v1"),
                time: time(1_700_000_001),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{}}}"#.to_vec()),
                }),
                subresource: s(""),
            }],
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![container],
            volumes: vec![core::Volume {
                name: s("config"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cfg") }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            restart_policy: s("Never"),
            termination_grace_period_seconds: Some(0),
            host_network: Some(false),
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    };
    let v = decode("v1", "Pod", &pod);
    assert_eq!(
        v["metadata"],
        json!({"name": "shell", "namespace": "default",
               "creationTimestamp": "2023-11-14T22:13:20Z",
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                    "uid": "u-1", "controller": true, "blockOwnerDeletion": false}],
               "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                                  "time": "2023-11-14T22:13:21Z", "fieldsType": "FieldsV1",
                                  "fieldsV1": {"f:metadata": {"f:labels": {}}}}]})
    );
    assert_eq!(
        v["spec"]["containers"][0],
        json!({"name": "app", "image": "busybox",
               "ports": [{"containerPort": 8080, "protocol": "TCP"}],
               "resources": {"limits": {"cpu": "500m"},
                             "requests": {"cpu": "100m", "memory": "64Mi"}},
               "envFrom": [{"configMapRef": {"name": "cfg", "optional": false}}],
               "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}],
               "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                 "periodSeconds": 10}})
    );
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "config", "configMap": {"name": "cfg", "defaultMode": 420}}])
    );
    assert_eq!(v["spec"]["restartPolicy"], "Never");
    assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 0);
    assert!(v["spec"].get("hostNetwork").is_none());
    assert_eq!(v["status"], json!({}));
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: meta("creds"),
        data: [("pw".to_owned(), b"s3cr3t\xff".to_vec())].into(),
        string_data: Default::default(),
        r#type: s("Opaque"),
        immutable: None,
    };
    let v = decode("v1", "Secret", &secret);
    assert_eq!(v["data"], json!({"pw": "czNjcjN0/w=="}));
    assert_eq!(v["type"], "Opaque");
}

#[test]
fn service_ports_and_pvc_pointer_strings() {
    let port = |name: &str, port: i32, target: Option<IntOrString>| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        app_protocol: None,
        port: Some(port),
        target_port: target,
        node_port: Some(0),
    };
    let svc = core::Service {
        metadata: meta("web"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                port("http", 80, int_or_string(json!(8080))),
                // Unset in Go: a zero IntOrString, which the server defaults.
                port("https", 443, int_or_string(json!(0))),
            ],
            selector: [("app".to_owned(), "web".to_owned())].into(),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let v = decode("v1", "Service", &svc);
    assert_eq!(
        v["spec"],
        json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                         {"name": "https", "protocol": "TCP", "port": 443}],
               "selector": {"app": "web"}, "type": "ClusterIP"})
    );
    assert_eq!(v["status"], json!({"loadBalancer": {}}));

    let pvc = core::PersistentVolumeClaim {
        metadata: meta("data"),
        spec: Some(core::PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".into()],
            resources: Some(core::VolumeResourceRequirements {
                requests: [("storage".to_owned(), quantity("1Gi"))].into(),
                ..Default::default()
            }),
            volume_name: s(""),
            // A pointer: "" means "no class", unlike unset.
            storage_class_name: s(""),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("v1", "PersistentVolumeClaim", &pvc);
    assert_eq!(
        v["spec"],
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
               "storageClassName": ""})
    );
}

#[test]
fn micro_times_leases_and_events() {
    use k8s_pb::api::coordination::v1 as coordination;
    use k8s_pb::api::events::v1 as events;
    let micro = |seconds, nanos| {
        Some(meta::MicroTime {
            seconds: Some(seconds),
            nanos: Some(nanos),
        })
    };
    let lease = coordination::Lease {
        metadata: meta("node-1"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: micro(1_700_000_000, 123_456_789),
            acquire_time: micro(1_700_000_000, 0),
            ..Default::default()
        }),
    };
    let v = decode("coordination.k8s.io/v1", "Lease", &lease);
    assert_eq!(
        v["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40,
               "renewTime": "2023-11-14T22:13:20.123456Z",
               "acquireTime": "2023-11-14T22:13:20.000000Z"})
    );
    let event = events::Event {
        metadata: meta("e1"),
        event_time: micro(1_700_000_000, 5_000),
        reporting_controller: s("kubelet"),
        reason: s("Started"),
        regarding: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("p"),
            ..Default::default()
        }),
        r#type: s("Normal"),
        deprecated_count: Some(0),
        deprecated_first_timestamp: Some(meta::Time::default()),
        ..Default::default()
    };
    let v = decode("events.k8s.io/v1", "Event", &event);
    assert_eq!(v["eventTime"], "2023-11-14T22:13:20.000005Z");
    assert_eq!(v["regarding"], json!({"kind": "Pod", "name": "p"}));
    assert!(v.get("deprecatedCount").is_none());
    assert!(v.get("deprecatedFirstTimestamp").is_none());
}

#[test]
fn delete_options_eviction_scale_and_binding() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    let expected = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": "u-1"},
                          "propagationPolicy": "Foreground", "dryRun": ["All"]});
    // DeleteOptions is registered in every group version.
    for api_version in ["meta.k8s.io/v1", "v1", "apps/v1", "batch/v1"] {
        let mut v = decode(api_version, "DeleteOptions", &opts);
        assert_eq!(v["apiVersion"], api_version);
        let m = v.as_object_mut().unwrap();
        m.remove("apiVersion");
        m.remove("kind");
        assert_eq!(v, expected, "{api_version}");
    }

    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: meta("web-1"),
        delete_options: Some(opts),
    };
    let v = decode("policy/v1", "Eviction", &eviction);
    assert_eq!(v["metadata"]["name"], "web-1");
    assert_eq!(v["deleteOptions"]["gracePeriodSeconds"], 0);

    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: meta("web"),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(5) }),
        status: Some(k8s_pb::api::autoscaling::v1::ScaleStatus {
            replicas: Some(3),
            selector: s("app=web"),
        }),
    };
    let v = decode("autoscaling/v1", "Scale", &scale);
    assert_eq!(v["spec"], json!({"replicas": 5}));
    assert_eq!(v["status"], json!({"replicas": 3, "selector": "app=web"}));

    let binding = core::Binding {
        metadata: meta("p"),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            namespace: s(""),
            ..Default::default()
        }),
    };
    let v = decode("v1", "Binding", &binding);
    assert_eq!(v["target"], json!({"kind": "Node", "name": "node-1"}));
}

#[test]
fn token_and_access_reviews_with_extra_values() {
    use k8s_pb::api::authentication::v1 as authn;
    use k8s_pb::api::authorization::v1 as authz;
    let review = authn::TokenReview {
        metadata: meta(""),
        spec: Some(authn::TokenReviewSpec {
            token: s("abc"),
            audiences: vec!["api".into()],
        }),
        status: None,
    };
    let v = decode("authentication.k8s.io/v1", "TokenReview", &review);
    assert_eq!(v["spec"], json!({"token": "abc", "audiences": ["api"]}));

    let sar = authz::SubjectAccessReview {
        metadata: meta(""),
        spec: Some(authz::SubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("default"),
                verb: s("get"),
                group: s(""),
                resource: s("pods"),
                ..Default::default()
            }),
            user: s("alice"),
            groups: vec!["devs".into()],
            extra: [(
                "scopes".to_owned(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            uid: s(""),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("authorization.k8s.io/v1", "SubjectAccessReview", &sar);
    assert_eq!(
        v["spec"],
        json!({"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"},
               "user": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn custom_resource_definition_schemas() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let props = |ty: &str| ext::JsonSchemaProps {
        r#type: s(ty),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: s("object"),
        schema: s(""),
        properties: [
            (
                "replicas".to_owned(),
                ext::JsonSchemaProps {
                    default: Some(ext::Json {
                        raw: Some(b"1".to_vec()),
                    }),
                    minimum: Some(0.0),
                    ..props("integer")
                },
            ),
            (
                "tags".to_owned(),
                ext::JsonSchemaProps {
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(props("string"))),
                        j_son_schemas: vec![],
                    })),
                    x_kubernetes_list_type: s("set"),
                    ..props("array")
                },
            ),
            (
                "labels".to_owned(),
                ext::JsonSchemaProps {
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: Some(Box::new(props("string"))),
                    })),
                    ..props("object")
                },
            ),
            (
                "free".to_owned(),
                ext::JsonSchemaProps {
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(false),
                        schema: None,
                    })),
                    r#enum: vec![ext::Json {
                        raw: Some(br#"{"a":1}"#.to_vec()),
                    }],
                    ..props("object")
                },
            ),
        ]
        .into(),
        required: vec!["replicas".into()],
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: meta("widgets.example.com"),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                subresources: Some(ext::CustomResourceSubresources {
                    status: Some(ext::CustomResourceSubresourceStatus {}),
                    scale: None,
                }),
                ..Default::default()
            }],
            preserve_unknown_fields: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd);
    let version = &v["spec"]["versions"][0];
    assert_eq!(version["served"], true);
    assert_eq!(version["subresources"], json!({"status": {}}));
    assert_eq!(
        version["schema"]["openAPIV3Schema"],
        json!({"type": "object", "required": ["replicas"], "properties": {
            "replicas": {"type": "integer", "default": 1, "minimum": 0.0},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "additionalProperties": false, "enum": [{"a": 1}]},
        }})
    );
    assert_eq!(
        v["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget"})
    );
}

#[test]
fn raw_extensions_hold_json_yaml_or_protobuf() {
    let inner = envelope("v1", "ConfigMap", {
        core::ConfigMap {
            metadata: meta("inner"),
            ..Default::default()
        }
        .encode_to_vec()
    });
    for (raw, expected) in [
        (br#"{"spec":{"x":1}}"#.to_vec(), json!({"spec": {"x": 1}})),
        (b"spec:\n  x: 1\n".to_vec(), json!({"spec": {"x": 1}})),
        (
            inner,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "inner", "labels": {"app": "web"}}}),
        ),
    ] {
        let rev = apps::ControllerRevision {
            metadata: meta("web-1"),
            data: Some(RawExtension { raw: Some(raw) }),
            revision: Some(2),
        };
        let v = decode("apps/v1", "ControllerRevision", &rev);
        assert_eq!(v["data"], expected);
        assert_eq!(v["revision"], 2);
    }
}

#[test]
fn go_names_that_differ_from_rust_ones() {
    use k8s_pb::api::autoscaling::v2 as hpa;
    use k8s_pb::api::networking::v1 as net;
    let np = net::NetworkPolicy {
        metadata: meta("deny"),
        spec: Some(net::NetworkPolicySpec {
            ingress: vec![net::NetworkPolicyIngressRule {
                from: vec![net::NetworkPolicyPeer {
                    ip_block: Some(net::IpBlock {
                        cidr: s("10.0.0.0/8"),
                        except: vec!["10.1.0.0/16".into()],
                    }),
                    ..Default::default()
                }],
                ports: vec![net::NetworkPolicyPort {
                    protocol: s("TCP"),
                    port: int_or_string(json!(0)),
                    end_port: None,
                }],
            }],
            policy_types: vec!["Ingress".into()],
            ..Default::default()
        }),
    };
    let v = decode("networking.k8s.io/v1", "NetworkPolicy", &np);
    assert_eq!(
        v["spec"]["ingress"],
        json!([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"protocol": "TCP", "port": 0}]}])
    );
    let behavior = hpa::HorizontalPodAutoscalerBehavior {
        scale_down: Some(hpa::HpaScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: s("Max"),
            policies: vec![hpa::HpaScalingPolicy {
                r#type: s("Pods"),
                value: Some(4),
                period_seconds: Some(60),
            }],
            tolerance: None,
        }),
        scale_up: None,
    };
    let a = hpa::HorizontalPodAutoscaler {
        metadata: meta("web"),
        spec: Some(hpa::HorizontalPodAutoscalerSpec {
            behavior: Some(behavior),
            max_replicas: Some(5),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode("autoscaling/v2", "HorizontalPodAutoscaler", &a);
    assert_eq!(
        v["spec"],
        json!({"maxReplicas": 5, "behavior": {"scaleDown": {
            "stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}}})
    );
}

#[test]
fn every_built_in_kind_has_a_message() {
    let mut missing = Vec::new();
    for res in api::registry::all() {
        // Read-only kinds (metrics.k8s.io) are never sent.
        if !res
            .verbs
            .iter()
            .any(|v| ["create", "update", "patch"].contains(v))
        {
            continue;
        }
        let api_version = res.api_version();
        // Create-only kinds (reviews) have no lists.
        let list = res.verbs.contains(&"list").then(|| res.list_kind());
        for kind in [Some(res.kind.to_owned()), list].into_iter().flatten() {
            if message_for(&api_version, &kind).is_none() {
                missing.push(format!("{api_version} {kind}"));
            }
        }
        for sub in res.subresources {
            let api_version = if sub.group.is_empty() {
                sub.version.to_owned()
            } else {
                format!("{}/{}", sub.group, sub.version)
            };
            if !sub.kind.is_empty() && message_for(&api_version, sub.kind).is_none() {
                missing.push(format!("{api_version} {} ({})", sub.kind, sub.name));
            }
        }
    }
    assert!(missing.is_empty(), "no protobuf message for {missing:?}");
}

#[test]
fn durations_as_go_prints_them() {
    for (ns, s) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(ns), s);
    }
}

#[test]
fn content_types_and_bad_bodies() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(decode_to_json(b"not protobuf").is_err());
    assert!(decode_to_json(&envelope("v1", "NoSuchKind", vec![])).is_err());
    assert!(decode_to_json(&envelope("example.com/v1", "Widget", vec![])).is_err());
    let mut truncated = envelope(
        "v1",
        "ConfigMap",
        core::ConfigMap {
            metadata: meta("x"),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    truncated.truncate(truncated.len() - 3);
    assert!(decode_to_json(&truncated).is_err());
}
