//! Type checking of request bodies against the Kubernetes types: a body
//! whose fields have the wrong JSON types is a 400, as Kubernetes' decoder
//! makes it, before anything is stored.

use api::registry::Resource;
use serde::Deserialize;
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

macro_rules! check_typed {
    ($($group:literal $version:literal $kind:literal => $ty:ty,)*) => {
        fn typed(res: &Resource, obj: &Value) -> Result<(), String> {
            match (res.group, res.version, res.kind) {
                $( ($group, $version, $kind) => <$ty>::deserialize(obj).map(|_| ()).map_err(|e| e.to_string()), )*
                _ => Ok(()),
            }
        }
    };
}
api::builtin_kinds!(check_typed);

pub fn check(res: &Resource, obj: &Value) -> ApiResult<()> {
    typed(res, obj).map_err(|e| cannot_handle(res, &e))
}

fn cannot_handle(res: &Resource, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
        kind = res.kind,
        version = res.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_rejected() {
        let deploy = api::registry::find("apps", "v1", "deployments").unwrap();
        let ok = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
                        "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                                 "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(check(deploy, &ok).is_ok());
        let mut bad = ok.clone();
        bad["spec"]["replicas"] = json!("three");
        let err = check(deploy, &bad).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: "),
            "{}",
            err.message
        );
    }
}
