//! The fence guard: a small process beside a cluster agent that kills the
//! node's services when the agent stops vouching for its lease in time.
//!
//! # Why a separate process
//!
//! A cluster agent fences itself (terminates its services) when its lease
//! renewals stop answering, before etcd can expire the lease and another
//! node take its groups (`cluster::link`). An agent that is *frozen* — a
//! SIGSTOP, a long pause, a stall on a slow disk — cannot: its services go
//! on answering while the cluster moves their groups elsewhere, and two
//! nodes serve one group. The guard does not depend on the agent's threads:
//! it is the same binary run as `warden fence-guard`, plain std with no
//! async runtime, in a process group of its own (so stopping the agent, or
//! the agent's process group, does not stop it).
//!
//! # The protocol
//!
//! The agent writes lines of at most [`MAX_LINE`] bytes to the guard's
//! standard input ([`Command`]):
//!
//! - `vouch MS`: the agent answers for its lease for the next `MS`
//!   milliseconds. The guard's deadline becomes its *own* time of receipt
//!   plus `MS`: no clock is shared. The agent vouches after each renewal
//!   etcd answered, up to shortly after the moment it would fence itself.
//! - `grace MS`: the agent is fencing itself (alive, its renewals
//!   unanswered) and stops its services on its own: the guard kills them
//!   only `MS` from now, but the lease is no longer vouched for (the
//!   watchdog is fed only so that it still fires before the grace ends).
//! - `owns N`: this node holds `N` groups' ownership keys (the watchdog is
//!   armed while it owns any or runs a service).
//! - `hold PGID` / `release PGID`: a service's process group, held from its
//!   spawn (or adoption) until it has ended.
//! - `hold-address ADDR/PREFIX IFACE` / `release-address ADDR/PREFIX IFACE`:
//!   a virtual address (an `ip-address` resource's) this node put on an
//!   interface, held from just before it is added until it is taken off.
//! - `release-all`: the goodbye of a planned shutdown: every group and
//!   address is forgotten, and the guard exits when the pipe closes.
//!
//! When the deadline passes without a new vouch, the guard sends SIGKILL to
//! every process group it holds and takes every address it holds off its
//! interface (so that the node that takes the group over is the only one
//! answering for it), says so on stderr (the agent's log), and keeps
//! running; a group or address held after that, before the next vouch, is
//! killed or taken off at once. When the agent's end of the pipe closes (the agent died) with
//! groups still held, the guard kills them at the deadline and exits.
//!
//! With `[cluster] watchdog_device`, the guard also holds the Linux
//! watchdog device ([`watchdog`]): armed while the node owns groups or
//! runs services, fed only while the vouch holds, disarmed (magic close)
//! when the node holds nothing and at the goodbye. A guard that cannot
//! feed it (frozen, dead, its vouch run out) lets it reset the node.
//!
//! The guard itself, [`guard::run`], is what `warden fence-guard` runs;
//! [`agent`] is the agent's side: it starts the guard, tells it, and
//! restarts it (loudly) if it dies.

mod addresses;
pub mod agent;
pub mod guard;
pub mod watchdog;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

pub use agent::{
    goodbye, grace_until, hold, hold_address, owns, release, release_address, start, vouch_until,
};

/// The longest command line the guard reads; a longer line is refused
/// whole. Far below `PIPE_BUF`, so each line is written in one piece (the
/// longest real one, an IPv6 address held on a 15-byte interface name, is
/// 74 bytes).
pub const MAX_LINE: usize = 128;

/// A virtual address the guard takes off its interface when it fences.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeldAddress {
    /// The address itself.
    pub address: IpAddr,
    /// Its prefix length (1 to 32 for IPv4, 1 to 128 for IPv6).
    pub prefix_len: u8,
    /// The interface it is on: 1 to 15 bytes (the kernel's IFNAMSIZ), no
    /// whitespace or `/`.
    pub interface: String,
}

impl fmt::Display for HeldAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.address, self.prefix_len, self.interface)
    }
}

impl HeldAddress {
    /// Parse `ADDR/PREFIX` and `IFACE`, the two words of a command.
    fn parse(line: &str, address: &str, interface: Option<&str>) -> Result<HeldAddress, String> {
        let (address, prefix) = address
            .split_once('/')
            .ok_or_else(|| format!("{line:?}: an address is written ADDR/PREFIX IFACE"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{line:?}: {address:?} is not an IP address"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=most).contains(p))
            .ok_or_else(|| format!("{line:?}: the prefix length is 1 to {most}"))?;
        let interface = interface
            .filter(|name| {
                (1..16).contains(&name.len())
                    && !name.contains('/')
                    && name.bytes().all(|b| b.is_ascii_graphic())
            })
            .ok_or_else(|| format!("{line:?}: an interface name is 1 to 15 bytes, no '/'"))?;
        Ok(HeldAddress {
            address,
            prefix_len,
            interface: interface.to_string(),
        })
    }
}

/// The longest vouch the guard accepts. The agent vouches for half its
/// lease TTL (at most a day, see `ClusterSection`); anything longer is a
/// mistake, refused rather than taken as "never fire".
pub const MAX_VOUCH: Duration = Duration::from_secs(24 * 3600);

/// One line of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `vouch MS`: the agent renewed its lease; kill nothing for MS.
    Vouch(Duration),
    /// `grace MS`: the agent fences itself; kill after MS if it froze.
    Grace(Duration),
    /// `owns N`: the node owns N groups (the watchdog is armed while N > 0).
    Owns(u32),
    /// `hold PGID`: a service's process group to kill if the vouch runs out.
    Hold(i32),
    /// `release PGID`: that service ended; forget its group.
    Release(i32),
    /// `hold-address ADDR/PREFIX IFACE`: a virtual address is (about to be)
    /// up on this node.
    HoldAddress(HeldAddress),
    /// `release-address ADDR/PREFIX IFACE`: it is off again.
    ReleaseAddress(HeldAddress),
    /// `release-all`: the goodbye of an agent stopping cleanly.
    ReleaseAll,
}

impl Command {
    /// The line for this command, newline included.
    pub fn line(&self) -> String {
        match self {
            Command::Vouch(d) => format!("vouch {}\n", d.as_millis()),
            Command::Grace(d) => format!("grace {}\n", d.as_millis()),
            Command::Owns(n) => format!("owns {n}\n"),
            Command::Hold(pgid) => format!("hold {pgid}\n"),
            Command::Release(pgid) => format!("release {pgid}\n"),
            Command::HoldAddress(held) => format!("hold-address {held}\n"),
            Command::ReleaseAddress(held) => format!("release-address {held}\n"),
            Command::ReleaseAll => "release-all\n".to_string(),
        }
    }

    /// Parse one line (without its newline). The error says what is wrong
    /// with it, naming the line.
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("");
        let argument = words.next();
        if let ("hold-address" | "release-address", Some(address)) = (verb, argument) {
            let held = HeldAddress::parse(line, address, words.next())?;
            if words.next().is_some() {
                return Err(format!("{line:?}: two arguments at most"));
            }
            return Ok(if verb == "hold-address" {
                Command::HoldAddress(held)
            } else {
                Command::ReleaseAddress(held)
            });
        }
        if words.next().is_some() {
            return Err(format!("{line:?}: one argument at most"));
        }
        match (verb, argument) {
            ("vouch", Some(ms)) => Ok(Command::Vouch(span(line, "vouch", ms)?)),
            ("grace", Some(ms)) => Ok(Command::Grace(span(line, "grace", ms)?)),
            ("owns", Some(n)) => n
                .parse()
                .map(Command::Owns)
                .map_err(|_| format!("{line:?}: the number of groups owned is not a number")),
            ("hold", Some(pgid)) => Ok(Command::Hold(process_group(line, pgid)?)),
            ("release", Some(pgid)) => Ok(Command::Release(process_group(line, pgid)?)),
            ("release-all", None) => Ok(Command::ReleaseAll),
            _ => Err(format!(
                "{line:?}: not a command (vouch MS, grace MS, owns N, hold PGID, release PGID, \
                 hold-address ADDR/PREFIX IFACE, release-address ADDR/PREFIX IFACE, release-all)"
            )),
        }
    }
}

/// The milliseconds of a vouch or a grace, at most [`MAX_VOUCH`].
fn span(line: &str, what: &str, ms: &str) -> Result<Duration, String> {
    let ms: u64 = ms
        .parse()
        .map_err(|_| format!("{line:?}: not a number of milliseconds"))?;
    let span = Duration::from_millis(ms);
    if span > MAX_VOUCH {
        return Err(format!(
            "{line:?}: a {what} longer than {MAX_VOUCH:?} is refused"
        ));
    }
    Ok(span)
}

/// A process group the guard may kill: above 1, since `killpg(1)` is
/// `kill(-1)`, every process the guard may signal, and 0 its own group.
fn process_group(line: &str, pgid: &str) -> Result<i32, String> {
    match pgid.parse::<i32>() {
        Ok(pgid) if pgid > 1 => Ok(pgid),
        _ => Err(format!(
            "{line:?}: a process group is a number above 1 (0 and 1 would reach other processes)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_back_from_its_line() {
        for command in [
            Command::Vouch(Duration::from_millis(2000)),
            Command::Grace(Duration::from_millis(4500)),
            Command::Owns(3),
            Command::Hold(4242),
            Command::Release(4242),
            Command::HoldAddress(HeldAddress {
                address: "198.18.0.100".parse().expect("address"),
                prefix_len: 24,
                interface: "eth0".to_string(),
            }),
            Command::ReleaseAddress(HeldAddress {
                address: "fd00:1234:5678:9abc:def0:1234:5678:9abc"
                    .parse()
                    .expect("address"),
                prefix_len: 128,
                interface: "a-15-byte-name0".to_string(),
            }),
            Command::ReleaseAll,
        ] {
            let line = command.line();
            assert!(line.len() <= MAX_LINE);
            assert_eq!(Command::parse(line.trim_end()), Ok(command));
        }
    }

    #[test]
    fn groups_that_reach_other_processes_and_endless_vouches_are_refused() {
        for line in [
            "hold 0",
            "hold 1",
            "hold -5",
            "release 1",
            "hold x",
            "vouch -1",
            "vouch 86400001",
            "vouch 18446744073709551616",
            "grace 86400001",
            "owns -1",
            "owns",
            "vouch",
            "hold 12 13",
            "release-all now",
            "hold-address 198.18.0.100 eth0",
            "hold-address 198.18.0.100/33 eth0",
            "hold-address fd00::1/0 eth0",
            "hold-address 198.18.0.999/24 eth0",
            "hold-address 198.18.0.100/24",
            "hold-address 198.18.0.100/24 a-16-byte-name00",
            "hold-address 198.18.0.100/24 eth0/1",
            "release-address 198.18.0.100/24 eth0 eth1",
            "fire",
            "",
        ] {
            let err = Command::parse(line).expect_err(line);
            assert!(err.contains(&format!("{line:?}")), "{err}");
        }
    }
}
