//! The host side of the `warden:resource` contract (`wit/resource.wit`).
//!
//! `bindings` is generated from the WIT at build time. This module adds what
//! the WIT cannot say: which contract versions this agent accepts, and the
//! check that a component speaks one of them before anything is instantiated.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// Generated bindings for the `plugin` world.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use bindings::Plugin as PluginBindings;
pub use bindings::exports::warden::resource::resource_type::{Health, PropertyError, TypeInfo};
pub use bindings::warden::resource::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

/// The package every plugin's export belongs to.
pub const PACKAGE: &str = "warden:resource";
/// The interface a plugin exports.
pub const EXPORT: &str = "warden:resource/resource-type";
/// The contract version this agent implements.
pub const VERSION: ContractVersion = ContractVersion {
    major: 0,
    minor: 1,
    patch: 0,
};

/// A `major.minor.patch` contract version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractVersion {
    /// Incompatible changes (from 1.0).
    pub major: u64,
    /// New features; before 1.0, incompatible changes too.
    pub minor: u64,
    /// Fixes.
    pub patch: u64,
}

impl ContractVersion {
    /// Parse `1.2.3`; pre-release and build suffixes are not used by us.
    pub fn parse(text: &str) -> Option<ContractVersion> {
        let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
        let version = ContractVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    /// Whether a plugin built against `plugin` can run on a host that
    /// implements `self`. Semver: the same major version, and in 0.x the same
    /// minor version; the plugin may not be newer than the host within it.
    pub fn accepts(self, plugin: ContractVersion) -> bool {
        if self.major != plugin.major {
            return false;
        }
        if self.major == 0 {
            return self.minor == plugin.minor && plugin.patch <= self.patch;
        }
        (plugin.minor, plugin.patch) <= (self.minor, self.patch)
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a component is not a plugin this agent can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error(
        "the plugin was built against contract {PACKAGE}@{plugin}, but this agent implements \
         {PACKAGE}@{host}; rebuild the plugin against {host} (or run an agent that speaks {plugin})"
    )]
    /// The plugin was built against a contract this agent does not accept.
    IncompatibleVersion {
        /// The contract version the plugin names.
        plugin: String,
        /// The version this agent implements.
        host: ContractVersion,
    },
    #[error(
        "the component does not export {EXPORT} (it exports: {}); is it a Warden plugin?",
        if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
    )]
    /// The component exports no resource type; what it exports instead.
    NotAPlugin {
        /// What it exports instead.
        exports: Vec<String>,
    },
}

/// Check that `component` exports our interface at a version we accept;
/// that version (what the cluster compares across nodes).
pub fn check(engine: &Engine, component: &Component) -> Result<ContractVersion, ContractError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let ours = exports.iter().find_map(|name| {
        let rest = name.strip_prefix(EXPORT)?;
        Some(rest.strip_prefix('@').unwrap_or(""))
    });
    match ours {
        None => Err(ContractError::NotAPlugin { exports }),
        Some(version) => match ContractVersion::parse(version) {
            Some(v) if VERSION.accepts(v) => Ok(v),
            _ => Err(ContractError::IncompatibleVersion {
                plugin: if version.is_empty() {
                    "(unversioned)".to_string()
                } else {
                    version.to_string()
                },
                host: VERSION,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ContractVersion {
        ContractVersion::parse(text).expect("valid version")
    }

    #[test]
    fn parses_versions() {
        assert_eq!(v("0.1.0"), VERSION);
        assert_eq!(ContractVersion::parse("0.1"), None);
        assert_eq!(ContractVersion::parse("0.1.0.1"), None);
        assert_eq!(ContractVersion::parse("x.1.0"), None);
    }

    #[test]
    fn zero_x_versions_need_the_same_minor() {
        assert!(v("0.1.3").accepts(v("0.1.0")));
        assert!(v("0.1.3").accepts(v("0.1.3")));
        assert!(!v("0.1.3").accepts(v("0.1.4")), "plugin newer than host");
        assert!(!v("0.1.3").accepts(v("0.2.0")));
        assert!(!v("0.2.0").accepts(v("0.1.0")));
    }

    #[test]
    fn stable_versions_accept_older_minors() {
        assert!(v("1.4.0").accepts(v("1.2.7")));
        assert!(!v("1.4.0").accepts(v("1.5.0")));
        assert!(!v("2.0.0").accepts(v("1.9.0")));
    }
}
