//! ClusterIP and NodePort allocation for Services.
//!
//! Each allocated address or port is a key in the store
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`)
//! created with create-if-absent, so two servers on one store, concurrent
//! creates and restarts can never hand out the same one. Explicit values
//! are honoured when free and in range, refused otherwise, as Kubernetes
//! does; everything a Service holds is released when it is deleted.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{json, Value};
use store::Store;

use crate::status::{ApiError, ApiResult, Cause};

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The service range: network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    size: u32,
}

impl ServiceCidr {
    pub fn parse(cidr: &str) -> Result<ServiceCidr, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?}: only IPv4 service ranges are supported"))?;
        let len: u32 = len
            .parse()
            .map_err(|_| format!("{cidr:?}: bad prefix length"))?;
        if !(8..=30).contains(&len) {
            return Err(format!("{cidr:?}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - len);
        Ok(ServiceCidr {
            base: u32::from(ip) & mask,
            size: 1 << (32 - len),
        })
    }

    /// The `kubernetes` Service's address: the first usable one.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            Ipv4Addr::from(self.base),
            32 - self.size.trailing_zeros()
        )
    }
}

fn invalid(field: &str, value: Value, detail: &str) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        "",
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }],
    )
}

async fn claim(store: &Arc<dyn Store>, key: &str, owner: &str) -> ApiResult<bool> {
    match store.create(key, owner.as_bytes().to_vec()).await {
        Ok(_) => Ok(true),
        Err(store::Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// Releases what `allocate` claimed (best effort: a missing key is fine).
pub async fn release(store: &Arc<dyn Store>, keys: &[String]) {
    for k in keys {
        if let Err(e) = store.delete(k, None).await {
            if !matches!(e, store::Error::NotFound(_)) {
                tracing::warn!(key = %k, error = %e, "releasing a service allocation");
            }
        }
    }
}

/// The keys a Service holds (for release on delete).
pub fn held(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(np) = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0) {
            keys.push(format!("{PORT_PREFIX}{np}"));
        }
    }
    keys
}

/// What an update of a Service claimed (to release if the write fails) and
/// what it no longer holds (to release once the write succeeded).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reallocation {
    pub claimed: Vec<String>,
    pub released: Vec<String>,
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(
        svc.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn is_external_name(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
}

/// Kubernetes' dropTypeDependentFields: fields the old type needed and the
/// new one does not are cleared when the update left them as they were
/// (an ExternalName has no ClusterIP; a ClusterIP Service no node ports).
pub fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let old_spec = old.get("spec").cloned().unwrap_or(json!({}));
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    if new_type == "ExternalName" && !is_external_name(old) {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(f) == old_spec.get(f) {
                spec.remove(f);
            }
        }
    }
    if needs_node_ports(old)
        && !matches!(new_type.as_str(), "NodePort" | "LoadBalancer")
        && spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")
    {
        spec.remove("externalTrafficPolicy");
    }
    if needs_node_ports(old) && !matches!(new_type.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports = old_spec.get("ports").cloned().unwrap_or(json!([]));
        let same = |p: &Value| {
            old_ports.as_array().into_iter().flatten().any(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol") == p.get("protocol")
                    && o.get("nodePort") == p.get("nodePort")
            })
        };
        for p in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if same(p) {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
    }
}

/// Allocates what an updated Service newly needs (a ClusterIP when it
/// stops being an ExternalName, node ports when it becomes a NodePort or
/// gains ports) and says what it gave up, keeping what it already holds.
pub async fn reallocate(
    store: &Arc<dyn Store>,
    cidr: ServiceCidr,
    old: &Value,
    new: &mut Value,
) -> ApiResult<Reallocation> {
    drop_type_dependent_fields(old, new);
    let ours: std::collections::HashSet<String> = held(old).into_iter().collect();
    let all = allocate_keeping(store, cidr, new, &ours).await?;
    let now: std::collections::HashSet<&String> = all.iter().collect();
    Ok(Reallocation {
        claimed: all.iter().filter(|k| !ours.contains(*k)).cloned().collect(),
        released: ours.iter().filter(|k| !now.contains(k)).cloned().collect(),
    })
}

/// Fills in and claims the Service's ClusterIP and node ports. Returns the
/// keys claimed, to release if the create fails.
pub async fn allocate(
    store: &Arc<dyn Store>,
    cidr: ServiceCidr,
    svc: &mut Value,
) -> ApiResult<Vec<String>> {
    allocate_keeping(store, cidr, svc, &Default::default()).await
}

/// [`allocate`], where the explicit values among `ours` (keys the Service
/// holds already) count as claimed. Returns every key the Service holds
/// afterwards; only those not in `ours` were claimed here.
async fn allocate_keeping(
    store: &Arc<dyn Store>,
    cidr: ServiceCidr,
    svc: &mut Value,
    ours: &std::collections::HashSet<String>,
) -> ApiResult<Vec<String>> {
    let claim_given = |key: String, owner: String| async move {
        if ours.contains(&key) {
            return Ok(true);
        }
        claim(store, &key, &owner).await
    };
    let owner = format!(
        "{}/{}",
        svc.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        svc.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let mut claimed = Vec::new();
    let result = async {
        if ty != "ExternalName" {
            let given = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_owned();
            if given != "None" {
                let ip = if given.is_empty() {
                    let mut found = None;
                    // Start at a random offset so servers rarely race.
                    let start = rand::random::<u32>() % (cidr.size - 2);
                    for i in 0..cidr.size - 2 {
                        let ip = Ipv4Addr::from(cidr.base + 1 + (start + i) % (cidr.size - 2));
                        if claim(store, &format!("{IP_PREFIX}{ip}"), &owner).await? {
                            found = Some(ip);
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        invalid("spec.clusterIPs", json!([""]), "failed to allocate IP: range is full")
                    })?
                } else {
                    let ip: Ipv4Addr = given.parse().map_err(|_| {
                        invalid("spec.clusterIPs[0]", json!(given), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
                    })?;
                    if !cidr.contains(ip) {
                        return Err(invalid(
                            "spec.clusterIPs",
                            json!([given]),
                            &format!("failed to allocate IP {given}: the provided IP ({given}) is not in the valid range"),
                        ));
                    }
                    if !claim_given(format!("{IP_PREFIX}{ip}"), owner.clone()).await? {
                        return Err(invalid(
                            "spec.clusterIPs",
                            json!([given]),
                            &format!("failed to allocate IP {given}: provided IP is already allocated"),
                        ));
                    }
                    ip
                };
                claimed.push(format!("{IP_PREFIX}{ip}"));
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            } else {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let ports = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
            let mut out = Vec::new();
            for (i, mut p) in ports.into_iter().enumerate() {
                let want = p.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
                let port = if want == 0 {
                    let span = (*NODE_PORTS.end() - *NODE_PORTS.start() + 1) as u32;
                    let start = rand::random::<u32>() % span;
                    let mut found = None;
                    for j in 0..span {
                        let port = *NODE_PORTS.start() as u32 + (start + j) % span;
                        if claim(store, &format!("{PORT_PREFIX}{port}"), &owner).await? {
                            found = Some(port);
                            break;
                        }
                    }
                    found.ok_or_else(|| invalid(&format!("spec.ports[{i}].nodePort"), json!(0), "range is full"))?
                } else {
                    if !NODE_PORTS.contains(&(want as u16)) || want > u16::MAX as u64 {
                        return Err(invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            json!(want),
                            "provided port is not in the valid range. The range of valid ports is 30000-32767",
                        ));
                    }
                    if !claim_given(format!("{PORT_PREFIX}{want}"), owner.clone()).await? {
                        return Err(invalid(&format!("spec.ports[{i}].nodePort"), json!(want), "provided port is already allocated"));
                    }
                    want as u32
                };
                claimed.push(format!("{PORT_PREFIX}{port}"));
                p["nodePort"] = json!(port);
                out.push(p);
            }
            svc["spec"]["ports"] = Value::Array(out);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(claimed),
        Err(e) => {
            let mine: Vec<String> = claimed.into_iter().filter(|k| !ours.contains(k)).collect();
            release(store, &mine).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec})
    }

    #[tokio::test]
    async fn allocates_unique_addresses_and_ports() {
        let (_d, s) = crate::test_support::sqlite_store();
        let cidr = ServiceCidr::parse("10.43.0.0/29").unwrap(); // 6 usable
        assert_eq!(cidr.first(), Ipv4Addr::new(10, 43, 0, 1));
        let mut ips = std::collections::HashSet::new();
        for _ in 0..6 {
            let mut v = svc(json!({"ports": [{"port": 80}]}));
            allocate(&s, cidr, &mut v).await.unwrap();
            assert!(ips.insert(v["spec"]["clusterIP"].as_str().unwrap().to_owned()));
        }
        let mut full = svc(json!({"ports": [{"port": 80}]}));
        let err = allocate(&s, cidr, &mut full).await.unwrap_err();
        assert_eq!(err.code, 422);

        // Explicit: taken, out of range.
        let taken = ips.iter().next().unwrap().clone();
        let mut v = svc(json!({"clusterIP": taken, "ports": [{"port": 80}]}));
        let err = allocate(&s, cidr, &mut v).await.unwrap_err();
        assert!(
            err.message.contains("provided IP is already allocated"),
            "{}",
            err.message
        );
        let mut v = svc(json!({"clusterIP": "10.99.0.1", "ports": [{"port": 80}]}));
        assert!(allocate(&s, cidr, &mut v)
            .await
            .unwrap_err()
            .message
            .contains("not in the valid range"));

        // Release makes an address available again.
        release(&s, &[format!("{IP_PREFIX}{taken}")]).await;
        let mut v = svc(json!({"clusterIP": taken, "ports": [{"port": 80}]}));
        allocate(&s, cidr, &mut v).await.unwrap();
    }

    #[tokio::test]
    async fn node_ports() {
        let (_d, s) = crate::test_support::sqlite_store();
        let cidr = ServiceCidr::parse("10.43.0.0/16").unwrap();
        let mut v = svc(
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]}),
        );
        let held_keys = allocate(&s, cidr, &mut v).await.unwrap();
        let np = v["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!(NODE_PORTS.contains(&(np as u16)));
        assert_eq!(v["spec"]["ports"][1]["nodePort"], 30443);
        assert_eq!(held(&v).len(), 3);
        assert_eq!(held_keys.len(), 3);
        let mut again =
            svc(json!({"type": "NodePort", "ports": [{"port": 443, "nodePort": 30443}]}));
        let err = allocate(&s, cidr, &mut again).await.unwrap_err();
        assert!(err.message.contains("provided port is already allocated"));
        // The failed create claimed nothing that stays.
        assert_eq!(s.count("/registry/ranges/").await.unwrap(), 3);
        let mut bad = svc(json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 80}]}));
        assert!(allocate(&s, cidr, &mut bad)
            .await
            .unwrap_err()
            .message
            .contains("not in the valid range"));
    }

    #[test]
    fn cidr_text_round_trips() {
        for c in ["10.43.0.0/16", "100.64.12.32/27"] {
            assert_eq!(ServiceCidr::parse(c).unwrap().to_string(), c);
        }
    }

    #[tokio::test]
    async fn type_changes_allocate_and_release() {
        let (_d, s) = crate::test_support::sqlite_store();
        let cidr = ServiceCidr::parse("10.96.0.0/24").unwrap();
        let mut v = svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}));
        let held_ip = allocate(&s, cidr, &mut v).await.unwrap();
        assert_eq!(held_ip.len(), 1);

        // ClusterIP -> NodePort: a node port is claimed, the IP kept.
        let mut np = v.clone();
        np["spec"]["type"] = json!("NodePort");
        let r = reallocate(&s, cidr, &v, &mut np).await.unwrap();
        let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert_eq!(r.claimed, [format!("{PORT_PREFIX}{port}")]);
        assert!(r.released.is_empty());
        assert_eq!(np["spec"]["clusterIP"], v["spec"]["clusterIP"]);

        // Same ports again: nothing new.
        let mut again = np.clone();
        let r = reallocate(&s, cidr, &np, &mut again).await.unwrap();
        assert_eq!(r, Reallocation::default());

        // NodePort -> ClusterIP: the unchanged node port is dropped and released.
        let mut back = np.clone();
        back["spec"]["type"] = json!("ClusterIP");
        let r = reallocate(&s, cidr, &np, &mut back).await.unwrap();
        assert!(back["spec"]["ports"][0].get("nodePort").is_none(), "{back}");
        assert_eq!(r.released, [format!("{PORT_PREFIX}{port}")]);
        release(&s, &r.released).await;

        // -> ExternalName: the IP goes; back -> ClusterIP: a new one comes.
        let mut ext = back.clone();
        ext["spec"]["type"] = json!("ExternalName");
        ext["spec"]["externalName"] = json!("example.com");
        let r = reallocate(&s, cidr, &back, &mut ext).await.unwrap();
        assert!(ext["spec"].get("clusterIP").is_none(), "{ext}");
        assert_eq!(r.released, held_ip);
        release(&s, &r.released).await;
        let mut cip = ext.clone();
        cip["spec"]["type"] = json!("ClusterIP");
        let r = reallocate(&s, cidr, &ext, &mut cip).await.unwrap();
        assert_eq!(r.claimed.len(), 1);
        assert!(cip["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96.0."));

        // An explicit node port someone else holds is refused.
        let mut other = svc(json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30100}]}));
        allocate(&s, cidr, &mut other).await.unwrap();
        let mut clash = cip.clone();
        clash["spec"]["type"] = json!("NodePort");
        clash["spec"]["ports"][0]["nodePort"] = json!(30100);
        let err = reallocate(&s, cidr, &cip, &mut clash).await.unwrap_err();
        assert_eq!(err.code, 422);
    }
}
