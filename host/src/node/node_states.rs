//! The nodes of the cluster as the status shows them: each node's state
//! from what this node knows — the cluster's log (every engine replica
//! holds every node's up, paused, draining or down alike), this node's own
//! fence (its lease lapsed: only it knows that at once), and the fence
//! devices this node drove against others. Alone, the node itself.

use serde::Serialize;
use warden_policy::NodeStatus;

use super::driver::Driver;

/// A node's state as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// In the cluster, taking groups.
    Up,
    /// Keeps its groups, takes no new ones.
    Paused,
    /// Takes no new groups and gives its groups away.
    Draining,
    /// Cut off and stopped: this node when its lease lapsed (until it
    /// rejoins), or another node its fence device confirmed off.
    Fenced,
    /// Not in the cluster (never joined, left, or marked down when its
    /// lease went).
    Down,
    /// The answering agent itself, while it starts: its loop does not run
    /// yet (`crate::starting`).
    Starting,
}

/// One node of the cluster, as `GET /v1/status` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatusView {
    /// The node's name.
    pub name: String,
    /// Its state, as this node knows it.
    pub state: NodeState,
    /// Whether it is the node that answered (the others are as the
    /// cluster's log and this node's fencing say).
    pub this_node: bool,
    /// Whether automatic restarts and failovers are on for it.
    pub recovery_actions: bool,
    /// Why it is fenced, or why fencing it failed.
    pub reason: Option<String>,
}

impl Driver {
    /// Every node of the configuration, in its order. Cheap: one entry per
    /// node, nothing per resource.
    pub(super) fn node_states(&self) -> Vec<NodeStatusView> {
        let me = self.settings.name.as_str();
        let cluster = self.sequencing.cluster();
        let mut nodes: Vec<NodeStatusView> = self
            .engine
            .nodes()
            .into_iter()
            .map(|node| {
                let this_node = node.name == me;
                let mut state = match node.status {
                    NodeStatus::Up => NodeState::Up,
                    NodeStatus::Paused => NodeState::Paused,
                    NodeStatus::Draining => NodeState::Draining,
                    NodeStatus::Down => NodeState::Down,
                };
                let mut reason = None;
                if this_node {
                    if let Some(why) = cluster.and_then(|c| c.fenced.as_ref()) {
                        state = NodeState::Fenced;
                        reason = Some(why.clone());
                    }
                } else if let Some(device) = cluster.and_then(|c| c.device_fencing.get(&node.name))
                {
                    // Confirmed off: down for the log too once NodeDown
                    // lands; fenced says how it went. A failed fence
                    // leaves the state as the log has it, with the reason.
                    if device.confirmed && state == NodeState::Down {
                        state = NodeState::Fenced;
                    }
                    reason = Some(device.reason.clone());
                }
                NodeStatusView {
                    name: node.name,
                    state,
                    this_node,
                    recovery_actions: node.recovery_enabled,
                    reason,
                }
            })
            .collect();
        if !nodes.iter().any(|n| n.this_node) {
            // A configuration that does not name this node (it cannot run
            // groups): it still shows itself.
            nodes.push(NodeStatusView {
                name: me.to_string(),
                state: NodeState::Down,
                this_node: true,
                recovery_actions: true,
                reason: None,
            });
        }
        nodes
    }
}
