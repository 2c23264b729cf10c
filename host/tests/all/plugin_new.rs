//! `warden plugin new`, as an author outside the repository uses it: the
//! project is written into a temporary directory (not under this
//! checkout), built with cargo from what it holds alone (the SDK vendored
//! into it, its own Cargo.lock; the wasm target directory is shared with
//! the SDK's tests so the dependencies build once), and its first type
//! passes `warden plugin check` and `warden plugin test` against a real
//! service. What it refuses, it refuses naming the problem and writing
//! nothing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::cli::sdk_doc_sh_blocks;
use crate::common::free_port;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

fn warden_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(WARDEN)
        .args(args)
        .current_dir(dir)
        .env("WARDEN_LOG", "warn")
        .output()
        .expect("run warden")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A temporary directory outside the repository (the system's temporary
/// directory, checked not to be under this checkout).
fn outside_the_repository() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("warden-plugin-new-")
        .tempdir()
        .expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .canonicalize()
        .expect("canonical");
    assert!(
        !dir.path()
            .canonicalize()
            .expect("canonical")
            .starts_with(&root),
        "{} is inside the repository",
        dir.path().display()
    );
    dir
}

#[test]
fn a_new_rust_type_builds_from_its_project_alone_and_passes_plugin_test() {
    let tmp = outside_the_repository();
    let out = warden_in(tmp.path(), &["plugin", "new", "my-cache", "--lang", "rust"]);
    assert!(out.status.success(), "{}", text(&out));
    let project = tmp.path().join("my-cache");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "README.md",
        "wit/resource.wit",
        "warden-sdk/Cargo.toml",
        "warden-sdk/src/lib.rs",
    ] {
        assert!(
            project.join(file).is_file(),
            "{file} missing: {}",
            text(&out)
        );
    }
    // Nothing points back into a checkout of Warden.
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains(r#"warden-sdk = { path = "warden-sdk" }"#),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).expect("README");
    assert!(
        readme.contains("rustup target add wasm32-wasip2"),
        "{readme}"
    );
    assert!(
        readme.contains("cargo build --release --target wasm32-wasip2"),
        "{readme}"
    );
    // The contract is the agent's own, version and all.
    let wit = std::fs::read_to_string(project.join("wit/resource.wit")).expect("wit");
    let ours =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/resource.wit"))
            .expect("the repository's wit");
    assert_eq!(wit, ours);

    let wasm = crate::sdk::build_plugin_crate_at(&project, "my_cache");

    let out = warden_in(
        tmp.path(),
        &["plugin", "check", wasm.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("my-cache 0.1.0"),
        "{}",
        text(&out)
    );

    let address = free_port().to_string();
    let out = warden_in(
        tmp.path(),
        &[
            "plugin",
            "test",
            wasm.to_str().expect("utf-8"),
            "--prop",
            &format!("program={WARDEN}"),
            "--prop",
            "args=demo-service --name new-type --listen {address}",
            "--prop",
            &format!("address={address}"),
            "--grant-program",
            WARDEN,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "warden plugin test failed:\n{}",
        text(&out)
    );
    for step in [
        "ok   open+online",
        "ok   kill",
        "ok   recovery",
        "ok   offline",
        "PASS",
    ] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
}

#[test]
fn plugin_new_refuses_an_occupied_directory_and_bad_names_writing_nothing() {
    let tmp = outside_the_repository();
    let occupied = tmp.path().join("occupied");
    std::fs::create_dir(&occupied).expect("mkdir");
    std::fs::write(occupied.join("mine.txt"), "keep").expect("write");
    let out = warden_in(
        tmp.path(),
        &[
            "plugin",
            "new",
            "memcache",
            "--dir",
            occupied.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("exists and is not empty (it holds mine.txt)"),
        "{}",
        text(&out)
    );
    let left: Vec<_> = std::fs::read_dir(&occupied).expect("read").collect();
    assert_eq!(
        left.len(),
        1,
        "something was written into {}",
        occupied.display()
    );

    for (name, says) in [
        ("MemCache", "holds 'M'"),
        ("mem_cache", "holds '_'"),
        ("9lives", "does not start with a letter"),
        ("fn", "reserved in Rust"),
        ("../escape", "holds '.'"),
    ] {
        let out = warden_in(tmp.path(), &["plugin", "new", name]);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(text(&out).contains(says), "{name}: {}", text(&out));
    }
    let out = warden_in(
        tmp.path(),
        &["plugin", "new", "memcache", "--lang", "cobol"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("possible values: rust"),
        "{}",
        text(&out)
    );
    // Only the occupied directory is there: every refusal wrote nothing.
    let entries: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["occupied"]);
}

#[test]
fn the_start_of_docs_sdk_md_works_as_written_outside_the_repository() {
    let tmp = outside_the_repository();
    let block = sdk_doc_sh_blocks(&["## Start a new type: `warden plugin new`"]).swap_remove(0);
    assert!(block.contains("warden plugin new"), "{block}");
    let bin = Path::new(WARDEN).parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut run = Command::new("bash");
    run.args(["-euo", "pipefail", "-c", &block])
        .current_dir(tmp.path())
        .env("PATH", &path)
        .env("WARDEN_LOG", "warn");
    // The reader's shell has none of the outer cargo's settings.
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name == "RUSTFLAGS"
        {
            run.env_remove(&var);
        }
    }
    let out = run.output().expect("run bash");
    assert!(
        out.status.success(),
        "the block failed:\n{block}\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("memcache 0.1.0"),
        "{}",
        text(&out)
    );
}
