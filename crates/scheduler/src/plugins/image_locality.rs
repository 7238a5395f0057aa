//! ImageLocality: prefers nodes that already have the pod's images,
//! weighted by image size and by how widely the image is spread (so pods
//! do not all pile onto the one node that has it).

use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{CycleState, Plugin, ScorePlugin, MAX_NODE_SCORE};
use crate::podinfo::PodInfo;

const MB: i64 = 1024 * 1024;
/// Sums below this score 0.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: sums above this score 100.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        super::names::IMAGE_LOCALITY
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> i64 {
        if pod.images.is_empty() || node.images.is_empty() {
            return 0;
        }
        let total = snap.nodes.len().max(1) as f64;
        let mut sum = 0i64;
        for image in &pod.images {
            if let Some(size) = node.images.get(image) {
                let spread = *snap.image_nodes.get(image).unwrap_or(&1) as f64 / total;
                sum += (*size as f64 * spread) as i64;
            }
        }
        let max = MAX_CONTAINER_THRESHOLD * pod.images.len() as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use serde_json::json;

    #[test]
    fn table() {
        let with_images = |name: &str, images: serde_json::Value| {
            with(
                &node(name, "1", "1Gi", 10),
                json!({"status": {"images": images}}),
            )
        };
        let snap = snapshot(&[
            (
                with_images(
                    "big",
                    json!([{"names": ["docker.io/library/app:1"], "sizeBytes": 500 * MB}]),
                ),
                vec![],
            ),
            (
                with_images(
                    "also",
                    json!([{"names": ["docker.io/library/app:1"], "sizeBytes": 500 * MB}]),
                ),
                vec![],
            ),
            (
                with_images(
                    "tiny",
                    json!([{"names": ["docker.io/library/small:latest"], "sizeBytes": 10 * MB}]),
                ),
                vec![],
            ),
            (node("none", "1", "1Gi", 10), vec![]),
        ]);
        let img = |i: &str| {
            with(
                &pod("p", "0", "0"),
                json!({"spec": {"containers": [{"name": "c", "image": i}]}}),
            )
        };
        // app:1 on 2 of 4 nodes: 500MB × 1/2 = 250MB → (250-23)/(1000-23).
        let app = 100 * (250 * MB - MIN_THRESHOLD) / (MAX_CONTAINER_THRESHOLD - MIN_THRESHOLD);
        let cases = [
            ("spread image", img("app:1"), vec![app, app, 0, 0]),
            ("small image", img("small"), vec![0, 0, 0, 0]),
            ("absent image", img("other"), vec![0, 0, 0, 0]),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                score_only(&ImageLocality, &pod_info(&p), &snap),
                want,
                "{name}"
            );
        }
    }
}
