//! A `kill -9` of the agent in the instant after it started a service and
//! before the service's pid record named it (the agent frozen there by the
//! `service-started` fault point, then killed): the next agent finds the
//! service by the log it holds open, stops it and starts one copy of its
//! own, so the service never runs twice; and the group going offline then
//! leaves nothing running.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::agent_process::{AgentProcess, TOKEN, WARDEN, create_sleeper_args};
use crate::common::process::pids_of;
use crate::common::wait_until;
use warden::fault_point;

const CONFIG: &str = r#"
[node]
name = "solo"
data_dir = "data"

[plugins.process]
allow_programs = ["/usr/bin/sleep"]
"#;

/// The seconds this test's service sleeps: a number only it uses (the
/// test process's pid in it), so that runs side by side never see each
/// other's service.
fn seconds() -> String {
    format!("98{}", std::process::id())
}

/// The state letter of `pid` in `/proc/PID/stat` (`T`: stopped).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

#[test]
fn a_service_started_the_instant_before_a_kill_is_never_run_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sleeper = format!("^/usr/bin/sleep {}$", seconds());
    let agent = AgentProcess::start_command(Path::new(WARDEN), dir.path(), CONFIG, |command| {
        command.env(fault_point::VARIABLE, fault_point::SERVICE_STARTED);
    });
    agent.ok(&["group", "create", "g"]);
    // The agent freezes while it brings the resource online: the creation
    // is asked from a command of its own, which the kill ends.
    let mut create = Command::new(WARDEN)
        .args(create_sleeper_args(&seconds()))
        .env("WARDEN_API", format!("http://{}", agent.api))
        .env("WARDEN_TOKEN", TOKEN)
        .spawn()
        .expect("warden resource create");
    wait_until(
        "the agent to stop at the fault point",
        Duration::from_secs(30),
        || (process_state(agent.pid()) == Some('T')).then_some(()),
    );
    let orphan = wait_until(
        "the service to run",
        Duration::from_secs(10),
        || match pids_of(&sleeper).as_slice() {
            [pid] => Some(*pid),
            _ => None,
        },
    );
    kill(Pid::from_raw(agent.pid()), Signal::SIGKILL).expect("kill -9 the agent");
    drop(agent);
    let _ = create.wait();

    let agent = AgentProcess::start(dir.path(), CONFIG);
    wait_until("sleeper online", Duration::from_secs(30), || {
        agent
            .resource("sleeper")
            .filter(|r| r["state"] == "Online")
            .map(|_| ())
    });
    let running = pids_of(&sleeper);
    assert_eq!(running.len(), 1, "one copy, not {running:?}");
    assert_ne!(running[0], orphan, "the unrecorded start was stopped");
    assert!(
        agent
            .log()
            .contains("a previous agent was killed while starting /usr/bin/sleep"),
        "{}",
        agent.log()
    );

    agent.ok(&["group", "offline", "g"]);
    wait_until("nothing left running", Duration::from_secs(20), || {
        pids_of(&sleeper).is_empty().then_some(())
    });
}
