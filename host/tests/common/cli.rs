//! The `warden` command line and Debian's redis-server as the tests of
//! plugin authors' tools use them (`sdk.rs`, `lang_py.rs`, `lang_js.rs`,
//! `plugin_test_cli.rs`): a CLI run with its output kept, and a real Redis
//! to test a Redis type against.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::agent_process::WARDEN;

/// Debian's redis-server (`.ci/run` installs it).
pub const REDIS: &str = "/usr/bin/redis-server";

/// Fail the test, saying how to install it, when redis-server is missing.
pub fn require_redis() {
    assert!(
        Path::new(REDIS).exists(),
        "{REDIS} is missing: these tests run Redis types against Debian's redis-server; \
         install it with `apt-get install -y redis-server` (and stop the service it starts)"
    );
}

/// `warden ARGS…` (no agent needed: `plugin test`, `plugin check`, …),
/// logging warnings only; its whole output.
pub fn warden(args: &[&str]) -> Output {
    Command::new(WARDEN)
        .args(args)
        .env("WARDEN_LOG", "warn")
        .output()
        .expect("run warden")
}

/// A command's stdout and stderr, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `PING` answered `+PONG` at `address`: a real Redis serves there.
pub fn redis_ping(address: &str) -> Result<(), String> {
    let mut redis = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    redis
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    redis.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(redis)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    match answer.trim_end() {
        "+PONG" => Ok(()),
        other => Err(format!("answered {other:?}")),
    }
}
