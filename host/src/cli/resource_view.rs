//! `warden resource get NAME`: one resource as an operator asks about it,
//! its type and version, its group and state, and the value every property
//! of its type takes, the ones left to the type's default marked so.
//!
//! Put together from the API's answers (the resource's configured
//! properties, the node's status, the loaded types' schemas, the
//! configuration in force for its restart policy), so it shows what the
//! agent runs, not what a file says.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::client::{Client, text};

/// One property's effective value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyValue {
    /// The property's name.
    pub name: String,
    /// Its value: the configured one, else the type's default; `None` for
    /// an optional property without a default that is not set.
    pub value: Option<String>,
    /// Whether the value is the type's default (not configured).
    pub default: bool,
}

/// What `warden resource get` shows.
#[derive(Debug, Clone)]
pub struct ResourceView {
    /// The resource's name.
    pub name: String,
    /// Its type.
    pub type_name: Option<String>,
    /// The version of its type it runs on (the status's).
    pub version: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Its state on this node, and why when it failed.
    pub state: Option<String>,
    /// Why it is in its state.
    pub reason: Option<String>,
    /// Every property: the type's schema in its order, then any configured
    /// property the schema does not list (the type not loaded here).
    pub properties: Vec<PropertyValue>,
    /// Set when the type's schema is not known on this node: the values
    /// are the configured ones only.
    pub schema_missing: bool,
    /// Its restart policy as the agent runs it, every key with its value
    /// (the defaults filled in), in the order [`RESTART_KEYS`] lists them;
    /// empty when the configuration does not list the resource.
    pub restart: Vec<(String, Value)>,
}

/// The keys of `restart = { ... }`, in the order the view shows them: what
/// happens, how many failures in what period, then the waits (the delay,
/// the back-off's step and cap), then the retry of a resource left Failed.
pub const RESTART_KEYS: [&str; 7] = [
    "action",
    "threshold",
    "period_s",
    "delay_ms",
    "backoff_ms",
    "max_backoff_ms",
    "retry_period_s",
];

/// Ask the agent about resource `name`.
pub fn fetch(client: &Client, name: &str) -> Result<ResourceView> {
    let configured = client.call("GET", &format!("/v1/resources/{name}/properties"), None)?;
    let status = client
        .call("GET", "/v1/status", None)
        .context("reading the node's status")?;
    let plugins = client
        .call("GET", "/v1/plugins", None)
        .context("reading the loaded types")?;
    let config = client
        .call("GET", "/v1/config", None)
        .context("reading the configuration in force")?;
    Ok(assemble(name, &configured, &status, &plugins, &config))
}

/// The view of resource `name` from the four answers.
pub fn assemble(
    name: &str,
    configured: &Value,
    status: &Value,
    plugins: &Value,
    config: &Value,
) -> ResourceView {
    let (group, resource) = status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|g| {
            g["resources"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == name)
                .map(|r| (g["name"].as_str().map(str::to_string), r.clone()))
        })
        .unwrap_or((None, Value::Null));
    let field = |key: &str| resource[key].as_str().map(str::to_string);
    let type_name = field("type");
    let schema = type_name.as_deref().and_then(|t| {
        plugins
            .as_array()?
            .iter()
            .find(|p| p["name"] == t)?
            .get("properties")?
            .as_array()
            .cloned()
    });
    let set = configured.as_object().cloned().unwrap_or_default();
    let mut properties = Vec::new();
    for entry in schema.iter().flatten() {
        let Some(key) = entry["name"].as_str() else {
            continue;
        };
        properties.push(match set.get(key) {
            Some(value) => PropertyValue {
                name: key.to_string(),
                value: Some(text(value)),
                default: false,
            },
            None => PropertyValue {
                name: key.to_string(),
                value: entry["default"].as_str().map(str::to_string),
                default: entry["default"].is_string(),
            },
        });
    }
    for (key, value) in &set {
        if !properties.iter().any(|p| &p.name == key) {
            properties.push(PropertyValue {
                name: key.clone(),
                value: Some(text(value)),
                default: false,
            });
        }
    }
    let restart_table = config["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .map(|r| r["restart"].clone())
        .unwrap_or(Value::Null);
    let restart = RESTART_KEYS
        .iter()
        .filter_map(|&key| Some((key.to_string(), restart_table.get(key)?.clone())))
        .collect();
    ResourceView {
        name: name.to_string(),
        type_name,
        version: field("version"),
        group,
        state: field("state"),
        reason: field("reason"),
        properties,
        schema_missing: schema.is_none(),
        restart,
    }
}

impl ResourceView {
    /// The view as text: a header of fields, then the property table with
    /// its columns as wide as their longest entry.
    pub fn render(&self) -> String {
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        let mut out = format!("resource   {}\n", self.name);
        out += &format!(
            "type       {}{}\n",
            or_unknown(&self.type_name),
            self.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        );
        out += &format!("group      {}\n", or_unknown(&self.group));
        out += &format!("state      {}\n", or_unknown(&self.state));
        if let Some(reason) = &self.reason {
            out += &format!("reason     {reason}\n");
        }
        if !self.restart.is_empty() {
            let keys: Vec<String> = self
                .restart
                .iter()
                .map(|(key, value)| format!("{key}={}", text(value)))
                .collect();
            out += &format!("restart    {}\n", keys.join(" "));
        }
        out += "properties";
        if self.schema_missing {
            out += " (the type is not loaded on this node: configured values only)";
        }
        out += "\n";
        let width = self
            .properties
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(0);
        for p in &self.properties {
            let value = p.value.as_deref().unwrap_or("(not set)");
            let mark = if p.default { "  (default)" } else { "" };
            out += &format!("  {:<width$}  {value}{mark}\n", p.name);
        }
        out
    }

    /// The view as JSON (`--json`): each property with its value and
    /// whether it is the default.
    pub fn to_json(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .properties
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    json!({ "value": p.value, "default": p.default }),
                )
            })
            .collect();
        json!({
            "name": self.name,
            "type": self.type_name,
            "version": self.version,
            "group": self.group,
            "state": self.state,
            "reason": self.reason,
            "properties": properties,
            "restart": self.restart.iter().cloned().collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_in_and_marked() {
        let configured = json!({ "program": "/usr/bin/sleep", "args": "600" });
        let status = json!({ "groups": [{ "name": "g1", "resources": [
            { "name": "r1", "type": "process", "version": "0.3.1", "state": "Online", "reason": null }
        ]}]});
        let plugins = json!([{ "name": "process", "properties": [
            { "name": "program", "default": null },
            { "name": "args", "default": "" },
            { "name": "a-much-longer-property-name", "default": "500" },
            { "name": "env", "default": null },
        ]}]);
        let config = json!({ "resources": [{ "name": "r1", "restart": {
            "action": "affect-group", "threshold": 3, "period_s": 900, "delay_ms": 0,
            "backoff_ms": 1000, "max_backoff_ms": 300000, "retry_period_s": 3600
        }}]});
        let view = assemble("r1", &configured, &status, &plugins, &config);
        let text = view.render();
        assert!(text.contains("type       process 0.3.1\n"), "{text}");
        assert!(text.contains("group      g1\n"), "{text}");
        assert!(text.contains("state      Online\n"), "{text}");
        assert!(
            text.contains(
                "restart    action=affect-group threshold=3 period_s=900 delay_ms=0 backoff_ms=1000 max_backoff_ms=300000 retry_period_s=3600\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  program                      /usr/bin/sleep\n"),
            "{text}"
        );
        assert!(
            text.contains("  args                         600\n"),
            "{text}"
        );
        assert!(
            text.contains("  a-much-longer-property-name  500  (default)\n"),
            "{text}"
        );
        assert!(
            text.contains("  env                          (not set)\n"),
            "{text}"
        );
        let json = view.to_json();
        assert_eq!(
            json["properties"]["a-much-longer-property-name"]["default"],
            true
        );
        assert_eq!(json["properties"]["args"]["default"], false);
        assert_eq!(json["restart"]["backoff_ms"], 1000);
        assert_eq!(json["restart"]["max_backoff_ms"], 300000);
    }

    #[test]
    fn without_the_types_schema_the_configured_values_show() {
        let view = assemble(
            "r9",
            &json!({ "x": "1" }),
            &json!({ "groups": [] }),
            &json!([]),
            &json!({ "resources": [] }),
        );
        let text = view.render();
        assert!(text.contains("configured values only"), "{text}");
        assert!(text.contains("  x  1\n"), "{text}");
        assert!(text.contains("type       -\n"), "{text}");
        assert!(!text.contains("restart"), "{text}");
    }
}
