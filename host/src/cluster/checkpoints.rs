//! Checkpoints in etcd, so that they follow a group to its new node.
//!
//! A resource's record is one key, `checkpoints/RESOURCE`, a JSON object.
//! Every write is fenced: it happens only if this node holds the group's
//! ownership key *on its current lease*, in the same transaction. A node
//! that lost the group (its lease expired while it was cut off, or the
//! group moved) cannot overwrite what the new owner wrote; its plugin gets
//! an error saying so.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::watch;

use super::Keys;
use super::etcd::Etcd;
use crate::desired::Desired;
use crate::runtime::{Checkpoint, CheckpointStore};

/// How long one read or write of a record may take, every member tried.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster's checkpoint store (see the module documentation).
pub struct EtcdCheckpoints {
    etcd: Etcd,
    keys: Keys,
    me: String,
    /// This node's current lease; `None` while fenced.
    lease: watch::Receiver<Option<i64>>,
    /// The group of each resource, for the fence; follows the cluster's
    /// configuration ([`EtcdCheckpoints::regroup`]).
    groups: Mutex<BTreeMap<String, String>>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for EtcdCheckpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCheckpoints")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl EtcdCheckpoints {
    /// Checkpoints of `me`'s resources in etcd, written only under the
    /// ownership key of their group on `lease` (the node's current lease).
    pub fn new(
        etcd: Etcd,
        keys: Keys,
        me: &str,
        lease: watch::Receiver<Option<i64>>,
        desired: &Desired,
    ) -> EtcdCheckpoints {
        let store = EtcdCheckpoints {
            etcd,
            keys,
            me: me.to_string(),
            lease,
            groups: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::current(),
        };
        store.regroup(desired);
        store
    }

    /// Learn the groups of the resources of a new configuration.
    pub fn regroup(&self, desired: &Desired) {
        let groups = desired
            .resources
            .iter()
            .map(|r| (r.name.clone(), r.group_name().to_string()))
            .collect();
        *self.groups.lock().unwrap_or_else(|p| p.into_inner()) = groups;
    }

    /// Run an etcd request from the blocking thread the store is called on.
    fn run<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> Result<T, String> {
        self.runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, work).await })
            .map_err(|_| format!("{what}: etcd did not answer within {TIMEOUT:?}"))?
            .map_err(|e| format!("{e:#}"))
    }
}

impl CheckpointStore for EtcdCheckpoints {
    fn load(&self, resource: &str) -> Result<Checkpoint, String> {
        let key = self.keys.checkpoint(resource);
        let what = format!("reading the checkpoint of {resource}");
        let read = self.etcd.request(&what, |mut client| {
            let key = key.clone();
            async move { client.get(key, None).await }
        });
        let answer = self.run(&what, read)?;
        match answer.kvs().first() {
            None => Ok(Checkpoint::new()),
            Some(kv) => serde_json::from_slice(kv.value())
                .map_err(|e| format!("{what}: not a checkpoint record: {e}")),
        }
    }

    fn save(&self, resource: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        let group = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .cloned()
            .ok_or_else(|| format!("{resource} belongs to no group of the cluster"))?;
        let lease = (*self.lease.borrow()).ok_or_else(|| {
            format!("not saved: this node is fenced (cut off from etcd) and may not own {group}")
        })?;
        let body = serde_json::to_vec(checkpoint).map_err(|e| format!("encoding: {e}"))?;
        let owner = self.keys.owner(&group);
        let txn = Txn::new()
            .when([
                Compare::value(owner.clone(), CompareOp::Equal, self.me.clone()),
                Compare::lease(owner, CompareOp::Equal, lease),
            ])
            .and_then([TxnOp::put(self.keys.checkpoint(resource), body, None)]);
        let what = format!("saving the checkpoint of {resource}");
        let write = self.etcd.request(&what, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        });
        if self.run(&what, write)?.succeeded() {
            Ok(())
        } else {
            Err(format!(
                "not saved: {} does not hold group {group}'s ownership key (the group moved, or \
                 this node's lease expired)",
                self.me
            ))
        }
    }

    fn cacheable(&self) -> bool {
        false
    }
}
