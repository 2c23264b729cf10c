//! The agent's start as the admin API shows it while it runs.
//!
//! The API is bound and answering from the first moments of the start
//! (`crate::agent`), long before the node's loop exists: at 10 000
//! resources, validating and opening them takes seconds. Until the loop
//! runs, [`StartProgress`] is what the API knows: which step the start is
//! at and how many of the configuration's resources are opened.
//! `GET /v1/status` and `/v1/status/summary` answer from it at once, with
//! this node `starting`, every configured group `starting` and every
//! resource `Starting` (never Online, never missing: the loop has not
//! taken them yet, and in a cluster another node may run them); every
//! other call is refused with 503 and [`StartProgress::refusal`], so a
//! change is never half-taken, queued behind the client's back, or
//! applied twice (`warden` waits and asks again; `crate::cli::client`).
//!
//! Invariant: the counts only grow, and the configuration is set once,
//! when it is known (the file's or the store's alone; the cluster's after
//! joining).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;

use crate::desired::Desired;
use crate::node::{Counts, NodeState, NodeStatusView, SUMMARY_LISTED};

/// The step a start is at, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Loading the built-in types and the plugins directory.
    LoadingPlugins,
    /// Starting the fence guard, loading the fence devices, joining the
    /// cluster and catching up on its log.
    JoiningCluster,
    /// Choosing which version of each type runs.
    ChoosingVersions,
    /// Validating every resource and opening it (its actor and
    /// directories), all or nothing.
    OpeningResources,
    /// Every resource opened; the node's loop is starting and the event
    /// history opening.
    StartingLoop,
}

/// How far the agent's start has come; shared between the start and the
/// admin API, which serves it until the node's loop runs.
pub struct StartProgress {
    node: String,
    phase: Mutex<Phase>,
    opened: AtomicUsize,
    configuration: OnceLock<Outline>,
}

/// The configuration's groups and resources, names and types only: what
/// the status lists while the agent starts.
struct Outline {
    groups: Vec<(String, Vec<(String, String)>)>,
    resources: usize,
}

/// The start's progress, as `starting` in the status and in a refusal.
#[derive(Debug, Clone, Serialize)]
pub struct StartingView {
    /// The step the start is at.
    pub phase: Phase,
    /// Resources validated and opened so far.
    pub resources_opened: usize,
    /// Resources of the configuration; none until it is known (in a
    /// cluster, once joined).
    pub resources_total: Option<usize>,
}

impl StartProgress {
    /// The start of node `node`, at its first step.
    pub fn new(node: &str) -> StartProgress {
        StartProgress {
            node: node.to_string(),
            phase: Mutex::new(Phase::LoadingPlugins),
            opened: AtomicUsize::new(0),
            configuration: OnceLock::new(),
        }
    }

    /// The start has come to `phase`.
    pub fn enter(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        tracing::debug!(?phase, "start");
    }

    /// The configuration the node starts with is known; a second call
    /// changes nothing.
    pub fn configuration(&self, desired: &Desired) {
        let mut by_group: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for r in &desired.resources {
            by_group
                .entry(r.group_name())
                .or_default()
                .push((r.name.clone(), r.type_name.clone()));
        }
        // Configured groups in their order, then the one-resource groups
        // of resources without one, in the resources' order.
        let mut groups: Vec<(String, Vec<(String, String)>)> = desired
            .groups
            .iter()
            .map(|g| {
                let resources = by_group.remove(g.name.as_str()).unwrap_or_default();
                (g.name.clone(), resources)
            })
            .collect();
        for r in &desired.resources {
            if let Some(resources) = by_group.remove(r.group_name()) {
                groups.push((r.group_name().to_string(), resources));
            }
        }
        let _ = self.configuration.set(Outline {
            groups,
            resources: desired.resources.len(),
        });
    }

    /// One more resource validated and opened.
    pub fn opened_one(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the start is now.
    pub fn view(&self) -> StartingView {
        StartingView {
            phase: *self.phase.lock().unwrap_or_else(PoisonError::into_inner),
            resources_opened: self.opened.load(Ordering::Relaxed),
            resources_total: self.configuration.get().map(|c| c.resources),
        }
    }

    /// Why a request cannot be taken now, with the start's progress: the
    /// message of the API's 503 while the agent starts.
    pub fn refusal(&self) -> String {
        let view = self.view();
        let progress = match view.resources_total {
            Some(total) => format!("{} of {total} resources opened", view.resources_opened),
            None => phase_text(view.phase).to_string(),
        };
        format!(
            "the agent is still starting ({progress}); nothing was done: ask again once it \
             has started (GET /v1/status shows how far the start is)"
        )
    }

    /// `GET /v1/status` while the agent starts: this node `starting`,
    /// every configured group and resource listed, none Online.
    pub fn status(&self) -> StartingStatus<'_> {
        StartingStatus {
            node: &self.node,
            paused: false,
            recovery_actions: true,
            nodes: vec![self.this_node()],
            groups: self.groups().collect(),
            starting: self.view(),
        }
    }

    /// `GET /v1/status/summary` while the agent starts: every group is
    /// not Online yet, so the first [`SUMMARY_LISTED`] are listed.
    pub fn summary(&self) -> StartingSummary<'_> {
        let outline = self.configuration.get();
        let groups = outline.map_or(0, |c| c.groups.len());
        let resources = outline.map_or(0, |c| c.resources);
        StartingSummary {
            node: &self.node,
            paused: false,
            recovery_actions: true,
            nodes: vec![self.this_node()],
            groups: starting_counts(GROUP_STARTING, groups),
            resources: starting_counts(RESOURCE_STARTING, resources),
            not_online: self.groups().take(SUMMARY_LISTED).collect(),
            not_online_unlisted: groups.saturating_sub(SUMMARY_LISTED),
            starting: self.view(),
        }
    }

    fn this_node(&self) -> NodeStatusView {
        NodeStatusView {
            name: self.node.clone(),
            state: NodeState::Starting,
            this_node: true,
            recovery_actions: true,
            reason: None,
        }
    }

    fn groups(&self) -> impl Iterator<Item = StartingGroup<'_>> {
        self.configuration
            .get()
            .into_iter()
            .flat_map(|c| c.groups.iter())
            .map(|(name, resources)| StartingGroup {
                name,
                state: GROUP_STARTING,
                owner: None,
                failovers_in_period: 0,
                reason: None,
                resources: resources
                    .iter()
                    .map(|(name, type_name)| StartingResource {
                        name,
                        type_name,
                        state: RESOURCE_STARTING,
                        reason: None,
                        failures_in_period: 0,
                        checks: 0,
                        instances: 0,
                        version: "",
                        last_check: None,
                    })
                    .collect(),
            })
    }
}

/// A group's state while the agent starts (the policy's states are
/// kebab-case).
const GROUP_STARTING: &str = "starting";
/// A resource's state while the agent starts (the monitor's states are
/// capitalised).
const RESOURCE_STARTING: &str = "Starting";

fn phase_text(phase: Phase) -> &'static str {
    match phase {
        Phase::LoadingPlugins => "loading plugins",
        Phase::JoiningCluster => "joining the cluster",
        Phase::ChoosingVersions => "choosing the types' versions",
        Phase::OpeningResources => "opening resources",
        Phase::StartingLoop => "starting the node's loop",
    }
}

fn starting_counts(state: &str, total: usize) -> Counts {
    let mut by_state = BTreeMap::new();
    if total > 0 {
        by_state.insert(state.to_string(), total);
    }
    Counts { total, by_state }
}

/// The status while the agent starts: the shape of
/// [`crate::node::Status`], with `starting`.
#[derive(Debug, Serialize)]
pub struct StartingStatus<'a> {
    node: &'a str,
    paused: bool,
    recovery_actions: bool,
    nodes: Vec<NodeStatusView>,
    groups: Vec<StartingGroup<'a>>,
    starting: StartingView,
}

/// The summary while the agent starts: the shape of
/// [`crate::node::Summary`], with `starting`.
#[derive(Debug, Serialize)]
pub struct StartingSummary<'a> {
    node: &'a str,
    paused: bool,
    recovery_actions: bool,
    nodes: Vec<NodeStatusView>,
    groups: Counts,
    resources: Counts,
    not_online: Vec<StartingGroup<'a>>,
    not_online_unlisted: usize,
    starting: StartingView,
}

/// A group while the agent starts: the shape of
/// [`crate::node::GroupStatus`].
#[derive(Debug, Serialize)]
struct StartingGroup<'a> {
    name: &'a str,
    state: &'static str,
    owner: Option<&'a str>,
    failovers_in_period: u32,
    reason: Option<&'a str>,
    resources: Vec<StartingResource<'a>>,
}

/// A resource while the agent starts: the shape of
/// [`crate::node::ResourceStatusView`]; no check run, no instance made,
/// its version not chosen yet.
#[derive(Debug, Serialize)]
struct StartingResource<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
    state: &'static str,
    reason: Option<&'a str>,
    failures_in_period: u32,
    checks: u64,
    instances: u64,
    version: &'static str,
    last_check: Option<()>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    fn progress() -> StartProgress {
        let config = AgentConfig::parse(
            "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n\
             [[group]]\nname = \"g\"\n\
             [[resource]]\nname = \"a\"\ntype = \"chaos\"\ngroup = \"g\"\n\
             [[resource]]\nname = \"b\"\ntype = \"chaos\"\n",
        )
        .expect("a valid configuration");
        let progress = StartProgress::new("n1");
        progress.configuration(&Desired::from_file(&config));
        progress
    }

    #[test]
    fn every_configured_resource_is_listed_starting_and_none_online() {
        let progress = progress();
        progress.enter(Phase::OpeningResources);
        progress.opened_one();
        let status = serde_json::to_value(progress.status()).expect("json");
        assert_eq!(status["nodes"][0]["state"], "starting");
        assert_eq!(status["starting"]["phase"], "opening-resources");
        assert_eq!(status["starting"]["resources_opened"], 1);
        assert_eq!(status["starting"]["resources_total"], 2);
        let groups = status["groups"].as_array().expect("groups");
        let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        assert_eq!(names, ["g", "b"]);
        for group in groups {
            assert_eq!(group["state"], "starting");
            for r in group["resources"].as_array().expect("resources") {
                assert_eq!(r["state"], "Starting");
            }
        }
        assert!(progress.refusal().contains("1 of 2 resources opened"));
    }

    #[test]
    fn before_the_configuration_is_known_the_refusal_names_the_step() {
        let progress = StartProgress::new("n1");
        progress.enter(Phase::JoiningCluster);
        assert!(progress.refusal().contains("joining the cluster"));
        let summary = serde_json::to_value(progress.summary()).expect("json");
        assert_eq!(
            summary["starting"]["resources_total"],
            serde_json::Value::Null
        );
        assert_eq!(summary["groups"]["total"], 0);
    }
}
