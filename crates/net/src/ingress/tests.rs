use super::{default_class, node_ips, rkube_is_default, CONTROLLER_NAME};
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

#[test]
fn node_ips_are_internal_sorted_unique() {
    let node = |addrs: serde_json::Value| -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"addresses": addrs}}))
            .unwrap()
    };
    let cases: &[(Vec<Node>, Vec<&str>)] = &[
        (vec![], vec![]),
        (
            vec![serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap()],
            vec![],
        ),
        (
            vec![
                node(json!([{"type": "InternalIP", "address": "10.0.0.2"},
                            {"type": "ExternalIP", "address": "203.0.113.1"},
                            {"type": "Hostname", "address": "a"}])),
                node(json!([{"type": "InternalIP", "address": "10.0.0.1"},
                            {"type": "InternalIP", "address": "10.0.0.2"}])),
            ],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
    ];
    for (nodes, want) in cases {
        assert_eq!(&node_ips(nodes), want);
    }
}

#[test]
fn created_class_is_the_default_rkube_class() {
    let class = default_class();
    assert_eq!(
        class.spec.as_ref().unwrap().controller.as_deref(),
        Some(CONTROLLER_NAME)
    );
    assert!(rkube_is_default(&[class]));
}
