//! The agent's link to the cluster: the tasks that keep its lease, follow
//! the log, watch the members and hold ownership keys, and the messages
//! they send the node's loop.
//!
//! The node's loop never waits on etcd: it asks ([`ClusterLink`]) and is
//! told ([`LinkMessage`]). The log's entries reach it in order; its own
//! appends reach it the same way as everyone else's.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use warden_policy::Event as PolicyEvent;

use super::Keys;
use super::checkpoints::EtcdCheckpoints;
use super::log::{self, LogEntry, LogEvent};
use crate::config::ClusterSection;
use crate::desired::Desired;

/// How long one etcd request may take before the link counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Retry pause after a failed etcd request.
const RETRY: Duration = Duration::from_millis(200);
/// A watch that said nothing for this long is re-established (after a
/// read of what it may have missed): a watch on a dead connection can
/// hang without an error.
const WATCH_IDLE: Duration = Duration::from_secs(3);

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
}

enum Request {
    Append(LogEvent),
    /// Append, and say where the entry landed (or why it did not).
    AppendTold(LogEvent, oneshot::Sender<Result<u64, String>>),
    Claim(String),
    Release(String),
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
        let (reply, told) = oneshot::channel();
        let entry = LogEvent::Configure { nodes, desired };
        self.requests
            .send(Request::AppendTold(entry, reply))
            .map_err(|_| anyhow::anyhow!("the cluster link has stopped"))?;
        match timeout(REQUEST_TIMEOUT * 5, told).await {
            Ok(Ok(Ok(seq))) => Ok(seq),
            Ok(Ok(Err(reason))) => bail!("the configuration was not appended: {reason}"),
            Ok(Err(_)) => bail!("the cluster link has stopped"),
            Err(_) => bail!(
                "etcd did not take the configuration within {:?}; it may still be appended",
                REQUEST_TIMEOUT * 5
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

    /// Revoke the lease: the member key and every ownership key go, and the
    /// other agents see this node down at once.
    pub async fn leave(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Leave(reply)).is_ok() {
            let _ = timeout(REQUEST_TIMEOUT, done).await;
        }
    }
}

/// What joining the cluster gives the node.
pub struct Joined {
    pub link: ClusterLink,
    pub messages: mpsc::UnboundedReceiver<LinkMessage>,
    /// Every entry before this node joined: applied to the engine to reach
    /// the cluster's state, never carried out.
    pub history: Vec<LogEntry>,
    /// The cluster's nodes and configuration now (the log's latest
    /// configuration entry; the engine starts from the first one and
    /// replays the later ones in their place).
    pub nodes: Vec<String>,
    pub desired: Desired,
    /// This agent wrote the configuration (it found the log empty).
    pub created: bool,
    /// Where the resources' checkpoints live: in etcd, fenced by the
    /// groups' ownership keys.
    pub checkpoints: Arc<EtcdCheckpoints>,
}

/// Connect, take a lease, register as a member, read the log (writing the
/// configuration into it if it is empty), then announce this node up.
pub async fn join(section: &ClusterSection, me: &str, seed: &Desired) -> Result<Joined> {
    let options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    let mut client = Client::connect(&section.endpoints, Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {}", section.endpoints.join(", ")))?;
    let keys = Keys::new(&section.name);
    let ttl = section.lease_ttl();
    let lease = register(&mut client, &keys, me, ttl).await?;

    let (mut history, _) = log::read_from(&mut client, &keys, 1).await?;
    let mut created = false;
    if history.is_empty() {
        let configure = LogEvent::Configure {
            nodes: section.nodes.clone(),
            desired: seed.clone(),
        };
        created = log::append(&mut client, &keys, me, &configure).await? == 1;
        history = log::read_from(&mut client, &keys, 1).await?.0;
    }
    if !matches!(
        history.first().map(|e| &e.event),
        Some(LogEvent::Configure { .. })
    ) {
        bail!(
            "the log of cluster {:?} does not start with its configuration",
            section.name
        );
    }
    let Some((nodes, desired)) = history.iter().rev().find_map(|e| match &e.event {
        LogEvent::Configure { nodes, desired } => Some((nodes.clone(), desired.clone())),
        LogEvent::Policy(_) => None,
    }) else {
        unreachable!("the first entry is a configuration")
    };
    if !nodes.iter().any(|n| n == me) {
        bail!(
            "node {me:?} is not one of the cluster's nodes ({}); add it to [cluster] nodes",
            nodes.join(", ")
        );
    }
    let next = history.last().map(|e| e.seq + 1).unwrap_or(1);
    let up = Arc::new(Mutex::new(BTreeSet::new()));
    for entry in &history {
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
    };
    announce(&mut client, &shared).await?;
    let checkpoints = Arc::new(EtcdCheckpoints::new(
        client.clone(),
        shared.keys.clone(),
        me,
        shared.lease.clone(),
        &desired,
    ));
    tokio::spawn(follow(client.clone(), shared.clone(), next));
    tokio::spawn(watch_members(client.clone(), shared.clone()));
    tokio::spawn(keep_lease(client.clone(), shared.clone(), lease_tx, ttl));
    tokio::spawn(serve(client, shared, requests_rx));
    Ok(Joined {
        link: ClusterLink {
            requests,
            me: me.to_string(),
        },
        messages,
        history,
        nodes,
        desired,
        created,
        checkpoints,
    })
}

/// What every task of the link shares.
#[derive(Clone)]
struct Shared {
    keys: Keys,
    me: String,
    tx: mpsc::UnboundedSender<LinkMessage>,
    /// The current lease; `None` while fenced.
    lease: watch::Receiver<Option<i64>>,
    /// The nodes the log says are up.
    up: Arc<Mutex<BTreeSet<String>>>,
}

impl Shared {
    fn lease(&self) -> Option<i64> {
        *self.lease.borrow()
    }

    /// The nodes the log says are up, as of now.
    fn believed_up(&self) -> Vec<String> {
        self.up
            .lock()
            .map(|up| up.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Keep the set of nodes the log says are up.
fn track(up: &Mutex<BTreeSet<String>>, entry: &LogEntry) {
    let Ok(mut up) = up.lock() else { return };
    match &entry.event {
        LogEvent::Policy(PolicyEvent::NodeUp(node)) => {
            up.insert(node.clone());
        }
        LogEvent::Policy(PolicyEvent::NodeDown(node)) => {
            up.remove(node);
        }
        _ => {}
    }
}

/// Grant a lease and put the member key on it.
async fn register(client: &mut Client, keys: &Keys, me: &str, ttl: Duration) -> Result<i64> {
    let secs = ttl.as_secs().max(1) as i64;
    let lease = client
        .lease_grant(secs, None)
        .await
        .context("taking a lease")?
        .id();
    client
        .put(
            keys.member(me),
            format!("{lease:x}"),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .context("registering as a member")?;
    Ok(lease)
}

/// Mark down the nodes the log thinks up that hold no member key, and this
/// node's earlier incarnation, then announce this node up.
async fn announce(client: &mut Client, shared: &Shared) -> Result<()> {
    let (members, _) = live_members(client, &shared.keys).await?;
    for node in shared.believed_up() {
        if node == shared.me || !members.contains(&node) {
            let down = LogEvent::Policy(PolicyEvent::NodeDown(node));
            log::append(client, &shared.keys, &shared.me, &down).await?;
        }
    }
    let up = LogEvent::Policy(PolicyEvent::NodeUp(shared.me.clone()));
    log::append(client, &shared.keys, &shared.me, &up).await?;
    Ok(())
}

/// The nodes holding a member key, and the etcd revision of that reading.
async fn live_members(client: &mut Client, keys: &Keys) -> Result<(BTreeSet<String>, i64)> {
    let response = client
        .get(keys.members_prefix(), Some(GetOptions::new().with_prefix()))
        .await
        .context("listing the members")?;
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
async fn follow(mut client: Client, shared: Shared, mut next: u64) {
    loop {
        match follow_once(&mut client, &shared, &mut next).await {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!("following the log from {next}: {err:#}");
                sleep(RETRY).await;
            }
        }
    }
}

/// Read what is there, then watch for more until the watch fails or idles.
/// `Ok` only when the node's loop is gone.
async fn follow_once(client: &mut Client, shared: &Shared, next: &mut u64) -> Result<()> {
    let (entries, revision) = log::read_from(client, &shared.keys, *next).await?;
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
    track(&shared.up, &entry);
    *next += 1;
    Ok(shared.tx.send(LinkMessage::Entry(entry)).is_ok())
}

/// Append `NodeDown` for every node whose member key goes (its lease
/// expired or was revoked) while the log thinks it up.
async fn watch_members(mut client: Client, shared: Shared) {
    loop {
        if let Err(err) = watch_members_once(&mut client, &shared).await {
            tracing::debug!("watching the members: {err:#}");
        }
        if shared.tx.is_closed() {
            return;
        }
        sleep(RETRY).await;
    }
}

async fn watch_members_once(client: &mut Client, shared: &Shared) -> Result<()> {
    let (members, revision) = live_members(client, &shared.keys).await?;
    for node in shared.believed_up() {
        if !members.contains(&node) {
            mark_down(client, shared, &node).await?;
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
            let believed_up = shared
                .up
                .lock()
                .map(|up| up.contains(&node))
                .unwrap_or(false);
            if believed_up {
                mark_down(client, shared, &node).await?;
            }
        }
    }
}

async fn mark_down(client: &mut Client, shared: &Shared, node: &str) -> Result<()> {
    if node == shared.me || shared.lease().is_none() {
        // Our own key: our lease is gone, and the fence deals with it.
        return Ok(());
    }
    tracing::warn!(node, "member key gone: the node is down");
    let down = LogEvent::Policy(PolicyEvent::NodeDown(node.to_string()));
    log::append(client, &shared.keys, &shared.me, &down).await?;
    Ok(())
}

/// Renew the lease; fence the node when renewals stop, and rejoin with a
/// new lease when etcd answers again.
///
/// The lease lives at least `ttl` past the moment the last answered
/// renewal was *sent*. The node fences itself `FENCE_AT` of the way there,
/// leaving the rest of the TTL for terminating what it runs.
async fn keep_lease(
    mut client: Client,
    shared: Shared,
    lease_tx: watch::Sender<Option<i64>>,
    ttl: Duration,
) {
    let every = ttl / 5;
    let fence_after = ttl * 2 / 5;
    let mut lease = shared.lease();
    let mut renewed_at = Instant::now();
    let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        if shared.tx.is_closed() {
            return;
        }
        let Some(id) = lease else {
            // Fenced: come back with a new lease once etcd answers.
            match rejoin(&mut client, &shared, ttl).await {
                Ok(id) => {
                    tracing::warn!(node = %shared.me, "rejoined the cluster with a new lease");
                    lease = Some(id);
                    renewed_at = Instant::now();
                    keeper = None;
                    let _ = lease_tx.send(Some(id));
                    // The announce goes through the log after the lease is
                    // known, so claims that follow it can use the lease.
                    if let Err(err) = announce(&mut client, &shared).await {
                        tracing::warn!("announcing the rejoin: {err:#}");
                    }
                }
                Err(err) => {
                    tracing::debug!("rejoining: {err:#}");
                    sleep(RETRY * 2).await;
                }
            }
            continue;
        };
        let sent = Instant::now();
        // A renewal may not hold the fence back: it waits at most until the
        // fence is due (else the fence came up to `every / 2` late).
        let fence_due = (renewed_at + fence_after).saturating_duration_since(sent);
        let mut answered = false;
        match timeout(
            (every / 2).min(fence_due),
            renew(&mut client, &mut keeper, id),
        )
        .await
        {
            Ok(Ok(true)) => {
                renewed_at = sent;
                answered = true;
                // Kills this node's services unless a later renewal comes:
                // a little after our own fence, well before the lease ends.
                crate::fence_guard::vouch_until((sent + fence_after + every / 2).into_std());
            }
            Ok(Ok(false)) => {
                fence(&shared, &lease_tx, "the lease expired in etcd");
                lease = None;
                continue;
            }
            Ok(Err(err)) => {
                tracing::debug!("renewing the lease: {err:#}");
                keeper = None;
            }
            Err(_) => keeper = None,
        }
        if renewed_at.elapsed() >= fence_after {
            fence(
                &shared,
                &lease_tx,
                &format!(
                    "no lease renewal answered for {:?} (TTL {ttl:?})",
                    renewed_at.elapsed()
                ),
            );
            lease = None;
            continue;
        }
        // After a failed renewal try again soon, not a whole period later:
        // an etcd member lost (its leader, say) is answered for by another
        // within an election, well inside the fence margin, and one retry
        // per period would leave a single chance before the fence.
        let next = if answered {
            sent + every
        } else {
            Instant::now() + RETRY.min(every)
        };
        let fence_at = renewed_at + fence_after;
        tokio::time::sleep_until(next.min(fence_at)).await;
    }
}

/// One renewal; `Ok(false)` if etcd says the lease is gone.
async fn renew(
    client: &mut Client,
    keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    id: i64,
) -> Result<bool> {
    if keeper.is_none() {
        *keeper = Some(client.lease_keep_alive(id).await?);
    }
    let Some((sender, answers)) = keeper.as_mut() else {
        unreachable!("set above")
    };
    sender.keep_alive().await?;
    match answers.message().await? {
        Some(answer) => Ok(answer.ttl() > 0),
        None => bail!("the keep-alive stream ended"),
    }
}

fn fence(shared: &Shared, lease_tx: &watch::Sender<Option<i64>>, reason: &str) {
    tracing::error!(node = %shared.me, "fenced: {reason}; stopping every resource");
    let _ = lease_tx.send(None);
    let _ = shared.tx.send(LinkMessage::Fenced(reason.to_string()));
}

async fn rejoin(client: &mut Client, shared: &Shared, ttl: Duration) -> Result<i64> {
    register(client, &shared.keys, &shared.me, ttl).await
}

/// Carry out the node's requests, one at a time and in order.
async fn serve(mut client: Client, shared: Shared, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Append(event) => loop {
                if shared.lease().is_none() {
                    tracing::debug!("fenced: dropped {event:?}");
                    break;
                }
                match log::append(&mut client, &shared.keys, &shared.me, &event).await {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!("appending to the log: {err:#}");
                        sleep(RETRY).await;
                    }
                }
            },
            Request::AppendTold(event, reply) => {
                let told = if shared.lease().is_none() {
                    Err("this node is fenced".to_string())
                } else {
                    log::append(&mut client, &shared.keys, &shared.me, &event)
                        .await
                        .map_err(|err| format!("{err:#}"))
                };
                let _ = reply.send(told);
            }
            Request::Claim(group) => {
                tokio::spawn(claim(client.clone(), shared.clone(), group));
            }
            Request::Release(group) => {
                if let Err(err) = release(&mut client, &shared, &group).await {
                    tracing::warn!(group, "releasing the ownership key: {err:#}");
                }
            }
            Request::Leave(reply) => {
                if let Some(id) = shared.lease() {
                    let _ = client.lease_revoke(id).await;
                }
                let _ = reply.send(());
            }
        }
    }
}

/// Take `owners/GROUP` once it is free. A key left by this node's earlier
/// incarnation (its lease not yet expired) is taken over by revoking that
/// lease: that agent is gone, and its services died with it.
async fn claim(mut client: Client, shared: Shared, group: String) {
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
        match client.txn(txn).await {
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
                        let _ = client.lease_revoke(held_by).await;
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

async fn release(client: &mut Client, shared: &Shared, group: &str) -> Result<()> {
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
    client.txn(txn).await.context("deleting the key")?;
    Ok(())
}
