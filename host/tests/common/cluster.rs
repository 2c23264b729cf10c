//! A real cluster on one machine for tests and benchmarks: a 3-member
//! etcd (Debian's etcd-server) and three real agents on loopback, each
//! with its own ports and data directory, each given every etcd member as
//! an operator configures it (each endpoint through a TCP forwarder of its
//! own, so that the test can cut one agent off from all of etcd). The group runs `warden demo-service`, which
//! answers with its working directory: the services tell which node serves.
//! Each agent has an admin API the test drives with the `warden` CLI.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{free_port, wait_until};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
pub const ETCD: &str = "/usr/bin/etcd";
/// Short, so that a test waits seconds for an expiry, not minutes; not so
/// short that a loaded 2-core machine starves a renewal for 2/5 of it (the
/// agent would fence itself, and the tests' "never that node" checks would
/// see a legitimate failover they did not expect).
pub const LEASE_TTL_S: u64 = 5;
pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The admin API's bearer token, the same for every agent.
pub const TOKEN: &str = "cluster-test-token";

/// One etcd with its agents at a time in a test binary: three etcd members
/// and three agents each are a lot for a 2-core CI machine, and etcd's
/// elections (500 ms) must not starve. Shared by every harness that starts
/// etcd (`Cluster`, `LabCluster`, the watchdog and log tests), so that no
/// two of them run side by side in the cluster binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A test's turn to run an etcd: it lasts as long as this value.
///
/// Async tests hold it across their awaits, on purpose: the lock orders
/// whole tests, each on a runtime of its own, and no task of any runtime
/// takes it, so holding it cannot block a task that would release it.
pub struct EtcdTurn(#[allow(dead_code)] MutexGuard<'static, ()>);

/// Wait for this test's turn to run an etcd (see `ONE_AT_A_TIME`). A test
/// that failed during its turn poisons the lock; the next test's etcd is
/// its own all the same.
pub fn one_at_a_time() -> EtcdTurn {
    EtcdTurn(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

pub use super::process::Killed;

/// An etcd cluster on loopback (3 members, or 1). Each member's command line is
/// kept, so that a killed member can be started again as it was (same name,
/// data directory and flags).
pub struct Etcd {
    pub members: Vec<Option<Killed>>,
    pub clients: Vec<SocketAddr>,
    commands: Vec<Vec<OsString>>,
    dir: PathBuf,
}

pub fn start_etcd(dir: &Path) -> Etcd {
    start_etcd_of(dir, 3)
}

/// A 1-member etcd: for tests of what is stored, not of losing members
/// (no elections, so bulk writes go at the disk's pace).
pub fn start_single_etcd(dir: &Path) -> Etcd {
    start_etcd_of(dir, 1)
}

fn start_etcd_of(dir: &Path, count: usize) -> Etcd {
    // Members are killed and started again on the same ports: ports below
    // the ephemeral range, which no outgoing connection can be given
    // meanwhile (`service_ports`).
    let ports = super::service_ports::<6>();
    let peers: Vec<SocketAddr> = ports[..count].to_vec();
    let clients: Vec<SocketAddr> = ports[count..2 * count].to_vec();
    let commands = (0..count)
        .map(|i| etcd_member_args(dir, i, &peers, &clients))
        .collect();
    let mut etcd = Etcd {
        members: (0..count).map(|_| None).collect(),
        clients,
        commands,
        dir: dir.to_path_buf(),
    };
    for i in 0..count {
        etcd.start_member(i);
    }
    for i in 0..count {
        etcd.wait_healthy(i);
    }
    etcd
}

/// The command line of etcd member `i` (named `m{i}`, data in
/// `dir/etcd-m{i}`) of the cluster whose members listen for peers on
/// `peers` and for clients on `clients`: the same flags on loopback and in
/// the network lab (`lab_cluster.rs`), so both test the same etcd.
pub fn etcd_member_args(
    dir: &Path,
    i: usize,
    peers: &[SocketAddr],
    clients: &[SocketAddr],
) -> Vec<OsString> {
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(k, p)| format!("m{k}=http://{p}"))
        .collect();
    let mut args: Vec<OsString> = vec!["--name".into(), format!("m{i}").into()];
    args.push("--data-dir".into());
    args.push(dir.join(format!("etcd-m{i}")).into());
    for (flag, value) in [
        ("--listen-client-urls", format!("http://{}", clients[i])),
        ("--advertise-client-urls", format!("http://{}", clients[i])),
        ("--listen-peer-urls", format!("http://{}", peers[i])),
        (
            "--initial-advertise-peer-urls",
            format!("http://{}", peers[i]),
        ),
        ("--initial-cluster", initial.join(",")),
        // Ignored by a member restarted on its data directory.
        ("--initial-cluster-state", "new".to_string()),
        ("--initial-cluster-token", "warden-test".to_string()),
        ("--heartbeat-interval", "50".to_string()),
        ("--election-timeout", "500".to_string()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    // As operators are told to run etcd (docs/cluster.md): without
    // pre-vote (the default from etcd 3.5, off in Debian's 3.4) a member
    // that comes back — thawed, or its link mended — deposes the leader
    // with a raised term, and etcd is leaderless for about 2 s, long
    // enough to fence every agent at a 5 s TTL. A bool flag: its value
    // must be joined with `=`.
    args.push("--pre-vote=true".into());
    args
}

impl Etcd {
    /// Start member `i` (again), as it was first started.
    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("etcd-m{i}.log")))
            .expect("log");
        let child = Command::new(ETCD)
            .args(&self.commands[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server; .ci/run installs it)");
        self.members[i] = Some(Killed(child));
    }

    /// kill -9 of member `i`.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i] = None;
    }

    /// SIGSTOP (`frozen`) or SIGCONT of member `i`: a frozen member
    /// accepts connections and answers nothing, the hardest loss for a
    /// client to see.
    pub fn freeze_member(&self, i: usize, frozen: bool) {
        let Some(member) = &self.members[i] else {
            return;
        };
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &member.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} of etcd member {i}");
    }

    /// The member that leads etcd now, as the members themselves say.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].is_some()
                && http_post(self.clients[i], "/v3/maintenance/status", "{}").is_some_and(|body| {
                    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let leader = &status["leader"];
                    !leader.is_null() && *leader == status["header"]["member_id"]
                })
        })
    }

    /// Wait until member `i` says it is healthy (it is part of a quorum).
    pub fn wait_healthy(&self, i: usize) {
        wait_until("etcd to be healthy", Duration::from_secs(30), || {
            http_get(self.clients[i], "/health").filter(|body| body.contains("\"health\":\"true\""))
        });
    }
}

/// A TCP forwarder the test can cut: then it closes every connection and
/// refuses new ones, until it is mended. It forwards each connection to its
/// upstream (one etcd member); when that member is down it closes the
/// connection at once, as the member's refused port would.
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
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_millis(300))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                if let Ok(mut open) = open2.lock() {
                    // Forget what has closed, keep what is open.
                    open.retain(|s| s.peer_addr().is_ok());
                    for stream in [&client, &server] {
                        if let Ok(clone) = stream.try_clone() {
                            open.push(clone);
                        }
                    }
                }
                // Cut between the check above and here: close it too.
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    continue;
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
                        // Either side gone: close both, as a dead peer would.
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
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

/// One agent's way to etcd: a [`Proxy`] to each member, all of which the
/// agent is given as its endpoints. Cutting it cuts the agent off from the
/// whole of etcd; a member killed is seen by every agent as that endpoint
/// dead.
pub struct AgentLink {
    pub proxies: Vec<Proxy>,
}

impl AgentLink {
    fn start(members: &[SocketAddr]) -> AgentLink {
        AgentLink {
            proxies: members.iter().map(|m| Proxy::start(*m)).collect(),
        }
    }

    /// The endpoints for the agent's `[cluster] endpoints`.
    fn endpoints(&self) -> String {
        self.proxies
            .iter()
            .map(|p| format!("\"http://{}\"", p.addr))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn cut(&self) {
        self.proxies.iter().for_each(Proxy::cut);
    }

    pub fn mend(&self) {
        self.proxies.iter().for_each(Proxy::mend);
    }
}

/// One plain HTTP GET; the body, if anything answered 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http(addr, &format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n"))
}

/// One plain HTTP POST of a JSON body; the answer's body, if 200.
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> Option<String> {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Send `head` (the request up to its headers' end, or with its body)
/// with `connection: close`; the body of a 200 answer.
fn http(addr: SocketAddr, request: &str) -> Option<String> {
    // Generous: on a loaded 2-core machine a debug-build service can take
    // a while to answer, and a probe that gives up early reads as "down".
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = match request.split_once("\r\n\r\n") {
        Some((head, body)) => format!("{head}\r\nconnection: close\r\n\r\n{body}"),
        None => format!("{request}connection: close\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).ok()?;
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

/// What a test varies in the cluster's configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The group's failback: "off", "immediate" or a window such as "22-6".
    pub failback: String,
    /// Failovers within the period (6 h) before the group stays Failed.
    pub failover_threshold: u32,
    /// Each service listens on a port of its own (so that two nodes serving
    /// at once could not hide behind a failed bind) and records when it ran
    /// in `Cluster::records_file` (see `demo-service --record`).
    pub recorded: bool,
    /// The agents' lease TTL.
    pub lease_ttl_s: u64,
    /// Two more groups, `mx1` (preferred n1, n2, n3) and `mx2` (n2, n3,
    /// n1), each with an MTA (the cluster-singleton `mta` type running
    /// `mail-mta`) listening on `Cluster::mtas`.
    pub mtas: bool,
    /// `[cluster] fence_guard`: each agent runs a fence guard beside it.
    pub fence_guard: bool,
    /// Each agent has a plugins directory (`Cluster::plugins_dir`) holding
    /// `chaos.wasm` (0.1.0), and a group `c` (preferred n1, n2, n3) runs
    /// one `chaos` resource, `r`, checked every 200 ms.
    pub chaos: bool,
    /// TOML appended to every agent's configuration (fence devices).
    pub extra_config: String,
    /// Programs the `process` type may run besides `warden` itself
    /// (`[plugins.process] allow_programs`, which `extra_config` cannot
    /// give again: a TOML table is written once).
    pub process_programs: Vec<String>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            failback: "off".to_string(),
            failover_threshold: 10,
            recorded: false,
            lease_ttl_s: LEASE_TTL_S,
            mtas: false,
            fence_guard: true,
            chaos: false,
            extra_config: String::new(),
            process_programs: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub etcd: Etcd,
    /// Each agent's way to etcd.
    pub proxies: Vec<AgentLink>,
    pub agents: Vec<Option<Killed>>,
    /// Where the service answers (unless `Setup::recorded`).
    pub service: SocketAddr,
    /// Each agent's admin API.
    pub apis: Vec<SocketAddr>,
    /// Where the MTAs of `mx1` and `mx2` listen (`Setup::mtas`).
    pub mtas: Vec<SocketAddr>,
    pub setup: Setup,
    _one_at_a_time: EtcdTurn,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Cluster {
        let one_at_a_time = one_at_a_time();
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd = start_etcd(dir.path());
        // Agent i is given every member, starting with member i (so that
        // the agents do not all ask the same one first).
        let proxies = (0..3)
            .map(|i| {
                let members: Vec<SocketAddr> = (0..3).map(|k| etcd.clients[(i + k) % 3]).collect();
                AgentLink::start(&members)
            })
            .collect();
        Cluster {
            dir,
            etcd,
            proxies,
            agents: vec![None, None, None],
            service: free_port(),
            apis: (0..3).map(|_| free_port()).collect(),
            mtas: (0..2).map(|_| free_port()).collect(),
            setup,
            _one_at_a_time: one_at_a_time,
        }
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(NODES[i])
    }

    /// The file recorded services write to (`Setup::recorded`).
    pub fn records_file(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    pub fn config(&self, i: usize) -> PathBuf {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
        let args = if self.setup.recorded {
            format!(
                "demo-service --name web --listen 127.0.0.1:0 --record {}",
                self.records_file().display()
            )
        } else {
            format!("demo-service --name web --listen {}", self.service)
        };
        let endpoints = self.proxies[i].endpoints();
        let text = Cluster::config_text(&self.setup, i, self.apis[i], &endpoints, &args);
        let text = if self.setup.mtas {
            text + &self.mta_groups()
        } else {
            text
        };
        let text = if self.setup.chaos {
            self.with_chaos(i, text)
        } else {
            text
        } + &self.setup.extra_config;
        let path = dir.join("node.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    /// `text` with a plugins directory holding `chaos.wasm` and a group
    /// `c` of one chaos resource (`Setup::chaos`).
    fn with_chaos(&self, i: usize, text: String) -> String {
        let nodes = NODES.map(|n| format!("{n:?}")).join(", ");
        let plugins = self.plugins_dir(i);
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        if !plugins.join("chaos.wasm").exists() {
            std::fs::copy(super::CHAOS, plugins.join("chaos.wasm")).expect("chaos.wasm");
        }
        let text = text.replacen(
            "data_dir = \"data\"\n",
            "data_dir = \"data\"\nplugins_dir = \"plugins\"\n",
            1,
        );
        text + &format!(
            r#"
[[group]]
name = "c"
preferred_owners = [{nodes}]

[[resource]]
name = "r"
type = "chaos"
group = "c"
is_alive_interval_ms = 200
looks_alive_interval_ms = 0
check_timeout_ms = 1000
"#
        )
    }

    /// Node `i`'s configuration: its admin API on `api`, etcd at
    /// `endpoints` (TOML strings, comma-separated), the group `web` of one
    /// `warden demo-service` run with `service_args`. Shared by this
    /// loopback cluster and the network lab's (`lab_cluster.rs`).
    pub fn config_text(
        setup: &Setup,
        i: usize,
        api: SocketAddr,
        endpoints: &str,
        service_args: &str,
    ) -> String {
        let nodes = NODES.map(|n| format!("{n:?}")).join(", ");
        let args = service_args;
        format!(
            r#"
[node]
name = "{name}"
data_dir = "data"

[api]
listen = "{api}"
token_file = "token"

[cluster]
name = "test"
endpoints = [{endpoints}]
nodes = [{nodes}]
lease_ttl_s = {lease_ttl_s}
fence_guard = {fence_guard}

[plugins.process]
allow_programs = [{programs}]

[[group]]
name = "web"
preferred_owners = [{nodes}]
failback = "{failback}"
failover_threshold = {threshold}

[[resource]]
name = "web-service"
type = "process"
group = "web"
is_alive_interval_ms = 500
properties = {{ program = "{WARDEN}", args = "{args}", stop-grace-ms = 1000 }}
"#,
            name = NODES[i],
            failback = setup.failback,
            threshold = setup.failover_threshold,
            lease_ttl_s = setup.lease_ttl_s,
            fence_guard = setup.fence_guard,
            programs = std::iter::once(WARDEN)
                .chain(setup.process_programs.iter().map(String::as_str))
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// The configuration of `Setup::mtas`: two groups, one MTA each.
    fn mta_groups(&self) -> String {
        let mta = super::mail_services().join("mail-mta");
        let mta = mta.display();
        // Nothing listens there: the MTA queues what it accepts and retries.
        let store = free_port();
        let mut text = format!("\n[plugins.mta]\nallow_programs = [\"{mta}\"]\n");
        for (i, owners) in [r#""n1", "n2", "n3""#, r#""n2", "n3", "n1""#]
            .iter()
            .enumerate()
        {
            let n = i + 1;
            text.push_str(&format!(
                r#"
[[group]]
name = "mx{n}"
preferred_owners = [{owners}]

[[resource]]
name = "mta{n}"
type = "mta"
group = "mx{n}"
is_alive_interval_ms = 500
properties = {{ program = "{mta}", address = "{address}", store = "{store}" }}
"#,
                address = self.mtas[i],
            ));
        }
        text
    }

    /// Agent `i`'s plugins directory (`Setup::chaos`).
    pub fn plugins_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("plugins")
    }

    /// A client of the test cluster's etcd (every member), for what a test
    /// writes or reads there itself, and the runtime that drives it.
    pub fn direct_etcd(
        &self,
    ) -> (
        tokio::runtime::Runtime,
        warden::cluster::etcd::Etcd,
        warden::cluster::Keys,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let endpoints: Vec<String> = self
            .etcd
            .clients
            .iter()
            .map(|c| format!("http://{c}"))
            .collect();
        let etcd = runtime
            .block_on(warden::cluster::etcd::Etcd::connect(&endpoints))
            .expect("connects");
        (runtime, etcd, warden::cluster::Keys::new("test"))
    }

    /// Agent `i`'s log (its fence guard writes there too), over all its runs.
    pub fn agent_log(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("agent.log")
    }

    /// SIGSTOP to agent `i` alone, as a debugger, a long pause or a stalled
    /// disk would stop it; its services and fence guard are not stopped.
    pub fn freeze_agent(&self, i: usize) {
        self.signal_agent(i, Signal::SIGSTOP);
    }

    /// SIGCONT to a frozen agent `i`.
    pub fn thaw_agent(&self, i: usize) {
        self.signal_agent(i, Signal::SIGCONT);
    }

    fn signal_agent(&self, i: usize, signal: Signal) {
        let agent = self.agents[i].as_ref().expect("the agent runs");
        nix::sys::signal::kill(Pid::from_raw(agent.0.id() as i32), signal)
            .expect("signal the agent");
    }

    /// The pid of agent `i`'s fence guard (its child running
    /// `warden fence-guard`), if one runs.
    pub fn fence_guard_pid(&self, i: usize) -> Option<i32> {
        let agent = self.agents[i].as_ref()?.0.id() as i32;
        std::fs::read_dir("/proc").ok()?.find_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the parenthesised name: state, then the parent's pid.
            let parent: i32 = stat[stat.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let guard = cmdline.split(|b| *b == 0).any(|arg| arg == b"fence-guard");
            (parent == agent && guard && alive(pid)).then_some(pid)
        })
    }

    pub fn start_agent(&mut self, i: usize) {
        let config = self.config(i);
        // Appended to across restarts: `joins` counts in it.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log(i))
            .expect("log");
        let child = Command::new(WARDEN)
            .args(["agent", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,warden=debug")
            .env("NO_COLOR", "1")
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

    /// How often agent `i` has joined the cluster so far (its own `NodeUp`
    /// came back through the log), over all its runs.
    pub fn joins(&self, i: usize) -> usize {
        joins_in(&self.agent_log(i))
    }

    /// How often agent `i` has fenced itself so far, over all its runs.
    pub fn fences(&self, i: usize) -> usize {
        fences_in(&self.agent_log(i))
    }

    /// Wait until agent `i` has joined more than `before` times and its
    /// API answers from the running node (not from the start's progress,
    /// which refuses changes with 503).
    pub fn wait_joined(&self, i: usize, before: usize) {
        wait_until(
            &format!(
                "{} to join the cluster; logs in {}",
                NODES[i],
                self.dir.path().display()
            ),
            Duration::from_secs(60),
            || (self.joins(i) > before).then_some(()),
        );
        wait_until(
            &format!("{} to have started", NODES[i]),
            Duration::from_secs(60),
            || super::agent_process::has_started(self.apis[i], TOKEN),
        );
    }

    /// Start agent `i` and wait until it has joined and started.
    pub fn start_joined(&mut self, i: usize) {
        let before = self.joins(i);
        self.start_agent(i);
        self.wait_joined(i, before);
    }

    /// Run the `warden` CLI against agent `i`'s admin API.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.apis[i]))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run the CLI")
    }

    /// Run the CLI against agent `i`; it must succeed. Its stdout.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        succeeded(&self.cli(i, args), args, NODES[i])
    }

    /// Agent `i`'s `warden status --json`, if it answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.cli(i, &["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
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
        if std::thread::panicking() || std::env::var_os("WARDEN_KEEP_CLUSTER").is_some() {
            // Keep the logs of a failed run (or of any, when asked).
            let kept = std::env::temp_dir().join(format!(
                "warden-cluster-{}-{}",
                std::process::id(),
                self.dir
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
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
        for i in 0..self.etcd.members.len() {
            self.etcd.kill_member(i);
        }
    }
}

/// How often the agent whose log is `log` has joined the cluster (its own
/// `NodeUp` came back through the log), over all its runs.
pub fn joins_in(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("joined the cluster") && !l.contains("rejoined"))
        .count()
}

/// How often the agent whose log is `log` has fenced itself, over all its
/// runs.
pub fn fences_in(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("fenced: "))
        .count()
}

/// Wall-clock milliseconds, as the recorded services write them.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One run of a recorded service (`Setup::recorded`): from its `start`
/// line to its last `alive` line, in wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub node: String,
    pub pid: u32,
    pub from: u64,
    pub to: u64,
    /// The run recorded its own stop (SIGTERM): it ended at `to` exactly.
    pub stopped: bool,
}

impl Run {
    /// The latest moment the run may have served: `to` if it recorded its
    /// stop, else up to a record period after its last line.
    pub fn ended_by(&self) -> u64 {
        if self.stopped {
            self.to
        } else {
            self.to + RECORD_PERIOD_MS
        }
    }
}

/// The run recorded alive within the last `within_ms`, if exactly one is:
/// the one node serving now. `None` if none or several are.
pub fn serving_now(records: &Path, within_ms: u64) -> Option<Run> {
    let since = unix_ms().saturating_sub(within_ms);
    let mut live = runs(records).into_iter().filter(|r| r.to >= since);
    let run = live.next()?;
    live.next().is_none().then_some(run)
}

/// Two runs of different nodes that overlap, if any: two nodes served at
/// once. Recorded spans lie inside the real ones, so an overlap seen is real.
pub fn overlapping(runs: &[Run]) -> Option<(&Run, &Run)> {
    runs.iter().enumerate().find_map(|(k, a)| {
        runs[k + 1..]
            .iter()
            .find(|b| a.node != b.node && b.from <= a.to)
            .map(|b| (a, b))
    })
}

/// How often a recorded service writes its `alive` line
/// (`demo_service::RECORD_EVERY`): a run's real end is at most this long
/// after its last recorded moment.
pub const RECORD_PERIOD_MS: u64 = 50;

/// The runs in a record file, in order of start. A run's real end is at
/// most one record period after its last line, and its real start before
/// its first: two runs whose recorded spans overlap did run at once.
pub fn runs(records: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(records).unwrap_or_default();
    let mut runs: Vec<Run> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [what, dir, pid, ms] = parts[..] else {
            continue; // a line cut short by a kill
        };
        let (Ok(pid), Ok(ms)) = (pid.parse::<u32>(), ms.parse::<u64>()) else {
            continue;
        };
        let Some(node) = NODES.iter().find(|n| dir.contains(&format!("/{n}/data/"))) else {
            continue;
        };
        match runs
            .iter_mut()
            .rev()
            .find(|r| r.pid == pid && r.node == *node)
        {
            Some(run) if what == "alive" => run.to = run.to.max(ms),
            Some(run) if what == "stop" => {
                run.to = run.to.max(ms);
                run.stopped = true;
            }
            _ if what == "start" => runs.push(Run {
                node: node.to_string(),
                pid,
                from: ms,
                to: ms,
                stopped: false,
            }),
            _ => {}
        }
    }
    runs.sort_by_key(|r| r.from);
    runs
}

/// An agent configuration of one node (`n1`) with one offline group
/// (`web`) holding one process resource (`counter`), for the tests that
/// drive the cluster's pieces directly.
pub const ONE_GROUP_CONFIG: &str = r#"
[node]
name = "n1"
data_dir = "data"

[[group]]
name = "web"
online = false

[[resource]]
name = "counter"
type = "process"
group = "web"
properties = { program = "/usr/bin/sleep", args = "600" }
"#;

/// The stdout of `warden ARGS` run against `node`, which must have
/// succeeded (the test fails with both outputs otherwise).
pub fn succeeded(out: &Output, args: &[&str], node: &str) -> String {
    assert!(
        out.status.success(),
        "warden {} against {node}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The end of a stress run, once every fault is undone: the service runs
/// again somewhere (a run past a moment after now, within a minute), and
/// no two nodes ever served at once (judged from the services' own
/// records). `label` names the run in what it prints; `replay` says how to
/// run it again (its seed) and where its logs are.
pub fn judge_stress(records: &Path, label: &str, replay: &str) {
    let settled = unix_ms();
    super::wait_until(
        &format!("a service to run after the faults ({replay})"),
        Duration::from_secs(60),
        || {
            runs(records)
                .iter()
                .any(|r| r.to > settled + 500)
                .then_some(())
        },
    );
    let all = runs(records);
    let moves = all.windows(2).filter(|w| w[0].node != w[1].node).count();
    eprintln!(
        "{label}: {} service runs, {moves} changes of node",
        all.len()
    );
    if let Some((a, b)) = overlapping(&all) {
        panic!("two nodes served at once: {a:?} and {b:?} ({replay})");
    }
}
