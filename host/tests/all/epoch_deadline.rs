//! A call into a store that idled while the engine's epoch moved on must
//! not yield at its first instruction for ticks it was not running in
//! (issue #19: on a busy node nearly every check did, a fiber switch and a
//! trip through the scheduler each).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;
use warden::runtime::{Plugin, Runtime, RuntimeConfig};

use crate::common::{CHAOS, instance_of};

#[tokio::test(flavor = "current_thread")]
async fn a_call_into_an_idle_store_does_not_yield_for_ticks_it_missed() {
    // A runtime of its own whose ticker never ticks during the test: the
    // epoch moves only when the test moves it.
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        epoch_tick: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let bytes = std::fs::read(CHAOS).expect("chaos plugin");
    let plugin = Arc::new(Plugin::load(&runtime, &bytes).await.expect("chaos loads"));
    let dir = tempfile::tempdir().expect("temp dir");
    // The canceller lives, as the monitor's actor holds it: with it gone,
    // `bounded` would go round its loop once more within the same poll and
    // hide the yield this test looks for.
    let (_cancel, cancel) = watch::channel(0);
    let mut instance = instance_of(plugin, "idle", dir.path(), &[], true, cancel);
    instance
        .is_alive(Duration::from_secs(10))
        .await
        .expect("first is-alive");

    // Other resources' calls move the epoch on while this store idles.
    for _ in 0..5 {
        runtime.engine().increment_epoch();
    }

    let mut call = std::pin::pin!(instance.is_alive(Duration::from_secs(10)));
    let mut cx = Context::from_waker(Waker::noop());
    match call.as_mut().poll(&mut cx) {
        Poll::Ready(health) => {
            health.expect("second is-alive");
        }
        Poll::Pending => panic!(
            "the call yielded before it had run for a tick: the store's epoch deadline was \
             left where its last call set it"
        ),
    }
}
