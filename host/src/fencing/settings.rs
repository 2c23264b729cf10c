//! `[[cluster.fence_device]]`: a fence device as the operator configures
//! it, and the checks that need no plugin (names, nodes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

/// One fence device.
///
/// ```toml
/// [[cluster.fence_device]]
/// name = "bmc"
/// type = "redfish"
/// properties = { address = "10.0.0.5:8000", username = "fence", password = "..." }
/// targets = { n1 = "system-n1", n2 = "system-n2", n3 = "system-n3" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceDeviceSection {
    /// The device's name, for messages and the event history.
    pub name: String,
    /// The fence type (`redfish`).
    #[serde(rename = "type")]
    pub type_name: String,
    /// The device's properties, as text (the type's schema says their kinds).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Node name to the node's name on the device (a Redfish system id).
    pub targets: BTreeMap<String, String>,
    /// How long one attempt to power a node off may take, from asking off
    /// to the device confirming it off.
    #[serde(default = "default_confirm_s")]
    pub confirm_s: u64,
}

fn default_confirm_s() -> u64 {
    30
}

impl FenceDeviceSection {
    /// How long to wait for the device to confirm a node is off.
    pub fn confirm_within(&self) -> Duration {
        Duration::from_secs(self.confirm_s)
    }

    /// Where the section is, for messages.
    pub fn key(&self) -> String {
        format!("[[cluster.fence_device]] {:?}", self.name)
    }
}

/// Check the devices against the cluster's nodes: names unique and valid,
/// every target a node of the cluster with a non-empty name on the device,
/// no node fenced by two devices.
pub fn check(devices: &[FenceDeviceSection], nodes: &[String]) -> Result<()> {
    let mut names = BTreeSet::new();
    let mut fenced_by: BTreeMap<&str, &str> = BTreeMap::new();
    for device in devices {
        let key = device.key();
        if device.name.is_empty()
            || !device
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("{key}: name must be letters, digits, - and _");
        }
        if !names.insert(device.name.as_str()) {
            bail!("{key}: a second device of this name");
        }
        if device.confirm_s == 0 || device.confirm_s > 600 {
            bail!(
                "{key}: confirm_s = {}: from 1 to 600 seconds",
                device.confirm_s
            );
        }
        if device.targets.is_empty() {
            bail!("{key}: targets: name the node each target is (node = \"target\")");
        }
        for (node, target) in &device.targets {
            if !nodes.contains(node) {
                bail!(
                    "{key}: targets.{node}: {node:?} is not one of [cluster] nodes ({})",
                    nodes.join(", ")
                );
            }
            if target.is_empty() {
                bail!("{key}: targets.{node}: empty; give the node's name on the device");
            }
            if let Some(other) = fenced_by.insert(node, &device.name) {
                bail!("{key}: targets.{node}: node {node:?} is fenced by device {other:?} already");
            }
        }
    }
    Ok(())
}
