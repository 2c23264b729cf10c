//! A real cluster on one machine for tests and benchmarks: a 3-member
//! etcd (Debian's etcd-server) and three real agents on loopback, each
//! with its own ports and data directory, each reaching etcd through a TCP
//! proxy that can be cut. The group runs `warden demo-service`, which
//! answers with its working directory: the services tell which node serves.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{free_port, wait_until};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const ETCD: &str = "/usr/bin/etcd";
/// Short, so that a test waits seconds for an expiry, not minutes.
pub const LEASE_TTL_S: u64 = 3;
pub const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A 3-member etcd cluster on loopback.
pub struct Etcd {
    pub members: Vec<Killed>,
    pub clients: Vec<SocketAddr>,
}

pub fn start_etcd(dir: &Path) -> Etcd {
    let peers: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let clients: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=http://{p}"))
        .collect();
    let members = (0..3)
        .map(|i| {
            let log = std::fs::File::create(dir.join(format!("etcd-m{i}.log"))).expect("log");
            let child = Command::new(ETCD)
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-m{i}")))
                .arg("--listen-client-urls")
                .arg(format!("http://{}", clients[i]))
                .arg("--advertise-client-urls")
                .arg(format!("http://{}", clients[i]))
                .arg("--listen-peer-urls")
                .arg(format!("http://{}", peers[i]))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://{}", peers[i]))
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "warden-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start etcd (Debian's etcd-server; .ci/run installs it)");
            Killed(child)
        })
        .collect();
    for client in &clients {
        wait_until("etcd to be healthy", Duration::from_secs(30), || {
            http_get(*client, "/health").filter(|body| body.contains("\"health\":\"true\""))
        });
    }
    Etcd { members, clients }
}

/// A TCP forwarder the test can cut: then it closes every connection and
/// refuses new ones, until it is mended.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                if let Ok(mut open) = open2.lock() {
                    for stream in [&client, &server] {
                        if let Ok(clone) = stream.try_clone() {
                            open.push(clone);
                        }
                    }
                }
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { addr, cut, open }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut open) = self.open.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One plain HTTP GET; the body, if anything answered 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The node whose data directory the service runs in, and its pid.
pub fn served_by(service: SocketAddr) -> Option<(String, i32)> {
    let body = http_get(service, "/")?;
    let node = NODES
        .iter()
        .find(|n| body.contains(&format!("/{n}/data/")))?
        .to_string();
    let pid = body
        .split("(pid ")
        .nth(1)?
        .split(')')
        .next()?
        .parse()
        .ok()?;
    Some((node, pid))
}

pub fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub etcd: Etcd,
    pub proxies: Vec<Proxy>,
    pub agents: Vec<Option<Killed>>,
    pub service: SocketAddr,
}

impl Cluster {
    pub fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd = start_etcd(dir.path());
        // Agent i talks to etcd member i through its own proxy.
        let proxies = etcd.clients.iter().map(|c| Proxy::start(*c)).collect();
        Cluster {
            dir,
            etcd,
            proxies,
            agents: vec![None, None, None],
            service: free_port(),
        }
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(NODES[i])
    }

    pub fn config(&self, i: usize) -> PathBuf {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        let nodes = NODES.map(|n| format!("{n:?}")).join(", ");
        let text = format!(
            r#"
[node]
name = "{name}"
data_dir = "data"

[cluster]
name = "test"
endpoints = ["http://{endpoint}"]
nodes = [{nodes}]
lease_ttl_s = {LEASE_TTL_S}

[plugins.process]
allow_programs = ["{WARDEN}"]

[[group]]
name = "web"
preferred_owners = [{nodes}]

[[resource]]
name = "web-service"
type = "process"
group = "web"
is_alive_interval_ms = 500
properties = {{ program = "{WARDEN}", args = "demo-service --name web --listen {service}", stop-grace-ms = 1000 }}
"#,
            name = NODES[i],
            endpoint = self.proxies[i].addr,
            service = self.service,
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    pub fn start_agent(&mut self, i: usize) {
        let config = self.config(i);
        let log = std::fs::File::create(self.node_dir(i).join("agent.log")).expect("log");
        let child = Command::new(WARDEN)
            .args(["agent", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,warden=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent");
        self.agents[i] = Some(Killed(child));
    }

    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.agents[i].take() {
            let _ = agent.0.kill(); // SIGKILL
            let _ = agent.0.wait();
        }
    }

    /// What agent `i` has logged so far.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM to agent `i`; waits for it to exit (a drain in a cluster).
    pub fn stop_agent(&mut self, i: usize, within: Duration) {
        let Some(mut agent) = self.agents[i].take() else {
            return;
        };
        let pid = agent.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_until(
            &format!("{} to exit after SIGTERM", NODES[i]),
            within,
            || agent.0.try_wait().ok().flatten(),
        );
    }

    /// Wait until the service answers from `node`; its pid.
    pub fn wait_served_by(&self, node: &str, within: Duration) -> i32 {
        wait_until(
            &format!(
                "the service to answer from {node}; logs in {}",
                self.dir.path().display()
            ),
            within,
            || {
                served_by(self.service)
                    .filter(|(n, _)| n == node)
                    .map(|(_, pid)| pid)
            },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the logs of a failed run.
            let kept = std::env::temp_dir().join(format!("warden-cluster-{}", std::process::id()));
            let _ = Command::new("cp")
                .arg("-r")
                .arg(self.dir.path())
                .arg(&kept)
                .status();
            eprintln!("logs kept in {}", kept.display());
        }
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        let _ = &self.etcd.members;
    }
}
