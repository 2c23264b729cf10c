//! The `warden` command: the agent, and tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use warden::agent::Agent;
use warden::cli::{self, Client, Connection};
use warden::config::AgentConfig;
use warden::runtime::{Plugin, Runtime, RuntimeConfig};

mod plugin_test;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "A cluster resource host whose resource types are WebAssembly components"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show nodes, groups and resources (the crm_mon view).
    Status {
        /// Refresh every two seconds.
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Create, delete and operate groups.
    Group {
        #[command(subcommand)]
        command: cli::GroupCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Create, delete, configure and operate resources.
    Resource {
        #[command(subcommand)]
        command: cli::ResourceCommand,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Pause, resume or drain this node; switch recovery actions.
    Node {
        #[command(subcommand)]
        command: cli::NodeCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Server component states with requesters.
    Component {
        #[command(subcommand)]
        command: cli::ComponentCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// The event history, newest last, in local time.
    Events {
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
        #[command(flatten)]
        connection: Connection,
    },
    /// What the policy would do on a hypothetical event; nothing happens.
    WhatIf {
        #[command(subcommand)]
        command: cli::WhatIfCommand,
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
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// A tiny HTTP service for the dev mode and the tests to supervise.
    #[command(hide = true)]
    DemoService {
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: SocketAddr,
        /// Append start and alive lines to this file (for the tests).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// The fence guard a cluster agent starts beside itself: it kills the
    /// process groups the agent names on stdin when the agent's vouch for
    /// its lease runs out (see `warden::fence_guard`).
    #[command(hide = true)]
    FenceGuard,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a .wasm file as the agent would and print its description.
    Check { file: PathBuf },
    /// Run one resource of a .wasm file through its whole life cycle
    /// against real processes, printing each step with its timing.
    Test {
        file: PathBuf,
        /// A property, KEY=VALUE (repeat).
        #[arg(long = "prop", value_parser = plugin_test::key_value)]
        properties: Vec<(String, String)>,
        /// A program the resource may start (repeat); default: none. The
        /// plugin's own `program` property is never granted by itself.
        #[arg(long = "grant-program")]
        grant_programs: Vec<PathBuf>,
        #[arg(long, default_value_t = plugin_test::DEFAULT_CHECK_INTERVAL_MS)]
        check_interval_ms: u64,
        /// Override the type's pending timeout, to see a hang sooner.
        #[arg(long)]
        pending_timeout_ms: Option<u64>,
    },
    /// The resource types a running agent has loaded.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// The versions of a type the agent has loaded; the active one marked.
    Versions {
        type_name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Swap a type back to the version it ran before the last swap.
    Rollback {
        type_name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Keep a type on a version: dropped-in files no longer upgrade it.
    Pin {
        type_name: String,
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    Unpin {
        type_name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

fn main() -> ExitCode {
    reset_stop_signals();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Command::FenceGuard = cli.command {
        // Plain std: the guard must not depend on an async runtime.
        return warden::fence_guard::guard::run();
    }
    // Check timers and I/O every 8 polls rather than 61: a guest spinning
    // in wasm yields at every epoch tick and keeps its worker busy, and
    // health-check timers must not wait for it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(8)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Agent { config, dev } => {
            // Listen before anything starts: a SIGINT or SIGTERM that comes
            // while the agent is starting is kept and acted on as soon as
            // the start is done, never lost (a shell starts a background
            // job with SIGINT ignored, so an early one would vanish).
            let mut signals = StopSignals::listen()?;
            let config = match (config, dev) {
                (Some(path), _) => AgentConfig::load(&path)?,
                (None, _) => dev_config()?,
            };
            let agent = Agent::start(config).await?;
            signals.wait().await;
            agent.shutdown().await;
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => check_plugin(&file).await,
        Command::Plugin {
            command:
                PluginCommand::Test {
                    file,
                    properties,
                    grant_programs,
                    check_interval_ms,
                    pending_timeout_ms,
                },
        } => {
            let args = plugin_test::TestArgs {
                file,
                properties,
                grant_programs,
                check_interval: std::time::Duration::from_millis(check_interval_ms),
                pending_timeout: pending_timeout_ms.map(std::time::Duration::from_millis),
            };
            plugin_test::check_args(&args)?;
            plugin_test::run(args).await
        }
        Command::Plugin {
            command: PluginCommand::List { json, connection },
        } => blocking(move || cli::plugins(&Client::new(&connection), json)).await,
        Command::Plugin {
            command:
                PluginCommand::Versions {
                    type_name,
                    connection,
                },
        } => blocking(move || cli::plugin_versions(&Client::new(&connection), &type_name)).await,
        Command::Plugin {
            command:
                PluginCommand::Rollback {
                    type_name,
                    connection,
                },
        } => {
            blocking(move || {
                cli::plugin_verb(&Client::new(&connection), &type_name, "rollback", None)
            })
            .await
        }
        Command::Plugin {
            command:
                PluginCommand::Pin {
                    type_name,
                    version,
                    connection,
                },
        } => {
            blocking(move || {
                cli::plugin_verb(&Client::new(&connection), &type_name, "pin", version)
            })
            .await
        }
        Command::Plugin {
            command:
                PluginCommand::Unpin {
                    type_name,
                    connection,
                },
        } => {
            blocking(move || cli::plugin_verb(&Client::new(&connection), &type_name, "unpin", None))
                .await
        }
        Command::Status {
            watch,
            json,
            connection,
        } => blocking(move || cli::status(&Client::new(&connection), watch, json)).await,
        Command::Group {
            command,
            connection,
        } => blocking(move || cli::group(&Client::new(&connection), command)).await,
        Command::Resource {
            command,
            json,
            connection,
        } => blocking(move || cli::resource(&Client::new(&connection), command, json)).await,
        Command::Node {
            command,
            connection,
        } => blocking(move || cli::node(&Client::new(&connection), command)).await,
        Command::Events {
            resource,
            event,
            since_ms,
            limit,
            follow,
            json,
            connection,
        } => {
            let filter = warden::event_view::EventFilter {
                resource,
                kind: event,
                since_ms,
                limit,
            };
            let client = Client::new(&connection);
            blocking(move || warden::event_view::events(&client, filter, json, follow)).await
        }
        Command::Component {
            command,
            connection,
        } => blocking(move || cli::component(&Client::new(&connection), command)).await,
        Command::WhatIf {
            command,
            connection,
        } => blocking(move || cli::what_if(&Client::new(&connection), command)).await,
        Command::DemoService {
            name,
            listen,
            record,
        } => warden::demo_service::serve(&name, listen, record).await,
        // Started in `main`, before the async runtime.
        Command::FenceGuard => anyhow::bail!("the fence guard does not run in the async runtime"),
    }
}

/// Run a blocking CLI call off the async workers.
async fn blocking(call: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(call)
        .await
        .context("the command's task failed")?
}

fn dev_config() -> Result<AgentConfig> {
    let exe = std::env::current_exe().context("finding the warden binary")?;
    let dir = warden::dev::data_dir()?;
    let (config, services) = warden::dev::config(&dir, &exe)?;
    println!("Warden dev node");
    println!("  data directory: {}", dir.display());
    println!("  configuration:  {}", dir.join("warden.toml").display());
    println!("  event history:  {}", dir.join("events.jsonl").display());
    for (name, addr) in &services {
        println!("  resource {name}: http://{addr}/");
    }
    if let Some(api) = &config.api {
        println!(
            "  admin API:      http://{}/ (token in {})",
            api.listen,
            api.token_file.display()
        );
        println!("Operate it from another shell:");
        println!(
            "  export WARDEN_API=http://{} WARDEN_TOKEN=$(cat {})",
            api.listen,
            api.token_file.display()
        );
        println!(
            "  warden status; warden events; warden resource fail mail-api; warden group offline demo"
        );
    }
    println!(
        "Try: curl http://{}/ ; kill the service's pid and watch it restart; Ctrl-C stops the node.",
        services[0].1
    );
    Ok(config)
}

async fn check_plugin(file: &PathBuf) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        ..RuntimeConfig::default()
    })?;
    let plugin = Plugin::load(&runtime, &bytes)
        .await
        .with_context(|| format!("{} is not a usable plugin", file.display()))?;
    let info = plugin.info();
    println!("{} {} — {}", info.name, info.version, info.description);
    println!(
        "timing: pending {} ms, looks-alive every {} ms, is-alive every {} ms, check timeout {} ms",
        info.timing.pending_timeout_ms,
        info.timing.looks_alive_interval_ms,
        info.timing.is_alive_interval_ms,
        info.timing.check_timeout_ms
    );
    println!("flags: {:?}", info.flags);
    println!("properties:");
    for p in &info.properties {
        println!(
            "  {:<16} {:<28} {:<9} default {:<10} {}",
            p.name,
            warden::runtime::kind_name(p.kind),
            if p.required { "required" } else { "optional" },
            p.default_value.as_deref().unwrap_or("-"),
            p.description
        );
    }
    Ok(())
}

/// Give SIGINT and SIGTERM their default action (end the process) until
/// the agent listens for them: a shell starts a background job with
/// SIGINT ignored, and one sent before the agent listened would be lost.
fn reset_stop_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for stop in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: no handler is installed, only the default action; no
        // other thread exists yet.
        if let Err(err) = unsafe { signal(stop, SigHandler::SigDfl) } {
            eprintln!("warning: could not reset the action of {stop}: {err}");
        }
    }
}

/// SIGTERM and SIGINT, listened for from the agent's first moments.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// Until one of them arrives (or arrived since [`StopSignals::listen`]).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
