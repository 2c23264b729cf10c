//! The admin API is what docs/openapi.json says it is: schemathesis
//! (pinned, installed by `.ci/run`) generates requests from the document
//! the agent serves, valid and invalid, one operation at a time and in
//! sequences that follow the document's links, against a real
//! `warden agent --dev`, and checks every answer against the document: no
//! server error, only documented status codes and content types, bodies of
//! the documented schemas, invalid data refused and valid data taken. What
//! it runs per operation is in `schemathesis.toml` beside this file.
//!
//! A missing schemathesis fails the test, saying how to install it: a test
//! that skipped itself would prove nothing.

use crate::common::dev_agent::DevAgent;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nix::sys::signal::Signal;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
/// The version `.ci/run` and the README install; another one fails the
/// test, so a run is the same everywhere.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Where `.ci/run` puts its virtual environment.
const DEFAULT_VENV: &str = "/opt/warden-schemathesis";
/// The seed of the generated data, so that CI runs the same requests each
/// time; `WARDEN_FUZZ_SEED` picks another to explore further.
const DEFAULT_SEED: &str = "20";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The schemathesis executable: `WARDEN_SCHEMATHESIS`, or the one in
/// `.ci/run`'s virtual environment; it must be the pinned version.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("WARDEN_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DEFAULT_VENV).join("bin/schemathesis"));
    let install = format!(
        "install it as .ci/run does: python3 -m venv {DEFAULT_VENV} && \
         {DEFAULT_VENV}/bin/pip install schemathesis=={SCHEMATHESIS_VERSION} \
         (Debian: apt-get install python3-venv first), or set WARDEN_SCHEMATHESIS \
         to a schemathesis {SCHEMATHESIS_VERSION} executable"
    );
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "schemathesis not found at {}: {e}; {install}",
                path.display()
            )
        });
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(
        version.trim(),
        format!("schemathesis, version {SCHEMATHESIS_VERSION}"),
        "{} is not the pinned schemathesis; {install}",
        path.display()
    );
    path
}

/// How many operations (path and method) the document has.
fn operations_in(doc: &Path) -> usize {
    let text = std::fs::read_to_string(doc).expect("docs/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|methods| methods.as_object().map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn the_admin_api_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let mut command = Command::new(WARDEN);
    command.args(["agent", "--dev"]);
    let mut agent = DevAgent::spawn(command);
    let work = tempfile::tempdir().expect("tempdir");
    let seed = std::env::var("WARDEN_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_string());
    let started = Instant::now();
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(root().join("host/tests/schemathesis.toml"))
        .arg("run")
        // The document as the agent serves it; the banner can come before
        // the API listens.
        .arg(format!("{}/v1/openapi.json", agent.api))
        .args(["--wait-for-schema", "30"])
        .args(["--url", &agent.api])
        .args(["--checks", "all", "--seed", &seed, "--workers", "1"])
        .args(["--no-color"])
        // The configuration file reads the token from here, so it is not
        // on a command line for every user of the machine to see.
        .env("WARDEN_TOKEN", &agent.token)
        .current_dir(work.path())
        .output()
        .expect("run schemathesis");
    let took = started.elapsed();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its services and whatever the run created go offline in order.
    let stopped = agent.stop(Signal::SIGTERM);
    assert!(
        out.status.success(),
        "schemathesis (seed {seed}) found failures:\n{report}"
    );
    // Every operation of the document but the document itself, which
    // schemathesis reads rather than tests, was selected and tested.
    let operations = operations_in(&root().join("docs/openapi.json")) - 1;
    assert!(
        report.contains(&format!("Selected: {operations}/{operations}\n"))
            && report.contains(&format!("Tested: {operations}\n")),
        "schemathesis did not test all {operations} operations of the document:\n{report}"
    );
    assert!(
        stopped.success(),
        "the agent did not stop cleanly after the run ({stopped})"
    );
    let summary = report
        .lines()
        .filter(|l| l.contains(" generated, ") || l.contains("Tested:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    println!("schemathesis, seed {seed}, {took:.1?}: {summary}");
}
