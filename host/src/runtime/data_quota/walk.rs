//! Measuring a data directory: one bounded walk that never follows a link.
//!
//! The plugin owns the directory and may fill it with links, so each
//! directory is opened relative to its parent with `O_NOFOLLOW` (a link
//! swapped in for a directory mid-walk is not followed out of `/data`) and
//! each entry is `lstat`ed, never `stat`ed. The walk is bounded three ways,
//! so a plugin cannot make it expensive: it stops after one entry more
//! than the entry quota, descends at most [`MAX_DEPTH`] directories (one
//! descriptor each, held only along the current path), and reports what it
//! could not see as full rather than as empty.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

use super::QuotaLimits;

/// The deepest a walk descends below the data directory. A tree deeper
/// than this is counted as full: its depth is the plugin's doing, and
/// counting it as empty would let it hide data from the quota.
pub(super) const MAX_DEPTH: usize = 64;

/// What a walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub bytes: u64,
    pub entries: u64,
}

impl Found {
    /// A directory the walk could not see to the end: full on both counts,
    /// so nothing more is admitted until a walk sees it all.
    pub(super) fn full(limits: QuotaLimits) -> Found {
        Found {
            bytes: limits.bytes,
            entries: limits.entries.saturating_add(1),
        }
    }
}

/// Measure `dir`: bytes (apparent sizes of files and links) and entries
/// (everything beneath it, not itself). A directory that does not exist
/// yet holds nothing.
pub(super) fn measure(dir: &Path, limits: QuotaLimits) -> nix::Result<Found> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // The directory itself is the operator's (it may be a link to another
    // disk) and the plugin cannot replace it: only what is beneath it is
    // opened without following links.
    let mut root = match Dir::open(dir, flags - OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(root) => root,
        Err(Errno::ENOENT) => {
            return Ok(Found {
                bytes: 0,
                entries: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let mut found = Found {
        bytes: 0,
        entries: 0,
    };
    // One frame per directory on the current path: the open directory and
    // the names of its entries not yet visited.
    let names = entry_names(&mut root, limits, 0)?;
    let mut stack: Vec<(Dir, Vec<CString>)> = vec![(root, names)];
    loop {
        let depth = stack.len();
        let Some((dir, names)) = stack.last_mut() else {
            break;
        };
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let stat = match fstatat(
            dir.as_fd(),
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            // Removed since it was listed (by the managed process, say).
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        found.entries += 1;
        if found.entries > limits.entries {
            return Ok(Found::full(limits));
        }
        if is_dir(&stat) {
            if depth >= MAX_DEPTH {
                return Ok(Found::full(limits));
            }
            let mut child = match Dir::openat(dir.as_fd(), name.as_c_str(), flags, Mode::empty()) {
                Ok(child) => child,
                // Removed, or replaced by a link or a file since the lstat:
                // not followed (its entry is counted already).
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
                Err(e) => return Err(e),
            };
            let names = entry_names(&mut child, limits, found.entries)?;
            stack.push((child, names));
        } else {
            found.bytes = found
                .bytes
                .saturating_add(u64::try_from(stat.st_size).unwrap_or(0));
        }
    }
    Ok(found)
}

/// The names in `dir` but `.` and `..`, at most as many as the quota has
/// entries left to visit (plus one, to see that it is exceeded).
fn entry_names(dir: &mut Dir, limits: QuotaLimits, seen: u64) -> nix::Result<Vec<CString>> {
    let room = limits.entries.saturating_sub(seen).saturating_add(1);
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        names.push(name.to_owned());
        if names.len() as u64 >= room {
            break;
        }
    }
    Ok(names)
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QuotaLimits = QuotaLimits {
        bytes: 1 << 20,
        entries: 100,
    };

    #[test]
    fn counts_files_directories_and_links_without_following_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("big"), vec![0u8; 50_000]).expect("outside");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("dirs");
        std::fs::write(dir.path().join("a/b/f"), [1u8; 1000]).expect("file");
        std::fs::write(dir.path().join("g"), [1u8; 24]).expect("file");
        // A link to a big tree outside counts as the link itself.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("link");
        let link_len = outside.path().as_os_str().len() as u64;
        let found = measure(dir.path(), LIMITS).expect("walk");
        assert_eq!(found.entries, 5, "a, a/b, a/b/f, g, out");
        assert_eq!(found.bytes, 1024 + link_len);
    }

    #[test]
    fn a_tree_past_the_entry_quota_or_too_deep_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..150 {
            std::fs::write(dir.path().join(format!("f{i}")), "x").expect("file");
        }
        assert_eq!(measure(dir.path(), LIMITS), Ok(Found::full(LIMITS)));

        let deep = tempfile::tempdir().expect("tempdir");
        let mut path = deep.path().to_path_buf();
        for _ in 0..MAX_DEPTH + 1 {
            path.push("d");
        }
        std::fs::create_dir_all(&path).expect("deep");
        assert_eq!(measure(deep.path(), LIMITS), Ok(Found::full(LIMITS)));
        // A missing directory holds nothing.
        let missing = deep.path().join("missing");
        assert_eq!(
            measure(&missing, LIMITS),
            Ok(Found {
                bytes: 0,
                entries: 0
            })
        );
    }
}
