//! `hostile-describe`: a test plugin whose `describe` answers tens of MiB —
//! a 20 MiB description and 10 000 properties. The agent must refuse to
//! load it, naming the field, and carry on.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::types::{PropertyKind, PropertySpec, Timing, TypeFlags};

/// 20 MiB of description with a newline and an ANSI sequence, built in
/// one allocation so the plugin stays within its memory limit.
fn description() -> String {
    let tail = "\n\x1b[2J";
    let mut text = String::with_capacity((20 << 20) + tail.len());
    for _ in 0..(20 << 20) {
        text.push('d');
    }
    text.push_str(tail);
    text
}

struct HostileDescribe;
struct Never;

impl Guest for HostileDescribe {
    type Instance = Never;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "hostile-describe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: description(),
            properties: (0..10_000)
                .map(|i| PropertySpec {
                    name: format!("p{i}"),
                    kind: PropertyKind::String,
                    default_value: None,
                    required: false,
                    description: "h".repeat(1024),
                })
                .collect(),
            timing: Timing {
                pending_timeout_ms: 1_000,
                looks_alive_interval_ms: 1_000,
                is_alive_interval_ms: 1_000,
                check_timeout_ms: 1_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(_: Properties) -> Result<(), PropertyError> {
        Ok(())
    }
}

impl GuestInstance for Never {
    fn open(_: String, _: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(Never))
    }
    fn online(&self) -> Result<(), String> {
        Ok(())
    }
    fn offline(&self) -> Result<(), String> {
        Ok(())
    }
    fn terminate(&self) {}
    fn looks_alive(&self) -> Health {
        Health::Healthy
    }
    fn is_alive(&self) -> Health {
        Health::Healthy
    }
    fn control(&self, _: String, _: String) -> Result<String, String> {
        Err("no controls".to_string())
    }
}

warden_sdk::export_plugin!(HostileDescribe);
