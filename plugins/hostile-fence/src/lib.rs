//! A fence type that attacks the host, for `host/tests/all/fence.rs`. The
//! target names the attack, so one device can try them all:
//! - `spin`: a pure-wasm loop; `sleep`: the host's sleep for an hour;
//! - `flood`: an error of 16 MiB; `memory`: allocate until refused;
//! - `connect:ADDR`: a TCP connect to an address the device did not name;
//! - anything else: off.

use exports::warden::fence::fence_type::{FenceInfo, Guest, PowerState};
use warden::resource::types::{Properties, PropertyError, PropertyKind, PropertySpec};

wit_bindgen::generate!({
    path: ["../../wit/released/0.1.0", "../../wit/fence"],
    world: "warden:fence/fence-device",
    generate_all,
});

struct Hostile;

fn attack(target: &str) -> Result<(), String> {
    match target {
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "sleep" => {
            warden::resource::host::sleep_ms(3_600_000);
            Ok(())
        }
        "flood" => Err("x".repeat(16 << 20)),
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        other => match other.strip_prefix("connect:") {
            Some(address) => {
                let addr: std::net::SocketAddr = address
                    .parse()
                    .map_err(|_| format!("bad address {address}"))?;
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => Err(format!("connected to {addr}, which was not granted")),
                    Err(e) => Err(format!("connect to {addr} refused: {e}")),
                }
            }
            None => Ok(()),
        },
    }
}

impl Guest for Hostile {
    fn describe() -> FenceInfo {
        FenceInfo {
            name: "hostile-fence".to_string(),
            version: "0.1.0".to_string(),
            description: "Attacks the host (test only)".to_string(),
            properties: vec![PropertySpec {
                name: "address".to_string(),
                kind: PropertyKind::Address,
                default_value: None,
                required: true,
                description: "The one address granted".to_string(),
            }],
        }
    }

    fn validate(_: Properties) -> Result<(), PropertyError> {
        Ok(())
    }

    fn status(_: Properties, target: String) -> Result<PowerState, String> {
        attack(&target).map(|()| PowerState::Off)
    }

    fn off(_: Properties, target: String) -> Result<(), String> {
        attack(&target)
    }

    fn on(_: Properties, target: String) -> Result<(), String> {
        attack(&target)
    }

    fn reboot(_: Properties, target: String) -> Result<(), String> {
        attack(&target)
    }
}

export!(Hostile);
