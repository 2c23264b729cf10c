//! The node's side of a cluster: the log's entries applied in order,
//! ownership keys, fencing.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};
use warden_policy::{Engine, Event as PolicyEvent, Millis};

use crate::cluster::checkpoints::EtcdCheckpoints;
use crate::cluster::{ClusterLink, Joined, LinkMessage, LogEntry, LogEvent};
use crate::config::ResourceConfig;
use crate::desired::Desired;
use crate::monitor::{Monitor, ResourceState};

use super::config_change::{Unvalidated, prepare_unvalidated};
use super::driver::{Driver, policy_event};
use super::{Command, NodeSettings, new_engine};
use crate::cluster::snapshot::{self, LogSnapshot};

/// The node's side of a cluster (see `crate::cluster`).
pub(super) struct ClusterState {
    pub(super) link: ClusterLink,
    pub(super) messages: mpsc::UnboundedReceiver<LinkMessage>,
    /// The last entry of the history read at start (applied, not carried
    /// out).
    pub(super) replayed: u64,
    /// The log entry of this node's latest `NodeUp`: from it on, decisions
    /// about this node are carried out. `None` before it and while fenced.
    pub(super) joined_at: Option<u64>,
    /// Groups whose ownership key this node holds.
    pub(super) held: std::collections::BTreeSet<String>,
    /// Resources the engine asked online (or their copy activated, with
    /// that generation), by group, until the group's ownership key is held.
    pub(super) waiting: BTreeMap<String, Vec<(String, Option<u64>)>>,
    /// The engine's clock: the latest entry time seen (entries from nodes
    /// with skewed clocks never move it back).
    pub(super) last_at: Millis,
    /// The deadline a `Tick` was appended for, so it is asked once.
    pub(super) tick_asked_for: Option<Millis>,
    /// The last entry applied here, for the answers to configuration
    /// changes that wait for theirs (`Changed::ToLog`).
    pub(super) applied: watch::Sender<u64>,
    /// The cluster's checkpoint store, for the monitor.
    pub(super) checkpoints: Arc<EtcdCheckpoints>,
    /// Why this node is fenced, from the fence until it rejoins: operator
    /// requests are refused meanwhile (the link could not append them).
    pub(super) fenced: Option<String>,
    /// Other nodes this node fenced through their fence device, or failed
    /// to (`crate::cluster::fence`), until each is up again: what the
    /// status calls them (`node_states.rs`).
    pub(super) device_fencing: BTreeMap<String, DeviceFencing>,
}

/// The last word of this node's fence device work on another node.
#[derive(Debug, Clone)]
pub(super) struct DeviceFencing {
    /// Whether the device confirmed the node off (else it failed).
    pub(super) confirmed: bool,
    /// What was done or what went wrong.
    pub(super) reason: String,
}

/// What a log entry asks of the node.
pub(super) enum Happened {
    Policy(PolicyEvent),
    /// A new configuration of the cluster (any but the first).
    Configure {
        nodes: Vec<String>,
        desired: Desired,
    },
}

impl ClusterState {
    /// What an entry asks, advancing the engine's clock.
    pub(super) fn event_of(&mut self, entry: &LogEntry) -> Option<Happened> {
        self.last_at = self.last_at.max(entry.at);
        match &entry.event {
            LogEvent::Policy(event) => Some(Happened::Policy(event.clone())),
            // The first configuration is the one everything started from.
            LogEvent::Configure { .. } if entry.seq == 1 => None,
            LogEvent::Configure { nodes, desired } => Some(Happened::Configure {
                nodes: nodes.clone(),
                desired: desired.clone(),
            }),
        }
    }

    pub(super) fn joined(&self) -> bool {
        self.joined_at.is_some()
    }

    /// A draining node may stop: nothing of the cluster's runs here any
    /// more, or it never will (not joined, fenced), or no other node is up
    /// to take its groups (a drain then moves nothing).
    pub(super) fn stopped_here(&self, me: &str, engine: &Engine, monitor: &Monitor) -> bool {
        let others_up = engine
            .nodes()
            .iter()
            .any(|n| n.name != me && n.status == warden_policy::NodeStatus::Up);
        !self.joined() || !others_up || monitor.resources().all(|h| !h.status().state.is_active())
    }

    /// A node joining the cluster: its engine starts from the log's
    /// snapshot when there is one (else from the first configuration) and
    /// replays the history after it (later configurations in their place),
    /// applied but not carried out. Also returns whether this agent wrote
    /// the cluster's configuration.
    pub(super) fn replay(
        joined: Joined,
        settings: &NodeSettings,
    ) -> Result<(Engine, ClusterState, bool)> {
        let (mut engine, from, last_at) = match &joined.snapshot {
            Some(snapshot) => {
                let mut config = snapshot
                    .desired
                    .cluster_config(&settings.name, &settings.plugins)?;
                config.nodes = snapshot.nodes.clone();
                (snapshot.restore_engine(config)?, snapshot.seq, snapshot.at)
            }
            None => {
                let first = match joined.history.first().map(|entry| &entry.event) {
                    Some(LogEvent::Configure { desired, .. }) => desired,
                    _ => &joined.desired,
                };
                let mut config = first.cluster_config(&settings.name, &settings.plugins)?;
                config.nodes = joined.nodes.clone();
                (new_engine(config)?, 0, Millis(0))
            }
        };
        let last = joined.history.last().map_or(from, |e| e.seq);
        let mut state = ClusterState {
            link: joined.link,
            messages: joined.messages,
            replayed: last,
            joined_at: None,
            held: std::collections::BTreeSet::new(),
            waiting: BTreeMap::new(),
            last_at,
            tick_asked_for: None,
            applied: watch::Sender::new(last),
            checkpoints: joined.checkpoints,
            fenced: None,
            device_fencing: BTreeMap::new(),
        };
        for entry in &joined.history {
            match state.event_of(entry) {
                Some(Happened::Policy(event)) => {
                    let _ = engine.handle(event, state.last_at);
                }
                Some(Happened::Configure { nodes, desired }) => {
                    desired
                        .cluster_config(&settings.name, &settings.plugins)
                        .and_then(|mut config| {
                            config.nodes = nodes;
                            engine
                                .reconfigure(config, state.last_at)
                                .map_err(anyhow::Error::from)
                        })
                        .with_context(|| {
                            format!("replaying the cluster's configuration entry {}", entry.seq)
                        })?;
                }
                None => {}
            }
        }
        Ok((engine, state, joined.created))
    }
}

impl Driver {
    pub(super) fn on_link(&mut self, message: LinkMessage) {
        match message {
            LinkMessage::Entry(entry) => {
                let seq = entry.seq;
                let snapshot_due = snapshot::due(seq, &entry.origin, &self.settings.name);
                self.on_entry(entry);
                if let Some(cluster) = self.sequencing.cluster() {
                    cluster.applied.send_if_modified(|applied| {
                        let newer = seq > *applied;
                        *applied = (*applied).max(seq);
                        newer
                    });
                    if snapshot_due {
                        cluster.link.offer_snapshot(LogSnapshot::new(
                            seq,
                            cluster.last_at,
                            self.engine.config().nodes.clone(),
                            self.desired.clone(),
                            self.engine.snapshot(),
                        ));
                    }
                }
            }
            LinkMessage::Claimed(group) => self.on_claimed(group),
            LinkMessage::Fenced(reason) => self.on_fenced(reason),
            LinkMessage::Fencing {
                node,
                action,
                reason,
            } => {
                if let Some(cluster) = self.sequencing.cluster_mut() {
                    let record = DeviceFencing {
                        confirmed: action == "fenced",
                        reason: reason.clone(),
                    };
                    cluster.device_fencing.insert(node.clone(), record);
                }
                self.record(&node, action, reason)
            }
        }
    }

    /// Apply the log's next entry; carry out its decisions once this node
    /// has joined.
    pub(super) fn on_entry(&mut self, entry: LogEntry) {
        let me = self.settings.name.clone();
        let Some(cluster) = self.sequencing.cluster_mut() else {
            return;
        };
        let event = match cluster.event_of(&entry) {
            Some(Happened::Policy(event)) => event,
            Some(Happened::Configure { nodes, desired }) => {
                let at = cluster.last_at;
                self.apply_configuration(entry.seq, nodes, desired, at);
                return;
            }
            None => return,
        };
        if let PolicyEvent::NodeUp(node) = &event {
            cluster.device_fencing.remove(node);
        }
        if entry.seq > cluster.replayed
            && entry.origin == me
            && event == PolicyEvent::NodeUp(me.clone())
        {
            cluster.joined_at = Some(entry.seq);
            cluster.fenced = None;
            tracing::info!(seq = entry.seq, "joined the cluster");
        }
        // The cluster counts everything here as gone (this node's lease
        // went): stop it now, not at the next renewal, since the groups'
        // ownership keys went with the lease. Rejoining brings a NodeUp.
        let marked_down = matches!(&event, PolicyEvent::NodeDown(n) if *n == me)
            && cluster.joined_at.is_some_and(|at| at < entry.seq);
        let carry_out = cluster.joined() && !marked_down;
        let at = cluster.last_at;
        let actions = self.engine.handle(event, at);
        if marked_down {
            self.on_fenced("the cluster marked this node down".to_string());
        }
        if carry_out {
            for action in actions {
                self.execute(action);
            }
        }
    }

    /// A new configuration came through the log. The engine takes it as
    /// every other node's engine does (so they stay alike, and refuse
    /// alike); then this node's monitor follows: resources gone or changed
    /// are removed, new or changed ones added.
    pub(super) fn apply_configuration(
        &mut self,
        seq: u64,
        nodes: Vec<String>,
        next: Desired,
        at: Millis,
    ) {
        let mut config = match next.cluster_config(&self.settings.name, &self.settings.plugins) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!("configuration entry {seq}: {err:#}; not applied");
                return;
            }
        };
        config.nodes = nodes;
        let actions = match self.engine.reconfigure(config, at) {
            Ok(actions) => actions,
            Err(err) => {
                self.record("node", "config-refused", format!("entry {seq}: {err}"));
                return;
            }
        };
        let old = std::mem::replace(&mut self.desired, next);
        let gone: Vec<String> = old
            .resources
            .iter()
            .filter(|r| self.desired.resource(&r.name) != Some(*r))
            .map(|r| r.name.clone())
            .collect();
        for name in &gone {
            self.monitor.remove(name);
        }
        let added: Vec<ResourceConfig> = self
            .desired
            .resources
            .iter()
            .filter(|r| old.resource(&r.name) != Some(*r))
            .cloned()
            .collect();
        for resource in &added {
            let inserted = prepare_unvalidated(&self.settings, &self.monitor, resource).and_then(
                |(prepared, unvalidated)| {
                    self.monitor.insert(prepared)?;
                    Ok(unvalidated)
                },
            );
            match inserted {
                Ok(unvalidated) => self.plugin_verdict_off_loop(seq, unvalidated),
                Err(err) => {
                    // The engine has it; this node cannot run it. Say so: the
                    // operator must make the node able (a plugin, a grant).
                    tracing::error!(resource = %resource.name, "cannot run here: {err:#}");
                    self.record(&resource.name, "config-failed", format!("{err:#}"));
                }
            }
        }
        if let Err(err) = self.store.save_desired(&self.desired) {
            tracing::warn!(
                "the cluster's configuration was not copied to the local store: {err:#}"
            );
        }
        if let Some(cluster) = self.sequencing.cluster() {
            cluster.checkpoints.regroup(&self.desired);
        }
        let carry_out = self.sequencing.carries_out();
        if carry_out {
            for action in actions {
                self.execute(action);
            }
        }
        self.record(
            "node",
            "config",
            format!(
                "cluster configuration {seq}: {} resource(s) removed or changed, {} added or changed",
                gone.len(),
                added.len()
            ),
        );
    }

    /// This node's plugin's own `validate` of a resource that came with the
    /// cluster's configuration entry `seq`, in a task of its own (the loop
    /// never waits on a plugin). The resource runs here either way (the
    /// node that appended the entry validated it); a refusal is recorded,
    /// since an online here will then fail and the group move on.
    fn plugin_verdict_off_loop(&self, seq: u64, unvalidated: Unvalidated) {
        let Unvalidated {
            spec,
            plugin,
            properties,
        } = unvalidated;
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let verdict = crate::monitor::plugin_validate(&spec, &plugin, properties).await;
            let Err(err) = verdict else {
                return;
            };
            let reason = format!(
                "configuration entry {seq}: this node's {} {} refuses it: {err}; an online here \
                 will fail",
                plugin.name(),
                plugin.info().version
            );
            tracing::error!(resource = %spec.name, "{reason}");
            if let Some(driver) = myself.upgrade() {
                let event = policy_event(&spec.name, "config-failed", reason);
                let _ = driver.send(Command::Record(event));
            }
        });
    }

    pub(super) fn on_claimed(&mut self, group: String) {
        let Some(cluster) = self.sequencing.cluster_mut() else {
            return;
        };
        if !cluster.joined() {
            cluster.link.release(&group);
            return;
        }
        cluster.held.insert(group.clone());
        crate::fence_guard::owns(cluster.held.len());
        let waiting = cluster.waiting.remove(&group).unwrap_or_default();
        self.record(&group, "owned", format!("{group}: ownership key held"));
        let me = self.settings.name.clone();
        for (resource, activate) in waiting {
            match activate {
                None => self.on_resource(&resource, &me, |h| h.online()),
                Some(generation) => self.on_resource(&resource, &me, |h| {
                    h.copy(crate::monitor::CopyCommand::Activate(generation))
                }),
            }
        }
    }

    /// Renewals stopped: terminate everything here before the lease can
    /// expire and another node take the groups over. Passive copies too: a
    /// node without its lease is down to the cluster, which will activate
    /// none of its copies and tells them nothing (a newer generation, a new
    /// source), so they must not serve their stale data meanwhile; the node
    /// starts them again when it has rejoined.
    pub(super) fn on_fenced(&mut self, reason: String) {
        if let Some(cluster) = self.sequencing.cluster_mut() {
            cluster.joined_at = None;
            cluster.held.clear();
            crate::fence_guard::owns(0);
            cluster.waiting.clear();
            cluster.fenced = Some(reason.clone());
        }
        for handle in self.monitor.resources() {
            let state = handle.status().state;
            // A resource with copies may run a passive copy while Offline
            // (the actor terminates one, and does nothing without one).
            let copy =
                state == ResourceState::Offline && self.engine.copies(handle.name()).is_some();
            if (state.is_active() || copy)
                && let Err(err) = handle.terminate()
            {
                tracing::error!("{err}");
            }
        }
        self.record(&self.settings.name, "fenced", reason);
    }
}
