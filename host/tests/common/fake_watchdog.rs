//! A stand-in for the Linux watchdog device, for machines that have none
//! (this one and CI: containers, no `/dev/watchdog`, no module loading).
//!
//! It is a file on a FUSE filesystem this test process mounts, so the
//! agent and its fence guard reach it exactly as they reach a real device:
//! `open`, the watchdog's ioctls (the kernel forwards them to this process,
//! properly sized), `write`, `close`. It behaves as `drivers/watchdog`'s
//! core does: one opener at a time (EBUSY otherwise), opening starts the
//! timer, `WDIOC_SETTIMEOUT` answers with the timeout it set, a keep-alive
//! or any write restarts the timer, a `V` in the last write before the
//! close stops it, a close without one leaves it running. Instead of
//! resetting the machine it records that it *fired*, with the wall-clock
//! time, so a test can compare it with what it saw elsewhere (etcd).
//!
//! What differs from a real device: the file is a regular file, not a
//! character device (the agent judges a device by its answers to the
//! watchdog's ioctls, not by its file type), and a firing resets nothing.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, IoctlFlags, LockOwner,
    OpenFlags, ReplyAttr, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyWrite, Request,
    WriteFlags,
};

/// What the device saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Opened: the timer runs.
    Open,
    /// A second opener, refused with EBUSY.
    Busy,
    /// `WDIOC_SETTIMEOUT`: asked, and what the device set.
    SetTimeout { asked: i32, set: i32 },
    /// A keep-alive (the ioctl, or a write without `V`).
    Feed,
    /// A write holding `V`: the next close stops the timer.
    Magic,
    /// Closed; `stopped` if the magic `V` came first.
    Close { stopped: bool },
    /// The timer ran out: a real device would reset the node now.
    Fired,
    /// An ioctl a watchdog does not have.
    Unknown(u32),
}

/// One thing the device saw, with when (wall clock, ms since the epoch).
#[derive(Debug, Clone)]
pub struct Seen {
    pub at_ms: u64,
    pub op: Op,
}

/// How the device behaves where devices differ.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// The shortest timeout it can do: a shorter one asked is raised to
    /// this, as drivers do (WDIOC_SETTIMEOUT answers with the one set).
    pub min_timeout_s: i32,
    /// Every open is refused with EACCES, as a device the agent's user
    /// may not open is (a root test cannot be refused by permissions).
    pub deny: bool,
}

#[derive(Default)]
struct State {
    open: bool,
    /// The timer runs (opened, not stopped by a magic close).
    running: bool,
    timeout_s: i32,
    last_feed: Option<Instant>,
    expect_close: bool,
    seen: Vec<Seen>,
}

impl State {
    fn note(&mut self, op: Op) {
        self.seen.push(Seen {
            at_ms: unix_ms(),
            op,
        });
    }

    fn feed(&mut self) {
        self.last_feed = Some(Instant::now());
        self.note(Op::Feed);
    }
}

/// A mounted stand-in device at [`FakeWatchdog::path`]; unmounted when
/// dropped.
pub struct FakeWatchdog {
    pub path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    session: Option<fuser::BackgroundSession>,
    dir: tempfile::TempDir,
}

const ROOT: INodeNo = INodeNo::ROOT;
const DEVICE: INodeNo = INodeNo(2);
const NAME: &str = "watchdog";
const WATCHDOG_IDENTITY: &[u8] = b"warden test watchdog";

// The watchdog's ioctls (linux/watchdog.h), as the kernel hands them on.
const WDIOC_GETSUPPORT: u64 = nix::request_code_read!(b'W', 0, 40);
const WDIOC_KEEPALIVE: u64 = nix::request_code_read!(b'W', 5, 4);
const WDIOC_SETTIMEOUT: u64 = nix::request_code_readwrite!(b'W', 6, 4);
const WDIOC_GETTIMEOUT: u64 = nix::request_code_read!(b'W', 7, 4);
const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_MAGICCLOSE: u32 = 0x0100;
const WDIOF_KEEPALIVEPING: u32 = 0x8000;

/// Whether the stand-in cannot be had here (no `/dev/fuse`): the test
/// says so and skips. Where `/dev/fuse` exists, a mount that fails fails
/// the test.
pub fn unavailable(test: &str) -> bool {
    if std::path::Path::new("/dev/fuse").exists() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: there is no /dev/fuse on this machine, so the stand-in watchdog \
         device cannot be mounted"
    );
    true
}

impl FakeWatchdog {
    /// Mount a device that behaves as `behaviour` says. Fails the test if
    /// FUSE cannot be mounted (this machine and CI can: root, /dev/fuse).
    pub fn mount(behaviour: Behaviour) -> FakeWatchdog {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = Arc::new(Mutex::new(State {
            timeout_s: 60,
            ..State::default()
        }));
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("warden-test-watchdog".into())];
        let session = fuser::spawn_mount(
            Device {
                state: state.clone(),
                behaviour,
            },
            dir.path(),
            &config,
        )
        .unwrap_or_else(|err| {
            panic!(
                "mounting the stand-in watchdog device (FUSE) at {}: {err}; the watchdog \
                 tests need /dev/fuse and root",
                dir.path().display()
            )
        });
        let stop = Arc::new(AtomicBool::new(false));
        // The device's timer: fires once per run of the timer when no feed
        // came within the timeout.
        {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    let mut state = lock(&state);
                    let timeout = Duration::from_secs(state.timeout_s.max(0) as u64);
                    if state.running && state.last_feed.is_some_and(|fed| fed.elapsed() > timeout) {
                        state.running = false;
                        state.note(Op::Fired);
                    }
                }
            });
        }
        FakeWatchdog {
            path: dir.path().join(NAME),
            state,
            stop,
            session: Some(session),
            dir,
        }
    }

    /// Everything the device saw so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// Whether someone holds it open now.
    pub fn is_open(&self) -> bool {
        lock(&self.state).open
    }

    /// Whether its timer runs now (it would reset the node when it runs out).
    pub fn is_running(&self) -> bool {
        lock(&self.state).running
    }

    /// When it fired, if it did.
    pub fn fired_at(&self) -> Option<u64> {
        self.seen()
            .iter()
            .find(|s| s.op == Op::Fired)
            .map(|s| s.at_ms)
    }

    /// How many feeds it has had so far.
    pub fn feeds(&self) -> usize {
        self.seen().iter().filter(|s| s.op == Op::Feed).count()
    }

    /// Hold it open from this process, as a watchdog daemon would: every
    /// other opener gets EBUSY until the returned file is closed (with the
    /// magic `V`, so its timer stops).
    pub fn hold_open(&self) -> HeldOpen {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open the stand-in device");
        HeldOpen(file)
    }
}

/// The stand-in device held open by the test ([`FakeWatchdog::hold_open`]).
pub struct HeldOpen(std::fs::File);

impl Drop for HeldOpen {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = self.0.write(b"V");
    }
}

impl Drop for FakeWatchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(session) = self.session.take()
            && session.umount_and_join().is_err()
        {
            // Still open elsewhere (a guard outliving its killed agent
            // until its vouch runs out): detach it lazily instead.
            use std::os::unix::ffi::OsStrExt;
            if let Ok(path) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) {
                // SAFETY: a valid C string; no memory is handed over.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Device {
    state: Arc<Mutex<State>>,
    behaviour: Behaviour,
}

fn attr(ino: INodeNo) -> FileAttr {
    let (kind, perm, nlink) = if ino == ROOT {
        (FileType::Directory, 0o755, 2)
    } else {
        (FileType::RegularFile, 0o600, 1)
    };
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        rdev: 0,
        flags: 0,
        blksize: 512,
    }
}

const TTL: Duration = Duration::from_secs(1);

impl Filesystem for Device {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == NAME {
            reply.entry(&TTL, &attr(DEVICE), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == ROOT || ino == DEVICE {
            reply.attr(&TTL, &attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != DEVICE {
            reply.error(Errno::EISDIR);
            return;
        }
        let mut state = lock(&self.state);
        if self.behaviour.deny {
            reply.error(Errno::EACCES);
            return;
        }
        if state.open {
            state.note(Op::Busy);
            reply.error(Errno::EBUSY);
            return;
        }
        state.open = true;
        state.running = true;
        state.expect_close = false;
        state.last_feed = Some(Instant::now());
        state.note(Op::Open);
        // Every write reaches the device, as with a character device.
        reply.opened(FileHandle(1), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = lock(&self.state);
        state.expect_close = data.contains(&b'V');
        if state.expect_close {
            state.note(Op::Magic);
        }
        if state.running {
            state.feed();
        }
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = lock(&self.state);
        let stopped = state.expect_close;
        if stopped {
            state.running = false;
        }
        state.open = false;
        state.expect_close = false;
        state.note(Op::Close { stopped });
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let mut state = lock(&self.state);
        match u64::from(cmd) {
            WDIOC_GETSUPPORT => {
                let mut info = [0u8; 40];
                let options = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING;
                info[..4].copy_from_slice(&options.to_ne_bytes());
                info[8..8 + WATCHDOG_IDENTITY.len()].copy_from_slice(WATCHDOG_IDENTITY);
                reply.ioctl(0, &info);
            }
            WDIOC_KEEPALIVE => {
                state.feed();
                reply.ioctl(0, &0i32.to_ne_bytes());
            }
            WDIOC_SETTIMEOUT => {
                let Ok(bytes) = <[u8; 4]>::try_from(in_data) else {
                    reply.error(Errno::EINVAL);
                    return;
                };
                let asked = i32::from_ne_bytes(bytes);
                if asked < 1 {
                    reply.error(Errno::EINVAL);
                    return;
                }
                let set = asked.max(self.behaviour.min_timeout_s);
                state.timeout_s = set;
                state.note(Op::SetTimeout { asked, set });
                state.last_feed = Some(Instant::now());
                reply.ioctl(0, &set.to_ne_bytes());
            }
            WDIOC_GETTIMEOUT => reply.ioctl(0, &state.timeout_s.to_ne_bytes()),
            other => {
                state.note(Op::Unknown(other as u32));
                reply.error(Errno::ENOTTY);
            }
        }
    }
}
