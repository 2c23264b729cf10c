//! Fiber stacks that give their pages back once their store idles.
//!
//! Every call into a plugin runs on a fiber with a stack of its own
//! (wasmtime's `async_stack_size`, 2 MiB), and a store keeps the stack of
//! its last call for the next one. The pages a call touched stay resident
//! while the resource idles between checks: a few KiB to tens of KiB per
//! resource, which at tens of thousands of resources is a large share of
//! the agent's memory (docs/benchmarks.md, "Memory per resource").
//! wasmtime offers no call to hand a store's cached stack back, so the
//! on-demand allocator's stacks are made here ([`ReleasingStacks`], given
//! to `Config::with_host_stack`), each remembered by the store whose call
//! made it ([`StackSlot`]), and [`IdleStacks`] returns the pages of the
//! stacks whose store has made no call for [`IDLE_SWEEPS`] sweeps (2 to
//! 3 s) to the kernel (`madvise(MADV_DONTNEED)`; the mapping stays, the
//! next call faults in zeroed pages).
//!
//! Released after every call, the stacks cost about 5 µs a check at
//! 10 000 resources checked every second (the `madvise`, with its TLB
//! shootdown, and the next call's page fault): a quarter of the agent's
//! CPU, to save pages that the next check a second later faulted back in
//! (docs/benchmarks.md, "CPU per check"). A resource checked every second
//! now keeps its stack; one checked every 10 s (the default) gives it back
//! two to three seconds after each check, one idle for minutes holds none.
//!
//! Invariant: a stack is released only when no fiber runs or is suspended
//! on it. With the engine's concurrency support off (`engine.rs`), a store
//! runs one call at a time on one fiber, which has finished once the
//! call's future has returned. `bounded` marks the store's slot busy
//! before it first polls a call ([`StackSlot::begin`]) and idle once the
//! call has returned ([`IdleStacks::returned`]); the sweep releases only an
//! idle slot's stack, under the slot's lock, so a call cannot begin
//! meanwhile. A call that is cut off leaves its slot busy for good: it is
//! dropped with its store, never released. (With concurrency support on,
//! wasmtime keeps a guest task's worker fiber suspended on its stack after
//! the call returns: releasing that stack crashed the agent at the next
//! call, which is why the two go together.) Which store a new stack
//! belongs to is known because wasmtime makes it synchronously inside the
//! poll of that store's call, which `bounded` polls under
//! [`StackSlot::owning`] (a thread-local, set only for the length of one
//! poll, and only until the store has its stack: a store keeps the one it
//! has for every later call).

use std::cell::RefCell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use wasmtime::{StackCreator, StackMemory};

thread_local! {
    /// The slot of the store whose call this thread is polling, if any.
    static POLLING: RefCell<Option<Arc<StackSlot>>> = const { RefCell::new(None) };
}

/// One stack's mapping: a guard page at the bottom, then the stack.
#[derive(Debug)]
struct Region {
    /// The start of the mapping (the guard page).
    base: usize,
    /// The whole mapping's length, guard included.
    len: usize,
    /// The guard's length (one page).
    guard: usize,
}

impl Region {
    /// Map `size` bytes (rounded up to pages) of stack below a guard page.
    fn map(size: usize) -> std::io::Result<Region> {
        let page = page_size();
        let size = size.div_ceil(page).max(1) * page;
        let len = size + page;
        // SAFETY: a fresh anonymous mapping at an address the kernel
        // chooses; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let region = Region {
            base: base as usize,
            len,
            guard: page,
        };
        // SAFETY: the stack part of the mapping made above.
        let made_writable = unsafe {
            libc::mprotect(
                (region.base + page) as *mut libc::c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if made_writable != 0 {
            // `region` unmaps on drop.
            return Err(std::io::Error::last_os_error());
        }
        Ok(region)
    }

    fn stack(&self) -> Range<usize> {
        self.base + self.guard..self.base + self.len
    }

    /// Return the stack's pages to the kernel. The caller guarantees no
    /// fiber runs or is suspended on it (see the module's invariant).
    fn release(&self) {
        let stack = self.stack();
        // SAFETY: the stack part of a live mapping (the caller holds the
        // region); its contents are dead (no fiber on it), and a private
        // anonymous page read after MADV_DONTNEED is a zeroed one, which is
        // what a fresh stack is.
        let _ = unsafe {
            libc::madvise(
                stack.start as *mut libc::c_void,
                stack.len(),
                libc::MADV_DONTNEED,
            )
        };
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Region::map`, unmapped once.
        let _ = unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// A stack as wasmtime holds it.
struct Stack(Arc<Region>);

// SAFETY: `top`, `range` and `guard_range` describe one mapping that lives
// as long as this value, page aligned, with a PROT_NONE guard page below
// the stack; the stack is zero-filled when made (anonymous memory).
unsafe impl StackMemory for Stack {
    fn top(&self) -> *mut u8 {
        self.0.stack().end as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.0.stack()
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.0.base as *mut u8..(self.0.base + self.0.guard) as *mut u8
    }
}

/// The engine's stack creator (on-demand allocator): stacks as wasmtime
/// makes them itself (an anonymous mapping, a guard page below), each
/// remembered by the slot of the store whose call was being polled.
#[derive(Debug, Default)]
pub(crate) struct ReleasingStacks;

// SAFETY: every stack is a fresh mapping owned by the returned value (see
// `Stack`); wasmtime alone runs code on it, and `StackSlot::release` only
// drops pages of a stack no fiber is on.
unsafe impl StackCreator for ReleasingStacks {
    fn new_stack(&self, size: usize, _zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        // Anonymous pages are zeroed whether or not `_zeroed` asks.
        let region = Arc::new(Region::map(size).map_err(|e| {
            wasmtime::Error::msg(format!("mapping a fiber stack of {size} bytes: {e}"))
        })?);
        POLLING.with(|polling| {
            if let Some(slot) = polling.borrow().as_ref() {
                slot.remember(&region);
            }
        });
        Ok(Box::new(Stack(region)))
    }
}

/// The stack of one store's calls, once one was made: what the sweep
/// gives back. Held by the store's data; it keeps no stack alive (a store
/// dropped drops its stacks).
#[derive(Debug, Default)]
pub(crate) struct StackSlot {
    state: Mutex<SlotState>,
    /// Whether a stack was made for this store (set once: a store keeps
    /// its stack for every later call), so that a call no longer needs the
    /// thread-local that tells [`ReleasingStacks`] whose stack it makes.
    has_stack: AtomicBool,
}

/// A slot's stack and where its calls are, under the slot's lock.
#[derive(Debug, Default)]
struct SlotState {
    stack: Weak<Region>,
    /// A call may be on the stack: from just before its first poll until it
    /// returned, and for good if it was dropped unfinished (its store is
    /// then discarded).
    busy: bool,
    /// The sweep count when the last call returned.
    idle_since: u64,
    /// In the sweep's list: a call ran since the stack was last released.
    listed: bool,
}

impl StackSlot {
    fn remember(&self, region: &Arc<Region>) {
        self.lock().stack = Arc::downgrade(region);
        self.has_stack.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call into this slot's store is about to be polled: its stack may
    /// not be released until [`IdleStacks::returned`] says it has returned.
    pub(crate) fn begin(&self) {
        self.lock().busy = true;
    }

    /// `work` (a call into this slot's store), polled so that a stack
    /// wasmtime makes for it is remembered here when `remember` (the
    /// runtime releases idle stacks: otherwise no stack is ever
    /// [`ReleasingStacks`]' and there is nothing to remember).
    pub(crate) fn owning<F: Future>(self: &Arc<Self>, work: F, remember: bool) -> Owning<F> {
        Owning {
            slot: self.clone(),
            remember,
            work,
        }
    }

    /// The sweep number `sweep` looks at this slot: whether it stays in the
    /// list (busy, or not idle long enough yet). An idle slot's stack is
    /// released under its lock, so no call begins meanwhile.
    fn sweep(&self, sweep: u64) -> bool {
        let mut state = self.lock();
        if state.busy || sweep.saturating_sub(state.idle_since) < IDLE_SWEEPS {
            return true;
        }
        if let Some(region) = state.stack.upgrade() {
            region.release();
        }
        state.listed = false;
        false
    }

    /// Whether a stack was made for this store's calls and still exists.
    #[cfg(test)]
    fn has_stack(&self) -> bool {
        self.lock().stack.strong_count() > 0
    }
}

pin_project_lite::pin_project! {
    /// A call polled under its store's [`StackSlot`] (see
    /// [`StackSlot::owning`]).
    pub(crate) struct Owning<F> {
        slot: Arc<StackSlot>,
        remember: bool,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for Owning<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.remember || this.slot.has_stack.load(Ordering::Acquire) {
            // Nothing to remember, or wasmtime reuses the store's stack.
            return this.work.poll(cx);
        }
        let outer = POLLING.with(|polling| polling.replace(Some(this.slot.clone())));
        let polled = this.work.poll(cx);
        POLLING.with(|polling| *polling.borrow_mut() = outer);
        polled
    }
}

/// How often the sweep looks at the stacks used since their last release.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How many sweeps must pass without a call before a store's stack is
/// given back: with a sweep every second, a stack idle for two to three
/// seconds. A resource checked every second keeps its stack.
pub(crate) const IDLE_SWEEPS: u64 = 3;

/// The sweep of idle stacks: the slots whose stack a call used since it was
/// last released, looked at every [`SWEEP_EVERY`] by a thread of its own,
/// which parks while there are none (an idle agent does not wake). Stops
/// when dropped.
pub(crate) struct IdleStacks {
    shared: Arc<Swept>,
    thread: Thread,
}

/// What the sweeping thread and the calls share.
#[derive(Debug, Default)]
struct Swept {
    /// Sweeps so far: the clock a slot's idleness is counted in.
    sweeps: AtomicU64,
    /// The slots used since their stack was last released (each once).
    listed: Mutex<Vec<Weak<StackSlot>>>,
    /// Set when the [`IdleStacks`] is dropped: the thread then exits.
    stopped: AtomicBool,
}

impl Swept {
    fn listed(&self) -> std::sync::MutexGuard<'_, Vec<Weak<StackSlot>>> {
        self.listed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One sweep: every listed slot idle for [`IDLE_SWEEPS`] sweeps gives
    /// its stack back and leaves the list, as does a slot whose store is
    /// gone. The list is taken out while the slots are looked at, so a call
    /// returning meanwhile does not wait for the `madvise`s. Returns how
    /// many slots stay listed.
    fn sweep(&self) -> usize {
        let sweep = self.sweeps.fetch_add(1, Ordering::SeqCst) + 1;
        let mut taken = std::mem::take(&mut *self.listed());
        taken.retain(|slot| slot.upgrade().is_some_and(|slot| slot.sweep(sweep)));
        let mut listed = self.listed();
        listed.append(&mut taken);
        listed.len()
    }
}

impl IdleStacks {
    /// Start the sweeping thread.
    pub(crate) fn start() -> std::io::Result<IdleStacks> {
        let shared = Arc::new(Swept::default());
        let state = shared.clone();
        let handle = thread::Builder::new()
            .name("warden-stacks".to_string())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    if state.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    if state.listed().is_empty() {
                        // Woken by the first call to return (or the drop).
                        thread::park();
                        last = Instant::now();
                        continue;
                    }
                    let due = last + SWEEP_EVERY;
                    let now = Instant::now();
                    if now < due {
                        thread::park_timeout(due - now);
                        continue;
                    }
                    state.sweep();
                    last = now;
                }
            })?;
        Ok(IdleStacks {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// The call into `slot`'s store that [`StackSlot::begin`] announced has
    /// returned: its fiber has finished, so its stack may be given back
    /// once it has idled long enough.
    pub(crate) fn returned(&self, slot: &Arc<StackSlot>) {
        let sweep = self.shared.sweeps.load(Ordering::SeqCst);
        let newly_listed = {
            let mut state = slot.lock();
            state.busy = false;
            state.idle_since = sweep;
            !std::mem::replace(&mut state.listed, true)
        };
        if newly_listed {
            let mut listed = self.shared.listed();
            listed.push(Arc::downgrade(slot));
            if listed.len() == 1 {
                // Counted in before the unpark, so the thread, whichever side
                // of its check it is on, sees it (as the epoch ticker's).
                self.thread.unpark();
            }
        }
    }

    /// One sweep now, as the thread makes every [`SWEEP_EVERY`] (the tests
    /// drive it by hand); how many slots stay listed.
    #[cfg(test)]
    fn sweep(&self) -> usize {
        self.shared.sweep()
    }
}

impl Drop for IdleStacks {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident pages of `range` (mincore).
    fn resident_pages(range: Range<usize>) -> usize {
        let page = page_size();
        let mut vec = vec![0u8; range.len() / page];
        // SAFETY: `range` is a live mapping of whole pages; `vec` has one
        // byte per page.
        let ok = unsafe {
            libc::mincore(
                range.start as *mut libc::c_void,
                range.len(),
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(ok, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| *b & 1 == 1).count()
    }

    #[test]
    fn a_released_stack_keeps_its_mapping_and_drops_its_pages() {
        let region = Region::map(64 << 10).expect("map");
        let stack = region.stack();
        assert_eq!(stack.len(), 64 << 10);
        // Touch the top 5 pages, as a call would.
        let page = page_size();
        for i in 1..=5 {
            // SAFETY: within the writable stack.
            unsafe { *((stack.end - i * page) as *mut u8) = 7 };
        }
        assert_eq!(resident_pages(stack.clone()), 5);
        region.release();
        assert_eq!(resident_pages(stack.clone()), 0);
        // Still mapped and writable, and zeroed as a fresh stack.
        // SAFETY: within the writable stack.
        let byte = unsafe { *((stack.end - page) as *const u8) };
        assert_eq!(byte, 0);
    }

    #[test]
    fn a_stack_made_while_a_store_s_call_is_polled_is_that_store_s() {
        let slot = Arc::new(StackSlot::default());
        let other = Arc::new(StackSlot::default());
        let made = futures_util::FutureExt::now_or_never(slot.owning(
            async { ReleasingStacks.new_stack(1 << 20, false).expect("stack") },
            true,
        ))
        .expect("ready");
        assert!(slot.has_stack());
        assert!(!other.has_stack(), "another store's slot took it");
        // Outside any poll a stack is nobody's.
        let stray = ReleasingStacks.new_stack(1 << 20, false).expect("stack");
        assert!(!other.has_stack());
        drop(stray);
        // Once the slot has its stack, later polls set no thread-local: a
        // stack made then (wasmtime reuses the store's) is not taken.
        let later = futures_util::FutureExt::now_or_never(slot.owning(
            async { ReleasingStacks.new_stack(1 << 20, false).expect("stack") },
            true,
        ))
        .expect("ready");
        let remembered = slot.lock().stack.upgrade().expect("still the first");
        assert_eq!(remembered.stack(), made.range());
        assert_ne!(remembered.stack(), later.range());
        drop(remembered);
        // A runtime that releases nothing remembers nothing.
        let untracked = Arc::new(StackSlot::default());
        let kept = futures_util::FutureExt::now_or_never(untracked.owning(
            async { ReleasingStacks.new_stack(1 << 20, false).expect("stack") },
            false,
        ))
        .expect("ready");
        assert!(!untracked.has_stack());
        drop(kept);
        // The slot does not keep a dropped stack alive.
        drop(made);
        assert!(!slot.has_stack());
    }

    /// A sweep driven by hand: no thread sweeps behind the test's back.
    fn by_hand() -> IdleStacks {
        IdleStacks {
            shared: Arc::default(),
            thread: thread::current(),
        }
    }

    /// A slot with a stack of `pages` pages made under it, the top
    /// `touched` of them written as a call would; the stack and its range.
    fn slot_with_stack(pages: usize, touched: usize) -> (Arc<StackSlot>, Box<dyn StackMemory>) {
        let slot = Arc::new(StackSlot::default());
        let page = page_size();
        let stack = futures_util::FutureExt::now_or_never(slot.owning(
            async {
                ReleasingStacks
                    .new_stack(pages * page, false)
                    .expect("stack")
            },
            true,
        ))
        .expect("ready");
        let range = stack.range();
        for i in 1..=touched {
            // SAFETY: within the writable stack.
            unsafe { *((range.end - i * page) as *mut u8) = 7 };
        }
        (slot, stack)
    }

    #[test]
    fn a_stack_is_given_back_only_once_its_store_has_idled_for_the_sweeps() {
        let sweeper = by_hand();
        let (slot, stack) = slot_with_stack(16, 3);
        slot.begin();
        // A call in flight: however many sweeps pass, its pages stay.
        sweeper.returned(&slot);
        slot.begin();
        for _ in 0..10 {
            sweeper.sweep();
        }
        assert_eq!(resident_pages(stack.range()), 3, "released under a call");
        // Returned: kept for IDLE_SWEEPS - 1 sweeps, released at the next.
        sweeper.returned(&slot);
        for i in 1..IDLE_SWEEPS {
            assert_eq!(sweeper.sweep(), 1, "sweep {i}: the slot left the list");
            assert_eq!(
                resident_pages(stack.range()),
                3,
                "released after {i} sweeps"
            );
        }
        assert_eq!(sweeper.sweep(), 0, "the released slot stays listed");
        assert_eq!(resident_pages(stack.range()), 0);
    }

    #[test]
    fn a_store_called_more_often_than_the_sweeps_keeps_its_stack() {
        let sweeper = by_hand();
        let (slot, stack) = slot_with_stack(16, 2);
        for _ in 0..20 {
            slot.begin();
            sweeper.returned(&slot);
            sweeper.sweep();
            sweeper.sweep();
        }
        assert_eq!(resident_pages(stack.range()), 2);
        // Listed once however many calls returned.
        assert_eq!(sweeper.shared.listed().len(), 1);
        // Called again after its release: listed again, released again.
        sweeper.sweep();
        assert_eq!(resident_pages(stack.range()), 0);
        slot.begin();
        // SAFETY: within the writable stack.
        unsafe { *((stack.range().end - page_size()) as *mut u8) = 7 };
        sweeper.returned(&slot);
        assert_eq!(sweeper.shared.listed().len(), 1);
        for _ in 0..IDLE_SWEEPS {
            sweeper.sweep();
        }
        assert_eq!(resident_pages(stack.range()), 0);
        assert!(sweeper.shared.listed().is_empty());
    }

    #[test]
    fn a_dropped_store_leaves_the_list_and_a_cut_off_call_is_never_released() {
        let sweeper = by_hand();
        let (gone, gone_stack) = slot_with_stack(4, 1);
        gone.begin();
        sweeper.returned(&gone);
        drop(gone_stack);
        drop(gone);
        // A call that never returned (cut off): its slot stays busy.
        let (cut, cut_stack) = slot_with_stack(4, 2);
        cut.begin();
        sweeper.returned(&cut);
        cut.begin();
        assert_eq!(
            sweeper.sweep(),
            1,
            "the dropped store's slot is still listed"
        );
        for _ in 0..10 {
            sweeper.sweep();
        }
        assert_eq!(resident_pages(cut_stack.range()), 2);
    }

    #[test]
    fn the_sweeping_thread_releases_an_idle_stack_and_parks_when_none_is_left() {
        let sweeper = IdleStacks::start().expect("the sweeping thread");
        let (slot, stack) = slot_with_stack(8, 2);
        slot.begin();
        sweeper.returned(&slot);
        let deadline = Instant::now() + SWEEP_EVERY * (IDLE_SWEEPS as u32 + 20);
        while resident_pages(stack.range()) > 0 {
            assert!(Instant::now() < deadline, "never released");
            thread::sleep(Duration::from_millis(50));
        }
        // Nothing listed any more: the thread stops sweeping.
        let sweeps = sweeper.shared.sweeps.load(Ordering::SeqCst);
        thread::sleep(SWEEP_EVERY * 2 + Duration::from_millis(200));
        assert_eq!(sweeper.shared.sweeps.load(Ordering::SeqCst), sweeps);
    }
}
