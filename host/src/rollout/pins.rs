//! Pins across the cluster: a pin or unpin asked of any node is recorded
//! at `pins/TYPE`, and every node's pins follow it.

use anyhow::{Context, Result};

use super::{Rollout, lock};
use crate::monitor::{Event, EventKind};

impl Rollout {
    /// Pin `type_name` on every node, at the version this node runs (a
    /// `pin` the operator asked of this node, which has pinned it).
    pub async fn pin_everywhere(&self, type_name: &str) -> Result<()> {
        let running = self.node.plugins().await?;
        let version = running
            .iter()
            .find(|p| p.name() == type_name)
            .map(|p| p.info().version.clone())
            .with_context(|| format!("this node runs no type {type_name}"))?;
        self.plugins.pin(type_name, &version).await?;
        lock(&self.cluster_pins).insert(type_name.to_string(), version);
        Ok(())
    }

    /// Take `type_name`'s pin off every node (an `unpin` asked of this
    /// node, which has unpinned it).
    pub async fn unpin_everywhere(&self, type_name: &str) -> Result<()> {
        self.plugins.unpin(type_name).await?;
        lock(&self.cluster_pins).remove(type_name);
        Ok(())
    }

    /// Make this node's pins follow the cluster's: a type pinned on every
    /// node is pinned here at that version (swapping to it if this node
    /// has it loaded; tried once per version, the refusal logged and
    /// recorded), and unpinned here when the cluster's pin goes.
    pub(super) async fn follow_pins(&self) -> Result<()> {
        let pins = self.plugins.pins().await?;
        let running = self.node.plugins().await?;
        let pinned = self.node.pinned().await?;
        for (type_name, version) in &pins {
            let Some(here) = running.iter().find(|p| p.name() == type_name) else {
                continue;
            };
            if pinned.contains(type_name) && here.info().version == *version {
                lock(&self.cluster_pins).insert(type_name.clone(), version.clone());
                continue;
            }
            if !lock(&self.pins_tried).insert((type_name.clone(), version.clone())) {
                continue;
            }
            let (action, reason) = match self.node.pin(type_name, Some(version.clone())).await {
                Ok(done) => {
                    lock(&self.cluster_pins).insert(type_name.clone(), version.clone());
                    ("pinned", format!("{done}, as on every node of the cluster"))
                }
                Err(err) => {
                    let reason = format!(
                        "the cluster pins {type_name} to {version}, but this node could not: \
                         {err:#}"
                    );
                    tracing::error!("{reason}");
                    ("pin-refused", reason)
                }
            };
            self.node.record(Event::now(
                type_name,
                EventKind::Plugin {
                    action: action.to_string(),
                    version: Some(version.clone()),
                    reason: Some(reason),
                },
            ));
        }
        // A pin that went may come back, to be tried again.
        lock(&self.pins_tried).retain(|(t, v)| pins.get(t) == Some(v));
        let gone: Vec<String> = lock(&self.cluster_pins)
            .keys()
            .filter(|t| !pins.contains_key(*t))
            .cloned()
            .collect();
        for type_name in gone {
            lock(&self.cluster_pins).remove(&type_name);
            match self.node.unpin(&type_name).await {
                Ok(done) => tracing::info!("{done}, as on every node of the cluster"),
                Err(err) => tracing::error!("unpinning {type_name} as the cluster did: {err:#}"),
            }
        }
        Ok(())
    }
}
