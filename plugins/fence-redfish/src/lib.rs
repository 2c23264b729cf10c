//! `redfish`: a fence type for baseboard management controllers that speak
//! Redfish (DMTF DSP0266), the standard behind `fence_redfish` and most
//! current BMCs (iDRAC, iLO, XClarity, OpenBMC).
//!
//! A node is a Redfish system, `/redfish/v1/Systems/{target}`: its
//! `PowerState` is the status, and `ComputerSystem.Reset` with `ForceOff`,
//! `On` or `ForceRestart` the actions. Plain HTTP/1.1 over the one socket
//! the agent grants (the device's `address`), with optional basic
//! authentication; every answer is bounded in size and time, and every
//! error says what the device did. HTTPS is not spoken: a BMC is reached
//! on a management network, or through a local TLS terminator.

mod http;
mod redfish;

use exports::warden::fence::fence_type::{FenceInfo, Guest, PowerState};
use warden::resource::types::{Properties, PropertyError, PropertyKind, PropertySpec};

wit_bindgen::generate!({
    path: ["../../wit/released/0.1.0", "../../wit/fence"],
    world: "warden:fence/fence-device",
    generate_all,
});

/// The device's settings, read from its properties.
pub(crate) struct Device {
    /// `host:port` of the BMC (an IP address or localhost: a plugin cannot
    /// look names up).
    pub address: String,
    pub username: String,
    pub password: String,
    /// How long one request (connect, send, answer) may take.
    pub timeout_ms: u64,
}

const SCHEMA: &[(&str, PropertyKind, Option<&str>, bool, &str)] = &[
    (
        "address",
        PropertyKind::Address,
        None,
        true,
        "The BMC's Redfish service, ip:port (the only address the type may reach)",
    ),
    (
        "username",
        PropertyKind::String,
        Some(""),
        false,
        "User for HTTP basic authentication; empty: none",
    ),
    (
        "password",
        PropertyKind::String,
        Some(""),
        false,
        "Password for HTTP basic authentication",
    ),
    (
        "timeout-ms",
        PropertyKind::DurationMs,
        Some("5000"),
        false,
        "How long one request to the BMC may take",
    ),
];

/// The longest request timeout a device may set: the agent's own deadline
/// on a call is longer, so the type reports a slow BMC itself.
const MAX_TIMEOUT_MS: u64 = 20_000;

fn property_error(property: &str, reason: String) -> PropertyError {
    PropertyError {
        property: property.to_string(),
        reason,
    }
}

impl Device {
    fn read(properties: &Properties) -> Result<Device, PropertyError> {
        let get = |name: &str| {
            properties
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    SCHEMA
                        .iter()
                        .find(|s| s.0 == name)
                        .and_then(|s| s.2.map(str::to_string))
                })
        };
        if let Some((unknown, _)) = properties
            .iter()
            .find(|(k, _)| !SCHEMA.iter().any(|s| s.0 == k))
        {
            return Err(property_error(
                unknown,
                "is not a property of the redfish fence type".to_string(),
            ));
        }
        let address = get("address").unwrap_or_default();
        if address.is_empty() {
            return Err(property_error(
                "address",
                "is required: the BMC's ip:port".to_string(),
            ));
        }
        http::resolve(&address).map_err(|why| property_error("address", why))?;
        let timeout_ms = get("timeout-ms")
            .unwrap_or_default()
            .parse::<u64>()
            .map_err(|_| property_error("timeout-ms", "is not a number of milliseconds".into()))?;
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(property_error(
                "timeout-ms",
                format!("is {timeout_ms}: from 1 to {MAX_TIMEOUT_MS} ms"),
            ));
        }
        let username = get("username").unwrap_or_default();
        let password = get("password").unwrap_or_default();
        if username.is_empty() && !password.is_empty() {
            return Err(property_error(
                "username",
                "is empty while a password is set".to_string(),
            ));
        }
        Ok(Device {
            address,
            username,
            password,
            timeout_ms,
        })
    }
}

struct Redfish;

impl Guest for Redfish {
    fn describe() -> FenceInfo {
        FenceInfo {
            name: "redfish".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A BMC speaking Redfish over HTTP: a node is a system, \
                          /redfish/v1/Systems/{target}; off is ComputerSystem.Reset ForceOff."
                .to_string(),
            properties: SCHEMA
                .iter()
                .map(|(name, kind, default, required, help)| PropertySpec {
                    name: name.to_string(),
                    kind: *kind,
                    default_value: default.map(str::to_string),
                    required: *required,
                    description: help.to_string(),
                })
                .collect(),
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        Device::read(&properties).map(drop)
    }

    fn status(properties: Properties, target: String) -> Result<PowerState, String> {
        let device =
            Device::read(&properties).map_err(|e| format!("{}: {}", e.property, e.reason))?;
        redfish::power_state(&device, &target)
    }

    fn off(properties: Properties, target: String) -> Result<(), String> {
        let device =
            Device::read(&properties).map_err(|e| format!("{}: {}", e.property, e.reason))?;
        redfish::reset(&device, &target, "ForceOff")
    }

    fn on(properties: Properties, target: String) -> Result<(), String> {
        let device =
            Device::read(&properties).map_err(|e| format!("{}: {}", e.property, e.reason))?;
        redfish::reset(&device, &target, "On")
    }

    fn reboot(properties: Properties, target: String) -> Result<(), String> {
        let device =
            Device::read(&properties).map_err(|e| format!("{}: {}", e.property, e.reason))?;
        redfish::reset(&device, &target, "ForceRestart")
    }
}

export!(Redfish);
