//! Fence devices as plugins: a node that stopped renewing its lease is
//! powered off through a device (a BMC, ...) before its groups move.
//!
//! A fence type is a WebAssembly component against `warden:fence`
//! (`wit/fence/fence.wit`): status, off, on and reboot of a named node,
//! sandboxed like resource types (bounded calls, a memory limit, an output
//! budget, the network of the device's own address only). `redfish`
//! (`plugins/fence-redfish`) is built in.
//!
//! - `contract.rs` — the bindings and the contract check;
//! - `fence_type.rs` — `FenceType`: load, describe, validate, every call
//!   bounded in a throwaway store;
//! - `device.rs` — `FenceDevice`: a configured device, its actions and
//!   `power_off_confirmed`;
//! - `settings.rs` — `[[cluster.fence_device]]` and its checks.
//!
//! The cluster's use of them (fence before `NodeDown`, and sooner than the
//! lease's expiry) is in `cluster/link.rs` and `cluster/fence.rs`.

mod contract;
mod device;
mod fence_type;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

pub use contract::{EXPORT, PowerState, VERSION};
pub use device::{Action, FenceDevice};
pub use fence_type::{DEVICE_CALL_TIMEOUT, FenceType};
pub use settings::{FenceDeviceSection, check};

use crate::runtime::Runtime;

/// The fence devices of this node's configuration, by the nodes they fence.
#[derive(Debug, Default)]
pub struct Fencing {
    devices: Vec<(FenceDevice, Duration)>,
}

impl Fencing {
    /// Load the built-in fence types and every configured device; an
    /// unknown type or a refused property is an error naming the device.
    pub async fn load(runtime: &Arc<Runtime>, sections: &[FenceDeviceSection]) -> Result<Fencing> {
        let mut fencing = Fencing::default();
        if sections.is_empty() {
            return Ok(fencing);
        }
        let types = builtin_types(runtime).await?;
        for section in sections {
            let key = section.key();
            let fence_type = types.get(&section.type_name).cloned().ok_or_else(|| {
                anyhow!(
                    "{key}: type = {:?}: no such fence type (known: {})",
                    section.type_name,
                    types.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            let device = FenceDevice::new(
                &section.name,
                fence_type,
                &section.properties,
                section.targets.clone(),
            )
            .await
            .map_err(|why| anyhow!("{key}: {why}"))?;
            fencing.devices.push((device, section.confirm_within()));
        }
        Ok(fencing)
    }

    /// Whether no fence device is configured (nodes are then marked down
    /// when their keys go, without fencing).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device that fences `node`, the node's name on it, and how long
    /// one attempt to confirm it off may take.
    pub fn device_for(&self, node: &str) -> Option<(&FenceDevice, &str, Duration)> {
        self.devices.iter().find_map(|(device, within)| {
            device
                .target_of(node)
                .map(|target| (device, target, *within))
        })
    }
}

/// The built-in fence types, by name.
pub async fn builtin_types(runtime: &Arc<Runtime>) -> Result<BTreeMap<String, Arc<FenceType>>> {
    let mut types = BTreeMap::new();
    for (file, bytes) in crate::builtin::BUILTIN_FENCE_TYPES {
        let fence_type = FenceType::load(runtime, bytes)
            .await
            .map_err(|why| anyhow!("{why}"))
            .with_context(|| format!("loading the built-in fence type {file}"))?;
        types.insert(fence_type.name().to_string(), Arc::new(fence_type));
    }
    Ok(types)
}
