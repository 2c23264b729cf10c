//! A Redfish emulator for the fence tests and benchmark: sushy-tools'
//! `sushy-emulator` with its fake systems driver (pinned; `.ci/run`
//! installs it in `/opt/warden-sushy`), started by `tests/fence/emulator.py`
//! with the fake driver's power delay fixed (see there), one fake system per
//! name, on a port of its own, its state in a directory of the test's.
//!
//! With `notify`, the fake driver PUTs every change of a system (its JSON,
//! `power_state` included) to that address before it answers the request
//! that made or showed the change: the lab's hook to turn a power-off into
//! stopping that node's processes before anyone can read the system off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{service_ports, wait_until};

/// The Python of the emulator's virtual environment.
pub const SUSHY_PYTHON: &str = "/opt/warden-sushy/bin/python";

/// The system id of `name` on the emulator.
pub fn system_id(name: &str) -> String {
    format!("system-{name}")
}

/// A running emulator; killed when dropped.
pub struct Emulator {
    pub address: SocketAddr,
    child: Child,
    pub log: PathBuf,
    /// Its configuration file, to start it again as it was.
    config: PathBuf,
}

impl Emulator {
    /// Start an emulator whose fake systems are `names` (each On, id
    /// [`system_id`]), and wait until it answers.
    pub fn start(dir: &Path, names: &[&str], notify: Option<SocketAddr>) -> Emulator {
        assert!(
            Path::new(SUSHY_PYTHON).exists(),
            "{SUSHY_PYTHON} is missing: .ci/run installs sushy-tools there"
        );
        std::fs::create_dir_all(dir).expect("the emulator's directory");
        let [address] = service_ports::<1>();
        let systems: Vec<String> = names
            .iter()
            .map(|name| {
                format!(
                    "{{'uuid': '{}', 'name': '{name}', 'power_state': 'On', \
                     'external_notifier': {}, 'nics': []}}",
                    system_id(name),
                    if notify.is_some() { "True" } else { "False" }
                )
            })
            .collect();
        let config = dir.join("emulator.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_FAKE_DRIVER = True\n\
                 SUSHY_EMULATOR_STATE_DIR = {:?}\n\
                 SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
                 SUSHY_EMULATOR_LISTEN_PORT = {}\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n\
                 EXTERNAL_NOTIFICATION_URL = 'http://{}/'\n",
                dir.join("state").display().to_string(),
                address.port(),
                systems.join(", "),
                notify
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "127.0.0.1:9".into()),
            ),
        )
        .expect("write the emulator's configuration");
        let log = dir.join("emulator.log");
        let child = spawn(&config, &log);
        let emulator = Emulator {
            address,
            child,
            log,
            config,
        };
        emulator.wait_ready();
        emulator
    }

    /// Start it again after [`Emulator::stop`], on the same port, with the
    /// systems as they were (its state directory).
    pub fn start_again(&mut self) {
        self.stop();
        self.child = spawn(&self.config, &self.log);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let address = self.address;
        wait_until(
            "the Redfish emulator to answer",
            Duration::from_secs(30),
            || get(address, "/redfish/v1/").filter(|(status, _)| *status == 200),
        );
    }

    /// The `PowerState` of `name`'s system, as the emulator says now.
    pub fn power_state(&self, name: &str) -> Option<String> {
        let (status, body) = get(
            self.address,
            &format!("/redfish/v1/Systems/{}", system_id(name)),
        )?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json.get("PowerState")?.as_str().map(str::to_string)
    }

    /// The emulator's own log (for a failure's message).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop it (the device down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fence/emulator.py");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the emulator's log");
    Command::new(SUSHY_PYTHON)
        .arg(script)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log"))
        .stderr(log)
        .spawn()
        .expect("start the Redfish emulator")
}

/// The lab: what a power-off of a node's system does to that node.
#[derive(Clone)]
pub struct Lab {
    pub address: SocketAddr,
    /// Each power-off seen: node and wall-clock ms, taken after its
    /// processes were killed and before the emulator could answer "Off".
    pub offs: Arc<Mutex<Vec<(String, u64)>>>,
    /// Each node's agent pid, as the test started it.
    pub agents: Arc<Mutex<[Option<i32>; 3]>>,
    node_dirs: Arc<Vec<PathBuf>>,
}

impl Lab {
    /// Listen for the fake driver's notifications (one PUT of the system's
    /// JSON per change; the driver waits for the answer).
    pub fn start(node_dirs: Vec<PathBuf>) -> Lab {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the lab");
        let lab = Lab {
            address: listener.local_addr().expect("the lab's address"),
            offs: Arc::default(),
            agents: Arc::default(),
            node_dirs: Arc::new(node_dirs),
        };
        let served = lab.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                served.notified(stream);
            }
        });
        lab
    }

    fn notified(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        let body = loop {
            let Ok(n) = stream.read(&mut chunk) else {
                return;
            };
            if n == 0 {
                return;
            }
            request.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                break body.to_string();
            }
        };
        if let Ok(system) = serde_json::from_str::<serde_json::Value>(&body)
            && system["power_state"] == "Off"
            && let Some(i) = super::cluster::NODES
                .iter()
                .position(|n| system["name"] == *n)
        {
            self.power_off(i);
            let mut offs = self.offs.lock().expect("the lab's record");
            offs.push((
                super::cluster::NODES[i].to_string(),
                super::cluster::unix_ms(),
            ));
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }

    /// kill -9 of node `i`'s agent, its children (the fence guard) and
    /// every process working in its directory (its services).
    fn power_off(&self, i: usize) {
        let agent = self.agents.lock().expect("the agents")[i];
        let dir = &self.node_dirs[i];
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat[stat.rfind(')')? + 2..]
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                });
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let of_node = Some(pid) == agent
                || (agent.is_some() && parent == agent)
                || cwd.is_some_and(|cwd| cwd.starts_with(dir));
            if of_node {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    pub fn off_of(&self, node: &str) -> Option<u64> {
        let offs = self.offs.lock().expect("the lab's record");
        offs.iter().find(|(n, _)| n == node).map(|(_, at)| *at)
    }
}

/// The agents' `[[cluster.fence_device]]` for an emulator at `address`
/// with a system per node of the cluster harness (`cluster::NODES`).
pub fn fence_device_config(address: SocketAddr) -> String {
    let targets = super::cluster::NODES
        .iter()
        .map(|n| format!("{n} = \"{}\"", system_id(n)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n[[cluster.fence_device]]\nname = \"lab\"\ntype = \"redfish\"\n\
         properties = {{ address = \"{address}\", timeout-ms = \"3000\" }}\n\
         targets = {{ {targets} }}\nconfirm_s = 10\n"
    )
}

/// Ask the emulator to power `name`'s system on (as an operator would
/// after a fence).
pub fn power_on(address: SocketAddr, name: &str) -> bool {
    let body = r#"{"ResetType":"On"}"#;
    let path = format!(
        "/redfish/v1/Systems/{}/Actions/ComputerSystem.Reset",
        system_id(name)
    );
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 204")
}

/// One GET: the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, body.to_string()))
}
