//! Changes to the configuration: checked off the loop, by the engine,
//! saved, then applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot, watch};
use warden_policy::Event as PolicyEvent;

use crate::cluster::ClusterLink;
use crate::components::ComponentStates;
use crate::config::{PropertyValue, ResourceConfig};
use crate::desired::Desired;
use crate::monitor::{Monitor, ResourceSpec};
use crate::runtime::{Plugin, ResourceDirs};

use super::driver::{Driver, QueuedChange, now};
use super::{Change, Command, NodeSettings, conflict, not_found, unavailable};

/// How long a configuration change made through this node waits to come
/// back through the cluster's log before the answer says it has not yet.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// A configuration change made to a copy of the configuration, not yet
/// checked by the engine nor applied.
struct Edit {
    /// The configuration with the change made.
    next: Desired,
    /// The resource to add to the monitor (new, or replacing one).
    prepared: Option<crate::monitor::Prepared>,
    /// The resource to take out of the monitor.
    removed: Option<String>,
    /// A new group to bring online.
    start: Option<String>,
    /// What was done, for the answer and the event history.
    done: String,
}

/// Delete group `name` from `next`: only an existing group, and only once
/// it holds no resource.
fn remove_group(next: &mut Desired, name: &str) -> Result<String> {
    if !next.groups.iter().any(|g| g.name == name) {
        return Err(not_found(format!("no group {name:?}")));
    }
    if let Some(r) = next
        .resources
        .iter()
        .find(|r| r.group.as_deref() == Some(name))
    {
        return Err(conflict(format!(
            "group {name:?} still holds resource {:?}; delete its resources first",
            r.name
        )));
    }
    next.groups.retain(|g| g.name != name);
    next.online.remove(name);
    Ok(format!("group {name} deleted"))
}

/// A resource configuration validated against a version of its type, off
/// the node's loop. Used only if both are still what the loop has when the
/// change is carried out; otherwise the loop validates again.
pub(super) struct Checked {
    pub(super) resource: ResourceConfig,
    pub(super) plugin: Arc<Plugin>,
    pub(super) result: Result<Vec<(String, String)>, crate::monitor::SpecError>,
}

/// A type of `group`'s resources whose component says this node must not
/// host it, if any.
pub(super) fn unavailable_type(
    desired: &Desired,
    components: &ComponentStates,
    group: &str,
) -> Option<String> {
    desired
        .resources
        .iter()
        .filter(|r| r.group_name() == group)
        .find(|r| !components.type_available(&r.type_name))
        .map(|r| r.type_name.clone())
}

/// The monitor's spec for a configured resource.
pub(crate) fn spec_of(settings: &NodeSettings, resource: &ResourceConfig) -> ResourceSpec {
    ResourceSpec {
        name: resource.name.clone(),
        type_name: resource.type_name.clone(),
        properties: resource.properties(),
        timing: resource.timing(),
        memory_limit: resource.memory_limit_mib.map(|mib| (mib as usize) << 20),
        dirs: ResourceDirs::under(&settings.data_dir, &resource.name),
        grants: settings
            .grants
            .get(&resource.type_name)
            .cloned()
            .unwrap_or_default(),
    }
}

/// The loaded plugin of `resource`'s type, or an error naming the loaded
/// types.
fn plugin_of<'a>(settings: &'a NodeSettings, resource: &ResourceConfig) -> Result<&'a Arc<Plugin>> {
    settings.plugins.get(&resource.type_name).ok_or_else(|| {
        anyhow!(
            "resource {:?}: unknown type {:?} (loaded types: {})",
            resource.name,
            resource.type_name,
            settings
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Validate a resource's configuration against its plugin, changing
/// nothing. Calls the plugin: used at start, before the loop runs.
pub(super) async fn prepare(
    settings: &NodeSettings,
    monitor: &Monitor,
    resource: &ResourceConfig,
) -> Result<crate::monitor::Prepared> {
    let plugin = plugin_of(settings, resource)?;
    let spec = spec_of(settings, resource);
    Ok(monitor.prepare(plugin.clone(), spec).await?)
}

/// A resource validated off the loop (`checked`), on this very
/// configuration and version of its type. If the type was swapped
/// meanwhile the change is refused (the operator tries again): the loop
/// does not call the plugin.
fn prepare_checked(
    settings: &NodeSettings,
    monitor: &Monitor,
    resource: &ResourceConfig,
    checked: Option<Checked>,
) -> Result<crate::monitor::Prepared> {
    let plugin = plugin_of(settings, resource)?;
    let Some(checked) =
        checked.filter(|c| c.resource == *resource && Arc::ptr_eq(&c.plugin, plugin))
    else {
        return Err(conflict(format!(
            "resource {:?}: its type {} changed while its configuration was being checked; \
             try again",
            resource.name, resource.type_name
        )));
    };
    let spec = spec_of(settings, resource);
    Ok(checked
        .result
        .and_then(|properties| monitor.prepare_validated(plugin.clone(), spec, properties))?)
}

/// What the plugin has yet to judge of a resource the host alone checked:
/// its spec and its properties with the defaults filled in.
pub(super) struct Unvalidated {
    pub(super) spec: ResourceSpec,
    pub(super) plugin: Arc<Plugin>,
    pub(super) properties: Vec<(String, String)>,
}

/// A resource checked by the host alone (name, timers, schema), without
/// calling its plugin: for a configuration that came through the cluster's
/// log, which the node that appended it validated; this node's plugin
/// gives its verdict later, off the loop.
pub(super) fn prepare_unvalidated(
    settings: &NodeSettings,
    monitor: &Monitor,
    resource: &ResourceConfig,
) -> Result<(crate::monitor::Prepared, Unvalidated)> {
    let plugin = plugin_of(settings, resource)?;
    let spec = spec_of(settings, resource);
    let properties = crate::monitor::check_schema(&spec, plugin)?;
    let prepared = monitor.prepare_validated(plugin.clone(), spec.clone(), properties.clone())?;
    let unvalidated = Unvalidated {
        spec,
        plugin: plugin.clone(),
        properties,
    };
    Ok((prepared, unvalidated))
}

/// What a configuration change came to on the loop.
pub(super) enum Changed {
    /// Made here. Answered once `stopping` (the actor of a resource it
    /// removed) has stopped, off the loop.
    Done {
        done: String,
        stopping: Option<crate::monitor::Stopping>,
    },
    /// Checked here as every node will check it; to append to the
    /// cluster's log (off the loop), and answered once it has come back
    /// and been applied here.
    ToLog {
        link: ClusterLink,
        nodes: Vec<String>,
        next: Desired,
        /// A new group to ask online once the configuration is in.
        start: Option<String>,
        applied: watch::Receiver<u64>,
        done: String,
    },
}

impl Changed {
    /// Answer the operator, off the loop: a refusal at once; a change once
    /// a removed resource has stopped, or once it is in the cluster's log
    /// and applied here (at most [`APPLY_WAIT`] after it is in the log),
    /// then `settled` is told.
    fn answer(
        changed: Result<Changed>,
        reply: oneshot::Sender<Result<String>>,
        settled: mpsc::WeakUnboundedSender<Command>,
    ) {
        let changed = match changed {
            Ok(changed) => changed,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        match changed {
            Changed::Done {
                done,
                stopping: None,
            } => {
                let _ = reply.send(Ok(done));
            }
            Changed::Done {
                done,
                stopping: Some(stopping),
            } => {
                tokio::spawn(async move {
                    stopping.stopped().await;
                    let _ = reply.send(Ok(done));
                });
            }
            Changed::ToLog {
                link,
                nodes,
                next,
                start,
                applied,
                done,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(through_log(link, nodes, next, start, applied, done).await);
                    if let Some(driver) = settled.upgrade() {
                        let _ = driver.send(Command::LogChangeSettled);
                    }
                });
            }
        }
    }
}

/// Append a configuration to the cluster's log, then wait until this node
/// has applied it, so that the operator's next command (a resource in the
/// new group) finds it.
async fn through_log(
    link: ClusterLink,
    nodes: Vec<String>,
    next: Desired,
    start: Option<String>,
    mut applied: watch::Receiver<u64>,
    done: String,
) -> Result<String> {
    let seq = link
        .configure(nodes, next)
        .await
        .map_err(|err| unavailable(format!("{done}: {err:#}")))?;
    if let Some(group) = start {
        link.append(PolicyEvent::GroupOnlineRequested(group));
    }
    let in_force = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|at| *at >= seq)).await;
    match in_force {
        Ok(Ok(_)) => Ok(format!("{done} (through the cluster's log, entry {seq})")),
        Ok(Err(_)) => bail!("{done}: entry {seq} of the cluster's log, but the node has stopped"),
        Err(_) => bail!(
            "{done}: the change is entry {seq} of the cluster's log but did not come back \
             within {APPLY_WAIT:?}; it takes effect when it does"
        ),
    }
}

impl Driver {
    /// Carry out a change now, or, while another is on its way through the
    /// cluster's log, once that one is in force here (checked against the
    /// configuration it made, as a single node's loop would have).
    pub(super) fn change_in_turn(
        &mut self,
        change: Change,
        checked: Option<Checked>,
        reply: oneshot::Sender<Result<String>>,
    ) {
        if let Some(waiting) = &mut self.through_log {
            waiting.push_back(QueuedChange {
                change,
                checked,
                reply,
            });
            return;
        }
        let changed = self.change(change, checked);
        if matches!(changed, Ok(Changed::ToLog { .. })) {
            self.through_log = Some(Default::default());
        }
        Changed::answer(changed, reply, self.myself.clone());
    }

    /// Validate the resource a change adds or alters against its plugin in
    /// a task of its own, which hands the change back to the loop
    /// ([`Command::Checked`]): `validate` is a call into a plugin, and the
    /// loop must go on answering while a hostile one spins to its deadline.
    /// Returns the change if it needs no validation.
    pub(super) fn check_off_loop(
        &mut self,
        change: Change,
        reply: oneshot::Sender<Result<String>>,
    ) -> Option<(Change, oneshot::Sender<Result<String>>)> {
        let resource = match &change {
            Change::AddResource(resource) => Some((**resource).clone()),
            Change::SetProperties {
                resource,
                properties,
            } => self.desired.resource(resource).cloned().map(|mut updated| {
                updated.properties.extend(properties.clone());
                updated
            }),
            _ => None,
        };
        let Some((resource, plugin)) = resource.and_then(|resource| {
            let plugin = self.settings.plugins.get(&resource.type_name)?.clone();
            Some((resource, plugin))
        }) else {
            return Some((change, reply));
        };
        let spec = spec_of(&self.settings, &resource);
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let result = crate::monitor::validate_spec(&spec, &plugin).await;
            if let Some(loop_) = myself.upgrade() {
                let checked = Box::new(Checked {
                    resource,
                    plugin,
                    result,
                });
                let _ = loop_.send(Command::Checked {
                    change,
                    checked,
                    reply,
                });
            }
        });
        None
    }

    /// Check a change with the engine, save it, then apply it. Any error
    /// leaves engine, store and monitor as they were. `checked`: the
    /// validation of its resource done off the loop, if any.
    pub(super) fn change(&mut self, change: Change, checked: Option<Checked>) -> Result<Changed> {
        let edit = self.edit(&change, checked)?;
        let mut cluster = edit
            .next
            .cluster_config(&self.settings.name, &self.settings.plugins)?;
        self.sequencing.refuse_if_fenced(&edit.done)?;
        if let Some(side) = self.sequencing.cluster() {
            // Checked here as every node will check it; carried out when it
            // comes back through the log, on every node alike.
            let link = side.link.clone();
            let applied = side.applied.subscribe();
            let nodes = self.engine.config().nodes.clone();
            cluster.nodes = nodes.clone();
            self.engine
                .clone()
                .reconfigure(cluster, now())
                .map_err(|e| conflict(e.to_string()))?;
            return Ok(Changed::ToLog {
                link,
                nodes,
                next: edit.next,
                start: edit.start,
                applied,
                done: edit.done,
            });
        }
        let actions = self
            .engine
            .reconfigure(cluster, now())
            .map_err(|e| conflict(e.to_string()))?;
        if let Err(err) = self.store.save_desired(&edit.next) {
            // Put the engine back the way it was; the old configuration was
            // valid a moment ago.
            let old = self
                .desired
                .cluster_config(&self.settings.name, &self.settings.plugins)?;
            let _ = self.engine.reconfigure(old, now());
            return Err(err.context("the change was not saved, so it was not made"));
        }
        self.desired = edit.next;
        let stopping = edit.removed.and_then(|name| self.monitor.remove(&name));
        if let Some(prepared) = edit.prepared {
            self.monitor.insert(prepared).map_err(anyhow::Error::from)?;
        }
        for action in actions {
            self.execute(action);
        }
        if let Some(group) = edit.start {
            self.apply(PolicyEvent::GroupOnlineRequested(group));
        }
        self.record("node", "config", edit.done.clone());
        Ok(Changed::Done {
            done: edit.done,
            stopping,
        })
    }

    /// What `change` makes of the configuration, checked on its own (names,
    /// conflicts, the resource against its plugin), nothing yet applied.
    fn edit(&self, change: &Change, checked: Option<Checked>) -> Result<Edit> {
        let mut edit = Edit {
            next: self.desired.clone(),
            prepared: None,
            removed: None,
            start: None,
            done: String::new(),
        };
        edit.done = match change {
            Change::AddGroup(group) => {
                if edit.next.groups.iter().any(|g| g.name == group.name) {
                    return Err(conflict(format!("group {:?} exists already", group.name)));
                }
                group.check()?;
                edit.next.groups.push(group.clone());
                if group.online {
                    edit.next.online.insert(group.name.clone());
                    edit.start = Some(group.name.clone());
                }
                format!("group {} created", group.name)
            }
            Change::RemoveGroup(name) => remove_group(&mut edit.next, name)?,
            Change::AddResource(resource) => self.add_resource(&mut edit, resource, checked)?,
            Change::RemoveResource(name) => {
                if edit.next.resource(name).is_none() {
                    return Err(not_found(format!("no resource {name:?}")));
                }
                edit.next.resources.retain(|r| &r.name != name);
                edit.next.online.remove(name);
                edit.removed = Some(name.clone());
                format!("resource {name} deleted")
            }
            Change::SetProperties {
                resource,
                properties,
            } => self.set_properties(&mut edit, resource, properties, checked)?,
        };
        Ok(edit)
    }

    /// A new resource: its group exists, its name is free, its definition
    /// holds, no swap of its type is under way, and its plugin accepts it.
    fn add_resource(
        &self,
        edit: &mut Edit,
        resource: &ResourceConfig,
        checked: Option<Checked>,
    ) -> Result<String> {
        if let Some(group) = &resource.group
            && !edit.next.groups.iter().any(|g| &g.name == group)
        {
            return Err(not_found(format!(
                "resource {:?}: no group {group:?}",
                resource.name
            )));
        }
        if edit.next.resource(&resource.name).is_some() {
            return Err(conflict(format!(
                "resource {:?} exists already",
                resource.name
            )));
        }
        resource.check()?;
        self.not_swapping(&resource.type_name)?;
        edit.prepared = Some(prepare_checked(
            &self.settings,
            &self.monitor,
            resource,
            checked,
        )?);
        edit.next.resources.push(resource.clone());
        Ok(format!("resource {} created", resource.name))
    }

    /// New properties for a resource whose group is offline and whose type
    /// is not being swapped; validated by preparing a replacement, which
    /// takes the old resource's place when the change is applied.
    fn set_properties(
        &self,
        edit: &mut Edit,
        resource: &str,
        properties: &BTreeMap<String, PropertyValue>,
        checked: Option<Checked>,
    ) -> Result<String> {
        let Some(current) = edit.next.resources.iter_mut().find(|r| r.name == resource) else {
            return Err(not_found(format!("no resource {resource:?}")));
        };
        let group = current.group_name().to_string();
        if self.swapping.contains(&current.type_name) {
            return Err(conflict(format!(
                "resource {resource:?}: a swap of its type {} is under way; try again once it has ended",
                current.type_name
            )));
        }
        let running = self
            .engine
            .group(&group)
            .is_some_and(|g| g.state != warden_policy::GroupState::Offline);
        if running {
            return Err(conflict(format!(
                "resource {resource:?}: its group {group:?} is not offline; take it offline first"
            )));
        }
        for (key, value) in properties {
            current.properties.insert(key.clone(), value.clone());
        }
        let updated = current.clone();
        edit.prepared = Some(prepare_checked(
            &self.settings,
            &Monitor::default(),
            &updated,
            checked,
        )?);
        edit.removed = Some(resource.to_string());
        Ok(format!("resource {resource}: properties set"))
    }

    /// Refuse a change to the resources of `type_name` while a swap moves
    /// them: a resource made meanwhile would stay on the old version.
    pub(super) fn not_swapping(&self, type_name: &str) -> Result<()> {
        if self.swapping.contains(type_name) {
            return Err(conflict(format!(
                "a swap of type {type_name} is under way; try again once it has ended"
            )));
        }
        Ok(())
    }
}
