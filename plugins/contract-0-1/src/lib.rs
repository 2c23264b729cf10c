//! `legacy-process`: a resource type built against the released contract
//! `warden:resource@0.1.0` (`wit/released/0.1.0/`), with the raw bindings,
//! as a plugin compiled before 0.2.0 existed would be. The agent must run
//! it unchanged, so it calls every import 0.1.0 has: `host` (log, clock,
//! sleep, progress), `process` (spawn, stop, state) and `checkpoint`.
//!
//! Properties: `program` (absolute path) and `args` (space separated).
//! Online starts the program and records `started-at` in the checkpoint;
//! is-alive asks for the process's state; offline stops it. `control`
//! answers `checkpoint` with the record's `k=v` lines and `now` with the
//! clock.

wit_bindgen::generate!({
    path: "../../wit/released/0.1.0",
    world: "plugin",
});

use std::cell::RefCell;

use exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden::resource::checkpoint;
use warden::resource::host::{self, Level};
use warden::resource::process::{self, ProcessState, SpawnSpec};
use warden::resource::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

struct Legacy;

struct Resource {
    program: String,
    args: Vec<String>,
    /// Whether online has started the program (is-alive is quiet before).
    started: RefCell<bool>,
}

fn spec(name: &str, required: bool, description: &str) -> PropertySpec {
    PropertySpec {
        name: name.to_string(),
        kind: PropertyKind::String,
        default_value: (!required).then(String::new),
        required,
        description: description.to_string(),
    }
}

fn parse(properties: &Properties) -> Result<Resource, PropertyError> {
    let value = |name: &str| {
        properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let program = value("program").unwrap_or_default();
    if !program.starts_with('/') {
        return Err(PropertyError {
            property: "program".to_string(),
            reason: format!("{program:?} is not an absolute path"),
        });
    }
    let args = value("args")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Ok(Resource {
        program,
        args,
        started: RefCell::new(false),
    })
}

impl Guest for Legacy {
    type Instance = Resource;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "legacy-process".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "a process type built against contract 0.1.0".to_string(),
            properties: vec![
                spec("program", true, "the program to run, by absolute path"),
                spec("args", false, "its arguments, separated by spaces"),
            ],
            timing: Timing {
                pending_timeout_ms: 10_000,
                looks_alive_interval_ms: 0,
                is_alive_interval_ms: 500,
                check_timeout_ms: 2_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        parse(&properties).map(drop)
    }
}

impl GuestInstance for Resource {
    fn open(name: String, properties: Properties) -> Result<Instance, PropertyError> {
        host::log(Level::Debug, &format!("opening {name}"));
        parse(&properties).map(Instance::new)
    }

    fn online(&self) -> Result<(), String> {
        if let ProcessState::Running(_) = process::state() {
            *self.started.borrow_mut() = true;
            return Ok(());
        }
        host::report_progress(&format!("starting {}", self.program));
        let pid = process::spawn(&SpawnSpec {
            program: self.program.clone(),
            args: self.args.clone(),
            env: Vec::new(),
            cwd: None,
        })?;
        host::sleep_ms(50);
        checkpoint::set("started-at", &host::now_ms().to_string())?;
        host::log(Level::Info, &format!("legacy-process started pid {pid}"));
        *self.started.borrow_mut() = true;
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        *self.started.borrow_mut() = false;
        match process::stop(2_000)? {
            ProcessState::KilledBySignal(signal) => {
                host::log(Level::Info, &format!("stopped by signal {signal}"));
            }
            ProcessState::Exited(code) => host::log(Level::Info, &format!("exited {code}")),
            ProcessState::Running(pid) => return Err(format!("pid {pid} still runs")),
            ProcessState::NotStarted => {}
        }
        Ok(())
    }

    fn terminate(&self) {
        let _ = process::stop(0);
    }

    fn looks_alive(&self) -> Health {
        self.is_alive()
    }

    fn is_alive(&self) -> Health {
        match process::state() {
            ProcessState::Running(_) => Health::Healthy,
            _ if !*self.started.borrow() => Health::Healthy,
            ProcessState::Exited(code) => Health::Failed(format!("exited with status {code}")),
            ProcessState::KilledBySignal(signal) => {
                Health::Failed(format!("killed by signal {signal}"))
            }
            ProcessState::NotStarted => Health::Failed("not running".to_string()),
        }
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "checkpoint" => Ok(checkpoint::list()?
                .into_iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect()),
            "now" => Ok(host::now_ms().to_string()),
            other => Err(format!(
                "unknown control code {other:?}: try checkpoint or now"
            )),
        }
    }
}

export!(Legacy);
