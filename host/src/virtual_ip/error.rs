//! `AddressError`: why a virtual address operation was refused or failed,
//! in words that name the address, the interface and, where a grant said
//! no, the grant's section and what it allows.

use std::io;
use std::net::IpAddr;

use super::mac::MacAddr;

/// Why a virtual address could not be probed, added, announced, removed or
/// looked at. Every variant names what is wrong and where, so the reason a
/// resource fails reads as an answer, not as a code.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The prefix length does not fit the address family (or is zero,
    /// which would claim every address there is).
    #[error("{address}/{prefix_len}: the prefix length must be 1 to {max} for this address")]
    PrefixLength {
        /// The address in question.
        address: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The largest value allowed.
        max: u8,
    },

    /// Multicast, unspecified, loopback, link-local or broadcast: no
    /// address a group could move between hosts.
    #[error("{address} is not an address a virtual server can hold ({why})")]
    NotAssignable {
        /// The address in question.
        address: IpAddr,
        /// Why it cannot.
        why: &'static str,
    },

    /// The address is in none of the grant's ranges.
    #[error("{address} is outside the grant [{section}]: its ranges are {ranges}")]
    OutsideGrant {
        /// The address in question.
        address: IpAddr,
        /// The configuration section of the grant.
        section: String,
        /// The grant's ranges.
        ranges: String,
    },

    /// The address is in a granted range, but its prefix length would
    /// make the node route a wider subnet through the interface than the
    /// range grants.
    #[error(
        "{address}/{prefix_len} is a wider subnet than the grant [{section}] allows: its range \
         {range} takes prefix lengths of {shortest} or more"
    )]
    SubnetOutsideGrant {
        /// The address in question.
        address: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The configuration section of the grant.
        section: String,
        /// The widest granted range holding the address.
        range: String,
        /// That range's prefix length: the shortest one allowed.
        shortest: u8,
    },

    /// The interface is not one the grant names.
    #[error("interface {interface:?} is not granted by [{section}]: its interfaces are {granted}")]
    InterfaceNotGranted {
        /// The interface in question.
        interface: String,
        /// The configuration section of the grant.
        section: String,
        /// What the grant allows.
        granted: String,
    },

    /// The interface is granted but this node has none of that name.
    #[error(
        "interface {interface:?} does not exist on this node (granted by [{section}]; of its interfaces this node has {present})"
    )]
    UnknownInterface {
        /// The interface in question.
        interface: String,
        /// The configuration section of the grant.
        section: String,
        /// The granted interfaces this node has.
        present: String,
    },

    /// The interface has no Ethernet address, so nothing can be announced
    /// or probed on it (a loopback, a tunnel).
    #[error(
        "interface {interface} has no Ethernet hardware address: ARP and neighbour discovery cannot run on it"
    )]
    NoHardwareAddress {
        /// The interface in question.
        interface: String,
    },

    /// This node already holds the address on another interface.
    #[error(
        "{address} is already on interface {other} of this node; refusing to add it to {interface} as well"
    )]
    HeldOnOtherInterface {
        /// The address in question.
        address: IpAddr,
        /// The interface in question.
        interface: String,
        /// The other interface that holds it.
        other: String,
    },

    /// The address is on the interface already, with another prefix
    /// length: someone else configured it, and it is not ours to change.
    #[error(
        "{address} is already on {interface} as {address}/{held_prefix}, not /{prefix_len}; not changing an address configured otherwise"
    )]
    HeldWithOtherPrefix {
        /// The address in question.
        address: IpAddr,
        /// The interface in question.
        interface: String,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The prefix length the address is held with.
        held_prefix: u8,
    },

    /// Duplicate address detection: another host answered for it.
    #[error(
        "{address} is already in use on {interface}'s network: the host with hardware address {answered_by} answered for it"
    )]
    Duplicate {
        /// The address in question.
        address: IpAddr,
        /// The interface in question.
        interface: String,
        /// The hardware address of the host that answered.
        answered_by: MacAddr,
    },

    /// Announcing an address this node does not hold would send its
    /// neighbours to a host that cannot answer.
    #[error(
        "refusing to announce {address} on {interface}: it is not on that interface (add it first)"
    )]
    NotHeld {
        /// The address in question.
        address: IpAddr,
        /// The interface in question.
        interface: String,
    },

    /// A count or a duration outside what the agent accepts.
    #[error("{what} {value} is out of range ({limit})")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// The value given.
        value: String,
        /// The most allowed.
        limit: &'static str,
    },

    /// The kernel refused for lack of a capability.
    #[error("{operation} on {interface}: not permitted, the agent needs {capability}")]
    NotPermitted {
        /// What the agent was doing.
        operation: &'static str,
        /// The interface in question.
        interface: String,
        /// The capability the agent lacks.
        capability: &'static str,
    },

    /// A netlink request failed for another reason.
    #[error("{operation} on {interface}: netlink: {source}")]
    Netlink {
        /// What the agent was doing.
        operation: &'static str,
        /// The interface in question.
        interface: String,
        #[source]
        /// The underlying error.
        source: io::Error,
    },

    /// A packet or ICMPv6 socket failed (open, bind, send, receive).
    #[error("{operation} on {interface}: {source}")]
    Socket {
        /// What the agent was doing.
        operation: &'static str,
        /// The interface in question.
        interface: String,
        #[source]
        /// The underlying error.
        source: io::Error,
    },
}

/// Which capability an operation needs, so that a refusal names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Needs {
    /// Changing addresses through netlink.
    NetAdmin,
    /// Packet sockets (ARP, DAD) and raw ICMPv6 sockets.
    NetRaw,
}

impl Needs {
    fn capability(self) -> &'static str {
        match self {
            Needs::NetAdmin => "CAP_NET_ADMIN",
            Needs::NetRaw => "CAP_NET_RAW",
        }
    }
}

impl AddressError {
    /// A failed netlink request: a refusal for lack of a capability becomes
    /// [`AddressError::NotPermitted`], anything else keeps its reason.
    pub(crate) fn netlink(operation: &'static str, interface: &str, source: io::Error) -> Self {
        if is_denied(&source) {
            return AddressError::NotPermitted {
                operation,
                interface: interface.to_string(),
                capability: Needs::NetAdmin.capability(),
            };
        }
        AddressError::Netlink {
            operation,
            interface: interface.to_string(),
            source,
        }
    }

    /// A failed socket call: a refusal becomes
    /// [`AddressError::NotPermitted`] naming `needs`, a family the agent
    /// may not use (systemd's `RestrictAddressFamilies=`) says so.
    pub(crate) fn socket(
        operation: &'static str,
        interface: &str,
        needs: Needs,
        source: io::Error,
    ) -> Self {
        if is_denied(&source) {
            return AddressError::NotPermitted {
                operation,
                interface: interface.to_string(),
                capability: needs.capability(),
            };
        }
        let source = if source.raw_os_error() == Some(libc::EAFNOSUPPORT) {
            io::Error::new(
                source.kind(),
                format!(
                    "{source} (is the address family restricted, e.g. by systemd's RestrictAddressFamilies= without AF_PACKET?)"
                ),
            )
        } else {
            source
        };
        AddressError::Socket {
            operation,
            interface: interface.to_string(),
            source,
        }
    }
}

/// EPERM or EACCES: what the kernel answers a missing capability with.
fn is_denied(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}
