//! Whether the agent's own runtime still runs tasks, as the lease keeper
//! on its own thread sees it.
//!
//! The lease is kept on a thread of its own so that a node busy starting
//! hundreds of services is not fenced for being busy (`lease`). But a
//! renewal says more than "this process can reach etcd": it says the node
//! carries out what it owns. An agent whose runtime is wedged (a deadlock,
//! a worker stuck in a call that never returns) must lose its lease as a
//! frozen agent does, so the keeper asks the runtime at each round and
//! stops renewing when it has not answered for a whole lease TTL — far
//! longer than any busy spell (a mass failover on a small machine kept the
//! workers from the lease for about 5 s at most), short enough that the
//! cluster moves the node's groups.
//!
//! Asking costs one task on the agent's runtime per renewal round (six a
//! TTL), nothing between rounds: no ticker wakes an idle agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

/// The agent's runtime, and when it last ran a task the keeper sent it.
#[derive(Clone)]
pub(super) struct RuntimeLiveness {
    agent: Handle,
    /// Milliseconds from `origin` when the last question was answered.
    answered_at_ms: Arc<AtomicU64>,
    origin: Instant,
}

impl RuntimeLiveness {
    /// Watches `agent`; counts it as having answered now.
    pub(super) fn new(agent: Handle) -> RuntimeLiveness {
        RuntimeLiveness {
            agent,
            answered_at_ms: Arc::new(AtomicU64::new(0)),
            origin: Instant::now(),
        }
    }

    /// Send the runtime a task that notes when it ran. Never waits.
    pub(super) fn ask(&self) {
        let answered_at_ms = self.answered_at_ms.clone();
        let origin = self.origin;
        drop(self.agent.spawn(async move {
            answered_at_ms.fetch_max(millis(origin.elapsed()), Ordering::Relaxed);
        }));
    }

    /// How long the runtime has not run what it was sent: from its last
    /// answer (or from `new`) until now.
    pub(super) fn silent_for(&self) -> Duration {
        let answered = Duration::from_millis(self.answered_at_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(answered)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose only worker is held answers nothing; once the
    /// worker is free it answers the questions it was sent.
    #[test]
    fn a_held_runtime_is_silent_and_answers_when_free() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let liveness = RuntimeLiveness::new(runtime.handle().clone());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, ready) = std::sync::mpsc::channel::<()>();
        runtime.spawn(async move {
            let _ = started.send(());
            // Holds the runtime's only worker, as a wedged call would.
            let _ = held.recv();
        });
        ready.recv().expect("the holding task started");
        std::thread::sleep(Duration::from_millis(300));
        liveness.ask();
        std::thread::sleep(Duration::from_millis(100));
        let silent = liveness.silent_for();
        assert!(
            silent >= Duration::from_millis(400),
            "silent for only {silent:?} while its worker was held"
        );
        release.send(()).expect("release the worker");
        let deadline = Instant::now() + Duration::from_secs(5);
        while liveness.silent_for() >= Duration::from_millis(300) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let silent = liveness.silent_for();
        assert!(
            silent < Duration::from_millis(300),
            "still silent for {silent:?} after its worker was freed"
        );
    }
}
