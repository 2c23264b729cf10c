//! What every task of the link shares: the keys, this node's name, the
//! way to the node's loop, the lease, and what the log says is up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use warden_policy::Event as PolicyEvent;

use super::LinkMessage;
use crate::cluster::Keys;
use crate::cluster::fence;
use crate::cluster::log::{LogEntry, LogEvent};

/// What every task of the link shares.
#[derive(Clone)]
pub(in crate::cluster) struct Shared {
    pub(in crate::cluster) keys: Keys,
    pub(in crate::cluster) me: String,
    pub(in crate::cluster) tx: mpsc::UnboundedSender<LinkMessage>,
    /// The current lease; `None` while fenced.
    pub(super) lease: watch::Receiver<Option<i64>>,
    /// The nodes the log says are up, each with the entry of its `NodeUp`
    /// (which incarnation is up; a snapshot's own entry for those it holds).
    pub(super) up: Arc<Mutex<BTreeMap<String, u64>>>,
    /// A snapshot is being written and the log compacted.
    pub(super) compacting: Arc<AtomicBool>,
    /// The last entry read from the log (delivered to the node's loop).
    pub(super) read: Arc<AtomicU64>,
    /// Entries this node has yet to read were compacted away: it is out
    /// of the cluster for good (fenced, never rejoining) until restarted,
    /// when it joins from the snapshot.
    pub(super) behind: Arc<AtomicBool>,
    /// The entry of the latest `NodeDown` of this node that another node
    /// appended (0: none). One after this node's own `NodeUp` means the
    /// cluster counts it out while its lease lives: the lease keeper
    /// registers it again rather than leave it stopped for good.
    pub(super) marked_down: Arc<AtomicU64>,
    /// The fence devices of the configuration (none: nodes are marked down
    /// when their keys go, as without fencing).
    pub(in crate::cluster) fencing: fence::Devices,
    /// The nodes this node is fencing now.
    pub(in crate::cluster) fencing_now: Arc<Mutex<BTreeSet<String>>>,
}

impl Shared {
    /// The state of a node that has just joined: `up` as the log's start
    /// says, `read` up to the entry before the first it will follow, its
    /// lease `lease` (`None` while fenced), not compacting, behind or
    /// marked down, fencing no one.
    pub(super) fn new(
        keys: Keys,
        me: &str,
        tx: mpsc::UnboundedSender<LinkMessage>,
        lease: watch::Receiver<Option<i64>>,
        up: BTreeMap<String, u64>,
        read: u64,
        fencing: fence::Devices,
    ) -> Shared {
        Shared {
            keys,
            me: me.to_string(),
            tx,
            lease,
            up: Arc::new(Mutex::new(up)),
            compacting: Arc::new(AtomicBool::new(false)),
            read: Arc::new(AtomicU64::new(read)),
            behind: Arc::new(AtomicBool::new(false)),
            marked_down: Arc::new(AtomicU64::new(0)),
            fencing,
            fencing_now: Arc::default(),
        }
    }

    pub(in crate::cluster) fn lease(&self) -> Option<i64> {
        *self.lease.borrow()
    }

    /// The nodes the log says are up, as of now.
    pub(super) fn believed_up(&self) -> Vec<String> {
        self.up
            .lock()
            .map(|up| up.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The entry of `node`'s `NodeUp`, if the log says it is up.
    pub(in crate::cluster) fn up_since(&self, node: &str) -> Option<u64> {
        self.up.lock().ok()?.get(node).copied()
    }

    /// The last entry of the log this node has read.
    pub(in crate::cluster) fn read_up_to(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// Keep the set of nodes the log says are up.
pub(super) fn track(up: &Mutex<BTreeMap<String, u64>>, entry: &LogEntry) {
    if let Ok(mut up) = up.lock() {
        note_up_or_down(&mut up, entry);
    }
}

/// A `NodeUp` entry puts its node in `up` (at that entry), a `NodeDown`
/// takes it out; any other entry changes nothing.
pub(super) fn note_up_or_down(up: &mut BTreeMap<String, u64>, entry: &LogEntry) {
    match &entry.event {
        LogEvent::Policy(PolicyEvent::NodeUp(node)) => {
            up.insert(node.clone(), entry.seq);
        }
        LogEvent::Policy(PolicyEvent::NodeDown(node)) => {
            up.remove(node);
        }
        _ => {}
    }
}
