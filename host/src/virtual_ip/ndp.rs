//! IPv6 on the wire: unsolicited neighbour advertisements (announcements)
//! and neighbour solicitations from the unspecified address (duplicate
//! address detection, RFC 4862 5.4), and reading the answers.

use std::net::Ipv6Addr;

use super::mac::MacAddr;

const ETHERNET_HEADER: usize = 14;
const IPV6_HEADER: usize = 40;
const NEXT_HEADER_ICMPV6: u8 = 58;
/// Neighbour discovery messages travel one link: sent with hop limit 255
/// and dropped by receivers with any other (RFC 4861 7.1.1).
const HOP_LIMIT: u8 = 255;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// The override flag: receivers replace the hardware address they hold.
const FLAG_OVERRIDE: u32 = 0x2000_0000;
const OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
const OPTION_TARGET_LINK_ADDRESS: u8 = 2;

/// All nodes on the link, where unsolicited advertisements go.
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An unsolicited neighbour advertisement of `target` at `mac`, with the
/// override flag and a target link-layer address option (RFC 4861 7.2.6),
/// checksum zero: an ICMPv6 socket fills it in.
pub(crate) fn advertisement(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&[NEIGHBOUR_ADVERTISEMENT, 0, 0, 0]);
    message.extend_from_slice(&FLAG_OVERRIDE.to_be_bytes());
    message.extend_from_slice(&target.octets());
    message.extend_from_slice(&[OPTION_TARGET_LINK_ADDRESS, 1]);
    message.extend_from_slice(&mac.0);
    message
}

/// The solicited-node multicast address of `target` (RFC 4291 2.7.1):
/// where a solicitation for it goes, and which its holder listens on.
pub(crate) fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let o = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address an IPv6 multicast address maps to (RFC 2464 7).
fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// A whole Ethernet frame: a duplicate address detection solicitation for
/// `target` from `mac` (source address unspecified, no source link-layer
/// option, RFC 4862 5.4.2), to its solicited-node group.
pub(crate) fn dad_solicitation(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    let destination = solicited_node(target);
    let mut icmp = Vec::with_capacity(24);
    icmp.extend_from_slice(&[NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    let sum = checksum(Ipv6Addr::UNSPECIFIED, destination, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut frame = Vec::with_capacity(ETHERNET_HEADER + IPV6_HEADER + icmp.len());
    frame.extend_from_slice(&multicast_mac(destination).0);
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&super::socket::ETH_P_IPV6.to_be_bytes());
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[NEXT_HEADER_ICMPV6, HOP_LIMIT]);
    frame.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// The ICMPv6 checksum (RFC 4443 2.3) over the pseudo-header and `icmp`.
fn checksum(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u64::from(*b));
            sum += hi | lo;
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received neighbour discovery message says about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    /// A host advertised `target` at `mac`: it holds the address.
    Advertisement { target: Ipv6Addr, mac: MacAddr },
    /// A host probing for `target` itself (a solicitation from the
    /// unspecified address), from `mac`.
    Probe { target: Ipv6Addr, mac: MacAddr },
}

/// An Ethernet frame read as a neighbour advertisement or a duplicate
/// address detection solicitation. Anything else, including a message
/// whose hop limit is not 255 (it came from off the link), whose checksum
/// is wrong or that is cut short, is `None`.
pub(crate) fn parse(frame: &[u8]) -> Option<Heard> {
    let ip = frame.get(ETHERNET_HEADER..ETHERNET_HEADER + IPV6_HEADER)?;
    if frame[12..14] != super::socket::ETH_P_IPV6.to_be_bytes()
        || ip[0] >> 4 != 6
        || ip[6] != NEXT_HEADER_ICMPV6
        || ip[7] != HOP_LIMIT
    {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let icmp = frame.get(ETHERNET_HEADER + IPV6_HEADER..ETHERNET_HEADER + IPV6_HEADER + length)?;
    let address = |at: usize| -> Option<Ipv6Addr> {
        <[u8; 16]>::try_from(ip.get(at..at + 16)?)
            .ok()
            .map(Ipv6Addr::from)
    };
    let (source, destination) = (address(8)?, address(24)?);
    if icmp.len() < 24 || icmp[1] != 0 || checksum(source, destination, icmp) != 0 {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
    let frame_source = MacAddr::from_slice(&frame[6..12])?;
    match icmp[0] {
        NEIGHBOUR_ADVERTISEMENT => {
            let mac = option(&icmp[24..], OPTION_TARGET_LINK_ADDRESS).unwrap_or(frame_source);
            Some(Heard::Advertisement { target, mac })
        }
        NEIGHBOUR_SOLICITATION if source.is_unspecified() => {
            let mac = option(&icmp[24..], OPTION_SOURCE_LINK_ADDRESS).unwrap_or(frame_source);
            Some(Heard::Probe { target, mac })
        }
        _ => None,
    }
}

/// The link-layer address in the first option of `kind`, if any; a
/// malformed option list (a zero length, one running past the end) ends
/// the search.
fn option(mut options: &[u8], kind: u8) -> Option<MacAddr> {
    while options.len() >= 8 {
        let length = usize::from(options[1]) * 8;
        if length == 0 || length > options.len() {
            return None;
        }
        if options[0] == kind {
            return MacAddr::from_slice(options.get(2..8)?);
        }
        options = &options[length..];
    }
    None
}

/// Whether `heard`, received while probing for `address` from `ours`,
/// shows another host holding it or probing for it (RFC 4862 5.4.3, 5.4.4).
pub(crate) fn conflicts(heard: &Heard, address: Ipv6Addr, ours: MacAddr) -> Option<MacAddr> {
    match *heard {
        Heard::Advertisement { target, mac } | Heard::Probe { target, mac }
            if target == address && mac != ours =>
        {
            Some(mac)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0x12, 0x3456);

    #[test]
    fn the_solicited_node_group_takes_the_last_24_bits() {
        assert_eq!(
            solicited_node(VIP),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().expect("ip")
        );
        assert_eq!(
            multicast_mac(solicited_node(VIP)),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
    }

    #[test]
    fn a_dad_solicitation_reads_back_as_a_probe_with_a_valid_checksum() {
        let frame = dad_solicitation(VIP, MAC);
        assert_eq!(frame.len(), 14 + 40 + 24);
        assert_eq!(
            parse(&frame),
            Some(Heard::Probe {
                target: VIP,
                mac: MAC
            })
        );
        assert_eq!(
            conflicts(
                &Heard::Probe {
                    target: VIP,
                    mac: MAC
                },
                VIP,
                MAC
            ),
            None,
            "our own"
        );
        let mut damaged = frame.clone();
        damaged[14 + 40 + 20] ^= 1;
        assert_eq!(parse(&damaged), None, "a wrong checksum");
        let mut routed = frame.clone();
        routed[14 + 7] = 64;
        assert_eq!(parse(&routed), None, "hop limit 64: not from this link");
        assert_eq!(parse(&frame[..70]), None, "cut short");
    }

    /// An advertisement as it arrives in a frame (what a neighbour sends).
    fn advertisement_frame(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
        let source: Ipv6Addr = "fe80::2".parse().expect("ip");
        let mut icmp = advertisement(target, mac);
        let sum = checksum(source, ALL_NODES, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0x33, 0x33, 0, 0, 0, 1];
        frame.extend_from_slice(&mac.0);
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[58, 255]);
        frame.extend_from_slice(&source.octets());
        frame.extend_from_slice(&ALL_NODES.octets());
        frame.extend_from_slice(&icmp);
        frame
    }

    #[test]
    fn an_advertisement_names_its_target_and_hardware_address() {
        let heard = parse(&advertisement_frame(VIP, OTHER)).expect("an advertisement");
        assert_eq!(
            heard,
            Heard::Advertisement {
                target: VIP,
                mac: OTHER
            }
        );
        assert_eq!(conflicts(&heard, VIP, MAC), Some(OTHER));
        let elsewhere: Ipv6Addr = "fd00::1".parse().expect("ip");
        assert_eq!(conflicts(&heard, elsewhere, MAC), None);
    }

    #[test]
    fn hostile_option_lists_end_the_search() {
        assert_eq!(option(&[2, 0, 1, 2, 3, 4, 5, 6], 2), None, "zero length");
        assert_eq!(option(&[2, 9, 1, 2, 3, 4, 5, 6], 2), None, "past the end");
        assert_eq!(
            option(&[1, 1, 9, 9, 9, 9, 9, 9, 2, 1, 1, 2, 3, 4, 5, 6], 2),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(option(&[0; 1000], 2), None);
    }
}
