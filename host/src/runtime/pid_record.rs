//! The pid record: the file in a resource's private directory that tells
//! the next agent which service this one left behind.
//!
//! A service outlives an agent that is killed (or stopped with
//! `on_shutdown = "leave-running"`), and the next agent must find it, to
//! adopt it or stop it, never to start a second copy beside it. The record
//! is written in two steps around the start, so that no instant exists at
//! which a service runs and no record leads to it:
//!
//! 1. before the start, [`PidRecord::Starting`]: the program, and the
//!    identity (device and inode) of the service log the new process gets
//!    as its standard output and error;
//! 2. once the process exists, [`PidRecord::Running`]: its pid, its start
//!    time (which tells it from a later process reusing the pid) and the
//!    program.
//!
//! An agent killed between the two leaves `Starting`: the next one finds
//! the process by the log it holds open ([`holders_of`]) and stops it.
//!
//! The record is replaced atomically (a temporary file renamed over it) but
//! not flushed to disk: it describes running processes, which a crash of
//! the machine takes with it, and a start must not wait on the disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::private_file::{self, Flush};

/// The record's file name in the resource's private directory.
const PID_FILE: &str = ".warden-pid";

/// The most bytes of a record the agent reads.
const MAX_RECORD: u64 = 4096;

/// A file's identity: its device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of an open file.
    pub(super) fn of(file: &File) -> io::Result<FileId> {
        let meta = file.metadata()?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// What a pid record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PidRecord {
    /// The agent was about to start `program` with `log` as its output.
    Starting { log: FileId, program: String },
    /// `pid` runs `program`, started at `started` (clock ticks since boot).
    Running {
        pid: u32,
        started: u64,
        program: String,
    },
}

impl PidRecord {
    /// One line: `starting DEV INO PROGRAM` or `PID START PROGRAM`.
    fn to_line(&self) -> String {
        match self {
            PidRecord::Starting { log, program } => {
                format!("starting {} {} {program}\n", log.dev, log.ino)
            }
            PidRecord::Running {
                pid,
                started,
                program,
            } => format!("{pid} {started} {program}\n"),
        }
    }

    /// The record in `text`, `None` if it is not one.
    fn parse(text: &str) -> Option<PidRecord> {
        let mut words = text.split_whitespace();
        let first = words.next()?;
        let record = if first == "starting" {
            let dev = words.next()?.parse().ok()?;
            let ino = words.next()?.parse().ok()?;
            PidRecord::Starting {
                log: FileId { dev, ino },
                program: words.next()?.to_string(),
            }
        } else {
            PidRecord::Running {
                pid: first.parse().ok()?,
                started: words.next()?.parse().ok()?,
                program: words.next()?.to_string(),
            }
        };
        words.next().is_none().then_some(record)
    }
}

/// Write `record` in `private_dir`, replacing the one there.
pub(super) fn write(private_dir: &Path, record: &PidRecord) -> io::Result<()> {
    private_file::replace(
        private_dir,
        PID_FILE,
        record.to_line().as_bytes(),
        Flush::No,
    )
}

/// The record in `private_dir`: `Ok(None)` if there is none, or if what is
/// there is not a record (then removed).
pub(super) fn read(private_dir: &Path) -> Result<Option<PidRecord>, String> {
    let path = private_dir.join(PID_FILE);
    let bytes = match private_file::read_bounded(&path, MAX_RECORD) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(err) => return Err(format!("ignoring the pid record: {err}")),
    };
    let record = PidRecord::parse(&String::from_utf8_lossy(&bytes));
    if record.is_none() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(record)
}

/// Remove the record in `private_dir`.
pub(super) fn remove(private_dir: &Path) {
    let _ = std::fs::remove_file(private_dir.join(PID_FILE));
}

/// Remove the record in `private_dir` if it still names `pid`: a newer
/// process may have replaced it.
pub(super) fn remove_if_running(private_dir: &Path, pid: u32) {
    if let Ok(Some(PidRecord::Running { pid: named, .. })) = read(private_dir)
        && named == pid
    {
        remove(private_dir);
    }
}

/// Remove the record in `private_dir` if it is a start that did not
/// happen.
pub(super) fn remove_if_starting(private_dir: &Path) {
    if let Ok(Some(PidRecord::Starting { .. })) = read(private_dir) {
        remove(private_dir);
    }
}

/// The processes, other than this agent, whose standard output or error is
/// the open file `log`: a service and whatever it forked.
///
/// A walk of every process's descriptors 1 and 2, done only after an agent
/// died in the middle of a start. A service that closed or redirected both
/// is not found.
pub(super) fn holders_of(log: FileId) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            [1, 2].iter().any(|fd| {
                std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|meta| {
                    FileId {
                        dev: meta.dev(),
                        ino: meta.ino(),
                    } == log
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            PidRecord::Starting {
                log: FileId { dev: 2049, ino: 77 },
                program: "/usr/sbin/nginx".into(),
            },
            PidRecord::Running {
                pid: 4242,
                started: 123_456,
                program: "/usr/sbin/nginx".into(),
            },
        ];
        for record in records {
            write(dir.path(), &record).unwrap();
            assert_eq!(read(dir.path()).unwrap(), Some(record));
        }
    }

    #[test]
    fn what_is_not_a_record_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        for junk in [
            "",
            "starting 1 x /p\n",
            "12 /p\n",
            "12 34 /p extra\n",
            "starting\n",
        ] {
            std::fs::write(dir.path().join(PID_FILE), junk).unwrap();
            assert_eq!(read(dir.path()).unwrap(), None, "{junk:?}");
            assert!(!dir.path().join(PID_FILE).exists(), "{junk:?}");
        }
    }

    #[test]
    fn only_a_record_naming_the_pid_or_a_start_is_removed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let running = PidRecord::Running {
            pid: 10,
            started: 1,
            program: "/p".into(),
        };
        write(dir.path(), &running).unwrap();
        remove_if_starting(dir.path());
        remove_if_running(dir.path(), 11);
        assert_eq!(read(dir.path()).unwrap(), Some(running));
        remove_if_running(dir.path(), 10);
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn the_holders_of_a_log_are_the_processes_writing_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = private_file::open_append(&dir.path().join("service.log")).unwrap();
        let id = FileId::of(&log).unwrap();
        assert!(holders_of(id).is_empty());
        let mut child = std::process::Command::new("/usr/bin/sleep")
            .arg("30")
            .stdout(log.try_clone().unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let holders = holders_of(id);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(holders, vec![child.id()]);
    }
}
