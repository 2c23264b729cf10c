//! A real systemd booted as PID 1 of namespaces of its own
//! (`tests/systemd/boot.sh`), for the tests of the unit
//! (`all/systemd_unit.rs`) and of the Debian package (`all/package.rs`).
//!
//! `boot.sh` boots `/lib/systemd/systemd` over an overlay of `/`, so it
//! runs on a machine (or container) whose own PID 1 is not systemd, and
//! writes nothing to the machine's files or kernel settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::agent_process::TOKEN;

const BOOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/boot.sh");
const SYSTEMD: &str = "/lib/systemd/systemd";
/// The API inside the booted system's own network namespace.
pub const API: &str = "127.0.0.1:7070";

/// Why the test cannot run on this machine, if it cannot.
pub fn why_not_here() -> Option<String> {
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

/// One booted systemd at a time in a test binary (the unit's test and the
/// package's share `tests/all`): each is a whole system booting, within
/// a deadline, on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Boots of this process so far: each boot's cgroup is named by the pid
/// and this count, so that no boot finds another's cgroup in its place
/// (one left behind by a failed test included).
static BOOTS: AtomicUsize = AtomicUsize::new(0);

/// A systemd booted by `boot.sh`; on drop its namespace's PID 1 is killed
/// (and with it every process in the namespace, its mounts with them) and
/// its cgroup removed.
pub struct BootedSystemd {
    unshare: Child,
    /// The namespace's PID 1, as this machine numbers it.
    pub init: u32,
    cgroup: PathBuf,
    _dir: tempfile::TempDir,
    /// Released after `drop` has killed the system and removed its cgroup.
    _one_at_a_time: MutexGuard<'static, ()>,
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
    /// Boot with `write_files` laying out, in the directory it is given,
    /// the files to copy over the new root (at least a
    /// `warden-test.target`, the unit systemd boots into), and `warden`,
    /// if any, bound read-only to `/usr/bin/warden`.
    pub fn boot(write_files: impl FnOnce(&Path), warden: Option<&str>) -> BootedSystemd {
        // A test that failed while holding the lock poisons it; the next
        // boot is its own all the same.
        let one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let (stage, files) = (dir.path().join("stage"), dir.path().join("files"));
        std::fs::create_dir(&stage).expect("mkdir stage");
        std::fs::create_dir(&files).expect("mkdir files");
        write_files(&files);
        let cgroup = cgroup2_root().expect("a cgroup v2 hierarchy").join(format!(
            "warden-systemd-unit-{}-{}",
            std::process::id(),
            BOOTS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&cgroup).expect("make the test's cgroup");
        let log = std::fs::File::create(dir.path().join("boot.log")).expect("boot log");
        let unshare = Command::new("bash")
            .arg(BOOT)
            .arg(&cgroup)
            .arg(&stage)
            .arg(&files)
            .arg(warden.unwrap_or(""))
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
            _one_at_a_time: one_at_a_time,
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

    pub fn boot_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("boot.log")).unwrap_or_default()
    }

    /// Run `program args` inside the booted system (all its namespaces,
    /// its root), with the agent's API in the environment.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", program])
            .args(args)
            .env("WARDEN_API", format!("http://{API}"))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run nsenter")
    }

    /// `run`, which must succeed; its stdout, trimmed.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
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
    pub fn unit(&self, property: &str) -> String {
        let out = self.run("systemctl", &["show", "warden", "--value", "-p", property]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What the unit and the agent said, for a failure's message.
    pub fn diagnostics(&self) -> String {
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
    pub fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
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
    pub fn wait_active(&self) {
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
    pub fn status(&self) -> Option<Value> {
        let out = self.run("/usr/bin/warden", &["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn wait_online(&self, resource: &str) {
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
    pub fn processes(&self, needle: &str) -> Vec<u32> {
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
    pub fn agent(&self) -> u32 {
        let main = self.unit("MainPID");
        *self
            .processes("/usr/bin/warden")
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
    pub fn http_get(&self, address: &str) -> String {
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
pub fn proc_status(pid: u32) -> HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}
