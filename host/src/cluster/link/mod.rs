//! The agent's link to the cluster: the tasks that keep its lease, follow
//! the log, watch the members and hold ownership keys, and the messages
//! they send the node's loop.
//!
//! The node's loop never waits on etcd: it asks ([`ClusterLink`]) and is
//! told ([`LinkMessage`]). The log's entries reach it in order; its own
//! appends reach it the same way as everyone else's.
//!
//! Each task has a file of its own: [`lease`] keeps the lease (and fences
//! this node when it cannot; on a thread of its own, so that a busy node
//! still renews), [`follow`] reads the log in order,
//! [`progress`] says how far this node has read, [`members`] watches the
//! other nodes' member keys, and [`requests`] carries out what the node's
//! loop asks (appends, ownership keys, snapshots). [`Shared`] is what they
//! all hold.

mod follow;
mod lease;
mod members;
mod progress;
mod requests;
mod runtime_liveness;
mod shared;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;
use warden_policy::Event as PolicyEvent;

use super::Keys;
use super::checkpoints::EtcdCheckpoints;
use super::etcd::{ATTEMPT, Etcd};
use super::fence;
use super::log::{self, LogEntry, LogEvent};
use super::plugins::ClusterPlugins;
use super::snapshot::LogSnapshot;
use super::start::{Start, read_start};
use crate::config::ClusterSection;
use crate::desired::Desired;

pub(super) use lease::revoke;
pub(super) use shared::Shared;

use lease::LeaseTiming;
use shared::note_up_or_down;

/// How long the node's loop waits for a request it must answer (an
/// append whose entry number it reports): every member may be tried
/// (`ATTEMPT` each) and the request may queue behind the node's own
/// appends.
const TOLD_WAIT: Duration = Duration::from_secs(10);
/// Retry pause after a failed etcd request.
const RETRY: Duration = Duration::from_millis(200);

/// What the link tells the node's loop.
#[derive(Debug)]
pub enum LinkMessage {
    /// The next entry of the log.
    Entry(LogEntry),
    /// This node now holds the group's ownership key.
    Claimed(String),
    /// The lease could not be renewed in time: stop every resource now and
    /// carry out no decision until this node has rejoined (its `NodeUp`
    /// entry comes through the log).
    Fenced(String),
    /// Another node was fenced through its fence device, or fencing it
    /// failed (`action`): for the event history.
    Fencing {
        /// The node fenced.
        node: String,
        /// What was done: `fenced` or `fencing-failed`.
        action: &'static str,
        /// Why, or what went wrong.
        reason: String,
    },
}

enum Request {
    Append(LogEvent),
    /// Append, and say where the entry landed (or why it did not).
    AppendTold(LogEvent, oneshot::Sender<Result<u64, String>>),
    Claim(String),
    Release(String),
    Snapshot(Box<LogSnapshot>),
    Leave(oneshot::Sender<()>),
}

/// The node loop's handle on the cluster.
#[derive(Clone)]
pub struct ClusterLink {
    requests: mpsc::UnboundedSender<Request>,
    me: String,
}

impl ClusterLink {
    /// This node's name, as the cluster knows it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Append a policy event to the log (in the background, in order).
    pub fn append(&self, event: PolicyEvent) {
        let _ = self.requests.send(Request::Append(LogEvent::Policy(event)));
    }

    /// Append a new configuration of the cluster; every node applies it
    /// when it comes back through the log. Returns its entry's number.
    pub async fn configure(&self, nodes: Vec<String>, desired: Desired) -> Result<u64> {
        self.append_told(LogEvent::Configure { nodes, desired })
            .await
            .context("the configuration was not appended")
    }

    /// Append an operator's request; answers once the entry is in the log
    /// (with its number), so an acknowledged request survives this node.
    pub async fn request(&self, event: PolicyEvent) -> Result<u64> {
        self.append_told(LogEvent::Policy(event)).await
    }

    /// Append `entry` after the node's earlier appends, and say where it
    /// landed. If no answer comes within `TOLD_WAIT` the request is
    /// withdrawn: one still queued is never appended, and the error says
    /// that one already under way may have been.
    async fn append_told(&self, entry: LogEvent) -> Result<u64> {
        let (reply, told) = oneshot::channel();
        self.requests
            .send(Request::AppendTold(entry, reply))
            .map_err(|_| anyhow::anyhow!("the cluster link has stopped"))?;
        match timeout(TOLD_WAIT, told).await {
            Ok(Ok(Ok(seq))) => Ok(seq),
            Ok(Ok(Err(reason))) => bail!("{reason}"),
            Ok(Err(_)) => bail!("the cluster link has stopped"),
            Err(_) => bail!(
                "etcd did not take it within {TOLD_WAIT:?}; if it was not yet being appended it \
                 never will be — see the event history before asking again"
            ),
        }
    }

    /// Take the group's ownership key as soon as it is free; answered with
    /// [`LinkMessage::Claimed`].
    pub fn claim(&self, group: &str) {
        let _ = self.requests.send(Request::Claim(group.to_string()));
    }

    /// Give up the group's ownership key, if this node holds it.
    pub fn release(&self, group: &str) {
        let _ = self.requests.send(Request::Release(group.to_string()));
    }

    /// Store `snapshot` (unless a newer one is there) and compact the log
    /// up to `KEEP_BEHIND` entries before it, in a task of its own, so
    /// appends do not wait behind it; one at a time (an offer made while
    /// one runs is dropped: the next interval's covers it). The node offers
    /// one after applying an entry for which `snapshot::due` holds.
    pub fn offer_snapshot(&self, snapshot: LogSnapshot) {
        let _ = self.requests.send(Request::Snapshot(Box::new(snapshot)));
    }

    /// Revoke the lease: the member key and every ownership key go, and the
    /// other agents see this node down at once.
    pub async fn leave(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Leave(reply)).is_ok() {
            let _ = timeout(ATTEMPT * 2, done).await;
        }
    }
}

/// What joining the cluster gives the node.
pub struct Joined {
    /// The node loop's handle on the cluster.
    pub link: ClusterLink,
    /// What the link tells the node loop, in order.
    pub messages: mpsc::UnboundedReceiver<LinkMessage>,
    /// The newest snapshot of the log, if there is one this agent can use:
    /// the engine starts from its state instead of from entry 1.
    pub snapshot: Option<LogSnapshot>,
    /// Every entry before this node joined (after the snapshot, when there
    /// is one): applied to the engine to reach the cluster's state, never
    /// carried out.
    pub history: Vec<LogEntry>,
    /// The cluster's nodes and configuration now (the log's latest
    /// configuration entry, else the snapshot's; the engine starts from the
    /// snapshot's or the first one and replays the later ones in their
    /// place).
    pub nodes: Vec<String>,
    /// The cluster's groups and resources now.
    pub desired: Desired,
    /// This agent wrote the configuration (it found the log empty).
    pub created: bool,
    /// Where the resources' checkpoints live: in etcd, fenced by the
    /// groups' ownership keys.
    pub checkpoints: Arc<EtcdCheckpoints>,
    /// What each node runs, and the builds rolled out to every node.
    pub plugins: Arc<ClusterPlugins>,
}

/// How long a starting agent waits for etcd to take its lease: a cluster
/// that has just lost its leader, or is coming back from a partition,
/// answers "unavailable" until it has elected one (a few seconds). Kept
/// short: a SIGTERM during the start is acted on when the start ends.
const JOIN_PATIENCE: Duration = Duration::from_secs(20);

/// [`lease::register`], asked again while etcd does not take it (every
/// member asked each time), for up to [`JOIN_PATIENCE`]; the last error
/// after that.
async fn register_patiently(etcd: &Etcd, keys: &Keys, me: &str, ttl: Duration) -> Result<i64> {
    let give_up = std::time::Instant::now() + JOIN_PATIENCE;
    let mut pause = Duration::from_millis(500);
    loop {
        match lease::register(etcd, keys, me, ttl).await {
            Ok(lease) => return Ok(lease),
            Err(err) if std::time::Instant::now() + pause < give_up => {
                tracing::warn!(
                    "etcd did not take this node's lease ({err:#}); asking again in {pause:?}"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Connect, take a lease, register as a member, read where the log starts
/// (its snapshot and the entries after it; writing the configuration into
/// the log if it is empty), then announce this node up.
pub async fn join(
    section: &ClusterSection,
    me: &str,
    seed: &Desired,
    fencing: fence::Devices,
) -> Result<Joined> {
    let etcd = Etcd::connect(&section.endpoints).await?;
    let keys = Keys::new(&section.name);
    let timing = LeaseTiming::of(section.lease_ttl());
    let lease = register_patiently(&etcd, &keys, me, timing.ttl)
        .await
        .with_context(|| format!("joining through etcd at {}", etcd.endpoints()))?;

    let (start, created) = read_or_configure(&etcd, &keys, me, section, seed).await?;
    let (nodes, desired) = start_configuration(&start, section, me)?;
    let next = start.last_seq() + 1;

    let (tx, messages) = mpsc::unbounded_channel();
    let (requests, requests_rx) = mpsc::unbounded_channel();
    let (lease_tx, lease_rx) = watch::channel(Some(lease));
    let shared = Shared::new(keys, me, tx, lease_rx, nodes_up(&start), next - 1, fencing);
    let reported = report_start(&etcd, &shared, lease, next - 1).await;
    let up_at = members::announce(&etcd, &shared).await?;
    let (checkpoints, plugins) = cluster_stores(&etcd, &shared, &desired);
    spawn_tasks(
        etcd,
        shared,
        next,
        reported,
        lease_tx,
        timing,
        up_at,
        requests_rx,
    )?;
    Ok(Joined {
        link: ClusterLink {
            requests,
            me: me.to_string(),
        },
        messages,
        snapshot: start.snapshot,
        history: start.entries,
        nodes,
        desired,
        created,
        checkpoints,
        plugins,
    })
}

/// This node's reading progress at its start (`read`, the entry before the
/// first it will follow), reported before any compaction can take the
/// entries after the start away: `Some((read, lease))` once reported. If it
/// fails (the lease expired while a slow etcd answered the reading), the
/// lease keeper registers anew and `progress::keep` reports then.
async fn report_start(etcd: &Etcd, shared: &Shared, lease: i64, read: u64) -> Option<(u64, i64)> {
    match progress::report(etcd, &shared.keys, &shared.me, lease, read).await {
        Ok(()) => Some((read, lease)),
        Err(err) => {
            tracing::warn!("{err:#}");
            None
        }
    }
}

/// What this node keeps in etcd besides the log: the resources'
/// checkpoints (fenced by the groups' ownership keys) and its plugin
/// builds, both on this node's lease.
fn cluster_stores(
    etcd: &Etcd,
    shared: &Shared,
    desired: &Desired,
) -> (Arc<EtcdCheckpoints>, Arc<ClusterPlugins>) {
    let checkpoints = Arc::new(EtcdCheckpoints::new(
        etcd.clone(),
        shared.keys.clone(),
        &shared.me,
        shared.lease.clone(),
        desired,
    ));
    let plugins = Arc::new(ClusterPlugins::new(
        etcd.clone(),
        shared.keys.clone(),
        &shared.me,
        shared.lease.clone(),
    ));
    (checkpoints, plugins)
}

/// Where the log starts (its snapshot and the entries after it), with the
/// configuration written into it first if it is empty; and whether this
/// agent wrote it.
async fn read_or_configure(
    etcd: &Etcd,
    keys: &Keys,
    me: &str,
    section: &ClusterSection,
    seed: &Desired,
) -> Result<(Start, bool)> {
    let mut start = read_start(etcd, keys).await?;
    let mut created = false;
    if start.is_empty() {
        let configure = LogEvent::Configure {
            nodes: section.nodes.clone(),
            desired: seed.clone(),
        };
        created = log::append(etcd, keys, me, &configure).await? == 1;
        start = read_start(etcd, keys).await?;
    }
    if let Some(refused) = &start.refused {
        tracing::warn!("the log's snapshot was not used: {refused}");
    }
    match &start.snapshot {
        Some(snapshot) => tracing::info!(
            "starting from the log's snapshot of entry {} and the {} entries after it",
            snapshot.seq,
            start.entries.len()
        ),
        None => tracing::info!(
            "starting from the whole log: {} entries",
            start.entries.len()
        ),
    }
    Ok((start, created))
}

/// The cluster's nodes and configuration as the log's start holds them,
/// refused if the log does not begin with a configuration or if this node
/// is not one of the cluster's.
fn start_configuration(
    start: &Start,
    section: &ClusterSection,
    me: &str,
) -> Result<(Vec<String>, Desired)> {
    if start.snapshot.is_none()
        && !matches!(
            start.entries.first().map(|e| &e.event),
            Some(LogEvent::Configure { .. })
        )
    {
        bail!(
            "the log of cluster {:?} does not start with its configuration",
            section.name
        );
    }
    let Some((nodes, desired)) = start
        .configuration()
        .map(|(nodes, desired)| (nodes.to_vec(), desired.clone()))
    else {
        bail!(
            "the log of cluster {:?} holds no configuration",
            section.name
        );
    };
    if !nodes.iter().any(|n| n == me) {
        bail!(
            "node {me:?} is not one of the cluster's nodes ({}); add it to [cluster] nodes",
            nodes.join(", ")
        );
    }
    Ok((nodes, desired))
}

/// The nodes the log's start says are up, each with the entry of its
/// `NodeUp` (the snapshot's own entry for those the snapshot holds).
fn nodes_up(start: &Start) -> BTreeMap<String, u64> {
    let mut up = BTreeMap::new();
    if let Some(snapshot) = &start.snapshot {
        up.extend(
            snapshot
                .nodes_up()
                .map(|node| (node.to_string(), snapshot.seq)),
        );
    }
    for entry in &start.entries {
        note_up_or_down(&mut up, entry);
    }
    up
}

/// Start the link's tasks, each for as long as the node runs: following
/// the log from `next`, reporting progress, watching the members (and,
/// with fence devices, the leases), keeping the lease, and serving the
/// node's requests.
#[allow(clippy::too_many_arguments)] // one call, in `join`: the state each task starts from
fn spawn_tasks(
    etcd: Etcd,
    shared: Shared,
    next: u64,
    reported: Option<(u64, i64)>,
    lease_tx: watch::Sender<Option<i64>>,
    timing: LeaseTiming,
    up_at: u64,
    requests: mpsc::UnboundedReceiver<Request>,
) -> Result<()> {
    // First: a node that cannot keep its lease must not start the rest.
    lease::spawn_keeper(&etcd, shared.clone(), lease_tx, timing, up_at)?;
    tokio::spawn(follow::follow(etcd.clone(), shared.clone(), next));
    tokio::spawn(progress::keep(etcd.clone(), shared.clone(), reported));
    tokio::spawn(members::watch(etcd.clone(), shared.clone()));
    if fence::enabled(&shared) {
        tokio::spawn(fence::watch_leases(etcd.clone(), shared.clone()));
    }

    tokio::spawn(requests::serve(etcd, shared, requests));
    Ok(())
}
