//! The create-only "review" resources, answered from the request and never
//! stored: TokenReview, SelfSubjectReview, SubjectAccessReview and its
//! self/local forms.

use api::registry::Resource;
use serde_json::{json, Value};

use crate::auth::{Attributes, Decision, User};
use crate::State;

pub fn is_review(res: &Resource) -> bool {
    matches!(
        (res.group, res.kind),
        ("authentication.k8s.io", "TokenReview" | "SelfSubjectReview")
            | (
                "authorization.k8s.io",
                "SubjectAccessReview"
                    | "SelfSubjectAccessReview"
                    | "LocalSubjectAccessReview"
                    | "SelfSubjectRulesReview"
            )
    )
}

fn user_info(u: &User) -> Value {
    json!({"username": u.name, "groups": u.groups})
}

/// The review with its status filled in.
pub async fn answer(state: &State, res: &Resource, mut review: Value, requester: &User) -> Value {
    let status = match res.kind {
        "TokenReview" => {
            let token = review
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            let live = match state.authn.service_account_claims(token) {
                Some(claims) => crate::service_account_live(state, &claims).await,
                None => true,
            };
            match state.authn.token_user(token).filter(|_| live) {
                Some(u) => json!({"authenticated": true, "user": user_info(&u),
                    "audiences": review.pointer("/spec/audiences").cloned().unwrap_or(json!([crate::sa_token::ISSUER]))}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        "SelfSubjectReview" => json!({"userInfo": user_info(requester)}),
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => {
            let spec = review.get("spec").cloned().unwrap_or(json!({}));
            let subject = if res.kind.starts_with("Self") {
                requester.clone()
            } else {
                let groups: Vec<String> = spec["groups"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|g| g.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                User {
                    name: spec["user"].as_str().unwrap_or("").to_owned(),
                    groups,
                }
            };
            let ra = &spec["resourceAttributes"];
            let path = spec
                .pointer("/nonResourceAttributes/path")
                .and_then(Value::as_str)
                .unwrap_or("");
            let attrs = Attributes {
                verb: ra["verb"]
                    .as_str()
                    .or(spec
                        .pointer("/nonResourceAttributes/verb")
                        .and_then(Value::as_str))
                    .unwrap_or(""),
                group: ra["group"].as_str().unwrap_or(""),
                resource: ra["resource"].as_str().unwrap_or(""),
                subresource: ra["subresource"].as_str(),
                namespace: ra["namespace"].as_str(),
                name: ra["name"].as_str(),
                path,
            };
            match state.authz.authorize(&subject, &attrs) {
                Decision::Allow => json!({"allowed": true}),
                Decision::Deny(reason) => {
                    json!({"allowed": false, "denied": true, "reason": reason})
                }
            }
        }
    };
    review["status"] = status;
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    review
}
