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

/// The most core instances one store may have. A Rust component has about
/// five (its module and wit-component's adapters); an interpreter packaged
/// as a component (componentize-py, componentize-js) a dozen or so.
pub(crate) const MAX_CORE_INSTANCES: usize = 32;

/// The most tables one store may have (about two per core instance).
pub(crate) const MAX_TABLES: usize = 64;

/// The most linear memories one store may have.
pub(crate) const MAX_MEMORIES: usize = 2;

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

    // The counts the pooling allocator capped per component, kept with the
    // on-demand allocator too: one store holds one component, and a
    // plugin needing more than this fails to instantiate rather than
    // taking without bound.
    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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
