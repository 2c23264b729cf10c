//! The kernel's per-process limits that a node's resources use up one by
//! one: memory mappings and open files.
//!
//! Every live resource holds a store, and a store holds mappings of its
//! own (the linear memory with its guard regions, the stack its calls run
//! on with a guard page); a resource whose program runs holds one open
//! file, the program's pidfd. (Its `/data` directory is open only while a
//! call uses it, `data_preopen.rs`: an idle resource holds none.) Linux refuses a process more mappings than
//! `vm.max_map_count` (65 530 by default) and more files than its
//! `RLIMIT_NOFILE`. The refusals surface deep in an instantiation, as
//! "Cannot allocate memory" or "Too many open files" for each resource past
//! the limit. At tens of thousands of resources these limits, not memory
//! or address space, run out first, so the agent compares at start and
//! says which setting to raise.
//!
//! The open-file limit the agent raises itself ([`raise_open_files`]): the
//! soft limit to the hard one always, and the hard one too when its
//! resources need more and it may (`CAP_SYS_RESOURCE`, as root has), up to
//! the kernel's `fs.nr_open`. The mappings limit is the machine's, which a
//! process does not change for itself.

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

/// The open files one live resource may cost: the pidfd of the program
/// it manages, while that runs. (Its `/data` is open only during a call;
/// a resource without a program, or idle between calls, holds none.)
pub const FILES_PER_RESOURCE: u64 = 1;

/// The open files of an agent with no resource (its history, store,
/// sockets, plugins, the runtime's), with room.
pub const BASE_FILES: u64 = 1_000;

/// Where Linux says how high a process may raise its open-file limit.
pub const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// The open files an agent with `resources` live resources needs.
pub fn files_needed(resources: usize) -> u64 {
    BASE_FILES.saturating_add((resources as u64).saturating_mul(FILES_PER_RESOURCE))
}

/// The `RLIMIT_NOFILE` (soft, hard) to ask for, given the current one, what
/// the resources need and the kernel's ceiling (`fs.nr_open`, if read).
/// `None`: nothing to change.
///
/// The soft limit goes up to the hard one whatever the resources (a few
/// busy plugins would otherwise starve the agent of descriptors); the hard
/// one goes up only when the resources need more than it, to the next power
/// of two past what they need (room for resources added while it runs) and
/// never past `nr_open`.
pub fn open_files_target(
    (soft, hard): (u64, u64),
    needed: u64,
    nr_open: Option<u64>,
) -> Option<(u64, u64)> {
    let wanted_hard = if needed > hard {
        let roomy = needed.checked_next_power_of_two().unwrap_or(needed);
        nr_open
            .map_or(roomy, |ceiling| roomy.min(ceiling))
            .max(hard)
    } else {
        hard
    };
    (soft < wanted_hard || hard < wanted_hard).then_some((wanted_hard, wanted_hard))
}

/// What [`raise_open_files`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit before, (soft, hard).
    pub before: (u64, u64),
    /// The limit now, (soft, hard).
    pub now: (u64, u64),
    /// Why the hard limit could not be raised as far as wanted, if it
    /// could not (no `CAP_SYS_RESOURCE`).
    pub refused: Option<String>,
}

/// Raise this process's open-file limit for `resources` resources (see
/// [`open_files_target`]) and log what changed: the hard limit raised is
/// said at `info`, a refusal at `warn` with what the operator can do.
/// Failing to raise is not fatal: [`open_files_shortfall`] then says which
/// resources will fail.
pub fn raise_open_files(resources: usize) -> std::io::Result<OpenFiles> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    let needed = files_needed(resources);
    let nr_open = std::fs::read_to_string(NR_OPEN)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let Some((soft, hard)) = open_files_target(before, needed, nr_open) else {
        return Ok(OpenFiles {
            before,
            now: before,
            refused: None,
        });
    };
    let mut refused = None;
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, soft, hard) {
        // Raising the hard limit takes CAP_SYS_RESOURCE; the soft one up to
        // the hard one does not.
        refused = Some(format!(
            "could not raise the hard open-file limit (RLIMIT_NOFILE) from {} to {hard} for \
             {resources} resources: {e} (raising it takes CAP_SYS_RESOURCE; systemd: \
             LimitNOFILE={hard} in the unit)",
            before.1
        ));
        if before.0 < before.1 {
            setrlimit(Resource::RLIMIT_NOFILE, before.1, before.1).map_err(std::io::Error::from)?;
        }
    }
    let now = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    match &refused {
        Some(refused) => tracing::warn!("{refused}"),
        None if now.1 > before.1 => tracing::info!(
            "raised the hard open-file limit (RLIMIT_NOFILE) from {} to {}: {resources} \
             resources need about {needed} (fs.nr_open = {})",
            before.1,
            now.1,
            nr_open.map_or("unread".to_string(), |n: u64| n.to_string()),
        ),
        None => {}
    }
    Ok(OpenFiles {
        before,
        now,
        refused,
    })
}

/// What `resources` resources need of open files against `allowed` (the
/// soft `RLIMIT_NOFILE` after the agent raised it). `None` if they fit,
/// else what an operator reads.
pub fn open_files_shortfall(resources: usize, allowed: u64) -> Option<String> {
    let needed = files_needed(resources);
    (needed > allowed).then(|| {
        format!(
            "{resources} resources need about {needed} open files (one each for the \
             program it manages, while it runs), more than this process may have \
             (RLIMIT_NOFILE = {allowed}); programs started past the limit will fail with \
             \"Too many open files\". Raise the hard limit (systemd: LimitNOFILE={} in \
             the unit), or run the agent with CAP_SYS_RESOURCE and it raises it itself",
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
    fn the_soft_limit_goes_to_the_hard_one_and_the_hard_one_only_when_needed() {
        // Few resources: the soft limit up to the hard one, no further.
        assert_eq!(
            open_files_target((1024, 20_000), files_needed(100), Some(1 << 20)),
            Some((20_000, 20_000))
        );
        assert_eq!(
            open_files_target((20_000, 20_000), files_needed(100), Some(1 << 20)),
            None
        );
        // 50 000 resources: past the hard limit, to the next power of two.
        assert_eq!(
            open_files_target((20_000, 20_000), files_needed(50_000), Some(1 << 20)),
            Some((65_536, 65_536))
        );
        // Never past fs.nr_open, never below the hard limit there was.
        assert_eq!(
            open_files_target((1024, 20_000), files_needed(50_000), Some(40_000)),
            Some((40_000, 40_000))
        );
        assert_eq!(
            open_files_target((1024, 20_000), files_needed(50_000), Some(10_000)),
            Some((20_000, 20_000))
        );
        // An unread ceiling does not stop the raise (the kernel refuses what
        // it must).
        assert_eq!(
            open_files_target((20_000, 20_000), files_needed(50_000), None),
            Some((65_536, 65_536))
        );
        assert_eq!(
            open_files_target((0, u64::MAX), u64::MAX, None),
            Some((u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn open_files_are_one_per_resource_past_the_base() {
        assert_eq!(open_files_shortfall(19_000, 20_000), None);
        let said = open_files_shortfall(50_000, 20_000).expect("short");
        assert!(said.contains("RLIMIT_NOFILE = 20000"), "{said}");
        assert!(said.contains("LimitNOFILE=65536"), "{said}");
    }
}
