//! The operator's commands: a thin client of the admin API.
//!
//! Every command is one or two HTTP calls; what the agent answers is
//! printed (as a table, or as JSON with `--json`), and any refusal is an
//! error with the agent's own words and a non-zero exit.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the admin API is and how to get in.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The admin API's address.
    #[arg(long, env = "WARDEN_API", default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// The bearer token (see the agent's [api] token_file).
    #[arg(long, env = "WARDEN_TOKEN", default_value = "", hide_env_values = true)]
    pub token: String,
}

/// `warden group ...`: the operations on groups, each one request to the
/// admin API.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group (a virtual server).
    Create {
        /// The group's name.
        name: String,
        /// Nodes in order of preference (repeat); default: the agent's node.
        #[arg(long = "preferred-owner")]
        preferred_owners: Vec<String>,
        /// Failovers within the period after which the group stays Failed.
        #[arg(long, default_value_t = 10)]
        failover_threshold: u32,
        /// The period failovers are counted over, in seconds.
        #[arg(long, default_value_t = 21_600)]
        failover_period_s: u64,
        /// off, immediate, or a window of hours such as 22-6.
        #[arg(long, default_value = "off")]
        failback: String,
        /// Do not bring it online when the agent starts.
        #[arg(long)]
        offline: bool,
    },
    /// Delete a group; it must hold no resource.
    Delete {
        /// The group's name.
        name: String,
    },
    /// Ask the group online (in dependency order).
    Online {
        /// The group's name.
        name: String,
    },
    /// Ask the group offline (in reverse dependency order).
    Offline {
        /// The group's name.
        name: String,
    },
    /// Move the group to a node, or to the best other node.
    Move {
        /// The group's name.
        name: String,
        /// The node to move to; none: the best one the policy finds.
        #[arg(long)]
        to: Option<String>,
    },
    /// Bring the group online (or move it) although its copies lag past
    /// their `max_lag_on_failover`: the operator accepts losing what the
    /// lag says (recorded in the event history).
    AcceptDataLoss {
        /// The group's name (or a resource with copies, meaning its group).
        name: String,
        /// The node whose copy to activate; none: the copy that lags least.
        #[arg(long)]
        node: Option<String>,
    },
}

/// `warden resource ...`: the operations on resources, each one request
/// to the admin API.
#[derive(Subcommand, Debug)]
pub enum ResourceCommand {
    /// Create a resource.
    Create {
        /// The resource's name.
        name: String,
        /// Its type: the name of a loaded plugin.
        #[arg(long = "type")]
        type_name: String,
        /// Its group; default: a group of its own, named after it.
        #[arg(long)]
        group: Option<String>,
        /// A resource of the same group this one needs (repeat).
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
        /// A property, KEY=VALUE (repeat).
        #[arg(long = "prop", value_parser = key_value)]
        properties: Vec<(String, String)>,
        /// Overrides the type's is-alive interval.
        #[arg(long)]
        is_alive_interval_ms: Option<u64>,
        /// Overrides the type's pending timeout.
        #[arg(long)]
        pending_timeout_ms: Option<u64>,
    },
    /// Delete a resource (taken offline first).
    Delete {
        /// The resource's name.
        name: String,
    },
    /// Fail the resource on purpose (fault injection).
    Fail {
        /// The resource's name.
        name: String,
    },
    /// Cut off the resource's pending online or offline (one its type lets
    /// run without a timeout, say); it fails and is terminated.
    Cancel {
        /// The resource's name.
        name: String,
    },
    /// Show the resource: its type and version, its state, and every
    /// property's effective value (defaults marked).
    Get {
        /// The resource's name.
        name: String,
    },
    /// Set properties (KEY=VALUE ...); the group must be offline.
    Set {
        /// The resource's name.
        name: String,
        /// Properties, KEY=VALUE.
        #[arg(value_parser = key_value, required = true)]
        properties: Vec<(String, String)>,
    },
    /// Run a type-specific control code.
    Control {
        /// The resource's name.
        name: String,
        /// The type's control code.
        code: String,
        /// Its argument.
        #[arg(default_value = "")]
        payload: String,
    },
}

/// `warden node ...`: what the operator asks of the node it talks to.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Take no new groups.
    Pause,
    /// Take groups again after a pause.
    Resume,
    /// Move every group away.
    Drain,
    /// Turn automatic restarts and failovers back on.
    RecoveryOn,
    /// Stop automatic restarts and failovers.
    RecoveryOff,
}

/// `warden component ...`: server component states with requesters.
#[derive(Subcommand, Debug)]
pub enum ComponentCommand {
    /// Every component: its effective state and each requester's.
    List {
        /// Print the agent's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a component's state on behalf of a requester.
    Set {
        /// ServerWideOffline, Monitoring, RecoveryActionsEnabled, or a type.
        component: String,
        /// Active, Inactive or Draining.
        state: String,
        /// HealthAPI, Maintenance, Sidelined, Functional or Deployment.
        #[arg(long)]
        requester: String,
    },
}

/// Carry out a `warden component` command against the agent.
pub fn component(client: &Client, command: ComponentCommand) -> Result<()> {
    match command {
        ComponentCommand::List { json } => {
            let list = client.call("GET", "/v1/components", None)?;
            if json {
                println!("{list:#}");
                return Ok(());
            }
            for c in list.as_array().cloned().unwrap_or_default() {
                let requesters: Vec<String> = c["requesters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| format!("{}={}", text(&r["requester"]), text(&r["state"])))
                    .collect();
                println!(
                    "{:<28} {:<9} {}",
                    text(&c["component"]),
                    text(&c["governing"]),
                    requesters.join(" ")
                );
            }
            Ok(())
        }
        ComponentCommand::Set {
            component,
            state,
            requester,
        } => {
            let answer = client.call(
                "POST",
                "/v1/components",
                Some(json!({ "component": component, "requester": requester, "state": state })),
            )?;
            ok_message(&answer);
            Ok(())
        }
    }
}

/// `warden what-if ...`: what the policy would do if something happened;
/// nothing happens.
#[derive(Subcommand, Debug)]
pub enum WhatIfCommand {
    /// A node goes down.
    NodeDown {
        /// The node that goes down.
        node: String,
    },
    /// A resource fails on a node.
    ResourceFailed {
        /// The resource that fails.
        resource: String,
        /// The node it fails on.
        node: String,
        /// The failure's reason, as the history would show it.
        #[arg(long, default_value = "what-if")]
        reason: String,
    },
    /// A planned move.
    Move {
        /// The group to move.
        group: String,
        /// The node to move to; none: the best one the policy finds.
        #[arg(long)]
        to: Option<String>,
    },
    /// A group is taken offline.
    GroupOffline {
        /// The group taken offline.
        group: String,
    },
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// A blocking client of the admin API.
pub struct Client {
    agent: ureq::Agent,
    /// For streams, which have no end to wait for: no overall deadline.
    streaming: ureq::Agent,
    base: String,
    token: String,
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum StreamError {
    /// No answer: the agent is not (or no longer) there.
    Unreachable(anyhow::Error),
    /// The agent answered with a refusal, in its own words.
    Refused(anyhow::Error),
}

impl Client {
    /// A client of the agent `connection` names, with its token.
    pub fn new(connection: &Connection) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        let streaming = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .build();
        Client {
            agent: config.into(),
            streaming: streaming.into(),
            base: connection.api.trim_end_matches('/').to_string(),
            token: connection.token.clone(),
        }
    }

    /// The agent's address, as the operator gave it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET a stream: its body, read as it comes, for as long as it lasts.
    pub fn stream(&self, path: &str) -> Result<impl std::io::BufRead, StreamError> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .streaming
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", "text/event-stream")
            .call()
            .with_context(|| format!("could not reach the agent at {}", self.base))
            .map_err(StreamError::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(std::io::BufReader::new(response.into_body().into_reader()));
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        let err = anyhow::anyhow!("{message} (HTTP {})", status.as_u16());
        // A node shutting down answers 503: it may come back.
        if status.as_u16() == 503 {
            Err(StreamError::Unreachable(err))
        } else {
            Err(StreamError::Refused(err))
        }
    }

    /// Call the API; a non-2xx answer is an error with the agent's message.
    ///
    /// An agent still starting refuses every call but the status (503 with
    /// `starting`: nothing was done, `crate::starting`), so the call is
    /// asked again every second, saying so once on stderr, for at most
    /// [`START_PATIENCE`]: asking again cannot apply it twice.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let began = std::time::Instant::now();
        let mut said = false;
        loop {
            match self.call_once(method, path, body.clone())? {
                Answer::Done(value) => return Ok(value),
                Answer::Starting(message) if began.elapsed() < START_PATIENCE => {
                    if !said {
                        eprintln!("{message}; waiting for it (at most {START_PATIENCE:?})");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                Answer::Starting(message) => bail!(
                    "{message} (HTTP 503; still starting after {:?})",
                    began.elapsed()
                ),
            }
        }
    }

    /// One call: its answer, or the refusal of an agent still starting.
    fn call_once(&self, method: &str, path: &str, body: Option<Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            ("PUT", Some(body)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body),
            (_, Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        };
        let mut response =
            response.with_context(|| format!("could not reach the agent at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("reading the agent's answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            if status.as_u16() == 503 && value["starting"].is_object() {
                return Ok(Answer::Starting(message));
            }
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(Answer::Done(value))
    }
}

/// How long a command waits for an agent that is still starting before it
/// gives up: a debug build opens 10 000 resources in about 15 s.
pub const START_PATIENCE: Duration = Duration::from_secs(120);

/// What one call came to.
enum Answer {
    /// Answered (2xx), with the agent's JSON.
    Done(Value),
    /// Refused because the agent is still starting, with its message.
    Starting(String),
}

fn ok_message(value: &Value) {
    match value["ok"].as_str() {
        Some(message) if !message.is_empty() => println!("{message}"),
        _ => println!("{value}"),
    }
}

pub(crate) fn text(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

/// Carry out a `warden group` command against the agent.
pub fn group(client: &Client, command: GroupCommand) -> Result<()> {
    let answer = match command {
        GroupCommand::Create {
            name,
            preferred_owners,
            failover_threshold,
            failover_period_s,
            failback,
            offline,
        } => client.call(
            "POST",
            "/v1/groups",
            Some(json!({
                "name": name,
                "preferred_owners": preferred_owners,
                "failover_threshold": failover_threshold,
                "failover_period_s": failover_period_s,
                "failback": failback,
                "online": !offline,
            })),
        )?,
        GroupCommand::Delete { name } => {
            client.call("DELETE", &format!("/v1/groups/{name}"), None)?
        }
        GroupCommand::Online { name } => {
            client.call("POST", &format!("/v1/groups/{name}/online"), None)?
        }
        GroupCommand::Offline { name } => {
            client.call("POST", &format!("/v1/groups/{name}/offline"), None)?
        }
        GroupCommand::Move { name, to } => client.call(
            "POST",
            &format!("/v1/groups/{name}/move"),
            Some(json!({ "to": to })),
        )?,
        GroupCommand::AcceptDataLoss { name, node } => client.call(
            "POST",
            &format!("/v1/groups/{name}/accept-data-loss"),
            Some(json!({ "node": node })),
        )?,
    };
    ok_message(&answer);
    Ok(())
}

/// Carry out a `warden resource` command against the agent; `as_json`
/// prints the agent's answer as it came.
pub fn resource(client: &Client, command: ResourceCommand, as_json: bool) -> Result<()> {
    let answer = match command {
        ResourceCommand::Create {
            name,
            type_name,
            group,
            depends_on,
            properties,
            is_alive_interval_ms,
            pending_timeout_ms,
        } => {
            let properties: serde_json::Map<String, Value> = properties
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let mut body = json!({
                "name": name,
                "type": type_name,
                "depends_on": depends_on,
                "properties": properties,
            });
            if let Some(group) = group {
                body["group"] = json!(group);
            }
            if let Some(ms) = is_alive_interval_ms {
                body["is_alive_interval_ms"] = json!(ms);
            }
            if let Some(ms) = pending_timeout_ms {
                body["pending_timeout_ms"] = json!(ms);
            }
            client.call("POST", "/v1/resources", Some(body))?
        }
        ResourceCommand::Delete { name } => {
            client.call("DELETE", &format!("/v1/resources/{name}"), None)?
        }
        ResourceCommand::Fail { name } => {
            client.call("POST", &format!("/v1/resources/{name}/fail"), None)?
        }
        ResourceCommand::Cancel { name } => {
            client.call("POST", &format!("/v1/resources/{name}/cancel"), None)?
        }
        ResourceCommand::Get { name } => {
            let view = super::resource_view::fetch(client, &name)?;
            if as_json {
                println!("{:#}", view.to_json());
            } else {
                print!("{}", view.render());
            }
            return Ok(());
        }
        ResourceCommand::Set { name, properties } => {
            let body: serde_json::Map<String, Value> = properties
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            client.call(
                "PUT",
                &format!("/v1/resources/{name}/properties"),
                Some(Value::Object(body)),
            )?
        }
        ResourceCommand::Control {
            name,
            code,
            payload,
        } => client.call(
            "POST",
            &format!("/v1/resources/{name}/control"),
            Some(json!({ "code": code, "payload": payload })),
        )?,
    };
    ok_message(&answer);
    Ok(())
}

/// Carry out a `warden node` command against the agent.
pub fn node(client: &Client, command: NodeCommand) -> Result<()> {
    let verb = match command {
        NodeCommand::Pause => "pause",
        NodeCommand::Resume => "resume",
        NodeCommand::Drain => "drain",
        NodeCommand::RecoveryOn => "recovery-on",
        NodeCommand::RecoveryOff => "recovery-off",
    };
    ok_message(&client.call("POST", &format!("/v1/node/{verb}"), None)?);
    Ok(())
}

/// Ask the agent what its policy would do (`warden what-if`) and print
/// the actions.
pub fn what_if(client: &Client, command: WhatIfCommand) -> Result<()> {
    let event = match command {
        WhatIfCommand::NodeDown { node } => json!({ "node-down": node }),
        WhatIfCommand::ResourceFailed {
            resource,
            node,
            reason,
        } => json!({ "resource-failed": { "resource": resource, "node": node, "reason": reason } }),
        WhatIfCommand::Move { group, to } => {
            json!({ "move-requested": { "group": group, "to": to } })
        }
        WhatIfCommand::GroupOffline { group } => json!({ "group-offline-requested": group }),
    };
    let answer = client.call("POST", "/v1/what-if", Some(event))?;
    let actions = answer["actions"].as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        println!("nothing would happen");
    }
    for action in actions {
        println!("{}", text(&action));
    }
    Ok(())
}

/// Print the types the agent has loaded (and, in a cluster, each node's
/// builds); `as_json`: the agent's answer as it came.
pub fn plugins(client: &Client, as_json: bool) -> Result<()> {
    let list = client.call("GET", "/v1/plugins", None)?;
    if as_json {
        println!("{list:#}");
        return Ok(());
    }
    for plugin in list.as_array().cloned().unwrap_or_default() {
        println!(
            "{:<20} {:<10} {}",
            text(&plugin["name"]),
            text(&plugin["version"]),
            text(&plugin["description"])
        );
        // In a cluster: the build each node runs, one line per node.
        if let Some(nodes) = plugin["nodes"].as_object() {
            for (node, build) in nodes {
                let sha = text(&build["sha256"]);
                let pinned = if build["pinned"].as_bool() == Some(true) {
                    " pinned"
                } else {
                    ""
                };
                println!(
                    "  {node:<18} {:<10} contract {} {} {}{pinned}",
                    text(&build["version"]),
                    text(&build["contract"]),
                    text(&build["source"]),
                    sha.get(..12).unwrap_or(&sha),
                );
            }
        }
    }
    Ok(())
}

/// Print the versions of `type_name` the agent has loaded, the active
/// one marked.
pub fn plugin_versions(client: &Client, type_name: &str) -> Result<()> {
    let list = client.call("GET", &format!("/v1/plugins/{type_name}/versions"), None)?;
    for v in list.as_array().cloned().unwrap_or_default() {
        let mut marks = Vec::new();
        if v["active"].as_bool() == Some(true) {
            marks.push("active");
        }
        if v["pinned"].as_bool() == Some(true) {
            marks.push("pinned");
        }
        println!("{:<12} {}", text(&v["version"]), marks.join(", "));
    }
    Ok(())
}

/// Ask the agent to roll back, pin or unpin (`verb`) `type_name`, and
/// print its answer.
pub fn plugin_verb(
    client: &Client,
    type_name: &str,
    verb: &str,
    version: Option<String>,
) -> Result<()> {
    let body = version.map(|v| json!({ "version": v }));
    ok_message(&client.call("POST", &format!("/v1/plugins/{type_name}/{verb}"), body)?);
    Ok(())
}

/// Which view `warden status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusView {
    /// Every group and resource.
    All,
    /// Counts per state and the groups not Online.
    Summary,
    /// Every group and resource up to [`SUMMARY_ABOVE`] groups, the
    /// summary above.
    BySize,
}

/// Above this many groups `warden status` prints the summary unless asked
/// for `--all`: a line per resource stops being readable long before, and
/// the whole status of 10 000 resources is 2 MB of JSON.
pub const SUMMARY_ABOVE: u64 = 100;

/// The crm_mon view, once or refreshed every two seconds.
pub fn status(client: &Client, watch: bool, as_json: bool, view: StatusView) -> Result<()> {
    loop {
        let (whole, status) = fetch_status(client, as_json, view)?;
        if as_json {
            println!("{status:#}");
        } else {
            if watch {
                // Clear the screen and go home, as watch(1) does.
                print!("\x1b[2J\x1b[H");
            }
            if whole {
                print_status(&status);
            } else {
                print_summary(&status);
            }
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The status to print, and whether it is the whole one (else the
/// summary). By size: the summary first (small), then the whole status if
/// the node is small. An agent from before the summary (404) gets the
/// whole status asked.
fn fetch_status(client: &Client, as_json: bool, view: StatusView) -> Result<(bool, Value)> {
    let whole = || client.call("GET", "/v1/status", None).map(|s| (true, s));
    match view {
        StatusView::All => whole(),
        StatusView::Summary => client
            .call("GET", "/v1/status/summary", None)
            .map(|s| (false, s)),
        // `--json` keeps printing what scripts read: the whole status.
        StatusView::BySize if as_json => whole(),
        StatusView::BySize => match client.call("GET", "/v1/status/summary", None) {
            Ok(summary) if summary["groups"]["total"].as_u64() > Some(SUMMARY_ABOVE) => {
                Ok((false, summary))
            }
            _ => whole(),
        },
    }
}

/// The summary: counts per state, then the groups not Online with their
/// resources not Online.
fn print_summary(summary: &Value) {
    print_node_line(summary);
    print_nodes(summary);
    let counts = |c: &Value| {
        let by_state = c["by_state"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(state, n)| format!("{n} {state}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        format!("{} ({by_state})", c["total"])
    };
    println!("Groups: {}", counts(&summary["groups"]));
    println!("Resources: {}", counts(&summary["resources"]));
    let listed = summary["not_online"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if listed.is_empty() {
        println!("Every group is Online.");
    } else {
        println!("Not Online:");
        print_groups(&listed);
        let unlisted = summary["not_online_unlisted"].as_u64().unwrap_or(0);
        if unlisted > 0 {
            println!("... and {unlisted} more groups not Online (warden status --all)");
        }
    }
    println!("(a summary: warden status --all shows every group and resource)");
}

fn print_status(status: &Value) {
    print_node_line(status);
    print_nodes(status);
    print_groups(&status["groups"].as_array().cloned().unwrap_or_default());
}

fn print_node_line(status: &Value) {
    if let Some(starting) = status["starting"].as_object() {
        let opened = match starting.get("resources_total").and_then(Value::as_u64) {
            Some(total) => format!(
                ", {} of {total} resources opened",
                starting.get("resources_opened").unwrap_or(&Value::Null)
            ),
            None => String::new(),
        };
        println!(
            "Node {}: starting ({}{opened}); nothing is Online until it has started",
            text(&status["node"]),
            starting.get("phase").map(text).unwrap_or_default(),
        );
        return;
    }
    println!(
        "Node {}: {}, recovery actions {}",
        text(&status["node"]),
        if status["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "up"
        },
        if status["recovery_actions"].as_bool() == Some(false) {
            "off"
        } else {
            "on"
        },
    );
}

/// Every node of the cluster with its state, as the answering node knows
/// it (an agent from before the nodes were in the status prints none).
fn print_nodes(status: &Value) {
    let Some(nodes) = status["nodes"].as_array() else {
        return;
    };
    println!("Nodes:");
    for node in nodes {
        let mut notes = Vec::new();
        if node["this_node"].as_bool() == Some(true) {
            notes.push("this node".to_string());
        }
        if node["recovery_actions"].as_bool() == Some(false) {
            notes.push("recovery actions off".to_string());
        }
        if let Some(reason) = node["reason"].as_str() {
            notes.push(reason.to_string());
        }
        println!(
            "  {:<18} {:<9}{}",
            text(&node["name"]),
            text(&node["state"]),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
        );
    }
}

fn print_groups(groups: &[Value]) {
    for group in groups {
        println!(
            "Group {}: {}{} (failovers in period {}){}",
            text(&group["name"]),
            text(&group["state"]),
            group["owner"]
                .as_str()
                .map(|o| format!(" on {o}"))
                .unwrap_or_default(),
            group["failovers_in_period"],
            group["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
        );
        for r in group["resources"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {:<18} {:<16} {:<15} failures {:<3} checks {:<6}{}",
                text(&r["name"]),
                text(&r["type"]),
                text(&r["state"]),
                r["failures_in_period"],
                r["checks"],
                r["reason"]
                    .as_str()
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default(),
            );
            print_copies(&r);
        }
    }
}

/// A resource's copies under it: node, state, generation, copy and replay
/// queue lengths, lag, health (and why), why it was reseeded if it was,
/// `-` for what is not known yet.
fn print_copies(resource: &Value) {
    let Some(copies) = resource["copies"].as_array() else {
        return;
    };
    let known = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    println!(
        "    copies (generation {}): {:<12} {:<16} {:>5} {:>10} {:>12} {:>8}  health",
        known(&resource["generation"]),
        "node",
        "state",
        "gen",
        "copy-queue",
        "replay-queue",
        "lag"
    );
    for copy in copies {
        println!(
            "    {:<30} {:<12} {:<16} {:>5} {:>10} {:>12} {:>8}  {}{}{}{}",
            "",
            text(&copy["node"]),
            text(&copy["state"]),
            known(&copy["generation"]),
            known(&copy["copy_queue_length"]),
            known(&copy["replay_queue_length"]),
            known(&copy["lag"]),
            copy["health"].as_str().unwrap_or("-"),
            copy["reason"]
                .as_str()
                .map(|x| format!(": {x}"))
                .unwrap_or_default(),
            copy["activation_blocked"]
                .as_str()
                .map(|x| format!(" (not activated without the operator's word: {x})"))
                .unwrap_or_default(),
            copy["reseeded"]
                .as_str()
                .map(|x| format!(" (reseeded: {x})"))
                .unwrap_or_default(),
        );
    }
}
