//! The `warden` command line: its command tree ([`commands`]), what each
//! command does ([`handlers`]), the operator's client of the admin API
//! ([`client`], re-exported here), `warden plugin test` ([`plugin_test`]),
//! `warden plugin new` ([`plugin_new`])
//! and the stop signals ([`signals`]). `main.rs` only sets up the process.

pub mod client;
pub mod commands;
mod fence;
mod handlers;
pub mod plugin_new;
pub mod plugin_test;
pub mod signals;

pub use client::*;
pub use commands::{Cli, Command, DevExample, LogFormat, PluginCommand};
pub use handlers::run;
