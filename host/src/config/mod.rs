//! The agent's configuration file (TOML).
//!
//! ```toml
//! [node]
//! name = "node-1"
//! data_dir = "/var/lib/warden"        # resource data under data_dir/resources/NAME
//! plugins_dir = "/etc/warden/plugins" # optional: extra .wasm resource types
//!
//! [runtime]
//! allocator = "on-demand" # or "pool": instance slots reserved at start
//! max_instances = 1024   # with "pool": room in the instance pool
//! memory_limit_mib = 64  # default per-resource memory limit
//!
//! [plugins.process]      # grants to the plugin of type "process"
//! allow_programs = ["/usr/bin/sleep"]
//! env = { LANG = "C.UTF-8" }  # every program starts with these, nothing else
//! allow_env = []         # variables the plugin may set itself
//! user = "warden-svc"    # run the programs as this user (default: the agent's)
//! data_quota_mib = 256   # what each resource may keep in its /data: MiB ...
//! data_quota_files = 10000 # ... and files, directories and links
//! # source = "my-process.wasm" # optional: take the type from this file of
//! #                            # plugins_dir (replacing the built-in)
//!
//! [[group]]                # a virtual server: resources that move together
//! name = "web"
//! failover_threshold = 10    # failovers within failover_period_s, then Failed
//! failover_period_s = 21600
//! failback = "off"           # "off", "immediate" or a window of hours "22-6"
//! online = true              # bring the group online when the agent starts
//!
//! [[resource]]
//! name = "sleeper"
//! type = "process"
//! group = "web"              # default: a group of its own, named after it
//! depends_on = []            # resources of the same group
//! is_alive_interval_ms = 5000
//! properties = { program = "/usr/bin/sleep", args = "3600" }
//! restart = { action = "affect-group", threshold = 3, period_s = 900, delay_ms = 0, backoff_ms = 1000, max_backoff_ms = 300000, retry_period_s = 3600 }
//! ```
//!
//! Unknown keys are errors, reported with their line, so that a typo never
//! silently falls back to a default.

mod api;
mod cluster;
mod group;
mod node;
mod plugin_grants;
mod resource;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub use api::{ApiSection, write_token_file};
pub use cluster::ClusterSection;
pub use group::{GroupConfig, parse_failback};
pub use node::{AllocatorChoice, NodeConfig, OnShutdown, RuntimeSection, max_memory_limit_mib};
pub use plugin_grants::PluginGrants;
pub use resource::{PropertyValue, ResourceConfig, RestartConfig};

use node::check_memory_limit_mib;

/// The agent's configuration file, as read and checked (`load`,
/// `parse`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[node]`: this agent's name and directories.
    pub node: NodeConfig,
    /// `[runtime]`: the room plugins get.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The admin API; none without this section.
    #[serde(default)]
    pub api: Option<ApiSection>,
    /// Several nodes on etcd; none: a single node on the embedded store.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    /// Grants, by plugin type name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginGrants>,
    /// `[[group]]`: seeds an empty store.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
    /// `[[resource]]`: seeds an empty store.
    #[serde(default, rename = "resource")]
    pub resources: Vec<ResourceConfig>,
}

fn yes() -> bool {
    true
}

impl AgentConfig {
    /// Read and check a configuration file. Relative paths in it are taken
    /// relative to the file's folder.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let mut config = AgentConfig::parse(&text)
            .with_context(|| format!("in the configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.node.data_dir = base.join(&config.node.data_dir);
        if let Some(dir) = &config.node.plugins_dir {
            config.node.plugins_dir = Some(base.join(dir));
        }
        if let Some(api) = &mut config.api {
            api.token_file = base.join(&api.token_file);
        }
        Ok(config)
    }

    /// Parse and check configuration text.
    pub fn parse(text: &str) -> Result<AgentConfig> {
        let config: AgentConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.node.name.trim().is_empty() {
            bail!("[node] name must not be empty");
        }
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
            if self.node.on_shutdown == OnShutdown::LeaveRunning {
                bail!(
                    "[node] on_shutdown = \"leave-running\" cannot be used with [cluster]: \
                     the cluster moves a stopped node's groups elsewhere, so its services \
                     must stop with it"
                );
            }
            if !cluster.nodes.contains(&self.node.name) {
                bail!(
                    "[cluster] nodes ({}) does not name this node, {:?}",
                    cluster.nodes.join(", "),
                    self.node.name
                );
            }
        }
        if let Some(api) = &self.api
            && !api.listen.ip().is_loopback()
        {
            bail!(
                "[api] listen = {}: the admin API only listens on a loopback address",
                api.listen
            );
        }
        if self.runtime.max_instances == Some(0) {
            bail!("[runtime] max_instances must be above 0");
        }
        check_memory_limit_mib(self.runtime.memory_limit_mib)
            .context("[runtime] memory_limit_mib")?;
        let mut seen = std::collections::HashSet::new();
        for resource in &self.resources {
            if !seen.insert(resource.name.as_str()) {
                bail!("resource {:?} is configured twice", resource.name);
            }
            resource.check()?;
        }
        let mut groups = std::collections::HashSet::new();
        for group in &self.groups {
            if !groups.insert(group.name.as_str()) {
                bail!("group {:?} is configured twice", group.name);
            }
            group.check()?;
        }
        for resource in &self.resources {
            if let Some(group) = &resource.group
                && !groups.contains(group.as_str())
            {
                bail!(
                    "resource {:?}: group {group:?} is not configured (add a [[group]] named {group:?})",
                    resource.name
                );
            }
        }
        for (plugin, grants) in &self.plugins {
            if let Some(source) = &grants.source {
                crate::type_sources::check_source_name(source)
                    .with_context(|| format!("[plugins.{plugin}] source"))?;
            }
            grants.resolve(plugin)?;
        }
        Ok(())
    }
}

/// A valid configuration that the unit tests of this module's files vary.
#[cfg(test)]
const GOOD: &str = r#"
        [node]
        name = "n1"
        data_dir = "data"

        [plugins.process]
        allow_programs = ["/usr/bin/sleep"]

        [[resource]]
        name = "s"
        type = "process"
        properties = { program = "/usr/bin/sleep", args = "100", startup-ms = 10 }
        restart = { threshold = 5 }
    "#;

/// [`GOOD`] with `lines` added to its `[plugins.process]` section, parsed.
#[cfg(test)]
fn with_process_grants(lines: &str) -> Result<AgentConfig> {
    AgentConfig::parse(&GOOD.replace(
        "allow_programs = [\"/usr/bin/sleep\"]",
        &format!("allow_programs = [\"/usr/bin/sleep\"]\n{lines}"),
    ))
}

#[cfg(test)]
mod tests {
    use warden_policy::Millis;

    use super::*;

    #[test]
    fn parses_a_full_configuration() {
        let config = AgentConfig::parse(GOOD).expect("valid");
        let r = &config.resources[0];
        let policy = r.restart_policy().expect("valid");
        assert_eq!(policy.threshold, 5);
        assert_eq!(policy.period, Millis::from_secs(900));
        assert!(
            r.properties()
                .contains(&("startup-ms".to_string(), "10".to_string()))
        );
        assert_eq!(r.group_name(), "s");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = GOOD.replace("restart = {", "restrat = {");
        let err = AgentConfig::parse(&text).expect_err("typo").to_string();
        assert!(err.contains("unknown field `restrat`"), "{err}");
        assert!(err.contains("line 13"), "{err}");
    }

    #[test]
    fn duplicate_resources_and_relative_programs_are_refused() {
        let twice = format!("{GOOD}\n[[resource]]\nname = \"s\"\ntype = \"process\"\n");
        let err = AgentConfig::parse(&twice).expect_err("dup").to_string();
        assert_eq!(err, "resource \"s\" is configured twice");
        let relative = GOOD.replace("\"/usr/bin/sleep\"]", "\"sleep\"]");
        let err = AgentConfig::parse(&relative)
            .expect_err("relative")
            .to_string();
        assert!(err.contains("must be an absolute path"), "{err}");
    }
}
