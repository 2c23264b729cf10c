//! Warden's group policy engine.
//!
//! A pure, deterministic state machine in the manner of the Windows cluster
//! service's failover manager and Pacemaker's scheduler: [`Event`]s and the
//! current time go in, [`Action`]s come out. No I/O, no clock, no threads, so
//! the same inputs always give the same outputs, hours of cluster life can be
//! tested in milliseconds, and [`Engine::what_if`] is a clone.
//!
//! The driver (the resource monitor) carries out `BringOnline` / `TakeOffline`
//! and reports the results back as events; it sends [`Event::Tick`] at
//! [`Engine::next_deadline`]. See README.md for the rules.

mod config;
mod engine;
mod event;
mod index;
mod model;
mod time;

pub use config::{
    ClusterConfig, ConfigError, CopyNodes, DEFAULT_MAX_LAG_ON_FAILOVER,
    DEFAULT_MAX_RESTART_BACKOFF, DEFAULT_RESTART_BACKOFF, Failback, GroupConfig, GroupId, NodeId,
    ResourceConfig, ResourceId, RestartAction, RestartPolicy, RestartWait,
};
pub use engine::{
    CopiesView, CopyState, CopyView, Engine, EngineSnapshot, GroupState, GroupView, NodeStatus,
    NodeView, OLDEST_SNAPSHOT_FORMAT, ResourceState, ResourceView, RestoreError, SNAPSHOT_FORMAT,
};
pub use event::{Action, CopyHealth, CopyStatus, Event, MoveKind};
pub use time::{Millis, ParseMillisError};
