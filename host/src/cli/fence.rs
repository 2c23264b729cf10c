//! `warden fence ACTION NODE --config FILE`: a configured fence device
//! driven by hand, as the agent drives it (the same sandboxed type, the
//! same checks of the configuration), for the operator at 3 a.m. and for
//! the tests.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::commands::FenceAction;
use crate::config::AgentConfig;
use crate::fencing::{Action, Fencing};
use crate::runtime::{Runtime, RuntimeConfig};

pub(super) async fn run(action: FenceAction, node: &str, config: &Path, wait: bool) -> Result<()> {
    let config = AgentConfig::load(config)?;
    let Some(cluster) = &config.cluster else {
        bail!("the configuration has no [cluster], so no [[cluster.fence_device]]");
    };
    if wait && action != FenceAction::Off {
        bail!("--wait goes with off only");
    }
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    })?;
    let fencing = Fencing::load(&runtime, &cluster.fence_device).await?;
    let (device, target, within) = fencing.device_for(node).ok_or_else(|| {
        anyhow!(
            "no [[cluster.fence_device]] names node {node:?} in its targets{}",
            if cluster.fence_device.is_empty() {
                " (the configuration has none)"
            } else {
                ""
            }
        )
    })?;
    let on = format!("{node} (device {}, {})", device.name, target);
    match action {
        FenceAction::Status => {
            let state = device.status(target).await.map_err(|e| anyhow!(e))?;
            println!("{on}: {state}");
        }
        FenceAction::Off if wait => {
            let took = device
                .power_off_confirmed(target, within)
                .await
                .map_err(|e| anyhow!(e))?;
            println!("{on}: off, confirmed after {:.1} s", took.as_secs_f64());
        }
        FenceAction::Off | FenceAction::On | FenceAction::Reboot => {
            let act = match action {
                FenceAction::On => Action::On,
                FenceAction::Reboot => Action::Reboot,
                _ => Action::Off,
            };
            device
                .act(act, target)
                .await
                .map_err(|e| anyhow!(e))
                .with_context(|| format!("{} of {on}", act.name()))?;
            println!("{on}: {} asked", act.name());
        }
    }
    Ok(())
}
