//! The cluster's integration tests, one module per concern, in a binary of
//! their own: each runs a real etcd, most of them several real agents
//! against it, on loopback (`common::cluster`) or on the network lab
//! (`common::lab_cluster`). Run one concern with
//! `cargo test -p warden --test cluster netlab::`.
//!
//! One etcd with its agents at a time in this binary
//! (`common::cluster::one_at_a_time`): three members and three agents are
//! a lot for a 2-core machine, etcd's elections (500 ms) must not starve,
//! and a lease renewal starved for 2/5 of its 5 s TTL fences an agent, a
//! failover no test expects.

#[path = "../common/mod.rs"]
mod common;

mod busy_failover;
mod cluster;
mod cluster_checkpoints;
mod cluster_log;
mod cluster_log_batch;
mod console_cluster;
mod console_nodes;
mod copies_async;
mod copies_failover;
mod copies_fencing;
mod fence_cluster;
mod join_wait;
mod netlab;
mod rollout;
mod service_launch;
mod virtual_address;
mod virtual_server;
mod watchdog;
