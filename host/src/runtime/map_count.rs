//! The kernel's limit on one process's memory mappings, against what a
//! node's resources need.
//!
//! Every live resource holds a store, and a store holds mappings of its
//! own: the linear memory (with its guard regions) and the stack its calls
//! run on (with a guard page). Linux refuses a process more mappings than
//! `vm.max_map_count` (65 530 by default), and the refusal surfaces deep in
//! an instantiation as "Cannot allocate memory". At tens of thousands of
//! resources that limit, not memory or address space, is what runs out
//! first, so the agent compares the two at start and says which setting to
//! raise.

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
    }
}
