//! The admin API answers from the first moments of the agent's start, not
//! once every resource is opened (issue 19): `GET /v1/status` says the
//! node is starting and how far, lists every configured resource as
//! `Starting` (none Online, none missing), and a change asked meanwhile is
//! refused with 503 and the progress, nothing done; the `warden` CLI waits
//! and asks again, so its change is applied once. A taken port still fails
//! the start before anything starts.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent_process::{TOKEN, WARDEN, api_get, api_request, has_started};
use crate::common::process::Killed;
use crate::common::{CHAOS, free_port, wait_until};

/// Enough chaos resources that the start of a debug build takes seconds
/// (loading the plugins alone takes about one).
const RESOURCES: usize = 2_000;

/// A node of `resources` chaos resources, each its own group, with its API
/// on `api`; the agent started on it (its log in `dir/agent.log`).
fn start(dir: &Path, api: SocketAddr, resources: usize) -> Killed {
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    std::fs::copy(CHAOS, dir.join("plugins/chaos.wasm")).expect("copy chaos");
    warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
    let mut config = format!(
        "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n\
         [api]\nlisten = \"{api}\"\ntoken_file = \"token\"\n"
    );
    for i in 0..resources {
        config.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = 60000\n\
             looks_alive_interval_ms = 0\n"
        ));
    }
    std::fs::write(dir.join("node.toml"), config).expect("config");
    let log = std::fs::File::create(dir.join("agent.log")).expect("log");
    Killed(
        Command::new(WARDEN)
            .current_dir(dir)
            .args(["agent", "--config", "node.toml"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent"),
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Whether `value` is what `schema` (a piece of docs/openapi.json, `doc`)
/// says: the OpenAPI 3.0 keywords the document uses for these answers
/// (`$ref`, `allOf`, `type`, `nullable`, `enum`, `required`,
/// `additionalProperties: false`, `properties`, `items`, `minimum`,
/// `maxItems`). The error names where `value` is off.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        conforms(doc, part, value, at)?;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let typed = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: the check knows no type {other}")),
    };
    if !typed {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let (Some(minimum), Some(n)) = (schema["minimum"].as_i64(), value.as_i64())
        && n < minimum
    {
        return Err(format!("{at}: {n} is below {minimum}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                return Err(format!("{at}: {key} is missing"));
            }
        }
        for (key, field) in object {
            match schema["properties"].get(key) {
                Some(property) => conforms(doc, property, field, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {key} is not in the document"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema["maxItems"].as_u64()
            && items.len() as u64 > max
        {
            return Err(format!("{at}: {} items, at most {max}", items.len()));
        }
        for (i, item) in items.iter().enumerate() {
            conforms(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// `value` against the schema named `name` of docs/openapi.json.
fn assert_conforms(name: &str, value: &Value) {
    let doc = json(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
        )
        .expect("docs/openapi.json"),
    );
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    if let Err(off) = conforms(&doc, &schema, value, name) {
        panic!("an answer off docs/openapi.json: {off}");
    }
}

fn warden(api: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(WARDEN)
        .args(args)
        .env("WARDEN_API", format!("http://{api}"))
        .env("WARDEN_TOKEN", TOKEN)
        .output()
        .expect("run the CLI")
}

/// Every resource of a status, with its group's state.
fn resources(status: &Value) -> Vec<(String, Value)> {
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| {
            let state = g["state"].clone();
            g["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(move |r| {
                    (r["name"].as_str().unwrap_or("").to_string(), {
                        let mut r = r.clone();
                        r["group_state"] = state.clone();
                        r
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_api_answers_while_a_large_node_starts_and_takes_changes_once_it_has() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = free_port();
    let mut agent = start(dir.path(), api, RESOURCES);

    // The first answer comes while the agent starts.
    let first = wait_until("the status to answer", Duration::from_secs(60), || {
        if let Ok(Some(exit)) = agent.0.try_wait() {
            panic!(
                "the agent exited ({exit}); its log:\n{}",
                std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
            );
        }
        api_get(api, TOKEN, "/v1/status").filter(|(code, _)| *code == 200)
    });
    let status = json(&first.1);
    assert!(
        status["starting"].is_object(),
        "the first status came once the start was done: {}",
        &first.1[..first.1.len().min(400)]
    );
    assert_conforms("Status", &status);
    // A change asked through the CLI now: it waits for the start (joined
    // below) and makes its change once.
    let cli = std::thread::spawn(move || warden(api, &["group", "create", "asked-early"]));
    // A change asked now is refused, with the progress, and nothing is done.
    let refused =
        api_request(api, TOKEN, "POST", "/v1/groups", r#"{"name":"refused"}"#).expect("an answer");
    assert_eq!(refused.code, 503, "{}", refused.body);
    let body = json(&refused.body);
    let message = body["error"].as_str().expect("error");
    assert!(
        message.starts_with("the agent is still starting (")
            && message.contains("nothing was done"),
        "{message}"
    );
    assert!(body["starting"]["phase"].is_string(), "{body}");
    assert_conforms("Error", &body);
    assert!(
        refused.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        refused.head
    );
    // Without the token: 401, the progress not disclosed.
    let anonymous =
        api_request(api, "wrong", "POST", "/v1/groups", r#"{"name":"x"}"#).expect("an answer");
    assert_eq!(anonymous.code, 401, "{}", anonymous.body);
    assert!(!anonymous.body.contains("starting"), "{}", anonymous.body);

    // The CLI prints it as starting, not as a node that is up.
    let out = warden(api, &["status"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        printed.starts_with("Node n: starting ("),
        "warden status while starting printed:\n{printed}"
    );

    // The configuration is known a moment later (alone: the file's or the
    // store's), while the resources are still being opened.
    let status = wait_until("the start's configuration", Duration::from_secs(60), || {
        let (code, body) = api_get(api, TOKEN, "/v1/status")?;
        let status = json(&body);
        assert!(
            status["starting"].is_object(),
            "the start ended before the status showed its resources"
        );
        (code == 200 && !status["starting"]["resources_total"].is_null()).then_some(status)
    });
    let starting = &status["starting"];
    assert_eq!(starting["resources_total"], RESOURCES);
    assert!(starting["resources_opened"].as_u64() <= Some(RESOURCES as u64));
    assert_eq!(
        status["nodes"][0]["state"], "starting",
        "{}",
        status["nodes"]
    );
    assert_eq!(status["nodes"][0]["this_node"], true);
    // As docs/openapi.json says, the summary too.
    assert_conforms("Status", &status);
    let (code, summary) = api_get(api, TOKEN, "/v1/status/summary").expect("the summary");
    assert_eq!(code, 200, "{summary}");
    let summary = json(&summary);
    assert_conforms("StatusSummary", &summary);
    assert!(summary["starting"].is_object(), "{summary}");
    // Every configured resource is there, none Online.
    let listed = resources(&status);
    assert_eq!(listed.len(), RESOURCES);
    for (name, r) in &listed {
        assert_eq!(r["state"], "Starting", "{name}: {r}");
        assert_eq!(r["group_state"], "starting", "{name}: {r}");
    }

    // The CLI's change, asked during the start, went through once it ended.
    let out = cli.join().expect("the CLI thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warden group create failed: {stderr}");
    assert!(
        stderr.contains("the agent is still starting"),
        "the CLI's change did not meet the start (it should have: {RESOURCES} resources); \
         stderr: {stderr}"
    );

    // Then every resource comes Online, and the status no longer says starting.
    wait_until("every resource Online", Duration::from_secs(300), || {
        let (code, body) = api_get(api, TOKEN, "/v1/status/summary")?;
        let summary = json(&body);
        (code == 200
            && summary.get("starting").is_none()
            && summary["resources"]["by_state"]["Online"] == RESOURCES)
            .then_some(())
    });
    assert!(has_started(api, TOKEN).is_some());
    let (_, status) = api_get(api, TOKEN, "/v1/status").expect("the status");
    assert_conforms("Status", &json(&status));
    let (code, config) = api_get(api, TOKEN, "/v1/config").expect("the configuration");
    assert_eq!(code, 200, "{config}");
    let config = json(&config);
    let groups: Vec<&str> = config["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(
        groups.iter().filter(|g| **g == "asked-early").count(),
        1,
        "the CLI's group, once: {groups:?}"
    );
    assert!(
        !groups.contains(&"refused"),
        "a refused change was applied: {groups:?}"
    );
}

#[test]
fn a_taken_port_fails_the_start_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let api = taken.local_addr().expect("its address");
    let mut agent = start(dir.path(), api, 3);
    let exit = wait_until("the agent to exit", Duration::from_secs(60), || {
        agent.0.try_wait().ok().flatten()
    });
    assert!(!exit.success(), "the agent started on a taken port");
    let log = std::fs::read_to_string(dir.path().join("agent.log")).expect("log");
    assert!(
        log.contains(&format!("binding the admin API to {api}")),
        "the error does not name the address: {log}"
    );
    // Nothing opened: no resource has its directory.
    assert!(
        !dir.path().join("data/resources/r0").exists(),
        "a resource was opened before the bind failed"
    );
    drop(taken);
    // The same configuration starts once the port is free.
    let port = free_port();
    let again = start(dir.path(), port, 3);
    wait_until("the agent to have started", Duration::from_secs(60), || {
        has_started(port, TOKEN)
    });
    drop(again);
}
