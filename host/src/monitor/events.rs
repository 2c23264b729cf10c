//! What the monitor tells the rest of the agent: the event stream.
//!
//! Every state change, failure, restart decision, cut-off call and health
//! check is an [`Event`]. The agent writes the non-routine ones to the event
//! history; tests and metrics subscribe to all of them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::state::ResourceState;

/// One thing that happened to one resource.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub resource: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn now(resource: &str, kind: EventKind) -> Event {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Event {
            at_ms,
            resource: resource.to_string(),
            kind,
        }
    }

    /// Routine events (passing health checks) are counted, not kept in the
    /// history.
    pub fn is_routine(&self) -> bool {
        matches!(self.kind, EventKind::Check { healthy: true, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The resource moved from one state to another.
    State {
        from: ResourceState,
        to: ResourceState,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A health check ran.
    Check {
        check: &'static str,
        healthy: bool,
        latency_us: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A call was cut off or trapped; its instance was thrown away.
    CutOff { call: &'static str, reason: String },
    /// The managed process ended without being asked to.
    ProcessExited { pid: u32, how: String },
    /// A decision of the group policy about this resource or group: a
    /// restart, a failover, a group left Failed, a refusal.
    Policy { action: String, reason: String },
    /// A resource type was loaded, rejected, swapped, rolled back or its
    /// file removed (the event's subject is the type or the file).
    Plugin {
        action: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Terminate after a failure did not succeed either.
    TerminateFailed { reason: String },
}
