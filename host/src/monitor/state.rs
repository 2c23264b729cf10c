//! The states of a resource and the snapshot the monitor publishes.

use std::fmt;

use serde::Serialize;

/// The life-cycle states of a resource, as in the Windows cluster service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ResourceState {
    /// Not running; nothing asked of it.
    Offline,
    /// `online` is in flight.
    OnlinePending,
    /// Running and passing its checks.
    Online,
    /// `offline` is in flight.
    OfflinePending,
    /// Failed and terminated; the policy decides what follows.
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

impl ResourceState {
    /// Online or on its way up or down: the resource's program may run, so a
    /// shutdown waits for it and a fenced node terminates it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ResourceState::Online | ResourceState::OnlinePending | ResourceState::OfflinePending
        )
    }
}

/// The policy engine names the same five states; this is the one place that
/// maps the monitor's onto the policy's, so the two cannot drift apart
/// match by match.
impl From<ResourceState> for warden_policy::ResourceState {
    fn from(state: ResourceState) -> Self {
        match state {
            ResourceState::Offline => warden_policy::ResourceState::Offline,
            ResourceState::OnlinePending => warden_policy::ResourceState::OnlinePending,
            ResourceState::Online => warden_policy::ResourceState::Online,
            ResourceState::OfflinePending => warden_policy::ResourceState::OfflinePending,
            ResourceState::Failed => warden_policy::ResourceState::Failed,
        }
    }
}

/// The same five states from the policy's side: what a node that does not
/// run a resource knows of it is what its owner reported through the
/// cluster's log, and the status shows it in the monitor's words.
impl From<warden_policy::ResourceState> for ResourceState {
    fn from(state: warden_policy::ResourceState) -> Self {
        match state {
            warden_policy::ResourceState::Offline => ResourceState::Offline,
            warden_policy::ResourceState::OnlinePending => ResourceState::OnlinePending,
            warden_policy::ResourceState::Online => ResourceState::Online,
            warden_policy::ResourceState::OfflinePending => ResourceState::OfflinePending,
            warden_policy::ResourceState::Failed => ResourceState::Failed,
        }
    }
}

/// What the monitor publishes about one resource after every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceStatus {
    /// Its state.
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
    /// The last health check this node ran, if any: what an operator
    /// looks at first when a resource is slow rather than down.
    pub last_check: Option<LastCheck>,
}

/// One health check as it ended: which, whether it passed, how long it
/// took and when it ended. Kept per resource (the newest only), since
/// passing checks are counted, not recorded in the event history.
///
/// Serialized small (latency, time, health), since the status carries one
/// per resource: at 10 000 resources each byte here is 10 kB of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastCheck {
    /// `is-alive` or `looks-alive` (not serialized: the failed ones are in
    /// the event history with their names).
    #[serde(skip)]
    pub check: &'static str,
    /// Whether the plugin answered healthy in time.
    pub healthy: bool,
    /// How long the call took, in microseconds (a cut-off call: up to its
    /// deadline).
    pub latency_us: u64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl ResourceStatus {
    /// The status of a resource not yet started, of type version `version`.
    pub fn offline(version: &str) -> ResourceStatus {
        ResourceStatus {
            version: version.to_string(),
            state: ResourceState::Offline,
            reason: None,
            failures: 0,
            checks: 0,
            instances: 0,
            last_check: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ResourceState;

    #[test]
    fn the_policy_sees_the_same_state_and_activity() {
        for state in [
            ResourceState::Offline,
            ResourceState::OnlinePending,
            ResourceState::Online,
            ResourceState::OfflinePending,
            ResourceState::Failed,
        ] {
            let policy = warden_policy::ResourceState::from(state);
            assert_eq!(format!("{policy:?}"), format!("{state:?}"));
            assert_eq!(policy.is_active(), state.is_active(), "{state}");
            assert_eq!(ResourceState::from(policy), state, "back from the policy's");
        }
    }
}
