//! The kernel's per-process limits that a node's resources use up one by
//! one: memory mappings and open files.
//!
//! Every live resource holds a store, and a store holds mappings of its
//! own (the linear memory with its guard regions, the stack its calls run
//! on with a guard page) and one open file (its `/data` directory,
//! preopened for the sandbox). Linux refuses a process more mappings than
//! `vm.max_map_count` (65 530 by default) and more files than its
//! `RLIMIT_NOFILE` (the agent raises the soft limit to the hard one; the
//! hard one is systemd's `LimitNOFILE`). The refusals surface deep in an
//! instantiation, as "Cannot allocate memory" or "Too many open files" for
//! each resource past the limit. At tens of thousands of resources these
//! limits, not memory or address space, run out first, so the agent
//! compares at start and says which setting to raise.

use std::path::Path;

/// The mappings one live resource costs, measured with `chaos` at 1 000
/// resources on the on-demand allocator (docs/benchmarks.md): its stack
/// and the stack's guard page (2), its memory's guard before, the memory,
/// and the reservation after it (3).
pub const MAPPINGS_PER_RESOURCE: usize = 5;

/// The mappings of an agent with no resource: the binary, its libraries,
/// the threads' stacks, the allocator's arenas, compiled plugins; measured
/// at about 1 000, with room.
pub const BASE_MAPPINGS: usize = 4_000;

/// Where Linux says how many mappings a process may have.
pub const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// The open files one live resource costs: its `/data` directory, held by
/// its store's sandbox.
pub const FILES_PER_RESOURCE: u64 = 1;

/// The open files of an agent with no resource (its history, store,
/// sockets, plugins, the runtime's), with room.
pub const BASE_FILES: u64 = 1_000;

/// What `resources` resources need of open files against `allowed` (the
/// soft `RLIMIT_NOFILE` after the agent raised it). `None` if they fit,
/// else what an operator reads.
pub fn open_files_shortfall(resources: usize, allowed: u64) -> Option<String> {
    let needed = BASE_FILES.saturating_add((resources as u64).saturating_mul(FILES_PER_RESOURCE));
    (needed > allowed).then(|| {
        format!(
            "{resources} resources need about {needed} open files (one each for its /data \
             directory), more than this process may have (RLIMIT_NOFILE = {allowed}); resources \
             past the limit will fail with \"Too many open files\". Raise the hard limit \
             (systemd: LimitNOFILE={} in the unit)",
            needed.checked_next_power_of_two().unwrap_or(needed)
        )
    })
}

/// What `resources` resources need against what the kernel allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapBudget {
    /// Mappings the agent will need, by [`MAPPINGS_PER_RESOURCE`].
    pub needed: usize,
    /// `vm.max_map_count`.
    pub allowed: usize,
}

impl MapBudget {
    /// The budget for `resources`, with the limit read from `path` (normally
    /// [`MAX_MAP_COUNT`]). `None` where the limit cannot be read (not Linux,
    /// no /proc): nothing to compare with.
    pub fn read(resources: usize, path: &Path) -> Option<MapBudget> {
        let allowed = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        Some(MapBudget {
            needed: needed(resources),
            allowed,
        })
    }

    /// Whether the resources fit.
    pub fn fits(&self) -> bool {
        self.needed <= self.allowed
    }

    /// What an operator reads when they do not fit.
    pub fn shortfall(&self, resources: usize) -> String {
        format!(
            "{resources} resources need about {} memory mappings (about {MAPPINGS_PER_RESOURCE} \
             each), more than this kernel allows a process (vm.max_map_count = {}); resources \
             past the limit will fail to instantiate with \"Cannot allocate memory\". Raise it, \
             e.g. `sysctl -w vm.max_map_count={}` (and in /etc/sysctl.d to keep it)",
            self.needed,
            self.allowed,
            self.needed
                .checked_next_power_of_two()
                .unwrap_or(self.needed),
        )
    }
}

/// The mappings an agent with `resources` live resources needs.
pub fn needed(resources: usize) -> usize {
    BASE_MAPPINGS.saturating_add(resources.saturating_mul(MAPPINGS_PER_RESOURCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_holds_ten_thousand_resources_and_not_fifty_thousand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("max_map_count");
        std::fs::write(&path, "65530\n").expect("write");
        let ten = MapBudget::read(10_000, &path).expect("readable");
        assert!(ten.fits(), "{ten:?}");
        let fifty = MapBudget::read(50_000, &path).expect("readable");
        assert!(!fifty.fits(), "{fifty:?}");
        let said = fifty.shortfall(50_000);
        assert!(said.contains("vm.max_map_count = 65530"), "{said}");
        assert!(said.contains("sysctl -w vm.max_map_count=262144"), "{said}");
    }

    #[test]
    fn an_unreadable_or_garbled_limit_is_no_limit_to_compare_with() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(MapBudget::read(10, &dir.path().join("missing")), None);
        let path = dir.path().join("max_map_count");
        std::fs::write(&path, "many").expect("write");
        assert_eq!(MapBudget::read(10, &path), None);
    }

    #[test]
    fn a_huge_resource_count_does_not_overflow() {
        assert_eq!(needed(usize::MAX), usize::MAX);
        assert!(open_files_shortfall(usize::MAX, u64::MAX - 1).is_some());
    }

    #[test]
    fn open_files_are_one_per_resource_past_the_base() {
        assert_eq!(open_files_shortfall(19_000, 20_000), None);
        let said = open_files_shortfall(50_000, 20_000).expect("short");
        assert!(said.contains("RLIMIT_NOFILE = 20000"), "{said}");
        assert!(said.contains("LimitNOFILE=65536"), "{said}");
    }
}
