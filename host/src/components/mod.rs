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
//! The states are the node's own, kept in its store (`crate::store`).
//! Exchange keeps a second copy in Active Directory and reconciles the two;
//! a Warden cluster shares no component states (each node's govern that
//! node alone), so there is one copy and nothing to reconcile.
//!
//! The module is pure: no clock, no I/O. Timestamps (milliseconds since the
//! Unix epoch) are passed in, and every change of an effective state comes
//! back as a [`Change`] whose [`Consequence`] the node layer carries out.

mod change;
mod component;
mod request;
mod states;

#[cfg(test)]
pub(crate) use change::consequences;
pub(crate) use change::{Change, Consequence};
pub(crate) use component::{Component, ParseError};
pub(crate) use request::{Entry, Requester, State};
pub(crate) use states::{ComponentStates, ComponentView};

/// Helpers the unit tests of this module's files share.
#[cfg(test)]
mod testing {
    use super::{Component, ComponentStates, Requester, State};

    /// The component most tests ask about.
    pub(super) const SWO: &str = "ServerWideOffline";

    /// A component from its text form.
    pub(super) fn c(word: &str) -> Component {
        word.parse().expect("a component's text form")
    }

    /// Applies `ops` in order, one millisecond apart.
    pub(super) fn apply(ops: &[(&str, Requester, State)]) -> ComponentStates {
        let mut states = ComponentStates::new();
        for (at, (component, requester, state)) in ops.iter().enumerate() {
            states.set(c(component), *requester, *state, 1_000 + at as u64);
        }
        states
    }
}
