//! `metav1.Status` errors: every failure the API answers with, in the shape
//! and words clients parse.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A field-level cause of an Invalid error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An API error: becomes a Status object with its HTTP code.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.group`, `details.kind` (the resource), `details.name`.
    pub group: String,
    pub kind: String,
    pub name: String,
    pub causes: Vec<Cause>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The resource a message names: `pods` or `deployments.apps`.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn about(mut self, group: &str, plural: &str, name: &str) -> ApiError {
        self.group = group.to_owned();
        self.kind = plural.to_owned();
        self.name = name.to_owned();
        self
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .about(group, plural, name)
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .about(group, plural, name)
    }

    pub fn conflict(group: &str, plural: &str, name: &str, detail: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                qualified(group, plural)
            ),
        )
        .about(group, plural, name)
    }

    /// The optimistic-concurrency conflict of a stale resourceVersion.
    pub fn stale(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per bad field. `kind` is the object's Kind here,
    /// as Kubernetes writes it: `Pod "x" is invalid: metadata.name: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        // The message lists each distinct cause once (as ErrorList's
        // ToAggregate does); the causes keep them all.
        let mut joined: Vec<String> = Vec::new();
        for c in &causes {
            let line = if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            };
            if !joined.contains(&line) {
                joined.push(line);
            }
        }
        let detail = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let qkind = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{qkind} \"{name}\" is invalid: {detail}"),
        )
        .about(group, kind, name);
        e.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.retry_after = Some(10);
        e
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// The 404 for a path that names no resource.
    pub fn path_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(504, "Timeout", message);
        e.retry_after = Some(1);
        e
    }

    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if !self.name.is_empty() {
            details.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            details.insert("group".into(), json!(self.group));
        }
        if !self.kind.is_empty() {
            details.insert("kind".into(), json!(self.kind));
        }
        if !self.causes.is_empty() {
            details.insert(
                "causes".into(),
                self.causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            );
        }
        if let Some(secs) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, axum::Json(self.to_status())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        resp
    }
}

/// Maps store errors for the object `name` of a resource.
pub fn from_store(e: store::Error, group: &str, plural: &str, name: &str) -> ApiError {
    match e {
        store::Error::NotFound(_) => ApiError::not_found(group, plural, name),
        store::Error::AlreadyExists(_) => ApiError::already_exists(group, plural, name),
        store::Error::Conflict { .. } => ApiError::stale(group, plural, name),
        store::Error::Compacted { requested, .. } => ApiError::gone(format!(
            "The resourceVersion for the provided watch is too old. (requested {requested})"
        )),
        store::Error::FutureRevision { requested, current } => {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.reason = "Timeout";
            e
        }
        store::Error::ValueTooLarge { .. } => {
            ApiError::too_large("etcdserver: request is too large")
        }
        other => ApiError::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kubernetes() {
        let cases = [
            (
                ApiError::not_found("", "pods", "abc"),
                404,
                "NotFound",
                r#"pods "abc" not found"#,
            ),
            (
                ApiError::not_found("apps", "deployments", "web"),
                404,
                "NotFound",
                r#"deployments.apps "web" not found"#,
            ),
            (
                ApiError::already_exists("", "configmaps", "c"),
                409,
                "AlreadyExists",
                r#"configmaps "c" already exists"#,
            ),
            (
                ApiError::stale("", "pods", "p"),
                409,
                "Conflict",
                r#"Operation cannot be fulfilled on pods "p": the object has been modified; please apply your changes to the latest version and try again"#,
            ),
            (
                ApiError::invalid(
                    "",
                    "ConfigMap",
                    "Bad_Name",
                    vec![Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: \"Bad_Name\": bad".into(),
                        field: "metadata.name".into(),
                    }],
                ),
                422,
                "Invalid",
                r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": bad"#,
            ),
            (
                // A cause repeated (as HPA metric types are) shows once in
                // the message, as ErrorList.ToAggregate has it.
                ApiError::invalid("autoscaling", "HorizontalPodAutoscaler", "h", {
                    let c = Cause {
                        reason: "FieldValueNotSupported".into(),
                        message: "Unsupported value: \"X\"".into(),
                        field: "spec.metrics[0].type".into(),
                    };
                    vec![c.clone(), c]
                }),
                422,
                "Invalid",
                r#"HorizontalPodAutoscaler.autoscaling "h" is invalid: spec.metrics[0].type: Unsupported value: "X""#,
            ),
        ];
        for (err, code, reason, message) in cases {
            let status = err.to_status();
            assert_eq!(status["code"], code);
            assert_eq!(status["reason"], reason);
            assert_eq!(status["message"], message);
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["status"], "Failure");
        }
    }
}
