//! `[cluster]`: the etcd this node shares with the others, its lease, and
//! the fencing around it (guard, watchdog, fence devices).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

/// `[cluster]`: this node is one of several that share an etcd (see
/// `crate::cluster`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Keys live under `/warden/NAME/`.
    pub name: String,
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every node that may join, in the order that breaks ties.
    pub nodes: Vec<String>,
    /// The membership lease. A node cut off from etcd stops its groups
    /// within half of it (plus the time to terminate them); a dead node's
    /// groups move after it.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// Run a fence guard beside the agent (`crate::fence_guard`): a process
    /// of its own that kills this node's services when the agent stops
    /// vouching for its lease in time (the agent frozen or stalled).
    #[serde(default = "super::yes")]
    pub fence_guard: bool,
    /// The Linux watchdog device the fence guard arms while this node owns
    /// groups or runs services, and feeds only while the lease is vouched
    /// for (`crate::fence_guard::watchdog`): a node frozen whole is reset
    /// before its lease can expire. Off unless set; its timeout is a third
    /// of the lease TTL.
    #[serde(default)]
    pub watchdog_device: Option<PathBuf>,
    /// Fence devices (`crate::fencing`): a node one of them names is
    /// powered off through it before its groups move.
    #[serde(default)]
    pub fence_device: Vec<crate::fencing::FenceDeviceSection>,
}

fn default_lease_ttl_s() -> u64 {
    10
}

impl ClusterSection {
    /// The membership lease's TTL.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_s)
    }

    pub(super) fn check(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            bail!("[cluster] endpoints: name at least one etcd endpoint");
        }
        if self.nodes.is_empty() {
            bail!("[cluster] nodes: name every node of the cluster");
        }
        if self.lease_ttl_s < 2 {
            bail!(
                "[cluster] lease_ttl_s = {}: at least 2 seconds",
                self.lease_ttl_s
            );
        }
        // The fence guard takes a vouch of half the TTL at most.
        if self.lease_ttl_s > 2 * crate::fence_guard::MAX_VOUCH.as_secs() {
            bail!(
                "[cluster] lease_ttl_s = {}: at most {} seconds (two days)",
                self.lease_ttl_s,
                2 * crate::fence_guard::MAX_VOUCH.as_secs()
            );
        }
        if let Some(device) = &self.watchdog_device {
            if !self.fence_guard {
                bail!(
                    "[cluster] watchdog_device = {:?} needs fence_guard = true: the fence guard \
                     feeds the watchdog",
                    device.display().to_string()
                );
            }
            if self.watchdog_timeout_s().is_none() {
                bail!(
                    "[cluster] watchdog_device = {:?} needs lease_ttl_s of at least 3 (the \
                     watchdog's timeout is a third of the TTL, in whole seconds), not {}",
                    device.display().to_string(),
                    self.lease_ttl_s
                );
            }
        }
        crate::fencing::check(&self.fence_device, &self.nodes)
    }

    /// The watchdog's timeout for this lease TTL
    /// (`crate::fence_guard::watchdog::timeout_for`).
    pub fn watchdog_timeout_s(&self) -> Option<u32> {
        crate::fence_guard::watchdog::timeout_for(self.lease_ttl())
    }

    /// What the fence guard is to do with the watchdog, if one is set.
    pub fn watchdog(&self) -> Option<crate::fence_guard::guard::WatchdogSetup> {
        let device = self.watchdog_device.clone()?;
        Some(crate::fence_guard::guard::WatchdogSetup {
            device,
            timeout_s: self.watchdog_timeout_s()?,
        })
    }
}
