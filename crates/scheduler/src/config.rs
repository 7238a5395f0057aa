//! Scheduler configuration: profiles (enabled plugins, weights, plugin
//! arguments) from a KubeSchedulerConfiguration-style file.
//!
//! ```yaml
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! percentageOfNodesToScore: 0
//! profiles:
//! - schedulerName: default-scheduler
//! - schedulerName: bin-packing
//!   plugins:
//!     score:
//!       disabled: [{name: NodeResourcesBalancedAllocation}]
//!       enabled: [{name: NodeResourcesFit, weight: 5}]
//!   pluginConfig:
//!   - name: NodeResourcesFit
//!     args: {scoringStrategy: {type: MostAllocated}}
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::framework::{Plugin, Profile};
use crate::plugins::{new_plugin, DEFAULT_PLUGINS};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    pub multi_point: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// Scheduler settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Global default; 0 or absent: adaptive (50 - nodes/125 %, ≥ 5 %).
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    /// Bindings in flight at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

fn default_parallelism() -> usize {
    16
}

impl Default for Config {
    fn default() -> Self {
        Config {
            percentage_of_nodes_to_score: None,
            profiles: Vec::new(),
            parallelism: default_parallelism(),
        }
    }
}

impl Config {
    /// Reads a KubeSchedulerConfiguration (YAML or JSON).
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let v: Value = serde_yaml_ng::from_str(text)?;
        let c: Config = serde_json::from_value(v)?;
        c.build()?; // validate
        Ok(c)
    }

    /// The profiles by schedulerName.
    pub fn build(&self) -> anyhow::Result<HashMap<String, Profile>> {
        let defaults = [ProfileConfig::default()];
        let profiles = if self.profiles.is_empty() {
            &defaults[..]
        } else {
            &self.profiles[..]
        };
        let mut out = HashMap::new();
        for pc in profiles {
            let mut p = build_profile(pc)?;
            if p.percentage_of_nodes_to_score.is_none() {
                p.percentage_of_nodes_to_score = self.percentage_of_nodes_to_score;
            }
            if out.insert(p.scheduler_name.clone(), p).is_some() {
                anyhow::bail!(
                    "duplicate profile for schedulerName {:?}",
                    pc.scheduler_name
                );
            }
        }
        Ok(out)
    }
}

/// Kubernetes' default profile.
pub fn default_profile() -> Profile {
    build_profile(&ProfileConfig::default()).expect("default profile")
}

fn apply(list: &mut Vec<(String, Option<i64>)>, set: &PluginSet) {
    for d in &set.disabled {
        if d.name == "*" {
            list.clear();
        } else {
            list.retain(|(n, _)| *n != d.name);
        }
    }
    for e in &set.enabled {
        match list.iter_mut().find(|(n, _)| *n == e.name) {
            Some(x) => x.1 = e.weight.or(x.1),
            None => list.push((e.name.clone(), e.weight)),
        }
    }
}

pub fn build_profile(pc: &ProfileConfig) -> anyhow::Result<Profile> {
    let args: HashMap<&str, &Value> = pc
        .plugin_config
        .iter()
        .map(|c| (c.name.as_str(), &c.args))
        .collect();
    let mut instances: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
    let mut get = |name: &str| -> anyhow::Result<Arc<dyn Plugin>> {
        if let Some(p) = instances.get(name) {
            return Ok(p.clone());
        }
        let p = new_plugin(name, args.get(name).copied().filter(|v| !v.is_null()))?;
        instances.insert(name.to_owned(), p.clone());
        Ok(p)
    };
    let mut multi: Vec<(String, Option<i64>)> = DEFAULT_PLUGINS
        .iter()
        .map(|(n, w)| (n.to_string(), (*w > 0).then_some(*w)))
        .collect();
    apply(&mut multi, &pc.plugins.multi_point);
    let mut profile = Profile {
        scheduler_name: pc
            .scheduler_name
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_owned()),
        percentage_of_nodes_to_score: pc.percentage_of_nodes_to_score,
        ..Default::default()
    };
    // Each point: the multi-point plugins that implement it, then the
    // point's own disabled/enabled lists.
    macro_rules! point {
        ($field:ident, $set:ident, $as:ident) => {{
            let mut list = Vec::new();
            for (n, w) in &multi {
                if get(n)?.$as().is_some() {
                    list.push((n.clone(), *w));
                }
            }
            apply(&mut list, &pc.plugins.$set);
            let mut out = Vec::new();
            for (n, w) in list {
                let p = get(&n)?;
                match p.$as() {
                    Some(x) => out.push((x, w)),
                    None => anyhow::bail!("plugin {n} does not implement {}", stringify!($set)),
                }
            }
            out
        }};
    }
    profile.pre_filter = point!(pre_filter, pre_filter, as_pre_filter)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    profile.filter = point!(filter, filter, as_filter)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    profile.post_filter = point!(post_filter, post_filter, as_post_filter)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    profile.pre_score = point!(pre_score, pre_score, as_pre_score)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    profile.score = point!(score, score, as_score)
        .into_iter()
        .map(|(p, w)| (p, w.unwrap_or(1)))
        .collect();
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T: ?Sized + Plugin>(v: &[Arc<T>]) -> Vec<&'static str> {
        v.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn default_profile_matches_kubernetes() {
        let p = default_profile();
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert_eq!(
            names(&p.filter),
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        assert_eq!(names(&p.post_filter), ["DefaultPreemption"]);
        let weights: Vec<(&str, i64)> = p.score.iter().map(|(s, w)| (s.name(), *w)).collect();
        assert_eq!(
            weights,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
    }

    #[test]
    fn profiles_from_a_file() {
        let c = Config::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 20
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    postFilter:
      disabled: [{name: DefaultPreemption}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
"#,
        )
        .unwrap();
        let profiles = c.build().unwrap();
        assert_eq!(profiles.len(), 2);
        let packer = &profiles["packer"];
        assert_eq!(packer.score.len(), 1);
        assert_eq!(
            (packer.score[0].0.name(), packer.score[0].1),
            ("NodeResourcesFit", 5)
        );
        assert!(packer.post_filter.is_empty());
        assert_eq!(packer.percentage_of_nodes_to_score, Some(20));
        assert_eq!(profiles["default-scheduler"].score.len(), 7);
        assert!(
            Config::parse("profiles: [{plugins: {filter: {enabled: [{name: Nope}]}}}]").is_err()
        );
    }
}
