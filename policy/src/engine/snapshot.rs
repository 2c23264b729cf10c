//! The engine's whole state as data, and the engine rebuilt from it.
//!
//! Why: a cluster's replicas reach their state by applying the same log;
//! a snapshot lets a joining replica start from the state at some entry
//! instead of from the first one, so the entries before it can go.
//!
//! The snapshot names nodes, groups and resources (never indices, which
//! are private and depend on the order of the configuration) and carries
//! the configuration it was taken under. [`Engine::restore`] refuses a
//! snapshot of another format version, one taken under another
//! configuration than the one given, and one whose records do not match
//! its own configuration (a record missing, unknown or twice, a node
//! reference to no node): nothing is guessed. To take a snapshot into
//! another configuration, restore it under its own ([`EngineSnapshot::config`])
//! and then [`Engine::reconfigure`], which refuses or keeps state by name
//! exactly as it does for a running engine.

use super::Engine;
use super::deadlines::Deadlines;
use super::state::{
    AcceptedLoss, CopyRecord, CopySet, CopyState, Goal, GroupRecord, NodeRecord, Recovery,
    ResourceRecord,
};
use crate::config::{ClusterConfig, ConfigError, GroupId, NodeId, ResourceId};
use crate::event::{CopyStatus, MoveKind};
use crate::index::{GroupIx, NodeIx, ResourceIx, Table, TableIndex};
use crate::model::{Model, compile};
use crate::time::Millis;
use crate::{NodeStatus, ResourceState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The newest version of the snapshot's format, which this engine writes
/// when the state needs it. Raised whenever a field changes meaning or a
/// record gains state that an older engine would drop, so an older engine
/// refuses the snapshot instead of half reading it. 2: the state of copies
/// (generations, copy states and statuses, the operator's accepted data
/// loss).
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The oldest format this engine reads, and the one it writes while no
/// resource has copies: such a snapshot is exactly what an engine of
/// format 1 wrote, so agents of either version read it during a rolling
/// upgrade. A format 1 snapshot whose configuration gives a resource copies
/// is refused (format 1 cannot hold their state).
pub const OLDEST_SNAPSHOT_FORMAT: u32 = 1;

/// The engine's state at one moment, by name (see the module's docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    format: u32,
    config: ClusterConfig,
    now: Millis,
    nodes: Vec<NodeSnapshot>,
    groups: Vec<GroupSnapshot>,
    resources: Vec<ResourceSnapshot>,
    /// One per resource with copies (none in format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    copies: Vec<CopySetSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CopySetSnapshot {
    resource: ResourceId,
    generation: u64,
    last_active: Option<NodeId>,
    copies: Vec<CopySnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CopySnapshot {
    node: NodeId,
    state: CopyState,
    source: Option<NodeId>,
    status: Option<CopyStatus>,
    failed_reason: Option<String>,
    retry_at: Option<Millis>,
    /// Absent unless the copy was reseeded: snapshots of copies never
    /// reseeded stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reseeded: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct AcceptedLossSnapshot {
    node: Option<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NodeSnapshot {
    name: NodeId,
    status: NodeStatus,
    recovery: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct GroupSnapshot {
    name: GroupId,
    owner: Option<NodeId>,
    goal: GoalSnapshot,
    failovers: Vec<Millis>,
    failed_over: bool,
    drain_noted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_accepted: Option<AcceptedLossSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum GoalSnapshot {
    Offline,
    Online,
    Moving {
        to: NodeId,
        kind: MoveKind,
    },
    Failed {
        reason: String,
        retry_at: Option<Millis>,
        avoid: Option<NodeId>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ResourceSnapshot {
    name: ResourceId,
    state: ResourceState,
    recovery: RecoverySnapshot,
    failures: Vec<Millis>,
    refused: bool,
    failed_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RecoverySnapshot {
    None,
    RestartAt(Millis),
    RetryAt(Millis),
}

/// Why a snapshot was not restored. Each variant's message (its
/// `#[error]`) is its documentation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum RestoreError {
    #[error(
        "the snapshot is of format {found}; this engine reads formats {OLDEST_SNAPSHOT_FORMAT} to {SNAPSHOT_FORMAT}"
    )]
    Format { found: u32 },
    #[error(
        "the snapshot was taken under another configuration ({0}); restore it under its own \
         and reconfigure"
    )]
    OtherConfiguration(String),
    #[error("the snapshot's configuration is not valid: {0}")]
    Config(#[from] ConfigError),
    #[error("the snapshot does not match its configuration: {0}")]
    Inconsistent(String),
}

impl EngineSnapshot {
    /// The format version it was written in.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The configuration in force when it was taken.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The engine's time when it was taken.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Every node and its status, in configuration order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, NodeStatus)> {
        self.nodes.iter().map(|n| (n.name.as_str(), n.status))
    }
}

impl Engine {
    /// The engine's whole state, to rebuild it with [`Engine::restore`].
    pub fn snapshot(&self) -> EngineSnapshot {
        let node = |ix: NodeIx| self.model.nodes[ix].clone();
        let copies = self.model.resources.iter().any(|r| r.copies.is_some());
        EngineSnapshot {
            format: if copies {
                SNAPSHOT_FORMAT
            } else {
                OLDEST_SNAPSHOT_FORMAT
            },
            config: self.model.config.clone(),
            now: self.now,
            nodes: self
                .nodes
                .iter_indexed()
                .map(|(ix, record)| NodeSnapshot {
                    name: node(ix),
                    status: record.status,
                    recovery: record.recovery,
                })
                .collect(),
            groups: self
                .groups
                .iter_indexed()
                .map(|(ix, record)| GroupSnapshot {
                    name: self.model.groups[ix].name.clone(),
                    owner: record.owner.map(node),
                    goal: match &record.goal {
                        Goal::Offline => GoalSnapshot::Offline,
                        Goal::Online => GoalSnapshot::Online,
                        Goal::Moving { to, kind } => GoalSnapshot::Moving {
                            to: node(*to),
                            kind: *kind,
                        },
                        Goal::Failed {
                            reason,
                            retry_at,
                            avoid,
                        } => GoalSnapshot::Failed {
                            reason: reason.clone(),
                            retry_at: *retry_at,
                            avoid: avoid.map(node),
                        },
                    },
                    failovers: record.failovers.clone(),
                    failed_over: record.failed_over,
                    drain_noted: record.drain_noted,
                    loss_accepted: record.loss_accepted.map(|accepted| AcceptedLossSnapshot {
                        node: accepted.node.map(node),
                    }),
                })
                .collect(),
            resources: self
                .resources
                .iter_indexed()
                .map(|(ix, record)| ResourceSnapshot {
                    name: self.model.resources[ix].name.clone(),
                    state: record.state,
                    recovery: match record.recovery {
                        Recovery::None => RecoverySnapshot::None,
                        Recovery::RestartAt(t) => RecoverySnapshot::RestartAt(t),
                        Recovery::RetryAt(t) => RecoverySnapshot::RetryAt(t),
                    },
                    failures: record.failures.clone(),
                    refused: record.refused,
                    failed_reason: record.failed_reason.clone(),
                })
                .collect(),
            copies: self
                .copies
                .iter_indexed()
                .filter_map(|(resource, set)| {
                    let copies = self.model.resources[resource].copies.as_ref()?;
                    Some(CopySetSnapshot {
                        resource: self.model.resources[resource].name.clone(),
                        generation: set.generation,
                        last_active: set.last_active.map(node),
                        copies: copies
                            .nodes
                            .iter()
                            .zip(&set.copies)
                            .map(|(&at, record)| CopySnapshot {
                                node: node(at),
                                state: record.state,
                                source: record.source.map(node),
                                status: record.status.clone(),
                                failed_reason: record.failed_reason.clone(),
                                retry_at: record.retry_at,
                                reseeded: record.reseeded.clone(),
                            })
                            .collect(),
                    })
                })
                .collect(),
        }
    }

    /// The engine as it was when `snapshot` was taken, under `config`,
    /// which must be the configuration the snapshot was taken under (see
    /// the module's docs for why, and for how to change it after).
    pub fn restore(
        config: ClusterConfig,
        snapshot: EngineSnapshot,
    ) -> Result<Engine, RestoreError> {
        if !(OLDEST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&snapshot.format) {
            return Err(RestoreError::Format {
                found: snapshot.format,
            });
        }
        if let Some(difference) = first_difference(&snapshot.config, &config) {
            return Err(RestoreError::OtherConfiguration(difference));
        }
        let model = compile(&config)?;
        let copies = copy_sets(&model, snapshot.format, snapshot.copies)?;
        let nodes = in_model_order("node", &model.node_ix, snapshot.nodes, |n| &n.name)?
            .into_iter()
            .map(|n| NodeRecord {
                status: n.status,
                recovery: n.recovery,
            })
            .collect();
        let groups = in_model_order("group", &model.group_ix, snapshot.groups, |g| &g.name)?
            .into_iter()
            .map(|g| group_record(&model, g))
            .collect::<Result<_, _>>()?;
        let resources = in_model_order("resource", &model.resource_ix, snapshot.resources, |r| {
            &r.name
        })?
        .into_iter()
        .map(|r| ResourceRecord {
            state: r.state,
            recovery: match r.recovery {
                RecoverySnapshot::None => Recovery::None,
                RecoverySnapshot::RestartAt(t) => Recovery::RestartAt(t),
                RecoverySnapshot::RetryAt(t) => Recovery::RetryAt(t),
            },
            failures: r.failures,
            refused: r.refused,
            failed_reason: r.failed_reason,
        })
        .collect();
        let mut engine = Engine {
            deadlines: Deadlines::new(model.groups.len()),
            model: Arc::new(model),
            nodes,
            groups,
            resources,
            copies,
            now: snapshot.now,
            full: false,
        };
        engine.index_all_deadlines();
        Ok(engine)
    }
}

/// The records of `snapshot`, put in the model's order (the position each
/// name has in `positions`); every name of the model exactly once, no other.
fn in_model_order<I, T>(
    kind: &str,
    positions: &HashMap<String, I>,
    records: Vec<T>,
    name: impl Fn(&T) -> &String,
) -> Result<Vec<T>, RestoreError>
where
    I: Copy + Into<Position>,
{
    let mut placed: Vec<Option<T>> = (0..positions.len()).map(|_| None).collect();
    for record in records {
        let Some(&ix) = positions.get(name(&record)) else {
            return Err(RestoreError::Inconsistent(format!(
                "{kind} {} is not in its configuration",
                name(&record)
            )));
        };
        let slot = &mut placed[ix.into().0];
        if slot.is_some() {
            return Err(RestoreError::Inconsistent(format!(
                "{kind} {} is recorded twice",
                name(&record)
            )));
        }
        *slot = Some(record);
    }
    placed
        .into_iter()
        .zip(sorted_names(positions))
        .map(|(record, missing)| {
            record.ok_or_else(|| {
                RestoreError::Inconsistent(format!("{kind} {missing} has no record"))
            })
        })
        .collect()
}

/// A table position, whatever kind of index it came from.
struct Position(usize);

macro_rules! position_of {
    ($($t:ty),*) => {$(
        impl From<$t> for Position {
            fn from(ix: $t) -> Position {
                Position(ix.position())
            }
        }
    )*};
}
position_of!(NodeIx, GroupIx, ResourceIx);

/// The names of `positions` in position order.
fn sorted_names<I: Copy + Into<Position>>(positions: &HashMap<String, I>) -> Vec<&str> {
    let mut names: Vec<(usize, &str)> = positions
        .iter()
        .map(|(name, &ix)| (ix.into().0, name.as_str()))
        .collect();
    names.sort_unstable();
    names.into_iter().map(|(_, name)| name).collect()
}

/// A group's record with its node names resolved in `model`.
fn group_record(model: &Model, group: GroupSnapshot) -> Result<GroupRecord, RestoreError> {
    let node = |name: &NodeId| {
        model.node_ix.get(name).copied().ok_or_else(|| {
            RestoreError::Inconsistent(format!(
                "group {} names node {name}, which is not in its configuration",
                group.name
            ))
        })
    };
    let goal = match &group.goal {
        GoalSnapshot::Offline => Goal::Offline,
        GoalSnapshot::Online => Goal::Online,
        GoalSnapshot::Moving { to, kind } => Goal::Moving {
            to: node(to)?,
            kind: *kind,
        },
        GoalSnapshot::Failed {
            reason,
            retry_at,
            avoid,
        } => Goal::Failed {
            reason: reason.clone(),
            retry_at: *retry_at,
            avoid: avoid.as_ref().map(node).transpose()?,
        },
    };
    let loss_accepted = match &group.loss_accepted {
        Some(accepted) => Some(AcceptedLoss {
            node: accepted.node.as_ref().map(node).transpose()?,
        }),
        None => None,
    };
    Ok(GroupRecord {
        owner: group.owner.as_ref().map(node).transpose()?,
        goal,
        failovers: group.failovers,
        failed_over: group.failed_over,
        drain_noted: group.drain_noted,
        loss_accepted,
    })
}

/// The copy sets of `snapshot` (of `format`), one per resource with copies
/// of `model` and its copies on exactly the model's copy nodes, in order;
/// a format 1 snapshot holds none, so its configuration may give no
/// resource copies.
fn copy_sets(
    model: &Model,
    format: u32,
    snapshot: Vec<CopySetSnapshot>,
) -> Result<Table<ResourceIx, CopySet>, RestoreError> {
    let inconsistent = |why: String| Err(RestoreError::Inconsistent(why));
    let mut sets: Table<ResourceIx, Option<CopySet>> = model
        .resources
        .iter()
        .map(|resource| match resource.copies {
            Some(_) => None,
            None => Some(CopySet::new(0)),
        })
        .collect();
    for set in snapshot {
        let Some(&resource) = model.resource_ix.get(&set.resource) else {
            return inconsistent(format!(
                "copies of {}, which is not in its configuration",
                set.resource
            ));
        };
        let Some(copies) = &model.resources[resource].copies else {
            return inconsistent(format!(
                "copies of {}, which has none in its configuration",
                set.resource
            ));
        };
        if sets[resource].is_some() {
            return inconsistent(format!("the copies of {} are recorded twice", set.resource));
        }
        let node = |name: &NodeId| {
            model.node_ix.get(name).copied().ok_or_else(|| {
                RestoreError::Inconsistent(format!(
                    "the copies of {} name node {name}, which is not in its configuration",
                    set.resource
                ))
            })
        };
        let recorded: Vec<&NodeId> = set.copies.iter().map(|copy| &copy.node).collect();
        let configured: Vec<&NodeId> = copies.nodes.iter().map(|&n| &model.nodes[n]).collect();
        if recorded != configured {
            return inconsistent(format!(
                "the copies of {} are recorded on {} but configured on {}",
                set.resource,
                join(&recorded),
                join(&configured)
            ));
        }
        let mut records = Vec::with_capacity(set.copies.len());
        for copy in set.copies {
            records.push(CopyRecord {
                state: copy.state,
                source: copy.source.as_ref().map(node).transpose()?,
                status: copy.status,
                failed_reason: copy.failed_reason,
                retry_at: copy.retry_at,
                reseeded: copy.reseeded,
            });
        }
        sets[resource] = Some(CopySet {
            generation: set.generation,
            last_active: set.last_active.as_ref().map(node).transpose()?,
            copies: records,
        });
    }
    sets.iter_indexed()
        .map(|(resource, set)| {
            set.clone().ok_or_else(|| {
                let name = &model.resources[resource].name;
                RestoreError::Inconsistent(if format < 2 {
                    format!(
                        "a snapshot of format {format} holds no state of copies, but its configuration gives {name} copies"
                    )
                } else {
                    format!("resource {name} has copies and no record of them")
                })
            })
        })
        .collect()
}

/// `n1,n2`, or `none`.
fn join(names: &[&NodeId]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What differs between the configuration a snapshot was taken under and
/// the one it is restored under, in words; `None` if nothing does.
fn first_difference(taken: &ClusterConfig, given: &ClusterConfig) -> Option<String> {
    if taken.nodes != given.nodes {
        return Some(format!(
            "nodes {} there, {} here",
            taken.nodes.join(","),
            given.nodes.join(",")
        ));
    }
    if taken.singleton_types != given.singleton_types {
        return Some(format!(
            "singleton types [{}] there, [{}] here",
            taken.singleton_types.join(","),
            given.singleton_types.join(",")
        ));
    }
    let names = |c: &ClusterConfig| c.groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
    if names(taken) != names(given) {
        return Some(format!(
            "groups {} there, {} here",
            names(taken).join(","),
            names(given).join(",")
        ));
    }
    taken
        .groups
        .iter()
        .zip(&given.groups)
        .find(|(a, b)| a != b)
        .map(|(group, _)| format!("group {} differs", group.name))
}
