//! `warden resource get NAME` against a running agent: the type and its
//! version, the group, the state, and every property's effective value,
//! the ones left to the type's default marked, as text and as JSON.

use std::time::Duration;

use serde_json::Value;

use crate::common::agent_process::AgentProcess;
use crate::common::wait_until;

const CONFIG: &str = r#"
[node]
name = "n"
data_dir = "data"

[plugins.process]
allow_programs = ["/usr/bin/sleep"]

[[group]]
name = "g1"

[[resource]]
name = "r1"
type = "process"
group = "g1"
properties = { program = "/usr/bin/sleep", args = "600", stop-grace-ms = 700 }
"#;

#[test]
fn resource_get_shows_type_state_and_effective_values_with_defaults_marked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProcess::start(dir.path(), CONFIG);
    wait_until("r1 online", Duration::from_secs(30), || {
        agent
            .resource("r1")
            .is_some_and(|r| r["state"] == "Online")
            .then_some(())
    });
    let version = agent.resource("r1").expect("r1")["version"]
        .as_str()
        .expect("a version")
        .to_string();

    let text = agent.ok(&["resource", "get", "r1"]);
    assert!(text.contains("resource   r1\n"), "{text}");
    assert!(
        text.contains(&format!("type       process {version}\n")),
        "{text}"
    );
    assert!(text.contains("group      g1\n"), "{text}");
    assert!(text.contains("state      Online\n"), "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{text}"))
            .to_string()
    };
    // Set by the configuration: not marked.
    assert!(row("program").ends_with("/usr/bin/sleep"), "{text}");
    assert!(row("stop-grace-ms").ends_with(" 700"), "{text}");
    // Left to the type: its default, marked.
    assert!(row("startup-ms").ends_with("(default)"), "{text}");
    assert!(row("env").ends_with("(default)"), "{text}");

    let json: Value =
        serde_json::from_str(&agent.ok(&["resource", "get", "r1", "--json"])).expect("json");
    assert_eq!(json["type"], "process");
    assert_eq!(json["state"], "Online");
    assert_eq!(json["properties"]["program"]["default"], false);
    assert_eq!(json["properties"]["startup-ms"]["default"], true);
    assert!(
        json["properties"]["startup-ms"]["value"].is_string(),
        "{json}"
    );

    let out = agent.cli(&["resource", "get", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no resource \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.stop();
}
