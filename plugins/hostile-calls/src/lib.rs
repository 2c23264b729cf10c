//! `hostile-calls`: a test resource type that tries to stall the agent.
//!
//! It is what an attacker would write to keep the agent waiting: an export
//! that never returns and keeps calling `report-progress`, hoping each
//! report buys it more time, or one that blocks in a host call forever.
//! The property `stall` names the export and how, as `EXPORT:HOW`:
//!
//! | HOW        | what the export does                                   |
//! |------------|--------------------------------------------------------|
//! | `progress` | reports progress every 20 ms, forever                  |
//! | `block`    | sleeps in a host call forever, reporting nothing       |
//!
//! EXPORT is one of `validate`, `open`, `online`, `offline`, `looks-alive`,
//! `is-alive`, `control`, `terminate`. Without a stall (`none`, the
//! default) the type is healthy. Its online is declared to have no pending
//! timeout (`online-no-pending-timeout`, as a large store's mount): only
//! the operator's cancel, or a pending timeout the operator sets on the
//! resource, ends a stalled online.
//!
//! The same source builds other types, told apart by the crate's name:
//! - `hostile-calls-next`: this type at version 0.2.0 (a hot-swap target);
//! - `hostile-calls-describe`: `describe` itself reports progress forever;
//! - `hostile-timings`: declares `u64::MAX` as its check timeout.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

const EXPORTS: &[&str] = &[
    "validate",
    "open",
    "online",
    "offline",
    "looks-alive",
    "is-alive",
    "control",
    "terminate",
];
const HOWS: &[&str] = &["progress", "block"];

const CRATE: &str = env!("CARGO_PKG_NAME");
const DESCRIBE_BUILD: bool = matches!(CRATE.as_bytes(), b"hostile-calls-describe");
const TIMINGS_BUILD: bool = matches!(CRATE.as_bytes(), b"hostile-timings");

struct Hostile;

/// Which export stalls, and how.
struct Stall {
    export: String,
    how: String,
}

struct HostileInstance {
    name: String,
    stall: Option<Stall>,
}

fn parse_stall(properties: &Properties) -> Result<Option<Stall>, PropertyError> {
    let value = warden_sdk::property(properties, "stall").unwrap_or("none");
    if value.is_empty() || value == "none" {
        return Ok(None);
    }
    let refuse = |reason: String| PropertyError {
        property: "stall".to_string(),
        reason,
    };
    let (export, how) = value
        .split_once(':')
        .ok_or_else(|| refuse(format!("expected EXPORT:HOW, got {value:?}")))?;
    if !EXPORTS.contains(&export) {
        return Err(refuse(format!(
            "unknown export {export:?}; expected one of {EXPORTS:?}"
        )));
    }
    if !HOWS.contains(&how) {
        return Err(refuse(format!(
            "unknown way {how:?}; expected one of {HOWS:?}"
        )));
    }
    Ok(Some(Stall {
        export: export.to_string(),
        how: how.to_string(),
    }))
}

/// Never return: report progress every 20 ms, or block in a host call.
fn stall(how: &str, export: &str) -> ! {
    let mut reports: u64 = 0;
    loop {
        if how == "progress" {
            reports += 1;
            let left = host::report_progress(&format!("{export}: still busy ({reports})"));
            if reports == 1 {
                host::log(Level::Info, &format!("{export}: {left} ms left"));
            }
            host::sleep_ms(20);
        } else {
            host::sleep_ms(3_600_000);
        }
    }
}

fn stall_if(stall_spec: &Option<Stall>, export: &str) {
    if let Some(s) = stall_spec
        && s.export == export
    {
        stall(&s.how, export);
    }
}

impl Guest for Hostile {
    type Instance = HostileInstance;

    fn describe() -> TypeInfo {
        if DESCRIBE_BUILD {
            stall("progress", "describe");
        }
        let name = if CRATE == "hostile-calls-next" {
            "hostile-calls"
        } else {
            CRATE
        };
        TypeInfo {
            name: name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A test type whose calls stall on request.".to_string(),
            properties: vec![PropertySpec {
                name: "stall".to_string(),
                kind: PropertyKind::String,
                default_value: Some("none".to_string()),
                required: false,
                description: "EXPORT:HOW (progress or block), e.g. validate:progress".to_string(),
            }],
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 5_000,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: if TIMINGS_BUILD { u64::MAX } else { 5_000 },
            },
            flags: TypeFlags::ONLINE_NO_PENDING_TIMEOUT,
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        let parsed = parse_stall(&properties)?;
        stall_if(&parsed, "validate");
        Ok(())
    }
}

impl HostileInstance {
    fn healthy(&self, export: &str) -> Health {
        stall_if(&self.stall, export);
        Health::Healthy
    }
}

impl GuestInstance for HostileInstance {
    fn open(name: String, properties: Properties) -> Result<Instance, PropertyError> {
        let stall_spec = parse_stall(&properties)?;
        stall_if(&stall_spec, "open");
        Ok(Instance::new(HostileInstance {
            name,
            stall: stall_spec,
        }))
    }

    fn online(&self) -> Result<(), String> {
        stall_if(&self.stall, "online");
        host::log(Level::Info, &format!("{} is online", self.name));
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        stall_if(&self.stall, "offline");
        Ok(())
    }

    fn terminate(&self) {
        stall_if(&self.stall, "terminate");
    }

    fn looks_alive(&self) -> Health {
        self.healthy("looks-alive")
    }

    fn is_alive(&self) -> Health {
        self.healthy("is-alive")
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        stall_if(&self.stall, "control");
        Err(format!("unknown control code {code:?}"))
    }
}

warden_sdk::export_plugin!(Hostile);
