//! `legacy-replica`: a replicated resource type built against the released
//! contract `warden:resource@0.3.0` (`wit/released/0.3.0/`, world
//! `replicated-plugin`), with the raw bindings, as a plugin compiled before
//! 0.4.0 existed would be. The agent must run it unchanged: find its
//! `replication` export under 0.3.0's name and call it, and answer every
//! interface 0.3.0 imports (`host`, `process`, `checkpoint`, `network`).
//!
//! It manages nothing. Its part (role and generation) is kept in the
//! checkpoint, with the rules a real copy keeps: `activate` refuses a
//! generation not newer than its own, `start-passive` a source older than
//! it knows. `control` answers `checkpoint` (the record's `k=v` lines),
//! `now` (the clock), `state` (the process state: none runs) and `lookup
//! NAME` (the network import; without a grant it is refused naming the
//! grant, which is the point: the call reached the host).

wit_bindgen::generate!({
    path: "../../wit/released/0.3.0",
    world: "replicated-plugin",
});

use exports::warden::resource::replication::{
    CopyHealth, CopyRole, CopySource, CopyState, Guest as ReplicationGuest,
};
use exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, InstanceBorrow, Properties, PropertyError, TypeInfo,
};
use warden::resource::host::{self, Level};
use warden::resource::process::{self, ProcessState};
use warden::resource::types::{Timing, TypeFlags};
use warden::resource::{checkpoint, network};

struct LegacyReplica;

struct Copy;

fn generation() -> Result<u64, String> {
    match checkpoint::get("generation")? {
        Some(text) => text
            .parse()
            .map_err(|_| format!("checkpoint generation holds {text:?}, not a number")),
        None => Ok(0),
    }
}

fn role() -> Result<CopyRole, String> {
    Ok(match checkpoint::get("role")?.as_deref() {
        Some("active") => CopyRole::Active,
        Some("passive") => CopyRole::Passive,
        Some("deposed") => CopyRole::Deposed,
        _ => CopyRole::None,
    })
}

fn set_role(role: &str, generation: u64) -> Result<(), String> {
    host::log(
        Level::Info,
        &format!("now {role} at generation {generation}"),
    );
    checkpoint::set("role", role)?;
    checkpoint::set("generation", &generation.to_string())
}

impl Guest for LegacyReplica {
    type Instance = Copy;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "legacy-replica".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "a replicated type built against contract 0.3.0".to_string(),
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

    fn online(&self) -> Result<(), String> {
        if matches!(role()?, CopyRole::None) {
            set_role("active", generation()?)?;
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
        match role() {
            Ok(CopyRole::None) => Health::Failed("not online".to_string()),
            Ok(_) => Health::Healthy,
            Err(e) => Health::Failed(e),
        }
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        match code.as_str() {
            "checkpoint" => Ok(checkpoint::list()?
                .into_iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect()),
            "now" => Ok(host::now_ms().to_string()),
            "state" => Ok(match process::state() {
                ProcessState::NotStarted => "not-started".to_string(),
                other => format!("{other:?}"),
            }),
            "lookup" => Ok(network::lookup_name(&payload)?.join(" ")),
            other => Err(format!(
                "unknown control code {other:?}: try checkpoint, now, state or lookup"
            )),
        }
    }
}

impl ReplicationGuest for LegacyReplica {
    fn start_passive(_copy: InstanceBorrow<'_>, source: CopySource) -> Result<(), String> {
        let own = generation()?;
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
        let own = self::generation()?;
        if generation <= own {
            return Err(format!(
                "generation {generation} is not newer than this copy's {own}"
            ));
        }
        checkpoint::delete("source")?;
        set_role("active", generation)
    }

    fn deactivate(_copy: InstanceBorrow<'_>, generation: u64) -> Result<(), String> {
        let own = self::generation()?;
        if generation < own {
            return Err(format!(
                "generation {generation} is older than this copy's {own}"
            ));
        }
        set_role("deposed", generation)
    }

    fn copy_status(_copy: InstanceBorrow<'_>) -> CopyState {
        let read = || -> Result<CopyState, String> {
            Ok(CopyState {
                role: role()?,
                generation: generation()?,
                copied: 7,
                replayed: 5,
                lag: 2,
                health: CopyHealth::Diverged("a 0.3.0 copy's own words".to_string()),
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

export!(LegacyReplica);
