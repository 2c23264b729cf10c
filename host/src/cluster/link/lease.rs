//! Keeping the lease: renewed six times a TTL on whichever member answers,
//! this node fenced half way to its expiry when none does, and registered
//! again (a new lease, then `NodeUp`) once etcd answers.
//!
//! The keeper runs on a thread of its own (`warden-lease`), with its own
//! runtime and its own connections to etcd: a node busy starting hundreds
//! of services at a failover kept the agent's workers from the renewals
//! for over half the TTL and fenced itself, and the cluster thrashed. Its
//! renewals now go out whatever the agent's workers are doing, as long as
//! they still run at all ([`RuntimeLiveness`]: a wedged agent loses its
//! lease as a frozen one does).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::follow::fell_behind;
use super::members::announce;
use super::runtime_liveness::RuntimeLiveness;
use super::{LinkMessage, RETRY, Shared};
use crate::cluster::Keys;
use crate::cluster::compact;
use crate::cluster::etcd::{ATTEMPT, Etcd};

/// Grant a lease and put the member key on it.
pub(super) async fn register(etcd: &Etcd, keys: &Keys, me: &str, ttl: Duration) -> Result<i64> {
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
pub(super) struct LeaseTiming {
    pub(super) ttl: Duration,
    every: Duration,
    fence_after: Duration,
    /// How long one renewal may take on one member before the next member
    /// is asked.
    per_try: Duration,
}

impl LeaseTiming {
    pub(super) fn of(ttl: Duration) -> LeaseTiming {
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

/// Start keeping the lease on a thread of its own, with a runtime and
/// connections of its own (see the module's documentation).
pub(super) fn spawn_keeper(
    etcd: &Etcd,
    shared: Shared,
    lease_tx: watch::Sender<Option<i64>>,
    timing: LeaseTiming,
    up_at: u64,
) -> Result<()> {
    let agent = RuntimeLiveness::new(tokio::runtime::Handle::current());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("making the lease keeper's runtime")?;
    let fallback = etcd.clone();
    std::thread::Builder::new()
        .name("warden-lease".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let etcd = match fallback.connect_again().await {
                    Ok(own) => own,
                    Err(err) => {
                        tracing::error!(
                            "the lease keeper could not connect to etcd on its own ({err:#}); \
                             renewing over the agent's connections"
                        );
                        fallback
                    }
                };
                keep_lease(etcd, shared, lease_tx, timing, up_at, agent).await;
            });
        })
        .context("starting the lease keeper's thread")?;
    Ok(())
}

/// Renew the lease; fence the node when renewals stop, and rejoin with a
/// new lease when etcd answers again — retrying the announcement until it
/// is in the log (a node that holds a lease but never said `NodeUp` would
/// have the cluster wait on groups it never carries out).
pub(super) async fn keep_lease(
    etcd: Etcd,
    shared: Shared,
    lease_tx: watch::Sender<Option<i64>>,
    timing: LeaseTiming,
    // The entry of this node's latest `NodeUp`.
    up_at: u64,
    agent: RuntimeLiveness,
) {
    let standing = match shared.lease() {
        Some(id) => Standing::Joined(id),
        None => Standing::Fenced { stale: None },
    };
    let keepers = (0..etcd.member_count()).map(|_| None).collect();
    let mut keeping = LeaseLoop {
        etcd,
        shared,
        lease_tx,
        timing,
        up_at,
        standing,
        renewed_at: Instant::now(),
        keepers,
        agent,
        wedged: false,
    };
    while !keeping.shared.tx.is_closed() {
        if keeping.shared.behind.load(Ordering::Acquire) {
            keeping.stay_out().await;
            continue;
        }
        if let Some(id) = keeping.lease_to_renew().await {
            keeping.renew_or_fence(id).await;
        }
    }
}

/// The lease keeper's state between rounds, and its steps.
struct LeaseLoop {
    etcd: Etcd,
    shared: Shared,
    lease_tx: watch::Sender<Option<i64>>,
    timing: LeaseTiming,
    /// The entry of this node's latest `NodeUp`.
    up_at: u64,
    standing: Standing,
    /// When the last renewal etcd answered was sent.
    renewed_at: Instant,
    /// A keep-alive stream per member, opened on first use.
    keepers: Vec<Option<Keeper>>,
    /// The agent's runtime, asked at each round whether it still runs.
    agent: RuntimeLiveness,
    /// Renewals are held back because the agent's runtime stopped running
    /// (said once in the log, and again when it runs again).
    wedged: bool,
}

impl LeaseLoop {
    /// This node fell behind the log's compaction: give up the lease and
    /// never rejoin (a restarted agent joins from the snapshot).
    async fn stay_out(&mut self) {
        if let Standing::Registered(id) | Standing::Joined(id) = self.standing {
            let _ = self.lease_tx.send(None);
            let revoked = self
                .etcd
                .request(
                    "revoking the lease of a node behind the log",
                    |mut client| async move { revoke(&mut client, id).await },
                )
                .await;
            if let Err(err) = revoked {
                tracing::debug!("{err:#}");
            }
            self.standing = Standing::Fenced { stale: None };
        }
        sleep(self.timing.every).await;
    }

    /// The lease to renew in this round, after the step this node's
    /// standing calls for: a fenced node tries to register again (and has
    /// nothing to renew yet), a registered one announces itself, a joined
    /// one that the cluster marked down is fenced.
    async fn lease_to_renew(&mut self) -> Option<i64> {
        match self.standing {
            Standing::Fenced { stale } => {
                self.try_rejoin(stale).await;
                None
            }
            Standing::Registered(id) => {
                match announce(&self.etcd, &self.shared).await {
                    Ok(seq) => {
                        tracing::warn!(node = %self.shared.me, "rejoined the cluster");
                        self.standing = Standing::Joined(id);
                        self.up_at = seq;
                    }
                    Err(err) => tracing::warn!("announcing the rejoin (trying again): {err:#}"),
                }
                Some(id)
            }
            Standing::Joined(id) => {
                let down_at = self.shared.marked_down.load(Ordering::Acquire);
                if down_at <= self.up_at {
                    return Some(id);
                }
                // No agent appends that now (`append_down_while_keyless`),
                // but a node the cluster counts out must not stay stopped
                // with a live lease and its ownership keys.
                fence(
                    &self.shared,
                    &self.lease_tx,
                    &format!(
                        "the cluster marked this node down (entry {down_at}) while its lease \
                         was live; registering again"
                    ),
                );
                // The old lease is left to expire, not revoked: its
                // ownership keys pass on only a TTL after the last renewal,
                // by when the services here are long stopped.
                self.standing = Standing::Fenced { stale: None };
                None
            }
        }
    }

    /// Register again with a new lease, unless the log was compacted past
    /// what this node has read while it was fenced (frozen, cut off): it
    /// would rejoin on a state it can no longer bring up to date.
    async fn try_rejoin(&mut self, stale: Option<i64>) {
        let read = self.shared.read.load(Ordering::Relaxed);
        match compact::first_entry(&self.etcd, &self.shared.keys).await {
            Ok(Some(first)) if first > read + 1 => {
                fell_behind(&self.shared, read + 1, first);
                return;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!("rejoining: {err:#}");
                sleep(RETRY * 2).await;
                return;
            }
        }
        let asked = Instant::now();
        match rejoin(&self.etcd, &self.shared, self.timing.ttl, stale).await {
            Ok(id) => {
                tracing::warn!(node = %self.shared.me, "registered again with a new lease");
                self.standing = Standing::Registered(id);
                self.renewed_at = asked;
                // The guard lapsed with the fence: vouch for the new lease
                // now, so a service held before the first renewal is not
                // killed at once.
                vouch(self.renewed_at, self.timing);
                self.keepers.iter_mut().for_each(|k| *k = None);
                // Known before the announcement goes through the log, so
                // claims that follow it can use the lease.
                let _ = self.lease_tx.send(Some(id));
            }
            Err(err) => {
                tracing::debug!("rejoining: {err:#}");
                sleep(RETRY * 2).await;
            }
        }
    }

    /// Renew `id`; fence this node if etcd says the lease is gone or no
    /// renewal was answered for half the TTL; otherwise wait for the next
    /// round (sooner while not yet announced).
    async fn renew_or_fence(&mut self, id: i64) {
        let timing = self.timing;
        let fence_at = self.renewed_at + timing.fence_after;
        let renewal = if self.agent_runs() {
            renew_anywhere(&self.etcd, &mut self.keepers, id, timing.per_try, fence_at).await
        } else {
            Renewal::Unanswered
        };
        match renewal {
            Renewal::Answered { alive: true, sent } => {
                self.renewed_at = sent;
                vouch(self.renewed_at, timing);
            }
            Renewal::Answered { alive: false, .. } => {
                fence(&self.shared, &self.lease_tx, "the lease expired in etcd");
                self.standing = Standing::Fenced { stale: None };
                return;
            }
            Renewal::Unanswered => {}
        }
        let renewed_at = self.renewed_at;
        if renewed_at.elapsed() >= timing.fence_after {
            // This agent is alive and stops its services itself: the guard
            // need act only if it freezes now, still before the lease ends.
            crate::fence_guard::grace_until(
                (renewed_at + timing.ttl - timing.every / 2).into_std(),
            );
            fence(
                &self.shared,
                &self.lease_tx,
                &format!(
                    "no lease renewal answered for {:?} by any etcd member (TTL {:?})",
                    renewed_at.elapsed(),
                    timing.ttl
                ),
            );
            self.standing = Standing::Fenced { stale: Some(id) };
            return;
        }
        // Not yet announced: try again soon, not a renewal period later.
        let next = match self.standing {
            Standing::Joined(_) if renewed_at.elapsed() < timing.every => renewed_at + timing.every,
            _ => Instant::now() + RETRY.min(timing.every),
        };
        tokio::time::sleep_until(next.min(renewed_at + timing.fence_after)).await;
    }
}

impl LeaseLoop {
    /// Whether the agent's runtime ran what it was last asked within a
    /// lease TTL; asks it again. A runtime silent for longer is wedged, not
    /// busy: this node then stops renewing, so it is fenced as a frozen
    /// one would be (its fence guard kills its services), and resumes if
    /// the runtime comes back before the fence.
    fn agent_runs(&mut self) -> bool {
        let silent = self.agent.silent_for();
        self.agent.ask();
        let runs = silent < self.timing.ttl;
        if runs == self.wedged {
            self.wedged = !runs;
            if runs {
                tracing::warn!(node = %self.shared.me, "the agent's runtime runs again; renewing the lease");
            } else {
                tracing::error!(
                    node = %self.shared.me,
                    "the agent's runtime has run nothing for {silent:?} (lease TTL {:?}): \
                     no longer renewing the lease",
                    self.timing.ttl
                );
            }
        }
        runs
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
/// `per_try`, on the next one as well, round after round, never past
/// `fence_at`. Attempts are *hedged*: one that has not answered stays in
/// flight while the next member is asked, and the first answer wins. A
/// follower forwards a renewal to the leader it knows; with that leader
/// frozen (SIGSTOP: connections accepted, nothing answered) the follower
/// answers only once a new leader is elected, which can take longer than
/// one attempt — cutting it off there fenced an agent at a 5 s TTL. And
/// an attempt forwarded to a leader that has just been cut off may never
/// answer, even once the others have elected a new one: so when every
/// member has been asked, they are asked again (a new keep-alive stream
/// where the last one is still waiting), each round `per_try` after the
/// last attempt.
async fn renew_anywhere(
    etcd: &Etcd,
    keepers: &mut [Option<Keeper>],
    id: i64,
    per_try: Duration,
    fence_at: Instant,
) -> Renewal {
    let first = etcd.preferred().0;
    let count = etcd.member_count().max(1);
    let mut order = (0..).map(|k: usize| (first + k) % count);
    let mut asked = 0usize;
    let mut attempts = tokio::task::JoinSet::new();
    let mut next_at = Instant::now();
    loop {
        let more = next_at < fence_at;
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
                        // Ask the next member now, not a try later; once
                        // every member has been asked, the next round
                        // waits its turn (a member that refuses at once
                        // must not be asked in a loop).
                        if !asked.is_multiple_of(count) {
                            next_at = Instant::now();
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(next_at), if more => {
                if let Some(member) = order.next() {
                    asked += 1;
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
pub(in crate::cluster) async fn revoke(
    client: &mut Client,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    match client.lease_revoke(lease).await {
        Ok(_) => Ok(()),
        // gRPC NOT_FOUND (5): "requested lease not found".
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() as i32 == 5 => Ok(()),
        Err(err) => Err(err),
    }
}
