//! Loading a resource type: bytes -> checked, compiled, described plugin.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use wasmtime::Store;
use wasmtime::component::Component;

use super::bounded::{Instantiate, call_in_fresh_store};
use super::call::CallError;
use super::engine::Runtime;
use super::guest_output::OutputBudget;
use super::host_state::{HostState, ResourceContext};
use super::network::{NetworkGrant, parse_address};
use crate::contract::{self, ContractError, PluginPre, PropertyKind, TypeInfo};

/// How long `describe` and `validate` may take.
pub(super) const TYPE_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Memory limit for type-level calls (describe, validate).
const TYPE_CALL_MEMORY: usize = 64 << 20;

/// Why a file could not be loaded as a resource type. Each names what is
/// wrong; the file's name is added by whoever read the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a WebAssembly file; its first bytes.
    #[error("not a WebAssembly file (it starts with {0:02x?}, not \\0asm)")]
    NotWasm(Vec<u8>),
    #[error(
        "a core WebAssembly module, not a component: build the plugin for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2) so that it is a component"
    )]
    /// A core module, not a component.
    CoreModule,
    /// wasmtime could not compile it.
    #[error("could not compile the component: {0}")]
    Compile(String),
    /// It does not implement an accepted contract.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// It imports what the host does not give.
    #[error("the plugin imports something this agent does not provide: {0}")]
    Link(String),
    /// Its `describe` failed or was cut off.
    #[error("describe() failed: {0}")]
    Describe(CallError),
    /// Its property schema or timers are not valid.
    #[error("the type's description is not valid: {0}")]
    Schema(String),
}

/// A loaded resource type: compiled, linked, described. Shared by every
/// resource of the type; each resource instantiates it in its own store.
pub struct Plugin {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) pre: PluginPre<HostState>,
    info: TypeInfo,
    /// The SHA-256 of the component it was loaded from, when known (a
    /// precompiled artifact loaded on its own does not say): what a
    /// version's rejection is recorded against, so that a fixed build of
    /// the same version is not refused for its predecessor's fault.
    pub(crate) source: Option<[u8; 32]>,
    /// The contract version the component was built against: nodes of a
    /// cluster compare it (`crate::rollout`).
    contract: contract::ContractVersion,
    /// What the type-level calls (describe, validate) may still send to the
    /// log, shared by all of them for as long as this version is loaded.
    /// Each runs in a throwaway store, and a plugin is validated at every
    /// configuration change, swap and start: a budget per call would let
    /// it flood the log through many calls. Instances have their own, one
    /// per resource ([`ResourceContext`]).
    output: Arc<OutputBudget>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .finish()
    }
}

impl Plugin {
    /// Check, compile, link and describe a component.
    pub async fn load(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<Plugin, LoadError> {
        check_header(bytes)?;
        let source: [u8; 32] = sha2::Sha256::digest(bytes).into();
        let engine = runtime.engine.clone();
        let owned = bytes.to_vec();
        // Compiling takes milliseconds to seconds of CPU: keep it off the
        // async workers that drive health checks.
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .map_err(|e| LoadError::Compile(format!("the compile task failed: {e}")))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let mut plugin = Plugin::from_component(runtime, component).await?;
        plugin.source = Some(source);
        Ok(plugin)
    }

    /// Load a component compiled earlier with [`Runtime::engine`]
    /// (`Engine::precompile_component`).
    ///
    /// # Safety
    /// `bytes` must come from `precompile_component` of a compatible engine;
    /// wasmtime trusts precompiled code (see `Component::deserialize`).
    pub async unsafe fn load_precompiled(
        runtime: &Arc<Runtime>,
        bytes: &[u8],
    ) -> Result<Plugin, LoadError> {
        // SAFETY: the caller vouches that the bytes are our own artifact.
        let component = unsafe { Component::deserialize(&runtime.engine, bytes) }
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        Plugin::from_component(runtime, component).await
    }

    async fn from_component(
        runtime: &Arc<Runtime>,
        component: Component,
    ) -> Result<Plugin, LoadError> {
        let (contract, line) = contract::check(&runtime.engine, &component)?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = PluginPre::new(pre, line).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let mut plugin = Plugin {
            runtime: runtime.clone(),
            pre,
            info: placeholder_info(),
            source: None,
            contract,
            output: Arc::default(),
        };
        let info = plugin
            .type_call("describe", |store, bindings| {
                Box::pin(bindings.describe(store))
            })
            .await
            .map_err(LoadError::Describe)?;
        check_schema(&info).map_err(LoadError::Schema)?;
        plugin.info = info;
        Ok(plugin)
    }

    /// What the plugin said about itself.
    pub fn info(&self) -> &TypeInfo {
        &self.info
    }

    /// The type's name, as it describes itself.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> contract::ContractVersion {
        self.contract
    }

    /// Whether the type is replicated: it exports `replication` (contract
    /// 0.3.0), so its resources can have active and passive copies.
    pub fn is_replicated(&self) -> bool {
        self.pre.is_replicated()
    }

    /// The SHA-256 (hex) of the component this was loaded from, if known.
    pub fn source_sha256(&self) -> Option<String> {
        self.source
            .map(|digest| digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Ask the plugin whether `properties` are valid for a resource.
    pub async fn validate(
        &self,
        properties: &[(String, String)],
    ) -> Result<Result<(), contract::PropertyError>, CallError> {
        let properties = properties.to_vec();
        self.type_call("validate", move |store, bindings| {
            Box::pin(async move { bindings.validate(store, &properties).await })
        })
        .await
        .map(|answer| answer.map_err(super::plugin_text::property_error))
    }

    /// Run a type-level call in a throwaway store, its output spending from
    /// the plugin's budget.
    async fn type_call<T, F>(&self, call: &'static str, f: F) -> Result<T, CallError>
    where
        F: for<'a> FnOnce(
            &'a mut Store<HostState>,
            &'a contract::PluginBindings,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>,
        >,
    {
        call_in_fresh_store(
            &self.runtime,
            &self.pre,
            ResourceContext::for_type(&self.info.name, self.output.clone()),
            TYPE_CALL_MEMORY,
            Arc::new(NetworkGrant::default()),
            TYPE_CALL_TIMEOUT,
            call,
            f,
        )
        .await
    }
}

impl Instantiate for PluginPre<HostState> {
    type Bindings = contract::PluginBindings;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Self::Bindings>> + Send + 'a>> {
        Box::pin(self.instantiate_async(store))
    }
}

pub(crate) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm(bytes.iter().take(4).copied().collect()));
    }
    // Bytes 4..8: version 1 / layer 0 is a core module; a component has
    // layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

fn placeholder_info() -> TypeInfo {
    TypeInfo {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        properties: Vec::new(),
        timing: contract::Timing {
            pending_timeout_ms: 0,
            looks_alive_interval_ms: 0,
            is_alive_interval_ms: 0,
            check_timeout_ms: 0,
        },
        flags: contract::TypeFlags::empty(),
    }
}

/// Reject descriptions the agent could not work with, naming the field.
pub(crate) fn check_schema(info: &TypeInfo) -> Result<(), String> {
    check_sizes(info)?;
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid_name(&info.name) {
        return Err(format!(
            "type name {:?} must be 1 to 64 characters of a-z, 0-9 and -",
            info.name
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for spec in &info.properties {
        if !valid_name(&spec.name) {
            return Err(format!(
                "property name {:?} must be 1 to 64 characters of a-z, 0-9 and -",
                spec.name
            ));
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(format!("property {:?} is declared twice", spec.name));
        }
        if let Some(default) = &spec.default_value {
            check_kind(spec.kind, default)
                .map_err(|why| format!("property {:?}: default {default:?} {why}", spec.name))?;
        }
    }
    check_timing(&info.timing)
}

/// The most a type may declare for each of its timers, in milliseconds.
///
/// A type's timings are the defaults of every resource of it, and the
/// agent must not take them on trust: `u64::MAX` as a check timeout would
/// mean a check is never cut off. A type that declares more than these is
/// refused at load, naming the field and the limit (not clamped: a silent
/// clamp would hide a plugin bug, and refusing changes nothing running).
/// An operator who wants longer sets it per resource in the configuration.
pub(super) const TIMING_LIMITS: [(&str, u64); 4] = [
    // An online or offline may take an hour, each progress report
    // extending it by the pending timeout up to ten of them.
    ("pending-timeout-ms", 3_600_000),
    ("looks-alive-interval-ms", 86_400_000),
    ("is-alive-interval-ms", 86_400_000),
    // A health check that takes longer than five minutes has failed.
    ("check-timeout-ms", 300_000),
];

/// Check a type's declared timers: each above 0 (but looks-alive, where 0
/// means none) and at most its limit in [`TIMING_LIMITS`].
fn check_timing(timing: &contract::Timing) -> Result<(), String> {
    let values = [
        timing.pending_timeout_ms,
        timing.looks_alive_interval_ms,
        timing.is_alive_interval_ms,
        timing.check_timeout_ms,
    ];
    for ((field, limit), value) in TIMING_LIMITS.into_iter().zip(values) {
        if value == 0 && field != "looks-alive-interval-ms" {
            return Err(format!("timing {field} must be above 0"));
        }
        if value > limit {
            return Err(format!(
                "timing {field} is {value}, above the limit of {limit} ms"
            ));
        }
    }
    Ok(())
}

/// The most a `describe` answer may hold. What a plugin says about itself
/// is kept for as long as it is loaded and shown by the API and
/// `plugin check`, so it is bounded like any other plugin text.
const MAX_TYPE_DESCRIPTION: usize = 4 * 1024;
const MAX_PROPERTY_DESCRIPTION: usize = 1024;
const MAX_PROPERTIES: usize = 64;
const MAX_DEFAULT_VALUE: usize = 4 * 1024;
const MAX_NAME: usize = 64;
const MAX_VERSION: usize = 64;

/// Refuse a `describe` answer with too many properties or a text that is
/// too long or holds control characters (newlines only in descriptions),
/// naming the field. Runs before anything prints a field of the answer.
fn check_sizes(info: &TypeInfo) -> Result<(), String> {
    check_text("name", &info.name, MAX_NAME, false)?;
    check_text("version", &info.version, MAX_VERSION, false)?;
    check_text("description", &info.description, MAX_TYPE_DESCRIPTION, true)?;
    if info.properties.len() > MAX_PROPERTIES {
        return Err(format!(
            "properties: {} declared, at most {MAX_PROPERTIES}",
            info.properties.len()
        ));
    }
    for (i, spec) in info.properties.iter().enumerate() {
        let field = |what: &str| format!("properties[{i}].{what}");
        check_text(&field("name"), &spec.name, MAX_NAME, false)?;
        check_text(
            &field("description"),
            &spec.description,
            MAX_PROPERTY_DESCRIPTION,
            true,
        )?;
        if let Some(default) = &spec.default_value {
            check_text(&field("default-value"), default, MAX_DEFAULT_VALUE, false)?;
        }
    }
    Ok(())
}

fn check_text(field: &str, text: &str, max: usize, newlines: bool) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{field} is {} bytes long, at most {max}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !(newlines && c == '\n'))
    {
        return Err(format!(
            "{field} holds the control character {c:?}; only printable text is allowed{}",
            if newlines { " (and newlines)" } else { "" }
        ));
    }
    Ok(())
}

/// Check a property value against its declared kind.
pub fn check_kind(kind: PropertyKind, value: &str) -> Result<(), String> {
    let ok = match kind {
        PropertyKind::String => true,
        PropertyKind::Integer => value.parse::<i64>().is_ok(),
        PropertyKind::Boolean => matches!(value, "true" | "false"),
        PropertyKind::DurationMs => value.parse::<u64>().is_ok(),
        PropertyKind::Address => {
            return match value.is_empty() {
                true => Ok(()),
                false => parse_address(value)
                    .map(drop)
                    .map_err(|why| format!("is not a valid {}: it {why}", kind_name(kind))),
            };
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("is not a valid {}", kind_name(kind)))
    }
}

/// A property kind's name, as schemas and messages write it.
pub fn kind_name(kind: PropertyKind) -> &'static str {
    match kind {
        PropertyKind::String => "string",
        PropertyKind::Integer => "integer",
        PropertyKind::Boolean => "boolean (true or false)",
        PropertyKind::DurationMs => "duration in milliseconds",
        PropertyKind::Address => "address (host:port)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(description: &str, properties: usize) -> TypeInfo {
        TypeInfo {
            name: "t".to_string(),
            version: "1.0.0".to_string(),
            description: description.to_string(),
            properties: (0..properties)
                .map(|i| crate::contract::PropertySpec {
                    name: format!("p{i}"),
                    kind: PropertyKind::String,
                    default_value: None,
                    required: false,
                    description: String::new(),
                })
                .collect(),
            timing: crate::contract::Timing {
                pending_timeout_ms: 1,
                looks_alive_interval_ms: 1,
                is_alive_interval_ms: 1,
                check_timeout_ms: 1,
            },
            flags: crate::contract::TypeFlags::empty(),
        }
    }

    #[test]
    fn describe_answers_are_bounded_and_errors_name_the_field() {
        assert_eq!(check_schema(&info("two\nlines", 3)), Ok(()));
        let huge = check_schema(&info(&"d".repeat(30 << 20), 0)).unwrap_err();
        assert_eq!(huge, "description is 31457280 bytes long, at most 4096");
        let many = check_schema(&info("", 10_000)).unwrap_err();
        assert_eq!(many, "properties: 10000 declared, at most 64");
        let mut escape = info("", 2);
        escape.properties[1].description = "\x1b[2J".to_string();
        let err = check_schema(&escape).unwrap_err();
        assert!(
            err.starts_with("properties[1].description holds the control character '\\u{1b}'"),
            "{err}"
        );
        let mut version = info("", 0);
        version.version = "1\n2".to_string();
        let err = check_schema(&version).unwrap_err();
        assert!(
            err.starts_with("version holds the control character '\\n'"),
            "{err}"
        );
        let mut name = info("", 0);
        name.name = "n".repeat(1 << 20);
        assert_eq!(
            check_schema(&name).unwrap_err(),
            "name is 1048576 bytes long, at most 64"
        );
    }

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm(_))
        ));
        assert!(matches!(check_header(b"\0asm"), Err(LoadError::NotWasm(_))));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    fn timing(pending: u64, looks: u64, is: u64, check: u64) -> contract::Timing {
        contract::Timing {
            pending_timeout_ms: pending,
            looks_alive_interval_ms: looks,
            is_alive_interval_ms: is,
            check_timeout_ms: check,
        }
    }

    #[test]
    fn declared_timings_are_bounded() {
        assert_eq!(check_timing(&timing(180_000, 0, 10_000, 5_000)), Ok(()));
        assert_eq!(
            check_timing(&timing(180_000, 5_000, 10_000, u64::MAX)),
            Err(format!(
                "timing check-timeout-ms is {}, above the limit of 300000 ms",
                u64::MAX
            ))
        );
        let err = check_timing(&timing(3_600_001, 5_000, 10_000, 5_000)).unwrap_err();
        assert!(err.contains("pending-timeout-ms"), "{err}");
        let err = check_timing(&timing(1, 86_400_001, 10_000, 5_000)).unwrap_err();
        assert!(err.contains("looks-alive-interval-ms"), "{err}");
        let err = check_timing(&timing(1, 0, 0, 5_000)).unwrap_err();
        assert_eq!(err, "timing is-alive-interval-ms must be above 0");
    }
}
