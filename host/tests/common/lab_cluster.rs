//! A cluster on the network lab (`cluster/netlab.rs`): hosts `n1`, `n2`, `n3` and
//! `client`, each a network namespace. Node `nK` runs etcd member `m(K-1)`
//! (client port 2379, peer port 2380 on its lab address), its agent (given
//! every member's lab address, its own first, as an operator configures
//! them; admin API on 127.0.0.1:7070 of its own namespace, reached with
//! `ip netns exec` and the CLI) and the group's service, which listens on
//! port 8080 of every address of its host and records its runs
//! (`demo-service --record`), so tests judge from the services' side, as
//! the loopback cluster's do (`cluster/cluster.rs`, whose configuration, etcd
//! flags and record reading this reuses). The test reaches the hosts from
//! the client's namespace (`Lab::within`).
//!
//! A test may add hosts of its own beside these ([`LabCluster::with_hosts`],
//! e.g. a DNS server), and give a resource a directory every node shares, as
//! a shared disk would ([`LabCluster::share_resource_dir`]).
#![allow(dead_code)]

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use super::cluster::{
    Cluster, ETCD, EtcdTurn, Killed, NODES, Run, Setup, TOKEN, WARDEN, etcd_member_args, fences_in,
    http_get, http_post, joins_in, served_by, serving_now,
};
use super::netlab::{Lab, Way};
use super::wait_until;

/// The lab's host from which the test probes, as a client would.
pub const CLIENT: &str = "client";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// Where every node's service listens (each in its own namespace).
pub const SERVICE_PORT: u16 = 8080;
/// Each agent's admin API, on the loopback of its own namespace.
pub const API: &str = "127.0.0.1:7070";
/// Written in `Setup::extra_config`, it becomes each node's own name in
/// that node's configuration (for what differs per node, such as the
/// `MAIL_HOSTNAME` a node's mail services name themselves by).
pub const NODE_NAME: &str = "@NODE@";

const MINUTE: Duration = Duration::from_secs(60);

pub struct LabCluster {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    /// etcd member `i` runs in node `i`'s namespace.
    pub members: Vec<Option<Killed>>,
    member_args: Vec<Vec<OsString>>,
    pub agents: Vec<Option<Killed>>,
    pub setup: Setup,
    /// Resources whose data directory every node shares: each agent sees
    /// `dir/shared/NAME` as its `data/resources/NAME`.
    shared: Vec<String>,
    _one_at_a_time: EtcdTurn,
}

impl LabCluster {
    /// A lab, its etcd healthy, no agent yet; `None` if the lab cannot be
    /// made here (said, or a failure under `WARDEN_NETLAB_REQUIRED=1`).
    /// The service records its runs whatever `setup.recorded` says.
    pub fn new(test: &str, setup: Setup) -> Option<LabCluster> {
        LabCluster::with_hosts(test, setup, &[])
    }

    /// As [`LabCluster::new`], with `extra` hosts on the lab's network
    /// beside the nodes and the client (addresses after theirs: the first
    /// extra host is 198.18.0.5), for the test's own servers.
    pub fn with_hosts(test: &str, setup: Setup, extra: &[&str]) -> Option<LabCluster> {
        // One at a time with every other etcd of the binary (loopback
        // clusters included): three etcd members and three agents are a
        // lot for a 2-core machine.
        let one_at_a_time = super::cluster::one_at_a_time();
        let mut hosts = vec!["n1", "n2", "n3", CLIENT];
        hosts.extend_from_slice(extra);
        let lab = Lab::or_skip(test, &hosts)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let on = |port: u16| -> Vec<SocketAddr> {
            NODES
                .iter()
                .map(|n| SocketAddr::new(IpAddr::V4(lab.addr(n)), port))
                .collect()
        };
        let (peers, clients) = (on(ETCD_PEER_PORT), on(ETCD_CLIENT_PORT));
        // Pre-vote comes with `etcd_member_args`: without it, healing a
        // partitioned node left etcd leaderless for about 2 s, and every
        // agent fenced itself (docs/testing.md).
        let member_args = (0..NODES.len())
            .map(|i| etcd_member_args(dir.path(), i, &peers, &clients))
            .collect();
        let mut cluster = LabCluster {
            lab,
            dir,
            members: NODES.iter().map(|_| None).collect(),
            member_args,
            agents: NODES.iter().map(|_| None).collect(),
            setup: Setup {
                recorded: true,
                ..setup
            },
            shared: Vec::new(),
            _one_at_a_time: one_at_a_time,
        };
        for i in 0..NODES.len() {
            cluster.start_member(i);
        }
        for i in 0..NODES.len() {
            cluster.wait_member_healthy(i);
        }
        Some(cluster)
    }

    /// Start etcd member `i` (again) in node `i`'s namespace, as it was
    /// first started.
    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("etcd-m{i}.log")))
            .expect("log");
        let child = self
            .lab
            .command(NODES[i], ETCD)
            .args(&self.member_args[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server; .ci/run installs it)");
        self.members[i] = Some(Killed(child));
    }

    /// etcd member `i`'s client address.
    pub fn member_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.lab.addr(NODES[i])), ETCD_CLIENT_PORT)
    }

    /// Wait until member `i` says, to the client host, that it is healthy.
    pub fn wait_member_healthy(&self, i: usize) {
        let addr = self.member_addr(i);
        wait_until(&format!("etcd member {i} to be healthy"), MINUTE, || {
            self.lab
                .within(CLIENT, || http_get(addr, "/health"))
                .filter(|body| body.contains("\"health\":\"true\""))
        });
    }

    /// The member that leads etcd now, as the members themselves say.
    pub fn leader(&self) -> Option<usize> {
        (0..NODES.len()).find(|&i| {
            let addr = self.member_addr(i);
            self.lab
                .within(CLIENT, || http_post(addr, "/v3/maintenance/status", "{}"))
                .is_some_and(|body| {
                    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let leader = &status["leader"];
                    !leader.is_null() && *leader == status["header"]["member_id"]
                })
        })
    }

    /// etcd member `i` cut off from every other host: nothing reaches its
    /// ports from the network, and it reaches no peer. Node `i`'s agent
    /// still reaches it (their namespace's loopback) and every other
    /// member. `Lab::heal` undoes it.
    pub fn isolate_member(&self, i: usize) {
        let host = NODES[i];
        for port in [ETCD_CLIENT_PORT, ETCD_PEER_PORT] {
            self.lab
                .drop_tcp(host, Way::In, &format!("tcp dport {port}"));
            self.lab
                .drop_tcp(host, Way::Out, &format!("tcp sport {port}"));
        }
        // Its own connections to the other members' peer ports (an agent
        // never uses them).
        self.lab
            .drop_tcp(host, Way::Out, &format!("tcp dport {ETCD_PEER_PORT}"));
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(NODES[i])
    }

    /// The file every node's service records its runs in.
    pub fn records_file(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    /// Agent `i`'s log, over all its runs.
    pub fn agent_log(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("agent.log")
    }

    fn config(&self, i: usize) -> PathBuf {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
        // Every member's lab address, starting with its own node's.
        let endpoints = (0..NODES.len())
            .map(|k| format!("\"http://{}\"", self.member_addr((i + k) % NODES.len())))
            .collect::<Vec<_>>()
            .join(", ");
        let args = format!(
            "demo-service --name web --listen 0.0.0.0:{SERVICE_PORT} --record {}",
            self.records_file().display()
        );
        let api = API.parse().expect("an address");
        let text = Cluster::config_text(&self.setup, i, api, &endpoints, &args)
            + &self.setup.extra_config.replace(NODE_NAME, NODES[i]);
        let path = dir.join("node.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    /// Resource `name`'s data directory shared by every node, as a shared
    /// disk holds a virtual server's store: agents started from now on see
    /// `dir/shared/NAME` (made here) as their `data/resources/NAME`. The
    /// directory; the resource's service on one node finds what it left on
    /// another.
    pub fn share_resource_dir(&mut self, name: &str) -> PathBuf {
        let shared = self.dir.path().join("shared").join(name);
        std::fs::create_dir_all(&shared).expect("the shared directory");
        self.shared.push(name.to_string());
        shared
    }

    /// Start agent `i` in node `i`'s namespace.
    ///
    /// With shared resource directories, the agent is started by a shell
    /// that bind-mounts each one over the resource's directory, then execs
    /// the agent (same pid). `ip netns exec` runs its program in a mount
    /// namespace of its own, a slave of the machine's: the mounts are the
    /// agent's and its children's alone, never the machine's, and go with
    /// them; nothing is left to unmount.
    pub fn start_agent(&mut self, i: usize) {
        let config = self.config(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log(i))
            .expect("log");
        let mut command = if self.shared.is_empty() {
            self.lab.command(NODES[i], WARDEN)
        } else {
            let mut command = self.lab.command(NODES[i], "/bin/sh");
            command.args([
                "-c",
                r#"set -e
while [ "$1" != "--" ]; do mkdir -p "$1"; mount --bind "$2" "$1"; shift 2; done
shift
exec "$@""#,
                "mount-shared",
            ]);
            for name in &self.shared {
                command
                    .arg(self.node_dir(i).join("data").join("resources").join(name))
                    .arg(self.dir.path().join("shared").join(name));
            }
            command.arg("--").arg(WARDEN);
            command
        };
        let child = command
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
            let _ = agent.0.kill();
            let _ = agent.0.wait();
        }
    }

    /// Whether agent `i` still runs (it did not exit on its own).
    pub fn agent_runs(&mut self, i: usize) -> bool {
        self.agents[i]
            .as_mut()
            .is_some_and(|a| a.0.try_wait().ok().flatten().is_none())
    }

    pub fn joins(&self, i: usize) -> usize {
        joins_in(&self.agent_log(i))
    }

    pub fn fences(&self, i: usize) -> usize {
        fences_in(&self.agent_log(i))
    }

    /// Wait until agent `i` has joined more than `before` times.
    pub fn wait_joined(&self, i: usize, before: usize) {
        wait_until(
            &format!(
                "{} to join the cluster; logs in {}",
                NODES[i],
                self.dir.path().display()
            ),
            MINUTE,
            || (self.joins(i) > before).then_some(()),
        );
    }

    /// Start every agent, n1 first (it writes the configuration and takes
    /// the group), each joined on return; the run serving then (n1's).
    pub fn start_three(&mut self) -> Run {
        for i in 0..NODES.len() {
            let before = self.joins(i);
            self.start_agent(i);
            self.wait_joined(i, before);
        }
        self.serving()
    }

    /// Run the `warden` CLI in node `i`'s namespace against its agent.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        self.lab
            .command(NODES[i], WARDEN)
            .args(args)
            .env("WARDEN_API", format!("http://{API}"))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run the CLI")
    }

    /// Run the CLI against agent `i`; it must succeed. Its stdout.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        super::cluster::succeeded(&self.cli(i, args), args, NODES[i])
    }

    /// The group's owner as agent `i`'s engine sees it, if it answers.
    pub fn owner_seen_by(&self, i: usize) -> Option<String> {
        let out = self.cli(i, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        status["groups"][0]["owner"].as_str().map(str::to_string)
    }

    /// Node `i`'s service address on the lab.
    pub fn service_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.lab.addr(NODES[i])), SERVICE_PORT)
    }

    /// What node `i`'s service answers to the client host: the node whose
    /// data directory it runs in, and its pid.
    pub fn answer_from(&self, i: usize) -> Option<(String, i32)> {
        let addr = self.service_addr(i);
        self.lab.within(CLIENT, || served_by(addr))
    }

    /// Whether the client host's connection to node `i`'s service is
    /// refused at once (the host is reachable, nothing listens), rather
    /// than answered or left unanswered.
    pub fn refused_by(&self, i: usize) -> bool {
        let addr = self.service_addr(i);
        self.lab.within(CLIENT, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
    }

    /// Wait until exactly one node's service has recorded itself alive in
    /// the last half second; that run.
    pub fn serving(&self) -> Run {
        let records = self.records_file();
        wait_until(
            &format!(
                "exactly one node to serve; logs in {}",
                self.dir.path().display()
            ),
            MINUTE,
            || serving_now(&records, 500),
        )
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WARDEN_KEEP_CLUSTER").is_some() {
            let kept = std::env::temp_dir().join(format!(
                "warden-lab-{}",
                self.lab.name.trim_start_matches(super::netlab::PREFIX)
            ));
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(self.dir.path())
                .arg(&kept)
                .status();
            eprintln!("logs kept in {}", kept.display());
        }
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        for member in &mut self.members {
            *member = None;
        }
        // Then the lab (what still runs in it is killed), then the files.
    }
}
