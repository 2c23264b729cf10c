//! `process`: the generic process resource type (Pacemaker's `anything`,
//! the Windows cluster's Generic Application).
//!
//! Online starts `program` with `args` and waits `startup-ms` for it to stay
//! up; is-alive checks that it still runs; offline stops it (SIGTERM, then
//! SIGKILL after `stop-grace-ms`); terminate kills it at once. The agent
//! reports the process's exit at once, without waiting for the next poll.
//!
//! The program must be allowed for this plugin in the node configuration.

use warden_sdk::host::{self, Level};
use warden_sdk::process::{self, ProcessState, SpawnSpec};
use warden_sdk::service::describe_state;
use warden_sdk::types::{Health, PropertyError, Timing};
use warden_sdk::{DEFAULT_TIMING, Property, Props, ResourceType, refuse, unknown_control};

struct Process {
    name: String,
    spec: SpawnSpec,
    startup_ms: u64,
    stop_grace_ms: u64,
}

/// `KEY=VALUE` pairs separated by spaces.
fn parse_env(text: &str) -> Result<Vec<(String, String)>, PropertyError> {
    text.split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| refuse("env", format!("expected KEY=VALUE, got {pair:?}")))
        })
        .collect()
}

impl ResourceType for Process {
    const NAME: &'static str = "process";
    const DESCRIPTION: &'static str = "Runs one program and keeps it running.";
    /// The agent reports an exit at once; no looks-alive polling.
    const TIMING: Timing = Timing {
        looks_alive_interval_ms: 0,
        ..DEFAULT_TIMING
    };

    fn properties() -> Vec<Property> {
        vec![
            Property::string("program", "Path of the program to run"),
            Property::string("args", "Arguments, separated by spaces").default(""),
            Property::string("env", "KEY=VALUE pairs, separated by spaces").default(""),
            Property::string(
                "cwd",
                "Working directory (default: the resource's data directory)",
            )
            .default(""),
            Property::duration_ms(
                "startup-ms",
                "How long the program must stay up for online to succeed",
            )
            .default("200"),
            Property::duration_ms(
                "stop-grace-ms",
                "How long offline waits after SIGTERM before SIGKILL",
            )
            .default("5000"),
        ]
    }

    fn open(name: &str, props: &Props) -> Result<Self, PropertyError> {
        let cwd = props.string("cwd")?;
        Ok(Process {
            name: name.to_string(),
            spec: SpawnSpec {
                program: props.string("program")?,
                args: props
                    .get("args")?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                env: parse_env(props.get("env")?)?,
                // Empty: the resource's data directory.
                cwd: Some(cwd).filter(|c| !c.is_empty()),
            },
            startup_ms: props.u64("startup-ms")?,
            stop_grace_ms: props.u64("stop-grace-ms")?,
        })
    }

    fn online(&self) -> Result<(), String> {
        if let ProcessState::Running(pid) = process::state() {
            host::log(
                Level::Info,
                &format!("{} already runs as pid {pid}", self.name),
            );
            return Ok(());
        }
        let pid = process::spawn(&self.spec)?;
        host::log(
            Level::Info,
            &format!("started {} as pid {pid}", self.spec.program),
        );
        host::sleep_ms(self.startup_ms);
        match process::state() {
            ProcessState::Running(_) => Ok(()),
            other => Err(format!(
                "{} did not stay up: {}",
                self.spec.program,
                describe_state(&other)
            )),
        }
    }

    fn offline(&self) -> Result<(), String> {
        process::stop(self.stop_grace_ms).map(drop)
    }

    fn is_alive(&self) -> Health {
        match process::state() {
            ProcessState::Running(_) => Health::Healthy,
            other => Health::Failed(format!("{} {}", self.spec.program, describe_state(&other))),
        }
    }

    fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "state" => Ok(describe_state(&process::state())),
            other => Err(unknown_control(other, &["state"])),
        }
    }
}

warden_sdk::export_type!(Process);
