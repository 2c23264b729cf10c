//! What an operator asks of the running node (online, offline, move,
//! pause, drain, ...).

use anyhow::Result;
use warden_policy::{Action, Event as PolicyEvent};

use crate::cluster::ClusterLink;

use super::driver::{Driver, now};
use super::{Operation, conflict, not_found};

/// What an operator's request came to on the loop.
pub(super) enum Operated {
    /// Carried out here; the answer.
    Done(String),
    /// To append to the cluster's log, and answer once it is there.
    ToLog {
        link: ClusterLink,
        event: PolicyEvent,
        done: String,
    },
}

impl Driver {
    /// Check an operator's request (online, offline, move, fail, pause,
    /// drain, recovery actions) and carry it out here, or hand it to the
    /// cluster's log.
    pub(super) fn operate(&mut self, operation: Operation) -> Result<Operated> {
        let me = self.settings.name.clone();
        let group_exists = |g: &str| -> Result<()> {
            if self.engine.group(g).is_none() {
                return Err(not_found(format!("no group {g:?}")));
            }
            Ok(())
        };
        let (event, done) = match operation {
            Operation::GroupOnline(group) => {
                group_exists(&group)?;
                (
                    PolicyEvent::GroupOnlineRequested(group.clone()),
                    format!("group {group}: online requested"),
                )
            }
            Operation::GroupOffline(group) => {
                group_exists(&group)?;
                (
                    PolicyEvent::GroupOfflineRequested(group.clone()),
                    format!("group {group}: offline requested"),
                )
            }
            Operation::Move { group, to } => {
                group_exists(&group)?;
                let text = format!(
                    "group {group}: move to {} requested",
                    to.as_deref().unwrap_or("the best node")
                );
                (PolicyEvent::MoveRequested { group, to }, text)
            }
            Operation::AcceptDataLoss { group, node } => {
                if self.engine.group(&group).is_none() && self.engine.copies(&group).is_none() {
                    return Err(not_found(format!(
                        "no group or resource with copies {group:?}"
                    )));
                }
                let text = format!(
                    "group {group}: data loss accepted by the operator, activating on {}",
                    node.as_deref().unwrap_or("the node whose copies lag least")
                );
                (
                    PolicyEvent::AcceptDataLoss {
                        group_or_resource: group,
                        node,
                    },
                    text,
                )
            }
            Operation::Fail { resource } => {
                let Some(handle) = self.monitor.get(&resource) else {
                    return Err(not_found(format!("no resource {resource:?}")));
                };
                handle.fail("failed by the operator")?;
                return Ok(Operated::Done(format!(
                    "resource {resource}: failure injected"
                )));
            }
            Operation::Pause => (
                PolicyEvent::NodePaused(me.clone()),
                format!("node {me} paused"),
            ),
            Operation::Resume => (
                PolicyEvent::NodeResumed(me.clone()),
                format!("node {me} resumed"),
            ),
            Operation::Drain => (
                PolicyEvent::NodeDraining(me.clone()),
                format!("node {me} draining"),
            ),
            Operation::RecoveryActions(enabled) => (
                PolicyEvent::RecoveryActions {
                    node: me.clone(),
                    enabled,
                },
                format!(
                    "node {me}: recovery actions {}",
                    if enabled { "enabled" } else { "disabled" }
                ),
            ),
        };
        self.sequencing.refuse_if_fenced(&done)?;
        if let Some(link) = self.sequencing.link() {
            // Decided where every node decides: in the log's order.
            return Ok(Operated::ToLog {
                link: link.clone(),
                event,
                done,
            });
        }
        self.remember_online(&event)?;
        self.handle_now(event)?;
        Ok(Operated::Done(done))
    }

    /// Remember which groups the operator wants online, so a restarted
    /// agent brings back what ran. Only a change is saved, and in place: a
    /// copy of the whole configuration per request made start-up quadratic
    /// (every group asked online at start, thousands of resources copied
    /// each time).
    fn remember_online(&mut self, event: &PolicyEvent) -> Result<()> {
        let change = match event {
            PolicyEvent::GroupOnlineRequested(g) if !self.desired.online.contains(g) => {
                Some((g.clone(), true))
            }
            // Accepting the loss brings the group online: it stays so.
            PolicyEvent::AcceptDataLoss {
                group_or_resource: g,
                ..
            } if self.engine.group(g).is_some() && !self.desired.online.contains(g) => {
                Some((g.clone(), true))
            }
            PolicyEvent::GroupOfflineRequested(g) if self.desired.online.contains(g) => {
                Some((g.clone(), false))
            }
            _ => None,
        };
        if let Some((group, online)) = change {
            let set = |online_groups: &mut std::collections::BTreeSet<String>, on: bool| {
                if on {
                    online_groups.insert(group.clone());
                } else {
                    online_groups.remove(&group);
                }
            };
            set(&mut self.desired.online, online);
            if let Err(err) = self.store.save_desired(&self.desired) {
                set(&mut self.desired.online, !online);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Hand `event` to the engine and carry out its actions; an error
    /// naming what the engine refused, if it refused anything.
    fn handle_now(&mut self, event: PolicyEvent) -> Result<()> {
        let actions = self.engine.handle(event, now());
        let refused: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Refused { what, reason } => Some(format!("{what}: {reason}")),
                _ => None,
            })
            .collect();
        for action in actions {
            self.execute(action);
        }
        if !refused.is_empty() {
            return Err(conflict(format!("refused: {}", refused.join("; "))));
        }
        Ok(())
    }
}
