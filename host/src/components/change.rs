//! [`Change`]: how a component's effective state moved, and the
//! [`Consequence`] the node layer carries out for it.

use serde::{Deserialize, Serialize};

use super::{Component, State};

/// A component's effective state before and after an operation.
///
/// [`ComponentStates::set`](super::ComponentStates::set) always returns one
/// (`before == after` when the effective state did not move).
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
    /// [`ComponentStates::type_available`](super::ComponentStates::type_available)).
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

/// The consequences of a list of changes, in the same order (what the
/// tests compare; the node carries out one change's at a time).
#[cfg(test)]
pub(crate) fn consequences(changes: &[Change]) -> Vec<Consequence> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{SWO, c};
    use crate::components::Requester::{Deployment, Functional, HealthApi, Maintenance, Sidelined};
    use crate::components::State::{Active, Draining, Inactive};
    use crate::components::*;

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
}
