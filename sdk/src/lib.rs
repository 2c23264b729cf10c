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

pub use bindings::export_plugin;
pub use bindings::warden::resource::{host, process, types};

/// The version of the contract this SDK builds plugins against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Look up a property by name in a resource's properties.
pub fn property<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
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
