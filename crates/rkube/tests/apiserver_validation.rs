//! Validation as kubectl sees it: invalid creates and updates of many kinds
//! answer 422 with Kubernetes' "is invalid:" message naming the field, and
//! nothing is stored or changed; valid updates still go through.

mod support;

use support::Server;

/// Manifests that must be refused on create: (resource/name to look up
/// afterwards, manifest, text kubectl must print).
const INVALID_CREATES: &[(&str, &str, &str)] = &[
    (
        "pod/noimage",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"},
            "spec": {"containers": [{"name": "c"}]}}"#,
        r#"The Pod "noimage" is invalid: spec.containers[0].image: Required value"#,
    ),
    (
        "pod/twoprobes",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "twoprobes"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "livenessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}}}]}}"#,
        r#"The Pod "twoprobes" is invalid: spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type"#,
    ),
    (
        "pod/twovolumesources",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "twovolumesources"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "both", "emptyDir": {}, "hostPath": {"path": "/tmp"}},
                    {"name": "cfg", "secret": {"defaultMode": 1000}}]}}"#,
        "spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type",
    ),
    (
        "pod/twoenvsources",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "twoenvsources"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "A",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}, "secretKeyRef": {"name": "s", "key": "a"}}}]}]}}"#,
        r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
    ),
    (
        "pod/escalate",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escalate"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "securityContext": {"privileged": true, "allowPrivilegeEscalation": false}}]}}"#,
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
    ),
    (
        "pod/windowsuser",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "windowsuser"},
            "spec": {"securityContext": {"windowsOptions": {"runAsUserName": "corp\\team\\alice"}},
                "containers": [{"name": "c", "image": "busybox"}]}}"#,
        r#"spec.securityContext.windowsOptions.runAsUserName: Invalid value: "corp\\team\\alice": runAsUserName cannot contain more than one backslash"#,
    ),
    (
        "configmap/badkey",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "badkey"}, "data": {"bad key": "v"}}"#,
        r#"data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"#,
    ),
    (
        "secret/tls",
        r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "cert"}}"#,
        r#"The Secret "tls" is invalid: data[tls.key]: Required value"#,
    ),
    (
        "service/ext",
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}}"#,
        r#"The Service "ext" is invalid: spec.externalName: Required value"#,
    ),
    (
        "job/always",
        r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "always"},
            "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox"}]}}}}"#,
        r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
    ),
    (
        "cronjob/late",
        r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "late"},
            "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}"#,
        r#"The CronJob "late" is invalid: spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61"#,
    ),
    (
        "deployment/frozen",
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frozen"},
            "spec": {"selector": {"matchLabels": {"app": "f"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "f"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#,
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
    ),
    (
        "horizontalpodautoscaler.autoscaling/hpa",
        r#"{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 3, "maxReplicas": 2}}"#,
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
    ),
    (
        "deployment/badaffinity",
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "badaffinity"},
            "spec": {"selector": {"matchLabels": {"app": "b"}},
                "template": {"metadata": {"labels": {"app": "b"}}, "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}},
                    "containers": [{"name": "c", "image": "busybox"}]}}}}"#,
        r#"The Deployment "badaffinity" is invalid: spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator"#,
    ),
    (
        "horizontalpodautoscaler.autoscaling/badmetric",
        r#"{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "badmetric"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}]}}"#,
        r#"The HorizontalPodAutoscaler "badmetric" is invalid: spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"#,
    ),
    (
        "poddisruptionbudget/both",
        r#"{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}"#,
        "minAvailable and maxUnavailable cannot be both set",
    ),
    (
        "persistentvolumeclaim/claim",
        r#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}}"#,
        r#"The PersistentVolumeClaim "claim" is invalid: spec.accessModes: Required value: at least 1 access mode is required"#,
    ),
    (
        "ingress/nopathtype",
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "nopathtype"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}"#,
        "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
    ),
    (
        "networkpolicy/outside",
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "outside"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]}}"#,
        r#"spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`"#,
    ),
    (
        "role/urls",
        r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "urls"},
            "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}"#,
        r#"rules[0].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs"#,
    ),
    (
        "priorityclass/huge",
        r#"{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "huge"}, "value": 2000000000}"#,
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
    ),
    (
        "endpointslice/v6",
        r#"{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "v6"},
            "addressType": "IPv4", "endpoints": [{"addresses": ["::1"]}]}"#,
        r#"endpoints[0].addresses[0]: Invalid value: "::1": must be a valid IPv4 address"#,
    ),
    (
        "limitrange/inverted",
        r#"{"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "inverted"},
            "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}"#,
        r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#,
    ),
    (
        "customresourcedefinition/gadgets.example.com",
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]}}"#,
        r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
    ),
    (
        "customresourcedefinition/tools.example.com",
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "tools.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "tools", "kind": "Tool"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                       "spec": {"properties": {"size": {"type": "integer"}}}}}}}]}}"#,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
    ),
    (
        "customresourcedefinition/parts.example.com",
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "parts.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "parts", "kind": "Part"},
                     "versions": [
                       {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
                       {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}"#,
        "must have exactly one version marked as storage version",
    ),
];

#[test]
fn invalid_creates_answer_422_and_store_nothing() {
    let s = Server::start();
    for (object, manifest, want) in INVALID_CREATES {
        let err = s.fails_stdin(&["create", "-f", "-"], manifest);
        assert!(
            err.contains(" is invalid: ") && err.contains(want),
            "{object}: kubectl said:\n{err}\nwanted: {want}"
        );
        let get = s.kubectl(&["get", object]);
        assert!(
            !get.status.success() && String::from_utf8_lossy(&get.stderr).contains("NotFound"),
            "{object} was stored: {}",
            String::from_utf8_lossy(&get.stdout)
        );
    }
    // The answer is a 422 whose causes (one per bad field) kubectl lists.
    let out = s.kubectl_stdin(
        &["create", "-f", "-", "-v=6"],
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "two"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080, "protocol": "ICMP"}]}}"#,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("422 Unprocessable Entity"), "{log}");
    for cause in [
        r#"* spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
        "* spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
    ] {
        assert!(log.contains(cause), "no cause {cause} in:\n{log}");
    }
}

/// Objects created first, then updated.
const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: box}
  spec:
    containers:
    - {name: c, image: "busybox:1.36", ports: [{containerPort: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    replicas: 1
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec: {containers: [{name: nginx, image: "nginx:1.25"}]}
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    serviceName: db
    replicas: 1
    selector: {matchLabels: {app: db}}
    template:
      metadata: {labels: {app: db}}
      spec: {containers: [{name: db, image: "busybox:1.36"}]}
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec:
    selector: {app: web}
    ports: [{port: 80}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: frozen}
  immutable: true
  data: {color: blue}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {color: blue}
- apiVersion: v1
  kind: Secret
  metadata: {name: creds}
  stringData: {username: u, password: p}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: viewers}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
  subjects: [{kind: User, name: alice}]
- apiVersion: batch/v1
  kind: Job
  metadata: {name: once}
  spec:
    template:
      spec:
        restartPolicy: Never
        containers: [{name: c, image: "busybox:1.36", command: ["true"]}]
- apiVersion: scheduling.k8s.io/v1
  kind: PriorityClass
  metadata: {name: high}
  value: 1000
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: data}
  spec:
    accessModes: [ReadWriteOnce]
    resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn invalid_updates_answer_422_and_change_nothing() {
    let s = Server::start();
    s.ok_stdin(&["create", "-f", "-"], OBJECTS);
    let ip = s.json(&["get", "service", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(!ip.is_empty() && ip != "None", "no cluster IP allocated");
    // (object, merge patch, text kubectl must print)
    let cases: &[(&str, &str, &str)] = &[
        (
            "pod/box",
            r#"{"spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 8080}]}]}}"#,
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`",
        ),
        (
            "pod/box",
            r#"{"spec": {"restartPolicy": "Never"}}"#,
            "spec: Forbidden: pod updates may not change fields other than",
        ),
        (
            "deployment/web",
            r#"{"spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}}}}"#,
            r#"spec.selector: Invalid value: {"matchLabels":{"app":"other"}}: field is immutable"#,
        ),
        (
            "statefulset/db",
            r#"{"spec": {"serviceName": "other"}}"#,
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ),
        (
            "service/web",
            r#"{"spec": {"clusterIP": "None"}}"#,
            r#"spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set"#,
        ),
        (
            "configmap/frozen",
            r#"{"data": {"color": "red"}}"#,
            "data: Forbidden: field is immutable when `immutable` is set",
        ),
        (
            "secret/creds",
            r#"{"type": "kubernetes.io/basic-auth"}"#,
            r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#,
        ),
        (
            "rolebinding/viewers",
            r#"{"roleRef": {"name": "edit"}}"#,
            "roleRef: Invalid value: ",
        ),
        (
            "job/once",
            r#"{"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37", "command": ["true"]}]}}}}"#,
            "spec.template: Invalid value: ",
        ),
        (
            "priorityclass/high",
            r#"{"value": 2000}"#,
            "value: Forbidden: may not be changed in an update.",
        ),
        (
            "persistentvolumeclaim/data",
            r#"{"spec": {"accessModes": ["ReadWriteMany"]}}"#,
            "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ),
    ];
    for (object, patch, want) in cases {
        let before = s.json(&["get", object]);
        let err = s.fails(&["patch", object, "--type", "merge", "-p", patch]);
        assert!(
            err.contains(" is invalid: ") && err.contains(want),
            "{object} {patch}: kubectl said:\n{err}\nwanted: {want}"
        );
        assert_eq!(s.json(&["get", object]), before, "{object} changed");
    }
    // The roleRef message names the whole new roleRef.
    let err = s.fails(&[
        "patch",
        "rolebinding/viewers",
        "--type",
        "merge",
        "-p",
        r#"{"roleRef": {"name": "edit"}}"#,
    ]);
    assert!(err.contains("cannot change roleRef"), "{err}");
    assert!(err.contains(r#""name":"edit""#), "{err}");

    // What may change still does.
    s.ok(&["set", "image", "pod/box", "c=busybox:1.37"]);
    s.ok(&[
        "patch",
        "pod/box",
        "-p",
        r#"{"spec": {"activeDeadlineSeconds": 600}}"#,
    ]);
    let err = s.fails(&[
        "patch",
        "pod/box",
        "-p",
        r#"{"spec": {"activeDeadlineSeconds": 900}}"#,
    ]);
    assert!(
        err.contains("spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value"),
        "{err}"
    );
    s.ok(&[
        "patch",
        "pod/box",
        "-p",
        r#"{"spec": {"activeDeadlineSeconds": 300}}"#,
    ]);
    s.ok(&["label", "pod/box", "tier=cache"]);
    s.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]);
    s.ok(&["scale", "deployment/web", "--replicas=3"]);
    s.ok(&["scale", "statefulset/db", "--replicas=2"]);
    s.ok(&[
        "patch",
        "statefulset/db",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"minReadySeconds": 5}}"#,
    ]);
    s.ok(&[
        "patch",
        "service/web",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"ports": [{"port": 8080}]}}"#,
    ]);
    s.ok(&[
        "patch",
        "configmap/settings",
        "--type",
        "merge",
        "-p",
        r#"{"data": {"color": "red"}}"#,
    ]);
    s.ok(&["label", "configmap/frozen", "kept=yes"]);
    s.ok(&[
        "patch",
        "secret/creds",
        "--type",
        "merge",
        "-p",
        r#"{"stringData": {"password": "q"}}"#,
    ]);
    s.ok(&[
        "patch",
        "rolebinding/viewers",
        "--type",
        "json",
        "-p",
        r#"[{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "bob"}}]"#,
    ]);
    s.ok(&[
        "patch",
        "job/once",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"activeDeadlineSeconds": 100}}"#,
    ]);
    s.ok(&["annotate", "priorityclass/high", "note=kept"]);

    let pod = s.json(&["get", "pod", "box"]);
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 300);
    assert_eq!(s.json(&["get", "statefulset", "db"])["spec"]["replicas"], 2);
    assert_eq!(
        s.json(&["get", "service", "web"])["spec"]["clusterIP"],
        ip.as_str()
    );
    let secret = s.json(&["get", "secret", "creds"]);
    assert_eq!(secret["data"]["password"], "cQ==", "{secret}");
    assert!(secret.get("stringData").is_none(), "{secret}");
    assert_eq!(
        s.json(&["get", "rolebinding", "viewers"])["subjects"][1]["apiGroup"],
        "rbac.authorization.k8s.io"
    );
}

/// What a manifest leaves out comes back as Kubernetes defaults it: a
/// volume without a source is an emptyDir (and the pod is accepted),
/// probe timings, httpGet path and scheme, fieldRef apiVersion, volume
/// modes, requests from limits (pods only, not templates).
#[test]
fn pods_read_back_with_kubernetes_defaults() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: defaults}
spec:
  containers:
  - name: c
    image: busybox:1.36
    resources: {limits: {cpu: 500m, memory: 64Mi}}
    readinessProbe: {httpGet: {port: 80}}
    env:
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
  - name: scratch
  - name: cfg
    configMap: {name: cfg}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: c, image: "busybox:1.36", resources: {limits: {cpu: 500m}}}
"#,
    );
    let pod = s.json(&["get", "pod", "defaults"]);
    let spec = &pod["spec"];
    assert_eq!(
        spec["volumes"][0]["emptyDir"],
        serde_json::json!({}),
        "{pod}"
    );
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420, "{pod}");
    let c = &spec["containers"][0];
    assert_eq!(
        c["readinessProbe"],
        serde_json::json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
        "{pod}"
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        c["resources"]["requests"],
        serde_json::json!({"cpu": "500m", "memory": "64Mi"}),
        "{pod}"
    );
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "{pod}");
    let d = s.json(&["get", "deployment", "web"]);
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]
            .get("requests")
            .is_none(),
        "{d}"
    );
}
