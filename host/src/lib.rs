//! The Warden agent: a cluster resource host whose resource types are
//! WebAssembly components. Start with `ARCHITECTURE.md` in the repository.

// Every public item says what it is for, and nothing is `pub` that the
// library does not export (the tests under host/tests use what it does);
// clippy's -D warnings in CI makes both errors.
#![warn(missing_docs, unreachable_pub)]

pub mod agent;
pub(crate) mod api;
pub mod cli;
pub mod cluster;
pub(crate) mod components;
pub mod config;
pub(crate) mod console;
pub mod contract;
pub(crate) mod demo_service;
pub mod desired;
pub(crate) mod dev;
pub mod dns_update;
pub(crate) mod event_view;
pub mod fault_point;
pub mod fence_guard;
pub mod fencing;
pub mod history;
pub(crate) mod metrics;
pub mod monitor;
pub mod node;
pub(crate) mod plugin_versions;
pub(crate) mod plugins_dir;
pub mod rollout;
pub mod runtime;
pub mod starting;
pub(crate) mod store;
pub(crate) mod systemd;
pub(crate) mod type_sources;
pub mod virtual_ip;

/// The built-in resource types, compiled from `plugins/` and embedded.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}
