//! The agent's link to the cluster: the tasks that keep its lease, follow
//! the log, watch the members and hold ownership keys, and the messages
//! they send the node's loop.
//!
//! The node's loop never waits on etcd: it asks ([`ClusterLink`]) and is
//! told ([`LinkMessage`]). The log's entries reach it in order; its own
//! appends reach it the same way as everyone else's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use warden_policy::Event as PolicyEvent;

use super::Keys;
use super::checkpoints::EtcdCheckpoints;
use super::compact::{self, KEEP_BEHIND};
use super::etcd::{ATTEMPT, Etcd};
use super::fence;
use super::log::{self, LogEntry, LogEvent};
use super::plugins::ClusterPlugins;
use super::snapshot::{self, LogSnapshot, Written};
use super::start::read_start;
use crate::config::ClusterSection;
use crate::desired::Desired;

/// How long the node's loop waits for a request it must answer (an
/// append whose entry number it reports): every member may be tried
/// (`ATTEMPT` each) and the request may queue behind the node's own
/// appends.
const TOLD_WAIT: Duration = Duration::from_secs(10);
/// Retry pause after a failed etcd request.
const RETRY: Duration = Duration::from_millis(200);
/// A watch that said nothing for this long is re-established (after a
/// read of what it may have missed): a watch on a dead connection can
/// hang without an error.
const WATCH_IDLE: Duration = Duration::from_secs(3);
/// How often this node's reading progress (`progress/NODE`) is written,
/// when it moved: compaction waits for the slowest live reader, so this
/// bounds how long it holds entries back, not what it may delete.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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
        node: String,
        action: &'static str,
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
    pub link: ClusterLink,
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
    pub desired: Desired,
    /// This agent wrote the configuration (it found the log empty).
    pub created: bool,
    /// Where the resources' checkpoints live: in etcd, fenced by the
    /// groups' ownership keys.
    pub checkpoints: Arc<EtcdCheckpoints>,
    /// What each node runs, and the builds rolled out to every node.
    pub plugins: Arc<ClusterPlugins>,
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
    let lease = register(&etcd, &keys, me, timing.ttl)
        .await
        .with_context(|| format!("joining through etcd at {}", etcd.endpoints()))?;

    let mut start = read_start(&etcd, &keys).await?;
    let mut created = false;
    if start.is_empty() {
        let configure = LogEvent::Configure {
            nodes: section.nodes.clone(),
            desired: seed.clone(),
        };
        created = log::append(&etcd, &keys, me, &configure).await? == 1;
        start = read_start(&etcd, &keys).await?;
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
    let next = start.last_seq() + 1;
    let up = Arc::new(Mutex::new(BTreeMap::new()));
    if let (Some(snapshot), Ok(mut up)) = (&start.snapshot, up.lock()) {
        up.extend(
            snapshot
                .nodes_up()
                .map(|node| (node.to_string(), snapshot.seq)),
        );
    }
    for entry in &start.entries {
        track(&up, entry);
    }

    let (tx, messages) = mpsc::unbounded_channel();
    let (requests, requests_rx) = mpsc::unbounded_channel();
    let (lease_tx, lease_rx) = watch::channel(Some(lease));
    let shared = Shared {
        keys,
        me: me.to_string(),
        tx,
        lease: lease_rx,
        up,
        compacting: Arc::new(AtomicBool::new(false)),
        read: Arc::new(AtomicU64::new(next - 1)),
        behind: Arc::new(AtomicBool::new(false)),
        marked_down: Arc::new(AtomicU64::new(0)),
        fencing,
        fencing_now: Arc::default(),
    };
    // Before any compaction can take the entries after the start away; if
    // it fails (the lease expired while a slow etcd answered the reading),
    // the lease keeper registers anew and `keep_progress` reports then.
    let reported = match report_progress(&etcd, &shared.keys, me, lease, next - 1).await {
        Ok(()) => Some((next - 1, lease)),
        Err(err) => {
            tracing::warn!("{err:#}");
            None
        }
    };
    let up_at = announce(&etcd, &shared).await?;
    let checkpoints = Arc::new(EtcdCheckpoints::new(
        etcd.clone(),
        shared.keys.clone(),
        me,
        shared.lease.clone(),
        &desired,
    ));
    let plugins = Arc::new(ClusterPlugins::new(
        etcd.clone(),
        shared.keys.clone(),
        me,
        shared.lease.clone(),
    ));
    tokio::spawn(follow(etcd.clone(), shared.clone(), next));
    tokio::spawn(keep_progress(etcd.clone(), shared.clone(), reported));
    tokio::spawn(watch_members(etcd.clone(), shared.clone()));
    if fence::enabled(&shared) {
        tokio::spawn(fence::watch_leases(etcd.clone(), shared.clone()));
    }
    tokio::spawn(keep_lease(
        etcd.clone(),
        shared.clone(),
        lease_tx,
        timing,
        up_at,
    ));
    tokio::spawn(serve(etcd, shared, requests_rx));
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

/// What every task of the link shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) keys: Keys,
    pub(super) me: String,
    pub(super) tx: mpsc::UnboundedSender<LinkMessage>,
    /// The current lease; `None` while fenced.
    lease: watch::Receiver<Option<i64>>,
    /// The nodes the log says are up, each with the entry of its `NodeUp`
    /// (which incarnation is up; a snapshot's own entry for those it holds).
    up: Arc<Mutex<BTreeMap<String, u64>>>,
    /// A snapshot is being written and the log compacted.
    compacting: Arc<AtomicBool>,
    /// The last entry read from the log (delivered to the node's loop).
    read: Arc<AtomicU64>,
    /// Entries this node has yet to read were compacted away: it is out
    /// of the cluster for good (fenced, never rejoining) until restarted,
    /// when it joins from the snapshot.
    behind: Arc<AtomicBool>,
    /// The entry of the latest `NodeDown` of this node that another node
    /// appended (0: none). One after this node's own `NodeUp` means the
    /// cluster counts it out while its lease lives: the lease keeper
    /// registers it again rather than leave it stopped for good.
    marked_down: Arc<AtomicU64>,
    /// The fence devices of the configuration (none: nodes are marked down
    /// when their keys go, as without fencing).
    pub(super) fencing: fence::Devices,
    /// The nodes this node is fencing now.
    pub(super) fencing_now: Arc<Mutex<BTreeSet<String>>>,
}

impl Shared {
    pub(super) fn lease(&self) -> Option<i64> {
        *self.lease.borrow()
    }

    /// The nodes the log says are up, as of now.
    fn believed_up(&self) -> Vec<String> {
        self.up
            .lock()
            .map(|up| up.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The entry of `node`'s `NodeUp`, if the log says it is up.
    pub(super) fn up_since(&self, node: &str) -> Option<u64> {
        self.up.lock().ok()?.get(node).copied()
    }

    /// The last entry of the log this node has read.
    pub(super) fn read_up_to(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// Keep the set of nodes the log says are up.
fn track(up: &Mutex<BTreeMap<String, u64>>, entry: &LogEntry) {
    let Ok(mut up) = up.lock() else { return };
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

/// Grant a lease and put the member key on it.
async fn register(etcd: &Etcd, keys: &Keys, me: &str, ttl: Duration) -> Result<i64> {
    let secs = ttl.as_secs().max(1) as i64;
    // A grant whose answer was lost leaves a lease nobody renews: it
    // expires on its own, holding nothing.
    let lease = etcd
        .request("taking a lease", |mut client| async move {
            client.lease_grant(secs, None).await
        })
        .await?
        .id();
    etcd.request("registering as a member", |mut client| {
        let (key, value) = (keys.member(me), format!("{lease:x}"));
        async move {
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
        }
    })
    .await?;
    Ok(lease)
}

/// Mark down the nodes the log thinks up that hold no member key, and this
/// node's earlier incarnation, then announce this node up; the entry of
/// its `NodeUp`.
async fn announce(etcd: &Etcd, shared: &Shared) -> Result<u64> {
    let (members, _) = live_members(etcd, &shared.keys).await?;
    for node in shared.believed_up() {
        if node == shared.me {
            let down = LogEvent::Policy(PolicyEvent::NodeDown(node));
            log::append(etcd, &shared.keys, &shared.me, &down).await?;
        } else if !members.contains(&node) {
            append_down_while_keyless(etcd, shared, &node, "no member key at this node's rejoin")
                .await?;
        }
    }
    let up = LogEvent::Policy(PolicyEvent::NodeUp(shared.me.clone()));
    log::append(etcd, &shared.keys, &shared.me, &up).await
}

/// The nodes holding a member key, and the etcd revision of that reading.
async fn live_members(etcd: &Etcd, keys: &Keys) -> Result<(BTreeSet<String>, i64)> {
    let response = etcd
        .request("listing the members", |mut client| {
            let prefix = keys.members_prefix();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or(0);
    let members = response
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .filter_map(|key| keys.member_of(key).map(str::to_string))
        .collect();
    Ok((members, revision))
}

/// Deliver the log in order, from `next` on, for as long as the node runs.
async fn follow(etcd: Etcd, shared: Shared, mut next: u64) {
    loop {
        let (member, mut client) = etcd.preferred();
        match follow_once(&etcd, &mut client, &shared, &mut next).await {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!("following the log from {next}: {err:#}");
                if is_transport(&err) {
                    etcd.failed(member);
                }
                sleep(RETRY).await;
            }
        }
    }
}

/// Entries from `next` to `first - 1` were compacted away before this node
/// read them: its engine can no longer follow the cluster's. Stop
/// everything here now and stay out (the lease keeper revokes the lease
/// and never rejoins): a restarted agent joins from the snapshot.
fn fell_behind(shared: &Shared, next: u64, first: u64) {
    let reason = format!(
        "this node fell behind the log's compaction: it needs entry {next}, the log now starts \
         at entry {first}; restart the agent to join again from the log's snapshot"
    );
    if shared.behind.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::error!(node = %shared.me, "fenced: {reason}; stopping every resource");
    let _ = shared.tx.send(LinkMessage::Fenced(reason));
}

/// Write this node's reading progress (`progress/NODE`, on its lease).
async fn report_progress(etcd: &Etcd, keys: &Keys, me: &str, lease: i64, read: u64) -> Result<()> {
    etcd.request("reporting the log reading progress", |mut client| {
        let key = keys.progress(me);
        async move {
            client
                .put(
                    key,
                    read.to_string(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
        }
    })
    .await
    .map(drop)
}

/// Keep `progress/NODE` near the entry last read, for as long as the node
/// runs (a rejoin's new lease included). `reported`: what is there now
/// (the entry and the lease it was written on), if anything.
async fn keep_progress(etcd: Etcd, shared: Shared, mut reported: Option<(u64, i64)>) {
    loop {
        sleep(PROGRESS_EVERY).await;
        if shared.tx.is_closed() {
            return;
        }
        let read = shared.read.load(Ordering::Relaxed);
        let Some(lease) = shared.lease() else {
            continue;
        };
        if reported == Some((read, lease)) {
            continue;
        }
        match report_progress(&etcd, &shared.keys, &shared.me, lease, read).await {
            Ok(()) => reported = Some((read, lease)),
            Err(err) => tracing::debug!("{err:#}"),
        }
    }
}

/// The slowest live reader's progress: the last entry every agent holding
/// a lease has read. `None` when no agent reported any.
async fn slowest_reader(etcd: &Etcd, keys: &Keys) -> Result<Option<u64>> {
    let response = etcd
        .request("reading the agents' progress", |mut client| {
            let prefix = keys.progress_prefix();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    Ok(response
        .kvs()
        .iter()
        .filter_map(|kv| kv.value_str().ok()?.parse::<u64>().ok())
        .min())
}

/// Whether `err` came from etcd or the way to it (not from what it said).
fn is_transport(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<etcd_client::Error>().is_some())
}

/// Read what is there, then watch for more (on `client`) until the watch
/// fails or idles. `Ok` only when the node's loop is gone.
async fn follow_once(
    etcd: &Etcd,
    client: &mut Client,
    shared: &Shared,
    next: &mut u64,
) -> Result<()> {
    let (entries, revision) = log::read_from(etcd, &shared.keys, *next).await?;
    if let Some(first) = entries.first().filter(|e| e.seq > *next) {
        fell_behind(shared, *next, first.seq);
        return Ok(());
    }
    for entry in entries {
        if !deliver(shared, next, entry)? {
            return Ok(());
        }
    }
    let mut watch = PrefixWatch::start(client, shared.keys.log_prefix(), revision).await?;
    loop {
        let Some(response) = watch.next().await? else {
            bail!("the log's watch idled or ended; reading again");
        };
        for event in response.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            let Some(kv) = event.kv() else { continue };
            if !deliver(shared, next, log::decode(kv.value())?)? {
                return Ok(());
            }
        }
    }
}

/// A watch of every key under a prefix, from just after a read.
struct PrefixWatch {
    prefix: String,
    stream: WatchStream,
}

impl PrefixWatch {
    /// Watch what changes under `prefix` after `revision` (that of the read
    /// the caller just made), so that nothing falls between the two.
    async fn start(client: &mut Client, prefix: String, revision: i64) -> Result<PrefixWatch> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = client
            .watch(prefix.clone(), Some(options))
            .await
            .with_context(|| format!("watching {prefix}"))?;
        Ok(PrefixWatch { prefix, stream })
    }

    /// The next answer; `None` once the watch idled (`WATCH_IDLE`), ended
    /// or was cancelled: the caller reads again and watches anew.
    async fn next(&mut self) -> Result<Option<WatchResponse>> {
        let Ok(message) = timeout(WATCH_IDLE, self.stream.message()).await else {
            return Ok(None);
        };
        let response = message.with_context(|| format!("watching {}", self.prefix))?;
        Ok(response.filter(|r| !r.canceled()))
    }
}

/// Hand `entry` to the node if it is the next one. `Ok(false)` when the
/// node's loop is gone; an error on a gap (read again from `next`).
fn deliver(shared: &Shared, next: &mut u64, entry: LogEntry) -> Result<bool> {
    if entry.seq < *next {
        return Ok(true);
    }
    if entry.seq > *next {
        bail!("entry {} arrived before {}", entry.seq, next);
    }
    if let LogEvent::Policy(PolicyEvent::NodeDown(node)) = &entry.event
        && *node == shared.me
        && entry.origin != shared.me
    {
        shared.marked_down.fetch_max(entry.seq, Ordering::AcqRel);
    }
    track(&shared.up, &entry);
    *next += 1;
    shared.read.store(entry.seq, Ordering::Relaxed);
    Ok(shared.tx.send(LinkMessage::Entry(entry)).is_ok())
}

/// Append `NodeDown` for every node whose member key goes (its lease
/// expired or was revoked) while the log thinks it up.
async fn watch_members(etcd: Etcd, shared: Shared) {
    loop {
        let (member, mut client) = etcd.preferred();
        if let Err(err) = watch_members_once(&etcd, &mut client, &shared).await {
            tracing::debug!("watching the members: {err:#}");
            if is_transport(&err) {
                etcd.failed(member);
            }
        }
        if shared.tx.is_closed() {
            return;
        }
        sleep(RETRY).await;
    }
}

async fn watch_members_once(etcd: &Etcd, client: &mut Client, shared: &Shared) -> Result<()> {
    let (members, revision) = live_members(etcd, &shared.keys).await?;
    for node in shared.believed_up() {
        if !members.contains(&node) {
            mark_down(etcd, shared, &node).await?;
        }
    }
    let mut watch = PrefixWatch::start(client, shared.keys.members_prefix(), revision).await?;
    loop {
        let Some(response) = watch.next().await? else {
            return Ok(());
        };
        for event in response.events() {
            if event.event_type() != EventType::Delete {
                continue;
            }
            let Some(node) = event
                .kv()
                .and_then(|kv| kv.key_str().ok())
                .and_then(|key| shared.keys.member_of(key))
            else {
                continue;
            };
            let node = node.to_string();
            let believed_up = shared.up_since(&node).is_some();
            if believed_up {
                mark_down(etcd, shared, &node).await?;
            }
        }
    }
}

async fn mark_down(etcd: &Etcd, shared: &Shared, node: &str) -> Result<()> {
    if node == shared.me || shared.lease().is_none() {
        // Our own key: our lease is gone, and the fence deals with it.
        return Ok(());
    }
    if shared.fencing.device_for(node).is_some() {
        fence::start(etcd, shared, node, "member key gone");
        return Ok(());
    }
    append_down_while_keyless(etcd, shared, node, "member key gone").await
}

/// Append `NodeDown` for `node` only while its member key is absent: a node
/// that registered again since must not be marked down behind its own
/// `NodeUp` (`log::append_while_absent`).
async fn append_down_while_keyless(
    etcd: &Etcd,
    shared: &Shared,
    node: &str,
    why: &str,
) -> Result<()> {
    let down = LogEvent::Policy(PolicyEvent::NodeDown(node.to_string()));
    let member = shared.keys.member(node);
    match log::append_while_absent(etcd, &shared.keys, &shared.me, &down, member).await? {
        Some(_) => tracing::warn!(node, "{why}: the node is down"),
        None => tracing::info!(
            node,
            "{why}, but the node registered again since: not marked down"
        ),
    }
    Ok(())
}

/// When the lease is renewed and when the node fences itself, from its TTL.
///
/// etcd expires the lease no earlier than a full TTL after the moment the
/// last answered renewal was *sent*. The node fences itself half way
/// there, leaving the other half for terminating what it runs; it renews
/// six times per TTL, so the fence comes only after about three renewals
/// in a row went unanswered — each of them tried on every member in turn.
/// Losing one etcd member (its leader, say) costs one attempt and an
/// election, well inside that.
#[derive(Debug, Clone, Copy)]
struct LeaseTiming {
    ttl: Duration,
    every: Duration,
    fence_after: Duration,
    /// How long one renewal may take on one member before the next member
    /// is asked.
    per_try: Duration,
}

impl LeaseTiming {
    fn of(ttl: Duration) -> LeaseTiming {
        let fence_after = ttl / 2;
        LeaseTiming {
            ttl,
            every: ttl / 6,
            fence_after,
            per_try: (fence_after / 4).clamp(Duration::from_millis(250), ATTEMPT),
        }
    }
}

/// Where this node stands with the cluster, as the lease keeper sees it.
#[derive(Debug, Clone, Copy)]
enum Standing {
    /// No lease: everything here is stopped. `stale` is the lease this
    /// node held before (revoked at the rejoin, so the ownership keys it
    /// still holds go at once, not a TTL later).
    Fenced { stale: Option<i64> },
    /// A new lease and member key, but `NodeUp` not yet in the log: the
    /// cluster does not count on this node until it is.
    Registered(i64),
    /// In the cluster.
    Joined(i64),
}

/// Renew the lease; fence the node when renewals stop, and rejoin with a
/// new lease when etcd answers again — retrying the announcement until it
/// is in the log (a node that holds a lease but never said `NodeUp` would
/// have the cluster wait on groups it never carries out).
async fn keep_lease(
    etcd: Etcd,
    shared: Shared,
    lease_tx: watch::Sender<Option<i64>>,
    timing: LeaseTiming,
    // The entry of this node's latest `NodeUp`.
    mut up_at: u64,
) {
    let mut standing = match shared.lease() {
        Some(id) => Standing::Joined(id),
        None => Standing::Fenced { stale: None },
    };
    let mut renewed_at = Instant::now();
    let mut keepers: Vec<Option<Keeper>> = (0..etcd.member_count()).map(|_| None).collect();
    loop {
        if shared.tx.is_closed() {
            return;
        }
        if shared.behind.load(Ordering::Acquire) {
            if let Standing::Registered(id) | Standing::Joined(id) = standing {
                let _ = lease_tx.send(None);
                let revoked = etcd
                    .request(
                        "revoking the lease of a node behind the log",
                        |mut client| async move { revoke(&mut client, id).await },
                    )
                    .await;
                if let Err(err) = revoked {
                    tracing::debug!("{err:#}");
                }
                standing = Standing::Fenced { stale: None };
            }
            sleep(timing.every).await;
            continue;
        }
        let id = match standing {
            Standing::Fenced { stale } => {
                // A node whose next entry went with a compaction while it
                // was fenced (frozen, cut off) would rejoin on a state it
                // can no longer bring up to date.
                match compact::first_entry(&etcd, &shared.keys).await {
                    Ok(Some(first)) if first > shared.read.load(Ordering::Relaxed) + 1 => {
                        fell_behind(&shared, shared.read.load(Ordering::Relaxed) + 1, first);
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!("rejoining: {err:#}");
                        sleep(RETRY * 2).await;
                        continue;
                    }
                }
                let asked = Instant::now();
                match rejoin(&etcd, &shared, timing.ttl, stale).await {
                    Ok(id) => {
                        tracing::warn!(node = %shared.me, "registered again with a new lease");
                        standing = Standing::Registered(id);
                        renewed_at = asked;
                        // The guard lapsed with the fence: vouch for the new
                        // lease now, so a service held before the first
                        // renewal is not killed at once.
                        vouch(renewed_at, timing);
                        keepers.iter_mut().for_each(|k| *k = None);
                        // Known before the announcement goes through the
                        // log, so claims that follow it can use the lease.
                        let _ = lease_tx.send(Some(id));
                    }
                    Err(err) => {
                        tracing::debug!("rejoining: {err:#}");
                        sleep(RETRY * 2).await;
                    }
                }
                continue;
            }
            Standing::Registered(id) => {
                match announce(&etcd, &shared).await {
                    Ok(seq) => {
                        tracing::warn!(node = %shared.me, "rejoined the cluster");
                        standing = Standing::Joined(id);
                        up_at = seq;
                    }
                    Err(err) => tracing::warn!("announcing the rejoin (trying again): {err:#}"),
                }
                id
            }
            Standing::Joined(id) => {
                let down_at = shared.marked_down.load(Ordering::Acquire);
                if down_at > up_at {
                    // No agent appends that now (`append_down_while_keyless`),
                    // but a node the cluster counts out must not stay
                    // stopped with a live lease and its ownership keys.
                    fence(
                        &shared,
                        &lease_tx,
                        &format!(
                            "the cluster marked this node down (entry {down_at}) while its \
                             lease was live; registering again"
                        ),
                    );
                    // The old lease is left to expire, not revoked: its
                    // ownership keys pass on only a TTL after the last
                    // renewal, by when the services here are long stopped.
                    standing = Standing::Fenced { stale: None };
                    continue;
                }
                id
            }
        };
        let fence_at = renewed_at + timing.fence_after;
        match renew_anywhere(&etcd, &mut keepers, id, timing.per_try, fence_at).await {
            Renewal::Answered { alive: true, sent } => {
                renewed_at = sent;
                vouch(renewed_at, timing);
            }
            Renewal::Answered { alive: false, .. } => {
                fence(&shared, &lease_tx, "the lease expired in etcd");
                standing = Standing::Fenced { stale: None };
                continue;
            }
            Renewal::Unanswered => {}
        }
        if renewed_at.elapsed() >= timing.fence_after {
            // This agent is alive and stops its services itself: the guard
            // need act only if it freezes now, still before the lease ends.
            crate::fence_guard::grace_until(
                (renewed_at + timing.ttl - timing.every / 2).into_std(),
            );
            fence(
                &shared,
                &lease_tx,
                &format!(
                    "no lease renewal answered for {:?} by any etcd member (TTL {:?})",
                    renewed_at.elapsed(),
                    timing.ttl
                ),
            );
            standing = Standing::Fenced { stale: Some(id) };
            continue;
        }
        // Not yet announced: try again soon, not a renewal period later.
        let next = match standing {
            Standing::Joined(_) if renewed_at.elapsed() < timing.every => renewed_at + timing.every,
            _ => Instant::now() + RETRY.min(timing.every),
        };
        tokio::time::sleep_until(next.min(renewed_at + timing.fence_after)).await;
    }
}

/// Tell the fence guard to kill this node's services unless a later
/// renewal comes: a little after this agent's own fence (so the agent's
/// orderly stop comes first), well before the lease can end.
fn vouch(renewed_at: Instant, timing: LeaseTiming) {
    crate::fence_guard::vouch_until(
        (renewed_at + timing.fence_after + timing.every / 2).into_std(),
    );
}

/// A lease keep-alive stream on one member.
type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// What a round of renewal attempts came to.
enum Renewal {
    /// A member answered the renewal sent at `sent`; `alive` is false if
    /// etcd says the lease is gone.
    Answered { alive: bool, sent: Instant },
    /// No member answered before the fence was due.
    Unanswered,
}

/// Renew on the preferred member; on a failure, or no answer within
/// `per_try`, on the next one as well, each member once, never past
/// `fence_at`. Attempts are *hedged*: one that has not answered stays in
/// flight while the next member is asked, and the first answer wins. A
/// follower forwards a renewal to the leader it knows; with that leader
/// frozen (SIGSTOP: connections accepted, nothing answered) the follower
/// answers only once a new leader is elected, which can take longer than
/// one attempt — cutting it off there fenced an agent at a 5 s TTL.
async fn renew_anywhere(
    etcd: &Etcd,
    keepers: &mut [Option<Keeper>],
    id: i64,
    per_try: Duration,
    fence_at: Instant,
) -> Renewal {
    let first = etcd.preferred().0;
    let count = etcd.member_count();
    let mut untried = (0..count).map(|k| (first + k) % count);
    let mut attempts = tokio::task::JoinSet::new();
    let mut next_at = Instant::now();
    loop {
        let more = next_at < fence_at && untried.len() > 0;
        if !more && attempts.is_empty() {
            return Renewal::Unanswered;
        }
        tokio::select! {
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                let Ok((member, sent, answer, keeper)) = done else {
                    continue;
                };
                match answer {
                    Ok(alive) => {
                        keepers[member] = keeper;
                        etcd.prefer(member);
                        return Renewal::Answered { alive, sent };
                    }
                    Err(err) => {
                        tracing::debug!("renewing the lease: {err:#}");
                        etcd.failed(member);
                        // Ask the next member now, not a try later.
                        next_at = Instant::now();
                    }
                }
            }
            () = tokio::time::sleep_until(next_at), if more => {
                if let Some(member) = untried.next() {
                    let client = etcd.client(member);
                    // The stream goes with the attempt: one that is cut off
                    // with an answer unread is not used again.
                    let keeper = keepers[member].take();
                    attempts.spawn(async move {
                        let sent = Instant::now();
                        let (answer, keeper) = renew(client, keeper, id).await;
                        (member, sent, answer, keeper)
                    });
                    next_at = Instant::now() + per_try;
                }
            }
            () = tokio::time::sleep_until(fence_at) => return Renewal::Unanswered,
        }
    }
}

/// One renewal on a member's keep-alive stream (opened if `keeper` is
/// none); `Ok(false)` if etcd says the lease is gone. Hands the stream
/// back for the next renewal, unless it failed.
async fn renew(
    mut client: Client,
    keeper: Option<Keeper>,
    id: i64,
) -> (Result<bool>, Option<Keeper>) {
    let mut keeper = match keeper {
        Some(keeper) => keeper,
        None => match client.lease_keep_alive(id).await {
            Ok(keeper) => keeper,
            Err(err) => return (Err(err.into()), None),
        },
    };
    let answer = async {
        keeper.0.keep_alive().await?;
        match keeper.1.message().await? {
            Some(answer) => Ok(answer.ttl() > 0),
            None => bail!("the keep-alive stream ended"),
        }
    }
    .await;
    match answer {
        Ok(alive) => (Ok(alive), Some(keeper)),
        Err(err) => (Err(err), None),
    }
}

fn fence(shared: &Shared, lease_tx: &watch::Sender<Option<i64>>, reason: &str) {
    tracing::error!(node = %shared.me, "fenced: {reason}; stopping every resource");
    let _ = lease_tx.send(None);
    let _ = shared.tx.send(LinkMessage::Fenced(reason.to_string()));
}

/// Register again with a new lease, after revoking the one this node held
/// before its fence (its ownership keys go with it; its services are
/// stopped). A revocation that fails is left to the lease's expiry.
async fn rejoin(etcd: &Etcd, shared: &Shared, ttl: Duration, stale: Option<i64>) -> Result<i64> {
    if let Some(old) = stale {
        let revoked = etcd
            .request(
                "revoking the lease held before the fence",
                |mut client| async move { revoke(&mut client, old).await },
            )
            .await;
        if let Err(err) = revoked {
            tracing::debug!("{err:#}");
        }
    }
    register(etcd, &shared.keys, &shared.me, ttl).await
}

/// Revoke `lease`; one already gone (expired meanwhile) is done, not a
/// failure of the member (which would send the request round every member).
pub(super) async fn revoke(client: &mut Client, lease: i64) -> Result<(), etcd_client::Error> {
    match client.lease_revoke(lease).await {
        Ok(_) => Ok(()),
        // gRPC NOT_FOUND (5): "requested lease not found".
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() as i32 == 5 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Carry out the node's requests, one at a time and in order.
async fn serve(etcd: Etcd, shared: Shared, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Append(event) => loop {
                if shared.lease().is_none() {
                    tracing::debug!("fenced: dropped {event:?}");
                    break;
                }
                match log::append(&etcd, &shared.keys, &shared.me, &event).await {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!("appending to the log: {err:#}");
                        sleep(RETRY).await;
                    }
                }
            },
            Request::AppendTold(event, reply) => {
                if reply.is_closed() {
                    // Its asker gave up waiting and said it was not taken.
                    continue;
                }
                let told = if shared.lease().is_none() {
                    Err("this node is fenced (cut off from etcd)".to_string())
                } else {
                    log::append(&etcd, &shared.keys, &shared.me, &event)
                        .await
                        .map_err(|err| format!("{err:#}"))
                };
                let _ = reply.send(told);
            }
            Request::Claim(group) => {
                tokio::spawn(claim(etcd.clone(), shared.clone(), group));
            }
            Request::Release(group) => {
                if let Err(err) = release(&etcd, &shared, &group).await {
                    tracing::warn!(group, "releasing the ownership key: {err:#}");
                }
            }
            Request::Snapshot(snapshot) => {
                if !shared.compacting.swap(true, Ordering::AcqRel) {
                    tokio::spawn(snapshot_and_compact(etcd.clone(), shared.clone(), snapshot));
                }
            }
            Request::Leave(reply) => {
                if let Some(id) = shared.lease() {
                    // With fence devices, the others would power a node off
                    // whose key went while the log believes it up: say it
                    // is down first, and they have nothing to fence.
                    if fence::enabled(&shared) {
                        let down = LogEvent::Policy(PolicyEvent::NodeDown(shared.me.clone()));
                        if let Err(err) = log::append(&etcd, &shared.keys, &shared.me, &down).await
                        {
                            tracing::warn!(
                                "appending this node's NodeDown before leaving: {err:#}"
                            );
                        }
                    }
                    let _ = etcd
                        .request("revoking the lease", |mut client| async move {
                            revoke(&mut client, id).await
                        })
                        .await;
                }
                let _ = reply.send(());
            }
        }
    }
}

/// Write `snapshot`, then compact the log to `KEEP_BEHIND` entries before
/// it. Failures are logged: the next interval's snapshot tries again.
async fn snapshot_and_compact(etcd: Etcd, shared: Shared, snapshot: Box<LogSnapshot>) {
    /// Lets the next snapshot through however this one ends (a panic too).
    struct Done<'a>(&'a Shared);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.compacting.store(false, Ordering::Release);
        }
    }
    let _done = Done(&shared);
    let seq = snapshot.seq;
    match snapshot::write_snapshot(&etcd, &shared.keys, &snapshot).await {
        Ok(Written::Written) => tracing::info!(seq, "wrote the log's snapshot"),
        Ok(Written::Kept { there }) => tracing::debug!(seq, there, "a newer snapshot is there"),
        Err(err) => {
            // Nothing is compacted on the strength of a snapshot not written.
            tracing::warn!(seq, "writing the log's snapshot: {err:#}");
            return;
        }
    }
    // Never an entry a live agent has yet to read: it could not follow.
    let before = match slowest_reader(&etcd, &shared.keys).await {
        Ok(slowest) => seq
            .saturating_sub(KEEP_BEHIND)
            .min(slowest.unwrap_or(u64::MAX)),
        Err(err) => {
            tracing::warn!(seq, "not compacting the log: {err:#}");
            return;
        }
    };
    if before > 0 {
        match compact::compact(&etcd, &shared.keys, before).await {
            Ok(done) => tracing::info!(
                before,
                deleted = done.deleted,
                revision = done.revision,
                "compacted the log"
            ),
            Err(err) => tracing::warn!(before, "compacting the log: {err:#}"),
        }
    }
}

/// Take `owners/GROUP` once it is free. A key left by this node's earlier
/// incarnation (its lease not yet expired) is taken over by revoking that
/// lease: that agent is gone, and its services died with it.
///
/// Retried on another member after a failure: a create whose answer was
/// lost is recognised by its holder and lease.
async fn claim(etcd: Etcd, shared: Shared, group: String) {
    let key = shared.keys.owner(&group);
    let mut waited_on = None;
    loop {
        let Some(lease) = shared.lease() else { return };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                shared.me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let answer = etcd
            .request("claiming the ownership key", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await;
        match answer {
            Ok(answer) if answer.succeeded() => {
                let _ = shared.tx.send(LinkMessage::Claimed(group));
                return;
            }
            Ok(answer) => {
                let holder = answer.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(get) => get
                        .kvs()
                        .first()
                        .map(|kv| (kv.value_str().unwrap_or("").to_string(), kv.lease())),
                    _ => None,
                });
                match holder {
                    Some((node, held_by)) if node == shared.me && held_by == lease => {
                        let _ = shared.tx.send(LinkMessage::Claimed(group));
                        return;
                    }
                    Some((node, held_by)) if node == shared.me => {
                        tracing::warn!(
                            group,
                            "taking over the key of this node's earlier incarnation"
                        );
                        let _ = etcd
                            .request(
                                "revoking an earlier incarnation's lease",
                                |mut client| async move { revoke(&mut client, held_by).await },
                            )
                            .await;
                    }
                    Some((node, _)) if waited_on.as_deref() != Some(node.as_str()) => {
                        tracing::info!(group, holder = %node, "waiting for the ownership key");
                        waited_on = Some(node);
                    }
                    Some(_) => {}
                    None => {}
                }
            }
            Err(err) => tracing::debug!(group, "claiming: {err:#}"),
        }
        if shared.tx.is_closed() {
            return;
        }
        sleep(RETRY).await;
    }
}

async fn release(etcd: &Etcd, shared: &Shared, group: &str) -> Result<()> {
    let Some(lease) = shared.lease() else {
        return Ok(());
    };
    let key = shared.keys.owner(group);
    let txn = Txn::new()
        .when([
            Compare::value(key.clone(), CompareOp::Equal, shared.me.clone()),
            Compare::lease(key.clone(), CompareOp::Equal, lease),
        ])
        .and_then([TxnOp::delete(key, None)]);
    etcd.request("deleting the ownership key", |mut client| {
        let txn = txn.clone();
        async move { client.txn(txn).await }
    })
    .await?;
    Ok(())
}
