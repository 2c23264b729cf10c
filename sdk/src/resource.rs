//! [`ResourceType`]: the contract as one Rust trait with sensible
//! defaults, and [`Exported`], the glue that [`crate::export_type!`]
//! exports for it.
//!
//! The generated bindings ask for two types (`Guest` for `describe` and
//! `validate`, `GuestInstance` for a resource's life cycle) and seven
//! instance methods written out every time. A [`ResourceType`] declares
//! what is its own (name, properties, online, is-alive) and inherits the
//! rest; `validate` is `open` run without keeping the result, and
//! `describe` is built from the type's constants and its schema.

use crate::host::{self, Level};
use crate::process;
use crate::types::{Health, PropertyError, Timing, TypeFlags, TypeInfo};
use crate::{Property, Props};

/// The timers most types want: online and offline may take 3 minutes,
/// looks-alive every 5 s, is-alive every 10 s, a check may take 5 s. Each
/// can be overridden per resource by the operator.
///
/// ```
/// use warden_sdk::DEFAULT_TIMING;
/// use warden_sdk::types::Timing;
///
/// // A type that needs no looks-alive polling and starts faster:
/// const TIMING: Timing = Timing { looks_alive_interval_ms: 0, pending_timeout_ms: 30_000, ..DEFAULT_TIMING };
/// assert_eq!(TIMING.is_alive_interval_ms, 10_000);
/// ```
pub const DEFAULT_TIMING: Timing = Timing {
    pending_timeout_ms: 180_000,
    looks_alive_interval_ms: 5_000,
    is_alive_interval_ms: 10_000,
    check_timeout_ms: 5_000,
};

/// How long the default [`ResourceType::offline`] waits after SIGTERM
/// before it sends SIGKILL, in milliseconds.
///
/// ```
/// assert_eq!(warden_sdk::DEFAULT_STOP_GRACE_MS, 10_000);
/// ```
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

/// The answer to a control code a type does not know, naming the ones it
/// does (the contract asks that unknown codes be refused).
///
/// ```
/// use warden_sdk::unknown_control;
/// assert_eq!(unknown_control("nope", &["lag", "pid"]), "unknown control code \"nope\"; known: lag, pid");
/// assert_eq!(unknown_control("nope", &[]), "unknown control code \"nope\"; this type answers none");
/// ```
pub fn unknown_control(code: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("unknown control code {code:?}; this type answers none")
    } else {
        format!("unknown control code {code:?}; known: {}", known.join(", "))
    }
}

/// A check's outcome as the contract's [`Health`]: `Ok` is healthy, an
/// error is the failure's reason.
///
/// ```
/// use warden_sdk::types::Health;
/// assert!(matches!(Health::from(Ok(())), Health::Healthy));
/// assert!(matches!(Health::from(Err("no banner".to_string())), Health::Failed(why) if why == "no banner"));
/// ```
impl From<Result<(), String>> for Health {
    fn from(result: Result<(), String>) -> Health {
        match result {
            Ok(()) => Health::Healthy,
            Err(why) => Health::Failed(why),
        }
    }
}

/// A resource type: what the agent calls, as one trait with defaults.
///
/// `Self` is one open resource: [`ResourceType::open`] parses its
/// properties into it, and the agent then calls the methods on it. Export
/// the type with [`crate::export_type!`]. Most types manage one program
/// and check it; [`crate::service::ServiceType`] is the shorter way to
/// write those. Implement `ResourceType` directly when the type's life
/// cycle is its own (as the built-in `process` type does):
///
/// ```no_run
/// use warden_sdk::process::{self, ProcessState, SpawnSpec};
/// use warden_sdk::types::{Health, PropertyError};
/// use warden_sdk::{Property, Props, ResourceType};
///
/// /// Runs `sleep` for as long as the resource is online.
/// struct Sleeper {
///     seconds: u64,
/// }
///
/// impl ResourceType for Sleeper {
///     const NAME: &'static str = "sleeper";
///     const DESCRIPTION: &'static str = "Sleeps; the smallest real resource.";
///
///     fn properties() -> Vec<Property> {
///         vec![Property::integer("seconds", "How long to sleep").default("600")]
///     }
///
///     fn open(_name: &str, props: &Props) -> Result<Self, PropertyError> {
///         Ok(Sleeper { seconds: props.u64("seconds")? })
///     }
///
///     fn online(&self) -> Result<(), String> {
///         let spec = SpawnSpec {
///             program: "/usr/bin/sleep".to_string(),
///             args: vec![self.seconds.to_string()],
///             env: Vec::new(),
///             cwd: None,
///         };
///         process::spawn(&spec).map(drop)
///     }
///
///     fn is_alive(&self) -> Health {
///         match process::state() {
///             ProcessState::Running(_) => Health::Healthy,
///             other => Health::Failed(format!("sleep is {other:?}")),
///         }
///     }
///     // offline, terminate, looks_alive and control: the defaults.
/// }
///
/// warden_sdk::export_type!(Sleeper);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a warden_sdk::ResourceType",
    note = "implement ResourceType for it; a ServiceType is exported as `export_type!(warden_sdk::Managed<{Self}>)`"
)]
pub trait ResourceType: Sized + 'static {
    /// The type's name, what operators write as a resource's `type`: 1 to
    /// 64 characters of `a-z`, `0-9` and `-`.
    const NAME: &'static str;

    /// One sentence for operators (`warden plugin check`, `plugin list`).
    const DESCRIPTION: &'static str;

    /// The default timers; [`DEFAULT_TIMING`] unless the type says
    /// otherwise.
    const TIMING: Timing = DEFAULT_TIMING;

    /// The type's flags (`TypeFlags::CLUSTER_SINGLETON`,
    /// `TypeFlags::ONLINE_NO_PENDING_TIMEOUT`); none by default.
    const FLAGS: TypeFlags = TypeFlags::empty();

    /// The property schema: `describe()` lists it and [`Props`] parses
    /// through it, so each property is declared once.
    fn properties() -> Vec<Property>;

    /// Parse a resource's properties; start nothing (the agent may open
    /// and drop a resource at any time). `name` is the resource's name.
    fn open(name: &str, props: &Props) -> Result<Self, PropertyError>;

    /// Check a resource's properties without keeping it: by default,
    /// [`ResourceType::open`] with an empty name, its result dropped.
    fn validate(props: &Props) -> Result<(), PropertyError> {
        Self::open("", props).map(drop)
    }

    /// Bring the resource online: start what it runs and wait until it
    /// answers. Long waits should report progress
    /// ([`crate::host::report_progress`]) to get more time.
    ///
    /// Online must be idempotent: on a resource that already runs (a hot
    /// swap takes the new version's instance through online, bounded by
    /// the check timeout) it finds it running and returns at once.
    /// [`crate::service::Service::start`] does this for a managed process.
    fn online(&self) -> Result<(), String>;

    /// Take the resource offline cleanly. By default: stop the managed
    /// process (SIGTERM, SIGKILL after [`DEFAULT_STOP_GRACE_MS`]); a
    /// resource that started none has nothing to stop.
    fn offline(&self) -> Result<(), String> {
        process::stop(DEFAULT_STOP_GRACE_MS).map(drop)
    }

    /// Stop at once, best effort. By default: kill the managed process
    /// (SIGKILL to its process group), logging a failure.
    fn terminate(&self) {
        if let Err(err) = process::stop(0) {
            host::log(Level::Warn, &format!("terminate: {err}"));
        }
    }

    /// The cheap, frequent check. By default the same as
    /// [`ResourceType::is_alive`].
    fn looks_alive(&self) -> Health {
        self.is_alive()
    }

    /// The thorough check.
    fn is_alive(&self) -> Health;

    /// A type-specific operation. By default every code is refused (see
    /// [`unknown_control`]); a type with codes answers them and refuses
    /// the others naming its own.
    fn control(&self, code: &str, payload: &str) -> Result<String, String> {
        let _ = payload;
        Err(unknown_control(code, &[]))
    }
}

/// The type's description, as `describe()` returns it: `T`'s constants,
/// its schema, and `version` (what [`crate::export_type!`] passes is the
/// plugin crate's own version).
///
/// ```
/// use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
/// use warden_sdk::types::PropertyError;
/// use warden_sdk::{Property, Props};
///
/// struct Echo;
/// impl ServiceType for Echo {
///     const NAME: &'static str = "echo";
///     const DESCRIPTION: &'static str = "An echo server.";
///     const SERVICE: ServiceDefaults = ServiceDefaults::new("--port {address.port}");
///     const PROPERTIES: &'static [Property] = &[Property::address("address", "Where it listens")];
///     fn open(_props: &Props) -> Result<Self, PropertyError> { Ok(Echo) }
///     fn check(&self) -> Result<(), String> { Ok(()) }
/// }
///
/// let info = warden_sdk::type_info::<Managed<Echo>>("1.2.3");
/// assert_eq!((info.name.as_str(), info.version.as_str()), ("echo", "1.2.3"));
/// let names: Vec<_> = info.properties.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["program", "args", "startup-timeout-ms", "stop-grace-ms", "address"]);
/// ```
pub fn type_info<T: ResourceType>(version: &str) -> TypeInfo {
    TypeInfo {
        name: T::NAME.to_string(),
        version: version.to_string(),
        description: T::DESCRIPTION.to_string(),
        properties: T::properties().iter().map(Property::spec).collect(),
        timing: T::TIMING,
        flags: T::FLAGS,
    }
}

/// One open resource of `T`, as the bindings see it: what
/// [`crate::export_type!`] exports as the contract's `instance`. You do
/// not use it yourself.
pub struct Exported<T>(T);

impl<T: ResourceType> Exported<T> {
    /// The contract's `validate`: [`ResourceType::validate`] over `T`'s
    /// schema.
    ///
    /// ```
    /// # use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
    /// # use warden_sdk::types::PropertyError;
    /// # use warden_sdk::{Exported, Property, Props};
    /// # struct Echo;
    /// # impl ServiceType for Echo {
    /// #     const NAME: &'static str = "echo";
    /// #     const DESCRIPTION: &'static str = "An echo server.";
    /// #     const SERVICE: ServiceDefaults = ServiceDefaults::new("");
    /// #     const PROPERTIES: &'static [Property] = &[Property::address("address", "Where it listens")];
    /// #     fn open(props: &Props) -> Result<Self, PropertyError> { props.address("address").map(|_| Echo) }
    /// #     fn check(&self) -> Result<(), String> { Ok(()) }
    /// # }
    /// let props = vec![("program".to_string(), "/usr/bin/echo-server".to_string())];
    /// let refused = Exported::<Managed<Echo>>::validate(&props).unwrap_err();
    /// assert_eq!(refused.property, "address");
    /// ```
    pub fn validate(properties: &[(String, String)]) -> Result<(), PropertyError> {
        let schema = T::properties();
        T::validate(&Props::new(properties, &schema))
    }
}

/// The contract's `instance` for a wrapper `$wrapper<T>` (a tuple struct
/// around a [`ResourceType`]), in the bindings module `$bindings`: the
/// plain world's ([`Exported`]) and `warden-sdk-replication`'s each have
/// their own `GuestInstance` trait and `Instance` type.
#[doc(hidden)]
#[macro_export]
macro_rules! __guest_instance {
    ($bindings:path, $wrapper:ident) => {
        const _: () = {
            use exported::{GuestInstance, Instance};
            use $bindings as exported;
            use $crate::types::{Health, PropertyError};
            use $crate::{Props, ResourceType};

            impl<T: ResourceType> GuestInstance for $wrapper<T> {
                fn open(
                    name: String,
                    properties: Vec<(String, String)>,
                ) -> Result<Instance, PropertyError> {
                    let schema = T::properties();
                    let resource = T::open(&name, &Props::new(&properties, &schema))?;
                    Ok(Instance::new($wrapper(resource)))
                }

                fn online(&self) -> Result<(), String> {
                    self.0.online()
                }

                fn offline(&self) -> Result<(), String> {
                    self.0.offline()
                }

                fn terminate(&self) {
                    self.0.terminate()
                }

                fn looks_alive(&self) -> Health {
                    self.0.looks_alive()
                }

                fn is_alive(&self) -> Health {
                    self.0.is_alive()
                }

                fn control(&self, code: String, payload: String) -> Result<String, String> {
                    self.0.control(&code, &payload)
                }
            }
        };
    };
}

crate::__guest_instance!(
    crate::bindings::exports::warden::resource::resource_type,
    Exported
);

/// Export a [`ResourceType`] as the plugin's `resource-type`: the one
/// line that makes a crate a Warden plugin. Use it once, at the crate's
/// top level; the version `describe()` reports is the crate's
/// (`CARGO_PKG_VERSION`).
///
/// ```no_run
/// # use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
/// # use warden_sdk::types::PropertyError;
/// # use warden_sdk::Props;
/// # struct Redis;
/// # impl ServiceType for Redis {
/// #     const NAME: &'static str = "redis";
/// #     const DESCRIPTION: &'static str = "Redis.";
/// #     const SERVICE: ServiceDefaults = ServiceDefaults::new("");
/// #     fn open(_props: &Props) -> Result<Self, PropertyError> { Ok(Redis) }
/// #     fn check(&self) -> Result<(), String> { Ok(()) }
/// # }
/// // A ServiceType is exported wrapped in Managed, which runs its service:
/// warden_sdk::export_type!(Managed<Redis>);
/// ```
#[macro_export]
macro_rules! export_type {
    ($ty:ty) => {
        /// The plugin's `resource-type` export (from `warden_sdk::export_type!`).
        struct __WardenResourceType;

        impl $crate::bindings::exports::warden::resource::resource_type::Guest
            for __WardenResourceType
        {
            type Instance = $crate::Exported<$ty>;

            fn describe() -> $crate::types::TypeInfo {
                $crate::type_info::<$ty>(env!("CARGO_PKG_VERSION"))
            }

            fn validate(
                properties: $crate::types::Properties,
            ) -> Result<(), $crate::types::PropertyError> {
                $crate::Exported::<$ty>::validate(&properties)
            }
        }

        $crate::export_plugin!(__WardenResourceType);
    };
}
