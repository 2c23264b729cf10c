//! The Linux watchdog device (`/dev/watchdog`: softdog or a hardware
//! timer), the last layer of fencing: armed while this node owns groups or
//! runs services, fed by the fence guard only while the agent's vouch for
//! its lease holds, so a node whose agent *and* guard are frozen (a hung
//! kernel, a cgroup freezer, services the guard cannot kill) is reset by
//! the device before its lease can expire and another node take its
//! groups, as sbd does for Pacemaker.
//!
//! The device's interface (`linux/watchdog.h`): opening it starts the
//! timer; `WDIOC_SETTIMEOUT` asks for a timeout in whole seconds and the
//! driver answers with the one it set (it may round); a keep-alive
//! (`WDIOC_KEEPALIVE`, or any write) restarts the timer; writing `V` and
//! closing it (the *magic close*) stops it. Closing without the `V`, or the
//! process dying, leaves it running: the node is reset when it runs out.
//!
//! What a device is is judged by its answers, not by its file type: a path
//! that does not answer the watchdog's ioctls (a regular file, `/dev/null`,
//! a FIFO) is refused as "not a watchdog device" before anything is
//! written to it.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use nix::errno::Errno;

/// `struct watchdog_info`, the answer to `WDIOC_GETSUPPORT`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchdogInfo {
    /// The `WDIOF_*` options the device supports.
    pub options: u32,
    /// The firmware's version, as the driver reports it.
    pub firmware_version: u32,
    /// The driver's name, NUL-padded.
    pub identity: [u8; 32],
}

/// The driver can set its timeout (`WDIOF_SETTIMEOUT`).
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// The driver stops on a close after a `V` (`WDIOF_MAGICCLOSE`).
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;
/// The driver takes `WDIOC_KEEPALIVE` (`WDIOF_KEEPALIVEPING`).
pub const WDIOF_KEEPALIVEPING: u32 = 0x8000;

mod ioctl {
    use super::WatchdogInfo;
    use std::os::raw::c_int;
    nix::ioctl_read!(get_support, b'W', 0, WatchdogInfo);
    nix::ioctl_read!(keepalive, b'W', 5, c_int);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, c_int);
}

/// The watchdog timeout for a lease TTL `ttl`: a third of it, in whole
/// seconds (the device's unit), rounded down. With the guard feeding only
/// until its vouch ends (at most 7/12 of the TTL after the renewal was
/// sent), the reset comes by 7/12 + 4/12 = 11/12 of the TTL, before etcd
/// can expire the lease (docs/cluster.md has the whole arithmetic). None
/// when the TTL is too short for a whole second.
pub fn timeout_for(ttl: Duration) -> Option<u32> {
    let seconds = ttl.as_secs() / 3;
    u32::try_from(seconds).ok().filter(|s| *s >= 1)
}

/// Check that the device can be armed with the timeout asked, by arming
/// and at once disarming it: a device that is missing, busy, forbidden,
/// not a watchdog, or unable to fire that soon is an error naming it.
pub fn check(setup: &super::guard::WatchdogSetup) -> Result<()> {
    let armed = Armed::arm(&setup.device, setup.timeout_s)?;
    tracing::info!(
        device = %setup.device.display(),
        timeout = ?armed.timeout(),
        "the watchdog device can be armed; the fence guard arms it while this node owns \
         groups or runs services"
    );
    armed.disarm()
}

/// An open, armed watchdog device: it resets the node unless fed within
/// `timeout`, until [`Armed::disarm`].
#[derive(Debug)]
pub struct Armed {
    file: File,
    path: PathBuf,
    timeout: Duration,
    keepalive_ioctl: bool,
}

impl Armed {
    /// Open `path` and arm it with a timeout of `seconds`. Refused, the
    /// device disarmed again (if it is one), when it cannot do a timeout
    /// that short; every error names the device and what is wrong.
    pub fn arm(path: &Path, seconds: u32) -> Result<Armed> {
        let shown = path.display();
        let file = std::fs::OpenOptions::new()
            .write(true)
            // Never wait (a FIFO without a reader), never become a
            // terminal's controlling process.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|err| open_error(path, err))?;
        let mut info = WatchdogInfo::default();
        // SAFETY: a valid descriptor and a struct of the kernel's layout.
        if let Err(errno) = unsafe { ioctl::get_support(file.as_raw_fd(), &mut info) } {
            // Nothing has been written: a file that is not a watchdog is
            // left as it was.
            bail!(
                "watchdog device {shown}: not a watchdog device (it does not answer the \
                 watchdog's WDIOC_GETSUPPORT: {errno})"
            );
        }
        // From here on it is a watchdog, and opening it started it: every
        // refusal disarms it again.
        let armed = Armed {
            file,
            path: path.to_path_buf(),
            timeout: Duration::from_secs(u64::from(seconds)),
            keepalive_ioctl: info.options & WDIOF_KEEPALIVEPING != 0,
        };
        let identity = identity(&info);
        if info.options & WDIOF_SETTIMEOUT == 0 {
            armed.disarm_quietly();
            bail!(
                "watchdog device {shown} ({identity}): its timeout cannot be set \
                 (no WDIOF_SETTIMEOUT), so it cannot be made to reset the node within {seconds} s"
            );
        }
        let mut asked = seconds as libc::c_int;
        // SAFETY: a valid descriptor and an int, as the ioctl takes.
        if let Err(errno) = unsafe { ioctl::set_timeout(armed.file.as_raw_fd(), &mut asked) } {
            armed.disarm_quietly();
            bail!(
                "watchdog device {shown} ({identity}): refused a timeout of {seconds} s \
                 (WDIOC_SETTIMEOUT: {errno}); {}",
                ttl_advice(seconds)
            );
        }
        let mut set: libc::c_int = 0;
        // SAFETY: as above.
        if let Err(errno) = unsafe { ioctl::get_timeout(armed.file.as_raw_fd(), &mut set) } {
            armed.disarm_quietly();
            bail!(
                "watchdog device {shown} ({identity}): could not read back its timeout \
                 (WDIOC_GETTIMEOUT: {errno})"
            );
        }
        if set < 1 || set as i64 > i64::from(seconds) {
            armed.disarm_quietly();
            bail!(
                "watchdog device {shown} ({identity}): asked for a timeout of {seconds} s, it \
                 set {set} s; it cannot reset the node that soon. {}",
                ttl_advice(set.max(1) as u32)
            );
        }
        let mut armed = armed;
        // A shorter timeout than asked is safe: fed as often as it needs.
        armed.timeout = Duration::from_secs(set as u64);
        armed.feed()?;
        Ok(armed)
    }

    /// The timeout the device set.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The device's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Restart the device's timer.
    pub fn feed(&mut self) -> Result<()> {
        let fed = if self.keepalive_ioctl {
            let mut ignored: libc::c_int = 0;
            // SAFETY: a valid descriptor and an int.
            unsafe { ioctl::keepalive(self.file.as_raw_fd(), &mut ignored) }.map(drop)
        } else {
            self.file
                .write(b"\n")
                .map(drop)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        };
        fed.map_err(|errno| {
            anyhow::anyhow!(
                "watchdog device {}: feeding it failed ({errno}); it resets the node within {:?} \
                 of the last feed",
                self.path.display(),
                self.timeout
            )
        })
    }

    /// Stop the device: the magic close (`V`, then close). An error means
    /// the device may still run (and reset the node).
    pub fn disarm(mut self) -> Result<()> {
        let written = self.file.write(b"V");
        match written {
            Ok(1) => Ok(()),
            Ok(n) => bail!(
                "watchdog device {}: the magic close wrote {n} bytes; it may still run and \
                 reset the node",
                self.path.display()
            ),
            Err(err) => bail!(
                "watchdog device {}: the magic close failed ({err}); it may still run and \
                 reset the node",
                self.path.display()
            ),
        }
        // The descriptor closes as `self.file` drops.
    }

    fn disarm_quietly(self) {
        let path = self.path.display().to_string();
        if let Err(err) = self.disarm() {
            tracing::error!("{err:#} (while refusing {path})");
        }
    }
}

/// What could not be opened, and what the operator can do.
fn open_error(path: &Path, err: std::io::Error) -> anyhow::Error {
    let shown = path.display();
    let why = match Errno::from_raw(err.raw_os_error().unwrap_or(0)) {
        Errno::ENOENT => "no such device (is its driver loaded? `modprobe softdog` \
                          gives a software one)"
            .to_string(),
        Errno::EBUSY => "busy: another process holds it open (a watchdog daemon, \
                         systemd's RuntimeWatchdogSec, or an earlier fence guard); \
                         only one may"
            .to_string(),
        Errno::EACCES | Errno::EPERM => "permission denied: this agent's user may not open it \
                                         (run as root, or give the user the device by a \
                                         udev rule; a unit with PrivateDevices=yes hides it)"
            .to_string(),
        Errno::EISDIR | Errno::ENXIO => "not a watchdog device".to_string(),
        _ => format!("could not open it: {err}"),
    };
    anyhow::anyhow!("watchdog device {shown}: {why}")
}

fn identity(info: &WatchdogInfo) -> String {
    let end = info.identity.iter().position(|b| *b == 0).unwrap_or(32);
    let text = String::from_utf8_lossy(&info.identity[..end]);
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.is_empty() {
        "unnamed".to_string()
    } else {
        text
    }
}

/// What a timeout of `seconds` needs of the lease TTL.
fn ttl_advice(seconds: u32) -> String {
    format!(
        "a timeout of {seconds} s needs [cluster] lease_ttl_s of at least {} (the timeout is a \
         third of the TTL, whole seconds)",
        u64::from(seconds) * 3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_a_third_of_the_ttl_in_whole_seconds() {
        assert_eq!(timeout_for(Duration::from_secs(2)), None);
        assert_eq!(timeout_for(Duration::from_secs(3)), Some(1));
        assert_eq!(timeout_for(Duration::from_secs(5)), Some(1));
        assert_eq!(timeout_for(Duration::from_secs(10)), Some(3));
        assert_eq!(timeout_for(Duration::from_secs(60)), Some(20));
        // Fed until at most 7/12 of the TTL, reset a timeout later: still
        // before the TTL, by at least a twelfth of it.
        for ttl in 3..=600u64 {
            let w = timeout_for(Duration::from_secs(ttl)).expect("a timeout") as f64;
            let ttl = ttl as f64;
            assert!(ttl * 7.0 / 12.0 + w <= ttl * 11.0 / 12.0, "{ttl}: {w}");
        }
    }

    #[test]
    fn what_is_not_a_watchdog_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-device");
        std::fs::write(&file, "kept").expect("write");
        let err = Armed::arm(&file, 3).expect_err("a regular file");
        assert!(
            format!("{err:#}").contains("not a watchdog device"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "kept");
        let err = Armed::arm(&dir.path().join("missing"), 3).expect_err("no such file");
        assert!(format!("{err:#}").contains("no such device"), "{err:#}");
        let err = Armed::arm(dir.path(), 3).expect_err("a directory");
        assert!(
            format!("{err:#}").contains("not a watchdog device"),
            "{err:#}"
        );
    }
}
