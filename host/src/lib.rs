//! The Warden agent: a cluster resource host whose resource types are
//! WebAssembly components. Start with `ARCHITECTURE.md` in the repository.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod components;
pub mod config;
pub mod contract;
pub mod demo_service;
pub mod desired;
pub mod dev;
pub mod dns_update;
pub mod event_view;
pub mod fence_guard;
pub mod fencing;
pub mod history;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod plugin_versions;
pub mod plugins_dir;
pub mod rollout;
pub mod runtime;
pub mod store;
pub mod systemd;
pub mod type_sources;
pub mod virtual_ip;

/// The built-in resource types, compiled from `plugins/` and embedded.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}
