//! Reading and writing the agent's own files about a resource.
//!
//! These files (checkpoint record, pid record, service log) live in the
//! resource's private directory, which no plugin can reach. They are still
//! opened defensively, because the agent runs as root and a mistake here
//! would be a root-owned write through somebody else's link: never through
//! a symbolic link (`O_NOFOLLOW`), only if they are regular files (a FIFO
//! or a device is refused before anything is read), and never read past a
//! size bound (a 1 GiB sparse file is not loaded into memory).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` for reading without following a link, refusing anything but
/// a regular file. `Ok(None)` if there is no such file.
fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{} is a symbolic link; the agent does not follow it",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file ({kind:?}); the agent does not read it",
            path.display()
        )));
    }
    Ok(Some(file))
}

/// The contents of the regular file `path`, at most `max` bytes; `Ok(None)`
/// if it does not exist. A link, a non-regular file or a larger file is an
/// error naming the path.
pub(super) fn read_bounded(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let size = file.metadata()?.len();
    if size > max {
        return Err(io::Error::other(format!(
            "{} holds {size} bytes, more than the {max} the agent reads",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // Take at most one byte past the bound: the file may grow meanwhile.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!(
            "{} grew past the {max} bytes the agent reads",
            path.display()
        )));
    }
    Ok(Some(bytes))
}

/// Whether [`replace`] waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// fsync the file and the directory: the new contents survive a crash
    /// of the machine.
    ToDisk,
    /// Only the kernel's cache: enough for what a crash of the machine
    /// makes moot anyway (the pid record: its processes die with it).
    No,
}

/// Replace `dir/name` with `bytes` atomically: a new temporary file
/// (created exclusively, never through a link), rename over the old one,
/// with `flush` an fsync of both before and after the rename. A crash
/// leaves the old file or the new one, never a torn one.
pub(super) fn replace(dir: &Path, name: &str, bytes: &[u8], flush: Flush) -> io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    // A temp file left by a crash; unlinking a link removes the link only.
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)?;
    file.write_all(bytes)?;
    if flush == Flush::No {
        return std::fs::rename(&temp, dir.join(name));
    }
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Open `path` for appending (created owner-only if absent), never through
/// a link and only if it is a regular file: the service log, which the
/// service writes through the descriptor the agent hands it.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other(format!(
                "{} is a symbolic link; the agent does not follow it",
                path.display()
            )),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file ({kind:?})",
            path.display()
        )));
    }
    // Back to blocking writes for the service.
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let err = read_bounded(&link, 100).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = open_append(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_bounded(&fifo, 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let err = read_bounded(&big, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");

        assert_eq!(read_bounded(&dir.path().join("none"), 1).unwrap(), None);
    }

    #[test]
    fn replace_does_not_write_through_a_planted_temp_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("record.tmp")).unwrap();
        replace(dir.path(), "record", b"new", Flush::ToDisk).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("record")).unwrap(),
            "new"
        );
    }
}
