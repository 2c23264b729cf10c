//! Starting a program without copying the agent: `clone(CLONE_VM |
//! CLONE_VFORK)`, what glibc's `posix_spawn` does inside, plus what
//! `posix_spawn` cannot do (a user, a working directory given as a
//! descriptor, death with the agent).
//!
//! Why not `fork`: a fork copies the page tables of every mapping the agent
//! holds (about five per resource: its memory, guards and stacks) and the
//! child's `execve` tears that copy down again, so each start costs in
//! proportion to the resources already running, a mass start (a survivor
//! taking hundreds of groups over) is quadratic, and the tokio worker doing
//! the fork runs nothing else meanwhile (docs/benchmarks.md, "Starting a
//! service without forking the agent"). A child that shares the agent's
//! memory copies nothing; the calling thread is suspended (`CLONE_VFORK`)
//! until the child has called `execve` or died, about 0.1 ms whatever the
//! agent's size (`host/benches/spawn.rs`).
//!
//! A child that runs in the agent's memory lives by these rules, each kept
//! here:
//! - **Everything it needs is made before the clone**: the program, argv
//!   and envp as C strings and pointer arrays, every descriptor (stdin from
//!   `/dev/null`, the output, the working directory), the credentials. The
//!   child allocates nothing, takes no lock and touches nothing else.
//! - **It makes only system calls**: raw ones through `syscall(2)` where
//!   glibc's wrapper does more than the call (`setuid`, `setgid` and
//!   `setgroups`, whose wrappers would signal every thread of the agent to
//!   change its credentials too), glibc's thin async-signal-safe wrappers
//!   otherwise (`sigaction`, `setpgid`, `dup2`, `fchdir`, `prctl`,
//!   `getppid`, `execve`, `_exit`).
//! - **No handler of the agent's runs in it**: every signal is blocked in
//!   the calling thread across the clone (the child inherits that mask),
//!   and the child sets every handled signal back to its default (and
//!   SIGPIPE, which Rust's runtime ignores, as std's `Command` does) before
//!   it clears its mask just before `execve`.
//! - **A failure is one shared word**: the step that failed and its errno,
//!   then `_exit(127)`; the parent, resumed, turns them into a
//!   [`LaunchError`].
//!
//! The child inherits descriptors 0, 1 and 2 only: every descriptor the
//! agent opens is close-on-exec (Rust's std, tokio and this crate open
//! them so), and the child marks every other one close-on-exec before
//! `execve` (`close_range`), so that what the agent itself inherited
//! without the flag (a shell's leftovers) does not reach services either.
//! `host/tests/all/service_launch.rs` lists a service's `/proc/PID/fd`
//! and checks the agent's own descriptors' flags.
//!
//! Death with the agent (`PR_SET_PDEATHSIG`) fires when the *thread* that
//! made the child exits, not the process: launch from long-lived threads
//! (the agent's tokio workers, which live as long as the agent), never from
//! `spawn_blocking`, whose threads retire after ten idle seconds and would
//! take their children with them.
//!
//! Waiting: [`Child::wait`] polls a pidfd (`CLONE_PIDFD`, readable once the
//! child has exited) and reaps with `waitid(P_PIDFD)`: only this child's
//! status, never another's (nothing in the agent reaps with
//! `waitpid(-1)`). Needs Linux 5.4.

use std::collections::BTreeMap;
use std::ffi::{CString, c_int, c_long, c_void};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The child's stack. Its frames are a handful of small functions and
/// glibc's `sigaction` wrapper; 64 KiB is ample, and a guard page below
/// turns an overflow into a fault, not a write into the agent's memory.
const CHILD_STACK_BYTES: usize = 64 << 10;

/// Signals 1 to 64: the kernel's signal set on every 64-bit Linux target
/// the agent builds for (`_NSIG` is 65 there).
const SIGNALS: c_int = 64;

/// The size of the kernel's signal set, for `rt_sigprocmask`.
const KERNEL_SIGSET_BYTES: usize = std::mem::size_of::<u64>();

/// A program to start, every part of it ready before the clone.
#[derive(Debug)]
pub struct Launch {
    program: CString,
    program_text: PathBuf,
    args: Vec<CString>,
    env: BTreeMap<Vec<u8>, Vec<u8>>,
    cwd: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    run_as: Option<Credentials>,
    die_with_parent: bool,
}

/// The user and group a program runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The user id.
    pub uid: u32,
    /// The primary group id; the supplementary groups are dropped.
    pub gid: u32,
}

/// Why a program did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program is not an absolute path: the agent runs only the
    /// exact file the operator allowed, never one found on a PATH.
    #[error("{} is not an absolute path", .0.display())]
    NotAbsolute(PathBuf),
    /// A C string cannot carry a NUL byte.
    #[error("{what} holds a NUL byte")]
    Nul {
        /// "the program", "an argument", "the value of HOME".
        what: String,
    },
    /// An environment variable's name that `execve` would misread.
    #[error("environment variable name {0:?} is empty or holds '=' or a NUL byte")]
    BadName(String),
    /// The agent could not prepare the start (a descriptor, the child's
    /// stack, the clone itself).
    #[error("{step}: {source}")]
    Prepare {
        /// What the agent was doing.
        step: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// The child failed at `step` before its program ran; it has exited
    /// and been reaped.
    #[error("{}", child_failure(*.step, .source))]
    Child {
        /// The child's step that failed.
        step: Step,
        /// The system's error.
        source: io::Error,
    },
}

fn child_failure(step: Step, source: &io::Error) -> String {
    match step {
        // "No such file or directory (os error 2)", as std's spawn said.
        Step::Exec => source.to_string(),
        other => format!("{other}: {source}"),
    }
}

/// What the child does between the clone and `execve`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Every handled signal (and SIGPIPE) back to its default.
    ResetSignals = 1,
    /// `setpgid(0, 0)`: a process group of its own, so that a stop reaches
    /// what it forks.
    ProcessGroup,
    /// Descriptors 0, 1 and 2.
    Stdio,
    /// `setgroups(0)`: no supplementary groups.
    DropGroups,
    /// `setgid`.
    SetGid,
    /// `setuid`.
    SetUid,
    /// `fchdir` to the working directory (as the program's user).
    WorkingDirectory,
    /// Every descriptor above 2 marked close-on-exec.
    CloseOthers,
    /// `PR_SET_PDEATHSIG`, after the credentials: a change of credentials
    /// clears it.
    DeathSignal,
    /// The agent died before the death signal was set.
    ParentGone,
    /// The signal mask cleared.
    UnblockSignals,
    /// `execve`.
    Exec,
}

impl Step {
    const ALL: [Step; 12] = [
        Step::ResetSignals,
        Step::ProcessGroup,
        Step::Stdio,
        Step::DropGroups,
        Step::SetGid,
        Step::SetUid,
        Step::WorkingDirectory,
        Step::CloseOthers,
        Step::DeathSignal,
        Step::ParentGone,
        Step::UnblockSignals,
        Step::Exec,
    ];

    fn from_code(code: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|step| *step as u8 == code)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::ResetSignals => "resetting its signal handlers",
            Step::ProcessGroup => "setpgid (a process group of its own)",
            Step::Stdio => "dup2 of its stdin, stdout or stderr",
            Step::DropGroups => "setgroups (dropping supplementary groups)",
            Step::SetGid => "setgid",
            Step::SetUid => "setuid",
            Step::WorkingDirectory => "fchdir to its working directory",
            Step::CloseOthers => "close_range (closing the agent's other descriptors)",
            Step::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            Step::ParentGone => "the agent died before it started",
            Step::UnblockSignals => "unblocking signals",
            Step::Exec => "execve",
        })
    }
}

impl Launch {
    /// Start `program` (an absolute path) with no arguments, an empty
    /// environment, stdin from `/dev/null`, output discarded, in the
    /// agent's working directory, as the agent's user.
    pub fn new(program: &Path) -> Result<Launch, LaunchError> {
        if !program.is_absolute() {
            return Err(LaunchError::NotAbsolute(program.to_path_buf()));
        }
        let c_program =
            CString::new(program.as_os_str().as_bytes()).map_err(|_| LaunchError::Nul {
                what: "the program".to_string(),
            })?;
        Ok(Launch {
            // argv[0] is the program as given, as std's Command sets it.
            args: vec![c_program.clone()],
            program: c_program,
            program_text: program.to_path_buf(),
            env: BTreeMap::new(),
            cwd: None,
            stdout: None,
            stderr: None,
            run_as: None,
            die_with_parent: false,
        })
    }

    /// Add an argument.
    pub fn arg(&mut self, arg: &str) -> Result<&mut Launch, LaunchError> {
        let arg = CString::new(arg).map_err(|_| LaunchError::Nul {
            what: "an argument".to_string(),
        })?;
        self.args.push(arg);
        Ok(self)
    }

    /// Set an environment variable; a later value for the same name
    /// replaces the earlier (the operator's, then the plugin's).
    pub fn env(&mut self, name: &str, value: &str) -> Result<&mut Launch, LaunchError> {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(LaunchError::BadName(name.to_string()));
        }
        if value.contains('\0') {
            return Err(LaunchError::Nul {
                what: format!("the value of {name}"),
            });
        }
        self.env
            .insert(name.as_bytes().to_vec(), value.as_bytes().to_vec());
        Ok(self)
    }

    /// Run in the directory `dir` is open on (entered with `fchdir`, so no
    /// path is looked up between the check that opened it and the start).
    pub fn cwd(&mut self, dir: OwnedFd) -> &mut Launch {
        self.cwd = Some(dir);
        self
    }

    /// Where the program's stdout goes.
    pub fn stdout(&mut self, fd: OwnedFd) -> &mut Launch {
        self.stdout = Some(fd);
        self
    }

    /// Where the program's stderr goes.
    pub fn stderr(&mut self, fd: OwnedFd) -> &mut Launch {
        self.stderr = Some(fd);
        self
    }

    /// Run as this user and group, with no supplementary groups (dropped
    /// when the agent may drop them, as std's `Command` does).
    pub fn run_as(&mut self, credentials: Credentials) -> &mut Launch {
        self.run_as = Some(credentials);
        self
    }

    /// Kill the program (SIGKILL) when the thread that starts it exits,
    /// which for a tokio worker is when the agent does (see the module's
    /// note on threads).
    pub fn die_with_parent(&mut self) -> &mut Launch {
        self.die_with_parent = true;
        self
    }

    /// Start the program. Returns once it runs (its `execve` succeeded)
    /// or with the reason it did not, the child reaped.
    pub fn start(&self) -> Result<Child, LaunchError> {
        let prepare =
            |step: &'static str| move |source: io::Error| LaunchError::Prepare { step, source };
        let envp: Vec<CString> = self
            .env
            .iter()
            .map(|(name, value)| {
                let mut pair = Vec::with_capacity(name.len() + 1 + value.len());
                pair.extend_from_slice(name);
                pair.push(b'=');
                pair.extend_from_slice(value);
                // Checked in `env`: no NUL in a name or a value.
                CString::new(pair).map_err(|_| LaunchError::Nul {
                    what: "an environment variable".to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let argv = null_terminated(&self.args);
        let envp_ptrs = null_terminated(&envp);

        // Copies made here (of a descriptor numbered 0 to 2, or /dev/null)
        // live until the child has exec'd.
        let mut held: Vec<OwnedFd> = Vec::new();
        let stdin = open_dev_null(false).map_err(prepare("opening /dev/null"))?;
        let stdin = hold_above_stdio(stdin, &mut held).map_err(prepare("copying stdin above 2"))?;
        let mut output = |given: &Option<OwnedFd>, what: &'static str| match given {
            Some(fd) => above_stdio(fd.as_fd(), &mut held).map_err(prepare(what)),
            None => {
                let discard = open_dev_null(true).map_err(prepare("opening /dev/null"))?;
                hold_above_stdio(discard, &mut held).map_err(prepare(what))
            }
        };
        let stdout = output(&self.stdout, "copying stdout above 2")?;
        let stderr = output(&self.stderr, "copying stderr above 2")?;
        let cwd = match &self.cwd {
            Some(dir) => above_stdio(dir.as_fd(), &mut held)
                .map_err(prepare("copying the working directory above 2"))?,
            None => -1,
        };

        let plan = ChildPlan {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp_ptrs.as_ptr(),
            stdin,
            stdout,
            stderr,
            cwd,
            run_as: self.run_as,
            parent: if self.die_with_parent {
                // SAFETY: getpid has no preconditions.
                Some(unsafe { libc::getpid() })
            } else {
                None
            },
            failed_step: AtomicU8::new(0),
            errno: AtomicI32::new(0),
        };
        let stack = ChildStack::new().map_err(prepare("mapping the child's stack"))?;

        let mut pidfd: c_int = -1;
        let blocked = BlockedSignals::all().map_err(prepare("blocking signals"))?;
        // SAFETY: `child_main` is an `extern "C" fn(*mut c_void) -> c_int`
        // that reads `plan` only through a shared reference; `plan`, the
        // C strings and pointer arrays it points into, and the descriptors
        // live in this frame, which outlives the child's use of them:
        // CLONE_VFORK suspends this thread until the child has called
        // execve (and so no longer uses this memory) or has exited.
        // `stack.top()` is the 16-byte-aligned top of a mapping of
        // CHILD_STACK_BYTES that nothing else uses, unmapped only after
        // clone returns. CLONE_PIDFD writes the pidfd into `pidfd`, a
        // c_int of this frame, as the parent-tid argument; the TLS and
        // child-tid arguments are unused with these flags.
        let pid = unsafe {
            libc::clone(
                child_main,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                ptr::from_ref(&plan).cast_mut().cast::<c_void>(),
                ptr::from_mut(&mut pidfd),
                ptr::null_mut::<c_void>(),
                ptr::null_mut::<c_int>(),
            )
        };
        // Read at once, and only if clone failed: once a child ran, errno
        // is the child's (it shares this thread's TLS).
        let clone_error = io::Error::last_os_error();
        drop(blocked);
        drop(stack);
        if pid == -1 {
            return Err(LaunchError::Prepare {
                step: "clone",
                source: clone_error,
            });
        }
        // SAFETY: clone succeeded with CLONE_PIDFD, so the kernel stored a
        // new close-on-exec pidfd that nothing else owns in `pidfd`.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let child = Child {
            pid: pid as u32,
            pidfd,
        };
        let failed = plan.failed_step.load(Ordering::SeqCst);
        if failed != 0 {
            let errno = plan.errno.load(Ordering::SeqCst);
            // The child records a failed step only on its way to _exit:
            // it has exited (or is about to); reap it.
            let _ = child.wait_blocking();
            return Err(LaunchError::Child {
                step: Step::from_code(failed).unwrap_or(Step::Exec),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(child)
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        &self.program_text
    }
}

/// A started program: its pid and a pidfd to wait on.
///
/// Dropping it without [`wait`](Child::wait) leaves a zombie once the
/// program exits, until the agent does; the agent's process slot always
/// waits.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: OwnedFd,
}

impl Child {
    /// The process id (also its process group's).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Wait for the program to exit and reap it: its exit code or the
    /// signal that killed it. Poll it in a tokio runtime with I/O enabled
    /// (the agent's); outside one it blocks the calling thread.
    pub async fn wait(self) -> io::Result<ExitStatus> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.wait_blocking();
        }
        // SAFETY: an OwnedFd is open until dropped and always returns the
        // same descriptor; the AsyncFd owns it from here on.
        let registered = unsafe { AsyncFd::register_with_interest(self.pidfd, Interest::READABLE) };
        let pidfd = match registered {
            Ok(pidfd) => pidfd,
            // epoll refused the descriptor: wait on a blocking thread
            // instead (reaping needs no particular thread).
            Err(refused) => {
                let (pidfd, _why) = refused.into_parts();
                let child = Child {
                    pid: self.pid,
                    pidfd,
                };
                return tokio::task::spawn_blocking(move || child.wait_blocking())
                    .await
                    .map_err(io::Error::other)?;
            }
        };
        loop {
            let mut ready = pidfd.readable().await?;
            if let Some(status) = reap(pidfd.get_ref().as_fd(), libc::WNOHANG)? {
                return Ok(status);
            }
            ready.clear_ready();
        }
    }

    /// Wait for the program to exit on this thread, blocking it.
    pub fn wait_blocking(self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = reap(self.pidfd.as_fd(), 0)? {
                return Ok(status);
            }
        }
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED | flags)`: the status if the process
/// has exited (and is now reaped), None if it still runs (with WNOHANG).
fn reap(pidfd: BorrowedFd<'_>, flags: c_int) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data, for which all zero bytes are valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid siginfo_t to write into; the pidfd is
        // open for the duration of the call (borrowed).
        let done = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | flags,
            )
        };
        if done == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    // SAFETY: waitid filled `info` in for a child event (or left it zero
    // with WNOHANG): its SIGCHLD fields are the ones to read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // Encoded as waitpid's status, which ExitStatus holds.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status & 0x7f,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        other => {
            return Err(io::Error::other(format!(
                "waitid reported child event {other}, not an exit"
            )));
        }
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

/// What the child reads: raw pointers and numbers only, into memory the
/// parent keeps alive (and unchanged) until the child has exec'd or exited.
struct ChildPlan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// -1: stay in the agent's working directory.
    cwd: RawFd,
    run_as: Option<Credentials>,
    /// The agent's pid, when the child must die with it.
    parent: Option<libc::pid_t>,
    /// The step that failed (`Step as u8`), 0 if none.
    failed_step: AtomicU8,
    /// Its errno.
    errno: AtomicI32,
}

/// The child, on its own stack in the agent's memory. Never returns: it
/// becomes the program or exits 127.
extern "C" fn child_main(plan: *mut c_void) -> c_int {
    // SAFETY: `plan` is the `ChildPlan` that `Launch::start` passed to
    // clone; it lives, unchanged, in the suspended parent's frame until
    // this child execs or exits.
    let plan = unsafe { &*plan.cast_const().cast::<ChildPlan>() };
    // SAFETY: `run_child` makes only system calls on the prepared values
    // (see its own comments); it returns only on a failure.
    let (step, errno) = unsafe { run_child(plan) };
    plan.errno.store(errno, Ordering::SeqCst);
    plan.failed_step.store(step as u8, Ordering::SeqCst);
    // SAFETY: _exit ends this process at once (exit_group of a thread
    // group of one: this child), running nothing of the agent's.
    unsafe { libc::_exit(127) }
}

/// errno, after a call that returned -1. glibc keeps it in the calling
/// thread's TLS; the child runs with its parent thread's TLS pointer, a
/// thread suspended until the child is gone, so nothing else reads or
/// writes it meanwhile.
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always
    // valid to read.
    unsafe { *libc::__errno_location() }
}

/// Every step of the child but the last, which does not return on
/// success; returns the step that failed and its errno.
///
/// # Safety
///
/// Call only in the child of `Launch::start`'s clone, with its plan: the
/// pointers are valid, NUL-terminated and null-terminated as `execve`
/// needs, and the descriptors are open and 3 or above.
unsafe fn run_child(plan: &ChildPlan) -> (Step, i32) {
    // SAFETY (for each call below): each is a system call (through a glibc
    // wrapper that only issues it, or raw through syscall(2)) on numbers
    // and on pointers to this frame's locals or to the plan's prepared
    // strings; none allocates, locks or runs a handler.
    unsafe {
        for signal in 1..=SIGNALS {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            // glibc refuses its own internal signals (32 and 33, sent only
            // with tgkill to the agent's threads, never to this new one):
            // skip what cannot be read.
            if libc::sigaction(signal, ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            let ignored_pipe = signal == libc::SIGPIPE && old.sa_sigaction == libc::SIG_IGN;
            if handled || ignored_pipe {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                if libc::sigaction(signal, &default, ptr::null_mut()) != 0 {
                    return (Step::ResetSignals, errno());
                }
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return (Step::ProcessGroup, errno());
        }
        for (from, to) in [(plan.stdin, 0), (plan.stdout, 1), (plan.stderr, 2)] {
            // `from` is 3 or above, so never `to`: dup2 makes a new
            // descriptor without close-on-exec.
            if libc::dup2(from, to) == -1 {
                return (Step::Stdio, errno());
            }
        }
        if let Some(Credentials { uid, gid }) = plan.run_as {
            // As std's Command: the supplementary groups are dropped where
            // the agent may drop them (root); elsewhere setgroups fails
            // with EPERM and is let go (setgid and setuid then decide).
            let no_groups: *const libc::gid_t = ptr::null();
            if libc::syscall(libc::SYS_setgroups, 0 as c_long, no_groups) != 0
                && errno() != libc::EPERM
            {
                return (Step::DropGroups, errno());
            }
            if libc::syscall(libc::SYS_setgid, c_long::from(gid)) != 0 {
                return (Step::SetGid, errno());
            }
            if libc::syscall(libc::SYS_setuid, c_long::from(uid)) != 0 {
                return (Step::SetUid, errno());
            }
        }
        if plan.cwd >= 0 && libc::fchdir(plan.cwd) != 0 {
            return (Step::WorkingDirectory, errno());
        }
        // Every descriptor the agent opens is close-on-exec already; this
        // also closes at exec what the agent inherited from its own parent
        // without the flag. Marking is cheap (a bitmap; exec closes them
        // as it would have closed the agent's). Before Linux 5.11 the
        // flag is unknown (EINVAL, or ENOSYS before 5.9), and a seccomp
        // filter older than the call may deny it (EPERM, as systemd's
        // SystemCallErrorNumber): then close-on-exec alone holds.
        if libc::syscall(
            libc::SYS_close_range,
            3 as c_long,
            c_long::from(u32::MAX),
            c_long::from(libc::CLOSE_RANGE_CLOEXEC),
        ) != 0
            && !matches!(errno(), libc::EINVAL | libc::ENOSYS | libc::EPERM)
        {
            return (Step::CloseOthers, errno());
        }
        if let Some(parent) = plan.parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_long, 0, 0, 0) != 0 {
                return (Step::DeathSignal, errno());
            }
            // The agent may have died before the call above, and this
            // child been handed to another parent.
            if libc::getppid() != parent {
                return (Step::ParentGone, libc::ESRCH);
            }
        }
        let nothing: u64 = 0;
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as c_long,
            ptr::from_ref(&nothing),
            ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        ) != 0
        {
            return (Step::UnblockSignals, errno());
        }
        libc::execve(plan.program, plan.argv, plan.envp);
        (Step::Exec, errno())
    }
}

/// Every signal blocked in the calling thread until dropped, with the
/// raw system call: glibc's `pthread_sigmask` would leave its own two
/// internal signals unblocked.
struct BlockedSignals {
    previous: u64,
}

impl BlockedSignals {
    fn all() -> io::Result<BlockedSignals> {
        let every: u64 = !0;
        let mut previous: u64 = 0;
        // SAFETY: rt_sigprocmask reads `every` and writes `previous`, two
        // u64 of this frame, the kernel's signal set size on this target.
        let done = unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as c_long,
                ptr::from_ref(&every),
                ptr::from_mut(&mut previous),
                KERNEL_SIGSET_BYTES,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(BlockedSignals { previous })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: as in `all`; the mask this thread had before is restored.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as c_long,
                ptr::from_ref(&self.previous),
                ptr::null_mut::<u64>(),
                KERNEL_SIGSET_BYTES,
            );
        }
    }
}

/// The child's stack: an anonymous mapping with a guard page below,
/// unmapped when dropped.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096).max(4096)
    })
}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        let page = page_size();
        let len = CHILD_STACK_BYTES.next_multiple_of(page) + page;
        // SAFETY: a fresh private anonymous mapping: no address asked for,
        // nothing of the process's replaced.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made, nothing else's.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top of the stack (it grows down), 16-byte aligned as every ABI
    /// here wants (the mapping's length is a multiple of the page size).
    fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, of `len` bytes, used by no one
        // once clone has returned.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Pointers to `strings`, then a null, as execve takes argv and envp.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// `/dev/null`, close-on-exec (std opens every file so).
fn open_dev_null(write: bool) -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?;
    Ok(file.into())
}

/// The number of `fd` if it is 3 or above, else of a close-on-exec copy
/// that is (kept in `held`), so that the child's dup2 onto 0, 1 and 2
/// never overwrites a descriptor it has yet to use (an agent started with
/// its stdio closed opens its files there).
fn above_stdio(fd: BorrowedFd<'_>, held: &mut Vec<OwnedFd>) -> io::Result<RawFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd.as_raw_fd());
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor makes a new one that
    // nothing else owns.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` was just made and is owned by no one else.
    held.push(unsafe { OwnedFd::from_raw_fd(copy) });
    Ok(copy)
}

/// [`above_stdio`] for a descriptor opened for this start: it is kept in
/// `held` (or its copy is) until the child has exec'd.
fn hold_above_stdio(fd: OwnedFd, held: &mut Vec<OwnedFd>) -> io::Result<RawFd> {
    let raw = above_stdio(fd.as_fd(), held)?;
    if raw == fd.as_raw_fd() {
        held.push(fd);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_execve_would_misread_is_refused_before_anything_starts() {
        assert!(matches!(
            Launch::new(Path::new("sh")),
            Err(LaunchError::NotAbsolute(_))
        ));
        assert!(matches!(
            Launch::new(Path::new("/bin/sh\0x")),
            Err(LaunchError::Nul { .. })
        ));
        let mut launch = Launch::new(Path::new("/bin/sh")).expect("absolute");
        assert!(matches!(launch.arg("a\0b"), Err(LaunchError::Nul { .. })));
        for name in ["", "A=B", "A\0"] {
            assert!(matches!(
                launch.env(name, "v"),
                Err(LaunchError::BadName(_))
            ));
        }
        let err = launch.env("HOME", "/\0").expect_err("a NUL in a value");
        assert_eq!(err.to_string(), "the value of HOME holds a NUL byte");
    }

    /// Many children started at once from several threads, each exiting
    /// with its own code: every wait gets its own child's status, through
    /// its own pidfd.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_starts_each_get_their_own_exit_status() {
        let mut waits = Vec::new();
        for code in 0..120u32 {
            waits.push(tokio::spawn(async move {
                let mut launch = Launch::new(Path::new("/bin/sh")).expect("absolute");
                launch
                    .arg("-c")
                    .and_then(|l| l.arg(&format!("exit {code}")))
                    .expect("args");
                let child = launch.start().expect("sh starts");
                (code, child.wait().await.expect("reaped"))
            }));
        }
        for wait in waits {
            let (code, status) = wait.await.expect("task");
            assert_eq!(status.code(), Some(code as i32), "{status}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signal_and_a_failed_exec_come_back_as_they_happened() {
        let mut launch = Launch::new(Path::new("/bin/sh")).expect("absolute");
        launch
            .arg("-c")
            .and_then(|l| l.arg("kill -TERM $$"))
            .expect("args");
        let status = launch
            .start()
            .expect("sh starts")
            .wait()
            .await
            .expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");

        let err = Launch::new(Path::new("/no/such/program"))
            .expect("absolute")
            .start()
            .expect_err("nothing to run");
        assert!(
            matches!(
                err,
                LaunchError::Child {
                    step: Step::Exec,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "No such file or directory (os error 2)");

        // A working directory the program's user may not enter.
        if nix::unistd::geteuid().is_root()
            && let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody")
        {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .expect("chmod");
            let mut launch = Launch::new(Path::new("/bin/true")).expect("absolute");
            launch
                .cwd(std::fs::File::open(dir.path()).expect("open").into())
                .run_as(Credentials {
                    uid: nobody.uid.as_raw(),
                    gid: nobody.gid.as_raw(),
                });
            let err = launch
                .start()
                .expect_err("nobody cannot enter a 0700 root directory");
            assert_eq!(
                err.to_string(),
                "fchdir to its working directory: Permission denied (os error 13)"
            );
        }
    }
}
