//! `[[group]]`: a virtual server, the resources that move together, and
//! the failback setting it is written with.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use warden_policy::Failback;

/// `[[group]]`: a virtual server, the resources that move together, as
/// the operator writes it (and the API and the cluster's log carry it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name: an etcd key and part of paths (see `check`).
    pub name: String,
    /// Nodes in order of preference; default: this node.
    #[serde(default)]
    pub preferred_owners: Vec<String>,
    /// Failovers within `failover_period_s` after which the group stays
    /// Failed (default 10).
    #[serde(default = "default_failover_threshold")]
    pub failover_threshold: u32,
    /// The period the failovers are counted over, in seconds (default 6 h).
    #[serde(default = "default_failover_period_s")]
    pub failover_period_s: u64,
    /// "off", "immediate", or a window of hours such as "22-6".
    #[serde(default = "default_failback")]
    pub failback: String,
    /// Bring the group online when the agent starts.
    #[serde(default = "super::yes")]
    pub online: bool,
}

impl GroupConfig {
    /// Check what a group definition can get wrong on its own. Its name
    /// becomes an etcd key and part of paths, so it follows the rule of
    /// resource names: no empty name, no `..`, no `/`, no control
    /// characters. Every way a group comes in (configuration file, API,
    /// cluster configuration) goes through here.
    pub fn check(&self) -> Result<()> {
        if !crate::monitor::valid_resource_name(&self.name) {
            bail!(
                "group {:?}: the name must be 1 to 64 characters of a-z, A-Z, 0-9, - and _ \
                 (the rule of resource names)",
                self.name
            );
        }
        parse_failback(&self.failback).with_context(|| format!("group {:?}", self.name))?;
        Ok(())
    }
}

fn default_failover_threshold() -> u32 {
    warden_policy::GroupConfig::new("").failover_threshold
}

fn default_failover_period_s() -> u64 {
    warden_policy::GroupConfig::new("").failover_period.0 / 1000
}

fn default_failback() -> String {
    "off".to_string()
}

/// Parse a failback setting: `off`, `immediate` or `START-END` hours.
pub fn parse_failback(text: &str) -> Result<Failback> {
    match text {
        "off" => Ok(Failback::Off),
        "immediate" => Ok(Failback::Immediate),
        window => {
            // Exactly `H-H` or `HH-HH`, no signs or spaces: what the API's
            // document says, so a value it refuses is never taken.
            let hour = |text: &str| {
                (matches!(text.len(), 1 | 2) && text.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| text.parse::<u8>().ok())
                    .flatten()
            };
            let hours = window
                .split_once('-')
                .and_then(|(a, b)| Some((hour(a)?, hour(b)?)));
            match hours {
                Some((start_hour, end_hour))
                    if start_hour < 24 && end_hour < 24 && start_hour != end_hour =>
                {
                    Ok(Failback::Window {
                        start_hour,
                        end_hour,
                    })
                }
                _ => bail!(
                    "failback {text:?}: expected \"off\", \"immediate\" or a window of hours such as \"22-6\" (two different hours, 0 to 23)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::GOOD;
    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn group_names_follow_the_rule_of_resource_names() {
        for bad in ["", "..", "a/b", "a\nb", "x\u{1b}[2J", &"g".repeat(65)] {
            // A JSON string is a TOML basic string, escapes included.
            let quoted = serde_json::to_string(bad).expect("a string");
            let text = format!("{GOOD}\n[[group]]\nname = {quoted}\n");
            let err = AgentConfig::parse(&text).expect_err(bad).to_string();
            assert!(
                err.starts_with(&format!(
                    "group {bad:?}: the name must be 1 to 64 characters"
                )),
                "{bad:?}: {err}"
            );
        }
        let good = format!("{GOOD}\n[[group]]\nname = \"web-1_a\"\n");
        assert_eq!(
            AgentConfig::parse(&good).expect("valid").groups[0].name,
            "web-1_a"
        );
    }

    #[test]
    fn the_cluster_configuration_refuses_a_bad_group_name_too() {
        let mut desired = crate::desired::Desired::default();
        desired.groups.push(GroupConfig {
            name: "../etc".to_string(),
            preferred_owners: Vec::new(),
            failover_threshold: default_failover_threshold(),
            failover_period_s: default_failover_period_s(),
            failback: default_failback(),
            online: true,
        });
        let err = desired
            .cluster_config("n1", &BTreeMap::new())
            .expect_err("bad name")
            .to_string();
        assert!(
            err.starts_with("group \"../etc\": the name must be"),
            "{err}"
        );
    }
}
