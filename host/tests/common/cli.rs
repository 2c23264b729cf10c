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

/// Every step `warden plugin test` prints for a resource's whole life
/// cycle, in order of appearance.
pub const LIFE_CYCLE_STEPS: [&str; 9] = [
    "ok   load",
    "ok   validate",
    "ok   open+online",
    "ok   health checks",
    "ok   kill",
    "ok   recovery",
    "ok   offline",
    "ok   close",
    "PASS",
];

/// `out`, a `warden plugin test` run, succeeded and passed every step of
/// the life cycle; its stdout.
pub fn assert_life_cycle_passed(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "warden plugin test failed:\n{stdout}\n{stderr}"
    );
    for step in LIFE_CYCLE_STEPS {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
    stdout
}

/// The ```sh blocks of docs/sdk.md under the headings of `path`, each
/// found within the one before (`["## Python", "### Quick start"]`); a
/// section ends at the next heading of its level or above. Code blocks are
/// skipped when looking for headings (a shell comment is not one).
pub fn sdk_doc_sh_blocks(path: &[&str]) -> Vec<String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sdk.md");
    let doc = std::fs::read_to_string(&file).expect("docs/sdk.md");
    sh_blocks_under(&doc, path)
}

/// [`sdk_doc_sh_blocks`] of any markdown text.
pub fn sh_blocks_under(markdown: &str, path: &[&str]) -> Vec<String> {
    let mut lines: Vec<&str> = markdown.lines().collect();
    for heading in path {
        let level = heading_level(heading);
        let headings = outside_code(&lines);
        let start = headings
            .iter()
            .position(|&(_, line)| line == *heading)
            .map(|i| headings[i].0)
            .unwrap_or_else(|| panic!("no heading {heading:?} in docs/sdk.md"));
        let end = headings
            .iter()
            .map(|&(i, line)| (i, heading_level(line)))
            .find(|&(i, l)| i > start && (1..=level).contains(&l))
            .map_or(lines.len(), |(i, _)| i);
        lines = lines[start + 1..end].to_vec();
    }
    let mut blocks = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in lines {
        match &mut block {
            None if line == "```sh" => block = Some(Vec::new()),
            Some(body) if line.starts_with("```") => {
                blocks.push(body.join("\n").trim().to_string());
                block = None;
            }
            Some(body) => body.push(line),
            None => {}
        }
    }
    assert!(block.is_none(), "a ```sh block is not closed");
    blocks
}

/// The lines outside fenced code, with their indices.
fn outside_code<'a>(lines: &[&'a str]) -> Vec<(usize, &'a str)> {
    let mut fenced = false;
    let mut outside = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            outside.push((i, *line));
        }
    }
    outside
}

/// `## Title` is 2; a line that is not a heading is 0.
fn heading_level(line: &str) -> usize {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if hashes > 0 && line[hashes..].starts_with(' ') {
        hashes
    } else {
        0
    }
}
