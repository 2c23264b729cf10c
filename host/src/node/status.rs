//! The node as an operator sees it.

use serde::Serialize;

use crate::monitor::ResourceState;

use super::driver::Driver;

/// The node as an operator sees it (the crm_mon view).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Whether this node takes no new groups.
    pub paused: bool,
    /// Whether automatic restarts and failovers are on.
    pub recovery_actions: bool,
    /// Every group.
    pub groups: Vec<GroupStatus>,
}

/// One group, as `warden status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// Its state.
    pub state: warden_policy::GroupState,
    /// The node it runs on, if any.
    pub owner: Option<String>,
    /// Failovers counted against its threshold.
    pub failovers_in_period: u32,
    /// Why it is in its state, when it failed.
    pub reason: Option<String>,
    /// Its resources, in dependency order.
    pub resources: Vec<ResourceStatusView>,
}

/// One resource, as `warden status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatusView {
    /// The resource's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its state.
    pub state: ResourceState,
    /// Why it is in its state, when it failed.
    pub reason: Option<String>,
    /// Failures counted against its restart threshold.
    pub failures_in_period: u32,
    /// Health checks run.
    pub checks: u64,
    /// Instances made of it (a new one after every cut-off or trap).
    pub instances: u64,
    /// The version of its type the resource runs on.
    pub version: String,
}

impl Driver {
    pub(super) fn status(&self) -> Status {
        let node = self.engine.node(&self.settings.name);
        let resources = self.engine.resources();
        let groups = self
            .engine
            .groups()
            .into_iter()
            .map(|g| GroupStatus {
                resources: resources
                    .iter()
                    .filter(|r| r.group == g.name)
                    .map(|r| {
                        let live = self.monitor.get(&r.name).map(|h| h.status());
                        ResourceStatusView {
                            name: r.name.clone(),
                            type_name: self
                                .desired
                                .resource(&r.name)
                                .map(|c| c.type_name.clone())
                                .unwrap_or_default(),
                            state: live
                                .as_ref()
                                .map(|s| s.state)
                                .unwrap_or(ResourceState::Offline),
                            reason: live
                                .as_ref()
                                .and_then(|s| s.reason.clone())
                                .or(r.failed_reason.clone()),
                            failures_in_period: r.failures_in_period,
                            checks: live.as_ref().map(|s| s.checks).unwrap_or(0),
                            instances: live.as_ref().map(|s| s.instances).unwrap_or(0),
                            version: live.as_ref().map(|s| s.version.clone()).unwrap_or_default(),
                        }
                    })
                    .collect(),
                name: g.name,
                state: g.state,
                owner: g.owner,
                failovers_in_period: g.failovers_in_period,
                reason: g.failed_reason,
            })
            .collect();
        Status {
            node: self.settings.name.clone(),
            paused: node
                .as_ref()
                .is_some_and(|n| !matches!(n.status, warden_policy::NodeStatus::Up)),
            recovery_actions: node.as_ref().is_none_or(|n| n.recovery_enabled),
            groups,
        }
    }
}
