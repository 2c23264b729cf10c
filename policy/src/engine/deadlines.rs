//! The deadline index: for each group, the earliest time still ahead at which
//! the passing of time alone can make it act (a restart delay, a retry
//! period, a group retry, a failback window opening), kept sorted.
//!
//! Without it, `next_deadline` scanned every group and every event
//! reconciled every group in case one had come due: with thousands of
//! groups, start-up alone was quadratic. With it, `next_deadline` is the
//! first entry, and an event reconciles the groups whose time has come
//! besides the ones it touched.
//!
//! A group's entry is recomputed whenever the group is reconciled (its state
//! can only change then or when an event touches it, which reconciles it),
//! so an entry is never stale: the set of times a group waits for changes
//! only with its state.

use super::Engine;
use super::state::{Goal, Recovery};
use crate::config::Failback;
use crate::index::{GroupIx, Table};
use crate::time::Millis;
use std::collections::BTreeSet;

/// Each group's next deadline, and all of them in time order.
#[derive(Clone, Debug)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(Millis, GroupIx)>,
    of_group: Table<GroupIx, Option<Millis>>,
}

impl Deadlines {
    /// No group waits for anything.
    pub(super) fn new(groups: usize) -> Deadlines {
        Deadlines {
            by_time: BTreeSet::new(),
            of_group: Table::filled(None, groups),
        }
    }

    /// Records `group`'s next deadline (none: it waits for no time).
    pub(super) fn set(&mut self, group: GroupIx, at: Option<Millis>) {
        let old = std::mem::replace(&mut self.of_group[group], at);
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.by_time.remove(&(old, group));
        }
        if let Some(at) = at {
            self.by_time.insert((at, group));
        }
    }

    /// The earliest deadline of all.
    pub(super) fn first(&self) -> Option<Millis> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Removes and returns every group whose deadline is at or before `now`:
    /// the groups time alone may have made act.
    pub(super) fn take_due(&mut self, now: Millis) -> Vec<GroupIx> {
        let mut due = Vec::new();
        while let Some(&(at, group)) = self.by_time.first()
            && at <= now
        {
            self.by_time.pop_first();
            self.of_group[group] = None;
            due.push(group);
        }
        due
    }
}

impl Engine {
    /// When the passing of time next makes `group` act, if it waits for time
    /// at all: its online resources' restart delays and retry periods, its
    /// failback window when failback waits only for that, or the retry of a
    /// Failed group. Only times after `now` count; a time already passed
    /// that did not act waits for an event instead (a dependent going
    /// offline, recovery actions enabled again, a node coming up).
    pub(super) fn group_deadline(&self, group: GroupIx) -> Option<Millis> {
        let now = self.now;
        let group_model = &self.model.groups[group];
        let record = &self.groups[group];
        let mut best: Option<Millis> = None;
        let mut consider = |t: Millis| {
            if t > now && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        match &record.goal {
            Goal::Online => {
                for &resource in &group_model.resources {
                    match self.resources[resource].recovery {
                        Recovery::RestartAt(t) | Recovery::RetryAt(t) => consider(t),
                        Recovery::None => {}
                    }
                }
                if let (Failback::Window { start_hour, .. }, Some(owner)) =
                    (group_model.failback, record.owner)
                    && record.failed_over
                    && self.settled(group)
                    && self.failback_target(group, owner).is_some()
                    && !group_model.failback.allows(now)
                {
                    consider(now.next_hour_start(start_hour));
                }
            }
            Goal::Failed {
                retry_at: Some(t), ..
            } => consider(*t),
            _ => {}
        }
        for t in self.copy_retries(group) {
            consider(t);
        }
        best
    }

    /// Computes every group's deadline afresh: after a restore or a
    /// reconfiguration, when group indices may all have changed.
    pub(super) fn index_all_deadlines(&mut self) {
        let mut deadlines = Deadlines::new(self.groups.len());
        for group in self.groups.indices() {
            deadlines.set(group, self.group_deadline(group));
        }
        self.deadlines = deadlines;
    }
}
