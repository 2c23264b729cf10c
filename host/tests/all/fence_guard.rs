//! The fence guard alone (`warden fence-guard`, the real binary), holding
//! real process groups: a vouch that runs out kills them, regular vouches
//! keep them, a goodbye leaves them, an agent gone without one has them
//! killed at the deadline; bad lines change nothing; a watchdog device
//! (the stand-in of `common::fake_watchdog`) armed only under a vouch and
//! never fed after it ran out. The agent's side, and a frozen agent in a
//! real cluster, are in `cluster/cluster.rs` and `cluster/watchdog.rs`.

use crate::common;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cluster::{WARDEN, alive};
use crate::common::wait_until;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A guard as the agent starts it, its stderr kept in a file.
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Guard {
    fn start() -> Guard {
        Guard::start_with(&[])
    }

    /// A guard given more arguments (a watchdog device).
    fn start_with(args: &[&str]) -> Guard {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("guard.log");
        let mut child = Command::new(WARDEN)
            .arg("fence-guard")
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .process_group(0)
            .spawn()
            .expect("start warden fence-guard");
        let stdin = child.stdin.take();
        Guard {
            child,
            stdin,
            log,
            _dir: dir,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the pipe is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("the guard reads");
    }

    /// Close the agent's end, as an agent that exits or dies does.
    fn close(&mut self) {
        self.stdin = None;
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_logged(&self, what: &str) {
        wait_until(
            &format!("the guard to log {what:?}"),
            Duration::from_secs(10),
            || self.log().contains(what).then_some(()),
        );
    }

    /// Wait for the guard to exit; its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_until("the guard to exit", Duration::from_secs(20), || {
            self.child.try_wait().expect("try_wait")
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service in a process group of its own, as the agent starts one: a
/// shell whose forked `sleep` shares its group. Dropping it kills the group.
struct Service {
    leader: Child,
    /// The process the shell forked, in the same group.
    forked: i32,
}

impl Service {
    fn start(dir: &Path) -> Service {
        let pid_file = dir.join(format!("forked-{}", rand_suffix()));
        let mut leader = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "sleep 1000 & echo $! > {}; wait",
                pid_file.display()
            ))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start sh");
        let forked = wait_until("the service to fork", Duration::from_secs(10), || {
            std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
        });
        assert!(leader.try_wait().expect("try_wait").is_none());
        Service { leader, forked }
    }

    fn pgid(&self) -> u32 {
        self.leader.id()
    }

    /// Both the leader and what it forked are alive.
    fn alive(&mut self) -> bool {
        self.leader.try_wait().expect("try_wait").is_none() && alive(self.forked)
    }

    /// Wait until the leader was killed by SIGKILL, and what it forked too.
    fn wait_killed(&mut self) {
        let status = wait_until("the service to be killed", Duration::from_secs(20), || {
            self.leader.try_wait().expect("try_wait")
        });
        assert_eq!(status.signal(), Some(9), "{status}");
        wait_until(
            "what the service forked to be killed",
            Duration::from_secs(10),
            || (!alive(self.forked)).then_some(()),
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.leader.id() as i32), Signal::SIGKILL);
        let _ = self.leader.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[test]
fn a_vouch_that_runs_out_kills_every_held_group_and_the_guard_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Guard::start();
    let mut first = Service::start(dir.path());
    let mut second = Service::start(dir.path());
    guard.send(&format!("hold {}", first.pgid()));
    guard.send(&format!("hold {}", second.pgid()));
    guard.send("vouch 300");

    first.wait_killed();
    second.wait_killed();
    guard.wait_logged("ran out");
    assert!(guard.running(), "the guard exited after firing");

    // No vouch in force: a group held now is killed at once.
    let mut late = Service::start(dir.path());
    guard.send(&format!("hold {}", late.pgid()));
    late.wait_killed();

    // Vouched for again, it holds as before.
    guard.send("vouch 60000");
    let mut again = Service::start(dir.path());
    guard.send(&format!("hold {}", again.pgid()));
    guard.send(&format!("release {}", again.pgid()));
    guard.send(&format!("hold {}", again.pgid()));
    guard.send("vouch 200");
    again.wait_killed();
    assert!(guard.running());
}

#[test]
fn regular_vouches_keep_the_held_groups_alive_and_a_released_group_is_spared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Guard::start();
    let mut kept = Service::start(dir.path());
    let mut released = Service::start(dir.path());
    guard.send(&format!("hold {}", kept.pgid()));
    guard.send(&format!("hold {}", released.pgid()));
    // Vouches of 1 s every 100 ms for three times as long.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        guard.send("vouch 1000");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(kept.alive(), "a held group was killed while vouched for");
    assert!(released.alive());

    // The vouching stops; only what is still held dies.
    guard.send(&format!("release {}", released.pgid()));
    kept.wait_killed();
    assert!(released.alive(), "a released group was killed");
    assert!(guard.running());
}

#[test]
fn after_a_goodbye_the_guard_exits_and_leaves_the_groups_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Guard::start();
    let mut service = Service::start(dir.path());
    guard.send(&format!("hold {}", service.pgid()));
    guard.send("vouch 200");
    guard.send("release-all");
    guard.close();
    let status = guard.wait_exit();
    assert!(status.success(), "{status}");
    // Gone, it can kill nothing: the service outlives the vouch.
    std::thread::sleep(Duration::from_millis(500));
    assert!(service.alive(), "the service died after the goodbye");
}

#[test]
fn an_agent_gone_without_a_goodbye_has_its_groups_killed_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Guard::start();
    let mut service = Service::start(dir.path());
    guard.send(&format!("hold {}", service.pgid()));
    guard.send("vouch 5000");
    guard.close();
    // It waits for the deadline rather than killing at once: the vouch was
    // given, and the guard keeps it.
    guard.wait_logged("without a goodbye");
    assert!(service.alive(), "killed before the vouch ran out");
    service.wait_killed();
    let status = guard.wait_exit();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_lines_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Guard::start();
    let mut service = Service::start(dir.path());
    guard.send("vouch 60000");
    guard.send(&format!("hold {}", service.pgid()));
    // Groups that would reach other processes: kill(-1) is everything, 0
    // the guard's own group; the guard's own group and its parent's.
    let own = guard.child.id();
    let parent = nix::unistd::getpgrp().as_raw();
    for line in [
        "hold 1".to_string(),
        "hold 0".to_string(),
        "hold -1".to_string(),
        format!("hold {own}"),
        format!("hold {parent}"),
        "vouch 99999999999".to_string(),
        "vouch soon".to_string(),
        "fire".to_string(),
        "hold-address 198.18.0.1/33 eth0".to_string(),
        "hold-address 198.18.0.1/24 no/slash".to_string(),
        "x".repeat(100_000),
    ] {
        guard.send(&line);
    }
    guard
        .stdin
        .as_mut()
        .expect("pipe")
        .write_all(b"hold \xff\xfe\n")
        .expect("write");
    for refused in [
        "\"hold 1\": a process group is a number above 1",
        "\"hold 0\"",
        "\"hold -1\"",
        &format!("refused to hold process group {own}"),
        &format!("refused to hold process group {parent}"),
        "\"vouch 99999999999\": a vouch longer than",
        "\"vouch soon\"",
        "\"fire\": not a command",
        "the prefix length is 1 to 32",
        "an interface name is 1 to 15 bytes",
        "a line longer than 128 bytes",
        "a line that is not UTF-8",
    ] {
        guard.wait_logged(refused);
    }
    // The vouch is never let run out here: were a refusal broken, the
    // guard would hold a group reaching far beyond this test.
    assert!(guard.running(), "bad input ended the guard");
    assert!(service.alive());
    assert!(alive(own as i32));
}

/// The guard's watchdog (1 s timeout): not armed for an owned group before
/// any vouch; armed and fed under a vouch; once the vouch runs out never
/// fed again, so the device fires; a new vouch and nothing owned: disarmed
/// by the magic close.
#[test]
fn the_watchdog_is_armed_only_under_a_vouch_and_never_fed_after_it_ran_out() {
    if common::fake_watchdog::unavailable(
        "the_watchdog_is_armed_only_under_a_vouch_and_never_fed_after_it_ran_out",
    ) {
        return;
    }
    use common::fake_watchdog::{Behaviour, FakeWatchdog, Op};
    let device = FakeWatchdog::mount(Behaviour::default());
    let path = device.path.display().to_string();
    let mut guard = Guard::start_with(&["--watchdog", &path, "--watchdog-timeout-s", "1"]);
    guard.send("owns 1");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        device.seen().is_empty(),
        "armed without a vouch: {:?}",
        device.seen()
    );

    guard.send("vouch 2000");
    wait_until("the guard to arm and feed", Duration::from_secs(10), || {
        (device.is_open() && device.feeds() > 2).then_some(())
    });
    let fired = wait_until("the device to fire", Duration::from_secs(10), || {
        device.fired_at()
    });
    guard.wait_logged("is no longer fed");
    // Past another timeout: no feed came after the vouch ran out.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = device.seen();
    assert!(
        seen.iter().all(|s| s.op != Op::Feed || s.at_ms < fired),
        "fed after the vouch ran out: {seen:?}"
    );
    assert!(
        device.is_open(),
        "closed (and so stopped) after the lapse: {seen:?}"
    );

    guard.send("vouch 60000");
    guard.send("owns 0");
    wait_until("the guard to disarm", Duration::from_secs(10), || {
        (!device.is_open()).then_some(())
    });
    assert_eq!(
        device.seen().last().map(|s| &s.op),
        Some(&Op::Close { stopped: true })
    );
    guard.wait_logged("disarmed: this node holds nothing");
    assert!(guard.running());
}
