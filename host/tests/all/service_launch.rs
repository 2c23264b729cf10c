//! How the agent starts a service (`runtime/launch.rs`: a clone that shares
//! the agent's memory, then execve), abused through the hostile plugin and
//! checked on a real agent: a program that cannot run is named with the
//! system's reason and leaves nothing behind; a service inherits
//! descriptors 0, 1 and 2 and nothing else of the agent's, no blocked or
//! ignored signal, a process group of its own, and only the environment
//! granted; a working directory swapped for a link while services start
//! never leads out of the data directory; exit codes and signals are
//! reported as they happened.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::*;
use warden::monitor::{Monitor, ResourceHandle, ResourceState};
use warden::runtime::{Grants, LaunchGrants, ResourceDirs};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_HOST");

/// A hostile resource online that may start `programs`.
async fn hostile(
    monitor: &mut Monitor,
    name: &str,
    grants: Grants,
) -> (ResourceHandle, ResourceDirs) {
    let mut spec = spec(name, &[]);
    spec.grants = grants;
    let dirs = spec.dirs.clone();
    (online_resource(monitor, HOSTILE, spec).await, dirs)
}

fn programs(list: &[&str]) -> Grants {
    Grants {
        allow_programs: list.iter().map(Into::into).collect(),
        ..Grants::default()
    }
}

async fn ask(handle: &ResourceHandle, code: &str, payload: &str) -> Result<String, String> {
    handle.control(code, payload).await.expect("actor runs")
}

/// The pid in the plugin's "started as pid N".
fn started_pid(answer: &str) -> i32 {
    answer
        .strip_prefix("started as pid ")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("not a start: {answer}"))
}

/// The open descriptors of `pid`, sorted, each with what it leads to.
fn open_fds(pid: i32) -> Vec<(u32, PathBuf)> {
    let mut fds: Vec<(u32, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the service's /proc/PID/fd")
        .map(|entry| {
            let entry = entry.expect("entry");
            let fd = entry
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("a number");
            (fd, std::fs::read_link(entry.path()).unwrap_or_default())
        })
        .collect();
    fds.sort();
    fds
}

/// A line of `/proc/PID/status`, without its name.
fn status_line(pid: i32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
        .to_string()
}

/// Field `n` (1-based, as proc(5) counts) of `/proc/PID/stat`.
fn stat_field(pid: i32, n: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect(")") + 2..];
    after
        .split_whitespace()
        .nth(n - 3)
        .expect("field")
        .to_string()
}

/// What a started service must look like from outside: stdin from
/// /dev/null, stdout and stderr to its log, nothing else open; no signal
/// blocked; ignored only what the agent's own parent had it ignore (not
/// SIGPIPE, which Rust's runtime ignores in the agent); a process group
/// (and not a session) of its own.
fn assert_clean_start(pid: i32, log: &Path, agent: i32) {
    let fds = open_fds(pid);
    let log = log.canonicalize().expect("service log");
    assert_eq!(
        fds,
        [
            (0, PathBuf::from("/dev/null")),
            (1, log.clone()),
            (2, log.clone())
        ],
        "the service holds descriptors of the agent's"
    );
    assert_eq!(status_line(pid, "SigBlk"), "0000000000000000");
    let ignored = |pid: i32| u64::from_str_radix(&status_line(pid, "SigIgn"), 16).expect("hex");
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_ne!(
        ignored(agent) & sigpipe,
        0,
        "Rust's runtime ignores SIGPIPE"
    );
    assert_eq!(
        ignored(pid),
        ignored(agent) & !sigpipe,
        "the service's ignored signals"
    );
    assert_eq!(stat_field(pid, 5), pid.to_string(), "its own process group");
    assert_eq!(
        stat_field(pid, 6),
        stat_field(agent, 6),
        "the agent's session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_program_that_cannot_run_is_named_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-program");
    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let bad_interpreter = dir.path().join("bad-interpreter");
    std::fs::write(&bad_interpreter, "#!/no/such/interpreter\n").expect("write");
    std::fs::set_permissions(&bad_interpreter, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let a_directory = dir.path().to_path_buf();
    let text = |p: &Path| p.display().to_string();
    let allowed = [
        text(&missing),
        text(&not_executable),
        text(&bad_interpreter),
        text(&a_directory),
        "/usr/bin/sleep".to_string(),
    ];
    let mut monitor = Monitor::default();
    let (handle, dirs) = hostile(
        &mut monitor,
        "cannot-run",
        programs(&allowed.iter().map(String::as_str).collect::<Vec<_>>()),
    )
    .await;

    let huge = "x".repeat(200 << 10);
    for (payload, program, reason) in [
        (
            format!("{}\n\n\n", missing.display()),
            missing.display().to_string(),
            "No such file or directory",
        ),
        (
            format!("{}\n\n\n", not_executable.display()),
            not_executable.display().to_string(),
            "Permission denied",
        ),
        (
            format!("{}\n\n\n", bad_interpreter.display()),
            bad_interpreter.display().to_string(),
            "No such file or directory",
        ),
        (
            format!("{}\n\n\n", a_directory.display()),
            a_directory.display().to_string(),
            "Permission denied",
        ),
        // One argument over the kernel's 128 KiB for a string.
        (
            format!("/usr/bin/sleep\n{huge}\n\n"),
            "/usr/bin/sleep".to_string(),
            "Argument list too long",
        ),
    ] {
        let err = ask(&handle, "spawn", &payload)
            .await
            .expect_err(&format!("{program} cannot run"));
        assert!(
            err.starts_with(&format!("could not start {program}: {reason}")),
            "{err}"
        );
        assert!(err.len() < 1024, "an error of {} bytes", err.len());
    }
    // Nothing ran, nothing is recorded, the resource is as it was.
    assert!(!dirs.private.join(".warden-pid").exists());
    assert_eq!(handle.status().state, ResourceState::Online);
    assert!(
        std::fs::read_to_string(dirs.private.join("service.log"))
            .unwrap_or_default()
            .is_empty(),
        "a failed start wrote to the service log"
    );
    // And a program that can run still starts.
    let pid = started_pid(
        &ask(&handle, "spawn", "/usr/bin/sleep\n600\n\n")
            .await
            .expect("sleep starts"),
    );
    assert!(dirs.private.join(".warden-pid").exists());
    ask(&handle, "stop", "").await.expect("sleep stops");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_holds_nothing_of_the_agents_but_its_own_stdio() {
    // This test process holds what an agent does (the runtime's epoll and
    // eventfds, the compiled plugins, other tests' files and sockets).
    let mut monitor = Monitor::default();
    let (handle, dirs) = hostile(&mut monitor, "fds", programs(&["/usr/bin/sleep"])).await;
    let pid = started_pid(
        &ask(&handle, "spawn", "/usr/bin/sleep\n600\n\n")
            .await
            .expect("sleep starts"),
    );
    assert_clean_start(
        pid,
        &dirs.private.join("service.log"),
        std::process::id() as i32,
    );
    ask(&handle, "stop", "").await.expect("sleep stops");
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_the_granted_environment_once_the_plugins_value_last() {
    let mut monitor = Monitor::default();
    let mut grants = programs(&["/usr/bin/env"]);
    grants.launch = LaunchGrants {
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("MODE".into(), "operator".into()),
        ],
        allow_env: vec!["MODE".into(), "GREETING".into()],
        run_as: None,
    };
    let (handle, dirs) = hostile(&mut monitor, "env-once", grants).await;
    ask(
        &handle,
        "spawn",
        "/usr/bin/env\n\n\nMODE=plugin GREETING=a=b",
    )
    .await
    .expect("env starts");
    let log = wait_until("env's output", ms(5000), || {
        std::fs::read_to_string(dirs.private.join("service.log"))
            .ok()
            .filter(|text| text.lines().count() >= 3)
    });
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["GREETING=a=b", "LANG=C.UTF-8", "MODE=plugin"],
        "{log}"
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_directory_swapped_for_a_link_while_services_start_never_leads_out() {
    let mut monitor = Monitor::default();
    let (handle, dirs) = hostile(&mut monitor, "swap-cwd", programs(&["/usr/bin/sleep"])).await;
    let data = dirs.data.canonicalize().expect("data dir");
    std::fs::create_dir(data.join("sub")).expect("a real directory");
    // What a plugin (or a service it runs) can do in /data: swap the
    // directory for a link to / and back, atomically, as fast as it can.
    std::os::unix::fs::symlink("/", data.join("escape")).expect("link");
    let swapping = Arc::new(AtomicBool::new(true));
    let swapper = {
        let swapping = swapping.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while swapping.load(Ordering::SeqCst) {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &data.join("sub"),
                    nix::fcntl::AT_FDCWD,
                    &data.join("escape"),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .expect("swap");
                swaps += 1;
            }
            swaps
        })
    };
    // Until both outcomes were seen a few times (the swapper may be off
    // the CPU for a while on a loaded machine), at most 400 starts.
    let (mut started, mut refused) = (0, 0);
    for _ in 0..400 {
        if started >= 10 && refused >= 10 {
            break;
        }
        match ask(&handle, "spawn", "/usr/bin/sleep\n600\nsub\n").await {
            Ok(answer) => {
                let pid = started_pid(&answer);
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("its cwd");
                assert!(
                    cwd.starts_with(&data) && cwd != data,
                    "a service started in {}, outside {}/sub",
                    cwd.display(),
                    data.display()
                );
                ask(&handle, "stop", "").await.expect("stops");
                started += 1;
            }
            Err(err) => {
                assert!(err.contains("working directory \"sub\""), "{err}");
                refused += 1;
            }
        }
    }
    swapping.store(false, Ordering::SeqCst);
    let swaps = swapper.join().expect("swapper");
    assert!(
        started >= 10 && refused >= 10,
        "{started} started and {refused} refused in {swaps} swaps: the race did not run"
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_code_and_a_signal_are_reported_as_they_happened() {
    let mut monitor = Monitor::default();
    for (name, script, how) in [
        ("exits-3", "exit 3\n", "exited with status 3"),
        ("killed-9", "kill -9 $$\n", "killed by signal 9"),
    ] {
        let (handle, dirs) = hostile(&mut monitor, name, programs(&["/bin/sh"])).await;
        std::fs::write(dirs.data.join("run.sh"), script).expect("script");
        ask(&handle, "spawn", "/bin/sh\nrun.sh\n\n")
            .await
            .expect("sh starts");
        wait_state(&handle, ResourceState::Failed, ms(10_000)).await;
        let reason = handle.status().reason.unwrap_or_default();
        assert!(
            reason.starts_with("managed process ") && reason.ends_with(how),
            "{reason}"
        );
    }
    monitor.shutdown().await;
}

/// The descriptors of `pid` without close-on-exec (`flags` in
/// `/proc/PID/fdinfo/FD`, octal; O_CLOEXEC is 02000000).
fn inheritable_fds(pid: i32) -> Vec<u32> {
    let mut fds: Vec<u32> = open_fds(pid)
        .into_iter()
        .filter(|(fd, _)| {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            // Closed meanwhile: not there to inherit.
            flags.is_some_and(|flags| flags & 0o2000000 == 0)
        })
        .map(|(fd, _)| fd)
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn a_real_agents_service_holds_only_its_stdio_in_a_group_of_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = r#"
[node]
name = "n"
data_dir = "data"

[plugins.process]
allow_programs = ["/usr/bin/sleep"]

[[group]]
name = "g1"

[[resource]]
name = "sleeper"
type = "process"
group = "g1"
properties = { program = "/usr/bin/sleep", args = "600" }
"#;
    let agent = AgentProcess::start(tmp.path(), config);
    let private = tmp.path().join("data/private/sleeper");
    let pid: i32 = wait_until("the service's pid record", Duration::from_secs(30), || {
        let record = std::fs::read_to_string(private.join(".warden-pid")).ok()?;
        record.split_whitespace().next()?.parse().ok()
    });
    assert_clean_start(pid, &private.join("service.log"), agent.pid());
    // The agent opened nothing without close-on-exec: what it holds so
    // is its stdio and what it inherited from this test process (whose
    // own parent may leave descriptors open, as a CI shell does).
    let mine = inheritable_fds(std::process::id() as i32);
    let agents: Vec<u32> = inheritable_fds(agent.pid())
        .into_iter()
        .filter(|fd| *fd > 2 && !mine.contains(fd))
        .collect();
    assert_eq!(
        agents,
        Vec::<u32>::new(),
        "the agent's inheritable descriptors"
    );
    agent.stop();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the service outlived its agent's stop"
    );
}
