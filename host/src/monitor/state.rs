//! The states of a resource and the snapshot the monitor publishes.

use std::fmt;

use serde::Serialize;

/// The life-cycle states of a resource, as in the Windows cluster service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ResourceState {
    Offline,
    OnlinePending,
    Online,
    OfflinePending,
    Failed,
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ResourceState::Offline => "Offline",
            ResourceState::OnlinePending => "OnlinePending",
            ResourceState::Online => "Online",
            ResourceState::OfflinePending => "OfflinePending",
            ResourceState::Failed => "Failed",
        };
        f.write_str(text)
    }
}

/// What the monitor publishes about one resource after every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceStatus {
    pub state: ResourceState,
    /// Why the resource is in this state, when it was not asked for.
    pub reason: Option<String>,
    /// Failures since the agent started.
    pub failures: u32,
    /// Health checks run since the agent started.
    pub checks: u64,
    /// The version of the resource type the resource runs on.
    pub version: String,
    /// How many sandboxes the resource has had (more than one: traps or
    /// cut-offs happened and fresh instances were built).
    pub instances: u64,
}

impl ResourceStatus {
    pub fn offline(version: &str) -> ResourceStatus {
        ResourceStatus {
            version: version.to_string(),
            state: ResourceState::Offline,
            reason: None,
            failures: 0,
            checks: 0,
            instances: 0,
        }
    }
}
