//! SIGTERM and SIGINT, turned into an ordinary function call on a thread.
//!
//! Why: a supervisor stops a service with SIGTERM and expects a clean exit
//! (status 0) after the service has put its state in order; the store writes
//! its `CLEAN` marker then. A signal handler may do almost nothing safely, so
//! it only writes the signal number into a pipe (the self-pipe trick); a
//! normal thread blocked on the other end runs the shutdown code, where
//! taking locks and doing I/O is fine. std has no signal API, hence `libc`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `b` outlives the call. If
        // the pipe is full a shutdown is already pending, so losing this
        // byte is harmless.
        unsafe {
            libc::write(fd, (&raw const b).cast(), 1);
        }
    }
}

/// Runs `shutdown` (on its own thread) at the first SIGTERM or SIGINT; it
/// gets the signal's name. `shutdown` is expected to end the process.
/// Call once per process.
pub fn on_terminate<F>(shutdown: F) -> io::Result<()>
where
    F: FnOnce(&'static str) + Send + 'static,
{
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in fds {
        // SAFETY: plain fcntl on descriptors we own; keeps them out of children.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    if WRITE_FD
        .compare_exchange(-1, fds[1], Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(io::Error::other("signal handling is already installed"));
    }
    // SAFETY: fds[0] is a fresh descriptor that nothing else owns.
    let mut reader = unsafe { File::from_raw_fd(fds[0]) };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // starting point; the handler is an `extern "C" fn(c_int)` that only
        // does async-signal-safe work.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            loop {
                match reader.read(&mut b) {
                    Ok(1) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // The write end never closes while the process lives.
                    _ => return,
                }
            }
            let name = match i32::from(b[0]) {
                libc::SIGTERM => "SIGTERM",
                libc::SIGINT => "SIGINT",
                _ => "signal",
            };
            shutdown(name);
        })?;
    Ok(())
}
