//! A managed program run as another user, a real one this test creates
//! (useradd), with a supplementary group of its own: the node
//! configuration's grant (`[plugins.TYPE] user`) and `warden plugin test
//! --user` both start it with the user's uid and primary gid, no
//! supplementary groups (neither the agent's nor the user's), in a data
//! directory it can write; a user that does not exist is refused naming
//! it. The plugin never chooses: a plugin's property cannot name a user.
//! The agent's service is also checked from outside (`/proc/PID/status`:
//! every uid and gid, no groups; its own process group).
//!
//! Needs root (useradd, setuid), as CI runs it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::{PROCESS, wait_until};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// A user and a group created for one test, removed when dropped.
struct TestUser {
    name: String,
    extra_group: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run_as tests create users and need root (CI runs as root)"
        );
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let name = format!("wrun{}x{n}", std::process::id());
        let extra_group = format!("{name}g");
        run(&["groupadd", &extra_group]);
        run(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            &extra_group,
            &name,
        ]);
        let user = nix::unistd::User::from_name(&name)
            .expect("lookup")
            .expect("the user exists");
        TestUser {
            name,
            extra_group,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.extra_group).output();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A service that says who it is (uid, gid, groups) and whether it can
/// write in its directory, then stays up.
fn whoami_service(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("whoami.sh");
    std::fs::write(
        &script,
        "echo \"uid=$(id -u) gid=$(id -g) groups=$(id -G)\"\n\
         if touch written-by-service; then echo writable; else echo not-writable; fi\n\
         exec sleep 600\n",
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    // Readable by the test user (the temporary directory is too).
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn plugin_test(script: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "plugin".to_string(),
        "test".to_string(),
        PROCESS.to_string(),
        "--prop".to_string(),
        "program=/bin/sh".to_string(),
        "--prop".to_string(),
        format!("args={}", script.display()),
        "--grant-program".to_string(),
        "/bin/sh".to_string(),
        "--keep-data".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(WARDEN)
        .args(&args)
        .env("WARDEN_LOG", "warn")
        .output()
        .expect("run warden")
}

/// The kept data directory's service log, and the directory removed.
fn kept_log(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let kept = text
        .lines()
        .find_map(|l| l.strip_prefix("note data kept     "))
        .unwrap_or_else(|| panic!("no kept directory in:\n{text}"));
    let kept = Path::new(kept.trim());
    let log = std::fs::read_to_string(kept.join("private/service.log")).expect("service log");
    std::fs::remove_dir_all(kept).expect("remove the kept directory");
    log
}

/// A shared directory the test user can reach (the system's temporary
/// directory is world-searchable; tempfile makes its directories 0700).
fn reachable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn plugin_test_runs_the_service_as_the_user_given_without_supplementary_groups() {
    let user = TestUser::create();
    let tmp = reachable_tempdir();
    let script = whoami_service(tmp.path());

    let out = plugin_test(&script, &["--user", &user.name]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = kept_log(&out);
    let first = log.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("uid={} gid={} groups={}", user.uid, user.gid, user.gid),
        "{log}"
    );
    assert!(
        log.contains("writable\n") && !log.contains("not-writable"),
        "{log}"
    );

    // Without --user it runs as this process's user (root): the check
    // above is not vacuous.
    let out = plugin_test(&script, &[]);
    assert!(out.status.success());
    assert!(kept_log(&out).starts_with("uid=0 "));

    // A user that does not exist is refused before anything runs, named.
    let out = plugin_test(&script, &["--user", "no-such-user-wrun"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user \"no-such-user-wrun\" does not exist"),
        "{err}"
    );
}

#[test]
fn the_agent_runs_a_types_programs_as_its_configured_user() {
    let user = TestUser::create();
    let tmp = reachable_tempdir();
    let script = whoami_service(tmp.path());
    let config = format!(
        r#"
[node]
name = "n"
data_dir = "data"

[plugins.process]
allow_programs = ["/bin/sh"]
user = "{user}"

[[group]]
name = "g1"

[[resource]]
name = "who"
type = "process"
group = "g1"
properties = {{ program = "/bin/sh", args = "{script}" }}
"#,
        user = user.name,
        script = script.display()
    );
    let agent = AgentProcess::start(tmp.path(), &config);
    wait_until("who online", Duration::from_secs(30), || {
        agent
            .resource("who")
            .is_some_and(|r| r["state"] == "Online")
            .then_some(())
    });
    let log_path = tmp.path().join("data/private/who/service.log");
    let log = wait_until("the service's output", Duration::from_secs(10), || {
        std::fs::read_to_string(&log_path)
            .ok()
            .filter(|l| l.contains("writable"))
    });
    assert!(
        log.starts_with(&format!(
            "uid={} gid={} groups={}\n",
            user.uid, user.gid, user.gid
        )),
        "{log}"
    );
    assert!(!log.contains("not-writable"), "{log}");
    // Seen from outside too: every uid and gid the user's, no groups, a
    // process group of its own (the launcher's setgroups, setgid, setuid
    // and setpgid, `runtime/launch.rs`).
    let record = std::fs::read_to_string(tmp.path().join("data/private/who/.warden-pid"))
        .expect("pid record");
    let pid: u32 = record
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    assert_eq!(line("Uid:"), vec![user.uid.to_string(); 4].join(" "));
    assert_eq!(line("Gid:"), vec![user.gid.to_string(); 4].join(" "));
    assert_eq!(line("Groups:"), "", "no supplementary groups");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let pgrp = stat[stat.rfind(')').expect(")") + 2..]
        .split_whitespace()
        .nth(2)
        .expect("pgrp");
    assert_eq!(pgrp, pid.to_string(), "a process group of its own");
    agent.stop();

    // A configured user that does not exist stops the agent, named.
    let bad = config.replace(
        &format!("user = \"{}\"", user.name),
        "user = \"no-such-wrun\"",
    );
    std::fs::write(tmp.path().join("bad.toml"), bad).expect("config");
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(tmp.path().join("bad.toml"))
        .output()
        .expect("run the agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[plugins.process]") && err.contains("user \"no-such-wrun\" does not exist"),
        "{err}"
    );
}
