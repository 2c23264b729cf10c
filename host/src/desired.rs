//! The desired configuration of a node: its groups and resources, and which
//! groups the operator wants online.
//!
//! This is what the embedded store keeps and what the admin API changes.
//! Every change is made to a copy, checked by the policy engine and written
//! to the store before it takes effect, so a refused change leaves nothing
//! behind and an acknowledged one survives `kill -9`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use warden_policy::{ClusterConfig, Millis};

use crate::config::{AgentConfig, GroupConfig, ResourceConfig, parse_failback};
use crate::contract::TypeFlags;
use crate::runtime::Plugin;

/// The node's groups and resources and the groups wanted online: what
/// the admin API changes and the store keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// Every group.
    pub groups: Vec<GroupConfig>,
    /// Every resource.
    pub resources: Vec<ResourceConfig>,
    /// Groups the operator wants online.
    pub online: BTreeSet<String>,
}

impl Desired {
    /// The groups and resources of a configuration file, with the groups it
    /// says to start (and every implicit one-resource group) online.
    pub fn from_file(config: &AgentConfig) -> Desired {
        let mut online: BTreeSet<String> = config
            .groups
            .iter()
            .filter(|g| g.online)
            .map(|g| g.name.clone())
            .collect();
        online.extend(
            config
                .resources
                .iter()
                .filter(|r| r.group.is_none())
                .map(|r| r.name.clone()),
        );
        Desired {
            groups: config.groups.clone(),
            resources: config.resources.clone(),
            online,
        }
    }

    /// The resource of this name, if there is one.
    pub fn resource(&self, name: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The policy's view: node `me`, the groups (a resource without one is a
    /// group of its own), and the singleton types among `plugins`.
    pub fn cluster_config(
        &self,
        me: &str,
        plugins: &BTreeMap<String, Arc<Plugin>>,
    ) -> Result<ClusterConfig> {
        let mut groups = Vec::new();
        for group in &self.groups {
            group.check()?;
            let mut g = warden_policy::GroupConfig::new(group.name.clone());
            // No preferred owner: any node, in the cluster's order. Never
            // "this node": every replica of a cluster must read the same
            // configuration, or their engines place groups differently.
            g.preferred_owners = group.preferred_owners.clone();
            g.failover_threshold = group.failover_threshold;
            g.failover_period = Millis::from_secs(group.failover_period_s);
            g.failback = parse_failback(&group.failback)?;
            groups.push(g);
        }
        for resource in &self.resources {
            let mut r = warden_policy::ResourceConfig::new(
                resource.name.clone(),
                resource.type_name.clone(),
            );
            r.depends_on = resource.depends_on.clone();
            r.restart = resource.restart_policy()?;
            if resource.copies.is_some() {
                check_replicated(resource, plugins)?;
            }
            r.copies = resource.copies.clone();
            r.max_lag_on_failover = resource.max_lag_on_failover;
            match groups.iter_mut().find(|g| g.name == resource.group_name()) {
                Some(group) => group.resources.push(r),
                None => {
                    let mut g = warden_policy::GroupConfig::new(resource.name.clone());
                    g.resources.push(r);
                    groups.push(g);
                }
            }
        }
        let singleton_types = plugins
            .values()
            .filter(|p| p.info().flags.contains(TypeFlags::CLUSTER_SINGLETON))
            .map(|p| p.name().to_string())
            .collect();
        Ok(ClusterConfig {
            nodes: vec![me.to_string()],
            singleton_types,
            groups,
        })
    }
}

/// Refuse copies of a resource whose type cannot keep them: only a type
/// that exports the replication interface can start a passive copy,
/// activate one and say how far it is. A type not loaded here is left to
/// the check that makes the resource wait for its type.
fn check_replicated(
    resource: &ResourceConfig,
    plugins: &BTreeMap<String, Arc<Plugin>>,
) -> Result<()> {
    match plugins.get(&resource.type_name) {
        Some(plugin) if !plugin.is_replicated() => bail!(
            "resource {:?}: copies: type {:?} is not replicated (it does not export {}), so it \
             cannot keep copies; leave copies out",
            resource.name,
            resource.type_name,
            crate::contract::REPLICATION_EXPORT
        ),
        _ => Ok(()),
    }
}
