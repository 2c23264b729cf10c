//! `legacy-prober`: a replicated resource type built against the released
//! contract `warden:resource@0.4.0` (`wit/released/0.4.0/`, world
//! `replicated-plugin`), with the raw bindings, as a plugin compiled before
//! 0.5.0 existed would be. The agent must run it unchanged: find its
//! `replication` export under 0.4.0's name and call it, and answer every
//! interface 0.4.0 imports (`host`, `process`, `checkpoint`, `network`,
//! `probe`).
//!
//! It manages nothing. Its part (role and generation) is kept in the
//! checkpoint, with the rules a real copy keeps: `activate` refuses a
//! generation not newer than its own, `start-passive` a source older than
//! it knows. `control` answers `checkpoint` (the record's `k=v` lines),
//! `now` (the clock), `state` (the process state: none runs), `lookup
//! NAME` (the network import), and the three probes of 0.4.0 against its
//! `address` property: `connect`, `line SEND\tPREFIX` and `http PATH`
//! (status 200 expected); a probe's error is `KIND: why`.

wit_bindgen::generate!({
    path: "../../wit/released/0.4.0",
    world: "replicated-plugin",
});

use exports::warden::resource::replication::{
    CopyHealth, CopyRole, CopySource, CopyState, Guest as ReplicationGuest,
};
use exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, InstanceBorrow, Properties, PropertyError, TypeInfo,
};
use warden::resource::host::{self, Level};
use warden::resource::probe::{self, ProbeError};
use warden::resource::process::{self, ProcessState};
use warden::resource::types::{PropertyKind, PropertySpec, Timing, TypeFlags};
use warden::resource::{checkpoint, network};

/// How long each probe may take.
const PROBE_TIMEOUT_MS: u64 = 2_000;

struct LegacyReplica;

/// One resource: the address its probes go to.
struct Copy {
    address: String,
}

/// A probe's error as `KIND: why`.
fn probe_text(error: ProbeError) -> String {
    match error {
        ProbeError::Denied(why) => format!("denied: {why}"),
        ProbeError::Invalid(why) => format!("invalid: {why}"),
        ProbeError::Connect(why) => format!("connect: {why}"),
        ProbeError::TimedOut(why) => format!("timed-out: {why}"),
        ProbeError::Unexpected(why) => format!("unexpected: {why}"),
    }
}

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
            name: "legacy-prober".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "a replicated type built against contract 0.4.0 that probes".to_string(),
            properties: vec![PropertySpec {
                name: "address".to_string(),
                kind: PropertyKind::Address,
                default_value: Some(String::new()),
                required: false,
                description: "Where the probes go".to_string(),
            }],
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
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        let address = properties
            .into_iter()
            .find(|(name, _)| name == "address")
            .map(|(_, value)| value)
            .unwrap_or_default();
        Ok(Instance::new(Copy { address }))
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
            "connect" => probe::connect(&self.address, PROBE_TIMEOUT_MS)
                .map(|ms| format!("ok {ms}"))
                .map_err(probe_text),
            "line" => {
                let (send, prefix) = payload.split_once('\t').unwrap_or((&payload, ""));
                let send = (!send.is_empty()).then_some(send);
                probe::exchange_line(&self.address, send, prefix, PROBE_TIMEOUT_MS)
                    .map(|line| format!("ok {line}"))
                    .map_err(probe_text)
            }
            "http" => probe::http_get(&self.address, &payload, 200, PROBE_TIMEOUT_MS)
                .map(|status| format!("ok {status}"))
                .map_err(probe_text),
            other => Err(format!(
                "unknown control code {other:?}: try checkpoint, now, state, lookup, connect, \
                 line or http"
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
                health: CopyHealth::Diverged("a 0.4.0 copy's own words".to_string()),
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
