//! What each command does: the agent, the plugin tools, and the client
//! commands (run off the async workers: they block on HTTP).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::client::{self, Client};
use super::commands::{Command, DevExample, PluginCommand};
use super::plugin_test;
use super::signals::StopSignals;
use crate::agent::Agent;
use crate::config::AgentConfig;
use crate::runtime::{Plugin, Runtime, RuntimeConfig};

/// Carry out `command` (any but the fence guard, which `main` starts
/// before the async runtime).
///
/// Long on purpose: one arm per command of the clap tree, each a few
/// lines that call into the client or the agent, so that what every
/// command does is read in one place, in the order `warden --help` lists
/// them. The work is in the functions the arms call.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Agent {
            config,
            dev,
            example,
        } => {
            // Listen before anything starts: a SIGINT or SIGTERM that comes
            // while the agent is starting is kept and acted on as soon as
            // the start is done, never lost (a shell starts a background
            // job with SIGINT ignored, so an early one would vanish).
            let mut signals = StopSignals::listen()?;
            let (config, dev_dir) = match (config, dev) {
                (Some(path), _) => (AgentConfig::load(&path)?, None),
                (None, _) => {
                    let config = dev_config(example)?;
                    let dir = config.node.data_dir.clone();
                    (config, Some(dir))
                }
            };
            let ran = run_agent(config, &mut signals).await;
            // A dev node's data directory is a temporary one of its own:
            // gone with the node, so repeated runs leave nothing behind.
            if let Some(dir) = dev_dir {
                remove_dev_dir(&dir);
            }
            ran
        }
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => check_plugin(&file).await,
        Command::Plugin {
            command: PluginCommand::New { name, lang, dir },
        } => super::plugin_new::run(&super::plugin_new::NewArgs { name, lang, dir }),
        Command::Fence {
            action,
            node,
            config,
            wait,
        } => super::fence::run(action, &node, &config, wait).await,
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
        } => blocking(move || client::plugins(&Client::new(&connection), json)).await,
        Command::Plugin {
            command:
                PluginCommand::Versions {
                    type_name,
                    connection,
                },
        } => blocking(move || client::plugin_versions(&Client::new(&connection), &type_name)).await,
        Command::Plugin {
            command:
                PluginCommand::Rollback {
                    type_name,
                    connection,
                },
        } => {
            blocking(move || {
                client::plugin_verb(&Client::new(&connection), &type_name, "rollback", None)
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
                client::plugin_verb(&Client::new(&connection), &type_name, "pin", version)
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
            blocking(move || {
                client::plugin_verb(&Client::new(&connection), &type_name, "unpin", None)
            })
            .await
        }
        Command::Status {
            watch,
            json,
            all,
            summary,
            connection,
        } => {
            let view = match (all, summary) {
                (true, _) => client::StatusView::All,
                (_, true) => client::StatusView::Summary,
                _ => client::StatusView::BySize,
            };
            blocking(move || client::status(&Client::new(&connection), watch, json, view)).await
        }
        Command::Group {
            command,
            connection,
        } => blocking(move || client::group(&Client::new(&connection), command)).await,
        Command::Resource {
            command,
            json,
            connection,
        } => blocking(move || client::resource(&Client::new(&connection), command, json)).await,
        Command::Node {
            command,
            connection,
        } => blocking(move || client::node(&Client::new(&connection), command)).await,
        Command::Events {
            resource,
            event,
            since_ms,
            limit,
            follow,
            json,
            connection,
        } => {
            let filter = crate::event_view::EventFilter {
                resource,
                kind: event,
                since_ms,
                limit,
            };
            let client = Client::new(&connection);
            blocking(move || crate::event_view::events(&client, filter, json, follow)).await
        }
        Command::Component {
            command,
            connection,
        } => blocking(move || client::component(&Client::new(&connection), command)).await,
        Command::WhatIf {
            command,
            connection,
        } => blocking(move || client::what_if(&Client::new(&connection), command)).await,
        Command::DemoService {
            name,
            listen,
            record,
        } => crate::demo_service::serve(&name, listen, record).await,
        // Started in `main`, before the async runtime.
        Command::FenceGuard { .. } => {
            anyhow::bail!("the fence guard does not run in the async runtime")
        }
        Command::MailService { name, .. } => {
            anyhow::bail!("the mail service {name} does not run in the async runtime")
        }
    }
}

/// Run a blocking CLI call off the async workers.
async fn blocking(call: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(call)
        .await
        .context("the command's task failed")?
}

/// Start the agent, wait for SIGINT or SIGTERM, shut it down.
async fn run_agent(config: AgentConfig, signals: &mut StopSignals) -> Result<()> {
    let agent = Agent::start(config).await?;
    signals.wait().await;
    agent.shutdown().await;
    Ok(())
}

fn remove_dev_dir(dir: &std::path::Path) {
    // Logged, not printed: whoever read the banner may have closed stdout.
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "removed the dev node's data directory"),
        Err(err) => tracing::warn!(
            dir = %dir.display(),
            "could not remove the dev node's data directory: {err}"
        ),
    }
}

/// The dev node's configuration, its banner printed: the plain demo, or
/// the `example` asked for.
fn dev_config(example: Option<DevExample>) -> Result<AgentConfig> {
    let exe = std::env::current_exe().context("finding the warden binary")?;
    let dir = crate::dev::data_dir()?;
    let Some(DevExample::Exchange) = example else {
        return demo_config(&dir, &exe);
    };
    let (config, demo) = crate::dev::exchange::config(&dir, &exe)?;
    println!(
        "Warden dev node: the Exchange virtual server {}",
        crate::dev::exchange::SERVER
    );
    print_paths(&dir);
    crate::dev::exchange::print_banner(&demo);
    print_operate(
        &config,
        &format!(
            "warden status; warden events; warden resource fail store; warden group offline {}",
            crate::dev::exchange::SERVER
        ),
    );
    crate::dev::exchange::print_try(&demo);
    Ok(config)
}

fn print_paths(dir: &std::path::Path) {
    println!(
        "  data directory: {} (removed when the node stops)",
        dir.display()
    );
    println!("  configuration:  {}", dir.join("warden.toml").display());
    println!("  event history:  {}", dir.join("events.jsonl").display());
}

/// The admin API and how to reach it from another shell.
fn print_operate(config: &AgentConfig, commands: &str) {
    if let Some(api) = &config.api {
        println!(
            "  admin API:      http://{}/ (token in {})",
            api.listen,
            api.token_file.display()
        );
        println!(
            "  web console:    http://{}/ui (it asks for the token in that file)",
            api.listen
        );
        println!("Operate it from another shell:");
        println!(
            "  export WARDEN_API=http://{} WARDEN_TOKEN=$(cat {})",
            api.listen,
            api.token_file.display()
        );
        println!("  {commands}");
    }
}

/// `--dev` alone: two demo HTTP services.
fn demo_config(dir: &std::path::Path, exe: &std::path::Path) -> Result<AgentConfig> {
    let (config, services) = crate::dev::config(dir, exe)?;
    println!("Warden dev node");
    print_paths(dir);
    for (name, addr) in &services {
        println!("  resource {name}: http://{addr}/");
    }
    print_operate(
        &config,
        "warden status; warden events; warden resource fail mail-api; warden group offline demo",
    );
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
            crate::runtime::kind_name(p.kind),
            if p.required { "required" } else { "optional" },
            p.default_value.as_deref().unwrap_or("-"),
            p.description
        );
    }
    Ok(())
}
