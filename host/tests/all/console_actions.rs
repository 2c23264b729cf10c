//! The console's actions and its hostile text, in a real headless Chromium
//! against a real agent, every outcome read back through the CLI: node
//! drain and resume clicked; a plugin rolled back and pinned by clicks
//! (two versions of `chaos` dropped into the plugins directory); text a
//! plugin or an operator chose (`<img src=x onerror=...>`, `</script>`)
//! shown as text, with nothing run and no element made of it; a resource
//! name at the longest length the API accepts.
//!
//! Needs Debian's `chromium` and `chromium-driver` (see `console.rs`).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::console::{cli_status, connect, dev_agent, page_errors};
use crate::common::agent_process::{AgentProcess, TOKEN, WARDEN};
use crate::common::webdriver::{Session, WAIT, browser, screenshots};
use crate::common::{free_port, wait_until};

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
const CHAOS_NEXT: &str = env!("WARDEN_PLUGIN_CHAOS_NEXT");

/// Open the console of the agent at `api` and give it the token.
fn open_console(session: &Session, api: &str, token: &str) {
    session.goto(&format!("{api}/ui"));
    session.type_into("#token", token);
    session.click("#token-form button[type=submit]");
    session.wait_for("#resources, #groups", WAIT);
}

/// The state the console's node table writes for `node` ("" if not shown).
fn shown_node_state(session: &Session, node: &str) -> String {
    session
        .run(
            "const row = [...document.querySelectorAll('#nodes tbody tr')]
               .find(r => r.cells[0].innerText === arguments[0]);
             return row ? row.querySelector('[data-state]').dataset.state : '';",
            json!([node]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// This node's state as `warden status --json` gives it.
fn cli_node_state(status: &Value) -> String {
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["this_node"] == true))
        .and_then(|n| n["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn node_drain_and_resume_clicked_in_the_console_are_seen_by_the_cli() {
    let Some(driver) = browser() else { return };
    let agent = dev_agent();
    let session = driver.session();
    connect(&session, &agent, &agent.token);
    session.wait_for("#nodes", WAIT);
    assert_eq!(shown_node_state(&session, "dev"), "up");
    let text = agent_status_text(&agent);
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("dev")
            && l.contains(" up ")
            && l.contains("this node")),
        "warden status prints the nodes:\n{text}"
    );

    session.click("[data-key='node-drain']");
    wait_until("the CLI to show dev draining", WAIT, || {
        (cli_node_state(&cli_status(&agent)) == "draining").then_some(())
    });
    session.until(
        "the console to show dev draining",
        WAIT,
        "const row = document.querySelector('#nodes tbody tr'); return row && row.querySelector('[data-state]').dataset.state === 'draining';",
    );
    assert!(
        agent_status_text(&agent).contains("draining"),
        "warden status prints the drain"
    );
    session.screenshot(&screenshots().join("node-draining.png"));

    session.click("[data-key='node-resume']");
    wait_until("the CLI to show dev up again", WAIT, || {
        (cli_node_state(&cli_status(&agent)) == "up").then_some(())
    });
    session.until(
        "the console to show dev up again",
        WAIT,
        "const row = document.querySelector('#nodes tbody tr'); return row && row.querySelector('[data-state]').dataset.state === 'up';",
    );
    let errors = page_errors(&session);
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
}

/// `warden status` as a person reads it.
fn agent_status_text(agent: &crate::common::dev_agent::DevAgent) -> String {
    let out = std::process::Command::new(WARDEN)
        .arg("status")
        .envs(agent.cli_env())
        .output()
        .expect("run warden status");
    assert!(out.status.success(), "warden status failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Put a plugin into the directory as a careful operator does: a dot-file
/// first (ignored by the agent), then a rename.
fn drop_in(plugins: &Path, source: &str, name: &str) {
    let temp = plugins.join(format!(".{name}.partial"));
    std::fs::copy(source, &temp).expect("copy the plugin");
    std::fs::rename(&temp, plugins.join(name)).expect("rename the plugin");
}

/// One chaos resource `r`, checked every 200 ms, in group `g`.
const CHAOS_CONFIG: &str = r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[[group]]
name = "g"

[[resource]]
name = "r"
type = "chaos"
group = "g"
is_alive_interval_ms = 200
looks_alive_interval_ms = 0
check_timeout_ms = 1000
"#;

/// `warden plugin versions chaos`'s line for `version`.
fn version_line(agent: &AgentProcess, version: &str) -> String {
    agent
        .ok(&["plugin", "versions", "chaos"])
        .lines()
        .find(|l| l.starts_with(version))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_plugin_rolled_back_and_pinned_in_the_console_is_seen_by_the_cli() {
    let Some(driver) = browser() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    drop_in(&plugins, CHAOS, "chaos.wasm");
    let agent = AgentProcess::start(dir.path(), CHAOS_CONFIG);
    let on = |version: &str| {
        wait_until(&format!("r Online on {version}"), WAIT, || {
            let r = agent.resource("r")?;
            (r["state"] == "Online" && r["version"] == version).then_some(())
        })
    };
    on("0.1.0");
    drop_in(&plugins, CHAOS_NEXT, "chaos@0.2.0.wasm");
    on("0.2.0");

    let session = driver.session();
    open_console(&session, &format!("http://{}", agent.api), TOKEN);
    session.goto(&format!("http://{}/ui#/plugins", agent.api));
    session.wait_for("#plugins", WAIT);
    session.until(
        "the console to show chaos 0.2.0 active and 0.1.0 kept",
        WAIT,
        "const row = [...document.querySelectorAll('#plugins tbody tr')].find(r => r.cells[0].innerText === 'chaos');
         return row && row.cells[4].innerText.includes('0.2.0 (active)') && row.cells[4].innerText.includes('0.1.0');",
    );
    session.screenshot(&screenshots().join("plugins-two-versions.png"));

    session.click("[data-key='rollback-chaos']");
    on("0.1.0");
    let line = version_line(&agent, "0.1.0");
    assert!(
        line.contains("active") && !line.contains("pinned"),
        "{line}"
    );
    session.until(
        "the console to show 0.1.0 active",
        WAIT,
        "const row = [...document.querySelectorAll('#plugins tbody tr')].find(r => r.cells[0].innerText === 'chaos');
         return row && row.cells[4].innerText.includes('0.1.0 (active)');",
    );

    session.click("[data-key='pin-chaos']");
    wait_until("the CLI to show 0.1.0 pinned", WAIT, || {
        let line = version_line(&agent, "0.1.0");
        (line.contains("active") && line.contains("pinned")).then_some(())
    });
    session.until(
        "the console to show 0.1.0 pinned",
        WAIT,
        "const row = [...document.querySelectorAll('#plugins tbody tr')].find(r => r.cells[0].innerText === 'chaos');
         return row && row.cells[4].innerText.includes('0.1.0 (active, pinned)');",
    );
    session.screenshot(&screenshots().join("plugins-pinned.png"));
    // Pinned: the newer file in the directory does not take over again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        agent.resource("r").map(|r| r["version"].clone()),
        Some(json!("0.1.0"))
    );
    let errors = page_errors(&session);
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
    agent.stop();
}

/// Markup a plugin or an operator could slip into text the console shows.
/// Each would set `window.hacked` if the browser ever ran it.
const HOSTILE_REASON: &str =
    "<img src=x onerror=window.hacked=1></script><script>window.hacked=2</script>";
const HOSTILE_ENV: &str = "HOSTILE=<img src=x onerror=window.hacked=3>";
const HOSTILE_NAME: &str = "</script><svg/onload=window.hacked=4>";

/// What a page made of hostile text would have: markup run, elements
/// created from it. (The console itself has one script, no image, and SVG
/// only in a group's graph.)
const NOTHING_RAN: &str = "return JSON.stringify({
    hacked: window.hacked === undefined ? null : window.hacked,
    scripts: document.scripts.length,
    images: document.images.length,
    handlers: document.querySelectorAll('[onerror], [onload]').length,
    svgs: [...document.querySelectorAll('svg')].filter(s => s.id !== 'graph').length,
  });";

#[test]
fn hostile_text_and_the_longest_name_are_shown_as_text_and_run_nothing() {
    let Some(driver) = browser() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    drop_in(&plugins, CHAOS, "chaos.wasm");
    let port = free_port();
    let args = format!("demo-service --name {HOSTILE_NAME} --listen {port}");
    // `r` stays Failed with its reason for the test's span: its restart
    // waits ten minutes.
    let config = format!(
        r#"{CHAOS_CONFIG}restart = {{ delay_ms = 600000 }}

[plugins.process]
allow_programs = ["{WARDEN}"]
allow_env = ["HOSTILE", "src", "onerror"]

[[resource]]
name = "hostile"
type = "process"
group = "g"
properties = {{ program = "{WARDEN}", args = "{args}", env = "{HOSTILE_ENV}" }}
"#
    );
    let agent = AgentProcess::start(dir.path(), &config);
    wait_until("r and hostile Online", WAIT, || {
        let up = |name: &str| agent.resource(name).is_some_and(|r| r["state"] == "Online");
        (up("r") && up("hostile")).then_some(())
    });

    // The longest name the API takes, and one more character refused.
    let longest = format!("l{}", "o".repeat(62) + "g");
    assert_eq!(longest.len(), 64);
    let created = agent.cli(&[
        "resource", "create", &longest, "--type", "chaos", "--group", "g",
    ]);
    assert!(
        created.status.success(),
        "a 64-character name: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let too_long = format!("{longest}x");
    let refused = agent.cli(&[
        "resource", "create", &too_long, "--type", "chaos", "--group", "g",
    ]);
    assert!(!refused.status.success(), "a 65-character name was taken");
    wait_until("the longest name Online", WAIT, || {
        (agent.resource(&longest)?["state"] == "Online").then_some(())
    });

    // The plugin reports a failure reason of markup.
    let failed = agent.ok(&["resource", "control", "r", "fail", HOSTILE_REASON]);
    eprintln!("chaos took the reason: {failed}");
    let reason = wait_until("r Failed with the hostile reason", WAIT, || {
        let r = agent.resource("r")?;
        let reason = r["reason"].as_str()?.to_string();
        (r["state"] == "Failed" && reason.contains(HOSTILE_REASON)).then_some(reason)
    });

    let session = driver.session();
    let api = format!("http://{}", agent.api);
    open_console(&session, &api, TOKEN);
    let cell_with = "return [...document.querySelectorAll('td, li, p, h2, code')].some(e => e.innerText.includes(arguments[0]));";
    session.until(
        "the cluster view to show r's reason as text",
        WAIT,
        &format!(
            "return [...document.querySelectorAll('#resources td')].some(e => e.innerText === {reason:?});"
        ),
    );
    assert_eq!(
        session.run(cell_with, json!([longest])),
        json!(true),
        "the longest name is shown whole"
    );
    let overflow = session.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    assert_eq!(overflow, json!(0), "the longest name widens the page");
    session.screenshot(&screenshots().join("hostile-cluster.png"));

    // Every view that shows the hostile text: as text, nothing run.
    let views = [
        (
            "#/resource/r".to_string(),
            "#checks",
            HOSTILE_REASON.to_string(),
        ),
        (
            "#/resource/hostile".to_string(),
            "#properties",
            HOSTILE_ENV.to_string(),
        ),
        (
            "#/resource/hostile".to_string(),
            "#properties",
            HOSTILE_NAME.to_string(),
        ),
        (
            format!("#/resource/{longest}"),
            "#properties",
            longest.clone(),
        ),
        ("#/group/g".to_string(), "#graph", longest.clone()),
        (
            "#/events".to_string(),
            "#events",
            HOSTILE_REASON.to_string(),
        ),
    ];
    for (hash, marker, text) in &views {
        session.goto(&format!("{api}/ui{hash}"));
        session.wait_for(marker, WAIT);
        session.until(
            &format!("{hash} to show {text:?} as text"),
            WAIT,
            &format!(
                "return [...document.querySelectorAll('td, li, p, h2, code, text, a')].some(e => (e.textContent || '').includes({text:?}));"
            ),
        );
        let ran = session.run(NOTHING_RAN, json!([]));
        assert_eq!(
            serde_json::from_str::<Value>(ran.as_str().unwrap_or_default()).ok(),
            Some(json!({"hacked": null, "scripts": 1, "images": 0, "handlers": 0, "svgs": 0})),
            "{hash}: markup ran or made elements"
        );
        let name = hash.trim_start_matches("#/").replace('/', "-");
        if !name.ends_with(&longest) {
            session.screenshot(&screenshots().join(format!("hostile-{name}.png")));
        }
    }
    // In the graph the longest name is cut to fit its box, and whole in
    // the box's title.
    session.goto(&format!("{api}/ui#/group/g"));
    session.wait_for("#graph", WAIT);
    let fits = session.run(
        "const box = [...document.querySelectorAll('#graph a.box')].find(a => a.dataset.resource === arguments[0]);
         if (!box) return 'no box';
         const label = box.querySelector('text.name').getBBox().width;
         const rect = box.querySelector('rect').getBBox().width;
         return [label <= rect, box.querySelector('title').textContent.startsWith(arguments[0])];",
        json!([longest]),
    );
    assert_eq!(fits, json!([true, true]), "the longest name in the graph");

    // No image was ever fetched, no policy violated, nothing thrown.
    let errors = page_errors(&session);
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
    agent.stop();
}
