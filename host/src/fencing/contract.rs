//! The host side of the `warden:fence` contract (`wit/fence/fence.wit`):
//! the generated bindings, and the check that a component is a fence type
//! of a version this agent speaks.
//!
//! The fence world imports the resource contract's `host` interface and
//! uses its property types, so the bindings reuse those of
//! [`crate::contract`]: the runtime's linker, which already provides
//! `host`, links fence types as it is.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::contract::ContractVersion;

/// Generated bindings for the `fence-device` world.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated; its types are re-exported one by one
pub mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit/released/0.1.0", "../wit/fence"],
        world: "warden:fence/fence-device",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/host": crate::contract::bindings::v0_1::warden::resource::host,
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
        },
    });
}

pub(super) use bindings::exports::warden::fence::fence_type::FenceInfo;
pub use bindings::exports::warden::fence::fence_type::PowerState;

/// The interface a fence type exports.
pub const EXPORT: &str = "warden:fence/fence-type";
/// The fence contract version this agent implements.
pub const VERSION: ContractVersion = ContractVersion {
    major: 0,
    minor: 1,
    patch: 0,
};

/// Check that `component` exports [`EXPORT`] at a version we accept, or
/// say what it is instead.
pub(super) fn check(engine: &Engine, component: &Component) -> Result<(), String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(version) = exports.iter().find_map(|name| {
        let rest = name.strip_prefix(EXPORT)?;
        Some(rest.strip_prefix('@').unwrap_or(""))
    }) else {
        return Err(format!(
            "the component does not export {EXPORT} (it exports: {}); is it a fence type?",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        ));
    };
    match ContractVersion::parse(version) {
        Some(v) if VERSION.accepts(v) => Ok(()),
        _ => Err(format!(
            "the fence type was built against warden:fence@{}, but this agent implements \
             warden:fence@{VERSION}; rebuild it against {VERSION}",
            if version.is_empty() {
                "(unversioned)"
            } else {
                version
            }
        )),
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PowerState::On => f.write_str("on"),
            PowerState::Off => f.write_str("off"),
            PowerState::Other(state) => write!(f, "{state}"),
        }
    }
}
