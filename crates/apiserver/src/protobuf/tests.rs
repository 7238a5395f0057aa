//! Bodies encoded the way client-go encodes them (prost types generated
//! from Kubernetes' own .proto files), decoded and compared field by field.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::decode_to_json;

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

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: Some(0),
        }),
        ..Default::default()
    })
}

#[test]
fn configmap_with_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: meta("cfg"),
        data: [("a".to_owned(), "1".to_owned())].into(),
        binary_data: [("b".to_owned(), vec![0u8, 1, 2])].into(),
        immutable: Some(false),
    };
    let mut cm = cm;
    // Unset strings arrive as empty strings, as Go writes them.
    cm.metadata.as_mut().unwrap().namespace = Some(String::new());
    let v = decode_to_json(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cfg", "labels": {"app": "web"}, "creationTimestamp": "2023-11-14T22:13:20Z"},
               "data": {"a": "1"}, "binaryData": {"b": "AAEC"}, "immutable": false})
    );
}

#[test]
fn deployment_with_int_or_string_quantities_and_ports() {
    let container = core::Container {
        name: Some("c".into()),
        image: Some("nginx:1.25".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            host_ip: Some("0.0.0.0".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "cpu".to_owned(),
                Quantity {
                    string: Some("500m".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = apps::Deployment {
        metadata: meta("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: None,
                    }),
                }),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: meta(""),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_to_json(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["spec"]["replicas"], 3);
    assert_eq!(
        v["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        v["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": "25%", "maxUnavailable": 1})
    );
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "hostIP": "0.0.0.0"}])
    );
    assert_eq!(c["resources"], json!({"limits": {"cpu": "500m"}}));
}

#[test]
fn bad_bodies_are_errors() {
    assert!(decode_to_json(b"not protobuf").is_err());
    assert!(decode_to_json(&envelope("v1", "NoSuchKind", vec![])).is_err());
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
