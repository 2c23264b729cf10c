//! Resource types written in Python (issue 18): the SDK in sdk/python and
//! examples/redis-type-py, built with the pinned componentize-py, taken
//! through `warden plugin test` against Debian's redis-server and through a
//! running agent (drop-in, Online, a kill -9 of redis-server noticed and
//! restarted, a hot swap to a new version while the resource stays Online);
//! a Python exception that escapes a call is reported with its message and
//! the next call runs; the SDK's `http_check` (contract 0.5.0) reaches the
//! agent's, its connection kept across checks, a miss naming the status.
//!
//! componentize-py comes from `$WARDEN_COMPONENTIZE_PY`, else
//! /opt/warden-componentize-py (where .ci/run installs it), else `PATH`, at
//! the version examples/redis-type-py/requirements.txt pins. Without it
//! each test prints why it is skipped, unless `WARDEN_LANG_REQUIRED` is
//! set (as .ci/run sets it), which makes a missing tool a failure.

use crate::common::agent_process::{AgentProcess, WARDEN};
use crate::common::cli::{
    REDIS, assert_life_cycle_passed, redis_ping, require_redis, sdk_doc_sh_blocks, text, warden,
};
use crate::common::http_server::{answer_with_length, http_server_by_head};
use crate::common::{free_port, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where .ci/run installs the pinned tool.
const CI_TOOL: &str = "/opt/warden-componentize-py/bin/componentize-py";
/// The contract the components are built against: the repository's, the
/// newest this agent runs (the SDK's checks use the probe import where the
/// contract has it, WASI sockets before).
const WIT: &str = "wit";
/// A compile of a whole interpreter (18 MB) takes about a minute on the
/// loaded two-core test machine; the agent loads a dropped file within it.
const LOAD_WITHIN: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository root")
        .to_path_buf()
}

/// The version examples/redis-type-py/requirements.txt pins.
fn pinned_version() -> String {
    let file = root().join("examples/redis-type-py/requirements.txt");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|err| panic!("read {}: {err}", file.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .unwrap_or_else(|| panic!("{} pins no componentize-py", file.display()))
        .to_string()
}

/// The pinned componentize-py, or why there is none.
fn find_tool() -> Result<PathBuf, String> {
    let pinned = pinned_version();
    let candidates: Vec<PathBuf> = match std::env::var_os("WARDEN_COMPONENTIZE_PY") {
        Some(path) => vec![PathBuf::from(path)],
        None => vec![PathBuf::from(CI_TOOL), PathBuf::from("componentize-py")],
    };
    let mut seen = Vec::new();
    for tool in candidates {
        match Command::new(&tool).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if version == format!("componentize-py {pinned}") {
                    return Ok(tool);
                }
                seen.push(format!("{} is {version:?}", tool.display()));
            }
            Ok(out) => seen.push(format!(
                "{} --version failed: {}",
                tool.display(),
                out.status
            )),
            Err(err) => seen.push(format!("{}: {err}", tool.display())),
        }
    }
    Err(format!(
        "componentize-py {pinned} is not installed ({}); .ci/run installs it in /opt/warden-componentize-py",
        seen.join("; ")
    ))
}

/// The tool, or `None` after printing why the test `name` is skipped;
/// with `WARDEN_LANG_REQUIRED` set a missing tool fails the test.
fn tool_or_skip(name: &str) -> Option<PathBuf> {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match TOOL.get_or_init(find_tool) {
        Ok(tool) => Some(tool.clone()),
        Err(why) if std::env::var_os("WARDEN_LANG_REQUIRED").is_some() => {
            panic!("{name}: WARDEN_LANG_REQUIRED is set and {why}")
        }
        Err(why) => {
            println!("SKIPPED {name}: {why}");
            None
        }
    }
}

/// target/wasm-examples (the Rust examples' directory), where the Python
/// components are built too.
fn out_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
        .join("wasm-examples");
    std::fs::create_dir_all(&dir).expect("target/wasm-examples");
    dir
}

fn check_built(what: &str, out: &Output, wasm: &Path) {
    assert!(
        out.status.success() && wasm.exists(),
        "building {what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// examples/redis-type-py built by its build.sh, as docs/sdk.md says; once
/// per test binary.
fn redis_py(tool: &Path) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let wasm = out_dir().join("redis_type_py.wasm");
            let out = Command::new(root().join("examples/redis-type-py/build.sh"))
                .arg(&wasm)
                .env("COMPONENTIZE_PY", tool)
                .env("WARDEN_WIT", root().join(WIT))
                .output()
                .expect("run build.sh");
            check_built("examples/redis-type-py", &out, &wasm);
            wasm
        })
        .clone()
}

/// componentize-py on the app module `app` of the `paths`, as build.sh
/// runs it.
fn componentize(tool: &Path, paths: &[&Path], wasm: &Path) -> Output {
    let mut build = Command::new(tool);
    build
        .arg("-d")
        .arg(root().join(WIT))
        .args(["-w", "plugin", "componentize"]);
    for path in paths {
        build.arg("-p").arg(path);
    }
    build.arg("app").arg("-o").arg(wasm);
    build.output().expect("run componentize-py")
}

/// The example with its VERSION changed to `version`: a new version of the
/// same type, for a hot swap.
fn redis_py_version(tool: &Path, version: &str) -> PathBuf {
    let src = tempfile::tempdir().expect("tempdir");
    let app = std::fs::read_to_string(root().join("examples/redis-type-py/app.py"))
        .expect("examples/redis-type-py/app.py");
    let changed = app.replace("VERSION = \"0.1.0\"", &format!("VERSION = \"{version}\""));
    assert_ne!(app, changed, "app.py sets VERSION = \"0.1.0\"");
    std::fs::write(src.path().join("app.py"), changed).expect("write app.py");
    let wasm = out_dir().join(format!("redis_type_py-{version}.wasm"));
    let sdk = root().join("sdk/python");
    let out = componentize(tool, &[src.path(), &sdk], &wasm);
    check_built(&format!("redis-type-py {version}"), &out, &wasm);
    wasm
}

/// The raw-bindings test plugin of lang_py/raises.
fn py_raises(tool: &Path) -> PathBuf {
    let wasm = out_dir().join("py_raises.wasm");
    let src = root().join("host/tests/all/lang_py/raises");
    let out = componentize(tool, &[&src], &wasm);
    check_built("lang_py/raises", &out, &wasm);
    wasm
}

/// The SDK test plugin of lang_py/web: its check is an HTTP check.
fn py_web(tool: &Path) -> PathBuf {
    let wasm = out_dir().join("py_web.wasm");
    let src = root().join("host/tests/all/lang_py/web");
    let sdk = root().join("sdk/python");
    let out = componentize(tool, &[&src, &sdk], &wasm);
    check_built("lang_py/web", &out, &wasm);
    wasm
}

#[test]
fn plugin_test_runs_the_python_redis_type_through_its_life_cycle() {
    let Some(tool) = tool_or_skip("plugin_test_runs_the_python_redis_type_through_its_life_cycle")
    else {
        return;
    };
    require_redis();
    let wasm = redis_py(&tool);
    let address = free_port().to_string();
    let out = warden(&[
        "plugin",
        "test",
        wasm.to_str().expect("a UTF-8 path"),
        "--prop",
        &format!("address={address}"),
        "--grant-program",
        REDIS,
    ]);
    let stdout = assert_life_cycle_passed(&out);
    assert!(
        stdout.contains("redis 0.1.0"),
        "redis 0.1.0 missing from:\n{stdout}"
    );
    assert!(
        redis_ping(&address).is_err(),
        "redis still runs after offline"
    );

    // Its check fails when nothing answers: online gives up at its
    // start-up timeout with the check's reason (the program exits at once).
    let out = warden(&[
        "plugin",
        "test",
        wasm.to_str().expect("a UTF-8 path"),
        "--prop",
        &format!("address={address}"),
        "--prop",
        "program=/usr/bin/false",
        "--grant-program",
        "/usr/bin/false",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "passed with /usr/bin/false:\n{stdout}"
    );
    assert!(
        stderr.contains("/usr/bin/false exited with status 1"),
        "{stdout}\n{stderr}"
    );
}

/// The property table of `warden plugin check FILE`, without the first
/// line (name and version).
fn property_table(wasm: &Path) -> String {
    let out = warden(&["plugin", "check", wasm.to_str().expect("a UTF-8 path")]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "plugin check {}: {stderr}",
        wasm.display()
    );
    stdout.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_python_redis_type_declares_what_the_rust_one_does() {
    let Some(tool) = tool_or_skip("the_python_redis_type_declares_what_the_rust_one_does") else {
        return;
    };
    let python = property_table(&redis_py(&tool));
    let rust = property_table(&crate::sdk::redis_plugin());
    assert_eq!(python, rust, "the two Redis types differ");
    for name in [
        "program",
        "args",
        "address",
        "answer-timeout-ms",
        "stop-grace-ms",
    ] {
        assert!(python.contains(name), "{name} missing:\n{python}");
    }
}

/// An agent with a plugins directory and redis-server allowed; its
/// resources are taken offline (SIGTERM) when the test ends.
struct RedisAgent {
    agent: Option<AgentProcess>,
    plugins: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for RedisAgent {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
    }
}

impl RedisAgent {
    fn start(types: &[&str]) -> RedisAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        let mut config = String::from(
            "[node]\nname = \"solo\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n",
        );
        for name in types {
            config.push_str(&format!(
                "[plugins.{name}]\nallow_programs = [\"{REDIS}\", \"/usr/bin/sleep\"]\n"
            ));
        }
        let agent = AgentProcess::start(dir.path(), &config);
        RedisAgent {
            agent: Some(agent),
            plugins,
            _dir: dir,
        }
    }

    fn agent(&self) -> &AgentProcess {
        self.agent.as_ref().expect("the agent runs")
    }

    /// Copy `wasm` in as `TYPE.wasm` the careful way (a dot-file renamed
    /// into place) and wait until the agent runs `version` of it.
    fn drop_in(&self, wasm: &Path, name: &str, version: &str) {
        let partial = self.plugins.join(format!(".{name}.wasm.part"));
        std::fs::copy(wasm, &partial).expect("copy the plugin");
        std::fs::rename(&partial, self.plugins.join(format!("{name}.wasm")))
            .expect("drop the plugin in");
        wait_until(
            &format!("{name} {version} to be active"),
            LOAD_WITHIN,
            || {
                let out = self.agent().cli(&["plugin", "versions", name]);
                let listed = String::from_utf8_lossy(&out.stdout).into_owned();
                (out.status.success()
                    && listed
                        .lines()
                        .any(|l| l.contains(version) && l.contains("active")))
                .then_some(())
            },
        );
    }

    fn state(&self, resource: &str) -> Option<Value> {
        self.agent().resource(resource)
    }

    fn wait_online(&self, resource: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.state(resource);
            if let Some(r) = state.as_ref().filter(|r| r["state"] == "Online") {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{resource} did not come Online: {state:?}\n{}",
                self.agent().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The resource's state changes in the event history, as `from -> to`.
    fn changes(&self, resource: &str) -> Vec<String> {
        self.agent()
            .history()
            .iter()
            .filter(|e| e["resource"] == resource && e["to"].is_string())
            .map(|e| format!("{} -> {}", e["from"], e["to"]))
            .collect()
    }
}

#[test]
fn the_python_redis_type_runs_in_an_agent_recovers_and_hot_swaps() {
    let Some(tool) = tool_or_skip("the_python_redis_type_runs_in_an_agent_recovers_and_hot_swaps")
    else {
        return;
    };
    require_redis();
    let v1 = redis_py(&tool);
    let v2 = redis_py_version(&tool, "0.2.0");
    let agent = RedisAgent::start(&["redis"]);
    agent.drop_in(&v1, "redis", "0.1.0");

    let address = free_port().to_string();
    agent.agent().ok(&["group", "create", "cache"]);
    agent.agent().ok(&[
        "resource",
        "create",
        "cache-redis",
        "--type",
        "redis",
        "--group",
        "cache",
        "--prop",
        &format!("address={address}"),
        "--is-alive-interval-ms",
        "500",
    ]);
    let online = agent.wait_online("cache-redis", Duration::from_secs(60));
    assert_eq!(online["version"], "0.1.0", "{online}");
    redis_ping(&address).expect("a real Redis answers");

    // kill -9 of redis-server: noticed, and the resource restarted.
    let pid: i32 = agent
        .agent()
        .ok(&["resource", "control", "cache-redis", "pid"])
        .trim()
        .parse()
        .expect("the pid control code answers a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 redis-server");
    let restarted = wait_until("a new redis-server", Duration::from_secs(60), || {
        let out = agent
            .agent()
            .cli(&["resource", "control", "cache-redis", "pid"]);
        let new: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        (new != pid && redis_ping(&address).is_ok()).then_some(new)
    });
    agent.wait_online("cache-redis", Duration::from_secs(30));
    let changes = agent.changes("cache-redis");
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("\"Online\" -> ") && !c.ends_with("\"Online\"")),
        "the kill was not noticed: {changes:?}"
    );
    let noticed =
        agent.agent().history().into_iter().any(|e| {
            e["resource"] == "cache-redis" && e.to_string().contains("killed by signal 9")
        });
    assert!(noticed, "no event names the SIGKILL: {changes:?}");

    // A new version dropped in: the resource moves to it and never leaves
    // Online; the same redis-server goes on serving.
    let before = agent.changes("cache-redis").len();
    let partial = agent.plugins.join(".redis.wasm.part");
    std::fs::copy(&v2, &partial).expect("copy 0.2.0");
    std::fs::rename(&partial, agent.plugins.join("redis.wasm")).expect("drop 0.2.0 in");
    let swapped = Instant::now() + LOAD_WITHIN;
    loop {
        let state = agent.state("cache-redis").expect("cache-redis exists");
        assert_eq!(
            state["state"], "Online",
            "left Online during the swap: {state}"
        );
        if state["version"] == "0.2.0" {
            break;
        }
        assert!(
            Instant::now() < swapped,
            "not swapped to 0.2.0: {state}\n{}",
            agent.agent().log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few checks on the new version.
    std::thread::sleep(Duration::from_secs(2));
    let after = agent.changes("cache-redis");
    assert_eq!(
        after.len(),
        before,
        "state changes during the swap: {:?}",
        &after[before..]
    );
    let pid_after: i32 = agent
        .agent()
        .ok(&["resource", "control", "cache-redis", "pid"])
        .trim()
        .parse()
        .expect("a pid");
    assert_eq!(pid_after, restarted, "the swap restarted redis-server");
    redis_ping(&address).expect("Redis answers after the swap");
    let versions = agent.agent().ok(&["plugin", "versions", "redis"]);
    assert!(
        versions.contains("0.1.0") && versions.contains("0.2.0"),
        "{versions}"
    );

    drop(agent);
    assert!(
        redis_ping(&address).is_err(),
        "redis-server outlived the agent"
    );
}

#[test]
fn a_python_exception_is_reported_with_its_message_and_the_next_call_runs() {
    let Some(tool) =
        tool_or_skip("a_python_exception_is_reported_with_its_message_and_the_next_call_runs")
    else {
        return;
    };
    let wasm = py_raises(&tool);
    let agent = RedisAgent::start(&[]);
    agent.drop_in(&wasm, "py-raises", "0.1.0");
    agent.agent().ok(&["group", "create", "g"]);
    agent.agent().ok(&[
        "resource",
        "create",
        "r",
        "--type",
        "py-raises",
        "--group",
        "g",
    ]);
    agent.wait_online("r", Duration::from_secs(60));

    assert_eq!(
        agent
            .agent()
            .ok(&["resource", "control", "r", "calls"])
            .trim(),
        "1"
    );
    assert_eq!(
        agent
            .agent()
            .ok(&["resource", "control", "r", "calls"])
            .trim(),
        "2"
    );
    let out = agent
        .agent()
        .cli(&["resource", "control", "r", "raise", "the-payload"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "raise answered: {stdout}");
    assert!(
        stderr.contains("RuntimeError") && stderr.contains("raised on purpose: the-payload"),
        "the exception's message is not reported: {stderr}"
    );
    // The next call runs, on a fresh instance.
    assert_eq!(
        agent
            .agent()
            .ok(&["resource", "control", "r", "echo", "still here"])
            .trim(),
        "still here"
    );
    assert_eq!(
        agent
            .agent()
            .ok(&["resource", "control", "r", "calls"])
            .trim(),
        "2"
    );
    // An error the type returns is an error, not a trap.
    let out = agent.agent().cli(&["resource", "control", "r", "nope"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("known: raise, echo, calls"), "{stderr}");
}

#[test]
fn a_python_type_checks_http_through_the_agent_on_a_kept_connection() {
    let Some(tool) =
        tool_or_skip("a_python_type_checks_http_through_the_agent_on_a_kept_connection")
    else {
        return;
    };
    let wasm = py_web(&tool);
    // `/` answers 204 until `failing` is set, then 503; `/busy` always 503;
    // every answer has a length, so that the agent may keep the connection.
    let failing = Arc::new(AtomicBool::new(false));
    let (web, seen) = http_server_by_head({
        let failing = failing.clone();
        move |stream, _, head| {
            let root = head.starts_with("GET / ");
            let status = if root && !failing.load(Ordering::SeqCst) {
                204
            } else {
                503
            };
            answer_with_length(stream, status, "")
        }
    });
    let agent = RedisAgent::start(&["py-web"]);
    agent.drop_in(&wasm, "py-web", "0.1.0");
    agent.agent().ok(&["group", "create", "g"]);
    agent.agent().ok(&[
        "resource",
        "create",
        "site",
        "--type",
        "py-web",
        "--group",
        "g",
        "--prop",
        &format!("target={web}"),
        "--is-alive-interval-ms",
        "200",
    ]);
    agent.wait_online("site", Duration::from_secs(60));

    // Online took a check (ready), and is-alive goes on checking: every one
    // of them over the connection the first opened.
    wait_until("five checks", Duration::from_secs(30), || {
        (seen.requests().len() >= 5).then_some(())
    });
    assert_eq!(
        seen.connections(),
        1,
        "kept checks opened more than one connection: {:?}",
        seen.requests()
    );
    let control = |payload: &str| agent.agent().control("site", "http-check", payload);
    // A check without reuse opens a connection of its own; an exact status
    // is taken as well as a class.
    assert_eq!(control("/ 204 fresh"), Ok("204".to_string()));
    assert_eq!(seen.connections(), 2);
    let missed = control("/busy 2xx reuse").expect_err("503 passed a 2xx check");
    assert!(
        missed.contains("503") && missed.contains("2xx"),
        "the miss does not name 503 and 2xx: {missed}"
    );
    let bad = control("/ teapot reuse").expect_err("'teapot' was taken as a status");
    assert!(bad.contains("'2xx'"), "{bad}");

    // The server starts failing: is-alive fails naming the status.
    failing.store(true, Ordering::SeqCst);
    wait_until("site failed on 503", Duration::from_secs(30), || {
        agent
            .agent()
            .history()
            .iter()
            .any(|e| {
                e["resource"] == "site" && e["to"] == "Failed" && e.to_string().contains("503")
            })
            .then_some(())
    });
    // And it answers again: the resource comes back.
    failing.store(false, Ordering::SeqCst);
    agent.wait_online("site", Duration::from_secs(60));
}

/// `command` in bash as a reader runs it: in `dir`, with warden and the
/// tool on `PATH` and none of the outer cargo's settings.
fn run_as_a_reader(command: &str, dir: &Path, tool: &Path) -> Output {
    let bin = Path::new(WARDEN).parent().expect("the binary's directory");
    let tool_dir = tool
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        tool_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut run = Command::new("bash");
    run.args(["-euo", "pipefail", "-c", command])
        .current_dir(dir)
        .env("PATH", &path)
        .env_remove("COMPONENTIZE_PY")
        .env("WARDEN_LOG", "warn");
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name == "RUSTFLAGS"
        {
            run.env_remove(&var);
        }
    }
    run.output().expect("run bash")
}

#[test]
fn the_python_quick_start_of_docs_sdk_md_works_as_written() {
    let Some(tool) = tool_or_skip("the_python_quick_start_of_docs_sdk_md_works_as_written") else {
        return;
    };
    require_redis();
    let commands = sdk_doc_sh_blocks(&["## Python", "### Quick start"]);
    assert_eq!(commands.len(), 3, "build, check, test: {commands:#?}");
    assert!(commands[1].starts_with("warden plugin check"));
    assert!(commands[2].starts_with("warden plugin test"));
    for command in commands {
        let out = run_as_a_reader(&command, &root(), &tool);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "quick start command failed: {command}\n{stdout}\n{stderr}"
        );
        if command.starts_with("warden plugin test") {
            assert!(stdout.contains("PASS"), "{stdout}");
        }
    }
}

#[test]
fn a_new_python_type_builds_from_its_project_alone_and_passes_plugin_test() {
    let Some(tool) =
        tool_or_skip("a_new_python_type_builds_from_its_project_alone_and_passes_plugin_test")
    else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("warden-plugin-new-py-")
        .tempdir()
        .expect("tempdir");
    assert!(
        !tmp.path().starts_with(root()),
        "{} is inside the repository",
        tmp.path().display()
    );
    let out = Command::new(WARDEN)
        .args(["plugin", "new", "my-py-cache", "--lang", "python"])
        .current_dir(tmp.path())
        .output()
        .expect("run warden plugin new");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let project = tmp.path().join("my-py-cache");
    for file in [
        "app.py",
        "build.sh",
        "requirements.txt",
        "README.md",
        "wit/resource.wit",
        "resource_type.py",
        "warden_sdk/__init__.py",
    ] {
        assert!(project.join(file).is_file(), "{file} missing:\n{stdout}");
    }
    let app = std::fs::read_to_string(project.join("app.py")).expect("app.py");
    assert!(
        app.contains("NAME = \"my-py-cache\"") && app.contains("class MyPyCache("),
        "{app}"
    );
    // The pin is the example's.
    assert_eq!(
        std::fs::read_to_string(project.join("requirements.txt")).expect("requirements.txt"),
        std::fs::read_to_string(root().join("examples/redis-type-py/requirements.txt"))
            .expect("the example's requirements.txt")
    );

    // Built from what it wrote alone, with the command it printed.
    assert!(stdout.contains("bash build.sh"), "{stdout}");
    let out = run_as_a_reader(
        &format!("COMPONENTIZE_PY={} bash build.sh", tool.display()),
        &project,
        &tool,
    );
    let (built, why) = text(&out);
    assert!(out.status.success(), "build.sh failed:\n{built}\n{why}");
    let wasm = project.join("build/my_py_cache.wasm");
    assert!(wasm.is_file(), "no {}", wasm.display());

    // The README's plugin test, as written, against Python's HTTP server
    // on a free port instead of the README's 8099.
    let readme = std::fs::read_to_string(project.join("README.md")).expect("README.md");
    let test_block = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(block, _)| block.trim()))
        .find(|b| b.starts_with("warden plugin test"))
        .expect("README.md has a plugin test block")
        .to_string();
    let address = free_port().to_string();
    let command = test_block.replace("127.0.0.1:8099", &address);
    assert_ne!(command, test_block, "the README tests on 127.0.0.1:8099");
    let out = run_as_a_reader(&command, &project, &tool);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "plugin test of the new type failed:\n{stdout}\n{stderr}"
    );
    for step in ["ok   open+online", "ok   kill", "ok   recovery"] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
}

#[test]
fn the_python_sdks_own_unit_tests_pass() {
    // Plain CPython: the parts of the SDK that need no component (schema,
    // getters, the args template, the checks' addresses and failures).
    let out = Command::new("/usr/bin/python3")
        .args(["-B", "-m", "unittest", "discover", "-s", "tests", "-v"])
        .current_dir(root().join("sdk/python"))
        .output()
        .expect("run /usr/bin/python3 (Debian's python3)");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let ran: usize = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no 'Ran N tests' in:\n{stderr}"));
    assert!(ran >= 9, "only {ran} tests ran:\n{stderr}");
}
