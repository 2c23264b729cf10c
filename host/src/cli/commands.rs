//! The command tree of `warden`: every subcommand and its arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::client::Connection;
use super::plugin_test;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "A cluster resource host whose resource types are WebAssembly components"
)]
/// The `warden` command line: what `main` parses.
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How the agent's log lines are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, for a terminal.
    Human,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Every subcommand of `warden`, with its arguments.
#[derive(Subcommand)]
pub enum Command {
    /// Show nodes, groups and resources (the crm_mon view).
    Status {
        /// Refresh every two seconds.
        #[arg(long)]
        watch: bool,
        /// Print the agent's answer as JSON (the whole status, or with
        /// --summary the summary).
        #[arg(long)]
        json: bool,
        /// Every group and resource, however many (the default above
        /// 100 groups is a summary: counts per state, the groups not
        /// Online).
        #[arg(long, conflicts_with = "summary")]
        all: bool,
        /// The summary, however few groups.
        #[arg(long)]
        summary: bool,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Create, delete and operate groups.
    Group {
        /// What to do with the group.
        #[command(subcommand)]
        command: super::client::GroupCommand,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Create, delete, configure and operate resources.
    Resource {
        /// What to do with the resource.
        #[command(subcommand)]
        command: super::client::ResourceCommand,
        /// Print the agent's answer as JSON.
        #[arg(long, global = true)]
        json: bool,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Pause, resume or drain this node; switch recovery actions.
    Node {
        /// What to ask of the node.
        #[command(subcommand)]
        command: super::client::NodeCommand,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Server component states with requesters.
    Component {
        /// What to do with component states.
        #[command(subcommand)]
        command: super::client::ComponentCommand,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// The event history, newest last, in local time.
    Events {
        /// Only events of this resource.
        #[arg(long)]
        resource: Option<String>,
        /// Only events of this kind (state, check, cut-off, policy, ...).
        #[arg(long)]
        event: Option<String>,
        /// Only events at or after this instant (milliseconds since the epoch).
        #[arg(long)]
        since_ms: Option<u64>,
        /// At most this many of the newest events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Keep printing new events as they happen, until Ctrl-C; if the
        /// agent goes away, say so and carry on when it answers again.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line, with `at` (RFC 3339) beside `at_ms`.
        #[arg(long)]
        json: bool,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// What the policy would do on a hypothetical event; nothing happens.
    WhatIf {
        /// The event to imagine.
        #[command(subcommand)]
        command: super::client::WhatIfCommand,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Run the node agent.
    Agent {
        /// The agent's configuration file (TOML).
        #[arg(long, required_unless_present = "dev", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// A development node: temporary data directory, built-in types, and
        /// demo services supervised as real processes. Nothing to install.
        #[arg(long)]
        dev: bool,
        /// With --dev: run a named example instead of the two demo
        /// services. `exchange` is the whole Exchange virtual server (System
        /// Attendant, Store, MTA, SMTP, HTTP, MS Search) on this node.
        #[arg(long, requires = "dev", value_enum)]
        example: Option<DevExample>,
    },
    /// Work with plugin files.
    Plugin {
        /// What to do with plugins.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Drive a fence device of the configuration directly: the power state
    /// of a node, or power it off, on, or cycle it (`[[cluster.fence_device]]`).
    Fence {
        /// What to ask of the device.
        #[arg(value_enum)]
        action: FenceAction,
        /// The node, as [cluster] nodes names it.
        node: String,
        /// The agent's configuration file, which names the device.
        #[arg(long)]
        config: PathBuf,
        /// With off: wait until the device says the node is off.
        #[arg(long)]
        wait: bool,
    },
    /// A tiny HTTP service for the dev mode and the tests to supervise.
    #[command(hide = true)]
    DemoService {
        /// The service's name, in its answers.
        #[arg(long)]
        name: String,
        /// The address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Append start and alive lines to this file (for the tests).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// One of the example mail services (`store`, `smtp`, `http`, `mta`,
    /// `indexer`, `attendant`), as the `mail-NAME` binaries of
    /// examples/mail-services run it: what `agent --dev --example exchange`
    /// supervises, so the demo needs no binary but this one.
    #[command(hide = true)]
    MailService {
        /// The service: store, smtp, http, mta, indexer or attendant.
        name: String,
        /// The service's own arguments (see examples/mail-services/README.md).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The fence guard a cluster agent starts beside itself: it kills the
    /// process groups the agent names on stdin when the agent's vouch for
    /// its lease runs out (see `warden::fence_guard`).
    #[command(hide = true)]
    FenceGuard {
        /// The watchdog device to hold (`[cluster] watchdog_device`).
        #[arg(long, requires = "watchdog_timeout_s")]
        watchdog: Option<PathBuf>,
        /// Its timeout, derived by the agent from the lease TTL.
        #[arg(long, requires = "watchdog")]
        watchdog_timeout_s: Option<u32>,
    },
}

/// What `warden fence` asks of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FenceAction {
    /// Ask the device whether the node is on or off.
    Status,
    /// Power the node off.
    Off,
    /// Power the node on.
    On,
    /// Power the node off and on again.
    Reboot,
}

/// The examples `agent --dev --example` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DevExample {
    /// The Exchange virtual server evs1 over the example mail services.
    Exchange,
}

/// `warden plugin ...`: check, test, list and manage resource type
/// plugins.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Write a ready project for a new resource type: the contract, the
    /// SDK, a first type that passes `plugin test`, and a README with the
    /// build command. Nothing is written into an existing non-empty
    /// directory.
    New {
        /// The type's name (1 to 64 of a-z, 0-9 and -, a letter first), as
        /// operators will write it in `type = "..."`.
        name: String,
        /// The language to write it in.
        #[arg(long, default_value = "rust", value_parser = super::plugin_new::language_parser())]
        lang: String,
        /// Where to write the project; default: ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load a .wasm file as the agent would and print its description.
    Check {
        /// The `.wasm` file to check.
        file: PathBuf,
    },
    /// Run one resource of a .wasm file through its whole life cycle
    /// against real processes, printing each step with its timing.
    Test {
        /// The `.wasm` file to test.
        file: PathBuf,
        /// A property, KEY=VALUE (repeat).
        #[arg(long = "prop", value_parser = plugin_test::key_value)]
        properties: Vec<(String, String)>,
        /// A program the resource may start (repeat); default: none. The
        /// plugin's own `program` property is never granted by itself.
        #[arg(long = "grant-program")]
        grant_programs: Vec<PathBuf>,
        /// How often to run the health checks, in milliseconds.
        #[arg(long, default_value_t = plugin_test::DEFAULT_CHECK_INTERVAL_MS)]
        check_interval_ms: u64,
        /// Override the type's pending timeout, to see a hang sooner.
        #[arg(long)]
        pending_timeout_ms: Option<u64>,
    },
    /// The resource types a running agent has loaded.
    List {
        /// Print the agent's answer as JSON.
        #[arg(long)]
        json: bool,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// The versions of a type the agent has loaded; the active one marked.
    Versions {
        /// The type's name.
        type_name: String,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Swap a type back to the version it ran before the last swap.
    Rollback {
        /// The type's name.
        type_name: String,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Keep a type on a version: dropped-in files no longer upgrade it.
    Pin {
        /// The type's name.
        type_name: String,
        /// The version to keep; default: the one running.
        #[arg(long)]
        version: Option<String>,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Let dropped-in files upgrade the type again.
    Unpin {
        /// The type's name.
        type_name: String,
        /// Where the agent's API is and its token.
        #[command(flatten)]
        connection: Connection,
    },
}
