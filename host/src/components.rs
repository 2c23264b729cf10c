//! Server component states: who asked for which part of a node to be out of
//! service, and what the node should do about it.
//!
//! This follows Exchange 2013's "Server Component States"
//! (`shared/seeds/003_08e98ecd5a30c34c.txt`). A node is made of
//! [`Component`]s: one per resource type it hosts, plus three fixed ones:
//!
//! - [`Component::ServerWideOffline`] takes the whole node out of service:
//!   it drains the node of all its groups and overrides the state of every
//!   resource-type component, but *not* `Monitoring` or
//!   `RecoveryActionsEnabled`. Those two must stay as they are so that
//!   health checking (the thing that brings a node back) keeps working.
//! - [`Component::Monitoring`]: health checks run only while it is active.
//! - [`Component::RecoveryActionsEnabled`]: automatic restarts and failovers
//!   happen only while it is active.
//!
//! A component's state is never set directly. Each of the five
//! [`Requester`]s (HealthAPI, Maintenance, Sidelined, Functional,
//! Deployment) sets its own [`State`] for the component, stored separately
//! with a timestamp, and the component's *effective* state combines them:
//! see [`ComponentStates::effective`]. Requesters have no hierarchy; the
//! most restrictive request wins, so one requester cannot undo what another
//! asked for.
//!
//! Two copies of the states exist: the node's local store and the cluster
//! store (Exchange keeps them in the registry and in Active Directory).
//! [`ComponentStates::merge`] reconciles them entry by entry, the newer
//! timestamp winning, as Exchange does.
//!
//! The module is pure: no clock, no I/O. Timestamps (milliseconds since the
//! Unix epoch) are passed in, and every change of an effective state comes
//! back as a [`Change`] whose [`Consequence`] the node layer carries out.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The accepted spellings of a [`Component`], for error messages.
const COMPONENT_WORDS: &str = "ServerWideOffline, Monitoring, RecoveryActionsEnabled, \
                               or type:<resource-type>";
/// The accepted spellings of a [`State`], for error messages.
const STATE_WORDS: &str = "Active, Inactive, Draining";
/// The accepted spellings of a [`Requester`], for error messages.
const REQUESTER_WORDS: &str = "HealthAPI, Maintenance, Sidelined, Functional, Deployment";
/// The prefix that marks a resource-type component in its text form.
const TYPE_PREFIX: &str = "type:";

/// A word that did not parse as a component, state or requester.
///
/// Each message names the bad word and the accepted ones, so an operator
/// who typed it can correct it without reading the documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a fixed component name, and no `type:` prefix.
    #[error("unknown component `{0}`: expected {COMPONENT_WORDS}")]
    Component(String),
    /// `type:` with an empty name or one containing whitespace.
    #[error(
        "invalid resource type name in component `{0}`: expected type:<name> with a \
         non-empty name without whitespace"
    )]
    TypeName(String),
    /// Not one of the three states.
    #[error("unknown state `{0}`: expected one of {STATE_WORDS}")]
    State(String),
    /// Not one of the five requesters.
    #[error("unknown requester `{0}`: expected one of {REQUESTER_WORDS}")]
    Requester(String),
}

/// A part of a node that can be taken out of service on its own.
///
/// The declaration order is the order of [`ComponentStates::list`] and of
/// the changes [`ComponentStates::merge`] returns: the node-wide switch
/// first, then the two that govern the agent's own automation, then the
/// resource types by name.
///
/// # Text form
///
/// The fixed components are written as Exchange writes them
/// (`ServerWideOffline`, `Monitoring`, `RecoveryActionsEnabled`) and parsed
/// case-insensitively. A resource-type component is written `type:<name>`
/// (`type:smtp-instance`); the prefix is case-insensitive, the name is kept
/// exactly. [`FromStr`] rejects a bare word that is not a fixed component:
/// otherwise a typo such as `Monitorng` would silently become a component
/// for a resource type that does not exist. Where the known type names are
/// at hand (the CLI, the admin API), [`Component::parse_with_types`] also
/// accepts a bare type name. The text form is also the serde form, so it is
/// what the stores hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Component {
    /// The whole node: Inactive drains it of all its groups.
    ServerWideOffline,
    /// Health checks of the node's resources.
    Monitoring,
    /// Automatic restarts and failovers.
    RecoveryActionsEnabled,
    /// The resources of one resource type, by the type's name.
    Type(String),
}

impl Component {
    /// A resource-type component; `name` is the type's name as configured.
    pub fn resource_type(name: impl Into<String>) -> Self {
        Self::Type(name.into())
    }

    /// Parses `word` like [`FromStr`], and also accepts a bare resource type
    /// name if it is one of `types` (exactly as spelled there).
    ///
    /// A fixed component name wins over a type of the same name; such a type
    /// is still reachable as `type:<name>`.
    pub fn parse_with_types<'a>(
        word: &str,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParseError> {
        match word.parse() {
            Ok(component) => Ok(component),
            Err(ParseError::Component(bad)) => {
                if types.into_iter().any(|t| t == word) {
                    Ok(Self::Type(word.to_owned()))
                } else {
                    Err(ParseError::Component(bad))
                }
            }
            Err(other) => Err(other),
        }
    }

    /// The resource type's name, for a resource-type component.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Self::Type(name) => Some(name),
            _ => None,
        }
    }

    /// Whether [`Component::ServerWideOffline`] overrides this component.
    ///
    /// It overrides every resource type, and neither `Monitoring` nor
    /// `RecoveryActionsEnabled`: they keep the node's health checking and
    /// recovery going, which is what can bring the node back (the seed:
    /// "Without them, no OnlineResponder could bring ServerWideOffline back
    /// to Active automatically").
    pub fn follows_server_wide_offline(&self) -> bool {
        matches!(self, Self::Type(_))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerWideOffline => f.write_str("ServerWideOffline"),
            Self::Monitoring => f.write_str("Monitoring"),
            Self::RecoveryActionsEnabled => f.write_str("RecoveryActionsEnabled"),
            Self::Type(name) => write!(f, "{TYPE_PREFIX}{name}"),
        }
    }
}

impl FromStr for Component {
    type Err = ParseError;

    fn from_str(word: &str) -> Result<Self, ParseError> {
        let fixed = [
            Self::ServerWideOffline,
            Self::Monitoring,
            Self::RecoveryActionsEnabled,
        ];
        if let Some(component) = fixed
            .into_iter()
            .find(|c| c.to_string().eq_ignore_ascii_case(word))
        {
            return Ok(component);
        }
        if let Some((prefix, name)) = word.split_at_checked(TYPE_PREFIX.len())
            && prefix.eq_ignore_ascii_case(TYPE_PREFIX)
        {
            let valid =
                !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control());
            return if valid {
                Ok(Self::Type(name.to_owned()))
            } else {
                Err(ParseError::TypeName(word.to_owned()))
            };
        }
        Err(ParseError::Component(word.to_owned()))
    }
}

impl TryFrom<String> for Component {
    type Error = ParseError;

    fn try_from(word: String) -> Result<Self, ParseError> {
        word.parse()
    }
}

impl From<Component> for String {
    fn from(component: Component) -> Self {
        component.to_string()
    }
}

/// The state a requester asks for, and the combined state of a component.
///
/// `Draining` means "finish what is under way, take nothing new"; in
/// Exchange it only matters to the transport components, here it is allowed
/// everywhere and ranks between the other two (see
/// [`ComponentStates::effective`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// In service.
    Active,
    /// Out of service.
    Inactive,
    /// Finishing what is under way, taking nothing new.
    Draining,
}

impl State {
    /// How restrictive the state is: the combined state of a component is
    /// the most restrictive one any requester asked for, and a tie between
    /// two copies of an entry is broken the same way.
    fn restriction(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Draining => 1,
            Self::Inactive => 2,
        }
    }

    /// Whether the component is fully in service.
    pub fn is_active(self) -> bool {
        self == Self::Active
    }

    /// The more restrictive of two states.
    fn most_restrictive(self, other: Self) -> Self {
        if other.restriction() > self.restriction() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Draining => "Draining",
        })
    }
}

impl FromStr for State {
    type Err = ParseError;

    /// Case-insensitive: `inactive` and `INACTIVE` are `Inactive`.
    fn from_str(word: &str) -> Result<Self, ParseError> {
        [Self::Active, Self::Inactive, Self::Draining]
            .into_iter()
            .find(|s| s.to_string().eq_ignore_ascii_case(word))
            .ok_or_else(|| ParseError::State(word.to_owned()))
    }
}

/// Who asked for a state. Requesters are labels with no hierarchy between
/// them, but each one's request is kept separately, so choose the one that
/// says why: Exchange's Managed Availability uses `HealthAPI` for its own
/// offline and online responders (treat it as reserved for the agent's
/// automation), planned work uses `Maintenance`, and setup uses
/// `Functional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Requester {
    /// The agent's own health automation (Exchange's Managed Availability).
    #[serde(rename = "HealthAPI")]
    HealthApi,
    /// Planned work by an operator.
    Maintenance,
    /// Set aside because of a problem under investigation.
    Sidelined,
    /// Setup and upgrades (Exchange's setup uses it).
    Functional,
    /// Rolling out a new version.
    Deployment,
}

impl Requester {
    /// All requesters, in display order.
    pub const ALL: [Self; 5] = [
        Self::HealthApi,
        Self::Maintenance,
        Self::Sidelined,
        Self::Functional,
        Self::Deployment,
    ];
}

impl fmt::Display for Requester {
    /// As Exchange writes them: `HealthAPI`, `Maintenance`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HealthApi => "HealthAPI",
            Self::Maintenance => "Maintenance",
            Self::Sidelined => "Sidelined",
            Self::Functional => "Functional",
            Self::Deployment => "Deployment",
        })
    }
}

impl FromStr for Requester {
    type Err = ParseError;

    /// Case-insensitive: `healthapi` is `HealthAPI`.
    fn from_str(word: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|r| r.to_string().eq_ignore_ascii_case(word))
            .ok_or_else(|| ParseError::Requester(word.to_owned()))
    }
}

/// What one requester last asked of one component, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub state: State,
    /// Milliseconds since the Unix epoch; decides which copy wins a merge.
    pub at_ms: u64,
}

impl Entry {
    /// Whether this copy of an entry replaces `current` in a merge: the
    /// newer timestamp wins; on equal timestamps the more restrictive state
    /// wins (Inactive, then Draining, then Active), so that a tie can only
    /// err towards keeping a node out of service, never towards putting it
    /// back by accident. This is a total order on (timestamp, restriction),
    /// so merging is commutative, associative and idempotent: both copies
    /// end up the same whichever merges into which, and however often.
    fn supersedes(&self, current: &Entry) -> bool {
        (self.at_ms, self.state.restriction()) > (current.at_ms, current.state.restriction())
    }
}

/// A component's effective state before and after an operation.
///
/// [`ComponentStates::set`] always returns one (`before == after` when the
/// effective state did not move); [`ComponentStates::merge`] returns only
/// those that moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub component: Component,
    pub before: State,
    pub after: State,
}

impl Change {
    /// Whether the effective state moved.
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// What the node must do about this change, if anything.
    ///
    /// Consequences follow *availability* (Active or not): a move between
    /// Draining and Inactive is a change but has no consequence here, since
    /// both already mean "out of service"; a caller that treats Draining
    /// more gently (let running work finish) can read `before` and `after`.
    /// `ServerWideOffline` yields only [`Consequence::DrainNode`] or
    /// [`Consequence::ResumeNode`]: it does not touch Monitoring or
    /// RecoveryActionsEnabled. On resume, the node must still keep each
    /// resource type that is unavailable on its own out of service (see
    /// [`ComponentStates::type_available`]).
    pub fn consequence(&self) -> Option<Consequence> {
        let available = self.after.is_active();
        if self.before.is_active() == available {
            return None;
        }
        Some(match &self.component {
            Component::ServerWideOffline if available => Consequence::ResumeNode,
            Component::ServerWideOffline => Consequence::DrainNode,
            Component::Monitoring => Consequence::Monitoring(available),
            Component::RecoveryActionsEnabled => Consequence::RecoveryActions(available),
            Component::Type(name) => Consequence::TypeAvailability {
                type_name: name.clone(),
                available,
            },
        })
    }
}

/// The consequences of a list of changes, in the same order.
pub fn consequences(changes: &[Change]) -> Vec<Consequence> {
    changes.iter().filter_map(Change::consequence).collect()
}

/// What the node layer does when a component's availability changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consequence {
    /// ServerWideOffline left Active: move every group off this node.
    DrainNode,
    /// ServerWideOffline is Active again: the node may host groups again.
    ResumeNode,
    /// RecoveryActionsEnabled changed: `false` stops automatic restarts and
    /// failovers, `true` allows them again.
    RecoveryActions(bool),
    /// Monitoring changed: `false` suspends health checks, `true` resumes
    /// them.
    Monitoring(bool),
    /// A resource type's component changed: when not `available`, this
    /// node must not host resources of that type.
    TypeAvailability { type_name: String, available: bool },
}

/// One requester's entry, as [`ComponentStates::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequesterEntry {
    pub requester: Requester,
    pub state: State,
    pub at_ms: u64,
}

/// One component, as [`ComponentStates::list`] shows it (the CLI's view,
/// like Exchange's `Get-ServerComponentState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentView {
    pub component: Component,
    /// The combination of the requesters' states alone.
    pub effective: State,
    /// What the node obeys: `effective`, made more restrictive by
    /// ServerWideOffline for resource types.
    pub governing: State,
    /// The requesters that have set a state, in [`Requester::ALL`] order.
    pub requesters: Vec<RequesterEntry>,
}

/// All component states of one node: for each (component, requester) pair,
/// the last state that requester set and when.
///
/// Serialized as `{"components": {"<component>": {"<requester>":
/// {"state": ..., "at_ms": ...}}}}`, with the text forms of components and
/// requesters, for both the local and the cluster store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStates {
    #[serde(default)]
    components: BTreeMap<Component, BTreeMap<Requester, Entry>>,
}

impl ComponentStates {
    /// No requests: every component is Active.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `requester` wants `component` in `state` as of `at_ms`,
    /// and returns how the component's effective state moved.
    ///
    /// The entry replaces that requester's previous one whatever the
    /// timestamps say: this is a new command and must win. Its timestamp is
    /// raised to one past the replaced entry's if the clock stepped back, so
    /// that the newest command also wins when the two stores are merged.
    /// Setting the state a requester already has only refreshes the
    /// timestamp; the returned change then has `before == after`.
    pub fn set(
        &mut self,
        component: Component,
        requester: Requester,
        state: State,
        at_ms: u64,
    ) -> Change {
        let before = self.effective(&component);
        let entries = self.components.entry(component.clone()).or_default();
        let at_ms = match entries.get(&requester) {
            Some(previous) if previous.at_ms >= at_ms => previous.at_ms.saturating_add(1),
            _ => at_ms,
        };
        entries.insert(requester, Entry { state, at_ms });
        let after = self.effective(&component);
        Change {
            component,
            before,
            after,
        }
    }

    /// What `requester` last asked of `component`, if anything.
    pub fn get(&self, component: &Component, requester: Requester) -> Option<Entry> {
        self.components
            .get(component)
            .and_then(|entries| entries.get(&requester))
            .copied()
    }

    /// The effective state of `component`, from its requesters' entries:
    ///
    /// 1. Inactive if *any* requester says Inactive;
    /// 2. otherwise Draining if any requester says Draining;
    /// 3. otherwise Active, which includes a component no requester has
    ///    touched.
    ///
    /// The order of the requests and which requester made them do not
    /// matter; only each requester's last request counts. So, as in the
    /// seed's example, if Functional and Maintenance both set
    /// ServerWideOffline Inactive and Maintenance then sets it Active, it
    /// stays Inactive until Functional sets it Active too. One requester
    /// cannot undo another's request; this is also why a setup that died
    /// after setting components Inactive as Functional must be undone as
    /// Functional.
    pub fn effective(&self, component: &Component) -> State {
        self.components
            .get(component)
            .into_iter()
            .flat_map(BTreeMap::values)
            .fold(State::Active, |state, entry| {
                state.most_restrictive(entry.state)
            })
    }

    /// The state the node obeys for `component`: its effective state, made
    /// more restrictive by ServerWideOffline's for the components that
    /// follow it (the resource types; see
    /// [`Component::follows_server_wide_offline`]).
    pub fn governing(&self, component: &Component) -> State {
        let own = self.effective(component);
        if component.follows_server_wide_offline() {
            own.most_restrictive(self.effective(&Component::ServerWideOffline))
        } else {
            own
        }
    }

    /// Whether the node is in service as a whole (ServerWideOffline Active).
    pub fn node_in_service(&self) -> bool {
        self.effective(&Component::ServerWideOffline).is_active()
    }

    /// Whether health checks should run.
    pub fn monitoring_enabled(&self) -> bool {
        self.effective(&Component::Monitoring).is_active()
    }

    /// Whether automatic restarts and failovers may happen.
    pub fn recovery_actions_enabled(&self) -> bool {
        self.effective(&Component::RecoveryActionsEnabled)
            .is_active()
    }

    /// Whether this node may host resources of the type `type_name`: its own
    /// component and ServerWideOffline are both Active.
    pub fn type_available(&self, type_name: &str) -> bool {
        self.governing(&Component::Type(type_name.to_owned()))
            .is_active()
    }

    /// Merges `other` (the other store's copy) into `self`, entry by entry:
    /// for each (component, requester) the newer timestamp wins, and on equal
    /// timestamps the more restrictive state (Inactive, then Draining, then
    /// Active). Entries only one side has are kept. Returns the components
    /// whose effective state moved, in [`Component`] order.
    pub fn merge(&mut self, other: &ComponentStates) -> Vec<Change> {
        let mut changes = Vec::new();
        for (component, theirs) in &other.components {
            if theirs.is_empty() {
                continue;
            }
            let before = self.effective(component);
            let ours = self.components.entry(component.clone()).or_default();
            for (requester, entry) in theirs {
                match ours.get(requester) {
                    Some(current) if !entry.supersedes(current) => {}
                    _ => {
                        ours.insert(*requester, *entry);
                    }
                }
            }
            let after = self.effective(component);
            if before != after {
                changes.push(Change {
                    component: component.clone(),
                    before,
                    after,
                });
            }
        }
        changes
    }

    /// The view for the CLI: the three fixed components always, then every
    /// resource type some requester has touched. Use
    /// [`ComponentStates::list_with_types`] to show untouched types as well.
    pub fn list(&self) -> Vec<ComponentView> {
        self.list_with_types(std::iter::empty())
    }

    /// Like [`ComponentStates::list`], also showing each of `types` (the
    /// node's configured resource types) even if no requester touched it.
    pub fn list_with_types<'a>(
        &self,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Vec<ComponentView> {
        let mut components: Vec<Component> = vec![
            Component::ServerWideOffline,
            Component::Monitoring,
            Component::RecoveryActionsEnabled,
        ];
        components.extend(self.components.keys().cloned());
        components.extend(types.into_iter().map(Component::resource_type));
        components.sort();
        components.dedup();
        components
            .into_iter()
            .map(|component| {
                let requesters = self
                    .components
                    .get(&component)
                    .into_iter()
                    .flatten()
                    .map(|(requester, entry)| RequesterEntry {
                        requester: *requester,
                        state: entry.state,
                        at_ms: entry.at_ms,
                    })
                    .collect();
                ComponentView {
                    effective: self.effective(&component),
                    governing: self.governing(&component),
                    component,
                    requesters,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Requester::{Deployment, Functional, HealthApi, Maintenance, Sidelined};
    use super::State::{Active, Draining, Inactive};
    use super::*;

    fn c(word: &str) -> Component {
        word.parse().unwrap()
    }

    /// Applies `ops` in order, one millisecond apart.
    fn apply(ops: &[(&str, Requester, State)]) -> ComponentStates {
        let mut states = ComponentStates::new();
        for (at, (component, requester, state)) in ops.iter().enumerate() {
            states.set(c(component), *requester, *state, 1_000 + at as u64);
        }
        states
    }

    const SWO: &str = "ServerWideOffline";

    /// (name, operations, component asked about, expected effective state)
    type Case = (
        &'static str,
        &'static [(&'static str, Requester, State)],
        &'static str,
        State,
    );

    const EFFECTIVE_CASES: &[Case] = &[
        ("untouched component is Active", &[], SWO, Active),
        (
            "untouched type is Active",
            &[],
            "type:smtp-instance",
            Active,
        ),
        (
            "one requester Inactive",
            &[(SWO, Maintenance, Inactive)],
            SWO,
            Inactive,
        ),
        (
            "one requester Draining",
            &[("type:smtp-instance", Maintenance, Draining)],
            "type:smtp-instance",
            Draining,
        ),
        (
            "one requester Active",
            &[(SWO, HealthApi, Active)],
            SWO,
            Active,
        ),
        (
            "a requester undoes its own Inactive",
            &[(SWO, Maintenance, Inactive), (SWO, Maintenance, Active)],
            SWO,
            Active,
        ),
        (
            "the seed's example: two set Inactive, one sets Active, it stays Inactive",
            &[
                (SWO, Functional, Inactive),
                (SWO, Maintenance, Inactive),
                (SWO, Maintenance, Active),
            ],
            SWO,
            Inactive,
        ),
        (
            "the seed's example, finished: the second requester sets Active too",
            &[
                (SWO, Functional, Inactive),
                (SWO, Maintenance, Inactive),
                (SWO, Maintenance, Active),
                (SWO, Functional, Active),
            ],
            SWO,
            Active,
        ),
        (
            "a requester cannot undo another's Inactive",
            &[(SWO, Functional, Inactive), (SWO, Maintenance, Active)],
            SWO,
            Inactive,
        ),
        (
            "Inactive beats Draining",
            &[
                ("type:hub", Maintenance, Draining),
                ("type:hub", HealthApi, Inactive),
            ],
            "type:hub",
            Inactive,
        ),
        (
            "Inactive beats Draining whatever the order",
            &[
                ("type:hub", HealthApi, Inactive),
                ("type:hub", Maintenance, Draining),
            ],
            "type:hub",
            Inactive,
        ),
        (
            "Draining beats Active",
            &[
                ("type:hub", Deployment, Active),
                ("type:hub", Sidelined, Draining),
            ],
            "type:hub",
            Draining,
        ),
        (
            "Draining remains when Inactive is withdrawn",
            &[
                ("type:hub", Sidelined, Draining),
                ("type:hub", HealthApi, Inactive),
                ("type:hub", HealthApi, Active),
            ],
            "type:hub",
            Draining,
        ),
        (
            "only each requester's last request counts",
            &[
                (SWO, Deployment, Inactive),
                (SWO, Deployment, Draining),
                (SWO, Deployment, Active),
            ],
            SWO,
            Active,
        ),
        (
            "all five Inactive, four back Active: still Inactive",
            &[
                (SWO, HealthApi, Inactive),
                (SWO, Maintenance, Inactive),
                (SWO, Sidelined, Inactive),
                (SWO, Functional, Inactive),
                (SWO, Deployment, Inactive),
                (SWO, HealthApi, Active),
                (SWO, Maintenance, Active),
                (SWO, Sidelined, Active),
                (SWO, Functional, Active),
            ],
            SWO,
            Inactive,
        ),
        (
            "ServerWideOffline leaves Monitoring alone",
            &[(SWO, Maintenance, Inactive)],
            "Monitoring",
            Active,
        ),
        (
            "ServerWideOffline leaves RecoveryActionsEnabled alone",
            &[(SWO, Maintenance, Inactive)],
            "RecoveryActionsEnabled",
            Active,
        ),
        (
            "a type's own state ignores ServerWideOffline (governing does not)",
            &[(SWO, Maintenance, Inactive)],
            "type:smtp-instance",
            Active,
        ),
        (
            "components are independent",
            &[("type:a", Maintenance, Inactive)],
            "type:b",
            Active,
        ),
        (
            "the seed's failed CU setup: Functional's Inactive outlives Maintenance's Active",
            &[
                ("Monitoring", Functional, Inactive),
                ("RecoveryActionsEnabled", Functional, Inactive),
                (SWO, Functional, Inactive),
                ("RecoveryActionsEnabled", Maintenance, Active),
            ],
            "RecoveryActionsEnabled",
            Inactive,
        ),
    ];

    #[test]
    fn effective_state_rules() {
        for (name, ops, component, expected) in EFFECTIVE_CASES {
            let states = apply(ops);
            assert_eq!(states.effective(&c(component)), *expected, "{name}");
        }
    }

    #[test]
    fn server_wide_offline_governs_types_only() {
        let states = apply(&[(SWO, Maintenance, Inactive)]);
        let smtp = Component::resource_type("smtp-instance");
        assert_eq!(states.effective(&smtp), Active);
        assert_eq!(states.governing(&smtp), Inactive);
        assert!(!states.type_available("smtp-instance"));
        assert_eq!(states.governing(&Component::Monitoring), Active);
        assert_eq!(states.governing(&Component::RecoveryActionsEnabled), Active);
        assert!(states.monitoring_enabled());
        assert!(states.recovery_actions_enabled());
        assert!(!states.node_in_service());

        // A type out of service on its own stays out when the node resumes.
        let mut states = apply(&[
            ("type:smtp-instance", Sidelined, Draining),
            (SWO, Maintenance, Inactive),
            (SWO, Maintenance, Active),
        ]);
        assert!(states.node_in_service());
        assert_eq!(states.governing(&smtp), Draining);
        assert!(!states.type_available("smtp-instance"));
        assert!(states.type_available("imap-instance"));
        states.set(smtp.clone(), Sidelined, Active, 5_000);
        assert!(states.type_available("smtp-instance"));
    }

    #[test]
    fn server_wide_offline_inactive_drains_only() {
        let mut states = ComponentStates::new();
        let change = states.set(Component::ServerWideOffline, Maintenance, Inactive, 10);
        assert_eq!(
            change,
            Change {
                component: Component::ServerWideOffline,
                before: Active,
                after: Inactive
            }
        );
        assert_eq!(change.consequence(), Some(Consequence::DrainNode));
        // Monitoring and RecoveryActionsEnabled did not move.
        assert_eq!(states.effective(&Component::Monitoring), Active);
        assert_eq!(states.effective(&Component::RecoveryActionsEnabled), Active);
        assert_eq!(states.get(&Component::Monitoring, Maintenance), None);

        let change = states.set(Component::ServerWideOffline, Maintenance, Active, 20);
        assert_eq!(change.consequence(), Some(Consequence::ResumeNode));
        assert_eq!((change.before, change.after), (Inactive, Active));
    }

    /// (component, state set by Maintenance on a fresh node, consequence)
    const CONSEQUENCE_CASES: &[(&str, State, Option<Consequence>)] = &[
        (SWO, Inactive, Some(Consequence::DrainNode)),
        (SWO, Draining, Some(Consequence::DrainNode)),
        (SWO, Active, None),
        (
            "RecoveryActionsEnabled",
            Inactive,
            Some(Consequence::RecoveryActions(false)),
        ),
        ("Monitoring", Inactive, Some(Consequence::Monitoring(false))),
        ("Monitoring", Draining, Some(Consequence::Monitoring(false))),
    ];

    #[test]
    fn consequences_of_a_first_request() {
        for (component, state, expected) in CONSEQUENCE_CASES {
            let mut states = ComponentStates::new();
            let change = states.set(c(component), Maintenance, *state, 1);
            assert_eq!(change.consequence(), *expected, "{component} {state}");
        }
    }

    #[test]
    fn consequences_back_to_active() {
        let mut states = ComponentStates::new();
        states.set(Component::RecoveryActionsEnabled, HealthApi, Inactive, 1);
        states.set(Component::Monitoring, HealthApi, Inactive, 1);
        let recovery = states.set(Component::RecoveryActionsEnabled, HealthApi, Active, 2);
        let monitoring = states.set(Component::Monitoring, HealthApi, Active, 2);
        assert_eq!(
            consequences(&[recovery, monitoring]),
            vec![
                Consequence::RecoveryActions(true),
                Consequence::Monitoring(true)
            ]
        );
    }

    #[test]
    fn type_availability_consequence() {
        let mut states = ComponentStates::new();
        let off = states.set(c("type:smtp-instance"), Sidelined, Inactive, 1);
        assert_eq!(
            off.consequence(),
            Some(Consequence::TypeAvailability {
                type_name: "smtp-instance".into(),
                available: false
            })
        );
        let on = states.set(c("type:smtp-instance"), Sidelined, Active, 2);
        assert_eq!(
            on.consequence(),
            Some(Consequence::TypeAvailability {
                type_name: "smtp-instance".into(),
                available: true
            })
        );
    }

    #[test]
    fn same_state_again_changes_nothing() {
        let mut states = ComponentStates::new();
        states.set(Component::ServerWideOffline, Maintenance, Inactive, 1);
        let again = states.set(Component::ServerWideOffline, Maintenance, Inactive, 2);
        assert!(!again.changed());
        assert_eq!(again.consequence(), None);
        // Another requester piling on changes nothing either.
        let other = states.set(Component::ServerWideOffline, Functional, Inactive, 3);
        assert!(!other.changed());
        assert_eq!(other.consequence(), None);
        // The seed's example: one of the two sets Active, nothing happens.
        let back = states.set(Component::ServerWideOffline, Maintenance, Active, 4);
        assert!(!back.changed());
        assert_eq!(back.consequence(), None);
        // An Active request on an untouched component changes nothing.
        let fresh = states.set(Component::Monitoring, Deployment, Active, 5);
        assert!(!fresh.changed());
        assert_eq!(fresh.consequence(), None);
    }

    #[test]
    fn draining_to_inactive_is_a_change_without_consequence() {
        let mut states = ComponentStates::new();
        states.set(Component::ServerWideOffline, Maintenance, Draining, 1);
        let change = states.set(Component::ServerWideOffline, HealthApi, Inactive, 2);
        assert!(change.changed());
        assert_eq!(change.consequence(), None);
    }

    #[test]
    fn set_wins_even_if_the_clock_stepped_back() {
        let mut states = ComponentStates::new();
        states.set(Component::ServerWideOffline, Maintenance, Inactive, 1_000);
        let change = states.set(Component::ServerWideOffline, Maintenance, Active, 900);
        assert_eq!(change.after, Active);
        let entry = states.get(&Component::ServerWideOffline, Maintenance);
        assert_eq!(
            entry,
            Some(Entry {
                state: Active,
                at_ms: 1_001
            })
        );
    }

    fn one(component: &str, requester: Requester, state: State, at_ms: u64) -> ComponentStates {
        let mut states = ComponentStates::new();
        states.set(c(component), requester, state, at_ms);
        states
    }

    /// (name, ours, theirs, Maintenance's resulting entry on ServerWideOffline)
    type MergeCase = (&'static str, (State, u64), (State, u64), Entry);

    const MERGE_CASES: &[MergeCase] = &[
        (
            "newer wins",
            (Inactive, 10),
            (Active, 20),
            Entry {
                state: Active,
                at_ms: 20,
            },
        ),
        (
            "older is ignored",
            (Active, 20),
            (Inactive, 10),
            Entry {
                state: Active,
                at_ms: 20,
            },
        ),
        (
            "tie: Inactive beats Active (theirs)",
            (Active, 10),
            (Inactive, 10),
            Entry {
                state: Inactive,
                at_ms: 10,
            },
        ),
        (
            "tie: Inactive beats Active (ours)",
            (Inactive, 10),
            (Active, 10),
            Entry {
                state: Inactive,
                at_ms: 10,
            },
        ),
        (
            "tie: Inactive beats Draining",
            (Draining, 10),
            (Inactive, 10),
            Entry {
                state: Inactive,
                at_ms: 10,
            },
        ),
        (
            "tie: Draining beats Active",
            (Draining, 10),
            (Active, 10),
            Entry {
                state: Draining,
                at_ms: 10,
            },
        ),
        (
            "tie, same state",
            (Active, 10),
            (Active, 10),
            Entry {
                state: Active,
                at_ms: 10,
            },
        ),
    ];

    #[test]
    fn merge_rules() {
        for (name, (our_state, our_at), (their_state, their_at), expected) in MERGE_CASES {
            let ours = one(SWO, Maintenance, *our_state, *our_at);
            let theirs = one(SWO, Maintenance, *their_state, *their_at);
            for (mut into, from) in [(ours.clone(), &theirs), (theirs.clone(), &ours)] {
                into.merge(from);
                assert_eq!(
                    into.get(&Component::ServerWideOffline, Maintenance),
                    Some(*expected),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn merge_reports_effective_changes() {
        let mut local = one(SWO, Maintenance, Active, 10);
        let cluster = one(SWO, Maintenance, Inactive, 20);
        let changes = local.merge(&cluster);
        assert_eq!(
            changes,
            vec![Change {
                component: Component::ServerWideOffline,
                before: Active,
                after: Inactive
            }]
        );
        assert_eq!(consequences(&changes), vec![Consequence::DrainNode]);
        // Merging again is a no-op.
        assert!(local.merge(&cluster).is_empty());
        // An older copy changes nothing.
        assert!(local.merge(&one(SWO, Maintenance, Active, 15)).is_empty());
        assert_eq!(local.effective(&Component::ServerWideOffline), Inactive);
    }

    #[test]
    fn merge_keeps_disjoint_entries() {
        let mut local = apply(&[(SWO, Functional, Inactive), ("type:a", Sidelined, Draining)]);
        let cluster = apply(&[
            (SWO, Maintenance, Inactive),
            ("RecoveryActionsEnabled", HealthApi, Inactive),
        ]);
        let changes = local.merge(&cluster);
        // ServerWideOffline was already Inactive (Functional): no change.
        assert_eq!(
            changes,
            vec![Change {
                component: Component::RecoveryActionsEnabled,
                before: Active,
                after: Inactive
            }]
        );
        assert_eq!(
            consequences(&changes),
            vec![Consequence::RecoveryActions(false)]
        );
        assert!(local.get(&c(SWO), Functional).is_some());
        assert!(local.get(&c(SWO), Maintenance).is_some());
        assert!(local.get(&c("type:a"), Sidelined).is_some());
        assert!(
            local
                .get(&Component::RecoveryActionsEnabled, HealthApi)
                .is_some()
        );
    }

    #[test]
    fn merge_ignores_empty_components() {
        let other: ComponentStates =
            serde_json::from_str(r#"{"components": {"type:a": {}}}"#).unwrap();
        let mut local = ComponentStates::new();
        assert!(local.merge(&other).is_empty());
        assert_eq!(local, ComponentStates::new());
    }

    #[test]
    fn merge_converges_whichever_way() {
        let a = apply(&[
            (SWO, Functional, Inactive),
            (SWO, Maintenance, Active),
            ("type:a", HealthApi, Draining),
            ("Monitoring", Deployment, Inactive),
        ]);
        let mut b = ComponentStates::new();
        b.set(c(SWO), Functional, Active, 1_005);
        b.set(c(SWO), Maintenance, Inactive, 1_001);
        b.set(c("type:a"), HealthApi, Inactive, 1_002);
        b.set(c("type:b"), Sidelined, Inactive, 7);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut again = ab.clone();
        assert!(again.merge(&ba).is_empty());
        assert_eq!(again, ab);
        assert_eq!(ab.effective(&c(SWO)), Inactive);
        assert_eq!(ab.get(&c(SWO), Functional).map(|e| e.state), Some(Active));
        // Tie at 1_002 between Draining (a) and Inactive (b): Inactive.
        assert_eq!(ab.effective(&c("type:a")), Inactive);
    }

    #[test]
    fn component_text_forms() {
        let good: &[(&str, Component)] = &[
            ("ServerWideOffline", Component::ServerWideOffline),
            ("serverwideoffline", Component::ServerWideOffline),
            ("MONITORING", Component::Monitoring),
            ("recoveryActionsEnabled", Component::RecoveryActionsEnabled),
            (
                "type:smtp-instance",
                Component::resource_type("smtp-instance"),
            ),
            ("TYPE:Smtp", Component::resource_type("Smtp")),
            ("type:monitoring", Component::resource_type("monitoring")),
        ];
        for (word, expected) in good {
            let parsed: Component = word.parse().unwrap();
            assert_eq!(&parsed, expected, "{word}");
            assert_eq!(parsed.to_string().parse::<Component>().unwrap(), parsed);
        }
        assert_eq!(
            Component::resource_type("smtp-instance").to_string(),
            "type:smtp-instance"
        );
        assert_eq!(
            Component::RecoveryActionsEnabled.to_string(),
            "RecoveryActionsEnabled"
        );
    }

    #[test]
    fn component_with_known_types() {
        let types = ["smtp-instance", "Monitoring"];
        let parse = |w: &str| Component::parse_with_types(w, types);
        assert_eq!(
            parse("smtp-instance"),
            Ok(Component::resource_type("smtp-instance"))
        );
        assert_eq!(parse("monitoring"), Ok(Component::Monitoring));
        assert_eq!(
            parse("type:Monitoring"),
            Ok(Component::resource_type("Monitoring"))
        );
        assert_eq!(
            parse("imap-instance"),
            Err(ParseError::Component("imap-instance".into()))
        );
        assert_eq!(parse("type:"), Err(ParseError::TypeName("type:".into())));
    }

    #[test]
    fn parse_errors_name_the_word_and_the_choices() {
        let cases: &[(Result<(), ParseError>, &str, &[&str])] = &[
            (
                "Monitorng".parse::<Component>().map(drop),
                "`Monitorng`",
                &[
                    "ServerWideOffline",
                    "Monitoring",
                    "RecoveryActionsEnabled",
                    "type:<resource-type>",
                ],
            ),
            (
                "type:".parse::<Component>().map(drop),
                "`type:`",
                &["type:<name>"],
            ),
            (
                "type:a b".parse::<Component>().map(drop),
                "`type:a b`",
                &["type:<name>"],
            ),
            (
                "Offline".parse::<State>().map(drop),
                "`Offline`",
                &["Active", "Inactive", "Draining"],
            ),
            (
                "Admin".parse::<Requester>().map(drop),
                "`Admin`",
                &[
                    "HealthAPI",
                    "Maintenance",
                    "Sidelined",
                    "Functional",
                    "Deployment",
                ],
            ),
        ];
        for (result, word, choices) in cases {
            let Err(error) = result else {
                panic!("{word} parsed");
            };
            let message = error.to_string();
            assert!(message.contains(word), "{message}");
            for choice in *choices {
                assert!(message.contains(choice), "{message} lacks {choice}");
            }
        }
    }

    #[test]
    fn state_and_requester_text_forms() {
        for state in [Active, Inactive, Draining] {
            assert_eq!(state.to_string().parse::<State>(), Ok(state));
            assert_eq!(state.to_string().to_lowercase().parse::<State>(), Ok(state));
            assert_eq!(state.to_string().to_uppercase().parse::<State>(), Ok(state));
        }
        for requester in Requester::ALL {
            let text = requester.to_string();
            assert_eq!(text.parse::<Requester>(), Ok(requester));
            assert_eq!(text.to_lowercase().parse::<Requester>(), Ok(requester));
        }
        assert_eq!(HealthApi.to_string(), "HealthAPI");
        assert_eq!("healthapi".parse::<Requester>(), Ok(HealthApi));
    }

    #[test]
    fn serde_round_trip_uses_text_forms() {
        let states = apply(&[
            (SWO, HealthApi, Inactive),
            ("type:smtp-instance", Maintenance, Draining),
        ]);
        let json = serde_json::to_value(&states).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "components": {
                    "ServerWideOffline": {
                        "HealthAPI": {"state": "Inactive", "at_ms": 1000}
                    },
                    "type:smtp-instance": {
                        "Maintenance": {"state": "Draining", "at_ms": 1001}
                    }
                }
            })
        );
        let back: ComponentStates = serde_json::from_value(json).unwrap();
        assert_eq!(back, states);
        let empty: ComponentStates = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, ComponentStates::new());
        let bad = serde_json::from_str::<ComponentStates>(
            r#"{"components": {"Bogus": {"HealthAPI": {"state": "Active", "at_ms": 1}}}}"#,
        );
        assert!(bad.is_err_and(|e| e.to_string().contains("`Bogus`")));
    }

    #[test]
    fn list_shows_effective_and_requesters() {
        let states = apply(&[
            (SWO, Functional, Inactive),
            (SWO, Maintenance, Inactive),
            (SWO, Maintenance, Active),
            ("type:smtp-instance", Sidelined, Draining),
        ]);
        let list = states.list();
        let names: Vec<String> = list.iter().map(|v| v.component.to_string()).collect();
        assert_eq!(
            names,
            [
                "ServerWideOffline",
                "Monitoring",
                "RecoveryActionsEnabled",
                "type:smtp-instance"
            ]
        );
        assert_eq!(list[0].effective, Inactive);
        assert_eq!(
            list[0].requesters,
            vec![
                RequesterEntry {
                    requester: Maintenance,
                    state: Active,
                    at_ms: 1_002
                },
                RequesterEntry {
                    requester: Functional,
                    state: Inactive,
                    at_ms: 1_000
                },
            ]
        );
        assert_eq!((list[1].effective, list[1].governing), (Active, Active));
        assert!(list[1].requesters.is_empty());
        assert_eq!((list[3].effective, list[3].governing), (Draining, Inactive));

        let with_types = states.list_with_types(["imap-instance", "smtp-instance"]);
        let names: Vec<String> = with_types.iter().map(|v| v.component.to_string()).collect();
        assert_eq!(
            names,
            [
                "ServerWideOffline",
                "Monitoring",
                "RecoveryActionsEnabled",
                "type:imap-instance",
                "type:smtp-instance"
            ]
        );
        assert_eq!(with_types[3].effective, Active);
        assert_eq!(with_types[3].governing, Inactive);
    }
}
