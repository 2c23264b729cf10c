//! Validation: a [`ClusterConfig`] turned into a [`Model`], names resolved to
//! typed indices, resources of each group in dependency (topological) order.
//! It runs before any state is touched, so a rejected configuration changes
//! nothing.

use crate::config::{
    ClusterConfig, ConfigError, CopyNodes, DEFAULT_MAX_LAG_ON_FAILOVER, Failback, GroupConfig,
    GroupId, NodeId, ResourceConfig, ResourceId, RestartPolicy,
};
use crate::index::{GroupIx, NodeIx, ResourceIx, Table};
use crate::time::Millis;
use std::collections::HashMap;

/// The validated configuration, resolved to indices.
#[derive(Debug)]
pub(crate) struct Model {
    pub config: ClusterConfig,
    pub nodes: Table<NodeIx, NodeId>,
    pub node_ix: HashMap<NodeId, NodeIx>,
    pub groups: Table<GroupIx, GroupModel>,
    pub group_ix: HashMap<GroupId, GroupIx>,
    pub resources: Table<ResourceIx, ResourceModel>,
    pub resource_ix: HashMap<ResourceId, ResourceIx>,
    /// For each node, the groups it may own (it is among their candidates):
    /// the groups a change of that node's status can affect.
    pub node_groups: Table<NodeIx, Vec<GroupIx>>,
}

#[derive(Debug)]
pub(crate) struct GroupModel {
    pub name: GroupId,
    /// Resources in dependency order (dependencies first); ties keep
    /// configuration order so the engine's output is deterministic.
    pub resources: Vec<ResourceIx>,
    /// Preferred owners, most preferred first, possible ones only.
    pub preferred: Vec<NodeIx>,
    /// Placement order: the preferred owners, then the other possible owners
    /// in cluster order.
    pub candidates: Vec<NodeIx>,
    pub failover_threshold: u32,
    pub failover_period: Millis,
    pub failback: Failback,
    /// Longest retry period of its resources: how long a group left Failed with
    /// no owner waits before trying again where it is.
    pub retry_period: Millis,
    /// Its resources with copies, in configuration order: empty for a group
    /// that places as it always did.
    pub copied: Vec<ResourceIx>,
}

/// Where a resource keeps copies of its data, and how far one may lag and
/// still be activated without the operator's word.
#[derive(Debug)]
pub(crate) struct CopiesModel {
    /// The nodes holding a copy, in the group's placement order (its
    /// candidates): the order copies are listed in views and reasons.
    pub nodes: Vec<NodeIx>,
    pub max_lag_on_failover: u64,
}

#[derive(Debug)]
pub(crate) struct ResourceModel {
    pub name: ResourceId,
    pub group: GroupIx,
    pub type_name: String,
    pub dependencies: Vec<ResourceIx>,
    pub dependents: Vec<ResourceIx>,
    /// Other resources of the same cluster-singleton type (empty if the type is
    /// not a singleton).
    pub singleton_peers: Vec<ResourceIx>,
    pub singleton: bool,
    pub restart: RestartPolicy,
    pub copies: Option<CopiesModel>,
}

/// Validates `config` and resolves it. The first problem found is returned.
pub(crate) fn compile(config: &ClusterConfig) -> Result<Model, ConfigError> {
    let names = Names::resolve(config)?;
    let mut groups = config
        .groups
        .iter()
        .map(|group| compile_group(config, group, &names.node_ix))
        .collect::<Result<Table<GroupIx, GroupModel>, ConfigError>>()?;
    let mut resources = compile_resources(config, &names, &groups)?;
    link_dependents(&mut resources);
    link_singleton_peers(&mut resources);
    order_groups(&mut groups, &resources)?;
    for (resource, resource_model) in resources.iter_indexed() {
        if resource_model.copies.is_some() {
            groups[resource_model.group].copied.push(resource);
        }
    }
    let mut node_groups: Table<NodeIx, Vec<GroupIx>> =
        names.nodes.iter().map(|_| Vec::new()).collect();
    for (group, group_model) in groups.iter_indexed() {
        for &node in &group_model.candidates {
            node_groups[node].push(group);
        }
    }
    Ok(Model {
        config: config.clone(),
        nodes: names.nodes,
        node_ix: names.node_ix,
        groups,
        group_ix: names.group_ix,
        resources,
        resource_ix: names.resource_ix,
        node_groups,
    })
}

/// Every name resolved to its index, before anything else is checked.
struct Names {
    nodes: Table<NodeIx, NodeId>,
    node_ix: HashMap<NodeId, NodeIx>,
    /// Each group's name, by index.
    group_names: Table<GroupIx, GroupId>,
    group_ix: HashMap<GroupId, GroupIx>,
    resource_ix: HashMap<ResourceId, ResourceIx>,
    /// The group of each resource.
    resource_group: Table<ResourceIx, GroupIx>,
}

impl Names {
    /// Every node, group and resource by name; a name given twice is refused
    /// (resource names are unique in the whole cluster).
    fn resolve(config: &ClusterConfig) -> Result<Names, ConfigError> {
        let mut names = Names {
            nodes: Table::new(),
            node_ix: HashMap::new(),
            group_names: Table::new(),
            group_ix: HashMap::new(),
            resource_ix: HashMap::new(),
            resource_group: Table::new(),
        };
        for name in &config.nodes {
            let node = names.nodes.push(name.clone());
            if names.node_ix.insert(name.clone(), node).is_some() {
                return Err(ConfigError::DuplicateNode(name.clone()));
            }
        }
        for group_config in &config.groups {
            names.add_group(group_config)?;
        }
        Ok(names)
    }

    fn add_group(&mut self, group_config: &GroupConfig) -> Result<(), ConfigError> {
        let group = self.group_names.push(group_config.name.clone());
        if self
            .group_ix
            .insert(group_config.name.clone(), group)
            .is_some()
        {
            return Err(ConfigError::DuplicateGroup(group_config.name.clone()));
        }
        for resource_config in &group_config.resources {
            let resource = self.resource_group.push(group);
            if self
                .resource_ix
                .insert(resource_config.name.clone(), resource)
                .is_some()
            {
                return Err(ConfigError::DuplicateResource(resource_config.name.clone()));
            }
        }
        Ok(())
    }
}

/// One group's placement policy: its owners checked and ordered, its failback
/// window checked. Its resources are ordered later ([`order_groups`]).
fn compile_group(
    config: &ClusterConfig,
    group: &GroupConfig,
    node_ix: &HashMap<NodeId, NodeIx>,
) -> Result<GroupModel, ConfigError> {
    let (preferred, candidates) = owners(config, group, node_ix)?;
    check_failback_window(group)?;
    Ok(GroupModel {
        name: group.name.clone(),
        resources: Vec::new(),
        preferred,
        candidates,
        failover_threshold: group.failover_threshold,
        failover_period: group.failover_period,
        failback: group.failback,
        copied: Vec::new(),
        retry_period: group
            .resources
            .iter()
            .map(|resource| resource.restart.retry_period)
            .max()
            .unwrap_or(Millis::from_hours(1)),
    })
}

/// The preferred owners that are possible owners, most preferred first, and
/// the placement order (those, then the other possible owners in cluster
/// order). Unknown nodes and a group with no possible owner are refused.
fn owners(
    config: &ClusterConfig,
    group: &GroupConfig,
    node_ix: &HashMap<NodeId, NodeIx>,
) -> Result<(Vec<NodeIx>, Vec<NodeIx>), ConfigError> {
    let lookup = |name: &NodeId| {
        node_ix
            .get(name)
            .copied()
            .ok_or_else(|| ConfigError::UnknownNode {
                group: group.name.clone(),
                node: name.clone(),
            })
    };
    let mut possible: Table<NodeIx, bool> =
        Table::filled(group.possible_owners.is_none(), config.nodes.len());
    for name in group.possible_owners.iter().flatten() {
        possible[lookup(name)?] = true;
    }
    let mut preferred = Vec::new();
    for name in &group.preferred_owners {
        let node = lookup(name)?;
        if possible[node] && !preferred.contains(&node) {
            preferred.push(node);
        }
    }
    let mut candidates = preferred.clone();
    candidates.extend(
        possible
            .indices()
            .filter(|&node| possible[node] && !preferred.contains(&node)),
    );
    if candidates.is_empty() {
        return Err(ConfigError::NoPossibleOwner(group.name.clone()));
    }
    Ok((preferred, candidates))
}

/// A failback window names two different hours of the day.
fn check_failback_window(group: &GroupConfig) -> Result<(), ConfigError> {
    if let Failback::Window {
        start_hour,
        end_hour,
    } = group.failback
        && (start_hour > 23 || end_hour > 23 || start_hour == end_hour)
    {
        return Err(ConfigError::InvalidFailbackWindow {
            group: group.name.clone(),
            start: start_hour,
            end: end_hour,
        });
    }
    Ok(())
}

/// Every resource, with its dependencies checked for dangling and cross-group
/// edges. Dependents and singleton peers are filled in afterwards.
fn compile_resources(
    config: &ClusterConfig,
    names: &Names,
    groups: &Table<GroupIx, GroupModel>,
) -> Result<Table<ResourceIx, ResourceModel>, ConfigError> {
    let mut resources = Table::new();
    for (group, group_config) in names.group_names.indices().zip(&config.groups) {
        for resource_config in &group_config.resources {
            check_backoff(&groups[group].name, resource_config)?;
            let dependencies = resolve_dependencies(group, resource_config, names)?;
            let copies = compile_copies(&groups[group], resource_config, &names.node_ix)?;
            resources.push(ResourceModel {
                name: resource_config.name.clone(),
                group,
                type_name: resource_config.type_name.clone(),
                dependencies,
                dependents: Vec::new(),
                singleton_peers: Vec::new(),
                singleton: config.singleton_types.contains(&resource_config.type_name),
                restart: resource_config.restart,
                copies,
            });
        }
    }
    Ok(resources)
}

/// A back-off whose cap is below its first step would not grow: refused
/// rather than read as a fixed wait the operator did not write.
fn check_backoff(group: &GroupId, resource: &ResourceConfig) -> Result<(), ConfigError> {
    let restart = &resource.restart;
    if restart.backoff > Millis::ZERO && restart.max_backoff < restart.backoff {
        return Err(ConfigError::BackoffCapBelowStep {
            group: group.clone(),
            resource: resource.name.clone(),
            backoff: restart.backoff,
            max_backoff: restart.max_backoff,
        });
    }
    Ok(())
}

/// Where `resource` keeps copies: every candidate of its group for
/// `"all"`, or the nodes listed, each of which must be a possible owner of
/// the group, named once. `max_lag_on_failover` without copies is refused:
/// it would silently mean nothing.
fn compile_copies(
    group: &GroupModel,
    resource: &ResourceConfig,
    node_ix: &HashMap<NodeId, NodeIx>,
) -> Result<Option<CopiesModel>, ConfigError> {
    let Some(copies) = &resource.copies else {
        if resource.max_lag_on_failover.is_some() {
            return Err(ConfigError::MaxLagWithoutCopies {
                group: group.name.clone(),
                resource: resource.name.clone(),
            });
        }
        return Ok(None);
    };
    let nodes = match copies {
        CopyNodes::All => group.candidates.clone(),
        CopyNodes::Listed(names) => {
            if names.is_empty() {
                return Err(ConfigError::NoCopyNodes {
                    group: group.name.clone(),
                    resource: resource.name.clone(),
                });
            }
            let mut listed = Vec::new();
            for name in names {
                let node = node_ix
                    .get(name)
                    .copied()
                    .filter(|node| group.candidates.contains(node))
                    .ok_or_else(|| ConfigError::CopyNodeNotPossibleOwner {
                        group: group.name.clone(),
                        resource: resource.name.clone(),
                        node: name.clone(),
                    })?;
                if listed.contains(&node) {
                    return Err(ConfigError::DuplicateCopyNode {
                        group: group.name.clone(),
                        resource: resource.name.clone(),
                        node: name.clone(),
                    });
                }
                listed.push(node);
            }
            // In placement order, whatever order the operator wrote.
            group
                .candidates
                .iter()
                .copied()
                .filter(|node| listed.contains(node))
                .collect()
        }
    };
    Ok(Some(CopiesModel {
        nodes,
        max_lag_on_failover: resource
            .max_lag_on_failover
            .unwrap_or(DEFAULT_MAX_LAG_ON_FAILOVER),
    }))
}

/// The resources `resource` depends on, each once; all must be in its own
/// `group`.
fn resolve_dependencies(
    group: GroupIx,
    resource: &ResourceConfig,
    names: &Names,
) -> Result<Vec<ResourceIx>, ConfigError> {
    let group_name = &names.group_names[group];
    let mut dependencies = Vec::new();
    for dependency_name in &resource.depends_on {
        let Some(&dependency) = names.resource_ix.get(dependency_name) else {
            return Err(ConfigError::DanglingDependency {
                group: group_name.clone(),
                resource: resource.name.clone(),
                dependency: dependency_name.clone(),
            });
        };
        let other_group = names.resource_group[dependency];
        if other_group != group {
            return Err(ConfigError::CrossGroupDependency {
                group: group_name.clone(),
                resource: resource.name.clone(),
                dependency: dependency_name.clone(),
                other_group: names.group_names[other_group].clone(),
            });
        }
        if !dependencies.contains(&dependency) {
            dependencies.push(dependency);
        }
    }
    Ok(dependencies)
}

/// Fills in each resource's dependents, the reverse of its dependencies.
fn link_dependents(resources: &mut Table<ResourceIx, ResourceModel>) {
    for resource in resources.indices() {
        for dependency in resources[resource].dependencies.clone() {
            resources[dependency].dependents.push(resource);
        }
    }
}

/// Fills in, for each resource of a cluster-singleton type, the other
/// resources of that type.
fn link_singleton_peers(resources: &mut Table<ResourceIx, ResourceModel>) {
    for resource in resources.indices() {
        if resources[resource].singleton {
            let peers = resources
                .indices()
                .filter(|&other| {
                    other != resource && resources[other].type_name == resources[resource].type_name
                })
                .collect();
            resources[resource].singleton_peers = peers;
        }
    }
}

/// Refuses a dependency cycle in any group, then puts each group's resources
/// in dependency order.
fn order_groups(
    groups: &mut Table<GroupIx, GroupModel>,
    resources: &Table<ResourceIx, ResourceModel>,
) -> Result<(), ConfigError> {
    for group in groups.indices() {
        let members: Vec<ResourceIx> = resources
            .indices()
            .filter(|&resource| resources[resource].group == group)
            .collect();
        if let Some(cycle) = find_cycle(&members, resources) {
            return Err(ConfigError::Cycle {
                group: groups[group].name.clone(),
                cycle,
            });
        }
        groups[group].resources = dependency_order(&members, resources);
    }
    Ok(())
}

/// `members` (which form no cycle) ordered so that each comes after its
/// dependencies; ties keep configuration order.
fn dependency_order(
    members: &[ResourceIx],
    resources: &Table<ResourceIx, ResourceModel>,
) -> Vec<ResourceIx> {
    let mut order = Vec::with_capacity(members.len());
    while order.len() < members.len() {
        // No cycle, so some member always has all its dependencies placed.
        let next = members.iter().copied().find(|member| {
            !order.contains(member)
                && resources[*member]
                    .dependencies
                    .iter()
                    .all(|dependency| order.contains(dependency))
        });
        match next {
            Some(member) => order.push(member),
            None => break,
        }
    }
    order
}

/// Depth-first search along `depends_on` edges, starting from each member in
/// configuration order; returns the first cycle as `a -> b -> c -> a`.
fn find_cycle(
    members: &[ResourceIx],
    resources: &Table<ResourceIx, ResourceModel>,
) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit(
        resource: ResourceIx,
        resources: &Table<ResourceIx, ResourceModel>,
        mark: &mut Table<ResourceIx, Mark>,
        stack: &mut Vec<ResourceIx>,
    ) -> Option<String> {
        mark[resource] = Mark::OnStack;
        stack.push(resource);
        for &dependency in &resources[resource].dependencies {
            match mark[dependency] {
                Mark::OnStack => {
                    let start = stack
                        .iter()
                        .position(|&on_stack| on_stack == dependency)
                        .unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&on_stack| resources[on_stack].name.as_str())
                        .collect();
                    names.push(resources[dependency].name.as_str());
                    return Some(names.join(" -> "));
                }
                Mark::New => {
                    if let Some(cycle) = visit(dependency, resources, mark, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark[resource] = Mark::Done;
        None
    }
    // Indexed by resource; only this group's members are ever visited, since
    // dependencies were checked to stay inside the group.
    let mut mark = Table::filled(Mark::New, resources.len());
    let mut stack = Vec::new();
    for &member in members {
        if mark[member] == Mark::New
            && let Some(cycle) = visit(member, resources, &mut mark, &mut stack)
        {
            return Some(cycle);
        }
    }
    None
}
