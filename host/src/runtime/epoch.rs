//! The epoch ticker, which runs only while a call into a plugin outlasts a
//! tick.
//!
//! Epoch interruption is how a guest spinning in pure wasm is made to yield
//! (see `bounded.rs`): the store yields whenever the engine's epoch passes
//! its deadline, so the epoch must advance every tick while any guest may
//! run. Nothing else needs it, and nearly every call (a check, a few
//! microseconds to a few hundred) is over long before its first tick.
//!
//! So the ticks come from a kernel timer (`timerfd`), set when the first
//! call starts and cleared when the last one ends, and the ticker thread
//! blocks reading it. A lone call shorter than a tick costs two
//! `timerfd_settime` calls and wakes no thread; the thread wakes only when
//! the timer fires, that is once a call has run for a whole tick, and then
//! every tick until no call is left. Calls clear the timer at most once a
//! tick: when thousands of short calls a second come and go, it stays set
//! and the thread clears it at a tick that finds none in flight, instead of
//! every call paying two system calls. (Before, the first call unparked the thread and the
//! thread slept a tick before it looked again: two thread wake-ups for
//! every lone check, about a tenth of its CPU; docs/benchmarks.md, "A lone
//! check wakes no ticker, a check yields only when it must".)
//!
//! No call is ever left without ticks. Whether the timer is set is decided
//! only under [`Shared::timer`]'s lock, always after the count of calls in
//! flight has been changed: a call counted in (0 → 1) sets the timer unless
//! it is set; the last call out (1 → 0) clears it if it has not fired yet,
//! no call has cleared it within the last tick and the lock is free (else
//! calls are outlasting ticks or coming and going under load: it stays set,
//! and the thread clears it at its next tick if no call is left then,
//! rather than every call paying two system calls); the thread, woken,
//! reads the
//! count under the lock and clears the timer only when it is zero. A call
//! counted in while the thread holds the lock sets the timer again once the
//! thread has let go.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use wasmtime::Engine;

/// The thread that advances an engine's epoch every tick while at least one
/// call holds it ([`EpochTicker::hold`]) and the timer has fired. Stops
/// when dropped.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
}

/// What the ticker thread and the calls share.
struct Shared {
    /// Calls into plugins now in flight.
    in_flight: AtomicUsize,
    /// Set when the [`EpochTicker`] is dropped: the thread then exits.
    stopped: AtomicBool,
    /// The kernel timer the thread reads (without the lock).
    fd: TimerFd,
    /// Whether it is set, decided under this lock (see the module's doc).
    timer: Mutex<Timer>,
    /// The tick: the timer's first expiry and its interval.
    tick: Duration,
    /// How many times the thread has woken to tick or look, and how many
    /// ticks it gave (for the tests: an idle runtime must not keep waking,
    /// and the engine does not tell its epoch).
    wakes: AtomicUsize,
    ticks: AtomicUsize,
}

/// What is known of the timer (kept under one lock: see the module's doc).
struct Timer {
    /// The timer is set (it fires every tick).
    set: bool,
    /// It has fired since it was set: calls are outlasting ticks or keep
    /// coming, so the last call out leaves it to the thread to clear.
    fired: bool,
    /// When a call last cleared it: calls clear it at most once a tick.
    cleared_by_call: Option<Instant>,
}

/// One call in flight: the epoch advances every tick while any exists.
pub(crate) struct Ticking<'a> {
    shared: &'a Shared,
}

impl Shared {
    fn timer(&self) -> MutexGuard<'_, Timer> {
        // A panic while holding the lock leaves nothing half done (two
        // booleans and a system call): carry on with the state as it is.
        self.timer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Set the timer unless it is: a call has just been counted in.
    fn start_ticking(&self) {
        let mut timer = self.timer();
        if timer.set {
            return;
        }
        let tick = TimeSpec::from_duration(self.tick);
        match self.fd.set(
            Expiration::IntervalDelayed(tick, tick),
            TimerSetTimeFlags::empty(),
        ) {
            Ok(()) => {
                timer.set = true;
                timer.fired = false;
            }
            // Setting a valid interval on a timer of our own has no failure
            // that a retry would mend; the call is still bounded by its
            // deadline whenever it yields on its own (any host call).
            Err(err) => tracing::error!(
                "could not set the epoch timer: {err}; a guest spinning in pure wasm \
                 will not be interrupted until it makes a host call"
            ),
        }
    }

    /// Clear the timer (`timer` is its lock, held): no call is left.
    fn clear(&self, timer: &mut Timer) {
        if let Err(err) = self.fd.unset() {
            // Left set, it only ticks for nothing until the thread's next
            // look clears it.
            tracing::warn!("could not clear the epoch timer: {err}");
            return;
        }
        timer.set = false;
    }

    /// The last call out clears the timer if no call came in meanwhile, it
    /// has not fired yet and no call has cleared it within a tick (else the
    /// thread clears it at a tick that finds no call).
    fn clear_after_last_call(&self, timer: &mut Timer) {
        if !timer.set || timer.fired || self.in_flight.load(Ordering::SeqCst) != 0 {
            return;
        }
        let now = Instant::now();
        if timer
            .cleared_by_call
            .is_some_and(|at| now.duration_since(at) < self.tick)
        {
            return;
        }
        timer.cleared_by_call = Some(now);
        self.clear(timer);
    }
}

impl EpochTicker {
    /// Start the thread for `engine`, ticking every `tick` while held.
    ///
    /// A plain thread rather than a tokio task: ticks must keep coming when
    /// every runtime worker is busy, since they are what makes busy guests
    /// yield.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            fd,
            timer: Mutex::new(Timer {
                set: false,
                fired: false,
                cleared_by_call: None,
            }),
            tick,
            wakes: AtomicUsize::new(0),
            ticks: AtomicUsize::new(0),
        });
        let weak = engine.weak();
        let state = shared.clone();
        thread::Builder::new()
            .name("warden-epoch".to_string())
            .spawn(move || {
                loop {
                    // Blocks until the timer fires; forever while it is
                    // clear. (The lock is not held here: calls set and
                    // clear the timer meanwhile.)
                    if let Err(err) = state.fd.wait() {
                        tracing::error!("the epoch ticker cannot read its timer: {err}");
                        return;
                    }
                    if state.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    state.wakes.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut timer = state.timer();
                        if state.in_flight.load(Ordering::SeqCst) == 0 {
                            if timer.set {
                                state.clear(&mut timer);
                            }
                            continue;
                        }
                        timer.fired = true;
                    }
                    // The engine outlives the ticker in a `Runtime`; if it
                    // is gone anyway, there is nothing left to interrupt.
                    let Some(engine) = weak.upgrade() else {
                        return;
                    };
                    engine.increment_epoch();
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(EpochTicker { shared })
    }

    /// Count a call in for as long as the returned guard lives: the epoch
    /// advances every tick until the last guard is dropped.
    pub(crate) fn hold(&self) -> Ticking<'_> {
        // Counted in before the timer is looked at (see the module's doc).
        if self.shared.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.shared.start_ticking();
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
        if self.shared.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Clearing is optional here (the thread clears a timer that
            // finds no call), so a call never waits for the lock to do it:
            // a worker must not block behind the thread or another worker.
            let mut timer = match self.shared.timer.try_lock() {
                Ok(timer) => timer,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            self.shared.clear_after_last_call(&mut timer);
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the thread at once so that it sees `stopped` and exits (a
        // call setting the timer meanwhile only makes that a tick later).
        let now = TimeSpec::from_duration(Duration::from_nanos(1));
        if let Err(err) = self
            .shared
            .fd
            .set(Expiration::OneShot(now), TimerSetTimeFlags::empty())
        {
            tracing::warn!("could not wake the epoch ticker to stop it: {err}");
        }
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
        // Let a tick in progress finish, then the timer must be clear: the
        // epoch stays where it is and the thread sleeps.
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
    fn calls_shorter_than_a_tick_wake_no_thread() {
        let engine = engine();
        // Long enough that no call below is preempted for a whole tick,
        // even on a loaded machine.
        let tick = Duration::from_millis(100);
        let ticker = EpochTicker::start(&engine, tick).expect("ticker");
        // Lone calls, a tick and more apart, each far shorter than a tick.
        for _ in 0..10 {
            drop(ticker.hold());
            thread::sleep(tick + Duration::from_millis(5));
        }
        // Two calls overlapping, the first ending before the second.
        let first = ticker.hold();
        let second = ticker.hold();
        drop(first);
        drop(second);
        thread::sleep(tick * 3);
        assert_eq!(
            ticker.wakes(),
            0,
            "the ticker thread woke for calls shorter than a tick"
        );
        assert_eq!(ticker.ticks(), 0);
        // A burst of short calls: the timer stays set through it and the
        // thread clears it at the first tick that finds no call, giving
        // the epoch nothing.
        for _ in 0..1_000 {
            drop(ticker.hold());
        }
        thread::sleep(tick * 5);
        assert!(
            ticker.wakes() <= 2,
            "{} wake-ups after a burst",
            ticker.wakes()
        );
        assert_eq!(ticker.ticks(), 0);
        // A call that outlasts ticks gets them, and once it has ended the
        // thread clears the timer at its next tick.
        let held = ticker.hold();
        eventually("a long call gets ticks", || ticker.ticks() >= 2);
        drop(held);
        thread::sleep(tick * 3);
        let (wakes, ticks) = (ticker.wakes(), ticker.ticks());
        thread::sleep(tick * 5);
        assert_eq!(
            (ticker.wakes(), ticker.ticks()),
            (wakes, ticks),
            "still ticking"
        );
    }

    #[test]
    fn a_call_that_starts_as_the_timer_is_cleared_gets_ticks() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine, Duration::from_micros(50)).expect("ticker");
        // Calls that start and end in quick succession, on several threads,
        // keep the timer being set and cleared by the calls and by the
        // ticker thread; every call that then waits must see the epoch move.
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for n in 0..1_000 {
                        let held = ticker.hold();
                        if n % 2 == 0 {
                            let start = ticker.ticks();
                            eventually("a tick for a call just started", || ticker.ticks() > start);
                        }
                        drop(held);
                    }
                });
            }
        });
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
