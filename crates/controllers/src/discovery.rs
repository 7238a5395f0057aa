//! Which resources the API serves (for controllers that act on every
//! kind: the garbage collector and the namespace controller). One version
//! per group (the preferred one): all versions of a group share objects.

use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{verbs, Discovery, Scope};

#[derive(Clone, Debug)]
pub struct Res {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Res {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every resource of the preferred version of every group.
pub async fn resources(client: &kube::Client) -> Result<Vec<Res>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            out.push(Res {
                ar,
                namespaced: caps.scope == Scope::Namespaced,
                verbs: caps.operations.clone(),
            });
        }
    }
    Ok(out)
}

/// The resource serving `apiVersion`/`kind`, any version of its group.
pub fn find<'a>(all: &'a [Res], api_version: &str, kind: &str) -> Option<&'a Res> {
    let gvk = match api_version.split_once('/') {
        Some((g, v)) => GroupVersionKind::gvk(g, v, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    };
    all.iter()
        .find(|r| r.ar.group == gvk.group && r.ar.kind == gvk.kind && r.ar.version == gvk.version)
        .or_else(|| {
            all.iter()
                .find(|r| r.ar.group == gvk.group && r.ar.kind == gvk.kind)
        })
}

/// Resources the garbage collector and namespace controller act on.
pub fn deletable(all: &[Res]) -> impl Iterator<Item = &Res> {
    all.iter()
        .filter(|r| r.supports(verbs::LIST) && r.supports(verbs::DELETE))
}
