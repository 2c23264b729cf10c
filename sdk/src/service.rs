//! The skeleton every service-managing type shares: the program, its
//! arguments (a template over the resource's properties), starting it and
//! waiting until it answers, stopping it.
//!
//! A type adds only what is its own: the check that says "ready" and
//! "alive" (an SMTP banner, an HTTP GET, a PING).

use crate::host::{self, Level};
use crate::process::{self, ProcessState, SpawnSpec};
use crate::types::{Health, PropertyError, PropertyKind, PropertySpec};
use crate::{number, property, spec};

/// The first pause of [`Service::start`] between readiness checks, and the
/// longest it doubles up to.
const READY_FIRST_PAUSE_MS: u64 = 5;
const READY_MAX_PAUSE_MS: u64 = 100;

/// One managed service, as the resource's properties describe it.
#[derive(Debug, Clone)]
pub struct Service {
    /// Empty when the type only watches a service started by someone else.
    pub spawn: Option<SpawnSpec>,
    pub startup_timeout_ms: u64,
    pub stop_grace_ms: u64,
}

/// The properties [`Service::from_properties`] reads, for `describe`:
/// `program` (required unless `program_optional`), `args` (a template,
/// default `default_args`), `startup-timeout-ms` (default `startup_ms`; 0
/// waits as long as it takes), `stop-grace-ms`.
pub fn properties(
    default_args: &str,
    program_optional: bool,
    startup_ms: &str,
) -> Vec<PropertySpec> {
    vec![
        spec(
            "program",
            PropertyKind::String,
            program_optional.then_some(""),
            if program_optional {
                "Path of the program to run; empty: watch a service started elsewhere"
            } else {
                "Path of the program to run (allowed in the node configuration)"
            },
        ),
        spec(
            "args",
            PropertyKind::String,
            Some(default_args),
            "Arguments; {name} is replaced by the property name's value; \"...\" or '...' \
             keeps spaces in one argument",
        ),
        spec(
            "startup-timeout-ms",
            PropertyKind::DurationMs,
            Some(startup_ms),
            "How long online waits for the service to answer (0: as long as it takes)",
        ),
        spec(
            "stop-grace-ms",
            PropertyKind::DurationMs,
            Some("10000"),
            "How long offline waits after SIGTERM before SIGKILL",
        ),
    ]
}

/// Like [`properties`], for a type that runs a known program by default
/// (`/usr/bin/redis-server`, say): `program` is optional with that default.
///
/// ```
/// let props = warden_sdk::service::properties_with_program("/usr/bin/redis-server", "--port 6379", "30000");
/// assert_eq!(props[0].default_value.as_deref(), Some("/usr/bin/redis-server"));
/// assert!(!props[0].required);
/// ```
pub fn properties_with_program(
    default_program: &str,
    default_args: &str,
    startup_ms: &str,
) -> Vec<PropertySpec> {
    let mut specs = properties(default_args, false, startup_ms);
    specs[0].default_value = Some(default_program.to_string());
    specs[0].required = false;
    specs
}

/// Replace each `{name}` in `template` by the value of property `name`.
///
/// `{name.host}` and `{name.port}` take the host or the port of an address
/// property (`host:port`, `[v6]:port`), for programs that want them apart:
///
/// ```
/// # use warden_sdk::service::expand;
/// let props = vec![("address".to_string(), "127.0.0.1:6379".to_string())];
/// assert_eq!(
///     expand("--bind {address.host} --port {address.port}", &props).unwrap(),
///     "--bind 127.0.0.1 --port 6379"
/// );
/// ```
pub fn expand(template: &str, properties: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
        let name = &rest[open + 1..open + close];
        let value = match property(properties, name) {
            Some(value) => value,
            None => address_part(name, properties)?,
        };
        out.push_str(value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `{name.host}` / `{name.port}` of [`expand`].
fn address_part<'a>(name: &str, properties: &'a [(String, String)]) -> Result<&'a str, String> {
    let unknown = || format!("{{{name}}} names no property");
    let (base, part) = name.rsplit_once('.').ok_or_else(unknown)?;
    let address = property(properties, base).ok_or_else(unknown)?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{{{name}}}: property {base:?} ({address:?}) has no port"))?;
    match part {
        "host" => Ok(host.trim_start_matches('[').trim_end_matches(']')),
        "port" => Ok(port),
        _ => Err(unknown()),
    }
}

/// Split a command line into arguments: whitespace separates, `"..."` and
/// `'...'` keep what they enclose together (no escapes).
pub fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.get_or_insert_default().push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => args.extend(current.take()),
            (None, c) => current.get_or_insert_default().push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q} in {line:?}"));
    }
    args.extend(current);
    Ok(args)
}

fn refuse(property: &str, reason: String) -> PropertyError {
    PropertyError {
        property: property.to_string(),
        reason,
    }
}

/// How a process state reads in a reason.
pub fn describe_state(state: &ProcessState) -> String {
    match state {
        ProcessState::Running(pid) => format!("running as pid {pid}"),
        ProcessState::Exited(code) => format!("exited with status {code}"),
        ProcessState::KilledBySignal(signal) => format!("killed by signal {signal}"),
        ProcessState::NotStarted => "not started".to_string(),
    }
}

impl Service {
    /// Read the properties of [`properties`]. The working directory is the
    /// resource's data directory.
    pub fn from_properties(properties: &[(String, String)]) -> Result<Service, PropertyError> {
        let program = property(properties, "program").unwrap_or("");
        let spawn = if program.is_empty() {
            None
        } else {
            let line = expand(property(properties, "args").unwrap_or(""), properties)
                .map_err(|why| refuse("args", why))?;
            Some(SpawnSpec {
                program: program.to_string(),
                args: split_args(&line).map_err(|why| refuse("args", why))?,
                env: Vec::new(),
                cwd: None,
            })
        };
        Ok(Service {
            spawn,
            startup_timeout_ms: number(properties, "startup-timeout-ms", 30_000)?,
            stop_grace_ms: number(properties, "stop-grace-ms", 10_000)?,
        })
    }

    fn program(&self) -> &str {
        self.spawn
            .as_ref()
            .map_or("the service", |s| s.program.as_str())
    }

    /// Start the service unless it runs, then wait until `ready` passes,
    /// reporting progress each second. Fails if the process exits first or
    /// `startup-timeout-ms` passes (0: wait as long as it takes).
    ///
    /// `ready` is tried again after 5 ms, then after twice as long each
    /// time, up to every 100 ms: a service that is up a few milliseconds
    /// after it was started (nginx restarting after a crash) is online a few
    /// milliseconds later, not a whole 100 ms poll later.
    pub fn start(&self, ready: impl Fn() -> Result<(), String>) -> Result<(), String> {
        if let Some(spawn) = &self.spawn {
            match process::state() {
                ProcessState::Running(pid) => host::log(
                    Level::Info,
                    &format!("{} already runs as pid {pid}", spawn.program),
                ),
                _ => {
                    let pid = process::spawn(spawn)?;
                    host::log(
                        Level::Info,
                        &format!("started {} as pid {pid}", spawn.program),
                    );
                }
            }
        }
        let started = host::now_ms();
        let mut last_report = started;
        let mut pause_ms = READY_FIRST_PAUSE_MS;
        loop {
            let why = match ready() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            self.running()?;
            let now = host::now_ms();
            if self.startup_timeout_ms > 0 && now - started >= self.startup_timeout_ms {
                return Err(format!(
                    "{} did not answer within {} ms: {why}",
                    self.program(),
                    self.startup_timeout_ms
                ));
            }
            if now - last_report >= 1000 {
                host::report_progress(&format!("waiting for {}: {why}", self.program()));
                last_report = now;
            }
            host::sleep_ms(pause_ms);
            pause_ms = (pause_ms * 2).min(READY_MAX_PAUSE_MS);
        }
    }

    /// Healthy while the managed process runs (always, when watching a
    /// service started elsewhere).
    pub fn running(&self) -> Result<(), String> {
        if self.spawn.is_none() {
            return Ok(());
        }
        match process::state() {
            ProcessState::Running(_) => Ok(()),
            other => Err(format!("{} {}", self.program(), describe_state(&other))),
        }
    }

    /// Stop cleanly: SIGTERM, SIGKILL after `stop-grace-ms`.
    pub fn stop(&self) -> Result<ProcessState, String> {
        match self.spawn {
            Some(_) => process::stop(self.stop_grace_ms),
            None => Ok(ProcessState::NotStarted),
        }
    }

    /// The managed process's state, for a `pid` control code.
    pub fn pid(&self) -> Result<String, String> {
        match process::state() {
            ProcessState::Running(pid) => Ok(pid.to_string()),
            other => Err(describe_state(&other)),
        }
    }

    /// Answer the control codes every service type shares: `pid` (the
    /// managed process's pid, which `warden plugin test` uses to kill it);
    /// any other code is refused, naming the known ones.
    ///
    /// ```ignore
    /// fn control(&self, code: String, payload: String) -> Result<String, String> {
    ///     self.service.control(&code, &payload)
    /// }
    /// ```
    pub fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "pid" => self.pid(),
            other => Err(format!("unknown control code {other:?}; known: pid")),
        }
    }

    /// A health check: the managed process must run (see
    /// [`Service::running`]) and then `check` must pass.
    ///
    /// ```ignore
    /// fn is_alive(&self) -> Health {
    ///     self.service.health(|| net::ask_once(&self.address, "PING", "+PONG", Deadline::after_ms(2000)).map(drop))
    /// }
    /// ```
    pub fn health(&self, check: impl FnOnce() -> Result<(), String>) -> Health {
        match self.running().and_then(|()| check()) {
            Ok(()) => Health::Healthy,
            Err(why) => Health::Failed(why),
        }
    }

    /// Kill at once, best effort.
    pub fn kill(&self) {
        if self.spawn.is_some()
            && let Err(err) = process::stop(0)
        {
            host::log(Level::Warn, &format!("terminate: {err}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_split() {
        let props = vec![("address".to_string(), "127.0.0.1:25".to_string())];
        assert_eq!(
            expand("--listen {address} -x", &props).unwrap(),
            "--listen 127.0.0.1:25 -x"
        );
        assert!(expand("{nope}", &props).unwrap_err().contains("nope"));
        assert_eq!(
            split_args(r#"-c /etc/n.conf -g "daemon off;" ''"#).unwrap(),
            vec!["-c", "/etc/n.conf", "-g", "daemon off;", ""]
        );
        assert!(split_args("\"open").is_err());
        assert_eq!(expand("{address.port}", &props).unwrap(), "25");
        assert_eq!(expand("{address.host}", &props).unwrap(), "127.0.0.1");
        assert!(expand("{address.nope}", &props).is_err());
    }
}
