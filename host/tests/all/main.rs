//! The host's integration tests, one module per concern, in one binary
//! (as wasmtime's `tests/all`): linking the agent and wasmtime once, not
//! once per file. Run one concern with
//! `cargo test -p warden --test all faults::`, one test by its full name.
//!
//! Tests of one binary run two at a time (the default on two cores); a
//! module whose tests must not overlap keeps a static lock of its own
//! (`common::cluster`, `common::systemd`). What all modules share — ports,
//! namespaces, cgroups, temporary directories — is named per test, never
//! fixed (`common::free_port`, `common::service_ports`).
//!
//! Elsewhere: the cluster's tests (several agents against etcd) are the
//! binary `tests/cluster/`; `tests/sandbox.rs` stands alone (it installs
//! the process's tracing subscriber).

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod api_fuzz;
mod cache;
mod check_counts;
mod check_lag;
mod console;
mod console_actions;
mod contract_versions;
mod copies;
mod copies_refusing;
mod data_quota;
mod dns_update;
mod epoch_deadline;
mod exchange;
mod exchange_demo;
mod faults;
mod fence;
mod fence_guard;
mod history_flood;
mod hostile_calls;
mod hostile_claims;
mod hostile_host;
mod hostile_output;
mod hotswap;
mod http_check;
mod http_instance_checks;
mod idle_data_dir;
mod kill_at_spawn;
mod lang_js;
mod lang_py;
mod loading;
mod mail;
mod network_types;
mod open_files;
mod operator;
mod package;
mod plugin_new;
mod plugin_test_cli;
mod probe;
mod readme;
mod resource_get;
mod restart_backoff;
mod run_as;
mod scale;
mod sdk;
mod service_launch;
mod signals;
mod start_early;
mod startup_versions;
mod store_copies;
mod systemd_unit;
mod token_file;
mod virtual_ip;
