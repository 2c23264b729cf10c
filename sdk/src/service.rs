//! The skeleton every service-managing type shares: the program, its
//! arguments (a template over the resource's properties), starting it and
//! waiting until it answers, stopping it; and [`ServiceType`], the trait
//! for such a type, which supplies only its check and its own properties.
//!
//! ```no_run
//! use warden_sdk::net::{self, Deadline};
//! use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
//! use warden_sdk::types::PropertyError;
//! use warden_sdk::{Property, Props};
//!
//! struct Memcached {
//!     address: String,
//! }
//!
//! impl ServiceType for Memcached {
//!     const NAME: &'static str = "memcached";
//!     const DESCRIPTION: &'static str = "memcached, checked by `version`.";
//!     const SERVICE: ServiceDefaults =
//!         ServiceDefaults::new("-l {address.host} -p {address.port}").program("/usr/bin/memcached");
//!     const PROPERTIES: &'static [Property] =
//!         &[Property::address("address", "Where memcached listens").default("127.0.0.1:11211")];
//!
//!     fn open(props: &Props) -> Result<Self, PropertyError> {
//!         Ok(Memcached { address: props.address("address")? })
//!     }
//!
//!     fn check(&self) -> Result<(), String> {
//!         net::ask_once(&self.address, "version", "VERSION", Deadline::after_ms(2000)).map(drop)
//!     }
//! }
//!
//! warden_sdk::export_type!(Managed<Memcached>);
//! ```

use crate::host::{self, Level};
use crate::process::{self, ProcessState, SpawnSpec};
use crate::types::{Health, PropertyError, Timing, TypeFlags};
use crate::{DEFAULT_TIMING, Property, Props, ResourceType, property, refuse, unknown_control};

/// The first pause of [`Service::start`] between readiness checks, and the
/// longest it doubles up to.
const READY_FIRST_PAUSE_MS: u64 = 5;
const READY_MAX_PAUSE_MS: u64 = 100;

/// One managed service, as the resource's properties describe it (see
/// [`properties`]).
///
/// ```
/// use warden_sdk::Props;
/// use warden_sdk::service::{properties, Service, ServiceDefaults};
///
/// let schema = properties(&ServiceDefaults::new("--port {address.port}"));
/// let values = vec![
///     ("program".to_string(), "/usr/bin/redis-server".to_string()),
///     ("address".to_string(), "127.0.0.1:6390".to_string()),
/// ];
/// let service = Service::from_props(&Props::new(&values, &schema))?;
/// let spawn = service.spawn.expect("a program is set");
/// assert_eq!(spawn.args, ["--port", "6390"]);
/// assert_eq!(service.startup_timeout_ms, 30_000);
/// # Ok::<(), warden_sdk::types::PropertyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Service {
    /// What to start; `None` when the type only watches a service started
    /// by someone else (an empty optional `program`).
    pub spawn: Option<SpawnSpec>,
    /// How long [`Service::start`] waits for the service to answer; 0
    /// waits as long as it takes.
    pub startup_timeout_ms: u64,
    /// How long [`Service::stop`] waits after SIGTERM before SIGKILL.
    pub stop_grace_ms: u64,
}

/// Whether a type's `program` property must be set.
///
/// ```
/// use warden_sdk::service::{properties, Program, ServiceDefaults};
/// let defaults = ServiceDefaults::new("").program("/usr/bin/redis-server");
/// assert_eq!(defaults.program, Program::Default("/usr/bin/redis-server"));
/// assert_eq!(properties(&defaults)[0].default, Some("/usr/bin/redis-server"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// The operator names the program; it is required.
    Required,
    /// The type runs this program unless the operator names another.
    Default(&'static str),
    /// Empty by default: the type then watches a service started
    /// elsewhere and starts nothing.
    Optional,
}

/// The defaults of a service type's own properties (`program`, `args`,
/// `startup-timeout-ms`), from which [`properties`] declares them.
///
/// ```
/// use warden_sdk::service::{Program, ServiceDefaults};
///
/// const STORE: ServiceDefaults = ServiceDefaults::new("--data . --listen {address}").startup_timeout_ms("0");
/// assert_eq!(STORE.program, Program::Required);
/// assert_eq!(STORE.startup_timeout_ms, "0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDefaults {
    /// Whether `program` is required, has a default, or is optional.
    pub program: Program,
    /// The default `args` template (see [`expand`]).
    pub args: &'static str,
    /// The default `startup-timeout-ms`, as the schema writes it.
    pub startup_timeout_ms: &'static str,
}

impl ServiceDefaults {
    /// A required `program`, `args` defaulting to `args`, and 30 s for
    /// the service to answer.
    ///
    /// ```
    /// let d = warden_sdk::service::ServiceDefaults::new("--listen {address}");
    /// assert_eq!((d.args, d.startup_timeout_ms), ("--listen {address}", "30000"));
    /// ```
    pub const fn new(args: &'static str) -> Self {
        ServiceDefaults {
            program: Program::Required,
            args,
            startup_timeout_ms: "30000",
        }
    }

    /// `program` defaults to `default` (a known path such as
    /// `/usr/bin/redis-server`).
    ///
    /// ```
    /// use warden_sdk::service::{Program, ServiceDefaults};
    /// let d = ServiceDefaults::new("").program("/usr/sbin/nginx");
    /// assert_eq!(d.program, Program::Default("/usr/sbin/nginx"));
    /// ```
    pub const fn program(self, default: &'static str) -> Self {
        ServiceDefaults {
            program: Program::Default(default),
            ..self
        }
    }

    /// `program` may be empty: the type then only watches a service
    /// started elsewhere.
    ///
    /// ```
    /// use warden_sdk::service::{Program, ServiceDefaults};
    /// assert_eq!(ServiceDefaults::new("").program_optional().program, Program::Optional);
    /// ```
    pub const fn program_optional(self) -> Self {
        ServiceDefaults {
            program: Program::Optional,
            ..self
        }
    }

    /// The default `startup-timeout-ms`, in milliseconds as text; `"0"`
    /// waits as long as it takes.
    ///
    /// ```
    /// let d = warden_sdk::service::ServiceDefaults::new("").startup_timeout_ms("60000");
    /// assert_eq!(d.startup_timeout_ms, "60000");
    /// ```
    pub const fn startup_timeout_ms(self, ms: &'static str) -> Self {
        ServiceDefaults {
            startup_timeout_ms: ms,
            ..self
        }
    }
}

/// The properties [`Service::from_props`] reads, for a type's schema:
/// `program` (as `defaults` says), `args` (a template, see [`expand`]),
/// `startup-timeout-ms` (0 waits as long as it takes) and `stop-grace-ms`
/// (default 10000).
///
/// ```
/// use warden_sdk::service::{properties, ServiceDefaults};
/// let schema = properties(&ServiceDefaults::new("--listen {address}").program_optional());
/// let names: Vec<_> = schema.iter().map(|p| p.name).collect();
/// assert_eq!(names, ["program", "args", "startup-timeout-ms", "stop-grace-ms"]);
/// assert_eq!(schema[0].default, Some(""));
/// ```
pub fn properties(defaults: &ServiceDefaults) -> Vec<Property> {
    let program = match defaults.program {
        Program::Required => Property::string(
            "program",
            "Path of the program to run (allowed in the node configuration)",
        ),
        Program::Default(path) => Property::string(
            "program",
            "Path of the program to run (allowed in the node configuration)",
        )
        .default(path),
        Program::Optional => Property::string(
            "program",
            "Path of the program to run; empty: watch a service started elsewhere",
        )
        .default(""),
    };
    vec![
        program,
        Property::string(
            "args",
            "Arguments; {name} is replaced by the property name's value; \"...\" or '...' \
             keeps spaces in one argument",
        )
        .default(defaults.args),
        Property::duration_ms(
            "startup-timeout-ms",
            "How long online waits for the service to answer (0: as long as it takes)",
        )
        .default(defaults.startup_timeout_ms),
        Property::duration_ms(
            "stop-grace-ms",
            "How long offline waits after SIGTERM before SIGKILL",
        )
        .default("10000"),
    ]
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
///
/// ```
/// use warden_sdk::service::split_args;
/// assert_eq!(split_args(r#"-c /etc/nginx.conf -g "daemon off;""#)?, ["-c", "/etc/nginx.conf", "-g", "daemon off;"]);
/// assert!(split_args("\"unclosed").is_err());
/// # Ok::<(), String>(())
/// ```
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

/// How a process state reads in a reason.
///
/// ```
/// use warden_sdk::process::ProcessState;
/// use warden_sdk::service::describe_state;
/// assert_eq!(describe_state(&ProcessState::Exited(1)), "exited with status 1");
/// ```
pub fn describe_state(state: &ProcessState) -> String {
    match state {
        ProcessState::Running(pid) => format!("running as pid {pid}"),
        ProcessState::Exited(code) => format!("exited with status {code}"),
        ProcessState::KilledBySignal(signal) => format!("killed by signal {signal}"),
        ProcessState::NotStarted => "not started".to_string(),
    }
}

impl Service {
    /// Read the properties of [`properties`]: the program and its
    /// arguments (the `args` template expanded over every property), the
    /// start-up timeout and the stop grace. The working directory is the
    /// resource's data directory. An error names the property.
    ///
    /// ```
    /// use warden_sdk::Props;
    /// use warden_sdk::service::{properties, Service, ServiceDefaults};
    ///
    /// let schema = properties(&ServiceDefaults::new("--listen {address}"));
    /// let values = vec![("program".to_string(), "/usr/bin/mail-smtp".to_string())];
    /// let refused = Service::from_props(&Props::new(&values, &schema)).unwrap_err();
    /// assert_eq!(refused.property, "args");
    /// assert_eq!(refused.reason, "{address} names no property");
    /// ```
    pub fn from_props(props: &Props) -> Result<Service, PropertyError> {
        let program = props.get("program")?;
        let spawn = if program.is_empty() {
            None
        } else {
            // The template sees every property, defaults included.
            let mut every = props.values().to_vec();
            for declared in props.schema() {
                if let Some(default) = declared.default
                    && property(&every, declared.name).is_none()
                {
                    every.push((declared.name.to_string(), default.to_string()));
                }
            }
            let line = expand(props.get("args")?, &every).map_err(|why| refuse("args", why))?;
            Some(SpawnSpec {
                program: program.to_string(),
                args: split_args(&line).map_err(|why| refuse("args", why))?,
                env: Vec::new(),
                cwd: None,
            })
        };
        Ok(Service {
            spawn,
            startup_timeout_ms: props.u64("startup-timeout-ms")?,
            stop_grace_ms: props.u64("stop-grace-ms")?,
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
    ///
    /// ```no_run
    /// # use warden_sdk::service::Service;
    /// # use warden_sdk::net::{self, Deadline};
    /// # fn online(service: &Service) -> Result<(), String> {
    /// service.start(|| net::smtp_check("127.0.0.1:25", Deadline::after_ms(3000)))
    /// # }
    /// ```
    pub fn start(&self, ready: impl Fn() -> Result<(), String>) -> Result<(), String> {
        self.start_with(&[], ready)
    }

    /// [`Service::start`], with `extra` arguments after the template's (a
    /// replicated type starting its service as a passive copy, say). A
    /// service that runs already is left as it is, whatever it was started
    /// with.
    ///
    /// ```no_run
    /// # use warden_sdk::service::Service;
    /// # fn passive(service: &Service) -> Result<(), String> {
    /// let role = ["--role".to_string(), "passive".to_string()];
    /// service.start_with(&role, || Ok(()))
    /// # }
    /// ```
    pub fn start_with(
        &self,
        extra: &[String],
        ready: impl Fn() -> Result<(), String>,
    ) -> Result<(), String> {
        if let Some(spawn) = &self.spawn {
            match process::state() {
                ProcessState::Running(pid) => host::log(
                    Level::Info,
                    &format!("{} already runs as pid {pid}", spawn.program),
                ),
                _ => {
                    let mut spawn = spawn.clone();
                    spawn.args.extend_from_slice(extra);
                    let pid = process::spawn(&spawn)?;
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
            if self.startup_timeout_ms > 0 && now.saturating_sub(started) >= self.startup_timeout_ms
            {
                return Err(format!(
                    "{} did not answer within {} ms: {why}",
                    self.program(),
                    self.startup_timeout_ms
                ));
            }
            if now.saturating_sub(last_report) >= 1000 {
                host::report_progress(&format!("waiting for {}: {why}", self.program()));
                last_report = now;
            }
            host::sleep_ms(pause_ms);
            pause_ms = (pause_ms * 2).min(READY_MAX_PAUSE_MS);
        }
    }

    /// `Ok` while the managed process runs (always, when watching a
    /// service started elsewhere); otherwise what became of it.
    ///
    /// ```no_run
    /// # fn check(service: &warden_sdk::service::Service) -> Result<(), String> {
    /// service.running()?; // "/usr/bin/redis-server exited with status 1"
    /// # Ok(()) }
    /// ```
    pub fn running(&self) -> Result<(), String> {
        if self.spawn.is_none() {
            return Ok(());
        }
        match process::state() {
            ProcessState::Running(_) => Ok(()),
            other => Err(format!("{} {}", self.program(), describe_state(&other))),
        }
    }

    /// Stop cleanly: SIGTERM, SIGKILL after `stop-grace-ms`. Returns how
    /// the process ended (`NotStarted` when watching a service started
    /// elsewhere, which is left alone).
    ///
    /// ```no_run
    /// # fn offline(service: &warden_sdk::service::Service) -> Result<(), String> {
    /// service.stop().map(drop)
    /// # }
    /// ```
    pub fn stop(&self) -> Result<ProcessState, String> {
        match self.spawn {
            Some(_) => process::stop(self.stop_grace_ms),
            None => Ok(ProcessState::NotStarted),
        }
    }

    /// The managed process's pid, for the `pid` control code (what `warden
    /// plugin test` kills); otherwise what became of the process.
    ///
    /// ```no_run
    /// # fn pid(service: &warden_sdk::service::Service) -> Result<String, String> {
    /// service.pid() // "4711"
    /// # }
    /// ```
    pub fn pid(&self) -> Result<String, String> {
        match process::state() {
            ProcessState::Running(pid) => Ok(pid.to_string()),
            other => Err(describe_state(&other)),
        }
    }

    /// A health check: the managed process must run (see
    /// [`Service::running`]) and then `check` must pass.
    ///
    /// ```no_run
    /// # use warden_sdk::net::{self, Deadline};
    /// # use warden_sdk::types::Health;
    /// # fn is_alive(service: &warden_sdk::service::Service) -> Health {
    /// service.health(|| net::ask_once("127.0.0.1:6379", "PING", "+PONG", Deadline::after_ms(2000)).map(drop))
    /// # }
    /// ```
    pub fn health(&self, check: impl FnOnce() -> Result<(), String>) -> Health {
        Health::from(self.running().and_then(|()| check()))
    }

    /// Kill at once, best effort (nothing, when watching a service started
    /// elsewhere); a failure is logged.
    ///
    /// ```no_run
    /// # fn terminate(service: &warden_sdk::service::Service) {
    /// service.kill();
    /// # }
    /// ```
    pub fn kill(&self) {
        if self.spawn.is_some()
            && let Err(err) = process::stop(0)
        {
            host::log(Level::Warn, &format!("terminate: {err}"));
        }
    }
}

/// A resource type that manages one service (a program started from the
/// `program` and `args` properties) and checks it: the shape of most
/// types. It supplies its name, its own properties and its check; the
/// [`Managed`] wrapper it is exported in does the rest:
///
/// | the agent calls | [`Managed`] does |
/// |---|---|
/// | `describe` | [`properties`] of [`ServiceType::SERVICE`], then [`ServiceType::PROPERTIES`] |
/// | `validate`, `open` | [`Service::from_props`], then [`ServiceType::open`] |
/// | `online` | [`ServiceType::online`]: start, wait for [`ServiceType::ready`] |
/// | `offline` | [`ServiceType::offline`]: SIGTERM, SIGKILL after `stop-grace-ms` |
/// | `terminate` | [`Service::kill`] |
/// | `looks-alive` | the process runs and [`ServiceType::quick_check`] passes |
/// | `is-alive` | the process runs and [`ServiceType::check`] passes |
/// | `control` | `pid`, the codes in [`ServiceType::CONTROLS`] ([`ServiceType::control`]), others refused naming these |
///
/// See the module's example, and `examples/redis-type`.
pub trait ServiceType: Sized + 'static {
    /// The type's name (see [`ResourceType::NAME`]).
    const NAME: &'static str;

    /// One sentence for operators.
    const DESCRIPTION: &'static str;

    /// The defaults of `program`, `args` and `startup-timeout-ms`.
    const SERVICE: ServiceDefaults;

    /// The type's own properties, after the service's (the address it
    /// checks, its timeouts, ...).
    const PROPERTIES: &'static [Property] = &[];

    /// The default timers; [`DEFAULT_TIMING`] unless the type says
    /// otherwise.
    const TIMING: Timing = DEFAULT_TIMING;

    /// The type's flags; none by default.
    const FLAGS: TypeFlags = TypeFlags::empty();

    /// The control codes [`ServiceType::control`] answers, besides `pid`
    /// which every service type answers.
    const CONTROLS: &'static [&'static str] = &[];

    /// Parse the type's own properties (the service's are parsed already).
    fn open(props: &Props) -> Result<Self, PropertyError>;

    /// The thorough check (is-alive), run once the process is known to
    /// run. By default also what online waits for and what looks-alive
    /// runs.
    fn check(&self) -> Result<(), String>;

    /// The cheap check (looks-alive); [`ServiceType::check`] by default.
    fn quick_check(&self) -> Result<(), String> {
        self.check()
    }

    /// What online waits for; [`ServiceType::check`] by default.
    fn ready(&self) -> Result<(), String> {
        self.check()
    }

    /// Bring the resource online: by default start the service and wait
    /// until [`ServiceType::ready`] passes ([`Service::start`]).
    fn online(&self, service: &Service) -> Result<(), String> {
        service.start(|| self.ready())
    }

    /// Take it offline: by default stop the service ([`Service::stop`]).
    fn offline(&self, service: &Service) -> Result<(), String> {
        service.stop().map(drop)
    }

    /// Answer one of [`ServiceType::CONTROLS`]; only those reach it.
    fn control(&self, code: &str, payload: &str) -> Result<String, String> {
        let _ = payload;
        Err(unknown_control(code, Self::CONTROLS))
    }
}

/// A [`ServiceType`] as a [`ResourceType`]: the resource's [`Service`]
/// and the type's own state. Export a service type as
/// `warden_sdk::export_type!(Managed<MyType>)`.
///
/// ```
/// # use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
/// # use warden_sdk::types::PropertyError;
/// # use warden_sdk::{Property, Props, ResourceType};
/// struct Echo;
/// impl ServiceType for Echo {
///     const NAME: &'static str = "echo";
///     const DESCRIPTION: &'static str = "An echo server.";
///     const SERVICE: ServiceDefaults = ServiceDefaults::new("--port {address.port}");
///     const PROPERTIES: &'static [Property] = &[Property::address("address", "Where it listens")];
///     fn open(_props: &Props) -> Result<Self, PropertyError> { Ok(Echo) }
///     fn check(&self) -> Result<(), String> { Ok(()) }
/// }
/// assert_eq!(<Managed<Echo> as ResourceType>::NAME, "echo");
/// assert_eq!(Managed::<Echo>::properties().len(), 5);
/// ```
pub struct Managed<T> {
    service: Service,
    inner: T,
}

impl<T> Managed<T> {
    /// The managed service.
    ///
    /// ```no_run
    /// # fn f<T>(managed: &warden_sdk::service::Managed<T>) {
    /// let grace = managed.service().stop_grace_ms;
    /// # }
    /// ```
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The type's own state, as its [`ServiceType::open`] made it.
    ///
    /// ```no_run
    /// # fn f<T>(managed: &warden_sdk::service::Managed<T>) {
    /// let inner: &T = managed.inner();
    /// # }
    /// ```
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: ServiceType> ResourceType for Managed<T> {
    const NAME: &'static str = T::NAME;
    const DESCRIPTION: &'static str = T::DESCRIPTION;
    const TIMING: Timing = T::TIMING;
    const FLAGS: TypeFlags = T::FLAGS;

    fn properties() -> Vec<Property> {
        let mut schema = properties(&T::SERVICE);
        schema.extend_from_slice(T::PROPERTIES);
        schema
    }

    fn open(_name: &str, props: &Props) -> Result<Self, PropertyError> {
        Ok(Managed {
            service: Service::from_props(props)?,
            inner: T::open(props)?,
        })
    }

    fn online(&self) -> Result<(), String> {
        self.inner.online(&self.service)
    }

    fn offline(&self) -> Result<(), String> {
        self.inner.offline(&self.service)
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        self.service.health(|| self.inner.quick_check())
    }

    fn is_alive(&self) -> Health {
        self.service.health(|| self.inner.check())
    }

    fn control(&self, code: &str, payload: &str) -> Result<String, String> {
        if T::CONTROLS.contains(&code) {
            self.inner.control(code, payload)
        } else if code == "pid" {
            self.service.pid()
        } else {
            Err(unknown_control(code, &[T::CONTROLS, &["pid"]].concat()))
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
