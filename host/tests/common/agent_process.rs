//! A real `warden agent` process with its admin API, in a directory that
//! outlives it (so it can be stopped and started again on the same data),
//! driven through the `warden` CLI as an operator would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::process::Killed;
use super::{free_port, wait_until};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The CLI arguments that create resource "sleeper" in group "g", of the
/// built-in `process` type: `/usr/bin/sleep SECONDS`, whose argument tells
/// a test's service from any other test's.
pub fn create_sleeper_args(seconds: &str) -> Vec<String> {
    let args = [
        "resource",
        "create",
        "sleeper",
        "--type",
        "process",
        "--group",
        "g",
        "--prop",
        "program=/usr/bin/sleep",
        "--prop",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("args={seconds}"));
    args
}

/// `warden agent --config CONFIG` as written (its `[api]`, if any, the
/// caller's), its output dropped; killed if the test ends while it runs.
pub fn start_agent(config: &Path) -> Killed {
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    Killed(child)
}

/// A running agent; stopped with SIGTERM (its services with it), SIGKILL
/// after 10 s, if the test ends while it runs (`kill -9` is the test's to
/// send, explicitly).
pub struct AgentProcess {
    child: Child,
    pub api: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        super::process::stop_gently(&mut self.child);
    }
}

impl AgentProcess {
    /// Write `config` (a node configuration without `[api]`, which this
    /// adds on a free port) and a token into `dir`, start the agent there,
    /// and wait until it has started (its API answers, and no longer from
    /// the start's progress). Its log (stderr) is appended to `dir/agent.log`.
    pub fn start(dir: &Path, config: &str) -> AgentProcess {
        AgentProcess::start_binary(Path::new(WARDEN), dir, config)
    }

    /// [`AgentProcess::start`] with another build of the agent (a benchmark
    /// comparing builds); the CLI calls still use this build's.
    pub fn start_binary(binary: &Path, dir: &Path, config: &str) -> AgentProcess {
        AgentProcess::start_command(binary, dir, config, |_| {})
    }

    /// [`AgentProcess::start_binary`] with the agent's command set up
    /// further by `configure` first (limits or capabilities for the child,
    /// in a `pre_exec`).
    pub fn start_command(
        binary: &Path,
        dir: &Path,
        config: &str,
        configure: impl FnOnce(&mut Command),
    ) -> AgentProcess {
        let api = free_port();
        warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
        let config = format!("{config}\n[api]\nlisten = \"{api}\"\ntoken_file = \"token\"\n");
        std::fs::write(dir.join("node.toml"), config).expect("config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .expect("agent log");
        let mut command = Command::new(binary);
        command
            .args(["agent", "--config"])
            .arg(dir.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log);
        configure(&mut command);
        let mut child = command.spawn().expect("start the agent");
        wait_until("the admin API", Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the agent exited ({status}) before its API answered; its log:\n{}",
                    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
                );
            }
            has_started(api, TOKEN)
        });
        AgentProcess {
            child,
            api,
            dir: dir.to_path_buf(),
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, and wait for the agent to finish its shutdown.
    pub fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        wait_until("the agent to stop", Duration::from_secs(60), || {
            self.child.try_wait().ok().flatten()
        });
    }

    /// Run the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.api))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run the CLI")
    }

    /// How many resources `warden status` shows Online (0 while it does
    /// not answer).
    pub fn resources_online(&self) -> usize {
        let out = self.cli(&["status", "--json"]);
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return 0;
        };
        status["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["state"] == "Online")
            .count()
    }

    /// Run the CLI; it must succeed. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "warden {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `warden resource control RESOURCE CODE PAYLOAD`: its answer
    /// (trimmed), or what the CLI printed on failing.
    pub fn control(&self, resource: &str, code: &str, payload: &str) -> Result<String, String> {
        let out = self.cli(&["resource", "control", resource, code, payload]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// One resource as `warden status --json` shows it.
    pub fn resource(&self, name: &str) -> Option<Value> {
        let status: Value = serde_json::from_str(&self.ok(&["status", "--json"])).ok()?;
        status["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
    }

    /// Every line of the event history, parsed.
    pub fn history(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("data/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The agent's log so far (every run in this directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// `GET path` on the agent's API with `token`: the status code and the
/// body, `None` if nothing answered.
pub fn api_get(api: SocketAddr, token: &str, path: &str) -> Option<(u16, String)> {
    api_request(api, token, "GET", path, "").map(|answer| (answer.code, answer.body))
}

/// An answer of the agent's API, read whole.
pub struct ApiAnswer {
    pub code: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: String,
}

/// `METHOD path` with `body` (JSON, or empty) on the agent's API with
/// `token`; `None` if nothing answered.
pub fn api_request(
    api: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Option<ApiAnswer> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&api, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some(ApiAnswer {
        code,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// Whether the agent on `api` (token `token`) has started: its status
/// answers, and not from the start's progress (`starting`, which agents
/// from before it never send).
pub fn has_started(api: SocketAddr, token: &str) -> Option<()> {
    let (code, body) = api_get(api, token, "/v1/status")?;
    let status: Value = serde_json::from_str(&body).ok()?;
    (code == 200 && status.get("starting").is_none()).then_some(())
}
