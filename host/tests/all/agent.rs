//! The `warden` binary end to end: real agent processes, real supervised
//! services, real plugin files.

use crate::common;
use crate::common::agent_process::start_agent;
use crate::common::dev_agent::{DevAgent, http_get, pid_in};
use crate::common::process::{Killed, events};
use crate::common::wait_until;

use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

#[test]
fn dev_mode_supervises_real_processes_and_restarts_a_killed_one() {
    let mut command = Command::new(WARDEN);
    command.args(["agent", "--dev"]);
    let mut agent = DevAgent::spawn(command);
    let services = agent.services.clone();
    let history = agent.history.clone();
    assert_eq!(services.len(), 2, "two demo services: {services:?}");

    let (name, addr) = services[0].clone();
    let body = wait_until(
        "the demo service to answer",
        Duration::from_secs(20),
        || http_get(addr),
    );
    assert!(body.starts_with(&format!("{name} is up")), "{body}");
    let first = pid_in(&body);

    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill -9 the service");
    let second = wait_until("a new process to answer", Duration::from_secs(20), || {
        http_get(addr)
            .map(|b| pid_in(&b))
            .filter(|pid| *pid != first)
    });
    assert_ne!(first, second);

    let seen = events(&history);
    let has = |kind: &str| {
        seen.iter()
            .any(|e| e["resource"] == name.as_str() && e["event"] == kind)
    };
    assert!(has("process-exited"), "history: {seen:?}");
    assert!(
        seen.iter().any(|e| e["resource"] == name.as_str()
            && e["event"] == "policy"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("failure 1 of 3 within 900s, restarting")),
        "history: {seen:?}"
    );

    let status = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "clean shutdown: {status:?}");
    // Shutdown took the services offline.
    assert!(
        http_get(addr).is_none(),
        "the service still answers after shutdown"
    );
    assert!(
        kill(Pid::from_raw(second), None).is_err(),
        "pid {second} still runs"
    );
}

#[test]
fn a_bad_configuration_is_refused_whole_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("started");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "n"
data_dir = "data"

[plugins.process]
allow_programs = ["/usr/bin/touch"]

[[resource]]
name = "would-start"
type = "process"
properties = {{ program = "/usr/bin/touch", args = "{marker}" }}

[[resource]]
name = "typo"
type = "process"
properties = {{ program = "/usr/bin/touch", argz = "x" }}

[[resource]]
name = "ghost"
type = "no-such-type"
"#,
            marker = marker.display()
        ),
    )
    .expect("write config");
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 error(s); nothing was started"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown property \"argz\" for type process"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown type \"no-such-type\""), "{stderr}");
    assert!(
        !marker.exists(),
        "a resource was started despite the errors"
    );

    let syntax = dir.path().join("syntax.toml");
    std::fs::write(
        &syntax,
        "[node]\nname = \"n\"\ndata_dir = \"d\"\nbogus = 1\n",
    )
    .expect("write");
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&syntax)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `bogus`") && stderr.contains("line 4"),
        "{stderr}"
    );
}

#[test]
fn a_broken_file_in_the_plugins_directory_is_skipped_and_the_rest_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(common::CHAOS, plugins.join("chaos.wasm")).expect("copy chaos");
    let chaos = std::fs::read(common::CHAOS).expect("read");
    std::fs::write(plugins.join("half-written.wasm"), &chaos[..chaos.len() / 3]).expect("write");
    std::fs::write(plugins.join("notes.wasm"), "not wasm at all").expect("write");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[[resource]]
name = "steady"
type = "chaos"
is_alive_interval_ms = 100
"#,
    )
    .expect("write config");
    let child = Command::new(WARDEN)
        .args(["--log-format", "json", "agent", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut agent = Killed(child);
    let stderr = agent.0.stderr.take().expect("stderr");
    let history = dir.path().join("data/events.jsonl");
    wait_until("steady to come online", Duration::from_secs(20), || {
        events(&history)
            .iter()
            .any(|e| e["resource"] == "steady" && e["to"] == "Online")
            .then_some(())
    });
    let status = agent.terminate(Duration::from_secs(20));
    assert!(status.success());
    let mut log = String::new();
    BufReader::new(stderr)
        .read_to_string(&mut log)
        .expect("log");
    assert!(
        log.contains("half-written.wasm rejected: could not compile"),
        "{log}"
    );
    assert!(
        log.contains("notes.wasm rejected: not a WebAssembly file"),
        "{log}"
    );
}

#[test]
fn plugin_check_describes_a_good_plugin_and_explains_a_bad_one() {
    let out = Command::new(WARDEN)
        .args(["plugin", "check", common::PROCESS])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("process "), "{stdout}");
    assert!(
        stdout.contains("program") && stdout.contains("required"),
        "{stdout}"
    );

    for (file, expected) in [
        (common::FUTURE_CONTRACT, "warden:resource@0.6.0"),
        (
            common::DESCRIBE_TRAPS,
            "describe() failed: describe trapped",
        ),
        (
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            "not a WebAssembly file",
        ),
    ] {
        let out = Command::new(WARDEN)
            .args(["plugin", "check", file])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{file} passed the check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
}

/// Write `config` to a fresh folder and return (folder, config path).
fn config_file(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

fn pid_of(dir: &Path, resource: &str) -> Option<i32> {
    // The process plugin logs "started PROGRAM as pid N"; the history has
    // the state changes. Ask the kernel instead: the service's argv names
    // the resource.
    let out = Command::new("pgrep")
        .args(["-f", &format!("demo-service --name {resource} ")])
        .output()
        .ok()?;
    let _ = dir;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

#[test]
fn a_service_killed_three_times_takes_its_group_to_failed_on_one_node() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let (dir, config) = config_file(&format!(
        r#"
[node]
name = "solo"
data_dir = "data"

[plugins.process]
allow_programs = ["{WARDEN}"]

[[group]]
name = "evs"

[[resource]]
name = "flaky"
type = "process"
group = "evs"
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{WARDEN}", args = "demo-service --name flaky --listen {port}", startup-ms = 100 }}
"#
    ));
    let agent = start_agent(&config);
    let history = dir.path().join("data/events.jsonl");
    let onlines = |n: usize| {
        events(&history)
            .iter()
            .filter(|e| e["resource"] == "flaky" && e["to"] == "Online")
            .count()
            >= n
    };
    for round in 1..=3 {
        wait_until(&format!("online #{round}"), Duration::from_secs(20), || {
            onlines(round).then_some(())
        });
        let pid = wait_until("the service's pid", Duration::from_secs(10), || {
            pid_of(dir.path(), "flaky")
        });
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
        wait_until("the pid to be gone", Duration::from_secs(10), || {
            (pid_of(dir.path(), "flaky") != Some(pid)).then_some(())
        });
    }
    let history_path = dir.path().join("data/events.jsonl");
    let failed = wait_until("the group to be Failed", Duration::from_secs(20), || {
        events(&history_path)
            .into_iter()
            .find(|e| e["event"] == "policy" && e["action"] == "group-failed")
    });
    assert_eq!(failed["resource"], "evs");
    assert_eq!(failed["reason"], "no other possible owner is up");
    let seen = events(&history_path);
    let reasons: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "policy")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for expected in [
        "failure 1 of 3 within 900s, restarting after 100ms",
        // The second failure waits for the back-off's first step (1 s by
        // default), longer than the delay.
        "failure 2 of 3 within 900s, restarting after 1s (back-off)",
        "3 times within 900s, threshold 3 reached: failing group evs over",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no decision {expected:?} in {reasons:#?}"
        );
    }
    // Each kill was seen through the exit event.
    assert_eq!(
        seen.iter()
            .filter(|e| e["event"] == "process-exited")
            .count(),
        3,
        "{seen:?}"
    );
    // No fourth start.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid_of(dir.path(), "flaky"), None);
    assert!(agent.terminate(Duration::from_secs(20)).success());
}

#[test]
fn a_dependency_cycle_is_refused_naming_the_cycle() {
    let (_dir, config) = config_file(
        r#"
[node]
name = "n"
data_dir = "data"

[[group]]
name = "evs"

[[resource]]
name = "a"
type = "process"
group = "evs"
depends_on = ["c"]
properties = { program = "/usr/bin/sleep" }

[[resource]]
name = "b"
type = "process"
group = "evs"
depends_on = ["a"]
properties = { program = "/usr/bin/sleep" }

[[resource]]
name = "c"
type = "process"
group = "evs"
depends_on = ["b"]
properties = { program = "/usr/bin/sleep" }
"#,
    );
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dependency cycle in group evs"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
}

#[test]
fn a_group_comes_online_in_dependency_order_and_goes_offline_in_reverse() {
    // Below the ephemeral range: a port free a moment ago that any outgoing
    // connection could take meanwhile fails a service's bind, and its
    // restart adds an Online this test does not expect.
    let ports = common::service_ports::<3>();
    let resource = |name: &str, depends: &str, addr: SocketAddr| {
        format!(
            r#"
[[resource]]
name = "{name}"
type = "process"
group = "evs"
depends_on = [{depends}]
properties = {{ program = "{WARDEN}", args = "demo-service --name {name} --listen {addr}", startup-ms = 150 }}
"#
        )
    };
    let (dir, config) = config_file(&format!(
        r#"
[node]
name = "n"
data_dir = "data"

[plugins.process]
allow_programs = ["{WARDEN}"]

[[group]]
name = "evs"
{}{}{}"#,
        resource("store", "", ports[0]),
        resource("smtp", "\"store\"", ports[1]),
        resource("http", "\"store\"", ports[2]),
    ));
    let agent = start_agent(&config);
    let history = dir.path().join("data/events.jsonl");
    wait_until("all online", Duration::from_secs(20), || {
        (events(&history)
            .iter()
            .filter(|e| e["to"] == "Online")
            .count()
            == 3)
            .then_some(())
    });
    assert!(agent.terminate(Duration::from_secs(20)).success());
    let seen = events(&history);
    let at = |resource: &str, to: &str| {
        seen.iter()
            .find(|e| e["resource"] == resource && e["to"] == to)
            .and_then(|e| e["at_ms"].as_u64())
            .unwrap_or_else(|| panic!("{resource} never {to}: {seen:?}"))
    };
    for dependent in ["smtp", "http"] {
        assert!(
            at("store", "Online") <= at(dependent, "OnlinePending"),
            "{dependent} started before store was online"
        );
        assert!(
            at(dependent, "Offline") <= at("store", "OfflinePending"),
            "store went offline before {dependent}"
        );
    }
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[node]\nname = \"n\"\ndata_dir = \"data\"\n").expect("config");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let agent = Killed(child);
    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    while !(heard.iter().any(|m: &String| m.starts_with("READY=1"))
        && heard.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 2)
    {
        let n = socket.recv(&mut buf).expect("a notification");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(agent.terminate(Duration::from_secs(20)).success());
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.starts_with("STOPPING=1") {
            break;
        }
    }
}
