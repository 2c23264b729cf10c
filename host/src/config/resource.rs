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
    /// How long to wait at least before any restart, in milliseconds
    /// (Windows' RestartDelay; 0 by default: a first failure restarts at
    /// once).
    #[serde(default)]
    pub delay_ms: u64,
    /// The back-off's first step, in milliseconds: the wait after the 2nd
    /// failure within the period, doubled at each further one up to
    /// `max_backoff_ms` (1 000 by default; 0 turns the back-off off). See
    /// [`RestartPolicy::backoff`] for why.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// The longest back-off wait, in milliseconds (300 000, 5 min, by
    /// default; not below `backoff_ms`). See
    /// [`RestartPolicy::max_backoff`] for why.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
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

fn default_backoff_ms() -> u64 {
    RestartPolicy::default().backoff.0
}

fn default_max_backoff_ms() -> u64 {
    RestartPolicy::default().max_backoff.0
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
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
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

    /// Its restart policy for the policy engine; an unknown action, or a
    /// back-off cap below its step, is an error naming the resource and
    /// the key.
    pub fn restart_policy(&self) -> Result<RestartPolicy> {
        let restart = &self.restart;
        if restart.backoff_ms > 0 && restart.max_backoff_ms < restart.backoff_ms {
            bail!(
                "resource {:?}: restart max_backoff_ms {} is below backoff_ms {}: the back-off would not grow (raise max_backoff_ms, or set backoff_ms = 0 to turn the back-off off)",
                self.name,
                restart.max_backoff_ms,
                restart.backoff_ms
            );
        }
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
            backoff: Millis(self.restart.backoff_ms),
            max_backoff: Millis(self.restart.max_backoff_ms),
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

#[cfg(test)]
mod tests {
    use warden_policy::Millis;

    use super::super::{AgentConfig, GOOD};

    /// [`GOOD`] with its resource's `restart` table replaced by `restart`.
    fn with_restart(restart: &str) -> anyhow::Result<AgentConfig> {
        AgentConfig::parse(&GOOD.replace("restart = { threshold = 5 }", restart))
    }

    #[test]
    fn the_back_off_keys_default_to_1_s_doubling_to_5_min() {
        let config = with_restart("restart = { threshold = 5 }").expect("valid");
        let resource = &config.resources[0];
        assert_eq!(resource.restart.backoff_ms, 1_000);
        assert_eq!(resource.restart.max_backoff_ms, 300_000);
        let policy = resource.restart_policy().expect("valid");
        assert_eq!(policy.delay, Millis::ZERO);
        assert_eq!(policy.backoff, Millis::from_secs(1));
        assert_eq!(policy.max_backoff, Millis::from_mins(5));
    }

    #[test]
    fn the_back_off_keys_reach_the_policy() {
        let config = with_restart(
            "restart = { threshold = 100, delay_ms = 250, backoff_ms = 2000, max_backoff_ms = 60000 }",
        )
        .expect("valid");
        let policy = config.resources[0].restart_policy().expect("valid");
        assert_eq!(policy.threshold, 100);
        assert_eq!(policy.delay, Millis(250));
        assert_eq!(policy.backoff, Millis::from_secs(2));
        assert_eq!(policy.max_backoff, Millis::from_mins(1));
        let off = with_restart("restart = { backoff_ms = 0, max_backoff_ms = 0 }").expect("off");
        assert_eq!(
            off.resources[0].restart_policy().expect("valid").backoff,
            Millis::ZERO
        );
    }

    #[test]
    fn a_cap_below_the_step_is_refused_naming_the_resource_and_the_keys() {
        let err = with_restart("restart = { backoff_ms = 10000, max_backoff_ms = 5000 }")
            .expect_err("cap below step")
            .to_string();
        assert_eq!(
            err,
            "resource \"s\": restart max_backoff_ms 5000 is below backoff_ms 10000: the back-off would not grow (raise max_backoff_ms, or set backoff_ms = 0 to turn the back-off off)"
        );
        let err = with_restart("restart = { max_backoff_ms = 999 }")
            .expect_err("cap below the default step")
            .to_string();
        assert!(
            err.contains("max_backoff_ms 999 is below backoff_ms 1000"),
            "{err}"
        );
    }

    #[test]
    fn misspelt_or_negative_back_off_keys_are_refused() {
        let err = with_restart("restart = { back_off_ms = 1000 }")
            .expect_err("typo")
            .to_string();
        assert!(err.contains("unknown field `back_off_ms`"), "{err}");
        assert!(
            err.contains("backoff_ms"),
            "the known keys are listed: {err}"
        );
        let err = with_restart("restart = { max_backoff_ms = -1 }")
            .expect_err("negative")
            .to_string();
        assert!(err.contains("max_backoff_ms"), "{err}");
    }
}
