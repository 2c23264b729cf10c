//! `chaos`: a test resource type that misbehaves on request.
//!
//! The property `fault` names one way to fail in one export, as
//! `MODE:EXPORT`, for example `hang:online` or `trap:is-alive`:
//!
//! | mode      | what the export does                                   |
//! |-----------|--------------------------------------------------------|
//! | `hang`    | spins in a pure-wasm loop forever (epoch cut-off)      |
//! | `block`   | sleeps in a host call forever (async timeout cut-off)  |
//! | `trap`    | panics, which traps                                    |
//! | `oom`     | allocates without bound (memory limit)                 |
//! | `recurse` | recurses without bound (stack limit)                   |
//!
//! EXPORT is one of `open`, `online`, `offline`, `terminate`,
//! `looks-alive`, `is-alive`, `control`. Without a fault the type is healthy.
//! `online-ms` makes online take that long, reporting progress every
//! `progress-ms` when set. `control("fail", reason)` makes the next health
//! checks fail with that reason until the next online.
//!
//! Sandbox probes, each answering what happened (an `Err` carries the
//! error the sandbox gave):
//!
//! | control code     | payload          | does                                  |
//! |------------------|------------------|---------------------------------------|
//! | `read-file`      | path             | reads the file, answers its text      |
//! | `write-file`     | `path\ntext`     | writes the file                       |
//! | `connect`        | `host:port`      | opens a TCP connection and closes it  |
//! | `checkpoint-get` | key              | the value, or `(none)`                |
//! | `checkpoint-set` | `key=value`      | stores it                             |
//! | `checkpoint-delete` | key           | removes it                            |
//! | `checkpoint-list` | —               | `k=v` lines                           |
//! | `trap`           | —                | panics, so the agent needs a new instance |
//!
//! The property `allow-connect` (an address) is the one address the probes
//! may reach.

use std::cell::RefCell;

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::checkpoint;
use warden_sdk::host::{self, Level};
use warden_sdk::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

const EXPORTS: &[&str] = &[
    "open",
    "online",
    "offline",
    "terminate",
    "looks-alive",
    "is-alive",
    "control",
];
const MODES: &[&str] = &["hang", "block", "trap", "oom", "recurse"];

/// The `chaos-broken` crate compiles this same source as a version whose
/// health checks always trap (a bad upgrade, for the hot-swap tests).
const BROKEN_BUILD: bool = matches!(env!("CARGO_PKG_NAME").as_bytes(), b"chaos-broken");

/// The `chaos-stuck` crate compiles this same source as a version whose
/// online spins forever (a bad upgrade the hot swap must reject).
const STUCK_BUILD: bool = matches!(env!("CARGO_PKG_NAME").as_bytes(), b"chaos-stuck");

struct Chaos;

struct Fault {
    mode: String,
    export: String,
}

struct ChaosInstance {
    name: String,
    fault: Option<Fault>,
    online_ms: u64,
    progress_ms: u64,
    failing: RefCell<Option<String>>,
}

fn parse_fault(value: &str) -> Result<Option<Fault>, String> {
    if value.is_empty() || value == "none" {
        return Ok(None);
    }
    let (mode, export) = value
        .split_once(':')
        .ok_or_else(|| format!("expected MODE:EXPORT, got {value:?}"))?;
    if !MODES.contains(&mode) {
        return Err(format!("unknown mode {mode:?}; expected one of {MODES:?}"));
    }
    if !EXPORTS.contains(&export) {
        return Err(format!(
            "unknown export {export:?}; expected one of {EXPORTS:?}"
        ));
    }
    Ok(Some(Fault {
        mode: mode.to_string(),
        export: export.to_string(),
    }))
}

fn parse_ms(properties: &Properties, name: &str) -> Result<u64, PropertyError> {
    match warden_sdk::property(properties, name) {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| PropertyError {
            property: name.to_string(),
            reason: format!("expected a number of milliseconds, got {text:?}"),
        }),
    }
}

fn parse(properties: &Properties) -> Result<(Option<Fault>, u64, u64), PropertyError> {
    let fault = parse_fault(warden_sdk::property(properties, "fault").unwrap_or("none")).map_err(
        |reason| PropertyError {
            property: "fault".to_string(),
            reason,
        },
    )?;
    Ok((
        fault,
        parse_ms(properties, "online-ms")?,
        parse_ms(properties, "progress-ms")?,
    ))
}

/// Misbehave as `mode` says. Only returns for an unknown mode.
fn misbehave(mode: &str, export: &str) {
    match mode {
        "hang" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "block" => loop {
            host::sleep_ms(3_600_000);
        },
        "trap" => panic!("chaos: deliberate trap in {export}"),
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        "recurse" => {
            std::hint::black_box(recurse(0));
        }
        _ => {}
    }
}

/// Recurse through an opaque function pointer, so the compiler can neither
/// turn the recursion into a loop nor inline it away: every level is a real
/// wasm call frame, and the wasm stack overflows.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let next: fn(u64) -> u64 = std::hint::black_box(recurse);
    next(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

impl ChaosInstance {
    fn maybe_misbehave(&self, export: &str) {
        if let Some(fault) = &self.fault
            && fault.export == export
        {
            misbehave(&fault.mode, export);
        }
    }

    fn health(&self, export: &str) -> Health {
        if BROKEN_BUILD {
            panic!("chaos-broken: every health check traps in this build");
        }
        self.maybe_misbehave(export);
        match self.failing.borrow().as_ref() {
            Some(reason) => Health::Failed(reason.clone()),
            None => Health::Healthy,
        }
    }
}

impl Guest for Chaos {
    type Instance = ChaosInstance;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "chaos".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A test type that hangs, traps or exhausts memory on request.".to_string(),
            properties: vec![
                PropertySpec {
                    name: "fault".to_string(),
                    kind: PropertyKind::String,
                    default_value: Some("none".to_string()),
                    required: false,
                    description: "MODE:EXPORT, e.g. hang:online; none for a healthy resource"
                        .to_string(),
                },
                PropertySpec {
                    name: "online-ms".to_string(),
                    kind: PropertyKind::DurationMs,
                    default_value: Some("0".to_string()),
                    required: false,
                    description: "How long online takes".to_string(),
                },
                PropertySpec {
                    name: "progress-ms".to_string(),
                    kind: PropertyKind::DurationMs,
                    default_value: Some("0".to_string()),
                    required: false,
                    description: "Report progress this often during online (0: never)".to_string(),
                },
                warden_sdk::spec(
                    "allow-connect",
                    PropertyKind::Address,
                    Some(""),
                    "The address the connect probe may reach",
                ),
            ],
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 5_000,
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

impl GuestInstance for ChaosInstance {
    fn open(name: String, properties: Properties) -> Result<Instance, PropertyError> {
        let (fault, online_ms, progress_ms) = parse(&properties)?;
        let instance = ChaosInstance {
            name,
            fault,
            online_ms,
            progress_ms,
            failing: RefCell::new(None),
        };
        instance.maybe_misbehave("open");
        Ok(Instance::new(instance))
    }

    fn online(&self) -> Result<(), String> {
        if STUCK_BUILD {
            misbehave("hang", "online");
        }
        self.maybe_misbehave("online");
        self.failing.replace(None);
        let mut remaining = self.online_ms;
        while remaining > 0 {
            let step = if self.progress_ms > 0 {
                self.progress_ms.min(remaining)
            } else {
                remaining
            };
            host::sleep_ms(step);
            remaining -= step;
            if self.progress_ms > 0 && remaining > 0 {
                host::report_progress(&format!("{remaining} ms to go"));
            }
        }
        host::log(Level::Info, &format!("{} is online", self.name));
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        self.maybe_misbehave("offline");
        Ok(())
    }

    fn terminate(&self) {
        self.maybe_misbehave("terminate");
    }

    fn looks_alive(&self) -> Health {
        self.health("looks-alive")
    }

    fn is_alive(&self) -> Health {
        self.health("is-alive")
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        self.maybe_misbehave("control");
        match code.as_str() {
            "fail" => {
                self.failing.replace(Some(payload));
                Ok(String::new())
            }
            "heal" => {
                self.failing.replace(None);
                Ok(String::new())
            }
            other => {
                let answer = probe(other, &payload);
                host::log(
                    Level::Info,
                    &format!("probe {other} {payload:?}: {answer:?}"),
                );
                answer
            }
        }
    }
}

/// Try something the sandbox may deny and say what happened.
fn probe(code: &str, payload: &str) -> Result<String, String> {
    let (first, rest) = payload.split_once(['\n', '=']).unwrap_or((payload, ""));
    match code {
        "read-file" => std::fs::read_to_string(payload).map_err(|e| format!("{payload}: {e}")),
        "write-file" => std::fs::write(first, rest)
            .map(|()| format!("wrote {} bytes", rest.len()))
            .map_err(|e| format!("{first}: {e}")),
        "connect" => warden_sdk::net::connect(payload, warden_sdk::net::Deadline::after_ms(2000))
            .map(|_| format!("connected to {payload}")),
        "checkpoint-get" => {
            checkpoint::get(payload).map(|v| v.unwrap_or_else(|| "(none)".to_string()))
        }
        "checkpoint-set" => checkpoint::set(first, rest).map(|()| "stored".to_string()),
        "checkpoint-delete" => checkpoint::delete(payload).map(|()| "deleted".to_string()),
        "checkpoint-list" => checkpoint::list().map(|all| {
            all.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        "trap" => panic!("chaos: deliberate trap in control"),
        other => Err(format!("unknown control code {other:?}")),
    }
}

warden_sdk::export_plugin!(Chaos);
