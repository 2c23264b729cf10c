//! The network lab: several hosts on one machine, each a Linux network
//! namespace, so that cluster tests cut real links instead of proxying.
//!
//! One lab is a namespace per host (`Lab::ns`), each with one interface
//! `eth0` holding `198.18.0.N/24` (198.18.0.0/15 is reserved for testing,
//! RFC 2544) and `fd00::N/64` (unique local), plugged by a veth pair into the bridge `br0` of a namespace of
//! its own. Nothing is configured in the machine's own namespace: every
//! `ip` and `nft` command runs with `-n NS` or `ip netns exec NS`, and the
//! bridge-side ends are created inside the bridge's namespace. Each lab
//! being a network of its own, labs side by side use the same addresses.
//!
//! Names are `wl-PID-N-HOST`: the prefix, the test process's pid and a
//! counter, so tests in one binary and two binaries at once never collide,
//! and a lab whose process is gone (an interrupted run) can be told apart
//! from a live one: [`remove_leftovers`] removes those, and every new lab
//! calls it first. Dropping a lab kills what still runs in its namespaces
//! and deletes them (their interfaces go with them), also when the test
//! panicked.
//!
//! Faults: [`Lab::link_down`] pulls a host's cable (its bridge port goes
//! down: its packets go nowhere, connections time out rather than being
//! refused); [`Lab::partition`] drops every packet between two sets of
//! hosts, both ways, with nftables rules inside the hosts' namespaces;
//! [`Lab::drop_tcp`] drops TCP traffic of some ports on one host's link;
//! [`Lab::heal`] undoes them all.
//!
//! Without CAP_NET_ADMIN no namespace can be made: [`Lab::or_skip`] says so
//! and the test returns, unless `WARDEN_NETLAB_REQUIRED=1` (set by
//! `.ci/run`), which makes that a failure.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every lab namespace's name starts with this.
pub const PREFIX: &str = "wl-";
/// Set to `1` to make a lab that cannot be built a failure, not a skip.
pub const REQUIRED_VAR: &str = "WARDEN_NETLAB_REQUIRED";
/// Each host's interface inside its namespace.
pub const IFACE: &str = "eth0";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The nftables table a lab writes in a host's namespace.
const TABLE: &str = "warden_lab";

/// Which hook a rule goes in, seen from the host whose namespace holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Way {
    /// Packets arriving at the host.
    In,
    /// Packets the host sends.
    Out,
}

pub struct Lab {
    /// `wl-PID-N`: what every namespace of this lab is named after.
    pub name: String,
    hosts: Vec<String>,
    /// Namespaces made so far, deleted on drop (a half-built lab too).
    made: Vec<String>,
    /// The drop rules in force, per host and hook (nftables matches).
    rules: Mutex<BTreeMap<String, Vec<(Way, String)>>>,
}

/// Labs made by this process so far, for unique names.
static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// A lab of `hosts` (short names, such as `n1` or `client`), or `None`
    /// after printing why none can be made here (no CAP_NET_ADMIN, no
    /// `ip`); with `WARDEN_NETLAB_REQUIRED=1` that is a failure instead.
    /// Leftovers of interrupted runs are removed first.
    pub fn or_skip(test: &str, hosts: &[&str]) -> Option<Lab> {
        if let Err(why) = can_make_namespaces() {
            let required = std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: the network lab is required ({REQUIRED_VAR}=1) but {why}"
            );
            eprintln!("{test}: SKIPPED, the network lab cannot run here: {why}");
            return None;
        }
        for removed in remove_leftovers() {
            eprintln!("netlab: removed {removed}, left by an interrupted run");
        }
        Some(Lab::for_owner(std::process::id(), hosts))
    }

    /// A lab named after process `owner` (this process, except in the
    /// test of [`remove_leftovers`]). Panics, naming the command, if a step
    /// fails: the lab is then dropped, so what was made is removed.
    pub fn for_owner(owner: u32, hosts: &[&str]) -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let mut lab = Lab {
            name: format!("{PREFIX}{owner}-{n}"),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            made: Vec::new(),
            rules: Mutex::new(BTreeMap::new()),
        };
        let bridge = lab.bridge_ns();
        lab.add_namespace(&bridge);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for (k, host) in hosts.iter().enumerate() {
            let ns = lab.ns(host);
            lab.add_namespace(&ns);
            // Made in the bridge's namespace, its peer moved straight into
            // the host's: never an interface in the machine's namespace.
            ip(&[
                "-n", &bridge, "link", "add", "name", host, "type", "veth", "peer", "name", IFACE,
                "netns", &ns,
            ]);
            ip(&[
                "-n", &bridge, "link", "set", "dev", host, "master", "br0", "up",
            ]);
            let address = format!("{}/24", host_address(k));
            ip(&["-n", &ns, "addr", "add", &address, "dev", IFACE]);
            // IPv6 too (fd00::/8 is unique local), usable at once.
            let address = format!("{}/64", host_address6(k));
            ip(&["-n", &ns, "addr", "add", &address, "dev", IFACE, "nodad"]);
            ip(&["-n", &ns, "link", "set", IFACE, "up"]);
        }
        lab
    }

    fn add_namespace(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.made.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// The namespace of the bridge joining the hosts.
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.name)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        assert!(
            self.hosts.iter().any(|h| h == host),
            "{host} is not a host of lab {}",
            self.name
        );
        format!("{}-{host}", self.name)
    }

    /// Every namespace of this lab, the bridge's included.
    pub fn namespaces(&self) -> Vec<String> {
        self.made.clone()
    }

    /// `host`'s address on the lab's network.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        let k = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("{host} is not a host of lab {}", self.name));
        host_address(k)
    }

    /// `host`'s IPv6 address on the lab's network (`fd00::N/64`).
    pub fn addr6(&self, host: &str) -> Ipv6Addr {
        let k = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("{host} is not a host of lab {}", self.name));
        host_address6(k)
    }

    /// The hardware address of `host`'s interface (`ip link`).
    pub fn mac(&self, host: &str) -> String {
        let out = ip(&["-n", &self.ns(host), "-o", "link", "show", IFACE]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no link/ether in {text}"))
            .to_string()
    }

    /// `async_probe` run to its end on a current-thread tokio runtime, on a
    /// thread moved into `host`'s namespace ([`Lab::within`]): what the
    /// agent does in-process (netlink, raw sockets) it does as that host.
    pub fn run_inside<T: Send, F: std::future::Future<Output = T>>(
        &self,
        host: &str,
        async_probe: impl FnOnce() -> F + Send,
    ) -> T {
        self.within(host, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime in the lab")
                .block_on(async_probe())
        })
    }

    /// `program` to be run in `host`'s namespace (`ip netns exec`, which
    /// execs it: the child's pid is the program's).
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host)]).arg(program);
        command
    }

    /// Run `probe` on a thread of this process moved into `host`'s
    /// namespace: the sockets it makes are that host's. The test's own
    /// threads stay in the machine's namespace.
    pub fn within<T: Send>(&self, host: &str, probe: impl FnOnce() -> T + Send) -> T {
        let path = format!("{NETNS_DIR}/{}", self.ns(host));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns on a descriptor we own; CLONE_NEWNET
                    // moves this thread alone, which ends with the scope.
                    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        done,
                        0,
                        "setns into {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    probe()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `host`'s cable pulled: its port on the bridge goes down. Packets it
    /// sends go nowhere and none reach it; its own address still answers
    /// inside its namespace.
    pub fn link_down(&self, host: &str) {
        self.ns(host);
        ip(&["-n", &self.bridge_ns(), "link", "set", "dev", host, "down"]);
    }

    /// `host`'s cable plugged back.
    pub fn link_up(&self, host: &str) {
        self.ns(host);
        ip(&["-n", &self.bridge_ns(), "link", "set", "dev", host, "up"]);
    }

    /// Every packet between a host of `side_a` and one of `side_b` dropped,
    /// both ways (rules in each host's namespace); their traffic with any
    /// other host goes on.
    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for (one, others) in [(side_a, side_b), (side_b, side_a)] {
            for host in one {
                let entry = rules.entry(host.to_string()).or_default();
                for other in others {
                    let other = self.addr(other);
                    entry.push((Way::In, format!("ip saddr {other}")));
                    entry.push((Way::Out, format!("ip daddr {other}")));
                }
            }
        }
        self.apply(&rules);
    }

    /// TCP segments on `host`'s link matching `what` dropped, `way` seen
    /// from `host`: e.g. `(Way::In, "tcp dport 2379")` cuts its listener on
    /// 2379 off from every other host (its own namespace still reaches it).
    pub fn drop_tcp(&self, host: &str, way: Way, what: &str) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let link = match way {
            Way::In => "iifname",
            Way::Out => "oifname",
        };
        rules
            .entry(host.to_string())
            .or_default()
            .push((way, format!("{link} \"{IFACE}\" {what}")));
        self.apply(&rules);
    }

    /// Every link up, every rule gone.
    pub fn heal(&self) {
        for host in &self.hosts {
            self.link_up(host);
        }
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for list in rules.values_mut() {
            list.clear();
        }
        self.apply(&rules);
    }

    /// Write each host's rules as one nftables table, replaced whole in
    /// one transaction (`nft -f`).
    fn apply(&self, rules: &BTreeMap<String, Vec<(Way, String)>>) {
        for (host, list) in rules {
            let chain = |name: &str, hook: &str, way: Way| {
                let body: String = list
                    .iter()
                    .filter(|(w, _)| *w == way)
                    .map(|(_, m)| format!("    {m} drop\n"))
                    .collect();
                format!(
                    "  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n{body}  }}\n"
                )
            };
            let script = format!(
                "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}}}\n",
                chain("incoming", "input", Way::In),
                chain("outgoing", "output", Way::Out),
            );
            let ns = self.ns(host);
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run nft (nftables; .ci/run installs it)");
            std::io::Write::write_all(
                child.stdin.as_mut().expect("nft's stdin"),
                script.as_bytes(),
            )
            .expect("write nft's script");
            drop(child.stdin.take());
            let out = child.wait_with_output().expect("nft ran");
            assert!(
                out.status.success(),
                "nft -f in {ns} failed: {}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(why) = remove_namespace(ns) {
                eprintln!("netlab: {why}");
            }
        }
    }
}

/// The address of the lab's `k`th host (from 198.18.0.1).
fn host_address(k: usize) -> Ipv4Addr {
    let k = u8::try_from(k + 1).expect("at most 254 hosts in a lab");
    Ipv4Addr::new(198, 18, 0, k)
}

/// The IPv6 address of the lab's `k`th host (from fd00::1).
fn host_address6(k: usize) -> Ipv6Addr {
    let k = u16::try_from(k + 1).expect("at most 254 hosts in a lab");
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, k)
}

/// Run `ip ARGS`; panic naming the command and what it said on failure.
fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2; .ci/run installs it)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Whether this process can make a network namespace (it tries one and
/// deletes it); why not otherwise.
pub fn can_make_namespaces() -> Result<(), String> {
    let probe = format!(
        "{PREFIX}{}-probe-{}",
        std::process::id(),
        LABS.fetch_add(1, Ordering::SeqCst)
    );
    let out = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .map_err(|e| format!("`ip` (iproute2) cannot be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip netns add` failed (it needs CAP_NET_ADMIN, e.g. root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    remove_namespace(&probe)?;
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("`nft` (nftables) cannot be run".to_string()),
    }
}

/// Every named network namespace whose name starts with [`PREFIX`].
pub fn lab_namespaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    names
}

/// The pid a lab namespace is named after (`wl-PID-...`).
pub fn owner_of(ns: &str) -> Option<u32> {
    ns.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Remove what interrupted runs left: every lab namespace whose creating
/// process is gone (what runs in it is killed first). Labs of live
/// processes are left alone. The names removed.
///
/// By hand: `cargo test -p warden --test cluster netlab::remove_netlab_leftovers`.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in lab_namespaces() {
        let Some(owner) = owner_of(&ns) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        match remove_namespace(&ns) {
            Ok(()) => removed.push(ns),
            Err(why) => eprintln!("netlab: {why}"),
        }
    }
    removed
}

/// The pids of the processes in namespace `ns`.
pub fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kill (SIGKILL) what runs in `ns`, then delete it; its interfaces go
/// with it.
fn remove_namespace(ns: &str) -> Result<(), String> {
    for pid in pids_in(ns) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let out = Command::new("ip")
        .args(["netns", "delete", ns])
        .output()
        .map_err(|e| format!("run ip netns delete {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip netns delete {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The interface names of the machine's own namespace (this process's).
pub fn machine_interfaces() -> Vec<String> {
    let out = ip(&["-o", "link", "show"]);
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let name = l.split(':').nth(1)?.trim();
            Some(name.split('@').next()?.to_string())
        })
        .collect();
    names.sort();
    names
}
