//! `hostile-host`: a test resource type that attacks the agent through the
//! services the host offers a plugin (spawning programs, checkpoints, the
//! network grant), as a hostile third-party type would. Each `control` code
//! is one attempt; the answer says what happened (an `Err` carries the
//! error the host gave), so a test can check that every attempt is refused.
//!
//! | control code     | payload                              | attempt                    |
//! |------------------|--------------------------------------|----------------------------|
//! | `spawn`          | `program\nargs\ncwd\nK=V K=V`        | start a program its way    |
//! | `stop`           | —                                    | stop it                    |
//! | `connect`        | property name                        | connect to that property's value (as the plugin sees it: its own default if the operator set none) |
//! | `checkpoint-set` | `key=value`                          | write the record           |
//! | `checkpoint-get` | key                                  | read the record            |
//! | `write-file`     | `path\ntext`                         | write a file               |
//! | `read-file`      | path                                 | read a file                |
//! | `hoard-files`    | count                                | open that many files and keep them open |
//! | `disk`           | `HOW NAME SIZE [COUNT]`              | grow `/data` one way (see [`disk`]) |
//! | `net-add`        | `ADDRESS PREFIX INTERFACE`           | put an address on an interface (`network` import) |
//! | `net-register`   | `NAME ADDRESS`                       | register a DNS name |
//!
//! Its schema gives the address property `target` a default the operator
//! never chose (`127.0.0.1:9`): connecting there must be denied.

mod disk;

use std::cell::RefCell;
use std::collections::BTreeMap;

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::checkpoint;
use warden_sdk::process::{self, SpawnSpec};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};

struct Hostile;

struct HostileInstance {
    properties: BTreeMap<String, String>,
    hoard: RefCell<Vec<std::fs::File>>,
}

impl Guest for Hostile {
    type Instance = HostileInstance;

    fn describe() -> TypeInfo {
        TypeInfo {
            name: "hostile-host".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A test type that attacks the agent through its host services."
                .to_string(),
            properties: vec![
                warden_sdk::spec(
                    "target",
                    PropertyKind::Address,
                    Some("127.0.0.1:9"),
                    "An address whose default the operator never chose",
                ),
                warden_sdk::spec(
                    "named",
                    PropertyKind::Address,
                    Some("localhost:9"),
                    "A name the agent must not look up unless the operator set it",
                ),
            ],
            timing: Timing {
                pending_timeout_ms: 10_000,
                looks_alive_interval_ms: 0,
                is_alive_interval_ms: 60_000,
                check_timeout_ms: 5_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(_: Properties) -> Result<(), PropertyError> {
        Ok(())
    }
}

impl GuestInstance for HostileInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(HostileInstance {
            properties: properties.into_iter().collect(),
            hoard: RefCell::new(Vec::new()),
        }))
    }

    fn online(&self) -> Result<(), String> {
        Ok(())
    }

    fn offline(&self) -> Result<(), String> {
        process::stop(1000).map(drop)
    }

    fn terminate(&self) {
        let _ = process::stop(0);
    }

    fn looks_alive(&self) -> Health {
        Health::Healthy
    }

    fn is_alive(&self) -> Health {
        Health::Healthy
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        let (first, rest) = payload.split_once(['\n', '=']).unwrap_or((&payload, ""));
        match code.as_str() {
            "spawn" => spawn(&payload),
            "stop" => process::stop(1000).map(|state| format!("{state:?}")),
            "connect" => {
                let address = self
                    .properties
                    .get(&payload)
                    .ok_or_else(|| format!("no property {payload:?}"))?;
                warden_sdk::net::connect(address, warden_sdk::net::Deadline::after_ms(2000))
                    .map(|_| format!("connected to {address}"))
            }
            "checkpoint-set" => checkpoint::set(first, rest).map(|()| "stored".to_string()),
            "checkpoint-get" => {
                checkpoint::get(&payload).map(|v| v.unwrap_or_else(|| "(none)".to_string()))
            }
            "write-file" => std::fs::write(first, rest)
                .map(|()| format!("wrote {} bytes", rest.len()))
                .map_err(|e| format!("{first}: {e}")),
            "read-file" => std::fs::read_to_string(&payload).map_err(|e| format!("{payload}: {e}")),
            "hoard-files" => {
                let count: usize = payload
                    .parse()
                    .map_err(|_| "expected a count".to_string())?;
                let mut hoard = self.hoard.borrow_mut();
                for i in 0..count {
                    let file = std::fs::File::create(format!("/data/hoard-{i}"))
                        .map_err(|e| format!("file {i}: {e}"))?;
                    hoard.push(file);
                }
                Ok(format!("holding {} files", hoard.len()))
            }
            "disk" => disk::attack(&payload),
            "net-add" => {
                let mut words = payload.split(' ');
                let spec = warden_sdk::network::AddressSpec {
                    address: words.next().unwrap_or_default().to_string(),
                    prefix_length: words.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    interface: words.next().unwrap_or_default().to_string(),
                };
                warden_sdk::network::add_address(&spec).map(|()| "added".to_string())
            }
            "net-register" => {
                let (name, address) = payload.split_once(' ').unwrap_or((&payload, ""));
                warden_sdk::network::register_name(name, address, 60)
                    .map(|()| "registered".to_string())
            }
            other => Err(format!("unknown control code {other:?}")),
        }
    }
}

/// `program\nargs\ncwd\nK=V K=V`: every field chosen by the plugin.
fn spawn(payload: &str) -> Result<String, String> {
    let mut lines = payload.split('\n');
    let program = lines.next().unwrap_or_default().to_string();
    let args = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let cwd = lines.next().filter(|c| !c.is_empty()).map(str::to_string);
    let env = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    process::spawn(&SpawnSpec {
        program,
        args,
        env,
        cwd,
    })
    .map(|pid| format!("started as pid {pid}"))
}

warden_sdk::export_plugin!(Hostile);
