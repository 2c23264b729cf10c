//! README.md works as written: every shell command it shows, in its order,
//! against a real `warden agent --dev` started as the README starts it
//! (and then the Exchange demo, once Ctrl-C has stopped that one),
//! with the binary under test on PATH as `warden` (what `cargo install`
//! gives a reader). How each command is run, and what its placeholders
//! stand for, is in `readme_commands.toml` beside this file; a README
//! command that table does not know fails the test.

use crate::common::dev_agent::{DevAgent, http_get, pid_in};
use crate::common::wait_until;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    placeholders: BTreeMap<String, String>,
    command: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    readme: String,
    how: How,
    expect: Option<String>,
    wait_for: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "kebab-case")]
enum How {
    Setup,
    Install,
    Agent,
    Run,
    Follow,
    Suite,
}

/// The commands of every shell block of `markdown`, in order: one a line,
/// comments cut off, blank lines skipped.
fn shell_commands(markdown: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_shell = None;
    for line in markdown.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            in_shell = match in_shell {
                Some(_) => None,
                None => Some(matches!(
                    info.trim(),
                    "sh" | "bash" | "shell" | "console" | "shell-session"
                )),
            };
            continue;
        }
        if in_shell != Some(true) {
            continue;
        }
        let command = match line.find(" #") {
            Some(at) => &line[..at],
            None => line,
        }
        .trim();
        if command.is_empty() || command.starts_with('#') {
            continue;
        }
        assert!(
            !command.ends_with('\\'),
            "README.md continues a command over lines, which this test does not join: {command}"
        );
        commands.push(command.to_string());
    }
    commands
}

/// Whether `c` would join a placeholder beside it into a longer word
/// (`PORT` is not a placeholder inside `SMTP_PORT`).
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Whether the placeholder `name` stands as a word of its own in `command`.
fn occurs(command: &str, name: &str) -> bool {
    command.match_indices(name).any(|(at, _)| {
        !is_word(command[..at].chars().next_back())
            && !is_word(command[at + name.len()..].chars().next())
    })
}

/// Replace each placeholder that stands as a word of its own.
fn substitute(command: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = command.to_string();
    for (name, value) in values {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(name.as_str()) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + name.len()..].chars().next();
            result.push_str(&rest[..at]);
            if is_word(before) || is_word(after) {
                result.push_str(name);
            } else {
                result.push_str(value);
            }
            rest = &rest[at + name.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The concrete value of a placeholder; `$...` ones are looked up.
fn resolve(value: &str, agent: Option<&DevAgent>) -> String {
    let Some(dynamic) = value.strip_prefix('$') else {
        return value.to_string();
    };
    let (what, arg) = dynamic.split_once(' ').unwrap_or((dynamic, ""));
    match what {
        "plugin" => match arg {
            "process" => env!("WARDEN_PLUGIN_PROCESS").to_string(),
            other => panic!("readme_commands.toml: no plugin file {other:?} known"),
        },
        "port" | "pid" => {
            let agent = agent.expect("a placeholder of a demo service before the agent runs");
            let addr = agent.service(arg);
            if what == "port" {
                return addr.port().to_string();
            }
            let body = wait_until(&format!("{arg} to answer"), Duration::from_secs(30), || {
                http_get(addr)
            });
            pid_in(&body).to_string()
        }
        other => panic!("readme_commands.toml: unknown dynamic value ${other}"),
    }
}

/// A `bash -c` as a reader's shell runs it: `warden` from `bin`, none of
/// the outer cargo's variables, the agent's address and token exported.
fn shell(command: &str, bin: &Path, agent: Option<&DevAgent>) -> Command {
    let mut run = Command::new("bash");
    run.args(["-euo", "pipefail", "-c", command])
        .current_dir(root())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("WARDEN_LOG", "warn");
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name == "RUSTFLAGS"
            || (name.starts_with("WARDEN_") && name != "WARDEN_LOG")
        {
            run.env_remove(&var);
        }
    }
    if let Some(agent) = agent {
        run.envs(agent.cli_env());
    }
    run
}

/// `cargo install --path DIR --locked`: DIR is the crate whose binary is
/// `warden`, and the workspace has the lock file `--locked` needs.
fn check_install(command: &str) {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&words[..2], ["cargo", "install"], "{command}");
    assert!(
        words.contains(&"--locked"),
        "{command}: without --locked, cargo install resolves the dependencies anew"
    );
    let dir = words
        .iter()
        .position(|w| *w == "--path")
        .and_then(|at| words.get(at + 1))
        .unwrap_or_else(|| panic!("{command}: no --path DIR"));
    let manifest = root().join(dir).join("Cargo.toml");
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{command}: {}: {e}", manifest.display())),
    )
    .expect("the crate's manifest");
    let bins: Vec<&str> = manifest["bin"]
        .as_array()
        .map(|bins| bins.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        bins.contains(&"warden"),
        "{command}: {dir} has no binary `warden` (its binaries: {bins:?})"
    );
    assert!(
        root().join("Cargo.lock").exists(),
        "{command}: no Cargo.lock"
    );
}

/// Wait until the group or resource `name` is in `state`.
fn wait_for(spec: &str, bin: &Path, agent: &DevAgent) {
    let (name, state) = spec
        .split_once(' ')
        .unwrap_or_else(|| panic!("wait_for {spec:?}: expected \"NAME STATE\""));
    wait_until(&format!("{name} {state}"), Duration::from_secs(60), || {
        let out = shell("warden status --json", bin, Some(agent))
            .output()
            .ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        let groups = status["groups"].as_array()?;
        let is = |v: &Value| {
            (v["name"] == name && v["state"].as_str()?.eq_ignore_ascii_case(state)).then_some(())
        };
        groups
            .iter()
            .chain(
                groups
                    .iter()
                    .flat_map(|g| g["resources"].as_array().into_iter().flatten()),
            )
            .find_map(is)
    });
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a command that does not end by itself: it must print `expect`,
/// then SIGINT (Ctrl-C) must end it.
fn follow(command: &str, expect: &str, bin: &Path, agent: &DevAgent) {
    let mut child = shell(&format!("exec {command}"), bin, Some(agent))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run bash");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    let found = loop {
        match seen.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(expect) => break true,
            Ok(line) => printed.push(line),
            Err(_) => break false,
        }
    };
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    let exited = wait_until("Ctrl-C to end it", Duration::from_secs(10), || {
        child.try_wait().ok().flatten()
    });
    assert!(found, "{command} did not print {expect:?}: {printed:#?}");
    let _ = exited;
}

#[test]
fn every_command_the_readme_shows_works_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let table: Table = toml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readme_commands.toml"),
        )
        .expect("readme_commands.toml"),
    )
    .expect("readme_commands.toml parses");
    let commands = shell_commands(&readme);
    assert!(
        commands.len() >= 10,
        "README.md's shell blocks: {commands:#?}"
    );
    for entry in &table.command {
        assert!(
            commands.contains(&entry.readme),
            "readme_commands.toml names a command README.md no longer shows: {}",
            entry.readme
        );
    }

    // `warden` on PATH, as `cargo install` leaves it.
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(WARDEN, bin.path().join("warden")).expect("link warden");

    let mut agent: Option<DevAgent> = None;
    let mut ran = Vec::new();
    for command in &commands {
        let entries: Vec<&Entry> = table
            .command
            .iter()
            .filter(|e| &e.readme == command)
            .collect();
        let [entry] = entries[..] else {
            panic!(
                "README.md shows a command this test does not know how to run \
                 (or knows twice): {command}\nTell host/tests/readme_commands.toml how."
            );
        };
        let values: BTreeMap<String, String> = table
            .placeholders
            .iter()
            .filter(|(name, _)| occurs(command, name))
            .map(|(name, value)| (name.clone(), resolve(value, agent.as_ref())))
            .collect();
        let concrete = substitute(command, &values);
        match entry.how {
            How::Setup | How::Suite => continue,
            How::Install => check_install(&concrete),
            How::Agent => {
                // A second agent (the Exchange demo) after the first is
                // stopped, as the README says, with Ctrl-C.
                if let Some(mut before) = agent.take() {
                    let status = before.stop(Signal::SIGINT);
                    assert!(status.success(), "the agent before {command}: {status:?}");
                }
                agent = Some(DevAgent::spawn(shell(
                    &format!("exec {concrete}"),
                    bin.path(),
                    None,
                )));
            }
            How::Run | How::Follow => {
                let agent = agent.as_ref().unwrap_or_else(|| {
                    panic!("README.md runs {command:?} before it starts an agent")
                });
                if let Some(spec) = &entry.wait_for {
                    wait_for(spec, bin.path(), agent);
                }
                if entry.how == How::Follow {
                    let expect = entry.expect.as_deref().unwrap_or("");
                    follow(&concrete, expect, bin.path(), agent);
                } else {
                    let out = shell(&concrete, bin.path(), Some(agent))
                        .output()
                        .expect("run bash");
                    assert!(
                        out.status.success(),
                        "README command failed: {command}\n(run as: {concrete})\n{}",
                        show(&out)
                    );
                    if let Some(expect) = &entry.expect {
                        assert!(
                            String::from_utf8_lossy(&out.stdout).contains(expect.as_str()),
                            "README command {command} did not print {expect:?}\n{}",
                            show(&out)
                        );
                    }
                }
            }
        }
        ran.push(command.clone());
    }
    assert!(
        ran.iter().any(|c| c.starts_with("warden events --follow")),
        "the README no longer shows --follow: {ran:#?}"
    );

    // "Ctrl-C takes the group offline in reverse dependency order and stops."
    let mut agent = agent.expect("README.md starts an agent");
    let status = agent.stop(Signal::SIGINT);
    assert!(status.success(), "the dev agent after Ctrl-C: {status:?}");
}

#[test]
fn the_shell_blocks_are_read_as_a_reader_types_them() {
    let markdown = "text\n```sh\nwarden status   # a comment\n\n# a whole comment\nwarden events\n```\n```toml\nname = \"x\"\n```\n```bash\nkill -9 PID\n```\n";
    assert_eq!(
        shell_commands(markdown),
        ["warden status", "warden events", "kill -9 PID"]
    );
    let values = BTreeMap::from([
        ("NAME".to_string(), "sleeper".to_string()),
        ("PORT".to_string(), "8080".to_string()),
    ]);
    assert_eq!(
        substitute(
            "warden resource get NAME; curl http://x:PORT/ NAMES",
            &values
        ),
        "warden resource get sleeper; curl http://x:8080/ NAMES"
    );
    assert!(occurs("curl http://x:PORT/", "PORT"));
    assert!(!occurs("curl http://x:SMTP_PORT/", "PORT"));
}
