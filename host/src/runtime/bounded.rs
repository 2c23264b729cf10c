//! The one place where a call into a plugin is bounded.
//!
//! Every call into a plugin (instantiate, open, each export, the type-level
//! describe and validate) is driven by [`bounded`], in a store made by
//! [`new_store`]. The two belong together: the store yields at every epoch
//! tick, and `bounded` uses those yields to compare with the call's deadline
//! and to drop the call once the deadline passes or the operator cancels it.
//! The epoch advances only while some call holds the runtime's ticker, so
//! `bounded` holds it for the whole call: a guest runs only inside it.
//! Keeping them alone in this file, and calling nothing in a plugin any other
//! way, is what makes invariant 1 of ARCHITECTURE.md ("every call into a
//! plugin is bounded") checkable by reading one short file.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use wasmtime::Store;

use super::call::CallError;
use super::deadline::CallDeadline;
use super::engine::Runtime;
use super::fiber_stacks::StackSlot;
use super::guest_output::GuestOutput;
use super::host_state::{HostState, ResourceContext};
use super::network::NetworkGrant;

/// A store for one instance of a plugin, with the limits every store gets
/// and the sandbox of its resource.
pub(crate) fn new_store(
    runtime: &Runtime,
    context: Arc<ResourceContext>,
    memory_limit: usize,
    network: Arc<NetworkGrant>,
) -> Result<Store<HostState>, CallError> {
    let state = HostState::new(context, memory_limit, network).map_err(|reason| {
        CallError::OpenRefused {
            property: "(data directory)".to_string(),
            reason,
        }
    })?;
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|state| &mut state.memory);
    // Yield to the scheduler at every epoch tick: a guest spinning in pure
    // wasm then comes back to `bounded`, which cuts it off at its deadline.
    epoch_deadline_from_now(&mut store);
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

/// Count the store's epoch deadline from now: when the store is made, and
/// before each call into a store that has made calls before.
///
/// The deadline is one tick past the epoch at which it was last set, and
/// a store that idled while other calls made the epoch advance would find
/// it passed at the first instruction and yield at once: a fiber switch
/// and another trip through the scheduler for nearly every check of a
/// busy node (issue #19). From now, a call yields only if a tick comes
/// while it runs.
pub(crate) fn epoch_deadline_from_now(store: &mut Store<HostState>) {
    store.set_epoch_deadline(1);
}

/// Drive `call` until it returns, its deadline passes, or it is cancelled.
///
/// This is the one place where calls into plugins are bounded. A guest in a
/// pure-wasm loop yields at every epoch tick; a guest blocked in a host call
/// (a sleep, a socket) is waiting on a future. Either way control comes back
/// here, and dropping `call` abandons the guest where it is. The caller must
/// then discard the store.
///
/// `runtime` is the one whose engine `work` runs in: its epoch ticker is
/// held (ticks every `epoch_tick`) from the first poll of `work` to the end.
/// `stack` is the slot of the store `work` calls into (its `HostState`'s):
/// busy while `work` runs; once `work` has returned its fiber has finished,
/// and the stack's pages may be given back when the store has idled long
/// enough (`fiber_stacks`); a call cut off leaves it busy, to be dropped
/// with its store.
pub(crate) async fn bounded<T>(
    runtime: &Runtime,
    call: &'static str,
    deadline: &CallDeadline,
    cancel: &mut watch::Receiver<u64>,
    stderr: &GuestOutput,
    stack: &Arc<StackSlot>,
    work: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, CallError> {
    // Before `work` is first polled: no guest code runs without ticks.
    let _ticking = runtime.ticking();
    let said_before = stderr.line_count();
    cancel.borrow_and_update();
    // Once the canceller is gone nothing can cancel any more; the call is
    // still bounded by its deadline.
    let mut cancellable = true;
    let idle_stacks = runtime.idle_stacks();
    if idle_stacks.is_some() {
        stack.begin();
    }
    let work = stack.owning(work, idle_stacks.is_some());
    tokio::pin!(work);
    loop {
        let at = deadline.at();
        let timer = async move {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            result = &mut work => {
                if let Some(idle_stacks) = idle_stacks {
                    idle_stacks.returned(stack);
                }
                return result.map_err(|err| {
                    CallError::from_wasmtime(call, &err, stderr.lines_since(said_before))
                });
            }
            changed = cancel.changed(), if cancellable => {
                if changed.is_ok() {
                    return Err(CallError::Cancelled { call, after: deadline.elapsed() });
                }
                cancellable = false;
            }
            // When busy guests keep every worker polling, tokio's timers
            // are processed late (only when a worker idles or every 61
            // polls), so also compare with the clock each time the guest
            // yields at an epoch tick.
            () = std::future::poll_fn(|_| {
                if deadline.at().is_some_and(|at| at <= Instant::now()) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            }) => {
                return Err(CallError::TimedOut { call, after: deadline.allowed() });
            }
            () = timer => {
                // Progress may have moved the deadline while we slept.
                if deadline.at().is_some_and(|at| at <= Instant::now()) {
                    return Err(CallError::TimedOut { call, after: deadline.allowed() });
                }
            }
        }
    }
}

/// What a store made for one call instantiates: a component's pre-linked
/// bindings (a resource type's, a fence type's).
pub(crate) trait Instantiate {
    /// The instance's bindings, through which the call reaches its export.
    type Bindings: Send + Sync;
    /// Instantiate into `store`.
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Self::Bindings>> + Send + 'a>>;
}

/// A call in a store of its own, dropped afterwards (a type-level
/// describe or validate, a fence call): the store made by [`new_store`],
/// the component instantiated, then `f`, each under [`bounded`] and one
/// fixed deadline of `timeout`; nothing but the deadline cancels it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_in_fresh_store<P: Instantiate, T>(
    runtime: &Runtime,
    pre: &P,
    context: Arc<ResourceContext>,
    memory_limit: usize,
    network: Arc<NetworkGrant>,
    timeout: std::time::Duration,
    call: &'static str,
    f: impl for<'a> FnOnce(
        &'a mut Store<HostState>,
        &'a P::Bindings,
    )
        -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>,
) -> Result<T, CallError> {
    let stderr = context.stderr.clone();
    let mut store = new_store(runtime, context, memory_limit, network)?;
    let deadline = Arc::new(CallDeadline::fixed(timeout));
    store.data_mut().deadline = Some(deadline.clone());
    let (_cancel_tx, mut cancel) = watch::channel(0u64);
    let stack = store.data().stack.clone();
    let bindings = bounded(
        runtime,
        "instantiate",
        &deadline,
        &mut cancel,
        &stderr,
        &stack,
        pre.instantiate(&mut store),
    )
    .await?;
    bounded(
        runtime,
        call,
        &deadline,
        &mut cancel,
        &stderr,
        &stack,
        f(&mut store, &bindings),
    )
    .await
}
