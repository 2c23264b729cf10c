//! Versions of a type: install, hot swap, roll back, pin.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::monitor::{ResourceHandle, ResourceSpec, SwapFailure};
use crate::plugin_versions;
use crate::runtime::Plugin;

use super::config_change::spec_of;
use super::driver::{Driver, now};
use super::{Command, conflict, not_found};

/// How long a swap waits for a resource busy with something else (a long
/// online) before it gives up and rolls back.
pub(super) const SWAP_WAIT: Duration = Duration::from_secs(30);

/// How a swap of a type's resources to a new version ended.
pub(super) enum SwapOutcome {
    /// This many resources moved.
    Moved(usize),
    /// A resource's configuration is not valid for the new version; nothing
    /// moved.
    Rejected(String),
    /// A resource could not move; those that had were moved back.
    /// `by_version`: the new version itself failed (not a busy resource).
    RolledBack { reason: String, by_version: bool },
}

/// What to do once a swap has succeeded, besides answering.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterSwap {
    Answer,
    /// Pin the type (a `pin` to an earlier version).
    Pin,
}

/// One loaded version of a resource type.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    /// The version, as the plugin describes itself.
    pub version: String,
    /// The version resources run on now.
    pub active: bool,
    /// Automatic upgrades from the plugins directory are refused.
    pub pinned: bool,
}

/// One resource of a type being swapped: its spec, to validate it against
/// the new version, and its actor (`None` if it has none yet).
pub(super) struct SwapJob {
    pub(super) spec: ResourceSpec,
    pub(super) handle: Option<ResourceHandle>,
}

/// Move every resource in `jobs` from `old` to `plugin`, all or nothing.
/// Runs off the node's loop; every call into the plugin and every wait on
/// an actor is bounded (`validate` by its fixed deadline, a swap by
/// [`SWAP_WAIT`] to start and the actor's own limit once started).
pub(super) async fn swap_type(
    plugin: &Arc<Plugin>,
    old: &Arc<Plugin>,
    jobs: Vec<SwapJob>,
) -> SwapOutcome {
    let old_version = old.info().version.clone();
    let mut validated = Vec::new();
    for job in jobs {
        match crate::monitor::validate_spec(&job.spec, plugin).await {
            Ok(properties) => validated.push((job, properties)),
            Err(err) => {
                return SwapOutcome::Rejected(format!(
                    "{err}; every resource stays on {old_version}"
                ));
            }
        }
    }
    let mut moved: Vec<SwapJob> = Vec::new();
    for (job, properties) in validated {
        let Some(handle) = &job.handle else {
            continue;
        };
        if let Err(failure) = swap_one(handle, plugin, properties).await {
            roll_back(&moved, old).await;
            return SwapOutcome::RolledBack {
                reason: format!(
                    "resource {}: {failure}; every resource is back on {old_version}",
                    job.spec.name
                ),
                by_version: matches!(failure, SwapFailure::Version(_)),
            };
        }
        moved.push(job);
    }
    SwapOutcome::Moved(moved.len())
}

/// Swap one resource's actor to `plugin`.
pub(super) async fn swap_one(
    handle: &ResourceHandle,
    plugin: &Arc<Plugin>,
    properties: Vec<(String, String)>,
) -> Result<(), SwapFailure> {
    let deadline = tokio::time::Instant::now() + SWAP_WAIT;
    match handle.swap(plugin.clone(), properties, deadline).await {
        Ok(outcome) => outcome.map(drop),
        Err(gone) => Err(SwapFailure::NotTried(gone.to_string())),
    }
}

/// Move `resources` back to `old` after a failed swap. Their configuration
/// was valid for it a moment ago.
pub(super) async fn roll_back(resources: &[SwapJob], old: &Arc<Plugin>) {
    for job in resources {
        let Some(handle) = &job.handle else {
            continue;
        };
        let back = match crate::monitor::validate_spec(&job.spec, old).await {
            Ok(properties) => swap_one(handle, old, properties)
                .await
                .map_err(|failure| failure.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(reason) = back {
            tracing::error!(
                resource = job.spec.name,
                "could not return to the old version: {reason}"
            );
        }
    }
}

impl Driver {
    /// A new type is registered at once. A new version of a loaded type
    /// moves every resource of the type to it without leaving its state:
    /// each resource's configuration must be valid for the new version,
    /// and each Online resource's new instance must pass an is-alive. The
    /// first failure moves the resources already swapped back to the old
    /// version and the swap is reported rolled back; nothing else changes.
    ///
    /// The swap calls the plugin (`validate`) and waits on every resource's
    /// actor, so it runs in a task of its own and reports back
    /// ([`Command::Swapped`]): the loop goes on answering meanwhile, however
    /// long a hostile or stuck resource makes the swap take. `reply` gets
    /// the outcome.
    pub(super) fn install(
        &mut self,
        plugin: Arc<Plugin>,
        then: AfterSwap,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let name = plugin.name().to_string();
        let version = plugin.info().version.clone();
        let Some(old) = self.settings.plugins.get(&name).cloned() else {
            self.settings.plugins.insert(name.clone(), plugin);
            self.plugin_event(&name, "loaded", &version, None);
            let _ = reply.send(Ok(format!("type {name} {version} loaded")));
            return;
        };
        if !self.swapping.insert(name.clone()) {
            let _ = reply.send(Err(conflict(format!(
                "a swap of type {name} is under way; try {version} again once it has ended"
            ))));
            return;
        }
        let jobs: Vec<SwapJob> = self
            .desired
            .resources
            .iter()
            .filter(|r| r.type_name == name)
            .map(|r| SwapJob {
                spec: spec_of(&self.settings, r),
                handle: self.monitor.get(&r.name).cloned(),
            })
            .collect();
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let outcome = swap_type(&plugin, &old, jobs).await;
            if let Some(loop_) = myself.upgrade() {
                let _ = loop_.send(Command::Swapped {
                    plugin,
                    old,
                    outcome,
                    then,
                    reply,
                });
            }
        });
    }

    /// Record how a swap ended, and answer.
    pub(super) fn on_swapped(
        &mut self,
        plugin: Arc<Plugin>,
        old: Arc<Plugin>,
        outcome: SwapOutcome,
        then: AfterSwap,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let name = plugin.name().to_string();
        let version = plugin.info().version.clone();
        let old_version = old.info().version.clone();
        self.swapping.remove(&name);
        let result = match outcome {
            SwapOutcome::Rejected(reason) => {
                // Refused by the configuration, not by a fault of the
                // version: not remembered (start-up checks the
                // configuration again, as here).
                self.plugin_event(&name, "rejected", &version, Some(reason.clone()));
                Err(conflict(format!(
                    "version {version} of {name} refused: {reason}"
                )))
            }
            SwapOutcome::RolledBack { reason, by_version } => {
                self.plugin_event(&name, "rolled-back", &version, Some(reason.clone()));
                if by_version {
                    plugin_versions::remember_rejection(&self.store, &plugin, &reason, now().0);
                }
                Err(conflict(format!(
                    "swap of {name} to {version} rolled back: {reason}"
                )))
            }
            SwapOutcome::Moved(moved) => {
                self.settings.plugins.insert(name.clone(), plugin.clone());
                // Keep the version just replaced for a roll-back, and no
                // version twice.
                let versions = self.previous.entry(name.clone()).or_default();
                versions.retain(|p| p.info().version != old_version && p.info().version != version);
                versions.push(old);
                let done = format!(
                    "type {name}: {moved} resource(s) moved from {old_version} to {version}"
                );
                self.plugin_event(&name, "swapped", &version, Some(done.clone()));
                plugin_versions::forget_rejection(&self.store, &plugin);
                if then == AfterSwap::Pin {
                    plugin_versions::save_pin(&self.store, &name, Some(&version)).map(|()| {
                        self.pinned.insert(name.clone());
                        format!("type {name} pinned to {version}")
                    })
                } else {
                    Ok(done)
                }
            }
        };
        let _ = reply.send(result);
    }

    pub(super) fn versions(&self, type_name: &str) -> Result<Vec<VersionView>> {
        let Some(active) = self.settings.plugins.get(type_name) else {
            return Err(not_found(format!("no type {type_name:?}")));
        };
        let pinned = self.pinned.contains(type_name);
        let mut list: Vec<VersionView> = self
            .previous
            .get(type_name)
            .into_iter()
            .flatten()
            .map(|p| VersionView {
                version: p.info().version.clone(),
                active: false,
                pinned: false,
            })
            .collect();
        list.push(VersionView {
            version: active.info().version.clone(),
            active: true,
            pinned,
        });
        Ok(list)
    }

    /// Pin a type, swapping to `version` first if it is not the active one
    /// (then the answer comes when the swap ends).
    pub(super) fn pin(
        &mut self,
        type_name: String,
        version: Option<String>,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let Some(active) = self.settings.plugins.get(&type_name).cloned() else {
            let _ = reply.send(Err(not_found(format!("no type {type_name:?}"))));
            return;
        };
        if let Some(version) = version.filter(|v| *v != active.info().version) {
            let Some(wanted) = self
                .previous
                .get(&type_name)
                .and_then(|versions| versions.iter().find(|p| p.info().version == version))
                .cloned()
            else {
                let _ = reply.send(Err(not_found(format!(
                    "type {type_name:?} has no loaded version {version:?}"
                ))));
                return;
            };
            self.install(wanted, AfterSwap::Pin, reply);
            return;
        }
        let version = active.info().version.clone();
        let result = plugin_versions::save_pin(&self.store, &type_name, Some(&version)).map(|()| {
            self.pinned.insert(type_name.clone());
            format!("type {type_name} pinned to {version}")
        });
        let _ = reply.send(result);
    }
}
