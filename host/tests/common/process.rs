//! Processes a test starts: killed if the test ends first, stopped the way
//! an operator stops them, and found by their command line.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A child process killed (and reaped) when dropped: nothing a test
/// started outlives it, whichever way the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// SIGTERM, as systemd stops the agent, then its exit status; panics
    /// if it has not exited `within`.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not stop within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Stop `child` as an operator stops a service, SIGTERM, so that what it
/// started goes with it (an agent stops its services, an nginx master its
/// workers; a SIGKILL leaves them running, and a test that ends without
/// stopping its process would leak them); SIGKILL only when it has not
/// exited 10 s later. Reaped either way; nothing happens if it has exited.
pub fn stop_gently(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A child process stopped with [`stop_gently`] when dropped.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        stop_gently(&mut self.0);
    }
}

/// Every event of the history file at `path` (`events.jsonl`), parsed; a
/// missing file is none, a line that does not parse is skipped.
pub fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The oldest process whose command line contains `pattern` (`pgrep -o
/// -f`): name something only this test's process has, such as its port.
pub fn oldest_pid_of(pattern: &str) -> Option<i32> {
    let out = Command::new("pgrep")
        .args(["-o", "-f", pattern])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// Every process whose command line matches the regular expression
/// `pattern` (`pgrep -f`).
pub fn pids_of(pattern: &str) -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
