//! `hostile-claim`: a plugin that claims the name of a type it is not.
//!
//! Its `describe` says it is `process`, the built-in type, and it accepts
//! every property `process` takes, so that, if an agent took a plugin's
//! word for its name, dropping this file into the plugins directory would
//! swap it in under every `process` resource. Once there it does what an
//! attacker would with what it inherited: its `online` stops the service
//! the resource was running (the managed process it now holds), and its
//! health checks say all is well, so the swap looks like a success.
//!
//! With no service to take over, its `online` starts its `program`, whose
//! default it sets itself (`/usr/bin/touch`, standing in for `/bin/sh`: a
//! test needs a trace it can look for, here the file its `args` name). A
//! runner that granted a plugin its own default program would run it;
//! `warden plugin test` grants only what `--grant-program` names.
//!
//! `control("whoami", _)` answers `hostile-claim`, so a test can tell which
//! implementation a resource runs on; `control("state", _)` describes the
//! managed process, as the built-in's does.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::process::{self, ProcessState, SpawnSpec};
use warden_sdk::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

/// The name it claims: the built-in type's.
const CLAIMED: &str = "process";
/// What `whoami` answers.
const WHOAMI: &str = "hostile-claim";
/// Every property of the built-in `process`, so that any `process`
/// resource's configuration validates against this plugin.
const PROCESS_PROPERTIES: &[&str] = &[
    "program",
    "args",
    "env",
    "cwd",
    "startup-ms",
    "stop-grace-ms",
];
/// The program it asks to run when the operator named none.
const DEFAULT_PROGRAM: &str = "/usr/bin/touch";

struct HostileClaim;

struct Taken {
    name: String,
    program: String,
    args: Vec<String>,
}

fn describe_state(state: &ProcessState) -> String {
    match state {
        ProcessState::Running(pid) => format!("running as pid {pid}"),
        ProcessState::Exited(code) => format!("exited with status {code}"),
        ProcessState::KilledBySignal(signal) => format!("killed by signal {signal}"),
        ProcessState::NotStarted => "not started".to_string(),
    }
}

impl Guest for HostileClaim {
    type Instance = Taken;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: CLAIMED.to_string(),
            version: "6.6.6".to_string(),
            description: "Not the built-in process type, whatever its name says.".to_string(),
            properties: PROCESS_PROPERTIES
                .iter()
                .map(|name| PropertySpec {
                    name: name.to_string(),
                    kind: PropertyKind::String,
                    default_value: (*name == "program").then(|| DEFAULT_PROGRAM.to_string()),
                    required: false,
                    description: "accepted; program and args are what online starts".to_string(),
                })
                .collect(),
            timing: Timing {
                pending_timeout_ms: 10_000,
                looks_alive_interval_ms: 0,
                is_alive_interval_ms: 1_000,
                check_timeout_ms: 2_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(_properties: Properties) -> Result<(), PropertyError> {
        Ok(())
    }
}

impl GuestInstance for Taken {
    fn open(name: String, properties: Properties) -> Result<Instance, PropertyError> {
        let program = warden_sdk::property(&properties, "program")
            .unwrap_or(DEFAULT_PROGRAM)
            .to_string();
        let args = warden_sdk::property(&properties, "args")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Instance::new(Taken {
            name,
            program,
            args,
        }))
    }

    /// Take over: stop the service the resource ran, and say all is well.
    /// With none running, start its own program.
    fn online(&self) -> Result<(), String> {
        let before = process::state();
        if !matches!(before, ProcessState::Running(_)) {
            let pid = process::spawn(&SpawnSpec {
                program: self.program.clone(),
                args: self.args.clone(),
                env: Vec::new(),
                cwd: None,
            })?;
            host::log(
                Level::Warn,
                &format!("{WHOAMI} started {} as pid {pid}", self.program),
            );
            return Ok(());
        }
        let after = process::stop(0)?;
        host::log(
            Level::Warn,
            &format!(
                "{WHOAMI} took {} over: its service was {}, now {}",
                self.name,
                describe_state(&before),
                describe_state(&after)
            ),
        );
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        process::stop(1_000).map(drop)
    }

    fn terminate(&self) {
        let _ = process::stop(0);
    }

    fn looks_alive(&self) -> Health {
        Health::Healthy
    }

    fn is_alive(&self) -> Health {
        Health::Healthy
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "whoami" => Ok(WHOAMI.to_string()),
            "state" => Ok(describe_state(&process::state())),
            other => Err(format!("unknown control code {other:?}")),
        }
    }
}

warden_sdk::export_plugin!(HostileClaim);
