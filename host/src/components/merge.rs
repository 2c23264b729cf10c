//! Reconciling two copies of a node's component states (the local store
//! and the cluster store), entry by entry, the newer winning: commutative,
//! associative and idempotent (`Entry::supersedes`).

use super::{Change, ComponentStates};

impl ComponentStates {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SWO, apply, c, one};
    use crate::components::Requester::{Deployment, Functional, HealthApi, Maintenance, Sidelined};
    use crate::components::State::{Active, Draining, Inactive};
    use crate::components::*;

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
}
