//! The host side of the `warden:resource` contract (`wit/resource.wit`).
//!
//! `bindings` is generated from the WIT at build time: the current version
//! and each released one the agent still runs. This module adds what the WIT
//! cannot say: which contract versions this agent accepts, the check that a
//! component speaks one of them before anything is instantiated, and
//! (`export`) one way to call a plugin whichever version it speaks.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

pub mod bindings;
mod export;

pub use bindings::current::exports::warden::resource::resource_type::{
    Health, PropertyError, TypeInfo,
};
pub use bindings::current::warden::resource::types::{
    PropertyKind, PropertySpec, Timing, TypeFlags,
};
pub use bindings::replicated::exports::warden::resource::replication::{
    CopyHealth, CopyRole, CopySource, CopyState,
};
pub use export::{Line, PluginBindings, PluginPre};

/// The package every plugin's export belongs to.
pub const PACKAGE: &str = "warden:resource";
/// The interface a plugin exports.
pub const EXPORT: &str = "warden:resource/resource-type";
/// The interface a replicated type exports beside [`EXPORT`] (new in 0.3.0),
/// under the current contract's name.
pub const REPLICATION_EXPORT: &str = "warden:resource/replication@0.5.0";
/// The same interface under contract 0.4.0's name, which a replicated type
/// built against 0.4.0 exports.
pub const REPLICATION_EXPORT_0_4: &str = "warden:resource/replication@0.4.0";
/// The same interface under contract 0.3.0's name, which a replicated type
/// built against 0.3.0 exports.
pub const REPLICATION_EXPORT_0_3: &str = "warden:resource/replication@0.3.0";
/// The contract version this agent implements (`wit/resource.wit`).
pub const VERSION: ContractVersion = ContractVersion {
    major: 0,
    minor: 5,
    patch: 0,
};

/// Every contract version this agent runs plugins of, newest first, with
/// the bindings each is instantiated with. A plugin is accepted when one of
/// these [accepts](ContractVersion::accepts) its version. Released versions
/// stay here, frozen in `wit/released/`, so that a plugin built once keeps
/// loading on newer agents.
pub const SUPPORTED: [(ContractVersion, Line); 5] = [
    (VERSION, Line::Current),
    (
        ContractVersion {
            major: 0,
            minor: 4,
            patch: 0,
        },
        Line::V0_4,
    ),
    (
        ContractVersion {
            major: 0,
            minor: 3,
            patch: 0,
        },
        Line::V0_3,
    ),
    (
        ContractVersion {
            major: 0,
            minor: 2,
            patch: 0,
        },
        Line::V0_2,
    ),
    (
        ContractVersion {
            major: 0,
            minor: 1,
            patch: 0,
        },
        Line::V0_1,
    ),
];

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
         {PACKAGE}@{host} (and runs plugins built against {}); rebuild the plugin against {host} \
         (or run an agent that speaks {plugin})",
        older_supported()
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

/// The released versions this agent still runs, for messages: `0.3.0, 0.2.0, 0.1.0`.
fn older_supported() -> String {
    SUPPORTED[1..]
        .iter()
        .map(|(version, _)| version.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check that `component` exports our interface at a version we accept;
/// that version (what the cluster compares across nodes) and the bindings
/// to instantiate it with.
pub fn check(
    engine: &Engine,
    component: &Component,
) -> Result<(ContractVersion, Line), ContractError> {
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
    let Some(version) = ours else {
        return Err(ContractError::NotAPlugin { exports });
    };
    ContractVersion::parse(version)
        .and_then(|plugin| {
            let (_, line) = SUPPORTED.iter().find(|(ours, _)| ours.accepts(plugin))?;
            Some((plugin, *line))
        })
        .ok_or_else(|| ContractError::IncompatibleVersion {
            plugin: if version.is_empty() {
                "(unversioned)".to_string()
            } else {
                version.to_string()
            },
            host: VERSION,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ContractVersion {
        ContractVersion::parse(text).expect("valid version")
    }

    #[test]
    fn parses_versions() {
        assert_eq!(v("0.5.0"), VERSION);
        assert_eq!(
            REPLICATION_EXPORT,
            format!("warden:resource/replication@{VERSION}")
        );
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
    fn every_supported_version_is_accepted_by_its_own_line() {
        assert_eq!(SUPPORTED[0].0, VERSION);
        for (version, _) in SUPPORTED {
            assert!(version.accepts(version), "{version}");
        }
        assert_eq!(older_supported(), "0.4.0, 0.3.0, 0.2.0, 0.1.0");
    }

    /// The SHA-256 of each released contract's WIT. Plugins in the field
    /// were built against these bytes: a released version is never edited.
    /// To change the contract, copy `wit/resource.wit` to
    /// `wit/released/VERSION/`, bump its version, link the copy's bindings
    /// (`bindings.rs`, `export.rs`, `SUPPORTED`) and add its digest here.
    const RELEASED: [(&str, &[u8], &str); 5] = [
        (
            "wit/resource.wit (0.5.0)",
            include_bytes!("../../../wit/resource.wit"),
            "765fd2cd95fda4262abf09f2ac7373e3fb7478c994f7f35e644515e4860cb419",
        ),
        (
            "wit/released/0.4.0/resource.wit",
            include_bytes!("../../../wit/released/0.4.0/resource.wit"),
            "4a2a10b9776a0969a275a71b485d519ee6a1f36d39bb9e46f4dc6a99139098fc",
        ),
        (
            "wit/released/0.3.0/resource.wit",
            include_bytes!("../../../wit/released/0.3.0/resource.wit"),
            "152e769a34a158837c3291c440eece5f4042d3e7bf3011926fabc415bb17b816",
        ),
        (
            "wit/released/0.2.0/resource.wit",
            include_bytes!("../../../wit/released/0.2.0/resource.wit"),
            "62430724319ebf59658bdf1fa00f7a2704ee80ddcaf4b55e7a501e2358525fde",
        ),
        (
            "wit/released/0.1.0/resource.wit",
            include_bytes!("../../../wit/released/0.1.0/resource.wit"),
            "877d8cf663067c7b6b119b9768a19a06c2bef73bde5b8bad82e70660b8a51bdd",
        ),
    ];

    #[test]
    fn released_contracts_are_frozen() {
        use sha2::{Digest, Sha256};
        for (file, bytes, expected) in RELEASED {
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                digest, expected,
                "{file} is a released contract and must not change; make a new version instead"
            );
        }
    }

    #[test]
    fn stable_versions_accept_older_minors() {
        assert!(v("1.4.0").accepts(v("1.2.7")));
        assert!(!v("1.4.0").accepts(v("1.5.0")));
        assert!(!v("2.0.0").accepts(v("1.9.0")));
    }
}
