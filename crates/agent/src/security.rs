//! Pod and container `securityContext` as the runtime gets it, merged as
//! the kubelet merges them:
//!
//! * the pod's runAsUser, runAsGroup, runAsNonRoot and seccompProfile
//!   apply unless the container sets its own; capabilities, privileged,
//!   readOnlyRootFilesystem and allowPrivilegeEscalation are the
//!   container's only;
//! * supplemental groups are the pod's fsGroup, then its
//!   supplementalGroups;
//! * without a runAsUser the image's user runs (numeric or by name);
//! * `allowPrivilegeEscalation: false` is `no_new_privs`;
//! * seccomp: RuntimeDefault, Unconfined (also when nothing is set, as the
//!   kubelet's default) or a Localhost profile under the node's seccomp
//!   directory;
//! * runAsNonRoot is checked against runAsUser, else the image's user
//!   (no user: root), with the kubelet's messages; a failure keeps the
//!   container waiting in `CreateContainerConfigError`.

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};

use crate::cri::{self, SeccompProfile as CriSeccomp};

/// The container's effective security context: the pod's, overridden by
/// the container's.
pub fn effective(pod_sc: Option<&PodSecurityContext>, c: &Container) -> SecurityContext {
    let mut eff = pod_sc
        .map(|p| SecurityContext {
            se_linux_options: p.se_linux_options.clone(),
            windows_options: p.windows_options.clone(),
            run_as_user: p.run_as_user,
            run_as_group: p.run_as_group,
            run_as_non_root: p.run_as_non_root,
            seccomp_profile: p.seccomp_profile.clone(),
            app_armor_profile: p.app_armor_profile.clone(),
            ..SecurityContext::default()
        })
        .unwrap_or_default();
    let Some(csc) = &c.security_context else {
        return eff;
    };
    macro_rules! over {
        ($($f:ident),*) => {
            $(if csc.$f.is_some() {
                eff.$f = csc.$f.clone();
            })*
        };
    }
    over!(
        se_linux_options,
        windows_options,
        capabilities,
        privileged,
        run_as_user,
        run_as_group,
        run_as_non_root,
        read_only_root_filesystem,
        allow_privilege_escalation,
        proc_mount,
        seccomp_profile,
        app_armor_profile
    );
    eff
}

/// `name_namespace(uid)`, as the kubelet names pods in messages.
pub fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// The kubelet's runAsNonRoot check; `image_uid` / `image_user` are the
/// image's user (neither: root).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let eff = effective(pod_sc, c);
    if eff.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format!("(pod: {:?}, container: {})", pod_label(pod), c.name);
    if let Some(uid) = eff.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy {who}"
            ));
        }
        return Ok(());
    }
    match (image_uid, image_user) {
        (Some(0), _) | (None, "") => Err(format!(
            "container has runAsNonRoot and image will run as root {who}"
        )),
        (None, name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {who}"
        )),
        _ => Ok(()),
    }
}

fn seccomp(p: &SeccompProfile, root: &Path) -> CriSeccomp {
    match p.type_.as_str() {
        "RuntimeDefault" => CriSeccomp::RuntimeDefault,
        "Localhost" => CriSeccomp::Localhost(
            root.join(p.localhost_profile.as_deref().unwrap_or_default())
                .display()
                .to_string(),
        ),
        _ => CriSeccomp::Unconfined,
    }
}

/// The runtime's security context for container `c` of `pod`, whose image
/// runs as `image_uid` / `image_user`; Localhost seccomp profiles are
/// under `seccomp_root`.
pub fn container_security(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
    seccomp_root: &Path,
) -> cri::SecurityContext {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let eff = effective(pod_sc, c);
    let caps = eff.capabilities.clone().unwrap_or_default();
    let (run_as_user, run_as_username) = match eff.run_as_user {
        Some(u) => (Some(u), String::new()),
        None => (image_uid, image_user.to_owned()),
    };
    let mut supplemental_groups = Vec::new();
    if let Some(p) = pod_sc {
        supplemental_groups.extend(p.fs_group);
        supplemental_groups.extend(p.supplemental_groups.iter().flatten());
    }
    cri::SecurityContext {
        run_as_user,
        run_as_username,
        run_as_group: eff.run_as_group,
        supplemental_groups,
        readonly_rootfs: eff.read_only_root_filesystem == Some(true),
        privileged: eff.privileged == Some(true),
        no_new_privs: eff.allow_privilege_escalation == Some(false),
        add_capabilities: caps.add.unwrap_or_default(),
        drop_capabilities: caps.drop.unwrap_or_default(),
        seccomp: eff
            .seccomp_profile
            .as_ref()
            .map_or(CriSeccomp::Unconfined, |p| seccomp(p, seccomp_root)),
    }
}

/// Whether some container (init containers included) is privileged: the
/// sandbox must be too.
pub fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(pod_sc: serde_json::Value, c_sc: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "securityContext": pod_sc,
                "containers": [{"name": "c", "securityContext": c_sc}],
            },
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn pod_and_container_merge() {
        let (p, c) = pod(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000],
                   "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}}),
            json!({"runAsUser": 1001, "readOnlyRootFilesystem": true,
                   "allowPrivilegeEscalation": false,
                   "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
        );
        let s = container_security(&p, &c, None, "", Path::new("/sec"));
        assert_eq!(
            s,
            cri::SecurityContext {
                run_as_user: Some(1001),
                run_as_username: String::new(),
                run_as_group: Some(3000),
                supplemental_groups: vec![2000, 4000],
                readonly_rootfs: true,
                privileged: false,
                no_new_privs: true,
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["ALL".into()],
                seccomp: CriSeccomp::RuntimeDefault,
            }
        );
    }

    #[test]
    fn users_and_seccomp() {
        // (pod sc, container sc, image uid, image user) -> (user, name, seccomp)
        let cases = [
            (
                json!(null),
                json!(null),
                None,
                "",
                (None, "", CriSeccomp::Unconfined),
            ),
            (
                json!(null),
                json!(null),
                Some(5),
                "",
                (Some(5), "", CriSeccomp::Unconfined),
            ),
            (
                json!(null),
                json!(null),
                None,
                "nginx",
                (None, "nginx", CriSeccomp::Unconfined),
            ),
            (
                json!({"runAsUser": 7}),
                json!({"seccompProfile": {"type": "Unconfined"}}),
                Some(5),
                "",
                (Some(7), "", CriSeccomp::Unconfined),
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}),
                None,
                "",
                (None, "", CriSeccomp::Localhost("/sec/p.json".into())),
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({"privileged": true}),
                None,
                "",
                (None, "", CriSeccomp::RuntimeDefault),
            ),
        ];
        for (psc, csc, uid, user, (want_uid, want_user, want_seccomp)) in cases {
            let (p, c) = pod(psc.clone(), csc.clone());
            let s = container_security(&p, &c, uid, user, Path::new("/sec"));
            assert_eq!(
                (s.run_as_user, s.run_as_username.as_str(), s.seccomp),
                (want_uid, want_user, want_seccomp),
                "{psc} {csc}"
            );
        }
    }

    #[test]
    fn run_as_non_root() {
        let root = "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)";
        let cases = [
            (json!(null), json!(null), None, "", None),
            (json!({"runAsNonRoot": true}), json!(null), None, "", Some(root.to_owned())),
            (json!({"runAsNonRoot": true}), json!(null), Some(0), "", Some(root.to_owned())),
            (json!({"runAsNonRoot": true}), json!(null), Some(1000), "", None),
            (json!({"runAsNonRoot": true}), json!({"runAsUser": 1000}), None, "", None),
            (
                json!({"runAsNonRoot": true}),
                json!({"runAsNonRoot": false}),
                None,
                "",
                None,
            ),
            (
                json!(null),
                json!({"runAsNonRoot": true, "runAsUser": 0}),
                Some(1000),
                "",
                Some("container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)".to_owned()),
            ),
            (
                json!({"runAsNonRoot": true}),
                json!(null),
                None,
                "app",
                Some("container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"p_ns(u1)\", container: c)".to_owned()),
            ),
        ];
        for (psc, csc, uid, user, want) in cases {
            let (p, c) = pod(psc.clone(), csc.clone());
            assert_eq!(
                verify_run_as_non_root(&p, &c, uid, user).err(),
                want,
                "{psc} {csc} {uid:?} {user}"
            );
        }
    }

    #[test]
    fn privileged_containers() {
        let (p, _) = pod(json!(null), json!({"privileged": true}));
        assert!(has_privileged_container(&p));
        let (p, _) = pod(json!(null), json!({"privileged": false}));
        assert!(!has_privileged_container(&p));
    }
}
