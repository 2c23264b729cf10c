//! The per-resource memory limit.

use wasmtime::ResourceLimiter;

/// Raised (as the trap's cause) when a guest asks for more memory than its
/// resource may have. The monitor turns it into "memory limit of N MiB
/// reached" rather than a generic trap.
#[derive(Debug, Clone, thiserror::Error)]
#[error("memory limit of {} reached (the plugin asked for {})", mib(*limit), mib(*wanted))]
pub(super) struct MemoryLimitReached {
    pub limit: usize,
    pub wanted: usize,
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

/// Enforces one resource's memory limit. Growth past the limit traps at once
/// instead of returning -1 to the guest: a Rust guest would abort anyway,
/// and the trap carries a reason an operator can read.
#[derive(Debug)]
pub(crate) struct MemoryLimit {
    pub limit: usize,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitReached {
                limit: self.limit,
                wanted: desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin has no business with
        // millions of them.
        Ok(desired <= 100_000)
    }
}
