//! A service started in cluster mode dies with its agent: the launcher
//! (`runtime/launch.rs`) sets `PR_SET_PDEATHSIG` in the child after its
//! credentials (a change of credentials clears it) and checks its parent
//! is still the agent. Run without fence guards, which would kill the
//! service a little later anyway: the death signal alone must do it. The
//! service, started by an agent that holds etcd connections, holds none
//! of the agent's sockets or pipes.

use std::time::Duration;

use crate::common::cluster::{Cluster, Setup, alive};
use crate::common::wait_until;

#[test]
fn a_service_dies_with_its_agent_killed_9_without_a_fence_guard() {
    let mut cluster = Cluster::with(Setup {
        fence_guard: false,
        ..Setup::default()
    });
    cluster.start_joined(0);
    let pid = cluster.wait_served_by("n1", Duration::from_secs(60));
    // The service (`warden demo-service`, a tokio program) opens sockets
    // of its own; none may be one of the agent's (its etcd connections,
    // its API, the pipes of its runtime), each named by its inode.
    let agent = cluster.agents[0].as_ref().expect("n1 runs").0.id();
    let shared: Vec<String> = endpoints(agent as i32)
        .intersection(&endpoints(pid))
        .cloned()
        .collect();
    assert!(
        !endpoints(agent as i32).is_empty(),
        "the agent holds sockets"
    );
    assert_eq!(
        shared,
        Vec::<String>::new(),
        "the agent's sockets or pipes in its service"
    );

    cluster.kill_agent(0);
    // No other agent runs and no guard: nothing else would stop it.
    wait_until(
        "the service to die with its agent",
        Duration::from_secs(10),
        || (!alive(pid)).then_some(()),
    );
}

/// The sockets and pipes `pid` holds, by inode (`socket:[N]`, `pipe:[N]`).
fn endpoints(pid: i32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("socket:") || target.starts_with("pipe:"))
        .collect()
}
