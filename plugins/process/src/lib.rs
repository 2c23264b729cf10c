//! `process`: the generic process resource type (Pacemaker's `anything`,
//! the Windows cluster's Generic Application).
//!
//! Online starts `program` with `args` and waits `startup-ms` for it to stay
//! up; is-alive checks that it still runs; offline stops it (SIGTERM, then
//! SIGKILL after `stop-grace-ms`); terminate kills it at once. The agent
//! reports the process's exit at once, without waiting for the next poll.
//!
//! The program must be allowed for this plugin in the node configuration.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::process::{self, ProcessState, SpawnSpec};
use warden_sdk::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

struct ProcessType;

struct ProcessInstance {
    name: String,
    spec: SpawnSpec,
    startup_ms: u64,
    stop_grace_ms: u64,
}

fn spec(name: &str, kind: PropertyKind, default: Option<&str>, description: &str) -> PropertySpec {
    PropertySpec {
        name: name.to_string(),
        kind,
        default_value: default.map(str::to_string),
        required: default.is_none(),
        description: description.to_string(),
    }
}

fn number(properties: &Properties, name: &str, default: u64) -> Result<u64, PropertyError> {
    match warden_sdk::property(properties, name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| PropertyError {
            property: name.to_string(),
            reason: format!("expected a number of milliseconds, got {text:?}"),
        }),
    }
}

fn parse(properties: &Properties) -> Result<ProcessInstance, PropertyError> {
    let program = warden_sdk::property(properties, "program")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| PropertyError {
            property: "program".to_string(),
            reason: "required: the path of the program to run".to_string(),
        })?;
    let args = warden_sdk::property(properties, "args")
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let env = warden_sdk::property(properties, "env")
        .map(|text| {
            text.split_whitespace()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| PropertyError {
                            property: "env".to_string(),
                            reason: format!("expected KEY=VALUE, got {pair:?}"),
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(ProcessInstance {
        name: String::new(),
        spec: SpawnSpec {
            program: program.to_string(),
            args,
            env,
            cwd: warden_sdk::property(properties, "cwd").map(str::to_string),
        },
        startup_ms: number(properties, "startup-ms", 200)?,
        stop_grace_ms: number(properties, "stop-grace-ms", 5_000)?,
    })
}

fn describe_state(state: &ProcessState) -> String {
    match state {
        ProcessState::Running(pid) => format!("running as pid {pid}"),
        ProcessState::Exited(code) => format!("exited with status {code}"),
        ProcessState::KilledBySignal(signal) => format!("killed by signal {signal}"),
        ProcessState::NotStarted => "not started".to_string(),
    }
}

impl Guest for ProcessType {
    type Instance = ProcessInstance;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "process".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Runs one program and keeps it running.".to_string(),
            properties: vec![
                spec(
                    "program",
                    PropertyKind::String,
                    None,
                    "Path of the program to run",
                ),
                spec(
                    "args",
                    PropertyKind::String,
                    Some(""),
                    "Arguments, separated by spaces",
                ),
                spec(
                    "env",
                    PropertyKind::String,
                    Some(""),
                    "KEY=VALUE pairs, separated by spaces",
                ),
                spec(
                    "cwd",
                    PropertyKind::String,
                    Some(""),
                    "Working directory (default: the resource's data directory)",
                ),
                spec(
                    "startup-ms",
                    PropertyKind::DurationMs,
                    Some("200"),
                    "How long the program must stay up for online to succeed",
                ),
                spec(
                    "stop-grace-ms",
                    PropertyKind::DurationMs,
                    Some("5000"),
                    "How long offline waits after SIGTERM before SIGKILL",
                ),
            ],
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 0,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: 5_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        parse(&properties).map(|_| ())
    }
}

impl GuestInstance for ProcessInstance {
    fn open(name: String, properties: Properties) -> Result<Instance, PropertyError> {
        let mut instance = parse(&properties)?;
        instance.name = name;
        Ok(Instance::new(instance))
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
        process::stop(self.stop_grace_ms).map(|_| ())
    }

    fn terminate(&self) {
        if let Err(err) = process::stop(0) {
            host::log(Level::Warn, &format!("terminate: {err}"));
        }
    }

    fn looks_alive(&self) -> Health {
        self.is_alive()
    }

    fn is_alive(&self) -> Health {
        match process::state() {
            ProcessState::Running(_) => Health::Healthy,
            other => Health::Failed(format!("{} {}", self.spec.program, describe_state(&other))),
        }
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "state" => Ok(describe_state(&process::state())),
            other => Err(format!("unknown control code {other:?}; known: state")),
        }
    }
}

warden_sdk::export_plugin!(ProcessType);
