//! `[[resource]]`: one resource, its properties, timers and restart
//! policy.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use warden_policy::{CopyNodes, Millis, RestartAction, RestartPolicy};

use super::node::check_memory_limit_mib;
use crate::monitor::TimingOverrides;

/// `[[resource]]`: one resource as the operator writes it (and the API
/// and the cluster's log carry it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource's name: unique on the node, part of paths.
    pub name: String,
    /// Its type: the name of a loaded plugin.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The group it belongs to; default: a group of its own, named after it.
    #[serde(default)]
    pub group: Option<String>,
    /// Resources of the same group that must be online before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Its properties, checked against the type's schema.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// Its store's memory limit in MiB; default `[runtime]`'s.
    #[serde(default)]
    pub memory_limit_mib: Option<u64>,
    /// Overrides the type's pending timeout (online, offline).
    #[serde(default)]
    pub pending_timeout_ms: Option<u64>,
    /// Overrides the type's looks-alive interval.
    #[serde(default)]
    pub looks_alive_interval_ms: Option<u64>,
    /// Overrides the type's is-alive interval.
    #[serde(default)]
    pub is_alive_interval_ms: Option<u64>,
    /// Overrides the type's health check timeout.
    #[serde(default)]
    pub check_timeout_ms: Option<u64>,
    /// Overrides the type's terminate timeout.
    #[serde(default)]
    pub terminate_timeout_ms: Option<u64>,
    /// What to do when it fails.
    #[serde(default)]
    pub restart: RestartConfig,
    /// Where the resource keeps copies of its data: `"all"` (every possible
    /// owner of its group) or a list of nodes. Only for a replicated type;
    /// without it the resource has one copy, where it runs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "named::copies"
    )]
    pub copies: Option<CopyNodes>,
    /// How many log positions a copy may lag and still be activated
    /// without the operator's word (default
    /// [`warden_policy::DEFAULT_MAX_LAG_ON_FAILOVER`]); only with `copies`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "named::max_lag_on_failover"
    )]
    pub max_lag_on_failover: Option<u64>,
}

/// Deserializers that name their key in the error: serde's own message
/// for a wrong value ("invalid value: string \"some\"") does not say which
/// key of the resource it was.
mod named {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use warden_policy::CopyNodes;

    pub(super) fn copies<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CopyNodes>, D::Error> {
        Option::<CopyNodes>::deserialize(d).map_err(|e| D::Error::custom(format!("copies: {e}")))
    }

    pub(super) fn max_lag_on_failover<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u64>, D::Error> {
        Option::<u64>::deserialize(d).map_err(|e| {
            D::Error::custom(format!(
                "max_lag_on_failover: {e} (a number of log positions, 0 or more)"
            ))
        })
    }
}

/// A property value as written in TOML: text, a number or a boolean. The
/// plugin receives it as text and parses it by its schema.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// Text, as written.
    Text(String),
    /// A whole number, handed over in decimal.
    Integer(i64),
    /// `true` or `false`.
    Boolean(bool),
}

impl PropertyValue {
    /// The value as the plugin receives it.
    pub fn as_text(&self) -> String {
        match self {
            PropertyValue::Text(t) => t.clone(),
            PropertyValue::Integer(i) => i.to_string(),
            PropertyValue::Boolean(b) => b.to_string(),
        }
    }
}

/// What to do when a resource fails (Windows: RestartAction and friends).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// "affect-group" (default), "no-affect-group" or "do-not-restart".
    #[serde(default = "default_action")]
    pub action: String,
    /// The failure that reaches this count within the period is final.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// The period failures are counted over, in seconds.
    #[serde(default = "default_period_s")]
    pub period_s: u64,
    /// How long to wait before a restart, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// A resource left Failed is tried again after this long.
    #[serde(default = "default_retry_period_s")]
    pub retry_period_s: u64,
}

fn default_action() -> String {
    "affect-group".to_string()
}

fn default_threshold() -> u32 {
    RestartPolicy::default().threshold
}

fn default_period_s() -> u64 {
    RestartPolicy::default().period.0 / 1000
}

fn default_retry_period_s() -> u64 {
    RestartPolicy::default().retry_period.0 / 1000
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            action: default_action(),
            threshold: default_threshold(),
            period_s: default_period_s(),
            delay_ms: 0,
            retry_period_s: default_retry_period_s(),
        }
    }
}

impl ResourceConfig {
    /// The timers it overrides, for the monitor.
    pub fn timing(&self) -> TimingOverrides {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        TimingOverrides {
            pending_timeout: ms(self.pending_timeout_ms),
            looks_alive_interval: ms(self.looks_alive_interval_ms),
            is_alive_interval: ms(self.is_alive_interval_ms),
            check_timeout: ms(self.check_timeout_ms),
            terminate_timeout: ms(self.terminate_timeout_ms),
        }
    }

    /// Check what a resource definition can get wrong on its own, before
    /// its plugin sees it: the restart policy and the memory limit (which
    /// becomes a byte count, so a huge one must not wrap around to a
    /// limit of nothing). Every way a resource comes in goes through here.
    pub fn check(&self) -> Result<()> {
        if let Some(mib) = self.memory_limit_mib {
            check_memory_limit_mib(mib)
                .with_context(|| format!("resource {:?}: memory_limit_mib", self.name))?;
        }
        self.restart_policy()?;
        Ok(())
    }

    /// Its restart policy for the policy engine; an unknown action is an
    /// error naming the resource.
    pub fn restart_policy(&self) -> Result<RestartPolicy> {
        let action = match self.restart.action.as_str() {
            "affect-group" => RestartAction::RestartAffectGroup,
            "no-affect-group" => RestartAction::RestartNoAffectGroup,
            "do-not-restart" => RestartAction::DoNotRestart,
            other => bail!(
                "resource {:?}: restart action {other:?}: expected \"affect-group\", \"no-affect-group\" or \"do-not-restart\"",
                self.name
            ),
        };
        Ok(RestartPolicy {
            action,
            threshold: self.restart.threshold,
            period: Millis::from_secs(self.restart.period_s),
            delay: Millis(self.restart.delay_ms),
            retry_period: Millis::from_secs(self.restart.retry_period_s),
        })
    }

    /// The group this resource belongs to.
    pub fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// Its properties as the plugin receives them: names and text.
    pub fn properties(&self) -> Vec<(String, String)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.clone(), v.as_text()))
            .collect()
    }
}
