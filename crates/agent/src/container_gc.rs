//! Container garbage collection, as the kubelet's container GC does it
//! (every minute, and under disk pressure before evicting): of each pod's
//! container, the newest exited run stays (its logs and exit are the
//! container's `lastState` and `kubectl logs --previous`), older ones go;
//! every exited container of a pod that is gone goes. A stopped sandbox
//! goes once no container is left in it, unless it is the newest of a
//! pod that still exists. Running containers and ready sandboxes are never
//! touched.

use std::collections::{HashMap, HashSet};

use crate::cri::{Container, ContainerState, Sandbox, SandboxState};
use crate::pods::LABEL_POD_UID;

/// What to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub containers: Vec<String>,
    pub sandboxes: Vec<String>,
}

/// The plan for the runtime's `containers` and `sandboxes`; `kept` are the
/// uids of the pods that still exist (and whose newest runs stay).
pub fn plan(containers: &[Container], sandboxes: &[Sandbox], kept: &HashSet<String>) -> Plan {
    let mut out = Plan::default();
    // Exited runs per (pod, container), newest first.
    let mut dead: HashMap<(&str, &str), Vec<&Container>> = HashMap::new();
    for c in containers {
        let Some(uid) = c.labels.get(LABEL_POD_UID) else {
            continue;
        };
        if c.state == ContainerState::Exited {
            dead.entry((uid.as_str(), c.name.as_str()))
                .or_default()
                .push(c);
        }
    }
    for ((uid, _), mut runs) in dead {
        runs.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
        let keep = usize::from(kept.contains(uid));
        out.containers
            .extend(runs.iter().skip(keep).map(|c| c.id.clone()));
    }
    out.containers.sort();
    let removed: HashSet<&str> = out.containers.iter().map(String::as_str).collect();
    let occupied: HashSet<&str> = containers
        .iter()
        .filter(|c| !removed.contains(c.id.as_str()))
        .map(|c| c.sandbox_id.as_str())
        .collect();
    let mut newest: HashMap<&str, (u32, i64)> = HashMap::new();
    for s in sandboxes {
        let e = newest
            .entry(s.uid.as_str())
            .or_insert((s.attempt, s.created_at));
        *e = (*e).max((s.attempt, s.created_at));
    }
    for s in sandboxes {
        if s.state == SandboxState::Ready
            || !s.labels.contains_key(LABEL_POD_UID)
            || occupied.contains(s.id.as_str())
        {
            continue;
        }
        let latest = newest.get(s.uid.as_str()) == Some(&(s.attempt, s.created_at));
        if kept.contains(&s.uid) && latest {
            continue;
        }
        out.sandboxes.push(s.id.clone());
    }
    out.sandboxes.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn container(
        id: &str,
        sandbox: &str,
        uid: &str,
        name: &str,
        attempt: u32,
        exited: bool,
    ) -> Container {
        Container {
            id: id.into(),
            sandbox_id: sandbox.into(),
            name: name.into(),
            attempt,
            image: String::new(),
            image_ref: String::new(),
            state: if exited {
                ContainerState::Exited
            } else {
                ContainerState::Running
            },
            created_at: i64::from(attempt),
            labels: BTreeMap::from([(LABEL_POD_UID.to_owned(), uid.to_owned())]),
            annotations: BTreeMap::new(),
        }
    }

    fn sandbox(id: &str, uid: &str, attempt: u32, ready: bool) -> Sandbox {
        Sandbox {
            id: id.into(),
            name: String::new(),
            namespace: String::new(),
            uid: uid.into(),
            attempt,
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: i64::from(attempt),
            labels: BTreeMap::from([(LABEL_POD_UID.to_owned(), uid.to_owned())]),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn the_newest_exited_run_of_a_live_pods_container_stays() {
        let kept: HashSet<String> = ["live".to_owned()].into();
        // (containers, sandboxes, removed containers, removed sandboxes)
        type Case = (
            Vec<Container>,
            Vec<Sandbox>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            // Crash-looping: runs 0..2 exited, the newest stays.
            (
                vec![
                    container("c0", "s0", "live", "app", 0, true),
                    container("c1", "s0", "live", "app", 1, true),
                    container("c2", "s0", "live", "app", 2, true),
                ],
                vec![sandbox("s0", "live", 0, true)],
                vec!["c0", "c1"],
                vec![],
            ),
            // Running again: the previous run stays (lastState), older go;
            // another container of the pod keeps its own newest.
            (
                vec![
                    container("c0", "s0", "live", "app", 0, true),
                    container("c1", "s0", "live", "app", 1, true),
                    container("c2", "s0", "live", "app", 2, false),
                    container("i0", "s0", "live", "init", 0, true),
                ],
                vec![sandbox("s0", "live", 0, true)],
                vec!["c0"],
                vec![],
            ),
            // A pod that is gone: everything exited, then its sandboxes.
            (
                vec![
                    container("g0", "gs", "gone", "app", 0, true),
                    container("g1", "gs", "gone", "app", 1, true),
                ],
                vec![sandbox("gs", "gone", 0, false)],
                vec!["g0", "g1"],
                vec!["gs"],
            ),
            // A live pod's older stopped sandbox goes once empty; its newest
            // stays even when stopped; one still holding a kept run stays.
            (
                vec![container("k0", "s1", "live", "app", 0, true)],
                vec![
                    sandbox("s0", "live", 0, false),
                    sandbox("s1", "live", 1, false),
                    sandbox("s2", "live", 2, false),
                ],
                vec![],
                vec!["s0"],
            ),
            // Running containers of a gone pod are not touched (its worker
            // stops them), nor is its sandbox.
            (
                vec![container("r0", "rs", "gone", "app", 0, false)],
                vec![sandbox("rs", "gone", 0, true)],
                vec![],
                vec![],
            ),
        ];
        for (i, (containers, sandboxes, want_c, want_s)) in cases.into_iter().enumerate() {
            let p = plan(&containers, &sandboxes, &kept);
            assert_eq!(p.containers, want_c, "case {i}");
            assert_eq!(p.sandboxes, want_s, "case {i}");
        }
    }
}
