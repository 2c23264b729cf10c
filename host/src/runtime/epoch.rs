//! The epoch ticker, which runs only while a call into a plugin is in flight.
//!
//! Epoch interruption is how a guest spinning in pure wasm is made to yield
//! (see `bounded.rs`): the store yields whenever the engine's epoch passes
//! its deadline, so the epoch must advance every tick while any guest may
//! run. Nothing else needs it. An agent with no call in flight (nearly all
//! the time: checks are seconds apart and take microseconds) would pay a
//! thousand thread wake-ups a second for nothing, most of its idle CPU, so
//! the ticker thread parks when no call is in flight and the first call to
//! start unparks it.
//!
//! No call is ever left without ticks: [`EpochTicker::hold`] counts the call
//! in before it unparks the thread, and the thread checks the count before
//! it parks. `Thread::unpark` leaves a token that the next `park` consumes,
//! so an unpark that lands between the check and the park makes the park
//! return at once; the thread then sees the count and ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// The thread that advances an engine's epoch every tick while at least one
/// call holds it ([`EpochTicker::hold`]). Stops when dropped.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

/// What the ticker thread and the calls share.
#[derive(Default)]
struct Shared {
    /// Calls into plugins now in flight.
    in_flight: AtomicUsize,
    /// Set when the [`EpochTicker`] is dropped: the thread then exits.
    stopped: AtomicBool,
    /// How many times the thread has woken to tick or look, and how many
    /// ticks it gave (for the tests: an idle runtime must not keep waking,
    /// and the engine does not tell its epoch).
    wakes: AtomicUsize,
    ticks: AtomicUsize,
}

/// One call in flight: the epoch advances every tick while any exists.
pub(crate) struct Ticking<'a> {
    shared: &'a Shared,
}

impl EpochTicker {
    /// Start the thread for `engine`, ticking every `tick` while held.
    ///
    /// A plain thread rather than a tokio task: ticks must keep coming when
    /// every runtime worker is busy, since they are what makes busy guests
    /// yield.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let shared = Arc::new(Shared::default());
        let weak = engine.weak();
        let state = shared.clone();
        let handle = thread::Builder::new()
            .name("warden-epoch".to_string())
            .spawn(move || {
                loop {
                    if state.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    if state.in_flight.load(Ordering::SeqCst) == 0 {
                        thread::park();
                        state.wakes.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    thread::sleep(tick);
                    state.wakes.fetch_add(1, Ordering::Relaxed);
                    // The engine outlives the ticker in a `Runtime`; if it
                    // is gone anyway, there is nothing left to interrupt.
                    let Some(engine) = weak.upgrade() else {
                        return;
                    };
                    engine.increment_epoch();
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(EpochTicker {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// Count a call in for as long as the returned guard lives: the epoch
    /// advances every tick until the last guard is dropped.
    pub(crate) fn hold(&self) -> Ticking<'_> {
        // Counted in before the unpark, so that the thread, whichever side
        // of its check it is on, sees the call (see the module's doc).
        if self.shared.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.thread.unpark();
        }
        Ticking {
            shared: &self.shared,
        }
    }

    /// How many times the thread has woken since it started.
    #[cfg(test)]
    fn wakes(&self) -> usize {
        self.shared.wakes.load(Ordering::Relaxed)
    }

    /// How many ticks the thread has given since it started.
    #[cfg(test)]
    fn ticks(&self) -> usize {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).expect("engine")
    }

    /// Wait (5 s at most) until `probe` holds.
    fn eventually(what: &str, probe: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !probe() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ticks_only_while_held() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine, Duration::from_millis(1)).expect("ticker");
        let epoch = || ticker.ticks();
        let held = ticker.hold();
        let start = epoch();
        eventually("the epoch advances while held", || epoch() >= start + 3);
        drop(held);
        // Let a tick in progress finish, then the thread must be parked: the
        // epoch stays where it is.
        thread::sleep(Duration::from_millis(20));
        let parked_at = epoch();
        let wakes = ticker.wakes();
        thread::sleep(Duration::from_millis(100));
        assert_eq!(epoch(), parked_at, "the epoch advanced with nothing held");
        assert_eq!(ticker.wakes(), wakes, "the thread woke with nothing held");
        // And it starts again for the next call.
        let _held = ticker.hold();
        eventually("the epoch advances again", || epoch() >= parked_at + 3);
    }

    #[test]
    fn a_call_that_starts_as_the_thread_parks_gets_ticks() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine, Duration::from_micros(50)).expect("ticker");
        // Calls that start and end in quick succession keep the thread
        // going to sleep and waking; every one that then waits must see the
        // epoch move.
        for _ in 0..2_000 {
            let held = ticker.hold();
            let start = ticker.ticks();
            eventually("a tick for a call just started", || ticker.ticks() > start);
            drop(held);
        }
    }

    #[test]
    fn the_thread_ends_with_the_ticker() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine, Duration::from_millis(1)).expect("ticker");
        let shared = Arc::downgrade(&ticker.shared);
        drop(ticker);
        eventually("the thread drops its share", || shared.upgrade().is_none());
    }
}
