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
    /// The generation of its last activation (resources with copies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Its copies, one per copy node (resources with copies only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyStatusView>,
}

/// One copy of a resource's data, as `warden status` shows it: where it
/// is, what runs there, and how far behind it is (Exchange's copy and
/// replay queue lengths).
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatusView {
    /// The node it is on.
    pub node: String,
    /// What of it runs there: none, starting-passive, passive,
    /// stopping-passive, activating, active, deactivating, failed.
    pub state: warden_policy::CopyState,
    /// The node of the active copy it follows, while passive.
    pub source: Option<String>,
    /// The generation of its last status.
    pub generation: Option<u64>,
    /// The last log position it holds (its last status).
    pub copied: Option<u64>,
    /// The last log position it applied (its last status).
    pub replayed: Option<u64>,
    /// The active copy's position minus what this one copied.
    pub copy_queue_length: Option<u64>,
    /// What it copied minus what it replayed.
    pub replay_queue_length: Option<u64>,
    /// How far it lags, as failover counts it.
    pub lag: Option<u64>,
    /// `healthy` or `failed` (its last status, or the copy failing).
    pub health: Option<String>,
    /// Why it failed or is unhealthy.
    pub reason: Option<String>,
    /// Why it may not be activated now without the operator's word.
    pub activation_blocked: Option<String>,
}

impl CopyStatusView {
    fn from_view(copy: warden_policy::CopyView) -> CopyStatusView {
        let status = copy.status.as_ref();
        let unhealthy = status.and_then(|s| match &s.health {
            warden_policy::CopyHealth::Healthy => None,
            warden_policy::CopyHealth::Failed(reason) => Some(reason.clone()),
        });
        let failed = copy.failed_reason.is_some() || unhealthy.is_some();
        CopyStatusView {
            health: if failed {
                Some("failed".to_string())
            } else {
                status.map(|_| "healthy".to_string())
            },
            reason: copy.failed_reason.or(unhealthy),
            node: copy.node,
            state: copy.state,
            source: copy.source,
            generation: status.map(|s| s.generation),
            copied: status.map(|s| s.copied),
            replayed: status.map(|s| s.replayed),
            copy_queue_length: copy.copy_queue_length,
            replay_queue_length: copy.replay_queue_length,
            lag: copy.lag,
            activation_blocked: copy.activation_blocked,
        }
    }
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
                        let copies = self.engine.copies(&r.name);
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
                            generation: copies.as_ref().map(|c| c.generation),
                            copies: copies
                                .map(|c| {
                                    c.copies
                                        .into_iter()
                                        .map(CopyStatusView::from_view)
                                        .collect()
                                })
                                .unwrap_or_default(),
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
