//! The SDK for Warden resource types.
//!
//! A resource type is a WebAssembly component that exports the
//! `warden:resource/resource-type` interface (see `wit/resource.wit`). This
//! crate carries the generated bindings of that contract so that a plugin
//! crate needs only this dependency:
//!
//! ```ignore
//! use warden_sdk::bindings::exports::warden::resource::resource_type::{Guest, GuestInstance};
//! struct MyType;
//! impl Guest for MyType { /* describe, validate */ }
//! warden_sdk::export_plugin!(MyType);
//! ```
//!
//! Build the plugin with `cargo build --release --target wasm32-wasip2` and a
//! `crate-type = ["cdylib"]` library.

/// The bindings generated from `wit/resource.wit` (the `plugin` world).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "warden_sdk::bindings",
    });
}

pub mod net;
pub mod service;

pub use bindings::export_plugin;
pub use bindings::warden::resource::{checkpoint, host, process, types};

/// The version of the contract this SDK builds plugins against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Where the resource's own data directory appears to the plugin (through
/// WASI; `std::fs` works). It is the only directory a plugin can see.
pub const DATA_DIR: &str = "/data";

/// Look up a property by name in a resource's properties.
pub fn property<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A property parsed as a number; `default` when it is not set.
pub fn number(
    properties: &[(String, String)],
    name: &str,
    default: u64,
) -> Result<u64, types::PropertyError> {
    match property(properties, name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| types::PropertyError {
            property: name.to_string(),
            reason: format!("expected a whole number, got {text:?}"),
        }),
    }
}

/// A property that must be set and not empty.
pub fn required<'a>(
    properties: &'a [(String, String)],
    name: &str,
    what: &str,
) -> Result<&'a str, types::PropertyError> {
    property(properties, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| types::PropertyError {
            property: name.to_string(),
            reason: format!("required: {what}"),
        })
}

/// A property spec, for `describe`: required when it has no default.
pub fn spec(
    name: &str,
    kind: types::PropertyKind,
    default: Option<&str>,
    description: &str,
) -> types::PropertySpec {
    types::PropertySpec {
        name: name.to_string(),
        kind,
        default_value: default.map(str::to_string),
        required: default.is_none(),
        description: description.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_finds_the_named_value() {
        let props = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ];
        assert_eq!(property(&props, "b"), Some("2"));
        assert_eq!(property(&props, "c"), None);
    }
}
