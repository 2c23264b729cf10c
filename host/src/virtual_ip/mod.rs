//! Virtual IP addresses: the address of a virtual server, added to an
//! interface of the node that runs the group and announced so that its
//! neighbours switch at once, removed when the group leaves.
//!
//! A plugin can touch neither interfaces nor raw sockets, so the agent does
//! this in-process, for a type and within the type's per-node grant
//! (`[plugins.TYPE.ip]`, [`IpGrant`]): addresses through rtnetlink
//! (`netlink.rs`), announcements and duplicate address detection through a
//! packet socket (ARP, `arp.rs`; IPv6 solicitations, `ndp.rs`) and an ICMPv6
//! socket (neighbour advertisements).
//!
//! Every operation works in the calling thread's network namespace and
//! checks the grant before it looks at anything ([`AddressGrant::check`]).
//! Invariants:
//! - Nothing outside the grant is ever changed; a refusal changes nothing.
//! - `add` is one netlink request: the address is there afterwards or it
//!   is not. It is never added to a second interface of the node, nor over
//!   the same address configured with another prefix length.
//! - `remove` takes away only the address with the spec's prefix length,
//!   on the spec's interface.
//! - Only an address the node holds is announced.
//!
//! The agent needs CAP_NET_ADMIN (netlink changes) and CAP_NET_RAW (packet
//! and ICMPv6 sockets); a refusal names the one missing.

mod announce;
mod arp;
mod error;
mod grant;
mod mac;
mod ndp;
mod netlink;
mod probe;
mod socket;

use std::net::IpAddr;
use std::time::Duration;

pub use error::AddressError;
pub use grant::{AddressGrant, IpGrant, IpRange};
pub use mac::MacAddr;

use error::Needs;
use netlink::{Link, Netlink};

/// Most announcements one call sends: enough for any lossy link, few
/// enough that a wrong count cannot flood it.
pub const MAX_ANNOUNCEMENTS: u32 = 100;
/// Longest pause between two announcements.
pub const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest and longest a duplicate address probe listens: under 100 ms a
/// busy neighbour may not answer in time, over a minute holds up a group.
pub const PROBE_WAIT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

/// One virtual address: what a resource asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpec {
    /// The address (IPv4 or IPv6).
    pub address: IpAddr,
    /// Its prefix length: the subnet the node reaches through the interface
    /// by holding it (1 to 32, or 1 to 128).
    pub prefix_len: u8,
    /// The interface to hold it on, as `ip link` names it.
    pub interface: String,
}

impl std::fmt::Display for AddressSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} on {}",
            self.address, self.prefix_len, self.interface
        )
    }
}

/// What is-alive looks at: whether the address is held, and whether the
/// interface could carry traffic to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressState {
    /// The address, with the spec's prefix length, is on the interface.
    pub present: bool,
    /// The interface is up and has its carrier (a pulled cable, a port
    /// down on the switch: `false`).
    pub link_up: bool,
}

impl AddressGrant {
    /// Duplicate address detection: probe the interface's network for the
    /// address for `wait` and fail with [`AddressError::Duplicate`] naming
    /// the host that answered. Refused too if this node holds the address on
    /// another interface. Nothing is changed, nothing is claimed (an ARP
    /// probe's sender is 0.0.0.0, a solicitation's the unspecified address).
    pub async fn probe(&self, spec: &AddressSpec, wait: Duration) -> Result<(), AddressError> {
        self.check(spec)?;
        let (min, max) = PROBE_WAIT_RANGE;
        if wait < min || wait > max {
            return Err(AddressError::OutOfRange {
                what: "probe wait",
                value: format!("{wait:?}"),
                limit: "100 ms to 60 s",
            });
        }
        let netlink = open_netlink(spec)?;
        let link = self.link(&netlink, spec).await?;
        refuse_other_interfaces(&netlink, spec, &link).await?;
        let mac = hardware_address(spec, &link)?;
        let answered = match spec.address {
            IpAddr::V4(a) => probe::arp(link.index, mac, a, wait).await,
            IpAddr::V6(a) => probe::ndp(link.index, mac, a, wait).await,
        }
        .map_err(|e| {
            AddressError::socket(
                "probing for a duplicate address",
                &spec.interface,
                Needs::NetRaw,
                e,
            )
        })?;
        match answered {
            None => Ok(()),
            Some(answered_by) => Err(AddressError::Duplicate {
                address: spec.address,
                interface: spec.interface.clone(),
                answered_by,
            }),
        }
    }

    /// Add the address to the interface; already there with this prefix
    /// length: nothing to do. IPv6 addresses skip the kernel's own
    /// duplicate detection (probe first): they are usable at once. One
    /// netlink request, so nothing is ever half added.
    pub async fn add(&self, spec: &AddressSpec) -> Result<(), AddressError> {
        self.check(spec)?;
        let netlink = open_netlink(spec)?;
        let link = self.link(&netlink, spec).await?;
        let held = refuse_other_interfaces(&netlink, spec, &link).await?;
        if held.contains(&spec.prefix_len) {
            return Ok(());
        }
        if let Some(prefix) = held.first() {
            return Err(AddressError::HeldWithOtherPrefix {
                address: spec.address,
                interface: spec.interface.clone(),
                prefix_len: spec.prefix_len,
                held_prefix: *prefix,
            });
        }
        match netlink.add(link.index, spec.address, spec.prefix_len).await {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(AddressError::netlink(
                "adding the address",
                &spec.interface,
                e,
            )),
        }
    }

    /// Announce the address `count` times, `interval` apart: gratuitous ARP
    /// for IPv4, unsolicited neighbour advertisements for IPv6, so that
    /// neighbours holding an entry for it (the clients of the node that
    /// had it) send to this node at once. Refused unless the address is on
    /// the interface: announcing an address this node does not hold would
    /// send its neighbours to nowhere.
    pub async fn announce(
        &self,
        spec: &AddressSpec,
        count: u32,
        interval: Duration,
    ) -> Result<(), AddressError> {
        self.check(spec)?;
        if !(1..=MAX_ANNOUNCEMENTS).contains(&count) {
            return Err(AddressError::OutOfRange {
                what: "announcement count",
                value: count.to_string(),
                limit: "1 to 100",
            });
        }
        if interval > MAX_ANNOUNCE_INTERVAL {
            return Err(AddressError::OutOfRange {
                what: "announcement interval",
                value: format!("{interval:?}"),
                limit: "at most 10 s",
            });
        }
        let netlink = open_netlink(spec)?;
        let link = self.link(&netlink, spec).await?;
        let held = holders_on(&netlink, spec, link.index).await?;
        if !held.contains(&spec.prefix_len) {
            return Err(AddressError::NotHeld {
                address: spec.address,
                interface: spec.interface.clone(),
            });
        }
        let mac = hardware_address(spec, &link)?;
        match spec.address {
            IpAddr::V4(a) => announce::arp(link.index, mac, a, count, interval).await,
            IpAddr::V6(a) => {
                announce::ndp(&spec.interface, link.index, mac, a, count, interval).await
            }
        }
        .map_err(|e| {
            AddressError::socket("announcing the address", &spec.interface, Needs::NetRaw, e)
        })
    }

    /// Remove the address (with the spec's prefix length) from the
    /// interface; not there: nothing to do.
    pub async fn remove(&self, spec: &AddressSpec) -> Result<(), AddressError> {
        self.check(spec)?;
        let netlink = open_netlink(spec)?;
        let link = self.link(&netlink, spec).await?;
        let listed = netlink
            .holders(spec.address)
            .await
            .map_err(|e| AddressError::netlink("listing addresses", &spec.interface, e))?;
        for assigned in listed
            .iter()
            .filter(|a| a.index == link.index && a.prefix_len == spec.prefix_len)
        {
            match netlink.remove(assigned).await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                Err(e) => {
                    return Err(AddressError::netlink(
                        "removing the address",
                        &spec.interface,
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the address is on the interface and the interface is up
    /// with its carrier.
    pub async fn state(&self, spec: &AddressSpec) -> Result<AddressState, AddressError> {
        self.check(spec)?;
        let netlink = open_netlink(spec)?;
        let link = self.link(&netlink, spec).await?;
        let held = holders_on(&netlink, spec, link.index).await?;
        Ok(AddressState {
            present: held.contains(&spec.prefix_len),
            link_up: link.up && link.carrier,
        })
    }

    /// The spec's interface, or [`AddressError::UnknownInterface`] naming
    /// the granted interfaces this node does have.
    async fn link(&self, netlink: &Netlink, spec: &AddressSpec) -> Result<Link, AddressError> {
        let lookup = |e| AddressError::netlink("looking up the interface", &spec.interface, e);
        if let Some(link) = netlink.link(&spec.interface).await.map_err(lookup)? {
            return Ok(link);
        }
        let mut present = Vec::new();
        for name in &self.interfaces {
            if netlink.link(name).await.map_err(lookup)?.is_some() {
                present.push(name.as_str());
            }
        }
        Err(AddressError::UnknownInterface {
            interface: spec.interface.clone(),
            section: self.section.clone(),
            present: if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            },
        })
    }
}

fn open_netlink(spec: &AddressSpec) -> Result<Netlink, AddressError> {
    Netlink::open()
        .map_err(|e| AddressError::netlink("opening a netlink socket", &spec.interface, e))
}

fn hardware_address(spec: &AddressSpec, link: &Link) -> Result<MacAddr, AddressError> {
    link.mac.ok_or_else(|| AddressError::NoHardwareAddress {
        interface: spec.interface.clone(),
    })
}

/// The prefix lengths the address has on interface `index`.
async fn holders_on(
    netlink: &Netlink,
    spec: &AddressSpec,
    index: u32,
) -> Result<Vec<u8>, AddressError> {
    Ok(netlink
        .holders(spec.address)
        .await
        .map_err(|e| AddressError::netlink("listing addresses", &spec.interface, e))?
        .into_iter()
        .filter(|a| a.index == index)
        .map(|a| a.prefix_len)
        .collect())
}

/// [`AddressError::HeldOnOtherInterface`] if another interface of this
/// node holds the address; else the prefix lengths it has on `link`.
async fn refuse_other_interfaces(
    netlink: &Netlink,
    spec: &AddressSpec,
    link: &Link,
) -> Result<Vec<u8>, AddressError> {
    let listed = netlink
        .holders(spec.address)
        .await
        .map_err(|e| AddressError::netlink("listing addresses", &spec.interface, e))?;
    if let Some(other) = listed.iter().find(|a| a.index != link.index) {
        return Err(AddressError::HeldOnOtherInterface {
            address: spec.address,
            interface: spec.interface.clone(),
            other: netlink.link_name(other.index).await,
        });
    }
    Ok(listed.into_iter().map(|a| a.prefix_len).collect())
}
