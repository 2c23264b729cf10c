//! Several agents, one cluster: a real 3-member etcd (Debian's etcd-server)
//! and three real agents on loopback, each with its own ports and data
//! directory. Each agent reaches etcd through a TCP proxy of the test's, so
//! that the test can cut one agent off from etcd without touching etcd.
//!
//! The group runs `warden demo-service`, which answers with its working
//! directory: the services themselves tell which node serves.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, wait_until};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const ETCD: &str = "/usr/bin/etcd";
/// Short, so that a test waits seconds for an expiry, not minutes.
const LEASE_TTL_S: u64 = 3;
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A 3-member etcd cluster on loopback.
struct Etcd {
    members: Vec<Killed>,
    clients: Vec<SocketAddr>,
}

fn start_etcd(dir: &Path) -> Etcd {
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
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
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

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut open) = self.open.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One plain HTTP GET; the body, if anything answered 200.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
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
fn served_by(service: SocketAddr) -> Option<(String, i32)> {
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

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

struct Cluster {
    dir: tempfile::TempDir,
    etcd: Etcd,
    proxies: Vec<Proxy>,
    agents: Vec<Option<Killed>>,
    service: SocketAddr,
}

impl Cluster {
    fn new() -> Cluster {
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

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(NODES[i])
    }

    fn config(&self, i: usize) -> PathBuf {
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

    fn start_agent(&mut self, i: usize) {
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

    fn kill_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.agents[i].take() {
            let _ = agent.0.kill(); // SIGKILL
            let _ = agent.0.wait();
        }
    }

    /// Wait until the service answers from `node`; its pid.
    fn wait_served_by(&self, node: &str, within: Duration) -> i32 {
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

#[test]
fn kill_9_of_the_owning_agent_moves_its_group_to_the_next_preferred_owner() {
    let mut cluster = Cluster::new();
    cluster.start_agent(0);
    let first = cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_agent(1);
    cluster.start_agent(2);
    // Let both join (their NodeUp in the log) before the owner dies.
    std::thread::sleep(Duration::from_secs(2));

    cluster.kill_agent(0);
    // The service dies with its agent, so it cannot serve beside the next.
    wait_until(
        "n1's service to die with its agent",
        Duration::from_secs(10),
        || (!alive(first)).then_some(()),
    );
    let second = cluster.wait_served_by("n2", Duration::from_secs(60));
    assert_ne!(first, second);
}

#[test]
fn an_agent_cut_off_from_etcd_stops_its_group_before_another_node_takes_it() {
    let mut cluster = Cluster::new();
    cluster.start_agent(0);
    let first = cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_agent(1);
    std::thread::sleep(Duration::from_secs(2));

    cluster.proxies[0].cut();
    // Watch the services' side: n1's must be gone before n2's answers.
    let mut n1_gone: Option<Instant> = None;
    let n2_up = wait_until("n2 to serve", Duration::from_secs(60), || {
        if n1_gone.is_none() && !alive(first) {
            n1_gone = Some(Instant::now());
        }
        served_by(cluster.service)
            .filter(|(n, _)| n == "n2")
            .map(|_| Instant::now())
    });
    let n1_gone = n1_gone.expect("n1's service stopped before n2's answered");
    assert!(n1_gone < n2_up);
    // The cut-off agent itself is alive: it fenced, it did not crash.
    let agent = cluster.agents[0].as_mut().expect("n1's agent");
    assert!(
        agent.0.try_wait().expect("try_wait").is_none(),
        "n1's agent exited"
    );

    // Back in touch, n1 rejoins and the group stays where it is (no
    // failback configured).
    cluster.proxies[0].mend();
    std::thread::sleep(Duration::from_secs(LEASE_TTL_S + 2));
    let (node, _) = served_by(cluster.service).expect("the service answers");
    assert_eq!(node, "n2");
}

#[test]
fn the_example_cluster_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster-node.toml");
    let config = warden::config::AgentConfig::load(&path).expect("the example parses");
    let cluster = config.cluster.expect("it has a [cluster] section");
    assert_eq!(cluster.nodes, ["node-1", "node-2", "node-3"]);
    assert!(
        warden::config::AgentConfig::parse(
            "[node]\nname = \"x\"\ndata_dir = \"d\"\n[cluster]\nname = \"c\"\nendpoints = [\"http://127.0.0.1:2379\"]\nnodes = [\"y\"]\n"
        )
        .expect_err("a node the cluster does not name")
        .to_string()
        .contains("does not name this node")
    );
}
