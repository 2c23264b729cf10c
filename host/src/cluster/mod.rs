//! Several nodes, one cluster, on etcd.
//!
//! # The design in one paragraph
//!
//! Every agent runs the same deterministic policy engine
//! (`warden_policy::Engine`) over the same totally ordered **event log**
//! kept in etcd. Whatever happens — a node joins or its lease expires, a
//! resource reports Online or Failed, an operator asks for a move, time
//! passes a deadline — is *appended* to the log by whoever saw it, with a
//! compare-and-swap on the log's head, so etcd orders every event once for
//! the whole cluster. Each agent applies the entries in order, so every
//! engine replica reaches the same decisions, and each agent carries out
//! the actions that name it. There is no elected decider and so no two
//! deciders that could disagree: the log's order *is* the decision order.
//!
//! # What keeps a group on one node
//!
//! - **Membership** — each agent holds an etcd lease (TTL `lease_ttl_ms`)
//!   and the key `members/NODE` attached to it. When a lease expires etcd
//!   deletes the key, and every agent that sees the deletion appends
//!   `NodeDown` (duplicates are harmless: the engine ignores them).
//! - **Ownership** — before it brings any resource of a group online, the
//!   node the engine placed the group on must hold `owners/GROUP`, created
//!   only if absent and attached to its own lease. A node gives the key up
//!   when the group is placed elsewhere (after its resources went offline
//!   there), and loses it with its lease.
//! - **Fencing by time** — an agent that cannot renew its lease for half
//!   the TTL (measured from when it *sent* the last renewal etcd answered)
//!   terminates every resource it runs and stops carrying out decisions.
//!   etcd expires the lease no earlier than a full TTL after that send, so
//!   the group is down here before anyone else can take its ownership key.
//! - **Every member** — the agent has a client for each etcd endpoint and
//!   asks another member as soon as one fails ([`etcd`]): one member lost,
//!   the leader included, costs an attempt and an election, not a fence.
//!   Appends are exactly once even when an answer is lost ([`log::append`]),
//!   and an operator's request is answered only once it is in the log.
//! - **Rejoining** — a fenced agent registers a new lease and retries its
//!   `NodeUp` until it is in the log; until then it carries nothing out.
//!   A `NodeDown` seen from outside is appended only while the node's
//!   member key is absent, so it cannot land behind the node's `NodeUp`;
//!   and a node marked down after its `NodeUp` anyway registers again
//!   rather than stay stopped on a live lease holding its ownership keys.
//! - **A fence guard** (`crate::fence_guard`) — a process beside the agent
//!   that kills the node's services at half the TTL unless the agent, after
//!   each answered renewal, vouches for its lease again: a frozen agent,
//!   which cannot fence itself, is fenced all the same.
//! - **Services die with their agent** — in cluster mode a managed process
//!   gets `PR_SET_PDEATHSIG`: a `kill -9` of the agent takes its services
//!   down, so the node that takes the group over never serves beside them.
//!
//! With the majority of etcd lost, nothing can be appended and no lease can
//! be renewed: no new decision is taken anywhere, and every agent fences
//! itself (its groups stop) until quorum returns, when each rejoins.
//!
//! The first agent to find the log empty writes the cluster's
//! configuration into it (`Configure`); every agent builds its resources
//! from that entry, not from its own file, so all engines agree.
//!
//! Checkpoints live in etcd too ([`checkpoints`]), each write fenced by
//! the group's ownership key, so they follow a group to its new node.
//!
//! The log does not grow without end: every [`snapshot::SNAPSHOT_EVERY`]
//! entries a node writes the engine's state to one key ([`snapshot`]) and
//! deletes the entries before it, and etcd's history ([`compact`]); a
//! joining node reads the snapshot and the entries after it
//! ([`start::read_start`]). Compaction never takes an entry a live agent
//! has yet to read (each reports its progress on its lease); one that lost
//! its lease and fell behind it stays out until restarted.
//!
//! Which plugin builds each node runs, and the builds rolled out to every
//! node, are etcd keys too ([`plugins`]; `crate::rollout` is the agent's
//! side).
//!
//! Read [`log`] (the entries and the compare-and-swap append), then
//! [`link`] (the tasks that keep the lease, follow the log and hold
//! ownership keys, and what they tell the node's loop).

pub mod checkpoints;
pub mod compact;
pub mod etcd;
mod fence;
pub mod keys;
pub mod link;
pub mod log;
pub mod plugins;
pub mod snapshot;
pub mod start;

pub use keys::Keys;
pub use link::{ClusterLink, Joined, LinkMessage};
pub use log::{LogEntry, LogEvent};
