//! The hardened unit, `examples/warden.service` as shipped, under a real
//! systemd: the `warden` binary built here supervising real services.
//!
//! `tests/systemd/boot.sh` boots `/lib/systemd/systemd` as PID 1 of
//! namespaces of its own (pid, mount, cgroup, network, uts, ipc) over an
//! overlay of `/`, so it runs on a machine (or container) whose own PID 1
//! is not systemd, and writes nothing to the machine's files or kernel
//! settings. The test then checks what `systemd-analyze security` cannot:
//! that the agent starts under every option of the unit, is ready only
//! once its API answers (Type=notify), runs with the sandbox applied
//! (no new privileges, a seccomp filter, exactly the unit's capabilities,
//! a read-only system), and that the services it starts work: one as
//! `nobody` (CAP_SETUID, CAP_SETGID, CAP_CHOWN), one as root on port 80
//! (CAP_NET_BIND_SERVICE); and that a restart and a stop take the services
//! down in order.
//!
//! It needs root, `/lib/systemd/systemd`, `unshare` and `nsenter`, and a
//! cgroup v2 hierarchy. Without them it prints why it did not run and
//! passes (`.ci/run` installs systemd; CI runs as root). With them, a
//! systemd that does not boot fails the test.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::agent_process::TOKEN;
use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const BOOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/boot.sh");
const UNIT: &str = include_str!("../../examples/warden.service");
const SYSTEMD: &str = "/lib/systemd/systemd";
/// The API inside the booted system's own network namespace.
const API: &str = "127.0.0.1:7070";
/// `nobody` and `nogroup` on Debian.
const NOBODY: &str = "65534";

/// Why the test cannot run on this machine, if it cannot.
fn why_not_here() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("it must run as root (to boot systemd in namespaces of its own)".into());
    }
    if !Path::new(SYSTEMD).exists() {
        return Some(format!(
            "{SYSTEMD} is not installed (Debian: apt-get install systemd)"
        ));
    }
    for tool in ["unshare", "nsenter"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Some(format!("{tool} (util-linux) is not installed"));
        }
    }
    if cgroup2_root().is_none() {
        return Some(
            "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".to_string(),
        );
    }
    None
}

/// The machine's cgroup v2 hierarchy: the whole of /sys/fs/cgroup, or the
/// `unified` one beside the v1 controllers.
fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("cgroup.controllers").exists())
}

/// The capabilities the unit's `CapabilityBoundingSet=` names, as the mask
/// `/proc/PID/status` shows.
fn unit_capabilities() -> u64 {
    const NUMBERS: [(&str, u32); 7] = [
        ("CAP_CHOWN", 0),
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_FOWNER", 3),
        ("CAP_KILL", 5),
        ("CAP_SETGID", 6),
        ("CAP_SETUID", 7),
        ("CAP_NET_BIND_SERVICE", 10),
    ];
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|name| {
            let (_, bit) = NUMBERS
                .iter()
                .find(|(known, _)| *known == name)
                .unwrap_or_else(|| panic!("the unit names {name}, unknown to this test"));
            1u64 << bit
        })
        .sum()
}

/// The agent's configuration: one resource, `web`, a demo service run as
/// `run_as` (none: the agent's own user, root).
fn config(run_as: Option<&str>) -> String {
    let user = run_as
        .map(|user| format!("user = \"{user}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[node]
name = "sd"
data_dir = "/var/lib/warden"

[api]
listen = "{API}"
token_file = "/etc/warden/api-token"

[plugins.process]
allow_programs = ["/usr/local/bin/warden"]
{user}
[[group]]
name = "demo"

[[resource]]
name = "web"
type = "process"
group = "demo"
is_alive_interval_ms = 1000
properties = {{ program = "/usr/local/bin/warden", args = "demo-service --name web --listen 127.0.0.1:8080" }}
"#
    )
}

/// Lay out the files `boot.sh` copies over the booted system's root: the
/// unit as shipped, a target that wants it, the configuration (and the
/// one the restart switches to) and the token.
fn write_files(files: &Path) {
    let write = |path: &str, text: &str, mode: u32| {
        let path = files.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("etc/systemd/system/warden.service", UNIT, 0o644);
    write(
        "etc/systemd/system/warden-test.target",
        "[Unit]\nDescription=The Warden unit under test\nWants=warden.service\n",
        0o644,
    );
    write("etc/warden/warden.toml", &config(Some("nobody")), 0o644);
    write("etc/warden/as-root.toml", &config(None), 0o644);
    write("etc/warden/api-token", &format!("{TOKEN}\n"), 0o600);
    // cp -a gives the new root the modes of these directories.
    for dir in ["", "etc", "etc/systemd", "etc/systemd/system", "etc/warden"] {
        std::fs::set_permissions(files.join(dir), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
}

/// A systemd booted by `boot.sh`; on drop its namespace's PID 1 is killed
/// (and with it every process in the namespace, its mounts with them) and
/// its cgroup removed.
struct BootedSystemd {
    unshare: Child,
    /// The namespace's PID 1, as this machine numbers it.
    init: u32,
    cgroup: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.init as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.wait();
        remove_cgroup(&self.cgroup);
    }
}

/// Remove a cgroup and the ones systemd made in it, deepest first. A cgroup
/// empties a moment after its last process died: try for a few seconds.
fn remove_cgroup(cgroup: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cgroup.exists() && Instant::now() < deadline {
        let _ = Command::new("find")
            .arg(cgroup)
            .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(100));
    }
    if cgroup.exists() {
        eprintln!("systemd_unit: could not remove {}", cgroup.display());
    }
}

impl BootedSystemd {
    fn boot() -> BootedSystemd {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stage, files) = (dir.path().join("stage"), dir.path().join("files"));
        std::fs::create_dir(&stage).expect("mkdir stage");
        std::fs::create_dir(&files).expect("mkdir files");
        write_files(&files);
        let cgroup = cgroup2_root()
            .expect("a cgroup v2 hierarchy")
            .join(format!("warden-systemd-unit-{}", std::process::id()));
        std::fs::create_dir(&cgroup).expect("make the test's cgroup");
        let log = std::fs::File::create(dir.path().join("boot.log")).expect("boot log");
        let unshare = Command::new("bash")
            .arg(BOOT)
            .arg(&cgroup)
            .arg(&stage)
            .arg(&files)
            .arg(WARDEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run boot.sh");
        let mut booted = BootedSystemd {
            init: 0,
            unshare,
            cgroup,
            _dir: dir,
        };
        let started = Instant::now();
        booted.init = loop {
            if let Some(init) = children(booted.unshare.id())
                .into_iter()
                .find(|&pid| comm(pid).as_deref() == Some("systemd"))
            {
                break init;
            }
            if let Ok(Some(status)) = booted.unshare.try_wait() {
                panic!(
                    "systemd did not boot: boot.sh exited ({status}):\n{}",
                    booted.boot_log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "systemd did not start within a minute:\n{}",
                booted.boot_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        booted
    }

    fn boot_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("boot.log")).unwrap_or_default()
    }

    /// Run `program args` inside the booted system (all its namespaces,
    /// its root), with the agent's API in the environment.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", program])
            .args(args)
            .env("WARDEN_API", format!("http://{API}"))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run nsenter")
    }

    /// `run`, which must succeed; its stdout, trimmed.
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A property of the unit, as `systemctl show` gives it.
    fn unit(&self, property: &str) -> String {
        let out = self.run("systemctl", &["show", "warden", "--value", "-p", property]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What the unit and the agent said, for a failure's message.
    fn diagnostics(&self) -> String {
        let status = self.run("systemctl", &["status", "warden", "--no-pager", "-l"]);
        let journal = self.run(
            "journalctl",
            &["-u", "warden", "--no-pager", "-n", "40", "-o", "cat"],
        );
        format!(
            "systemctl status warden:\n{}\njournal of warden:\n{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&journal.stdout)
        )
    }

    /// Poll `probe` until it gives a value; fail with the unit's status
    /// and journal.
    fn wait_for<T>(&self, what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait for the unit to be active (the agent sent READY=1), failing if
    /// systemd gives up on it.
    fn wait_active(&self) {
        self.wait_for(
            "warden.service active",
            Duration::from_secs(180),
            || match self.unit("ActiveState").as_str() {
                "active" => Some(()),
                "failed" => panic!("warden.service failed\n{}", self.diagnostics()),
                _ => None,
            },
        );
    }

    /// `warden status --json` from inside; None if the API did not answer.
    fn status(&self) -> Option<Value> {
        let out = self.run("/usr/local/bin/warden", &["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn wait_online(&self, resource: &str) {
        self.wait_for(
            &format!("{resource} Online"),
            Duration::from_secs(60),
            || {
                let status = self.status()?;
                let state = status["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["resources"].as_array().into_iter().flatten())
                    .find(|r| r["name"] == resource)?["state"]
                    .clone();
                (state == "Online").then_some(())
            },
        );
    }

    /// The processes of the booted system: this machine's pid and the
    /// command line, for those whose command line contains `needle`.
    fn processes(&self, needle: &str) -> Vec<u32> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.init)) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(ns.clone())
            })
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .is_ok_and(|c| c.contains(needle))
            })
            .collect()
    }

    /// The unit's main process, as this machine numbers it.
    fn agent(&self) -> u32 {
        let main = self.unit("MainPID");
        *self
            .processes("/usr/local/bin/warden")
            .iter()
            .find(|&&pid| {
                proc_status(pid)
                    .get("NSpid")
                    .and_then(|ids| ids.split_whitespace().last().map(str::to_string))
                    == Some(main.clone())
            })
            .unwrap_or_else(|| panic!("no process is the unit's MainPID {main}"))
    }

    /// An HTTP GET of `/` from inside the booted system (bash's /dev/tcp).
    fn http_get(&self, address: &str) -> String {
        let (host, port) = address.split_once(':').expect("host:port");
        let script = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = self.run("bash", &["-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// `/proc/PID/status` as a map of its fields.
fn proc_status(pid: u32) -> HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn mask(status: &HashMap<String, String>, field: &str) -> u64 {
    let value = status.get(field).map(String::as_str).unwrap_or("");
    u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("{field}: {value:?} is not a mask"))
}

/// One mount as a process sees it: where in its file system it starts
/// and whether it is read-only.
#[derive(Debug)]
struct Mount {
    root: String,
    read_only: bool,
}

/// The mounts at `points` in `pid`'s mount namespace, as its root sees
/// them (the last mount at a point is the one seen).
fn mounts(pid: u32, points: &[&str]) -> HashMap<String, Mount> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (root, point, options) = (*fields.get(3)?, *fields.get(4)?, *fields.get(5)?);
            let mount = Mount {
                root: root.to_string(),
                read_only: options.split(',').any(|o| o == "ro"),
            };
            points.contains(&point).then(|| (point.to_string(), mount))
        })
        .collect()
}

/// The sandbox every process of the unit runs in.
fn assert_sandboxed(what: &str, status: &HashMap<String, String>) {
    assert_eq!(
        status.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{what}: NoNewPrivileges=yes not applied: {status:?}"
    );
    assert_eq!(
        status.get("Seccomp").map(String::as_str),
        Some("2"),
        "{what}: no seccomp filter (SystemCallFilter=): {status:?}"
    );
    assert_eq!(
        mask(status, "CapBnd"),
        unit_capabilities(),
        "{what}: the bounding set is not the unit's CapabilityBoundingSet="
    );
    assert_eq!(mask(status, "CapAmb"), 0, "{what}: ambient capabilities");
}

#[test]
fn the_hardened_unit_runs_the_agent_and_its_services_under_a_real_systemd() {
    if let Some(why) = why_not_here() {
        println!("systemd_unit: not run: {why}");
        return;
    }
    let systemd = BootedSystemd::boot();

    // Type=notify: systemd calls the unit active only once the agent said
    // READY=1, which it says once its API answers.
    systemd.wait_active();
    assert!(
        systemd.status().is_some(),
        "the unit is active but the API does not answer\n{}",
        systemd.diagnostics()
    );
    systemd.wait_online("web");

    // The agent: root, with only the unit's capabilities, sandboxed.
    let agent = systemd.agent();
    let status = proc_status(agent);
    assert_sandboxed("the agent", &status);
    assert_eq!(
        mask(&status, "CapEff"),
        unit_capabilities(),
        "the agent does not hold the unit's capabilities"
    );
    let mounts = mounts(
        agent,
        &["/", "/usr", "/etc", "/var/lib/warden", "/tmp", "/home"],
    );
    let mount = |point: &str| {
        mounts
            .get(point)
            .unwrap_or_else(|| panic!("no mount at {point} for the agent: {mounts:?}"))
    };
    assert!(mount("/").read_only, "ProtectSystem=strict: / is writable");
    for point in ["/usr", "/etc"] {
        // Under / unless mounted apart; read-only either way.
        assert!(
            mounts.get(point).is_none_or(|m| m.read_only),
            "ProtectSystem=strict: {point} is writable"
        );
    }
    assert!(mount("/home").read_only, "ProtectHome=yes not applied");
    assert!(
        !mount("/var/lib/warden").read_only,
        "StateDirectory=: the agent cannot write its data directory"
    );
    assert!(
        mount("/tmp").root.contains("systemd-private-") && !mount("/tmp").read_only,
        "PrivateTmp=yes: /tmp is not a private one: {:?}",
        mount("/tmp")
    );

    // Its service, run as nobody: the agent could switch user (SETUID,
    // SETGID) and give it its directory (CHOWN); it serves.
    let web = systemd.processes("demo-service --name web ");
    assert_eq!(web.len(), 1, "one web service: {web:?}");
    let service = proc_status(web[0]);
    assert_sandboxed("the service run as nobody", &service);
    assert!(
        service
            .get("Uid")
            .is_some_and(|ids| ids.split_whitespace().all(|id| id == NOBODY)),
        "the service does not run as nobody: {service:?}"
    );
    assert_eq!(mask(&service, "CapEff"), 0, "nobody holds capabilities");
    let owner = systemd.ok("stat", &["-c", "%u", "/var/lib/warden/resources/web"]);
    assert_eq!(owner, NOBODY, "the service's directory is not its own");
    let answer = systemd.http_get("127.0.0.1:8080");
    assert!(
        answer.contains("web is up"),
        "the service answered {answer:?}"
    );

    // A restart with services run as root: the agent stops and starts
    // under systemd, and a service on port 80 binds it
    // (CAP_NET_BIND_SERVICE), holding the unit's capabilities, no more.
    systemd.ok(
        "cp",
        &["/etc/warden/as-root.toml", "/etc/warden/warden.toml"],
    );
    systemd.ok("systemctl", &["restart", "warden"]);
    systemd.wait_active();
    assert_eq!(
        systemd.unit("NRestarts"),
        "0",
        "systemd restarted the agent on its own"
    );
    systemd.ok(
        "/usr/local/bin/warden",
        &[
            "resource",
            "create",
            "web80",
            "--type",
            "process",
            "--group",
            "demo",
            "--prop",
            "program=/usr/local/bin/warden",
            "--prop",
            "args=demo-service --name web80 --listen 127.0.0.1:80",
        ],
    );
    systemd.wait_online("web80");
    let answer = systemd.http_get("127.0.0.1:80");
    assert!(
        answer.contains("web80 is up"),
        "port 80 answered {answer:?}"
    );
    let web80 = systemd.processes("demo-service --name web80");
    assert_eq!(web80.len(), 1, "one web80 service: {web80:?}");
    let service = proc_status(web80[0]);
    assert_sandboxed("the service run as root", &service);
    assert_eq!(
        mask(&service, "CapEff"),
        unit_capabilities(),
        "a root service holds other capabilities than the unit's"
    );

    // A stop: the agent takes its services offline and exits cleanly.
    systemd.ok("systemctl", &["stop", "warden"]);
    assert_eq!(systemd.unit("ActiveState"), "inactive");
    assert_eq!(
        systemd.unit("Result"),
        "success",
        "{}",
        systemd.diagnostics()
    );
    let left = systemd.processes("demo-service");
    assert!(left.is_empty(), "services left after the stop: {left:?}");
}
