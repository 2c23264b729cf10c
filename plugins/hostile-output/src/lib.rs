//! `hostile-output`: a test resource type that attacks the agent with
//! output, as a hostile plugin would: floods of stdout and log lines,
//! failure reasons of tens of MiB, progress messages with newlines, and
//! log messages that forge a line of the agent's own log.
//!
//! The property `attack` lists attacks, separated by commas:
//!
//! | attack         | what the plugin does                                          |
//! |----------------|---------------------------------------------------------------|
//! | `flood`        | online prints `flood-mib` MiB to stdout and logs 20 000 lines; every health check prints 1 MiB more |
//! | `forge`        | online and every health check log [`FORGED`] (every level, stdout, stderr) |
//! | `progress`     | online reports progress 20 times, 1 MiB each, with [`FORGED`] |
//! | `huge-reason`  | health checks fail with a 20 MiB reason ending in [`FORGED`]  |
//! | `huge-online`  | online fails with a 20 MiB reason                             |
//! | `flood-validate` | every validate prints [`VALIDATE_FLOOD`] lines to stdout and as many to stderr, and logs as many |
//!
//! `control("ok", _)` answers 20 MiB, `control("err", _)` fails with 20 MiB.
//! The property `refuse = huge` makes `validate` and `open` refuse with a
//! property name of 1 MiB and a reason of 20 MiB.

use std::io::Write;

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};

/// A line of the agent's human log format, with a newline before it so it
/// would start a line of its own, and ANSI sequences that clear a terminal.
pub const FORGED: &str =
    "\n2026-12-02T22:00:00.000000Z  INFO warden: forged line\r\x1b[2J\x1b[31mforged red";

const ATTACKS: &[&str] = &[
    "flood",
    "forge",
    "progress",
    "huge-reason",
    "huge-online",
    "flood-validate",
];

/// How many lines `flood-validate` sends down each of its three ways
/// (stdout, stderr, `host::log`) in one validate: more than the agent's
/// burst of plugin lines, so every call alone could fill it.
pub const VALIDATE_FLOOD: usize = 400;

/// The `flood-validate` attack: lines on every way a type-level call has
/// to the agent's log, each call as if it were the first.
fn flood_validate() {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    for line in 0..VALIDATE_FLOOD {
        let _ = writeln!(stdout, "validate flood stdout {line}");
        let _ = writeln!(stderr, "validate flood stderr {line}");
        host::log(Level::Info, &format!("validate flood log {line}"));
    }
    let _ = stdout.flush();
}

/// 20 MiB of text ending in the forged line.
/// Built in one allocation, so it fits a 32 MiB memory limit.
fn huge() -> String {
    let mut text = String::with_capacity((20 << 20) + FORGED.len());
    for _ in 0..(20 << 20) {
        text.push('x');
    }
    text.push_str(FORGED);
    text
}

struct Hostile;

struct HostileInstance {
    attacks: Vec<String>,
    flood_mib: usize,
}

fn parse(properties: &Properties) -> Result<HostileInstance, PropertyError> {
    if warden_sdk::property(properties, "refuse") == Some("huge") {
        return Err(PropertyError {
            property: format!("{}\n", "p".repeat(1 << 20)),
            reason: huge(),
        });
    }
    let attacks: Vec<String> = warden_sdk::property(properties, "attack")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(unknown) = attacks.iter().find(|a| !ATTACKS.contains(&a.as_str())) {
        return Err(PropertyError {
            property: "attack".to_string(),
            reason: format!("unknown attack {unknown:?}; expected some of {ATTACKS:?}"),
        });
    }
    let flood_mib = warden_sdk::property(properties, "flood-mib")
        .unwrap_or("32")
        .parse()
        .map_err(|_| PropertyError {
            property: "flood-mib".to_string(),
            reason: "expected a number of MiB".to_string(),
        })?;
    Ok(HostileInstance { attacks, flood_mib })
}

/// Print `mib` MiB of numbered 1 KiB lines to stdout, in big writes.
fn print_mib(mib: usize) {
    let mut chunk = Vec::with_capacity(64 << 10);
    let mut stdout = std::io::stdout();
    for line in 0..mib * 1024 {
        let _ = write!(chunk, "flood line {line:>10} ");
        chunk.resize(chunk.len() + 1000, b'f');
        chunk.push(b'\n');
        if chunk.len() >= 60 << 10 {
            let _ = stdout.write_all(&chunk);
            chunk.clear();
        }
    }
    let _ = stdout.write_all(&chunk);
    let _ = stdout.flush();
}

fn forge() {
    for level in [Level::Error, Level::Warn, Level::Info] {
        host::log(level, &format!("innocent{FORGED}"));
    }
    println!("stdout innocent{FORGED}");
    eprintln!("stderr innocent{FORGED}");
}

impl HostileInstance {
    fn does(&self, attack: &str) -> bool {
        self.attacks.iter().any(|a| a == attack)
    }

    fn health(&self) -> Health {
        if self.does("flood") {
            print_mib(1);
        }
        if self.does("forge") {
            forge();
        }
        if self.does("huge-reason") {
            return Health::Failed(huge());
        }
        Health::Healthy
    }
}

impl Guest for Hostile {
    type Instance = HostileInstance;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "hostile-output".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A test type that attacks the agent with its output.".to_string(),
            properties: vec![
                warden_sdk::spec(
                    "attack",
                    PropertyKind::String,
                    Some(""),
                    "Attacks, separated by commas",
                ),
                warden_sdk::spec(
                    "flood-mib",
                    PropertyKind::Integer,
                    Some("32"),
                    "How many MiB the flood attack prints at online",
                ),
                warden_sdk::spec(
                    "refuse",
                    PropertyKind::String,
                    Some(""),
                    "huge: validate and open refuse with a huge answer",
                ),
            ],
            timing: Timing {
                pending_timeout_ms: 60_000,
                looks_alive_interval_ms: 5_000,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: 10_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        let parsed = parse(&properties)?;
        if parsed.does("flood-validate") {
            flood_validate();
        }
        Ok(())
    }
}

impl GuestInstance for HostileInstance {
    fn open(_: String, properties: Properties) -> Result<Instance, PropertyError> {
        parse(&properties).map(Instance::new)
    }

    fn online(&self) -> Result<(), String> {
        if self.does("forge") {
            forge();
        }
        if self.does("progress") {
            let message = format!("{}{FORGED}", "m".repeat(1 << 20));
            for _ in 0..20 {
                host::report_progress(&message);
                host::sleep_ms(10);
            }
        }
        if self.does("flood") {
            print_mib(self.flood_mib);
            for line in 0..20_000 {
                host::log(Level::Info, &format!("log flood {line}"));
            }
        }
        if self.does("huge-online") {
            return Err(huge());
        }
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        Ok(())
    }

    fn terminate(&self) {}

    fn looks_alive(&self) -> Health {
        self.health()
    }

    fn is_alive(&self) -> Health {
        self.health()
    }

    fn control(&self, code: String, _: String) -> Result<String, String> {
        match code.as_str() {
            "ok" => Ok(huge()),
            "err" => Err(huge()),
            other => Err(format!("unknown control code {other:?}: ok or err")),
        }
    }
}

warden_sdk::export_plugin!(Hostile);
