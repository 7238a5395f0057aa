//! Image references as Kubernetes reads them for pull policies.

/// The tag of an image reference: "" for a digest reference, `latest`
/// when none is written.
pub fn tag(image: &str) -> &str {
    if image.contains('@') {
        return "";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

/// The `imagePullPolicy` a container gets when it names none: `Always`
/// for `latest` (written or implied), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("127.0.0.1:5000/busybox", "Always"),
            ("127.0.0.1:5000/busybox:v1", "IfNotPresent"),
            ("busybox@sha256:abc", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }
}
