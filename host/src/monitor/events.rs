//! What the monitor tells the rest of the agent: the event stream.
//!
//! Every state change, failure, restart decision, cut-off call and health
//! check is an [`Event`]. The agent writes the non-routine ones to the event
//! history; live subscribers (tests, benches) get all of them. A passing
//! check is built as an event only while someone listens live: the metrics
//! count checks at the source (`counters.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::state::ResourceState;

/// One thing that happened to one resource.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The resource (or node, for node-wide events) it concerns.
    pub resource: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Wall-clock milliseconds since the Unix epoch (0 on a clock set before
/// it): what the history and the status write times in.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Event {
    /// An event about `resource` at this instant.
    pub fn now(resource: &str, kind: EventKind) -> Event {
        Event {
            at_ms: unix_ms(),
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

/// What happened to a resource, or to the node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The resource moved from one state to another.
    State {
        /// The state before.
        from: ResourceState,
        /// The state after.
        to: ResourceState,
        /// Why, when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A health check ran.
    Check {
        /// `looks-alive` or `is-alive`.
        check: &'static str,
        /// Whether it passed.
        healthy: bool,
        /// How long it took, in microseconds.
        latency_us: u64,
        /// Why it failed, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A call was cut off or trapped; its instance was thrown away.
    CutOff {
        /// The call into the plugin.
        call: &'static str,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The managed process ended without being asked to.
    ProcessExited {
        /// The process id.
        pid: u32,
        /// How it ended (exit code or signal).
        how: String,
    },
    /// A decision of the group policy about this resource or group: a
    /// restart, a failover, a group left Failed, a refusal.
    Policy {
        /// What was done.
        action: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// A resource type was loaded, rejected, swapped, rolled back or its
    /// file removed (the event's subject is the type or the file).
    Plugin {
        /// `loaded`, `swapped`, `rolled-back`, `rejected`, ...
        action: String,
        /// The version concerned, if one is.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// Why, when there is more to say.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A copy of the resource's data (a resource with copies) answered a
    /// copy call, failed, or reported a status worth recording.
    Copy {
        /// `start-passive`, `stop-passive`, `activate`, `deactivate`, or
        /// `copy-status` for a reported status.
        call: &'static str,
        /// What came of it, for the operator.
        outcome: String,
    },
    /// Terminate after a failure did not succeed either.
    TerminateFailed {
        /// Terminate failed; the resource may still hold what it started.
        reason: String,
    },
}
