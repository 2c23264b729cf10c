//! Fiber stacks that give their pages back between calls.
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
//! made it ([`StackSlot`]), and [`StackSlot::release`] returns its pages
//! to the kernel (`madvise(MADV_DONTNEED)`; the mapping stays, the next
//! call faults in zeroed pages).
//!
//! Invariant: a stack is released only when no fiber runs or is suspended
//! on it. With the engine's concurrency support off (`engine.rs`), a store
//! runs one call at a time on one fiber, and `bounded` releases only once
//! that call's future has returned (its fiber has finished); a call that
//! is cut off is dropped with its store, never released. (With concurrency
//! support on, wasmtime keeps a guest task's worker fiber suspended on its
//! stack after the call returns: releasing that stack crashed the agent at
//! the next call, which is why the two go together.) Which store a new stack belongs to is known because wasmtime
//! makes it synchronously inside the poll of that store's call, which
//! `bounded` polls under [`StackSlot::owning`] (a thread-local, set only
//! for the length of one poll).

use std::cell::RefCell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

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

/// The stack of one store's calls, once one was made: what
/// [`StackSlot::release`] gives back. Held by the store's data; it keeps no
/// stack alive (a store dropped drops its stacks).
#[derive(Debug, Default)]
pub(crate) struct StackSlot {
    stack: Mutex<Weak<Region>>,
}

impl StackSlot {
    fn remember(&self, region: &Arc<Region>) {
        let mut stack = self.stack.lock().unwrap_or_else(|p| p.into_inner());
        *stack = Arc::downgrade(region);
    }

    /// `work` (a call into this slot's store), polled so that a stack
    /// wasmtime makes for it is remembered here.
    pub(crate) fn owning<F: Future>(self: &Arc<Self>, work: F) -> Owning<F> {
        Owning {
            slot: self.clone(),
            work,
        }
    }

    /// Give the pages of the store's stack back to the kernel. Call only
    /// once the store's call has returned: no fiber may be on the stack.
    pub(crate) fn release(&self) {
        let region = self
            .stack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        if let Some(region) = region {
            region.release();
        }
    }

    /// Whether a stack was made for this store's calls and still exists.
    #[cfg(test)]
    fn has_stack(&self) -> bool {
        self.stack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .strong_count()
            > 0
    }
}

pin_project_lite::pin_project! {
    /// A call polled under its store's [`StackSlot`] (see
    /// [`StackSlot::owning`]).
    pub(crate) struct Owning<F> {
        slot: Arc<StackSlot>,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for Owning<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = POLLING.with(|polling| polling.replace(Some(this.slot.clone())));
        let polled = this.work.poll(cx);
        POLLING.with(|polling| *polling.borrow_mut() = outer);
        polled
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
        let made = futures_util::FutureExt::now_or_never(
            slot.owning(async { ReleasingStacks.new_stack(1 << 20, false).expect("stack") }),
        )
        .expect("ready");
        assert!(slot.has_stack());
        assert!(!other.has_stack(), "another store's slot took it");
        // Outside any poll a stack is nobody's.
        let stray = ReleasingStacks.new_stack(1 << 20, false).expect("stack");
        assert!(!other.has_stack());
        drop(stray);
        // The slot does not keep a dropped stack alive.
        drop(made);
        assert!(!slot.has_stack());
        slot.release();
    }
}
