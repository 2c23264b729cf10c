//! What the monitor needs to run one resource, and its validation.

use std::collections::HashSet;

use std::time::Duration;

use crate::contract::TypeFlags;
use crate::runtime::{Grants, Plugin, ResourceDirs, check_kind, kind_name};

/// Per-resource overrides of the type's default timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimingOverrides {
    /// The pending timeout (online, offline).
    pub pending_timeout: Option<Duration>,
    /// The looks-alive interval.
    pub looks_alive_interval: Option<Duration>,
    /// The is-alive interval.
    pub is_alive_interval: Option<Duration>,
    /// The health check timeout.
    pub check_timeout: Option<Duration>,
    /// The terminate timeout.
    pub terminate_timeout: Option<Duration>,
}

/// The timers of one resource: the type's defaults with the resource's
/// overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// `None`: online is never cut off (the type said so and the operator
    /// set no pending timeout of the resource's own); only a cancel ends it.
    pub online_timeout: Option<Duration>,
    /// How long `offline` may take.
    pub offline_timeout: Duration,
    /// Progress reports extend a pending call up to this long in total.
    pub pending_cap: Duration,
    /// `None`: the type does not ask for looks-alive polling.
    pub looks_alive_interval: Option<Duration>,
    /// How often `is-alive` runs.
    pub is_alive_interval: Duration,
    /// How long a health check may take.
    pub check_timeout: Duration,
    /// How long `terminate` may take.
    pub terminate_timeout: Duration,
}

/// How many pending timeouts progress reports may stretch a call to.
const PENDING_CAP_FACTOR: u32 = 10;
/// Terminate is best effort and must be quick.
const DEFAULT_TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

impl Timers {
    /// The timers of a resource: its type's defaults, then the operator's
    /// `overrides`.
    pub fn resolve(plugin: &Plugin, overrides: &TimingOverrides) -> Timers {
        let info = plugin.info();
        let ms = Duration::from_millis;
        let pending = overrides
            .pending_timeout
            .unwrap_or(ms(info.timing.pending_timeout_ms));
        let looks_alive = overrides
            .looks_alive_interval
            .unwrap_or(ms(info.timing.looks_alive_interval_ms));
        // A type may declare that its online is never cut off (a large
        // store mounts as long as it takes); an operator who sets the
        // resource's pending timeout bounds it all the same.
        let unbounded_online = info.flags.contains(TypeFlags::ONLINE_NO_PENDING_TIMEOUT)
            && overrides.pending_timeout.is_none();
        Timers {
            online_timeout: (!unbounded_online).then_some(pending),
            offline_timeout: pending,
            pending_cap: pending.saturating_mul(PENDING_CAP_FACTOR),
            looks_alive_interval: (!looks_alive.is_zero()).then_some(looks_alive),
            is_alive_interval: overrides
                .is_alive_interval
                .unwrap_or(ms(info.timing.is_alive_interval_ms)),
            check_timeout: overrides
                .check_timeout
                .unwrap_or(ms(info.timing.check_timeout_ms)),
            terminate_timeout: overrides
                .terminate_timeout
                .unwrap_or(DEFAULT_TERMINATE_TIMEOUT),
        }
    }
}

/// One resource, as configured.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    /// The resource's name: unique on the node, part of paths.
    pub name: String,
    /// Its type: the name of a loaded plugin.
    pub type_name: String,
    /// Its properties as configured, before defaults.
    pub properties: Vec<(String, String)>,
    /// The timers it overrides.
    pub timing: TimingOverrides,
    /// `None`: the agent's default.
    pub memory_limit: Option<usize>,
    /// The plugin's data directory and the agent's private one.
    pub dirs: ResourceDirs,
    /// What the operator granted its type's plugin.
    pub grants: Grants,
}

/// A resource configuration the monitor refuses, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name breaks the rule of names.
    #[error("resource {0:?}: the name must be 1 to 64 characters of a-z, A-Z, 0-9, - and _")]
    BadName(String),
    /// A resource of this name exists already.
    #[error("resource {0:?} exists already")]
    Duplicate(String),
    /// No plugin of this type is loaded.
    #[error("resource {resource:?}: unknown type {type_name:?} (loaded types: {known})")]
    UnknownType {
        /// The resource, by name.
        resource: String,
        /// The resource type's name.
        type_name: String,
        /// What there is instead, for the message.
        known: String,
    },
    #[error(
        "resource {resource:?}: unknown property {property:?} for type {type_name} (known: {known})"
    )]
    /// The type's schema has no such property.
    UnknownProperty {
        /// The resource, by name.
        resource: String,
        /// The resource type's name.
        type_name: String,
        /// The property, by name.
        property: String,
        /// What there is instead, for the message.
        known: String,
    },
    #[error("resource {resource:?}: property {property:?} is set twice")]
    /// A property was given twice.
    DuplicateProperty {
        /// The resource, by name.
        resource: String,
        /// The property, by name.
        property: String,
    },
    #[error("resource {resource:?}: required property {property:?} is missing")]
    /// A property the schema requires was not given.
    MissingProperty {
        /// The resource, by name.
        resource: String,
        /// The property, by name.
        property: String,
    },
    /// A value does not parse as its property's kind.
    #[error("resource {resource:?}: property {property:?}: {value:?} is not a valid {kind}")]
    BadValue {
        /// The resource, by name.
        resource: String,
        /// The property, by name.
        property: String,
        /// The value given.
        value: String,
        /// The kind it should be.
        kind: &'static str,
    },
    /// The plugin refused a property's value.
    #[error("resource {resource:?}: property {property:?}: {reason}")]
    Refused {
        /// The resource, by name.
        resource: String,
        /// The property, by name.
        property: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The plugin's `validate` failed, or was cut off.
    #[error("resource {resource:?}: {call} of its type failed: {reason}")]
    ValidateFailed {
        /// The resource, by name.
        resource: String,
        /// `validate`, or the call that failed.
        call: &'static str,
        /// Why, in words an operator can act on.
        reason: String,
    },
    #[error("resource {resource:?}: {reason}")]
    /// The resource's directories could not be made.
    Directory {
        /// The resource, by name.
        resource: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// A timer was set to zero.
    #[error("resource {resource:?}: {what} must be above 0")]
    ZeroTimer {
        /// The resource, by name.
        resource: String,
        /// The timer.
        what: &'static str,
    },
}

/// Whether `name` is a valid resource (or group) name: 1 to 64 of
/// a-z, A-Z, 0-9, - and _, so it is safe in paths, keys and log lines.
pub fn valid_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Check `spec` against the type's schema and the plugin's own `validate`,
/// and return the full property list (defaults filled in) that `open` gets.
pub async fn validate(
    spec: &ResourceSpec,
    plugin: &Plugin,
) -> Result<Vec<(String, String)>, SpecError> {
    let full = check_schema(spec, plugin)?;
    plugin_validate(spec, plugin, full).await
}

/// The plugin's own `validate` of properties that passed [`check_schema`].
pub async fn plugin_validate(
    spec: &ResourceSpec,
    plugin: &Plugin,
    full: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, SpecError> {
    let resource = || spec.name.clone();
    match plugin.validate(&full).await {
        Ok(Ok(())) => Ok(full),
        Ok(Err(refused)) => Err(SpecError::Refused {
            resource: resource(),
            property: refused.property,
            reason: refused.reason,
        }),
        Err(err) => Err(SpecError::ValidateFailed {
            resource: resource(),
            call: "validate",
            reason: err.to_string(),
        }),
    }
}

/// What the host checks of `spec` without calling the plugin: the name,
/// the timers, and the properties against the type's schema (unknown,
/// repeated, of the wrong kind, required and missing). Returns the full
/// property list, defaults filled in.
pub fn check_schema(
    spec: &ResourceSpec,
    plugin: &Plugin,
) -> Result<Vec<(String, String)>, SpecError> {
    let resource = || spec.name.clone();
    if !valid_resource_name(&spec.name) {
        return Err(SpecError::BadName(spec.name.clone()));
    }
    for (what, value) in [
        ("pending timeout", spec.timing.pending_timeout),
        ("is-alive interval", spec.timing.is_alive_interval),
        ("check timeout", spec.timing.check_timeout),
        ("terminate timeout", spec.timing.terminate_timeout),
    ] {
        if value.is_some_and(|v| v.is_zero()) {
            return Err(SpecError::ZeroTimer {
                resource: resource(),
                what,
            });
        }
    }
    let info = plugin.info();
    let mut seen = HashSet::new();
    for (key, value) in &spec.properties {
        if !seen.insert(key.as_str()) {
            return Err(SpecError::DuplicateProperty {
                resource: resource(),
                property: key.clone(),
            });
        }
        let Some(schema) = info.properties.iter().find(|p| &p.name == key) else {
            return Err(SpecError::UnknownProperty {
                resource: resource(),
                type_name: info.name.clone(),
                property: key.clone(),
                known: info
                    .properties
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if check_kind(schema.kind, value).is_err() {
            return Err(SpecError::BadValue {
                resource: resource(),
                property: key.clone(),
                value: value.clone(),
                kind: kind_name(schema.kind),
            });
        }
    }
    let mut full = spec.properties.clone();
    for schema in &info.properties {
        if seen.contains(schema.name.as_str()) {
            continue;
        }
        match &schema.default_value {
            Some(default) => full.push((schema.name.clone(), default.clone())),
            None if schema.required => {
                return Err(SpecError::MissingProperty {
                    resource: resource(),
                    property: schema.name.clone(),
                });
            }
            None => {}
        }
    }
    Ok(full)
}
