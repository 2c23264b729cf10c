//! `replica`: a test type for the `replication` export of contract 0.3.0
//! (world `replicated-plugin`, raw bindings). Its "data" is a log of lines
//! in `/data/log`; its part (role, generation, the node it follows, a lag
//! and health set by the test) is kept in the checkpoint, so it survives a
//! fresh instance as a real copy's would survive on disk.
//!
//! The rules are those a real replicated type keeps: `activate` refuses a
//! generation not newer than the copy's own; `start-passive` refuses a
//! source older than it knows; only the active copy takes writes. `control`
//! answers `write TEXT` (append a line, the active only: the new position),
//! `lag N` and `health healthy|failed REASON|diverged REASON` (what
//! copy-status will report), `misbehave CALL spin|trap` (that copy call
//! then spins forever or traps, to be cut off; `misbehave` alone stops it)
//! and `checkpoint`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "replicated-plugin",
});

use std::fs::OpenOptions;
use std::io::Write;

use exports::warden::resource::replication::{
    CopyHealth, CopyRole, CopySource, CopyState, Guest as ReplicationGuest,
};
use exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, InstanceBorrow, Properties, PropertyError, TypeInfo,
};
use warden::resource::checkpoint;
use warden::resource::types::{Timing, TypeFlags};

const LOG: &str = "/data/log";

struct Replica;

struct Copy;

fn role() -> Result<CopyRole, String> {
    Ok(match checkpoint::get("role")?.as_deref() {
        Some("active") => CopyRole::Active,
        Some("passive") => CopyRole::Passive,
        Some("deposed") => CopyRole::Deposed,
        _ => CopyRole::None,
    })
}

fn set_role(role: &str, generation: u64) -> Result<(), String> {
    checkpoint::set("role", role)?;
    checkpoint::set("generation", &generation.to_string())
}

fn number(key: &str) -> Result<u64, String> {
    match checkpoint::get(key)? {
        Some(text) => text
            .parse()
            .map_err(|_| format!("checkpoint {key} holds {text:?}, not a number")),
        None => Ok(0),
    }
}

/// How many lines the log holds: the copy's position.
fn position() -> Result<u64, String> {
    match std::fs::read_to_string(LOG) {
        Ok(text) => Ok(text.lines().count() as u64),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading {LOG}: {e}")),
    }
}

fn write(line: &str) -> Result<String, String> {
    if !matches!(role()?, CopyRole::Active) {
        return Err(format!(
            "this copy takes no writes: it is {:?} at generation {}",
            role()?,
            number("generation")?
        ));
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG)
        .map_err(|e| format!("opening {LOG}: {e}"))?;
    writeln!(log, "{line}").map_err(|e| format!("writing {LOG}: {e}"))?;
    Ok(position()?.to_string())
}

/// Spin or trap in `call` if the test asked for it (`misbehave`).
fn misbehave(call: &str) {
    match checkpoint::get("misbehave").ok().flatten().as_deref() {
        Some(asked) if asked == format!("{call} spin") =>
        {
            #[allow(clippy::empty_loop, reason = "a hung call, for the host to cut off")]
            loop {}
        }
        Some(asked) if asked == format!("{call} trap") => {
            panic!("replica: deliberate trap in {call}")
        }
        _ => {}
    }
}

fn health() -> Result<CopyHealth, String> {
    let text = checkpoint::get("health")?.unwrap_or_default();
    Ok(match text.split_once(' ') {
        Some(("failed", reason)) => CopyHealth::Failed(reason.to_string()),
        Some(("diverged", reason)) => CopyHealth::Diverged(reason.to_string()),
        _ => CopyHealth::Healthy,
    })
}

impl Guest for Replica {
    type Instance = Copy;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "replica".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "a test type with active and passive copies of a log of lines".to_string(),
            properties: Vec::new(),
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

impl GuestInstance for Copy {
    fn open(_name: String, _properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(Copy))
    }

    /// Without copies configured the resource is simply active.
    fn online(&self) -> Result<(), String> {
        if matches!(role()?, CopyRole::None) {
            set_role("active", number("generation")?)?;
        }
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        checkpoint::delete("role")
    }

    fn terminate(&self) {}

    fn looks_alive(&self) -> Health {
        self.is_alive()
    }

    fn is_alive(&self) -> Health {
        match health() {
            Ok(CopyHealth::Healthy) => Health::Healthy,
            Ok(CopyHealth::Failed(reason) | CopyHealth::Diverged(reason)) => Health::Failed(reason),
            Err(e) => Health::Failed(e),
        }
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        match code.as_str() {
            "write" => write(&payload),
            "lag" => {
                let lag: u64 = payload
                    .parse()
                    .map_err(|_| format!("{payload:?} is not a number"))?;
                checkpoint::set("lag", &lag.to_string()).map(|()| String::new())
            }
            "health" => checkpoint::set("health", &payload).map(|()| String::new()),
            "misbehave" if payload.is_empty() => {
                checkpoint::delete("misbehave").map(|()| String::new())
            }
            "misbehave" => checkpoint::set("misbehave", &payload).map(|()| String::new()),
            "checkpoint" => Ok(checkpoint::list()?
                .into_iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect()),
            other => Err(format!(
                "unknown control code {other:?}: try write, lag, health, misbehave or checkpoint"
            )),
        }
    }
}

impl ReplicationGuest for Replica {
    fn start_passive(_copy: InstanceBorrow<'_>, source: CopySource) -> Result<(), String> {
        let own = number("generation")?;
        if source.generation < own {
            return Err(format!(
                "the source on {} has generation {}, older than this copy's {own}",
                source.node.as_deref().unwrap_or("no node"),
                source.generation
            ));
        }
        checkpoint::set("source", source.node.as_deref().unwrap_or(""))?;
        set_role("passive", source.generation)
    }

    fn stop_passive(_copy: InstanceBorrow<'_>) -> Result<(), String> {
        checkpoint::delete("source")?;
        checkpoint::set("role", "none")
    }

    fn activate(_copy: InstanceBorrow<'_>, generation: u64) -> Result<(), String> {
        misbehave("activate");
        let own = number("generation")?;
        if generation <= own {
            return Err(format!(
                "generation {generation} is not newer than this copy's {own}"
            ));
        }
        checkpoint::delete("source")?;
        set_role("active", generation)
    }

    fn deactivate(_copy: InstanceBorrow<'_>, generation: u64) -> Result<(), String> {
        let own = number("generation")?;
        if generation < own {
            return Err(format!(
                "generation {generation} is older than this copy's {own}"
            ));
        }
        set_role("deposed", generation)
    }

    fn copy_status(_copy: InstanceBorrow<'_>) -> CopyState {
        misbehave("copy-status");
        let read = || -> Result<CopyState, String> {
            let position = position()?;
            Ok(CopyState {
                role: role()?,
                generation: number("generation")?,
                copied: position,
                replayed: position,
                lag: number("lag")?,
                health: health()?,
            })
        };
        read().unwrap_or_else(|e| CopyState {
            role: CopyRole::None,
            generation: 0,
            copied: 0,
            replayed: 0,
            lag: 0,
            health: CopyHealth::Failed(e),
        })
    }
}

export!(Replica);
