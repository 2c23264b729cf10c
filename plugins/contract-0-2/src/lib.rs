//! `legacy-network`: a resource type built against the released contract
//! `warden:resource@0.2.0` (`wit/released/0.2.0/`), with the raw bindings,
//! as a plugin compiled before 0.3.0 existed would be. The agent must run it
//! unchanged, so it reaches every interface 0.2.0 imports: `host`,
//! `process`, `checkpoint` and `network` (new in 0.2.0).
//!
//! It manages nothing. Online records `online-at` in the checkpoint and asks
//! for the process state (none); is-alive is healthy once online. `control`
//! answers `checkpoint` (the record's `k=v` lines), `now` (the clock),
//! `lookup NAME` (the network import's name lookup) and `query ADDR/PREFIX
//! IFACE` (its address query); without a grant the last two come back
//! refused, naming the grant, which is the point: the call reached the host.

wit_bindgen::generate!({
    path: "../../wit/released/0.2.0",
    world: "plugin",
});

use exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden::resource::checkpoint;
use warden::resource::host::{self, Level};
use warden::resource::network::{self, AddressSpec};
use warden::resource::process::{self, ProcessState};
use warden::resource::types::{Timing, TypeFlags};

struct Legacy;

struct Resource;

impl Guest for Legacy {
    type Instance = Resource;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "legacy-network".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "a type built against contract 0.2.0 that reaches its network import"
                .to_string(),
            properties: Vec::new(),
            timing: Timing {
                pending_timeout_ms: 10_000,
                looks_alive_interval_ms: 0,
                is_alive_interval_ms: 1_000,
                check_timeout_ms: 2_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(_properties: Properties) -> Result<(), PropertyError> {
        Ok(())
    }
}

/// `ADDR/PREFIX IFACE` as the network import's address spec.
fn address_spec(payload: &str) -> Result<AddressSpec, String> {
    let (cidr, interface) = payload
        .split_once(' ')
        .ok_or_else(|| format!("{payload:?} is not ADDR/PREFIX IFACE"))?;
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} has no /PREFIX"))?;
    let prefix_length = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    Ok(AddressSpec {
        address: address.to_string(),
        prefix_length,
        interface: interface.to_string(),
    })
}

impl GuestInstance for Resource {
    fn open(name: String, _properties: Properties) -> Result<Instance, PropertyError> {
        host::log(Level::Debug, &format!("opening {name}"));
        Ok(Instance::new(Resource))
    }

    fn online(&self) -> Result<(), String> {
        if let ProcessState::Running(pid) = process::state() {
            return Err(format!("pid {pid} runs, and this type starts none"));
        }
        checkpoint::set("online-at", &host::now_ms().to_string())
    }

    fn offline(&self) -> Result<(), String> {
        checkpoint::delete("online-at")
    }

    fn terminate(&self) {}

    fn looks_alive(&self) -> Health {
        self.is_alive()
    }

    fn is_alive(&self) -> Health {
        match checkpoint::get("online-at") {
            Ok(Some(_)) => Health::Healthy,
            Ok(None) => Health::Failed("not online".to_string()),
            Err(e) => Health::Failed(e),
        }
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        match code.as_str() {
            "checkpoint" => Ok(checkpoint::list()?
                .into_iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect()),
            "now" => Ok(host::now_ms().to_string()),
            "lookup" => Ok(network::lookup_name(&payload)?.join(" ")),
            "query" => {
                let state = network::query_address(&address_spec(&payload)?)?;
                Ok(format!(
                    "present={} link-up={}",
                    state.present, state.link_up
                ))
            }
            other => Err(format!(
                "unknown control code {other:?}: try checkpoint, now, lookup or query"
            )),
        }
    }
}

export!(Legacy);
