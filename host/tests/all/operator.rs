//! The operator's tools end to end: a real agent with its admin API, driven
//! through the `warden` CLI as an operator would, every command family with
//! its bad input; and a real agent killed with SIGKILL in the middle of a
//! stream of configuration changes, which must lose none it acknowledged.

use crate::common::{free_port, wait_until};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// An agent with its admin API, killed when the test ends.
struct Agent {
    child: Child,
    api: SocketAddr,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration every test starts with: an admin API, no resources.
fn base_config(api: SocketAddr) -> String {
    format!(
        r#"
[node]
name = "solo"
data_dir = "data"

[api]
listen = "{api}"
token_file = "token"

[plugins.process]
allow_programs = ["/usr/bin/sleep"]
"#
    )
}

/// Start an agent in `dir` (kept across restarts) with the base
/// configuration.
fn start(dir: &Path, api: SocketAddr) -> Agent {
    start_with(dir, api, &base_config(api))
}

/// Write `config` and a token into `dir` and start the agent.
fn start_with(dir: &Path, api: SocketAddr, config: &str) -> Agent {
    warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
    std::fs::write(dir.join("node.toml"), config).expect("config");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.join("node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let agent = Agent {
        child,
        api,
        dir: dir.to_path_buf(),
    };
    wait_until("the agent to have started", Duration::from_secs(30), || {
        crate::common::agent_process::has_started(api, TOKEN)
    });
    agent
}

impl Agent {
    /// Run the CLI against this agent.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token(TOKEN, args)
    }

    fn cli_with_token(&self, token: &str, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.api))
            .env("WARDEN_TOKEN", token)
            .output()
            .expect("run the CLI")
    }

    /// Run the CLI; it must succeed. Returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "warden {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run the CLI; it must fail with `expected` in its error.
    fn refused(&self, args: &[&str], expected: &str) {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "warden {args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "warden {args:?}: {stderr:?} lacks {expected:?}"
        );
    }

    fn config(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("json status")
    }

    fn resource_state(&self, name: &str) -> Option<String> {
        let status = self.config();
        status["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
            .and_then(|r| r["state"].as_str().map(str::to_string))
    }

    fn desired(&self) -> Value {
        let out = Command::new("curl")
            .args(["-sf", "-H", &format!("Authorization: Bearer {TOKEN}")])
            .arg(format!("http://{}/v1/config", self.api))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

#[test]
fn every_command_family_works_through_the_cli_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(dir.path(), free_port());

    // Tokens.
    let out = agent.cli_with_token("not-the-token", &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong token"));

    // Groups and resources.
    assert_eq!(
        agent.ok(&["group", "create", "g1", "--offline"]).trim(),
        "group g1 created"
    );
    agent.refused(&["group", "create", "g1"], "group \"g1\" exists already");
    agent.refused(
        &["group", "create", "g2", "--failback", "sometimes"],
        "a window of hours",
    );
    agent.ok(&[
        "resource",
        "create",
        "r1",
        "--type",
        "process",
        "--group",
        "g1",
        "--prop",
        "program=/usr/bin/sleep",
        "--prop",
        "args=600",
    ]);
    let before = agent.desired();
    agent.refused(
        &[
            "resource",
            "create",
            "r2",
            "--type",
            "process",
            "--group",
            "g1",
            "--prop",
            "progrm=/usr/bin/sleep",
        ],
        "unknown property \"progrm\" for type process",
    );
    agent.refused(
        &[
            "resource", "create", "r2", "--type", "nope", "--group", "g1",
        ],
        "unknown type \"nope\"",
    );
    agent.refused(
        &[
            "resource",
            "create",
            "r2",
            "--type",
            "process",
            "--group",
            "g9",
            "--prop",
            "program=/usr/bin/sleep",
        ],
        "no group \"g9\"",
    );
    agent.refused(
        &[
            "resource",
            "create",
            "r2",
            "--type",
            "process",
            "--group",
            "g1",
            "--depends-on",
            "ghost",
            "--prop",
            "program=/usr/bin/sleep",
        ],
        "ghost",
    );
    assert_eq!(
        agent.desired(),
        before,
        "a refused change changed the configuration"
    );

    // Operating.
    agent.refused(&["group", "online", "nope"], "no group \"nope\"");
    agent.ok(&["group", "online", "g1"]);
    wait_until("r1 online", Duration::from_secs(20), || {
        (agent.resource_state("r1").as_deref() == Some("Online")).then_some(())
    });
    let status = agent.ok(&["status"]);
    assert!(status.contains("Group g1: online on solo"), "{status}");
    assert!(
        status.contains("r1") && status.contains("Online"),
        "{status}"
    );

    // Properties.
    let props = agent.ok(&["resource", "get", "r1"]);
    assert!(
        props.contains("program") && props.contains("/usr/bin/sleep"),
        "{props}"
    );
    agent.refused(
        &["resource", "set", "r1", "args=700"],
        "is not offline; take it offline first",
    );
    agent.refused(&["resource", "get", "nope"], "no resource \"nope\"");

    // Fault injection, events, what-if, metrics.
    agent.ok(&["resource", "fail", "r1"]);
    wait_until("r1 restarted", Duration::from_secs(20), || {
        let events = agent.ok(&["events", "--resource", "r1", "--event", "policy"]);
        events.contains("failure 1 of 3").then_some(())
    });
    agent.refused(&["resource", "fail", "nope"], "no resource \"nope\"");
    let what_if = agent.ok(&["what-if", "node-down", "solo"]);
    assert!(
        what_if.contains("no other possible owner is up"),
        "{what_if}"
    );
    assert_eq!(
        agent.resource_state("r1").as_deref().map(|s| s != "Failed"),
        Some(true)
    );
    let plugins = agent.ok(&["plugin", "list"]);
    assert!(
        plugins.lines().any(|l| l.starts_with("process ")),
        "{plugins}"
    );
    let metrics = Command::new("curl")
        .arg("-sf")
        .arg(format!("http://{}/metrics", agent.api))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("warden_restarts_total{resource=\"r1\"} 1"),
        "{metrics}"
    );

    // Node states.
    assert_eq!(agent.ok(&["node", "pause"]).trim(), "node solo paused");
    assert!(agent.ok(&["status"]).starts_with("Node solo: paused"));
    agent.ok(&["node", "resume"]);
    agent.ok(&["node", "recovery-off"]);
    assert!(agent.ok(&["status"]).contains("recovery actions off"));
    agent.ok(&["node", "recovery-on"]);

    // Server component states: the seed's example, through the CLI.
    agent.refused(
        &[
            "component",
            "set",
            "ServerWideOfline",
            "Inactive",
            "--requester",
            "Maintenance",
        ],
        "ServerWideOfline",
    );
    agent.refused(
        &[
            "component",
            "set",
            "ServerWideOffline",
            "Inactive",
            "--requester",
            "Nobody",
        ],
        "Nobody",
    );
    agent.ok(&[
        "component",
        "set",
        "ServerWideOffline",
        "Inactive",
        "--requester",
        "Maintenance",
    ]);
    agent.ok(&[
        "component",
        "set",
        "ServerWideOffline",
        "Inactive",
        "--requester",
        "Functional",
    ]);
    let answer = agent.ok(&[
        "component",
        "set",
        "ServerWideOffline",
        "Active",
        "--requester",
        "Maintenance",
    ]);
    assert!(answer.contains("effective Inactive"), "{answer}");
    let list = agent.ok(&["component", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("ServerWideOffline") && l.contains("Inactive")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("RecoveryActionsEnabled") && l.contains("Active")),
        "{list}"
    );
    agent.ok(&[
        "component",
        "set",
        "ServerWideOffline",
        "Active",
        "--requester",
        "Functional",
    ]);
    agent.ok(&[
        "component",
        "set",
        "RecoveryActionsEnabled",
        "Inactive",
        "--requester",
        "Sidelined",
    ]);
    assert!(agent.ok(&["status"]).contains("recovery actions off"));
    agent.ok(&[
        "component",
        "set",
        "RecoveryActionsEnabled",
        "Active",
        "--requester",
        "Sidelined",
    ]);

    // Deleting: refused while in use, then in order.
    agent.refused(&["group", "delete", "g1"], "still holds resource \"r1\"");
    agent.refused(
        &["resource", "delete", "r1"],
        "resource r1 is running: take it offline before removing it",
    );
    agent.ok(&["group", "offline", "g1"]);
    wait_until("r1 offline", Duration::from_secs(20), || {
        (agent.resource_state("r1").as_deref() == Some("Offline")).then_some(())
    });
    agent.ok(&["resource", "set", "r1", "args=700"]);
    assert!(agent.ok(&["resource", "get", "r1"]).contains("700"));
    agent.ok(&["resource", "delete", "r1"]);
    agent.ok(&["group", "delete", "g1"]);
    agent.refused(&["group", "delete", "g1"], "no group \"g1\"");

    // The OpenAPI document the agent serves describes routes it has: each
    // documented path and method reaches a handler (a path no route has is
    // answered "no route ...", a method a route lacks with a 405).
    let doc = curl(agent.api, "GET", "/v1/openapi.json").1;
    let doc: Value = serde_json::from_str(&doc).expect("openapi json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 16, "{paths:?}");
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            let verb = operation["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "verb"))
                .and_then(|p| p["schema"]["enum"][0].as_str())
                .unwrap_or("x");
            let mut concrete = path
                .replace("{name}", "nothing-here")
                .replace("{verb}", verb);
            // A stream would not end: a bad query gets its JSON refusal.
            if operation["responses"]["200"]["content"]["text/event-stream"].is_object() {
                concrete.push_str("?after=not-a-number");
            }
            let (code, body) = curl(agent.api, &method.to_uppercase(), &concrete);
            assert!(code != 405, "{method} {path}: 405");
            assert!(
                !(code == 404 && body.contains("no route")),
                "{method} {path}: no such route: {body}"
            );
        }
    }
    let _ = agent.dir.as_path();
}

/// One request with the token; returns (status, body).
fn curl(api: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "content-type: application/json"])
        .args([
            "--data-binary",
            if method == "GET" || method == "DELETE" {
                ""
            } else {
                "{}"
            },
        ])
        .arg(format!("http://{api}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// One raw HTTP/1.1 exchange with the token: `head` is the request line's
/// method and path (sent as given, bytes and all), `body` what follows the
/// headers, `length` the Content-Length to claim. Returns the status, the
/// headers (lower-case names) and the body.
fn raw_request(api: SocketAddr, head: &[u8], body: &[u8], length: usize) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut request = head.to_vec();
    request.extend_from_slice(
        format!(
            " HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\
             connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    // The server may answer (and close) before it has read a body it
    // refuses by its length alone: the answer is what counts.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, head.to_lowercase(), body.to_string())
}

/// What the schemathesis run (host/tests/all/api_fuzz.rs) found: requests the
/// API could not read were answered by axum in plain text (or not at all),
/// and a resource's memory limit and a group's failback window were taken
/// in forms the API's document refuses, a huge memory limit wrapping
/// around to a limit of 0 MiB. Each is now refused in the one documented
/// shape, `{"error": message}`, naming what is wrong.
#[test]
fn the_api_answers_every_refusal_in_json_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(dir.path(), free_port());
    let refused = |head: &[u8], body: &[u8], length: usize, status: u16, needle: &str| {
        let (code, headers, answer) = raw_request(agent.api, head, body, length);
        let shown = String::from_utf8_lossy(head);
        assert_eq!(code, status, "{shown}: {answer}");
        assert!(
            headers.contains("content-type: application/json"),
            "{shown}: not JSON: {headers}"
        );
        let answer: Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{shown}: {e}: {answer:?}"));
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{shown}: {message:?} lacks {needle:?}"
        );
        headers
    };
    let not_utf8 = b"{\"name\": \"\xff\xfe\"}";
    refused(
        b"POST /v1/groups",
        not_utf8,
        not_utf8.len(),
        400,
        "valid UTF-8",
    );
    refused(
        b"DELETE /v1/resources/%FF",
        b"",
        0,
        400,
        "Invalid UTF-8 in `name`",
    );
    // One byte over: the agent reads it all before it refuses, so the
    // connection closes cleanly and the answer arrives.
    let over = vec![b' '; (1 << 20) + 1];
    refused(
        b"PUT /v1/resources/r1/properties",
        &over,
        over.len(),
        413,
        "larger than the limit of 1048576 bytes",
    );
    refused(b"GET /v1/nothing", b"", 0, 404, "no route GET /v1/nothing");
    let headers = refused(
        b"PUT /v1/status",
        b"",
        0,
        405,
        "PUT is not allowed on /v1/status",
    );
    assert!(headers.contains("allow: get"), "{headers}");

    // A memory limit is 1 to 1024 MiB; 2^44 MiB was taken and became 0.
    for mib in ["0", "1025", "17592186044416"] {
        let body = format!(
            r#"{{"name": "big", "type": "process", "memory_limit_mib": {mib},
                "properties": {{"program": "/usr/bin/sleep", "args": "60"}}}}"#
        );
        refused(
            b"POST /v1/resources",
            body.as_bytes(),
            body.len(),
            422,
            &format!(
                "resource \"big\": memory_limit_mib: {mib} is not a memory limit: give 1 to 1024 (MiB)"
            ),
        );
    }
    // A failback window is two hours, as digits alone.
    for failback in [" 22-6", "22 - 6", "+5-6", "005-6", "5-5"] {
        let body = format!(r#"{{"name": "g", "online": false, "failback": "{failback}"}}"#);
        refused(
            b"POST /v1/groups",
            body.as_bytes(),
            body.len(),
            422,
            "failback",
        );
    }
    agent.ok(&["group", "create", "g", "--offline", "--failback", "22-06"]);
    assert_eq!(
        agent.desired()["resources"],
        serde_json::json!([]),
        "a refused resource was kept"
    );
}

/// The names of the groups in `agent`'s desired configuration.
fn desired_groups(agent: &Agent) -> Vec<String> {
    agent.desired()["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect()
}
#[test]
fn acknowledged_changes_survive_sigkill_of_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let mut acknowledged: Vec<String> = Vec::new();
    // A seed from the clock, printed, so a failure can be looked into.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    println!("seed {seed}");
    for round in 0..3u32 {
        let agent = start(dir.path(), api);
        // Everything acknowledged before is there.
        let groups = desired_groups(&agent);
        for name in &acknowledged {
            assert!(
                groups.contains(name),
                "round {round}: acknowledged group {name} lost; have {groups:?}"
            );
        }
        // A stream of changes, killed after a pseudo-random number of them
        // while one is in flight.
        let kill_after = 3 + (seed.wrapping_mul(round + 1) % 7) as usize;
        let pid = agent.child.id() as i32;
        let mut in_flight = Vec::new();
        for i in 0..kill_after + 1 {
            let name = format!("g{round}-{i}");
            if i == kill_after {
                // Send it, and kill the agent while it is being handled.
                let mut cli = Command::new(WARDEN)
                    .args(["group", "create", &name, "--offline"])
                    .env("WARDEN_API", format!("http://{api}"))
                    .env("WARDEN_TOKEN", TOKEN)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("cli");
                std::thread::sleep(Duration::from_millis(u64::from(seed % 20)));
                kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 the agent");
                if cli.wait().map(|s| s.success()).unwrap_or(false) {
                    acknowledged.push(name.clone());
                }
                in_flight.push(name);
            } else {
                let out = agent.cli(&["group", "create", &name, "--offline"]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                acknowledged.push(name);
            }
        }
        drop(agent);
    }
    let agent = start(dir.path(), api);
    let groups = desired_groups(&agent);
    for name in &acknowledged {
        assert!(
            groups.contains(name),
            "acknowledged group {name} lost; have {groups:?}"
        );
    }
}

#[test]
fn a_service_left_running_by_a_killed_agent_is_adopted_not_run_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let agent = start(dir.path(), api);
    create_sleeper(&agent, 987);
    wait_until("sleeper online", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    let first = sleepers();
    assert_eq!(first.len(), 1, "{first:?}");
    kill(Pid::from_raw(agent.child.id() as i32), Signal::SIGKILL).expect("kill -9");
    drop(agent);
    // The service outlived its agent.
    assert_eq!(sleepers(), first);

    let agent = start(dir.path(), api);
    wait_until("sleeper online again", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    assert_eq!(sleepers(), first, "the same process, adopted");
    // An adopted process that dies is noticed like any other.
    kill(Pid::from_raw(first[0]), Signal::SIGKILL).expect("kill the service");
    wait_until("a new sleeper", Duration::from_secs(20), || {
        let now = sleepers();
        (now.len() == 1 && now != first).then_some(())
    });
    agent.ok(&["group", "offline", "g"]);
    wait_until("sleeper stopped", Duration::from_secs(20), || {
        sleepers().is_empty().then_some(())
    });
}

#[test]
fn leave_running_restarts_the_agent_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let agent = start(dir.path(), api);
    create_sleeper(&agent, 986);
    let running = || sleepers_with(986);
    // Online, not merely running: the kill comes after the pid record
    // names the service (killed between its start and the record, the
    // agent leaves it to be stopped, not adopted: `kill_at_spawn.rs`).
    wait_until("sleeper online", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    let first = running();
    assert_eq!(first.len(), 1, "{first:?}");
    drop(agent);
    // Same configuration, with on_shutdown = "leave-running".
    let text = std::fs::read_to_string(dir.path().join("node.toml")).expect("config");
    let mut agent = start_with(
        dir.path(),
        api,
        &text.replace(
            "name = \"solo\"",
            "name = \"solo\"\non_shutdown = \"leave-running\"",
        ),
    );
    wait_until("sleeper online", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    kill(Pid::from_raw(agent.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = agent.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(running(), first, "the service was left running");
    let agent = start_with(dir.path(), api, &text);
    wait_until("sleeper adopted", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    assert_eq!(running(), first, "adopted, not restarted");
    agent.ok(&["group", "offline", "g"]);
    wait_until("sleeper stopped", Duration::from_secs(20), || {
        running().is_empty().then_some(())
    });
}

fn sleepers() -> Vec<i32> {
    sleepers_with(987)
}

/// Group "g" holding resource "sleeper": `/usr/bin/sleep SECONDS`, whose
/// argument tells this test's process from any other test's.
fn create_sleeper(agent: &Agent, seconds: u32) {
    agent.ok(&["group", "create", "g"]);
    let args = crate::common::agent_process::create_sleeper_args(&seconds.to_string());
    agent.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The pids running `/usr/bin/sleep SECONDS`.
fn sleepers_with(seconds: u32) -> Vec<i32> {
    crate::common::process::pids_of(&format!("^/usr/bin/sleep {seconds}$"))
}

#[test]
fn group_names_are_checked_like_resource_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(dir.path(), free_port());
    for bad in ["", "..", "a/b", "a\nb", "x\u{1b}[2J", &"g".repeat(65)] {
        agent.refused(
            &["group", "create", bad, "--offline"],
            "the name must be 1 to 64 characters of a-z, A-Z, 0-9, - and _",
        );
    }
    let groups = agent.desired()["groups"].clone();
    assert_eq!(groups, serde_json::json!([]), "a bad group was kept");
    assert_eq!(
        agent.ok(&["group", "create", "ok-1_A", "--offline"]).trim(),
        "group ok-1_A created"
    );
}

#[test]
fn the_agent_refuses_a_token_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(dir.path().join("node.toml"), base_config(free_port())).expect("config");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.path().join("node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let mut agent = Agent {
        child,
        api: free_port(),
        dir: dir.path().to_path_buf(),
    };
    let status = wait_until("the agent to refuse", Duration::from_secs(30), || {
        agent.child.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let mut stderr = String::new();
    if let Some(mut pipe) = agent.child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
    }
    let path = token.display();
    assert!(
        stderr.contains(&format!("the API token file {path} has mode 0644"))
            && stderr.contains(&format!("chmod 600 {path}")),
        "{stderr}"
    );
}

/// A running `warden events --follow`: what it has printed so far, line
/// by line, on stdout and on stderr.
struct Follower {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Follower {
    fn start(mut command: Command) -> Follower {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warden events --follow");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().expect("lines").push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Follower {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("lines").clone()
    }

    /// Wait until a line of `stream` contains `text`.
    fn wait_for(&self, stream: &std::sync::Mutex<Vec<String>>, text: &str) {
        wait_until(text, Duration::from_secs(30), || {
            stream
                .lock()
                .expect("lines")
                .iter()
                .any(|line| line.contains(text))
                .then_some(())
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A zone 5:30 east of UTC without summer time (POSIX TZ), so that times
/// printed in it differ from UTC's.
const TZ: &str = "IST-5:30";

/// What GNU date prints for `ms` since the epoch in [`TZ`]: the oracle the
/// CLI's times are held to.
fn date_in_tz(ms: u64, format: &str) -> String {
    let out = Command::new("date")
        .env("TZ", TZ)
        .arg("-d")
        .arg(format!("@{}.{:03}", ms / 1000, ms % 1000))
        .arg(format!("+{format}"))
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn events_are_printed_in_local_time_and_followed_across_an_agent_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let agent = start(dir.path(), api);
    create_sleeper(&agent, 985);
    wait_until("sleeper online", Duration::from_secs(20), || {
        (agent.resource_state("sleeper").as_deref() == Some("Online")).then_some(())
    });
    let cli = |args: &[&str]| {
        let mut command = Command::new(WARDEN);
        command
            .args(args)
            .env("WARDEN_API", format!("http://{api}"))
            .env("WARDEN_TOKEN", TOKEN)
            .env("TZ", TZ);
        command
    };
    let follower = Follower::start(cli(&[
        "events",
        "--follow",
        "--resource",
        "sleeper",
        "--limit",
        "1000",
    ]));
    // The history first, then a new event as it happens.
    follower.wait_for(&follower.stdout, "to=Online");
    agent.ok(&["resource", "fail", "sleeper"]);
    follower.wait_for(&follower.stdout, "failed by the operator");

    // The agent killed: said on stderr; back: said, and followed again.
    drop(agent);
    follower.wait_for(&follower.stderr, &format!("lost the agent at http://{api}"));
    let before = follower.stdout().len();
    let agent = start(dir.path(), api);
    follower.wait_for(&follower.stderr, "answers again");
    agent.ok(&["resource", "fail", "sleeper"]);
    wait_until(
        "a failure after the restart",
        Duration::from_secs(30),
        || {
            follower.stdout()[before..]
                .iter()
                .any(|line| line.contains("failed by the operator"))
                .then_some(())
        },
    );

    // Nothing missed, nothing twice: what it printed is the history.
    let listing = || {
        let out = cli(&["events", "--resource", "sleeper", "--limit", "1000"])
            .output()
            .expect("warden events");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_until(
        "the followed events to be the history",
        Duration::from_secs(30),
        || (follower.stdout() == listing()).then_some(()),
    );

    // Each time is the event's instant in TZ: local in the human view,
    // RFC 3339 with the offset beside the raw milliseconds in --json.
    let out = cli(&[
        "events",
        "--resource",
        "sleeper",
        "--limit",
        "1000",
        "--json",
    ])
    .output()
    .expect("warden events --json");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let human = listing();
    assert_eq!(events.len(), human.len(), "{events:?}\n{human:?}");
    assert!(events.len() >= 4, "{events:?}");
    for (event, line) in events.iter().zip(&human) {
        let ms = event["at_ms"].as_u64().expect("at_ms kept");
        assert_eq!(
            event["at"].as_str(),
            Some(date_in_tz(ms, "%Y-%m-%dT%H:%M:%S.%3N%:z").as_str()),
            "{event}"
        );
        assert!(
            event["at"]
                .as_str()
                .is_some_and(|at| at.ends_with("+05:30"))
        );
        let local = date_in_tz(ms, "%Y-%m-%d %H:%M:%S.%3N");
        assert!(
            line.starts_with(&format!("{local} sleeper ")),
            "{line:?} for {event}"
        );
    }

    // Ctrl-C ends it.
    let mut follower = follower;
    kill(Pid::from_raw(follower.child.id() as i32), Signal::SIGINT).expect("SIGINT");
    wait_until("--follow to end on Ctrl-C", Duration::from_secs(10), || {
        follower.child.try_wait().ok().flatten()
    });

    // What retrying cannot mend ends it at once, with the reason.
    let out = cli(&["events", "--follow"])
        .env("WARDEN_TOKEN", "not-the-token")
        .output()
        .expect("warden events --follow");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong token"),
        "{out:?}"
    );
    let out = cli(&["events", "--follow"])
        .env("WARDEN_API", format!("http://{}", free_port()))
        .output()
        .expect("warden events --follow");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not reach the agent"),
        "{out:?}"
    );

    agent.ok(&["group", "offline", "g"]);
    wait_until("sleeper stopped", Duration::from_secs(20), || {
        sleepers_with(985).is_empty().then_some(())
    });
}
