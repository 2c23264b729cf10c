//! The SDK for Warden resource types.
//!
//! A resource type is a WebAssembly component that exports the
//! `warden:resource/resource-type` interface (see `wit/resource.wit`). This
//! crate carries the generated bindings of that contract, so that a plugin
//! crate needs only this dependency, and what every type would otherwise
//! write again:
//!
//! - [`ResourceType`]: the contract as one trait with sensible defaults,
//!   exported with [`export_type!`];
//! - [`service::ServiceType`]: the shorter trait for the usual type, one
//!   managed program and a check, exported as
//!   `export_type!(Managed<YourType>)`;
//! - [`Property`] and [`Props`]: a property schema declared once, from which
//!   both `describe()` and the parsing of values come, with errors that name
//!   the property;
//! - [`net`]: connect with a deadline, line dialogues, the SMTP check, HTTP
//!   GET; [`probe`]: a connect, a line exchange and an HTTP GET done by the
//!   host (contract 0.4.0), bounded and capped there; [`service`]: start a program from an argument template, wait for
//!   it with progress reports, stop it, kill it.
//!
//! A whole type, Redis, checked by `PING`:
//!
//! ```no_run
//! use std::time::Duration;
//! use warden_sdk::net::{self, Deadline};
//! use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
//! use warden_sdk::types::PropertyError;
//! use warden_sdk::{Property, Props};
//!
//! struct Redis {
//!     address: String,
//!     answer: Duration,
//! }
//!
//! impl ServiceType for Redis {
//!     const NAME: &'static str = "redis";
//!     const DESCRIPTION: &'static str = "A Redis server, checked by PING answered +PONG.";
//!     const SERVICE: ServiceDefaults =
//!         ServiceDefaults::new("--port {address.port} --bind {address.host}").program("/usr/bin/redis-server");
//!     const PROPERTIES: &'static [Property] = &[
//!         Property::address("address", "Where Redis listens (ip:port)").default("127.0.0.1:6379"),
//!         Property::duration_ms("answer-timeout-ms", "How long a PING may take").default("2000"),
//!     ];
//!
//!     fn open(props: &Props) -> Result<Self, PropertyError> {
//!         Ok(Redis { address: props.address("address")?, answer: props.duration("answer-timeout-ms")? })
//!     }
//!
//!     fn check(&self) -> Result<(), String> {
//!         net::ask_once(&self.address, "PING", "+PONG", Deadline::after(self.answer)).map(drop)
//!     }
//! }
//!
//! warden_sdk::export_type!(Managed<Redis>);
//! ```
//!
//! Build the plugin with `cargo build --release --target wasm32-wasip2` and a
//! `crate-type = ["cdylib"]` library; `sdk/template` is a crate to copy, and
//! `docs/sdk.md` the guide.
#![warn(missing_docs)]

/// The bindings generated from `wit/resource.wit` (the `plugin` world).
/// A type written with [`ResourceType`] does not need them; a test of the
/// raw contract implements `Guest` and `GuestInstance` and exports them
/// with [`export_plugin!`].
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
pub mod probe;
pub mod properties;
pub mod resource;
pub mod service;

pub use bindings::export_plugin;
pub use bindings::warden::resource::{checkpoint, host, network, process, types};
pub use properties::{Property, Props, refuse};
pub use resource::{
    DEFAULT_STOP_GRACE_MS, DEFAULT_TIMING, Exported, ResourceType, type_info, unknown_control,
};
pub use service::{Managed, ServiceType};

/// The version of the contract this SDK builds plugins against.
///
/// ```
/// assert!(warden_sdk::CONTRACT_VERSION.starts_with("0."));
/// ```
pub const CONTRACT_VERSION: &str = "0.5.0";

/// Where the resource's own data directory appears to the plugin (through
/// WASI; `std::fs` works). It is the only directory a plugin can see.
///
/// ```no_run
/// let clean = std::path::Path::new(warden_sdk::DATA_DIR).join("CLEAN").exists();
/// ```
pub const DATA_DIR: &str = "/data";

/// Look up a property by name in a resource's properties, as the contract
/// passes them (for code on the raw bindings; a [`ResourceType`] reads
/// through [`Props`]).
///
/// ```
/// let props = vec![("a".to_string(), "1".to_string())];
/// assert_eq!(warden_sdk::property(&props, "a"), Some("1"));
/// assert_eq!(warden_sdk::property(&props, "b"), None);
/// ```
pub fn property<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A property spec for `describe`, required when it has no default (for
/// code on the raw bindings; a [`ResourceType`] declares [`Property`]s).
///
/// ```
/// use warden_sdk::types::PropertyKind;
/// let spec = warden_sdk::spec("fault", PropertyKind::String, Some("none"), "What to break");
/// assert!(!spec.required);
/// ```
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
