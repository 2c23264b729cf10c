//! [`ComponentStates`]: every requester's last request for every
//! component of one node, and what they come to (effective and governing
//! states, the CLI's view).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, Component, Entry, Requester, State};

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
    pub(super) components: BTreeMap<Component, BTreeMap<Requester, Entry>>,
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
    /// that a requester's newest command always carries its newest time.
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
    use super::super::testing::{SWO, apply, c};
    use super::RequesterEntry;
    use crate::components::Requester::{Deployment, Functional, HealthApi, Maintenance, Sidelined};
    use crate::components::State::{Active, Draining, Inactive};
    use crate::components::*;

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
