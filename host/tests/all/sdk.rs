//! The SDK for third-party authors, end to end: the example resource type
//! for Debian's redis-server (examples/redis-type, written only with
//! warden-sdk) is built for wasm32-wasip2, run through `warden plugin test`
//! against the real redis-server, and dropped into a running agent's
//! plugins directory, where a group with it comes online. The template for
//! a new type (sdk/template) builds and passes `warden plugin test`.
//! `warden plugin check` refuses each kind of bad file with its own message.
//!
//! redis-server is required (`apt-get install redis-server`); without it
//! these tests fail, they do not skip.

use crate::common::cli::{
    REDIS, assert_life_cycle_passed, require_redis, sdk_doc_sh_blocks, text, warden,
};
use crate::common::{free_port, wait_until};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository root")
        .to_path_buf()
}

/// Build examples/redis-type once per test binary; the path of its .wasm
/// (lang_py compares the Python type with it).
pub(crate) fn redis_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_plugin_crate("examples/redis-type", "redis_type"))
        .clone()
}

/// Build the SDK's template for a new type (sdk/template) once per test
/// binary; the path of its .wasm.
fn template_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_plugin_crate("sdk/template", "tcp_service_type"))
        .clone()
}

/// Build the plugin crate in `dir` (a workspace of its own, as a third
/// party has it) for wasm32-wasip2, as docs/sdk.md says; the path of
/// `{wasm_name}.wasm`. The crates share target/wasm-examples, so the SDK
/// and its dependencies are built once.
fn build_plugin_crate(dir: &str, wasm_name: &str) -> PathBuf {
    build_plugin_crate_at(&root().join(dir), wasm_name)
}

/// Build the plugin crate at `dir` (anywhere, e.g. a project `warden
/// plugin new` wrote outside the repository) as [`build_plugin_crate`]
/// does, in the shared target/wasm-examples.
pub(crate) fn build_plugin_crate_at(dir: &Path, wasm_name: &str) -> PathBuf {
    let root = root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-examples");
    let manifest = dir.join("Cargo.toml");
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // As in host/build.rs: the outer cargo's settings are for the host
    // target and must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_NAME",
        "CARGO_CRATE_NAME",
    ] {
        build.env_remove(var);
    }
    let out = build
        .output()
        .unwrap_or_else(|err| panic!("run cargo for {}: {err}", dir.display()));
    assert!(
        out.status.success(),
        "building {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target_dir.join(format!("wasm32-wasip2/release/{wasm_name}.wasm"));
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

#[test]
fn plugin_test_runs_the_redis_type_through_its_life_cycle() {
    require_redis();
    let wasm = redis_plugin();
    let address = free_port().to_string();
    let out = warden(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--prop",
        &format!("address={address}"),
        "--grant-program",
        REDIS,
    ]);
    assert_life_cycle_passed(&out);
    // Nothing left listening.
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "redis still runs"
    );
}

#[test]
fn the_template_for_a_new_type_builds_loads_and_passes_plugin_test() {
    let wasm = template_plugin();
    let out = warden(&["plugin", "check", wasm.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("tcp-service 0.1.0"), "{stdout}");
    assert!(stdout.contains("connect-timeout-ms"), "{stdout}");

    // The whole life cycle against a real service: the warden binary's
    // demo HTTP service, which listens on the address it is given.
    let address = free_port().to_string();
    let out = warden(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--prop",
        &format!("program={WARDEN}"),
        "--prop",
        "args=demo-service --name template --listen {address}",
        "--prop",
        &format!("address={address}"),
        // Nothing is granted that the command line does not name.
        "--grant-program",
        WARDEN,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "warden plugin test failed:\n{stdout}\n{stderr}"
    );
    for step in ["ok   open+online", "ok   kill", "ok   recovery", "PASS"] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "the demo service still runs"
    );
}

#[test]
fn plugin_test_fails_clearly_when_the_program_is_not_granted() {
    require_redis();
    let wasm = redis_plugin();
    let address = free_port().to_string();
    let out = warden(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--prop",
        &format!("address={address}"),
        "--grant-program",
        "/usr/bin/true",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "must fail:\n{stdout}");
    assert!(
        stdout.contains("FAIL open+online") || stdout.contains("FAIL online"),
        "{stdout}"
    );
    assert!(stderr.contains("step online failed"), "{stderr}");
}

#[test]
fn plugin_check_gives_each_bad_file_its_own_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_wasm = dir.path().join("script.wasm");
    std::fs::write(&not_wasm, "#!/bin/sh\necho not wasm\n").expect("write");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").expect("wat")).expect("write");
    let cases = [
        (not_wasm, "not a WebAssembly file"),
        (core, "wasm32-wasip2"),
        (
            PathBuf::from(env!("WARDEN_PLUGIN_FUTURE_CONTRACT")),
            "warden:resource@0.5.0",
        ),
        (
            PathBuf::from(env!("WARDEN_PLUGIN_DESCRIBE_TRAPS")),
            "describe trapped",
        ),
    ];
    let mut messages = Vec::new();
    for (file, expected) in &cases {
        let out = warden(&["plugin", "check", file.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(
            stderr.contains(expected),
            "{}: {stderr:?} lacks {expected:?}",
            file.display()
        );
        // The reason, without the file name that differs anyway.
        let reason = stderr
            .split_once("is not a usable plugin")
            .map_or(stderr.clone(), |(_, r)| r.to_string());
        messages.push(reason);
    }
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a, b, "two kinds of bad file share a message");
        }
    }

    let wasm = redis_plugin();
    let out = warden(&["plugin", "check", wasm.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("redis 0.1.0"), "{stdout}");
    assert!(stdout.contains("/usr/bin/redis-server"), "{stdout}");
}

/// An agent with its admin API, killed when the test ends.
struct Agent {
    child: Child,
    api: SocketAddr,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: the agent takes its resources offline (redis stops).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.api))
            .env("WARDEN_TOKEN", TOKEN)
            .output()
            .expect("run the CLI")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "warden {args:?} failed: {stderr}");
        stdout
    }

    fn resource(&self, name: &str) -> Option<Value> {
        let status: Value = serde_json::from_str(&self.ok(&["status", "--json"])).ok()?;
        status["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
    }
}

#[test]
fn the_redis_type_dropped_into_a_running_agent_brings_a_group_online() {
    require_redis();
    let wasm = redis_plugin();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    warden::config::write_token_file(&dir.path().join("token"), TOKEN).expect("token");
    let api = free_port();
    std::fs::write(
        dir.path().join("node.toml"),
        format!(
            r#"
[node]
name = "solo"
data_dir = "data"
plugins_dir = "plugins"

[api]
listen = "{api}"
token_file = "token"

[plugins.redis]
allow_programs = ["{REDIS}"]
"#
        ),
    )
    .expect("config");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.path().join("node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let agent = Agent { child, api };
    wait_until("the agent to have started", Duration::from_secs(30), || {
        crate::common::agent_process::has_started(api, TOKEN)
    });

    // Dropped in while the agent runs: copied under another name, then
    // renamed, so the agent never sees half a file.
    let partial = dir.path().join("redis.wasm.part");
    std::fs::copy(&wasm, &partial).expect("copy the plugin");
    std::fs::rename(&partial, plugins.join("redis.wasm")).expect("drop the plugin in");
    wait_until("the redis type to load", Duration::from_secs(30), || {
        let out = agent.cli(&["plugin", "list"]);
        (out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("redis ")))
        .then_some(())
    });
    let versions = agent.ok(&["plugin", "versions", "redis"]);
    assert!(versions.contains("active"), "{versions}");

    let address = free_port().to_string();
    agent.ok(&["group", "create", "cache"]);
    agent.ok(&[
        "resource",
        "create",
        "cache-redis",
        "--type",
        "redis",
        "--group",
        "cache",
        "--prop",
        &format!("address={address}"),
    ]);
    let last = std::cell::RefCell::new(None);
    let online = Instant::now() + Duration::from_secs(30);
    loop {
        let resource = agent.resource("cache-redis");
        if resource.as_ref().is_some_and(|r| r["state"] == "Online") {
            break;
        }
        *last.borrow_mut() = resource;
        assert!(
            Instant::now() < online,
            "cache-redis did not come Online: {:?}",
            last.borrow()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It is a real Redis.
    let mut redis = std::net::TcpStream::connect(&address).expect("connect to redis");
    use std::io::{BufRead, Write};
    redis.write_all(b"PING\r\n").expect("PING");
    let mut answer = String::new();
    std::io::BufReader::new(redis)
        .read_line(&mut answer)
        .expect("answer");
    assert_eq!(answer.trim_end(), "+PONG");
    drop(agent);
}

#[test]
fn the_quick_start_of_docs_sdk_md_works_as_written() {
    require_redis();
    let commands = sdk_doc_sh_blocks(&["## Quick start"]);
    assert_eq!(commands.len(), 3, "build, check, test: {commands:#?}");
    assert!(commands[1].starts_with("warden plugin check"));
    assert!(commands[2].starts_with("warden plugin test"));
    let bin = Path::new(WARDEN).parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in commands {
        let mut run = Command::new("bash");
        run.args(["-euo", "pipefail", "-c", &command])
            .current_dir(root())
            .env("PATH", &path)
            .env("WARDEN_LOG", "warn");
        // The reader's shell has none of the outer cargo's settings.
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            let leaks = (name.starts_with("CARGO_") && name != "CARGO_HOME")
                || name.starts_with("RUSTC")
                || name == "RUSTFLAGS";
            if leaks {
                run.env_remove(&var);
            }
        }
        let out = run.output().expect("run bash");
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
fn plugin_test_fails_clearly_on_a_trap_and_on_a_hang() {
    let chaos = env!("WARDEN_PLUGIN_CHAOS");
    for (fault, expected) in [
        ("trap:online", "online trapped"),
        ("hang:online", "online timed out"),
        ("trap:is-alive", "a health check failed"),
    ] {
        let started = Instant::now();
        let out = warden(&[
            "plugin",
            "test",
            chaos,
            "--prop",
            &format!("fault={fault}"),
            "--pending-timeout-ms",
            "1500",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{fault}: passed:\n{stdout}");
        assert!(
            stderr.contains(expected) && stdout.contains("FAIL"),
            "{fault}: {stderr:?} lacks {expected:?}\n{stdout}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{fault}: took {:?}",
            started.elapsed()
        );
    }
}
